//! `TensorProto` ↔ [`Tensor`]: element counts checked against a limit before anything is
//! allocated, data taken from `raw_data`, the typed fields or an external file, and its length
//! checked against the dimensions.

use super::error::{dtype_from_code, Problem};
use super::external::ExternalReader;
use super::proto::{TensorProto, DATA_LOCATION_EXTERNAL};
use super::MAX_ELEMENTS;
use crate::tensor::{DataType, Tensor, TensorData};

/// The shape of `dims` as `usize`s and its element count, refused when an extent is negative or
/// when the product of the non-zero extents exceeds [`MAX_ELEMENTS`] (so that no later stride or
/// size computation on the shape can overflow either).
pub fn checked_shape(field: &'static str, dims: &[i64]) -> Result<(Vec<usize>, usize), Problem> {
    let mut nonzero: u64 = 1;
    let mut zero = false;
    for &d in dims {
        let Ok(d) = u64::try_from(d) else {
            return Err(Problem::NegativeDim {
                field,
                dims: dims.to_vec(),
            });
        };
        zero |= d == 0;
        nonzero = d
            .max(1)
            .checked_mul(nonzero)
            .filter(|&n| n <= MAX_ELEMENTS)
            .ok_or_else(|| Problem::TooManyElements {
                dims: dims.to_vec(),
                limit: MAX_ELEMENTS,
            })?;
    }
    // Every extent and the product are ≤ MAX_ELEMENTS (2^31); converting can only fail on a
    // target whose usize is narrower than that.
    let to_usize = |v: u64| {
        usize::try_from(v).map_err(|_| Problem::TooManyElements {
            dims: dims.to_vec(),
            limit: MAX_ELEMENTS,
        })
    };
    let shape = dims
        .iter()
        .map(|&d| to_usize(d.unsigned_abs()))
        .collect::<Result<Vec<_>, _>>()?;
    let numel = if zero { 0 } else { to_usize(nonzero)? };
    Ok((shape, numel))
}

/// Converts a `TensorProto` to a [`Tensor`], reading external data through `external`.
pub fn tensor_from_proto(
    proto: &TensorProto,
    external: &mut ExternalReader,
) -> Result<Tensor, Problem> {
    if let Some(seg) = &proto.segment {
        return Err(Problem::Unsupported {
            what: format!(
                "a segmented tensor (segment {}..{})",
                seg.begin.unwrap_or(0),
                seg.end.unwrap_or(0)
            ),
            why: "quench reads whole tensors only",
        });
    }
    let code = proto
        .data_type
        .ok_or(Problem::Missing { field: "data_type" })?;
    let dtype = dtype_from_code("data_type", code)?;
    let (shape, numel) = checked_shape("dims", &proto.dims)?;
    let is_external = proto.data_location == Some(DATA_LOCATION_EXTERNAL);
    let home = if is_external {
        "external_data"
    } else if proto.raw_data.is_some() {
        "raw_data"
    } else {
        typed_field_for(dtype)
    };
    for (field, count) in typed_field_counts(proto) {
        if count > 0 && field != home {
            return Err(Problem::WrongDataField {
                field,
                count,
                dtype,
                expected_field: home,
            });
        }
    }
    // numel ≤ 2^31 and size ≤ 8, so the byte count cannot overflow.
    let nbytes = numel as u64 * dtype.size_bytes() as u64;
    let data = match proto.data_location {
        Some(DATA_LOCATION_EXTERNAL) => {
            if let Some(raw) = &proto.raw_data {
                return Err(Problem::WrongDataField {
                    field: "raw_data",
                    count: raw.len(),
                    dtype,
                    expected_field: "external_data",
                });
            }
            let bytes = external.read(&proto.external_data, nbytes)?;
            from_le_bytes(dtype, &bytes)?
        }
        None | Some(0) => match &proto.raw_data {
            Some(raw) => {
                check_len("raw_data", proto, dtype, nbytes, raw.len(), "bytes")?;
                from_le_bytes(dtype, raw)?
            }
            None => from_typed_fields(proto, dtype, numel)?,
        },
        Some(other) => {
            return Err(Problem::BadValue {
                field: "data_location",
                value: other.to_string(),
                why: "only 0 (DEFAULT) and 1 (EXTERNAL) are defined",
            })
        }
    };
    Tensor::new(shape, data).map_err(|_| Problem::BadValue {
        field: "dims",
        value: format!("{:?}", proto.dims),
        why: "the element count disagrees with the data",
    })
}

/// Encodes a [`Tensor`] as a `TensorProto` named `name`, its elements in `raw_data`.
pub fn tensor_to_proto(name: Option<&str>, tensor: &Tensor) -> TensorProto {
    let raw = match tensor.data() {
        TensorData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::U8(v) => v.clone(),
        TensorData::I8(v) => v.iter().map(|&x| x as u8).collect(),
        TensorData::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::Bool(v) => v.iter().map(|&x| u8::from(x)).collect(),
    };
    TensorProto {
        dims: tensor
            .shape()
            .iter()
            .map(|&d| i64::try_from(d).unwrap_or(i64::MAX))
            .collect(),
        data_type: Some(tensor.dtype().onnx_code()),
        name: name.map(str::to_string),
        raw_data: Some(raw),
        ..TensorProto::default()
    }
}

/// The typed repeated field that holds elements of `dtype` when `raw_data` is absent.
fn typed_field_for(dtype: DataType) -> &'static str {
    match dtype {
        DataType::F32 => "float_data",
        DataType::I64 => "int64_data",
        DataType::U8 | DataType::I8 | DataType::I32 | DataType::Bool => "int32_data",
    }
}

/// Every typed data field with the number of values it holds.
fn typed_field_counts(p: &TensorProto) -> [(&'static str, usize); 6] {
    [
        ("float_data", p.float_data.len()),
        ("int32_data", p.int32_data.len()),
        ("string_data", p.string_data.len()),
        ("int64_data", p.int64_data.len()),
        ("double_data", p.double_data.len()),
        ("uint64_data", p.uint64_data.len()),
    ]
}

/// Refuses data whose length is not the one the dims and type need.
fn check_len(
    field: &'static str,
    proto: &TensorProto,
    dtype: DataType,
    expected: u64,
    actual: usize,
    unit: &'static str,
) -> Result<(), Problem> {
    if expected == actual as u64 {
        return Ok(());
    }
    Err(Problem::DataLength {
        field,
        dims: proto.dims.clone(),
        dtype,
        expected,
        actual: actual as u64,
        unit,
    })
}

/// Decodes little-endian element bytes whose length was already checked.
fn from_le_bytes(dtype: DataType, raw: &[u8]) -> Result<TensorData, Problem> {
    Ok(match dtype {
        DataType::F32 => TensorData::F32(chunks(raw, f32::from_le_bytes)),
        DataType::U8 => TensorData::U8(raw.to_vec()),
        DataType::I8 => TensorData::I8(raw.iter().map(|&b| b as i8).collect()),
        DataType::I32 => TensorData::I32(chunks(raw, i32::from_le_bytes)),
        DataType::I64 => TensorData::I64(chunks(raw, i64::from_le_bytes)),
        DataType::Bool => TensorData::Bool(to_bools("raw_data", raw.iter().map(|&b| b.into()))?),
    })
}

/// Decodes `raw` as consecutive `N`-byte little-endian values (a trailing partial chunk cannot
/// occur: lengths are checked before).
fn chunks<T, const N: usize>(raw: &[u8], f: fn([u8; N]) -> T) -> Vec<T> {
    raw.chunks_exact(N)
        .map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            f(a)
        })
        .collect()
}

/// Takes the elements from the typed repeated field that belongs to `dtype`.
fn from_typed_fields(
    proto: &TensorProto,
    dtype: DataType,
    numel: usize,
) -> Result<TensorData, Problem> {
    let field = typed_field_for(dtype);
    let held = match dtype {
        DataType::F32 => proto.float_data.len(),
        DataType::I64 => proto.int64_data.len(),
        _ => proto.int32_data.len(),
    };
    check_len(field, proto, dtype, numel as u64, held, "elements")?;
    Ok(match dtype {
        DataType::F32 => TensorData::F32(proto.float_data.clone()),
        DataType::I64 => TensorData::I64(proto.int64_data.clone()),
        DataType::I32 => TensorData::I32(proto.int32_data.clone()),
        DataType::U8 => TensorData::U8(narrow(&proto.int32_data, dtype)?),
        DataType::I8 => TensorData::I8(narrow(&proto.int32_data, dtype)?),
        DataType::Bool => TensorData::Bool(to_bools(
            "int32_data",
            proto.int32_data.iter().map(|&v| v.into()),
        )?),
    })
}

/// Narrows `int32_data` values to `T`, refusing any that do not fit.
fn narrow<T: TryFrom<i32>>(values: &[i32], dtype: DataType) -> Result<Vec<T>, Problem> {
    values
        .iter()
        .enumerate()
        .map(|(index, &v)| {
            T::try_from(v).map_err(|_| Problem::OutOfRange {
                field: "int32_data",
                index,
                value: v.into(),
                dtype,
            })
        })
        .collect()
}

/// Booleans from 0/1 values, refusing any other value.
fn to_bools(field: &'static str, values: impl Iterator<Item = i64>) -> Result<Vec<bool>, Problem> {
    values
        .enumerate()
        .map(|(index, value)| match value {
            0 | 1 => Ok(value == 1),
            _ => Err(Problem::OutOfRange {
                field,
                index,
                value,
                dtype: DataType::Bool,
            }),
        })
        .collect()
}

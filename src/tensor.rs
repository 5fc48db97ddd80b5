//! Dense host tensors: the values that flow between the ONNX loader, the graph passes, the native
//! engine, ONNX Runtime and the evaluators.
//!
//! A [`Tensor`] owns its elements in row-major order. Only the element types quench computes with
//! are represented; anything else is refused by the loader with a clear error rather than carried
//! around as opaque bytes.

use std::fmt;

/// Element type of a tensor, named as in ONNX's `TensorProto.DataType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    /// 32-bit IEEE float (ONNX `FLOAT`, code 1).
    F32,
    /// Unsigned 8-bit integer (ONNX `UINT8`, code 2).
    U8,
    /// Signed 8-bit integer (ONNX `INT8`, code 3).
    I8,
    /// Signed 32-bit integer (ONNX `INT32`, code 6).
    I32,
    /// Signed 64-bit integer (ONNX `INT64`, code 7).
    I64,
    /// Boolean stored one per byte (ONNX `BOOL`, code 9).
    Bool,
}

impl DataType {
    /// The ONNX `TensorProto.DataType` code of this type.
    pub fn onnx_code(self) -> i32 {
        match self {
            DataType::F32 => 1,
            DataType::U8 => 2,
            DataType::I8 => 3,
            DataType::I32 => 6,
            DataType::I64 => 7,
            DataType::Bool => 9,
        }
    }

    /// The type for an ONNX `TensorProto.DataType` code, if quench supports it.
    pub fn from_onnx_code(code: i32) -> Option<DataType> {
        Some(match code {
            1 => DataType::F32,
            2 => DataType::U8,
            3 => DataType::I8,
            6 => DataType::I32,
            7 => DataType::I64,
            9 => DataType::Bool,
            _ => return None,
        })
    }

    /// Bytes one element occupies in memory and in ONNX raw data.
    pub fn size_bytes(self) -> usize {
        match self {
            DataType::U8 | DataType::I8 | DataType::Bool => 1,
            DataType::F32 | DataType::I32 => 4,
            DataType::I64 => 8,
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            DataType::F32 => "f32",
            DataType::U8 => "u8",
            DataType::I8 => "i8",
            DataType::I32 => "i32",
            DataType::I64 => "i64",
            DataType::Bool => "bool",
        };
        f.write_str(name)
    }
}

/// The elements of a tensor, typed.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// 32-bit floats.
    F32(Vec<f32>),
    /// Unsigned bytes.
    U8(Vec<u8>),
    /// Signed bytes.
    I8(Vec<i8>),
    /// 32-bit integers.
    I32(Vec<i32>),
    /// 64-bit integers (shapes, indices).
    I64(Vec<i64>),
    /// Booleans.
    Bool(Vec<bool>),
}

impl TensorData {
    /// Number of elements held.
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::U8(v) => v.len(),
            TensorData::I8(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::Bool(v) => v.len(),
        }
    }

    /// True when no element is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type.
    pub fn dtype(&self) -> DataType {
        match self {
            TensorData::F32(_) => DataType::F32,
            TensorData::U8(_) => DataType::U8,
            TensorData::I8(_) => DataType::I8,
            TensorData::I32(_) => DataType::I32,
            TensorData::I64(_) => DataType::I64,
            TensorData::Bool(_) => DataType::Bool,
        }
    }
}

/// A shape and element count that disagree, or a type that is not the one asked for.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TensorError {
    /// The number of elements does not match the product of the shape.
    #[error("shape {shape:?} holds {expected} elements but {actual} were given")]
    ElementCount {
        /// The shape given.
        shape: Vec<usize>,
        /// Its element count.
        expected: usize,
        /// The number of elements supplied.
        actual: usize,
    },
    /// The tensor holds another element type than the one asked for.
    #[error("expected a {expected} tensor, found {actual}")]
    WrongType {
        /// The type asked for.
        expected: DataType,
        /// The type held.
        actual: DataType,
    },
    /// The product of the dimensions overflows `usize`.
    #[error("shape {0:?} has more elements than can be addressed")]
    Overflow(Vec<usize>),
}

/// Number of elements of a shape, or `None` when it overflows.
pub fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// A dense row-major tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: TensorData,
}

impl Tensor {
    /// A tensor of `shape` holding `data`; fails when the element count disagrees.
    pub fn new(shape: Vec<usize>, data: TensorData) -> Result<Tensor, TensorError> {
        let expected = checked_numel(&shape).ok_or_else(|| TensorError::Overflow(shape.clone()))?;
        if expected != data.len() {
            return Err(TensorError::ElementCount {
                shape,
                expected,
                actual: data.len(),
            });
        }
        Ok(Tensor { shape, data })
    }

    /// An f32 tensor; fails when the element count disagrees with the shape.
    pub fn from_f32(shape: Vec<usize>, data: Vec<f32>) -> Result<Tensor, TensorError> {
        Tensor::new(shape, TensorData::F32(data))
    }

    /// An i64 tensor; fails when the element count disagrees with the shape.
    pub fn from_i64(shape: Vec<usize>, data: Vec<i64>) -> Result<Tensor, TensorError> {
        Tensor::new(shape, TensorData::I64(data))
    }

    /// A zero-filled tensor of the given type.
    pub fn zeros(dtype: DataType, shape: Vec<usize>) -> Result<Tensor, TensorError> {
        let n = checked_numel(&shape).ok_or_else(|| TensorError::Overflow(shape.clone()))?;
        let data = match dtype {
            DataType::F32 => TensorData::F32(vec![0.0; n]),
            DataType::U8 => TensorData::U8(vec![0; n]),
            DataType::I8 => TensorData::I8(vec![0; n]),
            DataType::I32 => TensorData::I32(vec![0; n]),
            DataType::I64 => TensorData::I64(vec![0; n]),
            DataType::Bool => TensorData::Bool(vec![false; n]),
        };
        Ok(Tensor { shape, data })
    }

    /// The dimensions, outermost first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The element type.
    pub fn dtype(&self) -> DataType {
        self.data.dtype()
    }

    /// The typed elements.
    pub fn data(&self) -> &TensorData {
        &self.data
    }

    /// The typed elements, mutably (the shape stays fixed).
    pub fn data_mut(&mut self) -> &mut TensorData {
        &mut self.data
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True for a tensor with a zero-sized dimension.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Bytes the elements occupy.
    pub fn size_bytes(&self) -> usize {
        self.len() * self.dtype().size_bytes()
    }

    /// Splits into shape and elements.
    pub fn into_parts(self) -> (Vec<usize>, TensorData) {
        (self.shape, self.data)
    }

    /// Same elements under another shape with the same element count.
    pub fn reshaped(self, shape: Vec<usize>) -> Result<Tensor, TensorError> {
        Tensor::new(shape, self.data)
    }

    /// The f32 elements, or an error naming the type held.
    pub fn as_f32(&self) -> Result<&[f32], TensorError> {
        match &self.data {
            TensorData::F32(v) => Ok(v),
            other => Err(TensorError::WrongType {
                expected: DataType::F32,
                actual: other.dtype(),
            }),
        }
    }

    /// The f32 elements mutably, or an error naming the type held.
    pub fn as_f32_mut(&mut self) -> Result<&mut [f32], TensorError> {
        match &mut self.data {
            TensorData::F32(v) => Ok(v),
            other => Err(TensorError::WrongType {
                expected: DataType::F32,
                actual: other.dtype(),
            }),
        }
    }

    /// The i64 elements, or an error naming the type held.
    pub fn as_i64(&self) -> Result<&[i64], TensorError> {
        match &self.data {
            TensorData::I64(v) => Ok(v),
            other => Err(TensorError::WrongType {
                expected: DataType::I64,
                actual: other.dtype(),
            }),
        }
    }

    /// The i64 elements mutably, or an error naming the type held.
    pub fn as_i64_mut(&mut self) -> Result<&mut [i64], TensorError> {
        match &mut self.data {
            TensorData::I64(v) => Ok(v),
            other => Err(TensorError::WrongType {
                expected: DataType::I64,
                actual: other.dtype(),
            }),
        }
    }

    /// The elements widened to i64 (integer and bool types), for shape-like inputs.
    pub fn to_i64_vec(&self) -> Result<Vec<i64>, TensorError> {
        Ok(match &self.data {
            TensorData::I64(v) => v.clone(),
            TensorData::I32(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::I8(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::U8(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::Bool(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::F32(_) => {
                return Err(TensorError::WrongType {
                    expected: DataType::I64,
                    actual: DataType::F32,
                })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_count_must_match_shape() {
        assert!(Tensor::from_f32(vec![2, 3], vec![0.0; 6]).is_ok());
        let err = Tensor::from_f32(vec![2, 3], vec![0.0; 5]).unwrap_err();
        assert!(matches!(
            err,
            TensorError::ElementCount {
                expected: 6,
                actual: 5,
                ..
            }
        ));
    }

    #[test]
    fn overflowing_shape_is_refused_without_allocating() {
        let err = Tensor::zeros(DataType::F32, vec![1 << 40, 1 << 40]).unwrap_err();
        assert!(matches!(err, TensorError::Overflow(_)));
    }

    #[test]
    fn onnx_codes_round_trip() {
        for t in [
            DataType::F32,
            DataType::U8,
            DataType::I8,
            DataType::I32,
            DataType::I64,
            DataType::Bool,
        ] {
            assert_eq!(DataType::from_onnx_code(t.onnx_code()), Some(t));
        }
        assert_eq!(DataType::from_onnx_code(16), None);
    }
}

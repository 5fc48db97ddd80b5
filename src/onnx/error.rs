//! What can go wrong reading or writing a model, with the file, the place in it and the bad value.

use std::path::PathBuf;

use crate::tensor::DataType;

/// An error reading, checking or writing an ONNX model.
///
/// Every variant names the model file (or `(bytes)` when the model came from memory); invalid
/// content also names where in the model (`node `Conv_3` attribute `value``, `initializer `w``…)
/// and carries a [`Problem`] with the offending value.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The model file could not be read or written.
    #[error("{file}: cannot {action}: {source}")]
    Io {
        /// The model file.
        file: String,
        /// What was being done (`read the model`, `write the model`).
        action: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a protobuf `ModelProto` (truncated, corrupted, or not ONNX at all).
    #[error("{file}: not a valid ONNX protobuf: {source}")]
    Decode {
        /// The model file.
        file: String,
        /// What the decoder tripped on.
        #[source]
        source: prost::DecodeError,
    },
    /// The model decodes but something in it is invalid, unsupported or over a limit.
    #[error("{file}: {at}: {problem}")]
    Invalid {
        /// The model file.
        file: String,
        /// Where in the model, e.g. ``node `Conv_3` input 1 `w` ``.
        at: String,
        /// What is wrong, with the bad value.
        problem: Box<Problem>,
    },
}

/// What is wrong with one part of a model. The location is carried by [`OnnxError::Invalid`].
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// A required field is absent or empty.
    #[error("required field `{field}` is missing or empty")]
    Missing {
        /// The field.
        field: &'static str,
    },
    /// A feature quench does not implement; the text says which and why.
    #[error("{what} is not supported: {why}")]
    Unsupported {
        /// The feature and its value, e.g. ``attribute `then_branch` (a subgraph)``.
        what: String,
        /// Why quench refuses it.
        why: &'static str,
    },
    /// An element type quench does not compute with.
    #[error("`{field}` is {name} (code {code}), which quench does not support (it supports f32, u8, i8, i32, i64, bool)")]
    UnsupportedType {
        /// The field holding the type code (`data_type`, `elem_type`).
        field: &'static str,
        /// The ONNX type code.
        code: i32,
        /// The ONNX type name for the code, or `unknown`.
        name: &'static str,
    },
    /// A dimension is negative.
    #[error("`{field}` {dims:?} contains a negative extent")]
    NegativeDim {
        /// The field (`dims`, `dim_value`).
        field: &'static str,
        /// All the dimensions.
        dims: Vec<i64>,
    },
    /// A tensor's dimensions multiply to more elements than quench accepts.
    #[error("tensor dims {dims:?} exceed the limit of {limit} elements")]
    TooManyElements {
        /// The dimensions.
        dims: Vec<i64>,
        /// The limit ([`super::MAX_ELEMENTS`]).
        limit: u64,
    },
    /// The data held does not match the element count the dimensions declare.
    #[error("`{field}` holds {actual} {unit} but dims {dims:?} of {dtype} need {expected}")]
    DataLength {
        /// The data field (`raw_data`, `float_data`, external data `length` …).
        field: &'static str,
        /// The dimensions.
        dims: Vec<i64>,
        /// The element type.
        dtype: DataType,
        /// Elements or bytes needed.
        expected: u64,
        /// Elements or bytes held.
        actual: u64,
        /// `bytes` or `elements`.
        unit: &'static str,
    },
    /// Data sits in a field that does not belong to the tensor's type, or in two places at once.
    #[error(
        "`{field}` holds {count} values, but a {dtype} tensor keeps its data in `{expected_field}`"
    )]
    WrongDataField {
        /// The field that holds data it should not.
        field: &'static str,
        /// How many values it holds.
        count: usize,
        /// The element type.
        dtype: DataType,
        /// Where the data belongs.
        expected_field: &'static str,
    },
    /// An element of a typed data field is out of the element type's range.
    #[error("`{field}`[{index}] = {value} is out of range for {dtype}")]
    OutOfRange {
        /// The data field.
        field: &'static str,
        /// Index of the element.
        index: usize,
        /// Its value.
        value: i64,
        /// The element type.
        dtype: DataType,
    },
    /// A field holds a value that is not allowed.
    #[error("`{field}` = {value}: {why}")]
    BadValue {
        /// The field.
        field: &'static str,
        /// The value, as written in the file.
        value: String,
        /// Why it is refused.
        why: &'static str,
    },
    /// An external data `location` that could reach outside the model's folder, or no file.
    #[error("external data location `{location}` is refused: {why}")]
    ExternalLocation {
        /// The `location` as written.
        location: String,
        /// Why it is refused.
        why: &'static str,
    },
    /// An external data range that does not lie inside its file.
    #[error("external data `{location}` offset {offset} length {length} lies outside the file's {file_size} bytes")]
    ExternalRange {
        /// The `location`.
        location: String,
        /// The `offset`.
        offset: u64,
        /// The `length` (given, or the rest of the file).
        length: u64,
        /// The file's size.
        file_size: u64,
    },
    /// Two tensors claim overlapping bytes of the same external file.
    #[error("external data `{location}` bytes {offset}..{end} overlap another tensor's bytes")]
    ExternalOverlap {
        /// The `location`.
        location: String,
        /// First byte.
        offset: u64,
        /// One past the last byte.
        end: u64,
    },
    /// An external data file could not be opened or read.
    #[error("cannot read external data {path}: {source}")]
    ExternalIo {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// Two things of the same kind share a name that must be unique.
    #[error("{kind} `{name}` is defined twice (first by {first})")]
    Duplicate {
        /// What is duplicated (`value`, `attribute`, `opset domain`).
        kind: &'static str,
        /// The name.
        name: String,
        /// What defined it first.
        first: String,
    },
    /// A node input that nothing produces.
    #[error("input {index} `{name}` is not produced by any node, graph input or initializer")]
    MissingInput {
        /// Input position.
        index: usize,
        /// Value name.
        name: String,
    },
    /// A node that (indirectly) consumes its own output.
    #[error("input {index} `{name}` is produced by node `{producer}`, which depends on this node's output: the graph has a cycle")]
    Cycle {
        /// Input position.
        index: usize,
        /// Value name.
        name: String,
        /// The node that produces it.
        producer: String,
    },
    /// A declared graph output that nothing produces.
    #[error("graph output `{name}` is not produced by any node, graph input or initializer")]
    UnproducedOutput {
        /// The output's name.
        name: String,
    },
    /// The model is larger than a protobuf message can be.
    #[error("{what} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// What is too large.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
}

/// The ONNX name of a `TensorProto.DataType` code, for error messages.
pub fn onnx_type_name(code: i32) -> &'static str {
    const NAMES: [&str; 29] = [
        "UNDEFINED",
        "FLOAT",
        "UINT8",
        "INT8",
        "UINT16",
        "INT16",
        "INT32",
        "INT64",
        "STRING",
        "BOOL",
        "FLOAT16",
        "DOUBLE",
        "UINT32",
        "UINT64",
        "COMPLEX64",
        "COMPLEX128",
        "BFLOAT16",
        "FLOAT8E4M3FN",
        "FLOAT8E4M3FNUZ",
        "FLOAT8E5M2",
        "FLOAT8E5M2FNUZ",
        "UINT4",
        "INT4",
        "FLOAT4E2M1",
        "FLOAT8E8M0",
        "UINT2",
        "INT2",
        "FLOAT6E2M3",
        "FLOAT6E3M2",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|i| NAMES.get(i).copied())
        .unwrap_or("unknown")
}

/// The element type for an ONNX type code read from `field`, or [`Problem::UnsupportedType`].
pub fn dtype_from_code(field: &'static str, code: i32) -> Result<DataType, Problem> {
    DataType::from_onnx_code(code).ok_or(Problem::UnsupportedType {
        field,
        code,
        name: onnx_type_name(code),
    })
}

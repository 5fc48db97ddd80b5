//! Reading and writing `.onnx` files (protobuf), with every field checked before it is trusted.

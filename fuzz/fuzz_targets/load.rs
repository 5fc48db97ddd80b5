//! Fuzzes the ONNX loader: any bytes must give a graph or an error, never a panic, a hang or an
//! allocation sized from an unchecked field. Models that load are saved and loaded again, and
//! must come back identical.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(graph) = quench::onnx::load_bytes(data, None) {
        let bytes = quench::onnx::to_bytes(&graph).expect("a loaded graph encodes");
        let again = quench::onnx::load_bytes(&bytes, None).expect("a saved graph loads");
        // NaN constants make `==` false although nothing changed; compare the encodings instead.
        let bytes_again = quench::onnx::to_bytes(&again).expect("a reloaded graph encodes");
        assert!(bytes == bytes_again, "load → save → load changed the graph");
    }
});

//! Fuzzes the ONNX loader: any bytes must give a graph or an error, never a panic, a hang or an
//! allocation sized from an unchecked field. External data is resolved against a fixed folder
//! holding a small data file and a symlink that escapes it, so location/offset/length checks are
//! fuzzed too. Models that load are saved and loaded again and must encode identically.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// The model folder: `w.bin` (64 bytes) and `out.bin`, a symlink to a file outside it.
fn model_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = std::env::temp_dir().join("quench-fuzz-load");
        let dir = root.join("model");
        std::fs::create_dir_all(&dir).expect("create the fuzz model folder");
        let bytes: Vec<u8> = (0u8..64).collect();
        std::fs::write(dir.join("w.bin"), &bytes).expect("write w.bin");
        std::fs::write(root.join("secret.bin"), &bytes).expect("write secret.bin");
        let link = dir.join("out.bin");
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(root.join("secret.bin"), &link).expect("make out.bin");
        }
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(graph) = quench::onnx::load_bytes(data, Some(model_dir())) {
        let bytes = quench::onnx::to_bytes(&graph).expect("a loaded graph encodes");
        let again = quench::onnx::load_bytes(&bytes, None).expect("a saved graph loads");
        // NaN constants make `==` false although nothing changed; compare the encodings instead.
        let bytes_again = quench::onnx::to_bytes(&again).expect("a reloaded graph encodes");
        assert!(bytes == bytes_again, "load → save → load changed the graph");
    }
});

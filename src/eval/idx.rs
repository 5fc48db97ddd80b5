//! Reader for the IDX format of MNIST: a big-endian header `00 00 TYPE RANK`, `RANK` big-endian
//! u32 dimensions, then the elements, big-endian, row-major.

use std::io::Read;
use std::path::Path;

use crate::eval::error::DataError;
use crate::eval::read::{self, Endian, Stored};
use crate::tensor::Tensor;

/// Largest rank accepted in an IDX header (the format allows 255; data never needs more than 8).
pub const MAX_RANK: usize = 8;

/// Reads an IDX file, gzip-compressed or not.
pub fn read_idx(path: &Path) -> Result<Tensor, DataError> {
    let mut reader = read::open(path)?;
    read_idx_from(&mut reader, path)
}

/// Reads an IDX stream; `origin` names it in errors.
pub fn read_idx_from(reader: &mut dyn Read, origin: &Path) -> Result<Tensor, DataError> {
    let mut magic = [0u8; 4];
    read::read_header(reader, &mut magic, origin, "magic")?;
    if magic[0] != 0 || magic[1] != 0 {
        return Err(DataError::invalid(
            origin,
            "magic",
            format!("{magic:02x?} does not start with two zero bytes"),
        ));
    }
    let stored = match magic[2] {
        0x08 => Stored::U8,
        0x09 => Stored::I8,
        0x0C => Stored::I32,
        0x0D => Stored::F32,
        other => {
            return Err(DataError::invalid(
                origin,
                "element type",
                format!(
                    "0x{other:02X} is not supported (u8 0x08, i8 0x09, i32 0x0C, f32 0x0D are)"
                ),
            ))
        }
    };
    let rank = usize::from(magic[3]);
    if rank == 0 || rank > MAX_RANK {
        return Err(DataError::invalid(
            origin,
            "rank",
            format!("{rank} is outside 1..={MAX_RANK}"),
        ));
    }
    let mut dims_bytes = vec![0u8; rank * 4];
    read::read_header(reader, &mut dims_bytes, origin, "dims")?;
    let shape: Vec<usize> = dims_bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let len = read::payload_len(&shape, stored.size(), origin)?;
    let payload = read::read_payload(reader, len, origin)?;
    let data = read::decode(payload, stored, Endian::Big);
    Tensor::new(shape, data).map_err(|e| DataError::invalid(origin, "dims", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::TensorData;
    use std::io::Write;

    fn idx_bytes(code: u8, dims: &[u32], payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, code, dims.len() as u8];
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(payload);
        v
    }

    fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn field_of(err: DataError) -> (String, String) {
        match err {
            DataError::Invalid { field, message, .. } => (field, message),
            other => panic!("expected Invalid, got {other}"),
        }
    }

    #[test]
    fn reads_u8_plain_and_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = idx_bytes(0x08, &[2, 3], &[1, 2, 3, 4, 5, 255]);
        let plain = write(&dir, "a.idx", &bytes);
        let t = read_idx(&plain).unwrap();
        assert_eq!(t.shape(), &[2, 3]);
        assert_eq!(t.data(), &TensorData::U8(vec![1, 2, 3, 4, 5, 255]));

        let gz = dir.path().join("a.idx.gz");
        let mut enc = flate2::write::GzEncoder::new(
            std::fs::File::create(&gz).unwrap(),
            flate2::Compression::default(),
        );
        enc.write_all(&bytes).unwrap();
        enc.finish().unwrap();
        assert_eq!(read_idx(&gz).unwrap(), t);
    }

    #[test]
    fn reads_big_endian_i8_i32_f32() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "i8", &idx_bytes(0x09, &[2], &[0xff, 0x7f]));
        assert_eq!(read_idx(&p).unwrap().data(), &TensorData::I8(vec![-1, 127]));

        let mut payload = Vec::new();
        payload.extend_from_slice(&(-5i32).to_be_bytes());
        payload.extend_from_slice(&70000i32.to_be_bytes());
        let p = write(&dir, "i32", &idx_bytes(0x0C, &[2], &payload));
        assert_eq!(
            read_idx(&p).unwrap().data(),
            &TensorData::I32(vec![-5, 70000])
        );

        let mut payload = Vec::new();
        payload.extend_from_slice(&1.5f32.to_be_bytes());
        payload.extend_from_slice(&(-0.25f32).to_be_bytes());
        let p = write(&dir, "f32", &idx_bytes(0x0D, &[1, 2], &payload));
        let t = read_idx(&p).unwrap();
        assert_eq!(t.shape(), &[1, 2]);
        assert_eq!(t.as_f32().unwrap(), &[1.5, -0.25]);
    }

    #[test]
    fn truncated_payload_names_the_counts() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "t.idx", &idx_bytes(0x08, &[2, 3], &[1, 2, 3, 4, 5]));
        let err = read_idx(&p).unwrap_err();
        assert!(err.to_string().contains("t.idx"), "{err}");
        let (field, message) = field_of(err);
        assert_eq!(field, "payload");
        assert!(
            message.contains("6 bytes") && message.contains("only 5"),
            "{message}"
        );
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "t.idx", &idx_bytes(0x08, &[2], &[1, 2, 3]));
        let (field, message) = field_of(read_idx(&p).unwrap_err());
        assert_eq!(field, "payload");
        assert!(message.contains("trailing"), "{message}");
    }

    #[test]
    fn absurd_dims_are_refused_before_allocating() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            &dir,
            "huge.idx",
            &idx_bytes(0x0D, &[u32::MAX, u32::MAX, u32::MAX], &[0; 16]),
        );
        let (field, message) = field_of(read_idx(&p).unwrap_err());
        assert_eq!(field, "dims");
        assert!(message.contains("4294967295"), "{message}");

        // Within the limit but far beyond the bytes present: truncated, no 3 GB allocation.
        let p = write(&dir, "big.idx", &idx_bytes(0x08, &[3 << 30], &[0; 16]));
        let (field, _) = field_of(read_idx(&p).unwrap_err());
        assert_eq!(field, "payload");
    }

    #[test]
    fn bad_magic_type_and_rank_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "m", &[1, 0, 8, 1, 0, 0, 0, 1, 7]);
        assert_eq!(field_of(read_idx(&p).unwrap_err()).0, "magic");
        let p = write(&dir, "ty", &idx_bytes(0x0B, &[1], &[0, 0]));
        let (field, message) = field_of(read_idx(&p).unwrap_err());
        assert_eq!(field, "element type");
        assert!(message.contains("0x0B"), "{message}");
        let p = write(&dir, "r", &[0, 0, 8, 0]);
        assert_eq!(field_of(read_idx(&p).unwrap_err()).0, "rank");
        let p = write(&dir, "short", &[0, 0, 8, 2, 0, 0]);
        assert_eq!(field_of(read_idx(&p).unwrap_err()).0, "dims");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(tail in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let mut bytes = vec![0u8, 0];
            bytes.extend_from_slice(&tail);
            let _ = read_idx_from(&mut &bytes[..], Path::new("fuzz"));
        }
    }
}

//! NumPy `.npy` files: reading versions 1, 2 and 3 (little-endian `<f4`, `<f8` narrowed to f32,
//! `|u1`, `|i1`, `<i4`, `<i8`, C order) and writing version 1 files of any quench tensor type
//! except bool.

use std::io::{Read, Write};
use std::path::Path;

use crate::eval::error::DataError;
use crate::eval::read::{self, Endian, Stored};
use crate::tensor::{Tensor, TensorData};

/// The six bytes every `.npy` file starts with.
pub const MAGIC: &[u8] = b"\x93NUMPY";

/// Largest header accepted (numpy itself refuses headers over 10,000 bytes by default).
pub const MAX_HEADER_BYTES: usize = 1 << 16;

/// Reads a `.npy` file, gzip-compressed or not.
pub fn read_npy(path: &Path) -> Result<Tensor, DataError> {
    let mut reader = read::open(path)?;
    read_npy_from(&mut reader, path)
}

/// Reads a `.npy` stream; `origin` names it in errors.
pub fn read_npy_from(reader: &mut dyn Read, origin: &Path) -> Result<Tensor, DataError> {
    let mut preamble = [0u8; 8];
    read::read_header(reader, &mut preamble, origin, "magic")?;
    if &preamble[..6] != MAGIC {
        return Err(DataError::invalid(
            origin,
            "magic",
            format!("{:02x?} is not \\x93NUMPY", &preamble[..6]),
        ));
    }
    let major = preamble[6];
    let header_len = match major {
        1 => {
            let mut b = [0u8; 2];
            read::read_header(reader, &mut b, origin, "header length")?;
            usize::from(u16::from_le_bytes(b))
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            read::read_header(reader, &mut b, origin, "header length")?;
            u32::from_le_bytes(b) as usize
        }
        v => {
            return Err(DataError::invalid(
                origin,
                "version",
                format!("{v}.{} is not 1.x, 2.x or 3.x", preamble[7]),
            ))
        }
    };
    if header_len > MAX_HEADER_BYTES {
        return Err(DataError::invalid(
            origin,
            "header length",
            format!("{header_len} bytes exceeds the {MAX_HEADER_BYTES}-byte limit"),
        ));
    }
    let mut header = vec![0u8; header_len];
    read::read_header(reader, &mut header, origin, "header")?;
    let header = std::str::from_utf8(&header)
        .map_err(|_| DataError::invalid(origin, "header", "is not UTF-8 text"))?;
    let parsed = parse_header(header)
        .map_err(|(field, message)| DataError::invalid(origin, field, message))?;
    let stored = stored_type(&parsed.descr)
        .map_err(|message| DataError::invalid(origin, "descr", message))?;
    if parsed.fortran_order {
        return Err(DataError::invalid(
            origin,
            "fortran_order",
            "True: Fortran-order arrays are not supported; save with np.ascontiguousarray(x)",
        ));
    }
    let len = read::payload_len(&parsed.shape, stored.size(), origin)?;
    let payload = read::read_payload(reader, len, origin)?;
    let data = read::decode(payload, stored, Endian::Little);
    Tensor::new(parsed.shape, data).map_err(|e| DataError::invalid(origin, "shape", e.to_string()))
}

/// The `descr` string of each type quench writes.
fn descr_of(data: &TensorData) -> Option<&'static str> {
    Some(match data {
        TensorData::F32(_) => "<f4",
        TensorData::U8(_) => "|u1",
        TensorData::I8(_) => "|i1",
        TensorData::I32(_) => "<i4",
        TensorData::I64(_) => "<i8",
        TensorData::Bool(_) => return None,
    })
}

/// The stored type of a `descr`, or a message listing what is supported.
fn stored_type(descr: &str) -> Result<Stored, String> {
    Ok(match descr {
        "<f4" => Stored::F32,
        "<f8" => Stored::F64,
        "|u1" | "<u1" => Stored::U8,
        "|i1" | "<i1" => Stored::I8,
        "<i4" => Stored::I32,
        "<i8" => Stored::I64,
        other if other.starts_with('>') => {
            return Err(format!(
                "'{other}' is big-endian; convert with x.astype(x.dtype.newbyteorder('<'))"
            ))
        }
        other => {
            return Err(format!(
                "'{other}' is not supported (<f4, <f8, |u1, |i1, <i4, <i8 are)"
            ))
        }
    })
}

/// The three keys of an `.npy` header.
#[derive(Debug, PartialEq)]
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// A value in the header's Python dict literal.
enum Value {
    Str(String),
    Bool(bool),
    Tuple(Vec<usize>),
}

/// Parses the header dict literal, e.g. `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`.
/// Errors are `(field, message)`.
fn parse_header(text: &str) -> Result<Header, (&'static str, String)> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    let bad = |m: String| ("header", m);
    p.expect(b'{').map_err(bad)?;
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    loop {
        p.skip_ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.string().map_err(bad)?;
        p.expect(b':').map_err(bad)?;
        let value = p.value().map_err(bad)?;
        let slot_ok = match (key.as_str(), value) {
            ("descr", Value::Str(s)) => descr.replace(s).is_none(),
            ("fortran_order", Value::Bool(b)) => fortran.replace(b).is_none(),
            ("shape", Value::Tuple(t)) => shape.replace(t).is_none(),
            ("descr" | "fortran_order" | "shape", _) => {
                return Err(bad(format!("key '{key}' has a value of the wrong kind")))
            }
            _ => return Err(bad(format!("unexpected key '{key}'"))),
        };
        if !slot_ok {
            return Err(bad(format!("key '{key}' appears twice")));
        }
        p.skip_ws();
        if !p.eat(b',') {
            p.expect(b'}').map_err(bad)?;
            break;
        }
    }
    if p.s[p.i..].iter().any(|b| !b.is_ascii_whitespace()) {
        return Err(bad("text after the closing brace".into()));
    }
    Ok(Header {
        descr: descr.ok_or(("descr", "missing".to_string()))?,
        fortran_order: fortran.ok_or(("fortran_order", "missing".to_string()))?,
        shape: shape.ok_or(("shape", "missing".to_string()))?,
    })
}

/// A cursor over the header text.
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.s.get(self.i).is_some_and(|b| b.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip_ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected '{}' at byte {}", c as char, self.i))
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.skip_ws();
        let quote = match self.s.get(self.i) {
            Some(&q @ (b'\'' | b'"')) => q,
            _ => return Err(format!("expected a quoted string at byte {}", self.i)),
        };
        let start = self.i + 1;
        let len = self.s[start..]
            .iter()
            .position(|&b| b == quote)
            .ok_or_else(|| format!("unterminated string at byte {}", self.i))?;
        let body = &self.s[start..start + len];
        if body.contains(&b'\\') {
            return Err(format!("escaped string at byte {}", self.i));
        }
        self.i = start + len + 1;
        Ok(String::from_utf8_lossy(body).into_owned())
    }

    fn value(&mut self) -> Result<Value, String> {
        self.skip_ws();
        let rest = &self.s[self.i..];
        if rest.starts_with(b"True") {
            self.i += 4;
            Ok(Value::Bool(true))
        } else if rest.starts_with(b"False") {
            self.i += 5;
            Ok(Value::Bool(false))
        } else if rest.starts_with(b"(") {
            self.i += 1;
            let mut dims = Vec::new();
            loop {
                if self.eat(b')') {
                    break;
                }
                dims.push(self.int()?);
                if !self.eat(b',') {
                    self.expect(b')')?;
                    break;
                }
            }
            Ok(Value::Tuple(dims))
        } else if rest.starts_with(b"[") {
            Err("structured (record) dtypes are not supported".into())
        } else {
            self.string().map(Value::Str)
        }
    }

    fn int(&mut self) -> Result<usize, String> {
        self.skip_ws();
        let start = self.i;
        let mut n: usize = 0;
        while let Some(d) = self.s.get(self.i).filter(|b| b.is_ascii_digit()) {
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(usize::from(d - b'0')))
                .ok_or_else(|| format!("dimension at byte {start} overflows"))?;
            self.i += 1;
        }
        if self.i == start {
            return Err(format!("expected a dimension at byte {start}"));
        }
        if self.s.get(self.i) == Some(&b'L') {
            self.i += 1; // Python 2 long suffix.
        }
        Ok(n)
    }
}

/// Writes `tensor` as a version 1.0 `.npy` file.
pub fn write_npy(path: &Path, tensor: &Tensor) -> Result<(), DataError> {
    let mut bytes = Vec::with_capacity(tensor.size_bytes() + 128);
    write_npy_to(&mut bytes, tensor, path)?;
    std::fs::write(path, bytes).map_err(|e| DataError::io(path, e))
}

/// Writes `tensor` in `.npy` form to `out`; `origin` names the destination in errors.
pub fn write_npy_to(out: &mut dyn Write, tensor: &Tensor, origin: &Path) -> Result<(), DataError> {
    let descr = descr_of(tensor.data()).ok_or_else(|| {
        DataError::invalid(
            origin,
            "descr",
            "bool tensors cannot be written as .npy by quench",
        )
    })?;
    let dims: Vec<String> = tensor.shape().iter().map(|d| d.to_string()).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Magic (6) + version (2) + length (2) + header, padded with spaces to a multiple of 64 and
    // ended by a newline, as numpy writes it.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let header_len = u16::try_from(header.len()).map_err(|_| {
        DataError::invalid(origin, "shape", format!("rank {} is too large", dims.len()))
    })?;
    let io = |e| DataError::io(origin, e);
    out.write_all(MAGIC).map_err(io)?;
    out.write_all(&[1, 0]).map_err(io)?;
    out.write_all(&header_len.to_le_bytes()).map_err(io)?;
    out.write_all(header.as_bytes()).map_err(io)?;
    let payload: Vec<u8> = match tensor.data() {
        TensorData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::U8(v) => v.clone(),
        TensorData::I8(v) => v.iter().map(|&x| x as u8).collect(),
        TensorData::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::Bool(_) => Vec::new(),
    };
    out.write_all(&payload).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `.npy` file with the given version, header text and payload, as numpy lays it out.
    fn npy_bytes(major: u8, header: &str, payload: &[u8]) -> Vec<u8> {
        let mut v = MAGIC.to_vec();
        v.extend_from_slice(&[major, 0]);
        if major == 1 {
            v.extend_from_slice(&(header.len() as u16).to_le_bytes());
        } else {
            v.extend_from_slice(&(header.len() as u32).to_le_bytes());
        }
        v.extend_from_slice(header.as_bytes());
        v.extend_from_slice(payload);
        v
    }

    fn read(bytes: &[u8]) -> Result<Tensor, DataError> {
        read_npy_from(&mut &bytes[..], Path::new("x.npy"))
    }

    fn field_of(err: DataError) -> String {
        match err {
            DataError::Invalid { field, .. } => field,
            other => panic!("expected Invalid, got {other}"),
        }
    }

    #[test]
    fn reads_every_version_and_dtype() {
        let f4: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        for major in [1, 2, 3] {
            let h = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n";
            let t = read(&npy_bytes(major, h, &f4)).unwrap();
            assert_eq!(t.shape(), &[2]);
            assert_eq!(t.as_f32().unwrap(), &[1.5, -2.0]);
        }
        let f8: Vec<u8> = [0.25f64, 3.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let h = "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2)}";
        let t = read(&npy_bytes(1, h, &f8)).unwrap();
        assert_eq!(
            (t.shape(), t.as_f32().unwrap()),
            (&[1usize, 2][..], &[0.25f32, 3.0][..])
        );

        let h = "{\"descr\": \"|u1\", \"fortran_order\": False, \"shape\": (3,)}";
        let t = read(&npy_bytes(1, h, &[0, 7, 255])).unwrap();
        assert_eq!(t.data(), &TensorData::U8(vec![0, 7, 255]));
        let h = "{'descr': '|i1', 'fortran_order': False, 'shape': (2,)}";
        let t = read(&npy_bytes(1, h, &[0xff, 5])).unwrap();
        assert_eq!(t.data(), &TensorData::I8(vec![-1, 5]));
        let h = "{'descr': '<i4', 'fortran_order': False, 'shape': (2,)}";
        let p: Vec<u8> = [-3i32, 9].iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(
            read(&npy_bytes(1, h, &p)).unwrap().data(),
            &TensorData::I32(vec![-3, 9])
        );
        let h = "{'shape': (), 'descr': '<i8', 'fortran_order': False}";
        let t = read(&npy_bytes(1, h, &(-7i64).to_le_bytes())).unwrap();
        assert_eq!((t.shape(), t.data()), (&[][..], &TensorData::I64(vec![-7])));
    }

    #[test]
    fn fortran_order_is_refused_clearly() {
        let h = "{'descr': '<f4', 'fortran_order': True, 'shape': (1, 1), }";
        let err = read(&npy_bytes(1, h, &[0; 4])).unwrap_err();
        assert!(err.to_string().contains("ascontiguousarray"), "{err}");
        assert_eq!(field_of(err), "fortran_order");
    }

    #[test]
    fn truncated_and_bad_headers_are_named() {
        let h = "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }";
        let err = read(&npy_bytes(1, h, &[0; 15])).unwrap_err();
        assert!(err.to_string().contains("x.npy"), "{err}");
        assert_eq!(field_of(err), "payload");
        let whole = npy_bytes(1, h, &[]);
        assert_eq!(
            field_of(read(&whole[..whole.len() - 5]).unwrap_err()),
            "header"
        );
        assert_eq!(field_of(read(&whole[..4]).unwrap_err()), "magic");

        let h = "{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }";
        let err = read(&npy_bytes(1, h, &[0; 4])).unwrap_err();
        assert!(err.to_string().contains("big-endian"), "{err}");
        let h = "{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }";
        assert_eq!(
            field_of(read(&npy_bytes(1, h, &[0; 8])).unwrap_err()),
            "descr"
        );
        let h = "{'descr': '<f4', 'shape': (1,), }";
        assert_eq!(
            field_of(read(&npy_bytes(1, h, &[0; 4])).unwrap_err()),
            "fortran_order"
        );
        let h = "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }";
        assert_eq!(
            field_of(read(&npy_bytes(1, h, &[0; 4])).unwrap_err()),
            "header"
        );
        let h = "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}";
        assert_eq!(
            field_of(read(&npy_bytes(1, h, &[0; 4])).unwrap_err()),
            "header"
        );
        assert_eq!(
            field_of(read(&npy_bytes(4, "{}", &[])).unwrap_err()),
            "version"
        );
    }

    #[test]
    fn absurd_shape_is_refused_before_allocating() {
        let h = "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967295, 4294967295), }";
        assert_eq!(
            field_of(read(&npy_bytes(1, h, &[0; 4])).unwrap_err()),
            "dims"
        );
        let h = "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }";
        assert_eq!(
            field_of(read(&npy_bytes(1, h, &[0; 4])).unwrap_err()),
            "header"
        );
    }

    #[test]
    fn written_files_read_back_and_are_aligned() {
        let dir = tempfile::tempdir().unwrap();
        for t in [
            Tensor::from_f32(vec![2, 3], vec![0.5, -1.0, 2.0, 3.0, 4.0, f32::MAX]).unwrap(),
            Tensor::from_i64(vec![3], vec![-1, 0, i64::MAX]).unwrap(),
            Tensor::new(vec![], TensorData::I32(vec![42])).unwrap(),
            Tensor::new(vec![2, 1, 1], TensorData::I8(vec![-128, 127])).unwrap(),
        ] {
            let p = dir.path().join("t.npy");
            write_npy(&p, &t).unwrap();
            let bytes = std::fs::read(&p).unwrap();
            let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
            assert_eq!((10 + header_len) % 64, 0);
            assert_eq!(bytes[10 + header_len - 1], b'\n');
            assert_eq!(read_npy(&p).unwrap(), t);
        }
        let b = Tensor::new(vec![1], TensorData::Bool(vec![true])).unwrap();
        assert!(write_npy(&dir.path().join("b.npy"), &b).is_err());
    }

    proptest::proptest! {
        #[test]
        fn round_trips_any_shape(dims in proptest::collection::vec(1usize..4, 0..4), seed in 0i64..1000) {
            let n: usize = dims.iter().product();
            let t = Tensor::from_i64(dims.clone(), (0..n as i64).map(|i| i * seed - 500).collect()).unwrap();
            let mut bytes = Vec::new();
            write_npy_to(&mut bytes, &t, Path::new("mem")).unwrap();
            proptest::prop_assert_eq!(read(&bytes).unwrap(), t);
        }

        #[test]
        fn arbitrary_bytes_never_panic(tail in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let mut bytes = MAGIC.to_vec();
            bytes.extend_from_slice(&tail);
            let _ = read(&bytes);
        }
    }
}

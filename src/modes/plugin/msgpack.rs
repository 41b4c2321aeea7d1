//! A small, strict msgpack reader producing a generic tree.
//!
//! Both things the agent hands us in msgpack are read through it: cty-encoded
//! configuration ([`super::cty`]) and driver state written by the Go plugin
//! ([`super::go_state`]). Input comes from outside, so every length is checked against
//! the bytes that remain before anything is allocated, and nesting is bounded.

use std::fmt;

/// Deeper nesting than any configuration needs; bounds recursion on hostile input.
const MAX_DEPTH: usize = 128;

/// One decoded msgpack value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Msgpack {
    Nil,
    Bool(bool),
    /// Every integer width; i128 holds both the u64 and the i64 range.
    Int(i128),
    F32(f32),
    F64(f64),
    /// A str value as sent: it may not be valid UTF-8.
    Str(Vec<u8>),
    Bin(Vec<u8>),
    Array(Vec<Msgpack>),
    Map(Vec<(Msgpack, Msgpack)>),
    Ext(i8, Vec<u8>),
}

impl Msgpack {
    /// The text of a str (or, leniently, bin) value that is valid UTF-8.
    pub(crate) fn as_text(&self) -> Option<&str> {
        match self {
            Msgpack::Str(bytes) | Msgpack::Bin(bytes) => std::str::from_utf8(bytes).ok(),
            _ => None,
        }
    }

    /// Short name of the kind of value, for error messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Msgpack::Nil => "nil",
            Msgpack::Bool(_) => "bool",
            Msgpack::Int(_) => "integer",
            Msgpack::F32(_) | Msgpack::F64(_) => "float",
            Msgpack::Str(_) => "str",
            Msgpack::Bin(_) => "bin",
            Msgpack::Array(_) => "array",
            Msgpack::Map(_) => "map",
            Msgpack::Ext(..) => "ext",
        }
    }
}

/// Why bytes are not one well-formed msgpack value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MsgpackError {
    /// Byte offset where the problem was found.
    pub offset: usize,
    pub reason: MsgpackErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MsgpackErrorKind {
    Truncated,
    ReservedMarker(u8),
    TooDeep,
    TrailingBytes,
}

impl fmt::Display for MsgpackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            MsgpackErrorKind::Truncated => {
                write!(
                    f,
                    "msgpack data ends in the middle of a value (byte {})",
                    self.offset
                )
            }
            MsgpackErrorKind::ReservedMarker(marker) => write!(
                f,
                "invalid msgpack marker 0x{marker:02x} at byte {}",
                self.offset
            ),
            MsgpackErrorKind::TooDeep => write!(
                f,
                "msgpack nesting deeper than {MAX_DEPTH} levels at byte {}",
                self.offset
            ),
            MsgpackErrorKind::TrailingBytes => write!(
                f,
                "unexpected bytes after the msgpack value (byte {})",
                self.offset
            ),
        }
    }
}

impl std::error::Error for MsgpackError {}

/// Decodes exactly one value; bytes after it are an error.
pub(crate) fn read(bytes: &[u8]) -> Result<Msgpack, MsgpackError> {
    let mut reader = Reader { bytes, pos: 0 };
    let value = reader.value(0)?;
    if reader.pos != bytes.len() {
        return Err(reader.error(MsgpackErrorKind::TrailingBytes));
    }
    Ok(value)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn error(&self, reason: MsgpackErrorKind) -> MsgpackError {
        MsgpackError {
            offset: self.pos,
            reason,
        }
    }

    fn take(&mut self, len: usize) -> Result<&[u8], MsgpackError> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| self.error(MsgpackErrorKind::Truncated))?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], MsgpackError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, MsgpackError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, MsgpackError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, MsgpackError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, MsgpackError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn bytes_of(&mut self, len: usize) -> Result<Vec<u8>, MsgpackError> {
        Ok(self.take(len)?.to_vec())
    }

    /// A container announcing `count` elements needs at least `count * min_size` bytes;
    /// checking that first keeps a forged length from reserving huge memory.
    fn check_count(&self, count: usize, min_size: usize) -> Result<(), MsgpackError> {
        let needed = count.saturating_mul(min_size);
        if needed > self.bytes.len() - self.pos {
            return Err(self.error(MsgpackErrorKind::Truncated));
        }
        Ok(())
    }

    fn value(&mut self, depth: usize) -> Result<Msgpack, MsgpackError> {
        if depth > MAX_DEPTH {
            return Err(self.error(MsgpackErrorKind::TooDeep));
        }
        let start = self.pos;
        let marker = self.u8()?;
        let value = match marker {
            0x00..=0x7f => Msgpack::Int(i128::from(marker)),
            0x80..=0x8f => self.map(usize::from(marker & 0x0f), depth)?,
            0x90..=0x9f => self.seq(usize::from(marker & 0x0f), depth)?,
            0xa0..=0xbf => Msgpack::Str(self.bytes_of(usize::from(marker & 0x1f))?),
            0xc0 => Msgpack::Nil,
            0xc2 => Msgpack::Bool(false),
            0xc3 => Msgpack::Bool(true),
            0xc4 => {
                let len = usize::from(self.u8()?);
                Msgpack::Bin(self.bytes_of(len)?)
            }
            0xc5 => {
                let len = usize::from(self.u16()?);
                Msgpack::Bin(self.bytes_of(len)?)
            }
            0xc6 => {
                let len = self.len32()?;
                Msgpack::Bin(self.bytes_of(len)?)
            }
            0xc7 => {
                let len = usize::from(self.u8()?);
                self.ext(len)?
            }
            0xc8 => {
                let len = usize::from(self.u16()?);
                self.ext(len)?
            }
            0xc9 => {
                let len = self.len32()?;
                self.ext(len)?
            }
            0xca => Msgpack::F32(f32::from_bits(self.u32()?)),
            0xcb => Msgpack::F64(f64::from_bits(self.u64()?)),
            0xcc => Msgpack::Int(i128::from(self.u8()?)),
            0xcd => Msgpack::Int(i128::from(self.u16()?)),
            0xce => Msgpack::Int(i128::from(self.u32()?)),
            0xcf => Msgpack::Int(i128::from(self.u64()?)),
            0xd0 => Msgpack::Int(i128::from(i8::from_be_bytes(self.array()?))),
            0xd1 => Msgpack::Int(i128::from(i16::from_be_bytes(self.array()?))),
            0xd2 => Msgpack::Int(i128::from(i32::from_be_bytes(self.array()?))),
            0xd3 => Msgpack::Int(i128::from(i64::from_be_bytes(self.array()?))),
            0xd4 => self.ext(1)?,
            0xd5 => self.ext(2)?,
            0xd6 => self.ext(4)?,
            0xd7 => self.ext(8)?,
            0xd8 => self.ext(16)?,
            0xd9 => {
                let len = usize::from(self.u8()?);
                Msgpack::Str(self.bytes_of(len)?)
            }
            0xda => {
                let len = usize::from(self.u16()?);
                Msgpack::Str(self.bytes_of(len)?)
            }
            0xdb => {
                let len = self.len32()?;
                Msgpack::Str(self.bytes_of(len)?)
            }
            0xdc => {
                let len = usize::from(self.u16()?);
                self.seq(len, depth)?
            }
            0xdd => {
                let len = self.len32()?;
                self.seq(len, depth)?
            }
            0xde => {
                let len = usize::from(self.u16()?);
                self.map(len, depth)?
            }
            0xdf => {
                let len = self.len32()?;
                self.map(len, depth)?
            }
            0xe0..=0xff => Msgpack::Int(i128::from(i8::from_be_bytes([marker]))),
            0xc1 => {
                self.pos = start;
                return Err(self.error(MsgpackErrorKind::ReservedMarker(marker)));
            }
        };
        Ok(value)
    }

    fn len32(&mut self) -> Result<usize, MsgpackError> {
        let len = self.u32()?;
        usize::try_from(len).map_err(|_| self.error(MsgpackErrorKind::Truncated))
    }

    fn ext(&mut self, len: usize) -> Result<Msgpack, MsgpackError> {
        let tag = i8::from_be_bytes(self.array()?);
        Ok(Msgpack::Ext(tag, self.bytes_of(len)?))
    }

    fn seq(&mut self, count: usize, depth: usize) -> Result<Msgpack, MsgpackError> {
        self.check_count(count, 1)?;
        let mut items = Vec::with_capacity(count);
        for _ in 0..count {
            items.push(self.value(depth + 1)?);
        }
        Ok(Msgpack::Array(items))
    }

    fn map(&mut self, count: usize, depth: usize) -> Result<Msgpack, MsgpackError> {
        self.check_count(count, 2)?;
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            let key = self.value(depth + 1)?;
            let value = self.value(depth + 1)?;
            entries.push((key, value));
        }
        Ok(Msgpack::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(bytes: &[u8]) -> i128 {
        match read(bytes).unwrap() {
            Msgpack::Int(i) => i,
            other => panic!("not an int: {other:?}"),
        }
    }

    #[test]
    fn every_integer_width() {
        assert_eq!(int(&[0x05]), 5);
        assert_eq!(int(&[0x7f]), 127);
        assert_eq!(int(&[0xff]), -1);
        assert_eq!(int(&[0xe0]), -32);
        assert_eq!(int(&[0xcc, 0x80]), 128);
        assert_eq!(int(&[0xcd, 0x1f, 0x90]), 8080);
        assert_eq!(int(&[0xce, 0xff, 0xff, 0xff, 0xff]), 4_294_967_295);
        assert_eq!(int(&[0xcf, 0, 0, 0, 1, 0, 0, 0, 0]), 4_294_967_296);
        assert_eq!(
            int(&[0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            i128::from(u64::MAX)
        );
        assert_eq!(int(&[0xd0, 0xdf]), -33);
        assert_eq!(int(&[0xd1, 0xff, 0x00]), -256);
        assert_eq!(int(&[0xd2, 0xff, 0xff, 0x00, 0x00]), -65536);
        assert_eq!(
            int(&[0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            i128::from(i64::MIN)
        );
    }

    #[test]
    fn floats_strings_bins() {
        assert_eq!(
            read(&[0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0]).unwrap(),
            Msgpack::F64(1.5)
        );
        assert_eq!(read(&[0xca, 0x3f, 0xc0, 0, 0]).unwrap(), Msgpack::F32(1.5));
        assert_eq!(read(&[0xa2, b's', b'h']).unwrap().as_text(), Some("sh"));
        assert_eq!(read(&[0xd9, 1, b'x']).unwrap().as_text(), Some("x"));
        assert_eq!(read(&[0xda, 0, 1, b'x']).unwrap().as_text(), Some("x"));
        assert_eq!(
            read(&[0xdb, 0, 0, 0, 1, b'x']).unwrap().as_text(),
            Some("x")
        );
        assert_eq!(read(&[0xc4, 1, 7]).unwrap(), Msgpack::Bin(vec![7]));
        assert_eq!(read(&[0xc5, 0, 1, 7]).unwrap(), Msgpack::Bin(vec![7]));
        assert_eq!(read(&[0xc6, 0, 0, 0, 1, 7]).unwrap(), Msgpack::Bin(vec![7]));
        assert_eq!(read(&[0xd4, 0, 0]).unwrap(), Msgpack::Ext(0, vec![0]));
        assert_eq!(
            read(&[0xc7, 2, 0x0c, 0x80, 0xc0]).unwrap(),
            Msgpack::Ext(12, vec![0x80, 0xc0])
        );
    }

    #[test]
    fn containers() {
        assert_eq!(
            read(&[0x92, 0xc0, 0xc3]).unwrap(),
            Msgpack::Array(vec![Msgpack::Nil, Msgpack::Bool(true)])
        );
        assert_eq!(
            read(&[0xdc, 0, 1, 0xc2]).unwrap(),
            Msgpack::Array(vec![Msgpack::Bool(false)])
        );
        assert_eq!(
            read(&[0x81, 0xa1, b'a', 0x01]).unwrap(),
            Msgpack::Map(vec![(Msgpack::Str(b"a".to_vec()), Msgpack::Int(1))])
        );
        assert_eq!(
            read(&[0xde, 0, 1, 0xa1, b'a', 0x01]).unwrap(),
            read(&[0x81, 0xa1, b'a', 0x01]).unwrap()
        );
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let truncated: &[&[u8]] = &[
            &[],
            &[0xa3, b'a'],
            &[0xcd, 0x01],
            &[0x92, 0x01],
            &[0x81, 0xa1, b'a'],
            &[0xdd, 0xff, 0xff, 0xff, 0xff],
            &[0xdf, 0xff, 0xff, 0xff, 0xff],
            &[0xc6, 0xff, 0xff, 0xff, 0xff],
        ];
        for bytes in truncated {
            let err = read(bytes).unwrap_err();
            assert_eq!(err.reason, MsgpackErrorKind::Truncated, "{bytes:02x?}");
        }
        let err = read(&[0x91, 0xc1]).unwrap_err();
        assert_eq!(err.reason, MsgpackErrorKind::ReservedMarker(0xc1));
        assert_eq!(err.offset, 1);
        assert_eq!(err.to_string(), "invalid msgpack marker 0xc1 at byte 1");
        let err = read(&[0x01, 0x02]).unwrap_err();
        assert_eq!(err.reason, MsgpackErrorKind::TrailingBytes);
        let deep = vec![0x91; MAX_DEPTH + 2];
        assert_eq!(read(&deep).unwrap_err().reason, MsgpackErrorKind::TooDeep);
    }
}

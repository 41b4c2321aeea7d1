//! `options { checksum = "type:hex" }`, as go-getter reads it. The digests come from
//! ring, already linked for TLS; md5 is not offered by ring and is refused at validate.

use std::fmt;

/// A digest an artifact must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    pub kind: DigestKind,
    /// Lower-case hex.
    pub hex: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestKind {
    Sha1,
    Sha256,
    Sha512,
}

impl DigestKind {
    fn name(self) -> &'static str {
        match self {
            DigestKind::Sha1 => "sha1",
            DigestKind::Sha256 => "sha256",
            DigestKind::Sha512 => "sha512",
        }
    }

    fn algorithm(self) -> &'static ring::digest::Algorithm {
        match self {
            DigestKind::Sha1 => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            DigestKind::Sha256 => &ring::digest::SHA256,
            DigestKind::Sha512 => &ring::digest::SHA512,
        }
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.name(), self.hex)
    }
}

impl Checksum {
    /// Reads `type:hex`; the message says what a valid value looks like.
    pub fn parse(text: &str) -> Result<Checksum, String> {
        let Some((kind, hex)) = text.split_once(':') else {
            return Err(format!(
                "invalid checksum {text:?}: expected TYPE:HEX, e.g. \"sha256:<64 hex digits>\""
            ));
        };
        let kind = match kind.to_ascii_lowercase().as_str() {
            "sha1" => DigestKind::Sha1,
            "sha256" => DigestKind::Sha256,
            "sha512" => DigestKind::Sha512,
            "md5" => {
                return Err(format!(
                    "invalid checksum {text:?}: md5 is not supported by the runner; use sha256, sha512 or sha1"
                ))
            }
            other => {
                return Err(format!(
                    "invalid checksum {text:?}: unknown type {other:?}; use sha256, sha512 or sha1"
                ))
            }
        };
        let want = kind.algorithm().output_len() * 2;
        if hex.len() != want || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "invalid checksum {text:?}: a {} checksum is {want} hex digits",
                kind.name()
            ));
        }
        Ok(Checksum {
            kind,
            hex: hex.to_ascii_lowercase(),
        })
    }

    pub fn hasher(&self) -> Hasher {
        Hasher {
            kind: self.kind,
            context: ring::digest::Context::new(self.kind.algorithm()),
        }
    }
}

/// A running digest of the bytes fetched.
pub struct Hasher {
    kind: DigestKind,
    context: ring::digest::Context,
}

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        self.context.update(bytes);
    }

    pub fn finish(self) -> Checksum {
        let digest = self.context.finish();
        let hex = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        Checksum {
            kind: self.kind,
            hex,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_known_types_and_normalizes_case() {
        let c = Checksum::parse(&format!("SHA256:{}", EMPTY_SHA256.to_uppercase())).unwrap();
        assert_eq!(c.kind, DigestKind::Sha256);
        assert_eq!(c.to_string(), format!("sha256:{EMPTY_SHA256}"));
        let sha1 = Checksum::parse("sha1:da39a3ee5e6b4b0d3255bfef95601890afd80709").unwrap();
        assert_eq!(sha1.kind, DigestKind::Sha1);
        assert_eq!(
            Checksum::parse(&format!("sha512:{}", "a".repeat(128)))
                .unwrap()
                .kind,
            DigestKind::Sha512
        );
    }

    #[test]
    fn refuses_malformed_values_saying_why() {
        for (text, why) in [
            ("deadbeef", "expected TYPE:HEX"),
            (
                "md5:d41d8cd98f00b204e9800998ecf8427e",
                "md5 is not supported",
            ),
            ("crc32:00000000", "unknown type \"crc32\""),
            ("sha256:abc", "64 hex digits"),
            (&format!("sha256:{}", "g".repeat(64)), "64 hex digits"),
            ("sha1:", "40 hex digits"),
        ] {
            let err = Checksum::parse(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn hashes_match_known_digests_across_chunks() {
        let want = Checksum::parse(
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        )
        .unwrap();
        let mut h = want.hasher();
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(h.finish(), want);
        let empty = Checksum::parse(&format!("sha256:{EMPTY_SHA256}")).unwrap();
        let mut h = empty.hasher();
        h.update(b"not empty");
        assert_ne!(h.finish(), empty);
        let sha1 = Checksum::parse("sha1:a9993e364706816aba3e25717850c26c9cd0d89d").unwrap();
        let mut h = sha1.hasher();
        h.update(b"abc");
        assert_eq!(h.finish(), sha1);
    }
}

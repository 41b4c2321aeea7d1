//! The agent's side of cty-msgpack: typed configuration values and their encoding with
//! `msgpack.Marshal(val, val.Type())` rules: nil, compact
//! integers, float64 only for exact binary fractions, other numbers as decimal strings,
//! smallest str headers, arrays, maps with sorted keys.

use std::collections::BTreeMap;

/// A known cty value. Lists, sets and tuples all encode as arrays; maps and objects as
/// maps, so the kind of collection does not need tracking.
#[derive(Debug, Clone, PartialEq)]
pub enum Cty {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    List(Vec<Cty>),
    Map(BTreeMap<String, Cty>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Number {
    Int(i128),
    Float(f64),
    /// Not exactly representable as a float64: sent as its decimal text.
    Decimal(String),
}

impl Number {
    /// A number from its decimal text, as cty's big.Float would hold it.
    pub fn parse(text: &str) -> Option<Number> {
        let text = text.trim();
        if let Ok(int) = text.parse::<i128>() {
            return Some(Number::Int(int));
        }
        let float: f64 = text.parse().ok()?;
        if !float.is_finite() {
            return None;
        }
        if float.fract() == 0.0 && float.abs() < 9.0e18 {
            return Some(Number::Int(float as i128));
        }
        Some(if decimal_is_binary_exact(text) {
            Number::Float(float)
        } else {
            Number::Decimal(text.to_string())
        })
    }

    pub fn text(&self) -> String {
        match self {
            Number::Int(i) => i.to_string(),
            Number::Float(f) => f.to_string(),
            Number::Decimal(d) => d.clone(),
        }
    }
}

/// Whether a plain decimal `a.b` is a binary fraction: N / 10^k reduces to a power-of-two
/// denominator exactly when 5^k divides N.
fn decimal_is_binary_exact(text: &str) -> bool {
    let digits = text.trim_start_matches(['-', '+']);
    let Some((whole, fraction)) = digits.split_once('.') else {
        return !digits.contains(['e', 'E']);
    };
    if fraction.contains(['e', 'E']) || fraction.len() > 25 {
        return false;
    }
    let Ok(numerator) = format!("{whole}{fraction}").parse::<u128>() else {
        return false;
    };
    let power = 5u128.pow(u32::try_from(fraction.len()).unwrap_or(u32::MAX));
    numerator % power == 0
}

pub fn string(text: &str) -> Cty {
    Cty::String(text.to_string())
}

pub fn object<const N: usize>(entries: [(&str, Cty); N]) -> Cty {
    Cty::Map(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

pub fn encode(value: &Cty) -> Vec<u8> {
    let mut out = Vec::new();
    write(value, &mut out);
    out
}

fn write(value: &Cty, out: &mut Vec<u8>) {
    match value {
        Cty::Null => out.push(0xc0),
        Cty::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Cty::Number(Number::Int(i)) => write_int(*i, out),
        Cty::Number(Number::Float(f)) => {
            out.push(0xcb);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        Cty::Number(Number::Decimal(text)) => write_str(text, out),
        Cty::String(text) => write_str(text, out),
        Cty::List(items) => {
            write_len(items.len(), [0x90, 0xdc, 0xdd], 15, out);
            items.iter().for_each(|item| write(item, out));
        }
        Cty::Map(entries) => {
            write_len(entries.len(), [0x80, 0xde, 0xdf], 15, out);
            for (key, item) in entries {
                write_str(key, out);
                write(item, out);
            }
        }
    }
}

fn write_len(len: usize, markers: [u8; 3], fix_max: usize, out: &mut Vec<u8>) {
    if len <= fix_max {
        out.push(markers[0] + u8::try_from(len).unwrap());
    } else if let Ok(short) = u16::try_from(len) {
        out.push(markers[1]);
        out.extend_from_slice(&short.to_be_bytes());
    } else {
        out.push(markers[2]);
        out.extend_from_slice(&u32::try_from(len).unwrap().to_be_bytes());
    }
}

fn write_str(text: &str, out: &mut Vec<u8>) {
    let len = text.len();
    if len < 32 {
        out.push(0xa0 + u8::try_from(len).unwrap());
    } else if let Ok(short) = u8::try_from(len) {
        out.push(0xd9);
        out.push(short);
    } else {
        write_len(len, [0, 0xda, 0xdb], 0, out);
    }
    out.extend_from_slice(text.as_bytes());
}

fn write_int(i: i128, out: &mut Vec<u8>) {
    match i {
        0..=127 => out.push(u8::try_from(i).unwrap()),
        -32..=-1 => out.push(i8::try_from(i).unwrap().to_be_bytes()[0]),
        128..=0xff => {
            out.push(0xcc);
            out.push(u8::try_from(i).unwrap());
        }
        0x100..=0xffff => {
            out.push(0xcd);
            out.extend_from_slice(&u16::try_from(i).unwrap().to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(0xce);
            out.extend_from_slice(&u32::try_from(i).unwrap().to_be_bytes());
        }
        _ if i > 0 => {
            out.push(0xcf);
            out.extend_from_slice(&u64::try_from(i).unwrap().to_be_bytes());
        }
        -128..=-33 => {
            out.push(0xd0);
            out.extend_from_slice(&i8::try_from(i).unwrap().to_be_bytes());
        }
        -32768..=-129 => {
            out.push(0xd1);
            out.extend_from_slice(&i16::try_from(i).unwrap().to_be_bytes());
        }
        -2_147_483_648..=-32769 => {
            out.push(0xd2);
            out.extend_from_slice(&i32::try_from(i).unwrap().to_be_bytes());
        }
        _ => {
            out.push(0xd3);
            out.extend_from_slice(&i64::try_from(i).unwrap().to_be_bytes());
        }
    }
}

#[test]
fn encoder_matches_the_reference_bytes() {
    // Reference encodings of these values, byte for byte.
    let cases: [(&str, &[u8]); 8] = [
        ("8080", &[0xcd, 0x1f, 0x90]),
        ("1.5", &[0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0]),
        ("0.1", &[0xa3, 0x30, 0x2e, 0x31]),
        ("3.0", &[0x03]),
        ("-1", &[0xff]),
        ("-33", &[0xd0, 0xdf]),
        ("128", &[0xcc, 0x80]),
        ("4294967296", &[0xcf, 0, 0, 0, 1, 0, 0, 0, 0]),
    ];
    for (text, bytes) in cases {
        assert_eq!(
            encode(&Cty::Number(Number::parse(text).unwrap())),
            bytes,
            "{text}"
        );
    }
    let empty = object([
        ("auth", Cty::Null),
        ("labels", Cty::Null),
        ("mount", Cty::List(vec![])),
        ("pid_mode", string("private")),
    ]);
    let mut expected = vec![0x84, 0xa4];
    expected.extend_from_slice(b"auth");
    expected.extend_from_slice(&[0xc0, 0xa6]);
    expected.extend_from_slice(b"labels");
    expected.extend_from_slice(&[0xc0, 0xa5]);
    expected.extend_from_slice(b"mount");
    expected.extend_from_slice(&[0x90, 0xa8]);
    expected.extend_from_slice(b"pid_mode");
    expected.extend_from_slice(&[0xa7]);
    expected.extend_from_slice(b"private");
    assert_eq!(encode(&empty), expected);
}

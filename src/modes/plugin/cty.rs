//! cty-msgpack (what the agent sends in `msgpack_config` / `msgpack_driver_config`) into
//! `serde_json::Value`, which the core's `DriverConfig::from_value` and
//! `TaskConfig::from_value` read.
//!
//! The decoder needs no schema: the agent encodes every value against its own concrete
//! type, so the msgpack shape already says what it is.
//! Rules (§5.2–5.5):
//! * nil → null; bool → bool; every integer width → a JSON integer; float32/64 → a JSON
//!   number (infinities and NaN have no JSON form and are rejected).
//! * str → string. A number cty cannot send exactly as a float64 (e.g. `0.1`) arrives as
//!   a str holding its decimal text and stays a string: the core's readers accept numbers
//!   written as decimal strings. bin → string when it is UTF-8 (lenient, as go-cty is).
//! * array (list, set, tuple) → array; map and object → object (keys must be strings).
//! * `[bin(type JSON), value]`, the dynamic wrapper, is unwrapped to the value.
//! * An unknown value (any msgpack ext) is rejected: Nomad only sends known values.
//!
//! Errors name the offending field as a path from `config` (`config.auth.username`,
//! `config.args[1]`).

use std::fmt;

use serde_json::{Map, Number, Value};

use super::msgpack::{self, Msgpack, MsgpackError};

const ROOT: &str = "config";

/// A configuration value that cannot be turned into JSON, with the field it was found in.
#[derive(Debug, Clone, PartialEq)]
pub struct CtyError {
    /// Path of the field, e.g. `config.labels[0].a`; `config` for the whole value.
    pub field: String,
    pub reason: CtyErrorKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CtyErrorKind {
    /// The bytes are not one well-formed msgpack value.
    Malformed(String),
    /// A cty unknown value, sent as msgpack ext `ext_type`.
    Unknown {
        ext_type: i8,
    },
    InvalidUtf8,
    NonStringKey {
        found: &'static str,
    },
    NotFinite,
}

impl fmt::Display for CtyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = &self.field;
        match &self.reason {
            CtyErrorKind::Malformed(reason) => {
                write!(f, "{field}: not a valid cty-msgpack value: {reason}")
            }
            CtyErrorKind::Unknown { ext_type } => write!(
                f,
                "{field}: unknown value (msgpack ext type {ext_type}); only known values can be configured"
            ),
            CtyErrorKind::InvalidUtf8 => write!(f, "{field}: string is not valid UTF-8"),
            CtyErrorKind::NonStringKey { found } => {
                write!(f, "{field}: map key is a msgpack {found}, expected a string")
            }
            CtyErrorKind::NotFinite => {
                write!(f, "{field}: number is infinite or NaN, which no option accepts")
            }
        }
    }
}

impl std::error::Error for CtyError {}

/// Decodes one cty-msgpack value. Empty input (no configuration) is `null`.
pub fn decode(bytes: &[u8]) -> Result<Value, CtyError> {
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    let tree = msgpack::read(bytes).map_err(|e: MsgpackError| CtyError {
        field: ROOT.to_string(),
        reason: CtyErrorKind::Malformed(e.to_string()),
    })?;
    to_json(tree, &mut ROOT.to_string())
}

fn fail(path: &str, reason: CtyErrorKind) -> CtyError {
    CtyError {
        field: path.to_string(),
        reason,
    }
}

fn to_json(value: Msgpack, path: &mut String) -> Result<Value, CtyError> {
    Ok(match value {
        Msgpack::Nil => Value::Null,
        Msgpack::Bool(b) => Value::Bool(b),
        Msgpack::Int(i) => integer(i),
        Msgpack::F32(f) => float(f64::from(f), path)?,
        Msgpack::F64(f) => float(f, path)?,
        Msgpack::Str(bytes) | Msgpack::Bin(bytes) => Value::String(
            String::from_utf8(bytes).map_err(|_| fail(path, CtyErrorKind::InvalidUtf8))?,
        ),
        Msgpack::Ext(ext_type, _) => return Err(fail(path, CtyErrorKind::Unknown { ext_type })),
        Msgpack::Array(items) => match dynamic_payload(items) {
            Ok(inner) => to_json(inner, path)?,
            Err(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (index, item) in items.into_iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{index}]"));
                    out.push(to_json(item, path)?);
                    path.truncate(len);
                }
                Value::Array(out)
            }
        },
        Msgpack::Map(entries) => {
            let mut out = Map::new();
            for (key, item) in entries {
                let key = match key {
                    Msgpack::Str(bytes) | Msgpack::Bin(bytes) => String::from_utf8(bytes)
                        .map_err(|_| fail(path, CtyErrorKind::InvalidUtf8))?,
                    other => {
                        return Err(fail(
                            path,
                            CtyErrorKind::NonStringKey {
                                found: other.kind(),
                            },
                        ))
                    }
                };
                let len = path.len();
                path.push('.');
                path.push_str(&key);
                let item = to_json(item, path)?;
                path.truncate(len);
                out.insert(key, item);
            }
            Value::Object(out)
        }
    })
}

fn integer(i: i128) -> Value {
    if let Ok(signed) = i64::try_from(i) {
        Value::Number(signed.into())
    } else if let Ok(unsigned) = u64::try_from(i) {
        Value::Number(unsigned.into())
    } else {
        // msgpack integers never exceed the u64/i64 range.
        Value::String(i.to_string())
    }
}

fn float(f: f64, path: &str) -> Result<Value, CtyError> {
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| fail(path, CtyErrorKind::NotFinite))
}

/// The value inside a dynamic wrapper `[bin(type JSON), value]`, or the items back when
/// the array is an ordinary list.
fn dynamic_payload(mut items: Vec<Msgpack>) -> Result<Msgpack, Vec<Msgpack>> {
    let is_wrapper = items.len() == 2
        && matches!(&items[0], Msgpack::Bin(type_json)
            if serde_json::from_slice::<Value>(type_json).is_ok_and(|t| is_cty_type(&t)));
    match (is_wrapper, items.pop()) {
        (true, Some(payload)) => Ok(payload),
        (_, Some(last)) => {
            items.push(last);
            Err(items)
        }
        (_, None) => Err(items),
    }
}

/// Whether `json` is a cty type in its JSON form (`"string"`, `["list","number"]`,
/// `["object",{"a":"bool"}]`, ...).
fn is_cty_type(json: &Value) -> bool {
    match json {
        Value::String(name) => matches!(name.as_str(), "string" | "number" | "bool" | "dynamic"),
        Value::Array(parts) => match parts.as_slice() {
            [Value::String(kind), element] if matches!(kind.as_str(), "list" | "set" | "map") => {
                is_cty_type(element)
            }
            [Value::String(kind), Value::Array(elements)] if kind == "tuple" => {
                elements.iter().all(is_cty_type)
            }
            [Value::String(kind), Value::Object(attributes), rest @ ..]
                if kind == "object" && rest.len() <= 1 =>
            {
                attributes.values().all(is_cty_type)
                    && rest.iter().all(|optional| {
                        matches!(optional, Value::Array(names) if names.iter().all(Value::is_string))
                    })
            }
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Builds bytes from the hex-and-"text" notation of the reference (§5.4).
    fn bytes(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    fn s(text: &str) -> Vec<u8> {
        let mut out = vec![0xa0 + u8::try_from(text.len()).unwrap()];
        out.extend_from_slice(text.as_bytes());
        out
    }

    #[test]
    fn example_a_plain_values() {
        let input = bytes(&[
            &[0x83],
            &s("args"),
            &[0x91, 0xa2, 0x2d, 0x76],
            &s("entrypoint"),
            &[0xa2, 0x73, 0x68],
            &s("image"),
            &s("redis:7"),
        ]);
        assert_eq!(
            decode(&input).unwrap(),
            json!({"args": ["-v"], "entrypoint": "sh", "image": "redis:7"})
        );
    }

    #[test]
    fn example_b_null_and_tuple() {
        let input = bytes(&[
            &[0x83],
            &s("args"),
            &[0xc0],
            &s("entrypoint"),
            &[0x92, 0xa2, 0x73, 0x68, 0xa2, 0x2d, 0x63],
            &s("image"),
            &s("redis:7"),
        ]);
        assert_eq!(
            decode(&input).unwrap(),
            json!({"args": null, "entrypoint": ["sh", "-c"], "image": "redis:7"})
        );
    }

    #[test]
    fn example_c_converted_list() {
        let input = bytes(&[
            &[0x83],
            &s("args"),
            &[0x92, 0xa1, 0x31, 0xa1, 0x32],
            &s("entrypoint"),
            &[0xc0],
            &s("image"),
            &[0xa1, 0x78],
        ]);
        assert_eq!(
            decode(&input).unwrap(),
            json!({"args": ["1", "2"], "entrypoint": null, "image": "x"})
        );
    }

    #[test]
    fn example_d_object_attribute() {
        let input = bytes(&[
            &[0x81],
            &s("entrypoint"),
            &[0x82, 0xa1, 0x61, 0x01, 0xa1, 0x62, 0xc3],
        ]);
        assert_eq!(
            decode(&input).unwrap(),
            json!({"entrypoint": {"a": 1, "b": true}})
        );
    }

    #[test]
    fn example_e_numbers() {
        let cases: &[(&[u8], Value)] = &[
            (&[0xcd, 0x1f, 0x90], json!(8080)),
            (&[0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0], json!(1.5)),
            (&[0xa3, 0x30, 0x2e, 0x31], json!("0.1")),
            (&[0x03], json!(3)),
            (&[0xff], json!(-1)),
            (&[0xd0, 0xdf], json!(-33)),
            (&[0xcc, 0x80], json!(128)),
            (&[0xcf, 0, 0, 0, 1, 0, 0, 0, 0], json!(4_294_967_296_u64)),
            (
                &[0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                json!(u64::MAX),
            ),
            (&[0xd1, 0xfc, 0x18], json!(-1000)),
            (&[0xd2, 0x80, 0, 0, 0], json!(i32::MIN)),
            (&[0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0], json!(i64::MIN)),
            (&[0xca, 0x40, 0x20, 0, 0], json!(2.5)),
        ];
        for (input, expected) in cases {
            assert_eq!(&decode(input).unwrap(), expected, "{input:02x?}");
        }
    }

    #[test]
    fn example_f_blocks() {
        let empty = bytes(&[
            &[0x84],
            &s("auth"),
            &[0xc0],
            &s("labels"),
            &[0xc0],
            &s("mount"),
            &[0x90],
            &s("pid_mode"),
            &s("private"),
        ]);
        assert_eq!(
            decode(&empty).unwrap(),
            json!({"auth": null, "labels": null, "mount": [], "pid_mode": "private"})
        );
        let full = bytes(&[
            &[0x84],
            &s("auth"),
            &[0x81],
            &s("username"),
            &[0xa1, 0x75],
            &s("labels"),
            &[0x81, 0xa1, 0x61, 0xa1, 0x31],
            &s("mount"),
            &[0x91, 0x81],
            &s("target"),
            &[0xa2, 0x2f, 0x61],
            &s("pid_mode"),
            &s("host"),
        ]);
        assert_eq!(
            decode(&full).unwrap(),
            json!({
                "auth": {"username": "u"},
                "labels": {"a": "1"},
                "mount": [{"target": "/a"}],
                "pid_mode": "host",
            })
        );
    }

    #[test]
    fn example_g_interpolated_string() {
        let input = [0xa8, 0x2f, 0x6c, 0x6f, 0x63, 0x61, 0x6c, 0x2f, 0x78];
        assert_eq!(decode(&input).unwrap(), json!("/local/x"));
    }

    #[test]
    fn example_h_dynamic_wrapper() {
        let string = bytes(&[&[0x92, 0xc4, 0x08], b"\"string\"", &[0xa2, 0x73, 0x68]]);
        assert_eq!(decode(&string).unwrap(), json!("sh"));
        let type_json = br#"["tuple",["string","string"]]"#;
        assert_eq!(type_json.len(), 0x1d);
        let tuple = bytes(&[
            &[0x92, 0xc4, 0x1d],
            type_json,
            &[0x92, 0xa2, 0x73, 0x68, 0xa2, 0x2d, 0x63],
        ]);
        assert_eq!(decode(&tuple).unwrap(), json!(["sh", "-c"]));
        let number = bytes(&[&[0x92, 0xc4, 0x08], b"\"number\"", &[0xcd, 0x01, 0x2c]]);
        assert_eq!(decode(&number).unwrap(), json!(300));
        let object_type = br#"["object",{"a":"bool"},["a"]]"#;
        let object = bytes(&[
            &[0x92, 0xc4, u8::try_from(object_type.len()).unwrap()],
            object_type,
            &[0x81, 0xa1, b'a', 0xc3],
        ]);
        assert_eq!(decode(&object).unwrap(), json!({"a": true}));
    }

    #[test]
    fn two_element_lists_are_not_mistaken_for_wrappers() {
        let strings = bytes(&[&[0x92], &s("string"), &s("sh")]);
        assert_eq!(decode(&strings).unwrap(), json!(["string", "sh"]));
        let not_a_type = bytes(&[&[0x92, 0xc4, 0x05], b"\"foo\"", &s("x")]);
        assert_eq!(decode(&not_a_type).unwrap(), json!(["\"foo\"", "x"]));
    }

    #[test]
    fn nil_bool_and_bin_strings() {
        assert_eq!(decode(&[0xc0]).unwrap(), Value::Null);
        assert_eq!(decode(&[0xc2]).unwrap(), json!(false));
        assert_eq!(decode(&[0xc3]).unwrap(), json!(true));
        assert_eq!(decode(&[0xc4, 0x02, b'o', b'k']).unwrap(), json!("ok"));
        let long = "x".repeat(300);
        let mut str16 = vec![0xda, 0x01, 0x2c];
        str16.extend_from_slice(long.as_bytes());
        assert_eq!(decode(&str16).unwrap(), json!(long));
        assert_eq!(decode(&[]).unwrap(), Value::Null);
    }

    #[test]
    fn unknown_values_are_rejected_with_their_field() {
        let input = bytes(&[
            &[0x82],
            &s("image"),
            &s("x"),
            &s("args"),
            &[0x92, 0xa1, b'a', 0xd4, 0x00, 0x00],
        ]);
        let err = decode(&input).unwrap_err();
        assert_eq!(err.field, "config.args[1]");
        assert_eq!(err.reason, CtyErrorKind::Unknown { ext_type: 0 });
        assert_eq!(
            err.to_string(),
            "config.args[1]: unknown value (msgpack ext type 0); only known values can be configured"
        );
        let refined = bytes(&[&[0x81], &s("port"), &[0xc7, 0x01, 0x0c, 0x80]]);
        assert_eq!(
            decode(&refined).unwrap_err().reason,
            CtyErrorKind::Unknown { ext_type: 12 }
        );
    }

    #[test]
    fn bad_input_names_where() {
        let bad_utf8 = bytes(&[&[0x81], &s("auth"), &[0x81], &s("username"), &[0xa1, 0xff]]);
        let err = decode(&bad_utf8).unwrap_err();
        assert_eq!(
            err.to_string(),
            "config.auth.username: string is not valid UTF-8"
        );
        let int_key = [0x81, 0x01, 0x02];
        assert_eq!(
            decode(&int_key).unwrap_err().to_string(),
            "config: map key is a msgpack integer, expected a string"
        );
        let infinite = bytes(&[&[0x81], &s("n"), &[0xcb, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0]]);
        assert_eq!(decode(&infinite).unwrap_err().field, "config.n");
        let truncated = bytes(&[&[0x82], &s("image")]);
        let err = decode(&truncated).unwrap_err();
        assert!(matches!(err.reason, CtyErrorKind::Malformed(_)));
        assert!(err
            .to_string()
            .starts_with("config: not a valid cty-msgpack value"));
    }

    #[test]
    fn type_json_grammar() {
        for good in [
            json!("string"),
            json!("dynamic"),
            json!(["list", "number"]),
            json!(["map", ["set", "bool"]]),
            json!(["object", {}]),
            json!(["object", {"a": "string"}, ["a"]]),
            json!(["tuple", []]),
        ] {
            assert!(is_cty_type(&good), "{good}");
        }
        for bad in [
            json!("int"),
            json!(["list"]),
            json!(["object", {"a": "x"}]),
            json!(["tuple", "string"]),
            json!(1),
        ] {
            assert!(!is_cty_type(&bad), "{bad}");
        }
    }
}

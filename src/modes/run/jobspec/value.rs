//! Helpers over `serde_json::Value`, the evaluator's value type.
//!
//! HCL's null/bool/number/string/list/object map one to one onto JSON; tuples and sets
//! are lists, maps are objects. Object keys iterate in lexical order, as HCL requires.

use serde_json::{Map, Number, Value};

pub type Object = Map<String, Value>;

pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

/// A number value: integral results stay integers so they print without `.0`.
pub fn number(f: f64) -> Value {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15 {
        Value::Number(Number::from(f as i64))
    } else {
        Number::from_f64(f).map_or(Value::Null, Value::Number)
    }
}

pub fn as_f64(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

pub fn format_number(n: &Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    let f = n.as_f64().unwrap_or(0.0);
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

/// Why a value does not convert to the type asked for; the type names are HCL's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConversionError {
    #[error("a null value cannot be used as a string")]
    NullAsString,
    #[error("a {0} cannot be used as a string")]
    NotAString(&'static str),
    #[error("number out of range")]
    NumberOutOfRange,
    #[error("a number is required, got the string {0:?}")]
    NotANumberString(String),
    #[error("a number is required, got a {0}")]
    NotANumber(&'static str),
    #[error("a bool is required, got a {0}")]
    NotABool(&'static str),
}

/// The evaluator's messages are text in a located error; a conversion inside one of them
/// reads as its message.
impl From<ConversionError> for String {
    fn from(e: ConversionError) -> String {
        e.to_string()
    }
}

/// HCL's automatic conversion to string (for templates and string-typed fields).
pub fn to_string(value: &Value) -> Result<String, ConversionError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(format_number(n)),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Err(ConversionError::NullAsString),
        other => Err(ConversionError::NotAString(type_name(other))),
    }
}

/// HCL's automatic conversion to number: numbers, and strings that parse as one.
pub fn to_number(value: &Value) -> Result<f64, ConversionError> {
    match value {
        Value::Number(n) => n.as_f64().ok_or(ConversionError::NumberOutOfRange),
        Value::String(s) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| ConversionError::NotANumberString(s.clone())),
        other => Err(ConversionError::NotANumber(type_name(other))),
    }
}

/// HCL's automatic conversion to bool: bools and the strings "true"/"false".
pub fn to_bool(value: &Value) -> Result<bool, ConversionError> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s == "true" => Ok(true),
        Value::String(s) if s == "false" => Ok(false),
        other => Err(ConversionError::NotABool(type_name(other))),
    }
}

/// Equality as HCL defines it: numbers compare by value (1 == 1.0).
pub fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|other| equal(v, other)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integral_numbers_print_without_fraction() {
        assert_eq!(to_string(&number(4.0)).unwrap(), "4");
        assert_eq!(to_string(&number(2.5)).unwrap(), "2.5");
        assert_eq!(to_string(&json!(true)).unwrap(), "true");
        assert!(to_string(&json!([1])).is_err());
    }

    #[test]
    fn conversions_follow_hcl() {
        assert_eq!(to_number(&json!("42")).unwrap(), 42.0);
        assert!(to_number(&json!("x")).is_err());
        assert!(to_bool(&json!("true")).unwrap());
        assert!(to_bool(&json!(1)).is_err());
        assert!(equal(&json!(1), &json!(1.0)));
        assert!(!equal(&json!("1"), &json!(1)));
    }
}

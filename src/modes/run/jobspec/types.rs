//! `variable` type constraints (`string`, `list(number)`, `object({...})`, ...) and the
//! conversions HCL applies when a value is assigned to a typed variable.

use std::collections::BTreeMap;
use std::fmt;

use hcl::edit::expr::{Expression, ObjectKey};
use serde_json::Value;

use super::value::{self, type_name};

#[derive(Debug, Clone, PartialEq)]
pub enum TypeConstraint {
    Any,
    String,
    Number,
    Bool,
    List(Box<TypeConstraint>),
    Set(Box<TypeConstraint>),
    Map(Box<TypeConstraint>),
    Object(BTreeMap<String, TypeConstraint>),
    Tuple(Vec<TypeConstraint>),
}

impl fmt::Display for TypeConstraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TypeConstraint::Any => f.write_str("any"),
            TypeConstraint::String => f.write_str("string"),
            TypeConstraint::Number => f.write_str("number"),
            TypeConstraint::Bool => f.write_str("bool"),
            TypeConstraint::List(t) => write!(f, "list({t})"),
            TypeConstraint::Set(t) => write!(f, "set({t})"),
            TypeConstraint::Map(t) => write!(f, "map({t})"),
            TypeConstraint::Object(fields) => {
                f.write_str("object({")?;
                for (i, (k, t)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k} = {t}")?;
                }
                f.write_str("})")
            }
            TypeConstraint::Tuple(items) => {
                f.write_str("tuple([")?;
                for (i, t) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{t}")?;
                }
                f.write_str("])")
            }
        }
    }
}

impl TypeConstraint {
    /// Reads a type expression. The error is a message; the caller adds the location.
    pub fn parse(expr: &Expression) -> Result<TypeConstraint, String> {
        match expr {
            Expression::Variable(name) => match name.value().as_str() {
                "any" => Ok(TypeConstraint::Any),
                "string" => Ok(TypeConstraint::String),
                "number" => Ok(TypeConstraint::Number),
                "bool" => Ok(TypeConstraint::Bool),
                other => Err(format!(
                    "invalid type {other:?}: expected string, number, bool, any, list(...), set(...), map(...), object({{...}}) or tuple([...])"
                )),
            },
            Expression::Parenthesis(inner) => TypeConstraint::parse(inner.inner()),
            Expression::FuncCall(call) => {
                let name = call.name.name.value().as_str();
                let args: Vec<&Expression> = call.args.iter().collect();
                let single = |what: &str| -> Result<&Expression, String> {
                    match args.as_slice() {
                        [one] => Ok(*one),
                        _ => Err(format!("{what}(...) takes exactly one element type")),
                    }
                };
                match name {
                    "list" => Ok(TypeConstraint::List(Box::new(Self::parse(single("list")?)?))),
                    "set" => Ok(TypeConstraint::Set(Box::new(Self::parse(single("set")?)?))),
                    "map" => Ok(TypeConstraint::Map(Box::new(Self::parse(single("map")?)?))),
                    "object" => {
                        let Expression::Object(fields) = single("object")? else {
                            return Err("object(...) takes an object of attribute types".into());
                        };
                        let mut out = BTreeMap::new();
                        for (key, value) in fields.iter() {
                            let key = match key {
                                ObjectKey::Ident(ident) => ident.value().as_str().to_string(),
                                ObjectKey::Expression(Expression::String(s)) => {
                                    s.value().to_string()
                                }
                                _ => return Err("object type attribute names must be identifiers".into()),
                            };
                            out.insert(key, Self::parse(value.expr())?);
                        }
                        Ok(TypeConstraint::Object(out))
                    }
                    "tuple" => {
                        let Expression::Array(items) = single("tuple")? else {
                            return Err("tuple(...) takes a list of element types".into());
                        };
                        items
                            .iter()
                            .map(Self::parse)
                            .collect::<Result<Vec<_>, _>>()
                            .map(TypeConstraint::Tuple)
                    }
                    other => Err(format!("invalid type constructor {other:?}")),
                }
            }
            _ => Err("invalid type: expected a type such as string, number, bool or list(string)".into()),
        }
    }

    /// Converts `value` to this type, as HCL does on assignment; the error says why not.
    pub fn convert(&self, value: Value) -> Result<Value, String> {
        if value.is_null() {
            return Ok(value);
        }
        match self {
            TypeConstraint::Any => Ok(value),
            TypeConstraint::String => Ok(Value::String(value::to_string(&value)?)),
            TypeConstraint::Number => Ok(value::number(value::to_number(&value)?)),
            TypeConstraint::Bool => Ok(Value::Bool(value::to_bool(&value)?)),
            TypeConstraint::List(elem) | TypeConstraint::Set(elem) => match value {
                Value::Array(items) => {
                    let mut out = Vec::with_capacity(items.len());
                    for (i, item) in items.into_iter().enumerate() {
                        out.push(
                            elem.convert(item)
                                .map_err(|e| format!("element {i}: {e}"))?,
                        );
                    }
                    if matches!(self, TypeConstraint::Set(_)) {
                        let mut unique: Vec<Value> = Vec::with_capacity(out.len());
                        for item in out {
                            if !unique.iter().any(|u| value::equal(u, &item)) {
                                unique.push(item);
                            }
                        }
                        out = unique;
                    }
                    Ok(Value::Array(out))
                }
                other => Err(format!("{self} required, got a {}", type_name(&other))),
            },
            TypeConstraint::Map(elem) => match value {
                Value::Object(entries) => {
                    let mut out = serde_json::Map::new();
                    for (k, v) in entries {
                        let v = elem.convert(v).map_err(|e| format!("element {k:?}: {e}"))?;
                        out.insert(k, v);
                    }
                    Ok(Value::Object(out))
                }
                other => Err(format!("{self} required, got a {}", type_name(&other))),
            },
            TypeConstraint::Object(fields) => match value {
                Value::Object(mut entries) => {
                    let mut out = serde_json::Map::new();
                    for (name, ty) in fields {
                        let v = entries
                            .remove(name)
                            .ok_or_else(|| format!("attribute {name:?} is required"))?;
                        out.insert(
                            name.clone(),
                            ty.convert(v)
                                .map_err(|e| format!("attribute {name:?}: {e}"))?,
                        );
                    }
                    Ok(Value::Object(out))
                }
                other => Err(format!("{self} required, got a {}", type_name(&other))),
            },
            TypeConstraint::Tuple(types) => match value {
                Value::Array(items) if items.len() == types.len() => items
                    .into_iter()
                    .zip(types)
                    .enumerate()
                    .map(|(i, (v, t))| t.convert(v).map_err(|e| format!("element {i}: {e}")))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Value::Array),
                Value::Array(items) => Err(format!(
                    "{self} required, got a list of {} elements",
                    items.len()
                )),
                other => Err(format!("{self} required, got a {}", type_name(&other))),
            },
        }
    }

    /// Whether a `-var`/`NOMAD_VAR_` string must be parsed as an HCL expression first.
    pub fn wants_expression(&self) -> bool {
        !matches!(
            self,
            TypeConstraint::String
                | TypeConstraint::Any
                | TypeConstraint::Number
                | TypeConstraint::Bool
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ty(src: &str) -> TypeConstraint {
        TypeConstraint::parse(&hcl::edit::parser::parse_expr(src).unwrap()).unwrap()
    }

    #[test]
    fn parses_nested_types() {
        assert_eq!(ty("list(map(string))").to_string(), "list(map(string))");
        assert_eq!(
            ty("object({ a = number, b = list(bool) })").to_string(),
            "object({a = number, b = list(bool)})"
        );
        assert_eq!(
            ty("tuple([string, number])").to_string(),
            "tuple([string, number])"
        );
        assert!(TypeConstraint::parse(&hcl::edit::parser::parse_expr("strin").unwrap()).is_err());
    }

    #[test]
    fn converts_like_hcl() {
        assert_eq!(ty("number").convert(json!("3")).unwrap(), json!(3));
        assert_eq!(ty("string").convert(json!(3)).unwrap(), json!("3"));
        assert_eq!(ty("bool").convert(json!("false")).unwrap(), json!(false));
        assert!(ty("number").convert(json!("three")).is_err());
        assert_eq!(
            ty("set(string)").convert(json!(["a", "a", 1])).unwrap(),
            json!(["a", "1"])
        );
        assert_eq!(
            ty("map(number)").convert(json!({"a": "1"})).unwrap(),
            json!({"a": 1})
        );
        let err = ty("object({ a = number })")
            .convert(json!({"b": 1}))
            .unwrap_err();
        assert!(err.contains("\"a\" is required"), "{err}");
        assert!(ty("list(string)").convert(json!("x")).is_err());
    }
}

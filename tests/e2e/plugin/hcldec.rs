//! The agent's configuration pipeline, for the test
//! client: an HCL block is first turned into the JSON-like tree Nomad's parsers produce
//! (blocks become lists of objects), then decoded against the plugin's hclspec the way
//! hcldec reads a JSON body, converting each attribute to its spec type. The result is a
//! typed value ready for [`super::cty_msgpack::encode`].

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use hcl::eval::{Context, Evaluate};
use nomad_driver_podman::modes::plugin::proto::hclspec::{spec::Block as Kind, Spec};
use serde_json::{Map, Value};

use super::cty_msgpack::{Cty, Number};

/// The JSON-like tree of an HCL body: attributes evaluated, repeated blocks collected into
/// lists of objects (labelled blocks nest under their labels).
pub fn body_to_json(body: &hcl::Body) -> Result<Map<String, Value>, String> {
    let context = Context::new();
    let mut out = Map::new();
    for attribute in body.attributes() {
        let value = attribute
            .expr()
            .evaluate(&context)
            .map_err(|e| format!("{}: {e}", attribute.key()))?;
        let json = serde_json::to_value(&value).map_err(|e| e.to_string())?;
        out.insert(attribute.key().to_string(), json);
    }
    for block in body.blocks() {
        let mut inner = Value::Object(body_to_json(block.body())?);
        for label in block.labels().iter().rev() {
            let mut wrapped = Map::new();
            wrapped.insert(label.as_str().to_string(), inner);
            inner = Value::Object(wrapped);
        }
        let slot = out
            .entry(block.identifier().to_string())
            .or_insert_with(|| Value::Array(Vec::new()));
        match slot {
            Value::Array(items) => items.push(inner),
            _ => {
                return Err(format!(
                    "{} is both an attribute and a block",
                    block.identifier()
                ))
            }
        }
    }
    Ok(out)
}

/// HCL text -> spec -> cty-msgpack bytes, as the agent builds `msgpack_driver_config`.
pub fn encode_hcl(spec: &Spec, hcl_text: &str) -> Result<Vec<u8>, String> {
    let body = hcl::parse(hcl_text).map_err(|e| e.to_string())?;
    let tree = body_to_json(&body)?;
    Ok(super::cty_msgpack::encode(&decode(spec, &tree)?))
}

/// hcldec over a JSON body: the value of `spec`, with "Unsupported argument" for keys
/// the spec does not consume, as the agent reports them.
pub fn decode(spec: &Spec, body: &Map<String, Value>) -> Result<Cty, String> {
    let mut consumed = BTreeSet::new();
    let value = decode_spec(spec, body, None, &mut consumed)?;
    if let Some(extra) = body.keys().find(|k| !consumed.contains(k.as_str())) {
        return Err(format!(
            "Unsupported argument; An argument named \"{extra}\" is not expected here."
        ));
    }
    Ok(value)
}

fn kind(spec: &Spec) -> Result<&Kind, String> {
    spec.block
        .as_ref()
        .ok_or_else(|| "Invalid spec block".to_string())
}

fn name_of<'a>(name: &'a str, implied: Option<&'a str>) -> Result<&'a str, String> {
    match (name, implied) {
        ("", Some(implied)) => Ok(implied),
        ("", None) => Err("spec without a name".to_string()),
        (name, _) => Ok(name),
    }
}

fn decode_spec(
    spec: &Spec,
    body: &Map<String, Value>,
    implied: Option<&str>,
    consumed: &mut BTreeSet<String>,
) -> Result<Cty, String> {
    match kind(spec)? {
        Kind::Object(object) => {
            let mut out = BTreeMap::new();
            for (key, nested) in &object.attributes {
                out.insert(key.clone(), decode_spec(nested, body, Some(key), consumed)?);
            }
            Ok(Cty::Map(out))
        }
        Kind::Attr(attr) => {
            let name = name_of(&attr.name, implied)?;
            consumed.insert(name.to_string());
            match body.get(name).filter(|v| !v.is_null()) {
                None if attr.required => Err(format!(
                    "Missing required argument; The argument \"{name}\" is required, but no definition was found."
                )),
                None => Ok(Cty::Null),
                Some(value) => convert(value, &parse_type(&attr.r#type)?)
                    .map_err(|e| format!("Incorrect attribute value type; Inappropriate value for attribute \"{name}\": {e}.")),
            }
        }
        Kind::BlockValue(block) => {
            let name = name_of(&block.name, implied)?;
            consumed.insert(name.to_string());
            let nested = block.nested.as_deref().ok_or("block without nested spec")?;
            match blocks(body.get(name), name)?.as_slice() {
                [] if block.required => Err(format!("Missing {name} block")),
                [] => Ok(Cty::Null),
                [one] => decode(nested, one).map_err(|e| format!("{name}: {e}")),
                _ => Err(format!("Duplicate {name} block")),
            }
        }
        Kind::BlockList(list) => {
            let name = name_of(&list.name, implied)?;
            consumed.insert(name.to_string());
            let nested = list
                .nested
                .as_deref()
                .ok_or("block list without nested spec")?;
            let items = blocks(body.get(name), name)?
                .iter()
                .map(|item| decode(nested, item).map_err(|e| format!("{name}: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Cty::List(items))
        }
        Kind::BlockAttrs(attrs) => {
            let name = name_of(&attrs.name, implied)?;
            consumed.insert(name.to_string());
            let element = parse_type(&attrs.r#type)?;
            match blocks(body.get(name), name)?.as_slice() {
                [] => Ok(Cty::Null),
                [one] => one
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), convert(v, &element)?)))
                    .collect::<Result<BTreeMap<_, _>, String>>()
                    .map(Cty::Map)
                    .map_err(|e| format!("{name}: {e}")),
                _ => Err(format!("Duplicate {name} block")),
            }
        }
        Kind::Default(default) => {
            let primary = default
                .primary
                .as_deref()
                .ok_or("default without primary")?;
            match decode_spec(primary, body, None, consumed)? {
                Cty::Null => {
                    let fallback = default
                        .default
                        .as_deref()
                        .ok_or("default without default")?;
                    decode_spec(fallback, body, None, consumed)
                }
                value => Ok(value),
            }
        }
        Kind::Literal(literal) => literal_value(&literal.value),
        other => Err(format!(
            "spec kind not supported by the test client: {other:?}"
        )),
    }
}

/// A block property of a JSON body: an object, or a list of objects.
fn blocks(value: Option<&Value>, name: &str) -> Result<Vec<Map<String, Value>>, String> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(one)) => Ok(vec![one.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::Object(map) => Ok(map.clone()),
                _ => Err(format!("Incorrect JSON value type for block {name}")),
            })
            .collect(),
        Some(_) => Err(format!("Incorrect JSON value type for block {name}")),
    }
}

/// An HCL expression evaluated without variables, typed by its own shape.
fn literal_value(expression: &str) -> Result<Cty, String> {
    let body = hcl::parse(&format!("value = {expression}"))
        .map_err(|e| format!("invalid literal {expression:?}: {e}"))?;
    let tree = body_to_json(&body)?;
    Ok(plain(tree.get("value").unwrap_or(&Value::Null)))
}

/// A JSON value with its own implied type (tuple/object), as HCL's JSON syntax types it.
fn plain(value: &Value) -> Cty {
    match value {
        Value::Null => Cty::Null,
        Value::Bool(b) => Cty::Bool(*b),
        Value::Number(n) => Cty::Number(Number::parse(&n.to_string()).unwrap_or(Number::Int(0))),
        Value::String(s) => Cty::String(s.clone()),
        Value::Array(items) => Cty::List(items.iter().map(plain).collect()),
        Value::Object(map) => Cty::Map(map.iter().map(|(k, v)| (k.clone(), plain(v))).collect()),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Type {
    String,
    Number,
    Bool,
    Any,
    List(Box<Type>),
    Set(Box<Type>),
    Map(Box<Type>),
}

/// The type expressions hclspec attributes use (bare words and constructors).
pub fn parse_type(expr: &str) -> Result<Type, String> {
    let expr = expr.trim();
    let inner = |prefix: &str| {
        expr.strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(')'))
            .map(parse_type)
    };
    Ok(match expr {
        "string" => Type::String,
        "number" => Type::Number,
        "bool" => Type::Bool,
        "any" => Type::Any,
        _ => {
            if let Some(element) = inner("list(") {
                Type::List(Box::new(element?))
            } else if let Some(element) = inner("set(") {
                Type::Set(Box::new(element?))
            } else if let Some(element) = inner("map(") {
                Type::Map(Box::new(element?))
            } else {
                return Err(format!("invalid type expression {expr:?}"));
            }
        }
    })
}

/// cty's conversion of a value to `target` (string <-> number <-> bool, element-wise for
/// collections).
fn convert(value: &Value, target: &Type) -> Result<Cty, String> {
    match (target, value) {
        (_, Value::Null) => Ok(Cty::Null),
        (Type::Any, value) => Ok(plain(value)),
        (Type::String, Value::String(s)) => Ok(Cty::String(s.clone())),
        (Type::String, Value::Number(n)) => Ok(Cty::String(
            Number::parse(&n.to_string()).map_or_else(|| n.to_string(), |n| n.text()),
        )),
        (Type::String, Value::Bool(b)) => Ok(Cty::String(b.to_string())),
        (Type::Number, Value::Number(n)) => Number::parse(&n.to_string())
            .map(Cty::Number)
            .ok_or_else(|| "a number is required".to_string()),
        (Type::Number, Value::String(s)) => Number::parse(s)
            .map(Cty::Number)
            .ok_or_else(|| format!("a number is required, got {s:?}")),
        (Type::Bool, Value::Bool(b)) => Ok(Cty::Bool(*b)),
        (Type::Bool, Value::String(s)) if s == "true" || s == "false" => Ok(Cty::Bool(s == "true")),
        (Type::List(element) | Type::Set(element), Value::Array(items)) => items
            .iter()
            .map(|item| convert(item, element))
            .collect::<Result<Vec<_>, _>>()
            .map(Cty::List),
        (Type::Map(element), Value::Object(map)) => map
            .iter()
            .map(|(k, v)| Ok((k.clone(), convert(v, element)?)))
            .collect::<Result<BTreeMap<_, _>, String>>()
            .map(Cty::Map),
        (target, value) => Err(format!("{} required, got {value}", describe(target))),
    }
}

fn describe(target: &Type) -> String {
    match target {
        Type::String => "string".into(),
        Type::Number => "number".into(),
        Type::Bool => "bool".into(),
        Type::Any => "any value".into(),
        Type::List(e) => format!("list of {}", describe(e)),
        Type::Set(e) => format!("set of {}", describe(e)),
        Type::Map(e) => format!("map of {}", describe(e)),
    }
}

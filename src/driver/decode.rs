//! Reading option blocks out of a decoded JSON value, with a path for every error.
//!
//! The same block reaches the core in two shapes: from Nomad (cty values turned into JSON,
//! every schema key present, absent ones `null`, numbers sometimes as decimal strings, HCL
//! blocks as lists of objects) and from the standalone runner (plain HCL: maps where Nomad
//! has lists of maps, a block as a single object). This reader accepts both.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// An option value that cannot be used. Every variant names the option by its full path
/// (e.g. `config.memory_reservation`), and where there is one, the offending value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{field}: unknown option{}", did_you_mean(suggestion.as_deref()))]
    UnknownOption {
        field: String,
        /// The known option nearest in spelling, when one is near enough.
        suggestion: Option<String>,
    },
    #[error("{field}: {what}")]
    Missing { field: String, what: &'static str },
    #[error("{field}: expected {expected}, got {found}")]
    WrongType {
        field: String,
        expected: &'static str,
        found: String,
    },
    #[error("{field}: invalid value {value:?}: {reason}")]
    InvalidValue {
        field: String,
        value: String,
        reason: String,
    },
    #[error("{field}: {reason}")]
    Conflict { field: String, reason: String },
}

impl ConfigError {
    /// The full path of the option at fault.
    pub fn field(&self) -> &str {
        match self {
            ConfigError::UnknownOption { field, .. }
            | ConfigError::Missing { field, .. }
            | ConfigError::WrongType { field, .. }
            | ConfigError::InvalidValue { field, .. }
            | ConfigError::Conflict { field, .. } => field,
        }
    }

    pub(crate) fn invalid(
        field: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        ConfigError::InvalidValue {
            field: field.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }
}

/// Serializes an option value as the text it is written as in a job (`Display`) and
/// deserializes it by parsing that text again (`parse_text`), so persisted task specs keep
/// the shape they had when these options were kept as strings: a file written by an older
/// binary still reads, and an older binary still reads ours.
macro_rules! serde_as_text {
    ($type:ty) => {
        impl serde::Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <String as serde::Deserialize>::deserialize(deserializer)?;
                <$type>::parse_text(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use serde_as_text;

/// `; did you mean "x"?` for a suggestion, nothing without one.
pub fn did_you_mean(suggestion: Option<&str>) -> String {
    suggestion
        .map(|s| format!("; did you mean {s:?}?"))
        .unwrap_or_default()
}

/// The candidate nearest to a misspelt `name`: a case-insensitive match, else the one
/// fewest edits away (a swap of two neighbouring letters is one edit), if that is at most
/// a third of the name's length (at least one). Ties go to the earlier candidate.
pub fn nearest_name<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = name.to_ascii_lowercase();
    let limit = (name.chars().count() / 3).max(1);
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        let distance = edit_distance(&lower, &candidate.to_ascii_lowercase());
        if distance <= limit && best.map_or(true, |(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, c)| c)
}

/// Optimal string alignment distance: insertions, deletions, substitutions and swaps of
/// neighbours, one edit each.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for i in 0..=a.len() {
        d[i * width] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(width) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut value = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                value = value.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = value;
        }
    }
    d[a.len() * width + b.len()]
}

/// Short description of a value for "got ..." messages.
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("bool {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(items) => format!("list of {} element(s)", items.len()),
        Value::Object(_) => "object".to_string(),
    }
}

/// One object-shaped block being read, with its path.
pub(crate) struct Block<'a> {
    path: String,
    map: &'a Map<String, Value>,
}

impl<'a> Block<'a> {
    /// Reads `value` as a block: an object, or a list holding exactly one object (HCL block
    /// syntax as Nomad renders it).
    pub(crate) fn new(path: &str, value: &'a Value) -> Result<Self, ConfigError> {
        let map = match value {
            Value::Object(map) => map,
            Value::Array(items) if items.len() == 1 => match &items[0] {
                Value::Object(map) => map,
                other => return Err(wrong(path, "a block (object)", other)),
            },
            Value::Array(items) if items.len() > 1 => {
                return Err(ConfigError::Conflict {
                    field: path.to_string(),
                    reason: format!("only one block allowed, got {}", items.len()),
                })
            }
            other => return Err(wrong(path, "a block (object)", other)),
        };
        Ok(Block {
            path: path.to_string(),
            map,
        })
    }

    /// Fails on the first key not in `known`, naming it and the nearest known one.
    pub(crate) fn deny_unknown(&self, known: &[&str]) -> Result<(), ConfigError> {
        match self.unknown(known).into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Every key not in `known`, each with the nearest known one.
    pub(crate) fn unknown(&self, known: &[&str]) -> Vec<ConfigError> {
        self.map
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .map(|key| ConfigError::UnknownOption {
                field: self.child(key),
                suggestion: nearest_name(key, known.iter().copied()).map(str::to_string),
            })
            .collect()
    }

    /// The block's keys and values.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&'a String, &'a Value)> {
        self.map.iter()
    }

    pub(crate) fn child(&self, key: &str) -> String {
        format!("{}.{}", self.path, key)
    }

    /// The value of `key`, `None` when absent or null.
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub(crate) fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(wrong(&self.child(key), "string", other)),
        }
    }

    /// A bool; the strings `"true"`/`"false"` are accepted because interpolated values
    /// arrive as strings and HCL converts them.
    pub(crate) fn bool(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s == "true" => Ok(Some(true)),
            Some(Value::String(s)) if s == "false" => Ok(Some(false)),
            Some(other) => Err(wrong(&self.child(key), "bool", other)),
        }
    }

    /// A whole number; decimal strings are accepted because cty sends some numbers that way.
    pub(crate) fn int(&self, key: &str) -> Result<Option<i64>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(value) => as_int(value)
                .map(Some)
                .ok_or_else(|| wrong(&self.child(key), "whole number", value)),
        }
    }

    /// A list of strings; numbers and bools in it are converted as HCL does for `list(string)`.
    pub(crate) fn strings(&self, key: &str) -> Result<Vec<String>, ConfigError> {
        let field = self.child(key);
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    scalar_text(item).ok_or_else(|| wrong(&format!("{field}[{i}]"), "string", item))
                })
                .collect(),
            Some(other) => Err(wrong(&field, "list of strings", other)),
        }
    }

    /// A `list(map(string))` option: a map, a list of maps (merged, later keys win), or
    /// nothing. Values that are numbers or bools become strings.
    pub(crate) fn string_map(&self, key: &str) -> Result<BTreeMap<String, String>, ConfigError> {
        let field = self.child(key);
        let mut merged = BTreeMap::new();
        for map in maps(&field, self.get(key))? {
            for (name, value) in map {
                let text = scalar_text(value)
                    .ok_or_else(|| wrong(&format!("{field}.{name}"), "string", value))?;
                merged.insert(name.clone(), text);
            }
        }
        Ok(merged)
    }

    /// A `list(map(number))` option, shaped like [`Block::string_map`].
    pub(crate) fn int_map(&self, key: &str) -> Result<BTreeMap<String, i64>, ConfigError> {
        let field = self.child(key);
        let mut merged = BTreeMap::new();
        for map in maps(&field, self.get(key))? {
            for (name, value) in map {
                let number = as_int(value)
                    .ok_or_else(|| wrong(&format!("{field}.{name}"), "whole number", value))?;
                merged.insert(name.clone(), number);
            }
        }
        Ok(merged)
    }

    /// An optional nested block.
    pub(crate) fn block(&self, key: &str) -> Result<Option<Block<'a>>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) if items.is_empty() => Ok(None),
            Some(value) => Block::new(&self.child(key), value).map(Some),
        }
    }

    /// A repeatable block: a list of objects, or one object.
    pub(crate) fn blocks(&self, key: &str) -> Result<Vec<Block<'a>>, ConfigError> {
        let field = self.child(key);
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| Block::new(&format!("{field}[{i}]"), item))
                .collect(),
            Some(value @ Value::Object(_)) => Ok(vec![Block::new(&field, value)?]),
            Some(other) => Err(wrong(&field, "list of blocks", other)),
        }
    }
}

pub(crate) fn wrong(field: &str, expected: &'static str, found: &Value) -> ConfigError {
    ConfigError::WrongType {
        field: field.to_string(),
        expected,
        found: describe(found),
    }
}

fn maps<'v>(
    field: &str,
    value: Option<&'v Value>,
) -> Result<Vec<&'v Map<String, Value>>, ConfigError> {
    match value {
        None => Ok(Vec::new()),
        Some(Value::Object(map)) => Ok(vec![map]),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::Object(map) => Ok(map),
                other => Err(wrong(&format!("{field}[{i}]"), "map", other)),
            })
            .collect(),
        Some(other) => Err(wrong(field, "map", other)),
    }
}

fn as_int(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn block_accepts_object_or_single_element_list() {
        let object = json!({"a": "x"});
        let listed = json!([{"a": "x"}]);
        for value in [&object, &listed] {
            let block = Block::new("config", value).unwrap();
            assert_eq!(block.string("a").unwrap().as_deref(), Some("x"));
        }
        let two = json!([{}, {}]);
        assert!(matches!(
            Block::new("config", &two),
            Err(ConfigError::Conflict { .. })
        ));
        let err = Block::new("config.auth", &json!("x")).err().unwrap();
        assert_eq!(
            err.to_string(),
            "config.auth: expected a block (object), got string \"x\""
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let value = json!({"image": "x", "imagee": "y"});
        let block = Block::new("config", &value).unwrap();
        let err = block.deny_unknown(&["image"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "config.imagee: unknown option; did you mean \"image\"?"
        );
        assert_eq!(err.field(), "config.imagee");
        let err = block.deny_unknown(&["command"]).unwrap_err();
        assert_eq!(err.to_string(), "config.image: unknown option");
    }

    #[test]
    fn nearest_names_allow_few_edits_for_the_length() {
        let known = [
            "image",
            "memory_reservation",
            "network_mode",
            "ports",
            "cap_add",
        ];
        for (typo, want) in [
            ("imgae", Some("image")), // swapped neighbours
            ("IMAGE", Some("image")), // case only
            ("memory_reservaton", Some("memory_reservation")),
            ("networkmode", Some("network_mode")),
            ("port", Some("ports")),
            ("cap_ad", Some("cap_add")),
            ("volumes", None),
            ("img", None), // two edits from "image": too many for three letters
        ] {
            assert_eq!(nearest_name(typo, known), want, "{typo}");
        }
    }

    #[test]
    fn null_means_absent() {
        let value = json!({"s": null, "l": null, "m": null, "b": null});
        let block = Block::new("c", &value).unwrap();
        assert_eq!(block.string("s").unwrap(), None);
        assert!(block.strings("l").unwrap().is_empty());
        assert!(block.string_map("m").unwrap().is_empty());
        assert!(block.block("b").unwrap().is_none());
    }

    #[test]
    fn numbers_arrive_as_numbers_or_decimal_strings() {
        let value = json!({"a": 5, "b": "7", "c": 3.0, "d": 2.5, "e": "x", "f": true});
        let block = Block::new("c", &value).unwrap();
        assert_eq!(block.int("a").unwrap(), Some(5));
        assert_eq!(block.int("b").unwrap(), Some(7));
        assert_eq!(block.int("c").unwrap(), Some(3));
        assert_eq!(
            block.int("d").unwrap_err().to_string(),
            "c.d: expected whole number, got number 2.5"
        );
        assert!(block.int("e").is_err());
        assert!(block.int("f").is_err());
    }

    #[test]
    fn strings_are_strict_but_list_elements_convert() {
        let value = json!({"s": 5, "l": ["a", 1, true], "bad": ["a", ["b"]], "notlist": "a"});
        let block = Block::new("config", &value).unwrap();
        assert_eq!(
            block.string("s").unwrap_err().to_string(),
            "config.s: expected string, got number 5"
        );
        assert_eq!(block.strings("l").unwrap(), vec!["a", "1", "true"]);
        assert_eq!(block.strings("bad").unwrap_err().field(), "config.bad[1]");
        assert!(block.strings("notlist").is_err());
    }

    #[test]
    fn maps_merge_lists_of_maps() {
        let value = json!({
            "plain": {"a": "1", "n": 2},
            "listed": [{"a": "1"}, {"b": "2", "a": "3"}],
            "bad": [{"a": {"x": 1}}],
            "ints": [{"http": 80}, {"https": "443"}],
        });
        let block = Block::new("config", &value).unwrap();
        let plain = block.string_map("plain").unwrap();
        assert_eq!(plain["a"], "1");
        assert_eq!(plain["n"], "2");
        let listed = block.string_map("listed").unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed["a"], "3");
        assert_eq!(block.string_map("bad").unwrap_err().field(), "config.bad.a");
        let ints = block.int_map("ints").unwrap();
        assert_eq!(ints["http"], 80);
        assert_eq!(ints["https"], 443);
    }

    #[test]
    fn bools_accept_true_false_strings() {
        let value = json!({"a": true, "b": "false", "c": "yes", "d": 1});
        let block = Block::new("c", &value).unwrap();
        assert_eq!(block.bool("a").unwrap(), Some(true));
        assert_eq!(block.bool("b").unwrap(), Some(false));
        assert!(block.bool("c").is_err());
        assert!(block.bool("d").is_err());
    }

    #[test]
    fn repeated_blocks_take_list_or_object() {
        let value = json!({"one": {"name": "a"}, "many": [{"name": "a"}, {"name": "b"}], "bad": 3});
        let block = Block::new("config", &value).unwrap();
        assert_eq!(block.blocks("one").unwrap().len(), 1);
        let many = block.blocks("many").unwrap();
        assert_eq!(many[1].string("name").unwrap().as_deref(), Some("b"));
        assert_eq!(many[1].child("name"), "config.many[1].name");
        assert!(block.blocks("bad").is_err());
        assert!(block.blocks("absent").unwrap().is_empty());
    }
}

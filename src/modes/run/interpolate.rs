//! Task-time interpolation of `${...}` in task config and env, as a Nomad client does:
//! `${NOMAD_*}` and other task env names, `${attr.*}`, `${node.*}`, `${meta.*}` from the
//! node, and `${env["NAME"]}`. Unknown references stay as written.

use std::collections::BTreeMap;

use serde_json::Value;

/// What `${...}` can refer to when a task starts.
#[derive(Debug, Clone, Default)]
pub struct Scope<'a> {
    /// The task environment built so far (NOMAD_* and friends).
    pub env: Option<&'a BTreeMap<String, String>>,
    /// Node attributes keyed as written in a job: `attr.kernel.name`, `node.unique.id`,
    /// `meta.rack`.
    pub node: Option<&'a BTreeMap<String, String>>,
}

impl Scope<'_> {
    fn lookup(&self, reference: &str) -> Option<&str> {
        let reference = reference.trim();
        if let Some(name) = env_index(reference) {
            return self.env.and_then(|e| e.get(name)).map(String::as_str);
        }
        if let Some(v) = self.env.and_then(|e| e.get(reference)) {
            return Some(v);
        }
        self.node.and_then(|n| n.get(reference)).map(String::as_str)
    }
}

/// `env["NAME"]` or `env.NAME` -> `NAME`.
fn env_index(reference: &str) -> Option<&str> {
    if let Some(rest) = reference.strip_prefix("env[") {
        let inner = rest.strip_suffix(']')?.trim();
        return inner.strip_prefix('"')?.strip_suffix('"');
    }
    reference.strip_prefix("env.")
}

/// Replaces every resolvable `${...}` in `text`.
pub fn interpolate(text: &str, scope: &Scope<'_>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                let reference = &after[..end];
                match scope.lookup(reference) {
                    Some(v) => out.push_str(v),
                    None => {
                        out.push_str("${");
                        out.push_str(reference);
                        out.push('}');
                    }
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Interpolates every string (and object key) inside a JSON value.
pub fn interpolate_value(value: &Value, scope: &Scope<'_>) -> Value {
    match value {
        Value::String(s) => Value::String(interpolate(s, scope)),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| interpolate_value(v, scope)).collect())
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (interpolate(k, scope), interpolate_value(v, scope)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn replaces_known_references_and_keeps_unknown_ones() {
        let env: BTreeMap<String, String> = [
            ("NOMAD_ALLOC_ID", "a1"),
            ("NOMAD_PORT_http", "8080"),
            ("HOME", "/root"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let node: BTreeMap<String, String> =
            [("attr.kernel.name", "linux"), ("node.unique.name", "box")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let scope = Scope {
            env: Some(&env),
            node: Some(&node),
        };
        assert_eq!(
            interpolate("${NOMAD_ALLOC_ID}-${NOMAD_PORT_http}", &scope),
            "a1-8080"
        );
        assert_eq!(
            interpolate("${attr.kernel.name}/${node.unique.name}", &scope),
            "linux/box"
        );
        assert_eq!(
            interpolate("${env[\"HOME\"]} ${env.HOME}", &scope),
            "/root /root"
        );
        assert_eq!(
            interpolate("${meta.rack} ${NOPE} $${x} ${unterminated", &scope),
            "${meta.rack} ${NOPE} $${x} ${unterminated"
        );
        assert_eq!(
            interpolate_value(
                &json!({"args": ["-p", "${NOMAD_PORT_http}"], "labels": {"${NOMAD_ALLOC_ID}": 1}}),
                &scope
            ),
            json!({"args": ["-p", "8080"], "labels": {"a1": 1}})
        );
    }
}

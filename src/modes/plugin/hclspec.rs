//! The hclspec schemas the agent decodes configuration with: `ConfigSchema` (the agent's
//! `plugin "nomad-driver-podman" { config {} }` block) and `TaskConfigSchema` (a job's
//! task `config {}` block).
//!
//! Options of the Go plugin keep its exact shapes, types and defaults, so existing agent
//! configs and job files decode to the
//! same values. Options only this driver has (`allow_privileged`, `allow_caps`,
//! `gc.image`, `gc.image_delay`, `gc.dangling_containers`) take their defaults from
//! `DriverConfig::default()`, so the schema and the core cannot disagree.
//!
//! Every `Attr` and `Block` carries its name explicitly: no implied name passes through a
//! `Default`.

use std::collections::HashMap;
use std::time::Duration;

use crate::driver::config::DriverConfig;
use crate::driver::task::{OptionShape, TaskOption, TASK_OPTIONS};

use super::proto::hclspec::{self, spec::Block as Kind, Spec};

fn spec(kind: Kind) -> Spec {
    Spec { block: Some(kind) }
}

fn attr(name: &str, type_expr: &str) -> Spec {
    spec(Kind::Attr(hclspec::Attr {
        name: name.to_string(),
        r#type: type_expr.to_string(),
        required: false,
    }))
}

fn required_attr(name: &str, type_expr: &str) -> Spec {
    spec(Kind::Attr(hclspec::Attr {
        name: name.to_string(),
        r#type: type_expr.to_string(),
        required: true,
    }))
}

fn block(name: &str, nested: Spec) -> Spec {
    spec(Kind::BlockValue(Box::new(hclspec::Block {
        name: name.to_string(),
        required: false,
        nested: Some(Box::new(nested)),
    })))
}

fn block_list(name: &str, nested: Spec) -> Spec {
    spec(Kind::BlockList(Box::new(hclspec::BlockList {
        name: name.to_string(),
        min_items: 0,
        max_items: 0,
        nested: Some(Box::new(nested)),
    })))
}

fn block_attrs(name: &str, type_expr: &str) -> Spec {
    spec(Kind::BlockAttrs(hclspec::BlockAttrs {
        name: name.to_string(),
        r#type: type_expr.to_string(),
        required: false,
    }))
}

/// `primary`, or the HCL expression `literal` when the primary is absent.
fn default(primary: Spec, literal: &str) -> Spec {
    spec(Kind::Default(Box::new(hclspec::Default {
        primary: Some(Box::new(primary)),
        default: Some(Box::new(spec(Kind::Literal(hclspec::Literal {
            value: literal.to_string(),
        })))),
    })))
}

fn object(attributes: Vec<(&str, Spec)>) -> Spec {
    spec(Kind::Object(hclspec::Object {
        attributes: attributes
            .into_iter()
            .map(|(name, spec)| (name.to_string(), spec))
            .collect::<HashMap<_, _>>(),
    }))
}

/// An HCL string literal.
fn quoted(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}

/// A duration as a Go-style duration literal the core's parser reads back exactly.
fn duration_literal(duration: Duration) -> String {
    quoted(&format!("{}ms", duration.as_millis()))
}

fn list_literal(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|item| quoted(item)).collect();
    format!("[{}]", quoted.join(", "))
}

/// Schema of the agent-side plugin `config {}` block.
pub fn config_schema() -> Spec {
    let defaults = DriverConfig::default();
    let dangling = &defaults.gc.dangling_containers;
    let dangling_literal = format!(
        "{{ enabled = {}, period = {}, creation_grace = {}, dry_run = {} }}",
        dangling.enabled,
        duration_literal(dangling.period),
        duration_literal(dangling.creation_grace),
        dangling.dry_run
    );
    object(vec![
        (
            "auth",
            block(
                "auth",
                object(vec![
                    ("config", attr("config", "string")),
                    ("helper", attr("helper", "string")),
                ]),
            ),
        ),
        (
            "volumes",
            default(
                block(
                    "volumes",
                    object(vec![
                        ("enabled", default(attr("enabled", "bool"), "true")),
                        ("selinuxlabel", attr("selinuxlabel", "string")),
                    ]),
                ),
                "{ enabled = true }",
            ),
        ),
        (
            "gc",
            default(
                block(
                    "gc",
                    object(vec![
                        ("container", default(attr("container", "bool"), "true")),
                        (
                            "image",
                            default(attr("image", "bool"), &defaults.gc.image.to_string()),
                        ),
                        (
                            "image_delay",
                            default(
                                attr("image_delay", "string"),
                                &duration_literal(defaults.gc.image_delay),
                            ),
                        ),
                        (
                            "dangling_containers",
                            default(
                                block(
                                    "dangling_containers",
                                    object(vec![
                                        (
                                            "enabled",
                                            default(
                                                attr("enabled", "bool"),
                                                &dangling.enabled.to_string(),
                                            ),
                                        ),
                                        (
                                            "period",
                                            default(
                                                attr("period", "string"),
                                                &duration_literal(dangling.period),
                                            ),
                                        ),
                                        (
                                            "creation_grace",
                                            default(
                                                attr("creation_grace", "string"),
                                                &duration_literal(dangling.creation_grace),
                                            ),
                                        ),
                                        (
                                            "dry_run",
                                            default(
                                                attr("dry_run", "bool"),
                                                &dangling.dry_run.to_string(),
                                            ),
                                        ),
                                    ]),
                                ),
                                &dangling_literal,
                            ),
                        ),
                    ]),
                ),
                "{ container = true }",
            ),
        ),
        (
            "recover_stopped",
            default(attr("recover_stopped", "bool"), "false"),
        ),
        ("extra_labels", attr("extra_labels", "list(string)")),
        (
            "logging",
            default(
                block(
                    "logging",
                    object(vec![
                        ("driver", default(attr("driver", "string"), "\"nomad\"")),
                        ("options", block_attrs("options", "string")),
                        ("max_disk", default(attr("max_disk", "string"), "\"10m\"")),
                    ]),
                ),
                "{ driver = \"nomad\", options = {}, max_disk = \"10m\" }",
            ),
        ),
        (
            "networking",
            default(
                block(
                    "networking",
                    object(vec![(
                        "default_rootless_mode",
                        attr("default_rootless_mode", "string"),
                    )]),
                ),
                "{ default_rootless_mode = \"\" }",
            ),
        ),
        (
            "socket",
            block_list(
                "socket",
                object(vec![
                    ("name", attr("name", "string")),
                    ("socket_path", required_attr("socket_path", "string")),
                ]),
            ),
        ),
        ("socket_path", attr("socket_path", "string")),
        (
            "disable_log_collection",
            default(attr("disable_log_collection", "bool"), "false"),
        ),
        ("client_http_timeout", attr("client_http_timeout", "string")),
        ("dns_servers", attr("dns_servers", "list(string)")),
        (
            "allow_privileged",
            default(
                attr("allow_privileged", "bool"),
                &defaults.allow_privileged.to_string(),
            ),
        ),
        (
            "allow_caps",
            default(
                attr("allow_caps", "list(string)"),
                &list_literal(&defaults.allow_caps),
            ),
        ),
        (
            "allow_devices",
            default(
                attr("allow_devices", "list(string)"),
                &list_literal(&defaults.allow_devices),
            ),
        ),
        (
            "allow_host_network",
            default(
                attr("allow_host_network", "bool"),
                &defaults.allow_host_network.to_string(),
            ),
        ),
    ])
}

/// Schema of a task's `config {}` block, made from the core's option table: the Go
/// plugin's 49 keys with its shapes, and the docker driver's `mount`, `healthchecks`,
/// `pid_mode`, `uts_mode` with its shapes.
pub fn task_config_schema() -> Spec {
    object(TASK_OPTIONS.iter().filter_map(task_option_schema).collect())
}

/// An option of the table as hcldec decodes it; `None` for a block this file has no
/// fields for (a unit test checks there is none).
fn task_option_schema(option: &TaskOption) -> Option<(&'static str, Spec)> {
    let name = option.name;
    let decoded = match option.shape {
        OptionShape::Attr(type_expr) if option.required => required_attr(name, type_expr),
        OptionShape::Attr(type_expr) => attr(name, type_expr),
        OptionShape::Block => block(name, task_block_fields(name)?),
        OptionShape::BlockList => block_list(name, task_block_fields(name)?),
    };
    Some(match option.hcl_default {
        Some(literal) => (name, default(decoded, literal)),
        None => (name, decoded),
    })
}

/// The fields of the task options that are blocks.
fn task_block_fields(name: &str) -> Option<Spec> {
    Some(match name {
        "auth" => object(vec![
            ("username", attr("username", "string")),
            ("password", attr("password", "string")),
            ("tls_verify", default(attr("tls_verify", "bool"), "true")),
        ]),
        "logging" => object(vec![
            ("driver", attr("driver", "string")),
            ("options", attr("options", "list(map(string))")),
        ]),
        // Nomad's docker driver's options, with its shapes.
        "mount" => object(vec![
            ("type", default(attr("type", "string"), "\"volume\"")),
            ("target", attr("target", "string")),
            ("source", attr("source", "string")),
            ("readonly", attr("readonly", "bool")),
            (
                "bind_options",
                block(
                    "bind_options",
                    object(vec![("propagation", attr("propagation", "string"))]),
                ),
            ),
            (
                "tmpfs_options",
                block(
                    "tmpfs_options",
                    object(vec![
                        ("size", attr("size", "number")),
                        ("mode", attr("mode", "number")),
                    ]),
                ),
            ),
            (
                "volume_options",
                block(
                    "volume_options",
                    object(vec![
                        ("no_copy", attr("no_copy", "bool")),
                        ("labels", attr("labels", "list(map(string))")),
                        (
                            "driver_config",
                            block(
                                "driver_config",
                                object(vec![
                                    ("name", attr("name", "string")),
                                    ("options", attr("options", "list(map(string))")),
                                ]),
                            ),
                        ),
                    ]),
                ),
            ),
        ]),
        "healthchecks" => object(vec![("disable", attr("disable", "bool"))]),
        _ => return None,
    })
}

/// Applies a schema's attribute types to a JSON-shaped config the way Nomad's hcldec does
/// before the plugin sees it (cty's safe conversions): numbers and bools where a string is
/// wanted become their text (`memory_reservation = 5` is `"5"`), numeric or `true`/`false`
/// strings where a number or bool is wanted become one, element by element in lists and
/// maps, and nested blocks by their own schema. A value of another shape, or a string that
/// is no number, is left as it is for the config decoder to refuse with the field's name.
/// The runner sends its task `config` blocks through this, so a config means the same in
/// `run` as in a Nomad job.
pub fn coerce_to_schema(schema: &Spec, value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match (schema.block.as_ref(), value) {
        (Some(Kind::Object(object)), Value::Object(fields)) => Value::Object(
            fields
                .iter()
                .map(|(name, v)| {
                    let v = match object.attributes.get(name) {
                        Some(nested) => coerce_to_schema(nested, v),
                        None => v.clone(),
                    };
                    (name.clone(), v)
                })
                .collect(),
        ),
        (Some(Kind::Attr(attr)), v) => coerce_to_type(&attr.r#type, v),
        (Some(Kind::BlockAttrs(attrs)), v) => coerce_to_type(&format!("map({})", attrs.r#type), v),
        (Some(Kind::Default(default)), v) => match default.primary.as_deref() {
            Some(primary) => coerce_to_schema(primary, v),
            None => v.clone(),
        },
        (Some(Kind::BlockValue(block)), v) => match block.nested.as_deref() {
            Some(nested) => coerce_block(nested, v),
            None => v.clone(),
        },
        (Some(Kind::BlockList(list)), Value::Array(items)) => match list.nested.as_deref() {
            Some(nested) => Value::Array(items.iter().map(|i| coerce_block(nested, i)).collect()),
            None => value.clone(),
        },
        _ => value.clone(),
    }
}

/// A block's body: an object, or (as job files give repeated blocks) a list of them.
fn coerce_block(nested: &Spec, value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(|i| coerce_to_schema(nested, i)).collect())
        }
        other => coerce_to_schema(nested, other),
    }
}

/// cty's safe conversion of a JSON-shaped value to a type expression.
fn coerce_to_type(type_expr: &str, value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    let inner = |prefix: &str| {
        type_expr
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(')'))
    };
    match (type_expr, value) {
        ("string", Value::Number(n)) => Value::String(n.to_string()),
        ("string", Value::Bool(b)) => Value::String(b.to_string()),
        ("number", Value::String(text)) => text
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .ok()
            .or_else(|| {
                text.trim()
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
            })
            .unwrap_or_else(|| value.clone()),
        ("bool", Value::String(text)) => match text.as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => value.clone(),
        },
        (_, Value::Array(items)) => match inner("list(").or_else(|| inner("set(")) {
            Some(element) => {
                Value::Array(items.iter().map(|i| coerce_to_type(element, i)).collect())
            }
            None => value.clone(),
        },
        (_, Value::Object(fields)) => match inner("map(") {
            Some(element) => Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.clone(), coerce_to_type(element, v)))
                    .collect(),
            ),
            None => value.clone(),
        },
        _ => value.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::{json, Map, Value};

    use crate::driver::task::TaskConfig;

    use super::*;

    fn attributes(spec: &Spec) -> &HashMap<String, Spec> {
        match &spec.block {
            Some(Kind::Object(object)) => &object.attributes,
            other => panic!("not an object: {other:?}"),
        }
    }

    /// Type expressions the agent can parse.
    fn valid_type(expr: &str) -> bool {
        match expr {
            "string" | "number" | "bool" | "any" => true,
            _ => ["list(", "set(", "map("].iter().any(|prefix| {
                expr.strip_prefix(prefix)
                    .and_then(|rest| rest.strip_suffix(')'))
                    .is_some_and(valid_type)
            }),
        }
    }

    /// Walks a spec checking the rules the agent enforces when converting it.
    fn check(spec: &Spec, implied_name: Option<&str>) {
        match spec.block.as_ref().expect("every spec sets its oneof") {
            Kind::Object(object) => {
                for (name, nested) in &object.attributes {
                    check(nested, Some(name));
                }
            }
            Kind::Attr(attr) => {
                assert!(
                    valid_type(&attr.r#type),
                    "type of {}: {}",
                    attr.name,
                    attr.r#type
                );
                assert!(!attr.name.is_empty());
                if let Some(implied) = implied_name {
                    assert_eq!(attr.name, implied);
                }
            }
            Kind::BlockAttrs(attrs) => assert!(valid_type(&attrs.r#type)),
            Kind::BlockValue(block) => {
                assert!(!block.name.is_empty());
                check(block.nested.as_deref().expect("nested is mandatory"), None);
            }
            Kind::BlockList(list) => {
                assert!(!list.name.is_empty());
                check(list.nested.as_deref().expect("nested is mandatory"), None);
            }
            Kind::Default(default) => {
                check(default.primary.as_deref().expect("primary"), implied_name);
                match default.default.as_deref().and_then(|d| d.block.as_ref()) {
                    Some(Kind::Literal(literal)) => assert!(!literal.value.is_empty()),
                    other => panic!("default must be a literal: {other:?}"),
                }
            }
            other => panic!("kind not used by this driver: {other:?}"),
        }
    }

    #[test]
    fn schemas_are_well_formed() {
        check(&config_schema(), None);
        check(&task_config_schema(), None);
    }

    #[test]
    fn task_schema_has_the_go_plugins_49_keys_and_the_docker_drivers_4() {
        let schema = task_config_schema();
        let keys: BTreeSet<&str> = attributes(&schema).keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 53);
        // Every option of the core's table is in the schema (a block has its fields).
        let table: BTreeSet<&str> = TASK_OPTIONS.iter().map(|o| o.name).collect();
        assert_eq!(keys, table);
        for docker in ["mount", "healthchecks", "pid_mode", "uts_mode"] {
            assert!(keys.contains(docker), "{docker}");
        }
        // The core knows exactly these keys: an all-null config with an image decodes.
        let mut value: Map<String, Value> =
            keys.iter().map(|k| (k.to_string(), Value::Null)).collect();
        value.insert("image".into(), json!("busybox"));
        let config = TaskConfig::from_value(&Value::Object(value)).unwrap();
        assert_eq!(config.image, "busybox");
    }

    #[test]
    fn task_schema_shapes_match_the_go_plugin() {
        let schema = task_config_schema();
        let attrs = attributes(&schema);
        let type_of = |key: &str| match &attrs[key].block {
            Some(Kind::Attr(attr)) => attr.r#type.clone(),
            Some(Kind::Default(default)) => match default.primary.as_deref().unwrap().block {
                Some(Kind::Attr(ref attr)) => attr.r#type.clone(),
                _ => unreachable!(),
            },
            _ => "block".to_string(),
        };
        assert_eq!(type_of("entrypoint"), "any");
        assert_eq!(type_of("labels"), "list(map(string))");
        assert_eq!(type_of("port_map"), "list(map(number))");
        assert_eq!(type_of("ulimit"), "list(map(string))");
        assert_eq!(type_of("memory_swappiness"), "number");
        assert_eq!(type_of("auth"), "block");
        assert_eq!(type_of("logging"), "block");
        assert_eq!(type_of("image_pull_timeout"), "string");
        match &attrs["image"].block {
            Some(Kind::Attr(attr)) => assert!(attr.required),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn config_schema_covers_every_driver_option() {
        let schema = config_schema();
        let keys: BTreeSet<String> = attributes(&schema).keys().cloned().collect();
        let core_keys: BTreeSet<String> = match serde_json::to_value(DriverConfig::default()) {
            Ok(Value::Object(map)) => map.keys().cloned().collect(),
            other => panic!("{other:?}"),
        };
        assert_eq!(keys, core_keys);
        // Every option set to null means "use the default" to the core.
        let nulls: Map<String, Value> = keys.iter().map(|k| (k.clone(), Value::Null)).collect();
        assert_eq!(
            DriverConfig::from_value(&Value::Object(nulls)).unwrap(),
            DriverConfig::default()
        );
    }

    #[test]
    fn extra_option_defaults_read_back_as_the_core_defaults() {
        let defaults = DriverConfig::default();
        let value = json!({
            "gc": {
                "image": defaults.gc.image,
                "image_delay": serde_json::from_str::<String>(&duration_literal(defaults.gc.image_delay)).unwrap(),
                "dangling_containers": {
                    "period": serde_json::from_str::<String>(&duration_literal(defaults.gc.dangling_containers.period)).unwrap(),
                    "creation_grace": serde_json::from_str::<String>(&duration_literal(defaults.gc.dangling_containers.creation_grace)).unwrap(),
                },
            },
            "allow_caps": defaults.allow_caps,
        });
        assert_eq!(DriverConfig::from_value(&value).unwrap(), defaults);
        assert_eq!(
            list_literal(&["all".into(), "a\"b".into()]),
            r#"["all", "a\"b"]"#
        );
    }
}

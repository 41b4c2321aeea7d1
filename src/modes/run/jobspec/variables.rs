//! `variable` blocks and their values from defaults, `NOMAD_VAR_*`, `-var-file` and `-var`,
//! in Nomad's precedence (later wins): default, environment, files in order, flags in order.

use std::path::PathBuf;

use hcl::edit::expr::Expression;
use hcl::edit::structure::{Block, Structure};
use hcl::edit::Span;
use serde_json::Value;

use super::error::JobFileError;
use super::eval::{Evaluator, Locals};
use super::source::{Location, Source};
use super::types::TypeConstraint;
use super::value::Object;

/// Where variable values come from besides the job file.
#[derive(Debug, Clone, Default)]
pub struct VarInputs {
    /// `-var name=value` flags, in order.
    pub flags: Vec<String>,
    /// `-var-file` paths, in order.
    pub files: Vec<PathBuf>,
    /// `NOMAD_VAR_<name>` environment variables (name without the prefix, value).
    pub env: Vec<(String, String)>,
}

impl VarInputs {
    /// Picks `NOMAD_VAR_*` out of an environment.
    pub fn env_from(vars: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
        vars.into_iter()
            .filter_map(|(k, v)| k.strip_prefix("NOMAD_VAR_").map(|n| (n.to_string(), v)))
            .collect()
    }
}

/// One `variable "name" { ... }` block.
pub struct VariableDecl {
    pub name: String,
    pub ty: TypeConstraint,
    pub default: Option<Value>,
    /// The default did not convert to the type (already reported).
    default_invalid: bool,
    validations: Vec<Validation>,
    location: Location,
}

struct Validation {
    condition: Expression,
    error_message: Expression,
}

impl VariableDecl {
    /// Reads a `variable` block; defaults are literal values (no references), as in Nomad.
    pub fn decode(
        block: &Block,
        source: &Source,
        errors: &mut Vec<JobFileError>,
    ) -> Option<VariableDecl> {
        let location = source.locate(block.span());
        let [label] = block.labels.as_slice() else {
            errors.push(JobFileError::at(
                location,
                "a variable block needs exactly one label: its name",
            ));
            return None;
        };
        let name = label.as_str().to_string();
        let empty = Object::new();
        let literal = Evaluator {
            source: source.clone(),
            vars: &empty,
            locals: Locals::None,
            runtime_refs: false,
        };
        let mut ty = TypeConstraint::Any;
        let mut default = None;
        let mut validations = Vec::new();
        let mut default_expr = None;
        for structure in block.body.iter() {
            match structure {
                Structure::Attribute(attr) => match attr.key.value().as_str() {
                    "type" => match TypeConstraint::parse(&attr.value) {
                        Ok(t) => ty = t,
                        Err(m) => errors.push(JobFileError::at(source.locate(attr.value.span()), m)),
                    },
                    "default" => match literal.eval(&attr.value) {
                        Ok(v) => {
                            default = Some(v);
                            default_expr = Some(attr.value.span());
                        }
                        Err(e) => errors.push(e),
                    },
                    "description" => {}
                    // Values are never printed, so `sensitive` changes nothing here.
                    "sensitive" => match literal.eval(&attr.value) {
                        Ok(Value::Bool(_)) => {}
                        Ok(_) => errors.push(JobFileError::at(
                            source.locate(attr.value.span()),
                            "sensitive must be a bool",
                        )),
                        Err(e) => errors.push(e),
                    },
                    other => errors.push(JobFileError::at(
                        source.locate(attr.key.span()),
                        format!("Unsupported argument: an argument named {other:?} is not expected in a variable block"),
                    )),
                },
                Structure::Block(b) if b.ident.value().as_str() == "validation" => {
                    let condition = b.body.get_attribute("condition").map(|a| a.value.clone());
                    let message = b.body.get_attribute("error_message").map(|a| a.value.clone());
                    match (condition, message) {
                        (Some(condition), Some(error_message)) => validations.push(Validation {
                            condition,
                            error_message,
                        }),
                        _ => errors.push(JobFileError::at(
                            source.locate(b.span()),
                            "a validation block needs both condition and error_message",
                        )),
                    }
                }
                Structure::Block(b) => errors.push(JobFileError::at(
                    source.locate(b.ident.span()),
                    format!("Unsupported block type: blocks of type {:?} are not expected in a variable block", b.ident.value().as_str()),
                )),
            }
        }
        let mut default_invalid = false;
        if let Some(value) = default.take() {
            match ty.convert(value) {
                Ok(v) => default = Some(v),
                Err(m) => {
                    default_invalid = true;
                    errors.push(JobFileError::at(
                        source.locate(default_expr.flatten()),
                        format!("Invalid default value for variable {name:?}: {m}"),
                    ))
                }
            }
        }
        Some(VariableDecl {
            name,
            ty,
            default,
            default_invalid,
            validations,
            location,
        })
    }
}

/// A value assigned to a variable, with where it came from for error messages.
struct Assignment {
    value: Value,
    origin: Option<Location>,
    what: String,
}

/// Resolves every declared variable; pushes located errors for bad or missing values.
pub fn resolve(
    decls: &[VariableDecl],
    inputs: &VarInputs,
    errors: &mut Vec<JobFileError>,
) -> Object {
    let mut assigned: std::collections::BTreeMap<String, Assignment> = Default::default();
    let declared = |name: &str| decls.iter().find(|d| d.name == name);

    // Environment: undeclared NOMAD_VAR_* are ignored (they may belong to another job).
    for (name, raw) in &inputs.env {
        if let Some(decl) = declared(name) {
            match parse_raw(decl, raw) {
                Ok(value) => {
                    assigned.insert(
                        name.clone(),
                        Assignment {
                            value,
                            origin: None,
                            what: format!("NOMAD_VAR_{name}"),
                        },
                    );
                }
                Err(m) => errors.push(JobFileError::unlocated(format!("NOMAD_VAR_{name}: {m}"))),
            }
        }
    }
    for path in &inputs.files {
        for (name, value, location) in read_var_file(path, errors) {
            if declared(&name).is_none() {
                errors.push(JobFileError::at(
                    location,
                    format!("Undefined variable: {name:?} is assigned here but the job file declares no variable {name:?}"),
                ));
                continue;
            }
            assigned.insert(
                name,
                Assignment {
                    value,
                    origin: Some(location),
                    what: format!("-var-file {}", path.display()),
                },
            );
        }
    }
    for flag in &inputs.flags {
        let Some((name, raw)) = flag.split_once('=') else {
            errors.push(JobFileError::unlocated(format!(
                "-var {flag:?}: expected name=value"
            )));
            continue;
        };
        let name = name.trim();
        let Some(decl) = declared(name) else {
            errors.push(JobFileError::unlocated(format!(
                "-var {name}=...: the job file declares no variable {name:?}"
            )));
            continue;
        };
        match parse_raw(decl, raw) {
            Ok(value) => {
                assigned.insert(
                    name.to_string(),
                    Assignment {
                        value,
                        origin: None,
                        what: format!("-var {name}"),
                    },
                );
            }
            Err(m) => errors.push(JobFileError::unlocated(format!("-var {name}: {m}"))),
        }
    }

    let mut out = Object::new();
    for decl in decls {
        let value = match assigned.remove(&decl.name) {
            Some(a) => match decl.ty.convert(a.value) {
                Ok(v) => v,
                Err(m) => {
                    let message = format!(
                        "Invalid value for variable {:?} from {}: {m}",
                        decl.name, a.what
                    );
                    errors.push(match a.origin {
                        Some(at) => JobFileError::at(at, message),
                        None => JobFileError::at(decl.location.clone(), message),
                    });
                    continue;
                }
            },
            None => match &decl.default {
                Some(v) => v.clone(),
                None if decl.default_invalid => continue,
                None => {
                    errors.push(JobFileError::at(
                        decl.location.clone(),
                        format!(
                            "Required variable not set: variable {:?} has no default; set it with -var, -var-file or NOMAD_VAR_{}",
                            decl.name, decl.name
                        ),
                    ));
                    continue;
                }
            },
        };
        out.insert(decl.name.clone(), value);
    }
    out
}

/// Runs each variable's `validation` blocks against its resolved value.
pub fn validate(
    decls: &[VariableDecl],
    values: &Object,
    source: &Source,
    errors: &mut Vec<JobFileError>,
) {
    for decl in decls {
        let Some(value) = values.get(&decl.name) else {
            continue;
        };
        let mut own = Object::new();
        own.insert(decl.name.clone(), value.clone());
        let evaluator = Evaluator {
            source: source.clone(),
            vars: &own,
            locals: Locals::None,
            runtime_refs: false,
        };
        for validation in &decl.validations {
            match evaluator.eval(&validation.condition) {
                Ok(Value::Bool(true)) => {}
                Ok(Value::Bool(false)) => {
                    let message = evaluator
                        .eval_string(&validation.error_message)
                        .unwrap_or_else(|e| e.message);
                    errors.push(JobFileError::at(
                        source.locate(validation.condition.span()),
                        format!("Invalid value for variable {:?}: {message}", decl.name),
                    ));
                }
                Ok(_) => errors.push(JobFileError::at(
                    source.locate(validation.condition.span()),
                    "Invalid validation condition: it must produce a bool",
                )),
                Err(e) => errors.push(e),
            }
        }
    }
}

/// A `-var`/`NOMAD_VAR_` string: taken as-is for primitive types, parsed as an HCL
/// expression for collection types (`-var 'ports=[80, 443]'`).
fn parse_raw(decl: &VariableDecl, raw: &str) -> Result<Value, String> {
    if !decl.ty.wants_expression() {
        return Ok(Value::String(raw.to_string()));
    }
    let expr = hcl::edit::parser::parse_expr(raw)
        .map_err(|e| format!("invalid value: {}", e.message()))?;
    let source = Source::new("<value>", raw);
    let empty = Object::new();
    Evaluator {
        source,
        vars: &empty,
        locals: Locals::None,
        runtime_refs: false,
    }
    .eval(&expr)
    .map_err(|e| e.message)
}

/// The assignments of one `-var-file` (HCL `name = value` lines, or a JSON object).
fn read_var_file(
    path: &std::path::Path,
    errors: &mut Vec<JobFileError>,
) -> Vec<(String, Value, Location)> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            errors.push(JobFileError::unlocated(format!(
                "cannot read variable file {}: {e}",
                path.display()
            )));
            return Vec::new();
        }
    };
    let source = Source::new(path, text);
    if path.extension().is_some_and(|e| e == "json") {
        return match serde_json::from_str::<Value>(source.text()) {
            Ok(Value::Object(map)) => map
                .into_iter()
                .map(|(k, v)| (k, v, source.location(0)))
                .collect(),
            Ok(_) => {
                errors.push(JobFileError::at(
                    source.location(0),
                    "a JSON variable file must hold one object",
                ));
                Vec::new()
            }
            Err(e) => {
                let offset = line_col_offset(source.text(), e.line(), e.column());
                errors.push(JobFileError::at(
                    source.location(offset),
                    format!("invalid JSON: {e}"),
                ));
                Vec::new()
            }
        };
    }
    let body = match hcl::edit::parser::parse_body(source.text()) {
        Ok(b) => b,
        Err(e) => {
            errors.push(JobFileError::at(
                source.location(e.location().offset()),
                e.message().to_string(),
            ));
            return Vec::new();
        }
    };
    let empty = Object::new();
    let evaluator = Evaluator {
        source: source.clone(),
        vars: &empty,
        locals: Locals::None,
        runtime_refs: false,
    };
    let mut out = Vec::new();
    for structure in body.iter() {
        match structure {
            Structure::Attribute(attr) => match evaluator.eval(&attr.value) {
                Ok(v) => out.push((
                    attr.key.value().as_str().to_string(),
                    v,
                    source.locate(attr.span()),
                )),
                Err(e) => errors.push(e),
            },
            Structure::Block(b) => errors.push(JobFileError::at(
                source.locate(b.span()),
                "a variable file holds only name = value assignments",
            )),
        }
    }
    out
}

fn line_col_offset(text: &str, line: usize, column: usize) -> usize {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    line_start + column.saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decls(text: &str) -> (Vec<VariableDecl>, Source) {
        let source = Source::new("job.nomad", text);
        let body = hcl::edit::parser::parse_body(text).unwrap();
        let mut errors = Vec::new();
        let decls = body
            .blocks()
            .filter_map(|b| VariableDecl::decode(b, &source, &mut errors))
            .collect();
        assert!(errors.is_empty(), "{errors:?}");
        (decls, source)
    }

    const VARS: &str = r#"
variable "image" {
  type    = string
  default = "busybox"
}
variable "count" {
  type    = number
  default = 1
  validation {
    condition     = var.count > 0 && var.count < 10
    error_message = "count must be between 1 and 9"
  }
}
variable "ports" {
  type    = list(number)
  default = [80]
}
variable "required" {}
"#;

    #[test]
    fn precedence_is_default_env_file_flag() {
        let (decls, source) = decls(VARS);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vars.hcl");
        std::fs::write(&file, "image = \"from-file\"\ncount = 3\n").unwrap();
        let inputs = VarInputs {
            flags: vec!["count=5".into(), "ports=[1, 2]".into(), "required=r".into()],
            files: vec![file],
            env: vec![
                ("image".into(), "from-env".into()),
                ("count".into(), "2".into()),
                ("unrelated".into(), "x".into()),
            ],
        };
        let mut errors = Vec::new();
        let values = resolve(&decls, &inputs, &mut errors);
        validate(&decls, &values, &source, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            Value::Object(values),
            json!({"image": "from-file", "count": 5, "ports": [1, 2], "required": "r"})
        );
    }

    #[test]
    fn missing_invalid_and_failing_values_are_located() {
        let (decls, source) = decls(VARS);
        let inputs = VarInputs {
            flags: vec!["count=20".into(), "nope=1".into()],
            ..Default::default()
        };
        let mut errors = Vec::new();
        let values = resolve(&decls, &inputs, &mut errors);
        validate(&decls, &values, &source, &mut errors);
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            vec![
                "-var nope=...: the job file declares no variable \"nope\"".to_string(),
                "job.nomad:18:1: Required variable not set: variable \"required\" has no default; set it with -var, -var-file or NOMAD_VAR_required".to_string(),
                "job.nomad:10:21: Invalid value for variable \"count\": count must be between 1 and 9".to_string(),
            ]
        );
    }

    #[test]
    fn var_file_errors_point_into_the_var_file() {
        let (decls, _) = decls(VARS);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("v.hcl");
        std::fs::write(&file, "required = 1\ncount = \"many\"\nother = 2\n").unwrap();
        let mut errors = Vec::new();
        resolve(
            &decls,
            &VarInputs {
                files: vec![file.clone()],
                ..Default::default()
            },
            &mut errors,
        );
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let f = file.display();
        assert_eq!(
            text,
            vec![
                format!("{f}:3:1: Undefined variable: \"other\" is assigned here but the job file declares no variable \"other\""),
                format!("{f}:2:1: Invalid value for variable \"count\" from -var-file {f}: a number is required, got the string \"many\""),
            ]
        );
    }
}

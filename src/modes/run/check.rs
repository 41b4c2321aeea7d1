//! Checks that need the driver core's task model: every podman task's `config {}` decodes
//! (`TaskConfig::from_value`), its ports exist in the group network, and `task:NAME`
//! references name a podman task of the same group. Errors are located in the job file.

use crate::driver::spec::{self, PortsProblem};
use crate::driver::task::{IpcMode, NetworkMode as TaskNetworkMode, TaskConfig};

use super::jobspec::decode::Ignored;
use super::jobspec::{JobFileError, Location};
use super::model::{Group, Job, NetworkMode, Task};
use super::template::check;

/// The task name of an allocation's network-namespace holder (group bridge networks);
/// Nomad's own docker infra container is `nomad_init_<alloc>`.
pub const INFRA_TASK: &str = "nomad_init";

/// A job's task configs, decoded.
#[derive(Debug, Default)]
pub struct Checked {
    pub errors: Vec<JobFileError>,
    /// Options a group bridge network overrides, as Nomad does.
    pub ignored: Vec<Ignored>,
}

use crate::modes::plugin::hclspec::{coerce_to_schema, task_config_schema};

pub fn check_job(job: &Job) -> Checked {
    check_job_except(job, &std::collections::BTreeSet::new())
}

/// [`check_job`] without the `(group, task)` pairs in `skip` (tasks whose decoding
/// already failed: a job file with errors of both kinds is fixed in one round).
pub fn check_job_except(job: &Job, skip: &std::collections::BTreeSet<(String, String)>) -> Checked {
    let mut out = Checked::default();
    for group in &job.groups {
        for task in &group.tasks {
            if !skip.contains(&(group.name.clone(), task.name.clone())) {
                check_task(group, task, &mut out);
            }
        }
        check_static_ports(group, &mut out);
    }
    out.errors.sort_by(|a, b| a.location.cmp(&b.location));
    out
}

/// On one machine every allocation of a group publishes its ports on the same host: a
/// static port with `count > 1` can only be bound once (Nomad spreads such allocations
/// over several clients).
fn check_static_ports(group: &Group, out: &mut Checked) {
    if group.count <= 1 {
        return;
    }
    let Some(network) = &group.network else {
        return;
    };
    for port in &network.ports {
        if let Some(number) = port.static_port {
            out.errors.push(JobFileError::at(
                port.location.clone(),
                format!(
                    "group {:?}: port {:?} has static = {number} but count = {}: the {} \
                     allocations run on this one machine and cannot all bind host port \
                     {number}; use a dynamic port (no static) or count = 1",
                    group.name, port.label, group.count, group.count
                ),
            ));
        }
    }
}

/// Decodes a task's config as the core will see it at start.
/// The config first goes through the plugin's type schema, as Nomad's hcldec does for
/// the plugin (`memory_reservation = 5` becomes `"5"`): one decode path for both modes.
pub fn decode_config(task: &Task, config: &serde_json::Value) -> Result<TaskConfig, JobFileError> {
    let typed = coerce_to_schema(&task_config_schema(), config);
    TaskConfig::from_value(&typed).map_err(|e| {
        let at = config_field_location(task, e.field());
        JobFileError::at(at, format!("task {:?}: {e}", task.name))
    })
}

/// Where a config field (as the core names it, e.g. `config.auth.username`) was written.
pub fn config_field_location(task: &Task, field: &str) -> Location {
    top_level_key(field)
        .and_then(|k| task.config_locations.get(k))
        .cloned()
        .unwrap_or_else(|| task.config_location.clone())
}

fn top_level_key(field: &str) -> Option<&str> {
    let rest = field.strip_prefix("config.")?;
    let end = rest.find(['.', '[']).unwrap_or(rest.len());
    Some(&rest[..end])
}

fn check_task(group: &Group, task: &Task, out: &mut Checked) {
    let bridge = group
        .network
        .as_ref()
        .is_some_and(|n| n.mode == NetworkMode::Bridge);
    if bridge && task.name == INFRA_TASK {
        out.errors.push(JobFileError::at(
            task.location.clone(),
            format!("task name {INFRA_TASK:?} is reserved for the allocation's network namespace in a bridge group"),
        ));
    }
    check_templates(task, out);
    let typed = coerce_to_schema(&task_config_schema(), &task.config);
    let config = match TaskConfig::from_value_all(&typed) {
        Ok(c) => c,
        Err(errors) => {
            for e in errors {
                // A value that is still `${...}` is decided when the task starts.
                if !field_is_deferred(task, e.field()) {
                    let at = config_field_location(task, e.field());
                    out.errors
                        .push(JobFileError::at(at, format!("task {:?}: {e}", task.name)));
                }
            }
            return;
        }
    };
    let located = |key: &str| {
        task.config_locations
            .get(key)
            .cloned()
            .unwrap_or_else(|| task.config_location.clone())
    };
    let declared: Option<Vec<&str>> = group
        .network
        .as_ref()
        .map(|n| n.ports.iter().map(|p| p.label.as_str()).collect());
    for problem in spec::ports_problems(&config.ports, declared.as_deref()) {
        let message = match problem {
            PortsProblem::NoNetwork => format!("task {:?}: No ports defined in network block: the group needs a network block with these ports", task.name),
            PortsProblem::Undeclared(label) => format!(
                "task {:?}: Port {label:?} not found, check the group's network block",
                task.name
            ),
        };
        out.errors.push(JobFileError::at(located("ports"), message));
    }
    if !config.port_map.is_empty() {
        out.errors.push(JobFileError::at(
            located("port_map"),
            format!("task {:?}: port_map needs the deprecated task-level resources.network, which the runner does not support; declare ports in the group network block and list them in ports", task.name),
        ));
    }
    if bridge {
        for key in ["network_mode", "ports"] {
            let set = match key {
                "network_mode" => config.network_mode != TaskNetworkMode::Default,
                _ => !config.ports.is_empty(),
            };
            if set {
                let what = format!("config.{key} (group network is bridge)");
                let at = located(key);
                match out.ignored.iter_mut().find(|i| i.what == what) {
                    Some(i) => i.count += 1,
                    None => out.ignored.push(Ignored {
                        what,
                        location: at,
                        count: 1,
                    }),
                }
            }
        }
    } else if let TaskNetworkMode::Task(name) = &config.network_mode {
        check_task_reference(
            group,
            task,
            name,
            "network_mode",
            located("network_mode"),
            out,
        );
    }
    if let IpcMode::Task(name) = &config.ipc_mode {
        check_task_reference(group, task, name, "ipc_mode", located("ipc_mode"), out);
    }
}

/// Templates must parse (and a `source` exist): a local run can tell before starting.
/// Reads template sources, so it blocks.
fn check_templates(task: &Task, out: &mut Checked) {
    for t in &task.templates {
        let text = match (&t.data, &t.source) {
            (Some(data), _) => data.clone(),
            (None, Some(source)) => match std::fs::read_to_string(source) {
                Ok(text) => text,
                Err(e) => {
                    out.errors.push(JobFileError::at(
                        t.location.clone(),
                        format!(
                            "template {}: cannot read source {}: {e}",
                            t.destination,
                            source.display()
                        ),
                    ));
                    continue;
                }
            },
            (None, None) => continue,
        };
        if let Err(e) = check(&text, &t.left_delimiter, &t.right_delimiter) {
            out.errors.push(JobFileError::at(
                t.location.clone(),
                format!("template {}: {e}", t.destination),
            ));
        }
    }
}

fn check_task_reference(
    group: &Group,
    task: &Task,
    target: &str,
    key: &str,
    at: Location,
    out: &mut Checked,
) {
    if target == task.name {
        out.errors.push(JobFileError::at(
            at,
            format!(
                "task {:?}: {key} = \"task:{target}\" refers to the task itself",
                task.name
            ),
        ));
    } else if !group.tasks.iter().any(|t| t.name == target) {
        out.errors.push(JobFileError::at(
            at,
            format!(
                "task {:?}: {key} = \"task:{target}\" names no podman task of group {:?}",
                task.name, group.name
            ),
        ));
    }
}

/// Whether the config value behind `field` still holds a runtime reference.
fn field_is_deferred(task: &Task, field: &str) -> bool {
    fn has_reference(v: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::String(s) => s.contains("${"),
            serde_json::Value::Array(items) => items.iter().any(has_reference),
            serde_json::Value::Object(map) => map
                .iter()
                .any(|(k, v)| k.contains("${") || has_reference(v)),
            _ => false,
        }
    }
    top_level_key(field)
        .and_then(|k| task.config.get(k))
        .is_some_and(has_reference)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modes::run::jobspec::{parse, Source, VarInputs};

    fn check(text: &str) -> Vec<String> {
        let job = parse(Source::new("job.nomad", text), &VarInputs::default())
            .unwrap()
            .job;
        check_job(&job)
            .errors
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn config_errors_point_at_the_config_attribute() {
        let errors = check(
            r#"job "j" {
  group "g" {
    network {
      port "http" {}
    }
    task "t" {
      driver = "podman"
      config {
        image              = "busybox"
        memory_reservation = "lots"
      }
    }
    task "u" {
      driver = "podman"
      config {
        image        = "busybox"
        ports        = ["http", "nope"]
        network_mode = "task:ghost"
        pids_limit   = "${NOMAD_META_pids}"
        bogus        = true
      }
    }
  }
}
"#,
        );
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("job.nomad:10:9: task \"t\": config.memory_reservation"),
            "{}",
            errors[0]
        );
        assert!(
            errors[1].starts_with("job.nomad:20:9: task \"u\": config.bogus: unknown option"),
            "{}",
            errors[1]
        );
    }

    #[test]
    fn every_config_error_is_reported_at_once_with_the_nearest_option() {
        let errors = check(
            r#"job "j" {
  group "g" {
    task "t" {
      driver = "podman"
      config {
        imagee     = "busybox"
        comand     = "sh"
        pids_limit = -5
        cap_ad     = ["NET_ADMIN"]
        tty        = "maybe"
      }
    }
  }
}
"#,
        );
        let want = [
            ("job.nomad:5:7:", "config.image: image name required"),
            (
                "job.nomad:6:9:",
                "config.imagee: unknown option; did you mean \"image\"?",
            ),
            (
                "job.nomad:7:9:",
                "config.comand: unknown option; did you mean \"command\"?",
            ),
            ("job.nomad:8:9:", "config.pids_limit"),
            (
                "job.nomad:9:9:",
                "config.cap_ad: unknown option; did you mean \"cap_add\"?",
            ),
            ("job.nomad:10:9:", "config.tty: expected bool"),
        ];
        assert_eq!(errors.len(), want.len(), "{errors:#?}");
        for (error, (at, what)) in errors.iter().zip(want) {
            assert!(error.starts_with(at) && error.contains(what), "{error}");
        }
    }

    #[test]
    fn templates_must_parse_and_their_sources_exist() {
        let errors = check(
            r#"job "j" {
  group "g" {
    task "t" {
      driver = "podman"
      config {
        image = "busybox"
      }
      template {
        data        = "{{ key \"a/b\" }}"
        destination = "local/a"
      }
      template {
        source      = "/nonexistent/x.tpl"
        destination = "local/b"
      }
    }
  }
}
"#,
        );
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].starts_with("job.nomad:8:7: template local/a: line 1: the template function \"key\" needs a Nomad, Consul or Vault server"), "{}", errors[0]);
        assert!(
            errors[1].starts_with(
                "job.nomad:12:7: template local/b: cannot read source /nonexistent/x.tpl"
            ),
            "{}",
            errors[1]
        );
    }

    #[test]
    fn ports_and_task_references_are_checked() {
        let errors = check(
            r#"job "j" {
  group "g" {
    network {
      port "http" {}
    }
    task "u" {
      driver = "podman"
      config {
        image        = "busybox"
        ports        = ["http", "nope"]
        network_mode = "task:ghost"
      }
    }
  }
}
"#,
        );
        assert_eq!(
            errors,
            vec![
                "job.nomad:10:9: task \"u\": Port \"nope\" not found, check the group's network block",
                "job.nomad:11:9: task \"u\": network_mode = \"task:ghost\" names no podman task of group \"g\"",
            ]
        );
    }
}

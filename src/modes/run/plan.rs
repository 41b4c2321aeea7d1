//! `plan`: what `run` would start, per group and task, as text or JSON. Secrets (registry
//! passwords, template contents) are never shown.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::driver::logs::rotate::MIB;
use std::path::Path;

use crate::driver::config::DriverConfig;
use crate::driver::host::HostFacts;
use crate::driver::spec;
use crate::driver::spec::MountType;
use crate::driver::task::{
    container_name, NetworkMode as TaskNetworkMode, TaskConfig, TaskContext, TaskSpec,
};

use super::check::{decode_config, INFRA_TASK};
use super::images::ImageReport;
use super::jobspec::decode::{Ignored, SkippedTask};
use super::model::{duration_text, Group, Job, LogsPolicy, NetworkMode, RestartMode, Task};

#[derive(Debug, Serialize)]
pub struct Plan {
    pub job_id: String,
    pub job_name: String,
    pub job_type: &'static str,
    pub file: String,
    pub groups: Vec<GroupPlan>,
    pub ignored: Vec<Ignored>,
    pub skipped_tasks: Vec<SkippedTask>,
    /// This machine as the job's node, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<NodePlan>,
    /// Images a start could not get (`warnings`), and whether podman was asked.
    #[serde(flatten)]
    pub images: ImageReport,
}

/// The node facts the plan was made for, and how many constraints they satisfy.
#[derive(Debug, Serialize)]
pub struct NodePlan {
    pub name: String,
    pub datacenter: String,
    pub class: String,
    pub meta: std::collections::BTreeMap<String, String>,
    pub constraints_satisfied: usize,
}

#[derive(Debug, Serialize)]
pub struct GroupPlan {
    pub name: String,
    pub count: u32,
    pub network_mode: String,
    pub ports: Vec<PortPlan>,
    pub tasks: Vec<TaskPlan>,
}

#[derive(Debug, Serialize)]
pub struct PortPlan {
    pub label: String,
    /// A fixed host port, or `None` for a dynamic one (20000-32000).
    pub static_port: Option<u16>,
    /// Port inside the task's network namespace; `None` = the host port.
    pub to: Option<u16>,
}

#[derive(Debug, Serialize)]
pub struct TaskPlan {
    pub name: String,
    pub lifecycle: &'static str,
    pub leader: bool,
    pub image: String,
    pub entrypoint: Option<Vec<String>>,
    /// `command` followed by `args`; empty = the image's CMD.
    pub command: Vec<String>,
    pub user: Option<String>,
    /// The `env` block; `${...}` references are filled in when the task starts, together
    /// with Nomad's `NOMAD_*` variables.
    pub env: BTreeMap<String, String>,
    pub network: String,
    pub ports: Vec<String>,
    pub mounts: Vec<MountPlan>,
    pub templates: Vec<TemplatePlan>,
    pub registry_auth: Option<AuthPlan>,
    pub restart: String,
    pub kill_signal: String,
    /// The `logs` block: how the task's files in `alloc/logs` rotate, or `disabled`.
    pub logs: String,
    pub kill_timeout: String,
    pub cpu_mhz: u32,
    pub memory_mb: u64,
}

#[derive(Debug, Serialize)]
pub struct MountPlan {
    pub source: String,
    pub target: String,
    pub kind: &'static str,
    pub options: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct TemplatePlan {
    pub destination: String,
    pub source: Option<String>,
    pub env: bool,
    pub perms: String,
}

#[derive(Debug, Serialize)]
pub struct AuthPlan {
    pub username: String,
    /// Always `<redacted>` when a password is set.
    pub password: Option<&'static str>,
}

pub fn build(job: &Job, ignored: Vec<Ignored>, skipped_tasks: Vec<SkippedTask>) -> Plan {
    Plan {
        job_id: job.id.clone(),
        job_name: job.name.clone(),
        job_type: job.job_type.as_str(),
        file: job.file.display().to_string(),
        groups: job
            .groups
            .iter()
            .filter(|g| !g.tasks.is_empty())
            .map(group_plan)
            .collect(),
        ignored,
        skipped_tasks,
        node: None,
        images: ImageReport::default(),
    }
}

fn group_plan(group: &Group) -> GroupPlan {
    let (mode, ports) = match &group.network {
        Some(n) => (
            match n.mode {
                NetworkMode::Bridge => "bridge",
                NetworkMode::Host => "host",
                NetworkMode::None => "none",
            },
            n.ports
                .iter()
                .map(|p| PortPlan {
                    label: p.label.clone(),
                    static_port: p.static_port,
                    to: p.to,
                })
                .collect(),
        ),
        None => ("host", Vec::new()),
    };
    GroupPlan {
        name: group.name.clone(),
        count: group.count,
        network_mode: mode.to_string(),
        ports,
        tasks: group.tasks.iter().map(|t| task_plan(group, t)).collect(),
    }
}

/// The task's mounts as the core makes them for its container (`spec::mounts` and
/// `spec::named_volumes`, what `spec::build` sends), with the allocation's directory shown
/// as `<alloc dir>`: a plan cannot differ from what a start asks of podman.
fn planned_mounts(task: &Task, config: TaskConfig) -> Vec<MountPlan> {
    let alloc_dir = Path::new("<alloc dir>");
    let spec = TaskSpec {
        config,
        context: TaskContext {
            name: task.name.clone(),
            alloc_dir: Some(alloc_dir.join("alloc")),
            task_dir: Some(alloc_dir.join(&task.name)),
            local_dir: Some(alloc_dir.join(&task.name).join("local")),
            secrets_dir: Some(alloc_dir.join(&task.name).join("secrets")),
            ..TaskContext::default()
        },
    };
    // The runner's driver configuration: host volumes enabled, no SELinux relabelling.
    let driver = DriverConfig::default();
    let mut mounts: Vec<MountPlan> = spec::mounts(&spec, &driver)
        .unwrap_or_default()
        .into_iter()
        .map(|m| MountPlan {
            source: m.source,
            target: m.destination,
            kind: match m.kind {
                MountType::Tmpfs => "tmpfs",
                MountType::Bind => "bind",
            },
            options: m.options,
        })
        .collect();
    mounts.extend(
        spec::named_volumes(&spec.config)
            .into_iter()
            .map(|v| MountPlan {
                source: format!("volume {}", v.name),
                target: v.dest,
                kind: "volume",
                options: v.options,
            }),
    );
    mounts
}

/// Stands for the allocation id in the container names a plan shows.
const PLAN_ALLOC: &str = "<alloc>";

/// The task's network as the core sets it up (`spec::network`, what `spec::build` sends:
/// its namespace and podman networks), in the context the runner gives the task: the
/// group's bridge namespace, or the group's `network { mode = "none" }` as the default.
/// `None` when the spec cannot be made (a start would fail on the task's options).
fn planned_network(group: &Group, task: &Task, config: TaskConfig) -> Option<String> {
    let group_mode = group.network.as_ref().map(|n| n.mode);
    let bridge = group_mode == Some(NetworkMode::Bridge);
    let infra = container_name(INFRA_TASK, PLAN_ALLOC);
    let spec = TaskSpec {
        config,
        context: TaskContext {
            name: task.name.clone(),
            alloc_id: PLAN_ALLOC.to_string(),
            network_container: bridge.then(|| infra.clone()),
            default_network_mode: (group_mode == Some(NetworkMode::None))
                .then_some(TaskNetworkMode::None),
            ..TaskContext::default()
        },
    };
    // The runner's: rootful host facts, as a plan asks no podman.
    let built = spec::network(&spec, &DriverConfig::default(), &HostFacts::default()).ok()?;
    let ns = &built.netns;
    let value = ns.value.as_deref().unwrap_or_default();
    let task_suffix = format!("-{PLAN_ALLOC}");
    Some(match ns.nsmode.as_str() {
        "container" if value == infra => {
            format!("the allocation's network namespace (group bridge, held by {INFRA_TASK})")
        }
        "container" => match value.strip_suffix(&task_suffix) {
            Some(task) => format!("the network namespace of task {task:?}"),
            None => format!("container:{value}"),
        },
        "path" => format!("ns:{value}"),
        "bridge" => match built.networks.keys().next() {
            Some(name) if name != spec::DEFAULT_NETWORK => name.clone(),
            _ => "podman's default network".to_string(),
        },
        mode => mode.to_string(),
    })
}

/// How a task's `network_mode` reads when its config does not decode.
fn network_mode_text(mode: Option<TaskNetworkMode>, raw: String) -> String {
    match mode {
        Some(TaskNetworkMode::Task(t)) => format!("the network namespace of task {t:?}"),
        Some(TaskNetworkMode::Default) => "podman's default network".to_string(),
        Some(mode) => mode.to_string(),
        None => raw,
    }
}

fn task_plan(group: &Group, task: &Task) -> TaskPlan {
    let config = decode_config(task, &task.config).ok();
    let raw_str = |k: &str| {
        task.config
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let bridge = group
        .network
        .as_ref()
        .is_some_and(|n| n.mode == NetworkMode::Bridge);
    let network = config
        .clone()
        .and_then(|c| planned_network(group, task, c))
        .unwrap_or_else(|| {
            // A config that does not decode is still planned: its network_mode as far as
            // it parses on its own.
            if bridge {
                format!("the allocation's network namespace (group bridge, held by {INFRA_TASK})")
            } else {
                let raw = raw_str("network_mode");
                network_mode_text(TaskNetworkMode::parse_text(&raw).ok(), raw)
            }
        });
    let mounts = planned_mounts(task, config.clone().unwrap_or_default());
    let mut command = Vec::new();
    let mut entrypoint = None;
    let mut ports = Vec::new();
    let mut registry_auth = None;
    let image = match &config {
        Some(c) => {
            if !c.command.is_empty() {
                command.push(c.command.clone());
            }
            command.extend(c.args.iter().cloned());
            entrypoint = c.entrypoint.clone();
            if !bridge {
                ports = c.ports.clone();
            }
            registry_auth = c
                .auth
                .as_ref()
                .filter(|a| !a.username.is_empty() || !a.password.is_empty())
                .map(|a| AuthPlan {
                    username: a.username.clone(),
                    password: (!a.password.is_empty()).then_some("<redacted>"),
                });
            c.image.clone()
        }
        None => raw_str("image"),
    };
    let r = &task.restart;
    TaskPlan {
        name: task.name.clone(),
        lifecycle: task.stage().label(),
        leader: task.leader,
        image,
        entrypoint,
        command,
        user: task.user.clone(),
        env: task.env.clone(),
        network,
        ports,
        mounts,
        templates: task
            .templates
            .iter()
            .map(|t| TemplatePlan {
                destination: t.destination.clone(),
                source: t.source.as_ref().map(|s| s.display().to_string()),
                env: t.env,
                perms: format!("{:04o}", t.perms),
            })
            .collect(),
        registry_auth,
        restart: format!(
            "{} attempts in {}, delay {}, mode {}",
            r.attempts,
            duration_text::format(r.interval),
            duration_text::format(r.delay),
            match r.mode {
                RestartMode::Fail => "fail",
                RestartMode::Delay => "delay",
            }
        ),
        kill_signal: task.kill_signal.clone().unwrap_or_else(|| "SIGTERM".into()),
        logs: logs_text(&task.logs),
        kill_timeout: duration_text::format(task.kill_timeout),
        cpu_mhz: task.resources.cpu,
        memory_mb: task.resources.memory_mb,
    }
}

fn logs_text(logs: &LogsPolicy) -> String {
    if logs.disabled {
        return "disabled: no log files, no journal".into();
    }
    let r = logs.rotation;
    format!(
        "stdout, stderr and journal each in up to {} files of {} MiB",
        r.max_files,
        r.max_file_size / MIB
    )
}

impl Plan {
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Job {:?} ({}) from {}",
            self.job_id, self.job_type, self.file
        );
        if let Some(node) = &self.node {
            let meta: Vec<String> = node.meta.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(
                out,
                "  Node {:?}: datacenter {}, class {}, meta {}; {} constraint{} satisfied",
                node.name,
                node.datacenter,
                if node.class.is_empty() {
                    "(none)"
                } else {
                    &node.class
                },
                if meta.is_empty() {
                    "(none)".to_string()
                } else {
                    meta.join(" ")
                },
                node.constraints_satisfied,
                if node.constraints_satisfied == 1 {
                    ""
                } else {
                    "s"
                },
            );
        }
        for g in &self.groups {
            let _ = writeln!(
                out,
                "\n  Group {:?}: {} allocation{}, network {}",
                g.name,
                g.count,
                if g.count == 1 { "" } else { "s" },
                g.network_mode
            );
            for p in &g.ports {
                let host = p
                    .static_port
                    .map_or_else(|| "dynamic".to_string(), |s| format!("static {s}"));
                let to =
                    p.to.map_or_else(|| "same port".to_string(), |t| t.to_string());
                let _ = writeln!(out, "    port {}: host {host} -> {to}", p.label);
            }
            for t in &g.tasks {
                let leader = if t.leader { ", leader" } else { "" };
                let _ = writeln!(out, "\n    Task {:?} ({}{leader})", t.name, t.lifecycle);
                let field = |out: &mut String, name: &str, value: &str| {
                    let name = if name.is_empty() {
                        String::new()
                    } else {
                        format!("{name}:")
                    };
                    let _ = writeln!(out, "      {name:<10} {value}");
                };
                field(&mut out, "image", &t.image);
                if let Some(e) = &t.entrypoint {
                    field(&mut out, "entrypoint", &shell_words(e));
                }
                field(
                    &mut out,
                    "command",
                    &if t.command.is_empty() {
                        "(image default)".to_string()
                    } else {
                        shell_words(&t.command)
                    },
                );
                if let Some(u) = &t.user {
                    field(&mut out, "user", u);
                }
                field(&mut out, "network", &t.network);
                if !t.ports.is_empty() {
                    field(&mut out, "ports", &t.ports.join(", "));
                }
                for (i, (k, v)) in t.env.iter().enumerate() {
                    field(
                        &mut out,
                        if i == 0 { "env" } else { "" },
                        &format!("{k}={v}"),
                    );
                }
                for (i, m) in t.mounts.iter().enumerate() {
                    let opts = if m.options.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", m.options.join(","))
                    };
                    field(
                        &mut out,
                        if i == 0 { "mounts" } else { "" },
                        &format!("{} -> {} [{}]{opts}", m.source, m.target, m.kind),
                    );
                }
                for (i, tpl) in t.templates.iter().enumerate() {
                    let env = if tpl.env { ", read into env" } else { "" };
                    field(
                        &mut out,
                        if i == 0 { "templates" } else { "" },
                        &format!("{} (perms {}{env})", tpl.destination, tpl.perms),
                    );
                }
                if let Some(a) = &t.registry_auth {
                    let password = a
                        .password
                        .map_or(String::new(), |p| format!(", password {p}"));
                    field(
                        &mut out,
                        "auth",
                        &format!("user {:?}{password}", a.username),
                    );
                }
                field(
                    &mut out,
                    "resources",
                    &format!("cpu {} MHz, memory {} MiB", t.cpu_mhz, t.memory_mb),
                );
                field(&mut out, "restart", &t.restart);
                field(&mut out, "logs", &t.logs);
                field(
                    &mut out,
                    "stop",
                    &format!("{}, then SIGKILL after {}", t.kill_signal, t.kill_timeout),
                );
            }
        }
        out.push_str(&notices_text(&self.ignored, &self.skipped_tasks));
        out.push_str(&self.images.to_text());
        out
    }
}

/// The "ignored" and "skipped" lines shared by validate, plan and run.
pub fn notices_text(ignored: &[Ignored], skipped: &[SkippedTask]) -> String {
    let mut out = String::new();
    if !ignored.is_empty() {
        let _ = writeln!(out, "\nIgnored (no effect in a local run):");
        for i in ignored {
            let times = if i.count > 1 {
                format!(" ({}x)", i.count)
            } else {
                String::new()
            };
            let _ = writeln!(out, "  {}{times} at {}", i.what, i.location);
        }
    }
    if !skipped.is_empty() {
        let _ = writeln!(out, "\nSkipped (only driver = \"podman\" tasks run):");
        for s in skipped {
            let _ = writeln!(
                out,
                "  {}.{} (driver {:?}) at {}",
                s.group, s.task, s.driver, s.location
            );
        }
    }
    out
}

fn shell_words(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            if !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=${}@%+,".contains(c))
            {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modes::run::jobspec::{parse, Source, VarInputs};

    const JOB: &str = r#"job "web" {
  group "app" {
    network {
      mode = "bridge"
      port "http" {
        static = 8080
        to     = 80
      }
    }
    task "server" {
      driver = "podman"
      config {
        image   = "localhost/ndp-busybox:latest"
        command = "httpd"
        args    = ["-f", "-p", "${NOMAD_PORT_http}"]
        volumes = ["data:/data:ro"]
        auth {
          username = "me"
          password = "hunter2"
        }
      }
      env {
        GREETING = "hi there"
      }
      template {
        data        = "TOKEN=s3cr3t-value"
        destination = "secrets/token.env"
        env         = true
      }
    }
  }
}
"#;

    #[test]
    fn plan_shows_resolved_tasks_without_secrets() {
        let loaded = parse(Source::new("web.nomad", JOB), &VarInputs::default()).unwrap();
        let plan = build(
            &loaded.job,
            loaded.notices.ignored,
            loaded.notices.skipped_tasks,
        );
        let text = plan.to_text();
        for expected in [
            "Job \"web\" (service) from web.nomad",
            "Group \"app\": 1 allocation, network bridge",
            "port http: host static 8080 -> 80",
            "Task \"server\" (main)",
            "image:     localhost/ndp-busybox:latest",
            "command:   httpd -f -p ${NOMAD_PORT_http}",
            "network:   the allocation's network namespace",
            "env:       GREETING=hi there",
            "<alloc dir>/server/data -> /data [bind] (ro)",
            "secrets/token.env (perms 0644, read into env)",
            "auth:      user \"me\", password <redacted>",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        let json = serde_json::to_string(&plan).unwrap();
        for text in [&text, &json] {
            assert!(!text.contains("hunter2"), "{text}");
            assert!(!text.contains("s3cr3t"), "{text}");
        }
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            value["groups"][0]["tasks"][0]["command"],
            serde_json::json!(["httpd", "-f", "-p", "${NOMAD_PORT_http}"])
        );
        assert_eq!(value["groups"][0]["ports"][0]["static_port"], 8080);
    }

    #[test]
    fn the_network_line_reads_the_spec_the_core_builds() {
        const NETWORKS: &str = r#"job "nets" {
  group "plain" {
    task "default" {
      driver = "podman"
      config { image = "busybox" }
    }
    task "bridge" {
      driver = "podman"
      config {
        image        = "busybox"
        network_mode = "bridge"
      }
    }
    task "host" {
      driver = "podman"
      config {
        image        = "busybox"
        network_mode = "host"
      }
    }
    task "custom" {
      driver = "podman"
      config {
        image        = "busybox"
        network_mode = "backend"
      }
    }
    task "joined" {
      driver = "podman"
      config {
        image        = "busybox"
        network_mode = "task:default"
      }
    }
    task "other" {
      driver = "podman"
      config {
        image        = "busybox"
        network_mode = "container:db"
      }
    }
  }
  group "isolated" {
    network {
      mode = "none"
    }
    task "quiet" {
      driver = "podman"
      config { image = "busybox" }
    }
  }
}
"#;
        let loaded = parse(Source::new("nets.nomad", NETWORKS), &VarInputs::default()).unwrap();
        let plan = build(
            &loaded.job,
            loaded.notices.ignored,
            loaded.notices.skipped_tasks,
        );
        let network = |group: usize, task: &str| {
            plan.groups[group]
                .tasks
                .iter()
                .find(|t| t.name == task)
                .map(|t| t.network.clone())
                .unwrap()
        };
        assert_eq!(network(0, "default"), "podman's default network");
        assert_eq!(network(0, "bridge"), "podman's default network");
        assert_eq!(network(0, "host"), "host");
        assert_eq!(network(0, "custom"), "backend");
        assert_eq!(
            network(0, "joined"),
            "the network namespace of task \"default\""
        );
        assert_eq!(network(0, "other"), "container:db");
        // The group's `mode = "none"` is the task's default, as a start sets it.
        assert_eq!(network(1, "quiet"), "none");
    }
}

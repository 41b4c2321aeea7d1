//! The environment Nomad gives a task (`NOMAD_*`, meta, ports, the `env` block, template
//! env). The node's facts are [`super::node`]'s.

use std::collections::BTreeMap;

use super::interpolate::{interpolate, Scope};
use super::model::{Group, Job, Task};
use super::ports::AllocatedPort;

/// Which allocation a task belongs to.
#[derive(Debug, Clone)]
pub struct AllocIdentity {
    pub id: String,
    pub index: u32,
}

impl AllocIdentity {
    /// Nomad's allocation name: `<job>.<group>[<index>]`.
    pub fn name(&self, job: &Job, group: &Group) -> String {
        format!("{}.{}[{}]", job.id, group.name, self.index)
    }

    pub fn short_id(&self) -> &str {
        self.id.get(..8).unwrap_or(&self.id)
    }
}

/// The allocation's shared network namespace (group `network { mode = "bridge" }`).
#[derive(Debug, Clone)]
pub struct BridgeInfo {
    /// The allocation's address inside its namespace; empty when podman reported none.
    pub ip: String,
}

pub struct EnvInputs<'a> {
    pub job: &'a Job,
    pub group: &'a Group,
    pub task: &'a Task,
    pub alloc: &'a AllocIdentity,
    pub ports: &'a [AllocatedPort],
    pub bridge: Option<&'a BridgeInfo>,
    pub node: &'a BTreeMap<String, String>,
    /// KEY=VALUE pairs from templates with `env = true` (they win, as in Nomad).
    pub template_env: &'a BTreeMap<String, String>,
}

/// Nomad's task environment, in Nomad's order: runtime values, then the interpolated
/// `env` block, then template env. Keys get Nomad's cleaning (invalid characters -> `_`).
pub fn task_env(inputs: &EnvInputs<'_>) -> BTreeMap<String, String> {
    let EnvInputs {
        job,
        group,
        task,
        alloc,
        ports,
        bridge,
        node,
        template_env,
    } = inputs;
    let mut env = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        env.insert(clean_key(k), v);
    };
    set("NOMAD_ALLOC_DIR", "/alloc".into());
    set("NOMAD_TASK_DIR", "/local".into());
    set("NOMAD_SECRETS_DIR", "/secrets".into());
    set("NOMAD_MEMORY_LIMIT", task.resources.memory_mb.to_string());
    if let Some(max) = task.resources.memory_max_mb.filter(|m| *m > 0) {
        set("NOMAD_MEMORY_MAX_LIMIT", max.to_string());
    }
    set("NOMAD_CPU_LIMIT", task.resources.cpu.to_string());
    if let Some(cores) = task.resources.cores {
        set("NOMAD_CPU_CORES", format!("0-{}", cores.saturating_sub(1)));
    }
    set("NOMAD_ALLOC_ID", alloc.id.clone());
    set("NOMAD_SHORT_ALLOC_ID", alloc.short_id().to_string());
    set("NOMAD_ALLOC_NAME", alloc.name(job, group));
    set("NOMAD_ALLOC_INDEX", alloc.index.to_string());
    set("NOMAD_GROUP_NAME", group.name.clone());
    set("NOMAD_TASK_NAME", task.name.clone());
    set("NOMAD_JOB_ID", job.id.clone());
    set("NOMAD_JOB_NAME", job.name.clone());
    set("NOMAD_NAMESPACE", job.namespace.clone());
    set("NOMAD_REGION", job.region.clone());
    // The node's datacenter, as Nomad sets it (the job may list several, or patterns).
    set(
        "NOMAD_DC",
        node.get("node.datacenter")
            .cloned()
            .unwrap_or_else(|| "dc1".into()),
    );

    // Task meta wins over group meta over job meta; each key as written and upper-cased.
    let mut meta = job.meta.clone();
    meta.extend(group.meta.clone());
    meta.extend(task.meta.clone());
    // Meta values may name node facts (`rack = "${meta.rack}"`), as in Nomad.
    let node_scope = Scope {
        env: None,
        node: Some(node),
    };
    for (k, v) in &meta {
        let v = interpolate(v, &node_scope);
        set(&format!("NOMAD_META_{}", k.to_uppercase()), v.clone());
        set(&format!("NOMAD_META_{k}"), v);
    }

    for p in ports.iter() {
        let host_port = p.value.to_string();
        let host_addr = join_host_port(&p.host_ip, p.value);
        set(&format!("NOMAD_HOST_IP_{}", p.label), p.host_ip.clone());
        set(&format!("NOMAD_HOST_PORT_{}", p.label), host_port.clone());
        set(&format!("NOMAD_HOST_ADDR_{}", p.label), host_addr.clone());
        set(&format!("NOMAD_IP_{}", p.label), p.host_ip.clone());
        set(&format!("NOMAD_ADDR_{}", p.label), host_addr);
        set(&format!("NOMAD_PORT_{}", p.label), p.to.to_string());
        if let Some(bridge) = bridge {
            set(&format!("NOMAD_ALLOC_INTERFACE_{}", p.label), "eth0".into());
            set(&format!("NOMAD_ALLOC_PORT_{}", p.label), p.to.to_string());
            if !bridge.ip.is_empty() {
                set(&format!("NOMAD_ALLOC_IP_{}", p.label), bridge.ip.clone());
                set(
                    &format!("NOMAD_ALLOC_ADDR_{}", p.label),
                    join_host_port(&bridge.ip, p.to),
                );
            }
        }
    }

    // The env block is interpolated against what is set so far.
    let runtime = env.clone();
    let scope = Scope {
        env: Some(&runtime),
        node: Some(node),
    };
    for (k, v) in &task.env {
        env.insert(clean_key(k), interpolate(v, &scope));
    }
    for (k, v) in template_env.iter() {
        env.insert(clean_key(k), v.clone());
    }
    env
}

/// Nomad's env key cleaning: anything but letters, digits, `_` and `.` becomes `_`.
pub fn clean_key(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn join_host_port(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modes::run::jobspec::{parse, Source, VarInputs};

    const JOB: &str = r#"
job "web" {
  meta { tier = "front" }
  group "app" {
    meta {
      tier   = "group"
      my-key = "k"
    }
    task "server" {
      driver = "podman"
      config { image = "i" }
      meta {
        owner = "me"
        where = "${node.datacenter}"
      }
      env {
        ADDR    = "${NOMAD_ADDR_http}"
        KERNEL  = "${attr.kernel.name}"
        a-b      = "x"
        OVERRIDE = "from-env-block"
      }
      resources {
        cpu        = 250
        memory     = 128
        memory_max = 256
      }
    }
  }
}
"#;

    #[test]
    fn builds_nomads_task_environment() {
        let job = parse(Source::new("j.nomad", JOB), &VarInputs::default())
            .unwrap()
            .job;
        let (group, task) = (&job.groups[0], &job.groups[0].tasks[0]);
        let alloc = AllocIdentity {
            id: "0123456789abcdef".into(),
            index: 2,
        };
        let ports = vec![AllocatedPort {
            label: "http".into(),
            value: 25000,
            to: 80,
            host_ip: "127.0.0.1".into(),
        }];
        let mut node = BTreeMap::new();
        node.insert("attr.kernel.name".to_string(), "linux".to_string());
        node.insert("node.datacenter".to_string(), "west".to_string());
        let template_env: BTreeMap<String, String> =
            [("OVERRIDE".to_string(), "from-template".to_string())].into();
        let bridge = BridgeInfo {
            ip: "10.88.0.5".into(),
        };
        let env = task_env(&EnvInputs {
            job: &job,
            group,
            task,
            alloc: &alloc,
            ports: &ports,
            bridge: Some(&bridge),
            node: &node,
            template_env: &template_env,
        });
        let get = |k: &str| {
            env.get(k)
                .map(String::as_str)
                .unwrap_or_else(|| panic!("{k} missing from {env:?}"))
        };
        assert_eq!(get("NOMAD_ALLOC_ID"), "0123456789abcdef");
        assert_eq!(get("NOMAD_SHORT_ALLOC_ID"), "01234567");
        assert_eq!(get("NOMAD_ALLOC_NAME"), "web.app[2]");
        assert_eq!(get("NOMAD_ALLOC_INDEX"), "2");
        assert_eq!(get("NOMAD_JOB_NAME"), "web");
        assert_eq!(get("NOMAD_GROUP_NAME"), "app");
        assert_eq!(get("NOMAD_TASK_NAME"), "server");
        assert_eq!(get("NOMAD_ALLOC_DIR"), "/alloc");
        assert_eq!(get("NOMAD_TASK_DIR"), "/local");
        assert_eq!(get("NOMAD_SECRETS_DIR"), "/secrets");
        assert_eq!(get("NOMAD_CPU_LIMIT"), "250");
        assert_eq!(get("NOMAD_MEMORY_LIMIT"), "128");
        assert_eq!(get("NOMAD_MEMORY_MAX_LIMIT"), "256");
        assert_eq!(get("NOMAD_REGION"), "global");
        assert_eq!(get("NOMAD_NAMESPACE"), "default");
        assert_eq!(get("NOMAD_DC"), "west");
        assert_eq!(get("NOMAD_META_tier"), "group");
        assert_eq!(get("NOMAD_META_TIER"), "group");
        assert_eq!(get("NOMAD_META_owner"), "me");
        assert_eq!(get("NOMAD_META_where"), "west");
        assert_eq!(get("NOMAD_META_my_key"), "k");
        assert_eq!(get("NOMAD_PORT_http"), "80");
        assert_eq!(get("NOMAD_HOST_PORT_http"), "25000");
        assert_eq!(get("NOMAD_ADDR_http"), "127.0.0.1:25000");
        assert_eq!(get("NOMAD_IP_http"), "127.0.0.1");
        assert_eq!(get("NOMAD_ALLOC_PORT_http"), "80");
        assert_eq!(get("NOMAD_ALLOC_ADDR_http"), "10.88.0.5:80");
        assert_eq!(get("ADDR"), "127.0.0.1:25000");
        assert_eq!(get("KERNEL"), "linux");
        assert_eq!(get("a_b"), "x");
        assert_eq!(get("OVERRIDE"), "from-template");
    }
}

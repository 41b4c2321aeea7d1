//! proto <-> core types. Everything the agent sends becomes a core value here, and every
//! core answer becomes a message the agent accepts: every field the Go client
//! dereferences unconditionally is always set.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use prost_types::Timestamp;

use crate::driver::config::{ConfigError, DriverConfig};
use crate::driver::logs::SinkKind;
use crate::driver::model::{
    Attribute, DriverNetwork, ExitResult, Fingerprint, Health, TaskEvent, TaskRunState, TaskStats,
    TaskStatus,
};
use crate::driver::task::{
    DeviceSpec, DnsSpec, LegacyNetwork, LegacyPort, MountSpec, PortSpec, TaskConfig, TaskContext,
    TaskResources,
};
use crate::driver::Compute;

use super::cty::{self, CtyError};
use super::proto::{base, drivers, structs};

/// Nomad's default `kill_timeout`. The agent's real value arrives with `StopTask`.
const DEFAULT_KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// Go's zero `time.Time`, which the agent expects for "not completed".
fn go_zero_time() -> Timestamp {
    Timestamp {
        seconds: -62_135_596_800,
        nanos: 0,
    }
}

pub(crate) fn timestamp(time: SystemTime) -> Timestamp {
    Timestamp::from(time)
}

/// A proto duration as a std one; absent or negative is zero.
pub(crate) fn duration(value: Option<&prost_types::Duration>) -> Duration {
    value
        .and_then(|d| Duration::try_from(*d).ok())
        .unwrap_or_default()
}

fn optional_path(path: &str) -> Option<PathBuf> {
    (!path.is_empty()).then(|| PathBuf::from(path))
}

/// Why what the agent sent cannot become a core value.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConvertError {
    #[error("invalid plugin config: {0}")]
    PluginConfigEncoding(#[source] CtyError),
    #[error("invalid plugin config: {0}")]
    PluginConfig(#[source] ConfigError),
    #[error("failed to decode driver config: {0}")]
    TaskConfigEncoding(#[source] CtyError),
    #[error("failed to decode driver config: {0}")]
    TaskConfig(#[source] ConfigError),
    /// `what` names the port (`port "http" (to)`, `network port "db"`).
    #[error("{what}: {value} is not a port number")]
    Port { what: String, value: i32 },
}

fn port(value: i32, what: &str) -> Result<u16, ConvertError> {
    u16::try_from(value).map_err(|_| ConvertError::Port {
        what: what.to_string(),
        value,
    })
}

/// The agent's `msgpack_config` (empty when it sent none) as the core's plugin config;
/// errors name the option.
pub(crate) fn driver_config(msgpack: &[u8]) -> Result<DriverConfig, ConvertError> {
    let value = cty::decode(msgpack).map_err(ConvertError::PluginConfigEncoding)?;
    DriverConfig::from_value(&value).map_err(ConvertError::PluginConfig)
}

/// The node's compute from the agent's CPU topology (agents since Nomad 1.7); `None` from
/// older agents (and the agent's validation calls), which send none: the host's own figures
/// apply then.
pub(crate) fn agent_compute(config: Option<&base::NomadConfig>) -> Option<Compute> {
    let topology = config?.driver.as_ref()?.topology.as_ref()?;
    let speeds: Vec<u64> = topology
        .cores
        .iter()
        .map(|core| {
            [core.base_speed, core.max_speed, core.guess_speed]
                .into_iter()
                .find(|mhz| *mhz > 0)
                .unwrap_or(0)
        })
        .collect();
    Compute::from_core_speeds(&speeds, topology.override_total_compute)
        .filter(|compute| compute.total_mhz > 0.0)
}

/// A task's `msgpack_driver_config` as the core's task options; errors name the option.
pub(crate) fn task_config(msgpack: &[u8]) -> Result<TaskConfig, ConvertError> {
    let value = cty::decode(msgpack).map_err(ConvertError::TaskConfigEncoding)?;
    TaskConfig::from_value(&value).map_err(ConvertError::TaskConfig)
}

/// What the orchestrator tells us about a task, from the agent's `TaskConfig`.
pub(crate) fn task_context(task: &drivers::TaskConfig) -> Result<TaskContext, ConvertError> {
    let resources = task.resources.as_ref();
    let linux = resources.and_then(|r| r.linux_resources.as_ref());
    let allocated = resources.and_then(|r| r.allocated_resources.as_ref());
    let memory = allocated.and_then(|a| a.memory.as_ref());
    let cpu_shares = linux
        .map(|l| l.cpu_shares)
        .filter(|shares| *shares > 0)
        .or_else(|| allocated.and_then(|a| a.cpu.as_ref()).map(|c| c.cpu_shares))
        .unwrap_or_default();

    let ports = match resources.map(|r| r.ports.as_slice()) {
        Some(ports) if !ports.is_empty() => Some(
            ports
                .iter()
                .map(|p| {
                    Ok(PortSpec {
                        label: p.label.clone(),
                        value: port(p.value, &format!("port {:?}", p.label))?,
                        to: port(p.to, &format!("port {:?} (to)", p.label))?,
                        host_ip: p.host_ip.clone(),
                    })
                })
                .collect::<Result<Vec<_>, ConvertError>>()?,
        ),
        _ => None,
    };
    let networks = match allocated.map(|a| a.networks.as_slice()) {
        Some(networks) if !networks.is_empty() => Some(
            networks
                .iter()
                .map(legacy_network)
                .collect::<Result<Vec<_>, ConvertError>>()?,
        ),
        _ => None,
    };

    let alloc_dir = optional_path(&task.alloc_dir);
    let task_dir = alloc_dir.as_deref().map(|dir| dir.join(&task.name));
    Ok(TaskContext {
        id: task.id.clone(),
        name: task.name.clone(),
        alloc_id: task.alloc_id.clone(),
        job_name: task.job_name.clone(),
        job_id: task.job_id.clone(),
        task_group_name: task.task_group_name.clone(),
        namespace: task.namespace.clone(),
        node_name: task.node_name.clone(),
        node_id: task.node_id.clone(),
        env: task
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        user: task.user.clone(),
        resources: TaskResources {
            cpu_shares: u64::try_from(cpu_shares).unwrap_or_default(),
            cpuset_cpus: linux.map(|l| l.cpuset_cpus.clone()).unwrap_or_default(),
            memory_mb: memory.map(|m| m.memory_mb).unwrap_or_default(),
            memory_max_mb: memory.map(|m| m.memory_max_mb).unwrap_or_default(),
            percent_ticks: linux.map(|l| l.percent_ticks).unwrap_or_default(),
        },
        alloc_dir: alloc_dir.as_deref().map(|dir| dir.join("alloc")),
        local_dir: task_dir.as_deref().map(|dir| dir.join("local")),
        secrets_dir: task_dir.as_deref().map(|dir| dir.join("secrets")),
        task_dir,
        mounts: task
            .mounts
            .iter()
            .map(|m| MountSpec {
                host_path: m.host_path.clone(),
                task_path: m.task_path.clone(),
                readonly: m.readonly,
                propagation_mode: m.propagation_mode.clone(),
                selinux_label: m.selinux_label.clone(),
            })
            .collect(),
        devices: task
            .devices
            .iter()
            .map(|d| DeviceSpec {
                host_path: d.host_path.clone(),
                task_path: d.task_path.clone(),
                permissions: d.cgroup_permissions.clone(),
            })
            .collect(),
        ports,
        networks,
        network_isolation_path: task
            .network_isolation_spec
            .as_ref()
            .map(|spec| spec.path.clone())
            .filter(|path| !path.is_empty()),
        // Nomad's network isolation is the path above; these are the runner's.
        network_container: None,
        default_network_mode: None,
        dns: task.dns.as_ref().map(|dns| DnsSpec {
            servers: dns.servers.clone(),
            searches: dns.searches.clone(),
            options: dns.options.clone(),
        }),
        stdout_path: optional_path(&task.stdout_path),
        stderr_path: optional_path(&task.stderr_path),
        log_sink: SinkKind::Fifo,
        log_rotation: None,
        // Nomad reads its logmon files; nothing shows a journal there.
        journal_path: None,
        kill_signal: None,
        kill_timeout: DEFAULT_KILL_TIMEOUT,
    })
}

fn legacy_network(network: &drivers::NetworkResource) -> Result<LegacyNetwork, ConvertError> {
    let ports = |list: &[drivers::NetworkPort]| {
        list.iter()
            .map(|p| {
                Ok(LegacyPort {
                    label: p.label.clone(),
                    value: port(p.value, &format!("network port {:?}", p.label))?,
                })
            })
            .collect::<Result<Vec<_>, ConvertError>>()
    };
    Ok(LegacyNetwork {
        ip: network.ip.clone(),
        reserved_ports: ports(&network.reserved_ports)?,
        dynamic_ports: ports(&network.dynamic_ports)?,
    })
}

pub(crate) fn exit_result(result: &ExitResult) -> drivers::ExitResult {
    drivers::ExitResult {
        exit_code: result.exit_code,
        signal: result.signal,
        oom_killed: result.oom_killed,
    }
}

pub(crate) fn network_override(network: &DriverNetwork) -> drivers::NetworkOverride {
    drivers::NetworkOverride {
        port_map: network
            .port_map
            .iter()
            .map(|(label, port)| (label.clone(), i32::from(*port)))
            .collect(),
        addr: network.ip.clone(),
        auto_advertise: network.auto_advertise,
    }
}

fn run_state(state: TaskRunState) -> drivers::TaskState {
    match state {
        TaskRunState::Unknown => drivers::TaskState::Unknown,
        TaskRunState::Running => drivers::TaskState::Running,
        TaskRunState::Exited => drivers::TaskState::Exited,
    }
}

/// `InspectTask`'s status; `completed_at` and `result` are always set.
pub(crate) fn task_status(status: &TaskStatus) -> drivers::TaskStatus {
    drivers::TaskStatus {
        id: status.id.clone(),
        name: status.name.clone(),
        state: run_state(status.state) as i32,
        started_at: Some(timestamp(status.started_at)),
        completed_at: Some(status.completed_at.map_or_else(go_zero_time, timestamp)),
        result: Some(exit_result(&status.exit_result.clone().unwrap_or_default())),
    }
}

fn cpu_field(name: &str) -> Option<drivers::cpu_usage::Fields> {
    use drivers::cpu_usage::Fields;
    Some(match name {
        "System Mode" => Fields::SystemMode,
        "User Mode" => Fields::UserMode,
        "Total Ticks" => Fields::TotalTicks,
        "Throttled Periods" => Fields::ThrottledPeriods,
        "Throttled Time" => Fields::ThrottledTime,
        "Percent" => Fields::Percent,
        _ => return None,
    })
}

fn memory_field(name: &str) -> Option<drivers::memory_usage::Fields> {
    use drivers::memory_usage::Fields;
    Some(match name {
        "RSS" => Fields::Rss,
        "Cache" => Fields::Cache,
        "Max Usage" => Fields::MaxUsage,
        "Kernel Usage" => Fields::KernelUsage,
        "Kernel Max Usage" => Fields::KernelMaxUsage,
        "Usage" => Fields::Usage,
        "Swap" => Fields::Swap,
        _ => return None,
    })
}

/// One stats sample; `timestamp` and `agg_resource_usage` are always set.
pub(crate) fn task_stats(task_id: &str, stats: &TaskStats) -> drivers::TaskStats {
    let cpu = &stats.cpu;
    let memory = &stats.memory;
    drivers::TaskStats {
        id: task_id.to_string(),
        timestamp: Some(timestamp(stats.timestamp)),
        agg_resource_usage: Some(drivers::TaskResourceUsage {
            cpu: Some(drivers::CpuUsage {
                system_mode: cpu.system_mode,
                user_mode: cpu.user_mode,
                total_ticks: cpu.total_ticks,
                throttled_periods: cpu.throttled_periods,
                throttled_time: cpu.throttled_time,
                percent: cpu.percent,
                measured_fields: cpu
                    .measured
                    .iter()
                    .filter_map(|name| cpu_field(name))
                    .map(|field| field as i32)
                    .collect(),
            }),
            memory: Some(drivers::MemoryUsage {
                rss: memory.rss,
                cache: memory.cache,
                max_usage: memory.max_usage,
                kernel_usage: 0,
                kernel_max_usage: 0,
                usage: memory.usage,
                swap: memory.swap,
                measured_fields: memory
                    .measured
                    .iter()
                    .filter_map(|name| memory_field(name))
                    .map(|field| field as i32)
                    .collect(),
            }),
        }),
        resource_usage_by_pid: HashMap::new(),
    }
}

pub(crate) fn task_event(event: &TaskEvent) -> drivers::DriverTaskEvent {
    drivers::DriverTaskEvent {
        task_id: event.task_id.clone(),
        alloc_id: event.alloc_id.clone(),
        task_name: event.task_name.clone(),
        timestamp: Some(timestamp(event.timestamp)),
        message: event.message.clone(),
        annotations: event
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

fn attribute(value: &Attribute) -> structs::Attribute {
    use structs::attribute::Value;
    structs::Attribute {
        value: Some(match value {
            Attribute::String(s) => Value::StringVal(s.clone()),
            Attribute::Bool(b) => Value::BoolVal(*b),
            Attribute::Int(i) => Value::IntVal(*i),
            Attribute::Float(f) => Value::FloatVal(*f),
        }),
        unit: String::new(),
    }
}

pub(crate) fn fingerprint(fingerprint: &Fingerprint) -> drivers::FingerprintResponse {
    use drivers::fingerprint_response::HealthState;
    drivers::FingerprintResponse {
        attributes: fingerprint
            .attributes
            .iter()
            .map(|(key, value)| (key.clone(), attribute(value)))
            .collect(),
        health: match fingerprint.health {
            Health::Healthy => HealthState::Healthy,
            Health::Unhealthy => HealthState::Unhealthy,
            Health::Undetected => HealthState::Undetected,
        } as i32,
        health_description: fingerprint.description.clone(),
        err: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::time::UNIX_EPOCH;

    use super::*;

    fn topology(cores: &[(u64, u64, u64)], override_total: u64) -> base::NomadConfig {
        base::NomadConfig {
            driver: Some(base::NomadDriverConfig {
                client_max_port: 14512,
                client_min_port: 14000,
                topology: Some(base::ClientTopology {
                    cores: cores
                        .iter()
                        .enumerate()
                        .map(
                            |(i, (base_speed, max_speed, guess_speed))| base::ClientTopologyCore {
                                core_id: i as u32,
                                base_speed: *base_speed,
                                max_speed: *max_speed,
                                guess_speed: *guess_speed,
                                ..Default::default()
                            },
                        )
                        .collect(),
                    override_total_compute: override_total,
                    ..Default::default()
                }),
            }),
        }
    }

    #[test]
    fn agent_topology_gives_the_nodes_compute() {
        // base speed, else max, else guess, per core.
        let config = topology(&[(3000, 4000, 0), (0, 4000, 2000), (0, 0, 1500)], 0);
        let compute = agent_compute(Some(&config)).unwrap();
        assert_eq!((compute.total_mhz, compute.cores), (8500.0, 3));
        let config = topology(&[(3000, 0, 0), (3000, 0, 0)], 12_000);
        let compute = agent_compute(Some(&config)).unwrap();
        assert_eq!((compute.total_mhz, compute.cores), (12_000.0, 2));
        // A 1.6 agent sends no topology; validation calls send no NomadConfig at all.
        let old = base::NomadConfig {
            driver: Some(base::NomadDriverConfig {
                client_max_port: 14512,
                client_min_port: 14000,
                topology: None,
            }),
        };
        assert!(agent_compute(Some(&old)).is_none());
        assert!(agent_compute(None).is_none());
    }

    fn full_task() -> drivers::TaskConfig {
        drivers::TaskConfig {
            id: "a1/web/1234abcd".into(),
            name: "web".into(),
            env: [("NOMAD_TASK_NAME".to_string(), "web".to_string())].into(),
            resources: Some(drivers::Resources {
                allocated_resources: Some(drivers::AllocatedTaskResources {
                    cpu: Some(drivers::AllocatedCpuResources { cpu_shares: 500 }),
                    memory: Some(drivers::AllocatedMemoryResources {
                        memory_mb: 256,
                        memory_max_mb: 512,
                    }),
                    networks: vec![drivers::NetworkResource {
                        ip: "127.0.0.1".into(),
                        reserved_ports: vec![drivers::NetworkPort {
                            label: "admin".into(),
                            value: 9000,
                        }],
                        dynamic_ports: vec![drivers::NetworkPort {
                            label: "http".into(),
                            value: 23456,
                        }],
                        ..Default::default()
                    }],
                }),
                linux_resources: Some(drivers::LinuxResources {
                    cpu_shares: 500,
                    cpuset_cpus: "2,3".into(),
                    percent_ticks: 0.25,
                    ..Default::default()
                }),
                ports: vec![drivers::PortMapping {
                    label: "http".into(),
                    value: 23456,
                    to: 8080,
                    host_ip: "127.0.0.1".into(),
                }],
            }),
            mounts: vec![drivers::Mount {
                task_path: "/data".into(),
                host_path: "/srv/data".into(),
                readonly: true,
                propagation_mode: "host-to-task".into(),
                selinux_label: "z".into(),
                request_name: "data".into(),
            }],
            devices: vec![drivers::Device {
                task_path: "/dev/fuse".into(),
                host_path: "/dev/fuse".into(),
                cgroup_permissions: "rwm".into(),
            }],
            user: "nobody".into(),
            alloc_dir: "/var/nomad/alloc/a1".into(),
            stdout_path: "/var/nomad/alloc/a1/alloc/logs/.web.stdout.fifo".into(),
            stderr_path: "/var/nomad/alloc/a1/alloc/logs/.web.stderr.fifo".into(),
            task_group_name: "group".into(),
            job_name: "job".into(),
            alloc_id: "a1".into(),
            network_isolation_spec: Some(drivers::NetworkIsolationSpec {
                mode: drivers::network_isolation_spec::NetworkIsolationMode::Group as i32,
                path: "/var/run/netns/a1".into(),
                ..Default::default()
            }),
            dns: Some(drivers::DnsConfig {
                servers: vec!["1.1.1.1".into()],
                searches: vec!["internal.corp".into()],
                options: vec!["ndots:2".into()],
            }),
            job_id: "job-id".into(),
            namespace: "default".into(),
            node_name: "node".into(),
            node_id: "node-id".into(),
            ..Default::default()
        }
    }

    #[test]
    fn task_context_takes_everything_the_agent_sends() {
        let context = task_context(&full_task()).unwrap();
        assert_eq!(context.id, "a1/web/1234abcd");
        assert_eq!(context.job_id, "job-id");
        assert_eq!(context.node_id, "node-id");
        assert_eq!(context.env["NOMAD_TASK_NAME"], "web");
        assert_eq!(context.user, "nobody");
        assert_eq!(context.resources.cpu_shares, 500);
        assert_eq!(context.resources.cpuset_cpus, "2,3");
        assert_eq!(context.resources.memory_mb, 256);
        assert_eq!(context.resources.memory_max_mb, 512);
        assert!((context.resources.percent_ticks - 0.25).abs() < f64::EPSILON);
        assert_eq!(
            context.alloc_dir.unwrap(),
            Path::new("/var/nomad/alloc/a1/alloc")
        );
        assert_eq!(
            context.task_dir.unwrap(),
            Path::new("/var/nomad/alloc/a1/web")
        );
        assert_eq!(
            context.local_dir.unwrap(),
            Path::new("/var/nomad/alloc/a1/web/local")
        );
        assert_eq!(
            context.secrets_dir.unwrap(),
            Path::new("/var/nomad/alloc/a1/web/secrets")
        );
        assert_eq!(context.mounts[0].propagation_mode, "host-to-task");
        assert_eq!(context.mounts[0].selinux_label, "z");
        assert!(context.mounts[0].readonly);
        assert_eq!(context.devices[0].permissions, "rwm");
        let ports = context.ports.unwrap();
        assert_eq!((ports[0].value, ports[0].to), (23456, 8080));
        let networks = context.networks.unwrap();
        assert_eq!(networks[0].reserved_ports[0].label, "admin");
        assert_eq!(networks[0].dynamic_ports[0].value, 23456);
        assert_eq!(
            context.network_isolation_path.as_deref(),
            Some("/var/run/netns/a1")
        );
        assert_eq!(context.dns.unwrap().options, vec!["ndots:2"]);
        assert!(context.stdout_path.unwrap().ends_with(".web.stdout.fifo"));
        assert_eq!(context.kill_timeout, DEFAULT_KILL_TIMEOUT);
    }

    #[test]
    fn sparse_task_context() {
        let context = task_context(&drivers::TaskConfig {
            id: "x".into(),
            ..Default::default()
        })
        .unwrap();
        assert!(context.ports.is_none());
        assert!(context.networks.is_none());
        assert!(context.alloc_dir.is_none());
        assert!(context.stdout_path.is_none());
        assert!(context.dns.is_none());
        assert!(context.network_isolation_path.is_none());
    }

    #[test]
    fn out_of_range_ports_are_errors() {
        let mut task = full_task();
        task.resources.as_mut().unwrap().ports[0].value = 70_000;
        let err = task_context(&task).unwrap_err();
        assert_eq!(err.to_string(), "port \"http\": 70000 is not a port number");
        assert!(matches!(err, ConvertError::Port { value: 70_000, .. }));
    }

    #[test]
    fn running_status_has_go_zero_completion_and_a_result() {
        let status = task_status(&TaskStatus {
            id: "t".into(),
            name: "web".into(),
            state: TaskRunState::Running,
            started_at: UNIX_EPOCH + Duration::from_secs(10),
            completed_at: None,
            exit_result: None,
            attributes: BTreeMap::new(),
        });
        assert_eq!(status.state, drivers::TaskState::Running as i32);
        assert_eq!(status.completed_at.unwrap().seconds, -62_135_596_800);
        assert_eq!(status.result.unwrap().exit_code, 0);
        assert_eq!(status.started_at.unwrap().seconds, 10);
    }

    #[test]
    fn stats_always_carry_timestamp_and_usage() {
        let stats = task_stats(
            "t",
            &TaskStats {
                timestamp: UNIX_EPOCH + Duration::from_secs(5),
                cpu: crate::driver::model::CpuStats {
                    percent: 12.5,
                    measured: vec!["System Mode", "User Mode", "Percent", "Bogus"],
                    ..Default::default()
                },
                memory: crate::driver::model::MemoryStats {
                    usage: 1024,
                    rss: 1024,
                    measured: vec!["Usage", "Max Usage"],
                    ..Default::default()
                },
            },
        );
        assert_eq!(stats.timestamp.unwrap().seconds, 5);
        let usage = stats.agg_resource_usage.unwrap();
        let cpu = usage.cpu.unwrap();
        assert_eq!(cpu.measured_fields, vec![0, 1, 5]);
        assert!((cpu.percent - 12.5).abs() < f64::EPSILON);
        let memory = usage.memory.unwrap();
        assert_eq!(memory.usage, 1024);
        assert_eq!(memory.measured_fields, vec![5, 2]);
    }

    #[test]
    fn fingerprint_and_network() {
        let response = fingerprint(&Fingerprint {
            health: Health::Unhealthy,
            description: "Cannot fingerprint certain podman sockets: b".into(),
            attributes: [
                ("driver.podman".to_string(), Attribute::Bool(true)),
                (
                    "driver.podman.version".to_string(),
                    Attribute::String("4.3.1".into()),
                ),
            ]
            .into(),
        });
        assert_eq!(
            response.health,
            drivers::fingerprint_response::HealthState::Unhealthy as i32
        );
        assert_eq!(
            response.attributes["driver.podman"].value,
            Some(structs::attribute::Value::BoolVal(true))
        );
        let network = network_override(&DriverNetwork {
            port_map: [("http".to_string(), 8080)].into(),
            ip: "10.88.0.2".into(),
            auto_advertise: true,
        });
        assert_eq!(network.port_map["http"], 8080);
        assert_eq!(network.addr, "10.88.0.2");
        assert!(network.auto_advertise);
    }

    /// Every task option as the agent sends it after decoding a job's `config {}` with
    /// the TaskConfigSchema: all 49 keys, sorted, blocks as lists of objects, numbers in
    /// compact ints and the fraction-free `memory_swappiness` sent as a decimal string.
    #[test]
    fn every_task_option_decodes_from_cty_msgpack() {
        use super::super::go_state::tests::{encode, text};
        use super::super::msgpack::Msgpack;
        let strings = |items: &[&str]| Msgpack::Array(items.iter().map(|s| text(s)).collect());
        let map = |entries: &[(&str, Msgpack)]| {
            Msgpack::Map(entries.iter().map(|(k, v)| (text(k), v.clone())).collect())
        };
        let int = |i: i128| Msgpack::Int(i);
        let yes = Msgpack::Bool(true);
        let config = map(&[
            ("apparmor_profile", text("unconfined")),
            ("args", strings(&["-c", "sleep 1"])),
            ("arch", text("arm64")),
            (
                "auth",
                map(&[
                    ("password", text("secret")),
                    ("tls_verify", Msgpack::Bool(false)),
                    ("username", text("user")),
                ]),
            ),
            ("auth_soft_fail", yes.clone()),
            ("cap_add", strings(&["NET_RAW"])),
            ("cap_drop", strings(&["MKNOD"])),
            ("command", text("sh")),
            ("cpu_cfs_period", int(100_000)),
            ("cpu_hard_limit", yes.clone()),
            ("devices", strings(&["/dev/null:/dev/nulltest:rwm"])),
            ("entrypoint", strings(&["/bin/sh", "-e"])),
            ("extra_hosts", strings(&["example.internal:127.0.0.1"])),
            ("force_pull", yes.clone()),
            ("hostname", text("every-option")),
            ("image", text("busybox:latest")),
            ("image_pull_timeout", text("2m")),
            ("init", yes.clone()),
            ("init_path", text("/usr/libexec/podman/catatonit")),
            ("ipc_mode", text("private")),
            ("ipv4_address", text("10.88.0.50")),
            ("ipv6_address", text("fd00::50")),
            (
                "labels",
                Msgpack::Array(vec![map(&[("tier", text("test"))])]),
            ),
            (
                "logging",
                map(&[
                    ("driver", text("journald")),
                    ("options", Msgpack::Array(vec![map(&[("tag", text("x"))])])),
                ]),
            ),
            ("memory_reservation", text("32m")),
            ("memory_swap", text("128m")),
            ("memory_swappiness", text("10")),
            ("network_mode", text("host")),
            ("oom_score_adj", Msgpack::Int(-500)),
            ("os", text("linux")),
            ("pids_limit", int(100)),
            (
                "port_map",
                Msgpack::Array(vec![map(&[("http", int(8080))])]),
            ),
            ("ports", Msgpack::Nil),
            ("privileged", yes.clone()),
            ("readonly_rootfs", yes.clone()),
            ("security_opt", strings(&["no-new-privileges"])),
            ("selinux_opts", strings(&["disable"])),
            ("shm_size", text("16m")),
            ("socket", text("fast")),
            ("static_ips", strings(&["10.88.0.51"])),
            ("static_mac", text("02:42:AC:11:00:02")),
            (
                "sysctl",
                Msgpack::Array(vec![map(&[("net.core.somaxconn", text("1024"))])]),
            ),
            ("tmpfs", strings(&["/scratch:size=1m"])),
            ("tty", yes.clone()),
            (
                "ulimit",
                Msgpack::Array(vec![map(&[("nofile", text("1024:2048"))])]),
            ),
            ("userns", text("host")),
            ("variant", text("v8")),
            ("volumes", strings(&["local:/data"])),
            ("working_dir", text("/tmp")),
        ]);
        let mut bytes = Vec::new();
        encode(&config, &mut bytes);
        let decoded = task_config(&bytes).unwrap();

        assert_eq!(decoded.apparmor_profile, "unconfined");
        assert_eq!(decoded.args, ["-c", "sleep 1"]);
        assert_eq!(decoded.arch, "arm64");
        let auth = decoded.auth.as_ref().unwrap();
        assert_eq!(
            (auth.username.as_str(), auth.password.as_str()),
            ("user", "secret")
        );
        assert!(!auth.tls_verify);
        assert!(decoded.auth_soft_fail);
        assert_eq!(decoded.cap_add, ["NET_RAW"]);
        assert_eq!(decoded.cap_drop, ["MKNOD"]);
        assert_eq!(decoded.command, "sh");
        assert_eq!(decoded.cpu_cfs_period, 100_000);
        assert!(decoded.cpu_hard_limit);
        assert_eq!(decoded.devices, ["/dev/null:/dev/nulltest:rwm"]);
        assert_eq!(
            decoded.entrypoint.as_deref(),
            Some(&["/bin/sh".to_string(), "-e".to_string()][..])
        );
        fn texts<T: ToString>(items: &[T]) -> Vec<String> {
            items.iter().map(T::to_string).collect()
        }
        assert_eq!(texts(&decoded.extra_hosts), ["example.internal:127.0.0.1"]);
        assert!(decoded.force_pull);
        assert_eq!(decoded.hostname, "every-option");
        assert_eq!(decoded.image, "busybox:latest");
        assert_eq!(decoded.image_pull_timeout, Duration::from_secs(120));
        assert!(decoded.init);
        assert_eq!(decoded.init_path, "/usr/libexec/podman/catatonit");
        assert_eq!(decoded.ipc_mode.to_string(), "private");
        assert_eq!(decoded.ipv4_address.unwrap().to_string(), "10.88.0.50");
        assert_eq!(decoded.ipv6_address.unwrap().to_string(), "fd00::50");
        assert_eq!(decoded.labels["tier"], "test");
        assert_eq!(decoded.logging.driver, "journald");
        assert_eq!(decoded.logging.options["tag"], "x");
        assert_eq!(decoded.memory_reservation, Some(32 * 1024 * 1024));
        assert_eq!(decoded.memory_swap, Some(128 * 1024 * 1024));
        assert_eq!(decoded.memory_swappiness, Some(10));
        assert_eq!(decoded.network_mode.to_string(), "host");
        assert_eq!(decoded.oom_score_adj, -500);
        assert_eq!(decoded.os, "linux");
        assert_eq!(decoded.pids_limit, 100);
        assert_eq!(decoded.port_map["http"], 8080);
        assert!(decoded.ports.is_empty());
        assert!(decoded.privileged);
        assert!(decoded.readonly_rootfs);
        assert_eq!(texts(&decoded.security_opt.items), ["no-new-privileges"]);
        assert_eq!(decoded.selinux_opts, ["disable"]);
        assert_eq!(decoded.shm_size, Some(16 * 1024 * 1024));
        assert_eq!(decoded.socket, "fast");
        assert_eq!(decoded.static_ips.len(), 1);
        assert_eq!(decoded.static_mac.as_deref(), Some("02:42:ac:11:00:02"));
        assert_eq!(decoded.sysctl["net.core.somaxconn"], "1024");
        assert_eq!(texts(&decoded.tmpfs), ["/scratch:size=1m"]);
        assert!(decoded.tty);
        assert_eq!(decoded.ulimit[0].name, "nofile");
        assert_eq!(decoded.ulimit[0].limits_text(), "1024:2048");
        assert_eq!(decoded.userns.to_string(), "host");
        assert_eq!(decoded.variant, "v8");
        assert_eq!(texts(&decoded.volumes), ["local:/data"]);
        assert_eq!(decoded.working_dir, "/tmp");
    }

    #[test]
    fn decode_errors_name_the_option() {
        use super::super::go_state::tests::{encode, text};
        use super::super::msgpack::Msgpack;
        let mut bytes = Vec::new();
        encode(
            &Msgpack::Map(vec![(text("image"), Msgpack::Int(5))]),
            &mut bytes,
        );
        let err = task_config(&bytes).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("failed to decode driver config: config.image"),
            "{err}"
        );
        assert!(matches!(err, ConvertError::TaskConfig(_)), "{err:?}");
        let err = driver_config(&[0x81, 0xa1, b'x', 0xc3]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid plugin config: config.x: unknown option"
        );
        assert!(std::error::Error::source(&err).is_some());
        assert_eq!(driver_config(&[]).unwrap(), DriverConfig::default());
    }

    #[test]
    fn durations() {
        assert_eq!(duration(None), Duration::ZERO);
        assert_eq!(
            duration(Some(&prost_types::Duration {
                seconds: 3,
                nanos: 5
            })),
            Duration::new(3, 5)
        );
        assert_eq!(
            duration(Some(&prost_types::Duration {
                seconds: -3,
                nanos: 0
            })),
            Duration::ZERO
        );
    }
}

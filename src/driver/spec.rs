//! TaskSpec -> libpod SpecGenerator JSON (`POST /libpod/containers/create`).
//!
//! Differences from the Go driver, on purpose:
//! * Every container carries `com.hashicorp.nomad.{alloc_id,job_name,task_group_name,task_name}`
//!   and `io.nomad-driver-podman.managed=true` (the marker the dangling-container sweep looks
//!   for), whether or not `extra_labels` is set.
//! * Nomad log mode uses podman's `k8s-file` driver at podman's own path; the core forwards
//!   stdout and stderr separately through the logs API (Go points k8s-file at Nomad's stdout
//!   FIFO, merging both streams with k8s prefixes).
//! * `memory_swappiness` is sent only when set (Go sends 0 when unset on cgroup v1).
//! * Asking for static IPs/MAC without bridge networking is an error (Go drops them
//!   silently). On the default bridge they are keyed `default`, as in Go: podman 4 maps that
//!   key to its configured `default_network` (checked against podman 4.3.1), whereas the
//!   literal name `podman` breaks on hosts whose default network has another name.
//! * The task's `kill_signal` and `kill_timeout` become the container's stop signal and stop
//!   timeout, so podman itself stops the task the way the job asks.
//! * `userns = "ns:<path>"` is sent as podman's `path` namespace mode.
//! * `memory_swap = "-1"` (unlimited) is sent as the largest limit, which podman accepts;
//!   a swap limit without a memory limit, or below it, is refused with the option named.
//! * Operator gates ([`super::gates`]): `allow_privileged`, `allow_caps`, `allow_devices`,
//!   `allow_host_network`, and `volumes.enabled = false` for every host path.
//! * With `volumes.enabled = false`, a volume source inside the allocation is reached
//!   without following any link below the alloc dir (a link there is refused, wherever it
//!   points), and the core checks after podman made the mounts that each one shows the
//!   file it checked (a sibling task may swap a link in between).
//! * `extra_hosts` IPv6 entries written `host:[::1]` reach podman without brackets.
//! * Log option `max-size` becomes podman's log size limit (Go passes it as an option,
//!   which podman's API ignores); `tag` with the k8s-file (nomad) driver is refused, as
//!   conmon cannot start such a container.
//!
//! [`build`] touches the filesystem only for that check of volume sources.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::config::DriverConfig;
use super::decode::ConfigError;
use super::gates::{self, glob_match, lexical_clean as clean};
use super::host::HostFacts;
use super::hostfs::{self, FileKind, HostPathError, PinnedPath};
use super::secopt::Userns;
use super::task::{
    container_name, ExtraHost, IpcMode, MountKind, NetworkMode, PidMode, TaskConfig, TaskSpec,
    UtsMode,
};

/// Label every container this driver creates carries; the dangling-container sweep only
/// ever touches containers with it.
pub const MANAGED_LABEL: &str = "io.nomad-driver-podman.managed";
/// Prefix of the Nomad identity labels.
pub const LABEL_PREFIX: &str = "com.hashicorp.nomad.";
/// Key podman resolves to its configured default bridge network.
pub const DEFAULT_NETWORK: &str = "default";

/// Why a task cannot be turned into a container spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The plugin configuration forbids what the task asks for.
    #[error("{option}: {reason}")]
    Denied { option: String, reason: String },
    /// What the orchestrator provided does not fit the task options.
    #[error("{field}: {reason}")]
    Context { field: String, reason: String },
}

impl SpecError {
    /// The option or context field at fault.
    pub fn field(&self) -> &str {
        match self {
            SpecError::Config(e) => e.field(),
            SpecError::Denied { option, .. } => option,
            SpecError::Context { field, .. } => field,
        }
    }
}

/// Which log driver the container gets and whether the core forwards its output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogMode {
    pub driver: LogDriver,
    /// False with `disable_log_collection`: nothing is forwarded.
    pub collect: bool,
    /// Options for podman's log driver (task options win over plugin options, unmerged).
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogDriver {
    /// podman `k8s-file`; output forwarded to the task's stdout/stderr paths.
    Nomad,
    /// podman `journald`; output forwarded from the logs API.
    Journald,
}

/// The task `logging` block if it says anything, else the plugin's.
pub fn log_mode(config: &TaskConfig, driver: &DriverConfig) -> LogMode {
    let (name, options) = if config.logging.is_empty() {
        (driver.logging.driver.as_str(), &driver.logging.options)
    } else {
        (config.logging.driver.as_str(), &config.logging.options)
    };
    LogMode {
        driver: if name == "journald" {
            LogDriver::Journald
        } else {
            LogDriver::Nomad
        },
        collect: !driver.disable_log_collection,
        options: options.clone(),
    }
}

/// The podman network a task's `network_mode` names, which the caller must check exists
/// before create (`None` when the task joins no custom network, including when the
/// orchestrator provides a network namespace, which wins over `network_mode`).
pub fn custom_network(spec: &TaskSpec) -> Option<&str> {
    if orchestrator_netns(spec).is_some() {
        return None;
    }
    network_mode(spec).custom_network()
}

/// The task's `network_mode`, or the orchestrator's default when the task sets none.
fn network_mode(spec: &TaskSpec) -> &NetworkMode {
    match (
        &spec.config.network_mode,
        &spec.context.default_network_mode,
    ) {
        (NetworkMode::Default, Some(default)) => default,
        (mode, _) => mode,
    }
}

/// podman's libpod SpecGenerator, the body of `POST /libpod/containers/create`, as far as
/// this driver fills it in. Field names are podman's; a field this driver leaves unset is
/// not serialized at all (podman then applies its own default), so an empty list, an
/// empty string, `false` or `None` below means "absent" unless the field says otherwise.
/// It is serialized only where the request is sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SpecGenerator {
    pub name: String,
    /// The resolved image; [`build`]'s caller may leave it empty and fill it in for each
    /// create attempt.
    pub image: String,
    /// `command` then `args`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    /// Always sent, even empty.
    pub env: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctl: BTreeMap<String, String>,
    /// Always sent.
    pub terminal: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub init: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub init_path: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub work_dir: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<i32>,
    /// Seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<u64>,
    /// Always sent: it carries the Nomad identity and [`MANAGED_LABEL`].
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_configuration: Option<LogConfiguration>,
    /// Bind and tmpfs mounts; always sent, even empty.
    pub mounts: Vec<Mount>,
    /// Named podman volumes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<NamedVolume>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthconfig: Option<HealthConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pidns: Option<Namespace>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub utsns: Option<Namespace>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipcns: Option<Namespace>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<Device>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_parent: Option<String>,
    /// Always sent (its `memory` part too).
    pub resource_limits: ResourceLimits,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub r_limits: Vec<RLimit>,
    /// Always sent.
    pub oom_score_adj: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub selinux_opts: Vec<String>,
    /// Always sent, even empty.
    pub annotations: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apparmor_profile: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seccomp_profile_path: Option<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub no_new_privileges: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub label_nested: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub procfs_opts: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mask: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unmask: Vec<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub privileged: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub read_only_filesystem: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub userns: Option<Namespace>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idmappings: Option<IdMappings>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_server: Vec<IpAddr>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_search: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_option: Vec<String>,
    /// `netns`, `Networks` and podman 3's static address fields.
    #[serde(flatten)]
    pub network: NetworkSpec,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hostadd: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub portmappings: Vec<PortMapping>,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// A namespace option (`netns`, `pidns`, `ipcns`, `utsns`, `userns`): podman's `nsmode`
/// (`host`, `container`, `path`, `bridge`, `keep-id`, ...) and its argument, if the mode
/// takes one (a container, a path, `keep-id`/`auto` options).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Namespace {
    pub nsmode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl Namespace {
    /// A mode without an argument.
    pub fn mode(nsmode: &str) -> Namespace {
        Namespace {
            nsmode: nsmode.to_string(),
            value: None,
        }
    }

    /// A mode with its argument.
    pub fn with_value(nsmode: &str, value: impl Into<String>) -> Namespace {
        Namespace {
            nsmode: nsmode.to_string(),
            value: Some(value.into()),
        }
    }
}

/// The network part of the spec: the namespace, the podman networks joined, and the
/// static address fields of podman 3's API.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NetworkSpec {
    /// Always sent.
    pub netns: Namespace,
    /// The podman networks joined, by name (podman's key is capitalised).
    #[serde(rename = "Networks", skip_serializing_if = "BTreeMap::is_empty")]
    pub networks: BTreeMap<String, NetworkOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub static_ip: Option<Ipv4Addr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub static_ipv6: Option<Ipv6Addr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub static_mac: Option<String>,
}

/// What the container asks of one podman network (serialized `{}` when nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NetworkOptions {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub static_ips: Vec<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub static_mac: Option<String>,
}

/// podman's `log_configuration`; sent only when one of its fields is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LogConfiguration {
    /// `k8s-file` or `journald`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// Log size limit in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

impl LogConfiguration {
    pub fn is_empty(&self) -> bool {
        self.driver.is_none() && self.size.is_none() && self.options.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    Bind,
    Tmpfs,
}

/// A bind or tmpfs mount (an OCI mount); `options` is always sent, even empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    #[serde(rename = "type")]
    pub kind: MountType,
    /// The host path of a bind mount, `tmpfs` for a tmpfs.
    pub source: String,
    pub destination: String,
    pub options: Vec<String>,
}

/// A named podman volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamedVolume {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Dest")]
    pub dest: String,
    #[serde(rename = "Options")]
    pub options: Vec<String>,
}

/// podman's `healthconfig` (only ever sent as `{"Test": ["NONE"]}`, no healthcheck).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthConfig {
    #[serde(rename = "Test")]
    pub test: Vec<String>,
}

/// A device: `path`, `host:container[:permissions]`, or a CDI name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    pub path: String,
}

/// An rlimit (`ulimit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RLimit {
    #[serde(rename = "type")]
    pub kind: String,
    pub soft: u64,
    pub hard: u64,
}

/// podman's `resource_limits` (an OCI `LinuxResources`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ResourceLimits {
    /// Always sent, even empty.
    pub memory: MemoryLimits,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuLimits>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids: Option<PidsLimit>,
}

/// Bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MemoryLimits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reservation: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swap: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swappiness: Option<i64>,
}

/// Sent only when one of its fields is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CpuLimits {
    /// cpuset, e.g. `0-1`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cpus: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shares: Option<u64>,
    /// CFS period and quota in microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<i64>,
}

impl CpuLimits {
    pub fn is_empty(&self) -> bool {
        self.cpus.is_empty()
            && self.shares.is_none()
            && self.period.is_none()
            && self.quota.is_none()
    }
}

/// `-1` is unlimited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PidsLimit {
    pub limit: i64,
}

/// podman's `idmappings`: `{}` for `keep-id`, the maps for `auto`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IdMappings {
    #[serde(rename = "UIDMap", skip_serializing_if = "Option::is_none")]
    pub uid_map: Option<Vec<IdMapping>>,
    #[serde(rename = "GIDMap", skip_serializing_if = "Option::is_none")]
    pub gid_map: Option<Vec<IdMapping>>,
    #[serde(rename = "AutoUserNs", skip_serializing_if = "is_false")]
    pub auto_userns: bool,
    #[serde(rename = "AutoUserNsOpts", skip_serializing_if = "Option::is_none")]
    pub auto_userns_opts: Option<AutoUserNsOptions>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AutoUserNsOptions {
    #[serde(rename = "Size", skip_serializing_if = "Option::is_none")]
    pub size: Option<u32>,
    /// Always sent, even empty.
    #[serde(rename = "AdditionalUIDMappings")]
    pub additional_uid_mappings: Vec<IdMapping>,
    #[serde(rename = "AdditionalGIDMappings")]
    pub additional_gid_mappings: Vec<IdMapping>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IdMapping {
    pub container_id: u32,
    pub host_id: u32,
    pub size: u32,
}

/// A published port (one per protocol).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Empty: all host addresses.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

/// Builds the SpecGenerator for `spec`, with `image_id` as the resolved image. The task
/// config is taken as decoded (its options parsed and checked once, by
/// [`TaskConfig::from_value`], or by [`TaskConfig::validate`] for one built in code): what
/// can still fail here is the operator gates, and how the options meet the orchestrator's
/// context and the host.
pub fn build(
    spec: &TaskSpec,
    driver: &DriverConfig,
    host: &HostFacts,
    image_id: &str,
) -> Result<SpecGenerator, SpecError> {
    let config = &spec.config;
    gates::check(config, driver)?;

    let mut out = SpecGenerator {
        name: spec.container_name(),
        image: image_id.to_string(),
        ..SpecGenerator::default()
    };
    set_process(&mut out, spec)?;
    out.labels = labels(spec, driver);
    out.log_configuration = log_configuration(config, driver)?;
    out.mounts = mounts(spec, driver)?;
    out.volumes = named_volumes(config);
    if config.healthchecks_disabled {
        // podman's way to drop the image's healthcheck (and with it the systemd timer it
        // would create per container).
        out.healthconfig = Some(HealthConfig {
            test: vec!["NONE".to_string()],
        });
    }
    out.pidns = pid_namespace(spec);
    if config.uts_mode == UtsMode::Host {
        out.utsns = Some(Namespace::mode("host"));
    }
    out.devices = devices(spec);
    if host.cgroup_v2 && host.cgroup_manager == "systemd" {
        out.cgroup_parent = Some("nomad.slice".to_string());
    }
    out.resource_limits = resources(spec, host)?;
    out.r_limits = config
        .ulimit
        .iter()
        .map(|u| RLimit {
            kind: u.name.clone(),
            soft: u.soft,
            hard: u.hard,
        })
        .collect();
    out.oom_score_adj = config.oom_score_adj;
    set_security(&mut out, config);
    out.shm_size = config.shm_size;
    out.ipcns = ipc_namespace(spec);
    set_dns(&mut out, spec, driver)?;
    out.network = network(spec, driver, host)?;
    out.hostadd = config
        .extra_hosts
        .iter()
        .map(ExtraHost::podman_entry)
        .collect();
    out.portmappings = port_mappings(spec)?;
    Ok(out)
}

fn set_process(out: &mut SpecGenerator, spec: &TaskSpec) -> Result<(), SpecError> {
    let config = &spec.config;
    let context = &spec.context;
    if !config.command.is_empty() {
        out.command.push(config.command.clone());
    }
    out.command.extend(config.args.iter().cloned());
    out.entrypoint = config.entrypoint.clone().unwrap_or_default();
    out.env = context.env.clone();
    for (label, port) in &config.port_map {
        out.env
            .insert(format!("NOMAD_PORT_{label}"), port.to_string());
    }
    out.hostname = config.hostname.clone();
    out.sysctl = config.sysctl.clone();
    out.terminal = config.tty;
    if config.init {
        out.init = true;
        out.init_path = config.init_path.clone();
    }
    out.work_dir = config.working_dir.clone();
    out.user = context.user.clone();
    if let Some(signal) = &context.kill_signal {
        out.stop_signal = Some(signal_number(signal)?);
    }
    if !context.kill_timeout.is_zero() {
        out.stop_timeout = Some(context.kill_timeout.as_secs_f64().ceil() as u64);
    }
    Ok(())
}

/// `SIGTERM`, `TERM`, `term` or `15`.
fn signal_number(name: &str) -> Result<i32, SpecError> {
    let bad = || SpecError::Context {
        field: "kill_signal".into(),
        reason: format!("unknown signal {name:?}"),
    };
    if let Ok(number) = name.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(number)
            .map(|s| s as i32)
            .map_err(|_| bad());
    }
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    nix::sys::signal::Signal::from_str(&full)
        .map(|s| s as i32)
        .map_err(|_| bad())
}

fn labels(spec: &TaskSpec, driver: &DriverConfig) -> BTreeMap<String, String> {
    let context = &spec.context;
    let mut labels = spec.config.labels.clone();
    let candidates = [
        ("job_name", &context.job_name),
        ("job_id", &context.job_id),
        ("task_group_name", &context.task_group_name),
        ("task_name", &context.name),
        ("namespace", &context.namespace),
        ("node_name", &context.node_name),
        ("node_id", &context.node_id),
    ];
    for (key, value) in candidates {
        if driver.extra_labels.iter().any(|glob| glob_match(glob, key)) {
            labels.insert(format!("{LABEL_PREFIX}{key}"), value.clone());
        }
    }
    for (key, value) in [
        ("alloc_id", &context.alloc_id),
        ("job_name", &context.job_name),
        ("task_group_name", &context.task_group_name),
        ("task_name", &context.name),
    ] {
        labels.insert(format!("{LABEL_PREFIX}{key}"), value.clone());
    }
    labels.insert(MANAGED_LABEL.into(), "true".into());
    labels
}

fn log_configuration(
    config: &TaskConfig,
    driver: &DriverConfig,
) -> Result<Option<LogConfiguration>, SpecError> {
    let mode = log_mode(config, driver);
    // Which block the options came from, for error messages.
    let origin = if config.logging.is_empty() {
        "plugin config.logging.options"
    } else {
        "config.logging.options"
    };
    let mut options = mode.options.clone();
    let mut log = LogConfiguration::default();
    match (mode.driver, mode.collect) {
        (LogDriver::Journald, _) => {
            log.driver = Some("journald".to_string());
        }
        (LogDriver::Nomad, true) => {
            if options.contains_key("tag") {
                return Err(SpecError::Context {
                    field: format!("{origin}.tag"),
                    reason: "only the journald log driver takes a tag (conmon's k8s-file refuses it and the container cannot start)".into(),
                });
            }
            log.driver = Some("k8s-file".to_string());
        }
        (LogDriver::Nomad, false) => {}
    }
    // podman's API takes the size limit as a field, not as the `max-size` option its CLI
    // knows; passed as an option it would be silently ignored.
    if let Some(size) = options.remove("max-size") {
        let bytes = parse_log_size(&size).ok_or_else(|| SpecError::Context {
            field: format!("{origin}.max-size"),
            reason: format!("invalid size {size:?}: expected e.g. \"10m\" or \"10mb\""),
        })?;
        log.size = Some(bytes);
    } else if mode.driver == LogDriver::Nomad && mode.collect && driver.logging.max_disk > 0 {
        // The plugin forwards from podman's copy; without a bound it grows with all the
        // task ever printed. conmon starts the file over at the bound, and the forwarder
        // reads the old file to its end before it follows the new one.
        log.size = Some(driver.logging.max_disk);
    }
    log.options = options;
    Ok((!log.is_empty()).then_some(log))
}

/// Docker-style sizes as `--log-opt max-size` takes them: `1024`, `10k`, `10kb`, `5M`,
/// `1g` (binary multiples, any case).
fn parse_log_size(text: &str) -> Option<i64> {
    let lower = text.trim().to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let number: i64 = lower[..digits_end].parse().ok()?;
    let multiplier: i64 = match &lower[digits_end..] {
        "" | "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(multiplier).filter(|b| *b > 0)
}

fn bind(source: &Path, target: &str, options: Vec<String>) -> Mount {
    Mount {
        kind: MountType::Bind,
        source: source.to_string_lossy().into_owned(),
        destination: target.to_string(),
        options,
    }
}

fn tmpfs(target: &str, options: Vec<String>) -> Mount {
    Mount {
        kind: MountType::Tmpfs,
        source: "tmpfs".to_string(),
        destination: target.to_string(),
        options,
    }
}

/// The container's bind and tmpfs mounts: the allocation's directories, `volumes`, bind and
/// tmpfs `mount` blocks, the orchestrator's mounts and `tmpfs`, in that order.
pub fn mounts(spec: &TaskSpec, driver: &DriverConfig) -> Result<Vec<Mount>, SpecError> {
    let config = &spec.config;
    let context = &spec.context;
    let plugin_label = (!driver.volumes.selinuxlabel.is_empty() && !config.privileged)
        .then(|| driver.volumes.selinuxlabel.clone());
    let mut mounts = Vec::new();
    for (dir, target) in [
        (&context.alloc_dir, "/alloc"),
        (&context.local_dir, "/local"),
        (&context.secrets_dir, "/secrets"),
    ] {
        if let Some(dir) = dir {
            mounts.push(bind(dir, target, plugin_label.iter().cloned().collect()));
        }
    }
    for volume in &config.volumes {
        let entry = format!("{}:{}", volume.source, volume.target);
        let (source, _) = volume_source(spec, driver, &volume.source, &entry, "config.volumes")?;
        mounts.push(bind(&source, &volume.target, volume.options.clone()));
    }
    for (i, mount) in config.mounts.iter().enumerate() {
        let mut options = Vec::new();
        if mount.readonly {
            options.push("ro".to_string());
        }
        match &mount.kind {
            MountKind::Bind { propagation } => {
                options.extend(propagation.iter().cloned());
                let option = format!("config.mount[{i}].source");
                let (source, _) =
                    volume_source(spec, driver, &mount.source, &mount.source, &option)?;
                mounts.push(bind(&source, &mount.target, options));
            }
            MountKind::Tmpfs { size, mode } => {
                options.extend(size.map(|bytes| format!("size={bytes}")));
                options.extend(mode.map(|mode| format!("mode={mode:o}")));
                mounts.push(tmpfs(&mount.target, options));
            }
            // Named volumes go into the spec's `volumes`.
            MountKind::Volume { .. } => {}
        }
    }
    for mount in &context.mounts {
        let mut options = Vec::new();
        if mount.readonly {
            options.push("ro".to_string());
        }
        match mount.propagation_mode.as_str() {
            "private" => options.push("rprivate".into()),
            "host-to-task" => options.push("rslave".into()),
            "bidirectional" => options.push("rshared".into()),
            _ => {}
        }
        if !config.privileged {
            if !mount.selinux_label.is_empty() {
                options.push(mount.selinux_label.clone());
            } else if let Some(label) = &plugin_label {
                options.push(label.clone());
            }
        }
        mounts.push(bind(Path::new(&mount.host_path), &mount.task_path, options));
    }
    for entry in &config.tmpfs {
        mounts.push(tmpfs(&entry.path, entry.options.clone()));
    }
    Ok(mounts)
}

/// Resolves a `volumes` source: relative to the task dir, lexically cleaned; with host
/// volumes disabled it must stay inside the allocation dir after resolving symlinks.
fn volume_source(
    spec: &TaskSpec,
    driver: &DriverConfig,
    source: &str,
    entry: &str,
    option: &str,
) -> Result<(PathBuf, Option<PinnedPath>), SpecError> {
    let context = &spec.context;
    let raw = Path::new(source);
    let joined = if raw.is_absolute() {
        raw.to_path_buf()
    } else {
        match &context.task_dir {
            Some(task_dir) => task_dir.join(raw),
            None => {
                return Err(SpecError::Context {
                    field: option.into(),
                    reason: format!(
                        "{entry:?}: a relative source needs the task directory, which was not given"
                    ),
                })
            }
        }
    };
    let cleaned = clean(&joined);
    if driver.volumes.enabled {
        return Ok((cleaned, None));
    }
    let denied = || {
        SpecError::Denied {
        option: option.into(),
        reason: format!(
            "volumes are not enabled; cannot mount host paths: {entry:?} (plugin option volumes.enabled = false)"
        ),
    }
    };
    let alloc_dir = context.alloc_dir.as_deref().ok_or_else(denied)?;
    match pin_inside(alloc_dir, &cleaned) {
        Ok(pinned) => Ok((cleaned, Some(pinned))),
        Err(HostPathError::Outside { .. }) => Err(denied()),
        Err(e) => Err(SpecError::Denied {
            option: option.into(),
            reason: format!("{entry:?}: {e} (plugin option volumes.enabled = false)"),
        }),
    }
}

/// Pins a volume source below the allocation dir without following any link below it
/// (the task controls everything there). The source may be spelled with the alloc dir
/// as the orchestrator gave it or with its links resolved.
fn pin_inside(alloc_dir: &Path, source: &Path) -> Result<PinnedPath, HostPathError> {
    let alloc_dir = clean(alloc_dir);
    let pinned = match hostfs::pin_beneath(&alloc_dir, source) {
        Err(HostPathError::Outside { .. }) => {
            let real = alloc_dir.canonicalize().map_err(|e| HostPathError::Io {
                path: alloc_dir.clone(),
                source: e,
            })?;
            hostfs::pin_beneath(&real, source)?
        }
        other => other?,
    };
    match pinned.kind() {
        FileKind::Directory | FileKind::Regular => Ok(pinned),
        _ => pinned.expect(FileKind::Directory),
    }
}

/// The host volume sources of a task with `volumes.enabled = false`, pinned (target,
/// source): the caller checks after the container's mounts are made that each target
/// shows the pinned file, since a sibling task can swap a link in between.
pub fn pin_volume_sources(
    spec: &TaskSpec,
    driver: &DriverConfig,
) -> Result<Vec<(String, PinnedPath)>, SpecError> {
    if driver.volumes.enabled {
        return Ok(Vec::new());
    }
    let mut pins = Vec::new();
    for volume in &spec.config.volumes {
        let entry = format!("{}:{}", volume.source, volume.target);
        if let (_, Some(pinned)) =
            volume_source(spec, driver, &volume.source, &entry, "config.volumes")?
        {
            pins.push((volume.target.clone(), pinned));
        }
    }
    for (i, mount) in spec.config.mounts.iter().enumerate() {
        if let MountKind::Bind { .. } = mount.kind {
            let option = format!("config.mount[{i}].source");
            if let (_, Some(pinned)) =
                volume_source(spec, driver, &mount.source, &mount.source, &option)?
            {
                pins.push((mount.target.clone(), pinned));
            }
        }
    }
    Ok(pins)
}

fn devices(spec: &TaskSpec) -> Vec<Device> {
    let from_config = spec
        .config
        .devices
        .iter()
        .map(|d| Device { path: d.clone() });
    let from_context = spec.context.devices.iter().map(|d| {
        let target = if d.task_path.is_empty() {
            &d.host_path
        } else {
            &d.task_path
        };
        let mut path = format!("{}:{}", d.host_path, target);
        if !d.permissions.is_empty() {
            path.push(':');
            path.push_str(&d.permissions);
        }
        Device { path }
    });
    from_config.chain(from_context).collect()
}

const MIB: i64 = 1024 * 1024;
/// What `memory_swap = "-1"` sends: podman 4.3's API rejects -1 ("minimum memoryswap limit
/// should be larger than memory limit"), and the kernel's page-aligned maximum means
/// "no limit" on cgroup v1 and v2 alike.
const UNLIMITED_SWAP: i64 = 9_223_372_036_854_771_712;

fn resources(spec: &TaskSpec, host: &HostFacts) -> Result<ResourceLimits, SpecError> {
    let config = &spec.config;
    let res = &spec.context.resources;
    let mut cpu = CpuLimits {
        cpus: res.cpuset_cpus.clone(),
        ..CpuLimits::default()
    };
    if !host.rootless && res.cpu_shares > 0 {
        cpu.shares = Some(res.cpu_shares);
    }
    if config.cpu_hard_limit {
        let period = match config.cpu_cfs_period {
            0 => 100_000,
            p => p.max(1000),
        };
        let per_cpu = (res.percent_ticks * period as f64) as i64;
        let quota = (per_cpu * host.num_cpus.max(1) as i64).max(1000);
        cpu.period = Some(period);
        cpu.quota = Some(quota);
    }

    let memory_bytes = res.memory_mb * MIB;
    let reservation = config.memory_reservation;
    let (limit, soft) = if res.memory_max_mb == -1 {
        (
            None,
            Some(reservation.map_or(memory_bytes, |r| r.min(memory_bytes))),
        )
    } else if res.memory_max_mb > 0 {
        let soft = reservation.map_or(memory_bytes, |r| r.min(memory_bytes));
        (Some(res.memory_max_mb * MIB), Some(soft))
    } else if memory_bytes > 0 {
        (Some(memory_bytes), reservation)
    } else {
        (None, reservation)
    };
    let mut memory = MemoryLimits {
        limit,
        reservation: soft.filter(|s| *s > 0),
        ..MemoryLimits::default()
    };
    if let Some(swap) = config.memory_swap {
        check_swap(swap, limit)?;
        memory.swap = Some(if swap == -1 { UNLIMITED_SWAP } else { swap });
    }
    if !host.cgroup_v2 {
        memory.swappiness = config.memory_swappiness;
    }

    Ok(ResourceLimits {
        memory,
        cpu: (!cpu.is_empty()).then_some(cpu),
        // -1 is podman's "unlimited" (runc writes `max`); 0 leaves podman's default
        // (containers.conf `pids_limit`, 2048 unless changed). Other negatives are refused
        // by TaskConfig::validate.
        pids: (config.pids_limit > 0 || config.pids_limit == -1).then_some(PidsLimit {
            limit: config.pids_limit,
        }),
    })
}

/// podman refuses a swap limit without a memory limit, or one below it (swap counts
/// memory plus swap); say so in the job's terms instead.
fn check_swap(swap: i64, limit: Option<i64>) -> Result<(), SpecError> {
    let reason = match limit {
        None => "needs a hard memory limit (resources.memory, and memory_max not -1)".to_string(),
        Some(limit) if swap != -1 && swap < limit => format!(
            "{swap} bytes is below the memory limit of {limit} bytes; memory_swap counts memory plus swap"
        ),
        Some(_) => return Ok(()),
    };
    Err(SpecError::Context {
        field: "config.memory_swap".into(),
        reason,
    })
}

fn set_security(out: &mut SpecGenerator, config: &TaskConfig) {
    let security = &config.security_opt;
    out.cap_add = config.cap_add.clone();
    out.cap_drop = config.cap_drop.clone();
    out.selinux_opts = config.selinux_opts.clone();
    out.selinux_opts
        .extend(security.selinux_opts.iter().cloned());
    let annotations = &mut out.annotations;
    if !security.selinux_opts.is_empty() {
        annotations.insert(
            "io.podman.annotations.label".into(),
            security.selinux_opts.join(",label="),
        );
    }
    let apparmor = security
        .apparmor_profile
        .clone()
        .or_else(|| (!config.apparmor_profile.is_empty()).then(|| config.apparmor_profile.clone()));
    if let Some(profile) = apparmor {
        if security.apparmor_profile.is_some() {
            annotations.insert("io.podman.annotations.apparmor".into(), profile.clone());
        }
        out.apparmor_profile = Some(profile);
    }
    if let Some(seccomp) = &security.seccomp_profile_path {
        annotations.insert("io.podman.annotations.seccomp".into(), seccomp.clone());
        out.seccomp_profile_path = Some(seccomp.clone());
    }
    out.no_new_privileges = security.no_new_privileges;
    out.label_nested = security.labels_nested;
    out.procfs_opts = security.procfs_opts.clone();
    out.mask = security.mask.clone();
    out.unmask = security.unmask.clone();
    out.privileged = config.privileged;
    out.read_only_filesystem = config.readonly_rootfs;
    (out.userns, out.idmappings) = userns(config);
}

/// podman's `userns` and `idmappings` for the task's `userns`.
fn userns(config: &TaskConfig) -> (Option<Namespace>, Option<IdMappings>) {
    let (namespace, idmappings) = match &config.userns {
        Userns::Default => return (None, None),
        Userns::Host => (Namespace::mode("host"), None),
        Userns::NoMap => (Namespace::mode("nomap"), None),
        Userns::Path(path) => (Namespace::with_value("path", path), None),
        Userns::KeepId(options) => (
            Namespace::with_value("keep-id", options),
            Some(IdMappings::default()),
        ),
        Userns::Auto {
            options: written,
            size,
            uid_maps,
            gid_maps,
        } => {
            let maps = |list: &[super::secopt::IdMap]| -> Vec<IdMapping> {
                list.iter()
                    .map(|m| IdMapping {
                        container_id: m.container_id,
                        host_id: m.host_id,
                        size: m.size,
                    })
                    .collect()
            };
            (
                Namespace::with_value("auto", written),
                Some(IdMappings {
                    uid_map: Some(maps(uid_maps)),
                    gid_map: Some(maps(gid_maps)),
                    auto_userns: true,
                    auto_userns_opts: Some(AutoUserNsOptions {
                        size: *size,
                        additional_uid_mappings: maps(uid_maps),
                        additional_gid_mappings: maps(gid_maps),
                    }),
                }),
            )
        }
    };
    (Some(namespace), idmappings)
}

/// The podman named volumes of `mount` blocks (created beforehand by the core).
pub fn named_volumes(config: &TaskConfig) -> Vec<NamedVolume> {
    config
        .mounts
        .iter()
        .filter_map(|mount| match &mount.kind {
            MountKind::Volume { no_copy, .. } => {
                let mut options = Vec::new();
                if mount.readonly {
                    options.push("ro".to_string());
                }
                if *no_copy {
                    options.push("nocopy".to_string());
                }
                Some(NamedVolume {
                    name: mount.source.clone(),
                    dest: mount.target.clone(),
                    options,
                })
            }
            _ => None,
        })
        .collect()
}

fn pid_namespace(spec: &TaskSpec) -> Option<Namespace> {
    match &spec.config.pid_mode {
        PidMode::Default => None,
        PidMode::Host => Some(Namespace::mode("host")),
        PidMode::Container(id) => Some(Namespace::with_value("container", id)),
        PidMode::Task(task) => Some(Namespace::with_value(
            "container",
            container_name(task, &spec.context.alloc_id),
        )),
    }
}

fn ipc_namespace(spec: &TaskSpec) -> Option<Namespace> {
    let alloc = &spec.context.alloc_id;
    Some(match &spec.config.ipc_mode {
        IpcMode::Default => return None,
        IpcMode::Host => Namespace::mode("host"),
        IpcMode::Private => Namespace::mode("private"),
        IpcMode::Shareable => Namespace::mode("shareable"),
        IpcMode::None => Namespace::mode("none"),
        IpcMode::Container(id) => Namespace::with_value("container", id),
        IpcMode::Path(path) => Namespace::with_value("path", path),
        IpcMode::Task(task) => Namespace::with_value("container", container_name(task, alloc)),
    })
}

fn set_dns(
    out: &mut SpecGenerator,
    spec: &TaskSpec,
    driver: &DriverConfig,
) -> Result<(), SpecError> {
    if let Some(dns) = &spec.context.dns {
        out.dns_server = dns
            .servers
            .iter()
            .map(|s| {
                s.parse().map_err(|_| SpecError::Context {
                    field: "dns.servers".into(),
                    reason: format!("invalid DNS server address {s:?}"),
                })
            })
            .collect::<Result<_, _>>()?;
        out.dns_search = dns.searches.clone();
        out.dns_option = dns.options.clone();
    } else {
        out.dns_server = driver.dns_servers.clone();
    }
    Ok(())
}

/// The network namespace the orchestrator puts the task in, if it does: Nomad's
/// isolation path, or the container the runner's group network lives in.
fn orchestrator_netns(spec: &TaskSpec) -> Option<Namespace> {
    let context = &spec.context;
    if let Some(path) = context
        .network_isolation_path
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        return Some(Namespace::with_value("path", path));
    }
    context
        .network_container
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(|container| Namespace::with_value("container", container))
}

/// The network part of [`build`]'s spec: the task's network namespace and the podman
/// networks it joins, with their static addresses.
pub fn network(
    spec: &TaskSpec,
    driver: &DriverConfig,
    host: &HostFacts,
) -> Result<NetworkSpec, SpecError> {
    let alloc = &spec.context.alloc_id;
    let mut network_name = None;
    let netns = match orchestrator_netns(spec) {
        Some(netns) => netns,
        None => match network_mode(spec) {
            NetworkMode::Default if host.rootless => {
                let mode = match driver.networking.default_rootless_mode.as_str() {
                    "" if host.api_version.0 >= 5 => "pasta",
                    "" => "slirp4netns",
                    configured => configured,
                };
                Namespace::mode(mode)
            }
            NetworkMode::Default | NetworkMode::Bridge => {
                network_name = Some(DEFAULT_NETWORK.to_string());
                Namespace::mode("bridge")
            }
            NetworkMode::Host => Namespace::mode("host"),
            NetworkMode::None => Namespace::mode("none"),
            NetworkMode::Pasta => Namespace::mode("pasta"),
            NetworkMode::Slirp4netns => Namespace::mode("slirp4netns"),
            NetworkMode::Container(id) => Namespace::with_value("container", id),
            NetworkMode::Path(path) => Namespace::with_value("path", path),
            NetworkMode::Task(task) => {
                Namespace::with_value("container", container_name(task, alloc))
            }
            NetworkMode::Custom(name) => {
                network_name = Some(name.clone());
                Namespace::mode("bridge")
            }
        },
    };
    let mut out = NetworkSpec {
        netns,
        ..NetworkSpec::default()
    };

    let config = &spec.config;
    let wants_static = config.ipv4_address.is_some()
        || config.ipv6_address.is_some()
        || !config.static_ips.is_empty()
        || config.static_mac.is_some();
    let custom = network_name.clone().filter(|n| n != DEFAULT_NETWORK);
    if !wants_static {
        if let Some(name) = custom {
            out.networks.insert(name, NetworkOptions::default());
        }
        return Ok(out);
    }
    let Some(name) = network_name else {
        return Err(SpecError::Context {
            field: "config.network_mode".into(),
            reason: "ipv4_address, ipv6_address, static_ips and static_mac need bridge networking (network_mode \"bridge\" or a podman network), and no network namespace from the orchestrator".into(),
        });
    };
    if host.api_version.0 >= 4 {
        let mut static_ips: Vec<IpAddr> = Vec::new();
        static_ips.extend(config.ipv4_address.map(IpAddr::V4));
        static_ips.extend(config.ipv6_address.map(IpAddr::V6));
        static_ips.extend(config.static_ips.iter().copied());
        out.networks.insert(
            name,
            NetworkOptions {
                static_ips,
                static_mac: config.static_mac.clone(),
            },
        );
    } else {
        out.static_ip = config.ipv4_address;
        out.static_ipv6 = config.ipv6_address;
        out.static_mac = config.static_mac.clone();
        if let Some(name) = custom {
            out.networks.insert(name, NetworkOptions::default());
        }
    }
    Ok(out)
}

/// What is wrong with a task's `ports` against the ports of its group's network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortsProblem {
    /// `ports` is set, but the group has no network.
    NoNetwork,
    /// A label the group's network does not declare.
    Undeclared(String),
}

/// The one check of a task's `ports`, for a start (against the allocated ports) and for
/// the runner's job check (against the group's network block): each label must be a port
/// of the group's network (`declared`: its labels; `None`: there is no network). Every
/// problem, in the task's order.
pub fn ports_problems(ports: &[String], declared: Option<&[&str]>) -> Vec<PortsProblem> {
    if ports.is_empty() {
        return Vec::new();
    }
    let Some(declared) = declared else {
        return vec![PortsProblem::NoNetwork];
    };
    ports
        .iter()
        .filter(|label| !declared.contains(&label.as_str()))
        .map(|label| PortsProblem::Undeclared(label.clone()))
        .collect()
}

fn port_mappings(spec: &TaskSpec) -> Result<Vec<PortMapping>, SpecError> {
    let config = &spec.config;
    let context = &spec.context;
    if context.network_container.is_some() {
        // The container that holds the namespace publishes the group's ports.
        return Ok(Vec::new());
    }
    let mut pairs: Vec<(String, u16, u16)> = Vec::new();
    if !config.ports.is_empty() {
        let allocated = context.ports.as_deref();
        let declared: Option<Vec<&str>> =
            allocated.map(|ports| ports.iter().map(|p| p.label.as_str()).collect());
        if let Some(problem) = ports_problems(&config.ports, declared.as_deref()).first() {
            return Err(SpecError::Context {
                field: "config.ports".into(),
                reason: match problem {
                    PortsProblem::NoNetwork => "No ports defined in network stanza".into(),
                    PortsProblem::Undeclared(label) => {
                        format!("Port {label:?} not found, check network stanza")
                    }
                },
            });
        }
        for label in &config.ports {
            let found = allocated
                .unwrap_or_default()
                .iter()
                .find(|p| &p.label == label);
            if let Some(port) = found {
                let container_port = if port.to == 0 { port.value } else { port.to };
                pairs.push((port.host_ip.clone(), port.value, container_port));
            }
        }
    } else if !config.port_map.is_empty() {
        let network = context
            .networks
            .as_ref()
            .and_then(|n| n.first())
            .ok_or_else(|| SpecError::Context {
                field: "config.port_map".into(),
                reason: "Trying to map ports but no network interface is available".into(),
            })?;
        for port in network.reserved_ports.iter().chain(&network.dynamic_ports) {
            let container_port = config
                .port_map
                .get(&port.label)
                .copied()
                .unwrap_or(port.value);
            pairs.push((network.ip.clone(), port.value, container_port));
        }
    }
    let mut mappings = Vec::new();
    for (host_ip, host_port, container_port) in pairs {
        for protocol in ["tcp", "udp"] {
            mappings.push(PortMapping {
                host_port,
                container_port,
                protocol: protocol.to_string(),
                host_ip: host_ip.clone(),
            });
        }
    }
    Ok(mappings)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::{json, Value};

    use super::*;
    use crate::driver::task::{
        DeviceSpec, DnsSpec, LegacyNetwork, LegacyPort, MountSpec, PortSpec, TaskContext,
        TaskResources,
    };

    fn spec(config: Value) -> TaskSpec {
        let mut config = config;
        if config.get("image").is_none() {
            config["image"] = json!("busybox");
        }
        TaskSpec {
            config: TaskConfig::from_value(&config).unwrap(),
            context: TaskContext {
                id: "task-id".into(),
                name: "web".into(),
                alloc_id: "a1".into(),
                job_name: "job".into(),
                job_id: "job-id".into(),
                task_group_name: "group".into(),
                namespace: "default".into(),
                node_name: "node".into(),
                node_id: "node-id".into(),
                ..TaskContext::default()
            },
        }
    }

    /// The spec as podman gets it.
    fn built(spec: &TaskSpec) -> Value {
        build_with(spec, &DriverConfig::default(), &HostFacts::default()).unwrap()
    }

    fn build_with(
        spec: &TaskSpec,
        driver: &DriverConfig,
        host: &HostFacts,
    ) -> Result<Value, SpecError> {
        build(spec, driver, host, "sha256id").map(|s| serde_json::to_value(s).unwrap())
    }

    #[test]
    fn basics_name_image_command() {
        let s = spec(
            json!({"command": "/bin/sh", "args": ["-c", "echo hi"], "entrypoint": ["/bin/env"],
                            "working_dir": "/tmp", "hostname": "box", "tty": true, "init": true,
                            "init_path": "/bin/catatonit", "sysctl": {"net.core.somaxconn": "512"}}),
        );
        let out = built(&s);
        assert_eq!(out["name"], "web-a1");
        assert_eq!(out["image"], "sha256id");
        assert_eq!(out["command"], json!(["/bin/sh", "-c", "echo hi"]));
        assert_eq!(out["entrypoint"], json!(["/bin/env"]));
        assert_eq!(out["work_dir"], "/tmp");
        assert_eq!(out["hostname"], "box");
        assert_eq!(out["terminal"], true);
        assert_eq!(out["init"], true);
        assert_eq!(out["init_path"], "/bin/catatonit");
        assert_eq!(out["sysctl"]["net.core.somaxconn"], "512");
        assert_eq!(out["oom_score_adj"], 0);
    }

    #[test]
    fn args_alone_replace_cmd_and_keep_entrypoint() {
        let out = built(&spec(json!({"args": ["a", "b"]})));
        assert_eq!(out["command"], json!(["a", "b"]));
        assert!(out.get("entrypoint").is_none());
        let out = built(&spec(json!({})));
        assert!(out.get("command").is_none());
    }

    #[test]
    fn env_gets_port_map_variables() {
        let mut s = spec(json!({"port_map": {"http": 8080}}));
        s.context.env.insert("NOMAD_TASK_NAME".into(), "web".into());
        s.context.networks = Some(vec![LegacyNetwork {
            ip: "127.0.0.1".into(),
            reserved_ports: vec![],
            dynamic_ports: vec![LegacyPort {
                label: "http".into(),
                value: 23456,
            }],
        }]);
        let out = built(&s);
        assert_eq!(out["env"]["NOMAD_TASK_NAME"], "web");
        assert_eq!(out["env"]["NOMAD_PORT_http"], "8080");
    }

    #[test]
    fn labels_always_identify_the_task() {
        let s = spec(json!({"labels": {"team": "a", "com.hashicorp.nomad.alloc_id": "spoof"}}));
        let out = built(&s);
        let labels = &out["labels"];
        assert_eq!(labels["team"], "a");
        assert_eq!(labels["com.hashicorp.nomad.alloc_id"], "a1");
        assert_eq!(labels["com.hashicorp.nomad.job_name"], "job");
        assert_eq!(labels["com.hashicorp.nomad.task_group_name"], "group");
        assert_eq!(labels["com.hashicorp.nomad.task_name"], "web");
        assert_eq!(labels[MANAGED_LABEL], "true");
        assert!(labels.get("com.hashicorp.nomad.node_id").is_none());
    }

    #[test]
    fn extra_labels_match_globs() {
        let driver = DriverConfig {
            extra_labels: vec!["node_*".into(), "job_id".into()],
            ..DriverConfig::default()
        };
        let out = build_with(&spec(json!({})), &driver, &HostFacts::default()).unwrap();
        let labels = &out["labels"];
        assert_eq!(labels["com.hashicorp.nomad.node_name"], "node");
        assert_eq!(labels["com.hashicorp.nomad.node_id"], "node-id");
        assert_eq!(labels["com.hashicorp.nomad.job_id"], "job-id");
        assert!(labels.get("com.hashicorp.nomad.namespace").is_none());
        let everything = DriverConfig {
            extra_labels: vec!["*".into()],
            ..DriverConfig::default()
        };
        let out = build_with(&spec(json!({})), &everything, &HostFacts::default()).unwrap();
        assert_eq!(out["labels"]["com.hashicorp.nomad.namespace"], "default");
    }

    #[test]
    fn the_drivers_nomad_labels_win_over_task_labels() {
        let driver = DriverConfig {
            extra_labels: vec!["*".into()],
            ..DriverConfig::default()
        };
        let mut spoof = serde_json::Map::new();
        for key in [
            "alloc_id",
            "job_name",
            "job_id",
            "task_group_name",
            "task_name",
            "namespace",
            "node_name",
            "node_id",
        ] {
            spoof.insert(format!("{LABEL_PREFIX}{key}"), json!("spoof"));
        }
        let s = spec(json!({ "labels": spoof }));
        let out = build_with(&s, &driver, &HostFacts::default()).unwrap();
        let labels = out["labels"].as_object().unwrap();
        for (key, value) in labels {
            assert_ne!(value, "spoof", "{key}");
        }
        assert_eq!(labels["com.hashicorp.nomad.node_id"], "node-id");
    }

    #[test]
    fn glob_rules() {
        assert!(glob_match("*", "job_name"));
        assert!(glob_match("job_*", "job_name"));
        assert!(glob_match("*_name", "task_name"));
        assert!(glob_match("t*k*e", "task_name"));
        assert!(glob_match("job_name", "job_name"));
        assert!(!glob_match("job", "job_name"));
        assert!(!glob_match("job_*x", "job_name"));
        assert!(!glob_match("*name_*", "task_name"));
    }

    #[test]
    fn log_configuration_by_mode() {
        let out = built(&spec(json!({})));
        assert_eq!(
            out["log_configuration"],
            json!({"driver": "k8s-file", "size": 10 * MIB}),
            "podman's copy is bounded by logging.max_disk"
        );
        assert!(out["log_configuration"].get("path").is_none());
        let unbounded = DriverConfig::from_value(&json!({"logging": {"max_disk": "0"}})).unwrap();
        let out = build_with(&spec(json!({})), &unbounded, &HostFacts::default()).unwrap();
        assert_eq!(out["log_configuration"], json!({"driver": "k8s-file"}));
        let err = DriverConfig::from_value(&json!({"logging": {"max_disk": "lots"}})).unwrap_err();
        assert_eq!(err.field(), "config.logging.max_disk");

        let journald = spec(json!({"logging": {"driver": "journald", "options": {"tag": "x"}}}));
        let out = built(&journald);
        assert_eq!(
            out["log_configuration"],
            json!({"driver": "journald", "options": {"tag": "x"}})
        );

        let silent = DriverConfig {
            disable_log_collection: true,
            ..DriverConfig::default()
        };
        let out = build_with(&spec(json!({})), &silent, &HostFacts::default()).unwrap();
        assert!(out.get("log_configuration").is_none());
        let mode = log_mode(&journald.config, &silent);
        assert_eq!(mode.driver, LogDriver::Journald);
        assert!(!mode.collect);
    }

    #[test]
    fn log_size_and_tag_rules() {
        let out = built(&spec(
            json!({"logging": {"driver": "nomad", "options": {"max-size": "10mb", "max-file": "3"}}}),
        ));
        assert_eq!(
            out["log_configuration"],
            json!({"driver": "k8s-file", "size": 10 * MIB, "options": {"max-file": "3"}})
        );
        let err = build_with(
            &spec(json!({"logging": {"options": {"max-size": "huge"}}})),
            &DriverConfig::default(),
            &HostFacts::default(),
        )
        .unwrap_err();
        assert_eq!(err.field(), "config.logging.options.max-size");
        let err = build_with(
            &spec(json!({"logging": {"options": {"tag": "x"}}})),
            &DriverConfig::default(),
            &HostFacts::default(),
        )
        .unwrap_err();
        assert_eq!(err.field(), "config.logging.options.tag");
        let mut plugin = DriverConfig::default();
        plugin.logging.options.insert("tag".into(), "x".into());
        let err = build_with(&spec(json!({})), &plugin, &HostFacts::default()).unwrap_err();
        assert_eq!(err.field(), "plugin config.logging.options.tag");
        plugin.logging.driver = "journald".into();
        let out = build_with(&spec(json!({})), &plugin, &HostFacts::default()).unwrap();
        assert_eq!(out["log_configuration"]["options"]["tag"], "x");
        for (text, bytes) in [
            ("1024", Some(1024)),
            ("10k", Some(10240)),
            ("5M", Some(5 * MIB)),
            ("1gb", Some(1 << 30)),
            ("0", None),
            ("1.5m", None),
            ("m", None),
        ] {
            assert_eq!(parse_log_size(text), bytes, "{text}");
        }
    }

    #[test]
    fn task_logging_wins_over_plugin_without_merging() {
        let mut driver = DriverConfig::default();
        driver.logging.driver = "journald".into();
        driver.logging.options.insert("tag".into(), "plugin".into());
        let plain = spec(json!({}));
        let mode = log_mode(&plain.config, &driver);
        assert_eq!(mode.driver, LogDriver::Journald);
        assert_eq!(mode.options["tag"], "plugin");
        let task = spec(json!({"logging": {"driver": "nomad"}}));
        let mode = log_mode(&task.config, &driver);
        assert_eq!(mode.driver, LogDriver::Nomad);
        assert!(mode.options.is_empty());
        assert!(mode.collect);
    }

    #[test]
    fn alloc_dirs_mount_only_when_given() {
        let out = built(&spec(json!({})));
        assert_eq!(out["mounts"], json!([]));
        let mut s = spec(json!({"privileged": false}));
        s.context.alloc_dir = Some("/nomad/alloc/a1/alloc".into());
        s.context.local_dir = Some("/nomad/alloc/a1/web/local".into());
        s.context.secrets_dir = Some("/nomad/alloc/a1/web/secrets".into());
        let driver = DriverConfig {
            volumes: crate::driver::config::VolumesConfig {
                enabled: true,
                selinuxlabel: "z".into(),
            },
            ..DriverConfig::default()
        };
        let out = build_with(&s, &driver, &HostFacts::default()).unwrap();
        assert_eq!(
            out["mounts"],
            json!([
                {"type": "bind", "source": "/nomad/alloc/a1/alloc", "destination": "/alloc", "options": ["z"]},
                {"type": "bind", "source": "/nomad/alloc/a1/web/local", "destination": "/local", "options": ["z"]},
                {"type": "bind", "source": "/nomad/alloc/a1/web/secrets", "destination": "/secrets", "options": ["z"]},
            ])
        );
        s.config.privileged = true;
        let out = build_with(&s, &driver, &HostFacts::default()).unwrap();
        assert_eq!(out["mounts"][0]["options"], json!([]));
    }

    #[test]
    fn volumes_resolve_relative_to_task_dir() {
        let mut s = spec(json!({"volumes": ["data:/data:ro", "/srv/../etc:/e", "../../x:/x"]}));
        s.context.task_dir = Some("/nomad/alloc/a1/web".into());
        let out = built(&s);
        let mounts = out["mounts"].as_array().unwrap();
        assert_eq!(mounts[0]["source"], "/nomad/alloc/a1/web/data");
        assert_eq!(mounts[0]["destination"], "/data");
        assert_eq!(mounts[0]["options"], json!(["ro"]));
        assert_eq!(mounts[1]["source"], "/etc");
        assert_eq!(mounts[2]["source"], "/nomad/alloc/x");
        let no_task_dir = spec(json!({"volumes": ["data:/data"]}));
        let err = build_with(
            &no_task_dir,
            &DriverConfig::default(),
            &HostFacts::default(),
        )
        .unwrap_err();
        assert_eq!(err.field(), "config.volumes");
    }

    #[test]
    fn disabled_volumes_stay_inside_the_alloc_dir() {
        let root = tempfile::tempdir().unwrap();
        let alloc = root.path().join("alloc");
        let task = alloc.join("web");
        std::fs::create_dir_all(task.join("data")).unwrap();
        std::os::unix::fs::symlink("/etc", task.join("escape")).unwrap();
        let driver = DriverConfig {
            volumes: crate::driver::config::VolumesConfig {
                enabled: false,
                selinuxlabel: String::new(),
            },
            ..DriverConfig::default()
        };
        let with = |volume: &str| {
            let mut s = spec(json!({"volumes": [volume]}));
            s.context.alloc_dir = Some(alloc.clone());
            s.context.task_dir = Some(task.clone());
            build_with(&s, &driver, &HostFacts::default())
        };
        assert!(with("data:/data").is_ok());
        assert!(with(&format!("{}:/a", alloc.display())).is_ok());
        // A link below the alloc dir is never followed, wherever it points; a missing
        // source says so (podman would fail on it later).
        for (bad, why) in [
            ("escape:/e", "is a symbolic link"),
            ("escape/passwd:/p", "is a symbolic link or not a directory"),
            ("not-yet/there:/x", "No such file or directory"),
        ] {
            let err = with(bad).unwrap_err();
            assert_eq!(err.field(), "config.volumes", "{bad}");
            assert!(err.to_string().contains(why), "{bad}: {err}");
        }
        for bad in ["/etc:/etc", "../../outside:/o"] {
            let err = with(bad).unwrap_err();
            assert_eq!(err.field(), "config.volumes", "{bad}");
            assert!(matches!(err, SpecError::Denied { .. }), "{bad}");
            assert!(err.to_string().contains("volumes are not enabled"), "{err}");
        }
        let mut no_alloc = spec(json!({"volumes": ["/tmp:/t"]}));
        no_alloc.context.task_dir = Some(task.clone());
        assert!(build_with(&no_alloc, &driver, &HostFacts::default()).is_err());
    }

    #[test]
    fn nomad_mounts_propagation_and_labels() {
        let mut s = spec(json!({}));
        s.context.mounts = vec![
            MountSpec {
                host_path: "/h1".into(),
                task_path: "/t1".into(),
                readonly: true,
                propagation_mode: "private".into(),
                selinux_label: String::new(),
            },
            MountSpec {
                host_path: "/h2".into(),
                task_path: "/t2".into(),
                readonly: false,
                propagation_mode: "host-to-task".into(),
                selinux_label: "Z".into(),
            },
            MountSpec {
                host_path: "/h3".into(),
                task_path: "/t3".into(),
                readonly: false,
                propagation_mode: "bidirectional".into(),
                selinux_label: String::new(),
            },
            MountSpec {
                host_path: "/h4".into(),
                task_path: "/t4".into(),
                ..MountSpec::default()
            },
        ];
        let driver = DriverConfig {
            volumes: crate::driver::config::VolumesConfig {
                enabled: true,
                selinuxlabel: "z".into(),
            },
            ..DriverConfig::default()
        };
        let out = build_with(&s, &driver, &HostFacts::default()).unwrap();
        let mounts = out["mounts"].as_array().unwrap();
        assert_eq!(mounts[0]["options"], json!(["ro", "rprivate", "z"]));
        assert_eq!(mounts[1]["options"], json!(["rslave", "Z"]));
        assert_eq!(mounts[2]["options"], json!(["rshared", "z"]));
        assert_eq!(mounts[3]["options"], json!(["z"]));
        assert_eq!(mounts[3]["source"], "/h4");
        assert_eq!(mounts[3]["destination"], "/t4");
    }

    #[test]
    fn tmpfs_and_devices() {
        let mut s = spec(
            json!({"tmpfs": ["/scratch:size=10m,mode=1777", "/run"], "devices": ["/dev/fuse", "nvidia.com/gpu=all"]}),
        );
        s.context.devices = vec![DeviceSpec {
            host_path: "/dev/null".into(),
            task_path: "/dev/n".into(),
            permissions: "rw".into(),
        }];
        let out = built(&s);
        let mounts = out["mounts"].as_array().unwrap();
        assert_eq!(
            mounts[0],
            json!({"type": "tmpfs", "source": "tmpfs", "destination": "/scratch", "options": ["size=10m", "mode=1777"]})
        );
        assert_eq!(mounts[1]["options"], json!([]));
        assert_eq!(
            out["devices"],
            json!([{"path": "/dev/fuse"}, {"path": "nvidia.com/gpu=all"}, {"path": "/dev/null:/dev/n:rw"}])
        );
    }

    #[test]
    fn cgroup_parent_only_on_v2_systemd() {
        let s = spec(json!({}));
        let v2 = HostFacts {
            cgroup_v2: true,
            cgroup_manager: "systemd".into(),
            ..HostFacts::default()
        };
        assert_eq!(
            build_with(&s, &DriverConfig::default(), &v2).unwrap()["cgroup_parent"],
            "nomad.slice"
        );
        let v2_cgroupfs = HostFacts {
            cgroup_v2: true,
            ..HostFacts::default()
        };
        assert!(build_with(&s, &DriverConfig::default(), &v2_cgroupfs)
            .unwrap()
            .get("cgroup_parent")
            .is_none());
        let v1_systemd = HostFacts {
            cgroup_manager: "systemd".into(),
            ..HostFacts::default()
        };
        assert!(build_with(&s, &DriverConfig::default(), &v1_systemd)
            .unwrap()
            .get("cgroup_parent")
            .is_none());
    }

    #[test]
    fn cpu_shares_cpuset_and_hard_limit() {
        let mut s = spec(json!({"cpu_hard_limit": true}));
        s.context.resources = TaskResources {
            cpu_shares: 500,
            cpuset_cpus: "0-1".into(),
            percent_ticks: 0.25,
            ..TaskResources::default()
        };
        let host = HostFacts {
            num_cpus: 4,
            ..HostFacts::default()
        };
        let out = build_with(&s, &DriverConfig::default(), &host).unwrap();
        let cpu = &out["resource_limits"]["cpu"];
        assert_eq!(cpu["shares"], 500);
        assert_eq!(cpu["cpus"], "0-1");
        assert_eq!(cpu["period"], 100_000);
        assert_eq!(cpu["quota"], 100_000);
        let rootless = HostFacts {
            rootless: true,
            ..host.clone()
        };
        let out = build_with(&s, &DriverConfig::default(), &rootless).unwrap();
        assert!(out["resource_limits"]["cpu"].get("shares").is_none());

        s.config.cpu_cfs_period = 500;
        s.context.resources.percent_ticks = 0.0001;
        let out = build_with(&s, &DriverConfig::default(), &host).unwrap();
        assert_eq!(out["resource_limits"]["cpu"]["period"], 1000);
        assert_eq!(out["resource_limits"]["cpu"]["quota"], 1000);

        s.config.cpu_hard_limit = false;
        let out = build_with(&s, &DriverConfig::default(), &host).unwrap();
        assert!(out["resource_limits"]["cpu"].get("quota").is_none());
    }

    fn memory(memory_mb: i64, memory_max_mb: i64, reservation: Option<&str>) -> Value {
        let mut config = json!({});
        if let Some(r) = reservation {
            config["memory_reservation"] = json!(r);
        }
        let mut s = spec(config);
        s.context.resources.memory_mb = memory_mb;
        s.context.resources.memory_max_mb = memory_max_mb;
        built(&s)["resource_limits"]["memory"].clone()
    }

    #[test]
    fn memory_table() {
        let m = |mib: i64| json!(mib * MIB);
        // memory_max = -1: no hard limit, soft = min(R, M)
        assert_eq!(memory(256, -1, None), json!({"reservation": m(256)}));
        assert_eq!(
            memory(256, -1, Some("128m")),
            json!({"reservation": m(128)})
        );
        assert_eq!(
            memory(256, -1, Some("512m")),
            json!({"reservation": m(256)})
        );
        // memory_max > 0: hard = X, soft = min(M, R) or M
        assert_eq!(
            memory(256, 512, None),
            json!({"limit": m(512), "reservation": m(256)})
        );
        assert_eq!(
            memory(256, 512, Some("64m")),
            json!({"limit": m(512), "reservation": m(64)})
        );
        // memory only: hard = M, soft = R as given
        assert_eq!(memory(256, 0, None), json!({"limit": m(256)}));
        assert_eq!(
            memory(256, 0, Some("512m")),
            json!({"limit": m(256), "reservation": m(512)})
        );
        // nothing: soft = R
        assert_eq!(memory(0, 0, Some("64m")), json!({"reservation": m(64)}));
        assert_eq!(memory(0, 0, None), json!({}));
    }

    #[test]
    fn swap_needs_a_memory_limit_at_or_below_it() {
        let mut s = spec(json!({"memory_swap": "128m"}));
        let err = build_with(&s, &DriverConfig::default(), &HostFacts::default()).unwrap_err();
        assert_eq!(err.field(), "config.memory_swap");
        s.context.resources.memory_mb = 256;
        let err = build_with(&s, &DriverConfig::default(), &HostFacts::default()).unwrap_err();
        assert!(err.to_string().contains("below the memory limit"), "{err}");
        s.context.resources.memory_mb = 128;
        assert_eq!(built(&s)["resource_limits"]["memory"]["swap"], 128 * MIB);
        s.context.resources.memory_max_mb = -1;
        assert!(build_with(&s, &DriverConfig::default(), &HostFacts::default()).is_err());
    }

    #[test]
    fn swap_and_swappiness() {
        let mut s = spec(json!({"memory_swap": "-1", "memory_swappiness": 10}));
        s.context.resources.memory_mb = 64;
        let v1 = built(&s);
        assert_eq!(v1["resource_limits"]["memory"]["swap"], UNLIMITED_SWAP);
        assert_eq!(v1["resource_limits"]["memory"]["swappiness"], 10);
        let v2 = build_with(
            &s,
            &DriverConfig::default(),
            &HostFacts {
                cgroup_v2: true,
                ..HostFacts::default()
            },
        )
        .unwrap();
        assert!(v2["resource_limits"]["memory"].get("swappiness").is_none());
        let unset = built(&spec(json!({})));
        assert!(unset["resource_limits"]["memory"]
            .get("swappiness")
            .is_none());
    }

    #[test]
    fn pids_ulimits_oom() {
        let out = built(&spec(
            json!({"pids_limit": 64, "ulimit": {"nofile": "1024:2048"}, "oom_score_adj": 300}),
        ));
        assert_eq!(out["resource_limits"]["pids"]["limit"], 64);
        assert_eq!(
            out["r_limits"],
            json!([{"type": "nofile", "soft": 1024, "hard": 2048}])
        );
        assert_eq!(out["oom_score_adj"], 300);
        let out = built(&spec(json!({"pids_limit": -1})));
        assert_eq!(out["resource_limits"]["pids"]["limit"], -1);
        let out = built(&spec(json!({"pids_limit": 0})));
        assert!(out["resource_limits"].get("pids").is_none());
    }

    #[test]
    fn security_fields() {
        let mut s = spec(json!({
            "cap_add": ["NET_ADMIN"], "cap_drop": ["ALL"], "selinux_opts": ["type:spc_t"],
            "security_opt": ["no-new-privileges", "label=disable", "seccomp=unconfined", "mask=/proc/a", "unmask=ALL", "proc-opts=hidepid=2", "label=nested"],
            "apparmor_profile": "myprofile", "readonly_rootfs": true, "privileged": true,
        }));
        s.context.user = "nobody".into();
        let out = built(&s);
        assert_eq!(out["cap_add"], json!(["NET_ADMIN"]));
        assert_eq!(out["cap_drop"], json!(["ALL"]));
        assert_eq!(out["selinux_opts"], json!(["type:spc_t", "disable"]));
        assert_eq!(out["annotations"]["io.podman.annotations.label"], "disable");
        assert_eq!(
            out["annotations"]["io.podman.annotations.seccomp"],
            "unconfined"
        );
        assert_eq!(out["seccomp_profile_path"], "unconfined");
        assert_eq!(out["apparmor_profile"], "myprofile");
        assert!(out["annotations"]
            .get("io.podman.annotations.apparmor")
            .is_none());
        assert_eq!(out["no_new_privileges"], true);
        assert_eq!(out["label_nested"], true);
        assert_eq!(out["mask"], json!(["/proc/a"]));
        assert_eq!(out["unmask"], json!(["ALL"]));
        assert_eq!(out["procfs_opts"], json!(["hidepid=2"]));
        assert_eq!(out["read_only_filesystem"], true);
        assert_eq!(out["privileged"], true);
        assert_eq!(out["user"], "nobody");

        let out = built(&spec(
            json!({"apparmor_profile": "a", "security_opt": ["apparmor=b", "label=type:x", "label=level:s0"]}),
        ));
        assert_eq!(out["apparmor_profile"], "b");
        assert_eq!(out["annotations"]["io.podman.annotations.apparmor"], "b");
        assert_eq!(
            out["annotations"]["io.podman.annotations.label"],
            "type:x,label=level:s0"
        );
        let out = built(&spec(json!({"security_opt": ["no-new-privileges=false"]})));
        assert!(out.get("no_new_privileges").is_none());
        assert_eq!(out["annotations"], json!({}));
    }

    #[test]
    fn userns_forms() {
        let out = built(&spec(json!({"userns": "keep-id:uid=1000"})));
        assert_eq!(
            out["userns"],
            json!({"nsmode": "keep-id", "value": "uid=1000"})
        );
        assert_eq!(out["idmappings"], json!({}));
        let out = built(&spec(json!({"userns": "host"})));
        assert_eq!(out["userns"], json!({"nsmode": "host"}));
        assert!(out.get("idmappings").is_none());
        let out = built(&spec(json!({"userns": "ns:/proc/1/ns/user"})));
        assert_eq!(
            out["userns"],
            json!({"nsmode": "path", "value": "/proc/1/ns/user"})
        );
        let out = built(&spec(
            json!({"userns": "auto:size=2000,uidmapping=0:1000:10"}),
        ));
        assert_eq!(
            out["userns"],
            json!({"nsmode": "auto", "value": "size=2000,uidmapping=0:1000:10"})
        );
        let map = json!([{"container_id": 0, "host_id": 1000, "size": 10}]);
        assert_eq!(
            out["idmappings"],
            json!({"UIDMap": map, "GIDMap": [], "AutoUserNs": true,
                   "AutoUserNsOpts": {"Size": 2000, "AdditionalUIDMappings": map, "AdditionalGIDMappings": []}})
        );
        assert!(built(&spec(json!({}))).get("userns").is_none());
    }

    #[test]
    fn privileged_and_caps_gates() {
        let strict = DriverConfig {
            allow_privileged: false,
            allow_caps: vec!["chown".into(), "CAP_NET_RAW".into()],
            ..DriverConfig::default()
        };
        let host = HostFacts::default();
        let err = build_with(&spec(json!({"privileged": true})), &strict, &host).unwrap_err();
        assert_eq!(err.field(), "config.privileged");
        assert!(err.to_string().contains("allow_privileged"));
        assert!(build_with(
            &spec(json!({"cap_add": ["CHOWN", "net_raw", "cap_chown"]})),
            &strict,
            &host
        )
        .is_ok());
        let err = build_with(
            &spec(json!({"cap_add": ["chown", "SYS_ADMIN", "ALL"]})),
            &strict,
            &host,
        )
        .unwrap_err();
        assert_eq!(err.field(), "config.cap_add");
        assert_eq!(
            err.to_string(),
            "config.cap_add: capabilities SYS_ADMIN, ALL are not in the plugin option allow_caps (chown, CAP_NET_RAW)"
        );
        assert!(build_with(
            &spec(json!({"privileged": true, "cap_add": ["SYS_ADMIN"]})),
            &DriverConfig::default(),
            &host
        )
        .is_ok());
    }

    #[test]
    fn docker_mount_blocks_health_and_namespaces() {
        let mut s = spec(json!({
            "mount": [
                {"type": "bind", "source": "local/conf", "target": "/etc/app", "readonly": true,
                 "bind_options": {"propagation": "rslave"}},
                {"type": "tmpfs", "target": "/scratch", "tmpfs_options": {"size": 10000000, "mode": 493}},
                {"source": "cache", "target": "/cache", "volume_options": {"no_copy": true}},
            ],
            "healthchecks": {"disable": true},
            "pid_mode": "task:db",
            "uts_mode": "host",
        }));
        s.context.task_dir = Some("/nomad/alloc/a1/web".into());
        let out = built(&s);
        let mounts = out["mounts"].as_array().unwrap();
        assert!(
            mounts.contains(
                &json!({"type": "bind", "source": "/nomad/alloc/a1/web/local/conf",
            "destination": "/etc/app", "options": ["ro", "rslave"]})
            ),
            "{mounts:?}"
        );
        assert!(
            mounts.contains(&json!({"type": "tmpfs", "source": "tmpfs",
            "destination": "/scratch", "options": ["size=10000000", "mode=755"]})),
            "{mounts:?}"
        );
        assert_eq!(
            out["volumes"],
            json!([{"Name": "cache", "Dest": "/cache", "Options": ["nocopy"]}])
        );
        assert_eq!(out["healthconfig"], json!({"Test": ["NONE"]}));
        assert_eq!(
            out["pidns"],
            json!({"nsmode": "container", "value": "db-a1"})
        );
        assert_eq!(out["utsns"], json!({"nsmode": "host"}));
        let plain = built(&spec(json!({})));
        for key in ["volumes", "healthconfig", "pidns", "utsns"] {
            assert!(plain.get(key).is_none(), "{key} only when asked for");
        }
    }

    #[test]
    fn ipc_namespaces() {
        let ipc = |mode: &str| {
            built(&spec(json!({"ipc_mode": mode})))
                .get("ipcns")
                .cloned()
        };
        assert_eq!(ipc(""), None);
        assert_eq!(ipc("host"), Some(json!({"nsmode": "host"})));
        assert_eq!(ipc("shareable"), Some(json!({"nsmode": "shareable"})));
        assert_eq!(ipc("none"), Some(json!({"nsmode": "none"})));
        assert_eq!(
            ipc("container:db"),
            Some(json!({"nsmode": "container", "value": "db"}))
        );
        assert_eq!(
            ipc("ns:/proc/1/ns/ipc"),
            Some(json!({"nsmode": "path", "value": "/proc/1/ns/ipc"}))
        );
        assert_eq!(
            ipc("task:db"),
            Some(json!({"nsmode": "container", "value": "db-a1"}))
        );
        let out = built(&spec(json!({"shm_size": "64m", "ipc_mode": "private"})));
        assert_eq!(out["shm_size"], 64 * MIB);
    }

    #[test]
    fn dns_from_task_or_plugin() {
        let mut s = spec(json!({}));
        let plugin = DriverConfig {
            dns_servers: vec!["9.9.9.9".parse().unwrap()],
            ..DriverConfig::default()
        };
        let out = build_with(&s, &plugin, &HostFacts::default()).unwrap();
        assert_eq!(out["dns_server"], json!(["9.9.9.9"]));
        assert!(out.get("dns_search").is_none());
        s.context.dns = Some(DnsSpec {
            servers: vec!["1.1.1.1".into()],
            searches: vec!["internal.corp".into()],
            options: vec!["ndots:2".into()],
        });
        let out = build_with(&s, &plugin, &HostFacts::default()).unwrap();
        assert_eq!(out["dns_server"], json!(["1.1.1.1"]));
        assert_eq!(out["dns_search"], json!(["internal.corp"]));
        assert_eq!(out["dns_option"], json!(["ndots:2"]));
        s.context.dns.as_mut().unwrap().servers = vec!["dns.google".into()];
        let err = build_with(&s, &plugin, &HostFacts::default()).unwrap_err();
        assert_eq!(err.field(), "dns.servers");
        assert!(err.to_string().contains("\"dns.google\""));
    }

    #[test]
    fn network_modes() {
        let netns = |mode: &str| built(&spec(json!({"network_mode": mode})))["netns"].clone();
        assert_eq!(netns(""), json!({"nsmode": "bridge"}));
        assert_eq!(netns("bridge"), json!({"nsmode": "bridge"}));
        assert_eq!(netns("host"), json!({"nsmode": "host"}));
        assert_eq!(netns("none"), json!({"nsmode": "none"}));
        assert_eq!(netns("pasta"), json!({"nsmode": "pasta"}));
        assert_eq!(netns("slirp4netns"), json!({"nsmode": "slirp4netns"}));
        assert_eq!(
            netns("container:db"),
            json!({"nsmode": "container", "value": "db"})
        );
        assert_eq!(
            netns("ns:/run/netns/x"),
            json!({"nsmode": "path", "value": "/run/netns/x"})
        );
        assert_eq!(
            netns("task:db"),
            json!({"nsmode": "container", "value": "db-a1"})
        );
        let custom = spec(json!({"network_mode": "backend"}));
        let out = built(&custom);
        assert_eq!(out["netns"], json!({"nsmode": "bridge"}));
        assert_eq!(out["Networks"], json!({"backend": {}}));
        assert_eq!(custom_network(&custom), Some("backend"));
        assert_eq!(
            custom_network(&spec(json!({"network_mode": "task:x"}))),
            None
        );
        assert_eq!(custom_network(&spec(json!({"network_mode": "host"}))), None);
        assert!(built(&spec(json!({}))).get("Networks").is_none());
    }

    #[test]
    fn ports_are_checked_against_the_group_network_in_one_place() {
        let ports = vec!["http".to_string(), "dns".to_string(), "admin".to_string()];
        assert_eq!(ports_problems(&ports, None), vec![PortsProblem::NoNetwork]);
        assert_eq!(
            ports_problems(&ports, Some(&["dns"])),
            vec![
                PortsProblem::Undeclared("http".into()),
                PortsProblem::Undeclared("admin".into())
            ]
        );
        assert!(ports_problems(&ports, Some(&["admin", "dns", "http"])).is_empty());
        assert!(ports_problems(&[], None).is_empty());
    }

    /// The runner's bridge group: every task joins the container holding the group's
    /// namespace, which publishes the ports; the task's own network options are ignored.
    #[test]
    fn a_group_network_container_wins_and_publishes_the_ports() {
        let mut s = spec(json!({"network_mode": "backend", "ports": ["http"]}));
        s.context.network_container = Some("nomad_init-a1".into());
        let out = built(&s);
        assert_eq!(
            out["netns"],
            json!({"nsmode": "container", "value": "nomad_init-a1"})
        );
        assert!(out.get("Networks").is_none());
        assert!(out.get("portmappings").is_none());
        assert_eq!(custom_network(&s), None);
        assert_eq!(
            s.config.network_mode.to_string(),
            "backend",
            "config untouched"
        );
    }

    #[test]
    fn the_orchestrators_default_network_mode_applies_when_the_task_sets_none() {
        let mut s = spec(json!({}));
        s.context.default_network_mode = Some(NetworkMode::None);
        assert_eq!(built(&s)["netns"], json!({"nsmode": "none"}));
        let mut s = spec(json!({"network_mode": "host"}));
        s.context.default_network_mode = Some(NetworkMode::None);
        assert_eq!(built(&s)["netns"], json!({"nsmode": "host"}));
    }

    #[test]
    fn orchestrator_netns_wins() {
        let mut s = spec(json!({"network_mode": "backend"}));
        s.context.network_isolation_path = Some("/var/run/netns/abc".into());
        let out = built(&s);
        assert_eq!(
            out["netns"],
            json!({"nsmode": "path", "value": "/var/run/netns/abc"})
        );
        assert!(out.get("Networks").is_none());
        assert_eq!(custom_network(&s), None);
        s.context.network_isolation_path = Some(String::new());
        assert_eq!(built(&s)["netns"], json!({"nsmode": "bridge"}));
    }

    #[test]
    fn rootless_default_network() {
        let s = spec(json!({}));
        let rootless4 = HostFacts {
            rootless: true,
            ..HostFacts::default()
        };
        assert_eq!(
            build_with(&s, &DriverConfig::default(), &rootless4).unwrap()["netns"],
            json!({"nsmode": "slirp4netns"})
        );
        let rootless5 = HostFacts {
            rootless: true,
            api_version: (5, 0, 0),
            ..HostFacts::default()
        };
        assert_eq!(
            build_with(&s, &DriverConfig::default(), &rootless5).unwrap()["netns"],
            json!({"nsmode": "pasta"})
        );
        let mut driver = DriverConfig::default();
        driver.networking.default_rootless_mode = "host".into();
        assert_eq!(
            build_with(&s, &driver, &rootless5).unwrap()["netns"],
            json!({"nsmode": "host"})
        );
    }

    #[test]
    fn static_addresses() {
        let s = spec(
            json!({"ipv4_address": "10.88.0.50", "ipv6_address": "fd00::5", "static_ips": ["10.88.0.51"], "static_mac": "AA:BB:CC:DD:EE:FF"}),
        );
        let out = built(&s);
        assert_eq!(
            out["Networks"],
            json!({"default": {"static_ips": ["10.88.0.50", "fd00::5", "10.88.0.51"], "static_mac": "aa:bb:cc:dd:ee:ff"}})
        );
        let custom = spec(json!({"network_mode": "backend", "ipv4_address": "10.1.0.5"}));
        assert_eq!(
            built(&custom)["Networks"],
            json!({"backend": {"static_ips": ["10.1.0.5"]}})
        );
        let old = HostFacts {
            api_version: (3, 4, 0),
            ..HostFacts::default()
        };
        let out = build_with(&s, &DriverConfig::default(), &old).unwrap();
        assert_eq!(out["static_ip"], "10.88.0.50");
        assert_eq!(out["static_ipv6"], "fd00::5");
        assert_eq!(out["static_mac"], "aa:bb:cc:dd:ee:ff");
        let host_net = spec(json!({"network_mode": "host", "ipv4_address": "10.88.0.50"}));
        let err =
            build_with(&host_net, &DriverConfig::default(), &HostFacts::default()).unwrap_err();
        assert_eq!(err.field(), "config.network_mode");
    }

    #[test]
    fn extra_hosts_to_hostadd() {
        let out = built(&spec(
            json!({"extra_hosts": ["db:10.0.0.1", "v6:[fd00::1]", "gw:host-gateway"]}),
        ));
        assert_eq!(
            out["hostadd"],
            json!(["db:10.0.0.1", "v6:fd00::1", "gw:host-gateway"])
        );
    }

    #[test]
    fn ports_publish_tcp_and_udp() {
        let mut s = spec(json!({"ports": ["http", "dns"]}));
        s.context.ports = Some(vec![
            PortSpec {
                label: "http".into(),
                value: 8888,
                to: 80,
                host_ip: "127.0.0.1".into(),
            },
            PortSpec {
                label: "dns".into(),
                value: 5353,
                to: 0,
                host_ip: String::new(),
            },
        ]);
        let out = built(&s);
        assert_eq!(
            out["portmappings"],
            json!([
                {"host_port": 8888, "container_port": 80, "protocol": "tcp", "host_ip": "127.0.0.1"},
                {"host_port": 8888, "container_port": 80, "protocol": "udp", "host_ip": "127.0.0.1"},
                {"host_port": 5353, "container_port": 5353, "protocol": "tcp"},
                {"host_port": 5353, "container_port": 5353, "protocol": "udp"},
            ])
        );
        s.config.ports.push("missing".into());
        let err = build_with(&s, &DriverConfig::default(), &HostFacts::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "config.ports: Port \"missing\" not found, check network stanza"
        );
        s.context.ports = None;
        let err = build_with(&s, &DriverConfig::default(), &HostFacts::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "config.ports: No ports defined in network stanza"
        );
    }

    #[test]
    fn port_map_uses_legacy_network() {
        let mut s = spec(json!({"port_map": {"http": 80}}));
        let err = build_with(&s, &DriverConfig::default(), &HostFacts::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "config.port_map: Trying to map ports but no network interface is available"
        );
        s.context.networks = Some(vec![LegacyNetwork {
            ip: "127.0.0.1".into(),
            reserved_ports: vec![LegacyPort {
                label: "admin".into(),
                value: 9000,
            }],
            dynamic_ports: vec![LegacyPort {
                label: "http".into(),
                value: 23456,
            }],
        }]);
        let out = built(&s);
        let mappings = out["portmappings"].as_array().unwrap();
        assert_eq!(mappings.len(), 4);
        assert_eq!(
            mappings[0],
            json!({"host_port": 9000, "container_port": 9000, "protocol": "tcp", "host_ip": "127.0.0.1"})
        );
        assert_eq!(
            mappings[2],
            json!({"host_port": 23456, "container_port": 80, "protocol": "tcp", "host_ip": "127.0.0.1"})
        );
    }

    #[test]
    fn stop_signal_and_timeout() {
        let mut s = spec(json!({}));
        assert!(built(&s).get("stop_signal").is_none());
        assert!(built(&s).get("stop_timeout").is_none());
        s.context.kill_signal = Some("SIGINT".into());
        s.context.kill_timeout = Duration::from_millis(2500);
        let out = built(&s);
        assert_eq!(out["stop_signal"], 2);
        assert_eq!(out["stop_timeout"], 3);
        for (name, number) in [("usr1", 10), ("HUP", 1), ("15", 15)] {
            s.context.kill_signal = Some(name.into());
            assert_eq!(built(&s)["stop_signal"], number, "{name}");
        }
        s.context.kill_signal = Some("SIGNOPE".into());
        let err = build_with(&s, &DriverConfig::default(), &HostFacts::default()).unwrap_err();
        assert_eq!(err.field(), "kill_signal");
    }

    /// Unset fields stay off the wire (podman applies its own defaults to them); the few
    /// podman always gets are sent even when empty.
    #[test]
    fn a_plain_spec_sends_only_the_fields_that_are_always_sent() {
        let out = built(&spec(json!({})));
        let keys: Vec<&str> = out
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = vec![
            "annotations",
            "env",
            "image",
            "labels",
            "log_configuration",
            "mounts",
            "name",
            "netns",
            "oom_score_adj",
            "resource_limits",
            "terminal",
        ];
        expected.sort_unstable();
        let mut keys = keys;
        keys.sort_unstable();
        assert_eq!(keys, expected);
        assert_eq!(out["annotations"], json!({}));
        assert_eq!(out["env"], json!({}));
        assert_eq!(out["mounts"], json!([]));
        assert_eq!(out["netns"], json!({"nsmode": "bridge"}));
        assert_eq!(out["resource_limits"], json!({"memory": {}}));
        assert_eq!(out["terminal"], false);
        // Empty objects podman is given on purpose.
        assert_eq!(
            built(&spec(json!({"userns": "keep-id"})))["idmappings"],
            json!({})
        );
        assert_eq!(
            built(&spec(json!({"network_mode": "backend"})))["Networks"],
            json!({"backend": {}})
        );
    }
}

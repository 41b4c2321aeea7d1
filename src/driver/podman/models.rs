//! Reply and request models of the libpod API, tolerant of podman 4.x / 5.x drift.
//!
//! Unknown fields are ignored, missing ones take defaults, `null` reads as the default,
//! and numbers that some versions send as strings (or floats) are accepted either way.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::{DeserializeOwned, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Lenient field decoders.
mod lenient {
    use super::*;

    /// `null` becomes `T::default()`.
    pub fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de> + Default,
    {
        Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
    }

    fn number(v: &Value) -> Option<f64> {
        match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse().ok(),
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            _ => None,
        }
    }

    /// Integer, float or numeric string; anything else is 0.
    pub fn int<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let v = Value::deserialize(d)?;
        Ok(match &v {
            Value::Number(n) => n
                .as_i64()
                .or_else(|| n.as_u64().map(|u| i64::try_from(u).unwrap_or(i64::MAX)))
                .or_else(|| n.as_f64().map(|f| f as i64))
                .unwrap_or(0),
            Value::String(s) => s
                .trim()
                .parse::<i64>()
                .ok()
                .or_else(|| number(&v).map(|f| f as i64))
                .unwrap_or(0),
            _ => number(&v).map(|f| f as i64).unwrap_or(0),
        })
    }

    /// Like [`int`], negative values become 0.
    pub fn uint<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let v = Value::deserialize(d)?;
        Ok(match &v {
            Value::Number(n) => n
                .as_u64()
                .or_else(|| n.as_f64().map(|f| f.max(0.0) as u64))
                .unwrap_or(0),
            Value::String(s) => s
                .trim()
                .parse::<u64>()
                .ok()
                .or_else(|| number(&v).map(|f| f.max(0.0) as u64))
                .unwrap_or(0),
            _ => number(&v).map(|f| f.max(0.0) as u64).unwrap_or(0),
        })
    }

    pub fn int32<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
        let v = int(d)?;
        Ok(i32::try_from(v).unwrap_or(if v < 0 { i32::MIN } else { i32::MAX }))
    }

    pub fn float<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(number(&Value::deserialize(d)?).unwrap_or(0.0))
    }

    /// A string, or a number printed as a string (podman 4 sends `StopSignal` as a number).
    pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::String(s) => s,
            Value::Null => String::new(),
            other => other.to_string(),
        })
    }

    /// A list of strings, or one string (podman 4 sends `Config.Entrypoint` as a string).
    pub fn strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Array(items) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                })
                .collect(),
            Value::String(s) if s.is_empty() => Vec::new(),
            Value::String(s) => vec![s],
            _ => Vec::new(),
        })
    }
}

/// Decodes a reply, naming the operation on failure.
pub(crate) fn decode<T: DeserializeOwned>(
    operation: &str,
    body: &[u8],
) -> Result<T, super::PodmanError> {
    serde_json::from_slice(body).map_err(|e| super::PodmanError::Decode {
        operation: operation.to_string(),
        message: e.to_string(),
    })
}

/// Parses podman's RFC 3339 timestamps; Go's zero time (`0001-01-01T00:00:00Z`) and
/// anything before 1970 are `None`.
pub fn parse_time(s: &str) -> Option<SystemTime> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    let nanos = t.unix_timestamp_nanos();
    if nanos <= 0 {
        return None;
    }
    let nanos = u64::try_from(nanos).ok()?;
    Some(UNIX_EPOCH + Duration::from_nanos(nanos))
}

/// `/libpod/info`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Info {
    /// `null` on some remote setups.
    pub host: Option<HostInfo>,
    pub version: VersionInfo,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HostInfo {
    #[serde(deserialize_with = "lenient::nullable")]
    pub arch: String,
    #[serde(deserialize_with = "lenient::nullable")]
    pub os: String,
    #[serde(deserialize_with = "lenient::nullable")]
    pub hostname: String,
    #[serde(deserialize_with = "lenient::nullable")]
    pub security: SecurityInfo,
    /// `v1` or `v2`.
    #[serde(deserialize_with = "lenient::nullable")]
    pub cgroup_version: String,
    /// `systemd` or `cgroupfs`.
    #[serde(deserialize_with = "lenient::nullable")]
    pub cgroup_manager: String,
    #[serde(deserialize_with = "lenient::nullable")]
    pub oci_runtime: OciRuntimeInfo,
    #[serde(deserialize_with = "lenient::nullable")]
    pub remote_socket: RemoteSocketInfo,
    /// `netavark` or `cni`.
    #[serde(deserialize_with = "lenient::nullable")]
    pub network_backend: String,
    #[serde(deserialize_with = "lenient::int")]
    pub cpus: i64,
    #[serde(deserialize_with = "lenient::int")]
    pub mem_total: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SecurityInfo {
    #[serde(deserialize_with = "lenient::nullable")]
    pub rootless: bool,
    #[serde(deserialize_with = "lenient::nullable")]
    pub apparmor_enabled: bool,
    #[serde(deserialize_with = "lenient::nullable")]
    pub seccomp_enabled: bool,
    #[serde(deserialize_with = "lenient::nullable")]
    pub selinux_enabled: bool,
    /// Comma-separated default capabilities, e.g. `CAP_CHOWN,CAP_KILL`.
    #[serde(deserialize_with = "lenient::string")]
    pub capabilities: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct OciRuntimeInfo {
    #[serde(deserialize_with = "lenient::nullable")]
    pub name: String,
    #[serde(deserialize_with = "lenient::nullable")]
    pub path: String,
    #[serde(deserialize_with = "lenient::nullable")]
    pub version: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RemoteSocketInfo {
    #[serde(deserialize_with = "lenient::nullable")]
    pub path: String,
    #[serde(deserialize_with = "lenient::nullable")]
    pub exists: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct VersionInfo {
    #[serde(rename = "APIVersion", deserialize_with = "lenient::string")]
    pub api_version: String,
    #[serde(rename = "Version", deserialize_with = "lenient::string")]
    pub version: String,
    #[serde(rename = "GoVersion", deserialize_with = "lenient::string")]
    pub go_version: String,
    #[serde(rename = "OsArch", deserialize_with = "lenient::string")]
    pub os_arch: String,
}

/// `/libpod/version`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Version {
    #[serde(deserialize_with = "lenient::string")]
    pub version: String,
    /// The Docker-compatible API version (e.g. `1.41`).
    #[serde(deserialize_with = "lenient::string")]
    pub api_version: String,
    #[serde(rename = "MinAPIVersion", deserialize_with = "lenient::string")]
    pub min_api_version: String,
    #[serde(deserialize_with = "lenient::string")]
    pub os: String,
    #[serde(deserialize_with = "lenient::string")]
    pub arch: String,
    #[serde(deserialize_with = "lenient::string")]
    pub kernel_version: String,
    #[serde(deserialize_with = "lenient::nullable")]
    pub components: Vec<VersionComponent>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct VersionComponent {
    #[serde(deserialize_with = "lenient::string")]
    pub name: String,
    #[serde(deserialize_with = "lenient::string")]
    pub version: String,
    #[serde(deserialize_with = "lenient::nullable")]
    pub details: HashMap<String, Value>,
}

/// `/libpod/images/{name}/json`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ImageInspect {
    #[serde(deserialize_with = "lenient::string")]
    pub id: String,
    #[serde(deserialize_with = "lenient::string")]
    pub digest: String,
    #[serde(deserialize_with = "lenient::strings")]
    pub repo_tags: Vec<String>,
    #[serde(deserialize_with = "lenient::strings")]
    pub repo_digests: Vec<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub architecture: String,
    #[serde(deserialize_with = "lenient::string")]
    pub os: String,
    #[serde(deserialize_with = "lenient::string")]
    pub variant: String,
    #[serde(deserialize_with = "lenient::string")]
    pub created: String,
    #[serde(deserialize_with = "lenient::int")]
    pub size: i64,
    #[serde(deserialize_with = "lenient::nullable")]
    pub labels: HashMap<String, String>,
    #[serde(deserialize_with = "lenient::nullable")]
    pub config: ImageConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ImageConfig {
    #[serde(deserialize_with = "lenient::string")]
    pub user: String,
    #[serde(deserialize_with = "lenient::strings")]
    pub env: Vec<String>,
    #[serde(deserialize_with = "lenient::strings")]
    pub entrypoint: Vec<String>,
    #[serde(deserialize_with = "lenient::strings")]
    pub cmd: Vec<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub working_dir: String,
    #[serde(deserialize_with = "lenient::string")]
    pub stop_signal: String,
    #[serde(deserialize_with = "lenient::nullable")]
    pub labels: HashMap<String, String>,
}

/// Reply of `/libpod/containers/create`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct CreateResponse {
    #[serde(deserialize_with = "lenient::string")]
    pub id: String,
    #[serde(deserialize_with = "lenient::strings")]
    pub warnings: Vec<String>,
}

/// `/libpod/containers/{id}/json`: the fields the driver reads, plus the whole reply in `raw`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ContainerInspect {
    #[serde(deserialize_with = "lenient::string")]
    pub id: String,
    #[serde(deserialize_with = "lenient::string")]
    pub name: String,
    #[serde(deserialize_with = "lenient::string")]
    pub created: String,
    /// Image id.
    #[serde(deserialize_with = "lenient::string")]
    pub image: String,
    #[serde(deserialize_with = "lenient::string")]
    pub image_name: String,
    #[serde(deserialize_with = "lenient::nullable")]
    pub state: ContainerState,
    #[serde(deserialize_with = "lenient::nullable")]
    pub config: ContainerConfig,
    #[serde(deserialize_with = "lenient::nullable")]
    pub host_config: HostConfig,
    #[serde(deserialize_with = "lenient::nullable")]
    pub network_settings: NetworkSettings,
    #[serde(rename = "ExecIDs", deserialize_with = "lenient::strings")]
    pub exec_ids: Vec<String>,
    #[serde(deserialize_with = "lenient::int")]
    pub restart_count: i64,
    #[serde(deserialize_with = "lenient::strings")]
    pub effective_caps: Vec<String>,
    #[serde(deserialize_with = "lenient::strings")]
    pub bounding_caps: Vec<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub process_label: String,
    #[serde(deserialize_with = "lenient::string")]
    pub app_armor_profile: String,
    /// The complete reply, for fields not modelled here.
    #[serde(skip)]
    pub raw: Value,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ContainerState {
    /// `created`, `running`, `exited`, `stopped`, `paused`, ...
    #[serde(deserialize_with = "lenient::string")]
    pub status: String,
    #[serde(deserialize_with = "lenient::nullable")]
    pub running: bool,
    #[serde(deserialize_with = "lenient::nullable")]
    pub paused: bool,
    #[serde(deserialize_with = "lenient::nullable")]
    pub restarting: bool,
    #[serde(deserialize_with = "lenient::nullable")]
    pub dead: bool,
    /// Never set by podman 4.3 on cgroup v1 (an OOM kill shows as exit code 137).
    #[serde(rename = "OOMKilled", deserialize_with = "lenient::nullable")]
    pub oom_killed: bool,
    #[serde(deserialize_with = "lenient::int")]
    pub pid: i64,
    #[serde(deserialize_with = "lenient::int32")]
    pub exit_code: i32,
    #[serde(deserialize_with = "lenient::string")]
    pub error: String,
    #[serde(deserialize_with = "lenient::string")]
    pub started_at: String,
    #[serde(deserialize_with = "lenient::string")]
    pub finished_at: String,
}

impl ContainerState {
    pub fn started_at(&self) -> Option<SystemTime> {
        parse_time(&self.started_at)
    }

    pub fn finished_at(&self) -> Option<SystemTime> {
        parse_time(&self.finished_at)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(deserialize_with = "lenient::string")]
    pub hostname: String,
    #[serde(deserialize_with = "lenient::string")]
    pub user: String,
    #[serde(deserialize_with = "lenient::strings")]
    pub env: Vec<String>,
    #[serde(deserialize_with = "lenient::strings")]
    pub cmd: Vec<String>,
    #[serde(deserialize_with = "lenient::strings")]
    pub entrypoint: Vec<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub image: String,
    #[serde(deserialize_with = "lenient::nullable")]
    pub labels: HashMap<String, String>,
    #[serde(deserialize_with = "lenient::nullable")]
    pub annotations: HashMap<String, String>,
    #[serde(deserialize_with = "lenient::nullable")]
    pub tty: bool,
    #[serde(deserialize_with = "lenient::nullable")]
    pub open_stdin: bool,
    #[serde(deserialize_with = "lenient::string")]
    pub working_dir: String,
    /// A name (`SIGTERM`) or, from podman 4, a number (`15`).
    #[serde(deserialize_with = "lenient::string")]
    pub stop_signal: String,
    #[serde(deserialize_with = "lenient::uint")]
    pub stop_timeout: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct HostConfig {
    #[serde(deserialize_with = "lenient::string")]
    pub network_mode: String,
    #[serde(deserialize_with = "lenient::string")]
    pub ipc_mode: String,
    #[serde(deserialize_with = "lenient::string")]
    pub pid_mode: String,
    #[serde(rename = "UTSMode", deserialize_with = "lenient::string")]
    pub uts_mode: String,
    #[serde(deserialize_with = "lenient::string")]
    pub userns_mode: String,
    #[serde(deserialize_with = "lenient::nullable")]
    pub privileged: bool,
    #[serde(deserialize_with = "lenient::nullable")]
    pub readonly_rootfs: bool,
    #[serde(deserialize_with = "lenient::nullable")]
    pub init: bool,
    #[serde(deserialize_with = "lenient::int")]
    pub memory: i64,
    #[serde(deserialize_with = "lenient::int")]
    pub memory_reservation: i64,
    #[serde(deserialize_with = "lenient::int")]
    pub memory_swap: i64,
    #[serde(deserialize_with = "lenient::int")]
    pub memory_swappiness: i64,
    #[serde(deserialize_with = "lenient::int")]
    pub cpu_shares: i64,
    #[serde(deserialize_with = "lenient::int")]
    pub cpu_period: i64,
    #[serde(deserialize_with = "lenient::int")]
    pub cpu_quota: i64,
    #[serde(deserialize_with = "lenient::string")]
    pub cpuset_cpus: String,
    #[serde(deserialize_with = "lenient::int")]
    pub pids_limit: i64,
    #[serde(deserialize_with = "lenient::int")]
    pub shm_size: i64,
    #[serde(deserialize_with = "lenient::strings")]
    pub binds: Vec<String>,
    #[serde(deserialize_with = "lenient::nullable")]
    pub tmpfs: HashMap<String, String>,
    #[serde(deserialize_with = "lenient::strings")]
    pub security_opt: Vec<String>,
    #[serde(deserialize_with = "lenient::strings")]
    pub cap_add: Vec<String>,
    #[serde(deserialize_with = "lenient::strings")]
    pub cap_drop: Vec<String>,
    #[serde(deserialize_with = "lenient::nullable")]
    pub ulimits: Vec<Ulimit>,
    #[serde(deserialize_with = "lenient::nullable")]
    pub port_bindings: HashMap<String, Option<Vec<PortBinding>>>,
    #[serde(deserialize_with = "lenient::nullable")]
    pub sysctls: HashMap<String, String>,
    #[serde(deserialize_with = "lenient::strings")]
    pub dns: Vec<String>,
    #[serde(deserialize_with = "lenient::strings")]
    pub dns_search: Vec<String>,
    #[serde(deserialize_with = "lenient::strings")]
    pub dns_options: Vec<String>,
    #[serde(deserialize_with = "lenient::strings")]
    pub extra_hosts: Vec<String>,
    #[serde(deserialize_with = "lenient::nullable")]
    pub log_config: LogConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Ulimit {
    #[serde(deserialize_with = "lenient::string")]
    pub name: String,
    #[serde(deserialize_with = "lenient::int")]
    pub soft: i64,
    #[serde(deserialize_with = "lenient::int")]
    pub hard: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct PortBinding {
    #[serde(deserialize_with = "lenient::string")]
    pub host_ip: String,
    #[serde(deserialize_with = "lenient::string")]
    pub host_port: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct LogConfig {
    #[serde(deserialize_with = "lenient::string")]
    pub r#type: String,
    #[serde(deserialize_with = "lenient::nullable")]
    pub config: HashMap<String, String>,
    #[serde(deserialize_with = "lenient::string")]
    pub path: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct NetworkSettings {
    #[serde(rename = "IPAddress", deserialize_with = "lenient::string")]
    pub ip_address: String,
    #[serde(rename = "GlobalIPv6Address", deserialize_with = "lenient::string")]
    pub global_ipv6_address: String,
    #[serde(deserialize_with = "lenient::string")]
    pub gateway: String,
    #[serde(deserialize_with = "lenient::nullable")]
    pub ports: HashMap<String, Option<Vec<PortBinding>>>,
    #[serde(deserialize_with = "lenient::nullable")]
    pub networks: HashMap<String, NetworkEndpoint>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct NetworkEndpoint {
    #[serde(rename = "IPAddress", deserialize_with = "lenient::string")]
    pub ip_address: String,
    #[serde(rename = "GlobalIPv6Address", deserialize_with = "lenient::string")]
    pub global_ipv6_address: String,
    #[serde(deserialize_with = "lenient::string")]
    pub gateway: String,
    #[serde(deserialize_with = "lenient::string")]
    pub mac_address: String,
    #[serde(rename = "NetworkID", deserialize_with = "lenient::string")]
    pub network_id: String,
    #[serde(deserialize_with = "lenient::strings")]
    pub aliases: Vec<String>,
}

/// One entry of `/libpod/containers/json`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ListContainer {
    #[serde(deserialize_with = "lenient::string")]
    pub id: String,
    #[serde(deserialize_with = "lenient::strings")]
    pub names: Vec<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub image: String,
    #[serde(rename = "ImageID", deserialize_with = "lenient::string")]
    pub image_id: String,
    /// `created`, `running`, `exited`, ...
    #[serde(deserialize_with = "lenient::string")]
    pub state: String,
    #[serde(deserialize_with = "lenient::nullable")]
    pub labels: HashMap<String, String>,
    /// RFC 3339 on podman 4 (see [`ListContainer::created_at`]).
    #[serde(deserialize_with = "lenient::string")]
    pub created: String,
    /// Unix seconds.
    #[serde(deserialize_with = "lenient::int")]
    pub started_at: i64,
    #[serde(deserialize_with = "lenient::nullable")]
    pub exited: bool,
    /// Unix seconds.
    #[serde(deserialize_with = "lenient::int")]
    pub exited_at: i64,
    #[serde(deserialize_with = "lenient::int32")]
    pub exit_code: i32,
    #[serde(deserialize_with = "lenient::int")]
    pub pid: i64,
}

impl ListContainer {
    /// When the container was created; podman has sent both RFC 3339 text and unix seconds.
    pub fn created_at(&self) -> Option<SystemTime> {
        parse_time(&self.created).or_else(|| {
            let secs = self.created.trim().parse::<u64>().ok()?;
            Some(UNIX_EPOCH + Duration::from_secs(secs))
        })
    }
}

/// One container's sample from `/libpod/containers/stats`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ContainerStats {
    #[serde(rename = "ContainerID", deserialize_with = "lenient::string")]
    pub container_id: String,
    #[serde(rename = "Name", deserialize_with = "lenient::string")]
    pub name: String,
    /// CPU percent since the previous sample (or since start for one-shot requests).
    #[serde(rename = "CPU", deserialize_with = "lenient::float")]
    pub cpu: f64,
    #[serde(rename = "AvgCPU", deserialize_with = "lenient::float")]
    pub avg_cpu: f64,
    /// Total CPU time used, nanoseconds.
    #[serde(rename = "CPUNano", deserialize_with = "lenient::uint")]
    pub cpu_nano: u64,
    /// CPU time in kernel mode, nanoseconds.
    #[serde(rename = "CPUSystemNano", deserialize_with = "lenient::uint")]
    pub cpu_system_nano: u64,
    /// Host time stamp of the sample, nanoseconds.
    #[serde(rename = "SystemNano", deserialize_with = "lenient::uint")]
    pub system_nano: u64,
    #[serde(rename = "PerCPU", deserialize_with = "lenient::nullable")]
    pub per_cpu: Vec<u64>,
    #[serde(rename = "MemUsage", deserialize_with = "lenient::uint")]
    pub mem_usage: u64,
    #[serde(rename = "MemLimit", deserialize_with = "lenient::uint")]
    pub mem_limit: u64,
    #[serde(rename = "MemPerc", deserialize_with = "lenient::float")]
    pub mem_perc: f64,
    #[serde(rename = "NetInput", deserialize_with = "lenient::uint")]
    pub net_input: u64,
    #[serde(rename = "NetOutput", deserialize_with = "lenient::uint")]
    pub net_output: u64,
    #[serde(rename = "BlockInput", deserialize_with = "lenient::uint")]
    pub block_input: u64,
    #[serde(rename = "BlockOutput", deserialize_with = "lenient::uint")]
    pub block_output: u64,
    #[serde(rename = "PIDs", deserialize_with = "lenient::uint")]
    pub pids: u64,
    /// Nanoseconds.
    #[serde(rename = "UpTime", deserialize_with = "lenient::uint")]
    pub up_time: u64,
}

/// One report of the stats endpoint: podman 4.x marshals Go errors as `{}`, so a non-null
/// `Error` says *that* a container failed, rarely *why*.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct StatsReport {
    #[serde(rename = "Error")]
    pub error: Option<Value>,
    #[serde(rename = "Stats", deserialize_with = "lenient::nullable")]
    pub stats: Vec<ContainerStats>,
}

/// One entry of a container removal reply.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RemoveReport {
    #[serde(rename = "Id", deserialize_with = "lenient::string")]
    pub id: String,
    #[serde(rename = "Err")]
    pub err: Option<Value>,
}

/// One event of `/libpod/events`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Event {
    /// `container`, `image`, `pod`, `volume`, `network`, `system`.
    #[serde(rename = "Type", deserialize_with = "lenient::string")]
    pub r#type: String,
    /// `create`, `init`, `start`, `died`, `exec_died`, `oom`, `remove`, ...
    #[serde(rename = "Action", deserialize_with = "lenient::string")]
    pub action: String,
    #[serde(rename = "Actor", deserialize_with = "lenient::nullable")]
    pub actor: EventActor,
    /// Unix seconds.
    #[serde(deserialize_with = "lenient::int")]
    pub time: i64,
    #[serde(rename = "timeNano", deserialize_with = "lenient::int")]
    pub time_nano: i64,
}

impl Event {
    /// Container (or image...) id the event is about.
    pub fn id(&self) -> &str {
        &self.actor.id
    }

    /// Exit code carried by container `died` events.
    pub fn exit_code(&self) -> Option<i32> {
        self.actor
            .attributes
            .get("containerExitCode")
            .and_then(|c| c.parse().ok())
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct EventActor {
    #[serde(rename = "ID", deserialize_with = "lenient::string")]
    pub id: String,
    /// Container labels, `name`, `image`, `containerExitCode`, ...
    #[serde(rename = "Attributes", deserialize_with = "lenient::nullable")]
    pub attributes: HashMap<String, String>,
}

/// Body of `/libpod/containers/{id}/exec`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExecConfig {
    pub cmd: Vec<String>,
    pub tty: bool,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    pub privileged: bool,
}

/// `/libpod/exec/{id}/json`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ExecInspect {
    #[serde(rename = "ID", deserialize_with = "lenient::string")]
    pub id: String,
    #[serde(rename = "ContainerID", deserialize_with = "lenient::string")]
    pub container_id: String,
    #[serde(rename = "Running", deserialize_with = "lenient::nullable")]
    pub running: bool,
    #[serde(rename = "ExitCode", deserialize_with = "lenient::int32")]
    pub exit_code: i32,
    #[serde(rename = "Pid", deserialize_with = "lenient::int")]
    pub pid: i64,
}

/// One line of an image pull reply.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct PullReport {
    #[serde(deserialize_with = "lenient::string")]
    pub stream: String,
    #[serde(deserialize_with = "lenient::string")]
    pub error: String,
    #[serde(deserialize_with = "lenient::string")]
    pub id: String,
}

/// Reply of `/libpod/images/load`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct LoadReport {
    #[serde(rename = "Names", deserialize_with = "lenient::strings")]
    pub names: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspect_tolerates_podman4_and_podman5_shapes() {
        // podman 4: Entrypoint is a string, StopSignal a number, Labels null.
        let v4 = serde_json::json!({
            "Id": "abc", "Name": "web",
            "State": {"Status": "running", "Running": true, "Pid": 42, "ExitCode": 0,
                      "StartedAt": "2024-05-01T10:00:00.5Z", "FinishedAt": "0001-01-01T00:00:00Z",
                      "OOMKilled": false, "Unknown": 1},
            "Config": {"Entrypoint": "/bin/sh", "StopSignal": 15, "Labels": null, "Env": ["A=1"], "Tty": true},
            "HostConfig": {"Memory": "1048576", "PortBindings": null, "Ulimits": null},
            "NetworkSettings": {"IPAddress": "10.0.0.2", "Networks": {"podman": {"IPAddress": "10.0.0.2", "Aliases": null}}}
        });
        let c: ContainerInspect = serde_json::from_value(v4).expect("podman 4 shape");
        assert_eq!(c.config.entrypoint, vec!["/bin/sh"]);
        assert_eq!(c.config.stop_signal, "15");
        assert!(c.config.labels.is_empty());
        assert_eq!(c.host_config.memory, 1_048_576);
        assert_eq!(c.state.pid, 42);
        assert!(c.state.finished_at().is_none());
        let started = c.state.started_at().expect("started");
        assert_eq!(
            started
                .duration_since(UNIX_EPOCH)
                .expect("after epoch")
                .as_millis(),
            1_714_557_600_500
        );
        assert_eq!(c.network_settings.networks["podman"].ip_address, "10.0.0.2");

        // podman 5: Entrypoint a list, StopSignal a name, missing sections.
        let v5 = serde_json::json!({
            "Id": "abc", "State": null,
            "Config": {"Entrypoint": ["/bin/sh", "-c"], "StopSignal": "SIGTERM"}
        });
        let c: ContainerInspect = serde_json::from_value(v5).expect("podman 5 shape");
        assert_eq!(c.config.entrypoint, vec!["/bin/sh", "-c"]);
        assert_eq!(c.config.stop_signal, "SIGTERM");
        assert_eq!(c.state.status, "");
    }

    #[test]
    fn stats_accept_numbers_as_strings_floats_and_nulls() {
        let s: ContainerStats = serde_json::from_value(serde_json::json!({
            "ContainerID": "x", "CPU": "12.5", "CPUNano": 1.0e9, "MemUsage": "4096",
            "PerCPU": null, "PIDs": -1, "NewField": {"a": 1}
        }))
        .expect("stats");
        assert_eq!(s.cpu, 12.5);
        assert_eq!(s.cpu_nano, 1_000_000_000);
        assert_eq!(s.mem_usage, 4096);
        assert_eq!(s.pids, 0);
        assert!(s.per_cpu.is_empty());
    }

    #[test]
    fn events_carry_exit_codes() {
        let e: Event = serde_json::from_str(
            r#"{"status":"died","id":"c1","Type":"container","Action":"died",
                "Actor":{"ID":"c1","Attributes":{"containerExitCode":"137","name":"web"}},
                "time":1700000000,"timeNano":1700000000123456789}"#,
        )
        .expect("event");
        assert_eq!(e.id(), "c1");
        assert_eq!(e.exit_code(), Some(137));
        assert_eq!(e.time_nano, 1_700_000_000_123_456_789);
    }

    #[test]
    fn info_host_may_be_null() {
        let i: Info = serde_json::from_str(r#"{"host":null,"version":{"APIVersion":"5.0.1"}}"#)
            .expect("info");
        assert!(i.host.is_none());
        assert_eq!(i.version.api_version, "5.0.1");
    }

    #[test]
    fn exec_config_serializes_libpod_names() {
        let v = serde_json::to_value(ExecConfig {
            cmd: vec!["true".into()],
            attach_stdout: true,
            user: Some("nobody".into()),
            ..ExecConfig::default()
        })
        .expect("json");
        assert_eq!(v["Cmd"], serde_json::json!(["true"]));
        assert_eq!(v["AttachStdout"], true);
        assert_eq!(v["User"], "nobody");
        assert!(v.get("Env").is_none());
        assert!(v.get("WorkingDir").is_none());
    }
}

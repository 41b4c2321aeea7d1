//! Task model: the task options of a job's `config {}` block ([`TaskConfig`]) and what the
//! orchestrator provides ([`TaskContext`]).
//!
//! Differences from the Go driver, on purpose (each is checked before any podman call):
//! * Memory strings also accept a bare byte count and `-1` (`memory_swap` only), as the
//!   upstream README documents; negative sizes are otherwise rejected.
//! * `memory_swappiness` must be 0..=100 and is optional (unset is not sent as 0).
//! * `oom_score_adj` must be -1000..=1000; `cpu_cfs_period` must not be negative.
//! * Invalid `ipv4_address`, `ipv6_address`, `static_ips` and `static_mac` are errors
//!   (Go silently ignores them).
//! * `ports` together with `port_map` is always an error; `logging.driver` is checked at
//!   decode time.
//! * `auth.tls_verify` is true when there is no `auth` block (Go then sends false and skips
//!   TLS verification on every pull).
//! * `ulimit` names must be known rlimits and soft must not exceed hard; `tmpfs` targets
//!   must be absolute; `network_mode` `container:`/`task:`/`ns:` need a non-empty value.
//! * Unknown keys and values of the wrong type name the option.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::decode::serde_as_text;
pub use super::decode::ConfigError;
use super::decode::{wrong, Block};
use super::logs::{Rotation, SinkKind};
use super::secopt::{parse_security_opts, SecurityOptions, Userns};
use super::units::{parse_duration, parse_memory};

const ROOT: &str = "config";

/// How Nomad's hcldec sees a task option (the plugin's schema is made from this).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionShape {
    /// An attribute of this cty type (`string`, `list(string)`, `list(map(string))`, ...).
    Attr(&'static str),
    /// A block given at most once (`auth { }`).
    Block,
    /// A repeatable block (`mount { }`).
    BlockList,
}

/// One task option: the single list the decoder's known keys, the plugin's hclspec schema
/// and the options table of docs/plugin.md are made from (or checked against, by tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskOption {
    pub name: &'static str,
    pub shape: OptionShape,
    pub required: bool,
    /// The HCL literal the schema fills in when the job leaves the option out; it decodes
    /// to the same value as [`TaskConfig::default`] has.
    pub hcl_default: Option<&'static str>,
    /// The default as the docs state it.
    pub default: &'static str,
    /// One line for the docs table.
    pub doc: &'static str,
}

/// The columns of a [`TaskOption`] an entry of `task_options!` leaves out unless it says
/// otherwise: not required, no default filled in by the schema.
const ROW: TaskOption = TaskOption {
    name: "",
    shape: OptionShape::Block,
    required: false,
    hcl_default: None,
    default: "",
    doc: "",
};

/// Declares each task option once, so that adding one is one entry: the struct, its
/// `Default`, the decoder and the table (and with it the known keys, the plugin's schema and
/// the docs table test) can no longer drift apart (issue 14). An entry is
/// * the [`TaskConfig`] field: docs, serde attributes, name, type, `= default`;
/// * `decode`: an expression of the `config` block (named after `|..|`) giving
///   `Result<type, ConfigError>`;
/// * `row`: its [`TASK_OPTIONS`] row: option name, shape, default and line for the docs,
///   then `required: true` / `hcl_default: Some(..)` where needed.
///
/// The struct's fields, the decoding and the table follow the order of the entries.
macro_rules! task_options {
    (
        |$root:ident|
        $(
            $(#[$attr:meta])*
            $field:ident: $ty:ty = $default:expr,
                decode $decode:expr,
                row $name:literal, $shape:expr, $docs_default:literal,
                $doc:literal $(, $column:ident: $value:expr)*;
        )*
    ) => {
        /// Every task option, decoded and checked.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        pub struct TaskConfig {
            $($(#[$attr])* pub $field: $ty,)*
        }

        impl Default for TaskConfig {
            fn default() -> Self {
                TaskConfig {
                    $($field: $default,)*
                }
            }
        }

        impl TaskConfig {
            /// Each option decoded on its own (the checks across options are `validate`).
            fn decode_options($root: &Block<'_>) -> Result<TaskConfig, ConfigError> {
                Ok(TaskConfig {
                    $($field: $decode?,)*
                })
            }
        }

        /// Every task option, as the docs table lists them.
        pub const TASK_OPTIONS: [TaskOption; [$(stringify!($field)),*].len()] = {
            use OptionShape::{Attr, Block, BlockList};
            [$(TaskOption {
                name: $name,
                shape: $shape,
                default: $docs_default,
                doc: $doc,
                $($column: $value,)*
                ..ROW
            }),*]
        };
    };
}

// The Go plugin's 49 options, then the docker driver's that this driver adds; the order is
// the docs table's.
task_options! {
    |root|

    apparmor_profile: String = String::new(), decode text(root, "apparmor_profile"),
        row "apparmor_profile", Attr("string"), "`\"\"`",
        "AppArmor profile; `unconfined` is refused with `allow_privileged = false`.";

    args: Vec<String> = Vec::new(), decode root.strings("args"),
        row "args", Attr("list(string)"), "`[]`",
        "Arguments, after `command` (alone they replace the image CMD).";

    /// `None` when there is no `auth` block.
    auth: Option<TaskAuth> = None, decode read_auth(root),
        row "auth", Block, "none (`tls_verify = true`)",
        "`auth { username, password, tls_verify }`: registry credentials for the pull.";

    auth_soft_fail: bool = false, decode flag(root, "auth_soft_fail"),
        row "auth_soft_fail", Attr("bool"), "`false`",
        "A failing credential lookup (the plugin's auth file or helper) is skipped instead of failing the pull.";

    command: String = String::new(), decode text(root, "command"),
        row "command", Attr("string"), "`\"\"` (image CMD)",
        "The command to run.";

    cap_add: Vec<String> = Vec::new(), decode root.strings("cap_add"),
        row "cap_add", Attr("list(string)"), "`[]`",
        "Capabilities to add; those not in the plugin option `allow_caps` are refused.";

    cap_drop: Vec<String> = Vec::new(), decode root.strings("cap_drop"),
        row "cap_drop", Attr("list(string)"), "`[]`",
        "Capabilities to drop.";

    selinux_opts: Vec<String> = Vec::new(), decode root.strings("selinux_opts"),
        row "selinux_opts", Attr("list(string)"), "`[]`",
        "SELinux label options; `disable`, `type:`, `level:`, `user:`, `role:` are refused with `allow_privileged = false`.";

    cpu_hard_limit: bool = false, decode flag(root, "cpu_hard_limit"),
        row "cpu_hard_limit", Attr("bool"), "`false`",
        "A CPU quota from the task's `cpu` resources, not only shares.";

    /// Microseconds; 0 = 100000.
    cpu_cfs_period: i64 = 0, decode int(root, "cpu_cfs_period"),
        row "cpu_cfs_period", Attr("number"), "`0`",
        "CFS period in microseconds for `cpu_hard_limit`, 0..1000000 (0 = 100000).";

    /// `host[:container][:perms]` or CDI names, passed to podman verbatim.
    devices: Vec<String> = Vec::new(), decode root.strings("devices"),
        row "devices", Attr("list(string)"), "`[]`",
        "`host[:container][:rwm]` or a CDI name (`vendor.com/class=name`); host paths not in `allow_devices` are refused.";

    /// `None` keeps the image's ENTRYPOINT. The deprecated string form is one element.
    entrypoint: Option<Vec<String>> = None, decode read_entrypoint(root),
        row "entrypoint", Attr("any"), "image ENTRYPOINT",
        "Replaces the image ENTRYPOINT: a list, or a string (one element).";

    working_dir: String = String::new(), decode text(root, "working_dir"),
        row "working_dir", Attr("string"), "`\"\"`",
        "Working directory in the container.";

    hostname: String = String::new(), decode text(root, "hostname"),
        row "hostname", Attr("string"), "`\"\"`",
        "Container hostname (not together with `uts_mode = \"host\"`).";

    image: String = String::new(), decode text(root, "image"),
        row "image", Attr("string"), "–",
        "The image to run.", required: true;

    arch: String = String::new(), decode text(root, "arch"),
        row "arch", Attr("string"), "`\"\"`",
        "Architecture of the image to pull.";

    os: String = String::new(), decode text(root, "os"),
        row "os", Attr("string"), "`\"\"`",
        "OS of the image to pull.";

    variant: String = String::new(), decode text(root, "variant"),
        row "variant", Attr("string"), "`\"\"`",
        "Architecture variant of the image to pull.";

    image_pull_timeout: Duration = Duration::from_secs(300), decode read_pull_timeout(root),
        row "image_pull_timeout", Attr("string"), "`5m`",
        "How long a pull may take, a duration string.", hcl_default: Some("\"5m\"");

    init: bool = false, decode flag(root, "init"),
        row "init", Attr("bool"), "`false`",
        "An init process as PID 1.";

    init_path: String = String::new(), decode text(root, "init_path"),
        row "init_path", Attr("string"), "`\"\"`",
        "Host path of the init binary (refused with `volumes.enabled = false`).";

    ipv4_address: Option<Ipv4Addr> = None, decode read_ip(root, "ipv4_address"),
        row "ipv4_address", Attr("string"), "none",
        "Static IPv4 address (bridge networking only).";

    ipv6_address: Option<Ipv6Addr> = None, decode read_ip(root, "ipv6_address"),
        row "ipv6_address", Attr("string"), "none",
        "Static IPv6 address (bridge networking only).";

    static_ips: Vec<IpAddr> = Vec::new(), decode read_static_ips(root),
        row "static_ips", Attr("list(string)"), "`[]`",
        "More static addresses (bridge networking only).";

    /// Lower-case `aa:bb:cc:dd:ee:ff`.
    static_mac: Option<String> = None, decode read_mac(root),
        row "static_mac", Attr("string"), "none",
        "Static MAC address (bridge networking only).";

    labels: BTreeMap<String, String> = BTreeMap::new(), decode root.string_map("labels"),
        row "labels", Attr("list(map(string))"), "`{}`",
        "Container labels (block syntax works); keys under `io.nomad-driver-podman.` are refused.";

    logging: TaskLogging = TaskLogging::default(), decode read_logging(root),
        row "logging", Block, "plugin `logging`",
        "`logging { driver, options }`: `nomad` or `journald`, with its options.";

    /// Bytes.
    memory_reservation: Option<i64> = None, decode read_memory(root, "memory_reservation"),
        row "memory_reservation", Attr("string"), "none",
        "Soft memory limit, a memory string (`100m`, `1g`).";

    /// Bytes; -1 = unlimited swap.
    memory_swap: Option<i64> = None, decode read_memory(root, "memory_swap"),
        row "memory_swap", Attr("string"), "none",
        "Memory plus swap limit, a memory string; `-1` = unlimited.";

    memory_swappiness: Option<i64> = None, decode root.int("memory_swappiness"),
        row "memory_swappiness", Attr("number"), "not sent",
        "0..100, sent on cgroup v1 only.";

    network_mode: NetworkMode = NetworkMode::Default,
        decode parsed(root, "network_mode", NetworkMode::parse_text),
        row "network_mode", Attr("string"), "`\"\"`",
        "`bridge`, `host`, `none`, `pasta`, `slirp4netns`, `container:<id>`, `ns:<path>`, `task:<name>` or a podman network's name.";

    ipc_mode: IpcMode = IpcMode::Default, decode parsed(root, "ipc_mode", IpcMode::parse_text),
        row "ipc_mode", Attr("string"), "`\"\"`",
        "`host`, `private`, `shareable`, `none`, `container:<id>`, `ns:<path>` or `task:<name>`.";

    oom_score_adj: i64 = 0, decode int(root, "oom_score_adj"),
        row "oom_score_adj", Attr("number"), "`0`",
        "-1000..1000.";

    extra_hosts: Vec<ExtraHost> = Vec::new(),
        decode parsed_list(root, "extra_hosts", ExtraHost::parse_text),
        row "extra_hosts", Attr("list(string)"), "`[]`",
        "`host:ip` lines for `/etc/hosts` (`ip` may be `host-gateway`).";

    /// Sent only when > 0.
    pids_limit: i64 = 0, decode int(root, "pids_limit"),
        row "pids_limit", Attr("number"), "`0`",
        "0 = podman's default, `-1` = unlimited, other negatives refused.";

    /// Deprecated `label -> container port`.
    port_map: BTreeMap<String, u16> = BTreeMap::new(), decode read_port_map(root),
        row "port_map", Attr("list(map(number))"), "`{}`",
        "Deprecated: port label -> container port, with task-level network resources.";

    ports: Vec<String> = Vec::new(), decode root.strings("ports"),
        row "ports", Attr("list(string)"), "`[]`",
        "Labels of the group network's ports to publish.";

    privileged: bool = false, decode flag(root, "privileged"),
        row "privileged", Attr("bool"), "`false`",
        "A privileged container; refused with `allow_privileged = false`.";

    security_opt: SecurityOptions = SecurityOptions::default(), decode read_security_opts(root),
        row "security_opt", Attr("list(string)"), "`[]`",
        "`no-new-privileges[=bool]`, `label=`, `apparmor=`, `seccomp=`, `mask=`, `unmask=`, `proc-opts=`, `systempaths=unconfined`.";

    /// Name of the plugin socket to use.
    socket: String = "default".to_string(), decode read_socket(root),
        row "socket", Attr("string"), "`default`",
        "Name of the plugin's podman socket to run on.", hcl_default: Some("\"default\"");

    sysctl: BTreeMap<String, String> = BTreeMap::new(), decode root.string_map("sysctl"),
        row "sysctl", Attr("list(map(string))"), "`{}`",
        "Namespaced kernel parameters (block syntax works).";

    /// Written `path[:opt,opt]`.
    tmpfs: Vec<Tmpfs> = Vec::new(), decode parsed_list(root, "tmpfs", Tmpfs::parse_text),
        row "tmpfs", Attr("list(string)"), "`[]`",
        "`path[:options]` tmpfs mounts.";

    tty: bool = false, decode flag(root, "tty"),
        row "tty", Attr("bool"), "`false`",
        "A terminal for the task.";

    /// By rlimit name; persisted as the option's map of name -> `soft[:hard]`.
    #[serde(with = "ulimit_map")]
    ulimit: Vec<Ulimit> = Vec::new(), decode read_ulimits(root),
        row "ulimit", Attr("list(map(string))"), "`{}`",
        "rlimit name -> `soft[:hard]` (block syntax works).";

    /// Bind mounts, written `src:dst[:opt,opt]`.
    volumes: Vec<Volume> = Vec::new(), decode parsed_list(root, "volumes", Volume::parse_text),
        row "volumes", Attr("list(string)"), "`[]`",
        "`src:dst[:options]` bind mounts; a relative source is in the task dir.";

    force_pull: bool = false, decode flag(root, "force_pull"),
        row "force_pull", Attr("bool"), "`false`",
        "Pull even when the image is present.";

    readonly_rootfs: bool = false, decode flag(root, "readonly_rootfs"),
        row "readonly_rootfs", Attr("bool"), "`false`",
        "A read-only root filesystem.";

    userns: Userns = Userns::Default, decode parsed(root, "userns", Userns::parse_text),
        row "userns", Attr("string"), "`\"\"`",
        "`host`, `keep-id[:uid=,gid=]`, `nomap`, `auto[:size=,uidmapping=,gidmapping=]` or `ns:<path>`.";

    /// Bytes.
    shm_size: Option<i64> = None, decode read_memory(root, "shm_size"),
        row "shm_size", Attr("string"), "none",
        "Size of `/dev/shm`, a memory string (private or shareable IPC only).";

    /// Docker-driver `mount` blocks.
    mounts: Vec<MountBlock> = Vec::new(), decode read_mounts(root),
        row "mount", BlockList, "none",
        "Docker-driver `mount` blocks (below).";

    /// `healthchecks { disable = true }`: no healthcheck, even the image's.
    healthchecks_disabled: bool = false, decode read_healthchecks(root),
        row "healthchecks", Block, "none",
        "`healthchecks { disable = true }`: no healthcheck, even the image's (below).";

    pid_mode: PidMode = PidMode::Default, decode parsed(root, "pid_mode", PidMode::parse_text),
        row "pid_mode", Attr("string"), "`\"\"`",
        "`host`, `container:<id>` or `task:<name>` (docker driver).";

    uts_mode: UtsMode = UtsMode::Private, decode parsed(root, "uts_mode", UtsMode::parse_text),
        row "uts_mode", Attr("string"), "`\"\"`",
        "`host`, or nothing for the container's own (docker driver).";
}

/// A docker-driver `mount` block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountBlock {
    pub kind: MountKind,
    /// Absolute path in the container.
    pub target: String,
    /// Host path (bind; relative = inside the task dir) or volume name; empty for tmpfs.
    pub source: String,
    pub readonly: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountKind {
    Bind {
        /// `private`, `rprivate`, `shared`, `rshared`, `slave`, `rslave`.
        propagation: Option<String>,
    },
    /// A podman named volume, created on first use and labelled as ours.
    Volume {
        no_copy: bool,
        labels: BTreeMap<String, String>,
        driver: Option<VolumeDriver>,
    },
    Tmpfs {
        /// Bytes.
        size: Option<i64>,
        mode: Option<u32>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeDriver {
    pub name: String,
    pub options: BTreeMap<String, String>,
}

/// A parsed `pid_mode`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PidMode {
    #[default]
    Default,
    Host,
    Container(String),
    /// Another task of the allocation, by task name.
    Task(String),
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskAuth {
    pub username: String,
    pub password: String,
    pub tls_verify: bool,
}

/// Never shows the password, so `{:?}` of a task config cannot leak it.
impl std::fmt::Debug for TaskAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("tls_verify", &self.tls_verify)
            .finish()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskLogging {
    /// `""`/`nomad` or `journald`; empty together with empty options = plugin default.
    pub driver: String,
    pub options: BTreeMap<String, String>,
}

impl TaskLogging {
    pub fn is_empty(&self) -> bool {
        self.driver.is_empty() && self.options.is_empty()
    }
}

/// The names of [`TASK_OPTIONS`], the keys a task config may have.
const KEYS: [&str; TASK_OPTIONS.len()] = {
    let mut keys = [""; TASK_OPTIONS.len()];
    let mut i = 0;
    while i < keys.len() {
        keys[i] = TASK_OPTIONS[i].name;
        i += 1;
    }
    keys
};

/// rlimit names runc knows (without the `RLIMIT_` prefix).
const RLIMITS: [&str; 16] = [
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// Prefix of the labels the driver and its tools set themselves: `.managed` (what the
/// dangling-container sweep may remove), `.runner.*` (the runner's ownership and stop
/// order), `.conformance*` (the harness's). A job setting one could exempt its container
/// from the sweep or pass it off as another tool's, so task labels under it are refused.
pub const RESERVED_LABEL_PREFIX: &str = "io.nomad-driver-podman.";

/// Refuses task labels under [`RESERVED_LABEL_PREFIX`] (at decode: the runner and the
/// conformance harness add theirs to the decoded config).
fn refuse_reserved_labels(labels: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    match labels
        .keys()
        .find(|key| key.starts_with(RESERVED_LABEL_PREFIX))
    {
        Some(key) => Err(ConfigError::Conflict {
            field: field("labels"),
            reason: format!(
                "label {key:?} is refused: the prefix {RESERVED_LABEL_PREFIX:?} is reserved for the labels the driver sets itself"
            ),
        }),
        None => Ok(()),
    }
}

/// The top-level option a field path names: `config.auth.username` -> `auth`.
fn option_of(field: &str) -> Option<&str> {
    let rest = field.strip_prefix(ROOT)?.strip_prefix('.')?;
    let end = rest.find(['.', '[']).unwrap_or(rest.len());
    Some(&rest[..end])
}

impl TaskConfig {
    /// Like [`TaskConfig::from_value`], but on failure every problem at once (a job file
    /// with three typos is fixed in one round): all unknown options, each with the nearest
    /// known name, and then each option that fails, found by decoding again without the
    /// options already at fault. Every error is one `from_value` would report itself.
    pub fn from_value_all(value: &Value) -> Result<TaskConfig, Vec<ConfigError>> {
        let root = Block::new(ROOT, value).map_err(|e| vec![e])?;
        let mut errors = root.unknown(&KEYS);
        let mut rest: serde_json::Map<String, Value> = root
            .entries()
            .filter(|(k, _)| KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        loop {
            match TaskConfig::from_value(&Value::Object(rest.clone())) {
                Ok(config) if errors.is_empty() => return Ok(config),
                Ok(_) => return Err(errors),
                Err(e) => {
                    let key = option_of(e.field()).map(str::to_string);
                    errors.push(e);
                    match key {
                        Some(key) if rest.remove(&key).is_some() => {}
                        // The one required option, missing (or misspelt): go on as if set.
                        Some(key) if key == "image" => {
                            rest.insert(key, Value::String("placeholder".into()));
                        }
                        // Not one option's fault: stop here.
                        _ => return Err(errors),
                    }
                }
            }
        }
    }

    /// Decodes and validates a task `config {}` block (Nomad's cty shape or plain HCL).
    pub fn from_value(value: &Value) -> Result<TaskConfig, ConfigError> {
        let root = Block::new(ROOT, value)?;
        root.deny_unknown(&KEYS)?;
        let config = TaskConfig::decode_options(&root)?;
        refuse_reserved_labels(&config.labels)?;
        config.validate()?;
        Ok(config)
    }

    /// The checks across options, and of the options still kept as decoded scalars (each
    /// typed option was checked when it was parsed, and cannot hold a bad value). Called
    /// by [`TaskConfig::from_value`], and by `Driver::start` for a config changed in code.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.image.is_empty() {
            return Err(ConfigError::Missing {
                field: field("image"),
                what: "image name required",
            });
        }
        if !matches!(self.logging.driver.as_str(), "" | "nomad" | "journald") {
            return Err(ConfigError::invalid(
                field("logging.driver"),
                self.logging.driver.as_str(),
                "expected \"nomad\" or \"journald\"",
            ));
        }
        if !self.ports.is_empty() && !self.port_map.is_empty() {
            return Err(ConfigError::Conflict {
                field: field("port_map"),
                reason: "Invalid port declaration; use of port_map and ports".to_string(),
            });
        }
        if let Some((label, _)) = self.port_map.iter().find(|(_, port)| **port == 0) {
            return Err(ConfigError::invalid(
                field(&format!("port_map.{label}")),
                "0",
                "expected a port 1..65535",
            ));
        }
        self.check_sizes()?;
        self.check_numbers()?;
        if self.shm_size.is_some() && !self.ipc_mode.is_private() {
            return Err(ConfigError::Conflict {
                field: field("shm_size"),
                reason: format!(
                    "shm_size cannot be used with ipc_mode={:?}; it requires a private or shareable IPC namespace",
                    self.ipc_mode.to_string()
                ),
            });
        }
        if self.uts_mode == UtsMode::Host && !self.hostname.is_empty() {
            return Err(ConfigError::Conflict {
                field: field("hostname"),
                reason: "hostname cannot be set together with uts_mode = \"host\": the container uses the host's name".to_string(),
            });
        }
        self.check_devices()?;
        if let Some(mac) = &self.static_mac {
            parse_mac(mac).ok_or_else(|| {
                ConfigError::invalid(field("static_mac"), mac.as_str(), "not a MAC address")
            })?;
        }
        Ok(())
    }

    fn check_sizes(&self) -> Result<(), ConfigError> {
        for (name, value, minimum) in [
            ("shm_size", self.shm_size, 0),
            ("memory_reservation", self.memory_reservation, 0),
            ("memory_swap", self.memory_swap, -1),
        ] {
            if let Some(bytes) = value.filter(|b| *b < minimum) {
                return Err(ConfigError::invalid(
                    field(name),
                    bytes.to_string(),
                    negative_size_reason(minimum),
                ));
            }
        }
        Ok(())
    }

    /// `devices` entries as podman parses them: `host[:container[:permissions]]` with
    /// absolute paths and permissions from `rwm`, or a CDI name (`vendor.com/class=name`).
    fn check_devices(&self) -> Result<(), ConfigError> {
        for (i, device) in self.devices.iter().enumerate() {
            let invalid = |reason: &str| {
                ConfigError::invalid(field(&format!("devices[{i}]")), device.as_str(), reason)
            };
            if is_cdi_device(device) {
                continue;
            }
            let parts: Vec<&str> = device.split(':').collect();
            let (host, container, permissions) = match parts.as_slice() {
                [host] => (*host, None, None),
                [host, second] if is_device_permissions(second) => (*host, None, Some(*second)),
                [host, container] => (*host, Some(*container), None),
                [host, container, permissions] => (*host, Some(*container), Some(*permissions)),
                _ => return Err(invalid("expected host[:container[:permissions]]")),
            };
            if !host.starts_with('/') {
                return Err(invalid(
                    "the host path must be absolute (or a CDI name vendor.com/class=name)",
                ));
            }
            if container.is_some_and(|c| !c.starts_with('/')) {
                return Err(invalid("the container path must be absolute"));
            }
            if permissions.is_some_and(|p| !is_device_permissions(p)) {
                return Err(invalid(
                    "permissions must be one or more of r, w and m, each once",
                ));
            }
        }
        Ok(())
    }

    fn check_numbers(&self) -> Result<(), ConfigError> {
        if let Some(swappiness) = self.memory_swappiness.filter(|s| !(0..=100).contains(s)) {
            return Err(ConfigError::invalid(
                field("memory_swappiness"),
                swappiness.to_string(),
                "expected 0..100",
            ));
        }
        if !(-1000..=1000).contains(&self.oom_score_adj) {
            return Err(ConfigError::invalid(
                field("oom_score_adj"),
                self.oom_score_adj.to_string(),
                "expected -1000..1000",
            ));
        }
        if self.pids_limit < -1 {
            return Err(ConfigError::invalid(
                field("pids_limit"),
                self.pids_limit.to_string(),
                "expected -1 (unlimited), 0 (podman's default) or a positive limit",
            ));
        }
        if !(0..=1_000_000).contains(&self.cpu_cfs_period) {
            return Err(ConfigError::invalid(
                field("cpu_cfs_period"),
                self.cpu_cfs_period.to_string(),
                "expected 0..1000000 microseconds",
            ));
        }
        Ok(())
    }

    /// TLS verification for pulls: the `auth` block's `tls_verify`, true without a block.
    pub fn tls_verify(&self) -> bool {
        self.auth.as_ref().map(|a| a.tls_verify).unwrap_or(true)
    }
}

/// One `ulimit` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ulimit {
    /// As written, e.g. `nofile` (podman adds `RLIMIT_`).
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

impl Ulimit {
    /// Parses the entry `name = "soft[:hard]"`; an error names what is wrong (the name
    /// itself when it is no rlimit) and why.
    pub fn parse_entry(name: &str, limits: &str) -> Result<Ulimit, (String, String)> {
        if !RLIMITS.contains(&name) {
            return Err((
                name.to_string(),
                format!("unknown ulimit; expected one of {}", RLIMITS.join(", ")),
            ));
        }
        let bad = |reason: &str| (limits.to_string(), reason.to_string());
        let (soft_text, hard_text) = limits.split_once(':').unwrap_or((limits, limits));
        let number = |text: &str| text.parse::<u64>().ok();
        let (Some(soft), Some(hard)) = (number(soft_text), number(hard_text)) else {
            return Err(bad("expected soft[:hard] as whole numbers"));
        };
        if soft > hard {
            return Err(bad("soft limit is above the hard limit"));
        }
        Ok(Ulimit {
            name: name.to_string(),
            soft,
            hard,
        })
    }

    /// The limits as the option writes them: `soft` when both are the same, else
    /// `soft:hard`.
    pub fn limits_text(&self) -> String {
        if self.soft == self.hard {
            self.soft.to_string()
        } else {
            format!("{}:{}", self.soft, self.hard)
        }
    }
}

/// `ulimit` persisted in the shape of the option: a map of rlimit name to `soft[:hard]`.
mod ulimit_map {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer};

    use super::Ulimit;

    pub fn serialize<S: Serializer>(limits: &[Ulimit], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(limits.iter().map(|u| (&u.name, u.limits_text())))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Ulimit>, D::Error> {
        BTreeMap::<String, String>::deserialize(deserializer)?
            .iter()
            .map(|(name, limits)| {
                Ulimit::parse_entry(name, limits).map_err(|(value, reason)| {
                    serde::de::Error::custom(format!("ulimit {name}: {value:?}: {reason}"))
                })
            })
            .collect()
    }
}

/// A parsed `ipc_mode`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum IpcMode {
    #[default]
    Default,
    Host,
    Private,
    Shareable,
    None,
    Container(String),
    Path(String),
    /// Another task of the allocation, by task name.
    Task(String),
}

impl IpcMode {
    pub fn parse_text(value: &str) -> Result<IpcMode, String> {
        Ok(match value {
            "" => IpcMode::Default,
            "host" => IpcMode::Host,
            "private" => IpcMode::Private,
            "shareable" => IpcMode::Shareable,
            "none" => IpcMode::None,
            _ => match value.split_once(':') {
                Some(("container", target)) if !target.is_empty() => {
                    IpcMode::Container(target.to_string())
                }
                Some(("ns", path)) if !path.is_empty() => IpcMode::Path(path.to_string()),
                Some(("task", task)) if !task.is_empty() => IpcMode::Task(task.to_string()),
                _ => return Err(
                    "expected one of host, private, shareable, none, container:<id>, ns:<path>, task:<name>"
                        .to_string(),
                ),
            },
        })
    }

    /// Whether the container gets an IPC namespace of its own, which `shm_size` sizes.
    pub fn is_private(&self) -> bool {
        matches!(
            self,
            IpcMode::Default | IpcMode::Private | IpcMode::Shareable
        )
    }
}

impl std::fmt::Display for IpcMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IpcMode::Default => Ok(()),
            IpcMode::Host => f.write_str("host"),
            IpcMode::Private => f.write_str("private"),
            IpcMode::Shareable => f.write_str("shareable"),
            IpcMode::None => f.write_str("none"),
            IpcMode::Container(id) => write!(f, "container:{id}"),
            IpcMode::Path(path) => write!(f, "ns:{path}"),
            IpcMode::Task(task) => write!(f, "task:{task}"),
        }
    }
}

serde_as_text!(IpcMode);

/// A parsed `network_mode`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NetworkMode {
    #[default]
    Default,
    Bridge,
    Host,
    None,
    Pasta,
    Slirp4netns,
    Container(String),
    Path(String),
    /// Another task of the allocation, by task name.
    Task(String),
    /// A podman network by name; the caller checks it exists.
    Custom(String),
}

impl NetworkMode {
    pub fn parse_text(value: &str) -> Result<NetworkMode, String> {
        Ok(match value {
            "" => NetworkMode::Default,
            "bridge" => NetworkMode::Bridge,
            "host" => NetworkMode::Host,
            "none" => NetworkMode::None,
            "pasta" => NetworkMode::Pasta,
            "slirp4netns" => NetworkMode::Slirp4netns,
            _ => match value.split_once(':') {
                Some((kind @ ("container" | "ns" | "task"), target)) => {
                    if target.is_empty() {
                        return Err(format!("{kind}: needs a value after the colon"));
                    }
                    match kind {
                        "container" => NetworkMode::Container(target.to_string()),
                        "ns" => NetworkMode::Path(target.to_string()),
                        _ => NetworkMode::Task(target.to_string()),
                    }
                }
                _ => NetworkMode::Custom(value.to_string()),
            },
        })
    }

    /// The podman network this mode names, which must exist before create.
    pub fn custom_network(&self) -> Option<&str> {
        match self {
            NetworkMode::Custom(name) => Some(name),
            _ => None,
        }
    }
}

impl std::fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetworkMode::Default => Ok(()),
            NetworkMode::Bridge => f.write_str("bridge"),
            NetworkMode::Host => f.write_str("host"),
            NetworkMode::None => f.write_str("none"),
            NetworkMode::Pasta => f.write_str("pasta"),
            NetworkMode::Slirp4netns => f.write_str("slirp4netns"),
            NetworkMode::Container(id) => write!(f, "container:{id}"),
            NetworkMode::Path(path) => write!(f, "ns:{path}"),
            NetworkMode::Task(task) => write!(f, "task:{task}"),
            NetworkMode::Custom(name) => f.write_str(name),
        }
    }
}

serde_as_text!(NetworkMode);

impl PidMode {
    pub fn parse_text(value: &str) -> Result<PidMode, String> {
        Ok(match value {
            "" => PidMode::Default,
            "host" => PidMode::Host,
            _ => match value.split_once(':') {
                Some(("container", target)) if !target.is_empty() => {
                    PidMode::Container(target.to_string())
                }
                Some(("task", task)) if !task.is_empty() => PidMode::Task(task.to_string()),
                _ => return Err("expected host, container:<id> or task:<name>".to_string()),
            },
        })
    }
}

impl std::fmt::Display for PidMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PidMode::Default => Ok(()),
            PidMode::Host => f.write_str("host"),
            PidMode::Container(id) => write!(f, "container:{id}"),
            PidMode::Task(task) => write!(f, "task:{task}"),
        }
    }
}

serde_as_text!(PidMode);

/// A parsed `uts_mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UtsMode {
    /// The container's own UTS namespace.
    #[default]
    Private,
    Host,
}

impl UtsMode {
    pub fn parse_text(value: &str) -> Result<UtsMode, String> {
        match value {
            "" => Ok(UtsMode::Private),
            "host" => Ok(UtsMode::Host),
            _ => Err("expected \"host\" (or nothing for the container's own)".to_string()),
        }
    }
}

impl std::fmt::Display for UtsMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UtsMode::Private => Ok(()),
            UtsMode::Host => f.write_str("host"),
        }
    }
}

serde_as_text!(UtsMode);

/// One `volumes` entry (the source not yet resolved against the task dir).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub source: String,
    pub target: String,
    pub options: Vec<String>,
}

impl Volume {
    pub fn parse_text(entry: &str) -> Result<Volume, String> {
        let parts: Vec<&str> = entry.split(':').collect();
        match parts[..] {
            [source, target, ..] if !source.is_empty() && target.starts_with('/') => Ok(Volume {
                source: source.to_string(),
                target: target.to_string(),
                options: parts.get(2).map(|o| comma_list(o)).unwrap_or_default(),
            }),
            _ => Err("not <src>:<absolute destination>[:options] format".to_string()),
        }
    }
}

impl std::fmt::Display for Volume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.source, self.target)?;
        if !self.options.is_empty() {
            write!(f, ":{}", self.options.join(","))?;
        }
        Ok(())
    }
}

serde_as_text!(Volume);

/// One `tmpfs` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tmpfs {
    /// Absolute path in the container.
    pub path: String,
    pub options: Vec<String>,
}

impl Tmpfs {
    pub fn parse_text(entry: &str) -> Result<Tmpfs, String> {
        let (path, options) = entry.split_once(':').unwrap_or((entry, ""));
        if !path.starts_with('/') {
            return Err("expected an absolute path[:options]".to_string());
        }
        Ok(Tmpfs {
            path: path.to_string(),
            options: comma_list(options),
        })
    }
}

impl std::fmt::Display for Tmpfs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.path)?;
        if !self.options.is_empty() {
            write!(f, ":{}", self.options.join(","))?;
        }
        Ok(())
    }
}

serde_as_text!(Tmpfs);

/// One `extra_hosts` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraHost {
    pub host: String,
    /// As written: an address (IPv6 possibly in brackets) or `host-gateway`.
    pub ip: String,
}

impl ExtraHost {
    pub fn parse_text(entry: &str) -> Result<ExtraHost, String> {
        match entry.split_once(':') {
            Some((host, ip)) if !host.is_empty() && !ip.is_empty() => {
                if ip != "host-gateway" && unbracketed(ip).parse::<IpAddr>().is_err() {
                    return Err("the part after the first ':' is not an IP address".to_string());
                }
                Ok(ExtraHost {
                    host: host.to_string(),
                    ip: ip.to_string(),
                })
            }
            _ => Err("must be host:ip".to_string()),
        }
    }

    /// `host:ip` as podman takes it: an IPv6 address without brackets.
    pub fn podman_entry(&self) -> String {
        format!("{}:{}", self.host, unbracketed(&self.ip))
    }
}

fn unbracketed(ip: &str) -> &str {
    ip.trim_start_matches('[').trim_end_matches(']')
}

impl std::fmt::Display for ExtraHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.ip)
    }
}

serde_as_text!(ExtraHost);

/// `a,b,,c` as `[a, b, c]`.
fn comma_list(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|o| !o.is_empty())
        .map(str::to_string)
        .collect()
}

fn negative_size_reason(minimum: i64) -> &'static str {
    if minimum == 0 {
        "must not be negative"
    } else {
        "must be -1 (unlimited) or a size"
    }
}

fn field(name: &str) -> String {
    format!("{ROOT}.{name}")
}

/// Propagation modes a bind `mount` takes (docker's names, which podman knows).
const PROPAGATIONS: [&str; 6] = [
    "private", "rprivate", "shared", "rshared", "slave", "rslave",
];

fn read_mounts(root: &Block<'_>) -> Result<Vec<MountBlock>, ConfigError> {
    root.blocks("mount")?
        .iter()
        .map(|block| {
            block.deny_unknown(&[
                "type",
                "target",
                "source",
                "readonly",
                "bind_options",
                "tmpfs_options",
                "volume_options",
            ])?;
            let kind = block
                .string("type")?
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| "volume".to_string());
            let target = block.string("target")?.unwrap_or_default();
            if !target.starts_with('/') {
                return Err(ConfigError::invalid(
                    block.child("target"),
                    target,
                    "expected an absolute path in the container",
                ));
            }
            let source = block.string("source")?.unwrap_or_default();
            let options = |name: &str| block.block(name);
            let not_for = |name: &str| -> Result<(), ConfigError> {
                match options(name)? {
                    Some(_) => Err(ConfigError::Conflict {
                        field: block.child(name),
                        reason: format!("{name} does not apply to a {kind} mount"),
                    }),
                    None => Ok(()),
                }
            };
            let kind = match kind.as_str() {
                "bind" => {
                    not_for("tmpfs_options")?;
                    not_for("volume_options")?;
                    if source.is_empty() {
                        return Err(ConfigError::Missing {
                            field: block.child("source"),
                            what: "a bind mount needs a source path",
                        });
                    }
                    let propagation = match options("bind_options")? {
                        Some(bind) => {
                            bind.deny_unknown(&["propagation"])?;
                            match bind.string("propagation")?.filter(|p| !p.is_empty()) {
                                Some(p) if PROPAGATIONS.contains(&p.as_str()) => Some(p),
                                Some(p) => {
                                    return Err(ConfigError::invalid(
                                        bind.child("propagation"),
                                        p,
                                        "expected one of private, rprivate, shared, rshared, slave, rslave",
                                    ))
                                }
                                None => None,
                            }
                        }
                        None => None,
                    };
                    MountKind::Bind { propagation }
                }
                "volume" => {
                    not_for("bind_options")?;
                    not_for("tmpfs_options")?;
                    if source.is_empty() {
                        return Err(ConfigError::Missing {
                            field: block.child("source"),
                            what: "a volume mount needs a source: the volume's name",
                        });
                    }
                    let (no_copy, labels, driver) = match options("volume_options")? {
                        Some(volume) => {
                            volume.deny_unknown(&["no_copy", "labels", "driver_config"])?;
                            let driver = match volume.block("driver_config")? {
                                Some(driver) => {
                                    driver.deny_unknown(&["name", "options"])?;
                                    Some(VolumeDriver {
                                        name: driver.string("name")?.unwrap_or_default(),
                                        options: driver.string_map("options")?,
                                    })
                                }
                                None => None,
                            };
                            (
                                volume.bool("no_copy")?.unwrap_or(false),
                                volume.string_map("labels")?,
                                driver,
                            )
                        }
                        None => (false, BTreeMap::new(), None),
                    };
                    MountKind::Volume {
                        no_copy,
                        labels,
                        driver,
                    }
                }
                "tmpfs" => {
                    not_for("bind_options")?;
                    not_for("volume_options")?;
                    if !source.is_empty() {
                        return Err(ConfigError::Conflict {
                            field: block.child("source"),
                            reason: "a tmpfs mount takes no source".to_string(),
                        });
                    }
                    let (size, mode) = match options("tmpfs_options")? {
                        Some(tmpfs) => {
                            tmpfs.deny_unknown(&["size", "mode"])?;
                            let size = tmpfs.int("size")?;
                            if let Some(bytes) = size.filter(|b| *b <= 0) {
                                return Err(ConfigError::invalid(
                                    tmpfs.child("size"),
                                    bytes.to_string(),
                                    "expected a size in bytes above 0",
                                ));
                            }
                            let mode = match tmpfs.int("mode")? {
                                Some(m) if (0..=0o7777).contains(&m) => Some(m as u32),
                                Some(m) => {
                                    return Err(ConfigError::invalid(
                                        tmpfs.child("mode"),
                                        m.to_string(),
                                        "expected a file mode 0..07777",
                                    ))
                                }
                                None => None,
                            };
                            (size, mode)
                        }
                        None => (None, None),
                    };
                    MountKind::Tmpfs { size, mode }
                }
                other => {
                    return Err(ConfigError::invalid(
                        block.child("type"),
                        other,
                        "expected bind, volume or tmpfs",
                    ))
                }
            };
            Ok(MountBlock {
                kind,
                target,
                source,
                readonly: block.bool("readonly")?.unwrap_or(false),
            })
        })
        .collect()
}

/// A string option; absent is empty.
fn text(root: &Block<'_>, key: &str) -> Result<String, ConfigError> {
    root.string(key).map(Option::unwrap_or_default)
}

/// A bool option; absent is false.
fn flag(root: &Block<'_>, key: &str) -> Result<bool, ConfigError> {
    root.bool(key).map(Option::unwrap_or_default)
}

/// A whole-number option; absent is 0.
fn int(root: &Block<'_>, key: &str) -> Result<i64, ConfigError> {
    root.int(key).map(Option::unwrap_or_default)
}

/// `image_pull_timeout`, a duration string; empty or absent is 5 minutes.
fn read_pull_timeout(root: &Block<'_>) -> Result<Duration, ConfigError> {
    match root.string("image_pull_timeout")? {
        Some(t) if !t.is_empty() => parse_duration(&t)
            .map_err(|e| ConfigError::invalid(field("image_pull_timeout"), t, e.to_string())),
        _ => Ok(Duration::from_secs(300)),
    }
}

/// `socket`; empty or absent is the socket named `default`.
fn read_socket(root: &Block<'_>) -> Result<String, ConfigError> {
    Ok(Some(text(root, "socket")?)
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".to_string()))
}

/// `healthchecks { disable = true }`.
fn read_healthchecks(root: &Block<'_>) -> Result<bool, ConfigError> {
    match root.block("healthchecks")? {
        Some(block) => {
            block.deny_unknown(&["disable"])?;
            Ok(block.bool("disable")?.unwrap_or(false))
        }
        None => Ok(false),
    }
}

/// An option written as one string, parsed into its type; empty or absent is the
/// type's default.
fn parsed<T: Default>(
    root: &Block<'_>,
    key: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    match root.string(key)? {
        None => Ok(T::default()),
        Some(text) => parse(&text).map_err(|reason| ConfigError::invalid(field(key), text, reason)),
    }
}

/// An option written as a list of strings, each parsed into its type.
fn parsed_list<T>(
    root: &Block<'_>,
    key: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, ConfigError> {
    root.strings(key)?
        .into_iter()
        .map(|text| parse(&text).map_err(|reason| ConfigError::invalid(field(key), text, reason)))
        .collect()
}

fn read_ulimits(root: &Block<'_>) -> Result<Vec<Ulimit>, ConfigError> {
    root.string_map("ulimit")?
        .iter()
        .map(|(name, limits)| {
            Ulimit::parse_entry(name, limits).map_err(|(value, reason)| {
                ConfigError::invalid(field(&format!("ulimit.{name}")), value, reason)
            })
        })
        .collect()
}

fn read_security_opts(root: &Block<'_>) -> Result<SecurityOptions, ConfigError> {
    parse_security_opts(&root.strings("security_opt")?)
        .map_err(|(item, reason)| ConfigError::invalid(field("security_opt"), item, reason))
}

fn read_auth(root: &Block<'_>) -> Result<Option<TaskAuth>, ConfigError> {
    let Some(auth) = root.block("auth")? else {
        return Ok(None);
    };
    auth.deny_unknown(&["username", "password", "tls_verify"])?;
    Ok(Some(TaskAuth {
        username: auth.string("username")?.unwrap_or_default(),
        password: auth.string("password")?.unwrap_or_default(),
        tls_verify: auth.bool("tls_verify")?.unwrap_or(true),
    }))
}

fn read_logging(root: &Block<'_>) -> Result<TaskLogging, ConfigError> {
    let Some(logging) = root.block("logging")? else {
        return Ok(TaskLogging::default());
    };
    logging.deny_unknown(&["driver", "options"])?;
    Ok(TaskLogging {
        driver: logging.string("driver")?.unwrap_or_default(),
        options: logging.string_map("options")?,
    })
}

fn read_entrypoint(root: &Block<'_>) -> Result<Option<Vec<String>>, ConfigError> {
    let name = field("entrypoint");
    match root.get("entrypoint") {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(vec![s.clone()])),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                Value::Bool(b) => Ok(b.to_string()),
                other => Err(wrong(&format!("{name}[{i}]"), "string", other)),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err(wrong(&name, "string or list of strings", other)),
    }
}

fn read_port_map(root: &Block<'_>) -> Result<BTreeMap<String, u16>, ConfigError> {
    root.int_map("port_map")?
        .into_iter()
        .map(|(label, port)| {
            let valid = u16::try_from(port).ok().filter(|p| *p > 0);
            valid.map(|p| (label.clone(), p)).ok_or_else(|| {
                ConfigError::invalid(
                    field(&format!("port_map.{label}")),
                    port.to_string(),
                    "expected a port 1..65535",
                )
            })
        })
        .collect()
}

fn read_memory(root: &Block<'_>, key: &str) -> Result<Option<i64>, ConfigError> {
    match root.string(key)? {
        None => Ok(None),
        Some(text) if text.is_empty() => Ok(None),
        Some(text) => {
            let bytes = parse_memory(&text)
                .map_err(|e| ConfigError::invalid(field(key), &text, e.to_string()))?;
            let minimum = if key == "memory_swap" { -1 } else { 0 };
            if bytes < minimum {
                return Err(ConfigError::invalid(
                    field(key),
                    text,
                    negative_size_reason(minimum),
                ));
            }
            Ok(Some(bytes))
        }
    }
}

fn read_ip<T: std::str::FromStr>(root: &Block<'_>, key: &str) -> Result<Option<T>, ConfigError> {
    match root.string(key)? {
        None => Ok(None),
        Some(text) if text.is_empty() => Ok(None),
        Some(text) => text.parse().map(Some).map_err(|_| {
            let kind = if key == "ipv4_address" {
                "IPv4"
            } else {
                "IPv6"
            };
            ConfigError::invalid(field(key), text, format!("not an {kind} address"))
        }),
    }
}

fn read_static_ips(root: &Block<'_>) -> Result<Vec<IpAddr>, ConfigError> {
    root.strings("static_ips")?
        .into_iter()
        .map(|text| {
            text.parse()
                .map_err(|_| ConfigError::invalid(field("static_ips"), text, "not an IP address"))
        })
        .collect()
}

fn read_mac(root: &Block<'_>) -> Result<Option<String>, ConfigError> {
    match root.string("static_mac")? {
        None => Ok(None),
        Some(text) if text.is_empty() => Ok(None),
        Some(text) => parse_mac(&text)
            .map(Some)
            .ok_or_else(|| ConfigError::invalid(field("static_mac"), text, "not a MAC address")),
    }
}

/// A 6-byte MAC in `:` or `-` notation, returned lower-case with `:`.
fn parse_mac(text: &str) -> Option<String> {
    let parts: Vec<&str> = text.split([':', '-']).collect();
    let valid = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|c| c.is_ascii_hexdigit()));
    valid.then(|| parts.join(":").to_ascii_lowercase())
}

/// What the orchestrator provides about a task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskContext {
    /// The orchestrator's task id (unique per task instance).
    pub id: String,
    /// The task name within its group.
    pub name: String,
    pub alloc_id: String,
    pub job_name: String,
    pub job_id: String,
    pub task_group_name: String,
    pub namespace: String,
    pub node_name: String,
    pub node_id: String,
    /// The whole task environment.
    pub env: BTreeMap<String, String>,
    /// Task-level `user`; empty = image default.
    pub user: String,
    pub resources: TaskResources,
    /// Host path mounted at `/alloc`.
    pub alloc_dir: Option<PathBuf>,
    /// The task's own directory; relative `volumes` sources resolve inside it.
    pub task_dir: Option<PathBuf>,
    /// Host path mounted at `/local`.
    pub local_dir: Option<PathBuf>,
    /// Host path mounted at `/secrets`.
    pub secrets_dir: Option<PathBuf>,
    pub mounts: Vec<MountSpec>,
    pub devices: Vec<DeviceSpec>,
    /// Allocated group ports; `None` = the group has no network.
    pub ports: Option<Vec<PortSpec>>,
    /// Legacy task networks, for `port_map`.
    pub networks: Option<Vec<LegacyNetwork>>,
    /// Path of a network namespace prepared by the orchestrator.
    pub network_isolation_path: Option<String>,
    /// A container whose network namespace the task joins: the runner's group infra
    /// container, which holds the group's bridge and publishes its ports. Like the
    /// isolation path it wins over `network_mode`, and the task publishes no ports itself.
    pub network_container: Option<String>,
    /// The network mode of a task whose `network_mode` is unset (the runner's group
    /// `network { mode = "none" }`).
    pub default_network_mode: Option<NetworkMode>,
    pub dns: Option<DnsSpec>,
    pub stdout_path: Option<PathBuf>,
    pub stderr_path: Option<PathBuf>,
    /// What the stdout/stderr paths are: Nomad's FIFOs, or files the runner keeps.
    pub log_sink: SinkKind,
    /// File sinks (the journal included) rotate as Nomad's logmon rotates its files; the
    /// paths are then bases, written as `<path>.<index>`. FIFO sinks never rotate here:
    /// their reader (logmon) does.
    pub log_rotation: Option<Rotation>,
    /// A regular file that also gets both streams in the order they were written, each
    /// line stamped ([`journal`](crate::driver::logs::journal)); `None` = none.
    pub journal_path: Option<PathBuf>,
    pub kill_signal: Option<String>,
    pub kill_timeout: Duration,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskResources {
    /// Nomad `cpu` in MHz, used as CPU shares.
    pub cpu_shares: u64,
    /// From `cores`; empty = no pinning.
    pub cpuset_cpus: String,
    pub memory_mb: i64,
    /// Hard limit in MiB; -1 = no hard limit, 0 = none given.
    pub memory_max_mb: i64,
    /// Share of the host's CPU the task may use (0..1), for `cpu_hard_limit`.
    pub percent_ticks: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MountSpec {
    pub host_path: String,
    pub task_path: String,
    pub readonly: bool,
    /// `private`, `host-to-task` or `bidirectional`.
    pub propagation_mode: String,
    pub selinux_label: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeviceSpec {
    pub host_path: String,
    pub task_path: String,
    /// cgroup permissions such as `rwm`.
    pub permissions: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PortSpec {
    pub label: String,
    /// Host port.
    pub value: u16,
    /// Container port; 0 = same as `value`.
    pub to: u16,
    pub host_ip: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LegacyNetwork {
    pub ip: String,
    pub reserved_ports: Vec<LegacyPort>,
    pub dynamic_ports: Vec<LegacyPort>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LegacyPort {
    pub label: String,
    pub value: u16,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsSpec {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// A task to run: its options and its context.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub config: TaskConfig,
    pub context: TaskContext,
}

impl TaskSpec {
    /// `<task name>-<alloc id>`.
    pub fn container_name(&self) -> String {
        container_name(&self.context.name, &self.context.alloc_id)
    }
}

/// Container name of task `task_name` in allocation `alloc_id`.
pub fn container_name(task_name: &str, alloc_id: &str) -> String {
    format!("{task_name}-{alloc_id}")
}

/// A CDI device name as podman accepts it in `devices`: `vendor.com/class=name`.
fn is_cdi_device(device: &str) -> bool {
    match device.split_once('=') {
        Some((kind, name)) => {
            !name.is_empty()
                && !kind.starts_with('/')
                && kind
                    .split_once('/')
                    .is_some_and(|(vendor, class)| !vendor.is_empty() && !class.is_empty())
        }
        None => false,
    }
}

/// `r`, `w`, `m`, each at most once, at least one.
fn is_device_permissions(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 3
        && text.chars().all(|c| matches!(c, 'r' | 'w' | 'm'))
        && text.char_indices().all(|(i, c)| !text[..i].contains(c))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn debug_output_never_shows_the_registry_password() {
        let auth = TaskAuth {
            username: "u".into(),
            password: "hunter2".into(),
            tls_verify: true,
        };
        assert!(!format!("{auth:?}").contains("hunter2"));
    }

    fn decode(value: Value) -> Result<TaskConfig, ConfigError> {
        TaskConfig::from_value(&value)
    }

    fn error(value: Value) -> String {
        decode(value).unwrap_err().to_string()
    }

    fn with_image(mut extra: Value) -> Value {
        extra["image"] = json!("busybox");
        extra
    }

    #[test]
    fn labels_in_the_drivers_reserved_prefix_are_refused() {
        // Every label the driver, the runner and the conformance harness set themselves.
        let reserved = [
            "io.nomad-driver-podman.managed",
            "io.nomad-driver-podman.runner.job",
            "io.nomad-driver-podman.runner.group",
            "io.nomad-driver-podman.runner.task",
            "io.nomad-driver-podman.runner.alloc_id",
            "io.nomad-driver-podman.runner.alloc_index",
            "io.nomad-driver-podman.runner.alloc_dir",
            "io.nomad-driver-podman.runner.stage",
            "io.nomad-driver-podman.runner.leader",
            "io.nomad-driver-podman.runner.kill_timeout",
            "io.nomad-driver-podman.runner.kill_signal",
            "io.nomad-driver-podman.runner.ports",
            "io.nomad-driver-podman.conformance",
            "io.nomad-driver-podman.conformance.check",
            "io.nomad-driver-podman.conformance.bystander",
            "io.nomad-driver-podman.anything-new",
        ];
        for key in reserved {
            let err =
                decode(with_image(json!({"labels": {"team": "a", key: "x"}}))).expect_err(key);
            assert_eq!(err.field(), "config.labels", "{key}");
            assert_eq!(
                err.to_string(),
                format!(
                    "config.labels: label {key:?} is refused: the prefix \"io.nomad-driver-podman.\" is reserved for the labels the driver sets itself"
                )
            );
        }
        // In the list-of-maps shape too; neighbours of the prefix are ordinary labels.
        assert!(decode(with_image(
            json!({"labels": [{"a": "1"}, {"io.nomad-driver-podman.managed": "false"}]})
        ))
        .is_err());
        for key in [
            "io.nomad-driver-podman",
            "io.nomad-driver-podmanx.a",
            "team",
        ] {
            assert!(
                decode(with_image(json!({"labels": {key: "x"}}))).is_ok(),
                "{key}"
            );
        }
    }

    #[test]
    fn pids_limit_takes_minus_one_as_unlimited_and_refuses_other_negatives() {
        for ok in [-1, 0, 64] {
            assert_eq!(
                decode(with_image(json!({"pids_limit": ok})))
                    .unwrap()
                    .pids_limit,
                ok
            );
        }
        assert_eq!(
            error(with_image(json!({"pids_limit": -2}))),
            "config.pids_limit: invalid value \"-2\": expected -1 (unlimited), 0 (podman's default) or a positive limit"
        );
    }

    #[test]
    fn devices_are_checked_and_errors_name_the_entry() {
        for ok in [
            "/dev/fuse",
            "/dev/null:rw",
            "/dev/null:/dev/nulled",
            "/dev/null:/dev/nulled:rwm",
            "nvidia.com/gpu=all",
        ] {
            assert!(decode(with_image(json!({"devices": [ok]}))).is_ok(), "{ok}");
        }
        for (bad, reason) in [
            ("dev/fuse", "the host path must be absolute"),
            ("", "the host path must be absolute"),
            ("/dev/null:nulled:rw", "the container path must be absolute"),
            (
                "/dev/null:/dev/n:rx",
                "permissions must be one or more of r, w and m",
            ),
            (
                "/dev/null:/dev/n:rr",
                "permissions must be one or more of r, w and m",
            ),
            (
                "/dev/null:/a:rw:x",
                "expected host[:container[:permissions]]",
            ),
        ] {
            let message = error(with_image(json!({"devices": ["/dev/zero", bad]})));
            assert!(
                message.starts_with(&format!(
                    "config.devices[1]: invalid value {bad:?}: {reason}"
                )),
                "{bad}: {message}"
            );
        }
        assert_eq!(
            error(with_image(json!({"devices": "/dev/fuse"}))),
            "config.devices: expected list of strings, got string \"/dev/fuse\""
        );
    }

    #[test]
    fn minimal_config_gets_go_defaults() {
        let config = decode(json!({"image": "busybox"})).unwrap();
        assert_eq!(config.image, "busybox");
        assert_eq!(config.socket, "default");
        assert_eq!(config.image_pull_timeout, Duration::from_secs(300));
        assert!(config.tls_verify());
        assert_eq!(config.memory_swappiness, None);
        assert_eq!(config.entrypoint, None);
        assert!(config.logging.is_empty());
        assert_eq!(
            config,
            TaskConfig {
                image: "busybox".into(),
                ..TaskConfig::default()
            }
        );
    }

    /// docs/plugin.md's table of task options, one row per entry of [`TASK_OPTIONS`].
    fn options_table_markdown() -> Vec<String> {
        let mut rows = vec![
            "| Option | Type | Default | What it is |".to_string(),
            "|---|---|---|---|".to_string(),
        ];
        for option in &TASK_OPTIONS {
            let shape = match option.shape {
                OptionShape::Attr(type_expr) if option.required => format!("{type_expr}, required"),
                OptionShape::Attr(type_expr) => type_expr.to_string(),
                OptionShape::Block => "block".to_string(),
                OptionShape::BlockList => "repeatable block".to_string(),
            };
            rows.push(format!(
                "| `{}` | {shape} | {} | {} |",
                option.name, option.default, option.doc
            ));
        }
        rows
    }

    #[test]
    fn the_docs_list_every_task_option_as_the_table_has_it() {
        let docs = include_str!("../../docs/plugin.md");
        let expected = options_table_markdown();
        let documented: Vec<String> = docs
            .lines()
            .skip_while(|line| *line != expected[0])
            .take_while(|line| line.starts_with('|'))
            .map(str::to_string)
            .collect();
        assert!(
            documented == expected,
            "docs/plugin.md's task options table is not TASK_OPTIONS; it should read:\n{}",
            expected.join("\n")
        );
    }

    #[test]
    fn option_table_defaults_are_the_decoded_defaults() {
        let names: std::collections::BTreeSet<&str> = KEYS.iter().copied().collect();
        assert_eq!(names.len(), KEYS.len(), "an option is listed twice");
        let expected = TaskConfig {
            image: "busybox".into(),
            ..TaskConfig::default()
        };
        for option in TASK_OPTIONS.iter().filter(|o| o.hcl_default.is_some()) {
            let literal = option.hcl_default.unwrap_or_default();
            let value: Value = serde_json::from_str(literal).expect("a JSON-compatible literal");
            let config = decode(with_image(json!({ option.name: value }))).unwrap();
            assert_eq!(config, expected, "{}", option.name);
        }
        let required: Vec<&str> = TASK_OPTIONS
            .iter()
            .filter(|o| o.required)
            .map(|o| o.name)
            .collect();
        assert_eq!(required, ["image"]);
    }

    #[test]
    fn nomad_shape_with_every_key_null_decodes() {
        let mut value = serde_json::Map::new();
        for key in KEYS {
            value.insert(key.to_string(), Value::Null);
        }
        value.insert("image".into(), json!("busybox"));
        value.insert("logging".into(), json!([]));
        value.insert("auth".into(), Value::Null);
        let config = decode(Value::Object(value)).unwrap();
        assert_eq!(
            config,
            TaskConfig {
                image: "busybox".into(),
                ..TaskConfig::default()
            }
        );
    }

    #[test]
    fn every_option_decodes() {
        let mut first = json!({
            "image": "docker://busybox:latest",
            "auth": {"username": "u", "password": "p", "tls_verify": false},
            "auth_soft_fail": true,
            "command": "/bin/sh",
            "args": ["-c", "sleep", 5],
            "entrypoint": ["/bin/env", 1],
            "working_dir": "/tmp",
            "hostname": "box",
            "labels": [{"a": "1"}, {"b": "2"}],
            "logging": [{"driver": "journald", "options": [{"tag": "t"}]}],
            "init": true,
            "init_path": "/usr/libexec/podman/catatonit",
            "ports": ["http"],
            "network_mode": "bridge",
            "ipv4_address": "10.88.0.50",
            "ipv6_address": "fd00::50",
            "static_ips": ["10.88.0.51"],
            "static_mac": "AA-BB-CC-DD-EE-0F",
            "extra_hosts": ["db:10.0.0.1", "v6:[::1]"],
        });
        let second = json!({
            "ipc_mode": "shareable",
            "shm_size": "64m",
            "memory_reservation": "32m",
            "memory_swap": "-1",
            "memory_swappiness": "60",
            "oom_score_adj": -500,
            "pids_limit": 64,
            "cpu_hard_limit": "true",
            "cpu_cfs_period": 50000,
            "ulimit": {"nofile": "1024:2048", "nproc": 100},
            "cap_add": ["NET_ADMIN"],
            "cap_drop": ["MKNOD"],
            "selinux_opts": ["disable"],
            "security_opt": ["no-new-privileges"],
            "apparmor_profile": "unconfined",
            "privileged": false,
            "readonly_rootfs": true,
            "userns": "keep-id",
            "sysctl": {"net.core.somaxconn": "1024"},
            "tty": true,
            "devices": ["/dev/null:/dev/nulled:rw"],
            "volumes": ["/srv:/data:ro,z"],
            "tmpfs": ["/scratch:size=10m"],
            "force_pull": true,
            "image_pull_timeout": "90s",
            "arch": "amd64",
            "os": "linux",
            "variant": "v8",
            "socket": "fast",
        });
        if let (Value::Object(all), Value::Object(rest)) = (&mut first, second) {
            all.extend(rest);
        }
        let config = decode(first).unwrap();
        assert!(!config.tls_verify());
        assert_eq!(config.auth.as_ref().unwrap().username, "u");
        assert!(config.auth_soft_fail);
        assert_eq!(config.args, vec!["-c", "sleep", "5"]);
        assert_eq!(
            config.entrypoint,
            Some(vec!["/bin/env".to_string(), "1".to_string()])
        );
        assert_eq!(config.labels.len(), 2);
        assert_eq!(config.logging.driver, "journald");
        assert_eq!(config.logging.options["tag"], "t");
        assert_eq!(config.ipv4_address, Some(Ipv4Addr::new(10, 88, 0, 50)));
        assert_eq!(config.ipv6_address, "fd00::50".parse().ok());
        assert_eq!(config.static_mac.as_deref(), Some("aa:bb:cc:dd:ee:0f"));
        assert_eq!(config.shm_size, Some(64 << 20));
        assert_eq!(config.memory_reservation, Some(32 << 20));
        assert_eq!(config.memory_swap, Some(-1));
        assert_eq!(config.memory_swappiness, Some(60));
        assert_eq!(config.oom_score_adj, -500);
        assert!(config.cpu_hard_limit);
        assert_eq!(
            config.ulimit,
            vec![
                Ulimit {
                    name: "nofile".into(),
                    soft: 1024,
                    hard: 2048
                },
                Ulimit {
                    name: "nproc".into(),
                    soft: 100,
                    hard: 100
                },
            ]
        );
        assert_eq!(config.image_pull_timeout, Duration::from_secs(90));
        assert_eq!(config.socket, "fast");
        assert_eq!(config.ipc_mode, IpcMode::Shareable);
        assert_eq!(config.network_mode, NetworkMode::Bridge);
        assert_eq!(config.userns, Userns::KeepId(String::new()));
        assert!(config.security_opt.no_new_privileges);
        assert_eq!(
            config.extra_hosts,
            vec![
                ExtraHost {
                    host: "db".into(),
                    ip: "10.0.0.1".into()
                },
                ExtraHost {
                    host: "v6".into(),
                    ip: "[::1]".into()
                }
            ]
        );
        assert_eq!(
            config.volumes,
            vec![Volume {
                source: "/srv".into(),
                target: "/data".into(),
                options: vec!["ro".into(), "z".into()]
            }]
        );
        assert_eq!(
            config.tmpfs,
            vec![Tmpfs {
                path: "/scratch".into(),
                options: vec!["size=10m".into()]
            }]
        );
    }

    /// Task specs are persisted (the runner's `poststop.json`) in the shape they had when
    /// these options were strings: both directions must keep reading.
    #[test]
    fn typed_options_persist_as_the_strings_they_were_written_as() {
        let written = json!({
            "network_mode": "task:db",
            "ipc_mode": "container:abc",
            "pid_mode": "host",
            "uts_mode": "host",
            "userns": "auto:size=65536,uidmapping=0:100000:1000",
            "security_opt": ["no-new-privileges", "label:level:s0", "mask=/proc/a:/proc/b"],
            "ulimit": {"nofile": "1024:2048", "nproc": "100"},
            "volumes": ["/srv:/data:ro,z", "local:/x"],
            "tmpfs": ["/scratch:size=10m", "/t"],
            "extra_hosts": ["db:10.0.0.1", "v6:[::1]", "gw:host-gateway"],
        });
        let config = decode(with_image(written.clone())).unwrap();
        let persisted = serde_json::to_value(&config).unwrap();
        for (key, value) in written.as_object().unwrap() {
            assert_eq!(&persisted[key], value, "{key}");
        }
        let back: TaskConfig = serde_json::from_value(persisted).unwrap();
        assert_eq!(back, config);
        // Unset options persist as the empty string, as before.
        let persisted = serde_json::to_value(TaskConfig::default()).unwrap();
        for key in ["network_mode", "ipc_mode", "pid_mode", "uts_mode", "userns"] {
            assert_eq!(persisted[key], "", "{key}");
        }
        assert_eq!(persisted["ulimit"], json!({}));
        assert_eq!(persisted["security_opt"], json!([]));
    }

    #[test]
    fn entrypoint_string_is_one_element() {
        let config = decode(with_image(json!({"entrypoint": "/bin/sh -c"}))).unwrap();
        assert_eq!(config.entrypoint, Some(vec!["/bin/sh -c".to_string()]));
        assert_eq!(
            error(with_image(json!({"entrypoint": {"a": 1}}))),
            "config.entrypoint: expected string or list of strings, got object"
        );
    }

    #[test]
    fn auth_block_defaults_tls_verify_true() {
        let config = decode(with_image(
            json!({"auth": [{"username": "u", "password": null, "tls_verify": null}]}),
        ))
        .unwrap();
        assert!(config.tls_verify());
        assert_eq!(config.auth.unwrap().password, "");
    }

    #[test]
    fn port_map_accepts_map_or_list_of_maps() {
        let config = decode(with_image(
            json!({"port_map": [{"http": 80}, {"dns": "53"}]}),
        ))
        .unwrap();
        assert_eq!(config.port_map["http"], 80);
        assert_eq!(config.port_map["dns"], 53);
        assert_eq!(
            error(with_image(json!({"port_map": {"http": 70000}}))),
            "config.port_map.http: invalid value \"70000\": expected a port 1..65535"
        );
    }

    #[test]
    fn structural_errors_name_the_option() {
        assert_eq!(error(json!({})), "config.image: image name required");
        assert_eq!(
            error(json!({"image": ""})),
            "config.image: image name required"
        );
        assert_eq!(
            error(with_image(json!({"imag": "x"}))),
            "config.imag: unknown option; did you mean \"image\"?"
        );
        assert_eq!(
            error(with_image(json!({"memory_reservation": 5}))),
            "config.memory_reservation: expected string, got number 5"
        );
        assert_eq!(
            error(with_image(json!({"tty": "yes"}))),
            "config.tty: expected bool, got string \"yes\""
        );
        assert_eq!(
            error(with_image(json!({"pids_limit": "many"}))),
            "config.pids_limit: expected whole number, got string \"many\""
        );
        assert_eq!(
            error(with_image(json!({"auth": {"user": "x"}}))),
            "config.auth.user: unknown option"
        );
        assert_eq!(
            error(with_image(json!({"labels": ["a"]}))),
            "config.labels[0]: expected map, got string \"a\""
        );
        assert_eq!(
            error(json!("busybox")),
            "config: expected a block (object), got string \"busybox\""
        );
    }

    #[test]
    fn value_errors_name_option_and_value() {
        let cases: Vec<(Value, &str, &str)> = vec![
            (
                json!({"memory_reservation": "100M"}),
                "config.memory_reservation",
                "\"100M\"",
            ),
            (
                json!({"memory_swap": "1.5g"}),
                "config.memory_swap",
                "\"1.5g\"",
            ),
            (json!({"memory_swap": "-2"}), "config.memory_swap", "\"-2\""),
            (json!({"shm_size": "-1"}), "config.shm_size", "\"-1\""),
            (
                json!({"memory_reservation": "-5m"}),
                "config.memory_reservation",
                "\"-5m\"",
            ),
            (
                json!({"memory_swappiness": 101}),
                "config.memory_swappiness",
                "\"101\"",
            ),
            (
                json!({"memory_swappiness": -1}),
                "config.memory_swappiness",
                "\"-1\"",
            ),
            (
                json!({"oom_score_adj": 1001}),
                "config.oom_score_adj",
                "\"1001\"",
            ),
            (
                json!({"cpu_cfs_period": 1000001}),
                "config.cpu_cfs_period",
                "\"1000001\"",
            ),
            (
                json!({"cpu_cfs_period": -1}),
                "config.cpu_cfs_period",
                "\"-1\"",
            ),
            (
                json!({"ulimit": {"nofile": "lots"}}),
                "config.ulimit.nofile",
                "\"lots\"",
            ),
            (
                json!({"ulimit": {"nofile": "10:5"}}),
                "config.ulimit.nofile",
                "\"10:5\"",
            ),
            (
                json!({"ulimit": {"nofile": ""}}),
                "config.ulimit.nofile",
                "\"\"",
            ),
            (
                json!({"ulimit": {"nofiles": "10"}}),
                "config.ulimit.nofiles",
                "\"nofiles\"",
            ),
            (
                json!({"ulimit": {"nofile": "unlimited"}}),
                "config.ulimit.nofile",
                "\"unlimited\"",
            ),
            (
                json!({"security_opt": ["bogus=1"]}),
                "config.security_opt",
                "\"bogus=1\"",
            ),
            (
                json!({"security_opt": ["no-new-privileges=maybe"]}),
                "config.security_opt",
                "\"no-new-privileges=maybe\"",
            ),
            (json!({"userns": "private"}), "config.userns", "\"private\""),
            (
                json!({"userns": "auto:size=x"}),
                "config.userns",
                "\"auto:size=x\"",
            ),
            (
                json!({"ipc_mode": "shared"}),
                "config.ipc_mode",
                "\"shared\"",
            ),
            (
                json!({"ipc_mode": "container:"}),
                "config.ipc_mode",
                "\"container:\"",
            ),
            (
                json!({"network_mode": "container:"}),
                "config.network_mode",
                "\"container:\"",
            ),
            (
                json!({"extra_hosts": ["nohost"]}),
                "config.extra_hosts",
                "\"nohost\"",
            ),
            (
                json!({"extra_hosts": [":1.2.3.4"]}),
                "config.extra_hosts",
                "\":1.2.3.4\"",
            ),
            (
                json!({"extra_hosts": ["db:notanip"]}),
                "config.extra_hosts",
                "\"db:notanip\"",
            ),
            (json!({"volumes": ["/srv"]}), "config.volumes", "\"/srv\""),
            (
                json!({"volumes": ["/srv:relative"]}),
                "config.volumes",
                "\"/srv:relative\"",
            ),
            (json!({"tmpfs": ["scratch"]}), "config.tmpfs", "\"scratch\""),
            (
                json!({"ipv4_address": "10.0.0.300"}),
                "config.ipv4_address",
                "\"10.0.0.300\"",
            ),
            (
                json!({"ipv4_address": "fd00::1"}),
                "config.ipv4_address",
                "\"fd00::1\"",
            ),
            (
                json!({"ipv6_address": "10.0.0.1"}),
                "config.ipv6_address",
                "\"10.0.0.1\"",
            ),
            (
                json!({"static_ips": ["10.0.0.1", "x"]}),
                "config.static_ips",
                "\"x\"",
            ),
            (
                json!({"static_mac": "aa:bb:cc"}),
                "config.static_mac",
                "\"aa:bb:cc\"",
            ),
            (
                json!({"image_pull_timeout": "5 minutes"}),
                "config.image_pull_timeout",
                "\"5 minutes\"",
            ),
            (
                json!({"logging": {"driver": "syslog"}}),
                "config.logging.driver",
                "\"syslog\"",
            ),
        ];
        for (value, option, shown) in cases {
            let err = decode(with_image(value.clone())).unwrap_err();
            assert_eq!(err.field(), option, "{value}");
            let message = err.to_string();
            assert!(message.contains(shown), "{value}: {message}");
        }
    }

    #[test]
    fn shm_size_needs_a_private_ipc_namespace() {
        assert!(decode(with_image(json!({"shm_size": "1m", "ipc_mode": "private"}))).is_ok());
        assert!(decode(with_image(json!({"shm_size": "1m"}))).is_ok());
        assert_eq!(
            error(with_image(json!({"shm_size": "1m", "ipc_mode": "host"}))),
            "config.shm_size: shm_size cannot be used with ipc_mode=\"host\"; it requires a private or shareable IPC namespace"
        );
    }

    #[test]
    fn ports_and_port_map_conflict() {
        assert_eq!(
            error(with_image(
                json!({"ports": ["http"], "port_map": {"http": 80}})
            )),
            "config.port_map: Invalid port declaration; use of port_map and ports"
        );
    }

    #[test]
    fn ipc_and_network_modes_parse_and_print_as_written() {
        let ipc = |mode: &str| {
            let parsed = IpcMode::parse_text(mode).unwrap();
            assert_eq!(parsed.to_string(), mode);
            parsed
        };
        assert_eq!(ipc(""), IpcMode::Default);
        assert_eq!(ipc("host"), IpcMode::Host);
        assert_eq!(ipc("none"), IpcMode::None);
        assert_eq!(ipc("container:abc"), IpcMode::Container("abc".into()));
        assert_eq!(
            ipc("ns:/proc/1/ns/ipc"),
            IpcMode::Path("/proc/1/ns/ipc".into())
        );
        assert_eq!(ipc("task:web"), IpcMode::Task("web".into()));
        let net = |mode: &str| {
            let parsed = NetworkMode::parse_text(mode).unwrap();
            assert_eq!(parsed.to_string(), mode);
            parsed
        };
        assert_eq!(net(""), NetworkMode::Default);
        assert_eq!(net("host"), NetworkMode::Host);
        assert_eq!(net("none"), NetworkMode::None);
        assert_eq!(net("pasta"), NetworkMode::Pasta);
        assert_eq!(net("slirp4netns"), NetworkMode::Slirp4netns);
        assert_eq!(net("container:db"), NetworkMode::Container("db".into()));
        assert_eq!(
            net("ns:/run/netns/x"),
            NetworkMode::Path("/run/netns/x".into())
        );
        assert_eq!(net("task:web"), NetworkMode::Task("web".into()));
        assert_eq!(net("mynet"), NetworkMode::Custom("mynet".into()));
        assert_eq!(net("mynet").custom_network(), Some("mynet"));
        assert_eq!(net("bridge").custom_network(), None);
    }

    #[test]
    fn container_name_is_task_dash_alloc() {
        let mut spec = TaskSpec::default();
        spec.context.name = "web".into();
        spec.context.alloc_id = "1234".into();
        assert_eq!(spec.container_name(), "web-1234");
    }

    #[test]
    fn context_round_trips_through_serde() {
        let context = TaskContext {
            id: "t".into(),
            ports: Some(vec![PortSpec {
                label: "http".into(),
                value: 8080,
                to: 80,
                host_ip: "127.0.0.1".into(),
            }]),
            kill_timeout: Duration::from_secs(5),
            ..TaskContext::default()
        };
        let json = serde_json::to_value(&context).unwrap();
        let back: TaskContext = serde_json::from_value(json).unwrap();
        assert_eq!(back, context);
        let partial: TaskContext = serde_json::from_value(json!({"name": "web"})).unwrap();
        assert_eq!(partial.name, "web");
    }

    #[test]
    fn validate_catches_configs_built_in_code() {
        let config = TaskConfig {
            image: "x".into(),
            logging: TaskLogging {
                driver: "fluentd".into(),
                ..Default::default()
            },
            ..TaskConfig::default()
        };
        assert_eq!(
            config.validate().unwrap_err().field(),
            "config.logging.driver"
        );
        let config = TaskConfig {
            image: "x".into(),
            static_mac: Some("zz".into()),
            ..TaskConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().field(), "config.static_mac");
        let config = TaskConfig {
            image: "x".into(),
            port_map: [("a".to_string(), 0)].into(),
            ..TaskConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().field(), "config.port_map.a");
    }
}

//! A job as the runner understands it: what the job file says, evaluated, with Nomad's
//! defaults filled in. Runtime references (`${NOMAD_*}`, `${attr.*}`, ...) are still text.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::jobspec::source::Location;
use crate::driver::logs::Rotation;

#[derive(Debug, Clone)]
pub struct Job {
    /// The block label: `NOMAD_JOB_ID` and the key ps/logs/stop find containers by.
    pub id: String,
    /// `name` attribute, defaulting to the id: `NOMAD_JOB_NAME`.
    pub name: String,
    pub job_type: JobType,
    pub region: String,
    pub datacenters: Vec<String>,
    pub namespace: String,
    pub meta: BTreeMap<String, String>,
    pub constraints: Vec<Constraint>,
    /// Where `datacenters` was written (the node's datacenter is checked against it).
    pub datacenters_location: Option<Location>,
    pub groups: Vec<Group>,
    pub file: PathBuf,
}

/// A `constraint` block: `attribute operator value`, targets still as written
/// (`${attr.kernel.name}`), resolved against the node's facts when checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Constraint {
    pub attribute: String,
    pub operator: String,
    pub value: String,
    pub location: Location,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobType {
    Service,
    Batch,
    System,
    Sysbatch,
}

impl JobType {
    pub fn parse(s: &str) -> Option<JobType> {
        match s {
            "service" => Some(JobType::Service),
            "batch" => Some(JobType::Batch),
            "system" => Some(JobType::System),
            "sysbatch" => Some(JobType::Sysbatch),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobType::Service => "service",
            JobType::Batch => "batch",
            JobType::System => "system",
            JobType::Sysbatch => "sysbatch",
        }
    }

    /// Batch-like jobs are done when their tasks succeed; the others run until stopped.
    pub fn runs_to_completion(self) -> bool {
        matches!(self, JobType::Batch | JobType::Sysbatch)
    }
}

#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    pub count: u32,
    pub meta: BTreeMap<String, String>,
    pub constraints: Vec<Constraint>,
    pub network: Option<GroupNetwork>,
    pub tasks: Vec<Task>,
    pub location: Location,
}

#[derive(Debug, Clone)]
pub struct GroupNetwork {
    pub mode: NetworkMode,
    pub ports: Vec<PortSpec>,
    pub dns: Option<Dns>,
    pub hostname: Option<String>,
    pub location: Location,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    Host,
    Bridge,
    None,
}

#[derive(Debug, Clone)]
pub struct PortSpec {
    pub label: String,
    /// `static`: a fixed host port; `None` means a dynamic one from 20000-32000.
    pub static_port: Option<u16>,
    /// `to`: the port inside the task's network namespace; `None` (or Nomad's `-1`) means
    /// the same as the host port.
    pub to: Option<u16>,
    pub host_network: Option<String>,
    pub location: Location,
}

#[derive(Debug, Clone, Default)]
pub struct Dns {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Task {
    pub name: String,
    /// The task `config {}` block as JSON, for `TaskConfig::from_value`.
    pub config: Value,
    /// Where each top-level config key (and the block itself) was written, to locate
    /// errors the core reports by field name.
    pub config_locations: BTreeMap<String, Location>,
    pub config_location: Location,
    pub env: BTreeMap<String, String>,
    pub meta: BTreeMap<String, String>,
    pub constraints: Vec<Constraint>,
    pub user: Option<String>,
    pub kill_signal: Option<String>,
    pub kill_timeout: Duration,
    pub lifecycle: Option<Lifecycle>,
    pub leader: bool,
    pub restart: RestartPolicy,
    pub resources: Resources,
    pub templates: Vec<TemplateSpec>,
    /// `artifact` blocks, fetched in order before the first start.
    pub artifacts: Vec<ArtifactSpec>,
    /// The task's `logs` block.
    pub logs: LogsPolicy,
    pub location: Location,
}

impl Task {
    pub fn stage(&self) -> Stage {
        match self.lifecycle {
            None => Stage::Main,
            Some(Lifecycle {
                hook: Hook::Prestart,
                sidecar: false,
            }) => Stage::Prestart,
            Some(Lifecycle {
                hook: Hook::Prestart,
                sidecar: true,
            }) => Stage::PrestartSidecar,
            Some(Lifecycle {
                hook: Hook::Poststart,
                sidecar: false,
            }) => Stage::Poststart,
            Some(Lifecycle {
                hook: Hook::Poststart,
                sidecar: true,
            }) => Stage::PoststartSidecar,
            Some(Lifecycle {
                hook: Hook::Poststop,
                ..
            }) => Stage::Poststop,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifecycle {
    pub hook: Hook,
    pub sidecar: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Prestart,
    Poststart,
    Poststop,
}

/// Where a task sits in Nomad's lifecycle ordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    Prestart,
    PrestartSidecar,
    Main,
    Poststart,
    PoststartSidecar,
    Poststop,
}

impl Stage {
    pub fn is_sidecar(self) -> bool {
        matches!(self, Stage::PrestartSidecar | Stage::PoststartSidecar)
    }

    /// The stage as a label value (`prestart_sidecar`).
    pub fn id(self) -> &'static str {
        match self {
            Stage::Prestart => "prestart",
            Stage::PrestartSidecar => "prestart_sidecar",
            Stage::Main => "main",
            Stage::Poststart => "poststart",
            Stage::PoststartSidecar => "poststart_sidecar",
            Stage::Poststop => "poststop",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Stage::Prestart => "prestart",
            Stage::PrestartSidecar => "prestart sidecar",
            Stage::Main => "main",
            Stage::Poststart => "poststart",
            Stage::PoststartSidecar => "poststart sidecar",
            Stage::Poststop => "poststop",
        }
    }
}

/// A task's `logs` block: how its files in `alloc/logs` rotate, or that none are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogsPolicy {
    /// `disabled = true` (or the older `enabled = false`): no log files, no journal.
    pub disabled: bool,
    pub rotation: Rotation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    pub attempts: u32,
    pub interval: Duration,
    pub delay: Duration,
    pub mode: RestartMode,
}

impl RestartPolicy {
    /// Nomad's defaults: service (and system) jobs 2 attempts in 30m, batch jobs 3 in 24h;
    /// both wait 15s and fail when the attempts are used up.
    pub fn default_for(job_type: JobType) -> RestartPolicy {
        match job_type {
            JobType::Batch | JobType::Sysbatch => RestartPolicy {
                attempts: 3,
                interval: Duration::from_secs(24 * 3600),
                delay: Duration::from_secs(15),
                mode: RestartMode::Fail,
            },
            JobType::Service | JobType::System => RestartPolicy {
                attempts: 2,
                interval: Duration::from_secs(30 * 60),
                delay: Duration::from_secs(15),
                mode: RestartMode::Fail,
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartMode {
    Fail,
    Delay,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resources {
    /// MHz, Nomad's default 100.
    pub cpu: u32,
    /// MiB, Nomad's default 300.
    pub memory_mb: u64,
    /// MiB; -1 is Nomad's "no hard limit".
    pub memory_max_mb: Option<i64>,
    pub cores: Option<u32>,
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            cpu: 100,
            memory_mb: 300,
            memory_max_mb: None,
            cores: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TemplateSpec {
    /// Inline template text (`data`).
    pub data: Option<String>,
    /// `source`, resolved against the job file's directory.
    pub source: Option<PathBuf>,
    /// `destination`, relative to the task dir (e.g. `local/app.conf`).
    pub destination: String,
    /// `env = true`: the rendered file is read as KEY=VALUE lines into the task env.
    pub env: bool,
    pub perms: u32,
    pub left_delimiter: String,
    pub right_delimiter: String,
    pub error_on_missing_key: bool,
    /// What happens when a re-render changes the file while the task runs.
    pub change_mode: ChangeMode,
    /// `change_signal`, for `change_mode = "signal"`.
    pub change_signal: Option<String>,
    /// Acting on a change waits a random time below this, as Nomad's `splay` (default 5s).
    pub splay: Duration,
    /// Numeric owner of the rendered file; unset keeps the runner's.
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub location: Location,
}

/// A template's `change_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeMode {
    Noop,
    Restart,
    Signal,
}

impl TemplateSpec {
    /// Rendered into the secrets dir, so never shown by plan or validate.
    pub fn is_secret(&self) -> bool {
        let dest = self.destination.trim_start_matches("./");
        dest == "secrets"
            || dest.starts_with("secrets/")
            || dest.starts_with("${NOMAD_SECRETS_DIR}")
    }
}

/// A task's `artifact` block.
#[derive(Debug, Clone)]
pub struct ArtifactSpec {
    /// `source` as written (an http(s) URL or a local path), before task interpolation.
    pub source: String,
    /// The job file's directory: what a relative local `source` is relative to.
    pub base_dir: PathBuf,
    /// `destination`, relative to the task dir (default `local/`).
    pub destination: String,
    pub mode: ArtifactMode,
    /// `options { checksum = "sha256:..." }`.
    pub checksum: Option<crate::modes::run::artifact::Checksum>,
    /// `options { archive = ... }`.
    pub archive: ArchiveChoice,
    pub location: Location,
}

/// go-getter's client modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactMode {
    /// An archive is unpacked into `destination`; anything else lands there under its
    /// own file name.
    Any,
    /// The download is written as the file `destination`, never unpacked.
    File,
    /// `destination` is a directory the archive is unpacked into.
    Dir,
}

/// Whether and how an artifact is unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveChoice {
    /// By the source's extension.
    Detect,
    /// `archive = "false"`.
    Never,
    /// `archive = "tar.gz"` etc.: this format whatever the name says.
    Format(crate::modes::run::artifact::ArchiveFormat),
}

/// Go-style duration text (`30s`, `1m30s`), as job files write durations.
pub mod duration_text {
    use std::time::Duration;

    pub fn format(d: Duration) -> String {
        let total_ms = d.as_millis();
        if total_ms == 0 {
            return "0s".into();
        }
        if total_ms % 1000 != 0 && total_ms < 1000 {
            return format!("{total_ms}ms");
        }
        let mut secs = d.as_secs();
        let mut out = String::new();
        let hours = secs / 3600;
        if hours > 0 {
            out.push_str(&format!("{hours}h"));
            secs %= 3600;
        }
        let minutes = secs / 60;
        if minutes > 0 {
            out.push_str(&format!("{minutes}m"));
            secs %= 60;
        }
        let millis = d.subsec_millis();
        if millis > 0 {
            out.push_str(format!("{secs}.{millis:03}").trim_end_matches('0'));
            out.push('s');
        } else if secs > 0 || out.is_empty() {
            out.push_str(&format!("{secs}s"));
        }
        out
    }

    /// Go's `time.ParseDuration` (`1h30m`, `1.5s`), as the core reads durations.
    pub fn parse(text: &str) -> Result<Duration, String> {
        crate::driver::units::parse_duration(text.trim()).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::duration_text::{format, parse};
    use std::time::Duration;

    #[test]
    fn durations_parse_and_print_like_go() {
        assert_eq!(parse("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("0").unwrap(), Duration::ZERO);
        assert!(parse("10").is_err());
        assert!(parse("10x").is_err());
        assert!(parse("").is_err());
        // Fuzzing found this one panicking (float seconds out of Duration's range).
        assert!(parse("344444444444444444444s").is_err());
        assert_eq!(format(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format(Duration::from_millis(250)), "250ms");
        assert_eq!(format(Duration::from_secs(15)), "15s");
    }
}

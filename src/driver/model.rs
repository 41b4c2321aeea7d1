//! Values the core's operations take and return. Every mode translates these to its own
//! transport (gRPC messages, terminal lines, conformance results); none of them is
//! transport-specific.

use std::collections::BTreeMap;
use std::time::SystemTime;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// How a task ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitResult {
    pub exit_code: i32,
    /// Signal number that killed the main process, when podman tells us (exit codes
    /// above 128 are reported as `128 + signal` by the runtime).
    pub signal: i32,
    pub oom_killed: bool,
    pub err: Option<String>,
}

impl ExitResult {
    pub fn successful(&self) -> bool {
        self.exit_code == 0 && self.signal == 0 && !self.oom_killed && self.err.is_none()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskRunState {
    Unknown,
    Running,
    Exited,
}

#[derive(Debug, Clone)]
pub struct TaskStatus {
    pub id: String,
    pub name: String,
    pub state: TaskRunState,
    pub started_at: SystemTime,
    pub completed_at: Option<SystemTime>,
    pub exit_result: Option<ExitResult>,
    /// Container facts worth showing an operator (container id, image, name).
    pub attributes: BTreeMap<String, String>,
}

/// The network a task ended up in, as Nomad's `DriverNetwork` describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverNetwork {
    pub port_map: BTreeMap<String, u16>,
    pub ip: String,
    pub auto_advertise: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuStats {
    pub percent: f64,
    pub user_mode: f64,
    pub system_mode: f64,
    pub total_ticks: f64,
    pub throttled_periods: u64,
    pub throttled_time: u64,
    pub measured: Vec<&'static str>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemoryStats {
    pub rss: u64,
    pub cache: u64,
    pub swap: u64,
    pub usage: u64,
    pub max_usage: u64,
    pub measured: Vec<&'static str>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TaskStats {
    pub timestamp: SystemTime,
    pub cpu: CpuStats,
    pub memory: MemoryStats,
}

/// Annotation key of image pull progress events: the value is the image, the message is
/// podman's progress line. Frequent; a front-end shows them as a live line or drops them.
pub const PULL_PROGRESS_ANNOTATION: &str = "image_pull_progress";
/// Annotation of a task event that is a warning for the operator (its value says what
/// about); the modes also log such events.
pub const WARNING_ANNOTATION: &str = "warning";

/// Something that happened to a task that an operator should see (image pulls,
/// podman warnings, garbage collection). An event about the driver itself rather than one
/// task has an empty `task_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskEvent {
    pub task_id: String,
    pub alloc_id: String,
    pub task_name: String,
    pub message: String,
    pub annotations: BTreeMap<String, String>,
    pub timestamp: SystemTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Unhealthy,
    Undetected,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Attribute {
    String(String),
    Bool(bool),
    Int(i64),
    Float(f64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fingerprint {
    pub health: Health,
    pub description: String,
    pub attributes: BTreeMap<String, Attribute>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminalSize {
    pub height: u16,
    pub width: u16,
}

/// The caller's side of a streaming exec session. Output channels are closed by the
/// core when the session ends; dropping `stdin` closes the process's stdin.
pub struct ExecIo {
    pub stdin: Option<mpsc::Receiver<Bytes>>,
    pub resize: Option<mpsc::Receiver<TerminalSize>>,
    pub stdout: mpsc::Sender<Bytes>,
    pub stderr: mpsc::Sender<Bytes>,
}

//! What the core persists about a running task so that a fresh process can pick it up
//! again (`Driver::recover`). The plugin stores it as Nomad driver state; the runner finds
//! the same facts again from container labels.

use std::path::PathBuf;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::logs::{Rotation, SinkKind};
use super::model::DriverNetwork;

/// Bumped whenever a field changes meaning. Version 1 is the Go plugin's `TaskState`,
/// which the plugin mode translates into this shape.
pub const TASK_STATE_VERSION: u32 = 2;

/// Where a task's output goes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogTarget {
    /// The core follows the container's log stream and writes stdout and stderr here.
    pub forward: bool,
    pub stdout_path: Option<PathBuf>,
    pub stderr_path: Option<PathBuf>,
    /// A regular file that also gets both streams, in order and stamped
    /// ([`journal`](crate::driver::logs::journal)).
    #[serde(default)]
    pub journal_path: Option<PathBuf>,
    /// The allocation dir the paths are in: links are never followed below it.
    #[serde(default)]
    pub root: Option<PathBuf>,
    #[serde(default)]
    pub sink_kind: SinkKind,
    /// File sinks rotate: their paths are then bases, written as `<path>.<index>`.
    #[serde(default)]
    pub rotation: Option<Rotation>,
    /// The task's own directory (no container mounts it): where the forwarding position
    /// is kept, so a restarted plugin resumes where this one stopped.
    #[serde(default)]
    pub task_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskState {
    pub version: u32,
    pub task_id: String,
    pub task_name: String,
    pub alloc_id: String,
    pub container_id: String,
    pub container_name: String,
    /// Name of the configured podman socket the container lives on.
    pub socket: String,
    pub started_at: SystemTime,
    pub log: LogTarget,
    pub network: Option<DriverNetwork>,
    /// Image the container was created from (reference counting for image GC).
    #[serde(default)]
    pub image_id: String,
    #[serde(default)]
    pub kill_signal: Option<String>,
}

//! Errors of the driver core. Each names the task it concerns and, where podman was
//! involved, what podman said.

use super::config::ConfigError;
use super::logs::LogError;
use super::podman::PodmanError;
use super::spec::SpecError;

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("task {0:?} not found")]
    TaskNotFound(String),

    #[error("task with ID {0:?} already started")]
    AlreadyStarted(String),

    #[error("task {task}: {source}")]
    Config {
        task: String,
        #[source]
        source: ConfigError,
    },

    #[error("invalid plugin configuration: {0}")]
    PluginConfig(#[source] ConfigError),

    #[error("task {task}: {source}")]
    Spec {
        task: String,
        #[source]
        source: SpecError,
    },

    #[error("task {task}: podman client with name {socket:?} not found, check your podman driver config")]
    UnknownSocket { task: String, socket: String },

    #[error("task {task}: network {network:?} not found, verify with: podman network ls")]
    NetworkNotFound { task: String, network: String },

    #[error("task {task}: failed to prepare image {image}: {message}")]
    Image {
        task: String,
        image: String,
        message: String,
        /// False when trying again cannot help (a missing `localhost/` image).
        recoverable: bool,
    },

    #[error("task {task}: {action}: {source}")]
    Podman {
        task: String,
        action: &'static str,
        #[source]
        source: PodmanError,
    },

    #[error("task {task}: {source}")]
    Logs {
        task: String,
        #[source]
        source: LogError,
    },

    #[error("task {task}: no statistics: {reason}")]
    StatsUnavailable { task: String, reason: String },

    #[error("task {task}: cannot destroy a running task without force")]
    StillRunning { task: String },

    #[error("task {task}: exec timed out after {seconds}s")]
    ExecTimeout { task: String, seconds: u64 },

    #[error("task {task}: {message}")]
    Io { task: String, message: String },
}

impl DriverError {
    /// Whether trying the same call again may succeed (podman briefly unreachable,
    /// a stale container still being removed). Configuration mistakes are never retried.
    pub fn is_recoverable(&self) -> bool {
        match self {
            DriverError::Podman { source, .. } => source.is_unavailable(),
            DriverError::Image { recoverable, .. } => *recoverable,
            DriverError::Io { .. } => true,
            _ => false,
        }
    }

    pub(crate) fn podman<'a>(
        task: &'a str,
        action: &'static str,
    ) -> impl FnOnce(PodmanError) -> Self + 'a {
        move |source| DriverError::Podman {
            task: task.to_string(),
            action,
            source,
        }
    }
}

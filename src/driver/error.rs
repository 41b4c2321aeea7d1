//! Errors of the driver core. Each names the task it concerns and, where podman was
//! involved, what podman said.

use super::config::ConfigError;
use super::image::ImageError;
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

    #[error("task {task}: podman started the container {attempts} times without the network interface it has on record (only lo in its namespace: a rootless podman race with another container's network teardown)")]
    NetworkLost { task: String, attempts: usize },

    #[error("task {task}: failed to prepare image {image}: {source}")]
    Image {
        task: String,
        image: String,
        /// Boxed: most results of the driver carry no image error, and it is large.
        #[source]
        source: Box<ImageError>,
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

    /// Local work for the task failed; `context` says which.
    #[error("task {task}: {context}: {source}")]
    Io {
        task: String,
        context: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl DriverError {
    /// Whether trying the same call again may succeed (podman briefly unreachable,
    /// a stale container still being removed). Configuration mistakes are never retried.
    pub fn is_recoverable(&self) -> bool {
        match self {
            DriverError::Podman { source, .. } => source.is_unavailable(),
            // A missing `localhost/` image or a bad reference stays so.
            DriverError::Image { source, .. } => source.is_recoverable(),
            DriverError::Io { .. } => true,
            _ => false,
        }
    }

    /// Why the task's image could not be made available, when that is the error.
    pub fn image_error(&self) -> Option<&ImageError> {
        match self {
            DriverError::Image { source, .. } => Some(source),
            _ => None,
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

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn an_image_error_is_kept_as_the_source_with_its_recoverability() {
        let missing = DriverError::Image {
            task: "a/t/1".into(),
            image: "localhost/x:1".into(),
            source: Box::new(ImageError::NotFoundLocally {
                image: "localhost/x:1".into(),
            }),
        };
        assert!(missing
            .to_string()
            .starts_with("task a/t/1: failed to prepare image localhost/x:1: image localhost/x:1 not found locally"));
        assert!(matches!(
            missing.image_error(),
            Some(ImageError::NotFoundLocally { .. })
        ));
        assert!(missing
            .source()
            .is_some_and(|s| s.to_string().starts_with("image localhost/x:1 not found")));
        assert!(!missing.is_recoverable());
        let timeout = DriverError::Image {
            task: "a/t/1".into(),
            image: "x".into(),
            source: Box::new(ImageError::Timeout {
                image: "x".into(),
                timeout: std::time::Duration::from_secs(5),
            }),
        };
        assert!(timeout.is_recoverable());
    }

    #[test]
    fn io_errors_keep_their_source_and_say_what_failed() {
        let e = DriverError::Io {
            task: "a/t/1".into(),
            context: "building the container spec failed",
            source: std::io::Error::other("background task failed"),
        };
        assert_eq!(
            e.to_string(),
            "task a/t/1: building the container spec failed: background task failed"
        );
        assert!(e.source().is_some_and(|s| s.is::<std::io::Error>()));
        assert!(e.is_recoverable());
    }
}

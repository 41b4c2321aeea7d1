//! Typed failures of libpod calls.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

/// The underlying cause of a transport failure (I/O or HTTP protocol).
pub type TransportCause = Arc<dyn std::error::Error + Send + Sync>;

/// A failed libpod call. Every variant names the operation (e.g. `inspect container web-1`)
/// and, when podman answered, podman's own message.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PodmanError {
    #[error("{operation}: not found: {message}")]
    NotFound { operation: String, message: String },
    #[error("{operation}: conflict: {message}")]
    Conflict { operation: String, message: String },
    #[error("{operation}: podman answered {status}: {message}")]
    Server {
        operation: String,
        status: u16,
        message: String,
    },
    /// Podman accepted the request but reported a failure in the reply body
    /// (an `error` line of a pull, a removal report, the error channel of a stream).
    #[error("{operation}: {message}")]
    Failed { operation: String, message: String },
    #[error("{operation}: cannot talk to podman at {endpoint}: {source}")]
    Transport {
        operation: String,
        endpoint: String,
        #[source]
        source: TransportCause,
    },
    #[error("{operation}: no answer from podman within {timeout:?}")]
    Timeout {
        operation: String,
        timeout: Duration,
    },
    #[error("{operation}: cannot decode podman's reply: {message}")]
    Decode { operation: String, message: String },
    #[error("invalid podman socket {socket:?}: {reason}")]
    InvalidSocket { socket: String, reason: String },
}

impl PodmanError {
    /// True for "no such container/image/exec session".
    pub fn is_not_found(&self) -> bool {
        matches!(self, PodmanError::NotFound { .. })
    }

    /// True when a create failed because the container name is taken (podman 4 answers
    /// 500 with this cause, podman 5 409).
    pub fn is_name_in_use(&self) -> bool {
        match self {
            PodmanError::Conflict { .. } => true,
            PodmanError::Server { message, .. } => message.contains("name is already in use"),
            _ => false,
        }
    }

    /// True when a create failed because podman has no such image.
    pub fn is_image_unknown(&self) -> bool {
        match self {
            PodmanError::NotFound { message, .. } | PodmanError::Server { message, .. } => {
                message.contains("image not known") || message.contains("no such image")
            }
            _ => false,
        }
    }

    /// True when podman could not be reached or did not answer in time: retrying may help.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            PodmanError::Transport { .. } | PodmanError::Timeout { .. }
        )
    }

    /// True for podman's answer to a nil-pointer panic in its own handler: podman 4.3
    /// answers an image (or container) inspect with 500 "runtime error: invalid memory
    /// address or nil pointer dereference" while another client changes images at the same
    /// time. The state it read was mid-change; an idempotent read asked again succeeds.
    pub fn is_transient_panic(&self) -> bool {
        matches!(
            self,
            PodmanError::Server { status: 500, message, .. }
                if message.contains("invalid memory address or nil pointer dereference")
        )
    }

    /// True for podman's 500 when a container's process ended while podman read its
    /// `/proc/<pid>/...` files (seen on rootless podman 4.3: an inspect right after the
    /// start of a task that exits at once: "read /proc/19190/cgroup: no such file or
    /// directory"; rootful podman 4.3, when the process ends between podman's open and
    /// read: "read /proc/16099/cgroup: no such process"). Asked again, podman reports the
    /// exited container.
    pub fn is_vanished_process(&self) -> bool {
        matches!(
            self,
            PodmanError::Server { status: 500, message, .. }
                if message.contains("/proc/")
                    && (message.contains("no such file or directory")
                        || message.contains("no such process"))
        )
    }

    /// True when podman refuses an operation because of the container's state ("container
    /// state improper: stopped"): a kill of a container whose process just ended, which
    /// podman noticed first. The container is not running: nothing to signal.
    pub fn is_state_improper(&self) -> bool {
        matches!(
            self,
            PodmanError::Server { message, .. } | PodmanError::Conflict { message, .. }
                if message.contains("container state improper")
        )
    }

    /// Whether an idempotent read that failed this way is worth asking again.
    pub fn is_retryable_read(&self) -> bool {
        self.is_transient_panic() || self.is_vanished_process()
    }

    /// Maps a non-success reply to a typed error, keeping podman's message.
    pub(crate) fn from_status(operation: &str, status: u16, body: &[u8]) -> Self {
        let message = error_message(body);
        let operation = operation.to_string();
        match status {
            404 => PodmanError::NotFound { operation, message },
            409 => PodmanError::Conflict { operation, message },
            _ => PodmanError::Server {
                operation,
                status,
                message,
            },
        }
    }
}

/// Podman's JSON error body: `{"cause", "message", "response"}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ErrorBody {
    message: Option<String>,
    cause: Option<String>,
}

/// The most specific text in an error body: `message`, else `cause`, else the raw body.
fn error_message(body: &[u8]) -> String {
    if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) {
        if let Some(m) = parsed.message.filter(|m| !m.is_empty()) {
            return m;
        }
        if let Some(c) = parsed.cause.filter(|c| !c.is_empty()) {
            return c;
        }
    }
    let text = String::from_utf8_lossy(body).trim().to_string();
    if text.is_empty() {
        "(empty reply)".to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_kill_of_a_stopped_container_is_told_apart() {
        let body = br#"{"cause":"container state improper","message":"can only kill running containers. a497b6 is in state stopped: container state improper","response":500}"#;
        assert!(PodmanError::from_status("kill", 500, body).is_state_improper());
        assert!(PodmanError::from_status("kill", 409, body).is_state_improper());
        let other = br#"{"message":"something else","response":500}"#;
        assert!(!PodmanError::from_status("kill", 500, other).is_state_improper());
    }

    #[test]
    fn status_codes_map_to_variants_with_podmans_message() {
        let body = br#"{"cause":"no such container","message":"no container with name or ID \"x\" found: no such container","response":404}"#;
        let e = PodmanError::from_status("inspect container x", 404, body);
        assert!(e.is_not_found());
        assert_eq!(
            e.to_string(),
            "inspect container x: not found: no container with name or ID \"x\" found: no such container"
        );
        let e = PodmanError::from_status("kill container x", 409, br#"{"message":"not running"}"#);
        assert!(matches!(e, PodmanError::Conflict { ref message, .. } if message == "not running"));
        let taken = br#"{"cause":"that name is already in use","message":"creating container storage: the container name \"tt\" is already in use by 20ac. You have to remove that container to be able to reuse that name: that name is already in use","response":500}"#;
        assert!(PodmanError::from_status("create container", 500, taken).is_name_in_use());
        assert!(PodmanError::from_status("create container", 409, b"{}").is_name_in_use());
        let no_image = br#"{"cause":"image not known","message":"localhost/nope:latest: image not known","response":500}"#;
        let e = PodmanError::from_status("create container", 500, no_image);
        assert!(e.is_image_unknown() && !e.is_name_in_use());
        let e = PodmanError::from_status("create container", 500, br#"{"cause":"boom"}"#);
        assert!(!e.is_image_unknown() && !e.is_name_in_use());
        assert!(
            matches!(e, PodmanError::Server { status: 500, ref message, .. } if message == "boom")
        );
    }

    #[test]
    fn only_podmans_nil_pointer_500_is_a_transient_panic() {
        let panic = br#"{"cause":"runtime error: invalid memory address or nil pointer dereference","message":"runtime error: invalid memory address or nil pointer dereference","response":500}"#;
        assert!(PodmanError::from_status("inspect image x", 500, panic).is_transient_panic());
        assert!(!PodmanError::from_status("inspect image x", 502, panic).is_transient_panic());
        assert!(!PodmanError::from_status("inspect image x", 500, b"{}").is_transient_panic());
        assert!(!PodmanError::from_status("inspect image x", 404, panic).is_transient_panic());
        assert!(PodmanError::from_status("inspect image x", 500, panic).is_retryable_read());
    }

    #[test]
    fn a_process_gone_during_inspect_is_retryable() {
        let gone = br#"{"cause":"no such file or directory","message":"read /proc/19190/cgroup: no such file or directory","response":500}"#;
        let e = PodmanError::from_status("inspect container x", 500, gone);
        assert!(e.is_vanished_process() && e.is_retryable_read());
        // Seen on the rootful lane: the process ended between podman's open and read.
        let ended = br#"{"cause":"no such process","message":"read /proc/16099/cgroup: no such process","response":500}"#;
        let e = PodmanError::from_status("inspect container x", 500, ended);
        assert!(e.is_vanished_process() && e.is_retryable_read());
        let other = br#"{"message":"open /etc/x: no such file or directory"}"#;
        assert!(!PodmanError::from_status("inspect container x", 500, other).is_retryable_read());
    }

    #[test]
    fn non_json_bodies_are_kept_as_text() {
        let e = PodmanError::from_status("ping", 502, b"bad gateway\n");
        assert_eq!(e.to_string(), "ping: podman answered 502: bad gateway");
        let e = PodmanError::from_status("ping", 500, b"");
        assert!(e.to_string().ends_with("(empty reply)"));
    }
}

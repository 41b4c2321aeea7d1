//! Runner errors and the process exit codes they map to.

use std::path::PathBuf;

use super::jobspec::JobFileErrors;

/// Exit codes of the runner's commands (documented in docs/runner.md).
pub mod exit_code {
    /// Success; also a run stopped with Ctrl-C or `stop`.
    pub const OK: i32 = 0;
    /// A task failed for good (restarts used up, or it could not start).
    pub const TASK_FAILED: i32 = 1;
    /// Bad command-line usage (clap's own code).
    pub const USAGE: i32 = 2;
    /// The job file (or a variable file / -var) has errors.
    pub const JOB_FILE: i32 = 3;
    /// The podman API could not be reached.
    pub const PODMAN_UNREACHABLE: i32 = 4;
    /// Anything else went wrong in the runner (state dir, podman API errors, unknown job).
    pub const RUNNER: i32 = 5;
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    JobFile(JobFileErrors),
    #[error("podman is not reachable at {socket}: {reason}")]
    PodmanUnreachable { socket: String, reason: String },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    StateDir(#[from] super::statedir::StateDirError),
    #[error("job id {0:?} cannot name a state directory: it must be one path component (no '/', not '.' or '..')")]
    JobIdNotAPathComponent(String),
    #[error("no containers of job {0:?} found (is it running?)")]
    JobNotFound(String),
    #[error("job {job:?} is already running (see `{bin} ps {job}`): run it with --replace to stop it in Nomad's order and run this job file, or stop it first with `{bin} stop {job}`")]
    AlreadyRunning {
        job: String,
        /// How to call this binary again (`ConnectionArgs::invocation`).
        bin: String,
    },
    /// Podman answered, but not what the runner needed.
    #[error(transparent)]
    Podman(#[from] crate::driver::podman::PodmanError),
    /// A state file of the runner that does not read as what it wrote.
    #[error("{}: {source}", path.display())]
    StateFile {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A document the runner writes (manifest, `ps --json`) could not be encoded.
    #[error(transparent)]
    Encode(#[from] serde_json::Error),
    #[error("job {job:?} has no task {task:?}")]
    NoSuchTask { job: String, task: String },
    #[error("group {group:?}: {source}")]
    Ports {
        group: String,
        #[source]
        source: super::ports::PortError,
    },
    /// Work the runner handed to a thread or blocking task never finished.
    #[error("{context}: {source}")]
    Worker {
        context: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("no podman socket configured")]
    NoSocket,
    #[error("cannot read this process's /proc/self/stat")]
    NoProcessIdentity,
    /// The job file reader's thread ended without an answer (it panicked).
    #[error("reading the job file stopped")]
    JobFileReaderGone,
    /// No podman answered at `socket`, and the private service the runner then starts did
    /// not come up either.
    #[error("podman is not reachable at {socket}: {reason}; and no private service could be started: {source}")]
    NoPrivateService {
        socket: String,
        reason: String,
        #[source]
        source: super::service::ServiceError,
    },
    /// A bridge group needs the runner's pause image, which could not be made.
    #[error("bridge network: {0}, or pass --infra-image IMAGE")]
    PauseImage(#[source] crate::driver::image::pause::PauseImageError),
    /// A command-line value the runner cannot use (exit 2, like clap's own errors).
    #[error("{0}")]
    Usage(String),
}

impl RunError {
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::JobFile(_) => exit_code::JOB_FILE,
            RunError::Usage(_) => exit_code::USAGE,
            RunError::PodmanUnreachable { .. } | RunError::NoPrivateService { .. } => {
                exit_code::PODMAN_UNREACHABLE
            }
            RunError::Io { .. }
            | RunError::StateDir(_)
            | RunError::JobIdNotAPathComponent(_)
            | RunError::JobNotFound(_)
            | RunError::AlreadyRunning { .. }
            | RunError::Podman(_)
            | RunError::StateFile { .. }
            | RunError::Encode(_)
            | RunError::NoSuchTask { .. }
            | RunError::Ports { .. }
            | RunError::Worker { .. }
            | RunError::NoSocket
            | RunError::NoProcessIdentity
            | RunError::JobFileReaderGone
            | RunError::PauseImage(_) => exit_code::RUNNER,
        }
    }

    pub fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> RunError {
        let path = path.into();
        move |source| RunError::Io { what, path, source }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn typed_errors_read_as_the_messages_they_replaced() {
        let e = RunError::NoSuchTask {
            job: "web".into(),
            task: "api".into(),
        };
        assert_eq!(e.to_string(), r#"job "web" has no task "api""#);
        let bad = serde_json::from_slice::<serde_json::Value>(b"{").expect_err("truncated");
        let e = RunError::StateFile {
            path: "/state/web/manifest.json".into(),
            source: bad,
        };
        assert!(
            e.to_string().starts_with("/state/web/manifest.json: EOF"),
            "{e}"
        );
        assert!(e.source().is_some_and(|s| s.is::<serde_json::Error>()));
        let e = RunError::Worker {
            context: "reading the logs failed",
            source: "task panicked".into(),
        };
        assert_eq!(e.to_string(), "reading the logs failed: task panicked");
        assert_eq!(e.exit_code(), exit_code::RUNNER);

        let e = RunError::NoPrivateService {
            socket: "unix:///run/podman/podman.sock".into(),
            reason: "connection refused".into(),
            source: super::super::service::ServiceError::Spawn(std::io::Error::from(
                std::io::ErrorKind::NotFound,
            )),
        };
        assert_eq!(
            e.to_string(),
            "podman is not reachable at unix:///run/podman/podman.sock: connection refused; \
             and no private service could be started: cannot start `podman system service`: \
             entity not found"
        );
        assert!(e.source().is_some_and(|s| s.source().is_some()));
        assert_eq!(e.exit_code(), exit_code::PODMAN_UNREACHABLE);
        let e = RunError::PauseImage(crate::driver::image::pause::PauseImageError::NoCatatonit);
        assert!(
            e.to_string()
                .starts_with("bridge network: no catatonit found to make the pause image from"),
            "{e}"
        );
        assert_eq!(e.exit_code(), exit_code::RUNNER);
    }
}

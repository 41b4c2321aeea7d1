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
    #[error("{0}")]
    Other(String),
    /// A command-line value the runner cannot use (exit 2, like clap's own errors).
    #[error("{0}")]
    Usage(String),
}

impl RunError {
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::JobFile(_) => exit_code::JOB_FILE,
            RunError::Usage(_) => exit_code::USAGE,
            RunError::PodmanUnreachable { .. } => exit_code::PODMAN_UNREACHABLE,
            RunError::Io { .. }
            | RunError::StateDir(_)
            | RunError::JobIdNotAPathComponent(_)
            | RunError::JobNotFound(_)
            | RunError::AlreadyRunning { .. }
            | RunError::Other(_) => exit_code::RUNNER,
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

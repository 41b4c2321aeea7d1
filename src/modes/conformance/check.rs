//! What a check is: a name, tags, a precondition that can skip it with a reason, and a
//! run that reports a [`Finding`] or a [`Failure`]. Cleanup is not the check's job: every
//! task and image a check creates goes through its [`Scope`](super::scope::Scope), which the
//! runner empties after the run whether it passed, failed, timed out or was interrupted.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use super::env::Env;
use super::scope::Scope;

/// Groups of checks; `--only`/`--skip` match them by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tag {
    /// Quick checks that say whether the socket is usable at all.
    Smoke,
    /// The libpod API itself (raw calls).
    Api,
    Image,
    /// Needs `--registry`.
    Registry,
    Lifecycle,
    Resources,
    Security,
    Network,
    Logs,
    Exec,
    Stats,
    Signals,
    Recovery,
    Cleanup,
    /// Task options of the Go plugin that need no special group.
    Options,
    /// Behaviour that differs for rootless podman.
    Rootless,
}

impl Tag {
    pub fn as_str(self) -> &'static str {
        match self {
            Tag::Smoke => "smoke",
            Tag::Api => "api",
            Tag::Image => "image",
            Tag::Registry => "registry",
            Tag::Lifecycle => "lifecycle",
            Tag::Resources => "resources",
            Tag::Security => "security",
            Tag::Network => "network",
            Tag::Logs => "logs",
            Tag::Exec => "exec",
            Tag::Stats => "stats",
            Tag::Signals => "signals",
            Tag::Recovery => "recovery",
            Tag::Cleanup => "cleanup",
            Tag::Options => "options",
            Tag::Rootless => "rootless",
        }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a check did not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip(pub String);

/// A check's conclusion when nothing went wrong on the harness's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The feature works; the message says what was observed.
    Pass(String),
    /// The check observed the difference described by drift `id` (see [`super::drift`]);
    /// whether that is degraded, handled or a failure depends on the podman under test.
    Drift { id: &'static str, observed: String },
    /// The feature cannot be checked here, found out only while running (e.g. podman
    /// refused a log driver it does not have).
    Skip(String),
}

impl Finding {
    pub fn pass(message: impl Into<String>) -> Finding {
        Finding::Pass(message.into())
    }

    pub fn drift(id: &'static str, observed: impl Into<String>) -> Finding {
        Finding::Drift {
            id,
            observed: observed.into(),
        }
    }
}

/// The feature does not work as the driver needs: what was expected and what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(pub String);

impl Failure {
    pub fn new(message: impl Into<String>) -> Failure {
        Failure(message.into())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Any error a check step can hit becomes a failure carrying its message.
impl<E: std::error::Error> From<E> for Failure {
    fn from(err: E) -> Failure {
        Failure(err.to_string())
    }
}

/// `ensure!(cond, "format", args)`: fail the check with the message unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($message:tt)+) => {
        if !$cond {
            return Err($crate::modes::conformance::check::Failure(format!($($message)+)));
        }
    };
}
pub(crate) use ensure;

/// The result type of [`Check::run`].
pub type Outcome = Result<Finding, Failure>;

/// One probe of the driver core (or of the libpod API, for the `api` checks).
#[async_trait]
pub trait Check: Send + Sync {
    /// Unique, dotted: `<group>.<feature>`, e.g. `resources.memory`.
    fn name(&self) -> &'static str;

    fn tags(&self) -> &'static [Tag];

    /// Returns a skip reason when the check cannot run against this podman; the default
    /// asks for a reachable API and a usable test image.
    fn precondition(&self, env: &Env) -> Result<(), Skip> {
        env.require_image()
    }

    /// Upper bound of one run, cleanup excluded.
    fn deadline(&self) -> Duration {
        Duration::from_secs(90)
    }

    async fn run(&self, env: &Env, scope: &Scope) -> Outcome;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failing_step(fail: bool) -> Result<u32, Failure> {
        ensure!(!fail, "step failed: {}", 42);
        Ok(1)
    }

    #[test]
    fn ensure_returns_a_failure_with_the_message() {
        assert_eq!(failing_step(false), Ok(1));
        assert_eq!(
            failing_step(true),
            Err(Failure("step failed: 42".to_string()))
        );
    }

    #[test]
    fn errors_convert_to_failures() {
        let err = "x".parse::<u32>().unwrap_err();
        let failure: Failure = err.into();
        assert_eq!(failure.0, "invalid digit found in string");
    }
}

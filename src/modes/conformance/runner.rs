//! Runs the selected checks against one socket: precondition, run under a deadline and
//! Ctrl-C, cleanup of the check's scope, drift resolution; then the final sweep.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::check::{Check, Failure, Finding};
use super::cli::SocketTarget;
use super::drift;
use super::env::{Env, TestImage};
use super::facts::ServiceFacts;
use super::report::{CheckResult, DriftNote, SocketReport, Status, Summary};
use super::scope::Scope;

/// Runs `checks` in order against `env`.
pub async fn run_socket(
    env: &Env,
    checks: &[&dyn Check],
    cancel: &CancellationToken,
) -> SocketReport {
    let started = Instant::now();
    let progress = Progress::new(&env.target.name, checks.len());
    let mut results = Vec::with_capacity(checks.len());
    for (index, check) in checks.iter().enumerate() {
        progress.show(index, check.name());
        results.push(run_one(env, *check, cancel).await);
    }
    progress.clear();
    let sweep_started = Instant::now();
    let leftovers = final_sweep(env).await;
    if !leftovers.is_empty() {
        // Each check cleans up after itself; whatever the sweep finds is a leak.
        results.push(CheckResult {
            name: "cleanup.final-sweep".to_string(),
            tags: vec!["cleanup".to_string()],
            status: Status::Fail,
            message: format!(
                "containers left by the run (now removed): {}",
                leftovers.join(", ")
            ),
            duration: sweep_started.elapsed(),
            drift: None,
        });
    }
    SocketReport {
        name: env.target.name.clone(),
        url: env.target.url.clone(),
        facts: env.facts.as_ref().ok().cloned(),
        summary: Summary::of(&results),
        duration: started.elapsed(),
        checks: results,
    }
}

/// The report of a socket the suite could not set up at all (e.g. a malformed URL).
pub fn unusable_socket(target: &SocketTarget, error: &str) -> SocketReport {
    let checks = vec![CheckResult {
        name: "setup.driver".to_string(),
        tags: vec!["smoke".to_string()],
        status: Status::Fail,
        message: error.to_string(),
        duration: Duration::ZERO,
        drift: None,
    }];
    SocketReport {
        name: target.name.clone(),
        url: target.url.clone(),
        facts: None,
        summary: Summary::of(&checks),
        duration: Duration::ZERO,
        checks,
    }
}

async fn run_one(env: &Env, check: &dyn Check, cancel: &CancellationToken) -> CheckResult {
    let started = Instant::now();
    let result = |status, message: String, drift| CheckResult {
        name: check.name().to_string(),
        tags: check
            .tags()
            .iter()
            .map(|t| t.as_str().to_string())
            .collect(),
        status,
        message,
        duration: started.elapsed(),
        drift,
    };
    if cancel.is_cancelled() {
        return result(Status::Skip, "interrupted (Ctrl-C)".to_string(), None);
    }
    if let Err(skip) = check.precondition(env) {
        return result(Status::Skip, skip.0, None);
    }
    let scope = Scope::new(check.name());
    let deadline = check.deadline();
    let outcome = tokio::select! {
        outcome = tokio::time::timeout(deadline, check.run(env, &scope)) => match outcome {
            Ok(outcome) => outcome,
            Err(_) => Err(Failure(format!("did not finish within {}s", deadline.as_secs()))),
        },
        _ = cancel.cancelled() => Err(Failure::new("interrupted (Ctrl-C)")),
    };
    let problems = scope.cleanup(env).await;
    let (mut status, mut message, drift) = resolve(outcome, env.facts.as_ref().ok());
    if !problems.is_empty() {
        status = Status::Fail;
        message = format!("{message}; cleanup: {}", problems.join("; "));
    }
    result(status, message, drift)
}

/// Maps a check's outcome to a status, consulting the drift table for drift findings.
fn resolve(
    outcome: Result<Finding, Failure>,
    facts: Option<&ServiceFacts>,
) -> (Status, String, Option<DriftNote>) {
    let (id, observed) = match outcome {
        Ok(Finding::Pass(message)) => return (Status::Pass, message, None),
        Ok(Finding::Skip(reason)) => return (Status::Skip, reason, None),
        Err(Failure(message)) => return (Status::Fail, message, None),
        Ok(Finding::Drift { id, observed }) => (id, observed),
    };
    let Some(known) = drift::find(id) else {
        return (
            Status::Fail,
            format!("{observed} (unknown drift {id})"),
            None,
        );
    };
    let note = DriftNote {
        id: known.id.to_string(),
        scope: known.scope(),
        behaviour: known.behaviour.to_string(),
        impact: known.impact.to_string(),
    };
    match facts {
        Some(facts) if known.applies_to(facts) => {
            let status = match known.severity {
                drift::Severity::Degraded => Status::Degraded,
                drift::Severity::Handled => Status::Pass,
            };
            (status, observed, Some(note))
        }
        _ => {
            let version = facts.map_or("unknown", |f| f.podman_version.as_str());
            let message = format!(
                "{observed}: known drift {id} of {}, but not expected on podman {version}",
                known.scope()
            );
            (Status::Fail, message, Some(note))
        }
    }
}

/// Removes every container still carrying the run's label and the test image if this run
/// imported it; returns the names of the containers it had to remove.
async fn final_sweep(env: &Env) -> Vec<String> {
    if env.facts.is_err() {
        return Vec::new();
    }
    let leftovers = env
        .podman
        .remove_labelled(&[env.run_label()])
        .await
        .unwrap_or_else(|err| vec![format!("(sweep failed: {err})")]);
    if let Some(bystander) = &env.bystander {
        let _ = env.podman.remove_container(bystander).await;
    }
    if let TestImage::Ready {
        reference,
        imported: true,
    } = &env.image
    {
        // Best effort: a failure leaves only the image, which the next run reuses.
        let _ = env.podman.remove_image(reference).await;
    }
    leftovers
}

/// One-line progress on a terminal's stderr.
struct Progress<'a> {
    socket: &'a str,
    total: usize,
    enabled: bool,
}

impl<'a> Progress<'a> {
    fn new(socket: &'a str, total: usize) -> Progress<'a> {
        Progress {
            socket,
            total,
            enabled: std::io::stderr().is_terminal(),
        }
    }

    fn show(&self, index: usize, name: &str) {
        if self.enabled {
            let mut stderr = std::io::stderr();
            let _ = write!(
                stderr,
                "\r\x1b[2K[{}] {}/{} {name}",
                self.socket,
                index + 1,
                self.total
            );
            let _ = stderr.flush();
        }
    }

    fn clear(&self) {
        if self.enabled {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(version: &str, cgroup: &str) -> ServiceFacts {
        ServiceFacts::from_info(
            &serde_json::json!({
                "host": {"cgroupVersion": cgroup, "security": {"rootless": false}},
                "version": {"Version": version}
            }),
            true,
        )
    }

    #[test]
    fn plain_outcomes_map_directly() {
        let host = facts("4.3.1", "v1");
        assert_eq!(
            resolve(Ok(Finding::pass("ok")), Some(&host)),
            (Status::Pass, "ok".to_string(), None)
        );
        assert_eq!(
            resolve(Ok(Finding::Skip("no".into())), Some(&host)).0,
            Status::Skip
        );
        assert_eq!(
            resolve(Err(Failure::new("bad")), Some(&host)).0,
            Status::Fail
        );
    }

    #[test]
    fn drift_findings_follow_the_table() {
        let observed = || {
            Ok(Finding::drift(
                drift::ids::OOM_FLAG_UNSET,
                "exit 137, no flag",
            ))
        };
        let (status, message, note) = resolve(observed(), Some(&facts("4.3.1", "v1")));
        assert_eq!(status, Status::Degraded);
        assert_eq!(message, "exit 137, no flag");
        assert_eq!(note.unwrap().id, "oom-flag-unset");

        let (status, message, _) = resolve(observed(), Some(&facts("5.2.0", "v2")));
        assert_eq!(status, Status::Fail);
        assert!(
            message.contains("not expected on podman 5.2.0"),
            "{message}"
        );

        let handled = Ok(Finding::drift(
            drift::ids::STATS_STOPPED_EMPTY,
            "empty body",
        ));
        assert_eq!(
            resolve(handled, Some(&facts("4.3.1", "v1"))).0,
            Status::Pass
        );

        let unknown = Ok(Finding::drift("nope", "x"));
        assert_eq!(
            resolve(unknown, Some(&facts("4.3.1", "v1"))).0,
            Status::Fail
        );
    }
}

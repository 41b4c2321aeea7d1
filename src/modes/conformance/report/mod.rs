//! Results of a run and their renderings (table, json, junit, tap).

mod json;
mod junit;
mod table;
mod tap;

use std::time::Duration;

use serde::Serialize;

use super::cli::Format;
use super::facts::ServiceFacts;

/// The result of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    /// A known podman drift reduces the feature (see the result's `drift`).
    Degraded,
    Skip,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Degraded => "degraded",
            Status::Skip => "skip",
            Status::Fail => "fail",
        }
    }
}

/// `text` in the status's terminal color, when `color` is on.
pub fn paint(status: Status, text: &str, color: bool) -> String {
    if !color {
        return text.to_string();
    }
    let code = match status {
        Status::Pass => "32",
        Status::Degraded => "33",
        Status::Skip => "36",
        Status::Fail => "1;31",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// The known drift a result matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DriftNote {
    pub id: String,
    /// Versions and hosts it applies to.
    pub scope: String,
    pub behaviour: String,
    pub impact: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    pub name: String,
    pub tags: Vec<String>,
    pub status: Status,
    pub message: String,
    #[serde(serialize_with = "as_millis", rename = "duration_ms")]
    pub duration: Duration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftNote>,
}

/// Counts per status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub total: usize,
    pub passed: usize,
    pub degraded: usize,
    pub skipped: usize,
    pub failed: usize,
}

impl Summary {
    pub fn of<'a>(results: impl IntoIterator<Item = &'a CheckResult>) -> Summary {
        let mut summary = Summary::default();
        for result in results {
            summary.total += 1;
            match result.status {
                Status::Pass => summary.passed += 1,
                Status::Degraded => summary.degraded += 1,
                Status::Skip => summary.skipped += 1,
                Status::Fail => summary.failed += 1,
            }
        }
        summary
    }

    /// `41 checks: 35 passed, 2 degraded, 4 skipped, 0 failed`.
    pub fn line(&self) -> String {
        format!(
            "{} checks: {} passed, {} degraded, {} skipped, {} failed",
            self.total, self.passed, self.degraded, self.skipped, self.failed
        )
    }
}

/// Everything the suite found out about one socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SocketReport {
    pub name: String,
    pub url: String,
    /// `None` when the API did not answer `info`.
    pub facts: Option<ServiceFacts>,
    pub summary: Summary,
    #[serde(serialize_with = "as_millis", rename = "duration_ms")]
    pub duration: Duration,
    pub checks: Vec<CheckResult>,
}

/// A whole run, over one or more sockets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunReport {
    /// Version of this binary.
    pub driver_version: String,
    /// The run's label value (`io.nomad-driver-podman.conformance=<run_id>`).
    pub run_id: String,
    /// RFC 3339.
    pub started_at: String,
    pub summary: Summary,
    pub sockets: Vec<SocketReport>,
}

impl RunReport {
    /// 0 when no check failed on any socket, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        i32::from(self.summary.failed > 0)
    }
}

/// Renders `report` in `format`; `color` only affects the table.
pub fn render(report: &RunReport, format: Format, color: bool) -> String {
    match format {
        Format::Table => table::render(report, color),
        Format::Json => json::render(report),
        Format::Junit => junit::render(report),
        Format::Tap => tap::render(report),
    }
}

fn as_millis<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    pub fn result(name: &str, status: Status, message: &str) -> CheckResult {
        CheckResult {
            name: name.to_string(),
            tags: vec!["smoke".to_string()],
            status,
            message: message.to_string(),
            duration: Duration::from_millis(1500),
            drift: (status == Status::Degraded).then(|| DriftNote {
                id: "oom-flag-unset".to_string(),
                scope: "podman >= 4.3.0, < 4.4.0 on cgroup v1".to_string(),
                behaviour: "State.OOMKilled is never set".to_string(),
                impact: "exit 137 without the OOM flag".to_string(),
            }),
        }
    }

    /// One socket with one result of each status, and one unreachable socket.
    pub fn report() -> RunReport {
        let facts = ServiceFacts::from_info(
            &serde_json::json!({
                "host": {"cgroupVersion": "v1", "cgroupManager": "cgroupfs",
                         "ociRuntime": {"name": "runc"}, "networkBackend": "netavark",
                         "security": {"rootless": false}},
                "version": {"Version": "4.3.1", "APIVersion": "4.3.1"}
            }),
            true,
        );
        let local = vec![
            result("api.ping", Status::Pass, "API 4.3.1"),
            result("lifecycle.oom", Status::Degraded, "exit 137 & <no flag>"),
            result("logs.journald", Status::Skip, "no journald"),
            result("network.ports", Status::Fail, "port 8080 \"closed\""),
        ];
        let down = vec![result("api.ping", Status::Fail, "connection refused")];
        let sockets = vec![
            SocketReport {
                name: "local".to_string(),
                url: "unix:///run/podman/podman.sock".to_string(),
                facts: Some(facts),
                summary: Summary::of(&local),
                duration: Duration::from_secs(12),
                checks: local,
            },
            SocketReport {
                name: "down".to_string(),
                url: "unix:///nowhere.sock".to_string(),
                facts: None,
                summary: Summary::of(&down),
                duration: Duration::from_millis(3),
                checks: down,
            },
        ];
        RunReport {
            driver_version: "0.1.0".to_string(),
            run_id: "test-run".to_string(),
            started_at: "2026-01-01T00:00:00Z".to_string(),
            summary: Summary::of(sockets.iter().flat_map(|s| &s.checks)),
            sockets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_and_exit_code() {
        let report = fixtures::report();
        assert_eq!(
            report.summary,
            Summary {
                total: 5,
                passed: 1,
                degraded: 1,
                skipped: 1,
                failed: 2
            }
        );
        assert_eq!(report.exit_code(), 1);
        assert_eq!(
            report.summary.line(),
            "5 checks: 1 passed, 1 degraded, 1 skipped, 2 failed"
        );

        let mut clean = report.clone();
        clean.summary.failed = 0;
        assert_eq!(clean.exit_code(), 0);
    }
}

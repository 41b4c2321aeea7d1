//! TAP version 13 report: one test point per check and socket (`<socket>: <check>`), with a
//! YAML block of the details. Skips use the SKIP directive; "degraded" uses TODO (a known,
//! expected shortfall that is not a failure of the run).

use std::fmt::Write;

use super::{RunReport, Status};

pub fn render(report: &RunReport) -> String {
    let mut tap = String::from("TAP version 13\n");
    let _ = writeln!(tap, "1..{}", report.summary.total);
    let mut number = 0;
    for socket in &report.sockets {
        let facts = socket
            .facts
            .as_ref()
            .map(|facts| facts.summary())
            .unwrap_or_else(|| "host facts unavailable".to_string());
        let _ = writeln!(tap, "# socket {} ({}): {}", socket.name, socket.url, facts);
        for check in &socket.checks {
            number += 1;
            let description = format!("{}: {}", socket.name, check.name).replace('#', "\\#");
            let directive = match check.status {
                Status::Pass | Status::Fail => String::new(),
                Status::Skip => format!(" # SKIP {}", one_line(&check.message)),
                Status::Degraded => format!(
                    " # TODO degraded ({})",
                    check
                        .drift
                        .as_ref()
                        .map_or("unknown drift", |d| d.id.as_str())
                ),
            };
            let ok = match check.status {
                Status::Pass | Status::Skip => "ok",
                Status::Fail | Status::Degraded => "not ok",
            };
            let _ = writeln!(tap, "{ok} {number} - {description}{directive}");
            tap.push_str("  ---\n");
            let _ = writeln!(tap, "  status: {}", check.status.as_str());
            let _ = writeln!(tap, "  message: {}", yaml_string(&check.message));
            let _ = writeln!(tap, "  tags: [{}]", check.tags.join(", "));
            let _ = writeln!(tap, "  duration_ms: {}", check.duration.as_millis());
            if let Some(drift) = &check.drift {
                let _ = writeln!(tap, "  drift: {}", yaml_string(&drift.id));
                let _ = writeln!(tap, "  impact: {}", yaml_string(&drift.impact));
            }
            tap.push_str("  ...\n");
        }
    }
    let _ = writeln!(tap, "# {}", report.summary.line());
    tap
}

/// A JSON string is a valid YAML flow scalar.
fn yaml_string(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}

fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ").replace('#', "\\#")
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;

    #[test]
    fn plan_points_and_directives() {
        let tap = render(&fixtures::report());
        let points: Vec<&str> = tap
            .lines()
            .filter(|l| l.starts_with("ok ") || l.starts_with("not ok "))
            .collect();
        assert!(tap.starts_with("TAP version 13\n1..5\n# socket local "));
        assert_eq!(
            points,
            vec![
                "ok 1 - local: api.ping",
                "not ok 2 - local: lifecycle.oom # TODO degraded (oom-flag-unset)",
                "ok 3 - local: logs.journald # SKIP no journald",
                "not ok 4 - local: network.ports",
                "not ok 5 - down: api.ping",
            ]
        );
        assert!(tap.contains("  message: \"port 8080 \\\"closed\\\"\"\n"));
        assert!(tap.ends_with("# 5 checks: 1 passed, 1 degraded, 1 skipped, 2 failed\n"));
    }
}

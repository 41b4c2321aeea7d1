//! Human table: per socket a header with its host facts, one row per check, drift notes
//! under degraded rows, a summary line; with several sockets, the feature-by-socket matrix.

use std::fmt::Write;
use std::time::Duration;

use super::super::matrix::Matrix;
use super::{paint, RunReport, SocketReport, Status};

pub fn render(report: &RunReport, color: bool) -> String {
    let mut out = String::new();
    for socket in &report.sockets {
        write_socket(&mut out, socket, color);
    }
    if report.sockets.len() > 1 {
        out.push_str(&Matrix::of(report).render(color));
        out.push('\n');
        let status = if report.summary.failed > 0 {
            Status::Fail
        } else {
            Status::Pass
        };
        let line = format!("all sockets: {}", report.summary.line());
        let _ = writeln!(out, "{}", paint(status, &line, color));
    }
    out
}

fn write_socket(out: &mut String, socket: &SocketReport, color: bool) {
    let _ = writeln!(out, "socket {} ({})", socket.name, socket.url);
    match &socket.facts {
        Some(facts) => {
            let _ = writeln!(
                out,
                "  {} on {} {} ({}), storage {}",
                facts.summary(),
                facts.distribution,
                facts.arch,
                facts.kernel,
                facts.storage_driver
            );
        }
        None => out.push_str("  host facts unavailable\n"),
    }
    out.push('\n');
    let name_width = socket
        .checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(0)
        .max("CHECK".len());
    let _ = writeln!(
        out,
        "  {:<8}  {:<name_width$}  {:>6}  MESSAGE",
        "STATUS", "CHECK", "TIME"
    );
    let indent = 2 + 8 + 2 + name_width + 2 + 6 + 2;
    for check in &socket.checks {
        let label = format!("{:<8}", check.status.as_str().to_uppercase());
        let mut lines = check.message.lines();
        let _ = writeln!(
            out,
            "  {}  {:<name_width$}  {:>6}  {}",
            paint(check.status, &label, color),
            check.name,
            short(check.duration),
            lines.next().unwrap_or_default()
        );
        for line in lines {
            let _ = writeln!(out, "{:indent$}{}", "", line);
        }
        if let Some(drift) = &check.drift {
            let _ = writeln!(
                out,
                "{:indent$}known drift {} ({}): {}",
                "", drift.id, drift.scope, drift.behaviour
            );
            let _ = writeln!(out, "{:indent$}impact: {}", "", drift.impact);
        }
    }
    out.push('\n');
    let status = if socket.summary.failed > 0 {
        Status::Fail
    } else {
        Status::Pass
    };
    let line = format!(
        "{}: {} in {}",
        socket.name,
        socket.summary.line(),
        short(socket.duration)
    );
    let _ = writeln!(out, "{}\n", paint(status, &line, color));
}

/// `850ms`, `12.3s`, `2m05s`.
fn short(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis < 1000 {
        format!("{millis}ms")
    } else if millis < 60_000 {
        format!("{:.1}s", duration.as_secs_f64())
    } else {
        format!("{}m{:02}s", millis / 60_000, (millis / 1000) % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;

    #[test]
    fn rows_drift_notes_summaries_and_matrix() {
        let table = render(&fixtures::report(), false);
        assert!(table.starts_with("socket local (unix:///run/podman/podman.sock)\n"));
        assert!(table.contains("podman 4.3.1, rootful, cgroup v1 (cgroupfs), runc, netavark"));
        assert!(table.contains("  PASS      api.ping         1.5s  API 4.3.1\n"));
        assert!(table.contains("  FAIL      network.ports    1.5s  port 8080 \"closed\"\n"));
        assert!(
            table.contains("known drift oom-flag-unset (podman >= 4.3.0, < 4.4.0 on cgroup v1)")
        );
        assert!(
            table.contains("local: 4 checks: 1 passed, 1 degraded, 1 skipped, 1 failed in 12.0s")
        );
        assert!(table.contains("host facts unavailable"));
        assert!(table.contains("all sockets: 5 checks: 1 passed, 1 degraded, 1 skipped, 2 failed"));
        assert!(!table.contains('\u{1b}'));
    }

    #[test]
    fn colors_only_when_asked() {
        let table = render(&fixtures::report(), true);
        assert!(table.contains("\u{1b}[32mPASS    \u{1b}[0m"));
        assert!(table.contains("\u{1b}[1;31mFAIL    \u{1b}[0m"));
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(short(Duration::from_millis(850)), "850ms");
        assert_eq!(short(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(short(Duration::from_secs(125)), "2m05s");
    }
}

//! JUnit XML report: one `<testsuite>` per socket (its host facts as properties), one
//! `<testcase>` per check. JUnit has no "degraded": such cases pass and carry a `status`
//! property and the drift in `<system-out>`.

use std::fmt::Write;
use std::time::Duration;

use serde_json::Value;

use super::{CheckResult, RunReport, SocketReport, Status};

pub fn render(report: &RunReport) -> String {
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let total_time: Duration = report.sockets.iter().map(|s| s.duration).sum();
    let _ = writeln!(
        xml,
        "<testsuites name=\"nomad-driver-podman conformance\" tests=\"{}\" failures=\"{}\" \
         errors=\"0\" skipped=\"{}\" time=\"{}\">",
        report.summary.total,
        report.summary.failed,
        report.summary.skipped,
        seconds(total_time)
    );
    for socket in &report.sockets {
        write_suite(&mut xml, socket, report);
    }
    xml.push_str("</testsuites>\n");
    xml
}

fn write_suite(xml: &mut String, socket: &SocketReport, report: &RunReport) {
    let _ = writeln!(
        xml,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" \
         time=\"{}\" timestamp=\"{}\">",
        escape(&socket.name),
        socket.summary.total,
        socket.summary.failed,
        socket.summary.skipped,
        seconds(socket.duration),
        escape(&report.started_at)
    );
    xml.push_str("    <properties>\n");
    write_property(xml, 6, "url", &socket.url);
    write_property(xml, 6, "run_id", &report.run_id);
    write_property(xml, 6, "driver_version", &report.driver_version);
    if let Some(Value::Object(facts)) = socket
        .facts
        .as_ref()
        .and_then(|f| serde_json::to_value(f).ok())
    {
        for (key, value) in facts {
            let value = match value {
                Value::String(text) => text,
                Value::Array(items) => items
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            };
            write_property(xml, 6, &key, &value);
        }
    }
    xml.push_str("    </properties>\n");
    for check in &socket.checks {
        write_case(xml, socket, check);
    }
    xml.push_str("  </testsuite>\n");
}

fn write_case(xml: &mut String, socket: &SocketReport, check: &CheckResult) {
    let group = check.name.split('.').next().unwrap_or_default();
    let _ = write!(
        xml,
        "    <testcase classname=\"{}.{}\" name=\"{}\" time=\"{}\"",
        escape(&socket.name),
        escape(group),
        escape(&check.name),
        seconds(check.duration)
    );
    match check.status {
        Status::Pass => xml.push_str("/>\n"),
        Status::Skip => {
            let _ = writeln!(
                xml,
                ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                escape(&check.message)
            );
        }
        Status::Fail => {
            let _ = writeln!(
                xml,
                ">\n      <failure message=\"{}\" type=\"conformance\">{}</failure>\n    </testcase>",
                escape(&check.message),
                escape(&check.message)
            );
        }
        Status::Degraded => {
            xml.push_str(">\n      <properties>\n");
            write_property(xml, 8, "status", "degraded");
            let mut out = format!("degraded: {}", check.message);
            if let Some(drift) = &check.drift {
                write_property(xml, 8, "drift", &drift.id);
                let _ = write!(
                    out,
                    "\nknown drift {} ({}): {}\nimpact: {}",
                    drift.id, drift.scope, drift.behaviour, drift.impact
                );
            }
            let _ = writeln!(
                xml,
                "      </properties>\n      <system-out>{}</system-out>\n    </testcase>",
                escape(&out)
            );
        }
    }
}

fn write_property(xml: &mut String, indent: usize, name: &str, value: &str) {
    let _ = writeln!(
        xml,
        "{:indent$}<property name=\"{}\" value=\"{}\"/>",
        "",
        escape(name),
        escape(value)
    );
}

fn seconds(duration: Duration) -> String {
    format!("{:.3}", duration.as_secs_f64())
}

/// Escapes text for attributes and element content; characters XML 1.0 cannot carry
/// (C0 controls other than tab and newlines) become U+FFFD.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            '\n' => escaped.push_str("&#10;"),
            '\r' => escaped.push_str("&#13;"),
            '\t' => escaped.push_str("&#9;"),
            c if (c as u32) < 0x20 => escaped.push('\u{FFFD}'),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;

    #[test]
    fn one_suite_per_socket_with_facts_and_statuses() {
        let xml = render(&fixtures::report());
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites "));
        assert!(xml.contains("tests=\"5\" failures=\"2\" errors=\"0\" skipped=\"1\""));
        assert!(xml.contains("<testsuite name=\"local\" tests=\"4\" failures=\"1\""));
        assert!(xml.contains("<testsuite name=\"down\" tests=\"1\" failures=\"1\""));
        assert!(xml.contains("<property name=\"podman_version\" value=\"4.3.1\"/>"));
        assert!(
            xml.contains("<testcase classname=\"local.api\" name=\"api.ping\" time=\"1.500\"/>")
        );
        assert!(xml.contains("<skipped message=\"no journald\"/>"));
        assert!(xml.contains("<failure message=\"port 8080 &quot;closed&quot;\""));
        assert!(xml.contains("<property name=\"status\" value=\"degraded\"/>"));
        assert!(xml.contains(
            "<system-out>degraded: exit 137 &amp; &lt;no flag&gt;&#10;known drift oom-flag-unset"
        ));
        assert_eq!(xml.matches("<testcase ").count(), 5);
    }

    #[test]
    fn escapes_markup_and_control_characters() {
        assert_eq!(
            escape("a<b>&\"c'\u{1b}"),
            "a&lt;b&gt;&amp;&quot;c&apos;\u{FFFD}"
        );
    }
}

//! e2e: `nomad-driver-podman conformance` against the private podman service of the test
//! bed, against a socket nothing listens on, and its JUnit and TAP output.

use std::path::Path;
use std::process::{Command, Output};

use quick_xml::events::{BytesStart, Event};
use serde_json::Value;

use crate::support;

/// Runs the binary's `conformance` subcommand with `args`.
fn conformance(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nomad-driver-podman"))
        .arg("conformance")
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run nomad-driver-podman conformance")
}

fn socket_arg(name: &str) -> String {
    format!("{name}={}", support::podman().socket_url())
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("read the JSON report");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("JSON report: {e}\n{text}"))
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

/// The whole suite, with a registry that requires credentials and an HTTP log: every check
/// passes, is degraded by a known drift, or skips with a reason; nothing is left behind.
#[test]
fn full_suite_passes_or_skips_with_reasons() {
    let registry = support::auth_registry();
    let (user, password) = registry
        .credentials
        .clone()
        .expect("auth registry credentials");
    let dir = support::podman().scratch_dir("conformance-full");
    let report_path = dir.join("report.json");
    let http_log = dir.join("http.log");
    let registry_url = format!("http://{user}:{password}@{}", registry.host());
    let output = conformance(&[
        "--socket",
        &socket_arg("testbed"),
        "--image",
        support::BUSYBOX_IMAGE,
        "--registry",
        &registry_url,
        "--format",
        "json",
        "--output",
        report_path.to_str().expect("utf-8 path"),
        "--log-http",
        http_log.to_str().expect("utf-8 path"),
    ]);
    let report = read_json(&report_path);
    let socket = &report["sockets"][0];
    let checks = socket["checks"].as_array().expect("checks");
    let problems: Vec<String> = checks
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| format!("{}: {}", c["name"], c["message"]))
        .collect();
    assert!(
        problems.is_empty(),
        "failed checks:\n{}",
        problems.join("\n")
    );
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));

    for check in checks {
        let message = check["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{} has no message", check["name"]);
        match check["status"].as_str() {
            Some("pass") | Some("skip") => {}
            Some("degraded") => assert!(
                check["drift"]["id"].is_string() && check["drift"]["impact"].is_string(),
                "{} is degraded without a known drift",
                check["name"]
            ),
            other => panic!("{}: status {other:?}", check["name"]),
        }
    }
    let status_of = |name: &str| {
        checks
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["status"].as_str().unwrap_or_default().to_string())
            .unwrap_or_else(|| panic!("no check {name}"))
    };
    // What this host can do must really have run.
    for name in [
        "api.ping",
        "api.fingerprint",
        "image.resolve",
        "image.pull",
        "image.pull-auth-required",
        "lifecycle.exit-code",
        "lifecycle.stop-signal",
        "resources.memory",
        "security.cap-drop",
        "network.ports",
        "network.task-namespace",
        "logs.nomad",
        "exec.tty",
        "stats.shape",
        "recovery.running",
        "cleanup.run-label",
    ] {
        // Rootless on cgroup v1: no limits and no stats, degraded by their drifts.
        let drifted = support::lane().is_rootless()
            && socket["facts"]["cgroup_version"] == "v1"
            && matches!(name, "resources.memory" | "stats.shape");
        let wanted = if drifted { "degraded" } else { "pass" };
        assert_eq!(status_of(name), wanted, "{name}");
    }
    // Known drift on this host (podman 4.3.1, cgroup v1): OOM kills carry no flag
    // (rootless: no memory limit to exceed at all).
    let facts = &socket["facts"];
    if facts["podman_version"] == "4.3.1" && facts["cgroup_version"] == "v1" {
        assert_eq!(status_of("lifecycle.oom"), "degraded");
    }
    assert_eq!(facts["oci_runtime"], "runc");
    assert!(facts["rootless"].is_boolean());

    let run_label = format!(
        "io.nomad-driver-podman.conformance={}-testbed",
        report["run_id"].as_str().expect("run id")
    );
    assert_eq!(
        support::podman().containers_labelled(&run_label),
        Vec::<String>::new()
    );

    let log = std::fs::read_to_string(&http_log).expect("http log");
    assert!(
        log.contains("POST /v4.0.0/libpod/containers/create"),
        "http log lacks creates"
    );
    assert!(log.contains("GET /libpod/_ping"), "http log lacks the ping");
    // The pulls and pushes with credentials are logged with the credentials redacted, in
    // a file only its owner can read.
    let auth_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("x-registry-auth:"))
        .collect();
    assert!(
        !auth_lines.is_empty(),
        "http log lacks the authenticated pull"
    );
    for line in auth_lines {
        assert!(line.ends_with(": <redacted>"), "{line}");
    }
    assert!(
        !log.contains(&password),
        "the registry password is in the http log"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&http_log)
        .expect("http log")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "http log mode {mode:o}");
}

/// Nothing listens: the API checks fail and say why, the rest skip, the exit code is 1.
#[test]
fn unreachable_socket_fails_clearly() {
    let dir = support::podman().scratch_dir("conformance-down");
    let socket = format!("unix://{}", dir.join("nothing.sock").display());
    let output = conformance(&["--socket", &socket, "--only", "smoke", "--format", "json"]);
    assert_eq!(output.status.code(), Some(1), "stderr: {}", stderr(&output));
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    let checks = report["sockets"][0]["checks"].as_array().expect("checks");
    let ping = checks
        .iter()
        .find(|c| c["name"] == "api.ping")
        .expect("api.ping");
    assert_eq!(ping["status"], "fail");
    let message = ping["message"].as_str().unwrap_or_default();
    assert!(message.contains("nothing.sock"), "{message}");
    for check in checks {
        let status = check["status"].as_str().unwrap_or_default();
        assert!(
            status == "fail" || status == "skip",
            "{}: {status}",
            check["name"]
        );
        if status == "skip" {
            assert!(
                check["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("requires a reachable podman API"),
                "{}",
                check["message"]
            );
        }
    }
    assert_eq!(report["sockets"][0]["facts"], Value::Null);
}

/// JUnit output: one suite per socket, one case per check; the reachable socket has no
/// failure, the unreachable one does; the table shows the matrix.
#[test]
fn junit_report_and_matrix_over_two_sockets() {
    let dir = support::podman().scratch_dir("conformance-junit");
    let junit_path = dir.join("report.xml");
    let down = format!("down=unix://{}", dir.join("nothing.sock").display());
    let only = "^(api\\.(ping|version|info)|lifecycle\\.exit-zero)$";
    let output = conformance(&[
        "--socket",
        &socket_arg("up"),
        "--socket",
        &down,
        "--image",
        support::BUSYBOX_IMAGE,
        "--only",
        only,
        "--format",
        "junit",
        "--output",
        junit_path.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(output.status.code(), Some(1), "stderr: {}", stderr(&output));
    let xml = std::fs::read_to_string(&junit_path).expect("junit file");
    let suites = parse_junit(&xml);
    assert_eq!(suites.len(), 2, "{xml}");
    let (up, down) = (&suites[0], &suites[1]);
    assert_eq!(up.name, "up");
    assert_eq!(up.cases.len(), 4);
    assert!(
        up.cases.iter().all(|c| c.outcome == "pass"),
        "{:?}",
        up.cases
    );
    assert!(up.cases.iter().any(|c| c.name == "lifecycle.exit-zero"));
    assert_eq!(down.name, "down");
    let ping = down
        .cases
        .iter()
        .find(|c| c.name == "api.ping")
        .expect("api.ping");
    assert_eq!(ping.outcome, "failure");
    assert!(!ping.message.is_empty());
    let exit = down
        .cases
        .iter()
        .find(|c| c.name == "lifecycle.exit-zero")
        .expect("exit");
    assert_eq!(exit.outcome, "skipped");

    let table = conformance(&[
        "--socket",
        &socket_arg("up"),
        "--socket",
        &format!("down=unix://{}", dir.join("nothing.sock").display()),
        "--only",
        "^api\\.ping$",
    ]);
    let text = String::from_utf8_lossy(&table.stdout);
    let matrix: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("CHECK  "))
        .collect();
    assert!(!matrix.is_empty(), "no matrix in:\n{text}");
    let row = matrix
        .iter()
        .find(|l| l.contains("api.ping"))
        .expect("api.ping row");
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        ["api.ping", "pass", "fail"]
    );
    assert!(text.contains("all sockets: 2 checks: 1 passed, 0 degraded, 0 skipped, 1 failed"));
}

/// TAP output: the plan matches the test points, each point is `ok`, numbering is dense.
#[test]
fn tap_report_of_the_smoke_checks() {
    let output = conformance(&[
        "--socket",
        &socket_arg("tap"),
        "--image",
        support::BUSYBOX_IMAGE,
        "--only",
        "smoke",
        "--format",
        "tap",
    ]);
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    let tap = String::from_utf8_lossy(&output.stdout);
    let mut lines = tap.lines();
    assert_eq!(lines.next(), Some("TAP version 13"));
    let plan: usize = lines
        .next()
        .and_then(|l| l.strip_prefix("1.."))
        .and_then(|n| n.parse().ok())
        .expect("plan line");
    let points: Vec<&str> = tap
        .lines()
        .filter(|l| l.starts_with("ok ") || l.starts_with("not ok "))
        .collect();
    assert_eq!(points.len(), plan, "{tap}");
    assert!(plan >= 6, "{tap}");
    for (index, point) in points.iter().enumerate() {
        let expected = format!("ok {} - tap: ", index + 1);
        assert!(point.starts_with(&expected), "{point}");
        assert!(!point.contains("# SKIP"), "a smoke check skipped: {point}");
    }
}

struct Suite {
    name: String,
    cases: Vec<Case>,
}

#[derive(Debug)]
struct Case {
    name: String,
    /// `pass`, `failure` or `skipped`.
    outcome: &'static str,
    message: String,
}

fn attribute(element: &BytesStart, key: &str) -> String {
    element
        .try_get_attribute(key)
        .expect("well-formed attribute")
        .map(|a| a.unescape_value().expect("escaped value").to_string())
        .unwrap_or_default()
}

fn parse_junit(xml: &str) -> Vec<Suite> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut suites: Vec<Suite> = Vec::new();
    loop {
        match reader.read_event().expect("well-formed JUnit XML") {
            Event::Start(e) | Event::Empty(e) => match e.name().as_ref() {
                b"testsuite" => suites.push(Suite {
                    name: attribute(&e, "name"),
                    cases: Vec::new(),
                }),
                b"testcase" => suites
                    .last_mut()
                    .expect("testcase inside a testsuite")
                    .cases
                    .push(Case {
                        name: attribute(&e, "name"),
                        outcome: "pass",
                        message: String::new(),
                    }),
                tag @ (b"failure" | b"skipped") => {
                    let case = suites
                        .last_mut()
                        .and_then(|s| s.cases.last_mut())
                        .expect("outcome inside a testcase");
                    case.outcome = if tag == b"failure" {
                        "failure"
                    } else {
                        "skipped"
                    };
                    case.message = attribute(&e, "message");
                }
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
    }
    suites
}

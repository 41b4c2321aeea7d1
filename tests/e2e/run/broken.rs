//! Every broken job file in fixtures/jobs_broken gives its located error from `validate`
//! (exit code 3), and `run` refuses it the same way before touching podman.

use super::harness::{repo_root, RunnerEnv};

/// File, `line:col`, and the start of the message.
const EXPECTED: &[(&str, &str, &str)] = &[
    (
        "bad_duration.nomad",
        "8:22",
        "Invalid value for kill_timeout: invalid duration \"5 seconds\"",
    ),
    ("bad_job_type.nomad", "2:10", "Invalid job type \"cron\""),
    (
        "bad_lifecycle_hook.nomad",
        "6:16",
        "Invalid lifecycle hook \"prestop\"",
    ),
    (
        "bad_restart_mode.nomad",
        "4:14",
        "Invalid restart mode \"retry\"",
    ),
    (
        "cni_network.nomad",
        "4:14",
        "Unsupported network mode \"cni/mynet\"",
    ),
    (
        "config_bad_memory.nomad",
        "7:9",
        "task \"t\": config.memory_reservation: invalid value \"lots\"",
    ),
    (
        "config_unknown_option.nomad",
        "8:9",
        "task \"t\": config.volume: unknown option",
    ),
    ("duplicate_task.nomad", "9:10", "Duplicate task \"t\""),
    (
        "function_error.nomad",
        "2:14",
        "Call to function \"jsondecode\" failed: invalid JSON",
    ),
    (
        "index_out_of_range.nomad",
        "11:27",
        "Invalid index: 1 is out of range for a list of 1 elements",
    ),
    (
        "list_in_string.nomad",
        "12:27",
        "Invalid template interpolation value: a list cannot be used as a string",
    ),
    (
        "locals_cycle.nomad",
        "2:7",
        "local.a refers to itself through a cycle of locals",
    ),
    (
        "missing_config.nomad",
        "3:5",
        "Missing config: podman task \"t\" needs a config block",
    ),
    (
        "missing_driver.nomad",
        "3:5",
        "Missing required argument: task \"t\" needs a driver",
    ),
    (
        "missing_image.nomad",
        "5:7",
        "task \"t\": config.image: image name required",
    ),
    (
        "network_task_reference.nomad",
        "7:9",
        "task \"t\": network_mode = \"task:pause\" names no podman task",
    ),
    (
        "no_podman_tasks.nomad",
        "1:1",
        "Nothing to run: the job has no task with driver = \"podman\"",
    ),
    (
        "port_not_found.nomad",
        "10:9",
        "task \"t\": Port \"admin\" not found",
    ),
    (
        "required_variable.nomad",
        "1:1",
        "Required variable not set: variable \"image\" has no default",
    ),
    (
        "static_port_collision.nomad",
        "7:7",
        "Port collision: static port 8080 is used by two labels",
    ),
    (
        "syntax_bad_token.nomad",
        "3:13",
        "Invalid HCL: invalid expression",
    ),
    (
        "syntax_unclosed_block.nomad",
        "2:13",
        "Invalid HCL: Unclosed block: the block `group \"g\"` opened here has no closing `}`",
    ),
    (
        "syntax_unterminated_string.nomad",
        "6:17",
        "Invalid HCL: Unterminated string: the string opened here has no closing `\"` on its line",
    ),
    (
        "task_reserved_name.nomad",
        "6:5",
        "task name \"nomad_init\" is reserved",
    ),
    (
        "template_data_and_source.nomad",
        "8:7",
        "Invalid template: set either data or source, not both",
    ),
    (
        "template_server_function.nomad",
        "8:7",
        "template secrets/db.env: line 2: the template function \"secret\" needs a Nomad, Consul or Vault server",
    ),
    (
        "template_without_destination.nomad",
        "8:7",
        "Missing required argument: a template needs a destination",
    ),
    (
        "two_leaders.nomad",
        "10:5",
        "Only one task may be marked as leader in group \"g\"",
    ),
    (
        "undeclared_variable.nomad",
        "6:21",
        "Reference to undeclared input variable: no variable \"image\" block",
    ),
    (
        "unknown_argument.nomad",
        "8:7",
        "Unsupported argument: an argument named \"colour\"",
    ),
    (
        "unknown_block.nomad",
        "3:5",
        "Unsupported block type: blocks of type \"sidecar_service\"",
    ),
    (
        "unknown_function.nomad",
        "6:17",
        "Call to unknown function: there is no function named \"shout\"",
    ),
    (
        "variable_type.nomad",
        "3:13",
        "Invalid default value for variable \"replicas\": a number is required",
    ),
    (
        "variable_validation.nomad",
        "5:21",
        "Invalid value for variable \"replicas\": At least one replica is needed.",
    ),
];

const DIR: &str = "tests/e2e/fixtures/jobs_broken";

#[test]
fn every_broken_job_file_reports_its_located_error() {
    let env = RunnerEnv::new("run-broken");
    let mut on_disk: Vec<String> = std::fs::read_dir(repo_root().join(DIR))
        .expect("corpus dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let listed: Vec<String> = EXPECTED.iter().map(|(f, _, _)| f.to_string()).collect();
    assert_eq!(
        on_disk, listed,
        "every corpus file has exactly one expectation"
    );

    for (file, at, message) in EXPECTED {
        let path = format!("{DIR}/{file}");
        let out = env.run(&["validate", &path]);
        assert_eq!(out.code, 3, "{file}: exit code; stderr:\n{}", out.stderr);
        let expected = format!("Error: {path}:{at}: {message}");
        assert!(
            out.stderr.lines().any(|l| l.starts_with(&expected)),
            "{file}: expected a line starting with\n  {expected}\ngot:\n{}",
            out.stderr
        );
        let json = env.run(&["validate", "--json", &path]);
        assert_eq!(json.code, 3, "{file}: --json exit code");
        let report: serde_json::Value =
            serde_json::from_str(&json.stdout).expect("validate --json prints JSON");
        assert_eq!(report["valid"], false);
        let (line, column) = at.split_once(':').expect("line:col");
        assert!(
            report["errors"]
                .as_array()
                .expect("errors")
                .iter()
                .any(|e| {
                    e["location"]["line"]
                        .as_u64()
                        .map(|l| l.to_string())
                        .as_deref()
                        == Some(line)
                        && e["location"]["column"]
                            .as_u64()
                            .map(|c| c.to_string())
                            .as_deref()
                            == Some(column)
                        && e["message"]
                            .as_str()
                            .is_some_and(|m| m.starts_with(message))
                }),
            "{file}: JSON errors: {}",
            report["errors"]
        );
    }
}

#[test]
fn run_refuses_a_broken_job_file_before_touching_podman() {
    let env = RunnerEnv::new("run-broken-run");
    let path = format!("{DIR}/unknown_argument.nomad");
    // An unreachable socket: the job-file error must come first.
    let mut cmd = env.command(&["run", &path]);
    cmd.env("CONTAINER_HOST", "unix:///nonexistent/podman.sock");
    let out = env.run_with(cmd);
    assert_eq!(out.code, 3, "stderr:\n{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("{path}:8:7: Unsupported argument")),
        "{}",
        out.stderr
    );
}

/// hcl-edit backtracks exponentially on some malformed nesting (docs/fuzzing.md): a file
/// that would keep it busy for minutes is given up on with an error, not waited for.
#[test]
fn a_job_file_the_parser_chokes_on_is_given_up_on() {
    let env = RunnerEnv::new("run-choke");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("choke.nomad");
    let text = format!(
        "x = a%{{l*hyge ={}",
        "a%a%{ e.typedfOyerror_messagee =".repeat(26)
    );
    std::fs::write(&path, text).expect("write");
    let path = path.to_string_lossy().into_owned();
    let out = env.run(&["validate", &path]);
    assert_eq!(out.code, 3, "stderr:\n{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("{path}: not parsed within 10s")),
        "{}",
        out.stderr
    );
}

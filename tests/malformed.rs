//! A corpus of malformed input, each case with the exact error an operator gets.
//!
//! * `tests/fixtures/malformed/task_config/NAME.json`: a task `config {}` block as the
//!   plugin and the runner hand it to `TaskConfig::from_value`; `NAME.err` is the error's
//!   text, which names the option and the value at fault.
//! * `tests/fixtures/malformed/jobs/NAME.nomad`: a job file; `NAME.err` is everything
//!   `nomad-driver-podman validate NAME.nomad` prints on stderr (`file:line:col` per error).
//!
//! The `.json` files double as seeds for the `task_config` fuzz target (docs/fuzzing.md).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use nomad_driver_podman::driver::TaskConfig;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/malformed");
const MIN_TASK_CONFIG_CASES: usize = 25;
const MIN_JOB_FILE_CASES: usize = 10;

/// The `(input, expected error)` pairs of one corpus directory, by name; fails on an input
/// without an expectation or an expectation without an input.
fn cases(dir: &str, input_ext: &str) -> Vec<(String, PathBuf, String)> {
    let dir = Path::new(FIXTURES).join(dir);
    let mut inputs = BTreeSet::new();
    let mut expectations = BTreeSet::new();
    for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("UTF-8 file name")
            .to_string();
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext == input_ext => inputs.insert(stem),
            Some("err") => expectations.insert(stem),
            _ => panic!("unexpected file in the corpus: {}", path.display()),
        };
    }
    let unpaired: Vec<_> = inputs.symmetric_difference(&expectations).collect();
    assert!(
        unpaired.is_empty(),
        "every .{input_ext} needs a .err and the reverse: {unpaired:?}"
    );
    inputs
        .into_iter()
        .map(|name| {
            let input = dir.join(format!("{name}.{input_ext}"));
            let expected = fs::read_to_string(dir.join(format!("{name}.err")))
                .expect("read .err")
                .trim_end()
                .to_string();
            (name, input, expected)
        })
        .collect()
}

#[test]
fn malformed_task_configs_fail_naming_option_and_value() {
    let cases = cases("task_config", "json");
    assert!(
        cases.len() >= MIN_TASK_CONFIG_CASES,
        "{} cases",
        cases.len()
    );
    let mut mismatches = Vec::new();
    for (name, input, expected) in &cases {
        let text = fs::read_to_string(input).expect("read case");
        let value: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: not JSON: {e}"));
        let got = match TaskConfig::from_value(&value) {
            Ok(config) => format!("accepted: {config:?}"),
            Err(e) => {
                assert!(
                    expected.starts_with(e.field()),
                    "{name}: error names {}",
                    e.field()
                );
                e.to_string()
            }
        };
        if &got != expected {
            mismatches.push(format!("{name}:\n  expected {expected}\n  got      {got}"));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn malformed_job_files_fail_validate_with_located_errors() {
    let cases = cases("jobs", "nomad");
    assert!(cases.len() >= MIN_JOB_FILE_CASES, "{} cases", cases.len());
    let dir = Path::new(FIXTURES).join("jobs");
    let mut mismatches = Vec::new();
    for (name, _, expected) in &cases {
        let file = format!("{name}.nomad");
        let out = Command::new(env!("CARGO_BIN_EXE_nomad-driver-podman"))
            .arg("validate")
            .arg(&file)
            .current_dir(&dir)
            .env_remove("CONTAINER_HOST")
            .output()
            .expect("run validate");
        let stderr = String::from_utf8_lossy(&out.stderr).trim_end().to_string();
        assert_eq!(
            out.status.code(),
            Some(3),
            "{name}: exit code; stderr:\n{stderr}"
        );
        assert!(
            out.stdout.is_empty(),
            "{name}: stdout {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
        let lines: Vec<&str> = expected.lines().collect();
        let (summary, errors) = lines.split_last().expect("expectation has lines");
        assert!(summary.ends_with("in the job file"), "{name}: {summary}");
        for line in errors {
            let location = line
                .strip_prefix(&format!("Error: {file}:"))
                .and_then(|rest| rest.split_once(": "))
                .map(|(line_col, _)| line_col);
            let located = location
                .and_then(|lc| lc.split_once(':'))
                .is_some_and(|(l, c)| {
                    l.parse::<u32>().is_ok_and(|l| l > 0) && c.parse::<u32>().is_ok_and(|c| c > 0)
                });
            assert!(
                located,
                "{name}: expected `{file}:LINE:COL: ...`, got {line}"
            );
        }
        if &stderr != expected {
            mismatches.push(format!(
                "{name}:\n--- expected\n{expected}\n--- got\n{stderr}"
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

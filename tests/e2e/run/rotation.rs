//! The task `logs { max_files, max_file_size }` block: the alloc's log files and the
//! journal rotate as Nomad's logmon rotates (`<task>.stdout.0`, `.1`, ...), and `logs`
//! (with and without `-f`) reads across the rotated files.

use std::path::Path;

use super::harness::{job_cleanup, task_lines, RunnerEnv};
use crate::support::unique_name;

const MIB: u64 = 1024 * 1024;
/// Each generated line: `line NNNNNN ` and 80 `x`, 92 bytes with its newline.
const LINE_LEN: u64 = 92;
/// The longest journal record of such a line (stamp, stream, tag around the text).
const RECORD_LEN: u64 = LINE_LEN + 48;

/// A batch job (no restarts) whose task `talk` runs `script` with `logs { logs }`.
fn job_file(env: &RunnerEnv, prefix: &str, logs: &str, script: &str) -> (String, String) {
    let id = unique_name(prefix);
    let file = env.write_batch_job(
        &id,
        "talk",
        &format!(
            r#"      logs {{
        {logs}
      }}
      config {{
        image   = "localhost/ndp-busybox:latest"
        command = "sh"
        args    = ["-c", {script:?}]
      }}"#
        ),
    );
    (id, file.to_str().expect("utf-8").to_string())
}

/// Shell that prints lines `from..=to` to stdout (and, with `errors`, every 100th number
/// as `err N` to stderr).
fn print_lines(from: u32, to: u32, errors: bool) -> String {
    let err = if errors {
        r#"if (i % 100 == 0) printf "err %06d\n", i > "/dev/stderr";"#
    } else {
        ""
    };
    format!(
        r#"awk 'BEGIN {{ for (i = {from}; i <= {to}; i++) {{ printf "line %06d {}\n", i; {err} }} }}'"#,
        "x".repeat(80)
    )
}

fn line(i: u32) -> String {
    format!("line {i:06} {}", "x".repeat(80))
}

/// The indices of `<name>.<index>` files in `logs`, lowest first.
fn indices(logs: &Path, name: &str) -> Vec<u64> {
    let prefix = format!("{name}.");
    let mut found: Vec<u64> = std::fs::read_dir(logs)
        .expect("logs dir")
        .filter_map(|e| {
            let file = e.ok()?.file_name().to_string_lossy().into_owned();
            file.strip_prefix(&prefix)?.parse().ok()
        })
        .collect();
    found.sort_unstable();
    found
}

/// The rotated files' contents, oldest first, each checked against the size bound.
fn rotated_files(logs: &Path, name: &str, max_files: usize, bound: u64) -> Vec<String> {
    let found = indices(logs, name);
    assert!(
        !found.is_empty() && found.len() <= max_files,
        "{name}: {found:?}"
    );
    let last = found[found.len() - 1];
    let expected: Vec<u64> = (last + 1 - found.len() as u64..=last).collect();
    assert_eq!(found, expected, "{name}: the newest files, no gap");
    found
        .iter()
        .map(|i| {
            let path = logs.join(format!("{name}.{i}"));
            let text = std::fs::read_to_string(&path).expect("log file");
            assert!(
                text.len() as u64 <= bound,
                "{}: {} bytes > {bound}",
                path.display(),
                text.len()
            );
            text
        })
        .collect()
}

fn logs(env: &RunnerEnv, args: &[&str]) -> Vec<String> {
    let out = env.run(args);
    assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
    task_lines(&out.stdout, "g.talk")
}

#[test]
fn rotation_keeps_at_most_max_files_of_max_file_size_with_the_newest_lines() {
    let env = RunnerEnv::new("run-rotate");
    let total = 40_000; // 3.5 MiB of stdout, 5 MiB of journal
    let (id, file) = job_file(
        &env,
        "rotate",
        "max_files = 2\n        max_file_size = 1",
        &print_lines(1, total, true),
    );
    let _cleanup = job_cleanup(&id);
    let run = env.run(&["run", &file]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let logs_dir = env.alloc_dirs(&id)[0].join("alloc/logs");

    let stdout = rotated_files(&logs_dir, "talk.stdout", 2, MIB + LINE_LEN);
    assert!(
        indices(&logs_dir, "talk.stdout")[0] >= 2,
        "rotated more than once, oldest deleted"
    );
    // The files hold the newest lines, whole, consecutive, ending with the last one.
    let kept: Vec<&str> = stdout.iter().flat_map(|t| t.lines()).collect();
    assert!(
        stdout.iter().all(|t| t.ends_with('\n')),
        "files end at a line"
    );
    let first = total + 1 - kept.len() as u32;
    let expected: Vec<String> = (first..=total).map(line).collect();
    assert_eq!(kept, expected, "the newest {} lines, intact", kept.len());
    assert!(
        kept.len() as u64 * LINE_LEN > MIB,
        "more than one file's worth kept"
    );

    // stderr is small: one file, everything.
    let stderr = rotated_files(&logs_dir, "talk.stderr", 2, MIB);
    assert_eq!(stderr.len(), 1);
    assert_eq!(stderr[0].lines().count(), 400);

    let journal = rotated_files(&logs_dir, "talk.journal", 2, MIB + RECORD_LEN);
    assert_eq!(journal.len(), 2);
    assert!(
        indices(&logs_dir, "talk.journal")[0] >= 3,
        "journal rotated"
    );

    assert_eq!(
        logs(&env, &["logs", "--stderr", "--tail", "3", &id]),
        ["err 039800", "err 039900", "err 040000"]
    );
    // Without --tail: what the kept journal files hold, oldest first, ending with the last.
    let all = logs(&env, &["logs", "--stdout", &id]);
    let first = total + 1 - all.len() as u32;
    assert_eq!(all, (first..=total).map(line).collect::<Vec<_>>());
    // `--tail` reads across the rotated journal files: more lines than the newest holds.
    let newest = journal[1].lines().count();
    let tail = newest + (all.len() - newest) / 2;
    assert_eq!(
        logs(
            &env,
            &["logs", "--stdout", "--tail", &tail.to_string(), &id]
        ),
        all[all.len() - tail..]
    );
}

#[test]
fn logs_and_logs_f_started_before_the_output_give_every_line_once_across_rotations() {
    let env = RunnerEnv::new("run-rotate-f");
    let total = 30_000; // 2.6 MiB of stdout, 4 MiB of journal: rotated several times
    let script = format!(
        "echo ready; while [ ! -e /alloc/data/go ]; do usleep 50000; done; {}",
        print_lines(1, total, false)
    );
    let (id, file) = job_file(
        &env,
        "rotatef",
        "max_files = 10\n        max_file_size = 1",
        &script,
    );
    let _cleanup = job_cleanup(&id);
    let started = env.run(&["run", "-d", &file]);
    assert_eq!(started.code, 0, "{}{}", started.stdout, started.stderr);
    let alloc = env.alloc_dirs(&id)[0].clone();

    let mut everything = env.spawn(&["logs", "-f", &id]);
    let mut last = env.spawn(&["logs", "-f", "--tail", "1", &id]);
    everything.wait_for("ready");
    last.wait_for("ready");
    std::fs::write(alloc.join("alloc/data/go"), "").expect("go file");

    let mut expected = vec!["ready".to_string()];
    expected.extend((1..=total).map(line));
    for follower in [everything, last] {
        let (code, out) = follower.finish();
        assert_eq!(code, 0, "{}", &out[out.len().saturating_sub(2000)..]);
        let lines = task_lines(&out, "g.talk");
        assert_eq!(lines.len(), expected.len(), "every line once");
        assert!(lines == expected, "in order");
    }
    let logs_dir = alloc.join("alloc/logs");
    let rotations = indices(&logs_dir, "talk.journal");
    assert!(
        rotations.len() >= 3,
        "the journal rotated while followed: {rotations:?}"
    );
    assert_eq!(indices(&logs_dir, "talk.stdout").len(), 3);

    // Afterwards, without -f: everything, and a tail across files.
    assert!(
        logs(&env, &["logs", &id]) == expected,
        "logs gives every line once"
    );
    assert!(
        logs(&env, &["logs", "--tail", "20000", &id]) == expected[expected.len() - 20_000..],
        "--tail across files"
    );
}

#[test]
fn the_logs_block_is_checked_shown_in_plan_and_disabled_keeps_no_files() {
    let env = RunnerEnv::new("run-rotate-block");
    let (_, bad) = job_file(&env, "rotatebad", "max_files = 0", "true");
    let out = env.run(&["validate", &bad]);
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains(":11:21: Invalid max_files: the minimum number of files is 1; got 0"),
        "{text}"
    );
    assert!(!out.stdout.contains("ignored"), "{}", out.stdout);

    let (_, sized) = job_file(
        &env,
        "rotateplan",
        "max_files = 3\n        max_file_size = 2",
        "true",
    );
    let plan = env.run(&["plan", &sized]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(
        plan.stdout
            .contains("stdout, stderr and journal each in up to 3 files of 2 MiB"),
        "{}",
        plan.stdout
    );

    let (id, file) = job_file(
        &env,
        "rotateoff",
        "disabled = true",
        "echo unseen; echo hidden >&2",
    );
    let _cleanup = job_cleanup(&id);
    let run = env.run(&["run", &file]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let logs_dir = env.alloc_dirs(&id)[0].join("alloc/logs");
    let files: Vec<String> = std::fs::read_dir(&logs_dir)
        .expect("logs dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("talk."))
        .collect();
    assert!(files.is_empty(), "{files:?}");
    assert!(logs(&env, &["logs", &id]).is_empty());
}

#[test]
fn a_link_planted_where_the_next_file_goes_is_refused_and_the_journal_goes_on() {
    let env = RunnerEnv::new("run-rotate-link");
    let victim = env.state.join("victim");
    let total = 15_000; // 1.3 MiB: one rotation of stdout
    let script = format!(
        "ln -s {} /alloc/logs/talk.stdout.1; {}",
        victim.display(),
        print_lines(1, total, false)
    );
    let (id, file) = job_file(&env, "rotatelink", "max_file_size = 1", &script);
    let _cleanup = job_cleanup(&id);
    let run = env.run(&["run", &file]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let text = format!("{}{}", run.stdout, run.stderr);
    let refusal: Vec<&str> = text.lines().filter(|l| l.contains("refused")).collect();
    assert_eq!(refusal.len(), 1, "reported once: {text}");
    assert!(
        refusal[0].contains("talk.stdout.1") && refusal[0].contains("symbolic link"),
        "{}",
        refusal[0]
    );
    assert!(!victim.exists(), "the link was not followed");
    let logs_dir = env.alloc_dirs(&id)[0].join("alloc/logs");
    let first = std::fs::read_to_string(logs_dir.join("talk.stdout.0")).expect("first file");
    assert!(first.len() as u64 <= MIB, "{}", first.len());
    assert_eq!(
        logs(&env, &["logs", "--stdout", "--tail", "1", &id]),
        [line(total)]
    );
}

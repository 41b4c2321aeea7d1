//! `logs`: stdout and stderr in the order written, `--tail`, `--stdout`/`--stderr`, `-t`,
//! and `-f` across a task's restarts, read from the journals a real run wrote.

use nomad_driver_podman::driver::logs::journal::{format_stamp, now_nanos};

use super::harness::{job_cleanup, task_lines, RunnerEnv};
use crate::support::unique_name;

/// Writes a one-task batch job whose task runs `script`; returns the job id and file.
fn job_file(env: &RunnerEnv, prefix: &str, restart: &str, script: &str) -> (String, String) {
    let id = unique_name(prefix);
    let file = env.state.join(format!("{id}.nomad"));
    std::fs::write(
        &file,
        format!(
            r#"job "{id}" {{
  type = "batch"
  group "g" {{
    restart {{
{restart}
    }}
    task "talk" {{
      driver = "podman"
      config {{
        image   = "localhost/ndp-busybox:latest"
        command = "sh"
        args    = ["-c", {script:?}]
      }}
    }}
  }}
}}
"#
        ),
    )
    .expect("job file");
    (id, file.to_str().expect("utf-8").to_string())
}

/// `say FD LINE`: writes LINE to stdout (1) or stderr (2), then waits until it is in the
/// task's journal. conmon reads the two pipes separately, so writes to both closer together
/// than it wakes up may be recorded in either order (podman's own log has the same limit);
/// waiting makes the written order the only possible one.
const SAY: &str = "say() { echo \"$2\" >&$1; until cat /alloc/logs/talk.journal.* 2>/dev/null | grep -qx \".* F $2\"; do usleep 10000; done; };";

fn logs(env: &RunnerEnv, args: &[&str]) -> Vec<String> {
    let out = env.run(args);
    assert_eq!(out.code, 0, "{args:?}: {}{}", out.stdout, out.stderr);
    task_lines(&out.stdout, "g.talk")
}

fn numbered(names: &[&str], range: std::ops::RangeInclusive<u32>) -> Vec<String> {
    range
        .flat_map(|i| names.iter().map(move |n| format!("{n}{i}")))
        .collect()
}

#[test]
fn logs_interleave_streams_and_honour_tail_stream_and_timestamps() {
    let env = RunnerEnv::new("run-logs");
    let (id, file) = job_file(
        &env,
        "logs",
        "      attempts = 0\n      mode = \"fail\"",
        &format!(
            "{SAY} for i in 1 2 3 4 5; do say 1 out$i; say 2 err$i; done; printf 'last words'"
        ),
    );
    let _cleanup = job_cleanup(&id);
    let before = format_stamp(now_nanos());
    let run = env.run(&["run", &file]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let after = format_stamp(now_nanos());

    let mut all = numbered(&["out", "err"], 1..=5);
    all.push("last words".into());
    let journal = env.alloc_dirs(&id)[0].join("alloc/logs/talk.journal.0");
    let journal = std::fs::read_to_string(&journal).unwrap_or_else(|e| e.to_string());
    assert_eq!(logs(&env, &["logs", &id]), all, "written order:\n{journal}");
    assert_eq!(logs(&env, &["logs", &id, "g.talk"]), all);
    assert_eq!(
        logs(&env, &["logs", &id, "--tail", "3"]),
        ["out5", "err5", "last words"]
    );
    assert_eq!(logs(&env, &["logs", &id, "--tail", "all"]), all);
    assert!(logs(&env, &["logs", &id, "--tail", "0"]).is_empty());
    let mut stdout = numbered(&["out"], 1..=5);
    stdout.push("last words".into());
    assert_eq!(logs(&env, &["logs", &id, "--stdout"]), stdout);
    assert_eq!(
        logs(&env, &["logs", &id, "--stderr"]),
        numbered(&["err"], 1..=5)
    );
    assert_eq!(
        logs(&env, &["logs", &id, "--stderr", "--tail", "2"]),
        ["err4", "err5"]
    );

    // -t: `<RFC 3339 UTC, nanoseconds> <line>`, at the time each line was written.
    let stamped = logs(&env, &["logs", "-t", &id]);
    assert_eq!(stamped.len(), all.len(), "{stamped:?}");
    let mut previous = before.clone();
    for (line, text) in stamped.iter().zip(&all) {
        let (stamp, rest) = line.split_once(' ').expect("stamp and text");
        assert_eq!(rest, text);
        assert_eq!(
            stamp.len(),
            "2024-01-01T00:00:00.000000000Z".len(),
            "{line}"
        );
        assert!(
            stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T' && stamp.as_bytes()[19] == b'.',
            "{line}"
        );
        // Fixed-width UTC stamps order as text; each lies within the run.
        assert!(
            previous.as_str() <= stamp && stamp <= after.as_str(),
            "{previous} <= {stamp} <= {after}"
        );
        previous = stamp.to_string();
    }
    assert_eq!(
        logs(
            &env,
            &["logs", "--timestamps", "--stdout", "--tail", "1", &id]
        )
        .iter()
        .map(|l| l.split_once(' ').expect("stamped").1.to_string())
        .collect::<Vec<_>>(),
        ["last words"]
    );

    // Usage errors are clap's exit code 2.
    assert_eq!(env.run(&["logs", &id, "--stdout", "--stderr"]).code, 2);
    assert_eq!(env.run(&["logs", &id, "--tail", "ten"]).code, 2);
}

/// The task lines a follower has printed once `text` is among them.
fn wait_for_line(follower: &mut super::harness::Running, text: &str) -> Vec<String> {
    let out = follower.wait_for(text);
    task_lines(&out, "g.talk")
}

#[test]
fn logs_follow_goes_on_across_restarts() {
    let env = RunnerEnv::new("run-logs-f");
    // Each attempt counts itself in the alloc dir; the first one waits for the test's go
    // (so the followers are known to follow before the restart), the first two fail.
    let (id, file) = job_file(
        &env,
        "logsf",
        "      attempts = 3\n      interval = \"1m\"\n      delay = \"1s\"\n      mode = \"fail\"",
        &format!("{SAY} n=$(cat /alloc/data/n 2>/dev/null || echo 0); n=$((n+1)); echo $n >/alloc/data/n; \
         say 1 run$n-out; say 2 run$n-err; \
         if [ $n = 1 ]; then while [ ! -e /alloc/data/go ]; do usleep 50000; done; fi; \
         [ $n -ge 3 ]"),
    );
    let _cleanup = job_cleanup(&id);
    let started = env.run(&["run", "-d", &file]);
    assert_eq!(started.code, 0, "{}{}", started.stdout, started.stderr);
    let allocs = env.alloc_dirs(&id);
    assert_eq!(allocs.len(), 1);

    let mut everything = env.spawn(&["logs", "-f", &id]);
    let mut last_stderr = env.spawn(&["logs", "-f", "--stderr", "--tail", "1", &id]);
    assert_eq!(
        wait_for_line(&mut everything, "run1-err"),
        ["run1-out", "run1-err"]
    );
    assert_eq!(wait_for_line(&mut last_stderr, "run1-err"), ["run1-err"]);
    // Lets the waiting first attempt end.
    std::fs::write(allocs[0].join("alloc/data/go"), "").expect("go file");

    let (code, out) = everything.finish();
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        task_lines(&out, "g.talk"),
        ["run1-out", "run1-err", "run2-out", "run2-err", "run3-out", "run3-err"],
        "every attempt's output, in order: {out}"
    );
    let (code, out) = last_stderr.finish();
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        task_lines(&out, "g.talk"),
        ["run1-err", "run2-err", "run3-err"],
        "{out}"
    );
}

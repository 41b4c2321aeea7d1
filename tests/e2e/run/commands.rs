//! validate/plan of every example, exit codes, and ps/logs/stop without a live runner.

use super::harness::{containers_of, job_cleanup, line_of, read, repo_root, task_lines, RunnerEnv};

const EXAMPLES: &[&str] = &[
    "hello",
    "lifecycle",
    "pod-bridge",
    "pod-pause",
    "pod-task",
    "restart",
    "web",
];

#[test]
fn every_example_validates_and_plans() {
    let env = RunnerEnv::new("run-validate");
    let mut on_disk: Vec<String> = std::fs::read_dir(repo_root().join("examples/jobs"))
        .expect("examples")
        .map(|e| {
            e.expect("entry")
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".nomad")
                .to_string()
        })
        .collect();
    on_disk.sort();
    assert_eq!(on_disk, EXAMPLES, "every example is covered");
    for name in EXAMPLES {
        let path = format!("examples/jobs/{name}.nomad");
        let out = env.run(&["validate", &path]);
        assert_eq!(out.code, 0, "{name}: {}", out.stderr);
        assert!(
            out.stdout.contains(&format!("job {name:?}")) && out.stdout.contains("is valid"),
            "{}",
            out.stdout
        );

        let plan = env.run(&["plan", &path]);
        assert_eq!(plan.code, 0, "{name}: {}", plan.stderr);
        assert!(
            plan.stdout
                .contains("image:     localhost/ndp-busybox:latest"),
            "{}",
            plan.stdout
        );

        let json = env.run(&["plan", "--json", &path]);
        assert_eq!(json.code, 0);
        let plan: serde_json::Value = serde_json::from_str(&json.stdout).expect("plan --json");
        assert_eq!(plan["job_id"], *name);
        for task in plan["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .flat_map(|g| g["tasks"].as_array().expect("tasks"))
        {
            assert_eq!(task["image"], "localhost/ndp-busybox:latest");
            let targets: Vec<&str> = task["mounts"]
                .as_array()
                .expect("mounts")
                .iter()
                .filter_map(|m| m["target"].as_str())
                .collect();
            assert!(
                targets.starts_with(&["/alloc", "/local", "/secrets"]),
                "{targets:?}"
            );
        }
    }
    let plan = env.run(&["plan", "--json", "examples/jobs/pod-bridge.nomad"]);
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout).expect("json");
    assert_eq!(plan["groups"][0]["network_mode"], "bridge");
    assert_eq!(plan["groups"][0]["ports"][0]["label"], "http");
    assert_eq!(plan["groups"][0]["ports"][0]["to"], 8080);
}

#[test]
fn validate_reports_ignored_blocks_and_skipped_tasks() {
    let env = RunnerEnv::new("run-ignored");
    let file = env.state.join("mixed.nomad");
    std::fs::write(
        &file,
        r#"job "mixed" {
  affinity {
    attribute = "${attr.kernel.name}"
    value     = "linux"
  }
  group "g" {
    service {
      name = "a"
    }
    task "legacy" {
      driver = "docker"
      config {
        image = "nginx"
      }
    }
    task "t" {
      driver = "podman"
      config {
        image = "localhost/ndp-busybox:latest"
        auth {
          username = "me"
          password = "hunter2"
        }
      }
      service {
        name = "b"
      }
    }
  }
}
"#,
    )
    .expect("job file");
    let path = file.to_str().expect("utf-8");
    let out = env.run(&["validate", path]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains(&format!("affinity at {path}:2:3")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!("service (2x) at {path}:7:5")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains(&format!("g.legacy (driver \"docker\") at {path}:10:5")),
        "{}",
        out.stdout
    );
    let plan = env.run(&["plan", path]);
    assert!(
        plan.stdout.contains("password <redacted>"),
        "{}",
        plan.stdout
    );
    let json = env.run(&["plan", "--json", path]);
    for text in [&plan.stdout, &json.stdout] {
        assert!(
            !text.contains("hunter2"),
            "secrets are never printed:\n{text}"
        );
    }
}

#[test]
fn exit_codes_tell_podman_unreachable_and_unknown_jobs_apart() {
    let env = RunnerEnv::new("run-exit-codes");
    for args in [
        vec!["run", "examples/jobs/hello.nomad"],
        vec!["ps"],
        vec!["stop", "nothing-here"],
    ] {
        let mut cmd = env.command(&args);
        cmd.env("CONTAINER_HOST", "unix:///nonexistent/podman.sock");
        let out = env.run_with(cmd);
        assert_eq!(
            out.code, 4,
            "{args:?}: podman unreachable; stderr:\n{}",
            out.stderr
        );
        assert!(
            out.stderr
                .contains("podman is not reachable at unix:///nonexistent/podman.sock"),
            "{}",
            out.stderr
        );
    }
    let out = env.run(&["stop", "no-such-job"]);
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("no containers of job \"no-such-job\" found"),
        "{}",
        out.stderr
    );
    let out = env.run(&["logs", "no-such-job"]);
    assert_eq!(out.code, 5, "{}", out.stderr);
    let out = env.run(&["run", "--no-such-flag", "examples/jobs/hello.nomad"]);
    assert_eq!(out.code, 2, "usage errors are clap's exit code 2");
}

#[test]
fn ps_logs_and_stop_work_after_the_runner_was_killed() {
    let env = RunnerEnv::new("run-killed");
    let job = env.example("web");
    let started = env.run(&["run", "-d", job.path()]);
    assert_eq!(started.code, 0, "{}{}", started.stdout, started.stderr);
    let pid: i32 = started
        .stdout
        .split("runner pid ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("runner pid in {}", started.stdout));

    // One runner per job: a second `run` of the same job is refused.
    let again = env.run(&["run", job.path()]);
    assert_eq!(again.code, 5, "{}{}", again.stdout, again.stderr);
    assert!(
        again.stderr.contains("is already running"),
        "{}",
        again.stderr
    );

    // `logs -f` follows until the job is gone.
    let follower = env.spawn(&["logs", "-f", &job.id, "server"]);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill runner");
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let ps = env.run(&["ps", &job.id]);
    assert_eq!(ps.code, 0);
    assert!(
        ps.stdout.contains("server") && ps.stdout.contains("running"),
        "{}",
        ps.stdout
    );
    assert!(
        ps.stdout.contains(&format!("job {:?}: no runner", job.id)),
        "{}",
        ps.stdout
    );
    let ps_json = env.run(&["ps", "--json", &job.id]);
    let containers: serde_json::Value = serde_json::from_str(&ps_json.stdout).expect("ps --json");
    assert_eq!(containers[0]["task"], "server");
    assert_eq!(containers[0]["stage"], "main");
    assert_eq!(containers[0]["job"], job.id.as_str());

    let stop = env.run(&["stop", &job.id]);
    assert_eq!(stop.code, 0, "{}{}", stop.stdout, stop.stderr);
    assert!(
        stop.stdout.contains("without its runner"),
        "{}",
        stop.stdout
    );
    assert!(stop.stdout.contains("removed server-"), "{}", stop.stdout);
    assert!(containers_of(&job.id).is_empty());

    let (code, _) = follower.finish();
    assert_eq!(code, 0, "logs -f ends once the job is gone");
    let runner_log = read(&env.state.join(&job.id).join("runner.log"));
    assert!(
        task_lines(&runner_log, "web.server")
            .iter()
            .any(|l| l.starts_with("==> Started")),
        "{runner_log}"
    );
}

/// Field 22 of /proc/PID/stat: when the process started, in clock ticks after boot.
fn start_time(pid: u32) -> u64 {
    let stat = read(std::path::Path::new(&format!("/proc/{pid}/stat")));
    let (_, after_name) = stat.rsplit_once(')').expect("stat has the command name");
    after_name
        .split_ascii_whitespace()
        .nth(19)
        .and_then(|t| t.parse().ok())
        .expect("start time")
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// The job's state files are private, `secrets/` is 0700 and still readable by the task,
/// and `stop` does not signal a process that runner.pid names but that is not the
/// recorded runner (here: a look-alike whose start time differs, as after pid reuse).
#[test]
fn runner_state_is_private_and_stop_signals_only_the_recorded_runner() {
    let env = RunnerEnv::new("run-identity");
    let job = env.example("web");
    let started = env.run(&["run", "-d", job.path()]);
    assert_eq!(started.code, 0, "{}{}", started.stdout, started.stderr);
    let pid: u32 = started
        .stdout
        .split("runner pid ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("runner pid in {}", started.stdout));

    let job_dir = env.state.join(&job.id);
    assert_eq!(mode(&job_dir), 0o700);
    for file in ["runner.pid", "runner.log", "runner.json", "runner.ready"] {
        assert_eq!(mode(&job_dir.join(file)), 0o600, "{file}");
    }
    assert_eq!(
        read(&job_dir.join("runner.pid")),
        format!("{pid} {}\n", start_time(pid))
    );
    let alloc = &env.alloc_dirs(&job.id)[0];
    assert_eq!(mode(&alloc.join("server/secrets")), 0o700);
    assert_eq!(mode(&alloc.join("server/local")), 0o777);
    let alloc_id = alloc.file_name().expect("alloc id").to_string_lossy();
    let container = format!("server-{alloc_id}");
    let secret = crate::support::podman().cli_ok(&["exec", &container, "cat", "/secrets/app.env"]);
    assert_eq!(
        secret.trim_end(),
        format!("OWNER=team-{}", job.id.to_uppercase())
    );

    // The runner dies; its pid now names a look-alike (`run` on its command line).
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill runner");
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Its own process group and no inherited output: killed as a group at the end, its
    // `sleep` cannot outlive the test holding the suite's output pipe open.
    let mut decoy = {
        use std::os::unix::process::CommandExt;
        std::process::Command::new("sh")
            .args(["-c", "sleep 300; exit 0", "run"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .expect("decoy")
    };
    let decoy_pid = decoy.id();
    while !read(std::path::Path::new(&format!("/proc/{decoy_pid}/cmdline"))).starts_with("sh\0") {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let planted = job_dir.join("runner.pid");
    std::fs::remove_file(&planted).expect("remove runner.pid");
    std::fs::write(
        &planted,
        format!("{decoy_pid} {}\n", start_time(decoy_pid) + 1),
    )
    .expect("plant runner.pid");
    crate::support::give_to_podman_user(&planted);
    let ps = env.run(&["ps", &job.id]);
    assert!(
        ps.stdout.contains(&format!("job {:?}: no runner", job.id)),
        "{}",
        ps.stdout
    );

    let stop = env.run(&["stop", &job.id]);
    assert_eq!(stop.code, 0, "{}{}", stop.stdout, stop.stderr);
    assert!(
        stop.stdout
            .contains(&format!("names pid {decoy_pid}, which is not its runner")),
        "{}",
        stop.stdout
    );
    assert!(
        stop.stdout.contains("without its runner"),
        "{}",
        stop.stdout
    );
    assert_eq!(
        decoy.try_wait().expect("decoy status"),
        None,
        "the decoy was not signalled"
    );
    let group = nix::unistd::Pid::from_raw(i32::try_from(decoy.id()).expect("pid"));
    nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL).expect("kill decoy");
    decoy.wait().expect("reap decoy");
    assert!(containers_of(&job.id).is_empty());
}

/// A user without XDG_RUNTIME_DIR gets /tmp/nomad-driver-podman-<uid>, created 0700;
/// one that is another user's, open to others or a symlink is refused with a clear error.
/// (Needs root, to act as another uid; the uid is unique to this run.)
#[test]
fn the_tmp_state_root_is_created_private_and_refused_when_not() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if !nix::unistd::getuid().is_root() {
        eprintln!("skipped: needs root to run the binary as another uid");
        return;
    }
    let uid = 61000 + std::process::id() % 4000;
    let root = std::path::PathBuf::from(format!("/tmp/nomad-driver-podman-{uid}"));
    let clear = || {
        let _ = std::fs::remove_file(&root);
        let _ = std::fs::remove_dir_all(&root);
    };
    clear();
    let as_user = || {
        let out = std::process::Command::new("setpriv")
            .args([
                "--reuid",
                &uid.to_string(),
                "--regid",
                &uid.to_string(),
                "--clear-groups",
                super::harness::BIN,
                "logs",
                "no-such-job",
            ])
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("NOMAD_RUNNER_STATE_DIR")
            .env("CONTAINER_HOST", "unix:///nonexistent/podman.sock")
            .current_dir("/")
            .output()
            .expect("setpriv runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };

    // Missing: created, the user's own, 0700; then the job is simply unknown.
    let (code, stderr) = as_user();
    assert_eq!(code, Some(5), "{stderr}");
    assert!(stderr.contains("no containers of job"), "{stderr}");
    let meta = std::fs::symlink_metadata(&root).expect("root created");
    assert_eq!((meta.uid(), meta.mode() & 0o7777), (uid, 0o700));

    // Open to others: refused, not repaired.
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let (code, stderr) = as_user();
    assert_eq!(code, Some(5), "{stderr}");
    assert!(
        stderr.contains(&format!("{} has mode 0777", root.display())),
        "{stderr}"
    );
    assert_eq!(
        std::fs::metadata(&root).expect("root").mode() & 0o777,
        0o777
    );

    // Created first by another user (root here): refused.
    clear();
    std::fs::create_dir(&root).expect("mkdir");
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let (code, stderr) = as_user();
    assert_eq!(code, Some(5), "{stderr}");
    assert!(stderr.contains("belongs to uid 0"), "{stderr}");

    // A symlink (to a directory the user owns, even): refused, not followed.
    clear();
    let target = std::path::PathBuf::from(format!("{}-target", root.display()));
    let _ = std::fs::remove_dir_all(&target);
    std::fs::create_dir(&target).expect("mkdir target");
    std::os::unix::fs::chown(&target, Some(uid), Some(uid)).expect("chown");
    std::os::unix::fs::symlink(&target, &root).expect("symlink");
    let (code, stderr) = as_user();
    assert_eq!(code, Some(5), "{stderr}");
    assert!(stderr.contains("is a symlink"), "{stderr}");
    assert_eq!(std::fs::read_dir(&target).expect("target").count(), 0);
    clear();
    let _ = std::fs::remove_dir_all(&target);
}

#[test]
fn a_second_ctrl_c_forces_the_stop_and_skips_poststop() {
    let env = RunnerEnv::new("run-force");
    let id = crate::support::unique_name("force");
    let file = env.state.join("force.nomad");
    // `sleep` as PID 1 ignores SIGTERM, so a graceful stop would wait the whole minute.
    std::fs::write(
        &file,
        format!(
            r#"job "{id}" {{
  group "g" {{
    task "stubborn" {{
      driver = "podman"
      config {{
        image   = "localhost/ndp-busybox:latest"
        command = "sleep"
        args    = ["600"]
      }}
      kill_timeout = "60s"
    }}
    task "after" {{
      driver = "podman"
      lifecycle {{
        hook = "poststop"
      }}
      config {{
        image   = "localhost/ndp-busybox:latest"
        command = "true"
      }}
    }}
  }}
}}
"#
        ),
    )
    .expect("job file");
    let _cleanup = job_cleanup(&id);
    let mut running = env.spawn(&["run", file.to_str().expect("utf-8")]);
    running.wait_for("g.stubborn | ==> Started");
    running.interrupt();
    running.wait_for("g.stubborn | ==> Killing: sending SIGTERM, SIGKILL after 1m");
    running.interrupt();
    let (code, out) = running.finish();
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("forcing: removing every container now, poststop tasks are skipped"),
        "{out}"
    );
    assert!(
        task_lines(&out, "g.after").is_empty(),
        "poststop skipped:\n{out}"
    );
    assert!(containers_of(&id).is_empty());
}

#[test]
fn image_pulls_show_as_status_lines() {
    let env = RunnerEnv::new("run-pull");
    let id = crate::support::unique_name("pull");
    let image = crate::support::registry().busybox();
    let file = env.state.join("pull.nomad");
    std::fs::write(
        &file,
        format!(
            r#"job "{id}" {{
  type = "batch"
  group "g" {{
    task "pulled" {{
      driver = "podman"
      config {{
        image      = "{image}"
        force_pull = true
        command    = "echo"
        args       = ["pulled ok"]
        auth {{
          tls_verify = false
        }}
      }}
    }}
  }}
}}
"#
        ),
    )
    .expect("job file");
    let _cleanup = job_cleanup(&id);
    let out = env.run(&["run", file.to_str().expect("utf-8")]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let lines = task_lines(&out.stdout, "g.pulled");
    assert!(
        lines
            .iter()
            .any(|l| l == &format!("==> Pulling image {image}")),
        "{}",
        out.stdout
    );
    assert!(lines.iter().any(|l| l == "pulled ok"), "{}", out.stdout);
}

/// Regression (issue 15.1): without a runner, `stop` removed the namespace owner before the
/// task that joins it (`network_mode = "task:server"`) and podman refused ("has dependent
/// containers"), so the job could be neither stopped nor run again.
#[test]
fn stop_without_a_runner_removes_namespace_joiners_first() {
    let env = RunnerEnv::new("run-podstop");
    let job = env.example("pod-task");
    let started = env.run(&["run", "-d", job.path()]);
    assert_eq!(started.code, 0, "{}{}", started.stdout, started.stderr);
    let pid = runner_pid_of(&started.stdout);
    // `run -d` returns once the main task runs; the poststart probe follows.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while containers_of(&job.id).len() < 2 {
        assert!(std::time::Instant::now() < deadline, "probe never started");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    kill_and_wait(pid);

    let stop = env.run(&["stop", &job.id]);
    assert_eq!(stop.code, 0, "{}{}", stop.stdout, stop.stderr);
    assert!(containers_of(&job.id).is_empty(), "{}", stop.stdout);
    let probe = line_of(&stop.stdout, "removed probe-");
    let server = line_of(&stop.stdout, "removed server-");
    assert!(probe < server, "{}", stop.stdout);

    // The job runs again.
    let again = env.run(&["run", "-d", job.path()]);
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    let stop = env.run(&["stop", &job.id]);
    assert_eq!(stop.code, 0, "{}{}", stop.stdout, stop.stderr);
    assert!(containers_of(&job.id).is_empty());
}

fn runner_pid_of(stdout: &str) -> i32 {
    stdout
        .split("runner pid ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("runner pid in {stdout}"))
}

fn kill_and_wait(pid: i32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill runner");
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Regression (issue 15.2): every subcommand panicked ("failed printing to stdout: Broken
/// pipe", exit 101) when its reader left (`plan job.nomad | true`); now it exits quietly
/// with its own code. A full disk is an I/O error with exit code 6.
#[test]
fn closed_or_full_stdout_is_no_panic() {
    let env = RunnerEnv::new("run-epipe");
    let commands: &[&[&str]] = &[
        &["plan", "examples/jobs/hello.nomad"],
        &["plan", "--json", "examples/jobs/hello.nomad"],
        &["validate", "examples/jobs/hello.nomad"],
        &["ps"],
        &["conformance", "--list"],
        &["version"],
    ];
    for args in commands {
        let (read_end, write_end) = nix::unistd::pipe().expect("pipe");
        drop(read_end);
        let mut cmd = env.command(args);
        cmd.stdout(std::process::Stdio::from(write_end));
        let out = finished(cmd);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.is_empty(),
            "{args:?} exits quietly: {}",
            out.stderr
        );

        let mut cmd = env.command(args);
        cmd.stdout(std::fs::File::create("/dev/full").expect("/dev/full"));
        let out = finished(cmd);
        assert_eq!(out.code, 6, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("cannot write the output to stdout")
                && !out.stderr.contains("panicked"),
            "{args:?}: {}",
            out.stderr
        );
    }
}

/// Runs `cmd` with its stdout as set; stderr captured.
fn finished(mut cmd: std::process::Command) -> super::harness::Finished {
    let out = cmd.output().expect("runner binary runs");
    super::harness::Finished {
        code: out.status.code().unwrap_or(-1),
        stdout: String::new(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A detached batch job that fails keeps its outcome for `ps` until `stop`; `stop` of a
/// job with nothing left is no error; `stop --purge` and `gc` remove job directories.
#[test]
fn finished_detached_jobs_keep_their_outcome_until_stop() {
    let env = RunnerEnv::new("run-outcome");
    let id = crate::support::unique_name("outcome");
    let file = env.state.join("outcome.nomad");
    std::fs::write(
        &file,
        format!(
            r#"job "{id}" {{
  type = "batch"
  group "g" {{
    restart {{
      attempts = 0
      mode     = "fail"
    }}
    task "fails" {{
      driver = "podman"
      config {{
        image   = "localhost/ndp-busybox:latest"
        command = "sh"
        args    = ["-c", "sleep 1; exit 3"]
      }}
    }}
  }}
}}
"#
        ),
    )
    .expect("job file");
    let _cleanup = job_cleanup(&id);
    let started = env.run(&["run", "-d", file.to_str().expect("utf-8")]);
    assert!(
        started.code == 0 || started.code == 1,
        "{}{}",
        started.stdout,
        started.stderr
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let entry = loop {
        let ps = env.run(&["ps", "--json", &id]);
        assert_eq!(ps.code, 0, "{}", ps.stderr);
        let rows: serde_json::Value = serde_json::from_str(&ps.stdout).expect("ps --json");
        if rows[0]["job_status"].is_string() {
            break rows[0].clone();
        }
        assert!(std::time::Instant::now() < deadline, "{}", ps.stdout);
        std::thread::sleep(std::time::Duration::from_millis(300));
    };
    assert_eq!(entry["job_status"], "failed", "{entry}");
    assert_eq!(entry["task"], "fails", "{entry}");
    assert_eq!(entry["state"], "dead", "{entry}");
    assert_eq!(entry["exit_code"], 3, "{entry}");
    assert!(entry["finished_at"]
        .as_str()
        .is_some_and(|t| t.contains('T')));
    let ps = env.run(&["ps", &id]);
    assert!(ps.stdout.contains("dead (3)"), "{}", ps.stdout);
    assert!(
        ps.stdout
            .contains(&format!("job {id:?}: failed (exit code 1)")),
        "{}",
        ps.stdout
    );
    // `ps` of all jobs lists it too.
    let all = env.run(&["ps"]);
    assert!(all.stdout.contains(&id), "{}", all.stdout);

    let stop = env.run(&["stop", &id]);
    assert_eq!(stop.code, 0, "{}{}", stop.stdout, stop.stderr);
    assert!(stop.stdout.contains("nothing to stop"), "{}", stop.stdout);
    let again = env.run(&["stop", &id]);
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    assert!(again.stdout.contains("nothing to stop"), "{}", again.stdout);
    let ps = env.run(&["ps", "--json", &id]);
    assert_eq!(ps.stdout.trim(), "[]");

    // The logs stay until the directory goes: `stop --purge` removes it.
    assert!(env.state.join(&id).is_dir());
    let purge = env.run(&["stop", "--purge", &id]);
    assert_eq!(purge.code, 0, "{}{}", purge.stdout, purge.stderr);
    assert!(!env.state.join(&id).exists());

    // `gc` removes finished jobs' directories, and nothing else.
    let rerun = env.run(&["run", "-d", file.to_str().expect("utf-8")]);
    assert!(rerun.code == 0 || rerun.code == 1, "{}", rerun.stderr);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !env.state.join(&id).join("outcome.json").exists()
        || env.state.join(&id).join("runner.pid").exists()
    {
        assert!(std::time::Instant::now() < deadline, "no outcome");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let unrelated = env.state.join("not-a-job");
    std::fs::create_dir_all(&unrelated).expect("dir");
    let gc = env.run(&["gc"]);
    assert_eq!(gc.code, 0, "{}{}", gc.stdout, gc.stderr);
    assert!(!env.state.join(&id).exists(), "{}", gc.stdout);
    assert!(unrelated.exists());
}

/// Issue 15.8: a bare socket path works, an unusable CONTAINER_HOST is a usage error that
/// names it, a missing job file is not "1 error in the job file", and a batch job cut short
/// by Ctrl-C exits 130.
#[test]
fn socket_paths_missing_files_and_interrupted_batch_jobs_have_their_exit_codes() {
    let env = RunnerEnv::new("run-codes");
    let url = crate::support::podman().socket_url();
    let bare = url.strip_prefix("unix://").expect("unix socket");
    let mut cmd = env.command(&["ps", "--socket", bare]);
    cmd.env_remove("CONTAINER_HOST");
    let out = env.run_with(cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);

    let mut cmd = env.command(&["ps"]);
    cmd.env(
        "CONTAINER_HOST",
        "ssh://core@example.com/run/podman/podman.sock",
    );
    let out = env.run_with(cmd);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("CONTAINER_HOST") && out.stderr.contains("ssh://"),
        "{}",
        out.stderr
    );

    let out = env.run(&["validate", "no-such-file.nomad"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot read job file"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("in the job file"), "{}", out.stderr);

    let id = crate::support::unique_name("cut");
    let file = env.state.join("cut.nomad");
    std::fs::write(
        &file,
        format!(
            r#"job "{id}" {{
  type = "batch"
  group "g" {{
    task "long" {{
      driver = "podman"
      config {{
        image   = "localhost/ndp-busybox:latest"
        init    = true
        command = "sleep"
        args    = ["600"]
      }}
      kill_timeout = "2s"
    }}
  }}
}}
"#
        ),
    )
    .expect("job file");
    let _cleanup = job_cleanup(&id);
    let mut running = env.spawn(&["run", file.to_str().expect("utf-8")]);
    running.wait_for("g.long | ==> Started");
    running.interrupt();
    let (code, out) = running.finish();
    assert_eq!(code, 130, "{out}");
    assert!(containers_of(&id).is_empty());
}

/// Issue 15.6: `run -d` prints the warnings, the published ports and commands that work
/// as printed.
#[test]
fn run_detach_prints_warnings_ports_and_working_commands() {
    let env = RunnerEnv::new("run-detach-out");
    let job = env.example("web");
    let text = std::fs::read_to_string(&job.file).expect("job copy");
    let needle = format!("job \"{}\" {{", job.id);
    std::fs::write(
        &job.file,
        text.replacen(&needle, &format!("{needle}\n  priority = 60\n"), 1),
    )
    .expect("job copy");
    let started = env.run(&["run", "-d", job.path()]);
    assert_eq!(started.code, 0, "{}{}", started.stdout, started.stderr);
    assert!(
        started.stdout.contains("Ignored") && started.stdout.contains("priority at "),
        "{}",
        started.stdout
    );
    assert!(
        !super::harness::ports_of(&started.stdout, "http").is_empty(),
        "{}",
        started.stdout
    );
    let command = |what: &str| {
        started
            .stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(what))
            .unwrap_or_else(|| panic!("no {what} in {}", started.stdout))
            .trim()
            .to_string()
    };
    let binary =
        crate::support::podman().program_for_podman_user(std::path::Path::new(super::harness::BIN));
    assert!(
        command("status:").starts_with(binary.to_str().expect("utf-8")),
        "{}",
        started.stdout
    );
    for what in ["status:", "stop:"] {
        let mut shell = std::process::Command::new("sh");
        shell
            .args(["-c", &command(what)])
            .env("CONTAINER_HOST", crate::support::podman().socket_url())
            .env("NOMAD_RUNNER_STATE_DIR", &env.state)
            .env("NO_COLOR", "1");
        let out = env.run_with(shell);
        assert_eq!(out.code, 0, "{what} {}{}", out.stdout, out.stderr);
    }
    assert!(containers_of(&job.id).is_empty());
}

/// Issue 15.5: a `localhost/` image that is not in local storage fails at once (no pull
/// retries against a "registry" named localhost, no restarts).
#[test]
fn a_missing_local_image_fails_at_once() {
    let env = RunnerEnv::new("run-noimage");
    let id = crate::support::unique_name("noimage");
    let file = env.state.join("noimage.nomad");
    std::fs::write(
        &file,
        format!(
            r#"job "{id}" {{
  type = "batch"
  group "g" {{
    task "t" {{
      driver = "podman"
      config {{
        image = "localhost/ndp-no-such-image:latest"
      }}
    }}
  }}
}}
"#
        ),
    )
    .expect("job file");
    let _cleanup = job_cleanup(&id);
    let began = std::time::Instant::now();
    let out = env.run(&["run", file.to_str().expect("utf-8")]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("image localhost/ndp-no-such-image:latest not found locally"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("Restarting"), "{}", out.stdout);
    assert!(
        began.elapsed() < std::time::Duration::from_secs(20),
        "took {:?}",
        began.elapsed()
    );
}

/// Issue 15.11: the smaller items of validate, plan and conformance --list.
#[test]
fn validate_plan_and_list_handle_the_smaller_cases() {
    let env = RunnerEnv::new("run-small");
    let static_count = env.state.join("static.nomad");
    std::fs::write(
        &static_count,
        r#"job "static" {
  group "web" {
    count = 2
    network {
      port "http" {
        static = 8080
      }
    }
    task "server" {
      driver = "podman"
      config {
        image = "localhost/ndp-busybox:latest"
        ports = ["http"]
      }
    }
  }
}
"#,
    )
    .expect("job file");
    let path = static_count.to_str().expect("utf-8");
    for command in ["validate", "plan"] {
        let out = env.run(&[command, path]);
        assert_eq!(out.code, 3, "{command}: {}", out.stderr);
        assert!(
            out.stderr.contains("static.nomad:5:7:")
                && out.stderr.contains("static = 8080 but count = 2"),
            "{command}: {}",
            out.stderr
        );
    }
    let out = env.run(&["plan", "--json", path]);
    assert_eq!(out.code, 3);
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON error document");
    assert_eq!(doc["valid"], false);
    assert!(doc["errors"][0]["message"]
        .as_str()
        .is_some_and(|m| m.contains("count = 2")));

    let docker = env.state.join("docker.nomad");
    std::fs::write(
        &docker,
        "job \"d\" {\n  group \"g\" {\n    task \"t\" {\n      driver = \"docker\"\n      config {\n        image = \"busybox\"\n      }\n    }\n  }\n}\n",
    )
    .expect("job file");
    let out = env.run(&["validate", docker.to_str().expect("utf-8")]);
    assert_eq!(out.code, 3);
    assert!(
        out.stderr.contains("found driver \"docker\"")
            && out.stderr.contains("set driver = \"podman\""),
        "{}",
        out.stderr
    );

    let out = env.run(&["conformance", "--list", "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let list: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON list");
    assert!(
        list[0]["name"].is_string() && list[0]["tags"].is_array(),
        "{list}"
    );
    let out = env.run(&["conformance", "--list", "--only", "^no-such-check$"]);
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(
        out.stderr.contains("no check is selected"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_docker_drivers_mount_and_namespace_options_run() {
    let env = RunnerEnv::new("run-dockeropts");
    let file = env.state.join("dockeropts.nomad");
    let volume = crate::support::unique_name("ndp-runvol");
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    std::fs::write(
        &file,
        format!(
            r#"job "dockeropts" {{
  type = "batch"
  group "g" {{
    task "t" {{
      driver = "podman"
      template {{
        data        = "rendered-config"
        destination = "local/conf/app.ini"
      }}
      config {{
        image   = "{image}"
        command = "sh"
        args    = ["-c", "cat /etc/app/app.ini; echo; grep -c ' /scratch tmpfs' /proc/mounts; touch /etc/app/x 2>/dev/null || echo read-only; echo uts=$(hostname); [ -e /proc/1/comm ] && echo pid1=$(cat /proc/1/comm); echo kept > /cache/marker"]
        mount {{
          type     = "bind"
          source   = "local/conf"
          target   = "/etc/app"
          readonly = true
        }}
        mount {{
          type   = "tmpfs"
          target = "/scratch"
          tmpfs_options {{
            size = 1048576
          }}
        }}
        mount {{
          type   = "volume"
          source = "{volume}"
          target = "/cache"
        }}
        healthchecks {{
          disable = true
        }}
        pid_mode = "host"
        uts_mode = "host"
      }}
    }}
  }}
}}
"#,
            image = crate::support::BUSYBOX_IMAGE
        ),
    )
    .unwrap();
    let out = env.run(&["run", file.to_str().unwrap()]);
    // The named volume outlives the job, with what the task wrote (its content as a tar).
    // Into a file: the rootless lane's podman (another user) cannot open our stdout.
    let tar = env.state.join(format!("{volume}.tar"));
    let exported = crate::support::podman().cli(&[
        "volume",
        "export",
        "--output",
        tar.to_str().expect("utf-8"),
        &volume,
    ]);
    assert!(exported.status.success(), "{exported:?}");
    let exported = std::fs::read(&tar).expect("exported volume");
    let kept = if exported.windows(5).any(|w| w == b"kept\n") {
        "kept"
    } else {
        "missing"
    };
    crate::support::podman().cli_ok(&["volume", "rm", &volume]);
    assert_eq!(kept, "kept");
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("rendered-config"), "{}", out.stdout);
    assert!(out.stdout.contains("read-only"), "{}", out.stdout);
    assert!(
        out.stdout.contains(&format!("uts={}", host_name.trim())),
        "{}",
        out.stdout
    );
    let host_init = std::fs::read_to_string("/proc/1/comm").unwrap();
    assert!(
        out.stdout.contains(&format!("pid1={}", host_init.trim())),
        "{}",
        out.stdout
    );
    let plan = env.run(&["plan", file.to_str().unwrap()]);
    assert!(
        plan.stdout
            .contains("tmpfs -> /scratch [tmpfs] (size=1048576)"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("<alloc dir>/t/local/conf -> /etc/app [bind] (ro)"),
        "{}",
        plan.stdout
    );
}

#[test]
fn stop_without_a_live_runner_still_runs_poststop_tasks_in_order() {
    let env = RunnerEnv::new("run-killed-poststop");
    let id = crate::support::unique_name("killed-poststop");
    let _cleanup = crate::support::LabelCleanup {
        key: super::harness::JOB_LABEL.to_string(),
        value: id.clone(),
    };
    let image = crate::support::BUSYBOX_IMAGE;
    let file = env.state.join("job.nomad");
    std::fs::write(
        &file,
        format!(
            r#"job "{id}" {{
  group "g" {{
    network {{
      mode = "bridge"
    }}
    task "main" {{
      driver = "podman"
      config {{
        image   = "{image}"
        command = "sh"
        args    = ["-c", "trap 'echo main-stopped >>$NOMAD_ALLOC_DIR/data/order; exit 0' TERM; echo main >>$NOMAD_ALLOC_DIR/data/order; while :; do sleep 1 & wait $!; done"]
      }}
      kill_timeout = "5s"
    }}
    task "cleanup" {{
      driver = "podman"
      lifecycle {{
        hook = "poststop"
      }}
      config {{
        image   = "{image}"
        command = "sh"
        args    = ["-c", "echo poststop >>$NOMAD_ALLOC_DIR/data/order; echo \"order: $(tr '\\n' ' ' <$NOMAD_ALLOC_DIR/data/order)\""]
      }}
    }}
  }}
}}
"#
        ),
    )
    .expect("job file");
    let started = env.run(&["run", "-d", file.to_str().expect("utf-8")]);
    assert_eq!(started.code, 0, "{}{}", started.stdout, started.stderr);
    let pid: i32 = started
        .stdout
        .split("runner pid ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("runner pid in {}", started.stdout));
    let allocs = env.alloc_dirs(&id);
    assert_eq!(allocs.len(), 1);
    let order = allocs[0].join("alloc/data/order");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !read_or_empty(&order).contains("main") {
        assert!(std::time::Instant::now() < deadline, "main never ran");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill runner");
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    let stop = env.run(&["stop", &id]);
    assert_eq!(stop.code, 0, "{}{}", stop.stdout, stop.stderr);
    assert!(
        stop.stdout.contains("without its runner"),
        "{}",
        stop.stdout
    );
    assert!(
        stop.stdout
            .contains("poststop task cleanup exited with code 0"),
        "{}",
        stop.stdout
    );
    // Main stopped (its kill signal) before the poststop task ran, and the namespace
    // holder went last (the poststop task ran in it).
    assert_eq!(read(&order), "main\nmain-stopped\npoststop\n");
    assert!(
        read(&allocs[0].join("alloc/logs/cleanup.stdout.0"))
            .contains("order: main main-stopped poststop"),
        "{}",
        stop.stdout
    );
    let main_at = line_of_text(&stop.stdout, "removed main-");
    let cleanup_at = line_of_text(&stop.stdout, "poststop task cleanup exited");
    let infra_at = line_of_text(&stop.stdout, "removed nomad_init-");
    // Containers are removed after every stop, joiners first: main before the namespace
    // holder, and the holder after the poststop task that ran in it.
    assert!(
        main_at < infra_at && cleanup_at < infra_at,
        "{}",
        stop.stdout
    );
    assert!(containers_of(&id).is_empty());
}

fn line_of_text(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} in:\n{text}"))
}

fn read_or_empty(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

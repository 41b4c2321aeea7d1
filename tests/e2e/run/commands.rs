//! validate/plan of every example, exit codes, and ps/logs/stop without a live runner.

use super::harness::{containers_of, read, repo_root, task_lines, RunnerEnv};

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
  constraint {
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
        out.stdout.contains(&format!("constraint at {path}:2:3")),
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
    let mut decoy = std::process::Command::new("sh")
        .args(["-c", "sleep 300; exit 0", "run"])
        .spawn()
        .expect("decoy");
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
    decoy.kill().expect("kill decoy");
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
    let _cleanup = crate::support::LabelCleanup {
        key: super::harness::JOB_LABEL.into(),
        value: id.clone(),
    };
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
    let _cleanup = crate::support::LabelCleanup {
        key: super::harness::JOB_LABEL.into(),
        value: id.clone(),
    };
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
    assert!(
        main_at < cleanup_at && cleanup_at < infra_at,
        "{}",
        stop.stdout
    );
    assert!(containers_of(&id).is_empty());
}

fn read_or_empty(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn line_of_text(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} in:\n{text}"))
}

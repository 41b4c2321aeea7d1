//! Issue 15.7 and 15.5: `run --replace` of a running job, the refusal without it, and the
//! image warnings of `validate`/`plan`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::harness::{container_env, containers_of, read, RunnerEnv, JOB_LABEL};
use crate::support::{podman, unique_name, LabelCleanup, BUSYBOX_IMAGE};

/// A service job whose main task and poststop task append `<version>-<event>` lines to
/// `<marker>/order`, a host directory outside the allocation (a new run replaces those).
fn write_job(file: &Path, id: &str, version: &str, marker: &Path) {
    let marker = marker.display();
    std::fs::write(
        file,
        format!(
            r#"job "{id}" {{
  group "g" {{
    task "main" {{
      driver = "podman"
      config {{
        image   = "{BUSYBOX_IMAGE}"
        command = "sh"
        args    = ["-c", "trap 'echo {version}-stopped >>/marker/order; exit 0' TERM; echo {version}-main >>/marker/order; while :; do sleep 1 & wait $!; done"]
        volumes = ["{marker}:/marker"]
      }}
      env {{
        VERSION = "{version}"
      }}
      kill_timeout = "5s"
    }}
    task "cleanup" {{
      driver = "podman"
      lifecycle {{
        hook = "poststop"
      }}
      config {{
        image   = "{BUSYBOX_IMAGE}"
        command = "sh"
        args    = ["-c", "echo {version}-poststop >>/marker/order"]
        volumes = ["{marker}:/marker"]
      }}
    }}
  }}
}}
"#
        ),
    )
    .expect("job file");
}

fn wait_for_line(path: &Path, line: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().any(|l| l == line) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "no {line:?} in {path:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn runner_pid_of(stdout: &str) -> i32 {
    stdout
        .split("runner pid ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("runner pid in {stdout}"))
}

/// Whether `pid` runs (a zombie waiting for its reaper does not).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let state = s.rsplit_once(") ")?.1.chars().next()?;
            Some(state != 'Z' && state != 'X')
        })
        .unwrap_or(false)
}

fn main_container(job: &str) -> String {
    containers_of(job)
        .into_iter()
        .find(|n| n.starts_with("main-"))
        .unwrap_or_else(|| panic!("no main container of {job}: {:?}", containers_of(job)))
}

struct Replaceable {
    env: RunnerEnv,
    id: String,
    order: PathBuf,
    files: Vec<String>,
    _cleanup: LabelCleanup,
}

fn replaceable(prefix: &str) -> Replaceable {
    let env = RunnerEnv::new(prefix);
    let id = unique_name(prefix);
    let marker = podman().scratch_dir(&format!("{prefix}-marker"));
    let files = ["v1", "v2", "v3"]
        .iter()
        .map(|v| {
            let file = env.state.join(format!("{v}.nomad"));
            write_job(&file, &id, v, &marker);
            file.to_str().expect("utf-8").to_string()
        })
        .collect();
    Replaceable {
        _cleanup: LabelCleanup {
            key: JOB_LABEL.to_string(),
            value: id.clone(),
        },
        env,
        id,
        order: marker.join("order"),
        files,
    }
}

#[test]
fn run_replace_stops_a_detached_job_in_order_and_runs_the_new_file() {
    let job = replaceable("replace-live");
    let env = &job.env;
    let started = env.run(&["run", "-d", &job.files[0]]);
    assert_eq!(started.code, 0, "{}{}", started.stdout, started.stderr);
    wait_for_line(&job.order, "v1-main");
    let old_runner = runner_pid_of(&started.stdout);
    let old_main = main_container(&job.id);

    // Without --replace: refused, the running job untouched, and the way out named.
    for args in [
        vec!["run", "-d", job.files[1].as_str()],
        vec!["run", job.files[1].as_str()],
    ] {
        let again = env.run(&args);
        assert_eq!(again.code, 5, "{args:?}: {}{}", again.stdout, again.stderr);
        assert!(
            again.stderr.contains("is already running")
                && again.stderr.contains("run it with --replace"),
            "{}",
            again.stderr
        );
    }
    assert_eq!(main_container(&job.id), old_main);
    assert!(
        read(&env.state.join(&job.id).join("runner.log")).contains("is allocation"),
        "a refused `run -d` leaves the running job's log alone"
    );

    let replaced = env.run(&["run", "-d", "--replace", &job.files[1]]);
    assert_eq!(replaced.code, 0, "{}{}", replaced.stdout, replaced.stderr);
    assert!(
        replaced.stdout.contains("replacing it")
            && replaced
                .stdout
                .contains(&format!("asking its runner (pid {old_runner})")),
        "{}",
        replaced.stdout
    );
    let order = wait_for_line(&job.order, "v2-main");
    // Nomad's stop order for the old run (main, then its poststop task), then the new one.
    assert_eq!(order, "v1-main\nv1-stopped\nv1-poststop\nv2-main\n");
    assert!(!alive(old_runner), "the old runner ended");
    let new_main = main_container(&job.id);
    assert_ne!(new_main, old_main);
    assert!(!containers_of(&job.id).contains(&old_main));
    assert!(container_env(&new_main).contains(&"VERSION=v2".to_string()));
    let ps = env.run(&["ps", &job.id]);
    assert!(ps.stdout.contains("running"), "{}", ps.stdout);
    assert_ne!(runner_pid_of(&replaced.stdout), old_runner);

    let stop = env.run(&["stop", &job.id]);
    assert_eq!(stop.code, 0, "{}{}", stop.stdout, stop.stderr);
    assert!(containers_of(&job.id).is_empty());
}

#[test]
fn run_replace_in_the_foreground_clears_what_a_dead_runner_left() {
    let job = replaceable("replace-dead");
    let env = &job.env;
    let started = env.run(&["run", "-d", &job.files[0]]);
    assert_eq!(started.code, 0, "{}{}", started.stdout, started.stderr);
    wait_for_line(&job.order, "v1-main");
    let pid = runner_pid_of(&started.stdout);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill runner");
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let old_main = main_container(&job.id);

    // Left-behind containers count as running: refused without --replace.
    let again = env.run(&["run", "-d", &job.files[2]]);
    assert_eq!(again.code, 5, "{}{}", again.stdout, again.stderr);
    assert!(again.stderr.contains("--replace"), "{}", again.stderr);

    let mut running = env.spawn(&["run", "--replace", &job.files[2]]);
    let out = running.wait_for("==> Started");
    assert!(out.contains("without its runner"), "{out}");
    assert!(
        out.contains("poststop task cleanup exited with code 0"),
        "{out}"
    );
    let order = wait_for_line(&job.order, "v3-main");
    assert_eq!(order, "v1-main\nv1-stopped\nv1-poststop\nv3-main\n");
    assert!(!containers_of(&job.id).contains(&old_main));
    assert!(container_env(&main_container(&job.id)).contains(&"VERSION=v3".to_string()));
    running.interrupt();
    let (code, out) = running.finish();
    assert_eq!(code, 0, "{out}");
    assert!(containers_of(&job.id).is_empty());
    // The new run's own stop ran its poststop task too.
    assert!(read(&job.order).ends_with("v3-main\nv3-stopped\nv3-poststop\n"));
}

#[test]
fn validate_and_plan_warn_about_images_a_start_could_not_get() {
    let env = RunnerEnv::new("image-warn");
    let file = env.state.join("images.nomad");
    std::fs::write(
        &file,
        format!(
            r#"job "images" {{
  group "g" {{
    task "present" {{
      driver = "podman"
      config {{
        image = "{BUSYBOX_IMAGE}"
      }}
    }}
    task "missing" {{
      driver = "podman"
      config {{
        image = "localhost/ndp-no-such-image:latest"
      }}
    }}
    task "invalid" {{
      driver = "podman"
      config {{
        image = "Not/A_Valid-Ref"
      }}
    }}
  }}
}}
"#
        ),
    )
    .expect("job file");
    let path = file.to_str().expect("utf-8");
    let missing = format!(
        "g.missing at {path}:12:9: image localhost/ndp-no-such-image:latest not found locally"
    );
    let invalid = format!("g.invalid at {path}:18:9: invalid image reference \"Not/A_Valid-Ref\"");
    for command in ["validate", "plan"] {
        let out = env.run(&[command, path]);
        assert_eq!(
            out.code, 0,
            "{command}: a warning is no error: {}",
            out.stderr
        );
        assert!(
            out.stdout.contains(&missing) && out.stdout.contains(&invalid),
            "{command}:\n{}",
            out.stdout
        );
        assert!(!out.stdout.contains("g.present at"), "{}", out.stdout);
        assert!(!out.stdout.contains("skipped"), "{}", out.stdout);

        let json = env.run(&[command, "--json", path]);
        assert_eq!(json.code, 0, "{}", json.stderr);
        let doc: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
        let warnings = doc["warnings"].as_array().expect("warnings");
        let tasks: Vec<&str> = warnings.iter().filter_map(|w| w["task"].as_str()).collect();
        assert_eq!(tasks, ["missing", "invalid"], "{doc}");
        assert!(warnings[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not found locally")));
        assert_eq!(warnings[0]["image"], "localhost/ndp-no-such-image:latest");
        assert!(doc.get("image_check_skipped").is_none(), "{doc}");
    }

    // Offline: still valid, the parse check still warns, and the skip is said.
    for command in ["validate", "plan"] {
        let mut cmd = env.command(&[command, path]);
        cmd.env("CONTAINER_HOST", "unix:///nonexistent/podman.sock");
        let out = env.run_with(cmd);
        assert_eq!(out.code, 0, "{command}: {}", out.stderr);
        assert!(
            out.stdout.contains("Image check skipped")
                && out
                    .stdout
                    .contains("podman is not reachable at unix:///nonexistent/podman.sock"),
            "{}",
            out.stdout
        );
        assert!(
            out.stdout.contains(&invalid) && !out.stdout.contains("g.missing at"),
            "{}",
            out.stdout
        );
        let mut cmd = env.command(&[command, "--json", path]);
        cmd.env("CONTAINER_HOST", "unix:///nonexistent/podman.sock");
        let json = env.run_with(cmd);
        assert_eq!(json.code, 0, "{}", json.stderr);
        let doc: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
        assert!(
            doc["image_check_skipped"]
                .as_str()
                .is_some_and(|s| s.contains("not reachable")),
            "{doc}"
        );
        assert_eq!(doc["warnings"].as_array().map(Vec::len), Some(1), "{doc}");
    }
}

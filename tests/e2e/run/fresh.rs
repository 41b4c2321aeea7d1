//! The runner on a fresh machine (issue 13): no project image and no registry for the
//! bridge namespace holder.

use super::harness::{task_lines, RunnerEnv};
use crate::support::{start_private_podman, unique_name, BUSYBOX_IMAGE};

/// A batch job in a bridge group: its task sees the namespace's interface and port.
fn bridge_job(id: &str) -> String {
    format!(
        r#"
job "{id}" {{
  type = "batch"
  group "g" {{
    network {{
      mode = "bridge"
      port "http" {{
        to = 8080
      }}
    }}
    task "t" {{
      driver = "podman"
      config {{
        image   = "{BUSYBOX_IMAGE}"
        command = "sh"
        args    = ["-c", "echo ifaces=$(ls /sys/class/net | tr '\n' ' '); echo port=$NOMAD_ALLOC_PORT_http"]
      }}
    }}
  }}
}}
"#
    )
}

#[test]
fn a_bridge_job_runs_with_only_podman_and_the_binary() {
    // Own storage: nothing in it but the busybox image the task uses.
    let bed = start_private_podman();
    let images = |bed: &crate::support::TestPodman| {
        let mut names: Vec<String> = bed
            .cli_ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
            .lines()
            .map(str::to_string)
            .collect();
        names.sort();
        names
    };
    assert_eq!(images(&bed), [BUSYBOX_IMAGE]);

    let env = RunnerEnv::new("run-fresh-bridge");
    let id = unique_name("fresh-bridge");
    let file = env.state.join("bridge.nomad");
    std::fs::write(&file, bridge_job(&id)).expect("job file");
    let file = file.to_str().expect("utf-8");
    for round in 0..2 {
        let mut cmd = env.command(&["run", file]);
        cmd.env("CONTAINER_HOST", bed.socket_url());
        let out = env.run_with(cmd);
        assert_eq!(out.code, 0, "round {round}:\n{}{}", out.stdout, out.stderr);
        let lines = task_lines(&out.stdout, "g.t");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("ifaces=") && l.contains("eth0")),
            "{}",
            out.stdout
        );
        assert!(lines.iter().any(|l| l == "port=8080"), "{}", out.stdout);
        assert!(
            out.stdout.contains("network namespace held by nomad_init-"),
            "{}",
            out.stdout
        );
    }
    // The runner made its pause image (once), labelled as its own, and pulled nothing.
    let pause = images(&bed)
        .into_iter()
        .find(|i| i.starts_with("localhost/nomad-driver-podman-pause:"))
        .expect("pause image made");
    assert_eq!(images(&bed).len(), 2, "{:?}", images(&bed));
    let label = bed.cli_ok(&[
        "image",
        "inspect",
        "--format",
        "{{index .Labels \"io.nomad-driver-podman.pause\"}} {{json .Config.Entrypoint}}",
        &pause,
    ]);
    assert_eq!(
        label,
        format!("{} [\"/catatonit\",\"-P\"]", env!("CARGO_PKG_VERSION"))
    );
    assert!(bed
        .containers_labelled(&format!("io.nomad-driver-podman.runner.job={id}"))
        .is_empty());

    // --infra-image still overrides: an image that is not there fails the group network.
    let mut cmd = env.command(&["run", "--infra-image", "localhost/no-such-infra:1", file]);
    cmd.env("CONTAINER_HOST", bed.socket_url());
    let out = env.run_with(cmd);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("cannot create the group network"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("no-such-infra"), "{}", out.stdout);
    assert!(bed
        .containers_labelled(&format!("io.nomad-driver-podman.runner.job={id}"))
        .is_empty());
}

/// Podman settings for the embedded-service test: its own storage, tmp dir and (unused)
/// network config, so the service the runner starts touches nothing of the host's.
struct PrivateStorage {
    dir: std::path::PathBuf,
    storage_conf: std::path::PathBuf,
    containers_conf: std::path::PathBuf,
}

impl PrivateStorage {
    fn new(env: &RunnerEnv) -> Self {
        let dir = env.state.join("storage");
        for d in ["", "root", "runroot", "tmp", "networks"] {
            std::fs::create_dir_all(dir.join(d)).expect("storage dirs");
            // The rootless lane's runner (the test user) starts the service.
            crate::support::give_to_podman_user(&dir.join(d));
        }
        let storage_conf = dir.join("storage.conf");
        // Rootless podman here has no fuse-overlayfs: vfs, as the lane's own services. It
        // also ignores `graphroot` and would use (and leave things in) the test user's
        // own storage; `rootless_storage_path` is what it reads.
        let rootless = if crate::support::lane().is_rootless() {
            format!(
                "driver = \"vfs\"\nrootless_storage_path = \"{}/root\"\n",
                dir.display()
            )
        } else {
            String::new()
        };
        std::fs::write(
            &storage_conf,
            format!(
                "[storage]\n{rootless}graphroot = \"{0}/root\"\nrunroot = \"{0}/runroot\"\n",
                dir.display()
            ),
        )
        .expect("storage.conf");
        let containers_conf = dir.join("containers.conf");
        std::fs::write(
            &containers_conf,
            format!(
                "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]\nlog_driver = \"k8s-file\"\n\n\
                 [network]\nnetwork_config_dir = \"{0}/networks\"\n\n\
                 [engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\nlock_type = \"file\"\ntmp_dir = \"{0}/tmp\"\n",
                dir.display()
            ),
        )
        .expect("containers.conf");
        PrivateStorage {
            dir,
            storage_conf,
            containers_conf,
        }
    }

    fn apply(&self, cmd: &mut std::process::Command) {
        cmd.env("CONTAINERS_STORAGE_CONF", &self.storage_conf)
            .env("CONTAINERS_CONF", &self.containers_conf);
        if crate::support::lane().is_rootless() {
            // Rootless podman keeps its blob cache in the user's data home.
            cmd.env("XDG_DATA_HOME", self.dir.join("data"));
        }
    }

    fn podman(&self, args: &[&str]) -> std::process::Output {
        let mut cmd =
            crate::support::podman().command_as_podman_user(std::path::Path::new("podman"));
        self.apply(&mut cmd);
        cmd.args(args)
            .current_dir(&self.dir)
            .output()
            .expect("podman CLI runs")
    }
}

/// Kills the embedded service of `state` (by its recorded pid) and removes the test's
/// containers and storage mounts, whatever the test's outcome.
struct EmbeddedCleanup<'a> {
    state: std::path::PathBuf,
    storage: &'a PrivateStorage,
    job: String,
}

impl Drop for EmbeddedCleanup<'_> {
    fn drop(&mut self) {
        let filter = format!("label=io.nomad-driver-podman.runner.job={}", self.job);
        let ids = self.storage.podman(&["ps", "-aq", "--filter", &filter]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = self.storage.podman(&["rm", "-f", "-t", "0", id]);
        }
        if let Some(pid) = service_pid(&self.state) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // Storage mounts and files go with the test bed's directory (its watchdog).
    }
}

fn service_pid(state: &std::path::Path) -> Option<i32> {
    std::fs::read_to_string(state.join("podman-service/service.pid"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !matches!(
                s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .chars()
                    .next(),
                Some('Z' | 'X')
            )
        })
        .unwrap_or(false)
}

fn pid_in(text: &str, after: &str) -> i32 {
    let rest = &text[text
        .find(after)
        .unwrap_or_else(|| panic!("{after:?} in:\n{text}"))
        + after.len()..];
    rest.chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("pid after {after:?} in:\n{text}"))
}

#[test]
fn without_a_podman_service_the_runner_starts_and_stops_a_private_one() {
    if super::harness::default_socket_answers() {
        eprintln!("skipped: the default podman socket answers on this machine");
        return;
    }
    let env = RunnerEnv::new("run-embedded");
    let storage = PrivateStorage::new(&env);
    let id = unique_name("embedded");
    let _cleanup = EmbeddedCleanup {
        state: env.state.clone(),
        storage: &storage,
        job: id.clone(),
    };
    // The task image, and nothing else, in the service's storage.
    let archive = env.state.join("busybox.tar");
    crate::support::podman().cli_ok(&[
        "save",
        "-o",
        archive.to_str().expect("utf-8"),
        BUSYBOX_IMAGE,
    ]);
    let loaded = storage.podman(&["load", "-i", archive.to_str().expect("utf-8")]);
    assert!(
        loaded.status.success(),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );

    let job = |kind: &str, script: &str| {
        format!(
            r#"job "{id}" {{
  type = "{kind}"
  group "g" {{
    task "t" {{
      driver = "podman"
      config {{
        image        = "{BUSYBOX_IMAGE}"
        network_mode = "none"
        command      = "sh"
        args         = ["-c", "{script}"]
      }}
      kill_timeout = "1s"
    }}
  }}
}}
"#
        )
    };
    let file = env.state.join("job.nomad");
    let command = |args: &[&str]| {
        let mut cmd = env.command(args);
        cmd.env_remove("CONTAINER_HOST");
        storage.apply(&mut cmd);
        cmd
    };

    // Foreground batch run: started, used, stopped, one line each, nothing left.
    std::fs::write(&file, job("batch", "echo via-private-service")).expect("job file");
    let out = env.run_with(command(&["run", file.to_str().expect("utf-8")]));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        task_lines(&out.stdout, "g.t")
            .iter()
            .any(|l| l == "via-private-service"),
        "{}",
        out.stdout
    );
    let pid = pid_in(&out.stdout, "started a private one (pid ");
    assert!(
        out.stdout
            .contains(&format!("stopped the private podman service (pid {pid})")),
        "{}",
        out.stdout
    );
    assert!(!alive(pid), "service {pid} stopped");
    assert!(
        !env.state.join("podman-service").exists(),
        "service dir removed"
    );

    // run --detach keeps it until stop; ps finds the job through it.
    std::fs::write(&file, job("service", "sleep 300")).expect("job file");
    let out = env.run_with(command(&["run", "-d", file.to_str().expect("utf-8")]));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let pid = service_pid(&env.state).expect("service pid recorded");
    assert!(alive(pid));
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).expect("service cwd");
    assert_eq!(cwd, env.state.join("podman-service/cwd"));
    let ps = env.run_with(command(&["ps", &id]));
    assert_eq!(ps.code, 0, "{}{}", ps.stdout, ps.stderr);
    assert!(ps.stdout.contains("running"), "{}", ps.stdout);
    let stop = env.run_with(command(&["stop", &id]));
    assert_eq!(stop.code, 0, "{}{}", stop.stdout, stop.stderr);
    assert!(
        !alive(pid),
        "service {pid} stopped with the job:\n{}",
        stop.stdout
    );
    assert!(
        !env.state.join("podman-service").exists(),
        "service dir removed"
    );
    let left = storage.podman(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=io.nomad-driver-podman.runner.job={id}"),
    ]);
    assert!(String::from_utf8_lossy(&left.stdout).trim().is_empty());

    // An explicit socket is never replaced.
    let mut cmd = command(&["run", file.to_str().expect("utf-8")]);
    let dead = format!("unix://{}/nothing.sock", env.state.display());
    cmd.env("CONTAINER_HOST", &dead);
    let out = env.run_with(cmd);
    assert_eq!(out.code, 4, "{}{}", out.stdout, out.stderr);
    assert!(!out.stdout.contains("private"), "{}", out.stdout);
    assert!(service_pid(&env.state).is_none());
}

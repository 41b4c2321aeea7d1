//! Running the binary's runner commands in a private state dir against the test bed.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{podman, unique_name, LabelCleanup};

pub const BIN: &str = env!("CARGO_BIN_EXE_nomad-driver-podman");
/// The runner's label naming a container's job.
pub const JOB_LABEL: &str = "io.nomad-driver-podman.runner.job";

/// Removes the containers of runner job `id` when dropped, whatever the test's outcome.
pub fn job_cleanup(id: &str) -> crate::support::LabelCleanup {
    crate::support::LabelCleanup {
        key: JOB_LABEL.into(),
        value: id.to_string(),
    }
}
/// Safety net only: a hung runner fails the test instead of hanging it.
const DEADLINE: Duration = Duration::from_secs(240);

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A private runner state dir; every command runs with it and the test bed's socket.
pub struct RunnerEnv {
    pub state: PathBuf,
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Finished {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl RunnerEnv {
    pub fn new(prefix: &str) -> Self {
        RunnerEnv {
            state: podman().scratch_dir(prefix),
        }
    }

    /// Writes `<state>/<id>.nomad`: a batch job whose one group `g` (no restarts) has
    /// one podman task `task` with `body` (its config and other blocks).
    pub fn write_batch_job(&self, id: &str, task: &str, body: &str) -> PathBuf {
        let file = self.state.join(format!("{id}.nomad"));
        let job = format!(
            "job \"{id}\" {{\n  type = \"batch\"\n  group \"g\" {{\n    restart {{\n      \
             attempts = 0\n      mode     = \"fail\"\n    }}\n    task \"{task}\" {{\n      \
             driver = \"podman\"\n{body}\n    }}\n  }}\n}}\n"
        );
        std::fs::write(&file, job).expect("job file");
        file
    }

    /// The runner as the user of the bed's podman would run it (on the rootless lane, the
    /// test user: its allocation directories must be reachable by that podman).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = podman().command_as_podman_user(Path::new(BIN));
        cmd.args(args)
            .env("CONTAINER_HOST", podman().socket_url())
            .env("NOMAD_RUNNER_STATE_DIR", &self.state)
            .env("NO_COLOR", "1")
            .current_dir(repo_root())
            .stdin(Stdio::null());
        cmd
    }

    /// Runs a command to its end.
    pub fn run(&self, args: &[&str]) -> Finished {
        self.run_with(self.command(args))
    }

    pub fn run_with(&self, mut cmd: Command) -> Finished {
        let out_path = self.state.join(unique_name("out"));
        let err_path = self.state.join(unique_name("err"));
        let child = cmd
            .stdout(fs::File::create(&out_path).expect("stdout file"))
            .stderr(fs::File::create(&err_path).expect("stderr file"))
            .spawn()
            .expect("runner binary starts");
        let code = wait_with_deadline(child, &format!("{cmd:?}"));
        Finished {
            code,
            stdout: fs::read_to_string(&out_path).unwrap_or_default(),
            stderr: fs::read_to_string(&err_path).unwrap_or_default(),
        }
    }

    /// Starts a long-running command (`run` of a service job) with its output in a file.
    pub fn spawn(&self, args: &[&str]) -> Running {
        let log = self.state.join(unique_name("running"));
        let file = fs::File::create(&log).expect("output file");
        let child = self
            .command(args)
            .stdout(file.try_clone().expect("dup"))
            .stderr(file)
            .spawn()
            .expect("runner binary starts");
        Running {
            child: Some(child),
            log,
        }
    }

    /// A copy of `examples/jobs/<name>.nomad` with a unique job id, and a guard that
    /// removes the job's containers whatever happens.
    pub fn example(&self, name: &str) -> ExampleJob {
        let text = fs::read_to_string(
            repo_root()
                .join("examples/jobs")
                .join(format!("{name}.nomad")),
        )
        .expect("example exists");
        let id = unique_name(name);
        let needle = format!("job \"{name}\"");
        assert!(
            text.contains(&needle),
            "example {name} declares job {name:?}"
        );
        let file = self.state.join(format!("{id}.nomad"));
        fs::write(&file, text.replacen(&needle, &format!("job \"{id}\""), 1))
            .expect("write job copy");
        ExampleJob {
            _cleanup: LabelCleanup {
                key: JOB_LABEL.to_string(),
                value: id.clone(),
            },
            id,
            file,
        }
    }

    /// The allocation directories of a job's last run.
    pub fn alloc_dirs(&self, job: &str) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = fs::read_dir(self.state.join(job))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default();
        dirs.sort();
        dirs
    }
}

pub struct ExampleJob {
    pub id: String,
    pub file: PathBuf,
    /// Removes the job's containers when the test ends, however it ends.
    pub _cleanup: LabelCleanup,
}

impl ExampleJob {
    pub fn path(&self) -> &str {
        self.file.to_str().expect("utf-8 path")
    }
}

fn wait_with_deadline(mut child: Child, what: &str) -> i32 {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not finish");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A runner process still going.
pub struct Running {
    child: Option<Child>,
    log: PathBuf,
}

impl Running {
    pub fn output(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the output contains `text`; returns the output.
    pub fn wait_for(&mut self, text: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let out = self.output();
            if out.contains(text) {
                return out;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("runner exited ({status}) before printing {text:?}:\n{out}");
                }
            }
            assert!(
                Instant::now() < deadline,
                "no {text:?} in the output:\n{out}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pid(&self) -> i32 {
        self.child
            .as_ref()
            .map(|c| c.id() as i32)
            .unwrap_or_default()
    }

    /// Ctrl-C.
    pub fn interrupt(&self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGINT,
        )
        .expect("SIGINT");
    }

    /// Waits for the exit; returns the code and the whole output.
    pub fn finish(mut self) -> (i32, String) {
        let child = self.child.take().expect("running");
        let code = wait_with_deadline(child, "runner");
        (code, self.output())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The host port the runner printed for `label` (`ports http 127.0.0.1:NNNNN->...`), the
/// first one, or the one of allocation `[index]`.
pub fn ports_of(output: &str, label: &str) -> Vec<u16> {
    let needle = format!("{label} 127.0.0.1:");
    output
        .lines()
        .filter(|l| l.contains("is allocation"))
        .filter_map(|l| {
            let start = l.find(&needle)? + needle.len();
            let digits: String = l[start..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .collect()
}

/// GET `path` from the host; retried until the server answers (it may still be starting).
/// On giving up, the panic says what the last attempt met and who listens on the port.
pub fn http_get(port: u16, path: &str) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let last = match TcpStream::connect(("127.0.0.1", port)) {
            Err(e) => format!("connect: {e}"),
            Ok(mut stream) => {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
                let mut response = String::new();
                match stream
                    .write_all(request.as_bytes())
                    .and_then(|()| stream.read_to_string(&mut response))
                {
                    Err(e) => format!("connected, then: {e}"),
                    Ok(_) if response.starts_with("HTTP/1") => return response,
                    Ok(n) => format!("connected, then {n} bytes: {response:?}"),
                }
            }
        };
        if Instant::now() >= deadline {
            let listeners = Command::new("ss")
                .args(["-ltnpH", &format!("sport = :{port}")])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            panic!("nothing answers on 127.0.0.1:{port} (last attempt: {last}; listening: {listeners:?})");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn containers_of(job: &str) -> Vec<String> {
    podman().containers_labelled(&format!("{JOB_LABEL}={job}"))
}

/// The environment of a container, as podman reports it.
pub fn container_env(name: &str) -> Vec<String> {
    podman()
        .cli_ok(&[
            "inspect",
            "--format",
            "{{range .Config.Env}}{{println .}}{{end}}",
            name,
        ])
        .lines()
        .map(str::to_string)
        .collect()
}

/// Lines of `output` from the task `label` (`group.task | ...`), without the prefix.
pub fn task_lines(output: &str, label: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|l| {
            let (prefix, rest) = l.split_once(" | ")?;
            (prefix.trim_end() == label).then(|| rest.to_string())
        })
        .collect()
}

/// Position of the first line containing `text`, for ordering assertions.
pub fn line_of(output: &str, text: &str) -> usize {
    output
        .lines()
        .position(|l| l.contains(text))
        .unwrap_or_else(|| panic!("no line with {text:?} in:\n{output}"))
}

pub fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Whether the runner's default podman socket (no --socket, no CONTAINER_HOST) answers.
pub fn default_socket_answers() -> bool {
    let path = if nix::unistd::getuid().is_root() {
        PathBuf::from("/run/podman/podman.sock")
    } else {
        PathBuf::from(format!(
            "/run/user/{}/podman/podman.sock",
            nix::unistd::getuid()
        ))
    };
    std::os::unix::net::UnixStream::connect(path).is_ok()
}

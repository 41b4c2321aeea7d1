//! The bench's private podman service, started and stopped with the project's scripts
//! (`scripts/podman-service`, `scripts/build-test-image`), plus a watchdog that tears it
//! down even when the bench dies: a `sh` blocked reading a pipe only this process holds.

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

use super::BenchResult;

/// The image `scripts/build-test-image` imports.
pub const BUSYBOX_IMAGE: &str = "localhost/ndp-busybox:latest";

/// Runs when the watchdog's stdin closes: pods and containers, the service, leftover
/// mounts under the directory, then the directory itself. Signals meant for the bench's
/// process group (Ctrl-C, `timeout`) must not end the watchdog before it cleaned up.
const TEARDOWN: &str = r#"trap '' INT TERM HUP
cat >/dev/null
"$0" cli "$1" pod rm -af -t 0 >/dev/null 2>&1
"$0" stop "$1" >/dev/null 2>&1
grep -o " $1/[^ ]*" /proc/self/mounts | sort -r | while read -r m; do umount -l "$m"; done
rm -rf "$1"
"#;

pub struct PodmanService {
    dir: PathBuf,
    scripts: PathBuf,
    url: String,
    watchdog: Child,
    watchdog_pipe: Option<ChildStdin>,
}

fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts")
}

fn run_script(command: &mut Command, what: &str) -> BenchResult<String> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

impl PodmanService {
    /// Starts the service in `dir` (created; removed again by [`PodmanService::stop`] or
    /// the watchdog) and imports the busybox image.
    pub fn start(dir: &Path) -> BenchResult<Self> {
        std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let scripts = scripts_dir();
        let podman_service = scripts.join("podman-service");
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(TEARDOWN)
            .arg(&podman_service)
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn the cleanup watchdog: {e}"))?;
        let watchdog_pipe = watchdog.stdin.take();
        let mut service = PodmanService {
            dir: dir.to_path_buf(),
            scripts,
            url: String::new(),
            watchdog,
            watchdog_pipe,
        };
        service.url = run_script(
            Command::new(&podman_service).arg("start").arg(dir),
            "scripts/podman-service start",
        )?;
        run_script(
            Command::new(service.scripts.join("build-test-image")).arg(dir),
            "scripts/build-test-image",
        )?;
        Ok(service)
    }

    /// `unix://DIR/podman.sock`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn socket_path(&self) -> PathBuf {
        self.dir.join("podman.sock")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Pid of `podman system service`.
    pub fn pid(&self) -> BenchResult<u32> {
        let path = self.dir.join("service.pid");
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        text.trim()
            .parse()
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// `scripts/podman-service cli DIR ARGS...`: the podman CLI on the service's storage.
    pub fn cli(&self) -> Command {
        let mut command = Command::new(self.scripts.join("podman-service"));
        command.arg("cli").arg(&self.dir).stdin(Stdio::null());
        command
    }

    /// Removes everything the bench left and stops the service; waits for the teardown.
    pub fn stop(mut self) -> BenchResult<()> {
        // End of file on its stdin is what starts the teardown.
        drop(self.watchdog_pipe.take());
        self.watchdog
            .wait()
            .map_err(|e| format!("wait for the teardown: {e}"))?;
        Ok(())
    }
}

//! The embedded podman service: when the user names no socket (no `--socket`, no
//! `CONTAINER_HOST`) and the default one does not answer, `run` starts a private
//! `podman system service` for the user with its socket in the state root
//! (`<root>/podman-service/podman.sock`), and the last runner that uses it stops it (by
//! its recorded pid and start time) and removes the directory. `ps`, `logs` and `stop`
//! find it there while it runs.
//!
//! Layout of `<root>/podman-service/` (0700): `podman.sock`, `service.pid` (pid and
//! start time of the podman process), `service.log` (its output), `cwd/` (its working
//! directory: conmon drops its `oom` marker files into it), `users/<pid>` (one record per
//! runner using it). `<root>/podman-service.lock` serialises starting and stopping.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::Signal;

use super::statedir::{self, start_time, ProcessIdentity};

const DIR: &str = "podman-service";
const LOCK: &str = "podman-service.lock";
/// How long the started service may take to answer.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// How long it may take to exit after SIGTERM before it is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(10);

/// Why the embedded service could not be started or joined.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A file or directory of the service could not be made or opened.
    #[error("cannot {action} {}: {source}", path.display())]
    File {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot lock {}: {source}", path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: nix::errno::Errno,
    },
    #[error("cannot open the service log: {0}")]
    Log(#[source] std::io::Error),
    #[error("cannot start `podman system service`: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("pid out of range")]
    PidOutOfRange,
    #[error("`podman system service` exited at once; see {}", log.display())]
    ExitedAtOnce { log: PathBuf },
    #[error("cannot record the service pid: {0}")]
    RecordPid(#[source] std::io::Error),
    /// It did not answer in time, or exited; `log` is its output.
    #[error("`podman system service` did not answer on {url}: {log}")]
    NoAnswer { url: String, log: String },
    #[error("cannot read /proc/self/stat")]
    NoProcessIdentity,
    #[error("cannot record this runner as a user of the service: {0}")]
    RecordUser(#[source] std::io::Error),
    /// The blocking task that starts it never finished.
    #[error("embedded podman service: {0}")]
    Worker(#[source] tokio::task::JoinError),
}

pub fn dir(root: &Path) -> PathBuf {
    root.join(DIR)
}

fn socket_path(root: &Path) -> PathBuf {
    dir(root).join("podman.sock")
}

pub fn socket_url(root: &Path) -> String {
    format!("unix://{}", socket_path(root).display())
}

/// Whether something accepts connections on the unix socket `url` names (`unix://`).
pub fn answers(url: &str) -> bool {
    let Some(path) = url.strip_prefix("unix://") else {
        return false;
    };
    let path = if path.starts_with('/') {
        PathBuf::from(path)
    } else {
        Path::new("/").join(path)
    };
    std::os::unix::net::UnixStream::connect(path).is_ok()
}

/// The embedded service's URL when the user named no socket, `default_url` does not
/// answer and the embedded service of this state root does.
pub fn fallback(explicit: Option<&str>, default_url: &str, root: &Path) -> Option<String> {
    if explicit.is_some() || answers(default_url) {
        return None;
    }
    let url = socket_url(root);
    (running(root).is_some() && answers(&url)).then_some(url)
}

fn lock(root: &Path) -> Result<Flock<File>, ServiceError> {
    let path = root.join(LOCK);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|source| ServiceError::File {
            action: "open",
            path: path.clone(),
            source,
        })?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, source)| ServiceError::Lock { path, source })
}

/// The recorded service process, if it still is that process and a podman service on
/// this state root's socket.
fn running(root: &Path) -> Option<ProcessIdentity> {
    let record = statedir::read_private_file(&dir(root).join("service.pid")).ok()?;
    let recorded = ProcessIdentity::parse(&String::from_utf8_lossy(&record))?;
    is_service(recorded, root).then_some(recorded)
}

fn is_service(recorded: ProcessIdentity, root: &Path) -> bool {
    if start_time(recorded.pid) != Some(recorded.start_time) {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{}/cmdline", recorded.pid)) else {
        return false;
    };
    let url = socket_url(root);
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    args.windows(2)
        .any(|w| w == [&b"system"[..], &b"service"[..]])
        && args.contains(&url.as_bytes())
}

fn alive(record: &[u8]) -> bool {
    ProcessIdentity::parse(&String::from_utf8_lossy(record))
        .is_some_and(|p| start_time(p.pid) == Some(p.start_time))
}

fn private_dir(path: &Path) -> Result<(), ServiceError> {
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .map_err(|source| ServiceError::File {
            action: "create",
            path: path.to_path_buf(),
            source,
        })
}

/// What `start` did.
pub struct Started {
    pub url: String,
    /// The pid of a service this call started; `None` when one was running already.
    pub started_pid: Option<i32>,
}

/// Starts the embedded service (or joins the running one) and records this process as
/// one of its users.
pub async fn start(root: &Path) -> Result<Started, ServiceError> {
    let root = root.to_path_buf();
    tokio::task::spawn_blocking(move || start_blocking(&root))
        .await
        .map_err(ServiceError::Worker)?
}

fn start_blocking(root: &Path) -> Result<Started, ServiceError> {
    let _lock = lock(root)?;
    let url = socket_url(root);
    let dir = dir(root);
    let mut started_pid = None;
    if running(root).is_none() || !answers(&url) {
        stop_locked(root);
        private_dir(&dir)?;
        private_dir(&dir.join("cwd"))?;
        private_dir(&dir.join("users"))?;
        let log_path = dir.join("service.log");
        let log =
            statedir::create_private_file(&log_path).map_err(|source| ServiceError::File {
                action: "create",
                path: log_path.clone(),
                source,
            })?;
        let log_err = log.try_clone().map_err(ServiceError::Log)?;
        let mut child = Command::new("podman")
            .args(["system", "service", "--time=0", &url])
            .current_dir(dir.join("cwd"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // Its own process group: a Ctrl-C in the runner's terminal must not end it
            // before the runner has stopped the job's containers through it.
            .process_group(0)
            .spawn()
            .map_err(ServiceError::Spawn)?;
        let pid = i32::try_from(child.id()).map_err(|_| ServiceError::PidOutOfRange)?;
        let identity = start_time(pid).map(|start_time| ProcessIdentity { pid, start_time });
        // Reaped whenever it ends, by whichever runner stops it.
        std::thread::spawn(move || child.wait());
        let Some(identity) = identity else {
            return Err(ServiceError::ExitedAtOnce { log: log_path });
        };
        statedir::write_private_file(&dir.join("service.pid"), identity.to_record().as_bytes())
            .map_err(ServiceError::RecordPid)?;
        let deadline = Instant::now() + START_DEADLINE;
        while !answers(&url) {
            if start_time(pid) != Some(identity.start_time) || Instant::now() > deadline {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                stop_locked(root);
                return Err(ServiceError::NoAnswer {
                    url,
                    log: log.trim().to_string(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        started_pid = Some(pid);
    }
    let me = ProcessIdentity::current().ok_or(ServiceError::NoProcessIdentity)?;
    statedir::write_private_file(
        &dir.join("users").join(me.pid.to_string()),
        me.to_record().as_bytes(),
    )
    .map_err(ServiceError::RecordUser)?;
    Ok(Started { url, started_pid })
}

/// This runner no longer uses the service; the service stops when no live runner does.
/// Returns the pid of a service it stopped.
pub async fn release(root: &Path) -> Option<i32> {
    let root = root.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let _lock = lock(&root).ok()?;
        let _ = std::fs::remove_file(
            dir(&root)
                .join("users")
                .join(std::process::id().to_string()),
        );
        stop_if_unused_locked(&root)
    })
    .await
    .ok()
    .flatten()
}

/// Stops the service if no live runner uses it (`stop` of a job whose runner is gone).
pub async fn stop_if_unused(root: &Path) -> Option<i32> {
    let root = root.to_path_buf();
    tokio::task::spawn_blocking(move || {
        if !dir(&root).exists() {
            return None;
        }
        let _lock = lock(&root).ok()?;
        stop_if_unused_locked(&root)
    })
    .await
    .ok()
    .flatten()
}

fn stop_if_unused_locked(root: &Path) -> Option<i32> {
    let users = dir(root).join("users");
    let in_use = std::fs::read_dir(&users)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .any(|e| statedir::read_private_file(&e.path()).is_ok_and(|r| alive(&r)));
    if in_use {
        return None;
    }
    stop_locked(root)
}

/// Stops the recorded service process (SIGTERM, then SIGKILL) and removes the service
/// directory. Nothing but the recorded, verified process is signalled.
fn stop_locked(root: &Path) -> Option<i32> {
    let stopped = running(root).map(|service| {
        let pid = nix::unistd::Pid::from_raw(service.pid);
        // Pinned with a pidfd before the check, so a reused pid is never hit.
        let pidfd = pidfd_open(service.pid);
        if is_service(service, root) {
            send(pidfd.as_ref(), pid, Signal::SIGTERM);
            let deadline = Instant::now() + STOP_DEADLINE;
            while running_or_zombie(service) == Some(true) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if running_or_zombie(service) == Some(true) {
                send(pidfd.as_ref(), pid, Signal::SIGKILL);
            }
        }
        service.pid
    });
    let _ = std::fs::remove_dir_all(dir(root));
    stopped
}

/// `Some(true)` while the process runs, `Some(false)` as a zombie, `None` when gone.
pub fn running_or_zombie(p: ProcessIdentity) -> Option<bool> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", p.pid)).ok()?;
    if start_time(p.pid) != Some(p.start_time) {
        return None;
    }
    let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
    Some(state != 'Z' && state != 'X')
}

fn pidfd_open(pid: i32) -> Option<std::os::fd::OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: `fd` was just returned by pidfd_open and is owned here only.
    Some(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

fn send(pidfd: Option<&std::os::fd::OwnedFd>, pid: nix::unistd::Pid, signal: Signal) {
    match pidfd {
        Some(fd) => {
            // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
            unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    std::os::fd::AsRawFd::as_raw_fd(fd),
                    signal as i32,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                );
            }
        }
        None => {
            let _ = nix::sys::signal::kill(pid, signal);
        }
    }
}

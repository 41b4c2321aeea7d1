//! The runner's state root and the files it keeps there, safe against other local users.
//!
//! * The default root is not a predictable world-writable path: root uses
//!   `/run/nomad-driver-podman`, other users `$XDG_RUNTIME_DIR/nomad-driver-podman`. Only
//!   without `XDG_RUNTIME_DIR` is `/tmp/nomad-driver-podman-<uid>` used; it is created
//!   0700 and refused when it is a symlink, belongs to another user or is open to others
//!   (another user may have created it first, or planted files in it). Under `/run` and
//!   `$XDG_RUNTIME_DIR` (0700 parents nobody else can write) a too-wide mode is narrowed.
//! * `--state-dir` (or `NOMAD_RUNNER_STATE_DIR`) is the operator's choice and is used as
//!   given (created if missing).
//! * The runner's own files (`runner.pid`, `runner.log`, `runner.ready`, `runner.json`)
//!   are created 0600 with `O_CREAT|O_EXCL|O_NOFOLLOW` after removing any old one, and read
//!   with `O_NOFOLLOW` (only regular files of this user), so a planted symlink is never
//!   followed.
//! * `runner.pid` records the runner's pid and its start time (`/proc/PID/stat` field 22);
//!   `stop` signals a process only when both match, the process belongs to this user and
//!   runs the runner (`run` on its command line). A pid file naming any other process is
//!   reported and ignored.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where the default state root is, which decides how strictly it is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootKind {
    /// `/run/nomad-driver-podman` (root) or `$XDG_RUNTIME_DIR/nomad-driver-podman`: the
    /// parent is private, so a too-wide mode is narrowed.
    Private,
    /// `/tmp/nomad-driver-podman-<uid>`: anyone can create it first; refused unless it
    /// is this user's own 0700 directory.
    SharedTmp,
    /// `--state-dir` / `NOMAD_RUNNER_STATE_DIR`: used as given.
    Chosen,
}

/// The default state root for user `uid` with `XDG_RUNTIME_DIR` = `xdg`.
pub fn default_state_root_for(uid: u32, xdg: Option<&std::ffi::OsStr>) -> (PathBuf, RootKind) {
    if uid == 0 {
        return (PathBuf::from("/run/nomad-driver-podman"), RootKind::Private);
    }
    match xdg.filter(|d| !d.is_empty()) {
        Some(dir) => (
            PathBuf::from(dir).join("nomad-driver-podman"),
            RootKind::Private,
        ),
        None => (
            PathBuf::from(format!("/tmp/nomad-driver-podman-{uid}")),
            RootKind::SharedTmp,
        ),
    }
}

/// The default state root of this process.
pub fn default_state_root() -> (PathBuf, RootKind) {
    default_state_root_for(
        nix::unistd::getuid().as_raw(),
        std::env::var_os("XDG_RUNTIME_DIR").as_deref(),
    )
}

/// Why a state root cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    #[error("cannot create the state directory {}: {source}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the state directory {} is a symlink; refusing to follow it (remove it, or choose another with --state-dir)", path.display())]
    Symlink { path: PathBuf },
    #[error("the state directory {} is not a directory", path.display())]
    NotDirectory { path: PathBuf },
    #[error("the state directory {} belongs to uid {owner}, not to this user (uid {uid}); refusing it (remove it, or choose another with --state-dir)", path.display())]
    Owner { path: PathBuf, owner: u32, uid: u32 },
    #[error("the state directory {} has mode {mode:04o}, open to other users who may have planted files in it; refusing it (check and remove it, or chmod 700 it, or choose another with --state-dir)", path.display())]
    Mode { path: PathBuf, mode: u32 },
}

/// Creates the state root if missing (0700) and checks it as its kind requires.
pub fn prepare_root(path: &Path, kind: RootKind) -> Result<(), StateDirError> {
    let create_error = |source| StateDirError::Create {
        path: path.to_path_buf(),
        source,
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.mode(0o700);
    if kind == RootKind::Chosen {
        builder.recursive(true);
    }
    match builder.create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(create_error(e)),
    }
    if kind == RootKind::Chosen {
        return Ok(());
    }
    check_private_dir(path, kind == RootKind::SharedTmp)
}

/// `path` must be a directory (not a symlink) of this user; open to others it is
/// refused when `strict`, else narrowed to 0700.
pub fn check_private_dir(path: &Path, strict: bool) -> Result<(), StateDirError> {
    let path_buf = || path.to_path_buf();
    let meta = std::fs::symlink_metadata(path).map_err(|source| StateDirError::Create {
        path: path_buf(),
        source,
    })?;
    if meta.file_type().is_symlink() {
        return Err(StateDirError::Symlink { path: path_buf() });
    }
    if !meta.is_dir() {
        return Err(StateDirError::NotDirectory { path: path_buf() });
    }
    let uid = nix::unistd::getuid().as_raw();
    if meta.uid() != uid {
        return Err(StateDirError::Owner {
            path: path_buf(),
            owner: meta.uid(),
            uid,
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        if strict {
            return Err(StateDirError::Mode {
                path: path_buf(),
                mode,
            });
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(
            |source| StateDirError::Create {
                path: path_buf(),
                source,
            },
        )?;
    }
    Ok(())
}

/// Creates `path` afresh, 0600: an old file (or a symlink planted in its place) is
/// removed first, and the file is created with `O_EXCL|O_NOFOLLOW`, so nothing is ever
/// opened through a link and a file created in between by someone else is an error.
pub fn create_private_file(path: &Path) -> std::io::Result<File> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// [`create_private_file`] with `contents`.
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut file = create_private_file(path)?;
    file.write_all(contents)
}

/// Reads a file the runner wrote: opened with `O_NOFOLLOW`, and only a regular file
/// owned by this user is read.
pub fn read_private_file(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.uid() != nix::unistd::getuid().as_raw() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{} is not a regular file of this user; not reading it",
                path.display()
            ),
        ));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// A process as `runner.pid` records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessIdentity {
    pub pid: i32,
    /// Clock ticks after boot at which it started (`/proc/PID/stat` field 22).
    pub start_time: u64,
}

impl ProcessIdentity {
    /// This process.
    pub fn current() -> Option<ProcessIdentity> {
        let pid = i32::try_from(std::process::id()).ok()?;
        Some(ProcessIdentity {
            pid,
            start_time: start_time(pid)?,
        })
    }

    /// The pid file's text: `<pid> <start time>`.
    pub fn to_record(self) -> String {
        format!("{} {}\n", self.pid, self.start_time)
    }

    /// A pid file's text; `None` for anything else (including the old pid-only form).
    pub fn parse(record: &str) -> Option<ProcessIdentity> {
        let mut parts = record.split_ascii_whitespace();
        let pid: i32 = parts.next()?.parse().ok().filter(|p| *p > 0)?;
        let start_time: u64 = parts.next()?.parse().ok()?;
        parts
            .next()
            .is_none()
            .then_some(ProcessIdentity { pid, start_time })
    }
}

/// Field 22 of `/proc/PID/stat`, read after the command name (which may contain spaces
/// and parentheses, so the fields are counted from its last `)`).
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, after_name) = stat.rsplit_once(')')?;
    // Fields from 3 (state) on: field 22 is the 20th of them.
    after_name.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// Whether the recorded process is still the same process and a runner of this user:
/// `Err` says why not.
pub fn verify_runner(recorded: ProcessIdentity) -> Result<(), String> {
    let pid = recorded.pid;
    let Some(now) = start_time(pid) else {
        return Err(format!("process {pid} is gone"));
    };
    if now != recorded.start_time {
        return Err(format!(
            "process {pid} started at tick {now}, not at the recorded {}: the pid was reused",
            recorded.start_time
        ));
    }
    let owner = std::fs::metadata(format!("/proc/{pid}"))
        .map(|m| m.uid())
        .map_err(|e| format!("process {pid}: {e}"))?;
    let uid = nix::unistd::getuid().as_raw();
    if owner != uid {
        return Err(format!(
            "process {pid} belongs to uid {owner}, not to this user (uid {uid})"
        ));
    }
    let cmdline =
        std::fs::read(format!("/proc/{pid}/cmdline")).map_err(|e| format!("process {pid}: {e}"))?;
    if !cmdline.split(|b| *b == 0).any(|arg| arg == b"run") {
        return Err(format!(
            "process {pid} is not a runner (`run` is not on its command line)"
        ));
    }
    Ok(())
}

/// Sends `signal` to the recorded runner if it still is that runner. With a pidfd
/// (Linux 5.3+) the process is pinned before it is checked, so the pid cannot be reused
/// between the check and the signal.
pub fn signal_runner(
    recorded: ProcessIdentity,
    signal: nix::sys::signal::Signal,
) -> Result<(), String> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, recorded.pid, 0) };
    if fd < 0 {
        // No pidfds: check, then signal by pid.
        verify_runner(recorded)?;
        return nix::sys::signal::kill(nix::unistd::Pid::from_raw(recorded.pid), signal)
            .map_err(|e| format!("cannot signal process {}: {e}", recorded.pid));
    }
    let fd = i32::try_from(fd).map_err(|_| "pidfd out of range".to_string())?;
    // SAFETY: `fd` was just returned by pidfd_open and is owned here only.
    let pidfd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    verify_runner(recorded)?;
    // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
    let sent = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            std::os::fd::AsRawFd::as_raw_fd(&pidfd),
            signal as i32,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if sent < 0 {
        return Err(format!(
            "cannot signal process {}: {}",
            recorded.pid,
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn default_roots_are_private_directories() {
        assert_eq!(
            default_state_root_for(0, Some(OsStr::new("/run/user/0"))),
            (PathBuf::from("/run/nomad-driver-podman"), RootKind::Private)
        );
        assert_eq!(
            default_state_root_for(1000, Some(OsStr::new("/run/user/1000"))),
            (
                PathBuf::from("/run/user/1000/nomad-driver-podman"),
                RootKind::Private
            )
        );
        for xdg in [None, Some(OsStr::new(""))] {
            assert_eq!(
                default_state_root_for(1000, xdg),
                (
                    PathBuf::from("/tmp/nomad-driver-podman-1000"),
                    RootKind::SharedTmp
                )
            );
        }
    }

    #[test]
    fn a_shared_tmp_root_is_created_0700_and_refused_when_wrong() {
        let tmp = tempfile::tempdir().unwrap();
        // Created fresh: 0700 whatever the umask allows.
        let root = tmp.path().join("fresh");
        prepare_root(&root, RootKind::SharedTmp).unwrap();
        let meta = std::fs::symlink_metadata(&root).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o700);
        // Again: still fine.
        prepare_root(&root, RootKind::SharedTmp).unwrap();

        // Open to others: refused, not repaired (files may have been planted).
        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = prepare_root(&open, RootKind::SharedTmp).unwrap_err();
        assert!(
            matches!(err, StateDirError::Mode { mode: 0o777, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("mode 0777"), "{err}");
        let group = tmp.path().join("group");
        std::fs::create_dir(&group).unwrap();
        std::fs::set_permissions(&group, std::fs::Permissions::from_mode(0o750)).unwrap();
        assert!(prepare_root(&group, RootKind::SharedTmp).is_err());

        // A symlink (to a directory of ours, even) is refused, not followed.
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&root, &link).unwrap();
        let err = prepare_root(&link, RootKind::SharedTmp).unwrap_err();
        assert!(matches!(err, StateDirError::Symlink { .. }), "{err}");
        assert!(err.to_string().contains("symlink"), "{err}");

        // A file is not a directory.
        let file = tmp.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(matches!(
            prepare_root(&file, RootKind::SharedTmp).unwrap_err(),
            StateDirError::NotDirectory { .. }
        ));
    }

    #[test]
    fn a_root_of_another_user_is_refused() {
        // `/` belongs to root; as root, a directory chowned to nobody stands in.
        let tmp = tempfile::tempdir().unwrap();
        let theirs = if nix::unistd::getuid().is_root() {
            let dir = tmp.path().join("theirs");
            std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
            std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
            dir
        } else {
            PathBuf::from("/")
        };
        let err = prepare_root(&theirs, RootKind::SharedTmp).unwrap_err();
        assert!(matches!(err, StateDirError::Owner { .. }), "{err}");
        assert!(err.to_string().contains("belongs to uid"), "{err}");
        // Under a private parent too: the owner is never "repaired".
        assert!(check_private_dir(&theirs, false).is_err());
    }

    #[test]
    fn a_private_root_with_a_wide_mode_is_narrowed() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("nomad-driver-podman");
        std::fs::create_dir(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        prepare_root(&root, RootKind::Private).unwrap();
        assert_eq!(std::fs::metadata(&root).unwrap().mode() & 0o777, 0o700);
        // A chosen root is used as given, created with its parents.
        let chosen = tmp.path().join("a/b/c");
        prepare_root(&chosen, RootKind::Chosen).unwrap();
        assert!(chosen.is_dir());
    }

    #[test]
    fn private_files_never_follow_links() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("target");
        std::fs::write(&target, "keep").unwrap();
        let path = tmp.path().join("runner.pid");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        // Reading through the link is refused.
        assert!(read_private_file(&path).is_err());
        // Writing replaces the link with a new 0600 file; the target is untouched.
        write_private_file(&path, b"1 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.is_file());
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(read_private_file(&path).unwrap(), b"1 2\n");
        // A directory is not read.
        assert!(read_private_file(tmp.path()).is_err());
    }

    #[test]
    fn pid_records_round_trip_and_old_ones_are_not_trusted() {
        let me = ProcessIdentity::current().expect("own identity");
        assert_eq!(ProcessIdentity::parse(&me.to_record()), Some(me));
        assert_eq!(
            ProcessIdentity::parse("1234"),
            None,
            "pid only: no identity"
        );
        assert_eq!(ProcessIdentity::parse("-1 5"), None);
        assert_eq!(ProcessIdentity::parse("12 x"), None);
        assert_eq!(ProcessIdentity::parse("1 2 3"), None);
    }

    /// A child whose command line has `run` in it, as a runner's does.
    pub(crate) fn runner_like_child() -> std::process::Child {
        spawn_execed("sh", &["-c", "sleep 60; exit 0", "run"])
    }

    /// Spawns `program` and returns once the child runs it: until its exec, a child's
    /// command line is still this test binary's. (The child is returned, so its caller
    /// waits for it; clippy cannot see that.)
    #[allow(clippy::zombie_processes)]
    pub(crate) fn spawn_execed(program: &str, args: &[&str]) -> std::process::Child {
        let child = std::process::Command::new(program)
            .args(args)
            .spawn()
            .expect("spawn");
        let cmdline = format!("/proc/{}/cmdline", child.id());
        loop {
            let argv0 = std::fs::read(&cmdline).unwrap_or_default();
            if argv0.split(|b| *b == 0).next() == Some(program.as_bytes()) {
                return child;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn a_runner_is_recognised_only_with_its_start_time() {
        let mut child = runner_like_child();
        let pid = i32::try_from(child.id()).unwrap();
        let start = start_time(pid).expect("start time");
        let recorded = ProcessIdentity {
            pid,
            start_time: start,
        };
        assert_eq!(verify_runner(recorded), Ok(()));
        // The same pid with another start time is another process (pid reuse).
        let reused = ProcessIdentity {
            pid,
            start_time: start + 1,
        };
        let why = verify_runner(reused).unwrap_err();
        assert!(why.contains("reused"), "{why}");
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(verify_runner(recorded).is_err(), "gone");
    }

    #[test]
    fn only_a_verified_runner_is_signalled() {
        let mut child = runner_like_child();
        let pid = i32::try_from(child.id()).unwrap();
        let start = start_time(pid).expect("start time");
        let reused = ProcessIdentity {
            pid,
            start_time: start + 1,
        };
        let why = signal_runner(reused, nix::sys::signal::Signal::SIGTERM).unwrap_err();
        assert!(why.contains("reused"), "{why}");
        assert_eq!(child.try_wait().unwrap(), None, "still running");
        let recorded = ProcessIdentity {
            pid,
            start_time: start,
        };
        signal_runner(recorded, nix::sys::signal::Signal::SIGTERM).unwrap();
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGTERM));
    }

    #[test]
    fn a_process_that_is_not_a_runner_is_refused() {
        let mut child = spawn_execed("sleep", &["60"]);
        let pid = i32::try_from(child.id()).unwrap();
        let recorded = ProcessIdentity {
            pid,
            start_time: start_time(pid).expect("start time"),
        };
        let why = verify_runner(recorded).unwrap_err();
        assert!(why.contains("not a runner"), "{why}");
        child.kill().unwrap();
        child.wait().unwrap();
        // pid 1 belongs to root and is no runner.
        let init = ProcessIdentity {
            pid: 1,
            start_time: start_time(1).expect("pid 1"),
        };
        assert!(verify_runner(init).is_err());
    }
}

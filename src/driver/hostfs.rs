//! Opening host paths that a task can influence, without following links it planted.
//!
//! Everything below an allocation's mount points (`/alloc`, `/local`, `/secrets`) can be
//! changed by the task while the driver works: a log FIFO replaced by a symlink to
//! `/etc/cron.d/x`, a directory swapped for a link to `/`, a FIFO replaced by a device node.
//! The driver and the runner therefore never hand such a path to `open(2)` as a whole:
//!
//! * a *trusted root* (a directory the orchestrator made, e.g. the alloc dir) is opened as
//!   given, links included: that part is the operator's;
//! * every component below it is opened with `O_NOFOLLOW` relative to the verified fd of
//!   its parent, so a link anywhere below the root fails the walk (`..` is refused);
//! * the last component is first opened `O_PATH`, its type checked with `fstat`, and only
//!   then reopened for writing through `/proc/self/fd` (the same inode, no path walk), so a
//!   device node or a link in its place is never opened for I/O.
//!
//! The walk is done with single-component `openat` calls rather than `openat2`
//! (`RESOLVE_NO_SYMLINKS`), which behaves the same but needs Linux 5.6.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Why a host path was not opened.
#[derive(Debug, thiserror::Error)]
pub enum HostPathError {
    #[error("{path}: must be inside {root}")]
    Outside { path: PathBuf, root: PathBuf },
    #[error("{path}: {component:?} is a symbolic link or not a directory; refusing to follow it")]
    Link { path: PathBuf, component: OsString },
    #[error("{path}: is a {found}, expected a {expected}")]
    WrongType {
        path: PathBuf,
        found: &'static str,
        expected: &'static str,
    },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl HostPathError {
    fn io(path: &Path, source: io::Error) -> Self {
        HostPathError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// The OS error behind this failure, if there is one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            HostPathError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// The type of a file, as `fstat` saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Fifo,
    Regular,
    Directory,
    Symlink,
    Other,
}

impl FileKind {
    fn of(mode: libc::mode_t) -> Self {
        match mode & libc::S_IFMT {
            libc::S_IFIFO => FileKind::Fifo,
            libc::S_IFREG => FileKind::Regular,
            libc::S_IFDIR => FileKind::Directory,
            libc::S_IFLNK => FileKind::Symlink,
            _ => FileKind::Other,
        }
    }

    fn name(self) -> &'static str {
        match self {
            FileKind::Fifo => "FIFO",
            FileKind::Regular => "regular file",
            FileKind::Directory => "directory",
            FileKind::Symlink => "symbolic link",
            FileKind::Other => "device, socket or other special file",
        }
    }
}

/// An `O_PATH` handle on a file reached without following links, with its identity.
#[derive(Debug)]
pub struct PinnedPath {
    fd: OwnedFd,
    path: PathBuf,
    kind: FileKind,
    dev: u64,
    ino: u64,
}

impl PinnedPath {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn kind(&self) -> FileKind {
        self.kind
    }

    /// `(st_dev, st_ino)`: what the handle refers to, whatever its path says now.
    pub fn identity(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }

    /// Fails unless the handle is a `expected`.
    pub fn expect(self, expected: FileKind) -> Result<Self, HostPathError> {
        if self.kind == expected {
            Ok(self)
        } else {
            Err(HostPathError::WrongType {
                path: self.path.clone(),
                found: self.kind.name(),
                expected: expected.name(),
            })
        }
    }

    /// Opens the pinned file itself with `flags` (no path walk: a rename or a new link at
    /// its path since it was pinned changes nothing).
    pub fn reopen(&self, flags: libc::c_int) -> io::Result<File> {
        let proc_path = format!("/proc/self/fd/{}", self.fd.as_raw_fd());
        let c_path = CString::new(proc_path).map_err(io::Error::other)?;
        // SAFETY: a valid NUL-terminated path; the returned fd is owned below.
        let fd = unsafe { libc::open(c_path.as_ptr(), flags | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by open and nothing else owns it.
        Ok(unsafe { File::from_raw_fd(fd) })
    }
}

/// A directory reached without following links below a trusted root.
#[derive(Debug)]
pub struct VerifiedDir {
    fd: OwnedFd,
    path: PathBuf,
}

impl VerifiedDir {
    /// Opens `dir`, which must be `root` or below it; links are followed only in `root`.
    pub fn open(root: &Path, dir: &Path) -> Result<Self, HostPathError> {
        let components = components_below(root, dir)?;
        let mut fd = open_root(root)?;
        for component in &components {
            fd = open_dir_at(&fd, component, dir)?;
        }
        Ok(VerifiedDir {
            fd,
            path: dir.to_path_buf(),
        })
    }

    /// Like [`VerifiedDir::open`], creating missing directories (mode `mode`, umask
    /// applied) on the way.
    pub fn open_or_create(root: &Path, dir: &Path, mode: u32) -> Result<Self, HostPathError> {
        let components = components_below(root, dir)?;
        let mut fd = open_root(root)?;
        for component in &components {
            fd = match open_dir_at(&fd, component, dir) {
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    let name = c_name(component, dir)?;
                    // SAFETY: valid dirfd and NUL-terminated name.
                    let made = unsafe { libc::mkdirat(fd.as_raw_fd(), name.as_ptr(), mode) };
                    if made < 0 {
                        let e = io::Error::last_os_error();
                        if e.raw_os_error() != Some(libc::EEXIST) {
                            return Err(HostPathError::io(dir, e));
                        }
                    }
                    open_dir_at(&fd, component, dir)?
                }
                other => other?,
            };
        }
        Ok(VerifiedDir {
            fd,
            path: dir.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Pins the entry `name` of this directory without following it if it is a link.
    pub fn pin(&self, name: &OsStr) -> Result<PinnedPath, HostPathError> {
        let path = self.path.join(name);
        let c = c_name(name, &path)?;
        let flags = libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        let fd = openat(&self.fd, &c, flags, 0).map_err(|e| HostPathError::io(&path, e))?;
        pinned(fd, path)
    }

    /// Opens `name` for appending, creating it (mode `mode`) when missing; an existing
    /// entry must be a regular file (a link, FIFO or device in its place is refused).
    pub fn append(&self, name: &OsStr, mode: u32) -> Result<File, HostPathError> {
        self.open_regular(name, libc::O_WRONLY | libc::O_APPEND, mode)
    }

    /// Opens `name` for reading and writing, as [`VerifiedDir::append`] does.
    pub fn read_write(&self, name: &OsStr, mode: u32) -> Result<File, HostPathError> {
        self.open_regular(name, libc::O_RDWR, mode)
    }

    /// Creates `name` (`O_EXCL`, never through a link) or opens the regular file there.
    fn open_regular(
        &self,
        name: &OsStr,
        access: libc::c_int,
        mode: u32,
    ) -> Result<File, HostPathError> {
        let path = self.path.join(name);
        let c = c_name(name, &path)?;
        loop {
            let flags = access | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
            match openat(&self.fd, &c, flags, mode) {
                Ok(fd) => return Ok(File::from(fd)),
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => return Err(HostPathError::io(&path, e)),
            }
            match self.pin(name) {
                Ok(pinned) => {
                    let pinned = pinned.expect(FileKind::Regular)?;
                    return pinned
                        .reopen(access)
                        .map_err(|e| HostPathError::io(&path, e));
                }
                // Removed between the two calls: create it again.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The names in this directory (without `.` and `..`), read through its verified fd:
    /// the directory seen is the one that was verified, whatever is at its path now.
    pub fn entries(&self) -> Result<Vec<OsString>, HostPathError> {
        let fail = |e: io::Error| HostPathError::io(&self.path, e);
        let dot = CString::from(c".");
        let fd = openat(
            &self.fd,
            &dot,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            0,
        )
        .map_err(fail)?;
        let raw = std::os::fd::IntoRawFd::into_raw_fd(fd);
        // SAFETY: `raw` is an open directory fd; fdopendir owns it from here (closedir
        // closes it), and on failure it is closed below.
        let dir = unsafe { libc::fdopendir(raw) };
        if dir.is_null() {
            let e = io::Error::last_os_error();
            // SAFETY: fdopendir failed, so the fd is still ours.
            unsafe { libc::close(raw) };
            return Err(fail(e));
        }
        let mut names = Vec::new();
        loop {
            // SAFETY: `dir` is a valid DIR*; errno is reset to tell the end from an error.
            let entry = unsafe {
                *libc::__errno_location() = 0;
                libc::readdir(dir)
            };
            if entry.is_null() {
                let e = io::Error::last_os_error();
                // SAFETY: valid DIR*, closed once.
                unsafe { libc::closedir(dir) };
                if e.raw_os_error().unwrap_or(0) != 0 {
                    return Err(fail(e));
                }
                return Ok(names);
            }
            // SAFETY: readdir returned a valid entry whose d_name is NUL-terminated.
            let name = unsafe { std::ffi::CStr::from_ptr((*entry).d_name.as_ptr()) };
            let name = OsStr::from_bytes(name.to_bytes());
            if name != "." && name != ".." {
                names.push(name.to_os_string());
            }
        }
    }

    /// Removes the entry `name` of this directory; a link is removed itself, never what
    /// it points to. A missing entry is not an error.
    pub fn remove(&self, name: &OsStr) -> Result<(), HostPathError> {
        let path = self.path.join(name);
        let c = c_name(name, &path)?;
        // SAFETY: valid dirfd and NUL-terminated name; unlinkat never follows the last
        // component.
        if unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) } < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ENOENT) {
                return Err(HostPathError::io(&path, e));
            }
        }
        Ok(())
    }

    /// Replaces `name` with `contents` atomically: a fresh temporary file (`O_EXCL`, never a
    /// link) in this directory, `fchmod` to `mode`, then `renameat` over `name` (which
    /// replaces a link planted there instead of following it).
    pub fn replace(&self, name: &OsStr, contents: &[u8], mode: u32) -> Result<(), HostPathError> {
        use std::io::Write;
        self.replace_with(name, mode, |file| {
            file.write_all(contents)?;
            file.sync_data()
        })
    }

    /// Like [`VerifiedDir::replace`], with the new contents written by `write`.
    pub fn replace_with(
        &self,
        name: &OsStr,
        mode: u32,
        write: impl FnOnce(&mut File) -> io::Result<()>,
    ) -> Result<(), HostPathError> {
        let path = self.path.join(name);
        let target = c_name(name, &path)?;
        let temp_name = format!(
            ".{}.tmp-{:016x}",
            name.to_string_lossy(),
            rand::random::<u64>()
        );
        let temp = c_name(OsStr::new(&temp_name), &path)?;
        let flags =
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        let fd = openat(&self.fd, &temp, flags, 0o600).map_err(|e| HostPathError::io(&path, e))?;
        let mut file = File::from(fd);
        let written = write(&mut file).and_then(|()| fchmod(&file, mode));
        let renamed = written.and_then(|()| {
            // SAFETY: valid dirfds and NUL-terminated names.
            let r = unsafe {
                libc::renameat(
                    self.fd.as_raw_fd(),
                    temp.as_ptr(),
                    self.fd.as_raw_fd(),
                    target.as_ptr(),
                )
            };
            if r < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        });
        if let Err(e) = renamed {
            // SAFETY: valid dirfd and name; failure to clean up is not worth reporting.
            unsafe { libc::unlinkat(self.fd.as_raw_fd(), temp.as_ptr(), 0) };
            return Err(HostPathError::io(&path, e));
        }
        Ok(())
    }

    /// Makes `name` a symbolic link to `target`, replacing a file or link there (never a
    /// directory). The link is only created, never followed.
    pub fn symlink(&self, name: &OsStr, target: &OsStr) -> Result<(), HostPathError> {
        let path = self.path.join(name);
        let c = c_name(name, &path)?;
        let target = CString::new(target.as_bytes())
            .map_err(|e| HostPathError::io(&path, io::Error::other(e)))?;
        self.remove(name)?;
        // SAFETY: valid dirfd and NUL-terminated strings.
        if unsafe { libc::symlinkat(target.as_ptr(), self.fd.as_raw_fd(), c.as_ptr()) } < 0 {
            return Err(HostPathError::io(&path, io::Error::last_os_error()));
        }
        Ok(())
    }
}

/// Pins `path`, which must be `root` or below it, without following links below `root`.
pub fn pin_beneath(root: &Path, path: &Path) -> Result<PinnedPath, HostPathError> {
    let components = components_below(root, path)?;
    let mut fd = open_root(root)?;
    let Some((last, dirs)) = components.split_last() else {
        return pinned(fd, path.to_path_buf());
    };
    for dir in dirs {
        fd = open_dir_at(&fd, dir, path)?;
    }
    VerifiedDir {
        fd,
        path: path.parent().unwrap_or(root).to_path_buf(),
    }
    .pin(last)
}

/// The normal components of `path` below `root`; `..` or `.` anywhere is refused.
fn components_below(root: &Path, path: &Path) -> Result<Vec<OsString>, HostPathError> {
    let outside = || HostPathError::Outside {
        path: path.to_path_buf(),
        root: root.to_path_buf(),
    };
    let rest = path.strip_prefix(root).map_err(|_| outside())?;
    rest.components()
        .map(|c| match c {
            Component::Normal(name) => Ok(name.to_os_string()),
            _ => Err(outside()),
        })
        .collect()
}

fn open_root(root: &Path) -> Result<OwnedFd, HostPathError> {
    let c = CString::new(root.as_os_str().as_bytes())
        .map_err(|e| HostPathError::io(root, io::Error::other(e)))?;
    let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
    // SAFETY: NUL-terminated path; the fd is owned below.
    let fd = unsafe { libc::open(c.as_ptr(), flags) };
    if fd < 0 {
        return Err(HostPathError::io(root, io::Error::last_os_error()));
    }
    // SAFETY: just opened, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn open_dir_at(parent: &OwnedFd, name: &OsStr, full: &Path) -> Result<OwnedFd, HostPathError> {
    let c = c_name(name, full)?;
    let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    match openat(parent, &c, flags, 0) {
        Ok(fd) => Ok(fd),
        // A link (ELOOP) or a non-directory (ENOTDIR, also what O_DIRECTORY|O_NOFOLLOW
        // gives for a link on some kernels).
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) => {
            Err(HostPathError::Link {
                path: full.to_path_buf(),
                component: name.to_os_string(),
            })
        }
        Err(e) => Err(HostPathError::io(full, e)),
    }
}

fn c_name(name: &OsStr, full: &Path) -> Result<CString, HostPathError> {
    if name.as_bytes().contains(&b'/') || name == ".." || name == "." || name.is_empty() {
        return Err(HostPathError::io(
            full,
            io::Error::new(io::ErrorKind::InvalidInput, "not a single path component"),
        ));
    }
    CString::new(name.as_bytes()).map_err(|e| HostPathError::io(full, io::Error::other(e)))
}

fn openat(
    dir: &OwnedFd,
    name: &CString,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> io::Result<OwnedFd> {
    // SAFETY: valid dirfd and NUL-terminated name; the fd is owned below.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags, mode) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just opened, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fstat(fd: &impl AsRawFd) -> io::Result<libc::stat> {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: valid fd and a buffer of the right size.
    if unsafe { libc::fstat(fd.as_raw_fd(), stat.as_mut_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstat succeeded and filled it.
    Ok(unsafe { stat.assume_init() })
}

fn fchmod(file: &File, mode: u32) -> io::Result<()> {
    // SAFETY: valid fd.
    if unsafe { libc::fchmod(file.as_raw_fd(), mode) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn pinned(fd: OwnedFd, path: PathBuf) -> Result<PinnedPath, HostPathError> {
    let stat = fstat(&fd).map_err(|e| HostPathError::io(&path, e))?;
    Ok(PinnedPath {
        fd,
        path,
        kind: FileKind::of(stat.st_mode),
        dev: stat.st_dev,
        ino: stat.st_ino,
    })
}

/// `(st_dev, st_ino)` of `path` resolved inside the directory `root` as if it were `/`
/// (links included, none leaving it): what a process whose root is `root` sees there.
/// Needs `openat2` (Linux 5.6).
pub fn identity_in_root(root: &Path, path: &Path) -> io::Result<(u64, u64)> {
    let root_fd = open_root(root).map_err(|e| match e {
        HostPathError::Io { source, .. } => source,
        other => io::Error::other(other.to_string()),
    })?;
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: valid dirfd, NUL-terminated path and an open_how of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root_fd.as_raw_fd(),
            c_path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = libc::c_int::try_from(fd).map_err(io::Error::other)?;
    // SAFETY: just opened, owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    identity_of(&fd)
}

/// `(st_dev, st_ino)` of an open file.
pub fn identity_of(file: &impl AsRawFd) -> io::Result<(u64, u64)> {
    let stat = fstat(file)?;
    Ok((stat.st_dev, stat.st_ino))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn mkfifo(path: &Path) {
        nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    }

    #[test]
    fn a_link_anywhere_below_the_root_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("logs")).unwrap();
        symlink(outside.path(), root.path().join("linked")).unwrap();
        mkfifo(&outside.path().join("f"));
        let err = pin_beneath(root.path(), &root.path().join("linked/f")).unwrap_err();
        assert!(matches!(err, HostPathError::Link { .. }), "{err}");

        // A link as the last component is pinned as a link, never followed.
        symlink("/etc/passwd", root.path().join("logs/out")).unwrap();
        let pinned = pin_beneath(root.path(), &root.path().join("logs/out")).unwrap();
        assert_eq!(pinned.kind(), FileKind::Symlink);
        let err = pinned.expect(FileKind::Fifo).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: is a symbolic link, expected a FIFO",
                root.path().join("logs/out").display()
            )
        );
    }

    #[test]
    fn paths_outside_the_root_or_with_dot_dot_are_refused() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("a")).unwrap();
        for path in [
            PathBuf::from("/etc/passwd"),
            root.path().join("a/../../etc"),
        ] {
            let err = pin_beneath(root.path(), &path).unwrap_err();
            assert!(matches!(err, HostPathError::Outside { .. }), "{err}");
        }
    }

    #[test]
    fn a_pinned_fifo_reopens_the_same_inode_after_its_path_changed() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("out.fifo");
        mkfifo(&path);
        let pinned = pin_beneath(root.path(), &path)
            .unwrap()
            .expect(FileKind::Fifo)
            .unwrap();
        // The path is swapped for a link to a file the task wants written.
        let victim = root.path().join("victim");
        std::fs::write(&victim, "untouched").unwrap();
        std::fs::remove_file(&path).unwrap();
        symlink(&victim, &path).unwrap();
        // A reader on the pinned FIFO: opened read-write so it never blocks.
        let reader = pinned.reopen(libc::O_RDWR | libc::O_NONBLOCK).unwrap();
        let writer = pinned.reopen(libc::O_WRONLY | libc::O_NONBLOCK).unwrap();
        assert_eq!(identity_of(&reader).unwrap(), pinned.identity());
        assert_eq!(identity_of(&writer).unwrap(), pinned.identity());
        use std::io::Write;
        (&writer).write_all(b"x").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
    }

    #[test]
    fn append_creates_or_appends_regular_files_only() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("logs")).unwrap();
        let dir = VerifiedDir::open(root.path(), &root.path().join("logs")).unwrap();
        use std::io::Write;
        dir.append(OsStr::new("a.log"), 0o644)
            .unwrap()
            .write_all(b"one\n")
            .unwrap();
        dir.append(OsStr::new("a.log"), 0o644)
            .unwrap()
            .write_all(b"two\n")
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(root.path().join("logs/a.log")).unwrap(),
            "one\ntwo\n"
        );

        let target = root.path().join("target");
        symlink(&target, root.path().join("logs/b.log")).unwrap();
        let err = dir.append(OsStr::new("b.log"), 0o644).unwrap_err();
        assert!(matches!(err, HostPathError::WrongType { .. }), "{err}");
        assert!(!target.exists(), "the link target was not created");

        mkfifo(&root.path().join("logs/c.log"));
        let err = dir.append(OsStr::new("c.log"), 0o644).unwrap_err();
        assert!(err.to_string().contains("is a FIFO"), "{err}");
    }

    #[test]
    fn replace_writes_through_a_temp_file_and_replaces_a_planted_link() {
        let root = tempfile::tempdir().unwrap();
        let victim = root.path().join("victim");
        std::fs::write(&victim, "untouched").unwrap();
        std::fs::create_dir(root.path().join("local")).unwrap();
        symlink(&victim, root.path().join("local/app.conf")).unwrap();
        let dir =
            VerifiedDir::open_or_create(root.path(), &root.path().join("local"), 0o755).unwrap();
        dir.replace(OsStr::new("app.conf"), b"rendered", 0o640)
            .unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
        let path = root.path().join("local/app.conf");
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_file());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o640);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "rendered");
        let leftovers = std::fs::read_dir(root.path().join("local"))
            .unwrap()
            .count();
        assert_eq!(leftovers, 1, "no temporary file left behind");
    }

    #[test]
    fn identity_in_root_resolves_links_inside_the_root_only() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("data")).unwrap();
        symlink("/data", root.path().join("abs")).unwrap();
        symlink("../../../../etc", root.path().join("up")).unwrap();
        let data = identity_of(&File::open(root.path().join("data")).unwrap()).unwrap();
        assert_eq!(
            identity_in_root(root.path(), Path::new("/abs")).unwrap(),
            data
        );
        assert_eq!(
            identity_in_root(root.path(), Path::new("/data")).unwrap(),
            data
        );
        // `..` past the root stays at the root.
        let top = identity_of(&File::open(root.path()).unwrap()).unwrap();
        assert_eq!(
            identity_in_root(root.path(), Path::new("/up"))
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            identity_in_root(root.path(), Path::new("/..")).unwrap(),
            top
        );
    }

    #[test]
    fn open_or_create_makes_missing_directories_but_never_follows_links() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b/c");
        VerifiedDir::open_or_create(root.path(), &dir, 0o755).unwrap();
        assert!(dir.is_dir());
        symlink(outside.path(), root.path().join("a/link")).unwrap();
        let err = VerifiedDir::open_or_create(root.path(), &root.path().join("a/link/x"), 0o755)
            .unwrap_err();
        assert!(matches!(err, HostPathError::Link { .. }), "{err}");
        assert!(!outside.path().join("x").exists());
    }
}

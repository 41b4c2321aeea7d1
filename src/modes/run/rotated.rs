//! Reading a rotated set of log files (`<base>.<index>`, written by the core's rotating
//! sinks, see [`rotate`](crate::driver::logs::rotate)) as one stream, oldest first, while
//! it is being written.
//!
//! The writer starts file `i + 1` only after everything it wrote to file `i` is on disk,
//! so once a later file exists the current one is read to its end and left: nothing is
//! lost or read twice at a rotation. The open file is kept, so a file deleted as the
//! oldest while it is read is still read to its end. A bare `<base>` (written before
//! rotation existed) counts as the oldest file.
//!
//! The logs directory is the task's to write (`/alloc/logs`): files are reached through
//! [`hostfs`] below the allocation's `alloc` dir; a link in place of one is refused, never
//! followed. A file the task replaced or truncated is read again from its start.
//!
//! Everything here blocks on the disk: callers run it on a blocking thread.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::driver::hostfs::{FileKind, HostPathError, VerifiedDir};
use crate::driver::logs::rotate::{rotated_index, rotated_name};

/// What one [`RotatedReader::read`] got.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// This many bytes, continuing the stream.
    Bytes(usize),
    /// The stream starts again from the beginning of a file (the task replaced or
    /// truncated it): an unfinished line read before belongs to nothing.
    Restarted,
    /// Nothing more written yet.
    End,
}

/// A file of the set: `None` is the bare `<base>`, older than every index.
type Slot = Option<u64>;

pub struct RotatedReader {
    root: PathBuf,
    dir: PathBuf,
    base: OsString,
    current: Option<Current>,
}

struct Current {
    slot: Slot,
    file: File,
    identity: (u64, u64),
    offset: u64,
}

impl RotatedReader {
    /// The files of `base` (a path below the trusted directory `root`).
    pub fn new(root: &Path, base: &Path) -> Self {
        RotatedReader {
            root: root.to_path_buf(),
            dir: base.parent().unwrap_or(root).to_path_buf(),
            base: base.file_name().unwrap_or(OsStr::new("")).to_os_string(),
            current: None,
        }
    }

    /// The path of the set's file names, for messages.
    pub fn display(&self) -> String {
        format!("{}.N", self.dir.join(&self.base).display())
    }

    /// Whether any file of the set exists yet.
    pub fn exists(&self) -> bool {
        self.slots().map(|s| !s.is_empty()).unwrap_or(false)
    }

    /// Reads on from where the stream is, into `buf`.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<Read, String> {
        // Each pass either returns or moves to another file; more passes than that would
        // mean files come and go faster than they can be listed.
        for _ in 0..64 {
            let Some(slot) = self.current.as_ref().map(|c| c.slot) else {
                let Some(first) = self.slots()?.first().copied() else {
                    return Ok(Read::End);
                };
                self.open(first)?;
                continue;
            };
            let n = self.read_current(buf)?;
            if n > 0 {
                return Ok(Read::Bytes(n));
            }
            if let Some(next) = self.slots()?.into_iter().find(|s| *s > slot) {
                // The next file exists, so this one is complete; bytes may have landed
                // between the read above and the listing.
                let n = self.read_current(buf)?;
                if n > 0 {
                    return Ok(Read::Bytes(n));
                }
                if !self.open(next)? {
                    // Deleted as the oldest before it was reached: go on from the oldest left.
                    self.current = None;
                }
                continue;
            }
            return self.check_replaced();
        }
        Ok(Read::End)
    }

    fn read_current(&mut self, buf: &mut [u8]) -> Result<usize, String> {
        let Some(current) = self.current.as_mut() else {
            return Ok(0);
        };
        let n = current
            .file
            .read_at(buf, current.offset)
            .map_err(|e| format!("{}: {e}", self.dir.display()))?;
        current.offset += n as u64;
        Ok(n)
    }

    /// At the end of the newest file: whether the task replaced or truncated it.
    fn check_replaced(&mut self) -> Result<Read, String> {
        let Some(slot) = self.current.as_ref().map(|c| c.slot) else {
            return Ok(Read::End);
        };
        let name = self.name(slot);
        let pinned = match self.verified_dir().and_then(|dir| dir.pin(&name)) {
            Ok(pinned) => pinned,
            // Removed (the task emptied its logs): nothing new until a file comes back.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(Read::End),
            Err(e) => return Err(refused(e)),
        };
        if let Some(current) = self.current.as_mut() {
            if pinned.identity() == current.identity {
                let len = current.file.metadata().map(|m| m.len()).unwrap_or(0);
                if len >= current.offset {
                    return Ok(Read::End);
                }
                current.offset = 0;
                return Ok(Read::Restarted);
            }
        }
        Ok(if self.open(slot)? {
            Read::Restarted
        } else {
            Read::End
        })
    }

    /// Opens `slot` from its start; false when it no longer exists.
    fn open(&mut self, slot: Slot) -> Result<bool, String> {
        let name = self.name(slot);
        let pinned = match self.verified_dir().and_then(|dir| dir.pin(&name)) {
            Ok(pinned) => pinned,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(false),
            Err(e) => return Err(refused(e)),
        };
        let identity = pinned.identity();
        let pinned = pinned.expect(FileKind::Regular).map_err(refused)?;
        let file = pinned
            .reopen(libc::O_RDONLY)
            .map_err(|e| format!("{}: {e}", self.dir.join(&name).display()))?;
        self.current = Some(Current {
            slot,
            file,
            identity,
            offset: 0,
        });
        Ok(true)
    }

    fn name(&self, slot: Slot) -> OsString {
        match slot {
            Some(index) => rotated_name(&self.base, index),
            None => self.base.clone(),
        }
    }

    fn verified_dir(&self) -> Result<VerifiedDir, HostPathError> {
        VerifiedDir::open(&self.root, &self.dir)
    }

    /// The files of the set that exist now, oldest first.
    fn slots(&self) -> Result<Vec<Slot>, String> {
        let dir = match self.verified_dir() {
            Ok(dir) => dir,
            // No logs directory (yet): no files.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(Vec::new()),
            Err(e) => return Err(refused(e)),
        };
        let mut slots: Vec<Slot> = dir
            .entries()
            .map_err(refused)?
            .iter()
            .filter_map(|name| {
                if name == &self.base {
                    Some(None)
                } else {
                    rotated_index(&self.base, name).map(Some)
                }
            })
            .collect();
        slots.sort_unstable();
        Ok(slots)
    }
}

fn refused(e: HostPathError) -> String {
    format!("{e}; not reading it")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("alloc");
        let logs = root.join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        (tmp, root, logs)
    }

    fn append(path: &Path, data: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(data.as_bytes()).unwrap();
    }

    /// Everything readable now, with `|` for a restart.
    fn drain(reader: &mut RotatedReader) -> String {
        let mut out = String::new();
        let mut buf = [0u8; 3];
        loop {
            match reader.read(&mut buf).unwrap() {
                Read::Bytes(n) => out.push_str(std::str::from_utf8(&buf[..n]).unwrap()),
                Read::Restarted => out.push('|'),
                Read::End => return out,
            }
        }
    }

    #[test]
    fn reads_the_files_in_index_order_across_rotations_while_they_are_written() {
        let (_tmp, root, logs) = setup();
        let mut reader = RotatedReader::new(&root, &logs.join("t.journal"));
        assert!(!reader.exists());
        assert_eq!(drain(&mut reader), "");
        append(&logs.join("t.journal.0"), "a\nb\n");
        assert_eq!(drain(&mut reader), "a\nb\n");
        append(&logs.join("t.journal.0"), "c\n");
        append(&logs.join("t.journal.1"), "d\n");
        append(&logs.join("t.journal.10"), "f\n");
        append(&logs.join("t.journal.2"), "e\n");
        assert_eq!(drain(&mut reader), "c\nd\ne\nf\n");
        // The oldest files are deleted while the newest is read: nothing changes.
        std::fs::remove_file(logs.join("t.journal.0")).unwrap();
        std::fs::remove_file(logs.join("t.journal.1")).unwrap();
        append(&logs.join("t.journal.10"), "g\n");
        assert_eq!(drain(&mut reader), "g\n");
        assert!(reader.exists());
    }

    #[test]
    fn a_file_deleted_while_it_is_read_is_read_to_its_end() {
        let (_tmp, root, logs) = setup();
        append(&logs.join("t.stdout.3"), "one\n");
        let mut reader = RotatedReader::new(&root, &logs.join("t.stdout"));
        let mut buf = [0u8; 2];
        assert_eq!(reader.read(&mut buf).unwrap(), Read::Bytes(2));
        append(&logs.join("t.stdout.3"), "two\n");
        append(&logs.join("t.stdout.4"), "three\n");
        std::fs::remove_file(logs.join("t.stdout.3")).unwrap();
        assert_eq!(drain(&mut reader), "e\ntwo\nthree\n");
    }

    #[test]
    fn files_deleted_before_they_were_reached_are_skipped() {
        let (_tmp, root, logs) = setup();
        append(&logs.join("t.stdout.0"), "0\n");
        let mut reader = RotatedReader::new(&root, &logs.join("t.stdout"));
        assert_eq!(drain(&mut reader), "0\n");
        append(&logs.join("t.stdout.1"), "1\n");
        append(&logs.join("t.stdout.2"), "2\n");
        std::fs::remove_file(logs.join("t.stdout.1")).unwrap();
        assert_eq!(drain(&mut reader), "2\n");
    }

    #[test]
    fn the_unindexed_file_of_an_older_version_comes_first() {
        let (_tmp, root, logs) = setup();
        append(&logs.join("t.journal"), "old\n");
        append(&logs.join("t.journal.0"), "new\n");
        let mut reader = RotatedReader::new(&root, &logs.join("t.journal"));
        assert_eq!(drain(&mut reader), "old\nnew\n");
    }

    #[test]
    fn a_truncated_or_replaced_newest_file_is_read_again_from_its_start() {
        let (_tmp, root, logs) = setup();
        let path = logs.join("t.stdout.0");
        append(&path, "one\n");
        let mut reader = RotatedReader::new(&root, &logs.join("t.stdout"));
        assert_eq!(drain(&mut reader), "one\n");
        std::fs::write(&path, "").unwrap();
        append(&path, "x\n");
        assert_eq!(drain(&mut reader), "|x\n");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(drain(&mut reader), "");
        append(&path, "y\n");
        assert_eq!(drain(&mut reader), "|y\n");
    }

    #[test]
    fn a_link_in_place_of_a_file_is_refused_not_followed() {
        let (tmp, root, logs) = setup();
        let secret = tmp.path().join("secret");
        std::fs::write(&secret, "secret\n").unwrap();
        append(&logs.join("t.stdout.0"), "mine\n");
        std::os::unix::fs::symlink(&secret, logs.join("t.stdout.1")).unwrap();
        let mut reader = RotatedReader::new(&root, &logs.join("t.stdout"));
        let mut buf = [0u8; 64];
        assert_eq!(reader.read(&mut buf).unwrap(), Read::Bytes(5));
        let e = reader.read(&mut buf).unwrap_err();
        assert!(e.contains("symbolic link"), "{e}");
    }
}

//! Where forwarding of a container's output got to, kept on disk so that a plugin that
//! restarts (SIGKILL, agent upgrade, `Shutdown`) resumes exactly there: nothing lost,
//! nothing repeated.
//!
//! The file lives in the task's own directory, which no container mounts (tasks see only
//! its `local/` and `secrets/`), and is reached without following links. It holds one
//! fixed-size record, rewritten in place after every batch handed to the sinks, so a kill
//! at any moment leaves either the old or the new record (one `pwrite` of a few bytes to
//! the page cache; no fsync: a crash of the whole machine ends the containers too).

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::LogCursor;
use crate::driver::hostfs::{HostPathError, VerifiedDir};

/// Name of the position file in the task directory.
pub const POSITION_FILE: &str = ".nomad-driver-podman.log-position";
const RECORD_LEN: usize = 128;

/// The position file of one container's forwarding.
pub struct PositionFile {
    file: File,
    container_id: String,
}

impl PositionFile {
    /// Opens (creating) the position file in `task_dir`, for `container_id`.
    pub fn open(task_dir: &Path, container_id: &str) -> Result<Self, HostPathError> {
        let file =
            VerifiedDir::open(task_dir, task_dir)?.read_write(OsStr::new(POSITION_FILE), 0o600)?;
        Ok(PositionFile {
            file,
            container_id: container_id.to_string(),
        })
    }

    /// The stored position, if the file holds one for this container.
    pub fn read(&self) -> Option<LogCursor> {
        let mut buf = [0u8; RECORD_LEN];
        let n = self.file.read_at(&mut buf, 0).ok()?;
        let text = std::str::from_utf8(&buf[..n]).ok()?;
        let mut fields = text.split_whitespace();
        let (id, nanos, seen) = (fields.next()?, fields.next()?, fields.next()?);
        (id == self.container_id).then_some(())?;
        Some(LogCursor {
            unix_nanos: nanos.parse().ok()?,
            seen: seen.parse().ok()?,
        })
    }

    /// Replaces the stored position.
    pub fn store(&self, cursor: LogCursor) -> io::Result<()> {
        let mut record = format!(
            "{} {} {}",
            self.container_id, cursor.unix_nanos, cursor.seen
        )
        .into_bytes();
        if record.len() >= RECORD_LEN {
            return Err(io::Error::other(
                "container id too long for a position record",
            ));
        }
        record.resize(RECORD_LEN - 1, b' ');
        record.push(b'\n');
        self.file.write_all_at(&record, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_per_container() {
        let dir = tempfile::tempdir().unwrap();
        let file = PositionFile::open(dir.path(), "c1").unwrap();
        assert_eq!(file.read(), None);
        let cursor = LogCursor {
            unix_nanos: 1_700_000_000_123_456_789,
            seen: 3,
        };
        file.store(cursor).unwrap();
        file.store(LogCursor {
            unix_nanos: 5,
            seen: 1,
        })
        .unwrap();
        file.store(cursor).unwrap();
        let again = PositionFile::open(dir.path(), "c1").unwrap();
        assert_eq!(again.read(), Some(cursor));
        // A new container of the same task (a restart) does not inherit it.
        assert_eq!(PositionFile::open(dir.path(), "c2").unwrap().read(), None);
        let raw = std::fs::read(dir.path().join(POSITION_FILE)).unwrap();
        assert_eq!(raw.len(), RECORD_LEN);
    }

    #[test]
    fn a_link_in_place_of_the_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::os::unix::fs::symlink(&victim, dir.path().join(POSITION_FILE)).unwrap();
        assert!(PositionFile::open(dir.path(), "c1").is_err());
        assert!(!victim.exists());
    }
}

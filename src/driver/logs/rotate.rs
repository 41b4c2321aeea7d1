//! Size-bounded file sinks, rotated the way Nomad's logmon rotates `alloc/logs`: the
//! output goes to `<base>.<index>`, the file with the highest index; once it holds
//! `max_file_size` bytes the next index is started, and files more than `max_files` behind
//! the newest are deleted. Indices only grow, so a reader that knows the index it is on
//! can tell which file comes next, and a file with a successor is never written again.
//!
//! Unlike logmon, a file ends at a line boundary: each file can be read (and grepped) on
//! its own, and a journal record is never cut in two. A single line longer than a whole
//! file gets a file of its own instead, so a file exceeds the bound by at most one write.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::driver::hostfs::{HostPathError, VerifiedDir};

/// One MiB, the unit of Nomad's `max_file_size`.
pub const MIB: u64 = 1024 * 1024;

/// How many files of what size a rotating sink keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    /// At least 1.
    pub max_files: u32,
    /// In bytes, at least 1.
    pub max_file_size: u64,
}

impl Default for Rotation {
    /// Nomad's defaults: 10 files of 10 MiB.
    fn default() -> Self {
        Rotation {
            max_files: 10,
            max_file_size: 10 * MIB,
        }
    }
}

/// The index of `name` if it is one of `base`'s rotated files (`<base>.<digits>`).
pub fn rotated_index(base: &OsStr, name: &OsStr) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let rest = name.as_bytes().strip_prefix(base.as_bytes())?;
    let digits = rest.strip_prefix(b".")?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The name of `base`'s file number `index`.
pub fn rotated_name(base: &OsStr, index: u64) -> OsString {
    let mut name = base.to_os_string();
    name.push(format!(".{index}"));
    name
}

/// The indices of `base`'s rotated files in `dir`, lowest first.
pub fn rotated_indices(dir: &VerifiedDir, base: &OsStr) -> Result<Vec<u64>, HostPathError> {
    let mut indices: Vec<u64> = dir
        .entries()?
        .iter()
        .filter_map(|name| rotated_index(base, name))
        .collect();
    indices.sort_unstable();
    Ok(indices)
}

/// How many leading bytes of `data` go into a file that holds `size` bytes: all of it
/// when it fits, else whole lines up to the bound; `None` when not even one line fits and
/// the next file must be started first.
pub fn bytes_that_fit(size: u64, max: u64, data: &[u8]) -> Option<usize> {
    let room = max.saturating_sub(size);
    if data.len() as u64 <= room {
        return Some(data.len());
    }
    let room = usize::try_from(room).unwrap_or(usize::MAX).min(data.len());
    if let Some(nl) = memchr::memrchr(b'\n', &data[..room]) {
        return Some(nl + 1);
    }
    if size == 0 {
        // Longer than a whole file: cutting it would not make it fit either.
        return Some(memchr::memchr(b'\n', data).map_or(data.len(), |nl| nl + 1));
    }
    None
}

/// Where a rotating sink is: its base path, the index written and that file's size.
#[derive(Debug)]
pub struct RotatingFile {
    pub policy: Rotation,
    dir: PathBuf,
    base: OsString,
    pub index: u64,
    pub size: u64,
}

impl RotatingFile {
    /// Starts at the highest index already in the directory (a restarted task appends to
    /// its last file, as logmon does), or 0.
    pub fn resume(root: &Path, base: &Path, policy: Rotation) -> Result<Self, HostPathError> {
        let dir = base.parent().unwrap_or(root).to_path_buf();
        let name = base.file_name().unwrap_or(OsStr::new("")).to_os_string();
        let verified = VerifiedDir::open(root, &dir)?;
        let index = rotated_indices(&verified, &name)?
            .last()
            .copied()
            .unwrap_or(0);
        Ok(RotatingFile {
            policy,
            dir,
            base: name,
            index,
            size: 0,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn current_name(&self) -> OsString {
        rotated_name(&self.base, self.index)
    }

    pub fn current_path(&self) -> PathBuf {
        self.dir.join(self.current_name())
    }

    /// How much of `data` goes into the current file (see [`bytes_that_fit`]).
    pub fn fit(&self, data: &[u8]) -> Option<usize> {
        bytes_that_fit(self.size, self.policy.max_file_size, data)
    }

    /// Deletes the files more than `max_files` behind the current one. Only names of the
    /// rotated form are touched; a link among them is removed itself, never followed.
    /// Best effort: what cannot be removed (a directory the task made under such a name)
    /// is the task's own and must not stop its logging.
    pub fn purge(&self, dir: &VerifiedDir) {
        let keep_from = (self.index + 1).saturating_sub(u64::from(self.policy.max_files.max(1)));
        let Ok(indices) = rotated_indices(dir, &self.base) else {
            return;
        };
        for index in indices.into_iter().take_while(|i| *i < keep_from) {
            let _ = dir.remove(&rotated_name(&self.base, index));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_names_and_indices() {
        let base = OsStr::new("web.stdout");
        assert_eq!(rotated_name(base, 12), OsString::from("web.stdout.12"));
        assert_eq!(rotated_index(base, OsStr::new("web.stdout.0")), Some(0));
        assert_eq!(rotated_index(base, OsStr::new("web.stdout.17")), Some(17));
        for other in [
            "web.stdout",
            "web.stdout.",
            "web.stdout.-1",
            "web.stdout.+1",
            "web.stdout.1a",
            "web.stdout.1.0",
            "web.stdoutx.1",
            "web.stderr.1",
            "xweb.stdout.1",
        ] {
            assert_eq!(rotated_index(base, OsStr::new(other)), None, "{other}");
        }
    }

    #[test]
    fn whole_lines_up_to_the_bound_then_the_next_file() {
        // Everything fits.
        assert_eq!(bytes_that_fit(0, 10, b"abc\n"), Some(4));
        assert_eq!(bytes_that_fit(6, 10, b"abc\n"), Some(4));
        // Only the first line fits: the file ends after it.
        assert_eq!(bytes_that_fit(2, 10, b"abc\ndefgh\n"), Some(4));
        // Not even one line fits: next file.
        assert_eq!(bytes_that_fit(8, 10, b"abc\n"), None);
        assert_eq!(bytes_that_fit(10, 10, b"a"), None);
        assert_eq!(bytes_that_fit(12, 10, b"a\n"), None);
        // A line longer than a whole file gets an empty file to itself, and only that line.
        assert_eq!(bytes_that_fit(0, 4, b"abcdefgh\nij\n"), Some(9));
        assert_eq!(bytes_that_fit(0, 4, b"abcdefgh"), Some(8));
    }

    #[test]
    fn resume_starts_at_the_highest_index_and_purge_keeps_the_newest() {
        let root = tempfile::tempdir().unwrap();
        let logs = root.path().join("logs");
        std::fs::create_dir(&logs).unwrap();
        for name in [
            "t.stdout.3",
            "t.stdout.7",
            "t.stdout.12",
            "t.stderr.40",
            "t.stdout",
        ] {
            std::fs::write(logs.join(name), "x").unwrap();
        }
        let policy = Rotation {
            max_files: 2,
            max_file_size: 10,
        };
        let file = RotatingFile::resume(root.path(), &logs.join("t.stdout"), policy).unwrap();
        assert_eq!(file.index, 12);
        assert_eq!(file.current_path(), logs.join("t.stdout.12"));
        let dir = VerifiedDir::open(root.path(), &logs).unwrap();
        file.purge(&dir);
        let mut left: Vec<String> = std::fs::read_dir(&logs)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        // 12 and the one before it (11, missing) are kept; 3 and 7 are gone; other
        // streams and the unindexed name are not touched.
        assert_eq!(left, ["t.stderr.40", "t.stdout", "t.stdout.12"]);
    }

    #[test]
    fn purge_removes_a_planted_link_not_its_target() {
        let root = tempfile::tempdir().unwrap();
        let logs = root.path().join("logs");
        std::fs::create_dir(&logs).unwrap();
        let victim = root.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, logs.join("t.stdout.0")).unwrap();
        std::fs::write(logs.join("t.stdout.5"), "x").unwrap();
        let policy = Rotation {
            max_files: 1,
            max_file_size: 10,
        };
        let file = RotatingFile::resume(root.path(), &logs.join("t.stdout"), policy).unwrap();
        file.purge(&VerifiedDir::open(root.path(), &logs).unwrap());
        assert!(!logs.join("t.stdout.0").exists());
        assert!(logs.join("t.stdout.0").symlink_metadata().is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    }
}

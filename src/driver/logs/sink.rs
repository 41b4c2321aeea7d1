//! Where forwarded logs go: Nomad's FIFO (its logmon reads it) or a file the runner keeps.
//!
//! Both live in the allocation's `logs` directory, which the task can write to. A sink is
//! therefore reached only through [`hostfs`](crate::driver::hostfs): no link below the
//! trusted root is followed, a FIFO sink is only ever an existing FIFO (never created,
//! never a file, link or device in its place), and a file sink only ever a regular file
//! created or appended in a verified directory. A sink that turns out to be something
//! else when it is (re)opened is *refused*: reported once (task event + log line naming
//! the path) and its stream discarded from then on; the task's other stream goes on.
//!
//! A file sink may rotate ([`Rotation`]): the same rules then hold for every file it
//! starts, so a link planted where the next file goes refuses the sink, and old files are
//! deleted by name in the verified directory (a link there is removed, not followed).

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use super::rotate::{RotatingFile, Rotation};
use super::LogError;
use crate::driver::hostfs::{self, FileKind, HostPathError, PinnedPath, VerifiedDir};

/// Mode of log files the runner creates.
const LOG_FILE_MODE: u32 = 0o644;

/// What a sink path is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    /// An existing FIFO, made by the orchestrator (Nomad's logmon); waited for when it has
    /// no reader.
    #[default]
    Fifo,
    /// A regular file, created when missing and appended to.
    File,
}

/// Told when a sink is refused (the message names the path and why).
pub type SinkReport = Arc<dyn Fn(String) + Send + Sync>;

/// A FIFO or file opened for one stream; [`Sink::discard`] drops everything.
pub struct Sink {
    target: Option<Target>,
    writer: Option<Writer>,
    report: Option<SinkReport>,
}

struct Target {
    /// Trusted directory: links are followed only down to here.
    root: PathBuf,
    path: PathBuf,
    kind: SinkKind,
    /// The FIFO pinned when the sink was opened, used for its first writer.
    pinned: Option<PinnedPath>,
    /// For a rotating file sink: which file is written (`path` is that file).
    rotating: Option<RotatingFile>,
}

enum Writer {
    Fifo(tokio::net::unix::pipe::Sender),
    File(tokio::fs::File),
}

impl Sink {
    /// Opens `path` (below `root`) now, so a sink that is not what it should be fails the
    /// task before its container starts: a FIFO is pinned (it need not have a reader
    /// yet), a file is created or opened for appending.
    pub fn open(
        root: &Path,
        path: &Path,
        kind: SinkKind,
        report: Option<SinkReport>,
    ) -> Result<Self, LogError> {
        let mut target = Target {
            root: root.to_path_buf(),
            path: path.to_path_buf(),
            kind,
            pinned: None,
            rotating: None,
        };
        let writer = match kind {
            SinkKind::Fifo => {
                target.pinned = Some(target.pin_fifo().map_err(|e| target.refused(e))?);
                None
            }
            SinkKind::File => Some(target.open_file().map_err(|e| target.refused(e))?),
        };
        Ok(Sink {
            target: Some(target),
            writer,
            report,
        })
    }

    /// A regular file sink that rotates: `<base>.<index>` below `root`, continuing the
    /// highest index already there.
    pub fn open_rotating(
        root: &Path,
        base: &Path,
        rotation: Rotation,
        report: Option<SinkReport>,
    ) -> Result<Self, LogError> {
        let refused = |e: HostPathError| LogError::Refused {
            path: base.display().to_string(),
            reason: e.to_string(),
        };
        let rotating = RotatingFile::resume(root, base, rotation).map_err(refused)?;
        let mut target = Target {
            root: root.to_path_buf(),
            path: rotating.current_path(),
            kind: SinkKind::File,
            pinned: None,
            rotating: Some(rotating),
        };
        let writer = target.open_file().map_err(|e| target.refused(e))?;
        Ok(Sink {
            target: Some(target),
            writer: Some(writer),
            report,
        })
    }

    /// An existing FIFO in a directory the caller trusts.
    pub fn fifo(path: &Path) -> Result<Self, LogError> {
        let root = path.parent().unwrap_or(Path::new("/"));
        Sink::open(root, path, SinkKind::Fifo, None)
    }

    /// Where a later refusal is reported from now on.
    pub fn set_report(&mut self, report: SinkReport) {
        self.report = Some(report);
    }

    /// A sink that drops what it is given.
    pub fn discard() -> Self {
        Sink {
            target: None,
            writer: None,
            report: None,
        }
    }

    /// Whether everything given is dropped (no path, or refused), so callers can skip
    /// preparing what they would write.
    pub fn is_discard(&self) -> bool {
        self.target.is_none()
    }

    /// Writes all of `data`, waiting for a FIFO reader whenever there is none.
    /// `Ok(false)` when cancelled first. A sink refused on reopening discards from then on.
    pub(super) async fn write(
        &mut self,
        data: &[u8],
        cancel: &CancellationToken,
    ) -> Result<bool, LogError> {
        let mut written = 0;
        while written < data.len() {
            if self.target.is_none() {
                return Ok(true);
            }
            if self.writer.is_none() {
                match self.reopen(cancel).await {
                    Ok(Some(w)) => self.writer = Some(w),
                    Ok(None) => return Ok(false),
                    Err(refusal) => {
                        self.refuse(refusal);
                        return Ok(true);
                    }
                }
            }
            let mut end = data.len();
            if let Some(rotating) = self.target.as_ref().and_then(|t| t.rotating.as_ref()) {
                match rotating.fit(&data[written..]) {
                    Some(n) => end = written + n,
                    None => {
                        self.start_next_file().await?;
                        continue;
                    }
                }
            }
            let result = match self.writer.as_mut() {
                Some(Writer::Fifo(p)) => tokio::select! {
                    _ = cancel.cancelled() => return Ok(false),
                    r = p.write(&data[written..end]) => r,
                },
                Some(Writer::File(f)) => f.write(&data[written..end]).await,
                None => continue,
            };
            match result {
                Ok(0) => return Err(self.error("write returned 0 bytes")),
                Ok(n) => {
                    written += n;
                    if let Some(r) = self.target.as_mut().and_then(|t| t.rotating.as_mut()) {
                        r.size += n as u64;
                    }
                }
                // The reader went away: wait for the next one and go on where we were.
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => self.writer = None,
                Err(e) => return Err(self.error(e)),
            }
        }
        if let Some(Writer::File(f)) = self.writer.as_mut() {
            f.flush().await.map_err(|e| self.error(e))?;
        }
        Ok(true)
    }

    /// Finishes the current file and moves to the next index; the file is opened (and
    /// old ones deleted) by the next write. Everything written is flushed first: once the
    /// next file exists, a reader may take the current one as complete.
    async fn start_next_file(&mut self) -> Result<(), LogError> {
        if let Some(Writer::File(f)) = self.writer.as_mut() {
            f.flush().await.map_err(|e| self.error(e))?;
        }
        self.writer = None;
        if let Some(target) = self.target.as_mut() {
            if let Some(rotating) = target.rotating.as_mut() {
                rotating.index += 1;
                rotating.size = 0;
                target.path = rotating.current_path();
            }
        }
        Ok(())
    }

    fn error(&self, reason: impl std::fmt::Display) -> LogError {
        LogError::Sink {
            path: self
                .target
                .as_ref()
                .map(|t| t.path.display().to_string())
                .unwrap_or_default(),
            reason: reason.to_string(),
        }
    }

    /// Reports a refusal once and discards from then on.
    fn refuse(&mut self, refusal: LogError) {
        self.target = None;
        self.writer = None;
        let message = format!("{refusal}; this stream is discarded from now on");
        match &self.report {
            Some(report) => report(message),
            None => eprintln!("{message}"),
        }
    }

    /// A writer: the FIFO pinned at open for the first one, else the path reached again
    /// without following links (logmon may have made a new FIFO), once it has a reader.
    async fn reopen(&mut self, cancel: &CancellationToken) -> Result<Option<Writer>, LogError> {
        let Some(target) = self.target.as_mut() else {
            return Ok(None);
        };
        if target.kind == SinkKind::File {
            return target.open_file().map(Some).map_err(|e| target.refused(e));
        }
        let mut wait = Duration::from_millis(50);
        loop {
            let pinned = match target.pinned.take() {
                Some(pinned) => pinned,
                None => target.pin_fifo().map_err(|e| target.refused(e))?,
            };
            match pinned.reopen(libc::O_WRONLY | libc::O_NONBLOCK) {
                Ok(file) => {
                    let sender = tokio::net::unix::pipe::Sender::from_file(file)
                        .map_err(|e| target.failed(e))?;
                    return Ok(Some(Writer::Fifo(sender)));
                }
                // ENXIO: no reader yet.
                Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {}
                Err(e) => return Err(target.failed(e)),
            }
            tokio::select! {
                _ = cancel.cancelled() => return Ok(None),
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(Duration::from_secs(1));
        }
    }
}

impl Target {
    fn pin_fifo(&self) -> Result<PinnedPath, HostPathError> {
        hostfs::pin_beneath(&self.root, &self.path)?.expect(FileKind::Fifo)
    }

    fn open_file(&mut self) -> Result<Writer, HostPathError> {
        let name = self.path.file_name().unwrap_or(OsStr::new(""));
        let parent = self.path.parent().unwrap_or(&self.root);
        let dir = VerifiedDir::open(&self.root, parent)?;
        let file = dir.append(name, LOG_FILE_MODE)?;
        if let Some(rotating) = self.rotating.as_mut() {
            rotating.size = file
                .metadata()
                .map_err(|e| HostPathError::Io {
                    path: self.path.clone(),
                    source: e,
                })?
                .len();
            rotating.purge(&dir);
        }
        Ok(Writer::File(tokio::fs::File::from_std(file)))
    }

    fn refused(&self, e: HostPathError) -> LogError {
        LogError::Refused {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        }
    }

    fn failed(&self, e: io::Error) -> LogError {
        LogError::Sink {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::sync::Mutex;

    fn mkfifo(path: &Path) {
        nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    }

    /// A FIFO reader that reads exactly `n` bytes. `read_write` keeps the read end from
    /// seeing EOF before the writer connects.
    fn fifo_reader(path: &Path, n: usize) -> tokio::task::JoinHandle<Vec<u8>> {
        let path = path.to_path_buf();
        tokio::spawn(async move {
            let mut rx = tokio::net::unix::pipe::OpenOptions::new()
                .read_write(true)
                .open_receiver(&path)
                .expect("reader");
            let mut buf = vec![0u8; n];
            tokio::io::AsyncReadExt::read_exact(&mut rx, &mut buf)
                .await
                .expect("read");
            buf
        })
    }

    fn recorder() -> (SinkReport, Arc<Mutex<Vec<String>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let report: SinkReport = Arc::new(move |m| record.lock().unwrap().push(m));
        (report, seen)
    }

    #[tokio::test]
    async fn fifo_sink_waits_for_a_reader_and_survives_a_new_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("stdout.fifo");
        mkfifo(&path);
        let cancel = CancellationToken::new();
        let mut sink = Sink::open(dir.path(), &path, SinkKind::Fifo, None).expect("open");
        let reader = fifo_reader(&path, 5);
        assert!(sink.write(b"first", &cancel).await.expect("write"));
        assert_eq!(reader.await.expect("reader task"), b"first");

        // That reader is gone (writes may now fail with EPIPE); a new one comes.
        let reader = fifo_reader(&path, 15);
        for _ in 0..3 {
            assert!(sink.write(b"again", &cancel).await.expect("write"));
        }
        assert_eq!(reader.await.expect("reader task"), b"againagainagain");
    }

    #[tokio::test]
    async fn waiting_for_a_reader_can_be_cancelled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nobody.fifo");
        mkfifo(&path);
        let cancel = CancellationToken::new();
        cancel.cancel();
        let mut sink = Sink::open(dir.path(), &path, SinkKind::Fifo, None).expect("open");
        assert!(!sink.write(b"x", &cancel).await.expect("no error"));
    }

    #[test]
    fn a_fifo_sink_is_never_created_nor_anything_but_a_fifo() {
        let root = tempfile::tempdir().expect("tempdir");
        let logs = root.path().join("logs");
        std::fs::create_dir(&logs).unwrap();
        // Missing: not created.
        let missing = logs.join(".web.stdout.fifo");
        let e = Sink::open(root.path(), &missing, SinkKind::Fifo, None)
            .err()
            .unwrap();
        assert!(matches!(e, LogError::Refused { .. }), "{e}");
        assert!(!missing.exists());
        // A link to a file the task wants written (e.g. /etc/cron.d/x): refused, not created.
        let victim = root.path().join("cron.d-x");
        symlink(&victim, &missing).unwrap();
        let e = Sink::open(root.path(), &missing, SinkKind::Fifo, None)
            .err()
            .unwrap();
        assert!(
            e.to_string()
                .contains("is a symbolic link, expected a FIFO"),
            "{e}"
        );
        assert!(!victim.exists());
        // A regular file in its place.
        std::fs::remove_file(&missing).unwrap();
        std::fs::write(&missing, "").unwrap();
        let e = Sink::open(root.path(), &missing, SinkKind::Fifo, None)
            .err()
            .unwrap();
        assert!(e.to_string().contains("is a regular file"), "{e}");
        // The logs directory itself swapped for a link.
        let elsewhere = tempfile::tempdir().unwrap();
        mkfifo(&elsewhere.path().join(".web.stdout.fifo"));
        std::fs::remove_dir_all(&logs).unwrap();
        symlink(elsewhere.path(), &logs).unwrap();
        let e = Sink::open(root.path(), &missing, SinkKind::Fifo, None)
            .err()
            .unwrap();
        assert!(e.to_string().contains("symbolic link"), "{e}");
    }

    #[tokio::test]
    async fn a_fifo_replaced_by_a_link_after_a_reader_left_is_refused_and_reported() {
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path().join("out.fifo");
        mkfifo(&path);
        let cancel = CancellationToken::new();
        let (report, seen) = recorder();
        let mut sink = Sink::open(root.path(), &path, SinkKind::Fifo, Some(report)).unwrap();
        let reader = fifo_reader(&path, 3);
        assert!(sink.write(b"one", &cancel).await.unwrap());
        assert_eq!(reader.await.unwrap(), b"one");
        // The reader is gone; the task swaps the FIFO for a link to a host file.
        let victim = root.path().join("victim");
        std::fs::write(&victim, "untouched").unwrap();
        std::fs::remove_file(&path).unwrap();
        symlink(&victim, &path).unwrap();
        for _ in 0..3 {
            assert!(sink.write(b"two", &cancel).await.unwrap());
        }
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "reported once: {seen:?}");
        assert!(seen[0].contains(&path.display().to_string()), "{seen:?}");
        assert!(seen[0].contains("symbolic link"), "{seen:?}");
    }

    #[tokio::test]
    async fn file_sinks_append_regular_files_and_refuse_links() {
        let root = tempfile::tempdir().expect("tempdir");
        let logs = root.path().join("logs");
        std::fs::create_dir(&logs).unwrap();
        let path = logs.join("web.stdout.0");
        std::fs::write(&path, "old\n").expect("seed");
        let cancel = CancellationToken::new();
        let mut sink = Sink::open(root.path(), &path, SinkKind::File, None).unwrap();
        assert!(sink.write(b"new\n", &cancel).await.expect("write"));
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "old\nnew\n");

        let victim = root.path().join("victim");
        let linked = logs.join("web.stderr.0");
        symlink(&victim, &linked).unwrap();
        let e = Sink::open(root.path(), &linked, SinkKind::File, None)
            .err()
            .unwrap();
        assert!(matches!(e, LogError::Refused { .. }), "{e}");
        assert!(!victim.exists(), "the link's target was not created");

        let e = Sink::open(
            root.path(),
            &root.path().join("missing/x"),
            SinkKind::File,
            None,
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("missing"), "{e}");
    }

    fn rotation(max_files: u32, max_file_size: u64) -> Rotation {
        Rotation {
            max_files,
            max_file_size,
        }
    }

    /// The `<base>.<index>` files in `dir`, lowest index first, with their contents.
    fn rotated(dir: &Path, base: &str) -> Vec<(u64, String)> {
        let mut files: Vec<(u64, String)> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| {
                let e = e.unwrap();
                let index = super::super::rotate::rotated_index(OsStr::new(base), &e.file_name())?;
                Some((index, std::fs::read_to_string(e.path()).unwrap()))
            })
            .collect();
        files.sort();
        files
    }

    #[tokio::test]
    async fn a_rotating_sink_starts_the_next_index_at_the_bound_and_deletes_the_oldest() {
        let root = tempfile::tempdir().unwrap();
        let logs = root.path().join("logs");
        std::fs::create_dir(&logs).unwrap();
        let base = logs.join("web.stdout");
        let cancel = CancellationToken::new();
        let mut sink = Sink::open_rotating(root.path(), &base, rotation(3, 12), None).unwrap();
        for i in 0..10 {
            // 6 bytes a line: two lines a file.
            assert!(sink
                .write(format!("line{i}\n").as_bytes(), &cancel)
                .await
                .unwrap());
        }
        assert_eq!(
            rotated(&logs, "web.stdout"),
            vec![
                (2, "line4\nline5\n".to_string()),
                (3, "line6\nline7\n".to_string()),
                (4, "line8\nline9\n".to_string()),
            ]
        );
        // A new sink (the task restarted) appends to the highest index, then goes on.
        drop(sink);
        let mut sink = Sink::open_rotating(root.path(), &base, rotation(3, 12), None).unwrap();
        assert!(sink.write(b"more\n", &cancel).await.unwrap());
        let files = rotated(&logs, "web.stdout");
        assert_eq!(files.last().unwrap(), &(5, "more\n".to_string()));
        assert_eq!(files.len(), 3, "{files:?}");
        // With room left in the last file, it is continued.
        std::fs::write(logs.join("web.stdout.9"), "a\n").unwrap();
        let mut sink = Sink::open_rotating(root.path(), &base, rotation(3, 12), None).unwrap();
        assert!(sink.write(b"b\n", &cancel).await.unwrap());
        assert_eq!(
            std::fs::read_to_string(logs.join("web.stdout.9")).unwrap(),
            "a\nb\n"
        );
        // Indices 7 and 8 are missing; everything more than 3 behind 9 is purged.
        let indices: Vec<u64> = rotated(&logs, "web.stdout").iter().map(|f| f.0).collect();
        assert_eq!(indices, vec![9]);
    }

    #[tokio::test]
    async fn a_rotated_file_never_exceeds_the_bound_by_more_than_one_write() {
        let root = tempfile::tempdir().unwrap();
        let base = root.path().join("t.journal");
        let cancel = CancellationToken::new();
        let max = 100;
        let mut sink = Sink::open_rotating(root.path(), &base, rotation(1000, max), None).unwrap();
        let mut all = String::new();
        // Writes of every size, several lines each, some lines longer than a file, some
        // writes ending inside a line.
        let mut n = 0;
        for size in (1..400).step_by(7) {
            let mut chunk = String::new();
            while chunk.len() < size {
                n += 1;
                let len = if n % 13 == 0 { 150 } else { n % 40 };
                chunk.push_str(&"x".repeat(len));
                if n % 5 != 0 {
                    chunk.push('\n');
                }
            }
            assert!(sink.write(chunk.as_bytes(), &cancel).await.unwrap());
            all.push_str(&chunk);
        }
        let files = rotated(root.path(), "t.journal");
        assert!(files.len() > 10, "rotated: {}", files.len());
        let joined: String = files.iter().map(|(_, text)| text.as_str()).collect();
        assert_eq!(joined, all, "nothing lost, nothing repeated, in order");
        for (index, text) in &files {
            if text.len() as u64 > max {
                // Only a single line too long for any file may exceed the bound.
                let lines = text.trim_end_matches('\n').matches('\n').count();
                assert_eq!(lines, 0, "file {index} holds {} bytes", text.len());
            }
        }
        let indices: Vec<u64> = files.iter().map(|(i, _)| *i).collect();
        let expected: Vec<u64> = (0..files.len() as u64).collect();
        assert_eq!(indices, expected, "indices 0, 1, 2, ... with no gap");
    }

    #[tokio::test]
    async fn a_link_planted_where_the_next_file_goes_is_refused_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let logs = root.path().join("logs");
        std::fs::create_dir(&logs).unwrap();
        let victim = root.path().join("victim");
        std::fs::write(&victim, "untouched").unwrap();
        let cancel = CancellationToken::new();
        let (report, seen) = recorder();
        let mut sink = Sink::open_rotating(
            root.path(),
            &logs.join("web.stdout"),
            rotation(5, 10),
            Some(report),
        )
        .unwrap();
        assert!(sink.write(b"0123456\n", &cancel).await.unwrap());
        // The task expects web.stdout.1 next and plants a link there.
        symlink(&victim, logs.join("web.stdout.1")).unwrap();
        for _ in 0..3 {
            assert!(sink.write(b"0123456\n", &cancel).await.unwrap());
        }
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
        assert_eq!(
            std::fs::read_to_string(logs.join("web.stdout.0")).unwrap(),
            "0123456\n"
        );
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "reported once: {seen:?}");
        assert!(seen[0].contains("web.stdout.1"), "{seen:?}");
        assert!(seen[0].contains("symbolic link"), "{seen:?}");
        // Planted before the sink opens, at the index it would continue: refused at once.
        let e = Sink::open_rotating(root.path(), &logs.join("web.stdout"), rotation(5, 10), None)
            .err()
            .unwrap();
        assert!(matches!(e, LogError::Refused { .. }), "{e}");
    }

    #[tokio::test]
    async fn discard_takes_everything() {
        let cancel = CancellationToken::new();
        assert!(Sink::discard().write(b"x", &cancel).await.unwrap());
    }
}

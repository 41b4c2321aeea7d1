//! Where forwarded logs go: a FIFO (Nomad's logmon reads it) or a plain file.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use super::LogError;

/// A FIFO or regular file, (re)opened on demand.
pub(super) struct Sink {
    path: PathBuf,
    writer: Option<Writer>,
}

enum Writer {
    Fifo(tokio::net::unix::pipe::Sender),
    File(tokio::fs::File),
}

impl Sink {
    pub(super) fn new(path: &Path) -> Self {
        Sink {
            path: path.to_path_buf(),
            writer: None,
        }
    }

    fn error(&self, reason: impl std::fmt::Display) -> LogError {
        LogError::Sink {
            path: self.path.display().to_string(),
            reason: reason.to_string(),
        }
    }

    /// Writes all of `data`, waiting for a FIFO reader whenever there is none.
    /// `Ok(false)` when cancelled first.
    pub(super) async fn write(
        &mut self,
        data: &[u8],
        cancel: &CancellationToken,
    ) -> Result<bool, LogError> {
        let mut written = 0;
        while written < data.len() {
            if self.writer.is_none() {
                match self.open(cancel).await? {
                    Some(w) => self.writer = Some(w),
                    None => return Ok(false),
                }
            }
            let result = match self.writer.as_mut() {
                Some(Writer::Fifo(p)) => tokio::select! {
                    _ = cancel.cancelled() => return Ok(false),
                    r = p.write(&data[written..]) => r,
                },
                Some(Writer::File(f)) => f.write(&data[written..]).await,
                None => continue,
            };
            match result {
                Ok(0) => return Err(self.error("write returned 0 bytes")),
                Ok(n) => written += n,
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

    /// Opens the sink: a FIFO once it has a reader, anything else as an appended file.
    async fn open(&self, cancel: &CancellationToken) -> Result<Option<Writer>, LogError> {
        let is_fifo = match tokio::fs::metadata(&self.path).await {
            Ok(m) => {
                use std::os::unix::fs::FileTypeExt;
                m.file_type().is_fifo()
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(self.error(e)),
        };
        if !is_fifo {
            let file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .await
                .map_err(|e| self.error(e))?;
            return Ok(Some(Writer::File(file)));
        }
        let mut wait = Duration::from_millis(50);
        loop {
            match tokio::net::unix::pipe::OpenOptions::new().open_sender(&self.path) {
                Ok(sender) => return Ok(Some(Writer::Fifo(sender))),
                // ENXIO: no reader yet.
                Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {}
                Err(e) => return Err(self.error(e)),
            }
            tokio::select! {
                _ = cancel.cancelled() => return Ok(None),
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(Duration::from_secs(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[tokio::test]
    async fn fifo_sink_waits_for_a_reader_and_survives_a_new_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("stdout.fifo");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let cancel = CancellationToken::new();
        let mut sink = Sink::new(&path);
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
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let cancel = CancellationToken::new();
        cancel.cancel();
        let mut sink = Sink::new(&path);
        assert!(!sink.write(b"x", &cancel).await.expect("no error"));
    }

    #[tokio::test]
    async fn plain_files_are_appended() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.log");
        std::fs::write(&path, "old\n").expect("seed");
        let cancel = CancellationToken::new();
        let mut sink = Sink::new(&path);
        assert!(sink.write(b"new\n", &cancel).await.expect("write"));
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "old\nnew\n");
        let bad = Sink::new(&dir.path().join("missing-dir/out.log"));
        let mut bad = bad;
        let e = bad.write(b"x", &cancel).await.expect_err("no such dir");
        assert!(e.to_string().contains("missing-dir"), "{e}");
    }
}

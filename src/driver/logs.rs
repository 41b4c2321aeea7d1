//! Log forwarding: follows a container's logs through the API and writes stdout and stderr
//! *separately* to the task's paths (Nomad's FIFOs or plain files).
//!
//! Differences from the Go driver's journald streamer (upstream §3.11), on purpose:
//! * stderr goes to the stderr sink (Go's nomad mode merged both into stdout).
//! * Reconnects resume at a [`LogCursor`] (last timestamp plus lines already written at
//!   it) instead of "now": nothing is lost or repeated across reconnects as long as podman
//!   still has the lines.
//! * A FIFO without a reader is waited for, and a reader that goes away is waited for
//!   again, instead of giving up.
//! * A clean end of the stream ends forwarding only once the container has stopped.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::podman::{parse_time, LogOptions, PodmanClient, PodmanError, StreamKind};

const FIRST_RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(5);

/// Where forwarding resumes: lines stamped before `unix_nanos` are done, and so are the
/// first `seen` lines stamped exactly `unix_nanos` (podman 4 stamps whole seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogCursor {
    pub unix_nanos: i64,
    pub seen: u64,
}

impl LogCursor {
    /// Forward everything logged from the second of `time` on.
    pub fn at(time: SystemTime) -> Self {
        let secs = time
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        LogCursor {
            unix_nanos: i64::try_from(secs)
                .unwrap_or(i64::MAX / 1_000_000_000)
                .saturating_mul(1_000_000_000),
            seen: 0,
        }
    }

    /// The `since` to ask podman for: just before the cursor, so lines stamped exactly at it
    /// come again and can be counted off.
    fn since(&self) -> SystemTime {
        let nanos = u64::try_from(self.unix_nanos.saturating_sub(1)).unwrap_or(0);
        UNIX_EPOCH + Duration::from_nanos(nanos)
    }

    /// Whether a line stamped `stamp` is new; advances the cursor when it is.
    fn admit(&mut self, stamp: i64, at_cursor: &mut u64) -> bool {
        if stamp < self.unix_nanos {
            return false;
        }
        if stamp == self.unix_nanos {
            if *at_cursor < self.seen {
                *at_cursor += 1;
                return false;
            }
            self.seen += 1;
            *at_cursor += 1;
            return true;
        }
        self.unix_nanos = stamp;
        self.seen = 1;
        *at_cursor = 1;
        true
    }
}

/// What to forward where.
#[derive(Debug, Clone)]
pub struct LogForwardConfig {
    pub container_id: String,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    pub cursor: LogCursor,
}

/// Why forwarding stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log sink {path}: {reason}")]
    Sink { path: String, reason: String },
    #[error("log forwarding task failed: {0}")]
    Task(String),
}

/// A running forwarder. Dropping it does not stop it; call [`LogForwarder::stop`].
pub struct LogForwarder {
    cancel: CancellationToken,
    cursor: watch::Receiver<LogCursor>,
    task: tokio::task::JoinHandle<Result<(), LogError>>,
}

impl LogForwarder {
    /// Starts forwarding on the current tokio runtime.
    pub fn spawn(client: PodmanClient, config: LogForwardConfig) -> Self {
        let cancel = CancellationToken::new();
        let (cursor_tx, cursor) = watch::channel(config.cursor);
        let task = tokio::spawn(forward(client, config, cursor_tx, cancel.clone()));
        LogForwarder {
            cancel,
            cursor,
            task,
        }
    }

    /// How far forwarding got (persist it to resume after a restart).
    pub fn cursor(&self) -> LogCursor {
        *self.cursor.borrow()
    }

    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits until the container has stopped and its logs are written.
    pub async fn join(self) -> Result<LogCursor, LogError> {
        let cursor = self.cursor.clone();
        match self.task.await {
            Ok(result) => result.map(|()| *cursor.borrow()),
            Err(e) => Err(LogError::Task(e.to_string())),
        }
    }

    /// Stops forwarding now and returns where it got to.
    pub async fn stop(self) -> Result<LogCursor, LogError> {
        self.cancel.cancel();
        self.join().await
    }
}

async fn forward(
    client: PodmanClient,
    config: LogForwardConfig,
    cursor_tx: watch::Sender<LogCursor>,
    cancel: CancellationToken,
) -> Result<(), LogError> {
    let mut stdout = Sink::new(&config.stdout);
    let mut stderr = Sink::new(&config.stderr);
    let mut cursor = config.cursor;
    let mut retry = FIRST_RETRY;
    loop {
        let outcome = follow_once(
            &client,
            &config.container_id,
            &mut cursor,
            &cursor_tx,
            &mut stdout,
            &mut stderr,
            &cancel,
        )
        .await;
        match outcome {
            Ok(FollowEnd::Cancelled) => return Ok(()),
            Ok(FollowEnd::Clean) => match client.container_inspect(&config.container_id).await {
                Ok(c) if c.state.running => retry = FIRST_RETRY,
                Ok(_) => return Ok(()),
                Err(e) if e.is_not_found() => return Ok(()),
                Err(_) => {}
            },
            Err(FollowError::Sink(e)) => return Err(e),
            Err(FollowError::Podman(e)) if e.is_not_found() => return Ok(()),
            Err(FollowError::Podman(_)) => {}
        }
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(retry) => {}
        }
        retry = (retry * 2).min(MAX_RETRY);
    }
}

enum FollowEnd {
    Clean,
    Cancelled,
}

enum FollowError {
    Podman(PodmanError),
    Sink(LogError),
}

/// One follow request, from the cursor until the stream ends.
async fn follow_once(
    client: &PodmanClient,
    container_id: &str,
    cursor: &mut LogCursor,
    cursor_tx: &watch::Sender<LogCursor>,
    stdout: &mut Sink,
    stderr: &mut Sink,
    cancel: &CancellationToken,
) -> Result<FollowEnd, FollowError> {
    let options = LogOptions {
        follow: true,
        stdout: true,
        stderr: true,
        timestamps: true,
        since: Some(cursor.since()),
        ..LogOptions::default()
    };
    // Cancellation is only honoured while waiting (for podman or for a FIFO reader), never
    // in the middle of a write, so the cursor always matches what was written.
    let mut frames = tokio::select! {
        _ = cancel.cancelled() => return Ok(FollowEnd::Cancelled),
        f = client.container_logs(container_id, &options) => f.map_err(FollowError::Podman)?,
    };
    let mut at_cursor = 0;
    loop {
        let frame = tokio::select! {
            _ = cancel.cancelled() => return Ok(FollowEnd::Cancelled),
            f = frames.next() => match f {
                Some(f) => f.map_err(FollowError::Podman)?,
                None => return Ok(FollowEnd::Clean),
            },
        };
        let (stamp, payload) = split_timestamp(&frame.payload);
        if let Some(stamp) = stamp {
            if !cursor.admit(stamp, &mut at_cursor) {
                continue;
            }
        }
        let sink = match frame.stream {
            StreamKind::Stderr => &mut *stderr,
            StreamKind::Stdout | StreamKind::Stdin => &mut *stdout,
        };
        if !sink
            .write(&payload, cancel)
            .await
            .map_err(FollowError::Sink)?
        {
            return Ok(FollowEnd::Cancelled);
        }
        cursor_tx.send_replace(*cursor);
    }
}

/// `<RFC 3339 time> <payload>` → (time in unix nanos, payload). Payloads without a
/// readable time are passed on whole.
fn split_timestamp(payload: &Bytes) -> (Option<i64>, Bytes) {
    let Some(space) = payload.iter().position(|b| *b == b' ') else {
        return (None, payload.clone());
    };
    let stamp = std::str::from_utf8(&payload[..space])
        .ok()
        .and_then(parse_time)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_nanos()).ok());
    match stamp {
        Some(stamp) => (Some(stamp), payload.slice(space + 1..)),
        None => (None, payload.clone()),
    }
}

/// A FIFO or regular file, (re)opened on demand.
struct Sink {
    path: PathBuf,
    writer: Option<Writer>,
}

enum Writer {
    Fifo(tokio::net::unix::pipe::Sender),
    File(tokio::fs::File),
}

impl Sink {
    fn new(path: &Path) -> Self {
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
    async fn write(&mut self, data: &[u8], cancel: &CancellationToken) -> Result<bool, LogError> {
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

    const SEC: i64 = 1_000_000_000;

    fn admit_all(cursor: &mut LogCursor, stamps: &[i64]) -> Vec<i64> {
        let mut skipped = 0;
        stamps
            .iter()
            .copied()
            .filter(|s| cursor.admit(*s, &mut skipped))
            .collect()
    }

    #[test]
    fn reconnects_skip_lines_already_written_in_the_same_second() {
        let mut cursor = LogCursor::at(UNIX_EPOCH + Duration::from_secs(100));
        // First connection: three lines in second 100, one in 101, then the stream breaks.
        let first = admit_all(&mut cursor, &[100 * SEC, 100 * SEC, 101 * SEC]);
        assert_eq!(first.len(), 3);
        assert_eq!(
            cursor,
            LogCursor {
                unix_nanos: 101 * SEC,
                seen: 1
            }
        );
        // Reconnect from just before second 101: podman repeats that second's line.
        assert_eq!(
            cursor.since(),
            UNIX_EPOCH + Duration::from_nanos(101 * SEC as u64 - 1)
        );
        let second = admit_all(&mut cursor, &[101 * SEC, 101 * SEC, 102 * SEC]);
        assert_eq!(second, vec![101 * SEC, 102 * SEC]);
        assert_eq!(
            cursor,
            LogCursor {
                unix_nanos: 102 * SEC,
                seen: 1
            }
        );
    }

    #[test]
    fn older_lines_are_dropped() {
        let mut cursor = LogCursor {
            unix_nanos: 50 * SEC,
            seen: 2,
        };
        let got = admit_all(
            &mut cursor,
            &[49 * SEC, 50 * SEC, 50 * SEC, 50 * SEC, 51 * SEC],
        );
        assert_eq!(got, vec![50 * SEC, 51 * SEC]);
    }

    #[test]
    fn timestamps_are_split_off() {
        let (stamp, rest) =
            split_timestamp(&Bytes::from_static(b"2024-01-01T00:00:01Z hello world\n"));
        assert_eq!(stamp, Some(1_704_067_201 * SEC));
        assert_eq!(rest, Bytes::from_static(b"hello world\n"));
        let (stamp, rest) = split_timestamp(&Bytes::from_static(b"2024-01-01T00:00:01.5Z x"));
        assert_eq!(stamp, Some(1_704_067_201 * SEC + SEC / 2));
        assert_eq!(rest, Bytes::from_static(b"x"));
        let (stamp, rest) = split_timestamp(&Bytes::from_static(b"no stamp here"));
        assert_eq!(stamp, None);
        assert_eq!(rest, Bytes::from_static(b"no stamp here"));
    }

    #[test]
    fn cursor_round_trips_through_json() {
        let c = LogCursor {
            unix_nanos: 5,
            seen: 3,
        };
        let json = serde_json::to_string(&c).expect("json");
        assert_eq!(serde_json::from_str::<LogCursor>(&json).expect("back"), c);
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

//! Log forwarding: follows a container's output and writes stdout and stderr *separately*
//! to the task's paths (Nomad's FIFOs or plain files). With podman on this machine the
//! container's k8s-file log is tailed straight from disk ([`k8s_file`]); otherwise the
//! logs API is followed (a fraction of the speed: podman serialises it line by line).
//!
//! Differences from the Go driver's journald streamer, on purpose:
//! * stderr goes to the stderr sink (Go's nomad mode merged both into stdout).
//! * Reconnects resume at a [`LogCursor`] (last timestamp plus lines already written at
//!   it) instead of "now": nothing is lost or repeated across reconnects as long as podman
//!   still has the lines.
//! * A FIFO without a reader is waited for, and a reader that goes away is waited for
//!   again, instead of giving up.
//! * A clean end of the stream ends forwarding only once the container has stopped, and
//!   then only after a last read without follow: podman 4.3 ends follow streams of exited
//!   containers early (podman#21914), which lost output.

mod file_events;
pub mod journal;
mod k8s_file;
mod position;
pub mod rotate;
mod sink;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::monitor::ExitState;
use super::podman::{
    parse_time, Endpoint, Frame, LogOptions, PodmanClient, PodmanError, StreamKind,
};
pub use file_events::FileEvents;
pub use journal::{JournalLine, JournalStream, LineAssembler};
pub use position::{PositionFile, POSITION_FILE};
pub use rotate::Rotation;
pub use sink::{Sink, SinkKind, SinkReport};

use super::handle::LogTarget;

const FIRST_RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(5);
/// Tries of the final read of a stopped container's log.
const FINAL_READ_ATTEMPTS: usize = 3;
/// How long a follow stream may stay open once the task's exit is known.
const API_SETTLE: Duration = Duration::from_secs(2);

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

/// Where forwarded lines are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogSource {
    /// The container's k8s-file log straight from disk when podman is on this machine (a
    /// unix socket) and the file is readable; the logs API otherwise.
    #[default]
    Auto,
    /// Always the libpod logs API.
    Api,
}

/// What to forward where.
pub struct LogForwardConfig {
    pub container_id: String,
    pub stdout: Sink,
    pub stderr: Sink,
    /// Both streams in one file, in order and stamped ([`journal`]); discarded when the
    /// orchestrator did not ask for it.
    pub journal: Sink,
    pub cursor: LogCursor,
    pub source: LogSource,
    /// The task's exit, as the monitor sees it: a file tail ends once the container has
    /// exited and its log is read to the end (a closed channel counts as exited).
    pub exited: watch::Receiver<ExitState>,
    /// Wakes a file tail when its file grows; without it the tail polls.
    pub file_events: Option<FileEvents>,
    /// Where the position is kept for a later process to resume from.
    pub position: Option<PositionFile>,
}

/// Why forwarding stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log sink {path}: {reason}")]
    Sink { path: String, reason: String },
    /// The sink is not what the orchestrator made (a link, a file where a FIFO belongs,
    /// outside its directory): never opened for writing.
    #[error("log sink {path} refused: {reason}")]
    Refused { path: String, reason: String },
    #[error("container log {path}: {reason}")]
    Source { path: String, reason: String },
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

/// Both sinks and how far they got. The cursor is published only after everything it
/// covers has been written, so a resume neither repeats nor skips a line.
struct Output {
    stdout: Sink,
    stderr: Sink,
    journal: Sink,
    cursor: LogCursor,
    published: watch::Sender<LogCursor>,
    position: Option<PositionFile>,
    cancel: CancellationToken,
}

impl Output {
    /// Writes `data` to the stream's sink; `Ok(false)` when cancelled first.
    async fn write(&mut self, stream: StreamKind, data: &[u8]) -> Result<bool, LogError> {
        if data.is_empty() {
            return Ok(true);
        }
        let sink = match stream {
            StreamKind::Stderr => &mut self.stderr,
            StreamKind::Stdout | StreamKind::Stdin => &mut self.stdout,
        };
        sink.write(data, &self.cancel).await
    }

    /// Appends journal records (already encoded); `Ok(false)` when cancelled first.
    async fn write_journal(&mut self, records: &[u8]) -> Result<bool, LogError> {
        if records.is_empty() || self.journal.is_discard() {
            return Ok(true);
        }
        self.journal.write(records, &self.cancel).await
    }

    /// Records that everything up to the cursor was written to the sinks.
    fn publish(&mut self) {
        self.published.send_replace(self.cursor);
        if let Some(position) = &self.position {
            if position.store(self.cursor).is_err() {
                // A full or broken disk: forwarding goes on, a restart resumes at "now".
                self.position = None;
            }
        }
    }
}

/// A task's opened sinks.
pub struct Sinks {
    pub stdout: Sink,
    pub stderr: Sink,
    pub journal: Sink,
}

impl Sinks {
    /// Where a refusal of any of them is reported from now on.
    pub fn set_report(&mut self, report: SinkReport) {
        for sink in [&mut self.stdout, &mut self.stderr, &mut self.journal] {
            sink.set_report(report.clone());
        }
    }
}

/// Opens the sinks of `target` (a missing path discards its stream; with a rotation, the
/// file paths are the bases of the rotated files). With `report`, a
/// sink that is refused is reported and discarded, so the other stream still flows (a
/// recovered task); without it, the first refusal is the error (a task not started yet).
pub fn open_sinks(target: &LogTarget, report: Option<SinkReport>) -> Result<Sinks, LogError> {
    let open = |path: &Option<PathBuf>, kind: SinkKind| -> Result<Sink, LogError> {
        let Some(path) = path else {
            return Ok(Sink::discard());
        };
        let root = sink_root(target.root.as_deref(), path);
        let opened = match (kind, target.rotation) {
            (SinkKind::File, Some(rotation)) => {
                Sink::open_rotating(&root, path, rotation, report.clone())
            }
            _ => Sink::open(&root, path, kind, report.clone()),
        };
        match opened {
            Ok(sink) => Ok(sink),
            Err(e) => match &report {
                Some(report) => {
                    report(format!("{e}; this stream is discarded"));
                    Ok(Sink::discard())
                }
                None => Err(e),
            },
        }
    };
    Ok(Sinks {
        stdout: open(&target.stdout_path, target.sink_kind)?,
        stderr: open(&target.stderr_path, target.sink_kind)?,
        // Nobody reads a journal from a FIFO: it is always a file the orchestrator keeps.
        journal: open(&target.journal_path, SinkKind::File)?,
    })
}

/// The directory a sink path is trusted down to: the allocation dir when the path is in
/// it (the task controls everything below), else the path's own directory (the
/// orchestrator chose it), or that one's parent when it is a `logs` directory (state
/// persisted before the root was recorded: Nomad's `<alloc>/logs/<fifo>` layout).
fn sink_root(alloc_dir: Option<&Path>, path: &Path) -> PathBuf {
    if let Some(root) = alloc_dir.filter(|root| path.starts_with(root)) {
        return root.to_path_buf();
    }
    let parent = path.parent().unwrap_or(Path::new("/"));
    match (parent.file_name(), parent.parent()) {
        (Some(name), Some(grandparent)) if alloc_dir.is_none() && name == "logs" => {
            grandparent.to_path_buf()
        }
        _ => parent.to_path_buf(),
    }
}

async fn forward(
    client: PodmanClient,
    config: LogForwardConfig,
    published: watch::Sender<LogCursor>,
    cancel: CancellationToken,
) -> Result<(), LogError> {
    let mut output = Output {
        stdout: config.stdout,
        stderr: config.stderr,
        journal: config.journal,
        cursor: config.cursor,
        published,
        position: config.position,
        cancel,
    };
    output.publish();
    if config.source == LogSource::Auto {
        if let Some(path) = local_log_file(&client, &config.container_id).await {
            let events = config.file_events.as_ref();
            return k8s_file::tail(&path, &mut output, config.exited, events).await;
        }
    }
    follow_api(&client, &config.container_id, &mut output, config.exited).await
}

/// The container's k8s-file log, when this process can read it.
async fn local_log_file(client: &PodmanClient, container_id: &str) -> Option<PathBuf> {
    if !matches!(client.endpoint(), Endpoint::Unix(_)) {
        return None;
    }
    let inspect = client.container_inspect(container_id).await.ok()?;
    let log = inspect.host_config.log_config;
    if log.r#type != "k8s-file" || log.path.is_empty() {
        return None;
    }
    let path = PathBuf::from(log.path);
    tokio::fs::File::open(&path).await.ok().map(|_| path)
}

/// Forwarding through the logs API: follow from the cursor, reconnect after errors.
async fn follow_api(
    client: &PodmanClient,
    container_id: &str,
    output: &mut Output,
    mut exited: watch::Receiver<ExitState>,
) -> Result<(), LogError> {
    let mut retry = FIRST_RETRY;
    loop {
        match read_api(client, container_id, output, Some(&mut exited)).await {
            Ok(ApiEnd::Cancelled) => return Ok(()),
            Ok(ApiEnd::Clean) => match client.container_inspect(container_id).await {
                Ok(c) if c.state.running => retry = FIRST_RETRY,
                Ok(_) => return read_rest(client, container_id, output).await,
                Err(e) if e.is_not_found() => return Ok(()),
                Err(_) => {}
            },
            Err(ApiError::Sink(e)) => return Err(e),
            Err(ApiError::Podman(e)) if e.is_not_found() => return Ok(()),
            Err(ApiError::Podman(_)) => {}
        }
        if !back_off(&output.cancel, &mut retry).await {
            return Ok(());
        }
    }
}

/// After the container stopped: podman 4.3 can end a follow stream before the end of an
/// exited container's log (podman#21914), while a read without follow returns all of it.
async fn read_rest(
    client: &PodmanClient,
    container_id: &str,
    output: &mut Output,
) -> Result<(), LogError> {
    let mut retry = FIRST_RETRY;
    for _ in 0..FINAL_READ_ATTEMPTS {
        match read_api(client, container_id, output, None).await {
            Ok(_) => return Ok(()),
            Err(ApiError::Sink(e)) => return Err(e),
            Err(ApiError::Podman(e)) if e.is_not_found() => return Ok(()),
            Err(ApiError::Podman(_)) => {}
        }
        if !back_off(&output.cancel, &mut retry).await {
            return Ok(());
        }
    }
    Ok(())
}

/// Waits `retry`, then doubles it (up to `MAX_RETRY`); false when cancelled first.
async fn back_off(cancel: &CancellationToken, retry: &mut Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => return false,
        _ = tokio::time::sleep(*retry) => {}
    }
    *retry = (*retry * 2).min(MAX_RETRY);
    true
}

enum ApiEnd {
    Clean,
    Cancelled,
}

enum ApiError {
    Podman(PodmanError),
    Sink(LogError),
}

/// One logs request from the cursor until its stream ends.
/// One logs request from the cursor: following (with the task's exit signal) or not.
/// A follow ends `API_SETTLE` after the exit is known even if podman keeps the stream
/// open (podman 4.3 can, for a container force-removed meanwhile); the caller then reads
/// the rest without following.
async fn read_api(
    client: &PodmanClient,
    container_id: &str,
    output: &mut Output,
    mut follow: Option<&mut watch::Receiver<ExitState>>,
) -> Result<ApiEnd, ApiError> {
    let options = LogOptions {
        follow: follow.is_some(),
        stdout: true,
        stderr: true,
        timestamps: true,
        since: Some(output.cursor.since()),
        ..LogOptions::default()
    };
    // Cancellation is only honoured while waiting (for podman or for a FIFO reader), never
    // in the middle of a write, so the cursor always matches what was written.
    let cancel = output.cancel.clone();
    let mut frames = tokio::select! {
        _ = cancel.cancelled() => return Ok(ApiEnd::Cancelled),
        f = client.container_logs(container_id, &options) => f.map_err(ApiError::Podman)?,
    };
    let mut admission = Admission::default();
    let mut settle: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        if settle.is_none() && follow.as_deref().is_some_and(exit_known) {
            settle = Some(Box::pin(tokio::time::sleep(API_SETTLE)));
        }
        let frame = tokio::select! {
            _ = cancel.cancelled() => return Ok(ApiEnd::Cancelled),
            _ = async { settle.as_mut().expect("guarded").await }, if settle.is_some() => {
                return Ok(ApiEnd::Clean);
            }
            _ = async { follow.as_deref_mut().expect("guarded").changed().await },
                if settle.is_none() && follow.is_some() => continue,
            f = frames.next() => match f {
                Some(f) => f.map_err(ApiError::Podman)?,
                None => return Ok(ApiEnd::Clean),
            },
        };
        let Some(payload) = admission.admit(&mut output.cursor, &frame) else {
            continue;
        };
        if !output
            .write(frame.stream, &payload)
            .await
            .map_err(ApiError::Sink)?
        {
            return Ok(ApiEnd::Cancelled);
        }
        if !output.journal.is_discard() {
            let mut records = Vec::new();
            let stamp = admission.stamp.unwrap_or_else(journal::now_nanos);
            journal::push_output(&mut records, stamp, frame.stream.into(), &payload);
            if !output
                .write_journal(&records)
                .await
                .map_err(ApiError::Sink)?
            {
                return Ok(ApiEnd::Cancelled);
            }
        }
        output.publish();
    }
}

/// Whether the task has exited, or no one can say any more (the signal's sender is gone).
fn exit_known(exited: &watch::Receiver<ExitState>) -> bool {
    exited.has_changed().is_err() || *exited.borrow() != ExitState::Running
}

/// Which frames of one logs request are new, by the cursor.
#[derive(Default)]
struct Admission {
    /// Lines of the current stamp already seen in this request.
    at_cursor: u64,
    /// Whether the line the current frame belongs to was admitted: the pieces of a line
    /// longer than the frame cap follow its first piece (the one with the timestamp),
    /// and whatever they start with is output, not a timestamp.
    admitted: bool,
    /// podman's time of the line the current frame belongs to.
    stamp: Option<i64>,
}

impl Admission {
    /// The payload to write (without its timestamp), or `None` for an old line.
    fn admit(&mut self, cursor: &mut LogCursor, frame: &Frame) -> Option<Bytes> {
        if frame.continues {
            return self.admitted.then(|| frame.payload.clone());
        }
        let (stamp, payload) = split_timestamp(&frame.payload);
        self.stamp = stamp;
        self.admitted = stamp.map_or(true, |stamp| cursor.admit(stamp, &mut self.at_cursor));
        self.admitted.then_some(payload)
    }
}

/// An RFC 3339 time as unix nanoseconds.
fn parse_stamp(time: &[u8]) -> Option<i64> {
    std::str::from_utf8(time)
        .ok()
        .and_then(parse_time)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
}

/// `<RFC 3339 time> <payload>` → (time in unix nanos, payload). Payloads without a
/// readable time are passed on whole.
fn split_timestamp(payload: &Bytes) -> (Option<i64>, Bytes) {
    let Some(space) = payload.iter().position(|b| *b == b' ') else {
        return (None, payload.clone());
    };
    match parse_stamp(&payload[..space]) {
        Some(stamp) => (Some(stamp), payload.slice(space + 1..)),
        None => (None, payload.clone()),
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
    fn pieces_of_a_long_line_are_output_not_timestamps() {
        let piece = |payload: &'static [u8], continues: bool| Frame {
            stream: StreamKind::Stderr,
            payload: Bytes::from_static(payload),
            continues,
        };
        let mut cursor = LogCursor::at(UNIX_EPOCH + Duration::from_secs(100));
        let mut admission = Admission::default();
        // A new line in its pieces: the later ones pass whole, even when they start with
        // something that reads as a (future) time.
        let first = piece(b"1970-01-01T00:01:41Z aaaa", false);
        assert_eq!(
            admission.admit(&mut cursor, &first),
            Some(Bytes::from_static(b"aaaa"))
        );
        let spoof = piece(b"2999-01-01T00:00:00Z bbbb", true);
        assert_eq!(
            admission.admit(&mut cursor, &spoof),
            Some(spoof.payload.clone())
        );
        assert_eq!(
            cursor.unix_nanos,
            101 * SEC,
            "the cursor stays at the line's stamp"
        );
        // An old line is dropped with all its pieces.
        let old = piece(b"1970-01-01T00:00:50Z old", false);
        assert_eq!(admission.admit(&mut cursor, &old), None);
        assert_eq!(admission.admit(&mut cursor, &piece(b"more", true)), None);
        let next = piece(b"1970-01-01T00:01:42Z next\n", false);
        assert_eq!(
            admission.admit(&mut cursor, &next),
            Some(Bytes::from_static(b"next\n"))
        );
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
}

//! Tailing a container's k8s-file log from disk. conmon writes one record per line:
//! `<RFC 3339 time> <stdout|stderr> <F|P> <text>`, where `P` marks part of a line that
//! the next record continues. Reading the file directly runs many times faster than the
//! logs API, whose per-line serialisation bounds forwarding far below `podman logs`.

use std::collections::VecDeque;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::file_events::{FileEvents, FileWatch};
use super::journal::{self, JournalStream};
use super::{exit_known, parse_stamp, ExitState, LogError, Output, StreamKind};

const READ_CHUNK: usize = 128 * 1024;
/// Without file events (inotify unavailable), checks for growth at the end of the file
/// back off from the first wait to the last while nothing arrives; a check is one fstat.
const FIRST_POLL: Duration = Duration::from_millis(10);
const MAX_POLL: Duration = Duration::from_millis(500);
/// With file events, polls are only a safety net (an overflowed event queue).
const WATCHED_POLL: Duration = Duration::from_secs(5);
/// After the exit the file is read once more after this pause, for output conmon was
/// still writing.
const SETTLE: Duration = Duration::from_millis(100);
/// A "record" longer than this without a newline is not conmon's: it is passed on as is
/// rather than buffered without bound.
const MAX_RECORD: usize = 1024 * 1024;

/// conmon's RFC 3339 stamps as unix nanoseconds. Consecutive records nearly always share
/// their second, so that part (and the zone) is parsed once and only the fraction per
/// record: a full parse per record would bound forwarding of short lines below what
/// conmon writes.
#[derive(Debug, Default)]
struct StampCache {
    /// `YYYY-MM-DDTHH:MM:SS` of the last full parse.
    second: Vec<u8>,
    /// Its zone (`Z`, `+00:00`).
    zone: Vec<u8>,
    /// Unix nanoseconds of that second in that zone.
    base: i64,
}

/// Length of `YYYY-MM-DDTHH:MM:SS`.
const SECOND_LEN: usize = 19;

impl StampCache {
    fn nanos(&mut self, time: &[u8]) -> Option<i64> {
        let second = time.get(..SECOND_LEN)?;
        let rest = &time[SECOND_LEN..];
        let (fraction, zone) = match rest.strip_prefix(b".") {
            Some(after_dot) => {
                let digits = after_dot.iter().take_while(|b| b.is_ascii_digit()).count();
                (&after_dot[..digits], &after_dot[digits..])
            }
            None => (&rest[..0], rest),
        };
        if fraction.len() > 9 || (rest.first() == Some(&b'.') && fraction.is_empty()) {
            return parse_stamp(time);
        }
        let fraction_nanos = fraction
            .iter()
            .fold(0i64, |n, d| n * 10 + i64::from(d - b'0'))
            * 10i64.pow(9 - fraction.len() as u32);
        if second == self.second.as_slice() && zone == self.zone.as_slice() {
            return Some(self.base + fraction_nanos);
        }
        let full = parse_stamp(time)?;
        self.second.clear();
        self.second.extend_from_slice(second);
        self.zone.clear();
        self.zone.extend_from_slice(zone);
        self.base = full - fraction_nanos;
        Some(full)
    }
}

/// One parsed record.
#[derive(Debug, PartialEq, Eq)]
struct Record<'a> {
    stamp: Option<i64>,
    stream: StreamKind,
    text: &'a [u8],
    /// The record ends a line (`F`): a newline follows its text.
    full: bool,
}

impl<'a> Record<'a> {
    /// A record from one line (without its newline). Lines that are not records are
    /// passed on whole, as stdout, rather than dropped.
    fn parse(line: &'a [u8], stamps: &mut StampCache) -> Record<'a> {
        let raw = Record {
            stamp: None,
            stream: StreamKind::Stdout,
            text: line,
            full: true,
        };
        let mut fields = line.splitn(4, |b| *b == b' ');
        let (Some(time), Some(stream), Some(tag)) = (fields.next(), fields.next(), fields.next())
        else {
            return raw;
        };
        let stream = match stream {
            b"stdout" => StreamKind::Stdout,
            b"stderr" => StreamKind::Stderr,
            _ => return raw,
        };
        let full = match tag {
            b"F" => true,
            b"P" => false,
            _ => return raw,
        };
        let Some(stamp) = stamps.nanos(time) else {
            return raw;
        };
        Record {
            stamp: Some(stamp),
            stream,
            text: fields.next().unwrap_or_default(),
            full,
        }
    }
}

/// Forwards the log at `path` from the output's cursor until the container has exited
/// and the file is read to its end.
pub(super) async fn tail(
    path: &Path,
    output: &mut Output,
    mut exited: watch::Receiver<ExitState>,
    events: Option<&FileEvents>,
) -> Result<(), LogError> {
    let source_error = |e: std::io::Error| LogError::Source {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    // Watched before the first read: a write after that read wakes the tail.
    let watch_file = || events.and_then(|e| e.watch(path).ok());
    let mut watch = watch_file();
    let mut log = LogFile::open(path).map_err(source_error)?;
    let mut rotations = Rotations::new(&log).map_err(source_error)?;
    let mut pending = Vec::new();
    let mut at_cursor = 0;
    let mut stamps = StampCache::default();
    let mut poll = FIRST_POLL;
    let mut settled = false;
    let cancel = output.cancel.clone();
    loop {
        // Taken before the read: the exit counts only once a read after it found the end.
        let exited_before = exit_known(&exited);
        let read = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            r = log.read_more() => r.map_err(source_error)?,
        };
        if read > 0 {
            pending.extend_from_slice(log.last_read());
            if !forward_records(&mut pending, output, &mut at_cursor, &mut stamps).await? {
                return Ok(());
            }
            // While behind (a slow FIFO reader), conmon may start the file over more
            // than once; each new file is opened as soon as it appears, so none is
            // replaced before it was read.
            rotations.check(path).map_err(source_error)?;
            poll = FIRST_POLL;
            settled = false;
            continue;
        }
        rotations.check(path).map_err(source_error)?;
        if let Some(next) = rotations.next() {
            log = next;
            watch = watch_file();
            continue;
        }
        if exited_before || removed_with_its_container(path, &log) {
            if settled {
                return Ok(());
            }
            settled = true;
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = tokio::time::sleep(SETTLE) => {}
            }
            continue;
        }
        if poll == MAX_POLL || watch.is_some() {
            // Idle: hand the buffers back until output comes again.
            log.release_buffer();
            pending.shrink_to_fit();
        }
        let wait = if watch.is_some() { WATCHED_POLL } else { poll };
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = exited.changed() => {}
            _ = changed(watch.as_ref()) => {}
            _ = tokio::time::sleep(wait) => {}
        }
        poll = (poll * 2).min(MAX_POLL);
    }
}

/// Returns once the watched file changed; never without a watch.
async fn changed(watch: Option<&FileWatch>) {
    match watch {
        Some(watch) => watch.changed().await,
        None => std::future::pending().await,
    }
}

/// The log was deleted with its container: its path is gone and the open file has no
/// name left. (A rotation replaces the file under the same path, so the path is there.)
/// The tail then ends even if no exit is ever signalled: podman 4.3's wait can miss a
/// container that is force-removed while it is waited on.
fn removed_with_its_container(path: &Path, log: &LogFile) -> bool {
    matches!(std::fs::symlink_metadata(path), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
        && log.file.metadata().is_ok_and(|m| m.nlink() == 0)
}

/// The open log and how far it has been read.
struct LogFile {
    file: Arc<std::fs::File>,
    offset: u64,
    buf: Vec<u8>,
    filled: usize,
}

impl LogFile {
    fn open(path: &Path) -> std::io::Result<Self> {
        Ok(LogFile {
            file: Arc::new(std::fs::File::open(path)?),
            offset: 0,
            buf: Vec::new(),
            filled: 0,
        })
    }

    /// Reads the next chunk (off the async threads: disks can be slow); 0 at the end.
    async fn read_more(&mut self) -> std::io::Result<usize> {
        if !self.has_more()? {
            self.filled = 0;
            return Ok(0);
        }
        let (file, offset) = (self.file.clone(), self.offset);
        let mut buf = std::mem::take(&mut self.buf);
        let (buf, read) = tokio::task::spawn_blocking(move || {
            buf.resize(READ_CHUNK, 0);
            let read = file.read_at(&mut buf, offset);
            (buf, read)
        })
        .await
        .map_err(std::io::Error::other)?;
        self.buf = buf;
        self.filled = read?;
        self.offset += self.filled as u64;
        Ok(self.filled)
    }

    fn last_read(&self) -> &[u8] {
        &self.buf[..self.filled]
    }

    /// One fstat: whether the file holds more than was read. A file that shrank was
    /// truncated: reading starts over at its beginning.
    fn has_more(&mut self) -> std::io::Result<bool> {
        let len = self.file.metadata()?.len();
        if len < self.offset {
            self.offset = 0;
        }
        Ok(len > self.offset)
    }

    fn release_buffer(&mut self) {
        self.buf = Vec::new();
        self.filled = 0;
    }
}

/// Files conmon started at the log's path after the one being read (it writes a new file
/// and renames it over the old one when the log reaches its size bound), opened as soon
/// as they are seen, oldest first.
struct Rotations {
    /// Identity of the newest file opened at the path.
    newest: (u64, u64),
    queued: VecDeque<LogFile>,
}

/// Files held open ahead of the reader (160 MiB of backlog at the default bound); past
/// this, the oldest one waiting is dropped: the reader is so far behind that podman's
/// bound, not the reader, decides what is kept.
const MAX_QUEUED: usize = 16;

impl Rotations {
    fn new(first: &LogFile) -> std::io::Result<Self> {
        Ok(Rotations {
            newest: identity(&first.file.metadata()?),
            queued: VecDeque::new(),
        })
    }

    /// One stat of `path`: opens the file there when it is a new one.
    fn check(&mut self, path: &Path) -> std::io::Result<()> {
        match std::fs::metadata(path) {
            Ok(at_path) if identity(&at_path) != self.newest => {
                let file = LogFile::open(path)?;
                // What was opened, which may already be newer than what was stat'ed.
                self.newest = identity(&file.file.metadata()?);
                if self.queued.len() == MAX_QUEUED {
                    self.queued.pop_front();
                }
                self.queued.push_back(file);
                Ok(())
            }
            // Removed with its container: nothing more will come.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
            Ok(_) => Ok(()),
        }
    }

    /// The next file to read once the current one is read to its end.
    fn next(&mut self) -> Option<LogFile> {
        self.queued.pop_front()
    }
}

fn identity(meta: &std::fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

/// Writes every complete record in `pending` and drops it from there; `Ok(false)` when
/// cancelled first. Records of one read are batched per stream: one write each.
async fn forward_records(
    pending: &mut Vec<u8>,
    output: &mut Output,
    at_cursor: &mut u64,
    stamps: &mut StampCache,
) -> Result<bool, LogError> {
    let mut stdout = Vec::with_capacity(pending.len());
    let mut stderr = Vec::new();
    // Records go to the journal as conmon wrote them, in file order: that order is the
    // only record of how the two streams interleaved.
    let keep_journal = !output.journal.is_discard();
    let mut records = Vec::new();
    let mut consumed = 0;
    while let Some(end) = memchr::memchr(b'\n', &pending[consumed..]) {
        let raw = &pending[consumed..consumed + end + 1];
        let record = Record::parse(&raw[..end], stamps);
        consumed += end + 1;
        if let Some(stamp) = record.stamp {
            if !output.cursor.admit(stamp, at_cursor) {
                continue;
            }
        }
        if keep_journal {
            match record.stamp {
                Some(_) => records.extend_from_slice(raw),
                None => journal::push_record(
                    &mut records,
                    journal::now_nanos(),
                    record.stream.into(),
                    record.text,
                    true,
                ),
            }
        }
        let batch = match record.stream {
            StreamKind::Stderr => &mut stderr,
            StreamKind::Stdout | StreamKind::Stdin => &mut stdout,
        };
        batch.extend_from_slice(record.text);
        if record.full {
            batch.push(b'\n');
        }
    }
    if consumed == 0 && pending.len() > MAX_RECORD {
        stdout.extend_from_slice(pending);
        if keep_journal {
            let now = journal::now_nanos();
            journal::push_output(&mut records, now, JournalStream::Stdout, pending);
        }
        consumed = pending.len();
    }
    pending.drain(..consumed);
    if !output.write(StreamKind::Stdout, &stdout).await?
        || !output.write(StreamKind::Stderr, &stderr).await?
        || !output.write_journal(&records).await?
    {
        return Ok(false);
    }
    output.publish();
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: the tail waited for an exit signal that podman 4.3 can fail to give
    /// when the container is force-removed while waited on; a removed log ends it.
    #[tokio::test]
    async fn a_log_removed_with_its_container_ends_the_tail_without_an_exit_signal() {
        use super::super::{LogCursor, Sink, SinkKind};
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("ctr.log");
        std::fs::write(
            &log,
            "2024-01-01T00:00:01.000000000+00:00 stdout F one\n\
             2024-01-01T00:00:02.000000000+00:00 stderr F two\n",
        )
        .expect("write log");
        let sink = |name: &str| {
            Sink::open(dir.path(), &dir.path().join(name), SinkKind::File, None).expect("sink")
        };
        let (published, _) = watch::channel(LogCursor::at(std::time::UNIX_EPOCH));
        let mut output = Output {
            stdout: sink("out"),
            stderr: sink("err"),
            journal: Sink::discard(),
            cursor: LogCursor::at(std::time::UNIX_EPOCH),
            published,
            position: None,
            cancel: tokio_util::sync::CancellationToken::new(),
        };
        // Never signalled, never dropped.
        let (_exit, exited) = watch::channel(ExitState::Running);
        let tail_path = log.clone();
        let tail = tokio::spawn(async move {
            let result = tail(&tail_path, &mut output, exited, None).await;
            (result, output)
        });
        // The tail reads what is there, then podman removes the file with the container.
        while std::fs::read(dir.path().join("err"))
            .unwrap_or_default()
            .is_empty()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        std::fs::remove_file(&log).expect("remove log");
        let (result, _output) = tokio::time::timeout(Duration::from_secs(60), tail)
            .await
            .expect("the tail ends once its log is gone (hang guard, not a timing check)")
            .expect("tail task");
        result.expect("clean end");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("out")).unwrap(),
            "one\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("err")).unwrap(),
            "two\n"
        );
    }

    #[test]
    fn cached_stamps_equal_full_parses() {
        let mut cache = StampCache::default();
        for stamp in [
            "2024-01-01T00:00:01.500000000+00:00",
            "2024-01-01T00:00:01.5+00:00",
            "2024-01-01T00:00:01.000000001+00:00",
            "2024-01-01T00:00:01+00:00",
            "2024-01-01T00:00:01.25+01:00",
            "2024-01-01T00:00:02.999999999Z",
            "2024-01-01T00:00:02.1Z",
            "2024-01-01T00:00:02.Z",
            "2024-01-01T00:00:02.1234567891Z",
            "not a time at all, no",
        ] {
            assert_eq!(
                cache.nanos(stamp.as_bytes()),
                parse_stamp(stamp.as_bytes()),
                "{stamp}"
            );
        }
    }

    #[test]
    fn records_parse() {
        let r = Record::parse(
            b"2024-01-01T00:00:01.500000000+00:00 stderr F oops: it broke",
            &mut StampCache::default(),
        );
        assert_eq!(
            r,
            Record {
                stamp: Some(1_704_067_201_500_000_000),
                stream: StreamKind::Stderr,
                text: b"oops: it broke",
                full: true,
            }
        );
        let r = Record::parse(
            b"2024-01-01T00:00:01+01:00 stdout P part",
            &mut StampCache::default(),
        );
        assert_eq!(r.stamp, Some(1_704_063_601_000_000_000));
        assert_eq!(
            (r.stream, r.text, r.full),
            (StreamKind::Stdout, &b"part"[..], false)
        );
        // An empty line: nothing after the tag.
        let r = Record::parse(b"2024-01-01T00:00:01Z stdout F", &mut StampCache::default());
        assert_eq!((r.text, r.full), (&b""[..], true));
    }

    #[test]
    fn lines_that_are_not_records_pass_whole() {
        for line in [
            &b"just text"[..],
            b"2024-01-01T00:00:01Z stdin F x",
            b"2024-01-01T00:00:01Z stdout X x",
            b"yesterday stdout F x",
        ] {
            let r = Record::parse(line, &mut StampCache::default());
            assert_eq!(
                (r.stamp, r.stream, r.text, r.full),
                (None, StreamKind::Stdout, line, true),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }
}

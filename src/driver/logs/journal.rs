//! The combined log ("journal"): both streams of a task in one file, in the order they
//! were written, each record stamped with the time podman recorded for it. The separate
//! stdout/stderr sinks cannot say which line came first or when, so an orchestrator that
//! shows interleaved or timestamped output (the runner's `logs`) asks for this file too.
//!
//! The records are podman's own k8s-file format, so records tailed from conmon's log are
//! copied as they are (no re-formatting per line on the fast path):
//! `<RFC 3339 time> <stdout|stderr> <F|P> <text>\n`, where `P` marks a piece of a line
//! that the next record of the same stream continues.

use std::time::{SystemTime, UNIX_EPOCH};

use super::parse_stamp;
use crate::driver::podman::StreamKind;

/// Which stream a line was written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalStream {
    Stdout,
    Stderr,
}

impl JournalStream {
    fn tag(self) -> &'static [u8] {
        match self {
            JournalStream::Stdout => b"stdout",
            JournalStream::Stderr => b"stderr",
        }
    }

    fn index(self) -> usize {
        match self {
            JournalStream::Stdout => 0,
            JournalStream::Stderr => 1,
        }
    }
}

impl From<StreamKind> for JournalStream {
    fn from(kind: StreamKind) -> Self {
        match kind {
            StreamKind::Stderr => JournalStream::Stderr,
            StreamKind::Stdout | StreamKind::Stdin => JournalStream::Stdout,
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`: fixed width (unlike Go's RFC3339Nano, which drops
/// trailing zeros), so timestamped output lines up in columns, as `docker logs -t` does.
pub fn format_stamp(unix_nanos: i64) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_nanos)) else {
        return "1970-01-01T00:00:00.000000000Z".to_string();
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond()
    )
}

/// Now, for output that came without podman's time.
pub fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
        .unwrap_or(0)
}

/// Appends one record. `text` must not contain a newline.
pub fn push_record(
    out: &mut Vec<u8>,
    unix_nanos: i64,
    stream: JournalStream,
    text: &[u8],
    full: bool,
) {
    out.extend_from_slice(format_stamp(unix_nanos).as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.tag());
    out.extend_from_slice(if full { b" F " } else { b" P " });
    out.extend_from_slice(text);
    out.push(b'\n');
}

/// Appends `data` as written to the stream: one full record per line, and a piece
/// record for what follows the last newline.
pub fn push_output(out: &mut Vec<u8>, unix_nanos: i64, stream: JournalStream, data: &[u8]) {
    let mut rest = data;
    while !rest.is_empty() {
        match memchr::memchr(b'\n', rest) {
            Some(nl) => {
                push_record(out, unix_nanos, stream, &rest[..nl], true);
                rest = &rest[nl + 1..];
            }
            None => {
                push_record(out, unix_nanos, stream, rest, false);
                rest = &[];
            }
        }
    }
}

/// One record of a journal line (without its newline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRecord<'a> {
    pub unix_nanos: i64,
    pub stream: JournalStream,
    pub text: &'a [u8],
    pub full: bool,
}

impl<'a> JournalRecord<'a> {
    /// `None` for a line that is not a record.
    pub fn parse(line: &'a [u8]) -> Option<Self> {
        let mut fields = line.splitn(4, |b| *b == b' ');
        let (time, stream, tag) = (fields.next()?, fields.next()?, fields.next()?);
        let stream = match stream {
            b"stdout" => JournalStream::Stdout,
            b"stderr" => JournalStream::Stderr,
            _ => return None,
        };
        let full = match tag {
            b"F" => true,
            b"P" => false,
            _ => return None,
        };
        Some(JournalRecord {
            unix_nanos: parse_stamp(time)?,
            stream,
            text: fields.next().unwrap_or_default(),
            full,
        })
    }
}

/// One line of output as the task wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalLine {
    /// When its first piece was written.
    pub unix_nanos: i64,
    pub stream: JournalStream,
    /// Without the newline.
    pub text: Vec<u8>,
    /// Whether a newline ended it (false: the output ended mid-line, or the line was cut
    /// at [`MAX_LINE`]).
    pub complete: bool,
}

/// A line longer than this is handed on in parts rather than held without bound.
pub const MAX_LINE: usize = 1024 * 1024;

/// Joins the pieces of each stream's lines while records are read in order.
#[derive(Debug, Default)]
pub struct LineAssembler {
    /// Per stream (stdout, stderr): the pieces of an unfinished line.
    pending: [Option<JournalLine>; 2],
    /// The last time seen: lines that are not records (a file the task wrote over)
    /// are kept, as stdout, at this time.
    last_nanos: i64,
}

impl LineAssembler {
    /// Takes one journal line (without its newline); returns the line it completes.
    pub fn push(&mut self, raw: &[u8]) -> Option<JournalLine> {
        let Some(record) = JournalRecord::parse(raw) else {
            return Some(JournalLine {
                unix_nanos: self.last_nanos,
                stream: JournalStream::Stdout,
                text: raw.to_vec(),
                complete: true,
            });
        };
        self.last_nanos = record.unix_nanos;
        let slot = &mut self.pending[record.stream.index()];
        let mut line = slot.take().unwrap_or(JournalLine {
            unix_nanos: record.unix_nanos,
            stream: record.stream,
            text: Vec::new(),
            complete: false,
        });
        line.text.extend_from_slice(record.text);
        if record.full {
            line.complete = true;
            return Some(line);
        }
        if line.text.len() >= MAX_LINE {
            return Some(line);
        }
        *slot = Some(line);
        None
    }

    /// The unfinished lines (the output ended mid-line), oldest first.
    pub fn finish(&mut self) -> Vec<JournalLine> {
        let mut rest: Vec<JournalLine> = self.pending.iter_mut().filter_map(Option::take).collect();
        rest.sort_by_key(|l| l.unix_nanos);
        rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1_000_000_000;

    fn assemble(journal: &[u8]) -> (Vec<JournalLine>, Vec<JournalLine>) {
        let mut lines = LineAssembler::default();
        let done = journal
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .filter_map(|l| lines.push(l))
            .collect();
        (done, lines.finish())
    }

    #[test]
    fn stamps_are_fixed_width_utc() {
        assert_eq!(format_stamp(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            format_stamp(1_704_067_201 * SEC + 5),
            "2024-01-01T00:00:01.000000005Z"
        );
        assert_eq!(
            parse_stamp(format_stamp(1_704_067_201 * SEC + SEC / 2).as_bytes()),
            Some(1_704_067_201 * SEC + SEC / 2)
        );
    }

    #[test]
    fn output_becomes_full_records_and_a_trailing_piece() {
        let mut out = Vec::new();
        push_output(&mut out, SEC, JournalStream::Stderr, b"one\ntwo\nthr");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "1970-01-01T00:00:01.000000000Z stderr F one\n\
             1970-01-01T00:00:01.000000000Z stderr F two\n\
             1970-01-01T00:00:01.000000000Z stderr P thr\n"
        );
        let mut out = Vec::new();
        push_output(&mut out, SEC, JournalStream::Stdout, b"\n");
        assert_eq!(out, b"1970-01-01T00:00:01.000000000Z stdout F \n");
    }

    #[test]
    fn records_parse_with_any_zone_and_text_with_spaces() {
        let r = JournalRecord::parse(b"2024-01-01T01:00:01.5+01:00 stderr F a b  c").unwrap();
        assert_eq!(r.unix_nanos, 1_704_067_201 * SEC + SEC / 2);
        assert_eq!(r.stream, JournalStream::Stderr);
        assert_eq!(r.text, b"a b  c");
        assert!(r.full);
        assert!(JournalRecord::parse(b"2024-01-01T00:00:01Z stdout X y").is_none());
        assert!(JournalRecord::parse(b"2024-01-01T00:00:01Z other F y").is_none());
        assert!(JournalRecord::parse(b"yesterday stdout F y").is_none());
    }

    #[test]
    fn pieces_join_per_stream_even_when_the_streams_interleave() {
        let journal = b"1970-01-01T00:00:01Z stdout P hel\n\
            1970-01-01T00:00:02Z stderr F oops\n\
            1970-01-01T00:00:03Z stdout F lo\n\
            1970-01-01T00:00:04Z stderr P no newline\n";
        let (done, rest) = assemble(journal);
        assert_eq!(
            done,
            vec![
                JournalLine {
                    unix_nanos: 2 * SEC,
                    stream: JournalStream::Stderr,
                    text: b"oops".to_vec(),
                    complete: true
                },
                JournalLine {
                    unix_nanos: SEC,
                    stream: JournalStream::Stdout,
                    text: b"hello".to_vec(),
                    complete: true
                },
            ]
        );
        assert_eq!(
            rest,
            vec![JournalLine {
                unix_nanos: 4 * SEC,
                stream: JournalStream::Stderr,
                text: b"no newline".to_vec(),
                complete: false
            }]
        );
    }

    #[test]
    fn lines_that_are_not_records_are_kept_as_stdout() {
        let (done, _) = assemble(b"1970-01-01T00:00:07Z stderr F x\nscribbled over\n");
        assert_eq!(done[1].text, b"scribbled over");
        assert_eq!(done[1].stream, JournalStream::Stdout);
        assert_eq!(done[1].unix_nanos, 7 * SEC);
    }

    #[test]
    fn endless_lines_are_handed_on_in_parts() {
        let mut lines = LineAssembler::default();
        let piece = vec![b'x'; MAX_LINE / 2];
        let mut record = b"1970-01-01T00:00:01Z stdout P ".to_vec();
        record.extend_from_slice(&piece);
        assert!(lines.push(&record).is_none());
        let part = lines.push(&record).expect("cut at the bound");
        assert_eq!(part.text.len(), MAX_LINE);
        assert!(!part.complete);
        assert!(lines.finish().is_empty());
    }

    #[test]
    fn written_output_reads_back_as_the_same_lines() {
        let mut out = Vec::new();
        push_output(&mut out, SEC, JournalStream::Stdout, b"a\nb");
        push_output(&mut out, 2 * SEC, JournalStream::Stderr, b"e\n");
        push_output(&mut out, 3 * SEC, JournalStream::Stdout, b"c\n");
        let (done, rest) = assemble(&out);
        let texts: Vec<&[u8]> = done.iter().map(|l| l.text.as_slice()).collect();
        assert_eq!(texts, vec![&b"a"[..], b"e", b"bc"]);
        assert_eq!(
            done[2].unix_nanos, SEC,
            "a line is stamped by its first piece"
        );
        assert!(rest.is_empty());
    }
}

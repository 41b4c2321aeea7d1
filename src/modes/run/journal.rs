//! Reading tasks' journals (`alloc/logs/<task>.journal.<index>`, written and rotated by
//! the core next to the stdout/stderr files) for `logs`: each task's lines in the order
//! they were written, the last N of them, one stream only, and several tasks merged by
//! time.
//!
//! The files are read as one stream across rotations, without following links the task
//! planted, and from the start again when the task replaced or truncated one
//! ([`RotatedReader`]).
//!
//! Everything here blocks on the disk: callers run it on a blocking thread.

use std::collections::VecDeque;
use std::path::Path;

use super::rotated::{Read, RotatedReader};
use crate::driver::logs::journal::MAX_LINE;
use crate::driver::logs::{JournalLine, JournalStream, LineAssembler};

/// Bytes read at a time: bounds what one read holds beyond the lines it completes.
const CHUNK: usize = 64 * 1024;

/// One task's journal, read from its start (or from its last lines, [`Self::tail`]).
pub struct JournalSource {
    files: RotatedReader,
    only: Option<JournalStream>,
    /// Bytes after the last newline read.
    partial: Vec<u8>,
    lines: LineAssembler,
    ready: VecDeque<JournalLine>,
    /// The journal can no longer be read; it yields nothing from then on.
    broken: bool,
    /// Why, until reported.
    failure: Option<String>,
}

impl JournalSource {
    /// The journal whose files are `<base>.<index>`, below the trusted directory `root`;
    /// `only` keeps one stream.
    pub fn new(root: &Path, base: &Path, only: Option<JournalStream>) -> Self {
        JournalSource {
            files: RotatedReader::new(root, base),
            only,
            partial: Vec::new(),
            lines: LineAssembler::default(),
            ready: VecDeque::new(),
            broken: false,
            failure: None,
        }
    }

    /// Why reading stopped, once (to be reported).
    pub fn take_failure(&mut self) -> Option<String> {
        self.failure.take()
    }

    /// Keeps only the last `n` lines written so far (the next ones are read as usual).
    /// With `finish`, an unfinished last line counts as a line (the output has ended).
    pub fn tail(&mut self, n: usize, finish: bool) {
        while self.read_chunk() {
            self.keep_last(n);
        }
        if finish {
            self.finish();
        }
        self.keep_last(n);
    }

    /// Hands on the unfinished lines: nothing more will be read.
    pub fn finish(&mut self) {
        for line in self.lines.finish() {
            self.accept(line);
        }
    }

    fn keep_last(&mut self, n: usize) {
        while self.ready.len() > n {
            self.ready.pop_front();
        }
    }

    /// The next line, reading on when none is ready; `None` at the end of what was written.
    fn peek(&mut self) -> Option<&JournalLine> {
        while self.ready.is_empty() {
            if !self.read_chunk() {
                break;
            }
        }
        self.ready.front()
    }

    fn accept(&mut self, line: JournalLine) {
        if self.only.map_or(true, |only| only == line.stream) {
            self.ready.push_back(line);
        }
    }

    /// Reads one chunk into lines; false at the end (or once failed).
    fn read_chunk(&mut self) -> bool {
        match self.try_read_chunk() {
            Ok(read) => read,
            Err(e) => {
                self.broken = true;
                self.failure = Some(e);
                false
            }
        }
    }

    fn try_read_chunk(&mut self) -> Result<bool, String> {
        if self.broken {
            return Ok(false);
        }
        let mut buf = vec![0u8; CHUNK];
        let read = match self.files.read(&mut buf)? {
            Read::Bytes(n) => n,
            Read::Restarted => {
                self.partial.clear();
                return Ok(true);
            }
            Read::End => return Ok(false),
        };
        buf.truncate(read);
        self.partial.extend_from_slice(&buf);
        let mut start = 0;
        while let Some(nl) = memchr::memchr(b'\n', &self.partial[start..]) {
            let line = self.lines.push(&self.partial[start..start + nl]);
            start += nl + 1;
            if let Some(line) = line {
                self.accept(line);
            }
        }
        self.partial.drain(..start);
        if self.partial.len() > MAX_LINE {
            // Not a record (the journal is writable from the task): kept as text, in parts,
            // rather than held without bound.
            let text = std::mem::take(&mut self.partial);
            if let Some(line) = self.lines.push(&text) {
                self.accept(line);
            }
        }
        Ok(true)
    }
}

/// Takes up to `max` lines from `sources`, oldest first; each source's own lines stay in
/// the order they were written, and lines of the same time keep the sources' order.
/// Returns each line with the index of its source.
pub fn merge(sources: &mut [JournalSource], max: usize) -> Vec<(usize, JournalLine)> {
    let mut out = Vec::new();
    // Sources found at their end are not asked again in this call: asking means another
    // walk to the file.
    let mut ended = vec![false; sources.len()];
    while out.len() < max {
        let mut oldest: Option<(usize, i64)> = None;
        for (i, source) in sources.iter_mut().enumerate() {
            if ended[i] {
                continue;
            }
            match source.peek() {
                Some(line) => {
                    if oldest.map_or(true, |(_, at)| line.unix_nanos < at) {
                        oldest = Some((i, line.unix_nanos));
                    }
                }
                None => ended[i] = true,
            }
        }
        let Some((i, _)) = oldest else {
            break;
        };
        if let Some(line) = sources[i].ready.pop_front() {
            out.push((i, line));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::logs::journal::push_output;
    use std::io::Write;
    use std::path::PathBuf;

    const SEC: i64 = 1_000_000_000;

    struct Dir {
        _tmp: tempfile::TempDir,
        root: PathBuf,
    }

    impl Dir {
        fn new() -> Self {
            let tmp = tempfile::tempdir().unwrap();
            let root = tmp.path().join("alloc");
            std::fs::create_dir_all(root.join("logs")).unwrap();
            Dir { _tmp: tmp, root }
        }

        fn base(&self, task: &str) -> PathBuf {
            self.root.join("logs").join(format!("{task}.journal"))
        }

        /// The journal's first file.
        fn path(&self, task: &str) -> PathBuf {
            self.file(task, 0)
        }

        fn file(&self, task: &str, index: u64) -> PathBuf {
            self.root
                .join("logs")
                .join(format!("{task}.journal.{index}"))
        }

        fn append(&self, task: &str, at: i64, stream: JournalStream, data: &str) {
            self.append_to(&self.path(task), at, stream, data);
        }

        fn append_to(&self, path: &Path, at: i64, stream: JournalStream, data: &str) {
            let mut records = Vec::new();
            push_output(&mut records, at * SEC, stream, data.as_bytes());
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap();
            file.write_all(&records).unwrap();
        }

        fn source(&self, task: &str, only: Option<JournalStream>) -> JournalSource {
            JournalSource::new(&self.root, &self.base(task), only)
        }
    }

    fn texts(lines: &[(usize, JournalLine)]) -> Vec<String> {
        lines
            .iter()
            .map(|(i, l)| format!("{i}:{}", String::from_utf8_lossy(&l.text)))
            .collect()
    }

    use JournalStream::{Stderr, Stdout};

    #[test]
    fn a_task_reads_in_written_order_and_tasks_merge_by_time() {
        let dir = Dir::new();
        dir.append("a", 1, Stdout, "a-out-1\n");
        dir.append("a", 3, Stderr, "a-err-3\n");
        dir.append("a", 2, Stdout, "a-out-2\n"); // written later, stamped earlier
        dir.append("b", 2, Stderr, "b-err-2\n");
        dir.append("b", 4, Stdout, "b-out-4\n");
        let mut sources = vec![dir.source("a", None), dir.source("b", None)];
        let lines = merge(&mut sources, usize::MAX);
        assert_eq!(
            texts(&lines),
            vec![
                "0:a-out-1",
                "1:b-err-2",
                "0:a-err-3",
                "0:a-out-2",
                "1:b-out-4"
            ]
        );
        assert_eq!(lines[1].1.stream, Stderr);
    }

    #[test]
    fn merging_in_batches_loses_nothing() {
        let dir = Dir::new();
        for i in 1..=10 {
            dir.append("a", i, Stdout, &format!("{i}\n"));
        }
        let mut sources = vec![dir.source("a", None)];
        let mut all = Vec::new();
        loop {
            let batch = merge(&mut sources, 3);
            if batch.is_empty() {
                break;
            }
            all.extend(batch);
        }
        let expected: Vec<String> = (1..=10).map(|i| format!("0:{i}")).collect();
        assert_eq!(texts(&all), expected);
    }

    #[test]
    fn tail_keeps_the_last_lines_of_the_chosen_stream() {
        let dir = Dir::new();
        for i in 0..5 {
            dir.append("a", i, Stdout, &format!("out-{i}\n"));
            dir.append("a", i, Stderr, &format!("err-{i}\n"));
        }
        dir.append("a", 9, Stderr, "unfinished");
        let mut sources = vec![dir.source("a", Some(Stderr))];
        sources[0].tail(2, true);
        assert_eq!(
            texts(&merge(&mut sources, usize::MAX)),
            vec!["0:err-4", "0:unfinished"]
        );
        let mut sources = vec![dir.source("a", Some(Stdout))];
        sources[0].tail(2, false);
        assert_eq!(
            texts(&merge(&mut sources, usize::MAX)),
            vec!["0:out-3", "0:out-4"]
        );
        let mut sources = vec![dir.source("a", None)];
        sources[0].tail(0, true);
        assert!(merge(&mut sources, usize::MAX).is_empty());
    }

    #[test]
    fn following_picks_up_appends_and_a_replaced_file() {
        let dir = Dir::new();
        let mut sources = vec![dir.source("a", None)];
        assert!(
            merge(&mut sources, usize::MAX).is_empty(),
            "not written yet"
        );
        dir.append("a", 1, Stdout, "one\ntw");
        assert_eq!(texts(&merge(&mut sources, usize::MAX)), vec!["0:one"]);
        dir.append("a", 2, Stdout, "o\n");
        assert_eq!(texts(&merge(&mut sources, usize::MAX)), vec!["0:two"]);
        // The task removed its journal; the next writer starts a new one.
        std::fs::remove_file(dir.path("a")).unwrap();
        dir.append("a", 3, Stderr, "three\n");
        assert_eq!(texts(&merge(&mut sources, usize::MAX)), vec!["0:three"]);
        // Truncated in place, then written again.
        std::fs::write(dir.path("a"), "").unwrap();
        dir.append("a", 4, Stderr, "four\n");
        assert_eq!(texts(&merge(&mut sources, usize::MAX)), vec!["0:four"]);
    }

    #[test]
    fn tail_and_follow_read_across_rotated_files() {
        let dir = Dir::new();
        // Three rotated files; the oldest was already deleted.
        for i in 0..6i64 {
            dir.append_to(
                &dir.file("a", 1 + i as u64 / 2),
                i,
                Stdout,
                &format!("line-{i}\n"),
            );
        }
        let mut sources = vec![dir.source("a", None)];
        sources[0].tail(3, false);
        assert_eq!(
            texts(&merge(&mut sources, usize::MAX)),
            vec!["0:line-3", "0:line-4", "0:line-5"]
        );
        // Followed on: the writer fills file 3 and starts 4 and 5 between two reads, and
        // deletes file 1 as the oldest; every line comes once, in order.
        dir.append_to(&dir.file("a", 3), 6, Stdout, "line-6\n");
        dir.append_to(&dir.file("a", 4), 7, Stderr, "line-7\n");
        dir.append_to(&dir.file("a", 5), 8, Stdout, "line-8\n");
        std::fs::remove_file(dir.file("a", 1)).unwrap();
        assert_eq!(
            texts(&merge(&mut sources, usize::MAX)),
            vec!["0:line-6", "0:line-7", "0:line-8"]
        );
        assert!(merge(&mut sources, usize::MAX).is_empty());
    }

    #[test]
    fn text_without_newlines_is_not_held_without_bound() {
        let dir = Dir::new();
        std::fs::write(dir.path("a"), vec![b'x'; MAX_LINE + CHUNK]).unwrap();
        let mut sources = vec![dir.source("a", None)];
        let lines = merge(&mut sources, usize::MAX);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].1.text.len(), MAX_LINE + CHUNK);
        assert!(sources[0].partial.is_empty());
    }

    #[test]
    fn a_link_in_place_of_the_journal_is_refused_not_followed() {
        let dir = Dir::new();
        let secret = dir.root.parent().unwrap().join("secret");
        std::fs::write(&secret, "1970-01-01T00:00:01Z stdout F secret\n").unwrap();
        std::os::unix::fs::symlink(&secret, dir.path("a")).unwrap();
        let mut sources = vec![dir.source("a", None)];
        assert!(merge(&mut sources, usize::MAX).is_empty());
        let failure = sources[0].take_failure().expect("reported");
        assert!(failure.contains("symbolic link"), "{failure}");
        assert!(sources[0].take_failure().is_none(), "reported once");
    }
}

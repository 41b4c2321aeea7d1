//! Job-file text and the mapping from byte offsets to `file:line:col`.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One file's text, kept so every error can point back into it.
#[derive(Debug, Clone)]
pub struct Source {
    inner: Arc<SourceInner>,
}

#[derive(Debug)]
struct SourceInner {
    path: PathBuf,
    text: String,
    line_starts: Vec<usize>,
}

impl Source {
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        let text = text.into();
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Source {
            inner: Arc::new(SourceInner {
                path: path.into(),
                text,
                line_starts,
            }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub fn text(&self) -> &str {
        &self.inner.text
    }

    /// The directory relative paths in this file resolve against.
    pub fn base_dir(&self) -> PathBuf {
        match self.inner.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// The text a span covers, or "" when the span is outside the file.
    pub fn snippet(&self, span: &Range<usize>) -> &str {
        self.inner.text.get(span.clone()).unwrap_or("")
    }

    pub fn location(&self, offset: usize) -> Location {
        let offset = offset.min(self.inner.text.len());
        let line_index = match self.inner.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let line_start = self.inner.line_starts[line_index];
        let column = self
            .inner
            .text
            .get(line_start..offset)
            .map_or(offset - line_start, |s| s.chars().count())
            + 1;
        Location {
            file: self.inner.path.clone(),
            line: line_index + 1,
            column,
        }
    }

    /// Where a span starts; the file's first character when the parser gave no span.
    pub fn locate(&self, span: Option<Range<usize>>) -> Location {
        self.location(span.map_or(0, |s| s.start))
    }
}

/// A position in a job file, shown as `file:line:col` (both one-based).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_map_to_one_based_lines_and_columns() {
        let src = Source::new("job.nomad", "ab\ncdé\n\nx");
        assert_eq!(src.location(0).to_string(), "job.nomad:1:1");
        assert_eq!(src.location(1).to_string(), "job.nomad:1:2");
        assert_eq!(src.location(3).to_string(), "job.nomad:2:1");
        // columns count characters, not bytes
        assert_eq!(src.location(7).to_string(), "job.nomad:2:4");
        assert_eq!(src.location(8).to_string(), "job.nomad:3:1");
        assert_eq!(src.location(9).to_string(), "job.nomad:4:1");
        assert_eq!(src.location(999).to_string(), "job.nomad:4:2");
    }
}

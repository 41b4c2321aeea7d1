//! When the HCL parser fails, finds the delimiter the author most likely left open, so the
//! error points at the opening brace or quote rather than at the end of the file where the
//! parser noticed.

/// A delimiter left open, by the byte offset of its opening.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unclosed {
    /// `{`, `[` or `(`.
    Bracket { at: usize, open: char },
    /// A `"` string that ends with its line (quoted strings cannot span lines).
    Quote { at: usize },
    /// `<<EOF` with no closing `EOF` line.
    Heredoc { at: usize, marker: String },
    /// `/*` with no `*/`.
    Comment { at: usize },
}

impl Unclosed {
    pub fn offset(&self) -> usize {
        match self {
            Unclosed::Bracket { at, .. }
            | Unclosed::Quote { at }
            | Unclosed::Heredoc { at, .. }
            | Unclosed::Comment { at } => *at,
        }
    }

    /// The error message, naming the block a brace opens (`task "web"`) from its line.
    pub fn message(&self, text: &str) -> String {
        match self {
            Unclosed::Bracket { at, open: '{' } => {
                let line_start = text[..*at].rfind('\n').map_or(0, |i| i + 1);
                let head = text[line_start..*at].trim();
                let what = if head.is_empty() {
                    "the block".to_string()
                } else {
                    format!("the block `{head}`")
                };
                format!("Unclosed block: {what} opened here has no closing `}}`")
            }
            Unclosed::Bracket { open, .. } => {
                let close = if *open == '[' { ']' } else { ')' };
                format!("Unclosed `{open}`: opened here, never closed with `{close}`")
            }
            Unclosed::Quote { .. } => {
                "Unterminated string: the string opened here has no closing `\"` on its line"
                    .to_string()
            }
            Unclosed::Heredoc { marker, .. } => format!(
                "Unterminated heredoc: no line holding only {marker:?} ends the text opened here"
            ),
            Unclosed::Comment { .. } => {
                "Unterminated comment: the `/*` here has no closing `*/`".to_string()
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Frame {
    Bracket(usize, u8),
    Str(usize),
    /// `${` or `%{` inside a string: code until its `}`.
    Interp(usize),
}

/// The delimiter left open, if the text has one: the first unterminated string or comment,
/// else the first brace whose `}` sits at another indentation than its opening line (the
/// braces after it then pair up one level off), else the innermost one left at the end.
/// `None` when every delimiter closes, or a closer has no opener (the parser's own message
/// is right about those).
pub fn find_unclosed(text: &str) -> Option<Unclosed> {
    let bytes = text.as_bytes();
    let mut stack: Vec<Frame> = Vec::new();
    let mut suspect: Option<usize> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        if let Some(Frame::Str(at)) = stack.last().copied() {
            match b {
                b'\\' => i += 1,
                b'"' => {
                    stack.pop();
                }
                b'\n' => return Some(Unclosed::Quote { at }),
                b'$' | b'%' if next == Some(b'{') => {
                    stack.push(Frame::Interp(i));
                    i += 1;
                }
                // `$${` and `%%{` are literal.
                b'$' | b'%' if next == Some(b) && bytes.get(i + 2) == Some(&b'{') => i += 2,
                _ => {}
            }
            i += 1;
            continue;
        }
        match b {
            b'#' => i = line_end(bytes, i),
            b'/' if next == Some(b'/') => i = line_end(bytes, i),
            b'/' if next == Some(b'*') => match text[i + 2..].find("*/") {
                Some(end) => i += 2 + end + 1,
                None => return Some(Unclosed::Comment { at: i }),
            },
            b'"' => stack.push(Frame::Str(i)),
            b'<' if next == Some(b'<') => {
                if let Some((marker, body_start)) = heredoc_marker(text, i) {
                    match heredoc_end(text, body_start, &marker) {
                        Some(end) => i = end,
                        None => return Some(Unclosed::Heredoc { at: i, marker }),
                    }
                    continue;
                }
            }
            b'{' | b'[' | b'(' => stack.push(Frame::Bracket(i, b)),
            b'}' | b']' | b')' => {
                let open = match b {
                    b'}' => b'{',
                    b']' => b'[',
                    _ => b'(',
                };
                match stack.pop() {
                    Some(Frame::Bracket(at, o)) if o == open => {
                        if open == b'{'
                            && suspect.is_none()
                            && first_on_line(bytes, i)
                            && indent(bytes, i) != indent(bytes, at)
                        {
                            suspect = Some(at);
                        }
                    }
                    Some(Frame::Interp(_)) if b == b'}' => {}
                    _ => return None,
                }
            }
            _ => {}
        }
        i += 1;
    }
    let innermost = stack.last().copied()?;
    let at = suspect.unwrap_or(match innermost {
        Frame::Bracket(at, _) | Frame::Str(at) | Frame::Interp(at) => at,
    });
    match bytes[at] {
        b'"' => Some(Unclosed::Quote { at }),
        open @ (b'{' | b'[' | b'(') => Some(Unclosed::Bracket {
            at,
            open: open as char,
        }),
        // An interpolation left open: point at its `${`.
        _ => Some(Unclosed::Bracket { at, open: '{' }),
    }
}

/// Offset of the newline ending the line at `i` (or the end).
fn line_end(bytes: &[u8], i: usize) -> usize {
    bytes[i..]
        .iter()
        .position(|b| *b == b'\n')
        .map_or(bytes.len(), |p| i + p)
}

fn line_start(bytes: &[u8], i: usize) -> usize {
    bytes[..i]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |p| p + 1)
}

/// Leading spaces and tabs of the line holding `i`.
fn indent(bytes: &[u8], i: usize) -> usize {
    bytes[line_start(bytes, i)..]
        .iter()
        .take_while(|b| **b == b' ' || **b == b'\t')
        .count()
}

fn first_on_line(bytes: &[u8], i: usize) -> bool {
    bytes[line_start(bytes, i)..i]
        .iter()
        .all(|b| *b == b' ' || *b == b'\t')
}

/// `<<MARKER` or `<<-MARKER` at `i`, then the end of the line: (marker, offset after it).
fn heredoc_marker(text: &str, i: usize) -> Option<(String, usize)> {
    let rest = &text[i + 2..];
    let rest_trimmed = rest.strip_prefix('-').unwrap_or(rest);
    let skipped = rest.len() - rest_trimmed.len();
    let len = rest_trimmed
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest_trimmed.len());
    if len == 0 || !rest_trimmed[len..].starts_with('\n') {
        return None;
    }
    Some((rest_trimmed[..len].to_string(), i + 2 + skipped + len + 1))
}

/// Offset just past the line that holds only `marker` (after indentation), from `from`.
fn heredoc_end(text: &str, from: usize, marker: &str) -> Option<usize> {
    let mut offset = from;
    for line in text[from..].split_inclusive('\n') {
        offset += line.len();
        if line.trim() == marker {
            return Some(offset);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_of(text: &str, found: &Unclosed) -> usize {
        text[..found.offset()].matches('\n').count() + 1
    }

    #[test]
    fn a_task_missing_its_brace_is_named_not_the_job() {
        let text = "job \"j\" {\n  group \"g\" {\n    task \"t\" {\n      config {\n        image = \"x\"\n      }\n  }\n}\n";
        let found = find_unclosed(text).expect("unclosed");
        assert_eq!(line_of(text, &found), 3);
        assert_eq!(
            found.message(text),
            "Unclosed block: the block `task \"t\"` opened here has no closing `}`"
        );
    }

    #[test]
    fn the_last_block_missing_its_brace_is_the_innermost_left() {
        let text = "job \"j\" {\n  group \"g\" {\n    count = 1\n  }\n";
        let found = find_unclosed(text).expect("unclosed");
        assert_eq!(line_of(text, &found), 1);
    }

    #[test]
    fn an_unterminated_string_points_at_its_quote() {
        let text = "job \"j\" {\n  group \"g\" {\n    meta { a = \"b }\n  }\n}\n";
        let found = find_unclosed(text).expect("unclosed");
        assert_eq!(
            found,
            Unclosed::Quote {
                at: text.find("\"b").unwrap()
            }
        );
    }

    #[test]
    fn strings_comments_heredocs_and_interpolations_hide_their_delimiters() {
        let text = concat!(
            "# a { in a comment\n",
            "// another }\n",
            "/* and { here */\n",
            "job \"j\" {\n",
            "  meta { a = \"{ ${var.x} $${y} %{ if true }z%{ endif }\" }\n",
            "  template {\n",
            "    data = <<-EOT\n",
            "    { unbalanced \" in a heredoc\n",
            "    EOT\n",
            "  }\n",
            "  args = [\"a\", (\"b\")]\n",
            "}\n",
        );
        assert_eq!(find_unclosed(text), None);
    }

    #[test]
    fn open_heredocs_and_comments_are_found() {
        let text = "job \"j\" {\n  x = <<EOT\n  text\n}\n";
        assert!(matches!(
            find_unclosed(text),
            Some(Unclosed::Heredoc { ref marker, .. }) if marker == "EOT"
        ));
        let text = "job \"j\" {\n/* never closed\n}\n";
        assert!(matches!(
            find_unclosed(text),
            Some(Unclosed::Comment { .. })
        ));
    }

    #[test]
    fn a_stray_closer_is_left_to_the_parser() {
        assert_eq!(find_unclosed("job \"j\" {\n}\n}\n"), None);
    }
}

//! Terminal output: every task's log lines and status events, multiplexed with a
//! `group.task |` prefix (colored per task on a TTY unless NO_COLOR is set), written by one
//! printer task so lines never interleave mid-line.

use std::collections::BTreeMap;
use std::io::IsTerminal;

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// Who a line is about: a task of an allocation, or the runner itself.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Who {
    pub group: String,
    /// Shown only when the group has more than one allocation.
    pub index: Option<u32>,
    pub task: String,
}

impl Who {
    pub fn label(&self) -> String {
        match self.index {
            Some(i) => format!("{}[{i}].{}", self.group, self.task),
            None => format!("{}.{}", self.group, self.task),
        }
    }
}

#[derive(Debug)]
enum Line {
    Output {
        who: Who,
        stream: Stream,
        text: String,
    },
    Status {
        who: Option<Who>,
        text: String,
    },
    /// A line that replaces itself (image pull progress); terminal only.
    Progress {
        who: Who,
        text: String,
    },
    Flush(tokio::sync::oneshot::Sender<()>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Sends lines to the printer; cheap to clone.
#[derive(Debug, Clone)]
pub struct Ui {
    tx: mpsc::UnboundedSender<Line>,
}

impl Ui {
    /// Starts the printer. `width` is the widest label, for alignment.
    pub fn start(color: bool, width: usize) -> (Ui, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = tokio::spawn(print_lines(rx, color, width));
        (Ui { tx }, handle)
    }

    pub fn output(&self, who: &Who, stream: Stream, text: String) {
        let _ = self.tx.send(Line::Output {
            who: who.clone(),
            stream,
            text,
        });
    }

    /// A task event (started, exited, restarting ...).
    pub fn status(&self, who: &Who, text: impl Into<String>) {
        let _ = self.tx.send(Line::Status {
            who: Some(who.clone()),
            text: text.into(),
        });
    }

    /// Pull progress, shown as one live line on a terminal and dropped elsewhere.
    pub fn progress(&self, who: &Who, text: impl Into<String>) {
        let _ = self.tx.send(Line::Progress {
            who: who.clone(),
            text: text.into(),
        });
    }

    /// A runner-level message.
    pub fn note(&self, text: impl Into<String>) {
        let _ = self.tx.send(Line::Status {
            who: None,
            text: text.into(),
        });
    }

    /// Waits until everything sent so far is written.
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.tx.send(Line::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// Whether to color: a terminal that is not `TERM=dumb`, no NO_COLOR, and not switched off
/// on the command line.
pub fn use_color(no_color_flag: bool) -> bool {
    color_wanted(
        no_color_flag,
        std::env::var_os("NO_COLOR").as_deref(),
        std::env::var_os("TERM").as_deref(),
        std::io::stdout().is_terminal(),
    )
}

fn color_wanted(
    no_color_flag: bool,
    no_color_env: Option<&std::ffi::OsStr>,
    term: Option<&std::ffi::OsStr>,
    terminal: bool,
) -> bool {
    !no_color_flag
        && no_color_env.map_or(true, |v| v.is_empty())
        && term.map_or(true, |t| t != "dumb")
        && terminal
}

const PALETTE: [&str; 6] = ["36", "33", "32", "35", "34", "91"];

async fn print_lines(mut rx: mpsc::UnboundedReceiver<Line>, color: bool, width: usize) {
    let mut out = tokio::io::stdout();
    let mut colors: BTreeMap<Who, &'static str> = BTreeMap::new();
    // Whether the cursor sits at the end of a live progress line, to be cleared first.
    let mut progress_shown = false;
    while let Some(line) = rx.recv().await {
        let text = match line {
            // Color is on only on a terminal: elsewhere progress lines would be noise.
            Line::Progress { .. } if !color => continue,
            Line::Progress { who, text } => {
                let label = format!("{:<width$} |", who.label());
                let _ = out
                    .write_all(format!("\r\x1b[2K\x1b[2m{label} {}\x1b[0m", text.trim()).as_bytes())
                    .await;
                let _ = out.flush().await;
                progress_shown = true;
                continue;
            }
            Line::Flush(done) => {
                let _ = out.flush().await;
                let _ = done.send(());
                continue;
            }
            Line::Output { who, stream, text } => {
                let next = PALETTE[colors.len() % PALETTE.len()];
                let c = *colors.entry(who.clone()).or_insert(next);
                let label = format!("{:<width$} |", who.label());
                let body = text.trim_end_matches(['\n', '\r']);
                match (color, stream) {
                    (true, Stream::Stderr) => {
                        format!("\x1b[{c}m{label}\x1b[0m \x1b[2m{body}\x1b[0m\n")
                    }
                    (true, Stream::Stdout) => format!("\x1b[{c}m{label}\x1b[0m {body}\n"),
                    (false, _) => format!("{label} {body}\n"),
                }
            }
            Line::Status { who, text } => {
                let label = who
                    .as_ref()
                    .map_or_else(|| "runner".to_string(), Who::label);
                let label = format!("{label:<width$} |");
                match (color, &who) {
                    (true, Some(who)) => {
                        let next = PALETTE[colors.len() % PALETTE.len()];
                        let c = *colors.entry(who.clone()).or_insert(next);
                        format!("\x1b[{c}m{label}\x1b[0m \x1b[1m==> {text}\x1b[0m\n")
                    }
                    (true, None) => format!("\x1b[1m{label} ==> {text}\x1b[0m\n"),
                    (false, _) => format!("{label} ==> {text}\n"),
                }
            }
        };
        let text = if std::mem::take(&mut progress_shown) {
            format!("\r\x1b[2K{text}")
        } else {
            text
        };
        // A closed stdout (e.g. a pipe whose reader left) must not stop the runner: the
        // error is remembered for the exit code and later output is dropped.
        if crate::modes::output::stdout_failed() {
            continue;
        }
        let written = match out.write_all(text.as_bytes()).await {
            Ok(()) => out.flush().await,
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            crate::modes::output::record_stdout_error(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn color_only_on_a_terminal_that_wants_it() {
        let os = |s: &'static str| Some(std::ffi::OsStr::new(s));
        assert!(color_wanted(false, None, os("xterm-256color"), true));
        assert!(
            color_wanted(false, os(""), None, true),
            "an empty NO_COLOR counts as unset"
        );
        assert!(!color_wanted(false, None, os("dumb"), true), "TERM=dumb");
        assert!(!color_wanted(false, os("1"), os("xterm"), true), "NO_COLOR");
        assert!(!color_wanted(true, None, os("xterm"), true), "--no-color");
        assert!(
            !color_wanted(false, None, os("xterm"), false),
            "not a terminal"
        );
    }

    #[test]
    fn labels_show_the_index_only_when_needed() {
        let who = Who {
            group: "app".into(),
            index: None,
            task: "server".into(),
        };
        assert_eq!(who.label(), "app.server");
        let who = Who {
            group: "app".into(),
            index: Some(1),
            task: "server".into(),
        };
        assert_eq!(who.label(), "app[1].server");
    }
}

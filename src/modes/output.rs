//! The command-line modes' terminal output, through one writer that reports errors instead
//! of panicking (Rust's `print!` panics when stdout is a closed pipe or a full disk).
//!
//! A failed write to stdout is remembered and later output is dropped; the command runs to
//! its end (a `run` or `stop` must not be cut short because a pager quit). The binary asks
//! [`finish`] for the exit code once the command returned: a closed pipe (`EPIPE`) exits
//! quietly with the command's code; any other write error (`> /dev/full`) is reported on
//! stderr and turns success into [`EXIT_OUTPUT`]. Errors writing to stderr are ignored:
//! there is nowhere left to report them.

use std::io::{self, Write};
use std::sync::Mutex;

/// Exit code when the command's output could not be written (not a closed pipe).
pub const EXIT_OUTPUT: i32 = 6;

static STDOUT_FAILURE: Mutex<Option<io::Error>> = Mutex::new(None);

/// Prints a line to stdout through [`write_stdout`].
#[macro_export]
macro_rules! outln {
    () => { $crate::modes::output::write_stdout(b"\n") };
    ($($arg:tt)*) => {
        $crate::modes::output::write_stdout(format!("{}\n", format_args!($($arg)*)).as_bytes())
    };
}

/// Prints a line to stderr through [`write_stderr`].
#[macro_export]
macro_rules! errln {
    () => { $crate::modes::output::write_stderr(b"\n") };
    ($($arg:tt)*) => {
        $crate::modes::output::write_stderr(format!("{}\n", format_args!($($arg)*)).as_bytes())
    };
}

/// Writes and flushes `bytes` to stdout unless an earlier write failed; a failure is
/// remembered for [`finish`].
pub fn write_stdout(bytes: &[u8]) {
    if stdout_failed() {
        return;
    }
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        record_stdout_error(e);
    }
}

/// Writes `bytes` to stderr; errors are ignored.
pub fn write_stderr(bytes: &[u8]) {
    let mut err = io::stderr().lock();
    let _ = err.write_all(bytes).and_then(|()| err.flush());
}

/// Remembers the first stdout write error (for writers that do not go through
/// [`write_stdout`], such as the runner's async printer).
pub fn record_stdout_error(e: io::Error) {
    if let Ok(mut failure) = STDOUT_FAILURE.lock() {
        failure.get_or_insert(e);
    }
}

/// Whether a write to stdout failed (its output is dropped from then on).
pub fn stdout_failed() -> bool {
    STDOUT_FAILURE.lock().map_or(true, |f| f.is_some())
}

/// The exit code of a command that returned `code`, after flushing stdout: the same code
/// when all output was written or its reader left (`EPIPE`), else the write error on stderr
/// and [`EXIT_OUTPUT`] in place of success.
pub fn finish(code: i32) -> i32 {
    if !stdout_failed() {
        if let Err(e) = io::stdout().lock().flush() {
            record_stdout_error(e);
        }
    }
    let failure = STDOUT_FAILURE.lock().ok().and_then(|mut f| f.take());
    match failure {
        None => code,
        Some(e) if e.kind() == io::ErrorKind::BrokenPipe => code,
        Some(e) => {
            write_stderr(format!("error: cannot write the output to stdout: {e}\n").as_bytes());
            if code == 0 {
                EXIT_OUTPUT
            } else {
                code
            }
        }
    }
}

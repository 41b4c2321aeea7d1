//! hclog-style JSON log lines on stderr, which the agent re-logs under the plugin's name.
//!
//! Lines are handed to one writer thread through a bounded queue: a slow or vanished
//! reader never blocks the runtime, a full queue drops lines, and write errors (EPIPE once
//! the agent is gone) are ignored instead of panicking as `eprintln!` would.

use std::fmt;
use std::io::Write;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::OnceLock;

use serde_json::{Map, Value};
use time::format_description::FormatItem;
use time::macros::format_description;
use time::OffsetDateTime;

/// Lines waiting for the writer thread; beyond this, new lines are dropped.
const QUEUE_LINES: usize = 1024;

/// The layout the agent parses: exactly 6 fractional digits.
const TIMESTAMP: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

const MODULE: &str = "podman";

/// hclog levels; the agent only maps these five names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum LogLevel {
    Trace,
    #[default]
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    fn name(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for LogLevel {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "trace" => Ok(LogLevel::Trace),
            "debug" => Ok(LogLevel::Debug),
            "info" => Ok(LogLevel::Info),
            "warn" | "warning" => Ok(LogLevel::Warn),
            "error" => Ok(LogLevel::Error),
            other => Err(format!(
                "unknown log level {other:?}: expected trace, debug, info, warn or error"
            )),
        }
    }
}

struct Logger {
    level: LogLevel,
    lines: SyncSender<String>,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Starts the writer thread. Later calls keep the first level.
pub(crate) fn init(level: LogLevel) {
    LOGGER.get_or_init(|| {
        let (lines, queue) = sync_channel::<String>(QUEUE_LINES);
        let spawned = std::thread::Builder::new()
            .name("plugin-log".to_string())
            .spawn(move || {
                let stderr = std::io::stderr();
                for line in queue {
                    let mut out = stderr.lock();
                    // The agent may be gone; losing a log line is all that can happen.
                    let _ = out.write_all(line.as_bytes());
                    let _ = out.flush();
                }
            });
        // Without a writer thread the queue fills and lines are dropped, nothing more.
        drop(spawned);
        Logger { level, lines }
    });
}

/// One log record; `fields` become extra keys of the JSON object.
pub(crate) fn log(level: LogLevel, message: &str, fields: &[(&str, &dyn fmt::Display)]) {
    let Some(logger) = LOGGER.get() else {
        return;
    };
    if level < logger.level {
        return;
    }
    let mut line = record(level, message, fields, OffsetDateTime::now_utc());
    line.push('\n');
    let _ = logger.lines.try_send(line);
}

pub(crate) fn debug(message: &str, fields: &[(&str, &dyn fmt::Display)]) {
    log(LogLevel::Debug, message, fields);
}

pub(crate) fn info(message: &str, fields: &[(&str, &dyn fmt::Display)]) {
    log(LogLevel::Info, message, fields);
}

pub(crate) fn warn(message: &str, fields: &[(&str, &dyn fmt::Display)]) {
    log(LogLevel::Warn, message, fields);
}

pub(crate) fn error(message: &str, fields: &[(&str, &dyn fmt::Display)]) {
    log(LogLevel::Error, message, fields);
}

fn record(
    level: LogLevel,
    message: &str,
    fields: &[(&str, &dyn fmt::Display)],
    now: OffsetDateTime,
) -> String {
    let mut object = Map::new();
    object.insert("@level".into(), Value::String(level.name().into()));
    object.insert("@message".into(), Value::String(message.into()));
    object.insert("@module".into(), Value::String(MODULE.into()));
    let timestamp = now
        .format(TIMESTAMP)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000000Z".to_string());
    object.insert("@timestamp".into(), Value::String(timestamp));
    for (key, value) in fields {
        // The agent's reserved keys stay strings of our own.
        if !key.starts_with('@') {
            object.insert((*key).to_string(), Value::String(value.to_string()));
        }
    }
    Value::Object(object).to_string()
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn records_are_hclog_json() {
        let line = record(
            LogLevel::Warn,
            "task \"x\" stopped",
            &[("task_id", &"a/b/c"), ("code", &137), ("@level", &"fake")],
            datetime!(2024-05-01 10:11:12.1234567 UTC),
        );
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["@level"], "warn");
        assert_eq!(value["@message"], "task \"x\" stopped");
        assert_eq!(value["@module"], "podman");
        assert_eq!(value["@timestamp"], "2024-05-01T10:11:12.123456Z");
        assert_eq!(value["task_id"], "a/b/c");
        assert_eq!(value["code"], "137");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn timestamps_always_have_six_fraction_digits() {
        let line = record(LogLevel::Info, "m", &[], datetime!(2024-01-02 03:04:05 UTC));
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["@timestamp"], "2024-01-02T03:04:05.000000Z");
    }

    #[test]
    fn levels_parse_and_order() {
        assert_eq!("WARN".parse::<LogLevel>().unwrap(), LogLevel::Warn);
        assert_eq!("warning".parse::<LogLevel>().unwrap(), LogLevel::Warn);
        assert!("loud".parse::<LogLevel>().is_err());
        assert!(LogLevel::Trace < LogLevel::Error);
        assert_eq!(LogLevel::default(), LogLevel::Debug);
    }
}

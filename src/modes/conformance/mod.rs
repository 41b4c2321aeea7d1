//! `nomad-driver-podman conformance`: checks a podman installation for everything the
//! driver relies on, through the driver core itself.
//!
//! Entry points for the binary: [`ConformanceArgs`] (clap arguments) and [`execute`], which
//! runs the suite and returns the process exit code (0 only when no check failed; 2 for
//! unusable arguments or output; 130 after Ctrl-C).
//!
//! How it works:
//! * [`checks`] holds every [`check::Check`]: a name, tags, a precondition that skips with
//!   a reason, and a run. Checks drive the core ([`crate::driver::Driver`]) exactly as the
//!   plugin and the runner do; only the `api.*` checks and housekeeping make raw libpod
//!   calls ([`api`]).
//! * Each check's containers carry `io.nomad-driver-podman.conformance=<run id>` and
//!   `...conformance.check=<name>`; its [`scope::Scope`] removes them (and images and
//!   networks it made) after the check, even on failure, timeout or Ctrl-C, and a final
//!   sweep by the run label follows. Nothing else on the podman service is touched.
//! * Known podman version drifts are rows of [`drift::DRIFTS`]: an expected difference
//!   reports "degraded" with its feature impact instead of a failure.
//! * Several `--socket` values run the suite against each (concurrently) and add a
//!   feature-by-socket [`matrix`]; [`report`] renders table, JSON, JUnit or TAP.

pub mod api;
pub mod check;
pub mod checks;
pub mod cli;
pub mod drift;
pub mod env;
pub mod facts;
pub mod httplog;
pub mod matrix;
pub mod report;
pub mod rootfs;
pub mod runner;
pub mod scope;
pub mod selection;

use std::io::IsTerminal;

use tokio_util::sync::CancellationToken;

pub use cli::ConformanceArgs;

use crate::driver::config::DriverConfig;
use cli::{Format, SocketTarget};
use env::{Env, Options};
use report::{RunReport, Summary};
use selection::Selection;

/// Exit code for unusable arguments or output files.
const EXIT_USAGE: i32 = 2;
/// Exit code after Ctrl-C (128 + SIGINT).
const EXIT_INTERRUPTED: i32 = 130;

/// Runs the conformance suite as `args` say and prints or writes the report.
pub async fn execute(args: ConformanceArgs) -> i32 {
    let selection = Selection {
        only: args.only.clone(),
        skip: args.skip.clone(),
    };
    let checks: Vec<_> = checks::all()
        .into_iter()
        .filter(|check| selection.selects(check.name(), check.tags()))
        .collect();
    if checks.is_empty() && !(args.only.is_empty() && args.skip.is_empty()) {
        let patterns = |list: &[regex::Regex]| {
            list.iter()
                .map(|r| format!("{:?}", r.as_str()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        crate::errln!(
            "conformance: no check is selected by --only {}{} (see `conformance --list`)",
            patterns(&args.only),
            if args.skip.is_empty() {
                String::new()
            } else {
                format!(" and --skip {}", patterns(&args.skip))
            }
        );
        return EXIT_USAGE;
    }
    if args.list {
        if args.format == Format::Json {
            let list: Vec<serde_json::Value> = checks
                .iter()
                .map(|check| {
                    let tags: Vec<&str> = check.tags().iter().map(|t| t.as_str()).collect();
                    serde_json::json!({ "name": check.name(), "tags": tags })
                })
                .collect();
            crate::outln!(
                "{}",
                serde_json::to_string_pretty(&list).unwrap_or_default()
            );
            return 0;
        }
        for check in &checks {
            let tags: Vec<&str> = check.tags().iter().map(|t| t.as_str()).collect();
            crate::outln!("{:<36} {}", check.name(), tags.join(","));
        }
        return 0;
    }
    let targets = match targets(&args.sockets) {
        Ok(targets) => targets,
        Err(err) => {
            crate::errln!("conformance: {err}");
            return EXIT_USAGE;
        }
    };
    let log_http = match &args.log_http {
        Some(path) => match httplog::HttpLog::create(path) {
            Ok(log) => Some(log),
            Err(err) => {
                crate::errln!("conformance: --log-http {}: {err}", path.display());
                return EXIT_USAGE;
            }
        },
        None => None,
    };
    let run_id = run_id();
    let started_at = now_rfc3339();
    let cancel = CancellationToken::new();
    let interrupt = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                crate::errln!("\nconformance: interrupted; cleaning up");
                cancel.cancel();
            }
        })
    };
    let options = Options {
        run_id: run_id.clone(),
        image: args.image.clone(),
        registry: args.registry.clone(),
        log_http,
    };
    let runs = targets.into_iter().map(|target| {
        let (options, cancel, checks) = (&options, &cancel, &checks);
        async move {
            let env = Env::prepare(target.clone(), options).await;
            match env {
                Ok(env) => runner::run_socket(&env, checks, cancel).await,
                Err(err) => runner::unusable_socket(&target, &err),
            }
        }
    });
    let sockets = if args.sequential {
        let mut sockets = Vec::new();
        for run in runs {
            sockets.push(run.await);
        }
        sockets
    } else {
        futures::future::join_all(runs).await
    };
    interrupt.abort();

    let report = RunReport {
        driver_version: env!("CARGO_PKG_VERSION").to_string(),
        run_id,
        started_at,
        summary: Summary::of(sockets.iter().flat_map(|s| &s.checks)),
        sockets,
    };
    let to_terminal = args.output.is_none() && std::io::stdout().is_terminal();
    let color = to_terminal
        && args.format == Format::Table
        && std::env::var_os("NO_COLOR").is_none()
        && std::env::var_os("TERM").map_or(true, |t| t != "dumb");
    let rendered = report::render(&report, args.format, color);
    let written = match &args.output {
        Some(path) => tokio::fs::write(path, rendered.as_bytes())
            .await
            .map_err(|err| format!("cannot write {}: {err}", path.display())),
        None => {
            crate::modes::output::write_stdout(rendered.as_bytes());
            Ok(())
        }
    };
    if let Err(err) = written {
        crate::errln!("conformance: {err}");
        return EXIT_USAGE;
    }
    if args.output.is_some() || args.format != Format::Table {
        crate::errln!("conformance: {}", report.summary.line());
    }
    if cancel.is_cancelled() {
        EXIT_INTERRUPTED
    } else {
        report.exit_code()
    }
}

/// Names the sockets: `NAME=URL` keeps its name; a lone unnamed socket is `default`, and
/// several are `socket1`, `socket2`... Without `--socket`, the driver's default socket.
fn targets(sockets: &[SocketTarget]) -> Result<Vec<SocketTarget>, String> {
    if sockets.is_empty() {
        let url = DriverConfig::default()
            .sockets()
            .map_err(|err| err.to_string())?
            .into_iter()
            .next()
            .map(|socket| socket.url)
            .ok_or("no default socket")?;
        return Ok(vec![SocketTarget {
            name: "default".to_string(),
            url,
        }]);
    }
    let mut named = Vec::with_capacity(sockets.len());
    for (index, socket) in sockets.iter().enumerate() {
        let name = match (&socket.name[..], sockets.len()) {
            ("", 1) => "default".to_string(),
            ("", _) => format!("socket{}", index + 1),
            (name, _) => name.to_string(),
        };
        if named.iter().any(|other: &SocketTarget| other.name == name) {
            return Err(format!("two sockets are named {name:?}"));
        }
        named.push(SocketTarget {
            name,
            url: socket.url.clone(),
        });
    }
    Ok(named)
}

/// A short, unique run id: the label value of everything the run creates.
fn run_id() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("run-{}", &id[..12])
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(name: &str, url: &str) -> SocketTarget {
        SocketTarget {
            name: name.to_string(),
            url: url.to_string(),
        }
    }

    #[test]
    fn socket_naming() {
        let one = targets(&[target("", "unix:///a.sock")]).unwrap();
        assert_eq!(one, vec![target("default", "unix:///a.sock")]);

        let several = targets(&[
            target("", "unix:///a.sock"),
            target("v5", "http://h:1"),
            target("", "unix:///c.sock"),
        ])
        .unwrap();
        let names: Vec<&str> = several.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["socket1", "v5", "socket3"]);

        assert!(targets(&[target("a", "unix:///a"), target("a", "unix:///b")]).is_err());

        let fallback = targets(&[]).unwrap();
        assert_eq!(fallback[0].name, "default");
        assert!(fallback[0].url.starts_with("unix:///"));
    }

    #[test]
    fn run_ids_are_distinct_label_values() {
        let (a, b) = (run_id(), run_id());
        assert_ne!(a, b);
        assert!(a.starts_with("run-") && a.len() == 16);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }
}

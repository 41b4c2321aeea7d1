//! Entry point: picks a mode and hands over. Nothing else lives here.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use nomad_driver_podman::modes::{conformance, output, plugin, run};

#[derive(Parser)]
#[command(
    name = "nomad-driver-podman",
    version,
    about = "Nomad task driver for podman: Nomad plugin, standalone job runner, podman conformance harness",
    after_help = "Started by a Nomad agent (its magic cookie set) with no subcommand, it runs as a plugin."
)]
struct Cli {
    #[command(subcommand)]
    mode: Option<Mode>,
}

#[derive(Subcommand)]
enum Mode {
    /// Serve the Nomad plugin protocol (what the Nomad agent starts).
    Plugin {
        /// Lowest level of the log lines written to stderr.
        #[arg(long, env = "NOMAD_DRIVER_PODMAN_LOG_LEVEL", default_value = "debug")]
        log_level: plugin::LogLevel,
    },
    #[command(flatten)]
    Runner(run::RunnerCommand),
    /// Check a podman installation for everything the driver relies on.
    Conformance(conformance::ConformanceArgs),
    /// Print the version.
    Version,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn serve_plugin(log_level: plugin::LogLevel) -> anyhow::Result<ExitCode> {
    let served = runtime()?.block_on(plugin::serve(plugin::PluginOptions { log_level }));
    match served {
        // The agent expects a prompt exit once the protocol says so; do not wait for the
        // runtime to wind down blocking work.
        Ok(()) => std::process::exit(0),
        Err(plugin::PluginError::NotLaunchedByNomad) => {
            nomad_driver_podman::errln!("{}", plugin::NOT_A_PLUGIN_MESSAGE);
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e).context("plugin failed"),
    }
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn main() -> anyhow::Result<ExitCode> {
    // Nomad's single-dash `-var`/`-var-file` are rewritten to their `--` forms first.
    let cli = Cli::parse_from(run::cli::nomad_style_args(std::env::args_os()));
    match cli.mode {
        Some(Mode::Plugin { log_level }) => serve_plugin(log_level),
        None if plugin::is_launched_by_nomad() => serve_plugin(plugin::LogLevel::default()),
        None => {
            nomad_driver_podman::errln!("{}", plugin::NOT_A_PLUGIN_MESSAGE);
            Ok(ExitCode::from(1))
        }
        // Output of these modes goes through `output`, which never panics on a closed
        // pipe or a full disk; `finish` turns what happened to stdout into the exit code.
        Some(Mode::Runner(command)) => Ok(exit_code(output::finish(
            runtime()?.block_on(run::execute(command)),
        ))),
        Some(Mode::Conformance(args)) => Ok(exit_code(output::finish(
            runtime()?.block_on(conformance::execute(args)),
        ))),
        Some(Mode::Version) => {
            nomad_driver_podman::outln!("nomad-driver-podman {}", env!("CARGO_PKG_VERSION"));
            Ok(exit_code(output::finish(0)))
        }
    }
}

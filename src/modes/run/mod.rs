//! The standalone runner: runs a Nomad job file's podman tasks on this machine, as a Nomad
//! client would, through the driver core only. Nomad's semantics are the spec (jobspec
//! HCL2, `NOMAD_*` env, alloc dir layout, lifecycle hooks, restart policy); compose-like
//! tools are the model for the terminal.
//!
//! Entry points for the binary: flatten [`RunnerCommand`] into the command list and call
//! [`execute`], whose result is the process exit code ([`exit_code`]):
//!
//! ```ignore
//! #[derive(clap::Subcommand)]
//! enum Command {
//!     #[command(flatten)]
//!     Runner(nomad_driver_podman::modes::run::RunnerCommand),
//!     // ...
//! }
//! // Command::Runner(cmd) => std::process::exit(modes::run::execute(cmd).await),
//! ```
//!
//! Commands: `run FILE [--detach] [--replace]`, `validate FILE`, `plan FILE [--json]` (all
//! three with the node flags `-meta K=V`, `--node-class`, `--datacenter`, `--node-name`),
//! `ps [JOB]`, `logs JOB [TASK] [-f] [--tail N] [--stdout|--stderr] [-t]`, `stop JOB`,
//! `gc`. Documented in docs/runner.md.
//!
//! Layout: `jobspec/` reads and evaluates job files into [`model`]; `check` validates task
//! configs with the core's decoder; `runner` supervises allocations, each run by
//! `lifecycle` (ordering) and `task_runner` (start, wait, `restart`); `env`, `ports`,
//! `interpolate`, `template`, `artifact`, `alloc` and `infra` prepare what a task gets; `node` is
//! this machine as a Nomad node (facts for `${attr.*}`/`${node.*}`/`${meta.*}`) and
//! `constraint` checks the job's constraints against it; `ui` and `logs`
//! print; `images` warns about task images a start could not get; `logs_command` reads
//! the tasks' `journal`s for `logs`; `state` finds a job's containers by label for
//! `ps`/`logs`/`stop`; `statedir` keeps the state root and the runner's own files (pid,
//! log, manifest) private.

pub mod alloc;
pub mod artifact;
pub mod check;
pub mod cli;
pub mod constraint;
pub mod detach;
pub mod env;
pub mod error;
pub mod images;
pub mod infra;
pub mod interpolate;
pub mod jobspec;
pub mod journal;
pub mod labels;
pub mod lifecycle;
pub mod logs;
pub mod logs_command;
pub mod model;
pub mod node;
pub mod plan;
pub mod ports;
pub mod restart;
pub mod rotated;
pub mod runner;
pub mod service;
pub mod state;
pub mod statedir;
pub mod task_runner;
pub mod template;
pub mod template_watch;
pub mod ui;
pub mod validate;

pub use cli::RunnerCommand;
pub use error::{exit_code, RunError};

/// Runs one runner command; returns the process exit code.
pub async fn execute(cmd: RunnerCommand) -> i32 {
    match cmd {
        RunnerCommand::Run(args) => runner::run(args).await,
        RunnerCommand::Validate(args) => validate::validate(args).await,
        RunnerCommand::Plan(args) => validate::plan(args).await,
        RunnerCommand::Ps(args) => state::ps(args).await,
        RunnerCommand::Logs(args) => logs_command::logs(args).await,
        RunnerCommand::Stop(args) => state::stop(args).await,
        RunnerCommand::Gc(args) => state::gc(args).await,
    }
}

//! Command-line arguments of the runner's subcommands.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand};

/// The runner's subcommands; the binary flattens them into its own command list.
#[derive(Debug, Clone, Subcommand)]
pub enum RunnerCommand {
    /// Run a Nomad job file's podman tasks on this machine, as a Nomad client would.
    Run(RunArgs),
    /// Check a job file; print every error with file:line:col.
    Validate(ValidateArgs),
    /// Show what `run` would start: images, commands, env, mounts, ports, networks.
    Plan(PlanArgs),
    /// List the containers of runner jobs (found by label, so also after a crash).
    Ps(PsArgs),
    /// Print a job's task output: stdout and stderr in the order they were written, several
    /// tasks merged by time.
    Logs(LogsArgs),
    /// Stop a job started with `run --detach` (or left behind), in Nomad's order.
    Stop(StopArgs),
    /// Remove the directories (allocations, logs, last outcome) of jobs that no longer run.
    Gc(GcArgs),
}

/// Where variable values come from, as in `nomad job run`.
#[derive(Debug, Clone, Default, Args)]
pub struct VarArgs {
    /// Set a variable: NAME=VALUE (repeatable; later wins). Also spelled -var, as in
    /// `nomad job run`.
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// Read variables from an HCL or JSON file (repeatable; later wins). Also spelled
    /// -var-file, as in `nomad job run`.
    #[arg(long = "var-file", value_name = "FILE")]
    pub var_files: Vec<PathBuf>,
}

/// What this machine is as a Nomad node: `${meta.*}`, `${node.*}` and what `constraint`
/// blocks are checked against (docs/runner.md, "Node facts").
#[derive(Debug, Clone, Default, Args)]
pub struct NodeArgs {
    /// Node metadata for ${meta.KEY} and constraints: KEY=VALUE (repeatable; later wins).
    /// Also spelled -meta, as in `nomad agent`.
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse_meta)]
    pub meta: Vec<(String, String)>,
    /// The node's class: ${node.class} (default: none). Also spelled -node-class.
    #[arg(long, value_name = "CLASS")]
    pub node_class: Option<String>,
    /// The node's datacenter: ${node.datacenter}, NOMAD_DC; the job's `datacenters` must
    /// include it (default: the job's first datacenter). Also spelled -dc.
    #[arg(long, visible_alias = "dc", value_name = "DC")]
    pub datacenter: Option<String>,
    /// The node's name: ${node.unique.name} (default: the hostname).
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
}

fn parse_meta(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

/// Runner subcommands whose arguments may use Nomad's single-dash spellings.
const NOMAD_STYLE_COMMANDS: &[&str] = &["run", "validate", "plan"];
/// Nomad's single-dash flags and the long options they are.
const NOMAD_STYLE_FLAGS: &[&str] = &[
    "var",
    "var-file",
    "meta",
    "node-class",
    "dc",
    "datacenter",
    "node-name",
];
/// Long options of those subcommands that take a separate value: the token after one is a
/// value, never rewritten (`--infra-image -var` names an image called `-var`).
const VALUE_OPTIONS: &[&str] = &[
    "--var",
    "--var-file",
    "--socket",
    "--state-dir",
    "--host-ip",
    "--infra-image",
    "--meta",
    "--node-class",
    "--dc",
    "--datacenter",
    "--node-name",
];

/// Rewrites Nomad's single-dash flags (`-var N=V`, `-var=N=V`, `-var-file F`,
/// `-var-file=F`) after a `run`/`validate`/`plan` subcommand into their `--` forms, so
/// that scripts written for `nomad job run` work unchanged. Nothing after `--` and no
/// option value is touched; every other argument passes as it is.
pub fn nomad_style_args<I>(args: I) -> Vec<std::ffi::OsString>
where
    I: IntoIterator<Item = std::ffi::OsString>,
{
    let mut out = Vec::new();
    let mut in_runner = false;
    let mut after_dashes = false;
    let mut value_next = false;
    for (i, arg) in args.into_iter().enumerate() {
        let text = arg.to_str().map(str::to_string);
        if i == 0 || after_dashes {
            out.push(arg);
            continue;
        }
        let Some(text) = text else {
            value_next = false;
            out.push(arg);
            continue;
        };
        if i == 1 {
            in_runner = NOMAD_STYLE_COMMANDS.contains(&text.as_str());
        }
        if i == 1 || !in_runner {
            out.push(arg);
            continue;
        }
        if value_next {
            value_next = false;
            out.push(arg);
            continue;
        }
        if text == "--" {
            after_dashes = true;
            out.push(arg);
            continue;
        }
        let rewritten = text.strip_prefix('-').filter(|rest| {
            !rest.starts_with('-') && {
                let name = rest.split_once('=').map_or(*rest, |(n, _)| n);
                NOMAD_STYLE_FLAGS.contains(&name)
            }
        });
        let long = match rewritten {
            Some(rest) => format!("--{rest}"),
            None => text,
        };
        value_next = VALUE_OPTIONS.contains(&long.as_str());
        out.push(long.into());
    }
    out
}

/// How to reach podman and where the runner keeps allocation directories.
#[derive(Debug, Clone, Args)]
pub struct ConnectionArgs {
    /// Podman API socket (unix:///path or http://host:port); default: CONTAINER_HOST,
    /// else the podman service of the current user.
    #[arg(long, env = "CONTAINER_HOST", value_name = "URL")]
    pub socket: Option<String>,
    /// Directory for allocation dirs and runner state; default
    /// $XDG_RUNTIME_DIR/nomad-driver-podman or /tmp/nomad-driver-podman-<uid>.
    #[arg(long, env = "NOMAD_RUNNER_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

impl ConnectionArgs {
    /// How to call this binary again for the same job, for commands printed to copy: the
    /// program as invoked, plus `--socket`/`--state-dir` when they came from the command
    /// line (environment variables carry over by themselves).
    pub fn invocation(&self) -> String {
        let program = std::env::args_os()
            .next()
            .map(|a| a.to_string_lossy().into_owned())
            .filter(|a| a.contains('/'))
            .unwrap_or_else(|| "nomad-driver-podman".to_string());
        let mut words = vec![shell_word(&program)];
        if let Some(socket) = &self.socket {
            if std::env::var("CONTAINER_HOST").ok().as_ref() != Some(socket) {
                words.push(format!("--socket {}", shell_word(socket)));
            }
        }
        if let Some(dir) = &self.state_dir {
            let dir = dir.display().to_string();
            if std::env::var("NOMAD_RUNNER_STATE_DIR").ok().as_ref() != Some(&dir) {
                words.push(format!("--state-dir {}", shell_word(&dir)));
            }
        }
        words.join(" ")
    }

    /// The socket as the driver's configuration spells it: a bare absolute path is taken
    /// as `unix://PATH` (as podman's `--url` does); schemes the runner cannot use (`ssh://`)
    /// are usage errors that name where the value came from.
    pub fn socket_path(&self) -> Result<String, super::RunError> {
        let Some(value) = self.socket.as_deref() else {
            return Ok(String::new());
        };
        if value.starts_with('/') {
            return Ok(format!("unix://{value}"));
        }
        if ["unix:", "http://", "tcp://"]
            .iter()
            .any(|p| value.starts_with(p))
        {
            return Ok(value.to_string());
        }
        let source = if std::env::var("CONTAINER_HOST").is_ok_and(|v| v == value) {
            "CONTAINER_HOST"
        } else {
            "--socket"
        };
        Err(super::RunError::Usage(format!(
            "{source} {value:?}: the runner reaches podman at unix:///path/to/podman.sock, \
             /path/to/podman.sock or http://host:port{}",
            if value.starts_with("ssh://") {
                " (ssh:// connections are not supported; run the runner on that host)"
            } else {
                ""
            }
        )))
    }
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The job file (HCL2 jobspec).
    pub file: PathBuf,
    #[command(flatten)]
    pub vars: VarArgs,
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Start the job in the background and return; use ps, logs and stop afterwards.
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// Host address ports are published on.
    #[arg(long, default_value = "127.0.0.1", value_name = "IP")]
    pub host_ip: IpAddr,
    /// Image of the container that holds a bridge group's network namespace (it must
    /// have `sh`); default: the runner's own pause image, made locally from podman's
    /// catatonit on first use.
    #[arg(long, value_name = "IMAGE")]
    pub infra_image: Option<String>,
    /// Plain output even on a terminal (NO_COLOR does the same).
    #[arg(long)]
    pub no_color: bool,
    /// If the job is running (or its containers were left behind), stop it in Nomad's
    /// order, as `stop` does, then run this job file.
    #[arg(long)]
    pub replace: bool,
    /// Internal: this process is the background runner of `run --detach`.
    #[arg(long, hide = true)]
    pub detached_child: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ValidateArgs {
    pub file: PathBuf,
    #[command(flatten)]
    pub vars: VarArgs,
    #[command(flatten)]
    pub node: NodeArgs,
    /// Where images are looked up (nothing else is asked of podman; without it the
    /// image check is skipped).
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    pub file: PathBuf,
    #[command(flatten)]
    pub vars: VarArgs,
    #[command(flatten)]
    pub node: NodeArgs,
    /// Where images are looked up (nothing else is asked of podman; without it the
    /// image check is skipped).
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct PsArgs {
    /// Only this job (its id, the label of the job block).
    pub job: Option<String>,
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Print the containers as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// The job id.
    pub job: String,
    /// Only this task (`task`, or `group.task`).
    pub task: Option<String>,
    /// Keep printing new output, also of restarted tasks, until the job's runner and
    /// containers are gone (or Ctrl-C).
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only the last N lines of each task (`all`: everything), then new ones with -f.
    #[arg(long, value_name = "N", value_parser = parse_tail)]
    pub tail: Option<Tail>,
    /// Only standard output.
    #[arg(long, conflicts_with = "stderr")]
    pub stdout: bool,
    /// Only standard error.
    #[arg(long)]
    pub stderr: bool,
    /// Prefix each line with the time it was written (RFC 3339, UTC, nanoseconds).
    #[arg(long, short = 't')]
    pub timestamps: bool,
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[arg(long)]
    pub no_color: bool,
}

/// `--tail`: a number of lines, or `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    All,
    Last(usize),
}

fn parse_tail(text: &str) -> Result<Tail, String> {
    if text == "all" {
        return Ok(Tail::All);
    }
    text.parse()
        .map(Tail::Last)
        .map_err(|_| format!("{text:?} is not a number of lines (or `all`)"))
}

#[derive(Debug, Clone, Args)]
pub struct StopArgs {
    /// The job id.
    pub job: String,
    /// Also remove the job's directory: allocation dirs, logs, last outcome.
    #[arg(long)]
    pub purge: bool,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

#[derive(Debug, Clone, Args)]
pub struct GcArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// `word` quoted for a POSIX shell when it needs it.
pub fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:=@,".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::{nomad_style_args, parse_tail, Tail};

    #[test]
    fn tail_takes_a_count_or_all() {
        assert_eq!(parse_tail("3"), Ok(Tail::Last(3)));
        assert_eq!(parse_tail("0"), Ok(Tail::Last(0)));
        assert_eq!(parse_tail("all"), Ok(Tail::All));
        assert!(parse_tail("-1").unwrap_err().contains("not a number"));
        assert!(parse_tail("ten").is_err());
    }

    fn rewrite(args: &[&str]) -> Vec<String> {
        nomad_style_args(args.iter().map(std::ffi::OsString::from))
            .into_iter()
            .map(|a| a.into_string().unwrap_or_default())
            .collect()
    }

    #[test]
    fn single_dash_var_flags_become_long_options() {
        assert_eq!(
            rewrite(&[
                "bin",
                "run",
                "-var",
                "a=1",
                "-var=b=2",
                "-var-file",
                "f",
                "-var-file=g",
                "job"
            ]),
            [
                "bin",
                "run",
                "--var",
                "a=1",
                "--var=b=2",
                "--var-file",
                "f",
                "--var-file=g",
                "job"
            ]
        );
        assert_eq!(
            rewrite(&["bin", "validate", "--var", "a=1", "job", "-var", "x=-var"]),
            ["bin", "validate", "--var", "a=1", "job", "--var", "x=-var"]
        );
    }

    #[test]
    fn single_dash_node_flags_become_long_options() {
        assert_eq!(
            rewrite(&[
                "bin",
                "plan",
                "-meta",
                "rack=r1",
                "-meta=zone=a",
                "-node-class",
                "gpu",
                "-dc=west",
                "job"
            ]),
            [
                "bin",
                "plan",
                "--meta",
                "rack=r1",
                "--meta=zone=a",
                "--node-class",
                "gpu",
                "--dc=west",
                "job"
            ]
        );
        assert_eq!(super::parse_meta("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(super::parse_meta("novalue").is_err());
        assert!(super::parse_meta("=v").is_err());
    }

    #[test]
    fn values_other_commands_and_after_dashes_are_left_alone() {
        assert_eq!(
            rewrite(&[
                "bin",
                "run",
                "--var",
                "-var",
                "--infra-image",
                "-var-file",
                "job"
            ]),
            [
                "bin",
                "run",
                "--var",
                "-var",
                "--infra-image",
                "-var-file",
                "job"
            ]
        );
        assert_eq!(
            rewrite(&["bin", "run", "--", "-var"]),
            ["bin", "run", "--", "-var"]
        );
        assert_eq!(rewrite(&["bin", "stop", "-var"]), ["bin", "stop", "-var"]);
        assert_eq!(
            rewrite(&["bin", "run", "-varx", "-v"]),
            ["bin", "run", "-varx", "-v"]
        );
    }
}

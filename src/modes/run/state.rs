//! `ps`, `logs` and `stop`: a job's containers are found by their runner labels and its
//! output in its allocation directories, so these work without the runner that started
//! the job (after `run --detach`, or after the runner was killed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::driver::podman::{DeleteOptions, ListOptions, PodmanClient, PodmanError};
use crate::driver::task::TaskSpec;

use super::cli::{ConnectionArgs, GcArgs, PsArgs, StopArgs};
use super::error::{exit_code, RunError};
use super::labels;
use super::runner::{state_root, JobFiles};
use super::statedir::{self, ProcessIdentity};
use super::validate::report_error;

/// One runner container, described by its labels.
#[derive(Debug, Clone, Serialize)]
pub struct RunnerContainer {
    pub id: String,
    pub name: String,
    pub job: String,
    pub group: String,
    pub task: String,
    pub alloc_id: String,
    pub alloc_index: u32,
    pub alloc_dir: String,
    pub stage: String,
    pub leader: bool,
    pub state: String,
    pub exit_code: i32,
    pub ports: String,
    #[serde(skip)]
    pub kill_timeout: Duration,
    #[serde(skip)]
    pub kill_signal: Option<String>,
}

/// What `run` records about a job's allocations, for `logs` after the containers are gone.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub job_id: String,
    pub allocations: Vec<ManifestAlloc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestAlloc {
    pub id: String,
    pub group: String,
    pub index: u32,
    /// The group's count, to label output like the runner does.
    pub count: u32,
    pub dir: PathBuf,
    pub tasks: Vec<String>,
}

/// How a job's last run ended, kept in its state dir until `stop` or `gc`, so `ps` shows
/// finished jobs (as `nomad job status` and `compose ps -a` do).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    pub job_id: String,
    /// `complete`, `failed` or `stopped`.
    pub status: String,
    /// The runner's exit code.
    pub exit_code: i32,
    /// RFC 3339, UTC.
    pub finished_at: String,
    pub tasks: Vec<OutcomeTask>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutcomeTask {
    pub group: String,
    pub alloc_id: String,
    pub alloc_index: u32,
    pub task: String,
    /// The task's last exit code; none when it never ran.
    pub exit_code: Option<i32>,
}

impl Outcome {
    pub fn path(files: &JobFiles) -> PathBuf {
        files.dir.join("outcome.json")
    }

    /// The recorded outcome of `files`' job, if its last run finished.
    pub fn read(files: &JobFiles) -> Option<Outcome> {
        let bytes = statedir::read_private_file(&Self::path(files)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

impl Manifest {
    pub fn path(files: &JobFiles) -> PathBuf {
        files.dir.join("runner.json")
    }
}

fn client(connection: &ConnectionArgs) -> Result<(PodmanClient, String), RunError> {
    let url = super::runner::socket_url(connection)?;
    let client = PodmanClient::new(&url, None).map_err(|e| RunError::PodmanUnreachable {
        socket: url.clone(),
        reason: e.to_string(),
    })?;
    Ok((client, url))
}

fn podman_error(socket: &str, e: PodmanError) -> RunError {
    if e.is_unavailable() {
        RunError::PodmanUnreachable {
            socket: socket.to_string(),
            reason: e.to_string(),
        }
    } else {
        RunError::Podman(e)
    }
}

/// The runner containers of `job` (or of every job), running or not.
pub async fn find(
    connection: &ConnectionArgs,
    job: Option<&str>,
) -> Result<Vec<RunnerContainer>, RunError> {
    let (client, socket) = client(connection)?;
    let filter = match job {
        Some(j) => format!("{}={j}", labels::JOB),
        None => labels::JOB.to_string(),
    };
    let list = client
        .container_list(&ListOptions {
            all: true,
            labels: vec![filter],
            ..Default::default()
        })
        .await
        .map_err(|e| podman_error(&socket, e))?;
    let mut out: Vec<RunnerContainer> = list
        .into_iter()
        .map(|c| {
            let label = |k: &str| c.labels.get(k).cloned().unwrap_or_default();
            RunnerContainer {
                name: c.names.first().cloned().unwrap_or_default(),
                job: label(labels::JOB),
                group: label(labels::GROUP),
                task: label(labels::TASK),
                alloc_id: label(labels::ALLOC_ID),
                alloc_index: label(labels::ALLOC_INDEX).parse().unwrap_or(0),
                alloc_dir: label(labels::ALLOC_DIR),
                stage: label(labels::STAGE),
                leader: label(labels::LEADER) == "true",
                ports: label(labels::PORTS),
                kill_timeout: Duration::from_secs(label(labels::KILL_TIMEOUT).parse().unwrap_or(5)),
                kill_signal: c.labels.get(labels::KILL_SIGNAL).cloned(),
                state: c.state,
                exit_code: c.exit_code,
                id: c.id,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        (&a.job, &a.group, a.alloc_index, &a.alloc_id, &a.task).cmp(&(
            &b.job,
            &b.group,
            b.alloc_index,
            &b.alloc_id,
            &b.task,
        ))
    });
    Ok(out)
}

/// One row of `ps`: a container, or a task of a finished run (from its outcome).
#[derive(Debug, Clone, Serialize)]
pub struct PsEntry {
    pub job: String,
    pub group: String,
    pub alloc_id: String,
    pub alloc_index: u32,
    pub task: String,
    pub stage: String,
    /// podman's state (`running`, `exited`, ...), or `dead` for a finished run's task.
    pub state: String,
    /// Only once the task exited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    pub ports: Vec<PsPort>,
    /// The container's name; empty for a finished run's task.
    pub name: String,
    pub id: String,
    /// For a finished run: its status (`complete`, `failed`, `stopped`) and end time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PsPort {
    pub label: String,
    pub host_ip: String,
    pub host_port: u16,
    pub to: u16,
}

/// Parses the ports label (`http 127.0.0.1:20001->8080, dns 127.0.0.1:53->53`).
pub fn parse_ports(label: &str) -> Vec<PsPort> {
    label
        .split(", ")
        .filter_map(|p| {
            let (name, rest) = p.split_once(' ')?;
            let (host, to) = rest.split_once("->")?;
            let (ip, port) = host.rsplit_once(':')?;
            Some(PsPort {
                label: name.to_string(),
                host_ip: ip.to_string(),
                host_port: port.parse().ok()?,
                to: to.parse().ok()?,
            })
        })
        .collect()
}

impl PsEntry {
    fn of_container(c: &RunnerContainer) -> Self {
        PsEntry {
            job: c.job.clone(),
            group: c.group.clone(),
            alloc_id: c.alloc_id.clone(),
            alloc_index: c.alloc_index,
            task: c.task.clone(),
            stage: c.stage.clone(),
            exit_code: (!matches!(c.state.as_str(), "running" | "created" | "configured"))
                .then_some(c.exit_code),
            state: c.state.clone(),
            ports: parse_ports(&c.ports),
            name: c.name.clone(),
            id: c.id.clone(),
            job_status: None,
            finished_at: None,
        }
    }

    fn of_outcome(outcome: &Outcome) -> Vec<Self> {
        outcome
            .tasks
            .iter()
            .map(|t| PsEntry {
                job: outcome.job_id.clone(),
                group: t.group.clone(),
                alloc_id: t.alloc_id.clone(),
                alloc_index: t.alloc_index,
                task: t.task.clone(),
                stage: String::new(),
                state: "dead".into(),
                exit_code: t.exit_code,
                ports: Vec::new(),
                name: String::new(),
                id: String::new(),
                job_status: Some(outcome.status.clone()),
                finished_at: Some(outcome.finished_at.clone()),
            })
            .collect()
    }
}

/// The jobs under the state root whose last run finished (an outcome, no containers).
fn finished_jobs(
    root: &Path,
    job: Option<&str>,
    with_containers: &[RunnerContainer],
) -> Vec<Outcome> {
    let names: Vec<String> = match job {
        Some(j) => vec![j.to_string()],
        None => std::fs::read_dir(root)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default(),
    };
    let mut out: Vec<Outcome> = names
        .iter()
        .filter(|name| !with_containers.iter().any(|c| &c.job == *name))
        .filter_map(|name| JobFiles::new(root, name).ok())
        .filter(|files| runner_pid(files).is_none())
        .filter_map(|files| Outcome::read(&files))
        .collect();
    out.sort_by(|a, b| a.job_id.cmp(&b.job_id));
    out
}

pub async fn ps(args: PsArgs) -> i32 {
    let containers = match find(&args.connection, args.job.as_deref()).await {
        Ok(c) => c,
        Err(e) => return report_error(&e),
    };
    let root = match state_root(&args.connection) {
        Ok(root) => root,
        Err(e) => return report_error(&e),
    };
    let finished = finished_jobs(&root, args.job.as_deref(), &containers);
    let entries: Vec<PsEntry> = containers
        .iter()
        .map(PsEntry::of_container)
        .chain(finished.iter().flat_map(PsEntry::of_outcome))
        .collect();
    if args.json {
        match serde_json::to_string_pretty(&entries) {
            Ok(json) => crate::outln!("{json}"),
            Err(e) => return report_error(&RunError::Encode(e)),
        }
        return exit_code::OK;
    }
    if entries.is_empty() {
        match &args.job {
            Some(j) => crate::outln!("no containers of job {j:?}"),
            None => crate::outln!("no runner containers"),
        }
        return exit_code::OK;
    }
    let rows: Vec<[String; 8]> = entries
        .iter()
        .map(|c| {
            let state = match c.exit_code {
                Some(code) => format!("{} ({code})", c.state),
                None => c.state.clone(),
            };
            let ports: Vec<String> = c
                .ports
                .iter()
                .map(|p| format!("{} {}:{}->{}", p.label, p.host_ip, p.host_port, p.to))
                .collect();
            [
                c.job.clone(),
                format!("{}[{}]", c.group, c.alloc_index),
                c.alloc_id.get(..8).unwrap_or(&c.alloc_id).to_string(),
                c.task.clone(),
                if c.stage.is_empty() {
                    "-".into()
                } else {
                    c.stage.clone()
                },
                state,
                ports.join(", "),
                if c.name.is_empty() {
                    "-".into()
                } else {
                    c.name.clone()
                },
            ]
        })
        .collect();
    let header = [
        "JOB",
        "ALLOC",
        "ALLOC ID",
        "TASK",
        "STAGE",
        "STATE",
        "PORTS",
        "CONTAINER",
    ]
    .map(String::from);
    let widths: Vec<usize> = (0..8)
        .map(|i| {
            rows.iter()
                .chain([&header])
                .map(|r| r[i].len())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        crate::outln!("{}", line.join("  ").trim_end());
    }
    let jobs: std::collections::BTreeSet<&str> =
        containers.iter().map(|c| c.job.as_str()).collect();
    for job in jobs {
        let runner = JobFiles::new(&root, job)
            .ok()
            .and_then(|files| runner_pid(&files));
        match runner {
            Some(pid) => crate::outln!("job {job:?}: runner pid {pid}"),
            None => crate::outln!(
                "job {job:?}: no runner (its containers are left as they are; `{} stop {job}` removes them)",
                args.connection.invocation()
            ),
        }
    }
    for outcome in &finished {
        crate::outln!(
            "job {:?}: {} (exit code {}) at {}; `{} stop {0}` forgets it",
            outcome.job_id,
            outcome.status,
            outcome.exit_code,
            outcome.finished_at,
            args.connection.invocation()
        );
    }
    exit_code::OK
}

/// What the job's `runner.pid` says about its runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunnerCheck {
    /// No pid file (or not one the runner wrote): no runner.
    None,
    /// The recorded process is still the job's runner.
    Verified(ProcessIdentity),
    /// The pid file names a process that is not (any more) the job's runner.
    Mismatch { pid: i32, why: String },
}

/// Reads `runner.pid` (never through a symlink) and checks that the process it names is
/// the same process (pid and start time), of this user, and a runner.
pub fn check_runner(files: &JobFiles) -> RunnerCheck {
    let Ok(bytes) = statedir::read_private_file(&files.pid()) else {
        return RunnerCheck::None;
    };
    let text = String::from_utf8_lossy(&bytes);
    let Some(recorded) = ProcessIdentity::parse(&text) else {
        return match text.trim().parse::<i32>() {
            Ok(pid) => RunnerCheck::Mismatch {
                pid,
                why: "the pid file records no start time, so the process cannot be identified"
                    .into(),
            },
            Err(_) => RunnerCheck::None,
        };
    };
    match statedir::verify_runner(recorded) {
        Ok(()) => RunnerCheck::Verified(recorded),
        Err(why) => RunnerCheck::Mismatch {
            pid: recorded.pid,
            why,
        },
    }
}

/// The pid of the job's runner if that process is still alive and is that runner.
pub fn runner_pid(files: &JobFiles) -> Option<i32> {
    match check_runner(files) {
        RunnerCheck::Verified(runner) => Some(runner.pid),
        _ => None,
    }
}

pub async fn stop(args: StopArgs) -> i32 {
    match stop_job(&args).await {
        Ok(code) => code,
        Err(e) => report_error(&e),
    }
}

async fn stop_job(args: &StopArgs) -> Result<i32, RunError> {
    let files = JobFiles::new(&state_root(&args.connection)?, &args.job)?;
    let found = stop_running(&args.connection, &files, &args.job).await?;
    let known = files.dir.is_dir();
    let outcome = Outcome::read(&files);
    let _ = std::fs::remove_file(Outcome::path(&files));
    if args.purge && known {
        purge(&files)?;
    }
    if found {
        crate::outln!("job {:?} stopped", args.job);
        if let Some(pid) = super::service::stop_if_unused(&state_root(&args.connection)?).await {
            crate::outln!(
                "stopped the private podman service (pid {pid}): no job uses it any more"
            );
        }
        return Ok(exit_code::OK);
    }
    if !known {
        return Err(RunError::JobNotFound(args.job.clone()));
    }
    // A job that already ended (or was stopped before): nothing to do, and no error.
    match outcome {
        Some(o) => crate::outln!(
            "job {:?}: nothing to stop (its last run ended {} at {}; record removed)",
            args.job,
            o.status,
            o.finished_at
        ),
        None => crate::outln!("job {:?}: nothing to stop", args.job),
    }
    Ok(exit_code::OK)
}

/// Whether `job` is running: a live runner, or containers (a dead runner's leftovers).
pub async fn is_running(
    connection: &ConnectionArgs,
    files: &JobFiles,
    job: &str,
) -> Result<bool, RunError> {
    Ok(runner_pid(files).is_some() || !find(connection, Some(job)).await?.is_empty())
}

/// Stops `job` in Nomad's order, the way `stop` does (and `run --replace` before it runs
/// the new job file): its runner when one lives (it runs the poststop tasks), else its
/// containers without it. Returns whether there was anything to stop.
pub async fn stop_running(
    connection: &ConnectionArgs,
    files: &JobFiles,
    job: &str,
) -> Result<bool, RunError> {
    let mut found = false;
    let runner = match check_runner(files) {
        RunnerCheck::Verified(runner) => Some(runner),
        RunnerCheck::Mismatch { pid, why } => {
            crate::outln!(
                "job {:?}: {} names pid {pid}, which is not its runner ({why}); not signalling it",
                job,
                files.pid().display()
            );
            None
        }
        RunnerCheck::None => None,
    };
    if let Some(runner) = runner {
        let pid = runner.pid;
        match statedir::signal_runner(runner, nix::sys::signal::Signal::SIGTERM) {
            Ok(()) => {
                found = true;
                crate::outln!(
                    "stopping job {:?}: asking its runner (pid {pid}) to stop it in Nomad's order",
                    job
                );
                // The runner stops every task (kill timeouts) and runs poststop tasks first.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
                while runner_pid(files).is_some() && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                // Then until the process ended: it releases the embedded service last.
                while super::service::running_or_zombie(runner) == Some(true)
                    && tokio::time::Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            Err(why) => crate::outln!(
                "job {:?}: not signalling pid {pid} named by {}: {why}",
                job,
                files.pid().display()
            ),
        }
    }
    let left = match find(connection, Some(job)).await {
        // The runner used the embedded service and stopped it as it ended: it removed
        // its containers through it, and no other podman was named.
        Err(RunError::PodmanUnreachable { .. }) if found && connection.socket.is_none() => {
            Vec::new()
        }
        other => other?,
    };
    if !left.is_empty() {
        found = true;
        crate::outln!(
            "stopping {} container{} of job {:?} without its runner",
            left.len(),
            if left.len() == 1 { "" } else { "s" },
            job
        );
        let poststop = poststop_left(files, &left);
        remove_in_order(connection, left, poststop).await?;
    }
    Ok(found)
}

/// Removes a job's directory (allocation dirs, logs, runner files).
fn purge(files: &JobFiles) -> Result<(), RunError> {
    std::fs::remove_dir_all(&files.dir)
        .map_err(RunError::io("cannot remove the job directory", &files.dir))?;
    crate::outln!("removed {}", files.dir.display());
    Ok(())
}

/// `gc`: removes the directories of jobs that have neither a runner nor containers (their
/// allocation dirs, logs and last outcome).
pub async fn gc(args: GcArgs) -> i32 {
    match collect_garbage(&args).await {
        Ok(code) => code,
        Err(e) => report_error(&e),
    }
}

async fn collect_garbage(args: &GcArgs) -> Result<i32, RunError> {
    let root = state_root(&args.connection)?;
    let containers = find(&args.connection, None).await?;
    let mut names: Vec<String> = std::fs::read_dir(&root)
        .map_err(RunError::io("cannot read", &root))?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    let mut removed = 0;
    for name in names {
        let Ok(files) = JobFiles::new(&root, &name) else {
            continue;
        };
        if containers.iter().any(|c| c.job == name) || runner_pid(&files).is_some() {
            continue;
        }
        // Only directories that look like a job's (the runner wrote its manifest there).
        if !Manifest::path(&files).exists() && !Outcome::path(&files).exists() {
            continue;
        }
        purge(&files)?;
        removed += 1;
    }
    if removed == 0 {
        crate::outln!("nothing to remove");
    }
    Ok(exit_code::OK)
}

/// The file next to an allocation that holds its poststop tasks' specs.
pub const POSTSTOP_FILE: &str = "poststop.json";

/// The poststop tasks still to run for the allocations of `left`: those whose runner
/// recorded them and that have no poststop container yet (one that exists already ran).
fn poststop_left(files: &JobFiles, left: &[RunnerContainer]) -> Vec<TaskSpec> {
    let mut allocs: BTreeMap<&str, bool> = BTreeMap::new();
    for c in left {
        *allocs.entry(c.alloc_dir.as_str()).or_default() |= c.stage == "poststop";
    }
    let mut specs = Vec::new();
    for (dir, poststop_ran) in allocs {
        let dir = Path::new(dir);
        // Only allocation dirs of this job, in this state dir.
        if poststop_ran || !dir.starts_with(&files.dir) {
            continue;
        }
        if let Ok(bytes) = statedir::read_private_file(&dir.join(POSTSTOP_FILE)) {
            if let Ok(mut more) = serde_json::from_slice::<Vec<TaskSpec>>(&bytes) {
                specs.append(&mut more);
            }
        }
    }
    specs
}

/// Runs poststop tasks (all at once, as Nomad does) through the core, each to its end,
/// with its output in the allocation's logs; the containers are removed afterwards.
async fn run_poststop(connection: &ConnectionArgs, specs: Vec<TaskSpec>) -> Result<(), RunError> {
    let driver = super::runner::connect(connection).await?;
    let runs = specs.into_iter().map(|spec| {
        let driver = driver.clone();
        async move {
            let id = spec.context.id.clone();
            let name = spec.context.name.clone();
            match driver.start(spec).await {
                Ok(_) => {
                    crate::outln!("  poststop task {name} started");
                    match driver.wait(&id).await {
                        Ok(exit) => {
                            crate::outln!(
                                "  poststop task {name} exited with code {}",
                                exit.exit_code
                            )
                        }
                        Err(e) => crate::outln!("  poststop task {name}: {e}"),
                    }
                }
                Err(e) => crate::outln!("  poststop task {name} could not start: {e}"),
            }
            let _ = driver.destroy(&id, true).await;
        }
    });
    futures::future::join_all(runs).await;
    Ok(())
}

/// Nomad's kill order: leader, other non-sidecar tasks, sidecars, poststop (the recorded
/// poststop tasks run here when no runner does), then the network namespace holders.
/// Containers are stopped in that order, then removed in dependency order: a container
/// that joins another's namespace (`network_mode = "task:NAME"`, the group's infra
/// container) goes before the one it joins, since podman refuses to remove a container
/// others depend on.
async fn remove_in_order(
    connection: &ConnectionArgs,
    containers: Vec<RunnerContainer>,
    mut poststop: Vec<TaskSpec>,
) -> Result<(), RunError> {
    let (client, socket) = client(connection)?;
    let rank = |c: &RunnerContainer| match (c.leader, c.stage.as_str()) {
        (true, _) => 0,
        (_, "prestart_sidecar" | "poststart_sidecar") => 2,
        (_, "poststop") => 3,
        (_, labels::INFRA_STAGE) => 4,
        _ => 1,
    };
    let mut by_rank: BTreeMap<u8, Vec<&RunnerContainer>> = BTreeMap::new();
    for c in &containers {
        by_rank.entry(rank(c)).or_default().push(c);
    }
    if !poststop.is_empty() {
        // Poststop tasks run after every other task stopped, before the namespace holder.
        by_rank.entry(4).or_default();
    }
    for (rank, batch) in by_rank {
        if rank == 4 && !poststop.is_empty() {
            run_poststop(connection, std::mem::take(&mut poststop)).await?;
        }
        let stops = batch.into_iter().filter(|c| c.state == "running").map(|c| {
            let client = client.clone();
            async move {
                if let Some(signal) = &c.kill_signal {
                    let _ = client.container_kill(&c.id, signal).await;
                }
                let _ = client.container_stop(&c.id, c.kill_timeout).await;
            }
        });
        futures::future::join_all(stops).await;
    }
    // Who joins whom: the namespaces a container shares with another (`container:ID`).
    let mut joins: Vec<(String, Vec<String>)> = Vec::new();
    for c in &containers {
        let targets = match client.container_inspect(&c.id).await {
            Ok(inspect) => namespace_targets(&inspect.host_config),
            Err(_) => Vec::new(),
        };
        joins.push((c.id.clone(), targets));
    }
    for wave in removal_waves(&containers, &joins) {
        let removals = wave.into_iter().map(|c| {
            let client = client.clone();
            async move {
                let removed = client
                    .container_delete(
                        &c.id,
                        DeleteOptions {
                            force: true,
                            volumes: true,
                            stop_timeout: Some(Duration::from_secs(1)),
                        },
                    )
                    .await;
                (c, removed)
            }
        });
        for (c, removed) in futures::future::join_all(removals).await {
            match removed {
                Ok(()) => crate::outln!("  removed {} ({}.{})", c.name, c.group, c.task),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(podman_error(&socket, e)),
            }
        }
    }
    Ok(())
}

/// The containers whose namespaces this one joins (`container:<id or name>` modes).
fn namespace_targets(host: &crate::driver::podman::HostConfig) -> Vec<String> {
    [
        &host.network_mode,
        &host.ipc_mode,
        &host.pid_mode,
        &host.uts_mode,
    ]
    .into_iter()
    .filter_map(|mode| mode.strip_prefix("container:"))
    .filter(|target| !target.is_empty())
    .map(str::to_string)
    .collect()
}

/// Removal waves: each wave holds the containers nothing left depends on, so joiners are
/// removed before the container whose namespace they share. A cycle (which podman cannot
/// create) ends in one last wave with the rest.
fn removal_waves<'a>(
    containers: &'a [RunnerContainer],
    joins: &[(String, Vec<String>)],
) -> Vec<Vec<&'a RunnerContainer>> {
    let refers_to = |target: &str, c: &RunnerContainer| {
        target == c.id || target == c.name || (target.len() >= 12 && c.id.starts_with(target))
    };
    // For each container, the indexes of the containers it depends on.
    let deps: Vec<Vec<usize>> = containers
        .iter()
        .map(|c| {
            let targets = joins
                .iter()
                .find(|(id, _)| *id == c.id)
                .map(|(_, t)| t.as_slice())
                .unwrap_or_default();
            containers
                .iter()
                .enumerate()
                .filter(|(_, other)| other.id != c.id)
                .filter(|(_, other)| targets.iter().any(|t| refers_to(t, other)))
                .map(|(i, _)| i)
                .collect()
        })
        .collect();
    let mut left: Vec<usize> = (0..containers.len()).collect();
    let mut waves = Vec::new();
    while !left.is_empty() {
        // Removable now: no container still left depends on it.
        let (now, later): (Vec<usize>, Vec<usize>) = left
            .iter()
            .partition(|&&i| !left.iter().any(|&j| deps[j].contains(&i)));
        if now.is_empty() {
            waves.push(later.iter().map(|&i| &containers[i]).collect());
            break;
        }
        waves.push(now.iter().map(|&i| &containers[i]).collect());
        left = later;
    }
    waves
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job_files() -> (tempfile::TempDir, JobFiles) {
        let root = tempfile::tempdir().unwrap();
        let files = JobFiles::new(root.path(), "web").unwrap();
        files.create_dir().unwrap();
        (root, files)
    }

    fn container(id: &str, name: &str) -> RunnerContainer {
        RunnerContainer {
            id: id.into(),
            name: name.into(),
            job: "j".into(),
            group: "g".into(),
            task: name.into(),
            alloc_id: String::new(),
            alloc_index: 0,
            alloc_dir: String::new(),
            stage: "main".into(),
            leader: false,
            state: "exited".into(),
            exit_code: 0,
            ports: String::new(),
            kill_timeout: Duration::from_secs(1),
            kill_signal: None,
        }
    }

    #[test]
    fn joiners_are_removed_before_the_namespace_owner() {
        // server owns the namespace; probe joins it by id, app by name; infra is joined by
        // server (a bridge group's pause container).
        let server_id = "a".repeat(64);
        let infra_id = "c".repeat(64);
        let containers = vec![
            container(&server_id, "server-1"),
            container(&infra_id, "nomad_init-1"),
            container(&"b".repeat(64), "probe-1"),
            container(&"d".repeat(64), "app-1"),
        ];
        let joins = vec![
            (server_id.clone(), vec![infra_id[..12].to_string()]),
            ("b".repeat(64), vec![server_id.clone()]),
            ("d".repeat(64), vec!["server-1".to_string()]),
        ];
        let waves: Vec<Vec<&str>> = removal_waves(&containers, &joins)
            .into_iter()
            .map(|w| w.into_iter().map(|c| c.name.as_str()).collect())
            .collect();
        assert_eq!(
            waves,
            vec![
                vec!["probe-1", "app-1"],
                vec!["server-1"],
                vec!["nomad_init-1"]
            ]
        );
        let host = crate::driver::podman::HostConfig {
            network_mode: format!("container:{server_id}"),
            ipc_mode: "private".into(),
            ..Default::default()
        };
        assert_eq!(namespace_targets(&host), vec![server_id]);
    }

    #[test]
    fn runner_pid_files_are_trusted_only_for_the_recorded_process() {
        let (_root, files) = job_files();
        assert_eq!(check_runner(&files), RunnerCheck::None);
        // A runner-like process recorded with its start time is the runner.
        let mut child = statedir::tests::runner_like_child();
        let pid = i32::try_from(child.id()).unwrap();
        let me = ProcessIdentity {
            pid,
            start_time: statedir::start_time(pid).unwrap(),
        };
        statedir::write_private_file(&files.pid(), me.to_record().as_bytes()).unwrap();
        assert_eq!(check_runner(&files), RunnerCheck::Verified(me));
        assert_eq!(runner_pid(&files), Some(pid));
        // The old pid-only form, or another start time: not signalled.
        std::fs::write(files.pid(), pid.to_string()).unwrap();
        assert!(matches!(check_runner(&files), RunnerCheck::Mismatch { pid: p, .. } if p == pid));
        let other = ProcessIdentity {
            start_time: me.start_time + 7,
            ..me
        };
        statedir::write_private_file(&files.pid(), other.to_record().as_bytes()).unwrap();
        match check_runner(&files) {
            RunnerCheck::Mismatch { why, .. } => assert!(why.contains("reused"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(runner_pid(&files), None);
        // A pid file that is a symlink is not read at all.
        let elsewhere = files.dir.join("elsewhere");
        statedir::write_private_file(&elsewhere, me.to_record().as_bytes()).unwrap();
        std::fs::remove_file(files.pid()).unwrap();
        std::os::unix::fs::symlink(&elsewhere, files.pid()).unwrap();
        assert_eq!(check_runner(&files), RunnerCheck::None);
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

//! `run`: a job's allocations on this machine, in the foreground (or as the background
//! process of `run --detach`), until batch tasks finish or the job is stopped.

use std::collections::BTreeMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::driver::config::DriverConfig;
use crate::driver::{Driver, DriverOptions, FactsCache, PULL_PROGRESS_ANNOTATION};

use super::alloc::AllocDir;
use super::check::INFRA_TASK;
use super::cli::{ConnectionArgs, RunArgs};
use super::env::AllocIdentity;
use super::error::{exit_code, RunError};
use super::infra::{self, InfraImage};
use super::lifecycle::{run_alloc, AllocOutcome, Shutdown};
use super::logs::{follow, FlushHandle, FlushRequests};
use super::model::{Job, JobType, NetworkMode};
use super::plan::notices_text;
use super::ports::PortAllocator;
use super::service;
use super::state::{self, Manifest, ManifestAlloc, Outcome, OutcomeTask};
use super::statedir::{self, default_state_root, ProcessIdentity, RootKind};
use super::task_runner::AllocContext;
use super::ui::{use_color, Stream, Ui, Who};
use super::validate::{load_checked, CheckedJob};

/// Files the runner keeps next to a job's allocation dirs (created and read through
/// [`statedir`]: never through a symlink).
pub struct JobFiles {
    pub dir: PathBuf,
}

impl JobFiles {
    /// The job's directory under the state root; the job id must be one plain path
    /// component (a job named `../x` must not reach outside the root).
    pub fn new(state_root: &Path, job_id: &str) -> Result<Self, RunError> {
        let mut components = Path::new(job_id).components();
        match (components.next(), components.next()) {
            (Some(std::path::Component::Normal(name)), None) if name == job_id => Ok(JobFiles {
                dir: state_root.join(job_id),
            }),
            _ => Err(RunError::JobIdNotAPathComponent(job_id.to_string())),
        }
    }

    /// Creates the job's directory (0700, this user's, not a symlink).
    pub fn create_dir(&self) -> Result<(), RunError> {
        match std::fs::DirBuilder::new().mode(0o700).create(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(RunError::io("cannot create", &self.dir)(e)),
        }
        statedir::check_private_dir(&self.dir, false)?;
        Ok(())
    }

    /// The pid and start time of the runner process that owns the job while it runs.
    pub fn pid(&self) -> PathBuf {
        self.dir.join("runner.pid")
    }

    /// Written by a `run --detach` child once the main tasks have started.
    pub fn ready(&self) -> PathBuf {
        self.dir.join("runner.ready")
    }

    /// Output of a `run --detach` child.
    pub fn log(&self) -> PathBuf {
        self.dir.join("runner.log")
    }
}

/// The state root: `--state-dir` as given, else the default root, created and checked
/// ([`statedir`]).
pub fn state_root(connection: &ConnectionArgs) -> Result<PathBuf, RunError> {
    let (root, kind) = match &connection.state_dir {
        Some(dir) => (dir.clone(), RootKind::Chosen),
        None => default_state_root(),
    };
    statedir::prepare_root(&root, kind)?;
    Ok(root)
}

/// The socket URL the user named (`--socket`/`CONTAINER_HOST`), else the default rules,
/// else the embedded service of this state root when the default does not answer and it
/// does (see `service`).
pub fn socket_url(connection: &ConnectionArgs) -> Result<String, RunError> {
    let config = DriverConfig {
        socket_path: connection.socket_path()?,
        ..DriverConfig::default()
    };
    let default = config
        .sockets()
        .ok()
        .and_then(|s| s.into_iter().next())
        .map_or_else(|| config.socket_path.clone(), |s| s.url);
    Ok(service::fallback(
        connection.socket.as_deref(),
        &default,
        &state_root(connection)?,
    )
    .unwrap_or(default))
}

/// The core driver for the runner: the socket from --socket / CONTAINER_HOST / the
/// default rules (or the running embedded service), and no reaping of containers it did
/// not start (other jobs' containers).
pub async fn connect(connection: &ConnectionArgs) -> Result<Arc<Driver>, RunError> {
    connect_to(connection, socket_url(connection)?).await
}

async fn connect_to(connection: &ConnectionArgs, url: String) -> Result<Arc<Driver>, RunError> {
    let mut config = DriverConfig {
        socket_path: url,
        ..DriverConfig::default()
    };
    config.gc.dangling_containers.enabled = false;
    let first = config.sockets().ok().and_then(|s| s.into_iter().next());
    let socket_name = first.as_ref().map(|s| s.name.clone()).unwrap_or_default();
    let socket = first.map_or_else(|| config.socket_path.clone(), |s| s.url);
    // Host facts are remembered between runs: podman's info call alone takes longer
    // than starting a small job.
    let options = DriverOptions {
        facts_cache: Some(FactsCache::in_dir(&state_root(connection)?)),
        ..DriverOptions::default()
    };
    let driver =
        Driver::with_options(config, options).map_err(|e| RunError::PodmanUnreachable {
            socket: socket.clone(),
            reason: e.to_string(),
        })?;
    if let Err(e) = driver.ping(&socket_name).await {
        return Err(RunError::PodmanUnreachable {
            socket,
            reason: e.to_string(),
        });
    }
    Ok(driver)
}

/// `connect` for `run`: when the user named no socket and none answers, the embedded
/// service is started (or joined); the flag says this runner must release it.
async fn connect_for_run(connection: &ConnectionArgs) -> Result<(Arc<Driver>, bool), RunError> {
    let (socket, reason) = match connect(connection).await {
        Ok(driver) => return Ok((driver, false)),
        Err(RunError::PodmanUnreachable { socket, reason }) if connection.socket.is_none() => {
            (socket, reason)
        }
        Err(e) => return Err(e),
    };
    let root = state_root(connection)?;
    let started = service::start(&root)
        .await
        .map_err(|source| RunError::NoPrivateService {
            socket,
            reason,
            source,
        })?;
    if let Some(pid) = started.started_pid {
        println!(
            "==> no podman service answers; started a private one (pid {pid}) at {}, stopped when the last job using it ends",
            started.url
        );
    }
    match connect_to(connection, started.url).await {
        Ok(driver) => Ok((driver, true)),
        Err(e) => {
            service::release(&root).await;
            Err(e)
        }
    }
}

pub async fn run(args: RunArgs) -> i32 {
    if args.detach && !args.detached_child {
        return super::detach::start(args).await;
    }
    match run_job(&args).await {
        Ok(code) => code,
        Err(e) => super::validate::report_error(&e),
    }
}

struct Allocation {
    ctx: AllocContext,
    tasks: Vec<String>,
    /// Each task's stdout and stderr log, with the flush requests of its follower.
    logs: Vec<(Who, PathBuf, Stream, FlushRequests)>,
}

async fn run_job(args: &RunArgs) -> Result<i32, RunError> {
    let mut checked = load_checked(&args.file, &args.vars, &args.node).await?;
    let notices = notices_text(&checked.ignored, &checked.loaded.notices.skipped_tasks);
    if !notices.is_empty() {
        crate::outln!("{}", notices.trim_start());
    }
    let (driver, embedded) = connect_for_run(&args.connection).await?;
    let root = state_root(&args.connection)?;
    let result = match learn_podman_version(&driver, &mut checked).await {
        Ok(()) => {
            let node = Arc::new(checked.node_attributes());
            let job = Arc::new(checked.loaded.job);
            run_connected(args, job, node, driver, &root).await
        }
        Err(e) => Err(e),
    };
    if embedded {
        if let Some(pid) = service::release(&root).await {
            println!("==> stopped the private podman service (pid {pid})");
        }
    }
    result
}

/// `attr.driver.podman.version` from the podman that runs the job, and the constraints
/// that waited for it.
async fn learn_podman_version(driver: &Driver, checked: &mut CheckedJob) -> Result<(), RunError> {
    let (name, url) = driver
        .sockets()
        .into_iter()
        .next()
        .map(|s| (s.name, s.url))
        .unwrap_or_default();
    let version = driver
        .ping(&name)
        .await
        .map_err(|e| RunError::PodmanUnreachable {
            socket: url,
            reason: e.to_string(),
        })?;
    checked.check_deferred(&version)
}

async fn run_connected(
    args: &RunArgs,
    job: Arc<Job>,
    node: Arc<BTreeMap<String, String>>,
    driver: Arc<Driver>,
    root: &Path,
) -> Result<i32, RunError> {
    let files = JobFiles::new(root, &job.id)?;
    make_way(args, &files, &job.id).await?;
    files.create_dir()?;
    remove_previous_allocations(&files).await;
    let me = ProcessIdentity::current().ok_or(RunError::NoProcessIdentity)?;
    statedir::write_private_file(&files.pid(), me.to_record().as_bytes())
        .map_err(RunError::io("cannot write", files.pid()))?;

    let (ui, printer) = Ui::start(
        use_color(args.no_color) && !args.detached_child,
        label_width(&job),
    );
    let result = supervise(args, job, node, driver, root, &files, &ui).await;
    ui.flush().await;
    drop(ui);
    let _ = printer.await;
    let _ = tokio::fs::remove_file(files.pid()).await;
    let _ = tokio::fs::remove_file(files.ready()).await;
    result
}

async fn supervise(
    args: &RunArgs,
    job: Arc<Job>,
    node: Arc<BTreeMap<String, String>>,
    driver: Arc<Driver>,
    root: &Path,
    files: &JobFiles,
    ui: &Ui,
) -> Result<i32, RunError> {
    let mut allocator = PortAllocator::default();
    let host_ip = args.host_ip.to_string();
    let mut allocations = Vec::new();
    for (group_index, group) in job.groups.iter().enumerate() {
        if group.tasks.is_empty() {
            continue;
        }
        for index in 0..group.count {
            let alloc = AllocIdentity {
                id: uuid::Uuid::new_v4().to_string(),
                index,
            };
            let dir = AllocDir::new(root, &job.id, &alloc.id);
            let ports =
                match &group.network {
                    Some(net) => allocator.allocate(&net.ports, &host_ip).map_err(|source| {
                        RunError::Ports {
                            group: group.name.clone(),
                            source,
                        }
                    })?,
                    None => Vec::new(),
                };
            let mut tasks: Vec<String> = group.tasks.iter().map(|t| t.name.clone()).collect();
            let mut logs = Vec::new();
            let mut log_flush = BTreeMap::new();
            dir.create(&tasks.iter().map(String::as_str).collect::<Vec<_>>())
                .await
                .map_err(RunError::io(
                    "cannot create the allocation directory",
                    &dir.root,
                ))?;
            if group
                .network
                .as_ref()
                .is_some_and(|n| n.mode == NetworkMode::Bridge)
            {
                tasks.push(INFRA_TASK.to_string());
            }
            for task in &group.tasks {
                let who = Who {
                    group: group.name.clone(),
                    index: (group.count > 1).then_some(index),
                    task: task.name.clone(),
                };
                let mut flush = FlushHandle::default();
                logs.push((
                    who.clone(),
                    dir.stdout(&task.name),
                    Stream::Stdout,
                    flush.add(),
                ));
                logs.push((who, dir.stderr(&task.name), Stream::Stderr, flush.add()));
                log_flush.insert(task.name.clone(), flush);
            }
            let ctx = AllocContext {
                job: job.clone(),
                group_index,
                alloc,
                dir,
                ports,
                bridge: None,
                node: node.clone(),
                driver: driver.clone(),
                ui: ui.clone(),
                log_flush,
                exits: Arc::default(),
            };
            allocations.push(Allocation { ctx, tasks, logs });
        }
    }
    let manifest = Manifest {
        job_id: job.id.clone(),
        allocations: allocations
            .iter()
            .map(|a| ManifestAlloc {
                id: a.ctx.alloc.id.clone(),
                group: a.ctx.group().name.clone(),
                index: a.ctx.alloc.index,
                count: a.ctx.group().count,
                dir: a.ctx.dir.root.clone(),
                tasks: a.ctx.group().tasks.iter().map(|t| t.name.clone()).collect(),
            })
            .collect(),
    };
    let manifest_path = Manifest::path(files);
    let manifest_json = serde_json::to_vec_pretty(&manifest).map_err(RunError::Encode)?;
    statedir::write_private_file(&manifest_path, &manifest_json)
        .map_err(RunError::io("cannot write", &manifest_path))?;
    ui.note(format!(
        "job {:?} ({}) from {}: {} allocation{}",
        job.id,
        job.job_type.as_str(),
        job.file.display(),
        allocations.len(),
        if allocations.len() == 1 { "" } else { "s" }
    ));
    for a in &allocations {
        let ports: Vec<String> = a
            .ctx
            .ports
            .iter()
            .map(|p| format!("{} {}:{}->{}", p.label, p.host_ip, p.value, p.to))
            .collect();
        let ports = if ports.is_empty() {
            String::new()
        } else {
            format!(", ports {}", ports.join(" "))
        };
        ui.note(format!(
            "{} is allocation {} in {}{ports}",
            a.ctx.alloc.name(&job, a.ctx.group()),
            a.ctx.alloc.id,
            a.ctx.dir.root.display()
        ));
    }

    // What `ps` shows once the run is over: each allocation's tasks and their exit codes.
    let recorded: Vec<(ManifestAlloc, TaskExits)> = manifest
        .allocations
        .iter()
        .cloned()
        .zip(allocations.iter().map(|a| a.ctx.exits.clone()))
        .collect();
    let bridge = allocations
        .iter()
        .any(|a| a.tasks.iter().any(|t| t == INFRA_TASK));
    let infra_image = match &args.infra_image {
        Some(image) => InfraImage::Given(image.clone()),
        None if bridge => {
            let client = driver
                .sockets()
                .first()
                .and_then(|s| driver.client(&s.name))
                .ok_or(RunError::NoSocket)?;
            InfraImage::Pause(
                crate::driver::image::pause::ensure(&client)
                    .await
                    .map_err(RunError::PauseImage)?,
            )
        }
        None => InfraImage::Pause(String::new()),
    };
    let (shutdown_tx, shutdown_rx) = watch::channel(Shutdown::Running);
    let first_signal = Arc::new(std::sync::atomic::AtomicI32::new(0));
    let signals = tokio::spawn(watch_signals(shutdown_tx, ui.clone(), first_signal.clone()));
    let events = tokio::spawn(show_driver_events(
        driver.clone(),
        ui.clone(),
        allocations
            .iter()
            .map(|a| (a.ctx.alloc.id.clone(), a.ctx.clone()))
            .collect(),
    ));
    let (started_tx, mut started_rx) = mpsc::unbounded_channel();
    let total = allocations.len();
    let mut handles = Vec::new();
    for allocation in allocations {
        handles.push(tokio::spawn(run_allocation(
            allocation,
            infra_image.clone(),
            shutdown_rx.clone(),
            started_tx.clone(),
        )));
    }
    drop(started_tx);
    if args.detached_child {
        let ready = files.ready();
        tokio::spawn(async move {
            for _ in 0..total {
                if started_rx.recv().await.is_none() {
                    break;
                }
            }
            let _ = statedir::write_private_file(&ready, std::process::id().to_string().as_bytes());
        });
    }
    let mut outcomes = Vec::new();
    for h in handles {
        outcomes.push(h.await.unwrap_or(AllocOutcome::Failed {
            task: "(runner task panicked)".into(),
        }));
    }
    signals.abort();
    events.abort();
    let failed: Vec<&String> = outcomes
        .iter()
        .filter_map(|o| match o {
            AllocOutcome::Failed { task } => Some(task),
            _ => None,
        })
        .collect();
    let stopped = outcomes.contains(&AllocOutcome::Stopped);
    let (status, code) = if !failed.is_empty() {
        ui.note(format!(
            "job {:?} failed: task {} failed",
            job.id,
            failed
                .iter()
                .map(|t| format!("{t:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        ("failed", exit_code::TASK_FAILED)
    } else if stopped {
        ui.note(format!("job {:?} stopped", job.id));
        // A batch job cut short by a signal did not do its work: 128 + the signal, as
        // shells and CI runners expect (a service job stopping is its normal end).
        let signal = first_signal.load(std::sync::atomic::Ordering::SeqCst);
        let batch = matches!(job.job_type, JobType::Batch | JobType::Sysbatch);
        (
            "stopped",
            if batch && signal > 0 {
                128 + signal
            } else {
                exit_code::OK
            },
        )
    } else {
        ui.note(format!("job {:?} complete", job.id));
        ("complete", exit_code::OK)
    };
    let outcome = Outcome {
        job_id: job.id.clone(),
        status: status.to_string(),
        exit_code: code,
        finished_at: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        tasks: recorded
            .iter()
            .flat_map(|(alloc, exits)| {
                let exits = exits.lock().map(|e| e.clone()).unwrap_or_default();
                alloc.tasks.iter().map(move |task| OutcomeTask {
                    group: alloc.group.clone(),
                    alloc_id: alloc.id.clone(),
                    alloc_index: alloc.index,
                    task: task.clone(),
                    exit_code: exits.get(task).copied(),
                })
            })
            .collect(),
    };
    if let Ok(json) = serde_json::to_vec_pretty(&outcome) {
        let path = Outcome::path(files);
        if let Err(e) = statedir::write_private_file(&path, &json) {
            ui.note(format!("cannot write {}: {e}", path.display()));
        }
    }
    Ok(code)
}

/// Per task of an allocation: its last exit code.
type TaskExits = Arc<std::sync::Mutex<BTreeMap<String, i32>>>;

/// One allocation: its log followers, its network namespace (bridge), its tasks.
async fn run_allocation(
    allocation: Allocation,
    infra_image: InfraImage,
    shutdown: watch::Receiver<Shutdown>,
    started: mpsc::UnboundedSender<()>,
) -> AllocOutcome {
    let Allocation {
        mut ctx,
        tasks,
        logs,
    } = allocation;
    let stop_following = CancellationToken::new();
    let mut followers = Vec::new();
    for (who, path, stream, flush) in logs {
        let ui = ctx.ui.clone();
        followers.push(tokio::spawn(follow(
            ctx.dir.shared(),
            path,
            stop_following.clone(),
            Some(flush),
            move |line| ui.output(&who, stream, line),
        )));
    }
    let bridge = tasks.iter().any(|t| t == INFRA_TASK);
    if bridge {
        match infra::start(&ctx, &infra_image).await {
            Ok(ns) => {
                ctx.ui.note(format!(
                    "{}: network namespace held by {}",
                    ctx.alloc.name(&ctx.job, ctx.group()),
                    ns.container_name
                ));
                ctx.bridge = Some(ns);
            }
            Err(e) => {
                ctx.ui.note(format!(
                    "{}: cannot create the group network: {e}",
                    ctx.alloc.name(&ctx.job, ctx.group())
                ));
                infra::stop(&ctx).await;
                stop_following.cancel();
                let _ = started.send(());
                return AllocOutcome::Failed {
                    task: INFRA_TASK.to_string(),
                };
            }
        }
    }
    let poststop = super::task_runner::poststop_specs(&ctx).await;
    if !poststop.is_empty() {
        if let Ok(json) = serde_json::to_vec(&poststop) {
            let path = ctx.dir.root.join(state::POSTSTOP_FILE);
            if let Err(e) = statedir::write_private_file(&path, &json) {
                ctx.ui.note(format!(
                    "cannot write {}: {e} (stop without a runner will skip poststop tasks)",
                    path.display()
                ));
            }
        }
    }
    let ctx = Arc::new(ctx);
    let outcome = run_alloc(ctx.clone(), shutdown, started).await;
    if bridge {
        infra::stop(&ctx).await;
    }
    stop_following.cancel();
    for f in followers {
        let _ = f.await;
    }
    outcome
}

/// SIGINT (Ctrl-C) and SIGTERM (`stop`): first a graceful stop, then a forced one.
async fn watch_signals(
    shutdown: watch::Sender<Shutdown>,
    ui: Ui,
    first_signal: Arc<std::sync::atomic::AtomicI32>,
) {
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    let mut next = Shutdown::Graceful;
    loop {
        let number = tokio::select! {
            _ = int.recv() => libc::SIGINT,
            _ = term.recv() => libc::SIGTERM,
        };
        let _ = first_signal.compare_exchange(
            0,
            number,
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
        );
        match next {
            Shutdown::Graceful => {
                ui.note("stopping the job in Nomad's order (press Ctrl-C again to force)")
            }
            _ => ui.note("forcing: removing every container now, poststop tasks are skipped"),
        }
        let _ = shutdown.send(next);
        next = Shutdown::Force;
    }
}

/// Shows the core's task events (image pulls and the like) as status lines.
async fn show_driver_events(driver: Arc<Driver>, ui: Ui, allocs: BTreeMap<String, AllocContext>) {
    let mut events = driver.subscribe_events();
    loop {
        match events.recv().await {
            Ok(event) => {
                if let Some(ctx) = allocs.get(&event.alloc_id) {
                    let who = ctx.who(&event.task_name);
                    if event.annotations.contains_key(PULL_PROGRESS_ANNOTATION) {
                        ui.progress(&who, event.message);
                    } else {
                        ui.status(&who, event.message);
                    }
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Before a job starts: a running instance of it (a live runner, or containers a dead one
/// left) is refused, or with `--replace` stopped the way `stop` stops it (Nomad's order,
/// poststop tasks included). `run --detach` does this before it starts its background
/// runner, so the old runner's log is not replaced while it still writes it.
pub async fn make_way(args: &RunArgs, files: &JobFiles, job: &str) -> Result<(), RunError> {
    let running = match state::is_running(&args.connection, files, job).await {
        // No podman answers yet and none was named: `run` starts the embedded service
        // (and checks again once connected); no container can be running without it.
        Err(RunError::PodmanUnreachable { .. }) if args.connection.socket.is_none() => false,
        other => other?,
    };
    if !running {
        return Ok(());
    }
    if !args.replace {
        return Err(RunError::AlreadyRunning {
            job: job.to_string(),
            bin: args.connection.invocation(),
        });
    }
    crate::outln!("==> job {job:?} is running; replacing it: stopping it first (as `stop` does)");
    state::stop_running(&args.connection, files, job).await?;
    crate::outln!(
        "==> job {job:?} stopped; starting it from {}",
        args.file.display()
    );
    Ok(())
}

/// The previous run's allocation dirs (kept for `logs`) make way for this run's; the
/// runner log of a `--detach` parent that is starting us stays.
async fn remove_previous_allocations(files: &JobFiles) {
    let Ok(mut entries) = tokio::fs::read_dir(&files.dir).await else {
        return;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        if entry.file_type().await.is_ok_and(|t| t.is_dir()) {
            let _ = tokio::fs::remove_dir_all(entry.path()).await;
        }
    }
    let _ = tokio::fs::remove_file(Manifest::path(files)).await;
    let _ = tokio::fs::remove_file(Outcome::path(files)).await;
}

fn label_width(job: &Job) -> usize {
    job.groups
        .iter()
        .flat_map(|g| {
            g.tasks.iter().map(move |t| {
                let index = if g.count > 1 {
                    format!("[{}]", g.count - 1).len()
                } else {
                    0
                };
                g.name.len() + 1 + t.name.len() + index
            })
        })
        .max()
        .unwrap_or(0)
        .max("runner".len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_name_one_directory_under_the_root() {
        let root = Path::new("/state");
        assert_eq!(
            JobFiles::new(root, "web").unwrap().dir,
            PathBuf::from("/state/web")
        );
        for id in ["../etc", "a/b", "..", ".", "/abs", "", "web/"] {
            let err = JobFiles::new(root, id)
                .err()
                .unwrap_or_else(|| panic!("{id:?}"));
            assert!(err.to_string().contains("one path component"), "{err}");
        }
    }
}

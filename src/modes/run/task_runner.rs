//! One task of one allocation, from first start to its end: templates, environment,
//! task-time interpolation, start through the core, wait, kill on request, and Nomad's
//! restart policy.

use crate::driver::logs::SinkKind;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::driver::error::DriverError;
use crate::driver::model::ExitResult;
use crate::driver::task::{
    DnsSpec, IpcMode, NetworkMode as TaskNetworkMode, PortSpec as CorePortSpec, TaskConfig,
    TaskContext, TaskResources, TaskSpec,
};
use crate::driver::Driver;

use super::alloc::AllocDir;
use super::artifact;
use super::check::decode_config;
use super::env::{task_env, AllocIdentity, BridgeInfo, EnvInputs};
use super::interpolate::{interpolate, interpolate_value, Scope};
use super::labels;
use super::logs::FlushHandle;
use super::model::{duration_text, Group, Job, NetworkMode, Task};
use super::ports::AllocatedPort;
use super::restart::{Decision, RestartTracker};
use super::template::parse_env_file;
use super::template_watch::{self, RenderInputs, Watched};
use super::ui::{Ui, Who};

/// Everything the tasks of one allocation share.
#[derive(Clone)]
pub struct AllocContext {
    pub job: Arc<Job>,
    pub group_index: usize,
    pub alloc: AllocIdentity,
    pub dir: AllocDir,
    pub ports: Vec<AllocatedPort>,
    /// Set for a group bridge network once the namespace holder runs.
    pub bridge: Option<BridgeNamespace>,
    pub node: Arc<BTreeMap<String, String>>,
    pub driver: Arc<Driver>,
    pub ui: Ui,
    /// Per task: makes its log followers catch up before a status line.
    pub log_flush: BTreeMap<String, FlushHandle>,
    /// Per task: its last exit code, kept in the job's outcome for `ps` after the run.
    pub exits: Arc<std::sync::Mutex<BTreeMap<String, i32>>>,
}

/// The container holding a bridge group's network namespace.
#[derive(Debug, Clone)]
pub struct BridgeNamespace {
    pub container_name: String,
    pub info: BridgeInfo,
}

impl AllocContext {
    pub fn group(&self) -> &Group {
        &self.job.groups[self.group_index]
    }

    /// Whether another task joins this task's namespaces (`network_mode`/`ipc_mode` =
    /// `task:NAME`), so its container must outlive theirs.
    pub fn is_namespace_target(&self, task: &str) -> bool {
        // Read from the job as written: the options are interpolated per task later.
        let text = |t: &Task, key: &str| {
            t.config
                .get(key)
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        self.group().tasks.iter().any(|t| {
            let network =
                text(t, "network_mode").and_then(|m| TaskNetworkMode::parse_text(&m).ok());
            let ipc = text(t, "ipc_mode").and_then(|m| IpcMode::parse_text(&m).ok());
            matches!(network, Some(TaskNetworkMode::Task(name)) if name == task)
                || matches!(ipc, Some(IpcMode::Task(name)) if name == task)
        })
    }

    /// Lets the task's log followers pass on everything written so far.
    pub async fn flush_logs(&self, task: &str) {
        if let Some(flush) = self.log_flush.get(task) {
            flush.flush().await;
        }
    }

    pub fn who(&self, task: &str) -> Who {
        let group = self.group();
        Who {
            group: group.name.clone(),
            index: (group.count > 1).then_some(self.alloc.index),
            task: task.to_string(),
        }
    }
}

/// What a task runner tells its allocation's lifecycle coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskUpdate {
    /// The container runs (again).
    Running,
    /// The task is finished for good; `failed` when it ended in failure. `container` is
    /// the task id of its last container, left for the coordinator to remove: containers
    /// that joined its network namespace must go first.
    Dead {
        failed: bool,
        container: Option<String>,
    },
}

/// How a task runner is asked to stop.
#[derive(Debug, Clone)]
pub struct StopTokens {
    /// Stop gracefully: kill_signal, then SIGKILL after kill_timeout.
    pub kill: CancellationToken,
    /// Stop now (second Ctrl-C): remove the container at once.
    pub force: CancellationToken,
}

pub async fn run_task(
    ctx: Arc<AllocContext>,
    task_index: usize,
    stop: StopTokens,
    updates: mpsc::UnboundedSender<(usize, TaskUpdate)>,
) {
    let task = &ctx.group().tasks[task_index];
    let who = ctx.who(&task.name);
    let mut container = None;
    let failed = run_attempts(&ctx, task, &who, &stop, &mut container, |u| {
        let _ = updates.send((task_index, u));
    })
    .await;
    let _ = updates.send((task_index, TaskUpdate::Dead { failed, container }));
}

/// Removes a task's container (already exited or killed).
pub async fn remove(ctx: &AllocContext, who: &Who, task_id: &str) {
    match ctx.driver.destroy(task_id, true).await {
        Ok(()) | Err(DriverError::TaskNotFound(_)) => {}
        Err(e) => ctx
            .ui
            .status(who, format!("Could not remove the container: {e}")),
    }
}

/// Runs the task until it is done; returns whether it failed. `leftover` is the task id
/// of the last container, not yet removed.
async fn run_attempts(
    ctx: &AllocContext,
    task: &Task,
    who: &Who,
    stop: &StopTokens,
    leftover: &mut Option<String>,
    report: impl Fn(TaskUpdate),
) -> bool {
    let ui = &ctx.ui;
    let mut tracker = RestartTracker::new(task.restart, ctx.job.job_type, task.lifecycle);
    // Once per task, as Nomad's artifact hook: a restart keeps what was fetched.
    if let Err(message) = fetch_artifacts(ctx, task, who).await {
        ui.status(who, format!("Setup failure: {message}"));
        return true;
    }
    let mut attempt = 0u32;
    loop {
        if stop.kill.is_cancelled() {
            return false;
        }
        // The previous container must go before a new one can take its name.
        if let Some(old) = leftover.take() {
            remove(ctx, who, &old).await;
        }
        attempt += 1;
        let (spec, templates) = match prepare(ctx, task, attempt).await {
            Ok(prepared) => prepared,
            Err(message) => {
                ui.status(who, format!("Setup failure: {message}"));
                return true;
            }
        };
        let task_id = spec.context.id.clone();
        let container = spec.container_name();
        let started = tokio::select! {
            r = ctx.driver.start(spec) => r,
            _ = stop.force.cancelled() => return false,
        };
        let decision = match started {
            Err(e) => {
                ui.status(who, format!("Driver failure: {e}"));
                if e.is_recoverable() {
                    tracker.on_start_error(Instant::now())
                } else {
                    Decision::Fail {
                        reason: "the error is not recoverable".into(),
                    }
                }
            }
            Ok(_) => {
                report(TaskUpdate::Running);
                ui.status(who, format!("Started (container {container})"));
                let restart = CancellationToken::new();
                let watch = template_watch::watch(
                    templates.watched,
                    templates.inputs,
                    TaskActions {
                        ctx,
                        who,
                        task_id: &task_id,
                    },
                    restart.clone(),
                );
                // The watch ends with the container: dropped when the wait returns.
                let (exit, ended) = tokio::select! {
                    r = wait_or_kill(ctx, task, who, &task_id, stop, &restart) => r,
                    never = watch => match never {},
                };
                if ctx.is_namespace_target(&task.name) {
                    *leftover = Some(task_id);
                } else {
                    // Removing drains the task's output into its log files first.
                    remove(ctx, who, &task_id).await;
                }
                ctx.flush_logs(&task.name).await;
                if let Ok(mut exits) = ctx.exits.lock() {
                    exits.insert(task.name.clone(), exit.exit_code);
                }
                ui.status(who, describe_exit(&exit));
                match ended {
                    Ended::Exited => tracker.on_exit(exit.successful(), Instant::now()),
                    Ended::Killed => return false,
                    // As Nomad's template restart: at once, and no failure for the policy.
                    Ended::TemplateRestart => {
                        ui.status(
                            who,
                            "Restarting: template re-rendered (not counted against the restart policy)",
                        );
                        continue;
                    }
                }
            }
        };
        match decision {
            Decision::Done => return false,
            Decision::Fail { reason } => {
                ui.status(who, format!("Not restarting: {reason}"));
                return true;
            }
            Decision::Restart { delay, reason } => {
                ui.status(
                    who,
                    format!(
                        "Restarting in {} ({reason})",
                        duration_text::format(round_ms(delay))
                    ),
                );
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.kill.cancelled() => return false,
                }
            }
        }
    }
}

/// Why a container ended.
enum Ended {
    Exited,
    /// The runner stopped it for good.
    Killed,
    /// The runner stopped it to start it again with re-rendered templates.
    TemplateRestart,
}

/// Waits for the task to exit; on a stop request or a template restart, stops it and
/// waits for that.
async fn wait_or_kill(
    ctx: &AllocContext,
    task: &Task,
    who: &Who,
    task_id: &str,
    stop: &StopTokens,
    restart: &CancellationToken,
) -> (ExitResult, Ended) {
    let driver = &ctx.driver;
    let mut ended = Ended::Killed;
    tokio::select! {
        exit = driver.wait(task_id) => return (exit_or_error(exit), Ended::Exited),
        _ = stop.kill.cancelled() => {}
        _ = stop.force.cancelled() => {}
        _ = restart.cancelled() => ended = Ended::TemplateRestart,
    }
    if !stop.force.is_cancelled() {
        let signal = task.kill_signal.as_deref().unwrap_or("SIGTERM");
        ui_kill(&ctx.ui, who, signal, task.kill_timeout);
        tokio::select! {
            r = driver.stop(task_id, task.kill_timeout, task.kill_signal.as_deref()) => {
                if let Err(e) = r {
                    ctx.ui.status(who, format!("Stopping failed: {e}"));
                }
            }
            _ = stop.force.cancelled() => {}
        }
    }
    if stop.force.is_cancelled() {
        ctx.ui.status(who, "Force-removing");
        // Waiting first means the exit is seen before the container is removed.
        let (exit, _) = tokio::join!(driver.wait(task_id), driver.destroy(task_id, true));
        return (exit_or_error(exit), Ended::Killed);
    }
    (exit_or_error(driver.wait(task_id).await), ended)
}

fn ui_kill(ui: &Ui, who: &Who, signal: &str, timeout: Duration) {
    ui.status(
        who,
        format!(
            "Killing: sending {signal}, SIGKILL after {}",
            duration_text::format(timeout)
        ),
    );
}

fn exit_or_error(r: Result<ExitResult, DriverError>) -> ExitResult {
    r.unwrap_or_else(|e| ExitResult {
        exit_code: -1,
        signal: 0,
        oom_killed: false,
        err: Some(e.to_string()),
    })
}

fn describe_exit(exit: &ExitResult) -> String {
    let mut text = format!("Exited with code {}", exit.exit_code);
    if exit.signal != 0 {
        text.push_str(&format!(", signal {}", exit.signal));
    }
    if exit.oom_killed {
        text.push_str(", killed by the OOM killer");
    }
    if let Some(err) = &exit.err {
        text.push_str(&format!(": {err}"));
    }
    text
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64 / 100 * 100)
}

/// Renders templates, builds the environment and the task spec for one start.
/// The allocation's poststop tasks as they would start now, for `stop` to run them when
/// this runner is gone (written next to the allocation as `poststop.json`).
pub async fn poststop_specs(ctx: &AllocContext) -> Vec<TaskSpec> {
    let mut specs = Vec::new();
    for task in ctx
        .group()
        .tasks
        .iter()
        .filter(|t| t.stage() == super::model::Stage::Poststop)
    {
        if let Ok((spec, _)) = prepare(ctx, task, 1).await {
            specs.push(spec);
        }
    }
    specs
}

async fn prepare(
    ctx: &AllocContext,
    task: &Task,
    attempt: u32,
) -> Result<(TaskSpec, Templates), String> {
    let job = &ctx.job;
    let group = ctx.group();
    let bridge_info = ctx.bridge.as_ref().map(|b| &b.info);
    let env_inputs = |template_env: &BTreeMap<String, String>| {
        task_env(&EnvInputs {
            job,
            group,
            task,
            alloc: &ctx.alloc,
            ports: &ctx.ports,
            bridge: bridge_info,
            node: &ctx.node,
            template_env,
        })
    };
    let base_env = env_inputs(&BTreeMap::new());
    let (template_env, templates) = render_templates(ctx, task, &base_env).await?;
    let env = if template_env.is_empty() {
        base_env
    } else {
        env_inputs(&template_env)
    };

    let scope = Scope {
        env: Some(&env),
        node: Some(&ctx.node),
    };
    let config_value = interpolate_value(&task.config, &scope);
    let mut config: TaskConfig = decode_config(task, &config_value).map_err(|e| e.to_string())?;
    let bridge = ctx.bridge.as_ref();
    // Nomad puts every task of a bridge group into the allocation's namespace, whose
    // holder publishes the group's ports, and ignores the task's own network settings.
    let network_container = bridge.map(|ns| ns.container_name.clone());
    let default_network_mode = group
        .network
        .as_ref()
        .is_some_and(|n| n.mode == NetworkMode::None)
        .then_some(TaskNetworkMode::None);
    config.labels.extend(labels::task_labels(
        job, group, task, &ctx.alloc, &ctx.dir, &ctx.ports,
    ));

    let has_network = group.network.is_some();
    let user = task
        .user
        .as_deref()
        .map(|u| interpolate(u, &scope))
        .unwrap_or_default();
    let context = TaskContext {
        id: format!("{}/{}/{attempt}", ctx.alloc.id, task.name),
        name: task.name.clone(),
        alloc_id: ctx.alloc.id.clone(),
        job_name: job.name.clone(),
        job_id: job.id.clone(),
        task_group_name: group.name.clone(),
        namespace: job.namespace.clone(),
        node_name: ctx
            .node
            .get("node.unique.name")
            .cloned()
            .unwrap_or_default(),
        node_id: ctx.node.get("node.unique.id").cloned().unwrap_or_default(),
        env,
        user,
        resources: resources(task, &ctx.node),
        alloc_dir: Some(ctx.dir.shared()),
        task_dir: Some(ctx.dir.task_dir(&task.name)),
        local_dir: Some(ctx.dir.local(&task.name)),
        secrets_dir: Some(ctx.dir.secrets(&task.name)),
        ports: (has_network && bridge.is_none()).then(|| core_ports(&ctx.ports)),
        network_container,
        default_network_mode,
        dns: group
            .network
            .as_ref()
            .and_then(|n| n.dns.as_ref())
            .map(|d| DnsSpec {
                servers: d.servers.clone(),
                searches: d.searches.clone(),
                options: d.options.clone(),
            }),
        // `disabled`: as in Nomad, nothing of the output is kept (podman still has its own log).
        stdout_path: (!task.logs.disabled).then(|| ctx.dir.stdout(&task.name)),
        stderr_path: (!task.logs.disabled).then(|| ctx.dir.stderr(&task.name)),
        log_sink: SinkKind::File,
        log_rotation: Some(task.logs.rotation),
        journal_path: (!task.logs.disabled).then(|| ctx.dir.journal(&task.name)),
        kill_signal: task.kill_signal.clone(),
        kill_timeout: task.kill_timeout,
        ..TaskContext::default()
    };
    Ok((TaskSpec { config, context }, templates))
}

pub fn core_ports(ports: &[AllocatedPort]) -> Vec<CorePortSpec> {
    ports
        .iter()
        .map(|p| CorePortSpec {
            label: p.label.clone(),
            value: p.value,
            to: p.to,
            host_ip: p.host_ip.clone(),
        })
        .collect()
}

fn resources(task: &Task, node: &BTreeMap<String, String>) -> TaskResources {
    let total_mhz: f64 = node
        .get("attr.cpu.totalcompute")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    TaskResources {
        cpu_shares: u64::from(task.resources.cpu),
        cpuset_cpus: String::new(),
        memory_mb: task.resources.memory_mb as i64,
        memory_max_mb: task.resources.memory_max_mb.unwrap_or(0),
        percent_ticks: if total_mhz > 0.0 {
            (f64::from(task.resources.cpu) / total_mhz).min(1.0)
        } else {
            0.0
        },
    }
}

/// Fetches the task's artifacts into its directory, in the order written.
async fn fetch_artifacts(ctx: &AllocContext, task: &Task, who: &Who) -> Result<(), String> {
    if task.artifacts.is_empty() {
        return Ok(());
    }
    let env = task_env(&EnvInputs {
        job: &ctx.job,
        group: ctx.group(),
        task,
        alloc: &ctx.alloc,
        ports: &ctx.ports,
        bridge: ctx.bridge.as_ref().map(|b| &b.info),
        node: &ctx.node,
        template_env: &BTreeMap::new(),
    });
    let scope = Scope {
        env: Some(&env),
        node: Some(&ctx.node),
    };
    for spec in &task.artifacts {
        let place = artifact::fetch(spec, &ctx.dir, &task.name, &scope)
            .await
            .map_err(|e| {
                format!(
                    "failed to download artifact {:?} ({}): {e}",
                    spec.source, spec.location
                )
            })?;
        let shown = place
            .strip_prefix(ctx.dir.task_dir(&task.name))
            .unwrap_or(&place);
        ctx.ui.status(
            who,
            format!("Downloaded artifact {} to {}", spec.source, shown.display()),
        );
    }
    Ok(())
}

/// Renders the task's templates into its directory; returns the env of `env = true` ones
/// and the templates as rendered, for the watch while the task runs.
async fn render_templates(
    ctx: &AllocContext,
    task: &Task,
    env: &BTreeMap<String, String>,
) -> Result<(BTreeMap<String, String>, Templates), String> {
    let mut template_env = BTreeMap::new();
    // Nomad's `env` template function also reads the node's facts: `{{ env
    // "node.datacenter" }}`, `{{ env "meta.rack" }}`, `{{ env "attr.kernel.name" }}`.
    let mut lookup = (*ctx.node).clone();
    lookup.extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let inputs = RenderInputs {
        env: Arc::new(lookup),
        task_dir: ctx.dir.task_dir(&task.name),
        alloc_root: ctx.dir.root.clone(),
    };
    let mut watched = Vec::new();
    for spec in &task.templates {
        let where_ = format!("template {} ({})", spec.destination, spec.location);
        let (rendered, read) = template_watch::render(spec, &inputs).await;
        let rendered = rendered.map_err(|e| format!("{where_}: {e}"))?;
        let scope = Scope {
            env: Some(env),
            node: Some(&ctx.node),
        };
        let destination = interpolate(&spec.destination, &scope);
        let path: PathBuf = ctx
            .dir
            .template_destination(&task.name, &destination)
            .ok_or_else(|| format!("{where_}: the destination leaves the allocation directory"))?;
        // Stamped before the write: a change from here on is seen by the first poll.
        let known = read.clone();
        let stamps = tokio::task::spawn_blocking(move || template_watch::stamps(&known))
            .await
            .map_err(|e| format!("{where_}: {e}"))?;
        template_watch::write(
            &ctx.dir.root,
            path.clone(),
            rendered.clone().into_bytes(),
            spec,
        )
        .await
        .map_err(|e| format!("{where_}: {e}"))?;
        if spec.env {
            template_env.extend(parse_env_file(&rendered).map_err(|e| format!("{where_}: {e}"))?);
        }
        watched.push(Watched {
            spec: spec.clone(),
            path,
            destination,
            output: rendered,
            inputs: read,
            stamps,
        });
    }
    Ok((template_env, Templates { watched, inputs }))
}

/// A task's templates as rendered for one start, and what they render with.
pub struct Templates {
    watched: Vec<Watched>,
    inputs: RenderInputs,
}

/// The watcher's hands on the running task.
struct TaskActions<'a> {
    ctx: &'a AllocContext,
    who: &'a Who,
    task_id: &'a str,
}

impl template_watch::Actions for TaskActions<'_> {
    fn status(&self, line: String) {
        self.ctx.ui.status(self.who, line);
    }

    async fn signal(&self, signal: String) -> Result<(), String> {
        self.ctx
            .driver
            .signal(self.task_id, &signal)
            .await
            .map_err(|e| e.to_string())
    }
}

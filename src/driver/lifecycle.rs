//! Starting, recovering, stopping and removing tasks.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::gates;
use super::handle::{LogTarget, TaskState, TASK_STATE_VERSION};
use super::hostfs;
use super::image::{ImageProgress, ImageRequest, Platform, RegistryAuth};
use super::logs::{
    self, FileEvents, LogCursor, LogForwardConfig, LogForwarder, LogSource, PositionFile, Sinks,
};
use super::model::{DriverNetwork, ExitResult, TaskRunState, TaskStatus, PULL_PROGRESS_ANNOTATION};
use super::monitor::{ExitState, Monitor};
use super::netcheck;
use super::netns_keeper;
use super::podman::{ContainerInspect, DeleteOptions, PodmanClient, PodmanError};
use super::spec;
use super::task::{MountKind, TaskSpec};
use super::{Driver, DriverError, HostFacts, Socket, StartedTask, Task, KILL_SETTLE};

/// How many times a start creates a container that came up without its network (see
/// `netcheck`) before it gives up.
const NETWORK_ATTEMPTS: usize = 3;

/// How long a refused signal waits for the exit of a container podman still calls running.
const EXITING_SETTLE: Duration = Duration::from_secs(3);

impl Driver {
    /// Starts a task: resolves (pulls) its image, creates a labelled container and starts
    /// it. A running container of the same name (a start that was interrupted) is adopted;
    /// a stopped one is removed first. On failure nothing is left behind.
    pub async fn start(&self, spec: TaskSpec) -> Result<StartedTask, DriverError> {
        let task_id = spec.context.id.clone();
        if self.read_tasks().contains_key(&task_id) {
            return Err(DriverError::AlreadyStarted(task_id));
        }
        let socket = self.socket(&spec.config.socket).cloned().ok_or_else(|| {
            DriverError::UnknownSocket {
                task: task_id.clone(),
                socket: spec.config.socket.clone(),
            }
        })?;
        // A config from `TaskConfig::from_value` is valid already; the runner and the
        // conformance harness change decoded configs, so the cross-option checks run once
        // more here, before anything touches podman.
        spec.config.validate().map_err(|e| DriverError::Spec {
            task: task_id.clone(),
            source: e.into(),
        })?;
        let facts = self
            .facts(&socket)
            .await
            .map_err(DriverError::podman(&task_id, "ask podman about its host"))?;
        // Built once, before podman is touched, so every refusal comes first; the create
        // attempts only fill in the image.
        let body = self.build_spec(&spec, &facts).await?;
        self.check_join_targets(&spec, &socket).await?;

        // The sinks are opened before the container exists: a sink that is not what the
        // orchestrator made fails the start with nothing to clean up.
        let log_mode = spec::log_mode(&spec.config, &self.config);
        let log = LogTarget {
            forward: log_mode.collect,
            stdout_path: spec.context.stdout_path.clone(),
            stderr_path: spec.context.stderr_path.clone(),
            journal_path: spec.context.journal_path.clone(),
            root: spec.context.alloc_dir.clone(),
            sink_kind: spec.context.log_sink,
            rotation: spec.context.log_rotation,
            task_dir: spec.context.task_dir.clone(),
        };
        let sinks = if log.forward && has_sinks(&log) {
            Some(
                logs::open_sinks(&log, None).map_err(|source| DriverError::Logs {
                    task: task_id.clone(),
                    source,
                })?,
            )
        } else {
            None
        };

        let name = spec.container_name();
        let holds_netns_keeper = netns_keeper::needed(&facts, &body);
        if holds_netns_keeper {
            if let Err(e) = socket
                .netns_keeper
                .acquire(&socket.client, &self.proc_root)
                .await
            {
                self.emit(
                    &spec.context,
                    format!("{e}; starting without it (the network is checked after the start)"),
                );
            }
        }
        let inspect = match self.create_and_start(&spec, &socket, &facts, body).await {
            Ok(inspect) => inspect,
            Err(e) => {
                if holds_netns_keeper {
                    self.release_netns_keeper(&socket).await;
                }
                return Err(e);
            }
        };
        let state = TaskState {
            version: TASK_STATE_VERSION,
            task_id: task_id.clone(),
            task_name: spec.context.name.clone(),
            alloc_id: spec.context.alloc_id.clone(),
            container_id: inspect.id.clone(),
            container_name: name,
            socket: socket.config.name.clone(),
            started_at: inspect.state.started_at().unwrap_or_else(SystemTime::now),
            log,
            network: Some(DriverNetwork {
                port_map: spec.config.port_map.clone(),
                ip: task_ip(&inspect, spec::custom_network(&spec)),
                auto_advertise: true,
            }),
            image_id: inspect.image.clone(),
            kill_signal: spec.context.kill_signal.clone(),
        };
        let network = state.network.clone();
        // Everything the container ever logged is this task's: podman's StartedAt can be a
        // moment later than the first line's timestamp, so starting there could drop it.
        let logs = sinks.map(|mut sinks| {
            // Rotating sinks open new files while the task runs: a link planted where the
            // next one goes is the task's news, not only a line on the driver's stderr.
            if state.log.rotation.is_some() {
                sinks.set_report(self.sink_report(&state));
            }
            LogStart {
                sinks,
                cursor: LogCursor::at(SystemTime::UNIX_EPOCH),
                position: self.position_file(&state),
            }
        });
        self.register(
            state.clone(),
            socket,
            ExitState::Running,
            logs,
            holds_netns_keeper,
        );
        Ok(StartedTask { state, network })
    }

    /// With `allow_privileged = false` a task joins the namespaces of its own allocation's
    /// containers only (by podman's record of their allocation label).
    async fn check_join_targets(
        &self,
        spec: &TaskSpec,
        socket: &Socket,
    ) -> Result<(), DriverError> {
        let task_id = spec.context.id.as_str();
        let spec_error = |source| DriverError::Spec {
            task: task_id.to_string(),
            source,
        };
        let alloc_id = spec.context.alloc_id.as_str();
        for (option, target) in gates::join_targets(&spec.config, &self.config) {
            let same_alloc = match socket.client.container_inspect(target).await {
                Ok(found) => {
                    !alloc_id.is_empty()
                        && found
                            .config
                            .labels
                            .get(&format!("{}alloc_id", spec::LABEL_PREFIX))
                            == Some(&alloc_id.to_string())
                }
                Err(e) if e.is_not_found() => false,
                Err(e) => {
                    return Err(DriverError::podman(
                        task_id,
                        "look up the container to join",
                    )(e))
                }
            };
            if !same_alloc {
                return Err(spec_error(gates::foreign_container(option, target)));
            }
        }
        Ok(())
    }

    /// The container spec of a task, its image left for the create attempts to fill in.
    /// Off the async threads: with `volumes.enabled = false` it resolves host paths on
    /// disk.
    async fn build_spec(
        &self,
        spec: &TaskSpec,
        facts: &HostFacts,
    ) -> Result<spec::SpecGenerator, DriverError> {
        let (task, config, facts) = (spec.clone(), self.config.clone(), facts.clone());
        let built = tokio::task::spawn_blocking(move || spec::build(&task, &config, &facts, ""))
            .await
            .map_err(|e| DriverError::Io {
                task: spec.context.id.clone(),
                context: "building the container spec failed",
                // As tokio's own blocking file operations report a lost worker.
                source: std::io::Error::other(e),
            })?;
        built.map_err(|source| DriverError::Spec {
            task: spec.context.id.clone(),
            source,
        })
    }

    /// Creates and starts the task's container, in as few calls as podman allows: the
    /// image is left to create to find, and the name is looked up only when it is taken.
    /// A running container of that name (a start that was interrupted) is adopted; a
    /// stopped one is removed first.
    async fn create_and_start(
        &self,
        spec: &TaskSpec,
        socket: &Arc<Socket>,
        facts: &HostFacts,
        mut body: spec::SpecGenerator,
    ) -> Result<ContainerInspect, DriverError> {
        let task_id = spec.context.id.as_str();
        let client = &socket.client;
        if let Some(network) = spec::custom_network(spec) {
            let exists = client
                .network_exists(network)
                .await
                .map_err(DriverError::podman(task_id, "check the task's network"))?;
            if !exists {
                return Err(DriverError::NetworkNotFound {
                    task: task_id.to_string(),
                    network: network.to_string(),
                });
            }
        }
        let request = image_request(spec);
        let (mut image, mut image_checked) = match request.local_name() {
            Some(name) => (name, false),
            None => (self.prepare_image(spec, socket, &request).await?, true),
        };
        self.ensure_volumes(spec, socket).await?;
        // Held until the mounts are verified, so what was checked cannot be swapped.
        let pinned_volumes =
            spec::pin_volume_sources(spec, &self.config).map_err(|source| DriverError::Spec {
                task: task_id.to_string(),
                source,
            })?;
        let mut name_cleared = false;
        for attempt in 1..=NETWORK_ATTEMPTS {
            let created = loop {
                body.image = image.clone();
                match client.container_create(&body).await {
                    Ok(created) => break created,
                    Err(e) if e.is_image_unknown() && !image_checked => {
                        image = self.prepare_image(spec, socket, &request).await?;
                        image_checked = true;
                    }
                    Err(e) if e.is_name_in_use() && !name_cleared => {
                        name_cleared = true;
                        if let Some(running) = self.clear_name(spec, socket).await? {
                            return Ok(running);
                        }
                    }
                    Err(e) => return Err(DriverError::podman(task_id, "create the container")(e)),
                }
            };
            for warning in &created.warnings {
                self.emit(&spec.context, format!("podman: {warning}"));
            }
            let started = async {
                if !pinned_volumes.is_empty() {
                    self.verify_volume_mounts(task_id, client, &created.id, &pinned_volumes)
                        .await?;
                }
                client
                    .container_start(&created.id)
                    .await
                    .map_err(DriverError::podman(task_id, "start the container"))?;
                client
                    .container_inspect(&created.id)
                    .await
                    .map_err(DriverError::podman(
                        task_id,
                        "inspect the started container",
                    ))
            }
            .await;
            let inspect = match started {
                Ok(inspect) => inspect,
                Err(e) => {
                    // Leave nothing behind: the caller sees the start error, not this one.
                    let _ = client.container_delete(&created.id, REMOVE).await;
                    return Err(e);
                }
            };
            if !(facts.socket_is_unix && netcheck::network_lost(&self.proc_root, &inspect).await) {
                return Ok(inspect);
            }
            let _ = client.container_delete(&created.id, REMOVE).await;
            if attempt < NETWORK_ATTEMPTS {
                self.emit(
                    &spec.context,
                    "podman started the container without its network interface (a rootless podman race with another container's teardown); starting it again".to_string(),
                );
            }
        }
        Err(DriverError::NetworkLost {
            task: task_id.to_string(),
            attempts: NETWORK_ATTEMPTS,
        })
    }

    /// The named volumes of the task's `mount` blocks: created on first use, with the
    /// job's labels and this driver's marker, and kept after the task (a restarted task
    /// finds its data, as with Nomad's docker driver).
    async fn ensure_volumes(&self, spec: &TaskSpec, socket: &Socket) -> Result<(), DriverError> {
        let task_id = spec.context.id.as_str();
        let client = &socket.client;
        for mount in &spec.config.mounts {
            let MountKind::Volume { labels, driver, .. } = &mount.kind else {
                continue;
            };
            let name = mount.source.as_str();
            let exists = client
                .volume_exists(name)
                .await
                .map_err(DriverError::podman(task_id, "look up the task's volume"))?;
            if exists {
                continue;
            }
            let mut labels = labels.clone();
            labels.insert(spec::MANAGED_LABEL.to_string(), "true".to_string());
            let (driver_name, options) = driver
                .as_ref()
                .map(|d| (d.name.as_str(), d.options.clone()))
                .unwrap_or_default();
            if let Err(e) = client
                .volume_create(name, driver_name, &options, &labels)
                .await
            {
                // Another task of the job may have made it meanwhile.
                if !client.volume_exists(name).await.unwrap_or(false) {
                    return Err(DriverError::podman(task_id, "create the task's volume")(e));
                }
            }
        }
        Ok(())
    }

    /// Makes podman set the container up without running it, then checks that each
    /// checked volume target shows the very directory or file that was checked: a link a
    /// sibling task swapped into the source path after the check would have been followed
    /// by the OCI runtime.
    async fn verify_volume_mounts(
        &self,
        task_id: &str,
        client: &PodmanClient,
        container_id: &str,
        pinned: &[(String, hostfs::PinnedPath)],
    ) -> Result<(), DriverError> {
        client
            .container_init(container_id)
            .await
            .map_err(DriverError::podman(task_id, "initialize the container"))?;
        let inspect = client
            .container_inspect(container_id)
            .await
            .map_err(DriverError::podman(
                task_id,
                "inspect the initialized container",
            ))?;
        let root = std::path::PathBuf::from(format!("/proc/{}/root", inspect.state.pid));
        for (target, source) in pinned {
            let seen = hostfs::identity_in_root(&root, std::path::Path::new(target));
            if seen.as_ref().ok() != Some(&source.identity()) {
                let what = match seen {
                    Ok(_) => "shows another file than the one checked (was a link swapped in?)"
                        .to_string(),
                    Err(e) => format!("cannot be verified: {e}"),
                };
                return Err(DriverError::Spec {
                    task: task_id.to_string(),
                    source: spec::SpecError::Denied {
                        option: "config.volumes".into(),
                        reason: format!(
                            "the mount of {} at {target} {what}; refused (plugin option volumes.enabled = false)",
                            source.path().display()
                        ),
                    },
                });
            }
        }
        Ok(())
    }

    /// The task's container name is taken: returns the container when it runs (to be
    /// adopted), removes it when it has stopped.
    async fn clear_name(
        &self,
        spec: &TaskSpec,
        socket: &Socket,
    ) -> Result<Option<ContainerInspect>, DriverError> {
        let task_id = spec.context.id.as_str();
        match socket
            .client
            .container_inspect(&spec.container_name())
            .await
        {
            Ok(existing) if existing.state.running => Ok(Some(existing)),
            Ok(existing) => socket
                .client
                .container_delete(&existing.id, REMOVE)
                .await
                .map(|()| None)
                .map_err(DriverError::podman(
                    task_id,
                    "remove the stopped container of an earlier start",
                )),
            Err(PodmanError::NotFound { .. }) => Ok(None),
            Err(e) => Err(DriverError::podman(
                task_id,
                "look for an earlier container",
            )(e)),
        }
    }

    async fn prepare_image(
        &self,
        spec: &TaskSpec,
        socket: &Socket,
        request: &ImageRequest,
    ) -> Result<String, DriverError> {
        let config = &spec.config;
        let report = |progress: ImageProgress| match progress {
            ImageProgress::Loading { source } => {
                self.emit(&spec.context, format!("Loading image {source}"))
            }
            ImageProgress::Pulling { image } => {
                self.emit(&spec.context, format!("Pulling image {image}"))
            }
            ImageProgress::Line { image, line } => {
                let mut event = self.task_event(&spec.context, line);
                event
                    .annotations
                    .insert(PULL_PROGRESS_ANNOTATION.to_string(), image);
                let _ = self.events.send(event);
            }
        };
        socket
            .images
            .ensure(request, report)
            .await
            .map(|resolved| resolved.id)
            .map_err(|source| DriverError::Image {
                task: spec.context.id.clone(),
                image: config.image.clone(),
                source: Box::new(source),
            })
    }

    /// The file that keeps the task's forwarding position, in its task dir; `None` (with
    /// a warning) when the task has none or it cannot be opened safely.
    fn position_file(&self, state: &TaskState) -> Option<PositionFile> {
        let task_dir = state.log.task_dir.as_ref()?;
        match PositionFile::open(task_dir, &state.container_id) {
            Ok(file) => Some(file),
            Err(e) => {
                (self.sink_report(state))(format!(
                    "log position not kept ({e}): a plugin restart resumes forwarding at that moment"
                ));
                None
            }
        }
    }

    /// The driver's shared file events, started on first use (on the runtime).
    fn file_events(&self) -> Option<FileEvents> {
        self.file_events
            .get_or_init(|| FileEvents::start(self.cancel.child_token()).ok())
            .clone()
    }

    /// Records a task and starts watching it: its exit, and with `logs` its output
    /// (written to those sinks from that time on) while it runs.
    fn register(
        &self,
        state: TaskState,
        socket: Arc<Socket>,
        exit: ExitState,
        logs: Option<LogStart>,
        holds_netns_keeper: bool,
    ) {
        let running = exit == ExitState::Running;
        let (sender, _) = watch::channel(exit);
        let sender = Arc::new(sender);
        let forwarder = match logs {
            Some(logs) => Some(LogForwarder::spawn(
                socket.client.clone(),
                LogForwardConfig {
                    container_id: state.container_id.clone(),
                    stdout: logs.sinks.stdout,
                    stderr: logs.sinks.stderr,
                    journal: logs.sinks.journal,
                    cursor: logs.cursor,
                    source: LogSource::Auto,
                    exited: sender.subscribe(),
                    file_events: self.file_events(),
                    position: logs.position,
                },
            )),
            _ => None,
        };
        if running {
            socket.monitor.watch(&state.container_id, sender.clone());
        }
        let task = Arc::new(Task {
            state,
            socket,
            exit: sender,
            forwarder: Mutex::new(forwarder),
            holds_netns_keeper,
        });
        self.write_tasks().insert(task.state.task_id.clone(), task);
    }

    /// Takes a task over again from its persisted state, without restarting it. A task
    /// that exited meanwhile reports its real exit code (the Go plugin reports 0).
    /// Recovering a task this driver already holds does nothing.
    pub async fn recover(&self, state: TaskState) -> Result<(), DriverError> {
        if self.read_tasks().contains_key(&state.task_id) {
            return Ok(());
        }
        let task_id = state.task_id.clone();
        let socket =
            self.socket(&state.socket)
                .cloned()
                .ok_or_else(|| DriverError::UnknownSocket {
                    task: task_id.clone(),
                    socket: state.socket.clone(),
                })?;
        let inspect = socket
            .client
            .container_inspect(&state.container_id)
            .await
            .map_err(DriverError::podman(&task_id, "find the task's container"))?;
        // A bridge task keeps its socket's namespace keeper (if one runs later) while it
        // lives, whatever the host: the count only matters where a keeper is needed.
        let holds_netns_keeper = !inspect.network_settings.networks.is_empty();
        let mut exit = Monitor::state_of(&inspect);
        if exit != ExitState::Running
            && self.config.recover_stopped
            && socket
                .client
                .container_start(&state.container_id)
                .await
                .is_ok()
        {
            exit = ExitState::Running;
        }
        // Forwarding resumes where the last process recorded it got to, so output written
        // while no driver ran is forwarded and nothing is repeated; without a record (state
        // of an older version, the Go plugin's), at "now". The sinks are reopened as at
        // start; one that is no longer what the orchestrator made is reported and discarded.
        let logs = if state.log.forward && has_sinks(&state.log) {
            let position = self.position_file(&state);
            let recorded = position.as_ref().and_then(PositionFile::read);
            // An exited task's remaining output is forwarded only from a recorded
            // position: from "now" there is nothing left, from the start all repeats.
            match (recorded, exit == ExitState::Running) {
                (None, false) => None,
                (cursor, _) => {
                    let report = self.sink_report(&state);
                    logs::open_sinks(&state.log, Some(report))
                        .ok()
                        .map(|sinks| LogStart {
                            sinks,
                            cursor: cursor.unwrap_or_else(|| LogCursor::at(SystemTime::now())),
                            position,
                        })
                }
            }
        } else {
            None
        };
        if holds_netns_keeper {
            socket.netns_keeper.count().await;
        }
        self.register(state, socket, exit, logs, holds_netns_keeper);
        Ok(())
    }

    /// Before the process goes away (Nomad's `Shutdown`): stops the log forwarding of
    /// every task once what it handed to the sinks is recorded, so the next process
    /// resumes exactly there. Tasks keep running. Returns how many forwarders stopped
    /// within `deadline`.
    pub async fn shutdown(&self, deadline: Duration) -> usize {
        let forwarders: Vec<LogForwarder> = self
            .read_tasks()
            .values()
            .filter_map(|task| {
                task.forwarder
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take()
            })
            .collect();
        let stops = futures::future::join_all(forwarders.into_iter().map(LogForwarder::stop));
        tokio::time::timeout(deadline, stops)
            .await
            .map_or(0, |stopped| stopped.len())
    }

    /// Waits for the task to exit and returns how it ended.
    pub async fn wait(&self, task_id: &str) -> Result<ExitResult, DriverError> {
        let mut exit = self.task(task_id)?.exit.subscribe();
        loop {
            if let ExitState::Exited { result, .. } = &*exit.borrow_and_update() {
                return Ok(result.clone());
            }
            if exit.changed().await.is_err() {
                // The task was destroyed while we waited.
                return Err(DriverError::TaskNotFound(task_id.to_string()));
            }
        }
    }

    async fn wait_for_exit(task: &Task, timeout: Duration) -> bool {
        let mut exit = task.exit.subscribe();
        let exited = async {
            loop {
                if *exit.borrow_and_update() != ExitState::Running {
                    return;
                }
                if exit.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(timeout, exited).await.is_ok()
    }

    /// Sends `signal` (else the task's kill signal, else SIGTERM), waits up to `timeout`
    /// for the task to exit, then kills it. Stopping an exited task is not an error.
    pub async fn stop(
        &self,
        task_id: &str,
        timeout: Duration,
        signal: Option<&str>,
    ) -> Result<(), DriverError> {
        let task = self.task(task_id)?;
        if task.exit_state() != ExitState::Running {
            return Ok(());
        }
        let signal = signal
            .filter(|s| !s.is_empty())
            .or(task.state.kill_signal.as_deref())
            .unwrap_or("SIGTERM");
        if !Self::signal_running(&task, signal, "send the kill signal").await? {
            return Ok(());
        }
        if Self::wait_for_exit(&task, timeout).await {
            return Ok(());
        }
        self.kill(&task).await
    }

    async fn kill(&self, task: &Task) -> Result<(), DriverError> {
        if Self::signal_running(task, "SIGKILL", "kill the container").await? {
            Self::wait_for_exit(task, KILL_SETTLE).await;
        }
        Ok(())
    }

    /// Sends `signal` to the task's container. `Ok(false)` when the container had already
    /// stopped (or is gone): the exit watcher may not have seen that yet.
    async fn signal_running(
        task: &Task,
        signal: &str,
        action: &'static str,
    ) -> Result<bool, DriverError> {
        let client = &task.socket.client;
        let id = &task.state.container_id;
        match client.container_kill(id, signal).await {
            Ok(()) => Ok(true),
            Err(PodmanError::NotFound { .. }) => Ok(false),
            // Its process ended and podman noticed first (seen in the soak under load,
            // where the inspect that used to decide this could fail too).
            Err(e) if e.is_state_improper() => Ok(false),
            Err(e) => match client.container_inspect(id).await {
                Ok(inspect) if !inspect.state.running => Ok(false),
                Err(PodmanError::NotFound { .. }) => Ok(false),
                // The process can be gone while podman still says running (its state
                // follows conmon's exit file): the refused kill is then no error.
                _ if Self::wait_for_exit(task, EXITING_SETTLE).await => Ok(false),
                _ => Err(DriverError::podman(&task.state.task_id, action)(e)),
            },
        }
    }

    /// Forgets the task and, with `gc.container`, removes its container. A running task
    /// needs `force` and is killed first.
    pub async fn destroy(&self, task_id: &str, force: bool) -> Result<(), DriverError> {
        let task = self.task(task_id)?;
        if task.exit_state() == ExitState::Running {
            if !force {
                return Err(DriverError::StillRunning {
                    task: task_id.to_string(),
                });
            }
            self.kill(&task).await?;
        }
        let forwarder = task
            .forwarder
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(forwarder) = forwarder {
            // The task has exited: let the forwarder write out what podman still holds.
            if tokio::time::timeout(LOG_DRAIN, forwarder.join())
                .await
                .is_err()
            {
                // Sinks nobody reads any more; the orchestrator has moved on.
            }
        }
        task.socket.monitor.unwatch(&task.state.container_id);
        if self.config.gc.container {
            match task
                .socket
                .client
                .container_delete(&task.state.container_id, REMOVE)
                .await
            {
                Ok(()) | Err(PodmanError::NotFound { .. }) => {}
                Err(e) => return Err(DriverError::podman(task_id, "remove the container")(e)),
            }
        }
        // Counted once even when two destroys of the task race.
        let removed = self.write_tasks().remove(task_id).is_some();
        if removed && task.holds_netns_keeper {
            self.release_netns_keeper(&task.socket).await;
        }
        self.release_image(&task.socket, task.state.image_id.clone());
        Ok(())
    }

    /// One bridge task fewer on the socket; the last removes the namespace keeper.
    async fn release_netns_keeper(&self, socket: &Socket) {
        if let Err((keeper, e)) = socket
            .netns_keeper
            .release(&socket.client, &self.proc_root)
            .await
        {
            let _ = self.events.send(super::gc::driver_event(format!(
                "cannot remove the network namespace keeper {keeper}: {e}"
            )));
        }
    }

    pub async fn inspect(&self, task_id: &str) -> Result<TaskStatus, DriverError> {
        let task = self.task(task_id)?;
        let (state, completed_at, exit_result) = match task.exit_state() {
            ExitState::Running => (TaskRunState::Running, None, None),
            ExitState::Exited { result, at } => (TaskRunState::Exited, Some(at), Some(result)),
        };
        let mut attributes = std::collections::BTreeMap::new();
        attributes.insert("container_id".to_string(), task.state.container_id.clone());
        attributes.insert(
            "container_name".to_string(),
            task.state.container_name.clone(),
        );
        attributes.insert("socket".to_string(), task.state.socket.clone());
        Ok(TaskStatus {
            id: task.state.task_id.clone(),
            name: task.state.task_name.clone(),
            state,
            started_at: task.state.started_at,
            completed_at,
            exit_result,
            attributes,
        })
    }

    /// The persisted state of a task, as returned by `start`.
    pub fn task_state(&self, task_id: &str) -> Result<TaskState, DriverError> {
        Ok(self.task(task_id)?.state.clone())
    }

    /// Sends a signal (a name such as `SIGHUP`, or a number) to the task.
    pub async fn signal(&self, task_id: &str, signal: &str) -> Result<(), DriverError> {
        let task = self.task(task_id)?;
        task.socket
            .client
            .container_kill(&task.state.container_id, signal)
            .await
            .map_err(DriverError::podman(task_id, "signal the container"))
    }

    /// CPU and memory of the task every `interval`; the stream ends when the task exits.
    pub fn stats(
        &self,
        task_id: &str,
        interval: Duration,
    ) -> Result<tokio::sync::mpsc::Receiver<super::TaskStats>, DriverError> {
        let task = self.task(task_id)?;
        let no_stats = task
            .socket
            .facts
            .try_lock()
            .ok()
            .and_then(|facts| facts.as_ref().map(|f| f.rootless && !f.cgroup_v2))
            .unwrap_or(false);
        if no_stats {
            // Rootless podman on cgroup v1 has no container stats at all: say so at once
            // rather than leave the caller with an empty stream.
            return Err(DriverError::StatsUnavailable {
                task: task_id.to_string(),
                reason: "rootless podman on cgroup v1 reports no container statistics".into(),
            });
        }
        Ok(task
            .socket
            .monitor
            .subscribe_stats(&task.state.container_id, interval))
    }
}

/// Removal of a task's container: whatever its state, with its anonymous volumes.
const REMOVE: DeleteOptions = DeleteOptions {
    force: true,
    volumes: true,
    stop_timeout: None,
};

/// The address Nomad advertises for the task: the container's own address, else its
/// address on the network it joined.
fn task_ip(inspect: &ContainerInspect, network: Option<&str>) -> String {
    let settings = &inspect.network_settings;
    if !settings.ip_address.is_empty() {
        return settings.ip_address.clone();
    }
    let endpoint = match network {
        Some(name) => settings.networks.get(name),
        None => settings.networks.values().next(),
    };
    match endpoint {
        Some(e) if !e.ip_address.is_empty() => e.ip_address.clone(),
        Some(e) => e.global_ipv6_address.clone(),
        None => settings.global_ipv6_address.clone(),
    }
}

/// How long `destroy` lets log forwarding finish writing an exited task's output.
const LOG_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// How a task's log forwarding begins.
struct LogStart {
    sinks: Sinks,
    cursor: LogCursor,
    position: Option<PositionFile>,
}

/// Whether the task's output goes anywhere at all.
fn has_sinks(target: &LogTarget) -> bool {
    target.stdout_path.is_some() || target.stderr_path.is_some()
}

/// What the task asks of its image.
fn image_request(spec: &TaskSpec) -> ImageRequest {
    let config = &spec.config;
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    ImageRequest {
        image: config.image.clone(),
        auth: config.auth.as_ref().map(|a| RegistryAuth {
            username: a.username.clone(),
            password: a.password.clone(),
            tls_verify: a.tls_verify,
        }),
        auth_soft_fail: config.auth_soft_fail,
        force_pull: config.force_pull,
        pull_timeout: config.image_pull_timeout,
        platform: Platform {
            arch: non_empty(&config.arch),
            os: non_empty(&config.os),
            variant: non_empty(&config.variant),
        },
    }
}

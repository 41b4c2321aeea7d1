//! Everything a check needs about one socket: the driver under test, a raw libpod client
//! for the API checks and for housekeeping, the host facts, the test image, the run's
//! labels and a scratch directory; plus helpers to start labelled tasks.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::driver::config::{DriverConfig, SocketBlock};
use crate::driver::handle::TaskState;
use crate::driver::model::{DriverNetwork, ExecOutput, ExitResult};
use crate::driver::task::{TaskConfig, TaskContext, TaskSpec};
use crate::driver::Driver;

use super::api::Podman;
use super::check::{Failure, Skip};
use super::cli::{RegistryTarget, SocketTarget};
use super::facts::{is_unix, ServiceFacts};
use super::httplog::{start_proxy, HttpLog, Proxy};
use super::scope::Scope;

/// Label carrying the run id on every container the harness creates.
pub const RUN_LABEL: &str = "io.nomad-driver-podman.conformance";
/// Label carrying the check name.
pub const CHECK_LABEL: &str = "io.nomad-driver-podman.conformance.check";
/// Label of the bystander container (see [`Env::bystander`]).
pub const BYSTANDER_LABEL: &str = "io.nomad-driver-podman.conformance.bystander";
/// The default test image, imported from the host's busybox when missing.
pub const DEFAULT_IMAGE: &str = "localhost/nomad-driver-podman-conformance/busybox:latest";
/// Where Debian's busybox-static installs its binary.
pub const HOST_BUSYBOX: &str = "/bin/busybox";

/// Deadline of the setup calls (ping, info, image lookup).
const SETUP_DEADLINE: Duration = Duration::from_secs(15);

/// The test image, or why there is none.
#[derive(Debug, Clone)]
pub enum TestImage {
    Ready {
        reference: String,
        /// Imported by this run, so removed at its end.
        imported: bool,
    },
    Missing(String),
}

pub struct Env {
    pub target: SocketTarget,
    /// This socket's run label value: `<run id>-<socket name>`.
    pub run_id: String,
    pub driver: Arc<Driver>,
    pub driver_config: DriverConfig,
    pub podman: Podman,
    /// Host facts, or why the API did not answer.
    pub facts: Result<ServiceFacts, String>,
    pub image: TestImage,
    pub registry: Option<RegistryTarget>,
    /// A container made at setup that looks driver-managed but lacks the run label: the
    /// run must leave it alone (removed by name at the very end).
    pub bystander: Option<String>,
    /// Dropped before the scratch directory that holds its socket.
    _proxy: Option<Proxy>,
    workdir: tempfile::TempDir,
}

/// What `Env::prepare` needs besides the socket.
pub struct Options {
    pub run_id: String,
    pub image: Option<String>,
    pub registry: Option<RegistryTarget>,
    pub log_http: Option<HttpLog>,
}

impl Env {
    /// Builds the driver and the raw client for `target`, reads the host facts and makes
    /// sure the test image exists. Only a broken socket URL or scratch directory is an
    /// error; an unreachable API is recorded in `facts`.
    pub async fn prepare(target: SocketTarget, options: &Options) -> Result<Env, String> {
        let workdir = tempfile::Builder::new()
            .prefix("nomad-driver-podman-conformance-")
            .tempdir()
            .map_err(|err| format!("cannot create a scratch directory: {err}"))?;
        // With --log-http, everything goes through a recording proxy.
        let proxy = match &options.log_http {
            Some(log) => {
                Some(start_proxy(log.clone(), &target.name, &target.url, workdir.path()).await?)
            }
            None => None,
        };
        let url = proxy
            .as_ref()
            .map_or(target.url.as_str(), |p| p.url.as_str());
        let driver_config = driver_config(url);
        let driver = Driver::new(driver_config.clone())
            .map_err(|err| format!("socket {}: {err}", target.url))?;
        let podman = Podman::connect(url).map_err(|err| format!("socket {}: {err}", target.url))?;
        let facts = match tokio::time::timeout(SETUP_DEADLINE, podman.info()).await {
            Ok(Ok(info)) => Ok(ServiceFacts::from_info(&info, is_unix(&target.url))),
            Ok(Err(err)) => Err(err.to_string()),
            Err(_) => Err(format!(
                "no answer from {} within {SETUP_DEADLINE:?}",
                target.url
            )),
        };
        let mut env = Env {
            target: target.clone(),
            run_id: label_value(&options.run_id, &target.name),
            driver,
            driver_config,
            podman,
            facts,
            image: TestImage::Missing("podman API unreachable".to_string()),
            registry: options.registry.clone(),
            bystander: None,
            workdir,
            _proxy: proxy,
        };
        if env.facts.is_ok() {
            env.image = env.provide_image(options.image.as_deref()).await;
            if let TestImage::Ready { reference, .. } = &env.image {
                let name = format!("nomad-driver-podman-conformance-bystander-{}", env.run_id);
                let labels = [
                    ("io.nomad-driver-podman.managed", "true"),
                    (BYSTANDER_LABEL, env.run_id.as_str()),
                ];
                if env
                    .podman
                    .create_container(&name, reference, &labels)
                    .await
                    .is_ok()
                {
                    env.bystander = Some(name);
                }
            }
        }
        Ok(env)
    }

    async fn provide_image(&self, requested: Option<&str>) -> TestImage {
        let reference = requested.unwrap_or(DEFAULT_IMAGE);
        match self.podman.image_exists(reference).await {
            Ok(true) => {
                return TestImage::Ready {
                    reference: reference.to_string(),
                    imported: false,
                }
            }
            Ok(false) if requested.is_some() => {
                return TestImage::Missing(format!(
                    "test image {reference} not found on this podman (--image)"
                ))
            }
            Ok(false) => {}
            Err(err) => return TestImage::Missing(format!("cannot look up {reference}: {err}")),
        }
        if !Path::new(HOST_BUSYBOX).exists() {
            return TestImage::Missing(format!(
                "no test image: {DEFAULT_IMAGE} is missing and {HOST_BUSYBOX} (Debian's \
                 busybox-static) is not installed; pass --image"
            ));
        }
        match self
            .podman
            .import_busybox(Path::new(HOST_BUSYBOX), reference)
            .await
        {
            Ok(()) => TestImage::Ready {
                reference: reference.to_string(),
                imported: true,
            },
            Err(err) => TestImage::Missing(format!("cannot import {reference}: {err}")),
        }
    }

    /// Host facts, or a skip naming why the API is unreachable.
    pub fn require_api(&self) -> Result<&ServiceFacts, Skip> {
        self.facts
            .as_ref()
            .map_err(|err| Skip(format!("requires a reachable podman API: {err}")))
    }

    /// The test image reference, or a skip naming why there is none.
    pub fn require_image(&self) -> Result<(), Skip> {
        self.require_api()?;
        match &self.image {
            TestImage::Ready { .. } => Ok(()),
            TestImage::Missing(reason) => Err(Skip(reason.clone())),
        }
    }

    /// The facts of a reachable API (checks run only after [`Env::require_api`]).
    pub fn facts(&self) -> Result<&ServiceFacts, Failure> {
        self.facts.as_ref().map_err(|err| Failure::new(err.clone()))
    }

    pub fn image_reference(&self) -> &str {
        match &self.image {
            TestImage::Ready { reference, .. } => reference,
            TestImage::Missing(_) => DEFAULT_IMAGE,
        }
    }

    /// `label=value` filter for the whole run.
    pub fn run_label(&self) -> String {
        format!("{RUN_LABEL}={}", self.run_id)
    }

    /// `label=value` filter for one check's containers (with the run's).
    pub fn check_label(&self, check: &str) -> Vec<String> {
        vec![self.run_label(), format!("{CHECK_LABEL}={check}")]
    }

    /// Whether podman runs on this machine (ports published on 127.0.0.1 reach it, paths
    /// are shared).
    pub fn podman_is_local(&self) -> bool {
        self.target.url.starts_with("unix:")
    }

    pub fn scratch(&self) -> &Path {
        self.workdir.path()
    }

    /// A task for `scope`'s check running the test image with `command` (`sh -c` form).
    pub fn task<'a>(&'a self, scope: &'a Scope, name: &str) -> TaskBuilder<'a> {
        TaskBuilder::new(self, scope, name)
    }

    /// A driver configured exactly like [`Env::driver`] but sharing no state with it,
    /// as a fresh plugin process would be.
    pub fn fresh_driver(&self) -> Result<Arc<Driver>, Failure> {
        Ok(Driver::new(self.driver_config.clone())?)
    }

    /// Waits for a task to exit, at most `deadline`.
    pub async fn wait_exit(
        &self,
        task_id: &str,
        deadline: Duration,
    ) -> Result<ExitResult, Failure> {
        wait_exit(&self.driver, task_id, deadline).await
    }

    /// Polls until `/tmp/ready` exists in the task: scripts that install signal traps
    /// touch it afterwards, so that a signal never races the trap.
    pub async fn wait_ready(&self, task_id: &str) -> Result<(), Failure> {
        for _ in 0..50 {
            if self.exec(task_id, "test -e /tmp/ready").await?.exit_code == 0 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(Failure::new(
            "the task never became ready (/tmp/ready missing)",
        ))
    }

    /// Runs `sh -c script` in the task; fails unless it exits 0. Returns trimmed stdout.
    pub async fn exec_ok(&self, task_id: &str, script: &str) -> Result<String, Failure> {
        let output = self.exec(task_id, script).await?;
        if output.exit_code != 0 {
            return Err(Failure(format!(
                "`{script}` exited {}: {}",
                output.exit_code,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    /// Runs `sh -c script` in the task (10 s deadline).
    pub async fn exec(&self, task_id: &str, script: &str) -> Result<ExecOutput, Failure> {
        let cmd = vec!["sh".to_string(), "-c".to_string(), script.to_string()];
        let deadline = Duration::from_secs(10);
        match tokio::time::timeout(
            deadline + Duration::from_secs(5),
            self.driver.exec(task_id, cmd, deadline),
        )
        .await
        {
            Ok(result) => Ok(result?),
            Err(_) => Err(Failure(format!("exec `{script}` did not return"))),
        }
    }
}

/// Waits for `task_id` on `driver`, at most `deadline`.
pub async fn wait_exit(
    driver: &Driver,
    task_id: &str,
    deadline: Duration,
) -> Result<ExitResult, Failure> {
    match tokio::time::timeout(deadline, driver.wait(task_id)).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(Failure(format!(
            "task did not exit within {}s",
            deadline.as_secs()
        ))),
    }
}

/// The run label's value for one socket: the run id and the socket name, so that two
/// `--socket`s pointing at the same podman never sweep each other's containers.
fn label_value(run_id: &str, socket: &str) -> String {
    let socket: String = socket
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("{run_id}-{socket}")
}

/// The driver configuration every conformance driver uses: one socket named `default`,
/// containers removed on destroy, and no dangling-container sweep (it could remove
/// containers of other users of the same podman).
fn driver_config(url: &str) -> DriverConfig {
    let mut config = DriverConfig {
        socket: vec![SocketBlock {
            name: "default".to_string(),
            socket_path: url.to_string(),
        }],
        ..DriverConfig::default()
    };
    config.gc.container = true;
    config.gc.image = false;
    config.gc.dangling_containers.enabled = false;
    config
}

/// A task being put together by a check.
pub struct TaskBuilder<'a> {
    env: &'a Env,
    scope: &'a Scope,
    config: Map<String, Value>,
    pub context: TaskContext,
}

impl<'a> TaskBuilder<'a> {
    fn new(env: &'a Env, scope: &'a Scope, name: &str) -> TaskBuilder<'a> {
        let alloc_id = uuid::Uuid::new_v4().to_string();
        let mut config = Map::new();
        config.insert("image".into(), json!(env.image_reference()));
        config.insert("labels".into(), json!({}));
        let context = TaskContext {
            id: format!("{alloc_id}/{name}"),
            name: name.to_string(),
            alloc_id,
            job_name: "conformance".to_string(),
            job_id: "conformance".to_string(),
            task_group_name: "conformance".to_string(),
            namespace: "default".to_string(),
            kill_timeout: Duration::from_secs(5),
            ..TaskContext::default()
        };
        TaskBuilder {
            env,
            scope,
            config,
            context,
        }
    }

    /// Sets task options (plain HCL shape); `labels` are merged with the run's.
    pub fn config(mut self, options: Value) -> Self {
        if let Value::Object(options) = options {
            for (key, value) in options {
                match (key.as_str(), value) {
                    ("labels", Value::Object(labels)) => {
                        if let Some(Value::Object(existing)) = self.config.get_mut("labels") {
                            existing.extend(labels);
                        }
                    }
                    (_, value) => {
                        self.config.insert(key, value);
                    }
                }
            }
        }
        self
    }

    /// Puts the task into allocation `alloc_id` (for `task:<name>` modes).
    pub fn in_alloc(mut self, alloc_id: &str) -> Self {
        self.context.alloc_id = alloc_id.to_string();
        self.context.id = format!("{alloc_id}/{}", self.context.name);
        self
    }

    /// `sh -c script` as the task's command.
    pub fn script(self, script: &str) -> Self {
        self.config(json!({"command": "sh", "args": ["-c", script]}))
    }

    pub fn context(mut self, edit: impl FnOnce(&mut TaskContext)) -> Self {
        edit(&mut self.context);
        self
    }

    /// Creates the task's alloc, local and secrets directories in the scratch directory.
    pub fn with_task_dirs(mut self) -> Result<Self, Failure> {
        let root: PathBuf = self.env.scratch().join(&self.context.alloc_id);
        for dir in ["alloc", "local", "secrets"] {
            std::fs::create_dir_all(root.join(dir))?;
        }
        self.context.task_dir = Some(root.clone());
        self.context.alloc_dir = Some(root.join("alloc"));
        self.context.local_dir = Some(root.join("local"));
        self.context.secrets_dir = Some(root.join("secrets"));
        Ok(self)
    }

    /// The decoded spec, as every mode would build it.
    pub fn spec(&self) -> Result<TaskSpec, Failure> {
        let mut config = TaskConfig::from_value(&Value::Object(self.config.clone()))?;
        // The harness's own labels are in the reserved prefix a task may not use: they
        // are added to the decoded config, as the runner adds its own.
        config
            .labels
            .insert(RUN_LABEL.to_string(), self.env.run_id.clone());
        config
            .labels
            .insert(CHECK_LABEL.to_string(), self.scope.check().to_string());
        Ok(TaskSpec {
            config,
            context: self.context.clone(),
        })
    }

    /// Starts the task on the env's driver.
    pub async fn start(self) -> Result<Started, Failure> {
        let driver = Arc::clone(&self.env.driver);
        self.start_on(&driver).await
    }

    /// Starts the task on `driver` and tracks it for cleanup (tracked before the start
    /// returns, so that a half-started task is destroyed too).
    pub async fn start_on(self, driver: &Arc<Driver>) -> Result<Started, Failure> {
        let spec = self.spec()?;
        let task_id = spec.context.id.clone();
        self.scope.track_task(driver, &task_id);
        let started = tokio::time::timeout(Duration::from_secs(120), driver.start(spec))
            .await
            .map_err(|_| Failure::new("task start did not return within 120s"))??;
        Ok(Started {
            task_id,
            container_name: started.state.container_name.clone(),
            state: started.state,
            network: started.network,
        })
    }
}

/// A started task.
pub struct Started {
    pub task_id: String,
    pub container_name: String,
    pub state: TaskState,
    pub network: Option<DriverNetwork>,
}

//! The driver core: the one surface every mode calls.
//!
//! [`Driver`] owns one libpod client and one [`monitor::Monitor`] per configured podman
//! socket, and the tasks it started or recovered. Its operations:
//!
//! | operation | what it does |
//! |---|---|
//! | [`Driver::fingerprint`] | ping + info on every socket; health and attributes |
//! | [`Driver::start`] | resolve/pull the image, create and start a labelled container |
//! | [`Driver::recover`] | take a task over again from its persisted [`TaskState`] |
//! | [`Driver::wait`] | the task's exit result, once it has exited |
//! | [`Driver::stop`] | the task's kill signal, then SIGKILL after the timeout |
//! | [`Driver::destroy`] | forget the task; remove its container when `gc.container` |
//! | [`Driver::inspect`] | the task's state, start/finish time and exit result |
//! | [`Driver::signal`] | send a signal to the task |
//! | [`Driver::exec`] / [`Driver::exec_streaming`] | run a command in the task |
//! | [`Driver::stats`] | CPU and memory samples at an interval |
//! | [`Driver::subscribe_events`] | task events (image pulls, ...) |
//!
//! Nothing here knows about gRPC, job files or terminals.

pub(crate) mod config;
pub(crate) mod decode;
pub(crate) mod error;
mod exec;
pub(crate) mod facts;
pub(crate) mod gates;
mod gc;
pub(crate) mod handle;
pub(crate) mod host;
pub(crate) mod hostfs;
pub mod image;
mod lifecycle;
pub mod logs;
pub(crate) mod model;
pub(crate) mod monitor;
mod netcheck;
mod netns_keeper;
pub mod podman;
#[cfg(test)]
mod races;
pub(crate) mod secopt;
pub(crate) mod spec;
pub(crate) mod stats;
pub(crate) mod task;
pub(crate) mod units;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

// The surface of the core: what the modes, the e2e tests, the benches and the fuzz
// targets use. The modules behind it are the crate's own; `image`, `logs` and `podman`
// stay public as components with suites of their own (the image resolver, the log
// forwarder and the libpod client are driven directly by e2e tests and benches).
pub use config::{DriverConfig, SocketConfig, DEFAULT_LOG_MAX_DISK};
pub use error::DriverError;
pub use facts::FactsCache;
pub use handle::{LogTarget, TaskState, TASK_STATE_VERSION};
pub use host::HostFacts;
pub use model::*;
pub use monitor::ExitState;
pub use netns_keeper::KEEPER_LABEL as NETNS_KEEPER_LABEL;
pub use spec::{build as container_spec, custom_network, SpecError, SpecGenerator, MANAGED_LABEL};
pub use stats::Compute;
pub use task::{
    DnsSpec, LegacyNetwork, LegacyPort, PortSpec, TaskConfig, TaskContext, TaskResources, TaskSpec,
};

use monitor::{ExitSender, Monitor};
use podman::{PodmanClient, PodmanError};

/// Deadline of the fingerprint's ping and info calls, so a hung podman cannot stall it.
const FINGERPRINT_DEADLINE: Duration = Duration::from_secs(10);
/// How long `destroy(force)` waits for the exit after SIGKILL before removing anyway.
const KILL_SETTLE: Duration = Duration::from_secs(10);
/// Output kept by a buffered exec (Nomad's script-check buffer keeps the tail).
const EXEC_BUFFER: usize = 4096;

/// What `start` returns: the state to persist and the network the task ended up in.
#[derive(Debug, Clone)]
pub struct StartedTask {
    pub state: TaskState,
    pub network: Option<DriverNetwork>,
}

/// One configured podman socket.
struct Socket {
    config: SocketConfig,
    client: PodmanClient,
    /// Shared by every task on the socket, so concurrent pulls of one image become one.
    images: image::ImageResolver,
    monitor: Arc<Monitor>,
    facts: tokio::sync::Mutex<Option<HostFacts>>,
    /// Rootless podman 4's shared bridge namespace, held while bridge tasks start and run.
    netns_keeper: netns_keeper::NetnsKeeper,
}

/// A task the driver started or recovered.
struct Task {
    state: TaskState,
    socket: Arc<Socket>,
    exit: Arc<ExitSender>,
    forwarder: Mutex<Option<logs::LogForwarder>>,
    /// Counted as a user of its socket's namespace keeper (released when destroyed).
    holds_netns_keeper: bool,
}

impl Task {
    fn exit_state(&self) -> ExitState {
        self.exit.borrow().clone()
    }
}

/// The driver core. Share it as `Arc<Driver>`; dropping the last reference stops its
/// background work (containers keep running).
pub struct Driver {
    config: DriverConfig,
    sockets: Vec<Arc<Socket>>,
    /// Shared with background work (image GC) that outlives one call.
    tasks: Arc<RwLock<HashMap<String, Arc<Task>>>>,
    events: broadcast::Sender<TaskEvent>,
    cancel: CancellationToken,
    facts_cache: Option<FactsCache>,
    compute: Compute,
    /// Whether a fingerprint ever found podman (decides Undetected versus Unhealthy).
    ever_healthy: AtomicBool,
    /// Wakes log tails when their files grow; started with the first tail (`None` when
    /// inotify is unavailable: tails then poll).
    file_events: std::sync::OnceLock<Option<logs::FileEvents>>,
    /// Where the started containers' processes are seen (`/proc`).
    proc_root: std::path::PathBuf,
}

/// How a driver is set up beyond its configuration.
#[derive(Debug, Clone, Default)]
pub struct DriverOptions {
    /// The node's compute capacity as the orchestrator sees it (for stats); the default
    /// is this host's, as Nomad's fingerprint finds it.
    pub compute: Compute,
    /// Where to remember host facts between processes (short-lived callers: the runner).
    pub facts_cache: Option<FactsCache>,
    /// Where a started container's network namespace is looked at; `None` is `/proc`
    /// (tests give a directory of their own).
    pub proc_root: Option<std::path::PathBuf>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The plugin's `auth` block as the image resolver takes it.
fn image_auth(config: &DriverConfig) -> image::AuthConfig {
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    image::AuthConfig {
        file: non_empty(&config.auth.config).map(Into::into),
        helper: non_empty(&config.auth.helper),
    }
}

/// Fingerprint attribute prefix of a socket: `driver.podman` for the default one, else
/// `driver.podman.<name with every non-alphanumeric byte as _>`.
fn attribute_prefix(socket: &SocketConfig) -> String {
    if socket.default {
        "driver.podman".to_string()
    } else {
        let clean: String = socket
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        format!("driver.podman.{clean}")
    }
}

impl Driver {
    /// Builds one client per configured socket. Does not contact podman.
    pub fn new(config: DriverConfig) -> Result<Arc<Self>, DriverError> {
        Self::with_options(config, DriverOptions::default())
    }

    /// Like [`Driver::new`], with [`DriverOptions`].
    pub fn with_options(
        config: DriverConfig,
        options: DriverOptions,
    ) -> Result<Arc<Self>, DriverError> {
        let DriverOptions {
            compute,
            facts_cache,
            proc_root,
        } = options;
        let cancel = CancellationToken::new();
        let mut sockets = Vec::new();
        for socket in config.sockets().map_err(DriverError::PluginConfig)? {
            let client = PodmanClient::new(&socket.url, Some(config.client_http_timeout))
                .map_err(DriverError::podman(&socket.name, "connect to podman"))?;
            let monitor = Monitor::new(client.clone(), compute, cancel.child_token());
            let images = image::ImageResolver::new(client.clone(), image_auth(&config));
            sockets.push(Arc::new(Socket {
                config: socket,
                images,
                client,
                monitor,
                facts: tokio::sync::Mutex::new(None),
                netns_keeper: netns_keeper::NetnsKeeper::default(),
            }));
        }
        let (events, _) = broadcast::channel(256);
        Ok(Arc::new(Driver {
            config,
            sockets,
            tasks: Arc::new(RwLock::new(HashMap::new())),
            events,
            cancel,
            facts_cache,
            compute,
            ever_healthy: AtomicBool::new(false),
            file_events: std::sync::OnceLock::new(),
            proc_root: proc_root.unwrap_or_else(|| "/proc".into()),
        }))
    }

    pub fn config(&self) -> &DriverConfig {
        &self.config
    }

    /// The node's compute the CPU figures are expressed against.
    pub fn compute(&self) -> Compute {
        self.compute
    }

    /// The configured sockets, after the naming rules were applied.
    pub fn sockets(&self) -> Vec<SocketConfig> {
        self.sockets.iter().map(|s| s.config.clone()).collect()
    }

    /// The libpod client of a socket, for modes that must speak to podman about things
    /// that are not tasks (the conformance harness's API checks, the runner's `ps`).
    pub fn client(&self, socket: &str) -> Option<PodmanClient> {
        self.socket(socket).map(|s| s.client.clone())
    }

    pub fn subscribe_events(&self) -> broadcast::Receiver<TaskEvent> {
        self.events.subscribe()
    }

    /// Ids of the tasks this driver holds.
    pub fn task_ids(&self) -> Vec<String> {
        self.read_tasks().keys().cloned().collect()
    }

    fn socket(&self, name: &str) -> Option<&Arc<Socket>> {
        let configs: Vec<SocketConfig> = self.sockets.iter().map(|s| s.config.clone()).collect();
        let found = config::find_socket(&configs, name)?;
        self.sockets.iter().find(|s| s.config.name == found.name)
    }

    fn read_tasks(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Task>>> {
        self.tasks.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_tasks(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Task>>> {
        self.tasks.write().unwrap_or_else(|e| e.into_inner())
    }

    fn task(&self, task_id: &str) -> Result<Arc<Task>, DriverError> {
        self.read_tasks()
            .get(task_id)
            .cloned()
            .ok_or_else(|| DriverError::TaskNotFound(task_id.to_string()))
    }

    fn task_event(&self, context: &TaskContext, message: String) -> TaskEvent {
        TaskEvent {
            task_id: context.id.clone(),
            alloc_id: context.alloc_id.clone(),
            task_name: context.name.clone(),
            message,
            annotations: BTreeMap::new(),
            timestamp: SystemTime::now(),
        }
    }

    /// Reports a refused log sink of `state`'s task: a task event marked as a warning
    /// (the modes log those too).
    fn sink_report(&self, state: &TaskState) -> logs::SinkReport {
        let events = self.events.clone();
        let (task_id, alloc_id, task_name) = (
            state.task_id.clone(),
            state.alloc_id.clone(),
            state.task_name.clone(),
        );
        Arc::new(move |message: String| {
            let _ = events.send(TaskEvent {
                task_id: task_id.clone(),
                alloc_id: alloc_id.clone(),
                task_name: task_name.clone(),
                message,
                annotations: BTreeMap::from([(
                    WARNING_ANNOTATION.to_string(),
                    "log_sink".to_string(),
                )]),
                timestamp: SystemTime::now(),
            });
        })
    }

    fn emit(&self, context: &TaskContext, message: String) {
        // Nobody listening is fine.
        let _ = self.events.send(self.task_event(context, message));
    }

    /// Whether a socket's podman answers (a ping, bounded like a fingerprint); its libpod
    /// API version when it does. Much cheaper than [`Driver::fingerprint`].
    pub async fn ping(&self, socket: &str) -> Result<String, PodmanError> {
        let socket = self
            .socket(socket)
            .ok_or_else(|| PodmanError::InvalidSocket {
                socket: socket.to_string(),
                reason: "no such socket is configured".into(),
            })?;
        tokio::time::timeout(FINGERPRINT_DEADLINE, socket.client.ping())
            .await
            .unwrap_or_else(|_| {
                Err(PodmanError::Timeout {
                    operation: "ping".into(),
                    timeout: FINGERPRINT_DEADLINE,
                })
            })
    }

    /// What the driver knows about a socket's podman, asking it when not known yet.
    async fn facts(&self, socket: &Socket) -> Result<HostFacts, PodmanError> {
        let mut cached = socket.facts.lock().await;
        if let Some(facts) = cached.as_ref() {
            return Ok(facts.clone());
        }
        if let Some(cache) = &self.facts_cache {
            if let Some(mut remembered) = cache.load(&socket.config).await {
                let version = socket.client.ping().await?;
                remembered.api_version = host::parse_version(&version);
                *cached = Some(remembered.clone());
                return Ok(remembered);
            }
        }
        let found = facts::ask(&socket.client, &socket.config).await?;
        if let Some(cache) = &self.facts_cache {
            cache.store(&socket.config, &found).await;
        }
        *cached = Some(found.clone());
        Ok(found)
    }

    /// Health and attributes of every socket (upstream-compatible attribute names).
    pub async fn fingerprint(&self) -> Fingerprint {
        let mut attributes = BTreeMap::new();
        let mut unhealthy = Vec::new();
        for socket in &self.sockets {
            let prefix = attribute_prefix(&socket.config);
            let probe = tokio::time::timeout(FINGERPRINT_DEADLINE, async {
                let version = socket.client.ping().await?;
                let info = socket.client.info().await?;
                Ok::<_, PodmanError>((version, info))
            })
            .await;
            let (version, info) = match probe {
                Ok(Ok(found)) => found,
                failed => {
                    attributes.insert(
                        format!("{prefix}.health"),
                        Attribute::String("unhealthy".into()),
                    );
                    let reason = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => format!("no answer within {FINGERPRINT_DEADLINE:?}"),
                    };
                    unhealthy.push(format!("{} ({reason})", socket.config.name));
                    continue;
                }
            };
            *socket.facts.lock().await = Some(facts::from_info(&info, &version, &socket.config));
            let mut put = |key: &str, value: Attribute| {
                attributes.insert(format!("{prefix}.{key}"), value);
            };
            put("health", Attribute::String("healthy".into()));
            put("defaultPodman", Attribute::Bool(socket.config.default));
            put("socketName", Attribute::String(socket.config.name.clone()));
            put("version", Attribute::String(version));
            put(
                "engineVersion",
                Attribute::String(info.version.version.clone()),
            );
            let Some(host) = &info.host else { continue };
            put("appArmor", Attribute::Bool(host.security.apparmor_enabled));
            put(
                "capabilities",
                Attribute::String(host.security.capabilities.clone()),
            );
            put(
                "cgroupVersion",
                Attribute::String(host.cgroup_version.clone()),
            );
            put("rootless", Attribute::Bool(host.security.rootless));
            put(
                "seccompEnabled",
                Attribute::Bool(host.security.seccomp_enabled),
            );
            put(
                "selinuxEnabled",
                Attribute::Bool(host.security.selinux_enabled),
            );
            if !host.oci_runtime.path.is_empty() {
                put(
                    "ociRuntime",
                    Attribute::String(host.oci_runtime.path.clone()),
                );
            }
            if !host.remote_socket.path.is_empty() {
                put("socket", Attribute::String(host.remote_socket.path.clone()));
            }
        }
        unhealthy.sort();
        let (health, description) = if unhealthy.is_empty() {
            (
                Health::Healthy,
                "All Podman sockets are responding.".to_string(),
            )
        } else if unhealthy.len() == self.sockets.len() {
            // Before podman was ever reached it is not there (as the Go plugin reports);
            // once it was, losing it is a fault of a detected driver, with its reason.
            let health = if self.ever_healthy.load(Ordering::Relaxed) {
                Health::Unhealthy
            } else {
                Health::Undetected
            };
            (
                health,
                format!(
                    "Cannot connect to any Podman socket: {}",
                    unhealthy.join("; ")
                ),
            )
        } else {
            (
                Health::Unhealthy,
                format!(
                    "Cannot fingerprint certain podman sockets: {}",
                    unhealthy.join("; ")
                ),
            )
        };
        if health == Health::Healthy {
            self.ever_healthy.store(true, Ordering::Relaxed);
        }
        attributes.insert(
            "driver.podman".to_string(),
            Attribute::Bool(health != Health::Undetected),
        );
        Fingerprint {
            health,
            description,
            attributes,
        }
    }
}

//! The bench's task: one spec, expressed three ways (core `TaskSpec`, the agent's proto
//! `TaskConfig`, and the raw SpecGenerator body the core would send), so every variant
//! starts the same container.

use std::path::Path;
use std::time::Duration;

use nomad_driver_podman::driver::podman::{DeleteOptions, ListOptions, PodmanClient};
use nomad_driver_podman::driver::{
    container_spec, DriverConfig, HostFacts, SpecGenerator, TaskConfig, TaskContext, TaskResources,
    TaskSpec,
};
use nomad_driver_podman::modes::plugin::proto::drivers;
use serde_json::{json, Value};

use super::plugin::cty_msgpack;
use super::service::BUSYBOX_IMAGE;
use super::BenchResult;

/// Label key on every container the bench creates (value: the run's id).
pub const BENCH_LABEL: &str = "ndp-bench";
const CPU_SHARES: u64 = 100;
const MEMORY_MB: i64 = 64;

/// One task to start.
pub struct BenchTask {
    pub spec: TaskSpec,
    /// The task's `config {}` as JSON (what the agent encodes as msgpack).
    pub config: Value,
}

impl BenchTask {
    /// A busybox task of this run named `name` running `command args...`.
    pub fn new(run: &str, name: &str, command: &str, args: &[&str]) -> BenchResult<Self> {
        let config = json!({
            "image": BUSYBOX_IMAGE,
            "command": command,
            "args": args,
            "labels": { BENCH_LABEL: run },
        });
        let alloc_id = uuid::Uuid::new_v4().to_string();
        let spec = TaskSpec {
            config: TaskConfig::from_value(&config).map_err(|e| format!("task config: {e}"))?,
            context: TaskContext {
                id: format!("{alloc_id}/{name}/0"),
                name: name.to_string(),
                alloc_id,
                job_name: "bench".into(),
                job_id: "bench".into(),
                task_group_name: "bench".into(),
                namespace: "default".into(),
                resources: TaskResources {
                    cpu_shares: CPU_SHARES,
                    memory_mb: MEMORY_MB,
                    ..TaskResources::default()
                },
                kill_timeout: Duration::from_secs(1),
                ..TaskContext::default()
            },
        };
        Ok(BenchTask { spec, config })
    }

    /// A sleeping task: what most of the figures need.
    pub fn sleeper(run: &str, name: &str) -> BenchResult<Self> {
        Self::new(run, name, "sleep", &["3600"])
    }

    pub fn id(&self) -> &str {
        &self.spec.context.id
    }

    /// The proto `TaskConfig` the agent would send, logging into `stdout`/`stderr`.
    pub fn proto(&self, stdout: &Path, stderr: &Path) -> drivers::TaskConfig {
        let context = &self.spec.context;
        drivers::TaskConfig {
            id: context.id.clone(),
            name: context.name.clone(),
            alloc_id: context.alloc_id.clone(),
            job_name: context.job_name.clone(),
            job_id: context.job_id.clone(),
            task_group_name: context.task_group_name.clone(),
            namespace: context.namespace.clone(),
            msgpack_driver_config: cty_msgpack(&self.config),
            resources: Some(drivers::Resources {
                allocated_resources: Some(drivers::AllocatedTaskResources {
                    cpu: Some(drivers::AllocatedCpuResources {
                        cpu_shares: CPU_SHARES as i64,
                    }),
                    memory: Some(drivers::AllocatedMemoryResources {
                        memory_mb: MEMORY_MB,
                        memory_max_mb: 0,
                    }),
                    networks: Vec::new(),
                }),
                linux_resources: Some(drivers::LinuxResources {
                    cpu_shares: CPU_SHARES as i64,
                    memory_limit_bytes: MEMORY_MB * 1024 * 1024,
                    ..Default::default()
                }),
                ports: Vec::new(),
            }),
            stdout_path: stdout.display().to_string(),
            stderr_path: stderr.display().to_string(),
            ..Default::default()
        }
    }
}

/// What the raw-API variants need to build the core's body without the core.
pub struct RawApi {
    pub client: PodmanClient,
    pub config: DriverConfig,
    pub facts: HostFacts,
    pub image_id: String,
}

impl RawApi {
    pub async fn new(client: PodmanClient, config: DriverConfig) -> BenchResult<Self> {
        let version = client.ping().await.map_err(|e| e.to_string())?;
        let info = client.info().await.map_err(|e| e.to_string())?;
        let host = info.host.unwrap_or_default();
        let mut parts = version.split('.').map(|p| p.parse().unwrap_or(0));
        let facts = HostFacts {
            rootless: host.security.rootless,
            cgroup_v2: host.cgroup_version == "v2",
            cgroup_manager: host.cgroup_manager,
            api_version: (
                parts.next().unwrap_or(0),
                parts.next().unwrap_or(0),
                parts.next().unwrap_or(0),
            ),
            num_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            socket_is_unix: true,
        };
        let image_id = client
            .image_inspect(BUSYBOX_IMAGE)
            .await
            .map_err(|e| e.to_string())?
            .id;
        Ok(RawApi {
            client,
            config,
            facts,
            image_id,
        })
    }

    /// The SpecGenerator body the core sends for `task`.
    pub fn body(&self, task: &BenchTask) -> BenchResult<SpecGenerator> {
        container_spec(&task.spec, &self.config, &self.facts, &self.image_id)
            .map_err(|e| format!("spec of {}: {e}", task.id()))
    }

    /// `POST /containers/create` + `POST /containers/{id}/start`.
    pub async fn create_and_start(&self, body: &SpecGenerator) -> BenchResult<String> {
        let created = self
            .client
            .container_create(body)
            .await
            .map_err(|e| e.to_string())?;
        self.client
            .container_start(&created.id)
            .await
            .map_err(|e| e.to_string())?;
        Ok(created.id)
    }
}

/// Removes every container of this run, whatever its state.
pub async fn remove_run_containers(client: &PodmanClient, run: &str) -> BenchResult<()> {
    let containers = client
        .container_list(&ListOptions {
            all: true,
            labels: vec![format!("{BENCH_LABEL}={run}")],
            names: Vec::new(),
        })
        .await
        .map_err(|e| e.to_string())?;
    let removals = containers.iter().map(|c| remove(client, &c.id));
    futures::future::join_all(removals).await;
    Ok(())
}

pub async fn remove(client: &PodmanClient, id: &str) {
    let _ = client
        .container_delete(
            id,
            DeleteOptions {
                force: true,
                volumes: true,
                stop_timeout: Some(Duration::ZERO),
            },
        )
        .await;
}

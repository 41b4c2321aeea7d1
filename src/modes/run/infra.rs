//! The container that holds a bridge group's network namespace (Nomad's `nomad_init`
//! pause container): it publishes the group's ports and every task joins it.
//!
//! Its image needs no registry: unless `--infra-image` names one, it runs the driver's
//! pause image (`crate::driver::image::pause`), made on first use.

use crate::driver::logs::{Rotation, SinkKind};

use crate::driver::task::{NetworkMode, TaskConfig, TaskContext, TaskSpec};

use super::check::INFRA_TASK;
use super::env::BridgeInfo;
use super::labels;
use super::task_runner::{core_ports, AllocContext, BridgeNamespace};

/// A pause loop that exits at once on SIGTERM/SIGINT (for a `--infra-image` with a shell).
const PAUSE: &str = "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done";

/// The image the namespace holder runs.
#[derive(Debug, Clone)]
pub enum InfraImage {
    /// `--infra-image`: run as given, with a shell pause loop.
    Given(String),
    /// The runner's pause image: its entrypoint pauses.
    Pause(String),
}

impl InfraImage {
    fn name(&self) -> &str {
        match self {
            InfraImage::Given(n) | InfraImage::Pause(n) => n,
        }
    }
}

pub fn task_id(ctx: &AllocContext) -> String {
    format!("{}/{INFRA_TASK}/1", ctx.alloc.id)
}

/// Starts the namespace holder; the returned namespace is what tasks join.
pub async fn start(ctx: &AllocContext, image: &InfraImage) -> Result<BridgeNamespace, String> {
    let group = ctx.group();
    let labels_map = labels::infra_labels(
        &ctx.job, group, INFRA_TASK, &ctx.alloc, &ctx.dir, &ctx.ports,
    );
    let (command, args) = match image {
        InfraImage::Given(_) => ("sh".to_string(), vec!["-c".to_string(), PAUSE.to_string()]),
        // The pause image's entrypoint pauses.
        InfraImage::Pause(_) => (String::new(), Vec::new()),
    };
    // Built as a config, not decoded from a job: its labels are the runner's own, in the
    // prefix a job's config may not use.
    let config = TaskConfig {
        image: image.name().to_string(),
        // Asked for by name: rootless podman's default would be slirp4netns, which gives
        // the group no address of its own on a bridge as Nomad's bridge mode does.
        network_mode: NetworkMode::Bridge,
        command,
        args,
        ports: ctx.ports.iter().map(|p| p.label.clone()).collect(),
        hostname: group
            .network
            .as_ref()
            .and_then(|n| n.hostname.clone())
            .unwrap_or_default(),
        labels: labels_map,
        ..TaskConfig::default()
    };
    let context = TaskContext {
        id: task_id(ctx),
        name: INFRA_TASK.to_string(),
        alloc_id: ctx.alloc.id.clone(),
        job_name: ctx.job.name.clone(),
        job_id: ctx.job.id.clone(),
        task_group_name: group.name.clone(),
        namespace: ctx.job.namespace.clone(),
        alloc_dir: Some(ctx.dir.shared()),
        ports: Some(core_ports(&ctx.ports)),
        stdout_path: Some(ctx.dir.stdout(INFRA_TASK)),
        stderr_path: Some(ctx.dir.stderr(INFRA_TASK)),
        log_sink: SinkKind::File,
        log_rotation: Some(Rotation::default()),
        kill_timeout: std::time::Duration::from_secs(2),
        ..TaskContext::default()
    };
    let spec = TaskSpec { config, context };
    let container_name = spec.container_name();
    let started = ctx.driver.start(spec).await.map_err(|e| e.to_string())?;
    let ip = started.network.map(|n| n.ip).unwrap_or_default();
    Ok(BridgeNamespace {
        container_name,
        info: BridgeInfo { ip },
    })
}

/// Stops and removes the namespace holder.
pub async fn stop(ctx: &AllocContext) {
    let id = task_id(ctx);
    let _ = ctx
        .driver
        .stop(&id, std::time::Duration::from_secs(2), None)
        .await;
    let _ = ctx.driver.destroy(&id, true).await;
}

//! The container that holds a bridge group's network namespace (Nomad's `nomad_init`
//! pause container): it publishes the group's ports and every task joins it.

use crate::driver::logs::SinkKind;
use serde_json::json;

use crate::driver::task::{TaskConfig, TaskContext, TaskSpec};

use super::check::INFRA_TASK;
use super::env::BridgeInfo;
use super::labels;
use super::task_runner::{core_ports, AllocContext, BridgeNamespace};

/// A pause loop that exits at once on SIGTERM/SIGINT.
const PAUSE: &str = "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done";

pub fn task_id(ctx: &AllocContext) -> String {
    format!("{}/{INFRA_TASK}/1", ctx.alloc.id)
}

/// Starts the namespace holder; the returned namespace is what tasks join.
pub async fn start(ctx: &AllocContext, image: &str) -> Result<BridgeNamespace, String> {
    let group = ctx.group();
    let labels_map = labels::infra_labels(
        &ctx.job, group, INFRA_TASK, &ctx.alloc, &ctx.dir, &ctx.ports,
    );
    let mut config = TaskConfig::from_value(&json!({
        "image": image,
        "command": "sh",
        "args": ["-c", PAUSE],
        "ports": ctx.ports.iter().map(|p| p.label.clone()).collect::<Vec<_>>(),
        "hostname": group.network.as_ref().and_then(|n| n.hostname.clone()).unwrap_or_default(),
    }))
    .map_err(|e| format!("network namespace container: {e}"))?;
    // The runner's labels are reserved (refused in task configs): added after decoding.
    config.labels.extend(labels_map);
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

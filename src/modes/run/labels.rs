//! Container labels that let `ps`, `logs` and `stop` find a job's containers without the
//! runner that started them (for example after it was killed).

use std::collections::BTreeMap;

use super::alloc::AllocDir;
use super::env::AllocIdentity;
use super::model::{Group, Job, Task};
use super::ports::AllocatedPort;

/// The job id; every runner container has it.
pub const JOB: &str = "io.nomad-driver-podman.runner.job";
pub const GROUP: &str = "io.nomad-driver-podman.runner.group";
pub const TASK: &str = "io.nomad-driver-podman.runner.task";
pub const ALLOC_ID: &str = "io.nomad-driver-podman.runner.alloc_id";
pub const ALLOC_INDEX: &str = "io.nomad-driver-podman.runner.alloc_index";
/// The allocation directory on the host (for `logs`).
pub const ALLOC_DIR: &str = "io.nomad-driver-podman.runner.alloc_dir";
/// Lifecycle stage (`main`, `prestart`, `prestart_sidecar`, ..., `infra`), for stop order.
pub const STAGE: &str = "io.nomad-driver-podman.runner.stage";
pub const LEADER: &str = "io.nomad-driver-podman.runner.leader";
/// Whole seconds, for `stop` without the runner.
pub const KILL_TIMEOUT: &str = "io.nomad-driver-podman.runner.kill_timeout";
pub const KILL_SIGNAL: &str = "io.nomad-driver-podman.runner.kill_signal";
/// The allocation's ports as `label host_ip:port->to`, for `ps`.
pub const PORTS: &str = "io.nomad-driver-podman.runner.ports";

pub const INFRA_STAGE: &str = "infra";

pub fn task_labels(
    job: &Job,
    group: &Group,
    task: &Task,
    alloc: &AllocIdentity,
    dir: &AllocDir,
    ports: &[AllocatedPort],
) -> BTreeMap<String, String> {
    let mut labels = common(job, group, &task.name, alloc, dir, task.stage().id(), ports);
    labels.insert(LEADER.into(), task.leader.to_string());
    labels.insert(
        KILL_TIMEOUT.into(),
        task.kill_timeout.as_secs().max(1).to_string(),
    );
    if let Some(signal) = &task.kill_signal {
        labels.insert(KILL_SIGNAL.into(), signal.clone());
    }
    labels
}

pub fn infra_labels(
    job: &Job,
    group: &Group,
    name: &str,
    alloc: &AllocIdentity,
    dir: &AllocDir,
    ports: &[AllocatedPort],
) -> BTreeMap<String, String> {
    common(job, group, name, alloc, dir, INFRA_STAGE, ports)
}

fn common(
    job: &Job,
    group: &Group,
    task: &str,
    alloc: &AllocIdentity,
    dir: &AllocDir,
    stage: &str,
    ports: &[AllocatedPort],
) -> BTreeMap<String, String> {
    let ports: Vec<String> = ports
        .iter()
        .map(|p| format!("{} {}:{}->{}", p.label, p.host_ip, p.value, p.to))
        .collect();
    [
        (JOB, job.id.clone()),
        (GROUP, group.name.clone()),
        (TASK, task.to_string()),
        (ALLOC_ID, alloc.id.clone()),
        (ALLOC_INDEX, alloc.index.to_string()),
        (ALLOC_DIR, dir.root.display().to_string()),
        (STAGE, stage.to_string()),
        (PORTS, ports.join(", ")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

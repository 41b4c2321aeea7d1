//! Garbage collection beyond a task's own container: containers this driver created that
//! no task owns any more (`gc.dangling_containers`), and images no task uses
//! (`gc.image`, `gc.image_delay`).

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use super::podman::{DeleteOptions, ListContainer, ListOptions};
use super::spec::MANAGED_LABEL;
use super::{Driver, Socket, TaskEvent};

/// Containers with a label under one of these prefixes belong to a standalone tool (the
/// runner, the conformance harness) that cleans up after itself; the plugin never sweeps
/// them even though they share the podman service.
const TOOL_OWNED_PREFIXES: [&str; 2] = [
    "io.nomad-driver-podman.runner.",
    "io.nomad-driver-podman.conformance",
];

/// Whether a listed container is one the sweep may remove: ours, running, owned by no
/// known task, not a standalone tool's, and older than the grace period (a start may be
/// in flight). Exited containers are never dangling: `gc.container = false` keeps them on
/// purpose (as Nomad's docker driver's reconciler, which only looks at running ones).
fn is_dangling(
    container: &ListContainer,
    known: &HashSet<String>,
    grace: Duration,
    now: SystemTime,
) -> bool {
    if container.labels.get(MANAGED_LABEL).map(String::as_str) != Some("true")
        || container.state != "running"
    {
        return false;
    }
    if container
        .labels
        .keys()
        .any(|k| TOOL_OWNED_PREFIXES.iter().any(|p| k.starts_with(p)))
    {
        return false;
    }
    if known.contains(&container.id) {
        return false;
    }
    let Some(created) = container.created_at() else {
        // Age unknown: assume it may be a start in flight.
        return false;
    };
    now.duration_since(created).is_ok_and(|age| age >= grace)
}

impl Driver {
    /// After a task is destroyed: with `gc.image`, removes its image once `gc.image_delay`
    /// has passed and neither a task of this driver nor any container on the socket uses
    /// it. The count of users is derived from the live task table (rebuilt by `recover`
    /// after a restart) and podman's container list, so nothing can drift.
    pub(super) fn release_image(&self, socket: &Arc<Socket>, image_id: String) {
        if !self.config.gc.image || image_id.is_empty() {
            return;
        }
        let delay = self.config.gc.image_delay;
        let tasks = Arc::downgrade(&self.tasks);
        let events = self.events.clone();
        let socket = socket.clone();
        let cancel = self.cancel.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            let Some(tasks) = Weak::upgrade(&tasks) else {
                return;
            };
            let in_use_by_task = tasks
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .any(|t| t.state.image_id == image_id);
            if in_use_by_task {
                return;
            }
            let listed = socket
                .client
                .container_list(&ListOptions {
                    all: true,
                    ..ListOptions::default()
                })
                .await;
            match listed {
                Ok(containers) if !containers.iter().any(|c| c.image_id == image_id) => {}
                _ => return,
            }
            if socket.client.image_remove(&image_id).await.is_ok() {
                let _ = events.send(driver_event(format!("removed unused image {image_id}")));
            }
        });
    }

    /// Starts the periodic sweeps the plugin configuration enables. The first sweep runs
    /// one period after the call, so tasks the orchestrator is about to recover after a
    /// restart are never mistaken for dangling ones.
    pub fn start_garbage_collection(self: &Arc<Self>) {
        let dangling = &self.config.gc.dangling_containers;
        if dangling.enabled && !dangling.period.is_zero() {
            let period = dangling.period;
            let driver = Arc::downgrade(self);
            let cancel = self.cancel.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(period) => {}
                    }
                    let Some(driver) = Weak::upgrade(&driver) else {
                        return;
                    };
                    driver.sweep_dangling_containers().await;
                }
            });
        }
    }

    /// Removes (or with `dry_run` only reports) every dangling container on every socket
    /// and returns their ids. Never touches a container without the driver's label.
    pub async fn sweep_dangling_containers(&self) -> Vec<String> {
        let config = &self.config.gc.dangling_containers;
        let known: HashSet<String> = self
            .read_tasks()
            .values()
            .map(|t| t.state.container_id.clone())
            .collect();
        let mut swept = Vec::new();
        for socket in &self.sockets {
            let listed = socket
                .client
                .container_list(&ListOptions {
                    all: false,
                    labels: vec![format!("{MANAGED_LABEL}=true")],
                    names: Vec::new(),
                })
                .await;
            let Ok(containers) = listed else { continue };
            let now = SystemTime::now();
            for container in containers {
                if !is_dangling(&container, &known, config.creation_grace, now) {
                    continue;
                }
                let removed = config.dry_run
                    || socket
                        .client
                        .container_delete(
                            &container.id,
                            DeleteOptions {
                                force: true,
                                volumes: true,
                                stop_timeout: None,
                            },
                        )
                        .await
                        .is_ok();
                if removed {
                    let _ = self.events.send(driver_event(format!(
                        "{} dangling container {} ({})",
                        if config.dry_run {
                            "would remove"
                        } else {
                            "removed"
                        },
                        container.names.first().map(String::as_str).unwrap_or(""),
                        container.id
                    )));
                    swept.push(container.id);
                }
            }
        }
        swept
    }
}

/// An event about the driver itself rather than one task.
pub(super) fn driver_event(message: String) -> TaskEvent {
    TaskEvent {
        task_id: String::new(),
        alloc_id: String::new(),
        task_name: String::new(),
        message,
        annotations: Default::default(),
        timestamp: SystemTime::now(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use std::time::UNIX_EPOCH;

    use super::*;

    fn container(id: &str, labels: &[(&str, &str)], created: u64) -> ListContainer {
        ListContainer {
            id: id.into(),
            state: "running".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
            created: created.to_string(),
            ..ListContainer::default()
        }
    }

    const NOW: u64 = 1_000_000;

    fn dangling(c: &ListContainer, known: &[&str]) -> bool {
        let known = known.iter().map(|s| s.to_string()).collect();
        is_dangling(
            c,
            &known,
            Duration::from_secs(300),
            UNIX_EPOCH + Duration::from_secs(NOW),
        )
    }

    #[test]
    fn only_old_unknown_containers_of_ours_are_dangling() {
        let old = NOW - 600;
        assert!(dangling(
            &container("a", &[(MANAGED_LABEL, "true")], old),
            &[]
        ));
        assert!(
            !dangling(&container("a", &[(MANAGED_LABEL, "true")], old), &["a"]),
            "known task"
        );
        assert!(!dangling(&container("a", &[], old), &[]), "not ours");
        assert!(!dangling(
            &container("a", &[(MANAGED_LABEL, "false")], old),
            &[]
        ));
        assert!(
            !dangling(&container("a", &[(MANAGED_LABEL, "true")], NOW - 10), &[]),
            "inside the creation grace"
        );
        for state in ["exited", "created", "stopped"] {
            let mut stopped = container("a", &[(MANAGED_LABEL, "true")], old);
            stopped.state = state.into();
            assert!(
                !dangling(&stopped, &[]),
                "{state}: kept by gc.container = false"
            );
        }
        assert!(
            !dangling(
                &container(
                    "a",
                    &[
                        (MANAGED_LABEL, "true"),
                        ("io.nomad-driver-podman.runner.job", "j")
                    ],
                    old
                ),
                &[]
            ),
            "the runner's"
        );
        assert!(!dangling(
            &container(
                "a",
                &[
                    (MANAGED_LABEL, "true"),
                    ("io.nomad-driver-podman.conformance", "r")
                ],
                old
            ),
            &[]
        ));
    }
}

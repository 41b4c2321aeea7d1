//! Keeps rootless podman 4's shared network namespace alive while the driver starts
//! bridge containers.
//!
//! Rootless podman before 5.0 puts the veth of every bridge-network container into one
//! rootless network namespace (with slirp4netns and the bridge). When a container leaves,
//! its `podman container cleanup` tears that namespace down if no *other* container has a
//! network namespace in podman's database. A container that is being started has set up
//! its interface in the shared namespace already but records its own namespace only a
//! moment later, after podman released the namespace lock: a cleanup in that window sees
//! nobody, removes the namespace, and the new container is left with only `lo` (its
//! address still on record, its published ports held by rootlessport and reset). The
//! driver's start check (`netcheck`) sees the loss when it has already happened; the
//! teardown can also finish after the check (slirp4netns exits a moment after the unmount).
//!
//! The keeper closes the window: before the first bridge container of the driver starts on
//! such a host, the driver runs one small container of its own on the default bridge
//! network (the pause image) and keeps it while any of its bridge tasks lives. With the
//! keeper's namespace on record, every cleanup finds another user and leaves the shared
//! namespace alone; a cleanup that decided before the keeper was on record holds the
//! namespace lock until its teardown is over, so the task's own setup comes after it.
//! Podman 5 counts the namespace's users itself, and rootful podman has no shared
//! namespace: neither needs a keeper.
//!
//! The keeper carries [`KEEPER_LABEL`] (value: its owner process, see [`Owner`]) and not
//! the driver's managed label, so no dangling-container sweep removes it. A keeper whose
//! owner died (a killed plugin or runner) is removed by the next driver process that makes
//! or gives up a keeper on the same socket.

use std::path::Path;

use serde_json::json;
use tokio::sync::Mutex;

use super::image::pause::{self, PauseImageError};
use super::podman::{DeleteOptions, ListOptions, PodmanClient, PodmanError};
use super::spec::SpecGenerator;
use super::HostFacts;

/// On every keeper container; the value names the owner process.
pub const KEEPER_LABEL: &str = "io.nomad-driver-podman.netns-keeper";

const REMOVE: DeleteOptions = DeleteOptions {
    force: true,
    volumes: true,
    stop_timeout: Some(std::time::Duration::ZERO),
};

/// Whether a container with this spec sets up its interface in rootless podman 4's shared
/// network namespace: a bridge-mode container on a local rootless podman before 5.0.
pub(crate) fn needed(facts: &HostFacts, body: &SpecGenerator) -> bool {
    facts.rootless
        && facts.socket_is_unix
        && facts.api_version.0 < 5
        && body.network.netns.nsmode == "bridge"
}

/// Why a keeper could not be started (the task starts anyway; `netcheck` still applies).
#[derive(Debug, thiserror::Error)]
pub enum KeeperError {
    #[error(transparent)]
    Image(#[from] PauseImageError),
    #[error("cannot start the namespace keeper: {0}")]
    Podman(#[from] PodmanError),
}

/// The process a keeper belongs to: its pid namespace, pid and start time (clock ticks
/// since boot), as `pidns/pid/starttime`. A pid alone could be reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owner {
    pid_namespace: String,
    pid: u32,
    start_time: u64,
}

impl Owner {
    /// This process, as seen under `proc_root`; `None` when it cannot be read there.
    pub(crate) fn this_process(proc_root: &Path) -> Option<Owner> {
        Owner::of(proc_root, std::process::id())
    }

    fn of(proc_root: &Path, pid: u32) -> Option<Owner> {
        let stat = std::fs::read_to_string(stat_path(proc_root, pid)).ok()?;
        let start_time = start_time(&stat)?;
        let pid_namespace = std::fs::read_link(proc_root.join("self").join("ns").join("pid"))
            .ok()?
            .to_string_lossy()
            .into_owned();
        Some(Owner {
            pid_namespace,
            pid,
            start_time,
        })
    }

    fn label(&self) -> String {
        format!("{}/{}/{}", self.pid_namespace, self.pid, self.start_time)
    }

    fn parse(label: &str) -> Option<Owner> {
        let mut parts = label.rsplitn(3, '/');
        let start_time = parts.next()?.parse().ok()?;
        let pid = parts.next()?.parse().ok()?;
        let pid_namespace = parts.next()?.to_string();
        Some(Owner {
            pid_namespace,
            pid,
            start_time,
        })
    }

    /// True only when the owner is known to be gone: same pid namespace as this process,
    /// and its pid is free or holds another process. Anything unreadable is "alive".
    fn is_gone(&self, proc_root: &Path, me: &Owner) -> bool {
        if self.pid_namespace != me.pid_namespace {
            return false;
        }
        match std::fs::read_to_string(stat_path(proc_root, self.pid)) {
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
            Ok(stat) => start_time(&stat).is_some_and(|now| now != self.start_time),
        }
    }
}

fn stat_path(proc_root: &Path, pid: u32) -> std::path::PathBuf {
    proc_root.join(pid.to_string()).join("stat")
}

/// Field 22 of a `/proc/<pid>/stat`; the command name (field 2) may hold spaces and
/// parentheses.
fn start_time(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

#[derive(Debug, Default)]
struct Inner {
    /// Tasks counted as users (started or recovered bridge tasks, and starts in flight).
    users: usize,
    /// The keeper container's id, when one runs.
    container: Option<String>,
}

/// One socket's keeper. Every counted user is released once.
#[derive(Debug, Default)]
pub(crate) struct NetnsKeeper {
    inner: Mutex<Inner>,
}

impl NetnsKeeper {
    /// Counts a user that is about to start a bridge container, starting the keeper first
    /// if none runs. The user is counted even when the keeper cannot be started (then the
    /// next user tries again); the error says why, for the task's events.
    pub(crate) async fn acquire(
        &self,
        client: &PodmanClient,
        proc_root: &Path,
    ) -> Result<(), KeeperError> {
        let mut inner = self.inner.lock().await;
        inner.users += 1;
        if inner.container.is_some() {
            return Ok(());
        }
        let owner = Owner::this_process(proc_root);
        let id = start_keeper(client, owner.as_ref()).await?;
        inner.container = Some(id);
        if let Some(me) = &owner {
            remove_orphans(client, proc_root, me).await;
        }
        Ok(())
    }

    /// Counts a user whose container already runs (a recovered task): it needs no keeper
    /// now, but one started later must not be removed while it lives.
    pub(crate) async fn count(&self) {
        self.inner.lock().await.users += 1;
    }

    /// A user is gone; the last one removes the keeper. Held under the lock, so a start
    /// waits until the removal is over and then starts a new keeper. An error names the
    /// keeper podman would not remove.
    pub(crate) async fn release(
        &self,
        client: &PodmanClient,
        proc_root: &Path,
    ) -> Result<(), (String, PodmanError)> {
        let mut inner = self.inner.lock().await;
        inner.users = inner.users.saturating_sub(1);
        if inner.users > 0 {
            return Ok(());
        }
        let Some(id) = inner.container.take() else {
            return Ok(());
        };
        let removed = match client.container_delete(&id, REMOVE).await {
            Ok(()) | Err(PodmanError::NotFound { .. }) => Ok(()),
            Err(e) => Err((id, e)),
        };
        if let Some(me) = Owner::this_process(proc_root) {
            remove_orphans(client, proc_root, &me).await;
        }
        removed
    }
}

async fn start_keeper(client: &PodmanClient, owner: Option<&Owner>) -> Result<String, KeeperError> {
    let image = pause::ensure(client).await?;
    let owner_label = owner.map_or_else(|| "unknown".to_string(), Owner::label);
    let name = format!(
        "nomad-driver-podman-netns-keeper-{}-{}",
        std::process::id(),
        unique_suffix()
    );
    // The keeper's only job is to be on record with a bridge namespace: no ports, no
    // capabilities, no writable root.
    let body = json!({
        "name": name,
        "image": image,
        "netns": {"nsmode": "bridge"},
        "labels": {KEEPER_LABEL: owner_label},
        "cap_drop": ["ALL"],
        "read_only_filesystem": true,
        "no_new_privileges": true,
        "stop_timeout": 0,
    });
    let created = client.container_create(&body).await?;
    if let Err(e) = client.container_start(&created.id).await {
        let _ = client.container_delete(&created.id, REMOVE).await;
        return Err(e.into());
    }
    Ok(created.id)
}

/// Distinguishes the keepers of several drivers in one process (tests, the harness).
fn unique_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Removes the keepers whose owner process is gone. Best effort: a failure leaves them for
/// the next sweep.
async fn remove_orphans(client: &PodmanClient, proc_root: &Path, me: &Owner) {
    let listed = client
        .container_list(&ListOptions {
            all: true,
            labels: vec![KEEPER_LABEL.to_string()],
            ..ListOptions::default()
        })
        .await;
    let Ok(containers) = listed else {
        return;
    };
    for container in containers {
        let gone = container
            .labels
            .get(KEEPER_LABEL)
            .and_then(|label| Owner::parse(label))
            .is_some_and(|owner| owner.is_gone(proc_root, me));
        if gone {
            let _ = client.container_delete(&container.id, REMOVE).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc_with(entries: &[(u32, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("self/ns")).expect("self/ns");
        std::os::unix::fs::symlink("pid:[4026531836]", dir.path().join("self/ns/pid"))
            .expect("pid ns link");
        for (pid, stat) in entries {
            let pid_dir = dir.path().join(pid.to_string());
            std::fs::create_dir_all(&pid_dir).expect("pid dir");
            std::fs::write(pid_dir.join("stat"), stat).expect("stat");
        }
        dir
    }

    fn stat(pid: u32, name: &str, start_time: u64) -> String {
        // Fields 4 to 21 do not matter here; 22 is the start time.
        let middle = vec!["0"; 18].join(" ");
        format!("{pid} ({name}) S {middle} {start_time} 0 0\n")
    }

    #[test]
    fn an_owner_is_read_from_its_stat_even_with_spaces_and_parentheses_in_its_name() {
        let proc = proc_with(&[(77, &stat(77, "nomad (driver) x", 12345))]);
        let owner = Owner::of(proc.path(), 77).expect("owner");
        assert_eq!(owner.pid, 77);
        assert_eq!(owner.start_time, 12345);
        assert_eq!(owner.pid_namespace, "pid:[4026531836]");
        assert_eq!(owner.label(), "pid:[4026531836]/77/12345");
        assert_eq!(Owner::parse(&owner.label()), Some(owner));
        assert_eq!(Owner::parse("nonsense"), None);
    }

    #[test]
    fn an_owner_is_gone_only_when_its_pid_is_free_or_reused_in_the_same_pid_namespace() {
        let proc = proc_with(&[
            (1, &stat(1, "me", 5)),
            (77, &stat(77, "driver", 100)),
            (88, &stat(88, "other", 999)),
        ]);
        let me = Owner::of(proc.path(), 1).expect("me");
        let alive = Owner::parse("pid:[4026531836]/77/100").expect("alive");
        let reused = Owner::parse("pid:[4026531836]/88/100").expect("reused");
        let free = Owner::parse("pid:[4026531836]/99/100").expect("free");
        let elsewhere = Owner::parse("pid:[1]/99/100").expect("elsewhere");
        assert!(!alive.is_gone(proc.path(), &me));
        assert!(reused.is_gone(proc.path(), &me));
        assert!(free.is_gone(proc.path(), &me));
        assert!(!elsewhere.is_gone(proc.path(), &me));
    }

    #[test]
    fn only_bridge_containers_of_a_local_rootless_podman_before_5_need_a_keeper() {
        let mut body = SpecGenerator::default();
        body.network.netns.nsmode = "bridge".into();
        let rootless = HostFacts {
            rootless: true,
            api_version: (4, 3, 1),
            ..HostFacts::default()
        };
        assert!(needed(&rootless, &body));
        let podman5 = HostFacts {
            api_version: (5, 4, 2),
            ..rootless.clone()
        };
        assert!(!needed(&podman5, &body));
        let rootful = HostFacts {
            rootless: false,
            ..rootless.clone()
        };
        assert!(!needed(&rootful, &body));
        let remote = HostFacts {
            socket_is_unix: false,
            ..rootless.clone()
        };
        assert!(!needed(&remote, &body));
        body.network.netns.nsmode = "slirp4netns".into();
        assert!(!needed(&rootless, &body));
    }
}

//! What the driver knows about a socket's podman host, and an optional on-disk memory of
//! it. `GET /libpod/info` is podman's slowest cheap-looking call (it runs the OCI
//! runtime, conmon and network tools for their versions: 230 to 400 ms here), and a
//! short-lived process (the runner) would wait for it before its first start every
//! time. With a cache the facts of an unchanged service come from disk; the libpod API
//! version always comes from a fresh ping, and info is asked again in the background so
//! the next process sees any change.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::config::SocketConfig;
use super::host::HostFacts;
use super::podman::{self, PodmanClient, PodmanError};

const CACHE_FILE: &str = "host-facts.json";
/// Remembered facts are asked again after this long, whatever the socket says.
const MAX_AGE: Duration = Duration::from_secs(3600);

/// The facts of `info` and the ping's API version.
pub(super) fn from_info(
    info: &podman::Info,
    api_version: &str,
    socket: &SocketConfig,
) -> HostFacts {
    HostFacts::from_info(info, api_version, socket.unix_path().is_some())
}

/// Asks podman (ping, then info).
pub(super) async fn ask(
    client: &PodmanClient,
    socket: &SocketConfig,
) -> Result<HostFacts, PodmanError> {
    let version = client.ping().await?;
    let info = client.info().await?;
    Ok(from_info(&info, &version, socket))
}

/// Remembered facts, by socket URL, in one JSON file.
#[derive(Debug, Clone)]
pub struct FactsCache {
    file: PathBuf,
}

/// Which service a unix socket belongs to: a restarted service makes a new socket file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SocketIdentity {
    dev: u64,
    ino: u64,
    ctime: i64,
    ctime_nsec: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    identity: SocketIdentity,
    /// Unix seconds.
    checked_at: u64,
    facts: HostFacts,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl FactsCache {
    /// A cache kept in `dir` (created when first written).
    pub fn in_dir(dir: &Path) -> Self {
        FactsCache {
            file: dir.join(CACHE_FILE),
        }
    }

    /// The remembered facts of this socket's current service, if any.
    pub(super) async fn load(&self, socket: &SocketConfig) -> Option<HostFacts> {
        let identity = identity(socket).await?;
        let entries = self.entries().await;
        entries
            .get(&socket.url)
            .filter(|e| {
                e.identity == identity
                    && unix_now().saturating_sub(e.checked_at) < MAX_AGE.as_secs()
            })
            .map(|e| e.facts.clone())
    }

    /// Remembers `facts` for the socket's current service. Best effort: a cache that
    /// cannot be written only costs the next process an info call.
    pub(super) async fn store(&self, socket: &SocketConfig, facts: &HostFacts) {
        let Some(identity) = identity(socket).await else {
            return;
        };
        let mut entries = self.entries().await;
        entries.insert(
            socket.url.clone(),
            Entry {
                identity,
                checked_at: unix_now(),
                facts: facts.clone(),
            },
        );
        let Ok(json) = serde_json::to_vec_pretty(&entries) else {
            return;
        };
        let Some(dir) = self.file.parent() else {
            return;
        };
        let temporary = self
            .file
            .with_extension(format!("tmp.{}", std::process::id()));
        let (dir, file) = (dir.to_path_buf(), self.file.clone());
        let _ = tokio::task::spawn_blocking(move || {
            let written = write_replacing(&dir, &temporary, &file, &json);
            if written.is_err() {
                let _ = std::fs::remove_file(&temporary);
            }
        })
        .await;
    }

    async fn entries(&self) -> BTreeMap<String, Entry> {
        let file = self.file.clone();
        match tokio::task::spawn_blocking(move || read_no_follow(&file)).await {
            Ok(Ok(bytes)) => serde_json::from_slice(&bytes).unwrap_or_default(),
            _ => BTreeMap::new(),
        }
    }
}

/// Writes `json` to a fresh 0600 `temporary` (`O_EXCL|O_NOFOLLOW`: a link planted under
/// that name is removed, never followed) and renames it over `file` (a rename replaces a
/// link, it does not write through it).
fn write_replacing(dir: &Path, temporary: &Path, file: &Path, json: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir)?;
    match std::fs::remove_file(temporary) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(temporary)?;
    out.write_all(json)?;
    drop(out);
    std::fs::rename(temporary, file)
}

/// The cache file's bytes, never read through a symlink; only a regular file of this
/// user counts.
fn read_no_follow(file: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(file)?;
    let meta = f.metadata()?;
    if !meta.is_file() || meta.uid() != nix::unistd::getuid().as_raw() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a regular file of this user",
        ));
    }
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Only unix sockets have an identity; facts of TCP endpoints are never cached.
async fn identity(socket: &SocketConfig) -> Option<SocketIdentity> {
    let path = socket.unix_path()?;
    let meta = tokio::fs::metadata(path).await.ok()?;
    Some(SocketIdentity {
        dev: meta.dev(),
        ino: meta.ino(),
        ctime: meta.ctime(),
        ctime_nsec: meta.ctime_nsec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix_socket(dir: &Path) -> (SocketConfig, std::os::unix::net::UnixListener) {
        let path = dir.join("podman.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        let socket = SocketConfig {
            name: "default".into(),
            url: format!("unix://{}", path.display()),
            default: true,
        };
        (socket, listener)
    }

    #[tokio::test]
    async fn facts_are_remembered_per_service() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = FactsCache::in_dir(&dir.path().join("state"));
        let (socket, listener) = unix_socket(dir.path());
        assert_eq!(cache.load(&socket).await, None);
        let facts = HostFacts {
            rootless: true,
            cgroup_v2: true,
            cgroup_manager: "systemd".into(),
            ..HostFacts::default()
        };
        cache.store(&socket, &facts).await;
        assert_eq!(cache.load(&socket).await, Some(facts.clone()));
        // Another socket URL knows nothing.
        let other = SocketConfig {
            name: "other".into(),
            url: "unix:///nowhere/podman.sock".into(),
            default: false,
        };
        assert_eq!(cache.load(&other).await, None);
        // Old facts are asked again.
        let mut entries = cache.entries().await;
        for entry in entries.values_mut() {
            entry.checked_at -= MAX_AGE.as_secs();
        }
        std::fs::write(&cache.file, serde_json::to_vec(&entries).expect("json")).expect("write");
        assert_eq!(cache.load(&socket).await, None);
        // A restarted service makes a new socket file: the old facts do not apply.
        drop(listener);
        std::fs::remove_file(dir.path().join("podman.sock")).expect("remove");
        let (socket, _listener) = unix_socket(dir.path());
        assert_eq!(cache.load(&socket).await, None);
    }

    #[tokio::test]
    async fn the_cache_file_is_private_and_never_written_through_a_link() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        std::fs::create_dir(&state).expect("mkdir");
        let cache = FactsCache::in_dir(&state);
        let (socket, _listener) = unix_socket(dir.path());
        // Links planted at the cache file and at this process's temporary name.
        let target = dir.path().join("target");
        std::fs::write(&target, "keep").expect("write");
        std::os::unix::fs::symlink(&target, state.join(CACHE_FILE)).expect("link");
        let temporary = cache
            .file
            .with_extension(format!("tmp.{}", std::process::id()));
        std::os::unix::fs::symlink(&target, &temporary).expect("link");
        assert_eq!(cache.load(&socket).await, None, "a link is not read");
        cache.store(&socket, &HostFacts::default()).await;
        assert_eq!(std::fs::read_to_string(&target).expect("read"), "keep");
        let meta = std::fs::symlink_metadata(&cache.file).expect("cache file");
        assert!(meta.is_file());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(cache.load(&socket).await, Some(HostFacts::default()));
    }

    #[tokio::test]
    async fn tcp_sockets_and_broken_files_are_not_cached() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = FactsCache::in_dir(dir.path());
        let tcp = SocketConfig {
            name: "default".into(),
            url: "http://127.0.0.1:1".into(),
            default: true,
        };
        cache.store(&tcp, &HostFacts::default()).await;
        assert_eq!(cache.load(&tcp).await, None);
        std::fs::write(dir.path().join(CACHE_FILE), "{not json").expect("write");
        let (socket, _listener) = unix_socket(dir.path());
        assert_eq!(cache.load(&socket).await, None);
        cache.store(&socket, &HostFacts::default()).await;
        assert_eq!(cache.load(&socket).await, Some(HostFacts::default()));
    }
}

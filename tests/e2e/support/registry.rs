//! The registries of the pull and auth tests: Debian's `docker-registry`, run as a
//! container of the lane's own podman through testcontainers (podman's Docker-compatible
//! API on the bed's socket), from an image the bed builds out of the host's package. No
//! network: the image is imported, never pulled, and the registry listens on loopback.
//!
//! Each lane's registry checks therefore run against a registry its own podman serves.
//! The containers carry the bed's test label and are removed with the bed's service.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use testcontainers::bollard::models::{HostConfig, PortBinding};
use testcontainers::core::{CopyDataSource, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use super::{free_loopback_port, podman, unique_name, TestPodman, BUSYBOX_IMAGE, TEST_LABEL_KEY};

/// The registry image, imported into each bed's storage on first use.
const REGISTRY_IMAGE: (&str, &str) = ("localhost/ndp-registry", "latest");
const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";
/// Where the image keeps its htpasswd file (copied in before the start).
const HTPASSWD_IN_CONTAINER: &str = "/auth/htpasswd";
/// Bound on a registry answering after its start; a guard against hangs.
const READY_DEADLINE: Duration = Duration::from_secs(20);

/// A `docker-registry` container of the bed's podman, published on a loopback port,
/// holding the busybox image as `<addr>/ndp/busybox:latest`.
pub struct TestRegistry {
    pub addr: SocketAddr,
    /// `Some((user, password))` when the registry requires htpasswd auth.
    pub credentials: Option<(String, String)>,
    /// Never dropped (the registries live as long as the test process); the bed's
    /// service cleanup removes the container.
    _container: ContainerAsync<GenericImage>,
}

impl TestRegistry {
    /// `<addr>/<repo>`, e.g. `127.0.0.1:5123/ndp/busybox:latest`.
    pub fn image(&self, repo: &str) -> String {
        format!("{}/{repo}", self.addr)
    }

    /// The busybox image as pushed into this registry.
    pub fn busybox(&self) -> String {
        self.image("ndp/busybox:latest")
    }

    /// `host:port` as a registry key (auth files, credential helpers).
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Pushes the busybox image under a fresh repository `ndp/<unique>`; returns
    /// `<addr>/ndp/<unique>:latest`. Nothing has pulled it yet.
    pub fn push_busybox(&self, prefix: &str) -> String {
        let target = self.image(&format!("ndp/{}:latest", unique_name(prefix)));
        let args = self.push_args(&target);
        let out = podman().cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(
            out.status.success(),
            "push to {target}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        target
    }

    fn push_args<'a>(&'a self, target: &'a str) -> Vec<String> {
        let mut args = vec!["push".to_string(), "--tls-verify=false".to_string()];
        if let Some((user, password)) = &self.credentials {
            args.push(format!("--creds={user}:{password}"));
        }
        args.extend([BUSYBOX_IMAGE.to_string(), target.to_string()]);
        args
    }

    fn start(credentials: Option<(String, String)>) -> Result<Self, String> {
        // One at a time: the free-port probe is racy otherwise.
        static START: Mutex<()> = Mutex::new(());
        let _serial = START.lock().unwrap_or_else(|e| e.into_inner());
        let bed = podman();
        import_registry_image(bed)?;
        let addr = free_loopback_port()?;
        let mut request = GenericImage::new(REGISTRY_IMAGE.0, REGISTRY_IMAGE.1)
            // Readiness is an HTTP answer on the published port (below): the log wait
            // would depend on how each podman version streams logs.
            .with_wait_for(WaitFor::Nothing)
            .with_label(TEST_LABEL_KEY, unique_name("registry"))
            .with_host_config_modifier(move |host: &mut HostConfig| {
                // Loopback only, on the port chosen above.
                host.port_bindings = Some(HashMap::from([(
                    "5000/tcp".to_string(),
                    Some(vec![PortBinding {
                        host_ip: Some("127.0.0.1".into()),
                        host_port: Some(addr.port().to_string()),
                    }]),
                )]));
                host.publish_all_ports = Some(false);
            });
        if let Some((user, password)) = &credentials {
            request = request
                .with_env_var("REGISTRY_AUTH", "htpasswd")
                .with_env_var("REGISTRY_AUTH_HTPASSWD_REALM", "ndp-e2e")
                .with_env_var("REGISTRY_AUTH_HTPASSWD_PATH", HTPASSWD_IN_CONTAINER)
                .with_copy_to(
                    HTPASSWD_IN_CONTAINER,
                    CopyDataSource::Data(htpasswd(user, password)?),
                );
        }
        let container = on_testcontainers_runtime(bed, async move {
            request
                .start()
                .await
                .map_err(|e| format!("start the registry container: {e}"))
        })?;
        if let Err(e) = wait_until_serving(addr) {
            let id = container.id().to_string();
            let logs = bed.cli(&["logs", &id]);
            let state = bed.cli(&[
                "inspect",
                "--format",
                "{{.State.Status}} {{.HostConfig.PortBindings}}",
                &id,
            ]);
            return Err(format!(
                "{e}; container {id}: {} {}; its log: {}{}",
                String::from_utf8_lossy(&state.stdout).trim(),
                String::from_utf8_lossy(&state.stderr).trim(),
                String::from_utf8_lossy(&logs.stdout),
                String::from_utf8_lossy(&logs.stderr)
            ));
        }
        let registry = TestRegistry {
            addr,
            credentials,
            _container: container,
        };
        let target = registry.busybox();
        let args = registry.push_args(&target);
        let out = bed.cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
        if !out.status.success() {
            return Err(format!(
                "push to {target}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(registry)
    }
}

/// A registry without authentication.
pub fn registry() -> &'static TestRegistry {
    static REGISTRY: OnceLock<TestRegistry> = OnceLock::new();
    REGISTRY.get_or_init(|| TestRegistry::start(None).unwrap_or_else(|e| panic!("registry: {e}")))
}

/// A registry that requires `user`/`password` (htpasswd, bcrypt).
pub fn auth_registry() -> &'static TestRegistry {
    static REGISTRY: OnceLock<TestRegistry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        TestRegistry::start(Some(("ndpuser".into(), unique_name("pw"))))
            .unwrap_or_else(|e| panic!("auth registry: {e}"))
    })
}

fn htpasswd(user: &str, password: &str) -> Result<Vec<u8>, String> {
    command_output(
        Command::new("htpasswd").args(["-Bbn", user, password]),
        "htpasswd",
    )
}

/// The stdout of a command that must succeed; errors name `what` and carry its stderr.
fn command_output(cmd: &mut Command, what: &str) -> Result<Vec<u8>, String> {
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{what}: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(out.stdout)
}

/// Runs `work` on the one runtime every testcontainers call of this process uses (its
/// client keeps connections on the runtime that made them), from any thread, also from
/// inside a test's own runtime. The first call aims testcontainers at the bed's socket.
fn on_testcontainers_runtime<T: Send + 'static>(
    bed: &TestPodman,
    work: impl std::future::Future<Output = Result<T, String>> + Send + 'static,
) -> Result<T, String> {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        // Read once, when testcontainers makes its client (on this first use); nothing
        // else in the test process reads it.
        std::env::set_var("DOCKER_HOST", bed.socket_url());
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("testcontainers")
            .enable_all()
            .build()
            .expect("testcontainers runtime")
    });
    let (tx, rx) = mpsc::channel();
    runtime.spawn(async move {
        let _ = tx.send(work.await);
    });
    rx.recv()
        .map_err(|_| "the testcontainers task ended without an answer".to_string())?
}

/// Imports the registry image into the bed's storage once: the host's docker-registry
/// binary, the libraries it links, a config serving /var/lib/registry on :5000.
fn import_registry_image(bed: &TestPodman) -> Result<(), String> {
    static IMPORTED: OnceLock<Result<(), String>> = OnceLock::new();
    IMPORTED
        .get_or_init(|| {
            let tar = registry_rootfs_tar(bed.scratch_dir("registry-image"))?;
            let name = format!("{}:{}", REGISTRY_IMAGE.0, REGISTRY_IMAGE.1);
            let entrypoint = format!(
                "ENTRYPOINT=[\"{REGISTRY_BINARY}\",\"serve\",\"/etc/docker/registry/config.yml\"]"
            );
            bed.import_rootfs(&tar, &name, &[&entrypoint, "EXPOSE=5000"])
        })
        .clone()
}

fn registry_rootfs_tar(dir: PathBuf) -> Result<PathBuf, String> {
    let binary = Path::new(REGISTRY_BINARY);
    if !binary.exists() {
        return Err(format!(
            "{REGISTRY_BINARY} is missing (install docker-registry)"
        ));
    }
    let tar_path = dir.join("registry-rootfs.tar");
    let file = std::fs::File::create(&tar_path).map_err(|e| format!("create tar: {e}"))?;
    let mut tar = tar::Builder::new(file);
    let add_dir = |tar: &mut tar::Builder<std::fs::File>, path: &str, mode: u32| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(mode);
        header.set_size(0);
        tar.append_data(&mut header, path, std::io::empty())
            .map_err(|e| format!("tar {path}: {e}"))
    };
    let add_file = |tar: &mut tar::Builder<std::fs::File>, path: &str, data: &[u8], mode: u32| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(mode);
        header.set_size(data.len() as u64);
        tar.append_data(&mut header, path, data)
            .map_err(|e| format!("tar {path}: {e}"))
    };
    for (d, mode) in [
        ("etc", 0o755),
        ("etc/docker", 0o755),
        ("etc/docker/registry", 0o755),
        ("var", 0o755),
        ("var/lib", 0o755),
        ("var/lib/registry", 0o755),
        ("auth", 0o755),
        ("tmp", 0o1777),
        ("usr", 0o755),
        ("usr/bin", 0o755),
    ] {
        add_dir(&mut tar, d, mode)?;
    }
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("read {}: {e}", p.display()));
    add_file(&mut tar, &REGISTRY_BINARY[1..], &read(binary)?, 0o755)?;
    let mut dirs_added = std::collections::BTreeSet::new();
    for library in linked_libraries(binary)? {
        let inside = library.strip_prefix("/").unwrap_or(&library);
        let mut parent = PathBuf::new();
        for part in inside.parent().into_iter().flat_map(Path::components) {
            parent.push(part);
            if dirs_added.insert(parent.clone()) {
                add_dir(&mut tar, &parent.to_string_lossy(), 0o755)?;
            }
        }
        // The content behind any link, at the path the binary asks for.
        add_file(&mut tar, &inside.to_string_lossy(), &read(&library)?, 0o755)?;
    }
    add_file(
        &mut tar,
        "etc/docker/registry/config.yml",
        b"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: /var/lib/registry\n  delete:\n    enabled: true\nhttp:\n  addr: :5000\n",
        0o644,
    )?;
    tar.into_inner()
        .and_then(|mut f| f.flush())
        .map_err(|e| format!("finish tar: {e}"))?;
    Ok(tar_path)
}

/// The shared libraries (and the loader) `binary` links, from `ldd`.
fn linked_libraries(binary: &Path) -> Result<Vec<PathBuf>, String> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| format!("ldd: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // A static binary: ldd says "not a dynamic executable" and fails.
        return Ok(Vec::new());
    }
    Ok(text
        .lines()
        .filter_map(|line| {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
            // "/lib64/ld-linux-x86-64.so.2 (0x...)"; the vdso has no path.
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

/// Waits until the registry answers its API root over the published port (200, or 401
/// with auth): a port forwarder can accept connections before the registry listens.
fn wait_until_serving(addr: SocketAddr) -> Result<(), String> {
    let deadline = Instant::now() + READY_DEADLINE;
    loop {
        if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut reply = String::new();
            if s.write_all(b"GET /v2/ HTTP/1.0\r\nHost: registry\r\n\r\n")
                .is_ok()
                && s.read_to_string(&mut reply).is_ok()
                && reply.starts_with("HTTP/")
                && matches!(reply.split_whitespace().nth(1), Some("200" | "401"))
            {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(format!("the registry container never answered on {addr}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

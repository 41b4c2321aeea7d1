//! What the agent prepares before `StartTask`: the allocation directory layout, the log
//! FIFOs (created with mode 0600 and read concurrently, as logmon does), and the proto
//! `TaskConfig` describing the task.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nomad_driver_podman::modes::plugin::proto::drivers;
use tokio::io::AsyncReadExt;

/// Reading deadline for expected output; a bound against hangs, not a timing check.
const OUTPUT_DEADLINE: Duration = Duration::from_secs(60);

/// A directory the task writes to, with the mode the agent gives it (0777): a task whose
/// root is not the host's root (rootless podman, `user`) can write there as in Nomad.
fn make_shared_dir(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).unwrap();
}

/// One allocation directory tree.
pub struct Alloc {
    pub id: String,
    pub dir: PathBuf,
}

impl Alloc {
    pub fn new(root: &Path) -> Alloc {
        let id = uuid::Uuid::new_v4().to_string();
        let dir = root.join(&id);
        for sub in ["alloc/logs", "alloc/data", "alloc/tmp"] {
            make_shared_dir(&dir.join(sub));
        }
        Alloc { id, dir }
    }

    /// Task dirs and log FIFOs for task `name`, with readers attached.
    pub fn task(&self, name: &str) -> TaskFiles {
        for sub in ["local", "tmp"] {
            make_shared_dir(&self.dir.join(name).join(sub));
        }
        std::fs::create_dir_all(self.dir.join(name).join("secrets")).unwrap();
        let logs = self.dir.join("alloc/logs");
        let stdout_path = logs.join(format!(".{name}.stdout.fifo"));
        let stderr_path = logs.join(format!(".{name}.stderr.fifo"));
        for path in [&stdout_path, &stderr_path] {
            nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        }
        TaskFiles {
            stdout: LogReader::attach(&stdout_path),
            stderr: LogReader::attach(&stderr_path),
            stdout_path,
            stderr_path,
        }
    }

    /// The proto `TaskConfig` the agent sends for task `name` of this allocation.
    pub fn task_config(
        &self,
        name: &str,
        files: &TaskFiles,
        msgpack: Vec<u8>,
    ) -> drivers::TaskConfig {
        let id = format!(
            "{}/{name}/{}",
            self.id,
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let env: HashMap<String, String> = [
            ("NOMAD_ALLOC_ID", self.id.as_str()),
            ("NOMAD_TASK_NAME", name),
            ("NOMAD_ALLOC_DIR", "/alloc"),
            ("NOMAD_TASK_DIR", "/local"),
            ("NOMAD_SECRETS_DIR", "/secrets"),
            ("PLUGIN_E2E", "yes"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        drivers::TaskConfig {
            id,
            name: name.to_string(),
            msgpack_driver_config: msgpack,
            env,
            resources: Some(drivers::Resources {
                allocated_resources: Some(drivers::AllocatedTaskResources {
                    cpu: Some(drivers::AllocatedCpuResources { cpu_shares: 100 }),
                    memory: Some(drivers::AllocatedMemoryResources {
                        memory_mb: 64,
                        memory_max_mb: 0,
                    }),
                    networks: Vec::new(),
                }),
                linux_resources: Some(drivers::LinuxResources {
                    cpu_shares: 100,
                    memory_limit_bytes: 64 * 1024 * 1024,
                    percent_ticks: 0.05,
                    ..Default::default()
                }),
                ports: Vec::new(),
            }),
            alloc_dir: self.dir.display().to_string(),
            stdout_path: files.stdout_path.display().to_string(),
            stderr_path: files.stderr_path.display().to_string(),
            task_group_name: "group".to_string(),
            job_name: "plugin-e2e".to_string(),
            job_id: "plugin-e2e".to_string(),
            alloc_id: self.id.clone(),
            namespace: "default".to_string(),
            node_name: "e2e-node".to_string(),
            node_id: "e2e-node-id".to_string(),
            ..Default::default()
        }
    }
}

pub struct TaskFiles {
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
    pub stdout: LogReader,
    pub stderr: LogReader,
}

/// Everything written into one FIFO so far. The FIFO is opened read-write so opening never
/// blocks and the reader survives writers coming and going (task restarts).
pub struct LogReader {
    data: Arc<Mutex<Vec<u8>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl LogReader {
    fn attach(path: &Path) -> LogReader {
        let data = Arc::new(Mutex::new(Vec::new()));
        let sink = data.clone();
        let mut pipe = tokio::net::unix::pipe::OpenOptions::new()
            .read_write(true)
            .open_receiver(path)
            .unwrap();
        let reader = tokio::spawn(async move {
            let mut chunk = vec![0u8; 8192];
            while let Ok(n) = pipe.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        LogReader { data, reader }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data.lock().unwrap()).into_owned()
    }

    /// Waits until `needle` was written; panics with what was seen otherwise.
    pub async fn wait_for(&self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + OUTPUT_DEADLINE;
        loop {
            let text = self.text();
            if text.contains(needle) {
                return text;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{needle:?} never appeared; got {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for LogReader {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

//! Log forwarding: what a short task writes to stdout and stderr reaches the orchestrator's
//! two FIFOs, apart and unprefixed, in the default (`nomad`) and `journald` modes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::task::JoinHandle;

use super::super::check::{ensure, Check, Failure, Finding, Outcome, Skip, Tag};
use super::super::env::Env;
use super::super::scope::Scope;

/// Where journald listens on a systemd host.
const JOURNALD_SOCKET: &str = "/run/systemd/journal/socket";

pub struct Forwarding {
    pub name: &'static str,
    /// `nomad` or `journald`.
    pub driver: &'static str,
}

#[async_trait]
impl Check for Forwarding {
    fn name(&self) -> &'static str {
        self.name
    }

    fn tags(&self) -> &'static [Tag] {
        &[Tag::Logs]
    }

    fn precondition(&self, env: &Env) -> Result<(), Skip> {
        env.require_image()?;
        if self.driver != "journald" {
            return Ok(());
        }
        let facts = env.require_api()?;
        if !facts.log_drivers.iter().any(|d| d == "journald") {
            return Err(Skip("podman offers no journald log driver".to_string()));
        }
        if env.podman_is_local() && !Path::new(JOURNALD_SOCKET).exists() {
            return Err(Skip(format!(
                "journald is not running on this host ({JOURNALD_SOCKET} missing)"
            )));
        }
        Ok(())
    }

    async fn run(&self, env: &Env, scope: &Scope) -> Outcome {
        let dir = env.scratch().join(format!("logs-{}", self.driver));
        std::fs::create_dir_all(&dir)?;
        let stdout_path = dir.join("stdout.fifo");
        let stderr_path = dir.join("stderr.fifo");
        let stdout = FifoReader::open(&stdout_path)?;
        let stderr = FifoReader::open(&stderr_path)?;
        let task = env
            .task(scope, "logs")
            .script("echo to-stdout; echo to-stderr >&2")
            .config(json!({"logging": {"driver": self.driver}}))
            .context(|context| {
                context.stdout_path = Some(stdout_path.clone());
                context.stderr_path = Some(stderr_path.clone());
            })
            .start()
            .await?;
        let exit = env
            .wait_exit(&task.task_id, Duration::from_secs(60))
            .await?;
        ensure!(exit.exit_code == 0, "the task exited {}", exit.exit_code);
        let out = stdout.until_contains("to-stdout").await;
        let err = stderr.until_contains("to-stderr").await;
        ensure!(
            out == "to-stdout\n" && err == "to-stderr\n",
            "stdout FIFO got {out:?}, stderr FIFO got {err:?}; expected \"to-stdout\\n\" \
             and \"to-stderr\\n\""
        );
        Ok(Finding::pass(format!(
            "{} mode: stdout and stderr arrive apart and verbatim",
            self.driver
        )))
    }
}

/// The reading end of an orchestrator log FIFO, drained in the background.
struct FifoReader {
    received: Arc<Mutex<Vec<u8>>>,
    reader: JoinHandle<()>,
}

impl FifoReader {
    fn open(path: &PathBuf) -> Result<FifoReader, Failure> {
        nix::unistd::mkfifo(
            path.as_path(),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .map_err(|err| Failure(format!("mkfifo {}: {err}", path.display())))?;
        // Read-write: the FIFO never reports end-of-file between writers.
        let mut receiver = pipe::OpenOptions::new()
            .read_write(true)
            .open_receiver(path)
            .map_err(|err| Failure(format!("open {}: {err}", path.display())))?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&received);
        let reader = tokio::spawn(async move {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = receiver.read(&mut buffer).await {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend_from_slice(&buffer[..n]);
            }
        });
        Ok(FifoReader { received, reader })
    }

    /// What arrived once `needle` did, or after 10 s.
    async fn until_contains(&self, needle: &str) -> String {
        for _ in 0..100 {
            let text = self.text();
            if text.contains(needle) {
                // Let a trailing write land too.
                tokio::time::sleep(Duration::from_millis(200)).await;
                return self.text();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.text()
    }

    fn text(&self) -> String {
        let received = self.received.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&received).to_string()
    }
}

impl Drop for FifoReader {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

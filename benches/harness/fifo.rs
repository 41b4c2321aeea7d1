//! The agent's side of task logs: a FIFO per stream, read as logmon does (opened
//! read-write so it never sees end-of-file between writers), counting what arrives.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;

use super::BenchResult;

const READ_BUFFER: usize = 256 * 1024;

pub struct FifoReader {
    path: PathBuf,
    received: Arc<AtomicU64>,
    reached: Option<oneshot::Receiver<Instant>>,
    task: tokio::task::JoinHandle<()>,
}

impl FifoReader {
    /// Creates the FIFO at `path` and reads it until dropped. With `target`, notes the
    /// moment that many bytes have arrived.
    pub fn create(path: &Path, target: Option<u64>) -> BenchResult<Self> {
        nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(|e| format!("mkfifo {}: {e}", path.display()))?;
        let mut pipe = tokio::net::unix::pipe::OpenOptions::new()
            .read_write(true)
            .open_receiver(path)
            .map_err(|e| format!("open {}: {e}", path.display()))?;
        let received = Arc::new(AtomicU64::new(0));
        let counter = received.clone();
        let (notify, reached) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut notify = target.map(|t| (t, notify));
            let mut buf = vec![0u8; READ_BUFFER];
            while let Ok(n) = pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let total = counter.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
                if notify.as_ref().is_some_and(|(t, _)| total >= *t) {
                    if let Some((_, tx)) = notify.take() {
                        let _ = tx.send(Instant::now());
                    }
                }
            }
        });
        Ok(FifoReader {
            path: path.to_path_buf(),
            received,
            reached: target.map(|_| reached),
            task,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// When the target was reached, waiting at most `deadline`.
    pub async fn reached(&mut self, deadline: Duration) -> BenchResult<Instant> {
        let reached = self
            .reached
            .take()
            .ok_or("no target set, or already awaited")?;
        match tokio::time::timeout(deadline, reached).await {
            Ok(Ok(at)) => Ok(at),
            _ => Err(format!(
                "only {} bytes reached {} within {deadline:?}",
                self.received(),
                self.path.display()
            )),
        }
    }
}

impl Drop for FifoReader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

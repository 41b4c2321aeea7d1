//! The agent's side of task logs: a FIFO per stream, read as logmon does (opened
//! read-write so it never sees end-of-file between writers), counting what arrives.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Instant;

use tokio::io::AsyncReadExt;

use super::BenchResult;

const READ_BUFFER: usize = 256 * 1024;

pub struct FifoReader {
    path: PathBuf,
    received: Arc<AtomicU64>,
    last_read: Arc<Mutex<Option<Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FifoReader {
    /// Creates the FIFO at `path` and reads it until dropped.
    pub fn create(path: &Path) -> BenchResult<Self> {
        nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(|e| format!("mkfifo {}: {e}", path.display()))?;
        let mut pipe = tokio::net::unix::pipe::OpenOptions::new()
            .read_write(true)
            .open_receiver(path)
            .map_err(|e| format!("open {}: {e}", path.display()))?;
        let received = Arc::new(AtomicU64::new(0));
        let last_read = Arc::new(Mutex::new(None));
        let (counter, stamp) = (received.clone(), last_read.clone());
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; READ_BUFFER];
            while let Ok(n) = pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                *stamp.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                counter.fetch_add(n as u64, Ordering::Relaxed);
            }
        });
        Ok(FifoReader {
            path: path.to_path_buf(),
            received,
            last_read,
            task,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// When the last bytes arrived.
    pub fn last_read(&self) -> Option<Instant> {
        *self.last_read.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for FifoReader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

//! Following a task's log files (`alloc/logs/<task>.stdout.0`), which the core writes, and
//! turning them into lines for the terminal.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// How often a followed file is checked for new output.
const POLL: Duration = Duration::from_millis(200);
/// How long a flush waits for the followers (they answer within one read).
const FLUSH_DEADLINE: Duration = Duration::from_secs(5);

/// The receiving end of a follower's flush requests.
pub type FlushRequests = mpsc::UnboundedReceiver<oneshot::Sender<()>>;

/// Asks a task's followers to read everything written so far, so output that belongs
/// before a status line ("Exited ...") is printed before it.
#[derive(Debug, Clone, Default)]
pub struct FlushHandle {
    followers: Vec<mpsc::UnboundedSender<oneshot::Sender<()>>>,
}

impl FlushHandle {
    /// A new request channel for one more follower.
    pub fn add(&mut self) -> FlushRequests {
        let (tx, rx) = mpsc::unbounded_channel();
        self.followers.push(tx);
        rx
    }

    /// Returns once every follower has passed on what its file holds now.
    pub async fn flush(&self) {
        let mut acks = Vec::new();
        for follower in &self.followers {
            let (tx, rx) = oneshot::channel();
            if follower.send(tx).is_ok() {
                acks.push(rx);
            }
        }
        let _ = tokio::time::timeout(FLUSH_DEADLINE, futures::future::join_all(acks)).await;
    }
}

/// Sends every complete line appended to `path` until `stop` is cancelled, then sends
/// what is left (including a last line without a newline). A file that shrinks (a task
/// restarted and its log was truncated) is read again from the start. A flush request
/// is answered after the file's current content was passed on.
pub async fn follow(
    path: PathBuf,
    from_start: bool,
    stop: CancellationToken,
    mut flush: Option<FlushRequests>,
    mut on_line: impl FnMut(String),
) {
    let mut offset: u64 = if from_start {
        0
    } else {
        tokio::fs::metadata(&path)
            .await
            .map(|m| m.len())
            .unwrap_or(0)
    };
    let mut pending: Vec<u8> = Vec::new();
    let mut ack: Option<oneshot::Sender<()>> = None;
    loop {
        let stopping = stop.is_cancelled();
        if let Ok(len) = tokio::fs::metadata(&path).await.map(|m| m.len()) {
            if len < offset {
                offset = 0;
                pending.clear();
            }
            if len > offset {
                if let Ok(chunk) = read_from(&path, offset).await {
                    offset += chunk.len() as u64;
                    pending.extend_from_slice(&chunk);
                    while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = pending.drain(..=nl).collect();
                        on_line(String::from_utf8_lossy(&line).into_owned());
                    }
                }
            }
        }
        if let Some(done) = ack.take() {
            let _ = done.send(());
        }
        if stopping {
            if !pending.is_empty() {
                on_line(String::from_utf8_lossy(&pending).into_owned());
            }
            return;
        }
        let flush_request = async {
            match flush.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.cancelled() => {}
            request = flush_request => match request {
                Some(done) => ack = Some(done),
                None => flush = None,
            },
        }
    }
}

async fn read_from(path: &std::path::Path, offset: u64) -> std::io::Result<Vec<u8>> {
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(std::io::SeekFrom::Start(offset)).await?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf).await?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn follows_appended_lines_and_flushes_the_rest_on_stop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.stdout.0");
        std::fs::write(&path, "one\ntw").unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let collected = lines.clone();
        let mut flush = FlushHandle::default();
        let requests = flush.add();
        let follower = tokio::spawn(follow(
            path.clone(),
            true,
            stop.clone(),
            Some(requests),
            move |l| collected.lock().unwrap().push(l),
        ));
        let wait_for = |n: usize| {
            let lines = lines.clone();
            async move {
                while lines.lock().unwrap().len() < n {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        wait_for(1).await;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, b"o\nthree").unwrap();
        // A flush returns only after what was written has been passed on.
        flush.flush().await;
        assert_eq!(lines.lock().unwrap().len(), 2);
        stop.cancel();
        follower.await.unwrap();
        assert_eq!(*lines.lock().unwrap(), vec!["one\n", "two\n", "three"]);
    }
}

//! Following a task's log files (`alloc/logs/<task>.stdout.<index>`), which the core
//! writes and rotates, and turning them into lines for the terminal.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::rotated::{Read, RotatedReader};

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

/// Bytes read per blocking call: bounds what is held before it is split into lines.
const READ_LIMIT: usize = 1024 * 1024;

/// Sends every complete line of the rotated files `<base>.<index>` (below the trusted
/// `root`, read as one stream: see [`RotatedReader`]) until `stop` is cancelled, then
/// sends what is left (including a last line without a newline). A file the task
/// replaced or truncated is read again from its start. A flush request is answered after
/// what the files hold was passed on. A file that cannot be read (a link the task planted)
/// is reported once as a line, and the stream is not read further.
pub async fn follow(
    root: PathBuf,
    base: PathBuf,
    stop: CancellationToken,
    mut flush: Option<FlushRequests>,
    mut on_line: impl FnMut(String),
) {
    let mut reader = Some(RotatedReader::new(&root, &base));
    let mut pending: Vec<u8> = Vec::new();
    let mut ack: Option<oneshot::Sender<()>> = None;
    loop {
        let stopping = stop.is_cancelled();
        while let Some(r) = reader.take() {
            let Ok((r, batch)) = tokio::task::spawn_blocking(move || read_batch(r)).await else {
                break;
            };
            pending.extend_from_slice(&batch.data);
            while let Some(nl) = memchr::memchr(b'\n', &pending) {
                let line: Vec<u8> = pending.drain(..=nl).collect();
                on_line(String::from_utf8_lossy(&line).into_owned());
            }
            if batch.restarted {
                pending.clear();
            }
            if let Some(e) = batch.failure {
                on_line(format!("[{e}]\n"));
                break;
            }
            reader = Some(r);
            if batch.at_end {
                break;
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

struct Batch {
    data: Vec<u8>,
    /// The stream started again after `data`: an unfinished line before it is dropped.
    restarted: bool,
    at_end: bool,
    failure: Option<String>,
}

fn read_batch(mut reader: RotatedReader) -> (RotatedReader, Batch) {
    let mut batch = Batch {
        data: Vec::new(),
        restarted: false,
        at_end: false,
        failure: None,
    };
    let mut buf = vec![0u8; 64 * 1024];
    while batch.data.len() < READ_LIMIT {
        match reader.read(&mut buf) {
            Ok(Read::Bytes(n)) => batch.data.extend_from_slice(&buf[..n]),
            Ok(Read::Restarted) => {
                batch.restarted = true;
                break;
            }
            Ok(Read::End) => {
                batch.at_end = true;
                break;
            }
            Err(e) => {
                batch.failure = Some(e);
                break;
            }
        }
    }
    (reader, batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn follows_appended_lines_and_flushes_the_rest_on_stop() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        std::fs::create_dir(&logs).unwrap();
        let path = logs.join("t.stdout.0");
        std::fs::write(&path, "one\ntw").unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let collected = lines.clone();
        let mut flush = FlushHandle::default();
        let requests = flush.add();
        let follower = tokio::spawn(follow(
            dir.path().to_path_buf(),
            logs.join("t.stdout"),
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

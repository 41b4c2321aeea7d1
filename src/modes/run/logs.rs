//! Following a task's log files (`alloc/logs/<task>.stdout.0`), which the core writes, and
//! turning them into lines for the terminal.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::sync::CancellationToken;

/// How often a followed file is checked for new output.
const POLL: Duration = Duration::from_millis(200);

/// Sends every complete line appended to `path` until `stop` is cancelled, then sends
/// what is left (including a last line without a newline). A file that shrinks (a task
/// restarted and its log was truncated) is read again from the start.
pub async fn follow(path: PathBuf, from_start: bool, stop: CancellationToken, mut on_line: impl FnMut(String)) {
    let mut offset: u64 = if from_start {
        0
    } else {
        tokio::fs::metadata(&path).await.map(|m| m.len()).unwrap_or(0)
    };
    let mut pending: Vec<u8> = Vec::new();
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
        if stopping {
            if !pending.is_empty() {
                on_line(String::from_utf8_lossy(&pending).into_owned());
            }
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.cancelled() => {}
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
        let follower = tokio::spawn(follow(path.clone(), true, stop.clone(), move |l| collected.lock().unwrap().push(l)));
        let wait_for = |n: usize| {
            let lines = lines.clone();
            async move {
                while lines.lock().unwrap().len() < n {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        wait_for(1).await;
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        std::io::Write::write_all(&mut f, b"o\nthree").unwrap();
        wait_for(2).await;
        stop.cancel();
        follower.await.unwrap();
        assert_eq!(*lines.lock().unwrap(), vec!["one\n", "two\n", "three"]);
    }
}

//! Running commands inside a task: buffered (script checks) and streaming (`alloc exec`).

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::model::{ExecIo, ExecOutput, ExitResult, TerminalSize};
use super::podman::{ExecConfig, StreamKind};
use super::{Driver, DriverError, Task, EXEC_BUFFER};

/// A resize refused because the session is not running yet is tried again this often.
const RESIZE_ATTEMPTS: usize = 10;
const RESIZE_RETRY: Duration = Duration::from_millis(100);
/// Delays after which the latest terminal size is applied again.
pub(super) const RESIZE_REAPPLY: [Duration; 4] = [
    Duration::from_millis(300),
    Duration::from_millis(700),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// How long a terminal session waits for the caller's first size before starting.
const INITIAL_SIZE_WAIT: Duration = Duration::from_millis(500);

/// The caller's terminal size, when it sends one right away (Nomad's CLI does). Passing it
/// to exec start is the only way the process sees it from its first instruction: podman
/// 4.3 can accept a resize sent after the start and still lose it.
async fn first_terminal_size(sizes: &mut mpsc::Receiver<TerminalSize>) -> Option<TerminalSize> {
    let mut latest = tokio::time::timeout(INITIAL_SIZE_WAIT, sizes.recv())
        .await
        .ok()
        .flatten()?;
    while let Ok(size) = sizes.try_recv() {
        latest = size;
    }
    Some(latest)
}

/// Keeps the last `EXEC_BUFFER` bytes written to it.
#[derive(Default)]
struct Tail(Vec<u8>);

impl Tail {
    fn push(&mut self, data: &[u8]) {
        self.0.extend_from_slice(data);
        if self.0.len() > EXEC_BUFFER {
            let excess = self.0.len() - EXEC_BUFFER;
            self.0.drain(..excess);
        }
    }
}

impl Driver {
    /// Runs `cmd` in the task and returns its exit code and the tail of its output. A zero
    /// `timeout` means no limit.
    pub async fn exec(
        &self,
        task_id: &str,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> Result<ExecOutput, DriverError> {
        let task = self.task(task_id)?;
        let (stdout_tx, mut stdout_rx) = mpsc::channel::<Bytes>(16);
        let (stderr_tx, mut stderr_rx) = mpsc::channel::<Bytes>(16);
        let io = ExecIo {
            stdin: None,
            resize: None,
            stdout: stdout_tx,
            stderr: stderr_tx,
        };
        let run = async {
            let session = self.run_exec(&task, cmd, false, io);
            let mut stdout = Tail::default();
            let mut stderr = Tail::default();
            let collect = async {
                let mut out_open = true;
                let mut err_open = true;
                while out_open || err_open {
                    tokio::select! {
                        chunk = stdout_rx.recv(), if out_open => match chunk {
                            Some(c) => stdout.push(&c),
                            None => out_open = false,
                        },
                        chunk = stderr_rx.recv(), if err_open => match chunk {
                            Some(c) => stderr.push(&c),
                            None => err_open = false,
                        },
                    }
                }
            };
            let (result, ()) = tokio::join!(session, collect);
            result.map(|exit| ExecOutput {
                exit_code: exit.exit_code,
                stdout: stdout.0,
                stderr: stderr.0,
            })
        };
        if timeout.is_zero() {
            // Nomad sends 0 for "no limit".
            return run.await;
        }
        tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| DriverError::ExecTimeout {
                task: task_id.to_string(),
                seconds: timeout.as_secs(),
            })?
    }

    /// Runs `cmd` in the task wired to the caller's channels, optionally on a terminal,
    /// and returns its exit code once it ends.
    pub async fn exec_streaming(
        &self,
        task_id: &str,
        cmd: Vec<String>,
        tty: bool,
        io: ExecIo,
    ) -> Result<ExitResult, DriverError> {
        let task = self.task(task_id)?;
        self.run_exec(&task, cmd, tty, io).await
    }

    async fn run_exec(
        &self,
        task: &Task,
        cmd: Vec<String>,
        tty: bool,
        io: ExecIo,
    ) -> Result<ExitResult, DriverError> {
        let task_id = task.state.task_id.as_str();
        let client = &task.socket.client;
        let session = client
            .exec_create(
                &task.state.container_id,
                &ExecConfig {
                    cmd,
                    tty,
                    attach_stdin: io.stdin.is_some(),
                    attach_stdout: true,
                    attach_stderr: true,
                    ..ExecConfig::default()
                },
            )
            .await
            .map_err(DriverError::podman(task_id, "create the exec session"))?;
        let ExecIo {
            stdin,
            mut resize,
            stdout,
            stderr,
        } = io;
        let initial_size = match resize.as_mut() {
            Some(sizes) if tty => first_terminal_size(sizes).await,
            _ => None,
        };
        let super::podman::ExecSession {
            mut output,
            mut input,
        } = client
            .exec_start(&session, tty, initial_size.map(|s| (s.height, s.width)))
            .await
            .map_err(DriverError::podman(task_id, "start the exec session"))?;

        let feed_stdin = async move {
            if let Some(mut stdin) = stdin {
                while let Some(chunk) = stdin.recv().await {
                    if input.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
                // The process sees EOF on its stdin (the Go driver never closed it).
                let _ = input.shutdown().await;
            }
        };
        let resizer = async {
            let Some(mut resize) = resize else { return };
            let session = session.as_str();
            let apply = |size: TerminalSize| async move {
                for _ in 0..RESIZE_ATTEMPTS {
                    if client
                        .exec_resize(session, size.height, size.width)
                        .await
                        .is_ok()
                    {
                        return;
                    }
                    tokio::time::sleep(RESIZE_RETRY).await;
                }
            };
            // Podman 4.3 can accept a resize sent right after the session started and still
            // lose it while conmon attaches the terminal (later on a loaded host): the
            // latest size is applied again a few times while the session is young.
            let mut reapply = RESIZE_REAPPLY.iter();
            let mut latest: Option<TerminalSize> = None;
            loop {
                let wait = latest.and_then(|_| reapply.next());
                tokio::select! {
                    size = resize.recv() => match size {
                        Some(size) => {
                            apply(size).await;
                            latest = Some(size);
                        }
                        None => return,
                    },
                    _ = tokio::time::sleep(wait.copied().unwrap_or_default()), if wait.is_some() => {
                        if let Some(size) = latest {
                            apply(size).await;
                        }
                    }
                }
            }
        };
        let pump_output = async move {
            while let Some(chunk) = output.next().await {
                let (sink, data) = match chunk {
                    Ok(frame) if frame.stream == StreamKind::Stderr => (&stderr, frame.payload),
                    Ok(frame) => (&stdout, frame.payload),
                    Err(_) => break,
                };
                if sink.send(data).await.is_err() {
                    break;
                }
            }
        };
        let caller_input = futures::future::join(feed_stdin, resizer);
        tokio::pin!(pump_output, caller_input);
        // Output ending means the process ended: input and resizes end with it. The caller
        // finishing its input does not end the session: output still drains.
        tokio::select! {
            _ = &mut pump_output => {}
            _ = &mut caller_input => pump_output.await,
        }
        let inspect = client
            .exec_inspect(&session)
            .await
            .map_err(DriverError::podman(task_id, "read the exec exit code"))?;
        Ok(ExitResult {
            exit_code: inspect.exit_code,
            ..ExitResult::default()
        })
    }
}

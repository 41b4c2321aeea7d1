//! `ExecTaskStreaming` (`nomad alloc exec`) as a bidirectional stream: the first message
//! sets the session up; later ones
//! carry stdin, stdin close, terminal resizes or nothing (heartbeats). The plugin answers
//! with output chunks, a close marker per stream, then `exited` with the result.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use crate::driver::model::{ExecIo, TerminalSize};
use crate::driver::Driver;

use super::proto::drivers::{
    ExecTaskStreamingIoOperation, ExecTaskStreamingRequest, ExecTaskStreamingResponse, ExitResult,
};
use super::{logging, status};

/// Chunks in flight per direction before the producer waits.
const BUFFERED_CHUNKS: usize = 64;

type Responses = mpsc::Receiver<Result<ExecTaskStreamingResponse, Status>>;

fn output(data: Bytes, stderr: bool) -> ExecTaskStreamingResponse {
    let operation = Some(ExecTaskStreamingIoOperation {
        data: data.to_vec(),
        close: false,
    });
    if stderr {
        ExecTaskStreamingResponse {
            stderr: operation,
            ..Default::default()
        }
    } else {
        ExecTaskStreamingResponse {
            stdout: operation,
            ..Default::default()
        }
    }
}

fn closed(stderr: bool) -> ExecTaskStreamingResponse {
    let operation = Some(ExecTaskStreamingIoOperation {
        data: Vec::new(),
        close: true,
    });
    if stderr {
        ExecTaskStreamingResponse {
            stderr: operation,
            ..Default::default()
        }
    } else {
        ExecTaskStreamingResponse {
            stdout: operation,
            ..Default::default()
        }
    }
}

fn terminal_size(height: i32, width: i32) -> TerminalSize {
    let clamp = |v: i32| u16::try_from(v.max(0)).unwrap_or(u16::MAX);
    TerminalSize {
        height: clamp(height),
        width: clamp(width),
    }
}

/// Reads the setup message and starts the session; the returned channel is the response
/// stream.
pub(crate) async fn run(
    driver: Arc<Driver>,
    mut requests: Streaming<ExecTaskStreamingRequest>,
) -> Result<Responses, Status> {
    let setup = loop {
        match requests.next().await {
            Some(Ok(request)) => match request.setup {
                Some(setup) => break setup,
                // Heartbeats may come first.
                None if request.stdin.is_none() && request.tty_size.is_none() => continue,
                None => return Err(status::invalid("the first exec message must be the setup")),
            },
            Some(Err(e)) => return Err(e),
            None => {
                return Err(status::invalid(
                    "exec stream ended before its setup message",
                ))
            }
        }
    };
    if setup.command.is_empty() {
        return Err(status::invalid("exec needs a command"));
    }

    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(BUFFERED_CHUNKS);
    let (resize_tx, resize_rx) = mpsc::channel::<TerminalSize>(BUFFERED_CHUNKS);
    let (stdout_tx, mut stdout_rx) = mpsc::channel::<Bytes>(BUFFERED_CHUNKS);
    let (stderr_tx, mut stderr_rx) = mpsc::channel::<Bytes>(BUFFERED_CHUNKS);
    let (responses_tx, responses_rx) = mpsc::channel(BUFFERED_CHUNKS);

    // Agent -> process: stdin, its close, and resizes until the agent's side ends.
    tokio::spawn(async move {
        let mut stdin = Some(stdin_tx);
        while let Some(Ok(request)) = requests.next().await {
            if let Some(size) = request.tty_size {
                let _ = resize_tx.send(terminal_size(size.height, size.width)).await;
            }
            if let Some(input) = request.stdin {
                if let Some(sender) = &stdin {
                    if !input.data.is_empty() && sender.send(Bytes::from(input.data)).await.is_err()
                    {
                        stdin = None;
                    }
                }
                if input.close {
                    stdin = None;
                }
            }
        }
    });

    let io = ExecIo {
        stdin: Some(stdin_rx),
        resize: setup.tty.then_some(resize_rx),
        stdout: stdout_tx,
        stderr: stderr_tx,
    };
    let task_id = setup.task_id.clone();
    let session = tokio::spawn(async move {
        driver
            .exec_streaming(&setup.task_id, setup.command, setup.tty, io)
            .await
    });

    // Process -> agent: output in arrival order, then the close markers and the result.
    tokio::spawn(async move {
        let (mut stdout_open, mut stderr_open) = (true, true);
        while stdout_open || stderr_open {
            let message = tokio::select! {
                chunk = stdout_rx.recv(), if stdout_open => match chunk {
                    Some(data) => output(data, false),
                    None => { stdout_open = false; closed(false) }
                },
                chunk = stderr_rx.recv(), if stderr_open => match chunk {
                    Some(data) => output(data, true),
                    None => { stderr_open = false; closed(true) }
                },
            };
            if responses_tx.send(Ok(message)).await.is_err() {
                return;
            }
        }
        let last = match session.await {
            Ok(Ok(result)) => Ok(ExecTaskStreamingResponse {
                exited: true,
                result: Some(ExitResult {
                    exit_code: result.exit_code,
                    signal: result.signal,
                    oom_killed: result.oom_killed,
                }),
                ..Default::default()
            }),
            Ok(Err(e)) => {
                logging::warn(
                    "exec session failed",
                    &[("task_id", &task_id), ("error", &e)],
                );
                Err(status::from_driver(&e))
            }
            Err(e) => Err(Status::internal(format!(
                "exec session ended abnormally: {e}"
            ))),
        };
        let _ = responses_tx.send(last).await;
    });
    Ok(responses_rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_sizes_are_clamped() {
        assert_eq!(
            terminal_size(24, 80),
            TerminalSize {
                height: 24,
                width: 80
            }
        );
        assert_eq!(
            terminal_size(-1, 70_000),
            TerminalSize {
                height: 0,
                width: u16::MAX
            }
        );
    }

    #[test]
    fn output_and_close_messages() {
        let out = output(Bytes::from_static(b"hi"), false);
        assert_eq!(out.stdout.unwrap().data, b"hi");
        assert!(out.stderr.is_none() && !out.exited);
        let close = closed(true);
        assert!(close.stderr.unwrap().close);
        assert!(close.stdout.is_none());
    }
}

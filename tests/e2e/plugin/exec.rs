//! `ExecTaskStreaming` as `nomad alloc exec` uses it: setup, stdin, close, resize,
//! heartbeats, output chunks, close markers, exit code.

use std::time::Duration;

use futures::StreamExt;
use nomad_driver_podman::modes::plugin::proto::drivers::{
    exec_task_streaming_request::{Setup, TerminalSize},
    ExecTaskStreamingIoOperation, ExecTaskStreamingRequest, ExecTaskStreamingResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::agent::Plugin;
use super::bed::{self, shell_task, Bed};

const DEADLINE: Duration = Duration::from_secs(60);

struct Session {
    input: mpsc::Sender<ExecTaskStreamingRequest>,
    output: tonic::Streaming<ExecTaskStreamingResponse>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    closed: (bool, bool),
}

impl Session {
    async fn open(plugin: &Plugin, task_id: &str, command: &[&str], tty: bool) -> Session {
        let (input, requests) = mpsc::channel(16);
        input
            .send(ExecTaskStreamingRequest {
                setup: Some(Setup {
                    task_id: task_id.to_string(),
                    command: command.iter().map(|s| s.to_string()).collect(),
                    tty,
                }),
                ..Default::default()
            })
            .await
            .unwrap();
        let output = plugin
            .driver()
            .exec_task_streaming(ReceiverStream::new(requests))
            .await
            .unwrap()
            .into_inner();
        Session {
            input,
            output,
            stdout: Vec::new(),
            stderr: Vec::new(),
            closed: (false, false),
        }
    }

    async fn send(&self, request: ExecTaskStreamingRequest) {
        self.input.send(request).await.unwrap();
    }

    async fn stdin(&self, data: &[u8], close: bool) {
        self.send(ExecTaskStreamingRequest {
            stdin: Some(ExecTaskStreamingIoOperation {
                data: data.to_vec(),
                close,
            }),
            ..Default::default()
        })
        .await;
    }

    /// Reads until stdout contains `needle`.
    async fn read_until(&mut self, needle: &str) {
        while !String::from_utf8_lossy(&self.stdout).contains(needle) {
            let message = tokio::time::timeout(DEADLINE, self.output.next())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "{needle:?} never came; stdout {:?}",
                        String::from_utf8_lossy(&self.stdout)
                    )
                })
                .expect("stream open")
                .unwrap();
            assert!(!message.exited, "exited before {needle:?}");
            self.take(message);
        }
    }

    fn take(&mut self, message: ExecTaskStreamingResponse) {
        if let Some(out) = message.stdout {
            self.stdout.extend(out.data);
            self.closed.0 |= out.close;
        }
        if let Some(err) = message.stderr {
            self.stderr.extend(err.data);
            self.closed.1 |= err.close;
        }
    }

    /// Reads to the end; returns the exit code.
    async fn finish(&mut self) -> i32 {
        loop {
            let message = tokio::time::timeout(DEADLINE, self.output.next())
                .await
                .expect("the exec session ends")
                .expect("an exited message before the end of the stream")
                .unwrap();
            if message.exited {
                assert!(self.closed.0 && self.closed.1, "close markers before exit");
                let code = message.result.expect("result with exited").exit_code;
                assert!(self.output.next().await.is_none(), "stream ends after exit");
                return code;
            }
            self.take(message);
        }
    }
}

#[tokio::test]
async fn exec_streaming_without_tty() {
    let bed = Bed::new("exec");
    let plugin = bed.plugin().await;
    let alloc = bed.alloc();
    let task = bed::start(
        &plugin,
        &alloc,
        "shell",
        &bed.labelled(&shell_task("sleep 600")),
    )
    .await;

    let script = "read line; echo \"in:$line\"; echo to-stderr >&2; cat; exit 4";
    let mut session = Session::open(&plugin, &task.id(), &["sh", "-c", script], false).await;
    // A heartbeat (no field set) is ignored.
    session.send(ExecTaskStreamingRequest::default()).await;
    session.stdin(b"hello\n", false).await;
    session.read_until("in:hello").await;
    session.stdin(b"rest-of-input\n", false).await;
    session.stdin(b"", true).await;
    let code = session.finish().await;
    assert_eq!(code, 4);
    let stdout = String::from_utf8_lossy(&session.stdout);
    assert!(stdout.contains("rest-of-input"), "{stdout}");
    assert!(String::from_utf8_lossy(&session.stderr).contains("to-stderr"));

    bed::stop_and_destroy(&plugin, &task.id()).await;
    plugin.kill().await;
}

#[tokio::test]
async fn exec_streaming_with_tty_and_resize() {
    let bed = Bed::new("exec-tty");
    let plugin = bed.plugin().await;
    let alloc = bed.alloc();
    let task = bed::start(
        &plugin,
        &alloc,
        "shell",
        &bed.labelled(&shell_task("sleep 600")),
    )
    .await;

    let mut session = Session::open(&plugin, &task.id(), &["sh"], true).await;
    session
        .send(ExecTaskStreamingRequest {
            tty_size: Some(TerminalSize {
                height: 33,
                width: 101,
            }),
            ..Default::default()
        })
        .await;
    // The terminal echoes input: wait for text only the command's output contains.
    session.stdin(b"tty && echo ok-$((40+2))\n", false).await;
    session.read_until("ok-42").await;
    assert!(String::from_utf8_lossy(&session.stdout).contains("/dev/pts/"));
    session.stdin(b"stty size\n", false).await;
    session.read_until("33 101").await;
    session.stdin(b"exit 5\n", false).await;
    assert_eq!(session.finish().await, 5);
    // With a terminal everything arrives on stdout.
    assert!(session.stderr.is_empty());

    bed::stop_and_destroy(&plugin, &task.id()).await;
    plugin.kill().await;
}

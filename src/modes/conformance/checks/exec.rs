//! Exec through the driver: one-shot (script checks), timeout, streaming with stdin, and
//! a terminal with resize.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::driver::model::{ExecIo, TerminalSize};

use super::super::check::{ensure, Check, Failure, Finding, Outcome, Tag};
use super::super::env::{Env, Started};
use super::super::scope::Scope;

async fn sleeper(env: &Env, scope: &Scope) -> Result<Started, Failure> {
    env.task(scope, "exec").script("sleep 300").start().await
}

pub struct Run;

#[async_trait]
impl Check for Run {
    fn name(&self) -> &'static str {
        "exec.run"
    }

    fn tags(&self) -> &'static [Tag] {
        &[Tag::Smoke, Tag::Exec]
    }

    async fn run(&self, env: &Env, scope: &Scope) -> Outcome {
        let task = sleeper(env, scope).await?;
        let output = env
            .exec(&task.task_id, "echo out; echo err >&2; exit 3")
            .await?;
        ensure!(output.exit_code == 3, "exit code {}", output.exit_code);
        ensure!(
            output.stdout == b"out\n" && output.stderr == b"err\n",
            "stdout {:?} / stderr {:?}, expected \"out\\n\" / \"err\\n\"",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(Finding::pass("exit code 3, stdout and stderr kept apart"))
    }
}

pub struct Timeout;

#[async_trait]
impl Check for Timeout {
    fn name(&self) -> &'static str {
        "exec.timeout"
    }

    fn tags(&self) -> &'static [Tag] {
        &[Tag::Exec]
    }

    async fn run(&self, env: &Env, scope: &Scope) -> Outcome {
        let task = sleeper(env, scope).await?;
        let cmd = vec!["sleep".to_string(), "120".to_string()];
        let result = tokio::time::timeout(
            Duration::from_secs(30),
            env.driver.exec(&task.task_id, cmd, Duration::from_secs(1)),
        )
        .await
        .map_err(|_| Failure::new("exec with a 1s timeout still ran after 30s"))?;
        match result {
            Err(err) => Ok(Finding::pass(format!("ended at the deadline: {err}"))),
            Ok(output) => {
                ensure!(
                    output.exit_code != 0,
                    "`sleep 120` with a 1s timeout reported success"
                );
                Ok(Finding::pass(format!(
                    "ended at the deadline with exit code {}",
                    output.exit_code
                )))
            }
        }
    }
}

/// Collects everything sent on `receiver` until it closes.
async fn collect(mut receiver: mpsc::Receiver<Bytes>) -> Vec<u8> {
    let mut collected = Vec::new();
    while let Some(chunk) = receiver.recv().await {
        collected.extend_from_slice(&chunk);
    }
    collected
}

pub struct Streaming;

#[async_trait]
impl Check for Streaming {
    fn name(&self) -> &'static str {
        "exec.streaming"
    }

    fn tags(&self) -> &'static [Tag] {
        &[Tag::Exec]
    }

    async fn run(&self, env: &Env, scope: &Scope) -> Outcome {
        let task = sleeper(env, scope).await?;
        let (stdin_tx, stdin_rx) = mpsc::channel(4);
        let (stdout_tx, stdout_rx) = mpsc::channel(16);
        let (stderr_tx, stderr_rx) = mpsc::channel(16);
        let io = ExecIo {
            stdin: Some(stdin_rx),
            resize: None,
            stdout: stdout_tx,
            stderr: stderr_tx,
        };
        let cmd = ["sh", "-c", "cat; echo done >&2; exit 4"]
            .map(str::to_string)
            .to_vec();
        let stdout = tokio::spawn(collect(stdout_rx));
        let stderr = tokio::spawn(collect(stderr_rx));
        stdin_tx
            .send(Bytes::from_static(b"hello through stdin\n"))
            .await
            .map_err(|_| Failure::new("exec session dropped its stdin"))?;
        // Closing stdin must reach `cat` as end of file.
        drop(stdin_tx);
        let exit = tokio::time::timeout(
            Duration::from_secs(30),
            env.driver.exec_streaming(&task.task_id, cmd, false, io),
        )
        .await
        .map_err(|_| Failure::new("streaming exec did not end after stdin closed"))??;
        let stdout = stdout.await.map_err(|err| Failure(err.to_string()))?;
        let stderr = stderr.await.map_err(|err| Failure(err.to_string()))?;
        ensure!(exit.exit_code == 4, "exit code {}", exit.exit_code);
        ensure!(
            stdout == b"hello through stdin\n" && stderr == b"done\n",
            "stdout {:?} / stderr {:?}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        );
        Ok(Finding::pass(
            "stdin echoed back, end of input delivered, stderr separate, exit code 4",
        ))
    }
}

pub struct Tty;

#[async_trait]
impl Check for Tty {
    fn name(&self) -> &'static str {
        "exec.tty"
    }

    fn tags(&self) -> &'static [Tag] {
        &[Tag::Exec]
    }

    async fn run(&self, env: &Env, scope: &Scope) -> Outcome {
        let task = sleeper(env, scope).await?;
        let (resize_tx, resize_rx) = mpsc::channel(4);
        let (stdout_tx, stdout_rx) = mpsc::channel(16);
        let (stderr_tx, stderr_rx) = mpsc::channel(16);
        let io = ExecIo {
            stdin: None,
            resize: Some(resize_rx),
            stdout: stdout_tx,
            stderr: stderr_tx,
        };
        // The resize travels separately from the session: poll until it has landed.
        let script = "for i in $(seq 50); do s=$(stty size); [ \"$s\" = '40 100' ] && break; \
                      sleep 0.1; done; echo \"size $s\"; tty";
        let cmd = ["sh", "-c", script].map(str::to_string).to_vec();
        resize_tx
            .send(TerminalSize {
                height: 40,
                width: 100,
            })
            .await
            .map_err(|_| Failure::new("exec session dropped its resize channel"))?;
        let stdout = tokio::spawn(collect(stdout_rx));
        let stderr = tokio::spawn(collect(stderr_rx));
        let exit = tokio::time::timeout(
            Duration::from_secs(30),
            env.driver.exec_streaming(&task.task_id, cmd, true, io),
        )
        .await
        .map_err(|_| Failure::new("tty exec did not end"))??;
        drop(resize_tx);
        let stdout =
            String::from_utf8_lossy(&stdout.await.map_err(|e| Failure(e.to_string()))?).to_string();
        let stderr = stderr.await.map_err(|err| Failure(err.to_string()))?;
        ensure!(
            exit.exit_code == 0,
            "exit code {}: {stdout:?}",
            exit.exit_code
        );
        ensure!(
            stdout.contains("/dev/pts/"),
            "no terminal: `tty` printed {stdout:?}"
        );
        ensure!(
            stdout.contains("size 40 100"),
            "the resize to 40x100 did not arrive: {stdout:?}"
        );
        // A terminal has one output stream.
        ensure!(
            stderr.is_empty(),
            "stderr got {:?}",
            String::from_utf8_lossy(&stderr)
        );
        Ok(Finding::pass("a pseudo-terminal, resized to 40x100"))
    }
}

//! Start, wait, inspect, stop, destroy and signal: the task lifecycle through the driver.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

use crate::driver::error::DriverError;
use crate::driver::model::{ExitResult, TaskRunState};

use super::super::check::{ensure, Check, Failure, Finding, Outcome, Tag};
use super::super::drift::{self, ids};
use super::super::env::Env;
use super::super::scope::Scope;

const EXIT_DEADLINE: Duration = Duration::from_secs(60);

/// A script that installs `traps`, says it is ready, then sleeps in the background so the
/// shell can run its traps.
fn trapped(traps: &str) -> String {
    format!("{traps}; touch /tmp/ready; sleep 300 & wait")
}

fn describe(exit: &ExitResult) -> String {
    let mut text = format!("exit code {}", exit.exit_code);
    if exit.signal != 0 {
        text.push_str(&format!(", signal {}", exit.signal));
    }
    if exit.oom_killed {
        text.push_str(", OOM killed");
    }
    if let Some(err) = &exit.err {
        text.push_str(&format!(", error {err:?}"));
    }
    text
}

/// Whether the exit says SIGKILL: code 137 or signal 9.
fn killed(exit: &ExitResult) -> bool {
    exit.exit_code == 137 || exit.signal == 9
}

pub struct ExitCode {
    pub name: &'static str,
    pub code: i32,
}

#[async_trait]
impl Check for ExitCode {
    fn name(&self) -> &'static str {
        self.name
    }

    fn tags(&self) -> &'static [Tag] {
        if self.code == 0 {
            &[Tag::Smoke, Tag::Lifecycle]
        } else {
            &[Tag::Lifecycle]
        }
    }

    async fn run(&self, env: &Env, scope: &Scope) -> Outcome {
        let task = env
            .task(scope, "exit")
            .script(&format!("exit {}", self.code))
            .start()
            .await?;
        let exit = env.wait_exit(&task.task_id, EXIT_DEADLINE).await?;
        ensure!(
            exit.exit_code == self.code && !exit.oom_killed,
            "expected exit code {}, got {}",
            self.code,
            describe(&exit)
        );
        ensure!(
            exit.successful() == (self.code == 0),
            "exit result {} is {}successful",
            describe(&exit),
            if exit.successful() { "" } else { "not " }
        );
        Ok(Finding::pass(describe(&exit)))
    }
}

pub struct States;

#[async_trait]
impl Check for States {
    fn name(&self) -> &'static str {
        "lifecycle.inspect-states"
    }

    fn tags(&self) -> &'static [Tag] {
        &[Tag::Lifecycle]
    }

    async fn run(&self, env: &Env, scope: &Scope) -> Outcome {
        let task = env
            .task(scope, "states")
            .script(&trapped("trap 'exit 5' TERM"))
            .start()
            .await?;
        let running = env.driver.inspect(&task.task_id).await?;
        ensure!(
            running.state == TaskRunState::Running && running.exit_result.is_none(),
            "a started task inspects as {:?} with exit {:?}",
            running.state,
            running.exit_result
        );
        env.wait_ready(&task.task_id).await?;
        // Several waiters must all see the exit.
        let (first, second, _) = tokio::join!(
            env.wait_exit(&task.task_id, EXIT_DEADLINE),
            env.wait_exit(&task.task_id, EXIT_DEADLINE),
            env.driver
                .stop(&task.task_id, Duration::from_secs(10), None),
        );
        let (first, second) = (first?, second?);
        ensure!(first == second, "two waiters saw {first:?} and {second:?}");
        ensure!(first.exit_code == 5, "stopped task: {}", describe(&first));
        let exited = env.driver.inspect(&task.task_id).await?;
        ensure!(
            exited.state == TaskRunState::Exited,
            "an exited task inspects as {:?}",
            exited.state
        );
        ensure!(
            exited.exit_result.as_ref() == Some(&first),
            "inspect exit result {:?} differs from wait's {first:?}",
            exited.exit_result
        );
        ensure!(
            exited
                .completed_at
                .is_some_and(|done| done >= exited.started_at),
            "completed_at {:?} is missing or before started_at",
            exited.completed_at
        );
        Ok(Finding::pass(
            "running -> exited; waiters and inspect agree on exit code 5",
        ))
    }
}

pub struct Destroy;

#[async_trait]
impl Check for Destroy {
    fn name(&self) -> &'static str {
        "lifecycle.destroy"
    }

    fn tags(&self) -> &'static [Tag] {
        &[Tag::Lifecycle, Tag::Cleanup]
    }

    async fn run(&self, env: &Env, scope: &Scope) -> Outcome {
        let task = env
            .task(scope, "destroy")
            .script("sleep 300")
            .start()
            .await?;
        ensure!(
            env.driver.destroy(&task.task_id, false).await.is_err(),
            "destroying a running task without force succeeded"
        );
        env.driver.destroy(&task.task_id, true).await?;
        ensure!(
            !env.podman.container_exists(&task.container_name).await?,
            "container {} still exists after a forced destroy",
            task.container_name
        );
        let after = env.driver.wait(&task.task_id).await;
        ensure!(
            matches!(after, Err(DriverError::TaskNotFound(_))),
            "wait after destroy answered {after:?}, expected task not found"
        );
        Ok(Finding::pass(
            "refused without force; forced destroy removed the container and forgot the task",
        ))
    }
}

/// `stop` with an explicit signal, with the task's kill signal, or ignoring TERM until
/// the timeout's SIGKILL.
pub struct Stop {
    pub name: &'static str,
    /// Signal the task's trap handles (exits 42), or `None` for a task that ignores TERM.
    pub trapped: Option<&'static str>,
    /// Pass the signal as the task's `kill_signal` instead of to `stop`.
    pub via_kill_signal: bool,
}

#[async_trait]
impl Check for Stop {
    fn name(&self) -> &'static str {
        self.name
    }

    fn tags(&self) -> &'static [Tag] {
        &[Tag::Lifecycle, Tag::Signals]
    }

    async fn run(&self, env: &Env, scope: &Scope) -> Outcome {
        let script = match self.trapped {
            Some(signal) => trapped(&format!(
                "trap 'exit 42' {}",
                signal.trim_start_matches("SIG")
            )),
            None => trapped("trap '' TERM"),
        };
        let kill_signal = self
            .trapped
            .filter(|_| self.via_kill_signal)
            .map(str::to_string);
        let task = env
            .task(scope, "stop")
            .script(&script)
            .context(|context| context.kill_signal = kill_signal)
            .start()
            .await?;
        env.wait_ready(&task.task_id).await?;
        let stop_signal = self.trapped.filter(|_| !self.via_kill_signal);
        let timeout = if self.trapped.is_some() { 10 } else { 2 };
        env.driver
            .stop(&task.task_id, Duration::from_secs(timeout), stop_signal)
            .await?;
        let exit = env.wait_exit(&task.task_id, EXIT_DEADLINE).await?;
        match self.trapped {
            Some(signal) => {
                ensure!(
                    exit.exit_code == 42,
                    "the task's {signal} trap did not run: {} (was {signal} sent?)",
                    describe(&exit)
                );
                Ok(Finding::pass(format!(
                    "{signal} delivered; {}",
                    describe(&exit)
                )))
            }
            None => {
                ensure!(
                    killed(&exit),
                    "a task ignoring SIGTERM was not killed after the timeout: {}",
                    describe(&exit)
                );
                Ok(Finding::pass(format!(
                    "SIGKILL after the 2s timeout; {}",
                    describe(&exit)
                )))
            }
        }
    }
}

pub struct Signal;

#[async_trait]
impl Check for Signal {
    fn name(&self) -> &'static str {
        "signals.deliver"
    }

    fn tags(&self) -> &'static [Tag] {
        &[Tag::Signals]
    }

    async fn run(&self, env: &Env, scope: &Scope) -> Outcome {
        let task = env
            .task(scope, "signal")
            .script(&trapped("trap 'exit 10' USR1"))
            .start()
            .await?;
        env.wait_ready(&task.task_id).await?;
        env.driver.signal(&task.task_id, "SIGUSR1").await?;
        let exit = env.wait_exit(&task.task_id, EXIT_DEADLINE).await?;
        ensure!(exit.exit_code == 10, "after SIGUSR1: {}", describe(&exit));
        let unknown = env.driver.signal(&task.task_id, "SIGNOPE").await;
        ensure!(unknown.is_err(), "signal SIGNOPE was accepted");
        Ok(Finding::pass(
            "SIGUSR1 reached the task; an unknown signal is an error",
        ))
    }
}

pub struct Oom;

#[async_trait]
impl Check for Oom {
    fn name(&self) -> &'static str {
        "lifecycle.oom"
    }

    fn tags(&self) -> &'static [Tag] {
        &[Tag::Lifecycle, Tag::Resources]
    }

    async fn run(&self, env: &Env, scope: &Scope) -> Outcome {
        // Without a memory limit the task would take the host's memory instead.
        if drift::expected(ids::ROOTLESS_CGROUP1_NO_LIMITS, env.facts()?) {
            return Ok(Finding::drift(
                ids::ROOTLESS_CGROUP1_NO_LIMITS,
                "not run: this podman sets no memory limit, so no task can exceed one",
            ));
        }
        let task = env
            .task(scope, "oom")
            // `tail` buffers an endless line of zeros until the memory limit kills it.
            .script("tail /dev/zero")
            .config(json!({"memory_swap": "16m"}))
            .context(|context| context.resources.memory_mb = 16)
            .start()
            .await?;
        let exit = env.wait_exit(&task.task_id, EXIT_DEADLINE).await?;
        if exit.oom_killed {
            return Ok(Finding::pass(format!(
                "reported as OOM killed; {}",
                describe(&exit)
            )));
        }
        if killed(&exit) {
            return Ok(Finding::drift(
                ids::OOM_FLAG_UNSET,
                format!("killed without the OOM flag: {}", describe(&exit)),
            ));
        }
        Err(Failure(format!(
            "a task over its memory limit ended with {}",
            describe(&exit)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_descriptions() {
        let exit = ExitResult {
            exit_code: 137,
            signal: 9,
            oom_killed: true,
            err: Some("boom".to_string()),
        };
        assert_eq!(
            describe(&exit),
            "exit code 137, signal 9, OOM killed, error \"boom\""
        );
        assert!(killed(&exit));
        assert!(!killed(&ExitResult::default()));
    }
}

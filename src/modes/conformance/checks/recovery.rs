//! Recovery: a fresh driver instance (as after a plugin restart) picks up tasks from their
//! persisted state.

use std::time::Duration;

use async_trait::async_trait;

use crate::driver::model::TaskRunState;

use super::super::check::{ensure, Check, Finding, Outcome, Tag};
use super::super::env::{self, Env};
use super::super::scope::Scope;

pub struct Running;

#[async_trait]
impl Check for Running {
    fn name(&self) -> &'static str {
        "recovery.running"
    }

    fn tags(&self) -> &'static [Tag] {
        &[Tag::Recovery]
    }

    async fn run(&self, env: &Env, scope: &Scope) -> Outcome {
        let task = env
            .task(scope, "recover")
            .script("trap 'exit 6' TERM; touch /tmp/ready; sleep 300 & wait")
            .start()
            .await?;
        env.wait_ready(&task.task_id).await?;
        let fresh = env.fresh_driver()?;
        scope.track_task(&fresh, &task.task_id);
        // Round-trip the state through its persisted form, as the plugin does.
        let persisted = serde_json::to_vec(&task.state)?;
        let state = serde_json::from_slice(&persisted)?;
        fresh.recover(state).await?;
        let again = serde_json::from_slice(&persisted)?;
        fresh.recover(again).await?;
        let status = fresh.inspect(&task.task_id).await?;
        ensure!(
            status.state == TaskRunState::Running,
            "the recovered task inspects as {:?}",
            status.state
        );
        let output = fresh
            .exec(
                &task.task_id,
                vec!["cat".to_string(), "/tmp/ready".to_string()],
                Duration::from_secs(10),
            )
            .await?;
        ensure!(
            output.exit_code == 0,
            "exec in the recovered task exited {}",
            output.exit_code
        );
        fresh
            .stop(&task.task_id, Duration::from_secs(10), None)
            .await?;
        let exit = env::wait_exit(&fresh, &task.task_id, Duration::from_secs(60)).await?;
        ensure!(
            exit.exit_code == 6,
            "the recovered task exited {}",
            exit.exit_code
        );
        Ok(Finding::pass(
            "recovered (twice, idempotent), inspected, exec'd, stopped; exit code 6",
        ))
    }
}

pub struct Exited;

#[async_trait]
impl Check for Exited {
    fn name(&self) -> &'static str {
        "recovery.exited"
    }

    fn tags(&self) -> &'static [Tag] {
        &[Tag::Recovery]
    }

    async fn run(&self, env: &Env, scope: &Scope) -> Outcome {
        let task = env.task(scope, "recover").script("exit 7").start().await?;
        env.wait_exit(&task.task_id, Duration::from_secs(60))
            .await?;
        let fresh = env.fresh_driver()?;
        scope.track_task(&fresh, &task.task_id);
        fresh.recover(task.state.clone()).await?;
        let exit = env::wait_exit(&fresh, &task.task_id, Duration::from_secs(30)).await?;
        ensure!(
            exit.exit_code == 7,
            "a task that exited 7 while no driver watched is reported as exit code {}",
            exit.exit_code
        );
        Ok(Finding::pass(
            "the exit code of a task that ended meanwhile is kept (7)",
        ))
    }
}

pub struct Gone;

#[async_trait]
impl Check for Gone {
    fn name(&self) -> &'static str {
        "recovery.gone"
    }

    fn tags(&self) -> &'static [Tag] {
        &[Tag::Recovery]
    }

    async fn run(&self, env: &Env, scope: &Scope) -> Outcome {
        let task = env
            .task(scope, "recover")
            .script("sleep 300")
            .start()
            .await?;
        env.driver.destroy(&task.task_id, true).await?;
        let fresh = env.fresh_driver()?;
        let result = fresh.recover(task.state.clone()).await;
        ensure!(
            result.is_err(),
            "recovering a task whose container is gone succeeded"
        );
        Ok(Finding::pass(format!(
            "refused: {}",
            result.err().map(|e| e.to_string()).unwrap_or_default()
        )))
    }
}

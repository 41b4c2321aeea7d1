//! `ulimit`: the limits reach the task, both when the task sets every limit podman
//! defaults and when it sets only one (where podman < 5 may fill in limits of its own).

use async_trait::async_trait;
use serde_json::{json, Value};

use super::super::check::{ensure, Check, Failure, Finding, Outcome, Tag};
use super::super::drift::ids;
use super::super::env::Env;
use super::super::scope::Scope;

pub struct Ulimit;

impl Ulimit {
    /// Starts a task with `ulimit` and returns the soft and hard nofile and nproc limits of
    /// its main process (exec sessions get their own soft nofile).
    async fn limits(&self, env: &Env, scope: &Scope, ulimit: Value) -> Result<String, Failure> {
        let task = env
            .task(scope, "ulimit")
            .script("sleep 300")
            .config(json!({ "ulimit": ulimit }))
            .start()
            .await?;
        let limits = env
            .exec_ok(
                &task.task_id,
                "grep -E '^Max (open files|processes)' /proc/1/limits",
            )
            .await?;
        // "Max open files  512  768  files": the soft and hard values.
        let values = |prefix: &str| {
            limits
                .lines()
                .find(|line| line.starts_with(prefix))
                .map(|line| {
                    line[prefix.len()..]
                        .split_whitespace()
                        .take(2)
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default()
        };
        Ok(format!(
            "nofile {} nproc {}",
            values("Max open files"),
            values("Max processes")
        ))
    }
}

#[async_trait]
impl Check for Ulimit {
    fn name(&self) -> &'static str {
        "resources.ulimit"
    }

    fn tags(&self) -> &'static [Tag] {
        &[Tag::Resources]
    }

    async fn run(&self, env: &Env, scope: &Scope) -> Outcome {
        // nproc well above what a host user runs: rootless, the limit counts every
        // process of the user on the host, and an exec into the task must still fork.
        let both = self
            .limits(
                env,
                scope,
                json!({"nofile": "512:768", "nproc": "4000:4000"}),
            )
            .await?;
        ensure!(
            both == "nofile 512 768 nproc 4000 4000",
            "nofile 512:768 and nproc 4000:4000 gave {both}"
        );
        match self.limits(env, scope, json!({"nofile": "512:768"})).await {
            Ok(one) => {
                ensure!(
                    one.starts_with("nofile 512 768 "),
                    "nofile 512:768 alone gave {one}"
                );
                Ok(Finding::pass(
                    "nofile and nproc reach the task, alone or together",
                ))
            }
            Err(Failure(message)) if message.contains("rlimit") => Ok(Finding::drift(
                ids::ULIMIT_REPLACES_DEFAULTS,
                format!("nofile and nproc together work; nofile alone fails: {message}"),
            )),
            Err(failure) => Err(failure),
        }
    }
}

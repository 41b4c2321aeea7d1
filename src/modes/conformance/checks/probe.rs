//! Table-driven option checks: start a sleeping task with some task options, run a shell
//! probe inside it through the driver's exec, and judge the probe's output.

use async_trait::async_trait;
use serde_json::Value;

use crate::driver::task::TaskContext;

use super::super::check::{Check, Failure, Finding, Outcome, Skip, Tag};
use super::super::drift::{self, ids};
use super::super::env::Env;
use super::super::scope::Scope;

/// One option check.
pub struct Probe {
    pub name: &'static str,
    pub tags: &'static [Tag],
    /// Task options (plain HCL shape) under test.
    pub options: fn(&Env) -> Value,
    /// Orchestrator-provided context under test (resources, env, user...).
    pub context: fn(&Env, &mut TaskContext),
    /// Extra precondition beyond a reachable API and a test image.
    pub precondition: fn(&Env) -> Result<(), Skip>,
    /// `sh -c` script run in the task; its stdout goes to `judge`.
    pub script: &'static str,
    pub judge: fn(&Env, &str) -> Outcome,
}

/// No extra task context.
pub fn no_context(_: &Env, _: &mut TaskContext) {}

/// No extra precondition.
pub fn always(_: &Env) -> Result<(), Skip> {
    Ok(())
}

#[async_trait]
impl Check for Probe {
    fn name(&self) -> &'static str {
        self.name
    }

    fn tags(&self) -> &'static [Tag] {
        self.tags
    }

    fn precondition(&self, env: &Env) -> Result<(), Skip> {
        env.require_image()?;
        (self.precondition)(env)
    }

    async fn run(&self, env: &Env, scope: &Scope) -> Outcome {
        let outcome = self.probe(env, scope).await;
        match outcome {
            Err(failure)
                if self.tags.contains(&Tag::Resources)
                    && drift::expected(ids::ROOTLESS_CGROUP1_NO_LIMITS, env.facts()?) =>
            {
                Ok(Finding::drift(ids::ROOTLESS_CGROUP1_NO_LIMITS, failure.0))
            }
            outcome => outcome,
        }
    }
}

impl Probe {
    async fn probe(&self, env: &Env, scope: &Scope) -> Outcome {
        let task = env
            .task(scope, "probe")
            .script("trap 'exit 0' TERM; sleep 300 & wait")
            .config((self.options)(env))
            .context(|context| (self.context)(env, context))
            .with_task_dirs()?
            .start()
            .await?;
        let output = env.exec_ok(&task.task_id, self.script).await?;
        (self.judge)(env, &output)
    }
}

/// `Ok(())` when `output` contains `needle`, else a failure quoting the output.
pub fn contains(output: &str, needle: &str) -> Result<(), Failure> {
    if output.contains(needle) {
        Ok(())
    } else {
        Err(Failure(format!("expected {needle:?} in {output:?}")))
    }
}

/// The first whitespace-separated number in `output`.
pub fn number(output: &str) -> Result<u64, Failure> {
    output
        .split_whitespace()
        .find_map(|word| word.parse().ok())
        .ok_or_else(|| Failure(format!("expected a number, got {output:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_judge_output() {
        assert!(contains("a b c", "b c").is_ok());
        assert_eq!(
            contains("abc", "x"),
            Err(Failure("expected \"x\" in \"abc\"".to_string()))
        );
        assert_eq!(number("max 67108864\n"), Ok(67108864));
        assert!(number("max").is_err());
    }
}

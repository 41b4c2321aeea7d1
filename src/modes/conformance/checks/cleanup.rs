//! Isolation: the run removes what it created, by its own label, and nothing else.

use async_trait::async_trait;

use super::super::check::{ensure, Check, Finding, Outcome, Skip, Tag};
use super::super::env::Env;
use super::super::scope::Scope;

/// Runs last: no container of this run may remain, and the bystander container made at
/// setup (labelled like a driver-managed container, but not with the run label) must.
pub struct RunLabel;

#[async_trait]
impl Check for RunLabel {
    fn name(&self) -> &'static str {
        "cleanup.run-label"
    }

    fn tags(&self) -> &'static [Tag] {
        &[Tag::Cleanup]
    }

    fn precondition(&self, env: &Env) -> Result<(), Skip> {
        env.require_api().map(|_| ())
    }

    async fn run(&self, env: &Env, _: &Scope) -> Outcome {
        let leftovers = env.podman.containers_labelled(&[env.run_label()]).await?;
        ensure!(
            leftovers.is_empty(),
            "containers of this run remain after their checks: {}",
            leftovers.join(", ")
        );
        if let Some(bystander) = &env.bystander {
            ensure!(
                env.podman.container_exists(bystander).await?,
                "the bystander container {bystander} (not labelled with the run) was removed"
            );
        }
        Ok(Finding::pass(format!(
            "no container labelled {} remains; others untouched",
            env.run_label()
        )))
    }
}

//! Task stats through the driver: samples arrive at the asked interval and carry the
//! fields Nomad shows.

use std::time::Duration;

use async_trait::async_trait;

use crate::driver::error::DriverError;

use super::super::check::{ensure, Check, Failure, Finding, Outcome, Tag};
use super::super::drift::{self, ids};
use super::super::env::Env;
use super::super::scope::Scope;

pub struct Shape;

#[async_trait]
impl Check for Shape {
    fn name(&self) -> &'static str {
        "stats.shape"
    }

    fn tags(&self) -> &'static [Tag] {
        &[Tag::Stats]
    }

    async fn run(&self, env: &Env, scope: &Scope) -> Outcome {
        // A little CPU and memory use, so that the numbers are not all zero.
        let task = env
            .task(scope, "stats")
            .script("x=$(seq 20000); while :; do : $((i+=1)); done")
            .start()
            .await?;
        let mut samples = match env.driver.stats(&task.task_id, Duration::from_secs(1)) {
            Ok(samples) => samples,
            // The driver knows this podman has none and says so at once.
            Err(e @ DriverError::StatsUnavailable { .. })
                if drift::expected(ids::ROOTLESS_CGROUP1_NO_STATS, env.facts()?) =>
            {
                return Ok(Finding::drift(
                    ids::ROOTLESS_CGROUP1_NO_STATS,
                    e.to_string(),
                ))
            }
            Err(e) => return Err(e.into()),
        };
        let mut received = Vec::new();
        while received.len() < 3 {
            match tokio::time::timeout(Duration::from_secs(15), samples.recv()).await {
                Ok(Some(sample)) => received.push(sample),
                Ok(None) => return Err(Failure::new("the stats stream ended while the task ran")),
                Err(_) if drift::expected(ids::ROOTLESS_CGROUP1_NO_STATS, env.facts()?) => {
                    return Ok(Finding::drift(
                        ids::ROOTLESS_CGROUP1_NO_STATS,
                        format!("no stats sample within 15s ({} received)", received.len()),
                    ))
                }
                Err(_) => {
                    return Err(Failure(format!(
                        "no stats sample within 15s ({} received)",
                        received.len()
                    )))
                }
            }
        }
        let last = &received[received.len() - 1];
        ensure!(
            received
                .windows(2)
                .all(|w| w[0].timestamp <= w[1].timestamp),
            "sample timestamps go backwards"
        );
        ensure!(last.memory.usage > 0, "memory usage is 0");
        ensure!(
            !last.memory.measured.is_empty() && !last.cpu.measured.is_empty(),
            "samples do not say what they measured"
        );
        ensure!(
            last.cpu.percent.is_finite() && last.cpu.percent > 0.0,
            "CPU percent of a busy task is {}",
            last.cpu.percent
        );
        ensure!(
            last.cpu.total_ticks.is_finite() && last.cpu.total_ticks >= 0.0,
            "CPU total ticks is {}",
            last.cpu.total_ticks
        );
        let summary = format!(
            "memory {} KiB, cpu {:.1}%, measured {:?} / {:?}",
            last.memory.usage / 1024,
            last.cpu.percent,
            last.memory.measured,
            last.cpu.measured
        );
        if last.memory.max_usage == 0 {
            return Ok(Finding::drift(
                ids::CGROUP2_NO_MAX_USAGE,
                format!("max usage 0; {summary}"),
            ));
        }
        if drift::expected(ids::CGROUP2_NO_MAX_USAGE, env.facts()?) {
            return Ok(Finding::pass(format!(
                "{summary}; max usage reported despite cgroup v2"
            )));
        }
        Ok(Finding::pass(summary))
    }
}

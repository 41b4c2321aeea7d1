//! The libpod API itself: reachability, version, info, the driver's fingerprint, and the
//! response shapes that drift between podman versions. Only these checks make raw calls.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::driver::model::{Attribute, Health, TaskRunState};

use super::super::check::{ensure, Check, Failure, Finding, Outcome, Skip, Tag};
use super::super::drift::{self, ids, Version};
use super::super::env::Env;
use super::super::facts::{is_unix, ServiceFacts};
use super::super::scope::Scope;

/// Oldest podman whose libpod API the driver speaks.
const OLDEST_SUPPORTED: Version = Version::new(3, 0, 0);

pub struct Ping;

#[async_trait]
impl Check for Ping {
    fn name(&self) -> &'static str {
        "api.ping"
    }

    fn tags(&self) -> &'static [Tag] {
        &[Tag::Smoke, Tag::Api]
    }

    fn precondition(&self, _: &Env) -> Result<(), Skip> {
        Ok(())
    }

    fn deadline(&self) -> Duration {
        Duration::from_secs(20)
    }

    async fn run(&self, env: &Env, _: &Scope) -> Outcome {
        let api_version = env.podman.ping().await?;
        ensure!(
            !api_version.is_empty(),
            "GET /libpod/_ping answered without a Libpod-API-Version header"
        );
        Ok(Finding::pass(format!("libpod API {api_version}")))
    }
}

pub struct VersionCheck;

#[async_trait]
impl Check for VersionCheck {
    fn name(&self) -> &'static str {
        "api.version"
    }

    fn tags(&self) -> &'static [Tag] {
        &[Tag::Smoke, Tag::Api]
    }

    fn precondition(&self, _: &Env) -> Result<(), Skip> {
        Ok(())
    }

    fn deadline(&self) -> Duration {
        Duration::from_secs(20)
    }

    async fn run(&self, env: &Env, _: &Scope) -> Outcome {
        let version = env.podman.version().await?;
        let text = |key: &str| version.get(key).and_then(Value::as_str).unwrap_or_default();
        let engine: Version = text("Version").parse().map_err(Failure)?;
        ensure!(
            engine >= OLDEST_SUPPORTED,
            "podman {engine} is older than {OLDEST_SUPPORTED}, the oldest the driver supports"
        );
        Ok(Finding::pass(format!(
            "podman {} (Docker-compatible API {}, {}/{}, {})",
            text("Version"),
            text("ApiVersion"),
            text("Os"),
            text("Arch"),
            text("GoVersion")
        )))
    }
}

pub struct Info;

#[async_trait]
impl Check for Info {
    fn name(&self) -> &'static str {
        "api.info"
    }

    fn tags(&self) -> &'static [Tag] {
        &[Tag::Smoke, Tag::Api]
    }

    fn precondition(&self, _: &Env) -> Result<(), Skip> {
        Ok(())
    }

    fn deadline(&self) -> Duration {
        Duration::from_secs(20)
    }

    async fn run(&self, env: &Env, _: &Scope) -> Outcome {
        let info = env.podman.info().await?;
        // The fields the driver decides on (fingerprint attributes, rootless and cgroup
        // handling).
        let required = [
            ("/host/security/rootless", "bool"),
            ("/host/cgroupVersion", "string"),
            ("/host/cgroupManager", "string"),
            ("/host/ociRuntime/path", "string"),
            ("/version/APIVersion", "string"),
        ];
        let missing: Vec<&str> = required
            .iter()
            .filter(|(pointer, kind)| match info.pointer(pointer) {
                Some(Value::Bool(_)) => *kind != "bool",
                Some(Value::String(_)) => *kind != "string",
                _ => true,
            })
            .map(|(pointer, _)| *pointer)
            .collect();
        ensure!(missing.is_empty(), "info lacks {}", missing.join(", "));
        Ok(Finding::pass(
            ServiceFacts::from_info(&info, is_unix(&env.target.url)).summary(),
        ))
    }
}

pub struct Fingerprint;

#[async_trait]
impl Check for Fingerprint {
    fn name(&self) -> &'static str {
        "api.fingerprint"
    }

    fn tags(&self) -> &'static [Tag] {
        &[Tag::Smoke]
    }

    fn precondition(&self, _: &Env) -> Result<(), Skip> {
        Ok(())
    }

    fn deadline(&self) -> Duration {
        Duration::from_secs(30)
    }

    async fn run(&self, env: &Env, _: &Scope) -> Outcome {
        let fingerprint = env.driver.fingerprint().await;
        ensure!(
            fingerprint.health == Health::Healthy,
            "driver fingerprint is {:?}: {}",
            fingerprint.health,
            fingerprint.description
        );
        let text = |key: &str| match fingerprint.attributes.get(key) {
            Some(Attribute::String(value)) => Some(value.clone()),
            _ => None,
        };
        let version = text("driver.podman.version")
            .ok_or_else(|| Failure::new("fingerprint has no driver.podman.version"))?;
        ensure!(
            text("driver.podman.health").as_deref() == Some("healthy"),
            "driver.podman.health is {:?}",
            text("driver.podman.health")
        );
        Ok(Finding::pass(format!(
            "healthy, driver.podman.version = {version}"
        )))
    }
}

pub struct InspectTypes;

#[async_trait]
impl Check for InspectTypes {
    fn name(&self) -> &'static str {
        "api.inspect-types"
    }

    fn tags(&self) -> &'static [Tag] {
        &[Tag::Api]
    }

    async fn run(&self, env: &Env, scope: &Scope) -> Outcome {
        let task = env
            .task(scope, "inspect")
            .config(json!({"entrypoint": ["/bin/sh", "-c"], "args": ["sleep 300"]}))
            .start()
            .await?;
        let status = env.driver.inspect(&task.task_id).await?;
        ensure!(
            status.state == TaskRunState::Running,
            "driver inspect says {:?}, expected running",
            status.state
        );
        let inspect = env.podman.inspect_container(&task.container_name).await?;
        let entrypoint_list = match inspect.pointer("/Config/Entrypoint") {
            Some(Value::Array(_)) => true,
            Some(Value::String(_)) => false,
            other => return Err(Failure(format!("Config.Entrypoint is {other:?}"))),
        };
        let stop_signal_name = match inspect.pointer("/Config/StopSignal") {
            Some(Value::String(_)) => true,
            Some(Value::Number(_)) => false,
            other => return Err(Failure(format!("Config.StopSignal is {other:?}"))),
        };
        let facts = env.facts()?;
        let observed = format!(
            "Config.Entrypoint is a {}, Config.StopSignal a {}; the driver decodes both",
            if entrypoint_list { "list" } else { "string" },
            if stop_signal_name { "name" } else { "number" },
        );
        // Either 5.x shape seen reports its drift (a failure on podman < 5).
        if entrypoint_list {
            return Ok(Finding::drift(ids::INSPECT_ENTRYPOINT_ARRAY, observed));
        }
        if stop_signal_name {
            return Ok(Finding::drift(ids::INSPECT_STOPSIGNAL_STRING, observed));
        }
        if drift::expected(ids::INSPECT_ENTRYPOINT_ARRAY, facts) {
            return Ok(Finding::pass(format!(
                "{observed} (podman {} keeps the 4.x shapes)",
                facts.podman_version
            )));
        }
        Ok(Finding::pass(observed))
    }
}

pub struct StatsStopped;

#[async_trait]
impl Check for StatsStopped {
    fn name(&self) -> &'static str {
        "api.stats-stopped"
    }

    fn tags(&self) -> &'static [Tag] {
        &[Tag::Api, Tag::Stats]
    }

    async fn run(&self, env: &Env, scope: &Scope) -> Outcome {
        let task = env.task(scope, "stopped").script("exit 0").start().await?;
        env.wait_exit(&task.task_id, Duration::from_secs(30))
            .await?;
        let (status, body) = env.podman.stats_once(&task.container_name).await?;
        let cause = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("cause").and_then(Value::as_str).map(str::to_string));
        let (id, observed) = match (status, body.iter().all(u8::is_ascii_whitespace), cause) {
            (409, _, _) => (ids::STATS_STOPPED_CONFLICT, "409".to_string()),
            (200, true, _) => (
                ids::STATS_STOPPED_EMPTY,
                "200 with an empty body".to_string(),
            ),
            (200, _, Some(cause)) if cause.contains("stopped") => (
                ids::STATS_STOPPED_CAUSE,
                format!("200 with cause {cause:?}"),
            ),
            (status, _, _) => {
                return Err(Failure(format!(
                    "stats of a stopped container answered {status}: {}; the driver's exit \
                     detection does not know this shape",
                    String::from_utf8_lossy(&body)
                )))
            }
        };
        Ok(Finding::drift(
            id,
            format!("stats of a stopped container answer {observed}"),
        ))
    }
}

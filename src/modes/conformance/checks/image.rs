//! Images: import (the default test image's path), resolution to an image id, archive
//! loading, registry pulls with and without credentials, and a missing image.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};

use super::super::check::{ensure, Check, Failure, Finding, Outcome, Skip, Tag};
use super::super::cli::RegistryTarget;
use super::super::env::{Env, HOST_BUSYBOX};
use super::super::scope::Scope;

const EXIT_DEADLINE: Duration = Duration::from_secs(60);

/// Runs `exit 0` from `image` and expects exit code 0.
async fn run_image(
    env: &Env,
    scope: &Scope,
    image: &str,
    extra: Value,
) -> Result<super::super::env::Started, Failure> {
    let task = env
        .task(scope, "image")
        .config(json!({"image": image}))
        .config(extra)
        .script("exit 0")
        .start()
        .await?;
    let exit = env.wait_exit(&task.task_id, EXIT_DEADLINE).await?;
    ensure!(
        exit.exit_code == 0,
        "a task from {image} exited {}",
        exit.exit_code
    );
    Ok(task)
}

pub struct Import;

#[async_trait]
impl Check for Import {
    fn name(&self) -> &'static str {
        "image.import"
    }

    fn tags(&self) -> &'static [Tag] {
        &[Tag::Image]
    }

    fn precondition(&self, env: &Env) -> Result<(), Skip> {
        env.require_api()?;
        if Path::new(HOST_BUSYBOX).exists() {
            Ok(())
        } else {
            Err(Skip(format!(
                "{HOST_BUSYBOX} (Debian's busybox-static) is not installed"
            )))
        }
    }

    async fn run(&self, env: &Env, scope: &Scope) -> Outcome {
        let reference = format!(
            "localhost/nomad-driver-podman-conformance/import:{}",
            env.run_id
        );
        scope.track_image(&reference);
        env.podman
            .import_busybox(Path::new(HOST_BUSYBOX), &reference)
            .await?;
        let inspect = env.podman.inspect_image(&reference).await?;
        let id = inspect
            .get("Id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        ensure!(!id.is_empty(), "the imported image has no Id");
        run_image(env, scope, &reference, json!({})).await?;
        Ok(Finding::pass(format!(
            "imported {HOST_BUSYBOX} as {reference} ({}) and ran it",
            &id[..id.len().min(12)]
        )))
    }
}

pub struct Resolve;

#[async_trait]
impl Check for Resolve {
    fn name(&self) -> &'static str {
        "image.resolve"
    }

    fn tags(&self) -> &'static [Tag] {
        &[Tag::Smoke, Tag::Image]
    }

    async fn run(&self, env: &Env, scope: &Scope) -> Outcome {
        let reference = env.image_reference().to_string();
        let task = run_image(env, scope, &reference, json!({})).await?;
        let inspect = env.podman.inspect_image(&reference).await?;
        let id = inspect
            .get("Id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        ensure!(
            task.state.image_id.trim_start_matches("sha256:") == id.trim_start_matches("sha256:"),
            "the task's image id {:?} is not the image's {id:?}",
            task.state.image_id
        );
        Ok(Finding::pass(format!(
            "{reference} resolved to {} without a pull",
            &id[..id.len().min(12)]
        )))
    }
}

pub struct LoadArchive;

#[async_trait]
impl Check for LoadArchive {
    fn name(&self) -> &'static str {
        "image.load-archive"
    }

    fn tags(&self) -> &'static [Tag] {
        &[Tag::Image]
    }

    async fn run(&self, env: &Env, scope: &Scope) -> Outcome {
        let archive = env.scratch().join("image.docker-archive.tar");
        env.podman
            .export_image(env.image_reference(), &archive)
            .await?;
        let reference = format!("docker-archive:{}", archive.display());
        run_image(env, scope, &reference, json!({})).await?;
        Ok(Finding::pass("loaded a docker-archive file and ran it"))
    }
}

fn registry(env: &Env) -> Result<&RegistryTarget, Skip> {
    env.require_image()?;
    env.registry
        .as_ref()
        .ok_or_else(|| Skip("no --registry given".to_string()))
}

/// The test image pushed to the registry under a per-run tag, and not present locally.
async fn pushed_image(
    env: &Env,
    scope: &Scope,
    registry: &RegistryTarget,
) -> Result<String, Failure> {
    let reference = format!(
        "{}/nomad-driver-podman-conformance/busybox:{}",
        registry.host, env.run_id
    );
    scope.track_image(&reference);
    // Pushed straight from the test image: no local tag, so the task must pull it.
    env.podman
        .push_image(env.image_reference(), &reference, registry)
        .await?;
    Ok(reference)
}

fn auth_block(registry: &RegistryTarget, credentials: Option<&(String, String)>) -> Value {
    let (username, password) = credentials.cloned().unwrap_or_default();
    json!({"auth": {"username": username, "password": password, "tls_verify": registry.tls_verify}})
}

pub struct Pull;

#[async_trait]
impl Check for Pull {
    fn name(&self) -> &'static str {
        "image.pull"
    }

    fn tags(&self) -> &'static [Tag] {
        &[Tag::Image, Tag::Registry]
    }

    fn precondition(&self, env: &Env) -> Result<(), Skip> {
        registry(env).map(|_| ())
    }

    async fn run(&self, env: &Env, scope: &Scope) -> Outcome {
        let registry = registry(env).map_err(|skip| Failure(skip.0))?;
        let reference = pushed_image(env, scope, registry).await?;
        let auth = auth_block(registry, registry.credentials.as_ref());
        run_image(env, scope, &reference, auth).await?;
        ensure!(
            env.podman.image_exists(&reference).await?,
            "{reference} is not in local storage after the task ran"
        );
        Ok(Finding::pass(format!(
            "pulled {reference}{}",
            if registry.credentials.is_some() {
                " with credentials"
            } else {
                " anonymously"
            }
        )))
    }
}

pub struct PullDenied;

#[async_trait]
impl Check for PullDenied {
    fn name(&self) -> &'static str {
        "image.pull-auth-required"
    }

    fn tags(&self) -> &'static [Tag] {
        &[Tag::Image, Tag::Registry]
    }

    fn precondition(&self, env: &Env) -> Result<(), Skip> {
        match registry(env)?.credentials {
            Some(_) => Ok(()),
            None => Err(Skip("--registry has no credentials".to_string())),
        }
    }

    async fn run(&self, env: &Env, scope: &Scope) -> Outcome {
        let registry = registry(env).map_err(|skip| Failure(skip.0))?;
        let reference = pushed_image(env, scope, registry).await?;
        let anonymous = auth_block(registry, None);
        let result = env
            .task(scope, "denied")
            .config(json!({"image": reference}))
            .config(anonymous)
            .script("exit 0")
            .start()
            .await;
        let Err(Failure(message)) = result else {
            return Err(Failure(format!(
                "{reference} was pulled without credentials from a registry that requires them"
            )));
        };
        ensure!(
            message.contains(&reference)
                || message.contains("nauthorized")
                || message.contains("authentication"),
            "the error does not say which image or why: {message}"
        );
        Ok(Finding::pass(format!(
            "refused without credentials: {message}"
        )))
    }
}

pub struct Missing;

#[async_trait]
impl Check for Missing {
    fn name(&self) -> &'static str {
        "image.missing"
    }

    fn tags(&self) -> &'static [Tag] {
        &[Tag::Image]
    }

    async fn run(&self, env: &Env, scope: &Scope) -> Outcome {
        // Port 1 on loopback: the pull fails at once instead of waiting on a network.
        let reference = format!(
            "127.0.0.1:1/nomad-driver-podman-conformance/missing:{}",
            env.run_id
        );
        let result = env
            .task(scope, "missing")
            .config(json!({"image": reference, "image_pull_timeout": "30s"}))
            .script("exit 0")
            .start()
            .await;
        let Err(Failure(message)) = result else {
            return Err(Failure(format!("a task from {reference} started")));
        };
        ensure!(
            message.contains("127.0.0.1:1/nomad-driver-podman-conformance/missing"),
            "the error does not name the image: {message}"
        );
        Ok(Finding::pass(format!(
            "start failed, naming the image: {message}"
        )))
    }
}

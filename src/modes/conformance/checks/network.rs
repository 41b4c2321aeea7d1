//! Networking through the driver: the default bridge, published ports (`ports` and the
//! legacy `port_map`), host and none modes, namespace sharing between tasks, and the
//! rootless default.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::driver::task::{LegacyNetwork, LegacyPort, PortSpec};

use super::super::check::{ensure, Check, Failure, Finding, Outcome, Skip, Tag};
use super::super::drift::{self, ids};
use super::super::env::{Env, Started};
use super::super::scope::Scope;

/// busybox httpd serving one page on port 8080.
const WEB_SERVER: &str = "mkdir -p /tmp/www && echo conformance-page > /tmp/www/index.html \
                          && exec httpd -f -p 8080 -h /tmp/www";

fn local_podman(env: &Env) -> Result<(), Skip> {
    env.require_image()?;
    if env.podman_is_local() {
        Ok(())
    } else {
        Err(Skip(
            "podman is remote: its published ports and host network are not this host's"
                .to_string(),
        ))
    }
}

fn rootful(env: &Env) -> Result<(), Skip> {
    env.require_image()?;
    if env.require_api()?.rootless() {
        Err(Skip(
            "rootless podman has no bridge network by default".to_string(),
        ))
    } else {
        Ok(())
    }
}

/// A port nothing listens on right now.
async fn free_port() -> Result<u16, Failure> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    Ok(listener.local_addr()?.port())
}

/// GETs `/` from 127.0.0.1:`port`, retrying while the server starts (at most 20 s).
async fn fetch(port: u16) -> Result<String, Failure> {
    let mut last_error = String::new();
    for _ in 0..100 {
        let attempt = async {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
            stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await?;
            let mut response = Vec::new();
            stream.read_to_end(&mut response).await?;
            Ok::<_, std::io::Error>(String::from_utf8_lossy(&response).to_string())
        };
        match tokio::time::timeout(Duration::from_secs(5), attempt).await {
            Ok(Ok(response)) if response.contains("conformance-page") => return Ok(response),
            Ok(Ok(response)) => last_error = format!("unexpected response {response:?}"),
            Ok(Err(err)) => last_error = err.to_string(),
            Err(_) => last_error = "no response within 5s".to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(Failure(format!("127.0.0.1:{port}: {last_error}")))
}

pub struct Bridge;

#[async_trait]
impl Check for Bridge {
    fn name(&self) -> &'static str {
        "network.bridge"
    }

    fn tags(&self) -> &'static [Tag] {
        &[Tag::Network]
    }

    fn precondition(&self, env: &Env) -> Result<(), Skip> {
        rootful(env)
    }

    async fn run(&self, env: &Env, scope: &Scope) -> Outcome {
        let task = env
            .task(scope, "bridge")
            .script("sleep 300")
            .start()
            .await?;
        let network = task
            .network
            .as_ref()
            .ok_or_else(|| Failure::new("start returned no network"))?;
        ensure!(
            network.ip.parse::<std::net::IpAddr>().is_ok(),
            "start returned IP {:?}",
            network.ip
        );
        let addresses = env.exec_ok(&task.task_id, "ip addr").await?;
        ensure!(
            addresses.contains(&format!("inet {}/", network.ip)),
            "the task has no address {}: {addresses}",
            network.ip
        );
        Ok(Finding::pass(format!(
            "bridge address {} (auto-advertise {})",
            network.ip, network.auto_advertise
        )))
    }
}

pub struct Ports {
    pub name: &'static str,
    /// Legacy `port_map` instead of `ports`.
    pub legacy: bool,
}

#[async_trait]
impl Check for Ports {
    fn name(&self) -> &'static str {
        self.name
    }

    fn tags(&self) -> &'static [Tag] {
        &[Tag::Network]
    }

    fn precondition(&self, env: &Env) -> Result<(), Skip> {
        local_podman(env)
    }

    async fn run(&self, env: &Env, scope: &Scope) -> Outcome {
        let host_port = free_port().await?;
        let builder = env.task(scope, "ports").script(WEB_SERVER);
        let builder = if self.legacy {
            builder
                .config(json!({"port_map": {"http": 8080}}))
                .context(|context| {
                    context.networks = Some(vec![LegacyNetwork {
                        ip: "127.0.0.1".to_string(),
                        reserved_ports: Vec::new(),
                        dynamic_ports: vec![LegacyPort {
                            label: "http".to_string(),
                            value: host_port,
                        }],
                    }])
                })
        } else {
            builder
                .config(json!({"ports": ["http"]}))
                .context(|context| {
                    context.ports = Some(vec![PortSpec {
                        label: "http".to_string(),
                        value: host_port,
                        to: 8080,
                        host_ip: "127.0.0.1".to_string(),
                    }])
                })
        };
        let task = builder.start().await?;
        if self.legacy {
            let mapped = task
                .network
                .as_ref()
                .and_then(|network| network.port_map.get("http").copied());
            ensure!(
                mapped == Some(8080),
                "start returned port map {:?}, expected http -> 8080",
                task.network.as_ref().map(|n| &n.port_map)
            );
        }
        fetch(host_port).await?;
        Ok(Finding::pass(format!(
            "127.0.0.1:{host_port} reaches the task's port 8080{}",
            if self.legacy {
                "; port map returned"
            } else {
                ""
            }
        )))
    }
}

pub struct HostNetwork;

#[async_trait]
impl Check for HostNetwork {
    fn name(&self) -> &'static str {
        "network.host"
    }

    fn tags(&self) -> &'static [Tag] {
        &[Tag::Network]
    }

    fn precondition(&self, env: &Env) -> Result<(), Skip> {
        local_podman(env)
    }

    async fn run(&self, env: &Env, scope: &Scope) -> Outcome {
        // Only a task in the host's network namespace reaches the host's loopback.
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let task = env
            .task(scope, "host")
            .config(json!({"network_mode": "host"}))
            .script(&format!("echo conformance-host | nc 127.0.0.1 {port}"))
            .start()
            .await?;
        let accepted = tokio::time::timeout(Duration::from_secs(30), async {
            let (mut stream, _) = listener.accept().await?;
            let mut received = String::new();
            stream.read_to_string(&mut received).await?;
            Ok::<_, std::io::Error>(received)
        })
        .await
        .map_err(|_| Failure(format!("nothing connected to the host's 127.0.0.1:{port}")))??;
        ensure!(
            accepted.trim() == "conformance-host",
            "received {accepted:?}"
        );
        env.wait_exit(&task.task_id, Duration::from_secs(30))
            .await?;
        Ok(Finding::pass("the task reached the host's loopback"))
    }
}

/// Two tasks, the second joining the first's namespace.
pub struct Sharing {
    pub name: &'static str,
    /// `net` or `ipc`.
    pub namespace: &'static str,
    /// `task:` or `container:`.
    pub join: &'static str,
}

impl Sharing {
    async fn namespace_of(&self, env: &Env, task: &Started) -> Result<String, Failure> {
        env.exec_ok(
            &task.task_id,
            &format!("readlink /proc/self/ns/{}", self.namespace),
        )
        .await
    }
}

#[async_trait]
impl Check for Sharing {
    fn name(&self) -> &'static str {
        self.name
    }

    fn tags(&self) -> &'static [Tag] {
        if self.namespace == "net" {
            &[Tag::Network]
        } else {
            &[Tag::Options]
        }
    }

    async fn run(&self, env: &Env, scope: &Scope) -> Outcome {
        let (key, owner_options) = match self.namespace {
            "net" => ("network_mode", json!({})),
            _ => ("ipc_mode", json!({"ipc_mode": "shareable"})),
        };
        let owner = env
            .task(scope, "owner")
            .script("sleep 300")
            .config(owner_options)
            .start()
            .await?;
        let target = match self.join {
            "task:" => "task:owner".to_string(),
            _ => format!("container:{}", owner.container_name),
        };
        let joiner = env
            .task(scope, "joiner")
            .in_alloc(&owner.state.alloc_id)
            .script("sleep 300")
            .config(json!({ key: Value::String(target.clone()) }))
            .start()
            .await;
        let joiner = match joiner {
            Ok(joiner) => joiner,
            Err(failure)
                if self.namespace == "net"
                    && drift::expected(ids::CONTAINER_NETNS_PODMAN3, env.facts()?) =>
            {
                return Ok(Finding::drift(ids::CONTAINER_NETNS_PODMAN3, failure.0));
            }
            Err(failure) => return Err(failure),
        };
        let (mine, theirs) = (
            self.namespace_of(env, &joiner).await?,
            self.namespace_of(env, &owner).await?,
        );
        ensure!(
            mine == theirs,
            "{key} = {target:?}: the joiner is in {mine}, the owner in {theirs}"
        );
        Ok(Finding::pass(format!("{key} = {target:?} shares {mine}")))
    }
}

pub struct RootlessDefault;

#[async_trait]
impl Check for RootlessDefault {
    fn name(&self) -> &'static str {
        "network.rootless-default"
    }

    fn tags(&self) -> &'static [Tag] {
        &[Tag::Network, Tag::Rootless]
    }

    fn precondition(&self, env: &Env) -> Result<(), Skip> {
        env.require_image()?;
        if env.require_api()?.rootless() {
            Ok(())
        } else {
            Err(Skip(
                "rootful podman: the default network is the bridge".to_string(),
            ))
        }
    }

    async fn run(&self, env: &Env, scope: &Scope) -> Outcome {
        let task = env
            .task(scope, "rootless")
            .script("sleep 300")
            .start()
            .await?;
        let inspect = env.podman.inspect_container(&task.container_name).await?;
        let mode = inspect
            .pointer("/HostConfig/NetworkMode")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let pasta_expected = drift::expected(ids::ROOTLESS_DEFAULT_PASTA, env.facts()?);
        match mode.as_str() {
            "pasta" => Ok(Finding::drift(
                ids::ROOTLESS_DEFAULT_PASTA,
                "default network pasta",
            )),
            "slirp4netns" if !pasta_expected => Ok(Finding::pass("default network slirp4netns")),
            other => Err(Failure(format!(
                "default rootless network is {other:?}, expected {}",
                if pasta_expected {
                    "pasta"
                } else {
                    "slirp4netns"
                }
            ))),
        }
    }
}

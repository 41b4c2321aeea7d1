//! The plugin binary driven as a Nomad agent drives it: launched with the agent's
//! environment, handshake line read from stdout, gRPC over the announced unix socket,
//! configuration sent as cty-msgpack.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use nomad_driver_podman::modes::plugin::proto::{
    base::{
        base_plugin_client::BasePluginClient, NomadConfig, NomadDriverConfig, SetConfigRequest,
    },
    drivers::{driver_client::DriverClient, FingerprintRequest},
    go_plugin::{grpc_controller_client::GrpcControllerClient, Empty},
};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::UnixStream;
use tokio::process::{Child, Command};
use tonic::transport::{Channel, Endpoint, Uri};

use super::BenchResult;

/// The agent's magic cookie (src/modes/plugin/process.rs keeps it crate-private).
const MAGIC_COOKIE: &str = "e4327c2e01eabfd75a8a67adb114fb34a757d57eee7728d857a8cec6e91a7255";
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(30);
const EXIT_DEADLINE: Duration = Duration::from_secs(10);

pub struct Plugin {
    child: Child,
    pid: u32,
    channel: Channel,
    fingerprints: Option<tokio::task::JoinHandle<()>>,
}

/// The plugin binary cargo built for this bench.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nomad-driver-podman"))
}

async fn connect(socket: &Path) -> BenchResult<Channel> {
    let socket = socket.to_path_buf();
    Endpoint::try_from("http://plugin")
        .map_err(|e| e.to_string())?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket).await?)) }
        }))
        .await
        .map_err(|e| format!("connect to the plugin socket: {e}"))
}

impl Plugin {
    /// Launches the plugin with the environment a Nomad agent gives it.
    pub async fn launch(socket_dir: &Path) -> BenchResult<Plugin> {
        std::fs::create_dir_all(socket_dir)
            .map_err(|e| format!("mkdir {}: {e}", socket_dir.display()))?;
        let mut child = Command::new(binary())
            .env("NOMAD_PLUGIN_MAGIC_COOKIE", MAGIC_COOKIE)
            .env("PLUGIN_PROTOCOL_VERSIONS", "2")
            .env("PLUGIN_UNIX_SOCKET_DIR", socket_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("launch the plugin: {e}"))?;
        let pid = child.id().ok_or("the plugin exited at once")?;
        let stdout = child.stdout.take().ok_or("no plugin stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let handshake = tokio::time::timeout(HANDSHAKE_DEADLINE, lines.next_line())
            .await
            .map_err(|_| "no handshake line from the plugin in time".to_string())?
            .map_err(|e| format!("read the plugin's stdout: {e}"))?
            .ok_or("the plugin closed stdout before its handshake")?;
        // The agent keeps draining stdout.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let fields: Vec<&str> = handshake.trim().split('|').collect();
        let socket = match fields.as_slice() {
            ["1", "2", "unix", path, "grpc", ..] => PathBuf::from(path),
            _ => return Err(format!("unexpected handshake {handshake:?}")),
        };
        let channel = connect(&socket).await?;
        Ok(Plugin {
            child,
            pid,
            channel,
            fingerprints: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn driver(&self) -> DriverClient<Channel> {
        DriverClient::new(self.channel.clone())
    }

    /// `SetConfig` with `config` (the plugin block's `config {}`), then the fingerprint
    /// stream the agent keeps open; returns after the first fingerprint.
    pub async fn configure(&mut self, config: &Value) -> BenchResult<()> {
        BasePluginClient::new(self.channel.clone())
            .set_config(SetConfigRequest {
                msgpack_config: cty_msgpack(config),
                nomad_config: Some(NomadConfig {
                    driver: Some(NomadDriverConfig {
                        client_min_port: 20000,
                        client_max_port: 32000,
                        topology: None,
                    }),
                }),
                plugin_api_version: "v0.1.0".to_string(),
            })
            .await
            .map_err(|e| format!("SetConfig: {e}"))?;
        let mut stream = self
            .driver()
            .fingerprint(FingerprintRequest {})
            .await
            .map_err(|e| format!("Fingerprint: {e}"))?
            .into_inner();
        stream
            .message()
            .await
            .map_err(|e| format!("Fingerprint: {e}"))?
            .ok_or("the fingerprint stream ended at once")?;
        self.fingerprints = Some(tokio::spawn(async move {
            while let Ok(Some(_)) = stream.message().await {}
        }));
        Ok(())
    }

    /// SIGKILL, as when the node loses the plugin: no Shutdown, containers keep running.
    pub async fn kill(&mut self) -> BenchResult<()> {
        if let Some(fingerprints) = self.fingerprints.take() {
            fingerprints.abort();
        }
        self.child
            .kill()
            .await
            .map_err(|e| format!("SIGKILL the plugin: {e}"))
    }

    /// `GRPCController.Shutdown`, then waits for the process to exit (kills it after a
    /// deadline).
    pub async fn shutdown(mut self) -> BenchResult<()> {
        if let Some(fingerprints) = self.fingerprints.take() {
            fingerprints.abort();
        }
        let asked = GrpcControllerClient::new(self.channel.clone())
            .shutdown(Empty {})
            .await;
        let exited = tokio::time::timeout(EXIT_DEADLINE, self.child.wait()).await;
        match (asked, exited) {
            (_, Ok(Ok(_))) => Ok(()),
            (asked, _) => {
                let _ = self.child.kill().await;
                Err(format!(
                    "the plugin did not exit after Shutdown ({asked:?})"
                ))
            }
        }
    }
}

/// A JSON value as the agent's cty-msgpack: the smallest encodings, map keys in order
/// (serde_json keeps them sorted).
pub fn cty_msgpack(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_value(value, &mut out);
    out
}

fn write_value(value: &Value, out: &mut Vec<u8>) {
    // Writing into a Vec cannot fail.
    match value {
        Value::Null => {
            let _ = rmp::encode::write_nil(out);
        }
        Value::Bool(b) => {
            let _ = rmp::encode::write_bool(out, *b);
        }
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                let _ = rmp::encode::write_sint(out, i);
            } else if let Some(u) = n.as_u64() {
                let _ = rmp::encode::write_uint(out, u);
            } else {
                let _ = rmp::encode::write_f64(out, n.as_f64().unwrap_or_default());
            }
        }
        Value::String(s) => {
            let _ = rmp::encode::write_str(out, s);
        }
        Value::Array(items) => {
            let _ = rmp::encode::write_array_len(out, items.len() as u32);
            items.iter().for_each(|item| write_value(item, out));
        }
        Value::Object(entries) => {
            let _ = rmp::encode::write_map_len(out, entries.len() as u32);
            for (key, item) in entries {
                let _ = rmp::encode::write_str(out, key);
                write_value(item, out);
            }
        }
    }
}

//! The test client's agent side of the process protocol: launches the built binary with
//! the environment a Nomad agent gives its plugins, reads the handshake line, connects
//! over the unix socket with plain HTTP/2 gRPC, and drains stdout/stderr as go-plugin does.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use nomad_driver_podman::modes::plugin::proto::{
    base::{
        base_plugin_client::BasePluginClient, ClientTopology, ClientTopologyCore, NomadConfig,
        NomadDriverConfig, SetConfigRequest,
    },
    drivers::{driver_client::DriverClient, InitRequest, ShutdownRequest},
    go_plugin::grpc_controller_client::GrpcControllerClient,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::UnixStream;
use tokio::process::{Child, Command};
use tonic::transport::{Channel, Endpoint, Uri};

pub const MAGIC_COOKIE: &str = "e4327c2e01eabfd75a8a67adb114fb34a757d57eee7728d857a8cec6e91a7255";

/// The agent waits this long for the handshake line.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(60);

/// Which Nomad agent the test client plays.
#[derive(Debug, Clone)]
pub enum Agent {
    /// Nomad 1.6: no CPU topology in SetConfig, neither Init nor Shutdown.
    Nomad16,
    /// Nomad 1.7 to 2.0: the client's CPU topology in SetConfig, Init after it, Shutdown
    /// before the agent kills the plugin.
    Current(ClientTopology),
}

impl Agent {
    /// A current agent on a node whose cores the agent says run at `mhz` each (the tests
    /// pick speeds that differ from this host's), with `override_total` (MHz) when set.
    pub fn current(cores: usize, mhz: u64, override_total: u64) -> Agent {
        Agent::Current(ClientTopology {
            cores: (0..cores)
                .map(|core| ClientTopologyCore {
                    core_id: u32::try_from(core).unwrap(),
                    base_speed: mhz,
                    max_speed: mhz + 500,
                    guess_speed: mhz / 2,
                    ..Default::default()
                })
                .collect(),
            override_total_compute: override_total,
            ..Default::default()
        })
    }

    /// What the e2e suites use unless a test says otherwise: a current agent.
    pub fn default_agent() -> Agent {
        Agent::current(2, 3100, 0)
    }
}

/// A running plugin process and a gRPC channel to it.
pub struct Plugin {
    child: Child,
    pub socket: PathBuf,
    pub channel: Channel,
    pub handshake: String,
    pub agent: Agent,
    stderr: Arc<Mutex<Vec<String>>>,
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_nomad-driver-podman")
}

/// The environment a Nomad agent adds for its plugins.
pub fn agent_command(socket_dir: &Path) -> Command {
    let mut command = Command::new(binary());
    command
        .env("NOMAD_PLUGIN_MAGIC_COOKIE", MAGIC_COOKIE)
        .env("PLUGIN_PROTOCOL_VERSIONS", "2")
        .env("PLUGIN_MIN_PORT", "10000")
        .env("PLUGIN_MAX_PORT", "25000")
        .env("PLUGIN_UNIX_SOCKET_DIR", socket_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Connects a gRPC channel over a unix socket; the authority is irrelevant, as for Go.
pub async fn connect(socket: &Path) -> Channel {
    let socket = socket.to_path_buf();
    Endpoint::try_from("http://unused")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket).await?)) }
        }))
        .await
        .expect("connect to the plugin socket")
}

impl Plugin {
    /// Launches the plugin as a current agent does and connects to it.
    pub async fn launch(socket_dir: &Path) -> Plugin {
        Self::launch_as(socket_dir, Agent::default_agent()).await
    }

    /// Launches the plugin as `agent` does and connects to it.
    pub async fn launch_as(socket_dir: &Path, agent: Agent) -> Plugin {
        let mut child = agent_command(socket_dir)
            .spawn()
            .expect("spawn the plugin binary");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let handshake = tokio::time::timeout(HANDSHAKE_DEADLINE, lines.next_line())
            .await
            .expect("handshake within the agent's deadline")
            .expect("read stdout")
            .expect("a handshake line before stdout closed");
        // The agent keeps draining stdout after the handshake.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr.clone();
        let mut err_lines = BufReader::new(child.stderr.take().unwrap()).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = err_lines.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });

        let fields = parse_handshake(&handshake);
        assert_eq!(fields[2], "unix", "network type in {handshake:?}");
        let socket = PathBuf::from(fields[3]);
        let channel = connect(&socket).await;
        Plugin {
            child,
            socket,
            channel,
            handshake,
            agent,
            stderr,
        }
    }

    pub fn base(&self) -> BasePluginClient<Channel> {
        BasePluginClient::new(self.channel.clone())
    }

    pub fn driver(&self) -> DriverClient<Channel> {
        DriverClient::new(self.channel.clone())
    }

    pub fn controller(&self) -> GrpcControllerClient<Channel> {
        GrpcControllerClient::new(self.channel.clone())
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id().expect("plugin still running")).unwrap()
    }

    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// `SetConfig` as the long-lived driver manager instance of this agent sends it, and
    /// `Init` after it where the agent has it.
    pub async fn set_config(&self, msgpack_config: Vec<u8>) -> Result<(), tonic::Status> {
        let topology = match &self.agent {
            Agent::Nomad16 => None,
            Agent::Current(topology) => Some(topology.clone()),
        };
        self.base()
            .set_config(SetConfigRequest {
                msgpack_config,
                nomad_config: Some(NomadConfig {
                    driver: Some(NomadDriverConfig {
                        client_max_port: 14512,
                        client_min_port: 14000,
                        topology,
                    }),
                }),
                plugin_api_version: "v0.1.0".to_string(),
            })
            .await?;
        if let Agent::Current(_) = self.agent {
            self.driver().init(InitRequest {}).await?;
        }
        Ok(())
    }

    /// What the agent does before an agent restart or upgrade: `Shutdown` where it has
    /// it (answered within its 2 s), then the kill.
    pub async fn shut_down(self) {
        if let Agent::Current(_) = self.agent {
            tokio::time::timeout(
                Duration::from_secs(2),
                self.driver().shutdown(ShutdownRequest {}),
            )
            .await
            .expect("Shutdown answers within the agent's 2 s")
            .expect("Shutdown succeeds");
        }
        self.kill().await;
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).unwrap();
    }

    /// SIGKILL, as when the agent gives up on a plugin or the node loses it.
    pub async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }

    /// The exit status, if the process exits within `deadline`.
    pub async fn exit_within(&mut self, deadline: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(deadline, self.child.wait())
            .await
            .ok()
            .map(|s| s.unwrap())
    }
}

/// The handshake fields; panics unless the line is `1|2|unix|<abs path>|grpc`.
pub fn parse_handshake(line: &str) -> Vec<&str> {
    let fields: Vec<&str> = line.trim().split('|').collect();
    assert!(fields.len() >= 5, "handshake {line:?}");
    assert_eq!(fields[0], "1", "core protocol version in {line:?}");
    assert_eq!(fields[1], "2", "app protocol version in {line:?}");
    assert!(
        Path::new(fields[3]).is_absolute(),
        "socket path in {line:?}"
    );
    assert!(!fields[3].contains('|'));
    assert_eq!(fields[4], "grpc", "protocol in {line:?}");
    fields
}

//! Nomad plugin mode: a wire-compatible drop-in for the Go `nomad-driver-podman` plugin.
//!
//! # Public API (what `src/bin` calls)
//!
//! * [`serve`]`(`[`PluginOptions`]`) -> Result<(), `[`PluginError`]`>` runs the plugin until
//!   the agent calls `GRPCController.Shutdown` or sends SIGTERM, then returns `Ok(())`.
//!   Running containers are left alone. It returns
//!   [`PluginError::NotLaunchedByNomad`] when the magic cookie is missing; the binary
//!   then prints [`NOT_A_PLUGIN_MESSAGE`] to stderr and exits 1.
//! * [`is_launched_by_nomad`]`() -> bool`: the agent's magic cookie is in the environment.
//!   The binary runs `serve` for its `plugin` subcommand, and when started with no
//!   subcommand while this is true (that is how the agent starts it).
//! * [`NOT_A_PLUGIN_MESSAGE`]: the text for an operator who ran the binary by hand.
//!
//! After `serve` returns, the binary should exit right away (`std::process::exit`): the
//! agent kills the plugin 2 s after `Shutdown`, and a runtime drop waiting for blocking
//! work must not stand in the way.
//!
//! # Layout
//!
//! `process` owns the go-plugin process protocol (cookie, version negotiation, socket,
//! handshake, signals, exit); `go_plugin` serves the controller/stdio/broker services;
//! `base` and `driver_service` (+ `exec_stream`) serve Nomad's services; `cty`/`msgpack`
//! decode configuration, `hclspec` describes it; `convert`, `driver_state` and `go_state`
//! translate between the wire and the core; `status` maps errors; `logging` writes hclog
//! JSON lines to stderr. `proto` holds the generated stubs (clients too, for tests).

mod base;
mod configured;
mod convert;
pub mod cty;
mod driver_service;
mod driver_state;
mod exec_stream;
mod go_plugin;
mod go_state;
pub mod hclspec;
pub mod logging;
mod memory;
mod msgpack;
mod process;
pub mod proto;
mod status;

use std::path::PathBuf;
use std::sync::Arc;

use tokio_stream::wrappers::UnixListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;

pub use logging::LogLevel;
pub use process::is_launched_by_nomad;

use configured::ConfiguredDriver;
use proto::base::base_plugin_server::BasePluginServer;
use proto::drivers::driver_server::DriverServer;
use proto::go_plugin::{
    grpc_broker_server::GrpcBrokerServer, grpc_controller_server::GrpcControllerServer,
    grpc_stdio_server::GrpcStdioServer,
};

/// What an operator sees when running the binary by hand.
pub const NOT_A_PLUGIN_MESSAGE: &str = "\
This binary is a Nomad task driver plugin (driver \"podman\"). It is not meant to be
executed directly: put it into the Nomad agent's plugin_dir, add a
plugin \"nomad-driver-podman\" {} block to the agent configuration, and the agent
will start it. See `nomad-driver-podman --help` for the other modes.";

/// The agent may send up to 2 GiB in one message.
const MAX_MESSAGE_BYTES: usize = i32::MAX as usize;

/// Options of the plugin process itself (not the agent-side plugin config).
#[derive(Debug, Clone, Default)]
pub struct PluginOptions {
    /// Lowest level written to stderr; the agent filters again by its own level.
    pub log_level: LogLevel,
}

/// Why the plugin could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("{}", NOT_A_PLUGIN_MESSAGE)]
    NotLaunchedByNomad,
    #[error(
        "incompatible plugin protocol: the agent accepts versions {offered:?}, this plugin \
         speaks version {}",
        process::APP_PROTOCOL_VERSION
    )]
    IncompatibleProtocol { offered: String },
    #[error("cannot create the plugin socket directory in {}: {source}", dir.display())]
    SocketDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("plugin socket path {} is longer than a unix socket address allows", path.display())]
    SocketPathTooLong { path: PathBuf },
    #[error("cannot listen on {}: {source}", path.display())]
    Listen {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot hand {} to the socket group: {reason}", path.display())]
    SocketGroup { path: PathBuf, reason: String },
    #[error("cannot write the handshake to stdout: {0}")]
    Handshake(std::io::Error),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("gRPC server failed: {0}")]
    Server(#[from] tonic::transport::Error),
}

/// Runs the plugin until the agent asks it to exit. See the module documentation.
pub async fn serve(options: PluginOptions) -> Result<(), PluginError> {
    if !is_launched_by_nomad() {
        return Err(PluginError::NotLaunchedByNomad);
    }
    logging::init(options.log_level);
    let offered = std::env::var(process::PROTOCOL_VERSIONS_ENV).ok();
    let version = process::negotiate_protocol(offered.as_deref())?;

    memory::limit_arenas();
    let exit = CancellationToken::new();
    process::watch_signals(exit.clone())?;
    memory::spawn_trimmer(exit.clone());
    let (socket, listener) = process::PluginSocket::listen().await?;

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status("plugin", tonic_health::ServingStatus::Serving)
        .await;
    let driver = Arc::new(ConfiguredDriver::default());
    let router = Server::builder()
        // One agent connection carries a WaitTask and a TaskStats stream per task.
        .max_concurrent_streams(u32::MAX)
        .add_service(health_service)
        .add_service(GrpcControllerServer::new(go_plugin::Controller {
            exit: exit.clone(),
        }))
        .add_service(GrpcStdioServer::new(go_plugin::Stdio {
            exit: exit.clone(),
        }))
        .add_service(GrpcBrokerServer::new(go_plugin::Broker {
            exit: exit.clone(),
        }))
        .add_service(
            BasePluginServer::new(base::BaseService {
                driver: driver.clone(),
            })
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            DriverServer::new(driver_service::DriverService {
                driver,
                exit: exit.clone(),
            })
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
        );
    let mut server = tokio::spawn(router.serve_with_incoming_shutdown(
        UnixListenerStream::new(listener),
        exit.clone().cancelled_owned(),
    ));

    process::announce(version, &socket.path())?;
    logging::info(
        "plugin serving",
        &[
            ("socket", &socket.path().display()),
            ("version", &env!("CARGO_PKG_VERSION")),
        ],
    );

    let outcome = tokio::select! {
        finished = &mut server => Some(finished),
        () = exit.cancelled() => None,
    };
    let result = match outcome {
        // The server stopped on its own: that is a failure (exit was not requested).
        Some(Ok(Err(e))) => Err(PluginError::Server(e)),
        Some(_) => Ok(()),
        // Graceful shutdown is under way: in-flight unary calls (the Shutdown reply)
        // finish; long-lived streams that outlast the grace period are cut.
        None => {
            if tokio::time::timeout(process::EXIT_GRACE, &mut server)
                .await
                .is_err()
            {
                server.abort();
            }
            Ok(())
        }
    };
    logging::info("plugin exiting; tasks keep running", &[]);
    drop(socket);
    result
}

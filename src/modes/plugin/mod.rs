//! plugin mode (adapter onto the driver core).

mod convert;
pub mod cty;
mod driver_state;
mod go_plugin;
mod go_state;
pub mod hclspec;
pub mod logging;
mod msgpack;
mod process;
pub mod proto;

pub use process::is_launched_by_nomad;

/// Why the plugin could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("not launched by nomad")]
    NotLaunchedByNomad,
    #[error("incompatible plugin protocol: the agent accepts versions {offered:?}, this plugin speaks version {}", process::APP_PROTOCOL_VERSION)]
    IncompatibleProtocol { offered: String },
    #[error("cannot create the plugin socket directory in {}: {source}", dir.display())]
    SocketDir { dir: std::path::PathBuf, source: std::io::Error },
    #[error("plugin socket path {} is longer than a unix socket address allows", path.display())]
    SocketPathTooLong { path: std::path::PathBuf },
    #[error("cannot listen on {}: {source}", path.display())]
    Listen { path: std::path::PathBuf, source: std::io::Error },
    #[error("cannot hand {} to the socket group: {reason}", path.display())]
    SocketGroup { path: std::path::PathBuf, reason: String },
    #[error("cannot write the handshake to stdout: {0}")]
    Handshake(std::io::Error),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("gRPC server failed: {0}")]
    Server(#[from] tonic::transport::Error),
}

//! e2e: the Nomad plugin mode, driven by a test client that behaves like the Nomad agent
//! (environment, handshake, gRPC over the unix socket, HCL -> hclspec -> cty-msgpack,
//! allocation dirs and log FIFOs) against the private podman service.

pub(crate) mod agent;
pub(crate) mod alloc;
mod attacks;
pub(crate) mod bed;
pub(crate) mod cty_msgpack;
mod decode;
mod dialects;
mod exec;
pub(crate) mod gates;
pub(crate) mod hcldec;
mod lifecycle;
mod process;
pub(crate) mod recovery;

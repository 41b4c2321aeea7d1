//! e2e: the Nomad plugin mode, driven by a test client that behaves like the Nomad agent
//! (environment, handshake, gRPC over the unix socket, HCL -> hclspec -> cty-msgpack,
//! allocation dirs and log FIFOs) against the private podman service.

mod agent;
mod alloc;
mod bed;
mod cty_msgpack;
mod decode;
mod exec;
mod hcldec;
mod lifecycle;
mod process;
mod recovery;

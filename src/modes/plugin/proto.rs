//! Generated gRPC types and stubs (see `build.rs` and `proto/`).
//!
//! The module tree mirrors the protobuf packages, because the generated code refers
//! across packages by relative paths. Clients are generated too: the e2e test client
//! drives the plugin through them.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

include!(concat!(env!("OUT_DIR"), "/plugin_protos.rs"));

pub use hashicorp::nomad::plugins::base::proto as base;
pub use hashicorp::nomad::plugins::drivers::proto as drivers;
pub use hashicorp::nomad::plugins::shared::hclspec;
pub use hashicorp::nomad::plugins::shared::structs;
pub use plugin as go_plugin;

//! The driver core: the one surface every mode calls.

pub mod config;
pub mod decode;
pub mod error;
pub mod handle;
pub mod model;
pub mod podman;
pub mod secopt;
pub mod spec;
pub mod stats;
pub mod task;
pub mod units;

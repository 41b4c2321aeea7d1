//! The driver core: the one surface every mode calls.

pub mod config;
pub mod error;
pub mod podman;
pub mod spec;
pub mod task;

//! nomad-driver-podman: one driver core (`driver`) and three front-ends (`modes`).
//!
//! The core knows nothing of gRPC, HCL job files or terminals; every mode translates
//! its inputs into calls on [`driver::Driver`].

pub mod driver;
pub mod modes;

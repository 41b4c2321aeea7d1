//! conformance mode (adapter onto the driver core).

pub mod cli;
pub mod drift;
pub mod facts;
pub mod matrix;
pub mod report;
pub mod rootfs;
pub mod selection;

//! run mode (adapter onto the driver core).

pub mod env;
pub mod interpolate;
pub mod jobspec;
pub mod model;
pub mod ports;
pub mod template;

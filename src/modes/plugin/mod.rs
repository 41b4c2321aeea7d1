//! plugin mode (adapter onto the driver core).

pub mod proto;

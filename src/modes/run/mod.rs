//! run mode (adapter onto the driver core).

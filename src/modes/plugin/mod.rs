//! plugin mode (adapter onto the driver core).

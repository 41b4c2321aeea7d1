//! conformance mode (adapter onto the driver core).

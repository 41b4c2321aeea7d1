//! Errors of the driver core.

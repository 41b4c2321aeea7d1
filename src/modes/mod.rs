//! Thin front-ends onto the driver core.

pub mod conformance;
pub mod output;
pub mod plugin;
pub mod run;

//! e2e: the standalone runner (`run`, `validate`, `plan`, `ps`, `logs`, `stop`), through
//! the built binary against the test bed's private podman service.

mod broken;
mod commands;
mod examples;
pub(crate) mod harness;

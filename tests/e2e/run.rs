//! e2e: the standalone runner (`run`, `validate`, `plan`, `ps`, `logs`, `stop`), through
//! the built binary against the test bed's private podman service.

mod artifacts;
mod broken;
mod commands;
mod decode;
mod examples;
mod fresh;
pub(crate) mod harness;
mod logs;
mod node;
mod replace;
mod rotation;
mod templates;

//! End-to-end tests against a private podman service (see `support`).

mod support;

mod client;
mod conformance;
mod counting;
mod driver;
mod faults;
mod options;
mod plugin;
mod run;
mod secrets;

//! The bench's counting proxy (benches/harness/proxy.rs), shared with the e2e tests so a
//! test can say how many podman requests the plugin makes without timing anything.

/// What the proxy's functions return (the bench's error type).
pub type BenchResult<T> = Result<T, String>;

#[path = "../../benches/harness/proxy.rs"]
#[allow(dead_code)]
pub mod proxy;

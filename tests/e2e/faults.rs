//! e2e: faults (plugin and podman restarts, runner crash) and a soak of start/stop cycles
//! (issue 7, parts 1 and 2). Each test asserts behaviour and prints its figures.
//!
//! Soak size: `NDP_SOAK_CYCLES` (default 60); the full run is
//! `NDP_SOAK_CYCLES=300 cargo test --test e2e -- faults::soak --nocapture`.

mod fleet;
mod plugin_kill;
mod podman_restart;
mod runner_kill;
mod soak;
mod test_bed;

use crate::support::TestPodman;

/// `(id, started_at, status)` of a container, as podman reports them.
fn identity(podman: &TestPodman, name: &str) -> (String, String, String) {
    let out = podman.cli_ok(&[
        "inspect",
        "--type",
        "container",
        "--format",
        "{{.Id}}|{{.State.StartedAt}}|{{.State.Status}}",
        name,
    ]);
    let mut parts = out.splitn(3, '|').map(str::to_string);
    let mut next = || parts.next().unwrap_or_default();
    (next(), next(), next())
}

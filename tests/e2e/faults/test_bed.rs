//! The test bed's own fault handling: a shared podman service that dies on its own (podman
//! 5's service has crashed under the suite's load) is recorded and started again, so one
//! podman crash costs the tests in flight and not the rest of the lane.

use std::time::{Duration, Instant};

use crate::support;

/// Bound on the wait for the restarted service; a guard against hangs, not a timing check.
const DEADLINE: Duration = Duration::from_secs(90);

#[test]
fn a_supervised_service_that_dies_is_recorded_and_restarted() {
    let crashes = tempfile::tempdir_in("/tmp").expect("crash dir");
    let podman = support::start_supervised_private_podman(crashes.path());
    podman.kill_service();

    let deadline = Instant::now() + DEADLINE;
    let record = loop {
        let found = std::fs::read_dir(crashes.path())
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .next();
        if let (Some(record), true) = (found, podman.answers()) {
            break record;
        }
        assert!(Instant::now() < deadline, "service not restarted");
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(&record).expect("crash record");
    let first = text.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("podman service exited with status 137")
            && first.contains(&podman.socket_url()),
        "{first}"
    );
    // The restarted service holds the same storage: the bed's image is still there.
    podman.cli_ok(&["image", "exists", support::BUSYBOX_IMAGE]);
}

//! The core's races with podman, replayed against the libpod fake: each test scripts the
//! answers podman gave when the race was seen, so it fails without its fix every time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::handle::{LogTarget, TaskState, TASK_STATE_VERSION};
use super::podman::fake::{FakePodman, Reply};
use super::{Driver, DriverConfig};

const CONTAINER: &str = "c0ffee";

fn running_container() -> String {
    serde_json::json!({
        "Id": CONTAINER,
        "Name": "t-alloc",
        "State": {"Status": "running", "Running": true, "Pid": 4242},
    })
    .to_string()
}

fn state() -> TaskState {
    TaskState {
        version: TASK_STATE_VERSION,
        task_id: "alloc/t/1".into(),
        task_name: "t".into(),
        alloc_id: "alloc".into(),
        container_id: CONTAINER.into(),
        container_name: "t-alloc".into(),
        socket: "default".into(),
        started_at: SystemTime::now(),
        log: LogTarget::default(),
        network: None,
        image_id: String::new(),
        kill_signal: None,
    }
}

fn driver_on(fake: &FakePodman) -> Arc<Driver> {
    let config = DriverConfig {
        socket_path: fake.url().to_string(),
        ..DriverConfig::default()
    };
    Driver::new(config).expect("driver")
}

/// Seen in the soak under load: the task's process ended, podman noticed first and refused
/// the kill ("container state improper"), and the inspect that used to decide whether that
/// mattered failed too; StopTask then waited for an exit event and failed. A refused kill
/// of a container that is not running is no error, and needs no inspect.
#[tokio::test]
async fn a_kill_refused_because_the_process_just_ended_is_no_error() {
    let inspects = Arc::new(AtomicUsize::new(0));
    let counted = inspects.clone();
    let fake = FakePodman::start(move |method, target| {
        if target.contains("/events") {
            return Reply::Silent;
        }
        if method == "GET" && target.contains(&format!("/containers/{CONTAINER}/json")) {
            // The first (RecoverTask's) finds it running; later ones fail.
            return if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                Reply::Json(200, running_container())
            } else {
                Reply::error(500, "inspect failed while the container was changing state")
            };
        }
        if target.contains(&format!("/containers/{CONTAINER}/kill")) {
            return Reply::error(
                500,
                &format!("can only kill running containers. {CONTAINER} is in state stopped: container state improper"),
            );
        }
        Reply::error(500, "not scripted")
    });
    let driver = driver_on(&fake);
    driver.recover(state()).await.expect("recover");

    let stopped = tokio::time::timeout(
        Duration::from_secs(30),
        driver.stop("alloc/t/1", Duration::from_secs(1), Some("SIGTERM")),
    )
    .await
    .expect("stop answers (hang guard)");
    stopped.expect("a container podman calls stopped needs no kill");
    assert_eq!(
        fake.requests_to("/kill").len(),
        1,
        "one kill, no SIGKILL after it"
    );
    assert_eq!(
        inspects.load(Ordering::SeqCst),
        1,
        "no inspect needed to decide"
    );
}

/// The other side of the same rule: a kill refused for any other reason while podman
/// still reports the container running is an error that names the task.
#[tokio::test]
async fn a_kill_refused_while_podman_says_running_is_an_error() {
    let fake = FakePodman::start(move |method, target| {
        if target.contains("/events") {
            return Reply::Silent;
        }
        if method == "GET" && target.contains(&format!("/containers/{CONTAINER}/json")) {
            return Reply::Json(200, running_container());
        }
        if target.contains("/kill") {
            return Reply::error(500, "permission denied");
        }
        Reply::error(500, "not scripted")
    });
    let driver = driver_on(&fake);
    driver.recover(state()).await.expect("recover");
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        driver.stop("alloc/t/1", Duration::from_secs(1), Some("SIGTERM")),
    )
    .await
    .expect("stop answers (hang guard)")
    .expect_err("refused kill of a running container");
    let text = err.to_string();
    assert!(
        text.contains("alloc/t/1") && text.contains("permission denied"),
        "{text}"
    );
}

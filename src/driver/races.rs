//! The core's races with podman, replayed against the libpod fake: each test scripts the
//! answers podman gave when the race was seen, so it fails without its fix every time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::handle::{LogTarget, TaskState, TASK_STATE_VERSION};
use super::podman::fake::{FakePodman, Reply};
use super::task::{TaskConfig, TaskContext, TaskSpec};
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

fn spec() -> TaskSpec {
    TaskSpec {
        config: TaskConfig::from_value(&serde_json::json!({"image": "localhost/img:1"}))
            .expect("config"),
        context: TaskContext {
            id: "alloc/t/2".into(),
            name: "t".into(),
            alloc_id: "alloc".into(),
            job_name: "job".into(),
            task_group_name: "g".into(),
            ..TaskContext::default()
        },
    }
}

/// Answers what every start asks (ping, info, events), `Err(())` for the rest.
fn common(target: &str) -> Option<Reply> {
    if target.contains("/_ping") {
        return Some(Reply::Ping("4.3.1"));
    }
    if target.contains("/info") {
        return Some(Reply::Json(
            200,
            serde_json::json!({"host": {"cgroupVersion": "v1", "security": {"rootless": false}}})
                .to_string(),
        ));
    }
    if target.contains("/events") {
        return Some(Reply::Silent);
    }
    None
}

/// The start and the inspect of the container a create made (`new0`).
fn created_container_starts(method: &str, target: &str) -> Option<Reply> {
    if method == "POST" && target.contains("/containers/new0/start") {
        return Some(Reply::Json(204, String::new()));
    }
    if method == "GET" && target.contains("/containers/new0/json") {
        return Some(Reply::Json(
            200,
            serde_json::json!({"Id": "new0", "State": {"Status": "running", "Running": true}})
                .to_string(),
        ));
    }
    None
}

/// A start after a plugin crash finds the name taken by the task's own container, still
/// running: it adopts it instead of failing or starting a second one.
#[tokio::test]
async fn a_start_whose_name_is_taken_by_its_running_container_adopts_it() {
    let fake = FakePodman::start(|method, target| {
        if let Some(reply) = common(target) {
            return reply;
        }
        if method == "POST" && target.contains("/containers/create") {
            return Reply::error(500, "creating container storage: the container name \"t-alloc\" is already in use by \"c0ffee\". You have to remove that container to be able to reuse that name: that name is already in use");
        }
        if method == "GET" && target.contains("/containers/t-alloc/json") {
            return Reply::Json(200, running_container());
        }
        Reply::error(500, "not scripted")
    });
    let driver = driver_on(&fake);
    let started = driver.start(spec()).await.expect("adopted");
    assert_eq!(started.state.container_id, CONTAINER);
    assert_eq!(fake.requests_to("/containers/create").len(), 1);
    assert!(
        fake.requests_to("/start").is_empty(),
        "a running container is not started again"
    );
    assert!(fake.requests_to("DELETE").is_empty(), "nothing removed");
}

/// The same name held by a stopped container of an earlier start: that one is removed and
/// the create is asked once more.
#[tokio::test]
async fn a_start_whose_name_is_taken_by_a_stopped_container_replaces_it() {
    let creates = Arc::new(AtomicUsize::new(0));
    let counted = creates.clone();
    let fake = FakePodman::start(move |method, target| {
        if let Some(reply) = common(target) {
            return reply;
        }
        if method == "POST" && target.contains("/containers/create") {
            return if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                Reply::error(500, "that name is already in use")
            } else {
                Reply::Json(201, r#"{"Id":"new0","Warnings":[]}"#.into())
            };
        }
        if method == "GET" && target.contains("/containers/t-alloc/json") {
            return Reply::Json(
                200,
                serde_json::json!({"Id": "old0", "State": {"Status": "exited", "Running": false}})
                    .to_string(),
            );
        }
        if method == "DELETE" && target.contains("/containers/old0") {
            return Reply::Json(200, "[]".into());
        }
        if let Some(reply) = created_container_starts(method, target) {
            return reply;
        }
        Reply::error(500, "not scripted")
    });
    let driver = driver_on(&fake);
    let started = driver.start(spec()).await.expect("replaced");
    assert_eq!(started.state.container_id, "new0");
    assert_eq!(creates.load(Ordering::SeqCst), 2);
    assert_eq!(
        fake.requests_to("DELETE").len(),
        1,
        "{:?}",
        fake.requests_to("")
    );
}

/// The image went away between the driver's look and podman's create (an image GC, a
/// `podman rmi`): the create's "image not known" makes the driver make the image
/// available (here: found locally again, so nothing is pulled) and ask once more.
#[tokio::test]
async fn a_create_that_finds_no_image_gets_it_and_creates_again() {
    let creates = Arc::new(AtomicUsize::new(0));
    let counted = creates.clone();
    let fake = FakePodman::start(move |method, target| {
        if let Some(reply) = common(target) {
            return reply;
        }
        if method == "POST" && target.contains("/containers/create") {
            return if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                Reply::error(404, "localhost/img:1: image not known")
            } else {
                Reply::Json(201, r#"{"Id":"new0","Warnings":[]}"#.into())
            };
        }
        if method == "GET" && target.contains("/images/") && target.ends_with("/json") {
            return Reply::Json(
                200,
                serde_json::json!({"Id": "sha256:1mage", "Architecture": "amd64", "Os": "linux"})
                    .to_string(),
            );
        }
        if let Some(reply) = created_container_starts(method, target) {
            return reply;
        }
        Reply::error(500, "not scripted")
    });
    let driver = driver_on(&fake);
    let started = driver
        .start(spec())
        .await
        .expect("created on the second ask");
    assert_eq!(started.state.container_id, "new0");
    assert_eq!(creates.load(Ordering::SeqCst), 2);
    assert!(
        fake.requests_to("/images/pull").is_empty(),
        "a local image is not pulled"
    );
}

/// The runner and the conformance harness change configs after decoding them: a change
/// that breaks a cross-option rule is refused at start, naming the option, before podman
/// is asked anything.
#[tokio::test]
async fn a_config_changed_after_decoding_is_checked_before_podman_is_asked() {
    let fake = FakePodman::start(|_, _| Reply::error(500, "not scripted"));
    let driver = driver_on(&fake);
    let mut spec = spec();
    spec.config.shm_size = Some(1 << 20);
    spec.config.ipc_mode = super::task::IpcMode::Host;
    let err = driver.start(spec).await.expect_err("refused");
    assert!(
        err.to_string()
            .contains("config.shm_size: shm_size cannot be used with ipc_mode=\"host\""),
        "{err}"
    );
    assert!(fake.requests_to("/containers").is_empty(), "podman asked");
    assert!(fake.requests_to("/images").is_empty(), "podman asked");
    assert!(fake.requests_to("/info").is_empty(), "podman asked");
}

//! RecoverTask after the plugin died: running tasks, a task that exited while nobody
//! watched, and handles written by the Go plugin.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nomad_driver_podman::modes::plugin::proto::drivers::{
    self, InspectTaskRequest, RecoverTaskRequest, StopTaskRequest, WaitTaskRequest,
};

use super::agent::Plugin;
use super::bed::{self, shell_task, Bed};
use crate::support;

const DEADLINE: Duration = Duration::from_secs(60);

/// The handle as a restarted agent hands it back: `msgpack_driver_config` is not persisted.
pub(crate) fn persisted(mut handle: drivers::TaskHandle) -> drivers::TaskHandle {
    if let Some(config) = handle.config.as_mut() {
        config.msgpack_driver_config.clear();
    }
    handle
}

pub(crate) async fn recover(
    plugin: &Plugin,
    handle: drivers::TaskHandle,
) -> Result<(), tonic::Status> {
    plugin
        .driver()
        .recover_task(RecoverTaskRequest {
            task_id: String::new(),
            handle: Some(handle),
        })
        .await
        .map(|_| ())
}

pub(crate) async fn state_of(plugin: &Plugin, task_id: &str) -> i32 {
    plugin
        .driver()
        .inspect_task(InspectTaskRequest {
            task_id: task_id.to_string(),
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap()
        .state
}

async fn stop_and_wait(plugin: &Plugin, task_id: &str) -> drivers::ExitResult {
    let mut driver = plugin.driver();
    let waiter = {
        let mut driver = plugin.driver();
        let id = task_id.to_string();
        tokio::spawn(async move { driver.wait_task(WaitTaskRequest { task_id: id }).await })
    };
    driver
        .stop_task(StopTaskRequest {
            task_id: task_id.to_string(),
            timeout: Some(prost_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
            signal: "SIGTERM".into(),
        })
        .await
        .unwrap();
    tokio::time::timeout(DEADLINE, waiter)
        .await
        .expect("WaitTask ends after StopTask")
        .unwrap()
        .unwrap()
        .into_inner()
        .result
        .unwrap()
}

#[tokio::test]
async fn sigkilled_plugin_recovers_all_running_tasks_in_a_fresh_process() {
    let bed = Bed::new("recover");
    let first = bed.plugin().await;
    let alloc = bed.alloc();
    let mut tasks = Vec::new();
    for name in ["one", "two", "three"] {
        let script = "i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.2; done";
        tasks.push(bed::start(&first, &alloc, name, &bed.labelled(&shell_task(script))).await);
    }
    for task in &tasks {
        task.files.stdout.wait_for("tick-1").await;
    }
    first.kill().await;

    let second = bed.plugin().await;
    for task in &tasks {
        recover(&second, persisted(task.handle())).await.unwrap();
        // Idempotent: the agent may recover a task the plugin already tracks.
        recover(&second, persisted(task.handle())).await.unwrap();
        assert_eq!(
            state_of(&second, &task.id()).await,
            drivers::TaskState::Running as i32
        );
    }
    // The containers kept running and kept writing into the same FIFOs.
    for task in &tasks {
        let seen = task.files.stdout.text().matches("tick-").count();
        task.files
            .stdout
            .wait_for(&format!("tick-{}", seen + 2))
            .await;
    }
    for task in &tasks {
        let result = stop_and_wait(&second, &task.id()).await;
        assert!(result.exit_code != 0 || result.signal != 0, "{result:?}");
        bed::stop_and_destroy(&second, &task.id()).await;
    }
    second.kill().await;
}

#[tokio::test]
async fn task_that_exits_while_the_plugin_is_down_reports_its_exit_code() {
    let bed = Bed::new("exit-down");
    let first = bed.plugin().await;
    let alloc = bed.alloc();
    let script = "while [ ! -e /alloc/data/go ]; do sleep 0.1; done; exit 5";
    let task = bed::start(&first, &alloc, "batch", &bed.labelled(&shell_task(script))).await;
    first.kill().await;

    std::fs::write(alloc.dir.join("alloc/data/go"), b"").unwrap();
    let name = format!("batch-{}", alloc.id);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while support::podman().cli_ok(&["inspect", "--format", "{{.State.Status}}", &name]) != "exited"
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the task never exited"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let second = bed.plugin().await;
    recover(&second, persisted(task.handle())).await.unwrap();
    let result =
        bed::wait_result(&second, &task.id(), DEADLINE, "a task that already exited").await;
    assert_eq!(result.exit_code, 5);
    bed::stop_and_destroy(&second, &task.id()).await;
    second.kill().await;
}

/// go-msgpack as Nomad's handle writes it: maps keyed by Go field names, raw strings.
mod go_msgpack {
    pub fn raw(bytes: &[u8], out: &mut Vec<u8>) {
        if bytes.len() < 32 {
            out.push(0xa0 + u8::try_from(bytes.len()).unwrap());
        } else {
            out.push(0xda);
            out.extend_from_slice(&u16::try_from(bytes.len()).unwrap().to_be_bytes());
        }
        out.extend_from_slice(bytes);
    }

    pub fn map_header(len: usize, out: &mut Vec<u8>) {
        out.push(0x80 + u8::try_from(len).unwrap());
    }

    /// `time.Time.MarshalBinary` (version 1, UTC).
    pub fn time(unix_seconds: i64, nanos: u32) -> Vec<u8> {
        let mut out = vec![1];
        out.extend_from_slice(&(unix_seconds + 62_135_596_800).to_be_bytes());
        out.extend_from_slice(&nanos.to_be_bytes());
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out
    }
}

/// The Go plugin's `TaskState` for a container.
fn go_driver_state(container_id: &str) -> Vec<u8> {
    use go_msgpack::{map_header, raw, time};
    let started = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let mut out = Vec::new();
    map_header(5, &mut out);
    raw(b"TaskConfig", &mut out);
    map_header(2, &mut out);
    raw(b"image", &mut out);
    raw(support::BUSYBOX_IMAGE.as_bytes(), &mut out);
    raw(b"socket", &mut out);
    raw(b"default", &mut out);
    raw(b"ContainerID", &mut out);
    raw(container_id.as_bytes(), &mut out);
    raw(b"StartedAt", &mut out);
    raw(
        &time(
            i64::try_from(started.as_secs()).unwrap(),
            started.subsec_nanos(),
        ),
        &mut out,
    );
    raw(b"Net", &mut out);
    out.push(0xc0);
    raw(b"LogStreamer", &mut out);
    out.push(0xc2);
    out
}

#[tokio::test]
async fn recovers_tasks_from_go_plugin_driver_state() {
    let bed = Bed::new("go-state");
    let first = bed.plugin().await;
    let alloc = bed.alloc();
    let task = bed::start(
        &first,
        &alloc,
        "legacy",
        &bed.labelled(&shell_task("sleep 600")),
    )
    .await;
    first.kill().await;

    // The same container, as the Go plugin would have recorded it.
    let container_id = support::podman().cli_ok(&[
        "inspect",
        "--format",
        "{{.Id}}",
        &format!("legacy-{}", alloc.id),
    ]);
    let mut handle = persisted(task.handle());
    handle.version = 1;
    handle.driver_state = go_driver_state(&container_id);

    let second = bed.plugin().await;
    recover(&second, handle).await.unwrap();
    assert_eq!(
        state_of(&second, &task.id()).await,
        drivers::TaskState::Running as i32
    );
    let result = stop_and_wait(&second, &task.id()).await;
    assert!(result.exit_code != 0 || result.signal != 0, "{result:?}");
    bed::stop_and_destroy(&second, &task.id()).await;

    // Unreadable state is an error naming the problem, never UNAVAILABLE.
    let mut broken = persisted(task.handle());
    broken.version = 1;
    broken.driver_state = vec![0x81, 0xa1];
    let status = recover(&second, broken).await.unwrap_err();
    assert!(status.message().contains("driver state"), "{status:?}");
    assert_ne!(status.code(), tonic::Code::Unavailable);
    second.kill().await;
}

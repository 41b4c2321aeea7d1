//! e2e: every lifecycle operation of the driver core against the private podman service.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use nomad_driver_podman::driver::{
    Driver, DriverConfig, DriverError, ExecIo, Health, TaskConfig, TaskContext, TaskRunState,
    TaskSpec, TerminalSize,
};

use crate::support::{self, LabelCleanup, BUSYBOX_IMAGE};

fn driver_with(extra: Value) -> Arc<Driver> {
    let mut config = json!({ "socket_path": support::podman().socket_url() });
    if let (Value::Object(base), Value::Object(more)) = (&mut config, extra) {
        base.extend(more);
    }
    Driver::new(DriverConfig::from_value(&config).expect("driver config")).expect("driver")
}

fn driver() -> Arc<Driver> {
    driver_with(json!({}))
}

/// A task running `script` in busybox `sh`, labelled for cleanup.
fn task(label: &LabelCleanup, name: &str, script: &str, extra: Value) -> TaskSpec {
    let mut config = json!({
        "image": BUSYBOX_IMAGE,
        "command": "/bin/sh",
        "args": ["-c", script],
        "labels": { label.key.clone(): label.value.clone() },
    });
    if let (Value::Object(base), Value::Object(more)) = (&mut config, extra) {
        base.extend(more);
    }
    let alloc_id = uuid::Uuid::new_v4().to_string();
    TaskSpec {
        config: TaskConfig::from_value(&config).expect("task config"),
        context: TaskContext {
            id: format!("{alloc_id}/{name}/0"),
            name: name.to_string(),
            alloc_id,
            job_name: "e2e".into(),
            task_group_name: "group".into(),
            kill_timeout: Duration::from_secs(5),
            ..TaskContext::default()
        },
    }
}

fn inspect_container(name: &str) -> Value {
    let out = support::podman().cli_ok(&["inspect", "--type", "container", name]);
    let all: Value = serde_json::from_str(&out).expect("inspect json");
    all[0].clone()
}

fn container_exists(name: &str) -> bool {
    let out = support::podman().cli(&["container", "exists", name]);
    out.status.success()
}

#[tokio::test]
async fn fingerprint_reports_healthy_socket_attributes() {
    let d = driver();
    let fp = d.fingerprint().await;
    assert_eq!(fp.health, Health::Healthy, "{}", fp.description);
    let attr = |k: &str| fp.attributes.get(k).cloned();
    use nomad_driver_podman::driver::Attribute;
    assert_eq!(attr("driver.podman"), Some(Attribute::Bool(true)));
    assert_eq!(
        attr("driver.podman.health"),
        Some(Attribute::String("healthy".into()))
    );
    assert_eq!(
        attr("driver.podman.rootless"),
        Some(Attribute::Bool(support::lane().is_rootless()))
    );
    assert!(
        matches!(attr("driver.podman.version"), Some(Attribute::String(v)) if v.starts_with('4') || v.starts_with('5'))
    );
    assert!(
        matches!(attr("driver.podman.cgroupVersion"), Some(Attribute::String(v)) if v == "v1" || v == "v2")
    );
}

/// Sockets other than the default one report under `driver.podman.<name>.` with the
/// name's non-alphanumerics as `_` (the default keeps `driver.podman.`), as in Go.
#[tokio::test]
async fn fingerprint_names_attributes_of_other_sockets_by_socket_name() {
    use nomad_driver_podman::driver::Attribute;
    let url = support::podman().socket_url();
    let config = json!({ "socket": [
        { "name": "default", "socket_path": url },
        { "name": "fast-disk", "socket_path": url },
    ]});
    let d = Driver::new(DriverConfig::from_value(&config).expect("driver config")).expect("driver");
    let fp = d.fingerprint().await;
    assert_eq!(fp.health, Health::Healthy, "{}", fp.description);
    let attr = |k: &str| fp.attributes.get(k).cloned();
    assert_eq!(
        attr("driver.podman.health"),
        Some(Attribute::String("healthy".into()))
    );
    assert_eq!(
        attr("driver.podman.defaultPodman"),
        Some(Attribute::Bool(true))
    );
    assert_eq!(
        attr("driver.podman.fast_disk.health"),
        Some(Attribute::String("healthy".into()))
    );
    assert_eq!(
        attr("driver.podman.fast_disk.defaultPodman"),
        Some(Attribute::Bool(false))
    );
    assert_eq!(
        attr("driver.podman.fast_disk.socketName"),
        Some(Attribute::String("fast-disk".into()))
    );
    assert_eq!(
        attr("driver.podman.fast_disk.version"),
        attr("driver.podman.version")
    );
    assert!(
        fp.attributes
            .keys()
            .filter(|k| k.starts_with("driver.podman.fast_disk."))
            .count()
            >= 5,
        "{:?}",
        fp.attributes.keys().collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn fingerprint_of_unreachable_socket_is_undetected() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("unix://{}/nothing.sock", dir.path().display());
    let d = Driver::new(DriverConfig::from_value(&json!({ "socket_path": url })).unwrap()).unwrap();
    let fp = d.fingerprint().await;
    assert_eq!(fp.health, Health::Undetected);
    assert!(
        fp.description
            .starts_with("Cannot connect to any Podman socket: default (")
            && fp.description.contains("nothing.sock"),
        "{}",
        fp.description
    );
}

#[tokio::test]
async fn start_wait_reports_exit_code_and_labels_container() {
    let label = LabelCleanup::new("drv-exit");
    let d = driver();
    let spec = task(&label, "exit3", "exit 3", json!({}));
    let name = spec.container_name();
    let id = spec.context.id.clone();
    let started = d.start(spec.clone()).await.expect("start");
    assert_eq!(started.state.container_name, name);
    let result = d.wait(&id).await.expect("wait");
    assert_eq!(result.exit_code, 3);
    assert!(!result.oom_killed);
    let status = d.inspect(&id).await.unwrap();
    assert_eq!(status.state, TaskRunState::Exited);
    assert_eq!(status.exit_result.unwrap().exit_code, 3);
    let labels = &inspect_container(&name)["Config"]["Labels"];
    assert_eq!(
        labels["com.hashicorp.nomad.alloc_id"],
        json!(spec.context.alloc_id)
    );
    assert_eq!(labels["com.hashicorp.nomad.task_name"], json!("exit3"));
    assert_eq!(labels["com.hashicorp.nomad.job_name"], json!("e2e"));
    assert_eq!(
        labels["com.hashicorp.nomad.task_group_name"],
        json!("group")
    );
    assert_eq!(labels["io.nomad-driver-podman.managed"], json!("true"));
    // A second wait answers at once with the same result.
    assert_eq!(d.wait(&id).await.unwrap().exit_code, 3);
    d.destroy(&id, false).await.expect("destroy");
    assert!(
        !container_exists(&name),
        "gc.container removes the container"
    );
    assert!(matches!(
        d.inspect(&id).await,
        Err(DriverError::TaskNotFound(_))
    ));
    assert!(matches!(
        d.wait(&id).await,
        Err(DriverError::TaskNotFound(_))
    ));
}

#[tokio::test]
async fn starting_the_same_task_twice_is_refused() {
    let label = LabelCleanup::new("drv-twice");
    let d = driver();
    let spec = task(&label, "twice", "sleep 30", json!({}));
    d.start(spec.clone()).await.expect("start");
    let err = d.start(spec.clone()).await.unwrap_err();
    assert!(matches!(err, DriverError::AlreadyStarted(_)), "{err}");
    d.destroy(&spec.context.id, true).await.unwrap();
}

#[tokio::test]
async fn stop_sends_the_tasks_kill_signal_then_kills_after_timeout() {
    let label = LabelCleanup::new("drv-stop");
    let d = driver();
    // Exits 42 on SIGUSR1, ignores SIGTERM.
    let mut spec = task(
        &label,
        "usr1",
        "trap 'exit 42' USR1; trap '' TERM; while true; do sleep 0.2; done",
        json!({}),
    );
    spec.context.kill_signal = Some("SIGUSR1".into());
    let id = spec.context.id.clone();
    d.start(spec).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    d.stop(&id, Duration::from_secs(10), None).await.unwrap();
    assert_eq!(
        d.wait(&id).await.unwrap().exit_code,
        42,
        "the task's kill signal was used"
    );
    d.destroy(&id, false).await.unwrap();

    // A process ignoring the signal is killed once the timeout passes.
    let spec = task(
        &label,
        "stubborn",
        "trap '' TERM; while true; do sleep 0.2; done",
        json!({}),
    );
    let id = spec.context.id.clone();
    d.start(spec).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    d.stop(&id, Duration::from_secs(1), Some("SIGTERM"))
        .await
        .unwrap();
    let result = d.wait(&id).await.unwrap();
    assert_eq!(result.exit_code, 137);
    assert_eq!(result.signal, 9);
    // Stopping an exited task is fine.
    d.stop(&id, Duration::from_secs(1), None).await.unwrap();
    d.destroy(&id, false).await.unwrap();
}

#[tokio::test]
async fn destroy_running_task_needs_force() {
    let label = LabelCleanup::new("drv-destroy");
    let d = driver();
    let spec = task(&label, "sleeper", "sleep 300", json!({}));
    let id = spec.context.id.clone();
    let name = spec.container_name();
    d.start(spec).await.unwrap();
    assert!(matches!(
        d.destroy(&id, false).await,
        Err(DriverError::StillRunning { .. })
    ));
    d.destroy(&id, true).await.unwrap();
    assert!(!container_exists(&name));
}

#[tokio::test]
async fn gc_container_false_keeps_the_container() {
    let label = LabelCleanup::new("drv-keep");
    let d = driver_with(json!({ "gc": { "container": false } }));
    let spec = task(&label, "kept", "exit 0", json!({}));
    let id = spec.context.id.clone();
    let name = spec.container_name();
    d.start(spec).await.unwrap();
    d.wait(&id).await.unwrap();
    d.destroy(&id, false).await.unwrap();
    assert!(container_exists(&name));
}

#[tokio::test]
async fn signal_reaches_the_task() {
    let label = LabelCleanup::new("drv-signal");
    let d = driver();
    let spec = task(
        &label,
        "hup",
        "trap 'exit 7' HUP; while true; do sleep 0.2; done",
        json!({}),
    );
    let id = spec.context.id.clone();
    d.start(spec).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    d.signal(&id, "SIGHUP").await.unwrap();
    assert_eq!(d.wait(&id).await.unwrap().exit_code, 7);
    // An unknown signal name is podman's error, carried through.
    let err = d.signal(&id, "SIGNOPE").await.unwrap_err();
    assert!(err.to_string().contains("signal"), "{err}");
    d.destroy(&id, true).await.unwrap();
}

#[tokio::test]
async fn exec_buffered_returns_exit_code_and_separate_streams() {
    let label = LabelCleanup::new("drv-exec");
    let d = driver();
    let spec = task(&label, "exec", "sleep 300", json!({}));
    let id = spec.context.id.clone();
    d.start(spec).await.unwrap();
    let out = d
        .exec(
            &id,
            vec![
                "/bin/sh".into(),
                "-c".into(),
                "echo out; echo err >&2; exit 5".into(),
            ],
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    assert_eq!(out.exit_code, 5);
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
    let err = d
        .exec(
            &id,
            vec!["sleep".into(), "30".into()],
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, DriverError::ExecTimeout { .. }), "{err}");
    d.destroy(&id, true).await.unwrap();
}

async fn collect(mut rx: mpsc::Receiver<Bytes>) -> Vec<u8> {
    let mut all = Vec::new();
    while let Some(chunk) = rx.recv().await {
        all.extend_from_slice(&chunk);
    }
    all
}

#[tokio::test]
async fn exec_streaming_with_stdin_and_with_tty() {
    let label = LabelCleanup::new("drv-execs");
    let d = driver();
    let spec = task(&label, "execs", "sleep 300", json!({}));
    let id = spec.context.id.clone();
    d.start(spec).await.unwrap();

    // stdin reaches the process and its EOF ends it.
    let (in_tx, in_rx) = mpsc::channel(4);
    let (out_tx, out_rx) = mpsc::channel(16);
    let (err_tx, err_rx) = mpsc::channel(16);
    let io = ExecIo {
        stdin: Some(in_rx),
        resize: None,
        stdout: out_tx,
        stderr: err_tx,
    };
    in_tx
        .send(Bytes::from_static(b"hello\nworld\n"))
        .await
        .unwrap();
    drop(in_tx);
    let cmd = vec![
        "/bin/sh".into(),
        "-c".into(),
        "wc -l; echo e >&2; exit 4".into(),
    ];
    let (result, out, err) = tokio::join!(
        d.exec_streaming(&id, cmd, false, io),
        collect(out_rx),
        collect(err_rx)
    );
    assert_eq!(result.unwrap().exit_code, 4);
    assert_eq!(String::from_utf8_lossy(&out).trim(), "2");
    assert_eq!(err, b"e\n");

    // On a tty, the terminal size set by a resize is what the process sees.
    let (in_tx, in_rx) = mpsc::channel(4);
    let (rs_tx, rs_rx) = mpsc::channel(4);
    let (out_tx, out_rx) = mpsc::channel(16);
    let (err_tx, _err_rx) = mpsc::channel(16);
    rs_tx
        .send(TerminalSize {
            height: 33,
            width: 101,
        })
        .await
        .unwrap();
    let io = ExecIo {
        stdin: Some(in_rx),
        resize: Some(rs_rx),
        stdout: out_tx,
        stderr: err_tx,
    };
    let cmd = vec![
        "/bin/sh".into(),
        "-c".into(),
        "sleep 1; stty size; tty; exit 3".into(),
    ];
    let session = d.exec_streaming(&id, cmd, true, io);
    let (result, out) = tokio::join!(session, async {
        let out = collect(out_rx).await;
        drop(in_tx);
        drop(rs_tx);
        out
    });
    assert_eq!(result.unwrap().exit_code, 3);
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("33 101"), "{text:?}");
    assert!(text.contains("/dev/pts/"), "{text:?}");
    d.destroy(&id, true).await.unwrap();
}

#[tokio::test]
async fn stats_stream_reports_memory_and_ends_when_task_exits() {
    if support::skip_without_limits_or_stats("") {
        return;
    }
    let label = LabelCleanup::new("drv-stats");
    let d = driver();
    let spec = task(&label, "stats", "while true; do :; done", json!({}));
    let id = spec.context.id.clone();
    d.start(spec).await.unwrap();
    let mut stats = d.stats(&id, Duration::from_millis(500)).unwrap();
    let mut samples = Vec::new();
    for _ in 0..4 {
        samples.push(
            tokio::time::timeout(Duration::from_secs(20), stats.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert!(samples.iter().all(|s| s.memory.usage > 0));
    assert!(
        samples.iter().skip(1).any(|s| s.cpu.percent > 10.0),
        "a busy loop uses CPU: {samples:?}"
    );
    d.stop(&id, Duration::from_secs(2), Some("SIGKILL"))
        .await
        .unwrap();
    d.wait(&id).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        while stats.recv().await.is_some() {}
    })
    .await;
    assert!(
        ended.is_ok(),
        "the stats stream closes once the task has exited"
    );
    d.destroy(&id, true).await.unwrap();
}

#[tokio::test]
async fn logs_are_forwarded_to_separate_files() {
    let label = LabelCleanup::new("drv-logs");
    let d = driver();
    let dir = tempfile::tempdir().unwrap();
    let mut spec = task(
        &label,
        "logs",
        "echo to-out; echo to-err >&2; sleep 1; echo more-out",
        json!({}),
    );
    spec.context.log_sink = nomad_driver_podman::driver::logs::SinkKind::File;
    spec.context.stdout_path = Some(dir.path().join("stdout"));
    spec.context.stderr_path = Some(dir.path().join("stderr"));
    let id = spec.context.id.clone();
    d.start(spec).await.unwrap();
    assert_eq!(d.wait(&id).await.unwrap().exit_code, 0);
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    for _ in 0..50 {
        if read(&out_path).contains("more-out") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(read(&out_path), "to-out\nmore-out\n");
    assert_eq!(read(&err_path), "to-err\n");
    d.destroy(&id, false).await.unwrap();
}

#[tokio::test]
async fn recover_in_a_fresh_driver_running_and_exited_tasks() {
    let label = LabelCleanup::new("drv-recover");
    let first = driver();
    let running = task(
        &label,
        "running",
        "trap 'exit 9' TERM; while true; do sleep 0.2; done",
        json!({}),
    );
    let exiting = task(&label, "exiting", "sleep 1; exit 11", json!({}));
    let running_state = first.start(running.clone()).await.unwrap().state;
    let exiting_state = first.start(exiting.clone()).await.unwrap().state;
    // The first driver goes away (the plugin process died); containers keep running.
    drop(first);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let second = driver();
    second.recover(running_state.clone()).await.unwrap();
    second.recover(exiting_state.clone()).await.unwrap();
    // Recovering twice is a no-op.
    second.recover(running_state.clone()).await.unwrap();
    let exited = second.wait(&exiting.context.id).await.unwrap();
    assert_eq!(
        exited.exit_code, 11,
        "the real exit code of a task that exited while no driver ran"
    );
    assert_eq!(
        second.inspect(&running.context.id).await.unwrap().state,
        TaskRunState::Running
    );
    second
        .stop(&running.context.id, Duration::from_secs(5), None)
        .await
        .unwrap();
    assert_eq!(second.wait(&running.context.id).await.unwrap().exit_code, 9);
    second.destroy(&running.context.id, false).await.unwrap();
    second.destroy(&exiting.context.id, false).await.unwrap();

    // A container that is gone cannot be recovered.
    let err = second.recover(running_state).await.unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
}

/// `recover_stopped = true`: a task whose container exited while no driver ran is
/// started again by recover and is running afterwards (its container, not a new one).
#[tokio::test]
async fn recover_stopped_restarts_a_task_that_exited_while_no_driver_ran() {
    let label = LabelCleanup::new("drv-recover-stopped");
    let first = driver();
    // Exits the first time; stays up once restarted (the container's files persist).
    let spec = task(
        &label,
        "again",
        "if [ -e /ran-once ]; then exec sleep 300; fi; touch /ran-once; exit 4",
        json!({}),
    );
    let id = spec.context.id.clone();
    let started = first.start(spec.clone()).await.unwrap();
    drop(first);
    let name = spec.container_name();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while inspect_container(&name)["State"]["Status"] != json!("exited") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the task never exited"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let second = driver_with(json!({ "recover_stopped": true }));
    second.recover(started.state.clone()).await.unwrap();
    assert_eq!(
        second.inspect(&id).await.unwrap().state,
        TaskRunState::Running
    );
    let container = inspect_container(&name);
    assert_eq!(container["State"]["Status"], json!("running"));
    assert_eq!(container["Id"], json!(started.state.container_id));
    second.destroy(&id, true).await.unwrap();

    // Without it (the default) the same situation reports the exit.
    let third = driver();
    let spec = task(&label, "once", "exit 4", json!({}));
    let started = third.start(spec.clone()).await.unwrap();
    drop(third);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fourth = driver();
    fourth.recover(started.state).await.unwrap();
    assert_eq!(fourth.wait(&spec.context.id).await.unwrap().exit_code, 4);
    fourth.destroy(&spec.context.id, true).await.unwrap();
}

/// The task's address on its network is what `start` reports for Nomad to advertise
/// (the plugin's StartTask network override): the container's IP on the bridge.
#[tokio::test]
async fn start_reports_the_containers_ip_as_the_task_network() {
    let label = LabelCleanup::new("drv-net");
    let d = driver();
    let on_bridge = if support::lane().is_rootless() {
        // Its default network (slirp4netns) gives the container no address of its own.
        let spec = task(&label, "slirp", "sleep 300", json!({}));
        let started = d.start(spec.clone()).await.unwrap();
        assert_eq!(started.network.map(|n| n.ip).unwrap_or_default(), "");
        d.destroy(&spec.context.id, true).await.unwrap();
        json!({ "network_mode": support::podman().network_name() })
    } else {
        json!({})
    };
    let spec = task(&label, "addr", "sleep 300", on_bridge);
    let started = d.start(spec.clone()).await.unwrap();
    let network = started.network.expect("start reports a network");
    let networks = inspect_container(&spec.container_name())["NetworkSettings"]["Networks"].clone();
    let ips: Vec<String> = networks
        .as_object()
        .expect("the container is on a network")
        .values()
        .filter_map(|n| n["IPAddress"].as_str().map(str::to_string))
        .filter(|ip| !ip.is_empty())
        .collect();
    assert_eq!(ips, vec![network.ip.clone()]);
    assert!(network.ip.parse::<std::net::IpAddr>().is_ok());
    assert!(network.auto_advertise);
    d.destroy(&spec.context.id, true).await.unwrap();

    // With the host's network there is no address of the container's own.
    let spec = task(
        &label,
        "host",
        "sleep 300",
        json!({ "network_mode": "host" }),
    );
    let started = d.start(spec.clone()).await.unwrap();
    assert_eq!(started.network.map(|n| n.ip), Some(String::new()));
    d.destroy(&spec.context.id, true).await.unwrap();
}

#[tokio::test]
async fn start_adopts_a_running_container_and_replaces_a_stopped_one() {
    let label = LabelCleanup::new("drv-adopt");
    let first = driver();
    let spec = task(&label, "adopt", "sleep 300", json!({}));
    let original = first.start(spec.clone()).await.unwrap().state.container_id;
    drop(first);
    let second = driver();
    let adopted = second.start(spec.clone()).await.unwrap().state.container_id;
    assert_eq!(
        adopted, original,
        "a running container of the same name is adopted"
    );
    second.destroy(&spec.context.id, true).await.unwrap();

    let third = driver_with(json!({ "gc": { "container": false } }));
    let spec = task(&label, "stale", "exit 0", json!({}));
    let stale = third.start(spec.clone()).await.unwrap().state.container_id;
    third.wait(&spec.context.id).await.unwrap();
    third.destroy(&spec.context.id, false).await.unwrap();
    let fourth = driver();
    let fresh = fourth.start(spec.clone()).await.unwrap().state.container_id;
    assert_ne!(
        fresh, stale,
        "a stopped container of the same name is replaced"
    );
    fourth.destroy(&spec.context.id, true).await.unwrap();
}

#[tokio::test]
async fn out_of_memory_task_exits_137() {
    if support::skip_without_limits_or_stats("") {
        return;
    }
    let label = LabelCleanup::new("drv-oom");
    let d = driver();
    let mut spec = task(
        &label,
        "oom",
        "x=a; while true; do x=$x$x; done",
        json!({ "memory_swap": "16m" }),
    );
    spec.context.resources.memory_mb = 16;
    let id = spec.context.id.clone();
    d.start(spec).await.unwrap();
    let result = tokio::time::timeout(Duration::from_secs(120), d.wait(&id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(result.exit_code, 137, "{result:?}");
    // podman 4.3.1 on cgroup v1 never sets State.OOMKilled (its conmon writes the `oom`
    // marker into its working directory instead of the exit directory), so oom_killed is
    // only asserted where podman reports it; the conformance harness reports the drift.
    if result.oom_killed {
        assert_eq!(
            result.err.as_deref(),
            Some("Podman container killed by OOM killer")
        );
    }
    d.destroy(&id, true).await.unwrap();
}

#[tokio::test]
async fn bad_input_names_the_option_and_leaves_no_container() {
    let label = LabelCleanup::new("drv-bad");
    let d = driver();
    let mut spec = task(&label, "badsock", "exit 0", json!({}));
    spec.config.socket = "nope".into();
    let err = d.start(spec.clone()).await.unwrap_err();
    assert!(err.to_string().contains("\"nope\""), "{err}");
    assert!(!container_exists(&spec.container_name()));

    let spec = task(
        &label,
        "badnet",
        "exit 0",
        json!({ "network_mode": "no-such-network" }),
    );
    let err = d.start(spec.clone()).await.unwrap_err();
    assert!(err.to_string().contains("no-such-network"), "{err}");
    assert!(!container_exists(&spec.container_name()));

    let spec = task(
        &label,
        "badimage",
        "exit 0",
        json!({ "image": "localhost/no-such-image:1" }),
    );
    let err = d.start(spec.clone()).await.unwrap_err();
    assert!(
        err.to_string().contains("localhost/no-such-image:1"),
        "{err}"
    );
    assert!(!container_exists(&spec.container_name()));

    let denied = driver_with(json!({ "allow_privileged": false }));
    let spec = task(&label, "priv", "exit 0", json!({ "privileged": true }));
    let err = denied.start(spec.clone()).await.unwrap_err();
    assert!(err.to_string().contains("allow_privileged"), "{err}");
    assert!(!container_exists(&spec.container_name()));
}

#[tokio::test]
async fn image_pull_emits_task_event() {
    let label = LabelCleanup::new("drv-pull");
    let d = driver();
    let registry = support::registry();
    let mut events = d.subscribe_events();
    let spec = task(
        &label,
        "pulled",
        "exit 0",
        json!({ "image": registry.busybox(), "force_pull": true, "auth": { "tls_verify": false } }),
    );
    let id = spec.context.id.clone();
    d.start(spec).await.unwrap();
    let mut messages = BTreeMap::new();
    while let Ok(event) = events.try_recv() {
        messages.insert(event.message.clone(), event.task_id.clone());
    }
    assert!(
        messages
            .iter()
            .any(|(m, t)| m.starts_with("Pulling image") && t == &id),
        "{messages:?}"
    );
    d.wait(&id).await.unwrap();
    d.destroy(&id, false).await.unwrap();
}

#[tokio::test]
async fn unused_image_is_removed_after_the_delay_but_not_while_used() {
    let label = LabelCleanup::new("drv-imggc");
    let image = format!("localhost/{}:1", support::unique_name("gcimage"));
    // Its own image id, so removing it cannot disturb other tests.
    support::podman()
        .import_busybox(&image, &[&format!("LABEL=gc={}", label.value)])
        .unwrap();
    let d = driver_with(json!({ "gc": { "image": true, "image_delay": "1s" } }));
    let first = task(&label, "img1", "sleep 300", json!({ "image": image }));
    let second = task(&label, "img2", "sleep 300", json!({ "image": image }));
    d.start(first.clone()).await.unwrap();
    d.start(second.clone()).await.unwrap();
    d.destroy(&first.context.id, true).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let exists = |name: &str| {
        support::podman()
            .cli(&["image", "exists", name])
            .status
            .success()
    };
    assert!(exists(&image), "still used by the second task");
    d.destroy(&second.context.id, true).await.unwrap();
    let mut removed = false;
    for _ in 0..40 {
        if !exists(&image) {
            removed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(removed, "the image is removed once no task uses it");
}

#[tokio::test]
async fn dangling_sweep_selects_only_our_orphans() {
    let label = LabelCleanup::new("drv-dangling");
    let d = driver_with(json!({
        "gc": { "dangling_containers": { "enabled": true, "period": "1h", "creation_grace": "0s", "dry_run": true } }
    }));
    let orphan = support::unique_name("orphan");
    let exited = support::unique_name("exited");
    let foreign = support::unique_name("foreign");
    let p = support::podman();
    let client = support::client();
    let mut orphan_spec = crate::client::spec(&label, &orphan, &["sleep", "300"]);
    orphan_spec["labels"]["io.nomad-driver-podman.managed"] = json!("true");
    crate::client::run_spec(&client, orphan_spec).await;
    // What gc.container = false keeps on purpose: an exited container of ours.
    let mut exited_spec = crate::client::spec(&label, &exited, &["true"]);
    exited_spec["labels"]["io.nomad-driver-podman.managed"] = json!("true");
    let exited_started = crate::client::run_spec(&client, exited_spec).await;
    while client
        .container_inspect(&exited_started)
        .await
        .map(|c| c.state.running)
        .unwrap_or(false)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    p.cli_ok(&[
        "create",
        "--name",
        &foreign,
        "--label",
        &label.pair(),
        BUSYBOX_IMAGE,
        "true",
    ]);
    let owned = task(&label, "owned", "sleep 300", json!({}));
    let owned_id = d.start(owned.clone()).await.unwrap().state.container_id;
    let orphan_id = inspect_container(&orphan)["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let foreign_id = inspect_container(&foreign)["Id"]
        .as_str()
        .unwrap()
        .to_string();

    let exited_id = inspect_container(&exited)["Id"]
        .as_str()
        .unwrap()
        .to_string();

    let swept = d.sweep_dangling_containers().await;
    assert!(
        swept.contains(&orphan_id),
        "ours, running, no task: dangling"
    );
    assert!(
        !swept.contains(&exited_id),
        "an exited container is never swept (gc.container = false keeps it)"
    );
    assert!(
        !swept.contains(&foreign_id),
        "no label of ours: never touched"
    );
    assert!(
        !swept.contains(&owned_id),
        "a known task's container is not dangling"
    );
    assert!(container_exists(&orphan), "dry_run removes nothing");
    d.destroy(&owned.context.id, true).await.unwrap();
}

/// Reads lines numbered `00000001 ...`, `00000002 ...` (a number, a space, any text) from
/// a FIFO until `count` arrived; returns the first line that broke the sequence, if any,
/// and the bytes read. Checks bytes in place, so it reads about as fast as logmon would.
/// A first line `ready` is not counted: on it the reader creates `go`, which the task
/// waits for, so the numbered lines start once forwarding is under way.
/// Lines the task may print ahead of what [`read_numbered_lines`] has received.
const LOG_BLOCK_LINES: u64 = 16_384;

/// Reads `count` numbered lines from the FIFO at `path`, checking each arrives once and in
/// order. Once `ready` arrives it creates `go`; after each [`LOG_BLOCK_LINES`] lines it
/// records how many it has seen in `seen` next to `go`, for a task that paces itself.
fn read_numbered_lines(
    path: std::path::PathBuf,
    count: u64,
    go: std::path::PathBuf,
) -> std::thread::JoinHandle<(Option<String>, u64)> {
    std::thread::spawn(move || {
        use std::io::Read;
        // Read-write: opening never blocks and writers may come and go.
        let mut fifo = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .expect("open the FIFO");
        let mut expected = b"00000001".to_vec();
        let (mut seen, mut bytes) = (0u64, 0u64);
        let mut chunk = vec![0u8; 1 << 20];
        let mut partial: Vec<u8> = Vec::new();
        while seen < count {
            let n = match fifo.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            bytes += n as u64;
            partial.extend_from_slice(&chunk[..n]);
            let mut start = 0;
            while let Some(end) = partial[start..].iter().position(|b| *b == b'\n') {
                let line = &partial[start..start + end];
                if line == b"ready" && seen == 0 {
                    std::fs::write(&go, "").expect("signal the task");
                    bytes -= 6;
                    start += end + 1;
                    continue;
                }
                if !line.starts_with(&expected) || line.get(expected.len()) != Some(&b' ') {
                    return (
                        Some(format!(
                            "expected {}, got {:?}",
                            String::from_utf8_lossy(&expected),
                            String::from_utf8_lossy(&line[..line.len().min(20)])
                        )),
                        bytes,
                    );
                }
                seen += 1;
                increment_ascii(&mut expected);
                start += end + 1;
                if seen % LOG_BLOCK_LINES == 0 {
                    let (tmp, seen_file) =
                        (go.with_file_name("seen.tmp"), go.with_file_name("seen"));
                    std::fs::write(&tmp, seen.to_string())
                        .and_then(|()| std::fs::rename(&tmp, &seen_file))
                        .expect("record progress");
                }
            }
            partial.drain(..start);
        }
        (None, bytes)
    })
}

/// `"00000129"` -> `"00000130"`, in place (fixed width).
fn increment_ascii(digits: &mut [u8]) {
    for d in digits.iter_mut().rev() {
        if *d == b'9' {
            *d = b'0';
        } else {
            *d += 1;
            return;
        }
    }
}

#[tokio::test]
async fn podmans_copy_of_the_output_stays_bounded_and_nothing_is_lost() {
    // 100 MiB of numbered 100-byte lines through the default plugin config, whose
    // logging.max_disk bounds podman's k8s-file at 10 MiB.
    const LINES: u64 = 1_048_576;
    let label = LabelCleanup::new("drv-logbound");
    let d = driver();
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out.fifo"), dir.path().join("err.fifo"));
    for path in [&out, &err] {
        nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    }
    let sync = support::podman().scratch_dir("logbound-sync");
    let reader = read_numbered_lines(out.clone(), LINES, sync.join("go"));
    let _stderr = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&err)
        .unwrap();
    // The burst starts once forwarding is under way (the test saw `ready`): a task that
    // prints more than the bound before the forwarder first opens the log loses its start
    // (a known limit, see docs/plugin.md). It prints in blocks of LOG_BLOCK_LINES (1.6 MiB)
    // and stays at most 3 blocks ahead of what the reader has received: a forwarder that
    // falls behind by more than the bound loses what conmon truncated (docs/plugin.md),
    // and on a loaded machine it can fall that far behind a free-running burst. Paced, the
    // test checks the forwarding and the bound, not the machine's speed.
    let script = format!(
        "echo ready; while [ ! -e /sync/go ]; do sleep 0.05; done; b=0; \
         while [ $b -lt {blocks} ]; do \
           while [ $(( ($(cat /sync/seen 2>/dev/null || echo 0) / {LOG_BLOCK_LINES}) + 3 )) -lt $b ]; do sleep 0.02; done; \
           awk -v s=$((b * {LOG_BLOCK_LINES} + 1)) -v e=$(((b + 1) * {LOG_BLOCK_LINES})) \
             'BEGIN {{ pad = sprintf(\"%90s\", \"x\"); for (i = s; i <= e; i++) printf \"%08d %s\\n\", i, pad }}'; \
           b=$((b + 1)); \
         done",
        blocks = LINES / LOG_BLOCK_LINES
    );
    let mut spec = task(
        &label,
        "chatty",
        &script,
        json!({"volumes": [format!("{}:/sync", sync.display())]}),
    );
    spec.context.stdout_path = Some(out);
    spec.context.stderr_path = Some(err);
    let id = spec.context.id.clone();
    let started = d.start(spec).await.unwrap();
    let log_path = inspect_container(&started.state.container_name)["HostConfig"]["LogConfig"]
        ["Path"]
        .as_str()
        .expect("k8s-file path")
        .to_string();
    // Watch the file's size while the task prints and the plugin forwards.
    let watching = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = {
        let watching = watching.clone();
        std::thread::spawn(move || {
            let mut largest = 0u64;
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(meta) = std::fs::metadata(&log_path) {
                    largest = largest.max(meta.len());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            largest
        })
    };
    assert_eq!(d.wait(&id).await.unwrap().exit_code, 0);
    let (broken, bytes) = tokio::task::spawn_blocking(move || reader.join().unwrap())
        .await
        .unwrap();
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    let largest = watcher.join().unwrap();
    assert_eq!(broken, None, "every line arrives once, in order");
    assert_eq!(bytes, LINES * 100, "all 100 MiB forwarded");
    let bound = nomad_driver_podman::driver::DEFAULT_LOG_MAX_DISK as u64;
    assert!(
        largest <= bound,
        "podman's copy reached {largest} bytes; the bound is {bound}"
    );
    println!("forwarded {bytes} bytes; podman's copy peaked at {largest} bytes");
    d.destroy(&id, true).await.unwrap();
}

#[tokio::test]
async fn an_adopted_go_plugin_container_without_our_labels_is_watched_to_its_exit() {
    use nomad_driver_podman::driver::{LogTarget, TaskState, TASK_STATE_VERSION};
    let label = LabelCleanup::new("drv-adopted");
    let name = support::unique_name("gostarted");
    // As the Go plugin created it: none of this driver's labels. Through the API (on every
    // lane the CLI may not start conmon itself).
    let mut spec = crate::client::spec(
        &label,
        &name,
        &[
            "sh",
            "-c",
            "while [ ! -e /tmp/go ]; do sleep 0.1; done; exit 5",
        ],
    );
    spec["name"] = json!(name);
    let id = crate::client::run_spec(&support::client(), spec).await;
    let d = driver();
    let state = TaskState {
        version: TASK_STATE_VERSION,
        task_id: "alloc-go/web/1".into(),
        task_name: "web".into(),
        alloc_id: "alloc-go".into(),
        container_id: id.clone(),
        container_name: name.clone(),
        socket: "default".into(),
        started_at: std::time::SystemTime::now(),
        log: LogTarget::default(),
        network: None,
        image_id: String::new(),
        kill_signal: None,
    };
    d.recover(state).await.unwrap();
    let touched = d.exec(
        "alloc-go/web/1",
        vec!["touch".into(), "/tmp/go".into()],
        Duration::from_secs(30),
    );
    assert_eq!(touched.await.unwrap().exit_code, 0);
    let exited = tokio::time::timeout(Duration::from_secs(60), d.wait("alloc-go/web/1"))
        .await
        .expect("the exit is seen")
        .unwrap();
    assert_eq!(exited.exit_code, 5, "{exited:?}");
    d.destroy("alloc-go/web/1", true).await.unwrap();
    assert!(!container_exists(&name));
}

/// Rootless podman 4.3 tears down its shared rootless network namespace in one
/// container's cleanup while another container starts on the bridge: that one came up
/// with only `lo` (its address on record, its published ports resetting every
/// connection). Here containers keep leaving the bed's network while the driver starts
/// tasks on it; every started task must have its interface. The race needs a loaded
/// machine: 3 of 40 such starts (by the CLI, a suite and two builds running) came up
/// without their interface, none of 100 on an idle one; `driver::races` replays it on
/// the libpod fake every time.
#[tokio::test]
async fn tasks_started_while_others_leave_the_bridge_have_their_network() {
    if support::skip_on(
        &[support::Lane::Host, support::Lane::Podman5],
        "the shared rootless network namespace (and its teardown race) is rootless podman's",
    ) {
        return;
    }
    let label = LabelCleanup::new("drv-netloss");
    let network = support::podman().network_name().to_string();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let (stop, network, pair) = (stop.clone(), network.clone(), label.pair());
        std::thread::spawn(move || {
            let mut runs = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                support::podman().cli(&[
                    "run",
                    "--rm",
                    "--label",
                    &pair,
                    "--network",
                    &network,
                    BUSYBOX_IMAGE,
                    "true",
                ]);
                runs += 1;
            }
            runs
        })
    };
    let d = driver();
    let mut events = d.subscribe_events();
    let mut missing = Vec::new();
    for i in 0..30 {
        let spec = task(
            &label,
            &format!("net{i}"),
            "sleep 300",
            json!({ "network_mode": network }),
        );
        let id = spec.context.id.clone();
        d.start(spec).await.unwrap();
        if i == 0 {
            // The driver's keeper of the shared namespace runs beside its bridge task.
            let keepers = support::podman().cli_ok(&[
                "ps",
                "--filter",
                &format!("label={}", nomad_driver_podman::driver::NETNS_KEEPER_LABEL),
                "--format",
                "{{.Names}} {{.Networks}}",
            ]);
            assert!(
                keepers.lines().any(|line| line.contains(&format!(
                    "nomad-driver-podman-netns-keeper-{}-",
                    std::process::id()
                ))),
                "no keeper of this process runs: {keepers:?}"
            );
        }
        let out = d
            .exec(
                &id,
                vec!["ls".into(), "/sys/class/net".into()],
                Duration::from_secs(20),
            )
            .await
            .unwrap();
        let interfaces = String::from_utf8_lossy(&out.stdout).into_owned();
        if !interfaces.split_whitespace().any(|name| name != "lo") {
            missing.push(format!("start {i}: {interfaces:?}"));
        }
        d.destroy(&id, true).await.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let churned = churn.join().expect("churn thread");
    let mut restarted = 0;
    while let Ok(event) = events.try_recv() {
        restarted += usize::from(event.message.contains("without its network interface"));
    }
    println!("{churned} containers left the network meanwhile; {restarted} start(s) created again");
    assert!(churned > 0, "nothing left the network meanwhile");
    assert!(
        missing.is_empty(),
        "tasks without their network: {missing:?}"
    );
}

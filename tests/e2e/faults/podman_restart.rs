//! The podman service restarted under a running driver: containers keep running (conmon
//! holds them), the fingerprint is not healthy during the outage and healthy after it,
//! and stats and exit detection resume without anyone reconnecting by hand.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use nomad_driver_podman::driver::{
    Driver, DriverConfig, Health, TaskConfig, TaskContext, TaskSpec,
};

use super::identity;
use crate::support::{self, TestPodman, BUSYBOX_IMAGE};

/// Bound on waits that should end promptly; a guard against hangs, not a timing check.
const DEADLINE: Duration = Duration::from_secs(90);
const STATS_INTERVAL: Duration = Duration::from_millis(250);
/// Exit code of the task told to exit after the restart.
const LATE_EXIT: i32 = 42;
/// Exit code of the task that exits while the service is down.
const OUTAGE_EXIT: i32 = 17;

fn spec(label: &(String, String), name: &str, script: &str) -> TaskSpec {
    let config = json!({
        "image": BUSYBOX_IMAGE,
        "command": "/bin/sh",
        "args": ["-c", script],
        "labels": { label.0.clone(): label.1.clone() },
    });
    let alloc_id = uuid::Uuid::new_v4().to_string();
    TaskSpec {
        config: TaskConfig::from_value(&config).expect("task config"),
        context: TaskContext {
            id: format!("{alloc_id}/{name}/0"),
            name: name.to_string(),
            alloc_id,
            job_name: "faults".into(),
            task_group_name: "group".into(),
            kill_timeout: Duration::from_secs(1),
            ..TaskContext::default()
        },
    }
}

async fn next_sample(
    stats: &mut tokio::sync::mpsc::Receiver<nomad_driver_podman::driver::TaskStats>,
    what: &str,
) -> nomad_driver_podman::driver::TaskStats {
    tokio::time::timeout(DEADLINE, stats.recv())
        .await
        .unwrap_or_else(|_| panic!("no stats sample for {what}"))
        .unwrap_or_else(|| panic!("stats stream of {what} closed"))
}

/// Polls the fingerprint until `wanted(health)`; returns the last one and how long it took.
async fn fingerprint_until(
    driver: &Driver,
    wanted: impl Fn(&Health) -> bool,
) -> (nomad_driver_podman::driver::Fingerprint, Duration) {
    let start = Instant::now();
    loop {
        let fingerprint = driver.fingerprint().await;
        if wanted(&fingerprint.health) {
            return (fingerprint, start.elapsed());
        }
        assert!(
            start.elapsed() < DEADLINE,
            "fingerprint stayed {:?}: {}",
            fingerprint.health,
            fingerprint.description
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_service_restart_keeps_tasks_and_resumes_health_stats_and_exits() {
    if support::skip_without_limits_or_stats("") {
        return;
    }
    // Its own service: restarting the shared one would break every other test.
    let podman: Arc<TestPodman> = Arc::new(support::start_private_podman());
    // No cleanup guard: the containers live on the private service, removed with it.
    let label = support::test_label("fault-podman");
    let config = json!({ "socket_path": podman.socket_url() });
    let driver = Driver::new(DriverConfig::from_value(&config).expect("config")).expect("driver");
    let (fingerprint, _) = fingerprint_until(&driver, |h| *h == Health::Healthy).await;
    assert_eq!(fingerprint.health, Health::Healthy);

    let steady = spec(&label, "steady", "exec sleep 3600");
    let late = spec(
        &label,
        "late",
        &format!("trap 'exit {LATE_EXIT}' USR1; while true; do sleep 0.1; done"),
    );
    let during = spec(
        &label,
        "during",
        &format!("trap 'exit {OUTAGE_EXIT}' USR1; while true; do sleep 0.1; done"),
    );
    let mut names = Vec::new();
    for task in [&steady, &late] {
        names.push(task.container_name());
        driver.start(task.clone()).await.expect("start");
    }
    driver.start(during.clone()).await.expect("start");
    // Its host pid: the exit during the outage is caused without the API.
    let during_pid: i32 = podman
        .cli_ok(&[
            "inspect",
            "--format",
            "{{.State.Pid}}",
            &during.container_name(),
        ])
        .trim()
        .parse()
        .expect("pid");
    let before: Vec<_> = names.iter().map(|n| identity(&podman, n)).collect();
    let mut stats: Vec<_> = [&steady, &late]
        .iter()
        .map(|t| driver.stats(&t.context.id, STATS_INTERVAL).expect("stats"))
        .collect();
    for (stream, name) in stats.iter_mut().zip(&names) {
        next_sample(stream, name).await;
    }

    let outage = Instant::now();
    let bed = podman.clone();
    tokio::task::spawn_blocking(move || bed.kill_service())
        .await
        .unwrap();
    let (down, noticed_after) = fingerprint_until(&driver, |h| *h != Health::Healthy).await;
    let down_health = down.health;
    let down_reason = down.description.clone();
    // Podman was found before: losing it makes the driver unhealthy, with the reason.
    assert_eq!(down_health, Health::Unhealthy, "{down_reason}");
    assert!(
        down_reason.starts_with("Cannot connect to any Podman socket: default ("),
        "{down_reason}"
    );
    assert_eq!(
        down.attributes.get("driver.podman.health"),
        Some(&nomad_driver_podman::driver::Attribute::String(
            "unhealthy".into()
        ))
    );

    // A task exits while nobody can ask podman about it.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(during_pid),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .expect("signal the task's process");
    let gone = Instant::now();
    while std::path::Path::new(&format!("/proc/{during_pid}")).exists() {
        assert!(gone.elapsed() < DEADLINE, "the task's process did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let bed = podman.clone();
    tokio::task::spawn_blocking(move || bed.restart_service())
        .await
        .unwrap();
    let outage_lasted = outage.elapsed();
    let restarted = Instant::now();
    let (up, healthy_after) = fingerprint_until(&driver, |h| *h == Health::Healthy).await;
    assert_eq!(up.health, Health::Healthy, "{}", up.description);

    // The containers never stopped: same ids, same start times, still running.
    for (name, (id, started_at, _)) in names.iter().zip(&before) {
        let (id_now, started_now, status) = identity(&podman, name);
        assert_eq!(&id_now, id, "{name}");
        assert_eq!(&started_now, started_at, "{name} was not restarted");
        assert_eq!(status, "running", "{name}");
    }

    // Stats resume on the streams opened before the outage.
    let mut stats_resumed_after = Duration::ZERO;
    for (stream, name) in stats.iter_mut().zip(&names) {
        while stream.try_recv().is_ok() {}
        let sample = next_sample(stream, name).await;
        assert!(
            sample.memory.rss > 0 || sample.memory.usage > 0,
            "{name}: {sample:?}"
        );
        stats_resumed_after = stats_resumed_after.max(restarted.elapsed());
    }

    // The exit during the outage is found after it, with its real exit code.
    let result = tokio::time::timeout(DEADLINE, driver.wait(&during.context.id))
        .await
        .expect("the exit during the outage is detected")
        .expect("wait");
    let outage_exit_after = restarted.elapsed();
    assert_eq!(result.exit_code, OUTAGE_EXIT, "{result:?}");

    // An exit after the restart is detected by the existing watcher.
    driver
        .signal(&late.context.id, "SIGUSR1")
        .await
        .expect("signal through the restarted service");
    let exit_seen = Instant::now();
    let result = tokio::time::timeout(DEADLINE, driver.wait(&late.context.id))
        .await
        .expect("the exit after the restart is detected")
        .expect("wait");
    let exit_detected_after = exit_seen.elapsed();
    assert_eq!(result.exit_code, LATE_EXIT, "{result:?}");
    assert_eq!(identity(&podman, &names[0]).2, "running");

    println!(
        "faults/podman restart: outage {outage_lasted:?}; fingerprint {down_health:?} \
         ({down_reason:?}) {noticed_after:?} after the kill, Healthy {healthy_after:?} after \
         the restart; 2 tasks kept running (same id, StartedAt); stats resumed \
         {stats_resumed_after:?} after the restart; exit {OUTAGE_EXIT} during the outage \
         reported {outage_exit_after:?} after the restart; exit {LATE_EXIT} detected in \
         {exit_detected_after:?}"
    );

    for task in [&steady, &late, &during] {
        driver
            .destroy(&task.context.id, true)
            .await
            .expect("destroy");
    }
    let pair = format!("{}={}", label.0, label.1);
    assert!(podman.containers_labelled(&pair).is_empty());
}

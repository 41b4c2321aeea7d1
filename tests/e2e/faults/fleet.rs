//! A CI-sized fleet (issue 11, item 7; the 200-task figure is `scripts/bench scale`): 20
//! tasks through the plugin binary behind the bench's counting proxy. Asserts behaviour
//! only, no timings: the podman requests per stats tick do not grow with the number of
//! tasks watched, and after a SIGKILL a fresh plugin recovers every task at once (the
//! agent restores its task runners concurrently) with all of them running afterwards.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use nomad_driver_podman::modes::plugin::proto::drivers;
use serde_json::Value;

use crate::counting::proxy::{CountingProxy, RequestCounts};
use crate::plugin::agent::Plugin;
use crate::plugin::bed::{self, shell_task, Bed, Started};
use crate::plugin::recovery::{persisted, recover, state_of};
use crate::plugin::{cty_msgpack, hcldec};
use crate::support;

const TASKS: usize = 20;
/// Counting window per measurement: 10 stats ticks at 1 s.
const WINDOW: Duration = Duration::from_secs(10);
/// Lets the streams open (first samples, connections) before counting.
const WARMUP: Duration = Duration::from_secs(2);
/// Issue 11's bound on podman requests per stats tick, whatever the task count.
const REQUESTS_PER_TICK: f64 = 2.0;

/// A plugin launched as the agent does, configured with the example agent config but
/// talking to podman through `url`.
async fn plugin_on(bed: &Bed, url: &str) -> Plugin {
    let plugin = Plugin::launch(bed.socket_dir()).await;
    let schema = bed::config_schema(&plugin).await;
    let mut tree = bed::example_config_tree();
    tree.insert("socket_path".into(), Value::String(url.to_string()));
    let config = hcldec::decode(&schema, &tree).unwrap();
    plugin
        .set_config(cty_msgpack::encode(&config))
        .await
        .expect("SetConfig");
    plugin
}

/// Requests per 1 s tick while TaskStats at 1 s streams for each of `tasks`; also checks
/// that every stream delivered samples.
async fn requests_per_tick(plugin: &Plugin, proxy: &CountingProxy, tasks: &[Started]) -> f64 {
    let received: Vec<Arc<AtomicU64>> = tasks.iter().map(|_| Arc::default()).collect();
    let mut streams = Vec::new();
    for (task, samples) in tasks.iter().zip(&received) {
        let mut stream = plugin
            .driver()
            .task_stats(drivers::TaskStatsRequest {
                task_id: task.id(),
                collection_interval: Some(prost_types::Duration {
                    seconds: 1,
                    nanos: 0,
                }),
            })
            .await
            .unwrap_or_else(|e| panic!("TaskStats {}: {e}", task.id()))
            .into_inner();
        let samples = samples.clone();
        streams.push(tokio::spawn(async move {
            while let Ok(Some(_)) = stream.message().await {
                samples.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(WARMUP).await;
    let before: RequestCounts = proxy.counts();
    let began = Instant::now();
    tokio::time::sleep(WINDOW).await;
    let counted = proxy.counts().since(&before);
    let ticks = began.elapsed().as_secs_f64();
    streams.iter().for_each(|s| s.abort());
    for (task, samples) in tasks.iter().zip(&received) {
        assert!(
            samples.load(Ordering::Relaxed) > 0,
            "{}: no stats samples",
            task.id()
        );
    }
    let per_tick = counted.total() as f64 / ticks;
    println!(
        "faults/fleet: {} task(s) watched: {per_tick:.2} requests/tick ({:?})",
        tasks.len(),
        counted.by_route
    );
    per_tick
}

#[tokio::test]
async fn fleet_of_20_costs_flat_requests_per_stats_tick_and_all_recover_after_sigkill() {
    let bed = Bed::new("fleet");
    let podman = support::podman();
    let label = bed.cleanup.pair();
    let proxy_dir = tempfile::Builder::new().prefix("ndp-px").tempdir().unwrap();
    let proxy =
        CountingProxy::start(&proxy_dir.path().join("p.sock"), podman.socket_path()).unwrap();
    let first = plugin_on(&bed, &proxy.url()).await;
    let alloc = bed.alloc();

    let names: Vec<String> = (0..TASKS).map(|i| format!("f{i:02}")).collect();
    let hcl = bed.labelled(&shell_task("exec sleep 3600"));
    let tasks: Vec<Started> = futures::stream::iter(&names)
        .map(|name| bed::start(&first, &alloc, name, &hcl))
        .buffered(4)
        .collect()
        .await;
    for task in &tasks {
        assert_eq!(
            task.handle().state,
            drivers::TaskState::Running as i32,
            "{}: {}",
            task.id(),
            task.response.driver_error_msg
        );
    }
    // The agent keeps a WaitTask open for each task.
    let waits: Vec<_> = tasks
        .iter()
        .map(|task| {
            let mut driver = first.driver();
            let request = drivers::WaitTaskRequest { task_id: task.id() };
            tokio::spawn(async move { driver.wait_task(request).await.map(|_| ()) })
        })
        .collect();

    let with_stats = !support::skip_without_limits_or_stats("requests per stats tick");
    if with_stats {
        let one = requests_per_tick(&first, &proxy, &tasks[..1]).await;
        let all = requests_per_tick(&first, &proxy, &tasks).await;
        assert!(
            one <= REQUESTS_PER_TICK,
            "1 task: {one:.2} requests per tick"
        );
        assert!(
            all <= REQUESTS_PER_TICK,
            "{TASKS} tasks: {all:.2} requests per tick"
        );
        // Flat: twenty times the tasks adds at most one request every other tick (the
        // reconcile list and fingerprint land in either window by chance).
        assert!(
            all <= one + 0.5,
            "requests per tick grow with the tasks: 1 task {one:.2}, {TASKS} tasks {all:.2}"
        );
    }

    // SIGKILL; a fresh plugin recovers all of them at once, as the agent's task runners do.
    waits.iter().for_each(|w| w.abort());
    first.kill().await;
    let second = plugin_on(&bed, &proxy.url()).await;
    let before = proxy.counts();
    let recovered = futures::future::join_all(
        tasks
            .iter()
            .map(|task| recover(&second, persisted(task.handle()))),
    )
    .await;
    let recovery_requests = proxy.counts().since(&before);
    for (task, outcome) in tasks.iter().zip(&recovered) {
        assert!(outcome.is_ok(), "RecoverTask {}: {outcome:?}", task.id());
        assert_eq!(
            state_of(&second, &task.id()).await,
            drivers::TaskState::Running as i32,
            "{} runs after recovery",
            task.id()
        );
    }
    println!(
        "faults/fleet: {TASKS} tasks recovered with {} podman requests ({:?})",
        recovery_requests.total(),
        recovery_requests.by_route
    );
    // Still flat after the recovery: the recovered tasks share one watcher too.
    if with_stats {
        let recovered_all = requests_per_tick(&second, &proxy, &tasks).await;
        assert!(
            recovered_all <= REQUESTS_PER_TICK,
            "after recovery: {recovered_all:.2} requests per tick"
        );
    }

    futures::stream::iter(tasks.iter())
        .for_each_concurrent(4, |task| bed::stop_and_destroy(&second, &task.config.id))
        .await;
    assert!(podman.containers_labelled(&label).is_empty());
    second.kill().await;
}

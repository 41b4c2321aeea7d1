//! Many tasks at once, through the plugin binary as the agent drives it: concurrent
//! StartTask versus concurrent raw create+start, then with all tasks running the cost of
//! watching them (API requests per stats tick, CPU) against the Go driver's design (one
//! stats request per task per second), and the plugin's memory.
//!
//! Order per round: raw burst, plugin burst, so both start from an empty service. In the
//! last round the raw containers stay up for the Go-design window and the plugin's tasks
//! for the plugin's windows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::join_all;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use nomad_driver_podman::modes::plugin::proto::drivers::{
    start_task_response, DestroyTaskRequest, StartTaskRequest, StopTaskRequest, TaskStatsRequest,
    WaitTaskRequest,
};

use crate::harness::fifo::FifoReader;
use crate::harness::plugin::Plugin;
use crate::harness::proxy::RequestCounts;
use crate::harness::report::{median, mib, ratio, secs, Verdict};
use crate::harness::tasks::{self, BenchTask};
use crate::harness::{plugin_config, procfs, Bench, BenchResult};

const CONCURRENCY_GOAL: f64 = 1.1;
const REQUESTS_PER_TICK_GOAL: f64 = 2.0;
const RSS_GOAL: u64 = 15 * 1024 * 1024;
pub(crate) const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// Lets streams deliver their first samples (and connections open) before counting.
const WINDOW_WARMUP: Duration = Duration::from_secs(3);
/// Lets the plugin finish what SetConfig and the first fingerprint started.
const IDLE_SETTLE: Duration = Duration::from_secs(2);

struct Burst {
    took: Duration,
    /// Container ids (raw) or task ids (plugin) that started.
    started: Vec<String>,
    errors: Vec<String>,
}

/// What one counting window saw.
pub(crate) struct Window {
    pub(crate) seconds: f64,
    pub(crate) requests: RequestCounts,
    pub(crate) plugin_cpu: f64,
    pub(crate) podman_cpu: f64,
    pub(crate) samples: u64,
}

impl Window {
    pub(crate) fn per_tick(&self) -> f64 {
        self.requests.total() as f64 / (self.seconds / STATS_INTERVAL.as_secs_f64())
    }

    pub(crate) fn per_minute(cpu: f64, seconds: f64) -> f64 {
        cpu * 60.0 / seconds
    }

    pub(crate) fn routes(&self) -> String {
        let per_tick = self.seconds / STATS_INTERVAL.as_secs_f64();
        self.requests
            .by_route
            .iter()
            .map(|(route, n)| format!("{route}: {:.2}/tick", *n as f64 / per_tick))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub async fn run(bench: &mut Bench) -> BenchResult<()> {
    let n = bench.settings.tasks;
    let rounds = bench.settings.rounds;
    let mut plugin = Plugin::launch(&bench.scratch("plugin")?).await?;
    plugin.configure(&plugin_config(&bench.proxy.url())).await?;
    tokio::time::sleep(IDLE_SETTLE).await;
    let idle = procfs::memory(plugin.pid())?;

    let mut raw_times = Vec::new();
    let mut plugin_times = Vec::new();
    let mut errors = Vec::new();
    let mut windows = None;
    for round in 0..rounds {
        let last = round + 1 == rounds;
        let raw = raw_burst(bench, n).await?;
        raw_times.push(raw.took);
        errors.extend(raw.errors.iter().map(|e| format!("raw: {e}")));
        let go_design = if last {
            Some(go_design_window(bench, &raw.started).await?)
        } else {
            None
        };
        join_all(
            raw.started
                .iter()
                .map(|id| tasks::remove(&bench.client, id)),
        )
        .await;

        let (burst, _logs) = plugin_burst(bench, &plugin, n, round).await?;
        plugin_times.push(burst.took);
        errors.extend(burst.errors.iter().map(|e| format!("plugin: {e}")));
        let waits = wait_all(&plugin, &burst.started);
        if let Some(go_design) = go_design {
            let few = &burst.started[..burst.started.len().min(1)];
            let one = plugin_window(
                bench,
                &plugin,
                few,
                (bench.settings.stats_window / 4).max(Duration::from_secs(10)),
            )
            .await?;
            let all =
                plugin_window(bench, &plugin, &burst.started, bench.settings.stats_window).await?;
            let busy = procfs::memory(plugin.pid())?;
            windows = Some((one, all, go_design, busy, burst.started.len()));
        }
        stop_all(&plugin, &burst.started).await;
        waits.iter().for_each(|w| w.abort());
    }
    plugin.shutdown().await?;

    let (raw, via_plugin) = (median(&raw_times), median(&plugin_times));
    let factor = ratio(via_plugin.as_secs_f64(), raw.as_secs_f64());
    bench.report.add(
        &format!("{n} concurrent starts (median of {rounds})"),
        format!("StartTask {}", secs(via_plugin)),
        format!("raw create+start {} -> {factor:.3}x", secs(raw)),
        "<= 1.1x raw, 0 errors",
        Verdict::of(factor <= CONCURRENCY_GOAL && errors.is_empty()),
    );
    bench.report.add(
        "errors in the concurrent starts",
        format!("{}", errors.len()),
        "-".into(),
        "0",
        Verdict::of(errors.is_empty()),
    );
    for e in errors.iter().take(5) {
        println!("      {e}");
    }
    let Some((one, all, go_design, busy, running)) = windows else {
        return Err("no stats windows were measured".into());
    };
    report_windows(bench, &one, &all, &go_design, running);
    bench.report.add(
        "plugin RSS, idle",
        mib(idle.rss),
        breakdown(&idle),
        "(context)",
        Verdict::Info,
    );
    bench.report.add(
        &format!("plugin RSS, {running} tasks (wait+stats+logs)"),
        mib(busy.rss),
        format!("Go plugin 21 MiB (issue 6); {}", breakdown(&busy)),
        "<= 15 MiB",
        Verdict::of(busy.rss <= RSS_GOAL),
    );
    Ok(())
}

fn breakdown(memory: &procfs::Memory) -> String {
    format!(
        "anon {} + file {}, {} threads",
        mib(memory.anon),
        mib(memory.file),
        memory.threads
    )
}

/// WaitTask for every task, as the agent keeps one open per task.
pub(crate) fn wait_all(plugin: &Plugin, task_ids: &[String]) -> Vec<tokio::task::JoinHandle<()>> {
    task_ids
        .iter()
        .map(|id| {
            let mut driver = plugin.driver();
            let request = WaitTaskRequest {
                task_id: id.clone(),
            };
            tokio::spawn(async move {
                let _ = driver.wait_task(request).await;
            })
        })
        .collect()
}

fn report_windows(
    bench: &mut Bench,
    one: &Window,
    all: &Window,
    go_design: &Window,
    running: usize,
) {
    let per_task = all.samples as f64 / running.max(1) as f64 / all.seconds;
    bench.report.add(
        &format!("stats: API requests/tick, {running} tasks"),
        format!("{:.2}", all.per_tick()),
        format!(
            "Go design {:.2}; 1 task {:.2}",
            go_design.per_tick(),
            one.per_tick()
        ),
        "<= 2, flat in tasks",
        Verdict::of(
            all.per_tick() <= REQUESTS_PER_TICK_GOAL && one.per_tick() <= REQUESTS_PER_TICK_GOAL,
        ),
    );
    println!("      plugin, {running} tasks: {}", all.routes());
    println!("      Go design: {}", go_design.routes());
    if all.requests.opaque_connections > 0 {
        println!(
            "      ({} connections were not countable: chunked or upgraded)",
            all.requests.opaque_connections
        );
    }
    bench.report.add(
        &format!("stats: samples per task per second, {running} tasks"),
        format!("{per_task:.2}"),
        format!("asked: {:.2}", 1.0 / STATS_INTERVAL.as_secs_f64()),
        "(correctness)",
        Verdict::Info,
    );
    bench.report.add(
        &format!("stats: plugin CPU, {running} tasks"),
        format!(
            "{:.2} s/min",
            Window::per_minute(all.plugin_cpu, all.seconds)
        ),
        format!(
            "1 task: {:.2} s/min",
            Window::per_minute(one.plugin_cpu, one.seconds)
        ),
        "flat in tasks",
        Verdict::Info,
    );
    bench.report.add(
        &format!("stats: podman CPU, {running} tasks"),
        format!(
            "{:.2} s/min",
            Window::per_minute(all.podman_cpu, all.seconds)
        ),
        format!(
            "Go design {:.2} s/min",
            Window::per_minute(go_design.podman_cpu, go_design.seconds)
        ),
        "(context)",
        Verdict::Info,
    );
}

async fn raw_burst(bench: &Bench, n: usize) -> BenchResult<Burst> {
    let mut bodies = Vec::new();
    for i in 0..n {
        bodies.push(
            bench
                .raw
                .body(&BenchTask::sleeper(&bench.run, &format!("raw{i}"))?)?,
        );
    }
    let begin = Instant::now();
    let outcomes = join_all(bodies.iter().map(|body| bench.raw.create_and_start(body))).await;
    let took = begin.elapsed();
    let (started, errors) = split(outcomes);
    Ok(Burst {
        took,
        started,
        errors,
    })
}

/// `n` concurrent StartTask calls over the agent's one connection. Returns the FIFO
/// readers too: the tasks' output has somewhere to go until they are destroyed.
async fn plugin_burst(
    bench: &Bench,
    plugin: &Plugin,
    n: usize,
    round: usize,
) -> BenchResult<(Burst, Vec<FifoReader>)> {
    let logs = bench.scratch(&format!("logs-{round}"))?;
    let mut requests = Vec::new();
    let mut readers = Vec::new();
    for i in 0..n {
        let task = BenchTask::sleeper(&bench.run, &format!("task{i}"))?;
        let stdout = FifoReader::create(&logs.join(format!("{i}.stdout")))?;
        let stderr = FifoReader::create(&logs.join(format!("{i}.stderr")))?;
        requests.push(task.proto(stdout.path(), stderr.path()));
        readers.extend([stdout, stderr]);
    }
    let begin = Instant::now();
    let outcomes = join_all(requests.into_iter().map(|config| {
        let mut driver = plugin.driver();
        async move {
            let id = config.id.clone();
            let response = driver
                .start_task(StartTaskRequest { task: Some(config) })
                .await
                .map_err(|e| format!("{id}: {e}"))?
                .into_inner();
            if response.result == start_task_response::Result::Success as i32 {
                Ok(id)
            } else {
                Err(format!("{id}: {}", response.driver_error_msg))
            }
        }
    }))
    .await;
    let took = begin.elapsed();
    let (started, errors) = split(outcomes);
    Ok((
        Burst {
            took,
            started,
            errors,
        },
        readers,
    ))
}

fn split(outcomes: Vec<BenchResult<String>>) -> (Vec<String>, Vec<String>) {
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for outcome in outcomes {
        match outcome {
            Ok(id) => ok.push(id),
            Err(e) => failed.push(e),
        }
    }
    (ok, failed)
}

pub(crate) async fn stop_all(plugin: &Plugin, task_ids: &[String]) {
    join_all(task_ids.iter().map(|id| {
        let mut driver = plugin.driver();
        async move {
            let _ = driver
                .stop_task(StopTaskRequest {
                    task_id: id.clone(),
                    timeout: Some(prost_types::Duration {
                        seconds: 0,
                        nanos: 0,
                    }),
                    signal: "SIGKILL".into(),
                })
                .await;
            let _ = driver
                .destroy_task(DestroyTaskRequest {
                    task_id: id.clone(),
                    force: true,
                })
                .await;
        }
    }))
    .await;
}

/// Counts requests and CPU over `length` while `sampling` runs; `samples` counts what the
/// samplers received.
async fn count_window(
    bench: &Bench,
    plugin_pid: Option<u32>,
    samples: &AtomicU64,
    length: Duration,
) -> BenchResult<Window> {
    let podman_pid = bench.service.pid()?;
    let cpu = |pid: Option<u32>| pid.map_or(Ok(0.0), procfs::cpu_seconds);
    tokio::time::sleep(WINDOW_WARMUP).await;
    let (requests, plugin_cpu, podman_cpu, received) = (
        bench.proxy.counts(),
        cpu(plugin_pid)?,
        procfs::cpu_seconds(podman_pid)?,
        samples.load(Ordering::Relaxed),
    );
    let begin = Instant::now();
    tokio::time::sleep(length).await;
    let seconds = begin.elapsed().as_secs_f64();
    Ok(Window {
        seconds,
        requests: bench.proxy.counts().since(&requests),
        plugin_cpu: cpu(plugin_pid)? - plugin_cpu,
        podman_cpu: procfs::cpu_seconds(podman_pid)? - podman_cpu,
        samples: samples.load(Ordering::Relaxed) - received,
    })
}

/// TaskStats at 1 s for every task in `task_ids`, counted for `length`.
pub(crate) async fn plugin_window(
    bench: &Bench,
    plugin: &Plugin,
    task_ids: &[String],
    length: Duration,
) -> BenchResult<Window> {
    let samples = Arc::new(AtomicU64::new(0));
    let mut streams = Vec::new();
    for id in task_ids {
        let mut stream = plugin
            .driver()
            .task_stats(TaskStatsRequest {
                task_id: id.clone(),
                collection_interval: Some(prost_types::Duration {
                    seconds: STATS_INTERVAL.as_secs() as i64,
                    nanos: 0,
                }),
            })
            .await
            .map_err(|e| format!("TaskStats {id}: {e}"))?
            .into_inner();
        let samples = samples.clone();
        streams.push(tokio::spawn(async move {
            while let Ok(Some(_)) = stream.message().await {
                samples.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let window = count_window(bench, Some(plugin.pid()), &samples, length).await;
    streams.iter().for_each(|s| s.abort());
    window
}

/// The Go driver's design, simulated: every task polls
/// `GET /v1.0.0/libpod/containers/{id}/stats?stream=false` once a second, over one shared
/// keep-alive client (as the Go plugin's single http.Client).
async fn go_design_window(bench: &Bench, container_ids: &[String]) -> BenchResult<Window> {
    let client: Client<hyperlocal::UnixConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(hyperlocal::UnixConnector);
    let socket = bench.service.dir().join("proxy.sock");
    let samples = Arc::new(AtomicU64::new(0));
    let pollers: Vec<_> = container_ids
        .iter()
        .map(|id| {
            let uri: hyper::Uri = hyperlocal::Uri::new(
                &socket,
                &format!("/v1.0.0/libpod/containers/{id}/stats?stream=false"),
            )
            .into();
            let client = client.clone();
            let samples = samples.clone();
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(STATS_INTERVAL);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    if let Ok(response) = client.get(uri.clone()).await {
                        let ok = response.status().is_success();
                        if response.into_body().collect().await.is_ok() && ok {
                            samples.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    let window = count_window(bench, None, &samples, bench.settings.stats_window).await;
    pollers.iter().for_each(|p| p.abort());
    window
}

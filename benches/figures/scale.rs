//! Issue 11's scale figure: what a busy client costs. The fleet grows through the plugin
//! binary, driven as the agent drives it, to each size of `BENCH_SCALE` (1, 50 and 200 by
//! default; `BENCH_SCALE=1,50,200,500` adds 500), and at each size the bench measures:
//!
//! * podman requests per stats tick and plugin CPU, with WaitTask and TaskStats (1 s) open
//!   for every task, counted at the proxy for `BENCH_SCALE_SECS`;
//! * plugin RSS right after that window;
//! * the start latency of one more task (StartTask, median of `BENCH_SCALE_STARTS`) next
//!   to the same with no task running, measured first in the same run; raw create+start
//!   at both points says how much of any growth is podman's;
//! * RecoverTask of every task by a fresh plugin after a SIGKILL, all calls at once as the
//!   agent's task runners make them: time until every one answered, and its requests;
//! * the dangling-container sweep: one sweep of a driver core on the same proxy (time and
//!   requests; it runs every `gc.dangling_containers.period`, 5 min by default).
//!
//! The fleet is kept between sizes (the recovered plugin grows it further), so each size
//! costs only its new tasks.

use std::time::{Duration, Instant};

use futures::future::join_all;
use futures::StreamExt;
use nomad_driver_podman::driver::{Driver, DriverConfig};
use nomad_driver_podman::modes::plugin::proto::drivers::{
    start_task_response, RecoverTaskRequest, StartTaskRequest, TaskHandle,
};
use serde_json::json;

use super::fleet::{plugin_window, stop_all, wait_all, Window};
use crate::harness::fifo::FifoReader;
use crate::harness::plugin::Plugin;
use crate::harness::report::{median, mib, ms, ratio, secs, Verdict};
use crate::harness::tasks::{self, BenchTask};
use crate::harness::{plugin_config, procfs, Bench, BenchResult};

const REQUESTS_PER_TICK_GOAL: f64 = 2.0;
const RSS_GOAL: u64 = 16 * 1024 * 1024;
const START_GOAL: f64 = 1.1;
const RECOVERY_GOAL: Duration = Duration::from_secs(10);
/// The goals are set for fleets up to this size; larger ones are reported as context.
const GOAL_SIZE: usize = 200;
/// Concurrent StartTask calls while the fleet grows.
const GROW_CONCURRENCY: usize = 8;
const SWEEPS: usize = 5;
/// Lets the plugin finish what SetConfig and the first fingerprint started.
const SETTLE: Duration = Duration::from_secs(2);

struct Running {
    id: String,
    handle: TaskHandle,
    _logs: [FifoReader; 2],
}

/// Everything measured at one fleet size.
struct Point {
    size: usize,
    window: Window,
    rss: procfs::Memory,
    start: Duration,
    raw_start: Duration,
    relaunch: Duration,
    recovery: Duration,
    recovery_errors: Vec<String>,
    recovery_requests: u64,
    sweep: Duration,
    sweep_requests: f64,
}

pub async fn run(bench: &mut Bench) -> BenchResult<()> {
    let sizes = bench.settings.scale.clone();
    let logs = bench.scratch("scale-logs")?;
    let mut plugin = launch(bench).await?;
    tokio::time::sleep(SETTLE).await;
    let (start_at_0, raw_at_0) = one_more(bench, &plugin, &logs, 0).await?;
    println!(
        "      with none running: StartTask {}, raw create+start {}",
        ms(start_at_0),
        ms(raw_at_0)
    );
    let mut running: Vec<Running> = Vec::new();
    let mut points = Vec::new();
    let mut outcome = Ok(());
    for size in sizes {
        match measure(bench, &mut plugin, &logs, &mut running, size).await {
            Ok(point) => {
                print_point(&point, start_at_0, raw_at_0);
                points.push(point);
            }
            Err(e) => {
                outcome = Err(format!("at {size} tasks: {e}"));
                break;
            }
        }
    }
    let ids: Vec<String> = running.iter().map(|r| r.id.clone()).collect();
    stop_all(&plugin, &ids).await;
    plugin.shutdown().await?;
    report(bench, &points, start_at_0, raw_at_0);
    outcome
}

async fn launch(bench: &Bench) -> BenchResult<Plugin> {
    let mut plugin = Plugin::launch(&bench.scratch("scale-plugin")?).await?;
    plugin.configure(&plugin_config(&bench.proxy.url())).await?;
    Ok(plugin)
}

async fn measure(
    bench: &Bench,
    plugin: &mut Plugin,
    logs: &std::path::Path,
    running: &mut Vec<Running>,
    size: usize,
) -> BenchResult<Point> {
    grow(bench, plugin, logs, running, size).await?;
    let ids: Vec<String> = running.iter().map(|r| r.id.clone()).collect();
    let waits = wait_all(plugin, &ids);
    let window = plugin_window(bench, plugin, &ids, bench.settings.scale_window).await?;
    let rss = procfs::memory(plugin.pid())?;
    let (start, raw_start) = one_more(bench, plugin, logs, size).await?;
    let (sweep, sweep_requests) = sweep_cost(bench).await?;
    waits.iter().for_each(|w| w.abort());

    // The node loses the plugin; the agent launches a new one and recovers every task.
    plugin.kill().await?;
    let relaunched = Instant::now();
    *plugin = launch(bench).await?;
    let relaunch = relaunched.elapsed();
    let before = bench.proxy.counts();
    let began = Instant::now();
    let answers = join_all(running.iter().map(|task| {
        let mut driver = plugin.driver();
        let request = RecoverTaskRequest {
            task_id: task.id.clone(),
            handle: Some(task.handle.clone()),
        };
        async move { driver.recover_task(request).await }
    }))
    .await;
    let recovery = began.elapsed();
    let recovery_requests = bench.proxy.counts().since(&before).total();
    let recovery_errors = running
        .iter()
        .zip(answers)
        .filter_map(|(task, answer)| answer.err().map(|e| format!("{}: {e}", task.id)))
        .collect();
    Ok(Point {
        size,
        window,
        rss,
        start,
        raw_start,
        relaunch,
        recovery,
        recovery_errors,
        recovery_requests,
        sweep,
        sweep_requests,
    })
}

/// Starts tasks until `running` holds `size`, `GROW_CONCURRENCY` at a time.
async fn grow(
    bench: &Bench,
    plugin: &Plugin,
    logs: &std::path::Path,
    running: &mut Vec<Running>,
    size: usize,
) -> BenchResult<()> {
    let mut prepared = Vec::new();
    for i in running.len()..size {
        let task = BenchTask::sleeper(&bench.run, &format!("fleet{i}"))?;
        let stdout = FifoReader::create(&logs.join(format!("fleet{i}.stdout")))?;
        let stderr = FifoReader::create(&logs.join(format!("fleet{i}.stderr")))?;
        prepared.push((task.proto(stdout.path(), stderr.path()), [stdout, stderr]));
    }
    let began = Instant::now();
    let count = prepared.len();
    let started: Vec<BenchResult<Running>> = futures::stream::iter(prepared)
        .map(|(config, readers)| {
            let mut driver = plugin.driver();
            async move {
                let id = config.id.clone();
                let response = driver
                    .start_task(StartTaskRequest { task: Some(config) })
                    .await
                    .map_err(|e| format!("StartTask {id}: {e}"))?
                    .into_inner();
                if response.result != start_task_response::Result::Success as i32 {
                    return Err(format!("StartTask {id}: {}", response.driver_error_msg));
                }
                let handle = response
                    .handle
                    .ok_or(format!("StartTask {id}: no handle"))?;
                Ok(Running {
                    id,
                    handle,
                    _logs: readers,
                })
            }
        })
        .buffer_unordered(GROW_CONCURRENCY)
        .collect()
        .await;
    let mut first_error = None;
    for outcome in started {
        match outcome {
            Ok(task) => running.push(task),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    println!(
        "      grew the fleet by {count} to {} in {}",
        running.len(),
        secs(began.elapsed())
    );
    first_error.map_or(Ok(()), Err)
}

/// Median start latency of one more task, through the plugin and raw, each started and
/// removed in turn (one warm-up round dropped).
async fn one_more(
    bench: &Bench,
    plugin: &Plugin,
    logs: &std::path::Path,
    size: usize,
) -> BenchResult<(Duration, Duration)> {
    let mut through_plugin = Vec::new();
    let mut raw = Vec::new();
    for i in 0..=bench.settings.scale_starts {
        let body = bench.raw.body(&BenchTask::sleeper(
            &bench.run,
            &format!("raw-more{size}-{i}"),
        )?)?;
        let began = Instant::now();
        let id = bench.raw.create_and_start(&body).await?;
        let raw_took = began.elapsed();
        tasks::remove(&bench.client, &id).await;

        let task = BenchTask::sleeper(&bench.run, &format!("more{size}-{i}"))?;
        let stdout = FifoReader::create(&logs.join(format!("more{size}-{i}.stdout")))?;
        let stderr = FifoReader::create(&logs.join(format!("more{size}-{i}.stderr")))?;
        let config = task.proto(stdout.path(), stderr.path());
        let began = Instant::now();
        let response = plugin
            .driver()
            .start_task(StartTaskRequest { task: Some(config) })
            .await
            .map_err(|e| format!("StartTask {}: {e}", task.id()))?
            .into_inner();
        let took = began.elapsed();
        if response.result != start_task_response::Result::Success as i32 {
            return Err(format!(
                "StartTask {}: {}",
                task.id(),
                response.driver_error_msg
            ));
        }
        stop_all(plugin, &[task.id().to_string()]).await;
        if i > 0 {
            through_plugin.push(took);
            raw.push(raw_took);
        }
    }
    Ok((median(&through_plugin), median(&raw)))
}

/// One dangling-container sweep over the running fleet, by a driver core on the same
/// proxy (dry run, and a grace period that keeps every container: nothing is removed,
/// everything is listed and checked). Median time and requests per sweep.
async fn sweep_cost(bench: &Bench) -> BenchResult<(Duration, f64)> {
    let config = json!({
        "socket_path": bench.proxy.url(),
        "gc": { "dangling_containers": { "enabled": true, "dry_run": true, "creation_grace": "24h" } },
    });
    let driver = Driver::new(
        DriverConfig::from_value(&config).map_err(|e| format!("sweep driver config: {e}"))?,
    )
    .map_err(|e| e.to_string())?;
    let before = bench.proxy.counts();
    let mut times = Vec::new();
    for _ in 0..SWEEPS {
        let began = Instant::now();
        let swept = driver.sweep_dangling_containers().await;
        times.push(began.elapsed());
        if !swept.is_empty() {
            return Err(format!(
                "the sweep found {} dangling containers in a fleet that has none",
                swept.len()
            ));
        }
    }
    let requests = bench.proxy.counts().since(&before).total() as f64 / SWEEPS as f64;
    Ok((median(&times), requests))
}

fn print_point(point: &Point, start_at_0: Duration, raw_at_0: Duration) {
    println!(
        "      {} tasks: {:.2} requests/tick ({}); plugin CPU {:.2} s/min; RSS {} (anon {}, file {}, {} threads); \
         one more start {} ({:.3}x of {} at 0; raw {} = {:.3}x of {}); relaunch {}; \
         RecoverTask x{} {} with {} requests, {} errors; sweep {} with {:.1} requests",
        point.size,
        point.window.per_tick(),
        point.window.routes(),
        Window::per_minute(point.window.plugin_cpu, point.window.seconds),
        mib(point.rss.rss),
        mib(point.rss.anon),
        mib(point.rss.file),
        point.rss.threads,
        ms(point.start),
        ratio(point.start.as_secs_f64(), start_at_0.as_secs_f64()),
        ms(start_at_0),
        ms(point.raw_start),
        ratio(point.raw_start.as_secs_f64(), raw_at_0.as_secs_f64()),
        ms(raw_at_0),
        secs(point.relaunch),
        point.size,
        secs(point.recovery),
        point.recovery_requests,
        point.recovery_errors.len(),
        ms(point.sweep),
        point.sweep_requests,
    );
    for e in point.recovery_errors.iter().take(3) {
        println!("        {e}");
    }
}

fn report(bench: &mut Bench, points: &[Point], start_at_0: Duration, raw_at_0: Duration) {
    let Some(first) = points.first() else {
        return;
    };
    let first_cpu = Window::per_minute(first.window.plugin_cpu, first.window.seconds);
    for point in points {
        let n = point.size;
        let goals = n <= GOAL_SIZE;
        let with_goal = |goal: &'static str| if goals { goal } else { "(context)" };
        let verdict = |ok: bool| {
            if goals {
                Verdict::of(ok)
            } else {
                Verdict::Info
            }
        };
        let per_tick = point.window.per_tick();
        bench.report.add(
            &format!("scale {n}: API requests/stats tick"),
            format!("{per_tick:.2}"),
            format!("{} tasks: {:.2}", first.size, first.window.per_tick()),
            with_goal("<= 2, flat in tasks"),
            verdict(per_tick <= REQUESTS_PER_TICK_GOAL),
        );
        bench.report.add(
            &format!("scale {n}: plugin CPU"),
            format!(
                "{:.2} s/min",
                Window::per_minute(point.window.plugin_cpu, point.window.seconds)
            ),
            format!("{} tasks: {first_cpu:.2} s/min", first.size),
            "(context)",
            Verdict::Info,
        );
        bench.report.add(
            &format!("scale {n}: plugin RSS (wait+stats+logs)"),
            mib(point.rss.rss),
            format!(
                "{} tasks: {}; anon {} + file {}",
                first.size,
                mib(first.rss.rss),
                mib(point.rss.anon),
                mib(point.rss.file)
            ),
            with_goal("<= 16 MiB at 200"),
            verdict(point.rss.rss <= RSS_GOAL),
        );
        let factor = ratio(point.start.as_secs_f64(), start_at_0.as_secs_f64());
        bench.report.add(
            &format!(
                "scale {n}: one more StartTask (median of {})",
                bench.settings.scale_starts
            ),
            ms(point.start),
            format!(
                "none running {} -> {factor:.3}x; raw {} vs {} -> {:.3}x",
                ms(start_at_0),
                ms(point.raw_start),
                ms(raw_at_0),
                ratio(point.raw_start.as_secs_f64(), raw_at_0.as_secs_f64())
            ),
            with_goal("<= 1.1x of none running"),
            verdict(factor <= START_GOAL),
        );
        bench.report.add(
            &format!("scale {n}: RecoverTask of all after SIGKILL"),
            secs(point.recovery),
            format!(
                "{} requests, {} errors; relaunch+SetConfig {}",
                point.recovery_requests,
                point.recovery_errors.len(),
                secs(point.relaunch)
            ),
            with_goal("all within 10 s"),
            verdict(point.recovery <= RECOVERY_GOAL && point.recovery_errors.is_empty()),
        );
        bench.report.add(
            &format!("scale {n}: dangling sweep (median of {SWEEPS})"),
            ms(point.sweep),
            format!(
                "{:.1} requests per sweep; {} tasks: {}",
                point.sweep_requests,
                first.size,
                ms(first.sweep)
            ),
            "(context: every 5 min)",
            Verdict::Info,
        );
    }
}

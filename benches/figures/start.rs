//! Start latency: `Driver::start` versus the same body through raw create+start, versus
//! `podman run -d`. A fourth variant replays the driver's own sequence of API calls with
//! the raw client, timing each call, to show where any gap comes from. The variants take
//! turns so load changes on the host hit all of them alike.

use std::time::{Duration, Instant};

use crate::harness::report::{median, ms, ratio, Verdict};
use crate::harness::service::BUSYBOX_IMAGE;
use crate::harness::tasks::{self, BenchTask, BENCH_LABEL};
use crate::harness::{Bench, BenchResult};

const GOAL: f64 = 1.05;
const WARMUP: usize = 2;
/// The calls `Driver::start` makes for a new task, in order (create names the image; the
/// name is looked up only when create finds it taken, the image pulled only when create
/// does not know it).
const DRIVER_CALLS: [&str; 3] = ["create", "start", "inspect"];

pub async fn run(bench: &mut Bench) -> BenchResult<()> {
    let driver = bench.driver(bench.service.url())?;
    let mut driver_times = Vec::new();
    let mut raw_times = Vec::new();
    let mut cli_times = Vec::new();
    let mut replay_times: Vec<[Duration; 3]> = Vec::new();
    for i in 0..WARMUP + bench.settings.samples {
        let keep = i >= WARMUP;

        let task = BenchTask::sleeper(&bench.run, "start")?;
        let begin = Instant::now();
        let started = driver.start(task.spec.clone()).await;
        let took = begin.elapsed();
        let started = started.map_err(|e| format!("Driver::start: {e}"))?;
        tasks::remove(&bench.client, &started.state.container_id).await;
        driver
            .destroy(task.id(), true)
            .await
            .map_err(|e| format!("Driver::destroy: {e}"))?;
        if keep {
            driver_times.push(took);
        }

        let task = BenchTask::sleeper(&bench.run, "start")?;
        let body = bench.raw.body(&task)?;
        let begin = Instant::now();
        let id = bench.raw.create_and_start(&body).await;
        let took = begin.elapsed();
        let id = id.map_err(|e| format!("raw create+start: {e}"))?;
        tasks::remove(&bench.client, &id).await;
        if keep {
            raw_times.push(took);
        }

        let took = cli_run(bench, &format!("start-cli-{i}-{}", uuid::Uuid::new_v4())).await?;
        if keep {
            cli_times.push(took);
        }

        let steps = replay(bench).await?;
        if keep {
            replay_times.push(steps);
        }
    }
    let (driver, raw, cli) = (
        median(&driver_times),
        median(&raw_times),
        median(&cli_times),
    );
    let factor = ratio(driver.as_secs_f64(), raw.as_secs_f64());
    let n = bench.settings.samples;
    bench.report.add(
        &format!("start latency (median of {n})"),
        format!("Driver::start {}", ms(driver)),
        format!("raw create+start {} -> {factor:.3}x", ms(raw)),
        "<= 1.05x raw API",
        Verdict::of(factor <= GOAL),
    );
    bench.report.add(
        &format!("start latency, CLI (median of {n})"),
        format!("podman run -d {}", ms(cli)),
        format!(
            "Driver::start {} -> {:.2}x of the CLI",
            ms(driver),
            ratio(driver.as_secs_f64(), cli.as_secs_f64())
        ),
        "(context)",
        Verdict::Info,
    );
    let totals: Vec<Duration> = replay_times.iter().map(|s| s.iter().sum()).collect();
    let steps: Vec<String> = DRIVER_CALLS
        .iter()
        .enumerate()
        .map(|(i, call)| {
            let times: Vec<Duration> = replay_times.iter().map(|s| s[i]).collect();
            format!("{call} {}", ms(median(&times)))
        })
        .collect();
    bench.report.add(
        &format!("driver's calls replayed raw (median of {n})"),
        ms(median(&totals)),
        steps.join(" + "),
        "(where the gap is)",
        Verdict::Info,
    );
    requests_per_start(bench).await
}

/// The calls `Driver::start` makes, made with the raw client and timed one by one.
async fn replay(bench: &Bench) -> BenchResult<[Duration; 3]> {
    let task = BenchTask::sleeper(&bench.run, "start")?;
    let client = &bench.client;
    let mut lap = Instant::now();
    let mut split = || {
        let now = Instant::now();
        let took = now - lap;
        lap = now;
        took
    };
    let mut body = bench.raw.body(&task)?;
    body.image = BUSYBOX_IMAGE.to_string();
    let created = client
        .container_create(&body)
        .await
        .map_err(|e| e.to_string())?;
    let create = split();
    client
        .container_start(&created.id)
        .await
        .map_err(|e| e.to_string())?;
    let start = split();
    let _ = client.container_inspect(&created.id).await;
    let inspect = split();
    tasks::remove(client, &created.id).await;
    Ok([create, start, inspect])
}

/// `scripts/podman-service cli DIR run -d ...`, timed; then removed.
async fn cli_run(bench: &Bench, name: &str) -> BenchResult<Duration> {
    let mut command = tokio::process::Command::from(bench.service.cli());
    command.args([
        "run",
        "-d",
        "--name",
        name,
        "--label",
        &format!("{BENCH_LABEL}={}", bench.run),
        BUSYBOX_IMAGE,
        "sleep",
        "3600",
    ]);
    let begin = Instant::now();
    let out = command
        .output()
        .await
        .map_err(|e| format!("podman run: {e}"))?;
    let took = begin.elapsed();
    if !out.status.success() {
        return Err(format!(
            "podman run -d: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    tasks::remove(&bench.client, name).await;
    Ok(took)
}

/// What one `Driver::start` asks of podman, counted at the proxy (explains the ratio).
async fn requests_per_start(bench: &mut Bench) -> BenchResult<()> {
    let driver = bench.driver(&bench.proxy.url())?;
    // The first start also asks podman about its host; count a later one.
    for counted in [false, true] {
        let task = BenchTask::sleeper(&bench.run, "count")?;
        let before = bench.proxy.counts();
        let started = driver
            .start(task.spec.clone())
            .await
            .map_err(|e| format!("Driver::start: {e}"))?;
        let made = bench.proxy.counts().since(&before);
        tasks::remove(&bench.client, &started.state.container_id).await;
        let _ = driver.destroy(task.id(), true).await;
        if counted {
            let routes: Vec<String> = made
                .by_route
                .iter()
                .map(|(route, n)| format!("{n}x {route}"))
                .collect();
            bench.report.add(
                "API requests per Driver::start",
                format!("{}", made.total()),
                "raw: 2 (create, start)".into(),
                "(context)",
                Verdict::Info,
            );
            println!("      {}", routes.join(", "));
        }
    }
    Ok(())
}

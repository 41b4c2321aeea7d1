//! Issue 6's benchmarks in one run: start latency, concurrent starts, the cost of
//! watching many tasks (requests per stats tick, CPU), memory, log throughput and the
//! runner, each printed next to its baseline and goal.
//!
//! `scripts/bench` (or `cargo bench --bench driver`) runs everything; names after `--`
//! pick figures (`start`, `fleet`, `logs`, `runner`, `scale`). Sizes: see `harness::Settings`.
//! Without `--bench` (as `cargo test --all-targets` runs it) it only checks its own
//! request counter.

mod figures;
mod harness;

use std::process::ExitCode;
use std::time::Instant;

use harness::{Bench, BenchResult, Settings};

const FIGURES: [&str; 5] = ["start", "fleet", "logs", "runner", "scale"];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        return match harness::proxy::self_check() {
            Ok(()) => {
                println!("driver bench: request counter self-check passed (run `scripts/bench` to measure)");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("driver bench: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let picked: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if let Some(unknown) = picked.iter().find(|p| !FIGURES.contains(p)) {
        eprintln!("unknown figure {unknown:?}; known: {}", FIGURES.join(", "));
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&picked, &machine())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(picked: &[&str], machine: &str) -> BenchResult<()> {
    harness::proxy::self_check()?;
    let began = Instant::now();
    let settings = Settings::from_env();
    println!("{machine}");
    println!("settings: {settings:?}");
    let mut bench = Bench::start(settings).await?;
    println!("podman service: {}", bench.service.url());
    let wanted = |name: &str| picked.is_empty() || picked.contains(&name);
    for name in FIGURES.into_iter().filter(|n| wanted(n)) {
        println!("== {name}");
        let outcome = match name {
            "start" => figures::start::run(&mut bench).await,
            "fleet" => figures::fleet::run(&mut bench).await,
            "logs" => figures::logs::run(&mut bench).await,
            "scale" => figures::scale::run(&mut bench).await,
            _ => figures::runner::run(&mut bench).await,
        };
        if let Err(e) = outcome {
            bench.report.failed(name, &e, "-");
        }
        // A failed figure must not leave containers for the next one.
        let _ = harness::tasks::remove_run_containers(&bench.client, &bench.run).await;
    }
    let markdown = bench.report.markdown();
    let missed = bench.report.missed();
    tokio::task::spawn_blocking(move || bench.stop())
        .await
        .map_err(|e| e.to_string())??;
    println!(
        "\n{machine}\nload average at the end: {}; total {:.0} s; goals missed: {missed}\n\n{markdown}",
        loadavg(),
        began.elapsed().as_secs_f64()
    );
    Ok(())
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn loadavg() -> String {
    read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The machine the figures come from.
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let memory = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:").map(|m| m.trim().to_string()))
        .unwrap_or_default();
    let podman = std::process::Command::new("podman")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!(
        "machine: {cpus} CPUs ({model}), {memory} memory, kernel {}, {podman}, load average {}",
        read("/proc/sys/kernel/osrelease").trim(),
        loadavg()
    )
}

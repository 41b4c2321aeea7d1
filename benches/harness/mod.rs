//! What every figure shares: the private podman service, a counting proxy in front of it,
//! a libpod client, the raw-API helpers and the report.

pub mod fifo;
pub mod plugin;
pub mod procfs;
pub mod proxy;
pub mod report;
pub mod service;
pub mod tasks;

use std::path::PathBuf;
use std::time::Duration;

use nomad_driver_podman::driver::podman::PodmanClient;
use nomad_driver_podman::driver::{Driver, DriverConfig};
use serde_json::json;

use proxy::CountingProxy;
use report::Report;
use service::PodmanService;
use tasks::RawApi;

pub type BenchResult<T> = Result<T, String>;

/// Sizes of the run; each can be lowered with an environment variable for a quick try.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Starts per variant for the start latency (`BENCH_SAMPLES`).
    pub samples: usize,
    /// Tasks in the concurrency, stats and memory figures (`BENCH_TASKS`).
    pub tasks: usize,
    /// Length of each stats window (`BENCH_STATS_SECS`).
    pub stats_window: Duration,
    /// Bursts per variant in the concurrency figure (`BENCH_ROUNDS`).
    pub rounds: usize,
    /// Bytes the log figure's container writes (`BENCH_LOG_MB`, MiB).
    pub log_bytes: u64,
    /// Runs per variant in the runner figure (`BENCH_RUNNER_RUNS`).
    pub runner_runs: usize,
    /// Fleet sizes of the scale figure, ascending (`BENCH_SCALE`, e.g. `1,50,200,500`).
    pub scale: Vec<usize>,
    /// Length of the scale figure's stats window at each size (`BENCH_SCALE_SECS`).
    pub scale_window: Duration,
    /// One-more-task starts per size in the scale figure (`BENCH_SCALE_STARTS`).
    pub scale_starts: usize,
}

/// `BENCH_SCALE`: comma-separated fleet sizes; the default is issue 11's 1, 50 and 200.
fn scale_sizes() -> Vec<usize> {
    let mut sizes: Vec<usize> = std::env::var("BENCH_SCALE")
        .ok()
        .map(|v| {
            v.split(',')
                .filter_map(|n| n.trim().parse().ok())
                .filter(|n| *n > 0)
                .collect()
        })
        .unwrap_or_default();
    if sizes.is_empty() {
        sizes = vec![1, 50, 200];
    }
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

impl Settings {
    pub fn from_env() -> Self {
        Settings {
            samples: env_number("BENCH_SAMPLES", 20) as usize,
            tasks: env_number("BENCH_TASKS", 50) as usize,
            stats_window: Duration::from_secs(env_number("BENCH_STATS_SECS", 60)),
            rounds: env_number("BENCH_ROUNDS", 2) as usize,
            log_bytes: env_number("BENCH_LOG_MB", 200) * 1024 * 1024,
            runner_runs: env_number("BENCH_RUNNER_RUNS", 5) as usize,
            scale: scale_sizes(),
            scale_window: Duration::from_secs(env_number("BENCH_SCALE_SECS", 30)),
            scale_starts: env_number("BENCH_SCALE_STARTS", 7) as usize,
        }
    }
}

pub struct Bench {
    /// Label value on every container of this run.
    pub run: String,
    pub settings: Settings,
    pub service: PodmanService,
    /// Direct client of the service.
    pub client: PodmanClient,
    /// Counts what goes through it; the plugin and the Go-design baseline use it.
    pub proxy: CountingProxy,
    pub raw: RawApi,
    pub report: Report,
}

impl Bench {
    /// Starts the service (in a fresh directory under /tmp: unix socket paths are short)
    /// and the proxy.
    pub async fn start(settings: Settings) -> BenchResult<Bench> {
        let run = format!("b{}", std::process::id());
        let dir = PathBuf::from(format!("/tmp/ndp-bench-{}", std::process::id()));
        let service = tokio::task::spawn_blocking(move || PodmanService::start(&dir))
            .await
            .map_err(|e| e.to_string())??;
        let client = PodmanClient::new(service.url(), None).map_err(|e| e.to_string())?;
        let proxy =
            CountingProxy::start(&service.dir().join("proxy.sock"), &service.socket_path())?;
        let raw = RawApi::new(client.clone(), driver_config(service.url())?).await?;
        Ok(Bench {
            run,
            settings,
            service,
            client,
            proxy,
            raw,
            report: Report::default(),
        })
    }

    /// An in-process driver core on `url`.
    pub fn driver(&self, url: &str) -> BenchResult<std::sync::Arc<Driver>> {
        Driver::new(driver_config(url)?).map_err(|e| e.to_string())
    }

    /// A scratch directory inside the service directory (removed with it).
    pub fn scratch(&self, name: &str) -> BenchResult<PathBuf> {
        let dir = self.service.dir().join(name);
        std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        Ok(dir)
    }

    pub fn stop(self) -> BenchResult<()> {
        drop(self.proxy);
        self.service.stop()
    }
}

/// The plugin configuration every variant uses: defaults, on `url`.
pub fn plugin_config(url: &str) -> serde_json::Value {
    json!({ "socket_path": url })
}

fn driver_config(url: &str) -> BenchResult<DriverConfig> {
    DriverConfig::from_value(&plugin_config(url)).map_err(|e| format!("driver config: {e}"))
}

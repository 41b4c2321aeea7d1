//! Log throughput: a container writes `log_bytes` to stdout; the driver forwards it to a
//! FIFO the bench reads (as logmon would). Compared with `podman logs` of the same output.
//!
//! Three numbers, because the live one is bounded by how fast the container and conmon
//! produce the log: live forwarding (from `Driver::start` to the last byte in the FIFO),
//! the core's forwarder replaying the stored output into a FIFO (the same path, without
//! waiting on the producer), and `podman logs` reading the stored output.

use std::time::{Duration, Instant, UNIX_EPOCH};

use nomad_driver_podman::driver::logs::{LogCursor, LogForwardConfig, LogForwarder};
use tokio::io::AsyncReadExt;

use crate::harness::fifo::FifoReader;
use crate::harness::report::{ratio, Verdict};
use crate::harness::tasks::{self, BenchTask};
use crate::harness::{Bench, BenchResult};

const GOAL: f64 = 0.9;
/// Bound on each transfer; a guard against hangs, far above any expected duration.
const TRANSFER_DEADLINE: Duration = Duration::from_secs(180);

fn mb_per_s(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / 1e6 / took.as_secs_f64().max(1e-9)
}

pub async fn run(bench: &mut Bench) -> BenchResult<()> {
    let bytes = bench.settings.log_bytes;
    let dir = bench.scratch("logs")?;
    let script = format!("head -c {bytes} /dev/zero | tr '\\000' a");
    let mut task = BenchTask::new(&bench.run, "logs", "sh", &["-c", &script])?;
    let mut stdout = FifoReader::create(&dir.join("live.stdout"), Some(bytes))?;
    let stderr = FifoReader::create(&dir.join("live.stderr"), None)?;
    task.spec.context.stdout_path = Some(stdout.path().to_path_buf());
    task.spec.context.stderr_path = Some(stderr.path().to_path_buf());

    let driver = bench.driver(bench.service.url())?;
    let begin = Instant::now();
    let started = driver
        .start(task.spec.clone())
        .await
        .map_err(|e| format!("Driver::start: {e}"))?;
    let container = started.state.container_id.clone();
    let live = stdout.reached(TRANSFER_DEADLINE).await.map(|at| at - begin);
    let _ = driver.wait(task.id()).await;
    let produced = production_time(bench, &container).await;
    let replay = replay(bench, &container, &dir, bytes).await;
    let cli = podman_logs(bench, &container, bytes).await;
    tasks::remove(&bench.client, &container).await;
    let _ = driver.destroy(task.id(), true).await;

    let mb = bytes / (1024 * 1024);
    let cli = match cli {
        Ok(cli) => cli,
        Err(e) => {
            bench
                .report
                .failed(&format!("logs: {mb} MiB, podman logs"), &e, "(baseline)");
            return Ok(());
        }
    };
    let cli_rate = mb_per_s(bytes, cli);
    let baseline = format!("podman logs {cli_rate:.0} MB/s");
    match live {
        Ok(live) => {
            let rate = mb_per_s(bytes, live);
            bench.report.add(
                &format!("logs: {mb} MiB live to FIFO"),
                format!("{rate:.0} MB/s"),
                format!("{baseline} -> {:.2}x", ratio(rate, cli_rate)),
                ">= 0.9x podman logs",
                Verdict::of(ratio(rate, cli_rate) >= GOAL),
            );
        }
        Err(e) => bench.report.failed(
            &format!("logs: {mb} MiB live to FIFO"),
            &e,
            ">= 0.9x podman logs",
        ),
    }
    if let Ok(produced) = produced {
        bench.report.add(
            "logs: container + conmon producing",
            format!("{:.0} MB/s", mb_per_s(bytes, produced)),
            "(bounds the live figure)".into(),
            "(context)",
            Verdict::Info,
        );
    }
    match replay {
        Ok(replay) => {
            let rate = mb_per_s(bytes, replay);
            bench.report.add(
                &format!("logs: {mb} MiB stored, forwarder to FIFO"),
                format!("{rate:.0} MB/s"),
                format!("{baseline} -> {:.2}x", ratio(rate, cli_rate)),
                ">= 0.9x podman logs",
                Verdict::of(ratio(rate, cli_rate) >= GOAL),
            );
        }
        Err(e) => bench.report.failed(
            &format!("logs: {mb} MiB stored, forwarder to FIFO"),
            &e,
            ">= 0.9x podman logs",
        ),
    }
    Ok(())
}

/// From the container's start to its exit, as podman recorded them.
async fn production_time(bench: &Bench, container: &str) -> BenchResult<Duration> {
    let inspect = bench
        .client
        .container_inspect(container)
        .await
        .map_err(|e| e.to_string())?;
    match (inspect.state.started_at(), inspect.state.finished_at()) {
        (Some(start), Some(end)) => end.duration_since(start).map_err(|e| e.to_string()),
        _ => Err("podman reports no start or finish time".into()),
    }
}

/// The core's log forwarder over the stored output of an exited container.
async fn replay(
    bench: &Bench,
    container: &str,
    dir: &std::path::Path,
    bytes: u64,
) -> BenchResult<Duration> {
    let mut stdout = FifoReader::create(&dir.join("replay.stdout"), Some(bytes))?;
    let stderr = FifoReader::create(&dir.join("replay.stderr"), None)?;
    let begin = Instant::now();
    let forwarder = LogForwarder::spawn(
        bench.client.clone(),
        LogForwardConfig {
            container_id: container.to_string(),
            stdout: stdout.path().to_path_buf(),
            stderr: stderr.path().to_path_buf(),
            cursor: LogCursor::at(UNIX_EPOCH),
        },
    );
    let reached = stdout.reached(TRANSFER_DEADLINE).await;
    let _ = forwarder.stop().await;
    Ok(reached? - begin)
}

/// `podman logs` of the container, read through a pipe until it exits.
async fn podman_logs(bench: &Bench, container: &str, bytes: u64) -> BenchResult<Duration> {
    let mut command = tokio::process::Command::from(bench.service.cli());
    command
        .args(["logs", container])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let begin = Instant::now();
    let mut child = command.spawn().map_err(|e| format!("podman logs: {e}"))?;
    let mut out = child.stdout.take().ok_or("no stdout")?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    let read = async {
        while let Ok(n) = out.read(&mut buf).await {
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        child.wait().await
    };
    let status = tokio::time::timeout(TRANSFER_DEADLINE, read)
        .await
        .map_err(|_| "podman logs did not finish in time".to_string())?
        .map_err(|e| e.to_string())?;
    let took = begin.elapsed();
    if !status.success() || total < bytes {
        return Err(format!(
            "podman logs gave {total} of {bytes} bytes ({status})"
        ));
    }
    Ok(took)
}

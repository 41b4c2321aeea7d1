//! Log throughput: a container writes `log_bytes` of 100-byte lines to stdout; the driver
//! forwards them to a FIFO the bench reads (as logmon would). Compared with `podman logs`
//! reading the same output, and with a plain read of the libpod logs endpoint, which
//! bounds anything that forwards through the API.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use nomad_driver_podman::driver::logs::{
    LogCursor, LogForwardConfig, LogForwarder, LogSource, Sink,
};
use nomad_driver_podman::driver::podman::{LogOptions, WaitCondition};
use nomad_driver_podman::driver::{ExitResult, ExitState, TaskRunState};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use crate::harness::fifo::FifoReader;
use crate::harness::report::{ratio, Verdict};
use crate::harness::tasks::{self, BenchTask};
use crate::harness::{Bench, BenchResult};

const GOAL: f64 = 0.9;
const LINE: usize = 100;
/// Bound on each transfer; a guard against hangs, far above the expected duration.
const TRANSFER_DEADLINE: Duration = Duration::from_secs(150);
/// After the task exited, forwarding counts as finished once the FIFO was quiet this long.
const QUIET: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(20);

fn mb_per_s(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / 1e6 / took.as_secs_f64().max(1e-9)
}

/// Output forwarded live: how much arrived and when the last of it did.
struct Forwarded {
    delivered: u64,
    took: Duration,
}

pub async fn run(bench: &mut Bench) -> BenchResult<()> {
    let bytes = bench.settings.log_bytes;
    let mb = bytes / (1024 * 1024);
    let script = format!("yes {} | head -c {bytes}", "a".repeat(LINE - 1));
    let mut task = BenchTask::new(&bench.run, "logs", "sh", &["-c", &script])?;
    let dir = bench.scratch("logs")?;
    let stdout = FifoReader::create(&dir.join("stdout"))?;
    let stderr = FifoReader::create(&dir.join("stderr"))?;
    task.spec.context.stdout_path = Some(stdout.path().to_path_buf());
    task.spec.context.stderr_path = Some(stderr.path().to_path_buf());

    let driver = bench.driver(bench.service.url())?;
    let begin = Instant::now();
    let started = driver
        .start(task.spec.clone())
        .await
        .map_err(|e| format!("Driver::start: {e}"))?;
    let container = started.state.container_id.clone();
    let live = forwarded(&driver, task.id(), &stdout, bytes, begin).await;
    let produced = production_time(bench, &container).await;
    let api = api_read(bench, &container).await;
    let cli = podman_logs(bench, &container, bytes).await;
    let direct = k8s_file_read(bench, &container, &dir, bytes).await;
    tasks::remove(&bench.client, &container).await;
    let _ = driver.destroy(task.id(), true).await;

    let cli_rate = mb_per_s(bytes, cli?);
    let baseline = |rate: f64| {
        format!(
            "podman logs {cli_rate:.1} MB/s -> {:.2}x",
            ratio(rate, cli_rate)
        )
    };
    let live_rate = mb_per_s(live.delivered, live.took);
    let complete = live.delivered >= bytes;
    bench.report.add(
        &format!("logs: {mb} MiB of {LINE}-byte lines to FIFO"),
        format!(
            "{live_rate:.1} MB/s, {:.1} of {mb} MiB arrived",
            live.delivered as f64 / 1048576.0
        ),
        baseline(live_rate),
        ">= 0.9x podman logs, all of it",
        Verdict::of(complete && ratio(live_rate, cli_rate) >= GOAL),
    );
    let readers = [
        (
            "logs: libpod logs API read, no follow",
            "(bounds API forwarding)",
            api,
        ),
        (
            "logs: k8s-file read directly to FIFO",
            "(the forwarder's k8s-file tail, without podman writing meanwhile)",
            direct,
        ),
    ];
    for (figure, goal, outcome) in readers {
        match outcome {
            Ok((read, took)) => {
                let rate = mb_per_s(read, took);
                let measured = format!("{rate:.1} MB/s");
                bench
                    .report
                    .add(figure, measured, baseline(rate), goal, Verdict::Info);
            }
            Err(e) => bench.report.failed(figure, &e, goal),
        }
    }
    match produced {
        Ok(took) => bench.report.add(
            "logs: container + conmon producing",
            format!("{:.1} MB/s", mb_per_s(bytes, took)),
            "-".into(),
            "(context)",
            Verdict::Info,
        ),
        Err(e) => bench
            .report
            .failed("logs: container + conmon producing", &e, "(context)"),
    }
    Ok(())
}

/// Waits until all output reached the FIFO, or the task exited and the FIFO stayed quiet.
async fn forwarded(
    driver: &nomad_driver_podman::driver::Driver,
    task_id: &str,
    stdout: &FifoReader,
    bytes: u64,
    begin: Instant,
) -> Forwarded {
    let mut exited_at = None;
    while stdout.received() < bytes && begin.elapsed() < TRANSFER_DEADLINE {
        if exited_at.is_none() {
            if let Ok(status) = driver.inspect(task_id).await {
                if status.state == TaskRunState::Exited {
                    exited_at = Some(Instant::now());
                }
            }
        }
        if let Some(exited) = exited_at {
            let last = stdout.last_read().unwrap_or(exited).max(exited);
            if last.elapsed() > QUIET {
                break;
            }
        }
        tokio::time::sleep(POLL).await;
    }
    Forwarded {
        delivered: stdout.received(),
        took: stdout.last_read().map_or(begin.elapsed(), |at| at - begin),
    }
}

/// From the container's start to its exit, as podman recorded them. The output can all
/// arrive before podman has recorded the exit: wait for it first.
async fn production_time(bench: &Bench, container: &str) -> BenchResult<Duration> {
    tokio::time::timeout(
        TRANSFER_DEADLINE,
        bench
            .client
            .container_wait(container, &[WaitCondition::Exited]),
    )
    .await
    .map_err(|_| "the container did not exit in time".to_string())?
    .map_err(|e| e.to_string())?;
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

/// The stored output through `GET /containers/{id}/logs` (no follow, with timestamps as
/// the forwarder asks): payload bytes without the timestamps, and the time taken.
async fn api_read(bench: &Bench, container: &str) -> BenchResult<(u64, Duration)> {
    let begin = Instant::now();
    let options = LogOptions {
        stdout: true,
        stderr: true,
        timestamps: true,
        ..LogOptions::default()
    };
    let mut frames = bench
        .client
        .container_logs(container, &options)
        .await
        .map_err(|e| e.to_string())?;
    let mut total = 0u64;
    let read = async {
        while let Some(frame) = frames.next().await {
            let payload = frame.map_err(|e| e.to_string())?.payload;
            let stamp = payload.iter().position(|b| *b == b' ').map_or(0, |i| i + 1);
            total += (payload.len() - stamp) as u64;
        }
        Ok::<_, String>(())
    };
    tokio::time::timeout(TRANSFER_DEADLINE, read)
        .await
        .map_err(|_| "the logs API did not finish in time".to_string())??;
    Ok((total, begin.elapsed()))
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

/// The forwarder's own k8s-file tail (`LogSource::Auto`, as the driver starts it) over
/// the stored log of the exited container, into a FIFO: its reading rate when nothing is
/// being written meanwhile.
async fn k8s_file_read(
    bench: &Bench,
    container: &str,
    dir: &Path,
    bytes: u64,
) -> BenchResult<(u64, Duration)> {
    let reader = FifoReader::create(&dir.join("k8s-file"))?;
    let (_, exited) = watch::channel(ExitState::Exited {
        result: ExitResult::default(),
        at: SystemTime::now(),
    });
    let begin = Instant::now();
    let forwarder = LogForwarder::spawn(
        bench.client.clone(),
        LogForwardConfig {
            container_id: container.to_string(),
            stdout: Sink::fifo(reader.path()).map_err(|e| e.to_string())?,
            stderr: Sink::discard(),
            journal: Sink::discard(),
            cursor: LogCursor::at(SystemTime::UNIX_EPOCH),
            source: LogSource::Auto,
            exited,
            file_events: None,
            position: None,
        },
    );
    tokio::time::timeout(TRANSFER_DEADLINE, forwarder.join())
        .await
        .map_err(|_| "the forwarder did not finish in time".to_string())?
        .map_err(|e| e.to_string())?;
    while reader.received() < bytes && begin.elapsed() < TRANSFER_DEADLINE {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok((reader.received(), begin.elapsed()))
}

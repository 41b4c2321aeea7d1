//! The runner: from `nomad-driver-podman run job.nomad` to all three tasks of a pod-style
//! group (bridge network: one namespace, three tasks) running, versus `podman kube play`
//! of the equivalent pod (infra container plus three containers). Both are detected the
//! same way: the API lists the three containers as running.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nomad_driver_podman::driver::podman::ListOptions;
use tokio::process::{Child, Command};

use crate::harness::plugin::binary;
use crate::harness::report::{median, ms, ratio, Verdict};
use crate::harness::service::BUSYBOX_IMAGE;
use crate::harness::{Bench, BenchResult};

const GOAL: f64 = 1.1;
const POLL: Duration = Duration::from_millis(20);
const RUNNING_DEADLINE: Duration = Duration::from_secs(60);
const EXIT_DEADLINE: Duration = Duration::from_secs(30);
const WARMUP: usize = 1;

const RUNNER_CONTAINERS: &str = "^bench-[abc]-";
const KUBE_POD: &str = "benchpod";
const KUBE_CONTAINERS: &str = "^benchpod-bench-[abc]$";

fn job_file() -> String {
    let task = |name: &str| {
        format!(
            r#"
    task "{name}" {{
      driver = "podman"
      config {{
        image   = "{BUSYBOX_IMAGE}"
        command = "sleep"
        args    = ["3600"]
      }}
      kill_timeout = "1s"
    }}"#
        )
    };
    format!(
        "job \"benchpod\" {{\n  group \"pod\" {{\n    network {{\n      mode = \"bridge\"\n    }}\n{}\n{}\n{}\n  }}\n}}\n",
        task("bench-a"),
        task("bench-b"),
        task("bench-c")
    )
}

fn pod_yaml() -> String {
    let container = |name: &str| {
        format!(
            "  - name: {name}\n    image: {BUSYBOX_IMAGE}\n    imagePullPolicy: IfNotPresent\n    command: [\"sleep\", \"3600\"]\n"
        )
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {KUBE_POD}\nspec:\n  restartPolicy: Never\n  containers:\n{}{}{}",
        container("bench-a"),
        container("bench-b"),
        container("bench-c")
    )
}

pub async fn run(bench: &mut Bench) -> BenchResult<()> {
    let dir = bench.scratch("runner")?;
    let job = dir.join("benchpod.nomad");
    let pod = dir.join("benchpod.yaml");
    std::fs::write(&job, job_file()).map_err(|e| format!("write {}: {e}", job.display()))?;
    std::fs::write(&pod, pod_yaml()).map_err(|e| format!("write {}: {e}", pod.display()))?;
    let mut runner_times = Vec::new();
    let mut kube_times = Vec::new();
    for i in 0..WARMUP + bench.settings.runner_runs {
        let runner = runner_once(bench, bench.service.url(), &job, &dir.join("state")).await?;
        let kube = kube_once(bench, &pod).await?;
        if i >= WARMUP {
            runner_times.push(runner);
            kube_times.push(kube);
        }
    }
    let (runner, kube) = (median(&runner_times), median(&kube_times));
    let factor = ratio(runner.as_secs_f64(), kube.as_secs_f64());
    bench.report.add(
        &format!(
            "runner: 3-task pod running (median of {})",
            bench.settings.runner_runs
        ),
        format!("run {}", ms(runner)),
        format!("podman kube play {} -> {factor:.3}x", ms(kube)),
        "<= 1.1x kube play",
        Verdict::of(factor <= GOAL),
    );
    profile(bench, &job, &dir.join("state")).await
}

/// One more run through the counting proxy: when the runner made which request, to show
/// where its time goes (process start and job file before the first request, then the
/// API calls of the infra container and the three tasks). The proxy is a socket the
/// runner has not seen: this is a first run, which waits for podman's info once.
async fn profile(bench: &mut Bench, job: &Path, state: &Path) -> BenchResult<()> {
    let begin = Instant::now();
    let url = bench.proxy.url();
    let took = runner_once(bench, &url, job, state).await?;
    let timeline: Vec<(Duration, String)> = bench
        .proxy
        .timeline_since(begin)
        .into_iter()
        .filter(|(at, _)| *at <= took)
        .collect();
    let first = timeline.first().map_or(took, |(at, _)| *at);
    let starts: Vec<String> = timeline
        .iter()
        .filter(|(_, route)| route.ends_with("/start"))
        .map(|(at, _)| ms(*at))
        .collect();
    let mut info = Vec::new();
    for _ in 0..5 {
        let asked = Instant::now();
        bench.client.info().await.map_err(|e| e.to_string())?;
        info.push(asked.elapsed());
    }
    bench.report.add(
        "runner: GET /libpod/info alone (median of 5)",
        ms(median(&info)),
        "a first run on a socket waits for it; later runs remember the facts".into(),
        "(context)",
        Verdict::Info,
    );
    bench.report.add(
        "runner: where the time goes (first run on a socket)",
        format!("1st API call at {}", ms(first)),
        format!(
            "{} calls; starts at {}; all running at {}",
            timeline.len(),
            starts.join(", "),
            ms(took)
        ),
        "(context)",
        Verdict::Info,
    );
    let calls: Vec<String> = timeline
        .iter()
        .map(|(at, route)| format!("{:.0} {route}", at.as_secs_f64() * 1000.0))
        .collect();
    println!("      {}", calls.join("; "));
    Ok(())
}

/// Waits until the API lists three running containers whose names match `pattern`.
async fn three_running(bench: &Bench, pattern: &str, child: &mut Child) -> BenchResult<()> {
    let options = ListOptions {
        all: false,
        labels: Vec::new(),
        names: vec![pattern.to_string()],
    };
    let deadline = Instant::now() + RUNNING_DEADLINE;
    loop {
        if let Ok(running) = bench.client.container_list(&options).await {
            if running.iter().filter(|c| c.state == "running").count() >= 3 {
                return Ok(());
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            if !status.success() {
                return Err(format!("exited with {status} before its containers ran"));
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "containers {pattern} not running within {RUNNING_DEADLINE:?}"
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn runner_once(
    bench: &Bench,
    socket: &str,
    job: &Path,
    state: &Path,
) -> BenchResult<Duration> {
    let begin = Instant::now();
    let mut runner = Command::new(binary())
        .arg("run")
        .arg(job)
        .arg("--socket")
        .arg(socket)
        .arg("--state-dir")
        .arg(state)
        .arg("--no-color")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("spawn the runner: {e}"))?;
    let running = three_running(bench, RUNNER_CONTAINERS, &mut runner).await;
    let took = begin.elapsed();
    // Ctrl-C: the runner stops its tasks and removes their containers.
    if let Some(pid) = runner.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGINT,
        );
    }
    if tokio::time::timeout(EXIT_DEADLINE, runner.wait())
        .await
        .is_err()
    {
        let _ = runner.kill().await;
        return Err("the runner did not stop after SIGINT".into());
    }
    running.map_err(|e| format!("runner: {e}"))?;
    Ok(took)
}

async fn kube_once(bench: &Bench, pod: &Path) -> BenchResult<Duration> {
    let mut command = Command::from(bench.service.cli());
    command
        .arg("kube")
        .arg("play")
        .arg(pod)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let begin = Instant::now();
    let mut kube = command
        .spawn()
        .map_err(|e| format!("podman kube play: {e}"))?;
    let running = three_running(bench, KUBE_CONTAINERS, &mut kube).await;
    let took = begin.elapsed();
    let _ = kube.wait().await;
    let removed = Command::from(bench.service.cli())
        .args(["pod", "rm", "-f", "-t", "0", KUBE_POD])
        .output()
        .await
        .map_err(|e| format!("podman pod rm: {e}"))?;
    running.map_err(|e| format!("kube play: {e}"))?;
    if !removed.status.success() {
        return Err(format!(
            "podman pod rm: {}",
            String::from_utf8_lossy(&removed.stderr).trim()
        ));
    }
    Ok(took)
}

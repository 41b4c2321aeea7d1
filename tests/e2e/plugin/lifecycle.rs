//! A task's whole life over the wire, RPC by RPC, as the agent drives it.

use std::time::Duration;

use futures::StreamExt;
use nomad_driver_podman::modes::plugin::proto::drivers::{
    self, DestroyTaskRequest, ExecTaskRequest, InspectTaskRequest, SignalTaskRequest,
    StopTaskRequest, TaskEventsRequest, TaskStatsRequest, WaitTaskRequest,
};
use tonic::Code;

use super::agent::Agent;
use super::bed::{self, shell_task, Bed};
use crate::support;

const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;
/// Bound on waits that should end promptly; a guard against hangs, not a timing check.
const DEADLINE: Duration = Duration::from_secs(60);

fn wait_request(task_id: &str) -> WaitTaskRequest {
    WaitTaskRequest {
        task_id: task_id.to_string(),
    }
}

#[tokio::test]
async fn task_lifecycle_over_the_wire_nomad_1_6_agent() {
    task_lifecycle_over_the_wire(Agent::Nomad16).await;
}

#[tokio::test]
async fn task_lifecycle_over_the_wire_current_agent() {
    task_lifecycle_over_the_wire(Agent::default_agent()).await;
}

async fn task_lifecycle_over_the_wire(agent: Agent) {
    let bed = Bed::new("lifecycle");
    let plugin = bed.plugin_as(agent).await;
    let mut driver = plugin.driver();
    let alloc = bed.alloc();
    let script = "echo out-$NOMAD_TASK_NAME; echo err-line >&2; \
                  trap 'echo got-usr1' USR1; while true; do sleep 0.2; done";
    let mut hcl = shell_task(script);
    if support::lane().is_rootless() {
        // Rootless podman's default network (slirp4netns) gives the container no address
        // of its own to report; a bridge network does.
        hcl.push_str(&format!(
            "network_mode = \"{}\"\n",
            support::podman().network_name()
        ));
    }
    let task = bed::start(&plugin, &alloc, "web", &bed.labelled(&hcl)).await;
    let task_id = task.id();

    let handle = task.handle();
    assert!(handle.version >= 1);
    assert_eq!(handle.state, drivers::TaskState::Running as i32);
    assert!(!handle.driver_state.is_empty());
    let echoed = handle.config.expect("the handle echoes the task config");
    assert_eq!(echoed.id, task_id);
    assert_eq!(echoed.alloc_id, alloc.id);

    // Output reaches the agent's FIFOs (stderr may be merged into stdout, as in Go).
    task.files.stdout.wait_for("out-web").await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !(task.files.stdout.text() + &task.files.stderr.text()).contains("err-line") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stderr line never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The container carries the task label and the Nomad labels.
    let labels = support::podman().cli_ok(&[
        "ps",
        "--filter",
        &format!("label={}", bed.cleanup.pair()),
        "--format",
        "{{.Names}}",
    ]);
    assert_eq!(labels, format!("web-{}", alloc.id));

    // StartTask's network override carries the address podman gave the container on
    // its network, for Nomad to advertise.
    let ip = support::podman().cli_ok(&[
        "inspect",
        "--format",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &labels,
    ]);
    assert!(
        ip.parse::<std::net::IpAddr>().is_ok(),
        "container ip {ip:?}"
    );
    let network = task
        .response
        .network_override
        .clone()
        .expect("StartTask reports the task's network");
    assert_eq!(network.addr, ip);
    assert!(network.auto_advertise);

    let inspected = driver
        .inspect_task(InspectTaskRequest {
            task_id: task_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let status = inspected.task.expect("InspectTask sets task");
    assert_eq!(status.id, task_id);
    assert_eq!(status.state, drivers::TaskState::Running as i32);
    assert!(status.started_at.is_some());
    assert_eq!(status.completed_at.unwrap().seconds, GO_ZERO_TIME_SECONDS);
    assert!(status.result.is_some());

    if !crate::support::skip_without_limits_or_stats("the TaskStats part") {
        let mut stats = driver
            .task_stats(TaskStatsRequest {
                task_id: task_id.clone(),
                collection_interval: Some(prost_types::Duration {
                    seconds: 0,
                    nanos: 200_000_000,
                }),
            })
            .await
            .unwrap()
            .into_inner();
        for _ in 0..2 {
            let sample = tokio::time::timeout(DEADLINE, stats.next())
                .await
                .expect("a stats sample")
                .expect("stream open")
                .unwrap()
                .stats
                .expect("stats set");
            assert!(sample.timestamp.is_some());
            let usage = sample.agg_resource_usage.expect("agg_resource_usage set");
            assert!(usage.memory.expect("memory usage").usage > 0);
            assert!(usage.cpu.is_some());
        }
        drop(stats);
    }

    driver
        .signal_task(SignalTaskRequest {
            task_id: task_id.clone(),
            signal: "SIGUSR1".into(),
        })
        .await
        .unwrap();
    task.files.stdout.wait_for("got-usr1").await;

    let exec = driver
        .exec_task(ExecTaskRequest {
            task_id: task_id.clone(),
            command: vec![
                "sh".into(),
                "-c".into(),
                "echo exec-out; echo exec-err >&2; exit 3".into(),
            ],
            timeout: Some(prost_types::Duration {
                seconds: 30,
                nanos: 0,
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(exec.result.expect("ExecTask sets result").exit_code, 3);
    assert!(String::from_utf8_lossy(&exec.stdout).contains("exec-out"));
    assert!(String::from_utf8_lossy(&[exec.stdout, exec.stderr].concat()).contains("exec-err"));

    // Timeout 0 is "no limit" to the agent.
    let unlimited = driver
        .exec_task(ExecTaskRequest {
            task_id: task_id.clone(),
            command: vec!["true".into()],
            timeout: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unlimited.result.unwrap().exit_code, 0);

    let missing = driver
        .signal_task(SignalTaskRequest {
            task_id: task_id.clone(),
            signal: "SIGNOPE".into(),
        })
        .await
        .unwrap_err();
    assert_ne!(missing.code(), Code::Unavailable);

    // Stop: the pending WaitTask returns with the kill's result.
    let waiter = {
        let mut driver = plugin.driver();
        let id = task_id.clone();
        tokio::spawn(async move { driver.wait_task(wait_request(&id)).await })
    };
    driver
        .stop_task(StopTaskRequest {
            task_id: task_id.clone(),
            timeout: Some(prost_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
            signal: "SIGTERM".into(),
        })
        .await
        .unwrap();
    let waited = tokio::time::timeout(DEADLINE, waiter)
        .await
        .expect("WaitTask returns after StopTask")
        .unwrap()
        .unwrap()
        .into_inner();
    let result = waited.result.expect("WaitTask always sets result");
    assert!(result.exit_code != 0 || result.signal != 0, "{result:?}");
    // Stopping again and waiting again are fine on an exited task.
    driver
        .stop_task(StopTaskRequest {
            task_id: task_id.clone(),
            timeout: Some(prost_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
            signal: String::new(),
        })
        .await
        .unwrap();
    let again = driver
        .wait_task(wait_request(&task_id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.result, Some(result));
    let exited = driver
        .inspect_task(InspectTaskRequest {
            task_id: task_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert_eq!(exited.state, drivers::TaskState::Exited as i32);
    assert!(exited.completed_at.unwrap().seconds > 0);

    driver
        .destroy_task(DestroyTaskRequest {
            task_id: task_id.clone(),
            force: true,
        })
        .await
        .unwrap();
    let gone = driver
        .inspect_task(InspectTaskRequest {
            task_id: task_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    let gone = driver.wait_task(wait_request(&task_id)).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    // The container is gone too (gc.container = true in the example config).
    let left = support::podman().cli_ok(&[
        "ps",
        "-a",
        "-q",
        "--filter",
        &format!("label={}", bed.cleanup.pair()),
    ]);
    assert_eq!(left, "");
    plugin.shut_down().await;
}

#[tokio::test]
async fn exit_codes_reach_every_waiter_nomad_1_6_agent() {
    exit_codes_reach_every_waiter(Agent::Nomad16).await;
}

#[tokio::test]
async fn exit_codes_reach_every_waiter_current_agent() {
    exit_codes_reach_every_waiter(Agent::default_agent()).await;
}

async fn exit_codes_reach_every_waiter(agent: Agent) {
    let bed = Bed::new("exitcode");
    let plugin = bed.plugin_as(agent).await;
    let alloc = bed.alloc();
    let task = bed::start(
        &plugin,
        &alloc,
        "batch",
        &bed.labelled(&shell_task("echo done; exit 7")),
    )
    .await;
    let waits = (0..3).map(|_| {
        let mut driver = plugin.driver();
        let id = task.id();
        tokio::spawn(async move { driver.wait_task(wait_request(&id)).await })
    });
    for waiter in waits.collect::<Vec<_>>() {
        let response = tokio::time::timeout(DEADLINE, waiter)
            .await
            .expect("the task exits")
            .unwrap()
            .unwrap()
            .into_inner();
        assert_eq!(response.result.unwrap().exit_code, 7);
        assert_eq!(response.err, "");
    }
    // Asked after the exit, the answer comes at once with the stored result.
    let late = plugin
        .driver()
        .wait_task(wait_request(&task.id()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(late.result.unwrap().exit_code, 7);
    task.files.stdout.wait_for("done").await;
    bed::stop_and_destroy(&plugin, &task.id()).await;
    plugin.shut_down().await;
}

#[tokio::test]
async fn image_pulls_are_task_events() {
    let bed = Bed::new("events");
    let plugin = bed.plugin().await;
    let mut events = plugin
        .driver()
        .task_events(TaskEventsRequest {})
        .await
        .unwrap()
        .into_inner();
    let alloc = bed.alloc();
    let hcl = format!(
        "image = {}\nforce_pull = true\nauth {{\n  tls_verify = false\n}}\ncommand = \"sleep\"\nargs = [\"300\"]\n",
        bed::quote(&support::registry().busybox())
    );
    let task = bed::start(&plugin, &alloc, "pulled", &bed.labelled(&hcl)).await;
    let event = tokio::time::timeout(DEADLINE, events.next())
        .await
        .expect("a task event")
        .expect("stream open")
        .unwrap();
    assert_eq!(event.alloc_id, alloc.id);
    assert_eq!(event.task_name, "pulled");
    assert!(event.timestamp.is_some());
    assert!(event.message.contains("image"), "{event:?}");
    bed::stop_and_destroy(&plugin, &task.id()).await;
    plugin.kill().await;
}

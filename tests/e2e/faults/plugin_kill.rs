//! The plugin SIGKILLed while 20 tasks run; some exit while it is down. A fresh plugin
//! process recovers every task from its handle without restarting or duplicating any.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use nomad_driver_podman::modes::plugin::proto::drivers;

use super::identity;
use crate::plugin::bed::{self, shell_task, Bed, Started};
use crate::plugin::recovery::{persisted, recover, state_of};
use crate::support;

const TASKS: usize = 20;
/// Exit codes of the tasks that exit while the plugin is down (tasks 0..6); the rest run.
const EXIT_CODES: [i32; 6] = [3, 5, 7, 11, 13, 17];
/// Bound on waits that should end promptly; a guard against hangs, not a timing check.
const DEADLINE: Duration = Duration::from_secs(90);

fn exit_code_of(index: usize) -> Option<i32> {
    EXIT_CODES.get(index).copied()
}

#[tokio::test]
async fn sigkilled_plugin_recovers_20_tasks_with_real_exit_codes_and_no_restarts() {
    let bed = Bed::new("fault-kill");
    let podman = support::podman();
    let label = bed.cleanup.pair();
    let first = bed.plugin().await;
    let alloc = bed.alloc();

    let names: Vec<String> = (0..TASKS).map(|i| format!("t{i:02}")).collect();
    let tasks: Vec<Started> = futures::stream::iter(names.iter().enumerate())
        .map(|(i, name)| {
            let script = match exit_code_of(i) {
                // Exits once the test says so: after the plugin is gone.
                Some(code) => {
                    format!("while [ ! -e /alloc/data/exit-now ]; do sleep 0.1; done; exit {code}")
                }
                None => "exec sleep 3600".to_string(),
            };
            let hcl = bed.labelled(&shell_task(&script));
            let (first, alloc) = (&first, &alloc);
            async move { bed::start(first, alloc, name, &hcl).await }
        })
        .buffered(4)
        .collect()
        .await;
    let container = |name: &str| format!("{name}-{}", alloc.id);
    let before: HashMap<String, (String, String, String)> = names
        .iter()
        .map(|n| (n.clone(), identity(podman, &container(n))))
        .collect();

    first.kill().await;
    std::fs::write(alloc.dir.join("alloc/data/exit-now"), b"").unwrap();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let exited = podman.cli_ok(&[
            "ps",
            "-a",
            "-q",
            "--filter",
            &format!("label={label}"),
            "--filter",
            "status=exited",
        ]);
        if exited.lines().count() == EXIT_CODES.len() {
            break;
        }
        assert!(Instant::now() < deadline, "the exiting tasks never exited");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let second = bed.plugin().await;
    let recovery_started = Instant::now();
    for task in &tasks {
        recover(&second, persisted(task.handle()))
            .await
            .unwrap_or_else(|e| panic!("RecoverTask {}: {e}", task.id()));
    }
    let recovery_took = recovery_started.elapsed();

    let mut reported = Vec::new();
    for (i, task) in tasks.iter().enumerate() {
        match exit_code_of(i) {
            Some(code) => {
                let result = bed::wait_result(
                    &second,
                    &task.id(),
                    DEADLINE,
                    "a task that exited while the plugin was down",
                )
                .await;
                assert_eq!(result.exit_code, code, "{}", names[i]);
                reported.push(result.exit_code);
            }
            None => assert_eq!(
                state_of(&second, &task.id()).await,
                drivers::TaskState::Running as i32,
                "{}",
                names[i]
            ),
        }
    }

    // Same containers, never restarted, and no second copy of any.
    for (i, name) in names.iter().enumerate() {
        let (id, started_at, status) = identity(podman, &container(name));
        let (id_before, started_before, _) = &before[name];
        assert_eq!(&id, id_before, "{name} is the same container");
        assert_eq!(&started_at, started_before, "{name} was not restarted");
        let expected = if exit_code_of(i).is_some() {
            "exited"
        } else {
            "running"
        };
        assert_eq!(status, expected, "{name}");
    }
    let count = podman.containers_labelled(&label).len();
    assert_eq!(count, TASKS, "no duplicate containers");

    println!(
        "faults/plugin SIGKILL: {TASKS} tasks recovered in {recovery_took:?} by a fresh plugin: \
         {} running (same id, same StartedAt), {} exited with codes {reported:?}; containers by label = {count}",
        TASKS - EXIT_CODES.len(),
        EXIT_CODES.len()
    );

    futures::stream::iter(tasks.iter())
        .for_each_concurrent(4, |task| bed::stop_and_destroy(&second, &task.config.id))
        .await;
    assert!(podman.containers_labelled(&label).is_empty());
    second.kill().await;
}

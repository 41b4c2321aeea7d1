//! A hostile job against the plugin over the wire, under the recommended locked-down
//! config (examples/agent/locked-down.hcl): every attack is refused or harmless, no
//! container is left behind, and an ordinary job still runs.
//!
//! | attack | expected |
//! |---|---|
//! | log FIFO swapped for a link to a new host file, while running | no file created; output still reaches the real FIFO |
//! | log FIFO swapped for a link to an existing host file, while running | the file is unchanged |
//! | the same swap while the plugin is down, then RecoverTask | refused: warning event + log line naming the path; file unchanged; task still managed |
//! | each boundary-weakening option and host path | StartTask refused, naming the option and the gate |
//! | `container:` join of another allocation's container | refused |
//! | volume source flipped between a directory and a link to `/` by a sibling task | every start is refused or sees the directory, never the host root |

use std::path::Path;
use std::time::Duration;

use nomad_driver_podman::modes::plugin::proto::drivers::TaskEventsRequest;
use tokio_stream::StreamExt;
use tonic::Code;

use super::alloc::Alloc;
use super::bed::{self, Bed};
use super::gates::refused;
use super::recovery;
use crate::support;

/// Bound on waiting for something that must happen; not a timing check.
const DEADLINE: Duration = Duration::from_secs(60);

fn task(bed: &Bed, script: &str, extra: &str) -> String {
    bed.labelled(&format!("{}{extra}\n", bed::shell_task(script)))
}

fn containers_of(bed: &Bed) -> String {
    support::podman().cli_ok(&[
        "ps",
        "-a",
        "-q",
        "--filter",
        &format!("label={}", bed.cleanup.pair()),
    ])
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The container-side path of a host log FIFO (the alloc dir is mounted at /alloc).
fn in_container(alloc: &Alloc, host: &Path) -> String {
    let rest = host.strip_prefix(alloc.dir.join("alloc")).unwrap();
    format!("/alloc/{}", rest.display())
}

#[tokio::test]
async fn a_log_fifo_swapped_for_a_link_while_running_writes_no_host_file() {
    let bed = Bed::new("atk-fifo");
    let plugin = bed::locked_down_plugin(&bed).await;
    let alloc = bed.alloc();
    let victims = support::podman().scratch_dir("atk-victims");
    let created = victims.join("cron.d-x");
    let existing = victims.join("existing");
    std::fs::write(&existing, "host data\n").unwrap();

    // The task replaces both of its FIFOs with links before it prints anything, so a
    // sink opened (or reopened) by path would follow them.
    let (out, err) = (
        alloc.dir.join("alloc/logs/.swap.stdout.fifo"),
        alloc.dir.join("alloc/logs/.swap.stderr.fifo"),
    );
    let script = format!(
        "rm {out} {err}; ln -s {created} {out}; ln -s {existing} {err}; \
         echo '* * * * * root touch /pwned'; echo appended >&2; echo done-out; echo done-err >&2; sleep 300",
        out = in_container(&alloc, &out),
        err = in_container(&alloc, &err),
        created = created.display(),
        existing = existing.display(),
    );
    let started = bed::start(&plugin, &alloc, "swap", &task(&bed, &script, "")).await;
    // Output still goes to the FIFOs the agent made (the readers hold them).
    started.files.stdout.wait_for("done-out").await;
    started.files.stderr.wait_for("done-err").await;
    assert!(
        std::fs::symlink_metadata(&out)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the task did swap the FIFO"
    );
    assert!(
        !created.exists(),
        "no host file was created through the link"
    );
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "host data\n");
    bed::stop_and_destroy(&plugin, &started.id()).await;
    assert!(containers_of(&bed).trim().is_empty());
    plugin.kill().await;
}

#[tokio::test]
async fn a_log_fifo_swapped_while_the_plugin_is_down_is_refused_on_recovery() {
    let bed = Bed::new("atk-recover");
    let first = bed::locked_down_plugin(&bed).await;
    let alloc = bed.alloc();
    let victims = support::podman().scratch_dir("atk-recover-victims");
    let created = victims.join("cron.d-x");
    let out = alloc.dir.join("alloc/logs/.late.stdout.fifo");
    let go = alloc.dir.join("alloc/data/go");
    // Swaps its stdout FIFO once told to (after the plugin that started it is gone),
    // then prints forever.
    let script = format!(
        "echo ready; while [ ! -e /alloc/data/go ]; do sleep 0.1; done; \
         rm {out}; ln -s {created} {out}; touch /alloc/data/swapped; \
         while true; do echo attack; sleep 0.2; done",
        out = in_container(&alloc, &out),
        created = created.display(),
    );
    let started = bed::start(&first, &alloc, "late", &task(&bed, &script, "")).await;
    started.files.stdout.wait_for("ready").await;
    first.kill().await;
    std::fs::write(&go, "").unwrap();
    let swapped = alloc.dir.join("alloc/data/swapped");
    wait_until("the task swapped its FIFO", || swapped.exists()).await;

    let second = bed::locked_down_plugin(&bed).await;
    let mut events = second
        .driver()
        .task_events(TaskEventsRequest {})
        .await
        .unwrap()
        .into_inner();
    recovery::recover(&second, started.handle())
        .await
        .expect("the task itself is recovered");
    let event = tokio::time::timeout(DEADLINE, async {
        loop {
            let event = events.next().await.expect("stream open").unwrap();
            if event.message.contains("refused") {
                return event;
            }
        }
    })
    .await
    .expect("a task event about the refused sink");
    assert_eq!(event.task_id, started.id());
    assert!(
        event.message.contains(&out.display().to_string()),
        "{event:?}"
    );
    assert!(event.message.contains("symbolic link"), "{event:?}");
    wait_until("the plugin logs the refusal", || {
        second
            .stderr_lines()
            .iter()
            .any(|l| l.contains("refused") && l.contains(".late.stdout.fifo"))
    })
    .await;
    assert!(
        !created.exists(),
        "no host file was created through the link"
    );
    // The task is still managed: stop and destroy work and leave nothing behind.
    bed::stop_and_destroy(&second, &started.id()).await;
    assert!(containers_of(&bed).trim().is_empty());
    second.kill().await;
}

#[tokio::test]
async fn every_boundary_weakening_option_is_refused_naming_its_gate() {
    let bed = Bed::new("atk-gates");
    let plugin = bed::locked_down_plugin(&bed).await;
    let alloc = bed.alloc();
    // A container of another allocation, which a task must not join.
    let other = bed::start(
        &plugin,
        &bed.alloc(),
        "victim",
        &task(&bed, "sleep 300", ""),
    )
    .await;
    let other_name = format!("victim-{}", other.config.alloc_id);
    let cases: Vec<(&str, String, &str)> = vec![
        ("dev", "devices = [\"/dev/vda\"]".into(), "config.devices: \"/dev/vda\" is not in the plugin option allow_devices"),
        ("unmask", "security_opt = [\"unmask=ALL\"]".into(), "config.security_opt: \"unmask=ALL\" weakens the container boundary and is refused by the plugin option allow_privileged = false"),
        ("syspaths", "security_opt = [\"systempaths=unconfined\"]".into(), "config.security_opt: \"systempaths=unconfined\""),
        ("seccomp", "security_opt = [\"seccomp=unconfined\"]".into(), "config.security_opt: \"seccomp=unconfined\""),
        ("apparmor", "security_opt = [\"apparmor=unconfined\"]".into(), "config.security_opt: \"apparmor=unconfined\""),
        ("labeldis", "security_opt = [\"label=disable\"]".into(), "config.security_opt: \"label=disable\""),
        ("labeltype", "security_opt = [\"label=type:spc_t\"]".into(), "config.security_opt: \"label=type:spc_t\""),
        ("aaprofile", "apparmor_profile = \"unconfined\"".into(), "config.apparmor_profile: \"unconfined\""),
        ("hostnet", "network_mode = \"host\"".into(), "config.network_mode: \"host\" is refused by the plugin option allow_host_network = false"),
        ("nsnet", "network_mode = \"ns:/proc/1/ns/net\"".into(), "config.network_mode: \"ns:/proc/1/ns/net\""),
        ("hostipc", "ipc_mode = \"host\"".into(), "config.ipc_mode: \"host\" weakens"),
        ("nsuser", "userns = \"ns:/proc/1/ns/user\"".into(), "config.userns: \"ns:/proc/1/ns/user\""),
        ("initpath", "init = true\ninit_path = \"/bin/busybox\"".into(), "config.init_path: \"/bin/busybox\" names a host path; host paths are not allowed: plugin option volumes.enabled = false"),
        ("joinnet", format!("network_mode = \"container:{other_name}\""), "is not a task of this allocation"),
        ("joinipc", format!("ipc_mode = \"container:{other_name}\""), "config.ipc_mode: \"container:"),
        ("hostvol", "volumes = [\"/etc:/hostetc\"]".into(), "config.volumes"),
        ("hostpid", "pid_mode = \"host\"".into(), "config.pid_mode: \"host\" weakens"),
        ("hostuts", "uts_mode = \"host\"".into(), "config.uts_mode: \"host\" weakens"),
        ("joinpid", format!("pid_mode = \"container:{other_name}\""), "config.pid_mode: \"container:"),
        ("bindetc", "mount {\n  type = \"bind\"\n  source = \"/etc\"\n  target = \"/hostetc\"\n}".into(), "config.mount[0].source"),
        ("voldriver", "mount {\n  source = \"x\"\n  target = \"/x\"\n  volume_options {\n    driver_config {\n      name = \"local\"\n      options = [{ type = \"none\", o = \"bind\", device = \"/etc\" }]\n    }\n  }\n}".into(), "config.mount[0].volume_options.driver_config"),
    ];
    for (name, options, want) in cases {
        let status = refused(&plugin, &alloc, name, &task(&bed, "true", &options)).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{name}: {status:?}");
        assert!(
            status.message().contains(want),
            "{name}: {:?} does not contain {want:?}",
            status.message()
        );
    }
    bed::stop_and_destroy(&plugin, &other.id()).await;
    assert!(
        containers_of(&bed).trim().is_empty(),
        "no refused task left a container"
    );
    plugin.kill().await;
}

#[tokio::test]
async fn a_volume_source_flipped_to_a_link_never_mounts_the_host() {
    let bed = Bed::new("atk-flip");
    let plugin = bed::locked_down_plugin(&bed).await;
    let alloc = bed.alloc();
    let data = alloc.dir.join("alloc/data");
    std::fs::create_dir(data.join("flip")).unwrap();
    std::fs::write(data.join("flip/marker"), "inside\n").unwrap();
    // A sibling task of the allocation turns alloc/data/flip into a link to the host's
    // root and back. Each state lasts long enough for one step of a start to see it (the
    // check, podman's create, the runtime's mount take some tens of ms each), so starts
    // land in every combination: checked a link (refused), checked the directory and
    // mounted it, checked the directory and mounted the link (caught after init).
    let flipper = bed::start(
        &plugin,
        &alloc,
        "flipper",
        &task(
            &bed,
            "cd /alloc/data; while true; do sleep 0.15; mv flip stash; ln -s / flip; sleep 0.15; rm flip; mv stash flip; done",
            "",
        ),
    )
    .await;
    let mut outcomes = (0, 0, 0);
    for attempt in 0..12 {
        let name = format!("victim{attempt}");
        let options = format!("volumes = [\"{}:/mnt\"]", data.join("flip").display());
        let files = alloc.task(&name);
        let config = alloc.task_config(
            &name,
            &files,
            bed::task_msgpack(&plugin, &task(&bed, "test -e /mnt/marker", &options)).await,
        );
        let answer = plugin
            .driver()
            .start_task(
                nomad_driver_podman::modes::plugin::proto::drivers::StartTaskRequest {
                    task: Some(config.clone()),
                },
            )
            .await;
        match answer {
            Ok(_) => {
                let result = bed::wait_result(&plugin, &config.id, DEADLINE, &name).await;
                assert_eq!(
                    result.exit_code, 0,
                    "attempt {attempt}: the started task saw something else than the checked directory at /mnt"
                );
                bed::stop_and_destroy(&plugin, &config.id).await;
                outcomes.0 += 1;
            }
            Err(status) => {
                // Refused by the driver, or the runtime found no source at all (the flip
                // has a moment with neither directory nor link): nothing was mounted.
                let flip = data.join("flip").display().to_string();
                assert!(
                    status.message().contains("config.volumes")
                        || (status.message().contains(&flip)
                            && status.message().contains("no such file or directory")),
                    "attempt {attempt}: {status:?}"
                );
                if status.message().contains("shows another file") {
                    outcomes.2 += 1;
                } else {
                    outcomes.1 += 1;
                }
            }
        }
    }
    println!(
        "flip: {} started safely, {} refused at the check, {} caught after init",
        outcomes.0, outcomes.1, outcomes.2
    );
    bed::stop_and_destroy(&plugin, &flipper.id()).await;
    assert!(containers_of(&bed).trim().is_empty());
    plugin.kill().await;
}

#[tokio::test]
async fn an_ordinary_job_still_runs_under_the_locked_down_config() {
    let bed = Bed::new("atk-ordinary");
    let plugin = bed::locked_down_plugin(&bed).await;
    let alloc = bed.alloc();
    let data = alloc.dir.join("alloc/data");
    std::fs::write(data.join("input"), "from the alloc dir\n").unwrap();
    let options = format!("volumes = [\"{}:/in:ro\"]", data.display());
    let started = bed::start(
        &plugin,
        &alloc,
        "ordinary",
        &task(
            &bed,
            "cat /in/input; echo err >&2; echo hi > /alloc/data/out",
            &options,
        ),
    )
    .await;
    let result = bed::wait_result(&plugin, &started.id(), DEADLINE, "ordinary").await;
    assert_eq!(result.exit_code, 0);
    started.files.stdout.wait_for("from the alloc dir").await;
    started.files.stderr.wait_for("err").await;
    assert_eq!(std::fs::read_to_string(data.join("out")).unwrap(), "hi\n");
    bed::stop_and_destroy(&plugin, &started.id()).await;
    plugin.kill().await;
}

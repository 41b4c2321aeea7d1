//! The operator gates of the recommended (locked-down) plugin configuration, over the wire:
//! each refuses what it should before any container exists, and allows the rest.

use nomad_driver_podman::modes::plugin::proto::drivers::StartTaskRequest;
use tonic::Code;

use super::alloc::Alloc;
use super::bed::{self, Bed};
use crate::plugin::agent::Plugin;
use crate::support;

pub(crate) async fn refused(
    plugin: &Plugin,
    alloc: &Alloc,
    name: &str,
    hcl: &str,
) -> tonic::Status {
    let files = alloc.task(name);
    let config = alloc.task_config(name, &files, bed::task_msgpack(plugin, hcl).await);
    plugin
        .driver()
        .start_task(StartTaskRequest { task: Some(config) })
        .await
        .expect_err("the gate refuses the task")
}

#[tokio::test]
async fn locked_down_config_refuses_privilege_caps_and_host_paths() {
    let bed = Bed::new("gates");
    let plugin = bed::locked_down_plugin(&bed).await;
    let alloc = bed.alloc();
    let task = |extra: &str| bed.labelled(&format!("{}{extra}\n", bed::shell_task("sleep 30")));

    let status = refused(&plugin, &alloc, "priv", &task("privileged = true")).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("allow_privileged"), "{status:?}");

    let status = refused(&plugin, &alloc, "caps", &task("cap_add = [\"SYS_ADMIN\"]")).await;
    assert!(status.message().contains("allow_caps"), "{status:?}");
    assert!(status.message().contains("SYS_ADMIN"), "{status:?}");

    let status = refused(
        &plugin,
        &alloc,
        "hostpath",
        &task("volumes = [\"/etc:/hostetc\"]"),
    )
    .await;
    assert!(status.message().contains("volumes"), "{status:?}");

    // A link inside the allocation that points out of it is no way around the gate.
    let escape = alloc.dir.join("escape");
    std::os::unix::fs::symlink("/etc", &escape).unwrap();
    let status = refused(
        &plugin,
        &alloc,
        "symlink",
        &task(&format!("volumes = [\"{}:/x\"]", escape.display())),
    )
    .await;
    assert!(status.message().contains("volumes"), "{status:?}");
    assert!(
        support::podman()
            .cli_ok(&[
                "ps",
                "-a",
                "-q",
                "--filter",
                &format!("label={}", bed.cleanup.pair())
            ])
            .trim()
            .is_empty(),
        "no refused task left a container"
    );

    // What the gates allow still runs: an allowed capability, a path inside the alloc dir.
    let inside = alloc.dir.join("alloc/data");
    let started = bed::start(
        &plugin,
        &alloc,
        "allowed",
        &task(&format!(
            "cap_add = [\"CHOWN\"]\nvolumes = [\"{}:/data\"]",
            inside.display()
        )),
    )
    .await;
    bed::stop_and_destroy(&plugin, &started.id()).await;
}

//! The docker driver's options people migrate with (`mount` blocks, `healthchecks`,
//! `pid_mode`, `uts_mode`), over the wire as Nomad sends them, each proved inside the
//! container or by podman's inspect.

use super::bed::{self, shell_task, Bed};
use crate::support;

fn inspect(name: &str) -> serde_json::Value {
    let out = support::podman().cli_ok(&["inspect", "--type", "container", name]);
    serde_json::from_str::<serde_json::Value>(&out).unwrap()[0].clone()
}

#[tokio::test]
async fn the_docker_drivers_mount_blocks_and_namespaces_work() {
    let bed = Bed::new("dockeropts");
    let plugin = bed.plugin().await;
    let alloc = bed.alloc();
    let volume = support::unique_name("ndp-cache");
    // The task dir's local/conf, as the docker driver resolves a relative bind source.
    std::fs::create_dir_all(alloc.dir.join("web/local/conf")).unwrap();
    std::fs::write(
        alloc.dir.join("web/local/conf/app.ini"),
        "from-the-task-dir\n",
    )
    .unwrap();
    let host_init = std::fs::read_to_string("/proc/1/comm").unwrap();
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    let script = "cat /etc/app/app.ini; \
                  touch /etc/app/new 2>/dev/null && echo bind-writable || echo bind-readonly; \
                  grep ' /scratch ' /proc/mounts; \
                  echo cache > /cache/marker; \
                  echo pid1=$(cat /proc/1/comm); echo uts=$(hostname); echo done";
    let options = format!(
        r#"
mount {{
  type     = "bind"
  source   = "local/conf"
  target   = "/etc/app"
  readonly = true
  bind_options {{
    propagation = "rslave"
  }}
}}
mount {{
  type   = "tmpfs"
  target = "/scratch"
  tmpfs_options {{
    size = 10000000
  }}
}}
mount {{
  type   = "volume"
  source = "{volume}"
  target = "/cache"
}}
healthchecks {{
  disable = true
}}
pid_mode = "host"
uts_mode = "host"
"#
    );
    let started = bed::start(
        &plugin,
        &alloc,
        "web",
        &bed.labelled(&format!("{}{options}", shell_task(script))),
    )
    .await;
    let out = started.files.stdout.wait_for("done").await;
    assert!(out.contains("from-the-task-dir"), "{out}");
    assert!(out.contains("bind-readonly"), "{out}");
    // 10000000 bytes in whole pages.
    assert!(
        out.contains("tmpfs /scratch tmpfs") && out.contains("size=9768k"),
        "{out}"
    );
    assert!(out.contains(&format!("pid1={}", host_init.trim())), "{out}");
    assert!(out.contains(&format!("uts={host_name}")), "{out}");
    let container = inspect(&format!("web-{}", alloc.id));
    assert_eq!(container["HostConfig"]["PidMode"], "host");
    assert_eq!(container["HostConfig"]["UTSMode"], "host");
    let labels = support::podman().cli_ok(&[
        "volume",
        "inspect",
        &volume,
        "--format",
        "{{index .Labels \"io.nomad-driver-podman.managed\"}}",
    ]);
    assert_eq!(labels, "true", "the volume is created and labelled as ours");
    bed::stop_and_destroy(&plugin, &started.id()).await;

    // The named volume outlives the task: a new task of the job finds its data.
    let again = bed::start(
        &plugin,
        &alloc,
        "web2",
        &bed.labelled(&format!(
            "{}mount {{\n  source = \"{volume}\"\n  target = \"/cache\"\n}}\n",
            shell_task("cat /cache/marker; echo done")
        )),
    )
    .await;
    let out = again.files.stdout.wait_for("done").await;
    assert!(out.contains("cache"), "{out}");
    bed::stop_and_destroy(&plugin, &again.id()).await;
    support::podman().cli_ok(&["volume", "rm", &volume]);
    plugin.kill().await;
}

#[tokio::test]
async fn healthchecks_disable_drops_the_images_healthcheck() {
    let bed = Bed::new("health");
    let plugin = bed.plugin().await;
    let alloc = bed.alloc();
    // An image that declares a healthcheck (docker format keeps it).
    let image = format!("localhost/{}:latest", support::unique_name("ndp-health"));
    let context = support::podman().scratch_dir("healthimg");
    std::fs::write(
        context.join("Containerfile"),
        format!(
            "FROM {}\nHEALTHCHECK --interval=1h CMD true\n",
            support::BUSYBOX_IMAGE
        ),
    )
    .unwrap();
    support::podman().cli_ok(&[
        "build",
        "--format",
        "docker",
        "--pull=never",
        "-t",
        &image,
        &context.display().to_string(),
    ]);
    let task = |extra: &str| {
        bed.labelled(&format!(
            "image = {}\ncommand = \"sleep\"\nargs = [\"300\"]\n{extra}",
            bed::quote(&image)
        ))
    };
    let kept = bed::start(&plugin, &alloc, "kept", &task("")).await;
    let disabled = bed::start(
        &plugin,
        &alloc,
        "disabled",
        &task("healthchecks {\n  disable = true\n}\n"),
    )
    .await;
    let test_of = |name: &str| {
        inspect(&format!("{name}-{}", alloc.id))["Config"]["Healthcheck"]["Test"].clone()
    };
    assert_eq!(
        test_of("kept"),
        serde_json::json!(["CMD-SHELL", "true"]),
        "without the block, podman keeps the image's healthcheck"
    );
    let disabled_test = test_of("disabled");
    assert!(
        disabled_test.is_null() || disabled_test == serde_json::json!(["NONE"]),
        "no healthcheck: {disabled_test}"
    );
    for task in [&kept, &disabled] {
        bed::stop_and_destroy(&plugin, &task.id()).await;
    }
    support::podman().cli_ok(&["rmi", &image]);
    plugin.kill().await;
}

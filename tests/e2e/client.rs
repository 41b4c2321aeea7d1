//! e2e: the libpod client against the private podman service.

mod image;
mod logs;

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use nomad_driver_podman::driver::podman::{
    DeleteOptions, EventsOptions, ExecConfig, Frame, ListOptions, LogOptions, PodmanClient,
    PodmanError, PullOptions, RegistryCredentials, StreamKind, WaitCondition,
};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::support::{self, podman, LabelCleanup, BUSYBOX_IMAGE};

/// Guards against a hung test; not a timing assertion.
pub(crate) async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(120), fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish"))
}

pub(crate) fn spec(label: &LabelCleanup, name: &str, cmd: &[&str]) -> Value {
    json!({
        "name": name,
        "image": BUSYBOX_IMAGE,
        "command": cmd,
        "labels": {label.key.clone(): label.value.clone()},
    })
}

/// Creates and starts a labelled busybox container running `cmd`; returns its id.
pub(crate) async fn run(client: &PodmanClient, label: &LabelCleanup, cmd: &[&str]) -> String {
    run_spec(client, spec(label, &support::unique_name("c"), cmd)).await
}

pub(crate) async fn run_spec(client: &PodmanClient, spec: Value) -> String {
    let created = client.container_create(&spec).await.expect("create");
    client.container_start(&created.id).await.expect("start");
    created.id
}

/// Everything the container logged so far, both streams.
async fn logs_text(client: &PodmanClient, id: &str) -> String {
    let frames: Vec<Frame> = client
        .container_logs(
            id,
            &LogOptions {
                stdout: true,
                stderr: true,
                ..LogOptions::default()
            },
        )
        .await
        .expect("logs")
        .filter_map(|f| async move { f.ok() })
        .collect()
        .await;
    frames
        .iter()
        .map(|f| String::from_utf8_lossy(&f.payload).into_owned())
        .collect()
}

fn text(frames: &[Frame], stream: StreamKind) -> String {
    frames
        .iter()
        .filter(|f| f.stream == stream)
        .map(|f| String::from_utf8_lossy(&f.payload).into_owned())
        .collect()
}

#[tokio::test]
async fn ping_info_and_version_describe_the_private_service() {
    let client = support::client();
    let version = client.ping().await.expect("ping");
    assert!(version.starts_with(char::is_numeric), "{version}");
    let info = client.info().await.expect("info");
    let host = info.host.expect("host section");
    assert_eq!(host.oci_runtime.name, "runc");
    assert_eq!(host.cgroup_manager, "cgroupfs");
    assert_eq!(host.security.rootless, support::lane().is_rootless());
    assert!(host.security.capabilities.contains("CAP_CHOWN"));
    assert_eq!(
        host.remote_socket.path,
        podman().socket_url(),
        "info names our socket"
    );
    assert_eq!(info.version.api_version, version);
    let v = client.version().await.expect("version");
    assert_eq!(v.version, version);
}

#[tokio::test]
async fn unreachable_socket_is_a_transport_error() {
    let dir = podman().scratch_dir("nosock");
    let client = PodmanClient::new(
        &format!("unix://{}/missing.sock", dir.display()),
        Some(Duration::from_secs(5)),
    )
    .expect("client");
    let err = client.ping().await.expect_err("no service there");
    assert!(err.is_unavailable(), "{err:?}");
    assert!(err.to_string().contains("missing.sock"), "{err}");
}

#[tokio::test]
async fn container_lifecycle() {
    let client = support::client();
    let label = LabelCleanup::new("lifecycle");
    let name = support::unique_name("life");
    // busybox sh as PID 1 ignores SIGTERM unless it traps it.
    let created = client
        .container_create(&spec(
            &label,
            &name,
            &[
                "sh",
                "-c",
                "trap 'exit 3' TERM; echo ready; while true; do sleep 0.1; done",
            ],
        ))
        .await
        .expect("create");
    assert_eq!(created.id.len(), 64);
    client.container_start(&created.id).await.expect("start");
    client
        .container_start(&created.id)
        .await
        .expect("starting a running container succeeds");

    let inspect = client
        .container_inspect(&name)
        .await
        .expect("inspect by name");
    assert_eq!(inspect.id, created.id);
    assert_eq!(inspect.name, name);
    assert!(inspect.state.running);
    assert_eq!(inspect.state.status, "running");
    assert!(inspect.state.pid > 0);
    assert!(inspect.state.started_at().is_some());
    assert_eq!(inspect.config.labels.get(&label.key), Some(&label.value));
    assert_eq!(inspect.raw["Id"], json!(created.id));

    let listed = client
        .container_list(&ListOptions {
            all: true,
            labels: vec![label.pair()],
            ..ListOptions::default()
        })
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, created.id);
    assert_eq!(listed[0].state, "running");

    let running = client
        .container_wait(&created.id, &[WaitCondition::Running])
        .await
        .expect("wait running");
    assert_eq!(running, -1, "no exit code while running");

    // SIGTERM before the trap is set would be ignored by PID 1.
    within("trap installed", async {
        while !logs_text(&client, &created.id).await.contains("ready") {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    client
        .container_kill(&created.id, "SIGTERM")
        .await
        .expect("kill");
    let code = within(
        "wait exited",
        client.container_wait(&created.id, &[WaitCondition::Exited]),
    )
    .await
    .expect("wait");
    assert_eq!(code, 3);
    let inspect = client
        .container_inspect(&created.id)
        .await
        .expect("inspect");
    assert!(!inspect.state.running);
    assert_eq!(inspect.state.exit_code, 3);
    assert!(inspect.state.finished_at().is_some());

    client
        .container_stop(&created.id, Duration::from_secs(1))
        .await
        .expect("stopping a stopped container succeeds");
    client
        .container_delete(&created.id, DeleteOptions::default())
        .await
        .expect("delete");
    let err = client
        .container_inspect(&created.id)
        .await
        .expect_err("gone");
    assert!(err.is_not_found(), "{err:?}");
    let err = client
        .container_delete(&created.id, DeleteOptions::default())
        .await
        .expect_err("already gone");
    assert!(err.is_not_found(), "{err:?}");
}

#[tokio::test]
async fn stop_escalates_to_kill_after_the_timeout() {
    let client = support::client();
    let label = LabelCleanup::new("stop");
    // PID 1 without a SIGTERM handler never sees SIGTERM: only the kill after the timeout
    // ends it.
    let id = run(&client, &label, &["sleep", "1000"]).await;
    within("stop", client.container_stop(&id, Duration::from_secs(1)))
        .await
        .expect("stop");
    let inspect = client.container_inspect(&id).await.expect("inspect");
    assert!(!inspect.state.running);
    assert_eq!(inspect.state.exit_code, 137);
    client
        .container_delete(
            &id,
            DeleteOptions {
                volumes: true,
                ..DeleteOptions::default()
            },
        )
        .await
        .expect("delete");
}

#[tokio::test]
async fn forced_delete_removes_a_running_container() {
    let client = support::client();
    let label = LabelCleanup::new("forcedel");
    let id = run(&client, &label, &["sleep", "1000"]).await;
    let err = client
        .container_delete(&id, DeleteOptions::default())
        .await
        .expect_err("running containers need force");
    assert!(
        err.to_string().contains("running"),
        "podman's message kept: {err}"
    );
    client
        .container_delete(
            &id,
            DeleteOptions {
                force: true,
                volumes: true,
                stop_timeout: Some(Duration::ZERO),
            },
        )
        .await
        .expect("forced delete");
    assert!(client
        .container_inspect(&id)
        .await
        .expect_err("gone")
        .is_not_found());
}

#[tokio::test]
async fn errors_are_typed_and_keep_podmans_message() {
    let client = support::client();
    let label = LabelCleanup::new("errors");

    let missing = support::unique_name("missing");
    match client.container_inspect(&missing).await {
        Err(PodmanError::NotFound { operation, message }) => {
            assert!(operation.contains(&missing), "{operation}");
            assert!(message.contains("no such container"), "{message}");
        }
        other => panic!("expected NotFound, got {other:?}"),
    }

    // 409: exec in a paused container (rootless cgroup v1 podman cannot pause).
    let id = run(&client, &label, &["sleep", "1000"]).await;
    if !support::skip_without_limits_or_stats("pausing (the 409 case)") {
        podman().cli_ok(&["pause", &id]);
        let err = client
            .exec_create(
                &id,
                &ExecConfig {
                    cmd: vec!["true".into()],
                    ..ExecConfig::default()
                },
            )
            .await
            .expect_err("paused");
        assert!(
            matches!(&err, PodmanError::Conflict { message, .. } if message.contains("paused")),
            "{err:?}"
        );
        podman().cli_ok(&["unpause", &id]);
    }

    // 500: the runtime refuses a ulimit above the host's hard limit.
    let mut bad = spec(&label, &support::unique_name("badlimit"), &["true"]);
    bad["r_limits"] = json!([{"type": "nofile", "hard": 99_999_999u64, "soft": 99_999_999u64}]);
    let created = client.container_create(&bad).await.expect("create");
    match client.container_start(&created.id).await {
        Err(PodmanError::Server {
            status, message, ..
        }) => {
            assert_eq!(status, 500);
            assert!(message.contains("rlimit"), "{message}");
        }
        other => panic!("expected a 500, got {other:?}"),
    }

    // Creating the same name twice: podman 4 answers 500 with its message.
    let name = support::unique_name("dup");
    client
        .container_create(&spec(&label, &name, &["true"]))
        .await
        .expect("first");
    let err = client
        .container_create(&spec(&label, &name, &["true"]))
        .await
        .expect_err("second");
    assert!(err.to_string().contains("already in use"), "{err}");
}

#[tokio::test]
async fn stats_of_two_containers_in_one_request() {
    if support::skip_without_limits_or_stats("") {
        return;
    }
    let client = support::client();
    let label = LabelCleanup::new("stats");
    let a = run(&client, &label, &["sleep", "1000"]).await;
    let b = run(&client, &label, &["sleep", "1000"]).await;
    let ids = vec![a.clone(), b.clone()];

    let once = client.container_stats(&ids).await.expect("one-shot stats");
    let by_id: HashMap<_, _> = once.iter().map(|s| (s.container_id.clone(), s)).collect();
    assert_eq!(by_id.len(), 2);
    for id in [&a, &b] {
        let s = by_id[id];
        assert!(s.mem_usage > 0, "{s:?}");
        assert!(s.mem_limit > 0, "{s:?}");
        assert!(s.pids >= 1, "{s:?}");
        assert!(s.system_nano > 0, "{s:?}");
    }

    let mut stream = client
        .container_stats_stream(&ids, Duration::from_secs(1))
        .await
        .expect("stats stream");
    for _ in 0..2 {
        let sample = within("stats sample", stream.next())
            .await
            .expect("a sample")
            .expect("sample ok");
        let mut got: Vec<_> = sample.iter().map(|s| s.container_id.clone()).collect();
        got.sort();
        let mut want = ids.clone();
        want.sort();
        assert_eq!(got, want);
    }
    drop(stream);

    let gone = support::unique_name("gone");
    let err = client
        .container_stats(&[a.clone(), gone])
        .await
        .expect_err("one missing container fails the request");
    // Podman 4 answers 200 with the error in the report, podman 5 answers 404.
    assert!(
        matches!(
            err,
            PodmanError::Failed { .. } | PodmanError::NotFound { .. }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn logs_keep_stdout_and_stderr_apart() {
    let client = support::client();
    let label = LabelCleanup::new("logs");
    let id = run(
        &client,
        &label,
        &[
            "sh",
            "-c",
            "echo out1; echo err1 >&2; echo out2; printf partial >&2",
        ],
    )
    .await;
    within("exit", client.container_wait(&id, &[WaitCondition::Exited]))
        .await
        .expect("wait");

    let all = LogOptions {
        stdout: true,
        stderr: true,
        ..LogOptions::default()
    };
    let frames: Vec<Frame> = client
        .container_logs(&id, &all)
        .await
        .expect("logs")
        .map(|f| f.expect("frame"))
        .collect()
        .await;
    assert_eq!(text(&frames, StreamKind::Stdout), "out1\nout2\n");
    assert_eq!(text(&frames, StreamKind::Stderr), "err1\npartial");

    let only_err: Vec<Frame> = client
        .container_logs(
            &id,
            &LogOptions {
                stderr: true,
                ..LogOptions::default()
            },
        )
        .await
        .expect("stderr logs")
        .map(|f| f.expect("frame"))
        .collect()
        .await;
    assert!(only_err.iter().all(|f| f.stream == StreamKind::Stderr));

    let stamped: Vec<Frame> = client
        .container_logs(
            &id,
            &LogOptions {
                stdout: true,
                timestamps: true,
                ..LogOptions::default()
            },
        )
        .await
        .expect("timestamped logs")
        .map(|f| f.expect("frame"))
        .collect()
        .await;
    let lines: Vec<String> = stamped
        .iter()
        .map(|f| String::from_utf8_lossy(&f.payload).into_owned())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    for (line, want) in lines.iter().zip(["out1\n", "out2\n"]) {
        let (time, msg) = line.split_once(' ').expect("time prefix");
        assert!(
            nomad_driver_podman::driver::podman::parse_time(time).is_some(),
            "{line}"
        );
        assert_eq!(msg, want);
    }

    let future = client
        .container_logs(
            &id,
            &LogOptions {
                since: Some(SystemTime::now() + Duration::from_secs(3600)),
                ..all.clone()
            },
        )
        .await
        .expect("logs since the future");
    assert_eq!(future.count().await, 0);

    let err = client
        .container_logs(&support::unique_name("nologs"), &all)
        .await
        .err()
        .expect("missing container");
    assert!(err.is_not_found(), "{err:?}");
}

#[tokio::test]
async fn followed_logs_end_when_the_container_exits() {
    let client = support::client();
    let label = LabelCleanup::new("follow");
    let id = run(
        &client,
        &label,
        &[
            "sh",
            "-c",
            "for i in 1 2 3; do echo o$i; echo e$i >&2; sleep 0.2; done",
        ],
    )
    .await;
    let frames: Vec<Frame> = within(
        "followed logs",
        client
            .container_logs(
                &id,
                &LogOptions {
                    follow: true,
                    stdout: true,
                    stderr: true,
                    ..LogOptions::default()
                },
            )
            .await
            .expect("follow")
            .map(|f| f.expect("frame"))
            .collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(text(&frames, StreamKind::Stdout), "o1\no2\no3\n");
    assert_eq!(text(&frames, StreamKind::Stderr), "e1\ne2\ne3\n");
}

#[tokio::test]
async fn tty_container_logs_arrive_as_stdout() {
    let client = support::client();
    let label = LabelCleanup::new("ttylogs");
    let mut s = spec(
        &label,
        &support::unique_name("tty"),
        &["sh", "-c", "echo out; echo err >&2"],
    );
    s["terminal"] = json!(true);
    let id = run_spec(&client, s).await;
    within("exit", client.container_wait(&id, &[WaitCondition::Exited]))
        .await
        .expect("wait");
    let frames: Vec<Frame> = client
        .container_logs(
            &id,
            &LogOptions {
                stdout: true,
                stderr: true,
                ..LogOptions::default()
            },
        )
        .await
        .expect("logs")
        .map(|f| f.expect("frame"))
        .collect()
        .await;
    assert!(frames.iter().all(|f| f.stream == StreamKind::Stdout));
    assert_eq!(text(&frames, StreamKind::Stdout), "out\r\nerr\r\n");
}

#[tokio::test]
async fn events_are_filtered_by_label() {
    let client = support::client();
    let label = LabelCleanup::new("events");
    let other = LabelCleanup::new("events-other");
    let since = SystemTime::now() - Duration::from_secs(1);
    let other_id = run(&client, &other, &["true"]).await;
    let id = run(&client, &label, &["sh", "-c", "exit 5"]).await;

    let mut events = within(
        "events subscription",
        client.events(&EventsOptions {
            labels: vec![label.pair()],
            types: vec!["container".into()],
            since: Some(since),
            ..EventsOptions::default()
        }),
    )
    .await
    .expect("events");
    let mut actions = Vec::new();
    let died = within("died event", async {
        while let Some(event) = events.next().await {
            let event = event.expect("event");
            assert_eq!(event.id(), id, "only our container: {event:?}");
            assert_ne!(event.id(), other_id);
            assert_eq!(event.r#type, "container");
            actions.push(event.action.clone());
            if event.action == "died" {
                return event;
            }
        }
        panic!("event stream ended before `died`");
    })
    .await;
    assert_eq!(died.exit_code(), Some(5));
    assert!(died.time_nano > 0);
    assert!(actions.contains(&"start".to_string()), "{actions:?}");
}

#[tokio::test]
async fn exec_without_tty_separates_streams_and_takes_stdin() {
    let client = support::client();
    let label = LabelCleanup::new("exec");
    let id = run(&client, &label, &["sleep", "1000"]).await;
    let exec_id = client
        .exec_create(
            &id,
            &ExecConfig {
                cmd: vec![
                    "sh".into(),
                    "-c".into(),
                    "echo hi; echo \"$GREETING\" >&2; cat; echo done; exit 7".into(),
                ],
                attach_stdin: true,
                attach_stdout: true,
                attach_stderr: true,
                env: vec!["GREETING=hello from env".into()],
                working_dir: Some("/tmp".into()),
                ..ExecConfig::default()
            },
        )
        .await
        .expect("exec create");
    let mut session = client
        .exec_start(&exec_id, false, None)
        .await
        .expect("exec start");
    session.input.write_all(b"line one\n").await.expect("stdin");
    session.input.shutdown().await.expect("half-close stdin");
    let frames: Vec<Frame> = within(
        "exec output",
        session
            .output
            .map(|f| f.expect("frame"))
            .collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(text(&frames, StreamKind::Stdout), "hi\nline one\ndone\n");
    assert_eq!(text(&frames, StreamKind::Stderr), "hello from env\n");

    let inspect = within("exec exit", async {
        loop {
            let i = client.exec_inspect(&exec_id).await.expect("exec inspect");
            if !i.running {
                return i;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(inspect.exit_code, 7);
    assert_eq!(inspect.container_id, id);
}

#[tokio::test]
async fn exec_with_tty_is_raw_and_resizable() {
    let client = support::client();
    let label = LabelCleanup::new("exectty");
    let id = run(&client, &label, &["sleep", "1000"]).await;
    let exec_id = client
        .exec_create(
            &id,
            &ExecConfig {
                cmd: vec![
                    "sh".into(),
                    "-c".into(),
                    "read x; stty size; echo got:$x".into(),
                ],
                tty: true,
                attach_stdin: true,
                attach_stdout: true,
                attach_stderr: true,
                ..ExecConfig::default()
            },
        )
        .await
        .expect("exec create");
    // The size given to start is in place before the process runs; a resize of the
    // running session is accepted (podman 4.3 may apply it late, so its effect is not
    // asserted here: the size at start is what callers rely on).
    let mut session = client
        .exec_start(&exec_id, true, Some((33, 101)))
        .await
        .expect("exec start");
    client.exec_resize(&exec_id, 33, 101).await.expect("resize");
    session.input.write_all(b"hello\n").await.expect("stdin");
    let output: Vec<Frame> = within(
        "tty output",
        session
            .output
            .map(|f| f.expect("chunk"))
            .collect::<Vec<_>>(),
    )
    .await;
    let out = text(&output, StreamKind::Stdout);
    assert!(out.contains("33 101"), "{out:?}");
    assert!(out.contains("got:hello\r\n"), "{out:?}");

    let err = client
        .exec_resize(&support::unique_name("noexec"), 10, 10)
        .await
        .expect_err("unknown session");
    assert!(err.is_not_found(), "{err:?}");
}

#[tokio::test]
async fn network_and_image_existence() {
    let client = support::client();
    assert!(client
        .network_exists(podman().network_name())
        .await
        .expect("network exists"));
    assert!(!client
        .network_exists(&support::unique_name("nonet"))
        .await
        .expect("network missing"));

    assert!(client
        .image_exists(BUSYBOX_IMAGE)
        .await
        .expect("image exists"));
    assert!(!client
        .image_exists(&format!("localhost/{}", support::unique_name("noimg")))
        .await
        .expect("image missing"));
    let image = client.image_inspect(BUSYBOX_IMAGE).await.expect("inspect");
    assert_eq!(image.os, "linux");
    assert!(
        image.repo_tags.iter().any(|t| t == BUSYBOX_IMAGE),
        "{image:?}"
    );
    assert_eq!(image.config.cmd, vec!["/bin/sh"]);
    let err = client
        .image_inspect(&format!("localhost/{}", support::unique_name("noimg")))
        .await
        .expect_err("missing");
    assert!(err.is_not_found(), "{err:?}");
}

#[tokio::test]
async fn image_load_from_an_archive_stream() {
    let client = support::client();
    let name = format!("localhost/{}:latest", support::unique_name("load"));
    let dir = podman().scratch_dir("load");
    let archive = dir.join("image.tar");
    // An image id of its own: other tests tag and untag copies of the busybox image
    // concurrently, which must not touch what this test loads.
    podman()
        .import_busybox(&name, &[&format!("LABEL=load={name}")])
        .expect("import");
    podman().cli_ok(&[
        "save",
        "--format",
        "docker-archive",
        "-o",
        archive.to_str().expect("utf-8"),
        &name,
    ]);
    podman().cli_ok(&["rmi", &name]);
    assert!(!client.image_exists(&name).await.expect("exists"));

    let file = tokio::fs::File::open(&archive).await.expect("open archive");
    let names = client
        .image_load(tokio_util::io::ReaderStream::new(file))
        .await
        .expect("load");
    assert!(names.contains(&name), "{names:?}");
    assert!(client.image_exists(&name).await.expect("exists"));
    podman().cli_ok(&["rmi", &name]);
}

#[tokio::test]
async fn image_pull_reports_progress_and_auth_failures() {
    let client = support::client();
    let registry = support::registry();
    let mut progress = Vec::new();
    let id = client
        .image_pull(
            &PullOptions {
                reference: registry.busybox(),
                tls_verify: false,
                ..PullOptions::default()
            },
            |line| progress.push(line.to_string()),
        )
        .await
        .expect("pull");
    let local = client
        .image_inspect(&registry.busybox())
        .await
        .expect("pulled");
    assert_eq!(local.id, id);
    assert!(
        progress.iter().any(|l| l.contains("Trying to pull")),
        "{progress:?}"
    );

    let secured = support::auth_registry();
    let (user, password) = secured.credentials.clone().expect("credentials");
    client
        .image_pull(
            &PullOptions {
                reference: secured.busybox(),
                tls_verify: false,
                credentials: Some(RegistryCredentials {
                    username: user.clone(),
                    password: password.clone(),
                    server_address: secured.host(),
                }),
                ..PullOptions::default()
            },
            |_| {},
        )
        .await
        .expect("authenticated pull");

    let wrong = format!("{password}-wrong");
    let err = client
        .image_pull(
            &PullOptions {
                reference: secured.busybox(),
                tls_verify: false,
                credentials: Some(RegistryCredentials {
                    username: user,
                    password: wrong.clone(),
                    server_address: String::new(),
                }),
                ..PullOptions::default()
            },
            |_| {},
        )
        .await
        .expect_err("wrong password");
    let text = err.to_string();
    assert!(matches!(err, PodmanError::Failed { .. }), "{err:?}");
    assert!(
        text.contains("unauthorized") || text.contains("authentication"),
        "{text}"
    );
    assert!(!text.contains(&wrong), "password leaked: {text}");
}

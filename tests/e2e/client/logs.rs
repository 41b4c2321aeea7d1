//! e2e: log forwarding into FIFOs and files (src/driver/logs.rs).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nomad_driver_podman::driver::logs::{LogCursor, LogForwardConfig, LogForwarder};
use nomad_driver_podman::driver::podman::{DeleteOptions, WaitCondition};

use super::{run, within};
use crate::support::{self, podman, LabelCleanup};

fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
}

/// Reads a FIFO to its end (the writer closing it), like Nomad's logmon.
fn fifo_reader(path: PathBuf) -> tokio::task::JoinHandle<String> {
    tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        std::fs::File::open(&path)
            .expect("open fifo for reading")
            .read_to_string(&mut text)
            .expect("read fifo");
        text
    })
}

fn config(id: &str, stdout: PathBuf, stderr: PathBuf, since: SystemTime) -> LogForwardConfig {
    LogForwardConfig {
        container_id: id.to_string(),
        stdout,
        stderr,
        cursor: LogCursor::at(since),
    }
}

#[tokio::test]
async fn stdout_and_stderr_reach_separate_fifos() {
    let client = support::client();
    let label = LabelCleanup::new("logfifo");
    let dir = podman().scratch_dir("logfifo");
    let (out, err) = (dir.join("stdout.fifo"), dir.join("stderr.fifo"));
    mkfifo(&out);
    mkfifo(&err);
    let readers = (fifo_reader(out.clone()), fifo_reader(err.clone()));
    let since = SystemTime::now();
    let id = run(
        &client,
        &label,
        &[
            "sh",
            "-c",
            "for i in 1 2 3; do echo out$i; echo err$i >&2; done; printf tail",
        ],
    )
    .await;
    let forwarder = LogForwarder::spawn(client.clone(), config(&id, out, err, since));
    within("forwarding", forwarder.join())
        .await
        .expect("forwarded");
    let stdout = within("stdout", readers.0).await.expect("stdout reader");
    let stderr = within("stderr", readers.1).await.expect("stderr reader");
    assert_eq!(stdout, "out1\nout2\nout3\ntail");
    assert_eq!(stderr, "err1\nerr2\nerr3\n");
}

#[tokio::test]
async fn lines_wait_for_a_late_reader() {
    let client = support::client();
    let label = LabelCleanup::new("loglate");
    let dir = podman().scratch_dir("loglate");
    let (out, err) = (dir.join("stdout.fifo"), dir.join("stderr.fifo"));
    mkfifo(&out);
    mkfifo(&err);
    let since = SystemTime::now();
    let id = run(&client, &label, &["sh", "-c", "echo early; echo oops >&2"]).await;
    within("exit", client.container_wait(&id, &[WaitCondition::Exited]))
        .await
        .expect("exited");
    let forwarder =
        LogForwarder::spawn(client.clone(), config(&id, out.clone(), err.clone(), since));
    // The container is long gone when the readers arrive.
    let readers = (fifo_reader(out), fifo_reader(err));
    within("forwarding", forwarder.join())
        .await
        .expect("forwarded");
    assert_eq!(
        within("stdout", readers.0).await.expect("stdout"),
        "early\n"
    );
    assert_eq!(within("stderr", readers.1).await.expect("stderr"), "oops\n");
}

#[tokio::test]
async fn resuming_at_the_cursor_neither_loses_nor_repeats_lines() {
    let client = support::client();
    let label = LabelCleanup::new("logresume");
    let dir = podman().scratch_dir("logresume");
    let (out, err) = (dir.join("stdout.log"), dir.join("stderr.log"));
    let since = SystemTime::now();
    // Many lines per second, so the cursor must count lines within one second.
    let id = run(
        &client,
        &label,
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 60 ]; do i=$((i+1)); echo line$i; echo e$i >&2; sleep 0.05; done",
        ],
    )
    .await;
    let first = LogForwarder::spawn(client.clone(), config(&id, out.clone(), err.clone(), since));
    within("first lines", async {
        while std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .count()
            < 10
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let cursor = first.stop().await.expect("stopped");
    let second = LogForwarder::spawn(
        client.clone(),
        LogForwardConfig {
            container_id: id.clone(),
            stdout: out.clone(),
            stderr: err.clone(),
            cursor,
        },
    );
    within("rest of the lines", second.join())
        .await
        .expect("forwarded");
    let want: String = (1..=60).map(|i| format!("line{i}\n")).collect();
    assert_eq!(std::fs::read_to_string(&out).expect("stdout file"), want);
    let want: String = (1..=60).map(|i| format!("e{i}\n")).collect();
    assert_eq!(std::fs::read_to_string(&err).expect("stderr file"), want);
}

#[tokio::test]
async fn forwarding_ends_when_the_container_is_removed() {
    let client = support::client();
    let label = LabelCleanup::new("logrm");
    let dir = podman().scratch_dir("logrm");
    let id = run(&client, &label, &["sleep", "1000"]).await;
    let forwarder = LogForwarder::spawn(
        client.clone(),
        config(
            &id,
            dir.join("out.log"),
            dir.join("err.log"),
            SystemTime::now(),
        ),
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
        .expect("remove");
    within("forwarder end", forwarder.join())
        .await
        .expect("ends cleanly");
}

//! e2e: log forwarding into FIFOs and files (src/driver/logs.rs).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nomad_driver_podman::driver::logs::{
    FileEvents, JournalStream, LineAssembler, LogCursor, LogForwardConfig, LogForwarder, LogSource,
    Sink, SinkKind,
};
use nomad_driver_podman::driver::podman::{DeleteOptions, PodmanClient, WaitCondition};
use nomad_driver_podman::driver::{ExitResult, ExitState};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{run_spec, spec, within};
use crate::support::{self, podman, LabelCleanup};

fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
}

/// A stdout and a stderr FIFO in a scratch dir of their own.
fn fifo_pair(prefix: &str) -> (PathBuf, PathBuf) {
    let dir = podman().scratch_dir(prefix);
    let (out, err) = (dir.join("stdout.fifo"), dir.join("stderr.fifo"));
    mkfifo(&out);
    mkfifo(&err);
    (out, err)
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

/// A labelled busybox container logging to podman's k8s-file (what the driver sets up).
async fn run(client: &PodmanClient, label: &LabelCleanup, cmd: &[&str]) -> String {
    let mut spec = spec(label, &support::unique_name("c"), cmd);
    spec["log_configuration"] = serde_json::json!({"driver": "k8s-file"});
    run_spec(client, spec).await
}

/// The container's exit as the driver's monitor would report it.
fn exit_watch(client: &PodmanClient, id: &str) -> watch::Receiver<ExitState> {
    let (tx, rx) = watch::channel(ExitState::Running);
    let (client, id) = (client.clone(), id.to_string());
    tokio::spawn(async move {
        // Podman 4.3's wait can miss a container force-removed while waited on: bounded
        // waits, each followed by a look at the container itself.
        loop {
            let wait = client.container_wait(&id, &[WaitCondition::Exited]);
            if tokio::time::timeout(Duration::from_secs(2), wait)
                .await
                .is_ok()
            {
                break;
            }
            match client.container_inspect(&id).await {
                Err(e) if e.is_not_found() => break,
                Ok(c) if !c.state.running => break,
                _ => {}
            }
        }
        tx.send_replace(ExitState::Exited {
            result: ExitResult::default(),
            at: SystemTime::now(),
        });
    });
    rx
}

/// A FIFO sink where the test made a FIFO, a file sink otherwise.
fn sink(path: &Path) -> Sink {
    use std::os::unix::fs::FileTypeExt;
    let is_fifo = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo());
    let kind = if is_fifo {
        SinkKind::Fifo
    } else {
        SinkKind::File
    };
    Sink::open(path.parent().expect("parent"), path, kind, None).expect("sink")
}

fn config(
    client: &PodmanClient,
    id: &str,
    source: LogSource,
    (stdout, stderr): (PathBuf, PathBuf),
    cursor: LogCursor,
) -> LogForwardConfig {
    LogForwardConfig {
        container_id: id.to_string(),
        stdout: sink(&stdout),
        stderr: sink(&stderr),
        journal: Sink::discard(),
        cursor,
        source,
        exited: exit_watch(client, id),
        file_events: Some(FileEvents::start(CancellationToken::new()).expect("inotify")),
        position: None,
    }
}

/// Forwards the container's output from `since` into the FIFO pair until it is done,
/// and returns what the FIFOs' readers got.
async fn forward_to_readers(
    client: &PodmanClient,
    id: &str,
    source: LogSource,
    fifos: (PathBuf, PathBuf),
    since: SystemTime,
    readers: (
        tokio::task::JoinHandle<String>,
        tokio::task::JoinHandle<String>,
    ),
) -> (String, String) {
    let forwarder = LogForwarder::spawn(
        client.clone(),
        config(client, id, source, fifos, LogCursor::at(since)),
    );
    within("forwarding", forwarder.join())
        .await
        .expect("forwarded");
    let stdout = within("stdout", readers.0).await.expect("stdout reader");
    let stderr = within("stderr", readers.1).await.expect("stderr reader");
    (stdout, stderr)
}

/// Each test runs against both sources: the k8s-file tail and the logs API.
const SOURCES: [LogSource; 2] = [LogSource::Auto, LogSource::Api];

#[tokio::test]
async fn stdout_and_stderr_reach_separate_fifos() {
    for source in SOURCES {
        separate_fifos(source).await;
    }
}

async fn separate_fifos(source: LogSource) {
    let client = support::client();
    let label = LabelCleanup::new("logfifo");
    let (out, err) = fifo_pair("logfifo");
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
    let (stdout, stderr) =
        forward_to_readers(&client, &id, source, (out, err), since, readers).await;
    assert_eq!(stdout, "out1\nout2\nout3\ntail", "{source:?}");
    assert_eq!(stderr, "err1\nerr2\nerr3\n", "{source:?}");
}

#[tokio::test]
async fn lines_wait_for_a_late_reader() {
    for source in SOURCES {
        late_reader(source).await;
    }
}

async fn late_reader(source: LogSource) {
    let client = support::client();
    let label = LabelCleanup::new("loglate");
    let (out, err) = fifo_pair("loglate");
    let since = SystemTime::now();
    let id = run(&client, &label, &["sh", "-c", "echo early; echo oops >&2"]).await;
    within("exit", client.container_wait(&id, &[WaitCondition::Exited]))
        .await
        .expect("exited");
    let forwarder = LogForwarder::spawn(
        client.clone(),
        config(
            &client,
            &id,
            source,
            (out.clone(), err.clone()),
            LogCursor::at(since),
        ),
    );
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
    for source in SOURCES {
        resume_at_cursor(source).await;
    }
}

async fn resume_at_cursor(source: LogSource) {
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
    let first = LogForwarder::spawn(
        client.clone(),
        config(
            &client,
            &id,
            source,
            (out.clone(), err.clone()),
            LogCursor::at(since),
        ),
    );
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
        config(&client, &id, source, (out.clone(), err.clone()), cursor),
    );
    within("rest of the lines", second.join())
        .await
        .expect("forwarded");
    let want: String = (1..=60).map(|i| format!("line{i}\n")).collect();
    assert_eq!(
        std::fs::read_to_string(&out).expect("stdout file"),
        want,
        "{source:?}"
    );
    let want: String = (1..=60).map(|i| format!("e{i}\n")).collect();
    assert_eq!(
        std::fs::read_to_string(&err).expect("stderr file"),
        want,
        "{source:?}"
    );
}

#[tokio::test]
async fn forwarding_ends_when_the_container_is_removed() {
    for source in SOURCES {
        removed_container(source).await;
    }
}

async fn removed_container(source: LogSource) {
    let client = support::client();
    let label = LabelCleanup::new("logrm");
    let dir = podman().scratch_dir("logrm");
    let id = run(&client, &label, &["sleep", "1000"]).await;
    let forwarder = LogForwarder::spawn(
        client.clone(),
        config(
            &client,
            &id,
            source,
            (dir.join("out.log"), dir.join("err.log")),
            LogCursor::at(SystemTime::now()),
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

/// Regression: podman 4.3 ends a follow stream of an exited container before the end of
/// its log (podman#21914), and forwarding through the API lost most of a large output.
#[tokio::test]
async fn a_large_output_arrives_whole() {
    for source in SOURCES {
        large_output(source).await;
    }
}

async fn large_output(source: LogSource) {
    let bytes: usize = match source {
        LogSource::Auto => 8_000_000,
        // Podman 4.3's follow stream is not exact (below): the API path is the fallback
        // for remote sockets, tested at a smaller size.
        LogSource::Api => 1_000_000,
    };
    let client = support::client();
    let label = LabelCleanup::new("logbig");
    let (out, err) = fifo_pair("logbig");
    let readers = (fifo_reader(out.clone()), fifo_reader(err.clone()));
    let since = SystemTime::now();
    // Lines of 100 bytes, and one line longer than conmon's buffer (split in P records).
    let script = format!(
        "yes {} | head -c {bytes}; head -c 70000 /dev/zero | tr '\\0' L; echo; echo done >&2",
        "a".repeat(99)
    );
    let id = run(&client, &label, &["sh", "-c", &script]).await;
    let (stdout, stderr) =
        forward_to_readers(&client, &id, source, (out, err), since, readers).await;
    let want = format!(
        "{}{}\n",
        format!("{}\n", "a".repeat(99)).repeat(bytes / 100),
        "L".repeat(70000)
    );
    assert_eq!(stderr, "done\n", "{source:?}");
    let first_difference = stdout.bytes().zip(want.bytes()).position(|(a, b)| a != b);
    match source {
        LogSource::Auto => {
            assert_eq!(
                stdout.len(),
                want.len(),
                "{source:?}: first difference at byte {first_difference:?}"
            );
            assert!(stdout == want, "{source:?}: content differs");
        }
        // The end arrives (it was lost before the last read without follow). Podman
        // 4.3's follow stream is not exact in the middle either: it has cut a line and
        // repeated about a hundred lines (seen in CI); with whole-second stamps the
        // cursor cannot tell those apart, so the size is only checked to within 5%.
        LogSource::Api => {
            assert!(
                stdout.ends_with(&format!("{}\n", "L".repeat(70000))),
                "{source:?}: the end is missing"
            );
            assert!(
                stdout.len().abs_diff(want.len()) <= want.len() / 20,
                "{source:?}: {} bytes of {}, first difference at byte {first_difference:?}",
                stdout.len(),
                want.len()
            );
        }
    }
}

#[tokio::test]
async fn the_journal_keeps_both_streams_in_the_order_written() {
    for source in SOURCES {
        journal_order(source).await;
    }
}

async fn journal_order(source: LogSource) {
    let client = support::client();
    let label = LabelCleanup::new("logjournal");
    let dir = podman().scratch_dir("logjournal");
    let journal = dir.join("task.journal");
    let since = SystemTime::now();
    let id = run(
        &client,
        &label,
        &[
            "sh",
            "-c",
            "for i in 1 2 3; do echo out$i; echo err$i >&2; done; printf 'no newline'",
        ],
    )
    .await;
    let mut config = config(
        &client,
        &id,
        source,
        (dir.join("task.stdout.0"), dir.join("task.stderr.0")),
        LogCursor::at(since),
    );
    config.journal = sink(&journal);
    within(
        "forwarding",
        LogForwarder::spawn(client.clone(), config).join(),
    )
    .await
    .expect("forwarded");
    // The journal has podman's order: the records of the container's own log (conmon
    // reads the two pipes separately, so that order, not the task's, is what there is).
    let podman_log = client
        .container_inspect(&id)
        .await
        .expect("inspect")
        .host_config
        .log_config
        .path;
    let recorded = lines_of(&std::fs::read(&podman_log).expect("podman's log"));
    let journal = lines_of(&std::fs::read(&journal).expect("journal written"));
    let untimed =
        |lines: &[(i64, JournalStream, String, bool)]| -> Vec<(JournalStream, String, bool)> {
            lines.iter().map(|l| (l.1, l.2.clone(), l.3)).collect()
        };
    assert_eq!(untimed(&journal), untimed(&recorded), "{source:?}");
    for (written, podman) in journal.iter().zip(&recorded) {
        // The file tail copies conmon's times; podman 4's logs API gives whole seconds.
        let second = podman.0 - podman.0 % 1_000_000_000;
        match source {
            LogSource::Auto => assert_eq!(written.0, podman.0),
            LogSource::Api => assert!(second <= written.0 && written.0 <= podman.0),
        }
    }
    let stream = |wanted: JournalStream| -> Vec<(String, bool)> {
        journal
            .iter()
            .filter(|l| l.1 == wanted)
            .map(|l| (l.2.clone(), l.3))
            .collect()
    };
    let full = |names: [&str; 3]| names.map(|n| (n.to_string(), true)).to_vec();
    let mut stdout = full(["out1", "out2", "out3"]);
    stdout.push(("no newline".into(), false));
    assert_eq!(stream(JournalStream::Stdout), stdout, "{source:?}");
    assert_eq!(
        stream(JournalStream::Stderr),
        full(["err1", "err2", "err3"]),
        "{source:?}"
    );
    // The separate files are as before.
    assert_eq!(
        std::fs::read_to_string(dir.join("task.stderr.0")).expect("stderr file"),
        "err1\nerr2\nerr3\n"
    );
}

/// The lines of a k8s-file format log: time, stream, text, whether a newline ended it.
fn lines_of(log: &[u8]) -> Vec<(i64, JournalStream, String, bool)> {
    let mut lines = LineAssembler::default();
    let mut read: Vec<_> = log
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| lines.push(l))
        .collect();
    read.extend(lines.finish());
    read.into_iter()
        .map(|l| {
            let text = String::from_utf8_lossy(&l.text).into_owned();
            (l.unix_nanos, l.stream, text, l.complete)
        })
        .collect()
}

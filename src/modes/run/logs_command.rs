//! `logs JOB [TASK] [-f] [--tail N] [--stdout|--stderr] [-t]`: a job's task output from
//! the journals in its allocation directories (so it works without the runner, and after
//! the containers are gone). Each task's stdout and stderr come in the order they were
//! written; several tasks are merged by the time podman recorded for each line.

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::driver::logs::journal::format_stamp;
use crate::driver::logs::{JournalLine, JournalStream};

use super::alloc::journal_path;
use super::cli::{ConnectionArgs, LogsArgs, Tail};
use super::error::{exit_code, RunError};
use super::journal::{merge, JournalSource};
use super::rotated::RotatedReader;
use super::runner::{state_root, JobFiles};
use super::state::{find, runner_pid, Manifest};
use super::statedir;
use super::ui::{use_color, Stream, Ui, Who};
use super::validate::report_error;

/// How often a followed journal is checked for new output.
const POLL: Duration = Duration::from_millis(200);
/// Lines handed to the printer at a time; the next batch is read once these are written,
/// so a long log never piles up in memory.
const BATCH: usize = 4096;

pub async fn logs(args: LogsArgs) -> i32 {
    match show_logs(&args).await {
        Ok(code) => code,
        Err(e) => report_error(&e),
    }
}

/// One task's journal and how its lines are labelled.
struct TaskLog {
    who: Who,
    /// The stdout and stderr files of a task started before journals were written.
    legacy: Option<(PathBuf, PathBuf)>,
}

async fn show_logs(args: &LogsArgs) -> Result<i32, RunError> {
    let files = JobFiles::new(&state_root(&args.connection)?, &args.job)?;
    let manifest_path = Manifest::path(&files);
    let manifest: Manifest = match statedir::read_private_file(&manifest_path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| RunError::StateFile {
            path: manifest_path.clone(),
            source,
        })?,
        Err(_) => return Err(RunError::JobNotFound(args.job.clone())),
    };
    let (tasks, sources) = task_logs(&manifest, args).await;
    if tasks.is_empty() {
        return Err(RunError::NoSuchTask {
            job: args.job.clone(),
            task: args.task.clone().unwrap_or_default(),
        });
    }
    for task in &tasks {
        if let Some((stdout, stderr)) = &task.legacy {
            eprintln!(
                "{}: no journal (started by an older version); its output is in {} and {}",
                task.who.label(),
                stdout.display(),
                stderr.display()
            );
        }
    }
    let width = tasks.iter().map(|t| t.who.label().len()).max().unwrap_or(0);
    let (ui, printer) = Ui::start(use_color(args.no_color), width);
    let out = Printer {
        ui: ui.clone(),
        tasks,
        timestamps: args.timestamps,
    };
    let tail = match args.tail {
        Some(Tail::Last(n)) => Some(n),
        Some(Tail::All) | None => None,
    };
    let finish_now = !args.follow;
    // Without -f the output has ended: an unfinished last line counts as one of the N.
    let (mut sources, ()) = blocking(sources, move |sources| {
        if let Some(n) = tail {
            sources.iter_mut().for_each(|s| s.tail(n, finish_now));
        }
    })
    .await?;
    sources = if args.follow {
        follow(&out, sources, args, files).await?
    } else {
        out.drain(sources).await?
    };
    // The output has ended: lines left without their newline are shown too.
    let (sources, ()) = blocking(sources, |sources| {
        sources.iter_mut().for_each(JournalSource::finish)
    })
    .await?;
    out.drain(sources).await?;
    drop(out);
    ui.flush().await;
    drop(ui);
    let _ = printer.await;
    Ok(exit_code::OK)
}

/// The journals of the tasks `args` names, in the manifest's order.
async fn task_logs(manifest: &Manifest, args: &LogsArgs) -> (Vec<TaskLog>, Vec<JournalSource>) {
    let wanted = |group: &str, task: &str| match &args.task {
        None => true,
        Some(t) => t == task || *t == format!("{group}.{task}"),
    };
    let only = match (args.stdout, args.stderr) {
        (true, _) => Some(JournalStream::Stdout),
        (_, true) => Some(JournalStream::Stderr),
        _ => None,
    };
    let mut tasks = Vec::new();
    let mut sources = Vec::new();
    for alloc in &manifest.allocations {
        for task in alloc.tasks.iter().filter(|t| wanted(&alloc.group, t)) {
            let root = alloc.dir.join("alloc");
            let logs = root.join("logs");
            let journal = journal_path(&logs, task);
            let stdout = logs.join(format!("{task}.stdout.0"));
            let legacy = !journal_exists(&root, &journal).await && exists(&stdout).await;
            tasks.push(TaskLog {
                who: Who {
                    group: alloc.group.clone(),
                    index: (alloc.count > 1).then_some(alloc.index),
                    task: task.clone(),
                },
                legacy: legacy.then(|| (stdout, logs.join(format!("{task}.stderr.0")))),
            });
            sources.push(JournalSource::new(&root, &journal, only));
        }
    }
    (tasks, sources)
}

/// Prints new lines as they are written until the job is gone (or Ctrl-C).
async fn follow(
    out: &Printer,
    mut sources: Vec<JournalSource>,
    args: &LogsArgs,
    files: JobFiles,
) -> Result<Vec<JournalSource>, RunError> {
    let gone = CancellationToken::new();
    let watcher = tokio::spawn({
        let gone = gone.clone();
        let connection = args.connection.clone();
        let job = args.job.clone();
        async move {
            wait_until_gone(&connection, &files, &job).await;
            gone.cancel();
        }
    });
    loop {
        // Read once more after the job is gone: its last lines may have come since.
        let stopping = gone.is_cancelled();
        sources = out.drain(sources).await?;
        if stopping {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = gone.cancelled() => {}
        }
    }
    watcher.abort();
    Ok(sources)
}

/// Where lines go and how they look.
struct Printer {
    ui: Ui,
    tasks: Vec<TaskLog>,
    timestamps: bool,
}

impl Printer {
    /// Prints every line the sources hold now, a batch at a time.
    async fn drain(&self, mut sources: Vec<JournalSource>) -> Result<Vec<JournalSource>, RunError> {
        loop {
            let batch;
            (sources, batch) = blocking(sources, |sources| merge(sources, BATCH)).await?;
            for (i, line) in &batch {
                self.print(*i, line);
            }
            for source in &mut sources {
                if let Some(failure) = source.take_failure() {
                    eprintln!("{failure}");
                }
            }
            // Written before more is read: memory stays bounded by one batch.
            self.ui.flush().await;
            if batch.len() < BATCH || crate::modes::output::stdout_failed() {
                return Ok(sources);
            }
        }
    }

    fn print(&self, source: usize, line: &JournalLine) {
        let Some(task) = self.tasks.get(source) else {
            return;
        };
        let text = String::from_utf8_lossy(&line.text);
        let text = if self.timestamps {
            format!("{} {text}", format_stamp(line.unix_nanos))
        } else {
            text.into_owned()
        };
        let stream = match line.stream {
            JournalStream::Stdout => Stream::Stdout,
            JournalStream::Stderr => Stream::Stderr,
        };
        self.ui.output(&task.who, stream, text);
    }
}

/// Runs `work` on the sources on a blocking thread (journal reads go to the disk).
async fn blocking<F, R>(
    mut sources: Vec<JournalSource>,
    work: F,
) -> Result<(Vec<JournalSource>, R), RunError>
where
    F: FnOnce(&mut Vec<JournalSource>) -> R + Send + 'static,
    R: Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let result = work(&mut sources);
        (sources, result)
    })
    .await
    .map_err(|e| RunError::Worker {
        context: "reading the logs failed",
        source: Box::new(e),
    })
}

/// Whether any file of the journal (rotated, or the single file of an older version) is there.
async fn journal_exists(root: &std::path::Path, base: &std::path::Path) -> bool {
    let reader = RotatedReader::new(root, base);
    tokio::task::spawn_blocking(move || reader.exists())
        .await
        .unwrap_or(false)
}

async fn exists(path: &std::path::Path) -> bool {
    tokio::fs::symlink_metadata(path).await.is_ok()
}

/// Returns when the job's runner is gone and no container of it runs, or on Ctrl-C. A
/// task waiting to be restarted has a runner, so following goes on across restarts.
async fn wait_until_gone(connection: &ConnectionArgs, files: &JobFiles, job: &str) {
    let poll = async {
        loop {
            // Nobody reads any more (`logs -f | head`): stop following.
            if crate::modes::output::stdout_failed() {
                return;
            }
            if runner_pid(files).is_none() {
                match find(connection, Some(job)).await {
                    Ok(c) if c.iter().all(|c| c.state != "running") => return,
                    Err(_) => return,
                    Ok(_) => {}
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    tokio::select! {
        _ = poll => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

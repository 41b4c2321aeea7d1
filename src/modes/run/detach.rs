//! `run --detach`: the same runner, started as a background process (its own process
//! group, output to `<state>/<job>/runner.log`) that keeps supervising the job, including
//! restarts and the stop order. This process returns once the main tasks have started.

use std::ffi::OsString;
use std::process::Stdio;
use std::time::Duration;

use super::cli::{shell_word, RunArgs};
use super::error::{exit_code, RunError};
use super::plan::notices_text;
use super::runner::{make_way, state_root, JobFiles};
use super::statedir;
use super::validate::{load_checked, report_error};

pub async fn start(args: RunArgs) -> i32 {
    match spawn_and_wait(&args).await {
        Ok(code) => code,
        Err(e) => report_error(&e),
    }
}

async fn spawn_and_wait(args: &RunArgs) -> Result<i32, RunError> {
    // Job-file errors are reported here, not in a log file nobody reads.
    let checked = load_checked(&args.file, &args.vars, &args.node).await?;
    // The same warnings as a foreground run, here rather than only in the runner log.
    let notices = notices_text(&checked.ignored, &checked.loaded.notices.skipped_tasks);
    if !notices.is_empty() {
        crate::outln!("{}", notices.trim_start());
    }
    let job_id = checked.loaded.job.id.clone();
    let files = JobFiles::new(&state_root(&args.connection)?, &job_id)?;
    make_way(args, &files, &job_id).await?;
    files.create_dir()?;
    let _ = tokio::fs::remove_file(files.ready()).await;
    let log = statedir::create_private_file(&files.log())
        .map_err(RunError::io("cannot create", files.log()))?;
    let log_err = log
        .try_clone()
        .map_err(RunError::io("cannot open", files.log()))?;
    let exe =
        std::env::current_exe().map_err(RunError::io("cannot find", "the runner executable"))?;
    let mut child_args: Vec<OsString> = std::env::args_os()
        .skip(1)
        .filter(|a| a != "--detach" && a != "-d")
        .collect();
    child_args.push("--detached-child".into());
    let mut child = tokio::process::Command::new(exe)
        .args(&child_args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .env("NO_COLOR", "1")
        // Its own process group: a Ctrl-C in this terminal must not reach it.
        .process_group(0)
        .spawn()
        .map_err(RunError::io("cannot start", "the background runner"))?;
    let pid = child.id().unwrap_or_default();
    loop {
        if tokio::fs::metadata(files.ready()).await.is_ok() {
            let log = statedir::read_private_file(&files.log()).unwrap_or_default();
            let log = String::from_utf8_lossy(&log);
            crate::outln!("job {job_id:?} is running in the background (runner pid {pid})");
            // The allocations and their published ports, as the runner printed them.
            for line in log.lines().filter(|l| l.contains(" is allocation ")) {
                let line = line.split_once("==> ").map_or(line, |(_, rest)| rest);
                crate::outln!("  {line}");
            }
            let bin = args.connection.invocation();
            let job = shell_word(&job_id);
            crate::outln!("  output:  {bin} logs {job} -f");
            crate::outln!("  status:  {bin} ps {job}");
            crate::outln!("  stop:    {bin} stop {job}");
            crate::outln!("  runner log: {}", files.log().display());
            return Ok(exit_code::OK);
        }
        if let Some(status) = child
            .try_wait()
            .map_err(RunError::io("cannot watch", "the background runner"))?
        {
            let output = statedir::read_private_file(&files.log()).unwrap_or_default();
            crate::modes::output::write_stdout(&output);
            return Ok(status.code().unwrap_or(exit_code::RUNNER));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

//! `validate` and `plan`: read a job file, check it against the core's task model, report.

use serde::Serialize;

use super::check::check_job;
use super::cli::{PlanArgs, ValidateArgs, VarArgs};
use super::error::{exit_code, RunError};
use super::jobspec::decode::{Ignored, SkippedTask};
use super::jobspec::{self, JobFileError, JobFileErrors, LoadedJob, VarInputs};
use super::plan;

/// A job file that passed every check, with everything the runner will not honour.
pub struct CheckedJob {
    pub loaded: LoadedJob,
    pub ignored: Vec<Ignored>,
}

/// Reads, evaluates and checks a job file (off the async runtime: it reads files).
pub async fn load_checked(file: &std::path::Path, vars: &VarArgs) -> Result<CheckedJob, RunError> {
    let inputs = VarInputs {
        flags: vars.vars.clone(),
        files: vars.var_files.clone(),
        env: VarInputs::env_from(std::env::vars()),
    };
    let path = file.to_path_buf();
    // Reading the job file, variable files and template sources blocks.
    let (loaded, checked) = tokio::task::spawn_blocking(move || {
        jobspec::load(&path, &inputs).map(|loaded| {
            let checked = check_job(&loaded.job);
            (loaded, checked)
        })
    })
    .await
    .map_err(|e| RunError::Other(format!("reading the job file stopped: {e}")))?
    .map_err(RunError::JobFile)?;
    if !checked.errors.is_empty() {
        return Err(RunError::JobFile(JobFileErrors(checked.errors)));
    }
    let mut ignored = loaded.notices.ignored.clone();
    ignored.extend(checked.ignored);
    Ok(CheckedJob { loaded, ignored })
}

#[derive(Serialize)]
struct ValidateReport<'a> {
    valid: bool,
    job_id: Option<&'a str>,
    errors: &'a [JobFileError],
    ignored: &'a [Ignored],
    skipped_tasks: &'a [SkippedTask],
}

pub async fn validate(args: ValidateArgs) -> i32 {
    let result = load_checked(&args.file, &args.vars).await;
    if args.json {
        let (errors, job) = match &result {
            Ok(c) => (Vec::new(), Some(c)),
            Err(RunError::JobFile(e)) => (e.0.clone(), None),
            Err(other) => (vec![JobFileError::unlocated(other.to_string())], None),
        };
        let report = ValidateReport {
            valid: job.is_some(),
            job_id: job.map(|c| c.loaded.job.id.as_str()),
            errors: &errors,
            ignored: job.map_or(&[], |c| c.ignored.as_slice()),
            skipped_tasks: job.map_or(&[], |c| c.loaded.notices.skipped_tasks.as_slice()),
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
        return match result {
            Ok(_) => exit_code::OK,
            Err(e) => e.exit_code(),
        };
    }
    match result {
        Ok(checked) => {
            let job = &checked.loaded.job;
            let tasks: usize = job.groups.iter().map(|g| g.tasks.len()).sum();
            println!(
                "{}: job {:?} ({}) is valid: {} group{}, {} podman task{}",
                args.file.display(),
                job.id,
                job.job_type.as_str(),
                job.groups.len(),
                if job.groups.len() == 1 { "" } else { "s" },
                tasks,
                if tasks == 1 { "" } else { "s" }
            );
            print!(
                "{}",
                plan::notices_text(&checked.ignored, &checked.loaded.notices.skipped_tasks)
            );
            exit_code::OK
        }
        Err(e) => report_error(&e),
    }
}

pub async fn plan(args: PlanArgs) -> i32 {
    match load_checked(&args.file, &args.vars).await {
        Ok(checked) => {
            let plan = plan::build(
                &checked.loaded.job,
                checked.ignored,
                checked.loaded.notices.skipped_tasks,
            );
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&plan).unwrap_or_default()
                );
            } else {
                print!("{}", plan.to_text());
            }
            exit_code::OK
        }
        Err(e) => report_error(&e),
    }
}

/// Prints an error to stderr (one line per job-file error) and returns its exit code.
pub fn report_error(e: &RunError) -> i32 {
    match e {
        RunError::JobFile(errors) => {
            for error in &errors.0 {
                eprintln!("Error: {error}");
            }
            let n = errors.0.len();
            eprintln!("{n} error{} in the job file", if n == 1 { "" } else { "s" });
        }
        other => eprintln!("Error: {other}"),
    }
    e.exit_code()
}

//! `validate` and `plan`: read a job file, check it against the core's task model, report.

use serde::Serialize;

use super::check::check_job;
use super::cli::{NodeArgs, PlanArgs, ValidateArgs, VarArgs};
use super::constraint::{self, Unchecked};
use super::error::{exit_code, RunError};
use super::images::{self, ImageReport};
use super::jobspec::decode::{Ignored, SkippedTask};
use super::jobspec::{self, JobFileError, JobFileErrors, LoadedJob, VarInputs};
use super::node::NodeFacts;
use super::plan;

/// How long reading and evaluating a job file may take.
const LOAD_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// A job file that passed every check, with everything the runner will not honour.
pub struct CheckedJob {
    pub loaded: LoadedJob,
    pub ignored: Vec<Ignored>,
    /// This machine as the job's node.
    pub node: NodeFacts,
    /// Constraints on facts learnt from podman, checked once it answers
    /// ([`CheckedJob::check_deferred`]).
    pub unchecked: Vec<Unchecked>,
}

impl CheckedJob {
    /// Checks the constraints that waited for podman's version, now that it is known.
    pub fn check_deferred(&mut self, podman_version: &str) -> Result<(), RunError> {
        self.node.podman_version = Some(podman_version.to_string());
        if self.unchecked.is_empty() {
            return Ok(());
        }
        let attrs = self.node.attributes(&self.loaded.job);
        let result = constraint::check(&self.loaded.job, &attrs, self.node.datacenter.is_some());
        self.unchecked = result.unchecked;
        if result.errors.is_empty() {
            Ok(())
        } else {
            Err(RunError::JobFile(JobFileErrors(result.errors)))
        }
    }

    /// The node's facts as `${...}` references name them.
    pub fn node_attributes(&self) -> std::collections::BTreeMap<String, String> {
        self.node.attributes(&self.loaded.job)
    }
}

/// What `plan` shows of the node: the facts the operator gave and the constraints held.
fn node_plan(checked: &CheckedJob) -> plan::NodePlan {
    let job = &checked.loaded.job;
    let all = job.constraints.len()
        + job
            .groups
            .iter()
            .filter(|g| !g.tasks.is_empty())
            .map(|g| {
                g.constraints.len() + g.tasks.iter().map(|t| t.constraints.len()).sum::<usize>()
            })
            .sum::<usize>();
    plan::NodePlan {
        name: checked.node.name.clone(),
        datacenter: checked.node.datacenter(job),
        class: checked.node.class.clone(),
        meta: checked.node.meta.clone(),
        constraints_satisfied: all.saturating_sub(checked.unchecked.len()),
    }
}

/// Constraints not checked because podman's version is unknown, for the output.
pub fn unchecked_text(unchecked: &[Unchecked]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if unchecked.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "\nConstraints not checked ({} is not known: podman was not reached; `run` checks them):",
        unchecked[0].fact
    );
    for u in unchecked {
        let _ = writeln!(out, "  \"{}\" at {}", u.constraint, u.constraint.location);
    }
    out
}

/// Reads, evaluates and checks a job file (off the async runtime: it reads files), and
/// checks its constraints against this node.
pub async fn load_checked(
    file: &std::path::Path,
    vars: &VarArgs,
    node: &NodeArgs,
) -> Result<CheckedJob, RunError> {
    let node = node.clone();
    let inputs = VarInputs {
        flags: vars.vars.clone(),
        files: vars.var_files.clone(),
        env: VarInputs::env_from(std::env::vars()),
    };
    let path = file.to_path_buf();
    // Reading the job file, variable files and template sources blocks, and hcl-edit's
    // parser can backtrack exponentially on some malformed nesting (docs/fuzzing.md):
    // a thread of its own, given up on after a deadline (it ends with the process; a
    // blocking task would hold the runtime's shutdown).
    let (done, loaded) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("job-file".into())
        .spawn(move || {
            let _ = done.send(jobspec::load(&path, &inputs).map(|loaded| {
                let checked = check_job(&loaded.job);
                let facts = NodeFacts::gather(&node);
                let constraints = constraint::check(
                    &loaded.job,
                    &facts.attributes(&loaded.job),
                    facts.datacenter.is_some(),
                );
                (loaded, checked, facts, constraints)
            }));
        })
        .map_err(|e| RunError::Worker {
            context: "cannot start reading the job file",
            source: Box::new(e),
        })?;
    let (loaded, mut checked, node, constraints) =
        match tokio::time::timeout(LOAD_DEADLINE, loaded).await {
            Ok(Ok(result)) => result.map_err(RunError::JobFile)?,
            Ok(Err(_)) => return Err(RunError::JobFileReaderGone),
            Err(_) => {
                return Err(RunError::JobFile(JobFileErrors::one(
                    JobFileError::unlocated(format!(
                        "{}: not parsed within {}s: an expression nested too deeply for the HCL \
                     parser? Check brackets and braces",
                        file.display(),
                        LOAD_DEADLINE.as_secs()
                    )),
                )))
            }
        };
    checked.errors.extend(constraints.errors);
    if !checked.errors.is_empty() {
        checked.errors.sort_by(|a, b| a.location.cmp(&b.location));
        return Err(RunError::JobFile(JobFileErrors(checked.errors)));
    }
    let mut ignored = loaded.notices.ignored.clone();
    ignored.extend(checked.ignored);
    Ok(CheckedJob {
        loaded,
        ignored,
        node,
        unchecked: constraints.unchecked,
    })
}

#[derive(Serialize)]
struct ValidateReport<'a> {
    valid: bool,
    job_id: Option<&'a str>,
    errors: &'a [JobFileError],
    ignored: &'a [Ignored],
    skipped_tasks: &'a [SkippedTask],
    #[serde(flatten)]
    images: ImageReport,
}

pub async fn validate(args: ValidateArgs) -> i32 {
    let mut result = load_checked(&args.file, &args.vars, &args.node).await;
    let images = match &result {
        Ok(checked) => images::check(&checked.loaded.job, &args.connection).await,
        Err(_) => ImageReport::default(),
    };
    if let (Ok(checked), Some(version)) = (&mut result, &images.podman_version) {
        if let Err(e) = checked.check_deferred(version) {
            result = Err(e);
        }
    }
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
            images,
        };
        crate::outln!(
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
            crate::outln!(
                "{}: job {:?} ({}) is valid: {} group{}, {} podman task{}",
                args.file.display(),
                job.id,
                job.job_type.as_str(),
                job.groups.len(),
                if job.groups.len() == 1 { "" } else { "s" },
                tasks,
                if tasks == 1 { "" } else { "s" }
            );
            crate::modes::output::write_stdout(
                plan::notices_text(&checked.ignored, &checked.loaded.notices.skipped_tasks)
                    .as_bytes(),
            );
            crate::modes::output::write_stdout(images.to_text().as_bytes());
            crate::modes::output::write_stdout(unchecked_text(&checked.unchecked).as_bytes());
            exit_code::OK
        }
        Err(e) => report_error(&e),
    }
}

pub async fn plan(args: PlanArgs) -> i32 {
    let mut images = ImageReport::default();
    let mut result = load_checked(&args.file, &args.vars, &args.node).await;
    if let Ok(checked) = &mut result {
        images = images::check(&checked.loaded.job, &args.connection).await;
        if let Some(version) = &images.podman_version {
            if let Err(e) = checked.check_deferred(version) {
                result = Err(e);
            }
        }
    }
    match result {
        Ok(checked) => {
            let unchecked = unchecked_text(&checked.unchecked);
            let node = node_plan(&checked);
            let mut plan = plan::build(
                &checked.loaded.job,
                checked.ignored,
                checked.loaded.notices.skipped_tasks,
            );
            plan.images = images;
            plan.node = Some(node);
            if args.json {
                crate::outln!(
                    "{}",
                    serde_json::to_string_pretty(&plan).unwrap_or_default()
                );
            } else {
                crate::modes::output::write_stdout(plan.to_text().as_bytes());
                crate::modes::output::write_stdout(unchecked.as_bytes());
            }
            exit_code::OK
        }
        Err(e) if args.json => {
            // The same error document as `validate --json`, so scripts parse one shape.
            let errors = match &e {
                RunError::JobFile(errors) => errors.0.clone(),
                other => vec![JobFileError::unlocated(other.to_string())],
            };
            let report = ValidateReport {
                valid: false,
                job_id: None,
                errors: &errors,
                ignored: &[],
                skipped_tasks: &[],
                images: ImageReport::default(),
            };
            crate::outln!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
            e.exit_code()
        }
        Err(e) => report_error(&e),
    }
}

/// Prints an error to stderr (one line per job-file error) and returns its exit code.
pub fn report_error(e: &RunError) -> i32 {
    match e {
        RunError::JobFile(errors) => {
            for error in &errors.0 {
                crate::errln!("Error: {error}");
            }
            // "N errors in the job file" only counts errors found in a file that was read.
            if errors.0.iter().any(|e| e.location.is_some()) {
                let n = errors.0.len();
                crate::errln!("{n} error{} in the job file", if n == 1 { "" } else { "s" });
            }
        }
        other => crate::errln!("Error: {other}"),
    }
    e.exit_code()
}

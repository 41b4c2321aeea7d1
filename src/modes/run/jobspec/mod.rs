//! Job files: HCL2 jobspec parsing (hcl-edit, which keeps spans) and our own evaluation
//! layer (variables, locals, functions, runtime pass-through), ending in [`model::Job`].
//!
//! [`model::Job`]: crate::modes::run::model::Job

pub mod decode;
mod delimiters;
pub mod error;
pub mod eval;
pub mod functions;
pub mod source;
pub mod types;
pub mod value;
pub mod variables;

use std::collections::BTreeMap;
use std::path::Path;

use hcl::edit::structure::Structure;
use hcl::edit::Span;

use crate::modes::run::model::Job;
pub use decode::Notices;
pub use error::{JobFileError, JobFileErrors};
use eval::{Evaluator, LazyLocals, Locals};
pub use source::{Location, Source};
pub use variables::VarInputs;

/// A job file read and evaluated, with what the runner will not honour.
#[derive(Debug, Clone)]
pub struct LoadedJob {
    pub job: Job,
    pub notices: Notices,
}

/// Reads and evaluates a job file. Blocking (file reads); call it off the async runtime.
pub fn load(path: &Path, inputs: &VarInputs) -> Result<LoadedJob, JobFileErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        JobFileErrors::one(JobFileError::unlocated(format!(
            "cannot read job file {}: {e}",
            path.display()
        )))
    })?;
    parse(Source::new(path, text), inputs)
}

/// Evaluates job-file text (`source` names the file for error locations).
pub fn parse(source: Source, inputs: &VarInputs) -> Result<LoadedJob, JobFileErrors> {
    let body = hcl::edit::parser::parse_body(source.text()).map_err(|e| {
        // The parser notices an open brace or quote only where the file ends (or the next
        // line fails): point at the opening instead.
        match delimiters::find_unclosed(source.text()) {
            Some(open) => JobFileError::at(
                source.location(open.offset()),
                format!("Invalid HCL: {}", open.message(source.text())),
            ),
            None => JobFileError::at(
                source.location(e.location().offset()),
                format!("Invalid HCL: {}", e.message()),
            ),
        }
    })?;
    let mut errors = Vec::new();
    let mut decls = Vec::new();
    let mut local_entries = BTreeMap::new();
    let mut job_blocks = Vec::new();
    for structure in body.iter() {
        match structure {
            Structure::Block(b) => match b.ident.value().as_str() {
                "variable" => {
                    if let Some(decl) = variables::VariableDecl::decode(b, &source, &mut errors) {
                        if decls.iter().any(|d: &variables::VariableDecl| d.name == decl.name) {
                            errors.push(JobFileError::at(source.locate(b.span()), format!("Duplicate variable {:?}", decl.name)));
                        } else {
                            decls.push(decl);
                        }
                    }
                }
                "locals" => {
                    for attr in b.body.attributes() {
                        let name = attr.key.value().as_str().to_string();
                        if local_entries.contains_key(&name) {
                            errors.push(JobFileError::at(source.locate(attr.key.span()), format!("Duplicate local value {name:?}: local.{name} is defined twice")));
                            continue;
                        }
                        local_entries.insert(name, (attr.value.clone(), source.clone()));
                    }
                    for nested in b.body.blocks() {
                        errors.push(JobFileError::at(source.locate(nested.span()), "a locals block holds only name = value assignments"));
                    }
                }
                "job" => job_blocks.push(b),
                other => errors.push(JobFileError::at(
                    source.locate(b.ident.span()),
                    format!("Unsupported block type: {other:?} is not expected at the top level (expected job, variable or locals)"),
                )),
            },
            Structure::Attribute(a) => errors.push(JobFileError::at(
                source.locate(a.key.span()),
                format!("Unsupported argument: {:?} is not expected at the top level", a.key.value().as_str()),
            )),
        }
    }
    let job_block = match job_blocks.as_slice() {
        [one] => Some(*one),
        [] => {
            errors.push(JobFileError::at(
                source.location(0),
                "Missing job block: a job file needs one job block",
            ));
            None
        }
        [_, second, ..] => {
            errors.push(JobFileError::at(
                source.locate(second.span()),
                "Duplicate job block: a job file holds exactly one job",
            ));
            None
        }
    };

    let vars = variables::resolve(&decls, inputs, &mut errors);
    variables::validate(&decls, &vars, &source, &mut errors);
    if !errors.is_empty() {
        return Err(JobFileErrors(errors));
    }
    let lazy = LazyLocals::new(local_entries);
    let locals = lazy.resolve_all(&vars).map_err(JobFileErrors)?;
    let Some(job_block) = job_block else {
        return Err(JobFileErrors(errors));
    };
    let mut decoder = decode::Decoder::new(Evaluator {
        source: source.clone(),
        vars: &vars,
        locals: Locals::Resolved(&locals),
        runtime_refs: true,
    });
    let job = decoder.job(job_block, source.path());
    let mut errors = decoder.errors;
    let notices = decoder.notices;
    let failed_tasks = decoder.failed_tasks;
    let Some(job) = job else {
        return Err(JobFileErrors(errors));
    };
    if errors.is_empty() && job.groups.iter().all(|g| g.tasks.is_empty()) {
        let drivers: std::collections::BTreeSet<&str> = notices
            .skipped_tasks
            .iter()
            .map(|t| t.driver.as_str())
            .collect();
        let found = if drivers.is_empty() {
            String::new()
        } else {
            format!(
                " (found driver {}); the runner runs only podman tasks: set driver = \"podman\" \
                 in a task to run it here (a docker task's config usually works unchanged: \
                 image, command, args, ports)",
                drivers
                    .iter()
                    .map(|d| format!("{d:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        errors.push(JobFileError::at(
            source.locate(job_block.span()),
            format!("Nothing to run: the job has no task with driver = \"podman\"{found}"),
        ));
    }
    if !errors.is_empty() {
        // The other tasks' config errors in the same round.
        errors.extend(crate::modes::run::check::check_job_except(&job, &failed_tasks).errors);
        errors.sort_by(|a, b| a.location.cmp(&b.location));
        errors.dedup();
        return Err(JobFileErrors(errors));
    }
    Ok(LoadedJob { job, notices })
}

#[cfg(test)]
mod tests;

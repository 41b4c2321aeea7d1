//! Job files: HCL parsing, evaluation (variables, locals, functions) and the check of every
//! podman task's `config {}` against the core, then the plan `plan` prints. Arbitrary
//! UTF-8 text as the job file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nomad_driver_podman::modes::run::check::check_job;
use nomad_driver_podman::modes::run::jobspec::{parse, Source, VarInputs};
use nomad_driver_podman::modes::run::plan;

/// hcl-edit backtracks exponentially on some malformed nesting of braces, brackets and
/// parentheses (fuzz/known/, docs/fuzzing.md); the runner gives such files up after a
/// deadline. Deeper inputs are skipped so that the known finding does not come back as a
/// timeout.
const MAX_BRACE_DEPTH: usize = 16;

fn brace_depth(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    for b in text.bytes() {
        match b {
            b'{' | b'[' | b'(' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if brace_depth(text) > MAX_BRACE_DEPTH {
        return;
    }
    match parse(Source::new("fuzz.nomad", text), &VarInputs::default()) {
        Ok(loaded) => {
            let checked = check_job(&loaded.job);
            if checked.errors.is_empty() {
                let plan = plan::build(&loaded.job, checked.ignored, loaded.notices.skipped_tasks);
                let _ = plan.to_text();
            }
        }
        Err(errors) => {
            assert!(!errors.0.is_empty());
            for e in &errors.0 {
                let _ = e.to_string();
            }
        }
    }
});

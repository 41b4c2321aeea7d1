//! Templates as consul-template writes them, rendered by a real run: variables, `range`
//! with index and over maps, `file` below the task dir, `parseJSON`, arithmetic, sprig.

use super::harness::{job_cleanup, task_lines, RunnerEnv};
use crate::support::{unique_name, LabelCleanup};

#[test]
fn a_template_reads_the_json_another_rendered_and_ranges_over_it() {
    let env = RunnerEnv::new("run-templates");
    let id = unique_name("tmpl");
    let _cleanup = job_cleanup(&id);
    let file = env.write_batch_job(
        &id,
        "t",
        r#"      config {
        image   = "localhost/ndp-busybox:latest"
        command = "cat"
        args    = ["/local/out.txt"]
      }
      template {
        destination = "local/conf.json"
        data        = <<EOT
{"name": "db", "ports": [5432, 5433], "tags": {"b": "2", "a": "1"}}
EOT
      }
      template {
        destination = "local/out.txt"
        data        = <<EOT
{{- $c := file "local/conf.json" | parseJSON -}}
{{ range $i, $p := $c.ports }}port{{ $i }}={{ $p }}
{{ end }}name={{ $c.name | toUpper }}
{{ range $k, $v := $c.tags }}{{ $k }}:{{ $v }};{{ end }}
{{ 7 | subtract 2 }} {{ sprig_trimPrefix "ab" "abc" }} {{ $n := 0 }}{{ $n = add $n 2 }}{{ $n }}
EOT
      }"#,
    );
    let out = env.run(&["run", file.to_str().expect("utf-8")]);
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    let lines = task_lines(&out.stdout, "g.t");
    let printed: Vec<&str> = lines
        .iter()
        .map(String::as_str)
        .filter(|l| !l.starts_with("==>"))
        .collect();
    assert_eq!(
        printed,
        ["port0=5432", "port1=5433", "name=DB", "a:1;b:2;", "5 c 2"],
        "{}",
        out.stdout
    );
}

/// A service job whose template renders `<id>.tpl` (next to the job file) into
/// `local/out.txt`; the task prints the file when it starts and on SIGHUP.
struct Watching {
    env: RunnerEnv,
    id: String,
    file: std::path::PathBuf,
    source: std::path::PathBuf,
    _cleanup: LabelCleanup,
}

fn watching_job(mode_lines: &str) -> Watching {
    let env = RunnerEnv::new("run-tmpl-watch");
    let id = unique_name("tmplwatch");
    let _cleanup = job_cleanup(&id);
    let source = env.state.join(format!("{id}.tpl"));
    std::fs::write(&source, "content-one {{ env \"NOMAD_TASK_NAME\" }}\n").expect("source");
    let file = env.state.join(format!("{id}.nomad"));
    std::fs::write(
        &file,
        format!(
            r#"job "{id}" {{
  group "g" {{
    restart {{
      attempts = 0
      mode     = "fail"
    }}
    task "t" {{
      driver = "podman"
      config {{
        image   = "localhost/ndp-busybox:latest"
        command = "sh"
        args    = ["-c", "trap 'echo got-hup; cat /local/out.txt' HUP; trap 'exit 0' TERM; echo started; cat /local/out.txt; while :; do sleep 0.2; done"]
      }}
      template {{
        source      = "{id}.tpl"
        destination = "local/out.txt"
        splay       = "100ms"
{mode_lines}
      }}
    }}
  }}
}}
"#
        ),
    )
    .expect("job file");
    Watching {
        env,
        id,
        file,
        source,
        _cleanup,
    }
}

/// How many status lines of the task start with `text`.
fn statuses(out: &str, text: &str) -> usize {
    task_lines(out, "g.t")
        .iter()
        .filter(|l| l.strip_prefix("==> ").is_some_and(|l| l.starts_with(text)))
        .count()
}

fn has_status(out: &str, text: &str) -> bool {
    statuses(out, text) > 0
}

fn printed(out: &str) -> Vec<String> {
    task_lines(out, "g.t")
        .into_iter()
        .filter(|l| !l.starts_with("==>"))
        .collect()
}

/// Runs the job, changes its template's source once the first content is out, waits for
/// the second, stops with Ctrl-C and returns the output (the run exits 0).
fn change_the_source_while_it_runs(job: &Watching) -> String {
    let mut running = job.env.spawn(&["run", job.file.to_str().expect("utf-8")]);
    running.wait_for("| content-one t");
    std::fs::write(&job.source, "content-two {{ env \"NOMAD_TASK_NAME\" }}\n").expect("change");
    running.wait_for("| content-two t");
    running.interrupt();
    let (code, out) = running.finish();
    assert_eq!(code, 0, "{out}");
    out
}

#[test]
fn a_changed_source_is_re_rendered_and_signalled_to_the_task() {
    let job =
        watching_job("        change_mode   = \"signal\"\n        change_signal = \"SIGHUP\"");
    let out = change_the_source_while_it_runs(&job);
    assert_eq!(
        printed(&out),
        ["started", "content-one t", "got-hup", "content-two t"],
        "{out}"
    );
    assert!(
        has_status(&out, "Template re-rendered: local/out.txt"),
        "{out}"
    );
    assert!(
        has_status(&out, "Template re-rendered: sending SIGHUP"),
        "{out}"
    );
    assert_eq!(statuses(&out, "Started (container"), 1, "{out}");
}

#[test]
fn a_changed_source_restarts_the_task_without_counting_a_failure() {
    // `attempts = 0, mode = "fail"`: a restart counted as a failure would end the job.
    let job = watching_job("        change_mode   = \"restart\"");
    let out = change_the_source_while_it_runs(&job);
    assert_eq!(
        printed(&out),
        ["started", "content-one t", "started", "content-two t"],
        "{out}"
    );
    assert!(
        has_status(
            &out,
            "Restarting: template re-rendered (not counted against the restart policy)"
        ),
        "{out}"
    );
    assert_eq!(statuses(&out, "Started (container"), 2, "{out}");
    assert!(!out.contains("Not restarting"), "{out}");
}

#[test]
fn a_noop_template_is_rewritten_with_its_owner_and_the_task_keeps_running() {
    // Another user's file needs root (as in Nomad); the rootless lane's runner is the
    // test user, who can still name its own ids.
    let (uid, gid) = if crate::support::lane().is_rootless() {
        crate::support::skip_part("uid/gid of another user: the runner is not root");
        crate::support::podman_user_ids()
    } else {
        (4321, 4322)
    };
    let job = watching_job(&format!(
        "        change_mode   = \"noop\"\n        uid           = {uid}\n        gid           = {gid}"
    ));
    let mut running = job.env.spawn(&["run", job.file.to_str().expect("utf-8")]);
    running.wait_for("| content-one t");
    let dirs = job.env.alloc_dirs(&job.id);
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let rendered = dirs[0].join("t/local/out.txt");
    std::fs::write(&job.source, "content-two {{ env \"NOMAD_TASK_NAME\" }}\n").expect("change");
    running.wait_for("| ==> Template re-rendered: local/out.txt");
    assert_eq!(
        std::fs::read_to_string(&rendered).expect("rendered file"),
        "content-two t\n"
    );
    let meta = std::fs::metadata(&rendered).expect("rendered file");
    assert_eq!(
        (
            std::os::unix::fs::MetadataExt::uid(&meta),
            std::os::unix::fs::MetadataExt::gid(&meta)
        ),
        (uid, gid)
    );
    running.interrupt();
    let (code, out) = running.finish();
    assert_eq!(code, 0, "{out}");
    assert_eq!(printed(&out), ["started", "content-one t"], "{out}");
    assert_eq!(statuses(&out, "Started (container"), 1, "{out}");
    assert!(!out.contains("Restarting"), "{out}");
    assert!(!out.contains("sending SIGHUP"), "{out}");
}

//! Templates as consul-template writes them, rendered by a real run: variables, `range`
//! with index and over maps, `file` below the task dir, `parseJSON`, arithmetic, sprig.

use super::harness::{task_lines, RunnerEnv, JOB_LABEL};
use crate::support::{unique_name, LabelCleanup};

#[test]
fn a_template_reads_the_json_another_rendered_and_ranges_over_it() {
    let env = RunnerEnv::new("run-templates");
    let id = unique_name("tmpl");
    let _cleanup = LabelCleanup {
        key: JOB_LABEL.into(),
        value: id.clone(),
    };
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

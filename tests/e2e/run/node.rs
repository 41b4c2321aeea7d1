//! Node facts (`-meta`, `--datacenter`, `--node-class`, `--node-name`) in a task's env,
//! config and templates, and `constraint` blocks checked against them (issue 13 item 7).

use super::harness::{containers_of, job_cleanup, task_lines, RunnerEnv};
use crate::support::unique_name;

/// A batch job that prints what it got from the node, under constraints that hold on a
/// node given `-meta rack=r7 --datacenter west-1 --node-class gpu`.
fn facts_job(id: &str) -> String {
    format!(
        r#"job "{id}" {{
  type        = "batch"
  datacenters = ["west-*"]

  constraint {{
    attribute = "${{meta.rack}}"
    value     = "r7"
  }}
  constraint {{
    attribute = "${{attr.driver.podman.version}}"
    version   = ">= 3.0"
  }}

  group "g" {{
    constraint {{
      attribute = "${{node.class}}"
      regexp    = "^g"
    }}
    constraint {{
      attribute = "${{attr.kernel.name}}"
      value     = "linux"
    }}
    task "t" {{
      driver = "podman"
      config {{
        image   = "localhost/ndp-busybox:latest"
        command = "sh"
        args    = ["-c", "echo config rack=${{meta.rack}} node=${{node.unique.name}}; echo env dc=$NOMAD_DC class=$CLASS kernel=$KERNEL; cat /local/facts.txt"]
      }}
      env {{
        CLASS  = "${{node.class}}"
        KERNEL = "${{attr.kernel.name}}"
      }}
      template {{
        destination = "local/facts.txt"
        data        = "template rack={{{{ env \"meta.rack\" }}}} dc={{{{ env \"node.datacenter\" }}}} podman={{{{ env \"attr.driver.podman\" }}}}\n"
      }}
      constraint {{
        attribute = "${{meta.disk}}"
        operator  = "is_not_set"
      }}
    }}
  }}
}}
"#
    )
}

#[test]
fn meta_and_datacenter_reach_env_config_and_templates_and_holding_constraints_run() {
    let env = RunnerEnv::new("run-node");
    let id = unique_name("node");
    let _cleanup = job_cleanup(&id);
    let file = env.state.join("facts.nomad");
    std::fs::write(&file, facts_job(&id)).expect("job file");
    let path = file.to_str().expect("utf-8");
    let node = [
        "-meta",
        "rack=r7",
        "--datacenter",
        "west-1",
        "-node-class",
        "gpu",
        "--node-name",
        "box7",
    ];

    let plan = env.run(&[&["plan", path][..], &node[..]].concat());
    assert_eq!(plan.code, 0, "{}{}", plan.stdout, plan.stderr);
    assert!(
        plan.stdout.contains(
            "Node \"box7\": datacenter west-1, class gpu, meta rack=r7; 5 constraints satisfied"
        ),
        "{}",
        plan.stdout
    );

    let out = env.run(&[&["run", path][..], &node[..]].concat());
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let printed: Vec<String> = task_lines(&out.stdout, "g.t")
        .into_iter()
        .filter(|l| !l.starts_with("==> "))
        .collect();
    assert_eq!(
        printed,
        [
            "config rack=r7 node=box7",
            "env dc=west-1 class=gpu kernel=linux",
            "template rack=r7 dc=west-1 podman=1",
        ],
        "{}",
        out.stdout
    );
}

#[test]
fn a_job_the_node_cannot_satisfy_is_refused_with_the_located_constraint() {
    let env = RunnerEnv::new("run-node-refused");
    let id = unique_name("refused");
    let _cleanup = job_cleanup(&id);
    let file = env.state.join("refused.nomad");
    std::fs::write(&file, facts_job(&id)).expect("job file");
    let path = file.to_str().expect("utf-8");

    // Another rack: the job-level constraint at line 5 fails, naming what the node has.
    let plan = env.run(&[
        "plan",
        path,
        "-meta",
        "rack=r1",
        "--datacenter",
        "west-1",
        "--node-class",
        "gpu",
    ]);
    assert_eq!(plan.code, 3, "{}{}", plan.stdout, plan.stderr);
    assert!(
        plan.stderr.contains(&format!(
            "Error: {path}:5:3: Constraint \"${{meta.rack}} = r7\" in job is not satisfied by this node: this node has meta.rack = \"r1\""
        )),
        "{}",
        plan.stderr
    );
    assert!(plan.stdout.is_empty(), "no plan is shown: {}", plan.stdout);

    // No meta, no class, another datacenter: every failing check, each at its place.
    let validate = env.run(&["validate", "--json", path, "--dc", "east-1"]);
    assert_eq!(validate.code, 3, "{}{}", validate.stdout, validate.stderr);
    let doc: serde_json::Value = serde_json::from_str(&validate.stdout).expect("json");
    assert_eq!(doc["valid"], false);
    let errors: Vec<(u64, String)> = doc["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            (
                e["location"]["line"].as_u64().unwrap_or_default(),
                e["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        errors,
        [
            (3, "Datacenter not served by this node: the job runs in [\"west-*\"], this node is in \"east-1\" (--datacenter)".to_string()),
            (5, "Constraint \"${meta.rack} = r7\" in job is not satisfied by this node: meta.rack is not set on this node (set it with -meta rack=VALUE)".to_string()),
            (15, "Constraint \"${node.class} regexp ^g\" in group \"g\" is not satisfied by this node: this node has node.class = \"\"".to_string()),
        ]
    );

    // A podman older than the job asks for: known only once podman answered.
    let old = std::fs::read_to_string(&file)
        .expect("job file")
        .replace("\">= 3.0\"", "\"< 1.0\"");
    std::fs::write(&file, old).expect("job file");
    let node = [
        "-meta",
        "rack=r7",
        "--datacenter",
        "west-1",
        "--node-class",
        "gpu",
    ];
    for command in ["plan", "run"] {
        let out = env.run(&[&[command, path][..], &node[..]].concat());
        assert_eq!(out.code, 3, "{command}: {}{}", out.stdout, out.stderr);
        assert!(
            out.stderr.contains(&format!(
                "Error: {path}:9:3: Constraint \"${{attr.driver.podman.version}} version < 1.0\" in job is not satisfied by this node: this node has attr.driver.podman.version = \""
            )),
            "{command}: {}",
            out.stderr
        );
    }
    assert!(
        containers_of(&id).is_empty(),
        "a refused run starts nothing"
    );
}

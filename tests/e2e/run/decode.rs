//! One decode path (issue 13): the same task `config` bodies through the plugin's pipeline
//! (the agent's hcldec over the plugin's schema, cty-msgpack, the plugin's decoder) and
//! through the runner (job file, its evaluator, `check`), with the same result.

use nomad_driver_podman::driver::TaskConfig;
use nomad_driver_podman::modes::plugin::{cty, hclspec};
use nomad_driver_podman::modes::run::check::{check_job, decode_config};
use nomad_driver_podman::modes::run::jobspec::{parse, source::Source, variables::VarInputs};

use super::harness::RunnerEnv;
use crate::plugin::hcldec;

/// Config bodies Nomad accepts where hcldec converts a value to the option's type.
const ACCEPTED: &[&str] = &[
    "memory_reservation = 5",
    "memory_reservation = \"5m\"\nmemory_swap = 10",
    "pids_limit = \"10\"\noom_score_adj = \"-5\"",
    "tty = \"true\"\nprivileged = \"false\"\ninit = true",
    "args = [1, \"two\", true]",
    "labels = [{ a = 1, b = true }]\nsysctl = [{ \"net.core.somaxconn\" = 16 }]",
    "cpu_cfs_period = 100000\nmemory_swappiness = \"60\"",
    "auth {\n  username = \"u\"\n  password = 1234\n  tls_verify = \"false\"\n}",
    "logging {\n  driver = \"journald\"\n  options = [{ tag = 10 }]\n}",
];

/// Bodies both refuse, naming the option.
const REFUSED: &[(&str, &str)] = &[
    ("pids_limit = \"many\"", "pids_limit"),
    ("privileged = \"yes\"", "privileged"),
];

fn runner_decode(body: &str) -> Result<TaskConfig, String> {
    let text = format!(
        "job \"j\" {{\n  group \"g\" {{\n    task \"t\" {{\n      driver = \"podman\"\n      config {{\n        image = \"busybox\"\n{body}\n      }}\n    }}\n  }}\n}}\n"
    );
    let loaded = parse(Source::new("job.nomad", text), &VarInputs::default())
        .map_err(|e| format!("{e:?}"))?;
    let checked = check_job(&loaded.job);
    if let Some(e) = checked.errors.first() {
        return Err(e.to_string());
    }
    let task = &loaded.job.groups[0].tasks[0];
    decode_config(task, &task.config).map_err(|e| e.to_string())
}

fn plugin_decode(body: &str) -> Result<TaskConfig, String> {
    let schema = hclspec::task_config_schema();
    let msgpack = hcldec::encode_hcl(&schema, &format!("image = \"busybox\"\n{body}\n"))?;
    let value = cty::decode(&msgpack).map_err(|e| e.to_string())?;
    TaskConfig::from_value(&value).map_err(|e| e.to_string())
}

#[test]
fn the_runner_and_the_plugin_decode_task_configs_alike() {
    for body in ACCEPTED {
        let plugin = plugin_decode(body).unwrap_or_else(|e| panic!("plugin, {body:?}: {e}"));
        let runner = runner_decode(body).unwrap_or_else(|e| panic!("runner, {body:?}: {e}"));
        assert_eq!(runner, plugin, "{body}");
    }
    for (body, field) in REFUSED {
        let plugin = plugin_decode(body).expect_err(body);
        let runner = runner_decode(body).expect_err(body);
        assert!(plugin.contains(field), "plugin, {body}: {plugin}");
        assert!(runner.contains(field), "runner, {body}: {runner}");
        assert!(
            runner.starts_with("job.nomad:"),
            "runner error has its place: {runner}"
        );
    }

    // Through the binary: `memory_reservation = 5` (a number) is accepted, as in Nomad.
    let env = RunnerEnv::new("run-decode");
    let file = env.state.join("mr.nomad");
    std::fs::write(
        &file,
        "job \"mr\" {\n  group \"g\" {\n    task \"t\" {\n      driver = \"podman\"\n      config {\n        image = \"busybox\"\n        memory_reservation = 5\n        pids_limit = \"10\"\n      }\n    }\n  }\n}\n",
    )
    .expect("job file");
    let out = env.run(&["validate", file.to_str().expect("utf-8")]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
}

use std::time::Duration;

use serde_json::json;

use super::*;
use crate::modes::run::model::{ChangeMode, Hook, JobType, NetworkMode, RestartMode, Stage};

fn parse_ok(text: &str) -> LoadedJob {
    parse_with(text, &VarInputs::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn parse_with(text: &str, inputs: &VarInputs) -> Result<LoadedJob, JobFileErrors> {
    parse(Source::new("job.nomad", text), inputs)
}

fn errors(text: &str) -> Vec<String> {
    match parse_with(text, &VarInputs::default()) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

const FULL: &str = r#"
variable "image" {
  type    = string
  default = "localhost/ndp-busybox:latest"
}

variable "replicas" {
  type    = number
  default = 2
}

locals {
  greeting = "hello ${local.who}"
  who      = upper(var.image == "" ? "nobody" : "world")
}

job "web" {
  type        = "service"
  datacenters = ["dc1"]
  priority    = 50
  meta {
    owner = "team"
  }

  constraint {
    attribute = "${attr.kernel.name}"
    value     = "linux"
  }

  group "app" {
    count = var.replicas

    network {
      mode = "bridge"
      port "http" {
        static = 8080
        to     = 80
      }
      port "metrics" {}
    }

    service {
      name = "web"
    }

    restart {
      attempts = 1
      delay    = "1s"
    }

    task "server" {
      driver = "podman"
      leader = true

      config {
        image   = var.image
        command = "httpd"
        args    = ["-f", "-p", "${NOMAD_PORT_http}"]
        labels = {
          team = "web"
        }
        ulimit {
          nofile = "1024:2048"
        }
      }

      env {
        GREETING = local.greeting
        ALLOC    = "${NOMAD_ALLOC_ID}"
        COUNT    = 3
      }

      template {
        data        = "port={{ env \"NOMAD_PORT_http\" }}"
        destination = "local/app.conf"
        perms       = "0600"
        change_mode = "restart"
      }

      resources {
        cpu    = 200
        memory = 64
      }

      service {
        name = "other"
      }
      kill_timeout = "2s"
      kill_signal  = "SIGTERM"
    }

    task "sidecar" {
      driver = "podman"
      lifecycle {
        hook    = "poststart"
        sidecar = true
      }
      config {
        image        = var.image
        network_mode = "task:server"
      }
      restart {
        attempts = 5
      }
    }

    task "legacy" {
      driver = "docker"
      config {
        image = "nginx"
      }
    }
  }
}
"#;

#[test]
fn decodes_a_full_job() {
    let loaded = parse_ok(FULL);
    let job = &loaded.job;
    assert_eq!(job.id, "web");
    assert_eq!(job.name, "web");
    assert_eq!(job.job_type, JobType::Service);
    assert_eq!(job.meta.get("owner").map(String::as_str), Some("team"));
    assert_eq!(job.groups.len(), 1);
    let group = &job.groups[0];
    assert_eq!(group.count, 2);
    let net = group.network.as_ref().unwrap();
    assert_eq!(net.mode, NetworkMode::Bridge);
    assert_eq!(net.ports.len(), 2);
    assert_eq!(
        (net.ports[0].static_port, net.ports[0].to),
        (Some(8080), Some(80))
    );
    assert_eq!((net.ports[1].static_port, net.ports[1].to), (None, None));
    assert_eq!(group.tasks.len(), 2);

    let server = &group.tasks[0];
    assert!(server.leader);
    assert_eq!(server.stage(), Stage::Main);
    assert_eq!(
        server.config,
        json!({
            "image": "localhost/ndp-busybox:latest",
            "command": "httpd",
            "args": ["-f", "-p", "${NOMAD_PORT_http}"],
            "labels": {"team": "web"},
            "ulimit": [{"nofile": "1024:2048"}],
        })
    );
    assert_eq!(
        server.config_locations["image"].to_string(),
        "job.nomad:56:9"
    );
    assert_eq!(
        server.config_locations["ulimit"].to_string(),
        "job.nomad:62:9"
    );
    assert_eq!(server.env["GREETING"], "hello WORLD");
    assert_eq!(server.env["ALLOC"], "${NOMAD_ALLOC_ID}");
    assert_eq!(server.env["COUNT"], "3");
    assert_eq!(server.kill_timeout, Duration::from_secs(2));
    assert_eq!(server.kill_signal.as_deref(), Some("SIGTERM"));
    assert_eq!(server.resources.cpu, 200);
    assert_eq!(server.resources.memory_mb, 64);
    // group restart block over service defaults
    assert_eq!(server.restart.attempts, 1);
    assert_eq!(server.restart.delay, Duration::from_secs(1));
    assert_eq!(server.restart.interval, Duration::from_secs(1800));
    assert_eq!(server.restart.mode, RestartMode::Fail);
    assert_eq!(server.templates.len(), 1);
    assert_eq!(server.templates[0].perms, 0o600);
    assert_eq!(server.templates[0].destination, "local/app.conf");
    assert_eq!(server.templates[0].change_mode, ChangeMode::Restart);
    assert_eq!(server.templates[0].splay, Duration::from_secs(5));

    let sidecar = &group.tasks[1];
    assert_eq!(sidecar.stage(), Stage::PoststartSidecar);
    assert_eq!(sidecar.lifecycle.unwrap().hook, Hook::Poststart);
    // task restart block over the group's
    assert_eq!(sidecar.restart.attempts, 5);
    assert_eq!(sidecar.restart.delay, Duration::from_secs(1));

    // Constraints are checked against the node, not ignored; targets stay as written.
    assert_eq!(
        loaded
            .job
            .constraints
            .iter()
            .map(|c| (c.attribute.as_str(), c.operator.as_str(), c.value.as_str()))
            .collect::<Vec<_>>(),
        [("${attr.kernel.name}", "=", "linux")]
    );
    assert_eq!(
        loaded.job.constraints[0].location.to_string(),
        "job.nomad:25:3"
    );

    let ignored: Vec<(String, usize, String)> = loaded
        .notices
        .ignored
        .iter()
        .map(|i| (i.what.clone(), i.count, i.location.to_string()))
        .collect();
    assert_eq!(
        ignored,
        vec![
            ("priority".to_string(), 1, "job.nomad:20:3".to_string()),
            ("service".to_string(), 2, "job.nomad:42:5".to_string()),
        ]
    );
    assert_eq!(loaded.notices.skipped_tasks.len(), 1);
    assert_eq!(loaded.notices.skipped_tasks[0].driver, "docker");
    assert_eq!(loaded.notices.skipped_tasks[0].task, "legacy");
}

#[test]
fn variables_come_from_inputs() {
    let inputs = VarInputs {
        flags: vec!["replicas=3".into()],
        env: vec![("image".into(), "img:env".into())],
        ..Default::default()
    };
    let loaded = parse_with(FULL, &inputs).unwrap();
    assert_eq!(loaded.job.groups[0].count, 3);
    assert_eq!(
        loaded.job.groups[0].tasks[0].config["image"],
        json!("img:env")
    );
}

#[test]
fn batch_jobs_get_batch_restart_defaults() {
    let loaded = parse_ok(
        r#"
job "b" {
  type = "batch"
  group "g" {
    task "t" {
      driver = "podman"
      config { image = "x" }
    }
  }
}
"#,
    );
    let task = &loaded.job.groups[0].tasks[0];
    assert_eq!(task.restart.attempts, 3);
    assert_eq!(task.restart.interval, Duration::from_secs(86400));
    assert_eq!(task.restart.delay, Duration::from_secs(15));
    assert_eq!(task.kill_timeout, Duration::from_secs(5));
    assert_eq!(loaded.job.groups[0].count, 1);
    assert!(loaded.job.groups[0].network.is_none());
}

#[test]
fn errors_carry_file_line_and_column() {
    assert_eq!(
        errors("job \"x\" {\n  group \"g\" {\n    task \"t\" {\n      driver = \"podman\"\n      config { image = \"i\" }\n      bogus = 1\n    }\n  }\n}\n"),
        vec!["job.nomad:6:7: Unsupported argument: an argument named \"bogus\" is not expected in a task block"]
    );
    assert_eq!(
        errors("job \"x\" {\n  group \"g\" {\n    task \"t\" {\n      config { image = \"i\" }\n    }\n  }\n}\n"),
        vec!["job.nomad:3:5: Missing required argument: task \"t\" needs a driver"]
    );
    assert_eq!(
        errors("job \"x\" {\n  group \"g\" {\n    task \"t\" {\n      driver = \"podman\"\n      config { image = var.nope }\n    }\n  }\n}\n"),
        vec!["job.nomad:5:28: Reference to undeclared input variable: no variable \"nope\" block declares var.nope"]
    );
    let parse_error = errors("job \"x\" {\n  group \"g\" {\n");
    assert_eq!(parse_error.len(), 1);
    assert_eq!(
        parse_error[0],
        "job.nomad:2:13: Invalid HCL: Unclosed block: the block `group \"g\"` opened here has no closing `}`"
    );
}

#[test]
fn every_error_is_reported_in_file_order() {
    let errs = errors(
        r#"job "x" {
  group "g" {
    restart {
      delay = "soon"
    }
    task "t" {
      driver = "podman"
      lifecycle {
        hook = "later"
      }
      kill_timeout = 5
      config { image = "i" }
    }
    task "t" {
      driver = "podman"
      config { image = "i" }
    }
  }
}
"#,
    );
    assert_eq!(
        errs,
        vec![
            "job.nomad:4:15: Invalid value for delay: invalid duration \"soon\": expected a Go duration such as \"30s\", \"5m\" or \"1h30m\"",
            "job.nomad:9:16: Invalid lifecycle hook \"later\": expected prestart, poststart or poststop",
            "job.nomad:11:22: Invalid value for kill_timeout: invalid duration \"5\": expected a Go duration such as \"30s\", \"5m\" or \"1h30m\"",
            "job.nomad:14:10: Duplicate task \"t\": task names must be unique within a group",
        ]
    );
}

#[test]
fn a_job_without_podman_tasks_has_nothing_to_run() {
    assert_eq!(
        errors("job \"x\" {\n  group \"g\" {\n    task \"t\" {\n      driver = \"exec\"\n      config { command = \"true\" }\n    }\n  }\n}\n"),
        vec!["job.nomad:1:1: Nothing to run: the job has no task with driver = \"podman\" (found driver \"exec\"); the runner runs only podman tasks: set driver = \"podman\" in a task to run it here (a docker task's config usually works unchanged: image, command, args, ports)"]
    );
}

#[test]
fn templatefile_and_file_read_relative_to_the_job_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("motd.txt"), "hi\n").unwrap();
    std::fs::write(
        dir.path().join("conf.tpl"),
        "%{ for p in ports ~}\nlisten ${p}\n%{ endfor ~}\nid=${NOMAD_ALLOC_ID}\n",
    )
    .unwrap();
    let job = dir.path().join("job.nomad");
    std::fs::write(
        &job,
        r#"job "x" {
  group "g" {
    task "t" {
      driver = "podman"
      config { image = "i" }
      env {
        MOTD = trimspace(file("motd.txt"))
      }
      template {
        data        = templatefile("conf.tpl", { ports = [80, 81] })
        destination = "local/conf"
      }
    }
  }
}
"#,
    )
    .unwrap();
    let loaded = load(&job, &VarInputs::default()).unwrap();
    let task = &loaded.job.groups[0].tasks[0];
    assert_eq!(task.env["MOTD"], "hi");
    assert_eq!(
        task.templates[0].data.as_deref(),
        Some("listen 80\nlisten 81\nid=${NOMAD_ALLOC_ID}\n")
    );
}

#[test]
fn unsupported_names_come_with_the_nearest_known_one() {
    let errs = errors(
        r#"job "j" {
  datacenter = ["dc1"]
  group "g" {
    cont = 2
    task "t" {
      driver = "podman"
      resorces {
        cpu = 100
      }
      config {
        image = "x"
      }
    }
  }
}
"#,
    );
    assert_eq!(
        errs,
        [
            "job.nomad:2:3: Unsupported argument: an argument named \"datacenter\" is not expected in a job block. Did you mean \"datacenters\"?",
            "job.nomad:4:5: Unsupported argument: an argument named \"cont\" is not expected in a group block. Did you mean \"count\"?",
            "job.nomad:7:7: Unsupported block type: blocks of type \"resorces\" are not expected in a task block. Did you mean \"resources\"?",
        ]
    );
}

#[test]
fn an_unclosed_block_or_string_is_reported_where_it_opens() {
    let errs = errors(
        r#"job "j" {
  group "g" {
    task "t" {
      driver = "podman"
      config {
        image = "x"
      }
  }
}
"#,
    );
    assert_eq!(
        errs,
        ["job.nomad:3:14: Invalid HCL: Unclosed block: the block `task \"t\"` opened here has no closing `}`"]
    );
    let errs = errors("job \"j\" {\n  group \"g\" {\n    meta { a = \"b }\n  }\n}\n");
    assert_eq!(
        errs,
        ["job.nomad:3:16: Invalid HCL: Unterminated string: the string opened here has no closing `\"` on its line"]
    );
}

#[test]
fn constraint_blocks_decode_in_nomads_long_and_short_forms() {
    let loaded = parse_ok(
        r#"job "j" {
  constraint {
    distinct_hosts = true
  }
  group "g" {
    constraint {
      attribute = "${attr.kernel.version}"
      version   = ">= 4.0, < 99"
    }
    constraint {
      distinct_property = "${meta.rack}"
      value             = 2
    }
    task "t" {
      driver = "podman"
      config { image = "x" }
      constraint {
        attribute = "${meta.tags}"
        operator  = "set_contains_any"
        value     = "a,b"
      }
      constraint {
        attribute = "${meta.disk}"
        operator  = "is_set"
      }
    }
  }
}
"#,
    );
    let all: Vec<(String, String, String, String)> = loaded
        .job
        .constraints
        .iter()
        .chain(&loaded.job.groups[0].constraints)
        .chain(&loaded.job.groups[0].tasks[0].constraints)
        .map(|c| {
            (
                c.attribute.clone(),
                c.operator.clone(),
                c.value.clone(),
                c.location.to_string(),
            )
        })
        .collect();
    let row = |a: &str, o: &str, v: &str, at: &str| {
        (a.to_string(), o.to_string(), v.to_string(), at.to_string())
    };
    assert_eq!(
        all,
        [
            row("", "distinct_hosts", "", "job.nomad:2:3"),
            row(
                "${attr.kernel.version}",
                "version",
                ">= 4.0, < 99",
                "job.nomad:6:5"
            ),
            row("${meta.rack}", "distinct_property", "2", "job.nomad:10:5"),
            row("${meta.tags}", "set_contains_any", "a,b", "job.nomad:17:7"),
            row("${meta.disk}", "is_set", "", "job.nomad:22:7"),
        ]
    );
    assert!(loaded.notices.ignored.is_empty(), "{:?}", loaded.notices);
}

#[test]
fn malformed_constraints_are_located_errors() {
    let errs = errors(
        r#"job "j" {
  constraint {
    attribute = "${attr.kernel.name}"
    operator  = "~="
    value     = "linux"
  }
  group "g" {
    constraint {
      attribute = "${attr.kernel.name}"
      operator  = "regexp"
      version   = "1"
    }
    task "t" {
      driver = "podman"
      config { image = "x" }
      constraint {
        atribute = "${attr.kernel.name}"
      }
    }
  }
}
"#,
    );
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert!(
        errs[0].starts_with(
            "job.nomad:4:17: Unknown constraint operator \"~=\": expected one of =, ==,"
        ),
        "{errs:?}"
    );
    assert_eq!(
        errs[1],
        "job.nomad:11:7: Conflicting constraint: version sets the operator, already \"regexp\""
    );
    assert_eq!(
        errs[2],
        "job.nomad:17:9: Unsupported argument: an argument named \"atribute\" is not expected in a constraint block. Did you mean \"attribute\"?"
    );
}

#[test]
fn job_file_and_config_errors_come_in_one_round() {
    let errs = errors(
        r#"job "j" {
  datacenter = ["dc1"]
  group "g" {
    task "t" {
      driver = "podman"
      resorces {
        cpu = 100
      }
      config {
        image  = "x"
        comand = "sh"
      }
    }
    task "u" {
      driver = "podman"
      config {
        image = var.nope
        bogus = 1
      }
    }
  }
}
"#,
    );
    assert_eq!(errs.len(), 4, "{errs:#?}");
    assert!(
        errs[0].starts_with("job.nomad:2:3: Unsupported argument"),
        "{}",
        errs[0]
    );
    assert!(
        errs[1].starts_with("job.nomad:6:7: Unsupported block type"),
        "{}",
        errs[1]
    );
    assert!(
        errs[2].starts_with("job.nomad:11:9: task \"t\": config.comand: unknown option"),
        "{}",
        errs[2]
    );
    // Task u's config did not evaluate: its own error only, no cascade from it.
    assert!(
        errs[3].starts_with("job.nomad:17:21: Reference to undeclared input variable"),
        "{}",
        errs[3]
    );
}

fn with_logs(block: &str) -> String {
    format!(
        "job \"x\" {{\n  group \"g\" {{\n    task \"t\" {{\n      driver = \"podman\"\n      config {{ image = \"i\" }}\n      logs {{\n{block}\n      }}\n    }}\n  }}\n}}\n"
    )
}

#[test]
fn the_logs_block_sets_rotation_with_nomads_defaults_and_limits() {
    use crate::driver::logs::rotate::MIB;
    let task = |text: &str| parse_ok(text).job.groups[0].tasks[0].logs;
    let defaults = task(&with_logs(""));
    assert!(!defaults.disabled);
    assert_eq!(defaults.rotation.max_files, 10);
    assert_eq!(defaults.rotation.max_file_size, 10 * MIB);
    let set = task(&with_logs("max_files = 3\nmax_file_size = \"2\""));
    assert_eq!(set.rotation.max_files, 3);
    assert_eq!(set.rotation.max_file_size, 2 * MIB);
    assert!(task(&with_logs("disabled = true")).disabled);
    assert!(task(&with_logs("enabled = false")).disabled);
    assert!(!task(&with_logs("enabled = true\ndisabled = false")).disabled);
    let loaded = parse_ok(&with_logs("max_files = 1"));
    assert!(
        loaded.notices.ignored.iter().all(|i| i.what != "logs"),
        "honoured, not reported as ignored"
    );

    assert_eq!(
        errors(&with_logs("max_files = 0\nmax_file_size = 0")),
        vec![
            "job.nomad:7:13: Invalid max_files: the minimum number of files is 1; got 0",
            "job.nomad:8:17: Invalid max_file_size: the minimum file size is 1MB; got 0",
        ]
    );
    let errs = errors(&with_logs(
        "max_files = 1.5\nmax_file_size = \"big\"\nmax_size = 1",
    ));
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert!(
        errs[0].starts_with("job.nomad:7:13: Invalid value for max_files"),
        "{errs:?}"
    );
    assert!(
        errs[1].starts_with("job.nomad:8:17: Incorrect attribute value type"),
        "{errs:?}"
    );
    assert!(
        errs[2].starts_with("job.nomad:9:1: Unsupported argument"),
        "{errs:?}"
    );
    let errs = errors(&with_logs("disabled = true\nenabled = true"));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("job.nomad:8:11: Conflicting logs settings"),
        "{errs:?}"
    );
}

fn with_artifact(block: &str) -> String {
    format!(
        "job \"x\" {{\n  group \"g\" {{\n    task \"t\" {{\n      driver = \"podman\"\n      config {{ image = \"i\" }}\n      artifact {{\n{block}\n      }}\n    }}\n  }}\n}}\n"
    )
}

#[test]
fn artifact_blocks_decode_with_nomads_defaults() {
    use crate::modes::run::artifact::{ArchiveFormat, DigestKind};
    use crate::modes::run::model::{ArchiveChoice, ArtifactMode};
    let loaded = parse_ok(&with_artifact("source = \"files/app.tgz\""));
    let a = &loaded.job.groups[0].tasks[0].artifacts[0];
    assert_eq!(a.source, "files/app.tgz");
    assert_eq!(a.destination, "local/");
    assert_eq!(a.mode, ArtifactMode::Any);
    assert_eq!(a.archive, ArchiveChoice::Detect);
    assert!(a.checksum.is_none());
    assert_eq!(a.location.to_string(), "job.nomad:6:7");
    assert!(
        loaded.notices.ignored.iter().all(|i| i.what != "artifact"),
        "honoured, not reported as ignored"
    );

    let sum = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let loaded = parse_ok(&with_artifact(&format!(
        "source = \"https://h/app\"\ndestination = \"local/bin/app\"\nmode = \"file\"\noptions {{\n checksum = \"sha256:{sum}\"\n archive = \"tar.gz\"\n}}"
    )));
    let a = &loaded.job.groups[0].tasks[0].artifacts[0];
    assert_eq!(a.mode, ArtifactMode::File);
    assert_eq!(a.archive, ArchiveChoice::Format(ArchiveFormat::TarGz));
    let checksum = a.checksum.as_ref().expect("checksum");
    assert_eq!(
        (checksum.kind, checksum.hex.as_str()),
        (DigestKind::Sha256, sum)
    );
    let a = &parse_ok(&with_artifact(
        "source = \"x.zip\"\noptions = { archive = \"false\" }",
    ))
    .job
    .groups[0]
        .tasks[0]
        .artifacts[0];
    assert_eq!(a.archive, ArchiveChoice::Never);
}

#[test]
fn malformed_artifacts_are_located_errors() {
    assert_eq!(
        errors(&with_artifact("destination = \"local/\"")),
        vec!["job.nomad:6:7: Missing required argument: an artifact needs a source"]
    );
    assert_eq!(
        errors(&with_artifact("source = \"a.tgz\"\nmode = \"tree\"")),
        vec!["job.nomad:8:8: Invalid artifact mode \"tree\": one of \"any\", \"file\" or \"dir\" is required"]
    );
    assert_eq!(
        errors(&with_artifact("source = \"a.tgz\"\ndestination = \"../../../etc\"")),
        vec!["job.nomad:8:15: Invalid artifact destination \"../../../etc\": it must stay inside the allocation directory"]
    );
    let errs = errors(&with_artifact(
        "source = \"s3://bucket/a.tgz\"\noptions {\n checksum = \"sha256:abc\"\n ref = \"main\"\n}",
    ));
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert!(
        errs[0].starts_with("job.nomad:7:10: Invalid artifact source: unsupported artifact source \"s3://bucket/a.tgz\""),
        "{errs:?}"
    );
    assert!(
        errs[1].starts_with("job.nomad:9:2: Invalid artifact option: invalid checksum \"sha256:abc\": a sha256 checksum is 64 hex digits"),
        "{errs:?}"
    );
    assert!(
        errs[2].starts_with("job.nomad:10:2: Unsupported artifact option \"ref\""),
        "{errs:?}"
    );
}

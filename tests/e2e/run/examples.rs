//! Every example in examples/jobs, run through the binary: output, exit codes, ports
//! reachable from the host, env, rendered files, start and stop order, restarts, and that
//! no container remains.

use std::os::unix::fs::PermissionsExt;

use super::harness::{
    container_env, containers_of, http_get, line_of, ports_of, read, task_lines, RunnerEnv,
};

#[test]
fn hello_runs_a_batch_job_to_completion() {
    let env = RunnerEnv::new("run-hello");
    let job = env.example("hello");
    let out = env.run(&["run", job.path()]);
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    let say = task_lines(&out.stdout, "hello.say");
    assert!(
        say.iter().any(|l| l == "Hello, podman from say!"),
        "{}",
        out.stdout
    );
    assert!(
        say.iter()
            .any(|l| l == &format!("job={} alloc=0 task=say", job.id)),
        "{}",
        out.stdout
    );
    assert!(
        say.iter().any(|l| l == "==> Exited with code 0"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!("job {:?} complete", job.id)),
        "{}",
        out.stdout
    );

    let allocs = env.alloc_dirs(&job.id);
    assert_eq!(allocs.len(), 1);
    let alloc = &allocs[0];
    assert_eq!(read(&alloc.join("alloc/data/hello.txt")), "done\n");
    assert!(read(&alloc.join("alloc/logs/say.stdout.0")).contains("Hello, podman from say!"));
    for dir in ["alloc/tmp", "say/local", "say/secrets", "say/tmp"] {
        assert!(alloc.join(dir).is_dir(), "{dir} exists");
    }
    assert!(containers_of(&job.id).is_empty(), "no container remains");

    // The logs command reads the same files after the run.
    let logs = env.run(&["logs", &job.id]);
    assert_eq!(logs.code, 0, "{}", logs.stderr);
    assert!(
        task_lines(&logs.stdout, "hello.say")
            .iter()
            .any(|l| l == "Hello, podman from say!"),
        "{}",
        logs.stdout
    );
}

#[test]
fn hello_takes_variables_from_flags_files_and_environment() {
    let env = RunnerEnv::new("run-hello-vars");
    let job = env.example("hello");
    let var_file = env.state.join("vars.hcl");
    std::fs::write(&var_file, "greeting = \"From a file\"\n").expect("var file");

    let mut cmd = env.command(&[
        "run",
        "--var-file",
        var_file.to_str().expect("utf-8"),
        job.path(),
    ]);
    cmd.env("NOMAD_VAR_greeting", "From the environment");
    let out = env.run_with(cmd);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        task_lines(&out.stdout, "hello.say")
            .iter()
            .any(|l| l == "From a file, podman from say!"),
        "{}",
        out.stdout
    );

    let mut cmd = env.command(&[
        "run",
        "--var",
        "greeting=Howdy",
        "--var-file",
        var_file.to_str().expect("utf-8"),
        job.path(),
    ]);
    cmd.env("NOMAD_VAR_greeting", "From the environment");
    let out = env.run_with(cmd);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        task_lines(&out.stdout, "hello.say")
            .iter()
            .any(|l| l == "Howdy, podman from say!"),
        "{}",
        out.stdout
    );

    // The variable's validation block runs on the final value.
    let out = env.run(&["run", "--var", "greeting=", job.path()]);
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("Invalid value for variable \"greeting\": The greeting must not be empty."),
        "{}",
        out.stderr
    );
    assert!(containers_of(&job.id).is_empty());
}

#[test]
fn nomad_single_dash_var_flags_work_as_in_nomad_job_run() {
    let env = RunnerEnv::new("run-hello-nomad-flags");
    let job = env.example("hello");
    let var_file = env.state.join("prod.vars");
    std::fs::write(&var_file, "greeting = \"From prod.vars\"\n").expect("var file");
    let var_file = var_file.to_str().expect("utf-8");

    // `nomad job run -var-file F JOB` and `-var=N=V` (later wins), flags before the file.
    let out = env.run(&["run", "-var-file", var_file, job.path()]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        task_lines(&out.stdout, "hello.say")
            .iter()
            .any(|l| l == "From prod.vars, podman from say!"),
        "{}",
        out.stdout
    );
    let file_flag = format!("-var-file={var_file}");
    let out = env.run(&["run", &file_flag, "-var", "greeting=hi", job.path()]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        task_lines(&out.stdout, "hello.say")
            .iter()
            .any(|l| l == "hi, podman from say!"),
        "{}",
        out.stdout
    );
    // Mixed with the double-dash forms, after the file too; validate and plan take them.
    // As in Nomad, -var flags win over -var-file files whatever their order.
    let out = env.run(&[
        "plan",
        "--json",
        job.path(),
        "-var=greeting=Hey",
        "--var-file",
        var_file,
    ]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("Hey, podman"), "{}", out.stdout);
    let out = env.run(&["validate", "-var", "greeting=", job.path()]);
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("The greeting must not be empty."),
        "{}",
        out.stderr
    );
    // Unknown single-dash flags stay usage errors.
    let out = env.run(&["run", "-vars", "greeting=x", job.path()]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);

    let help = env.run(&["run", "--help"]);
    assert_eq!(help.code, 0, "{}", help.stderr);
    for spelled in [
        "--var <NAME=VALUE>",
        "-var,",
        "--var-file <FILE>",
        "-var-file,",
    ] {
        assert!(
            help.stdout.contains(spelled),
            "{spelled} in:\n{}",
            help.stdout
        );
    }
    assert!(containers_of(&job.id).is_empty());
}

#[test]
fn web_serves_its_rendered_template_on_a_dynamic_port_until_ctrl_c() {
    let env = RunnerEnv::new("run-web");
    let job = env.example("web");
    let mut running = env.spawn(&["run", job.path()]);
    let out = running.wait_for("==> Started (container server-");
    let ports = ports_of(&out, "http");
    assert_eq!(ports.len(), 1, "{out}");
    assert!(
        (20000..=32000).contains(&ports[0]),
        "dynamic port {}",
        ports[0]
    );

    let page = http_get(ports[0], "/");
    assert!(page.contains("<h1>Hello from the runner</h1>"), "{page}");
    assert!(
        page.contains("serves on port 8080"),
        "NOMAD_PORT_http is the `to` port: {page}"
    );
    let raw = http_get(ports[0], "/raw.txt");
    assert!(
        raw.contains("task server keeps {{ this }}"),
        "custom delimiters: {raw}"
    );

    let alloc = &env.alloc_dirs(&job.id)[0];
    let alloc_id = alloc
        .file_name()
        .expect("alloc id")
        .to_string_lossy()
        .into_owned();
    assert!(page.contains(&format!("alloc {alloc_id} serves")), "{page}");
    let secret = alloc.join("server/secrets/app.env");
    assert_eq!(
        read(&secret),
        format!("OWNER=team-{}\n", job.id.to_uppercase())
    );
    assert_eq!(
        std::fs::metadata(&secret)
            .expect("secret")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    let container = format!("server-{alloc_id}");
    let container_env = container_env(&container);
    for expected in [
        format!("OWNER=team-{}", job.id.to_uppercase()),
        "TITLE=Hello from the runner".to_string(),
        "NOMAD_PORT_http=8080".to_string(),
        format!("NOMAD_HOST_PORT_http={}", ports[0]),
        format!("NOMAD_ADDR_http=127.0.0.1:{}", ports[0]),
        format!("NOMAD_ALLOC_ID={alloc_id}"),
        format!("NOMAD_ALLOC_NAME={}.web[0]", job.id),
        format!("NOMAD_JOB_ID={}", job.id),
        "NOMAD_TASK_NAME=server".to_string(),
        "NOMAD_GROUP_NAME=web".to_string(),
        "NOMAD_ALLOC_DIR=/alloc".to_string(),
        "NOMAD_TASK_DIR=/local".to_string(),
        "NOMAD_SECRETS_DIR=/secrets".to_string(),
        "NOMAD_MEMORY_LIMIT=32".to_string(),
        "NOMAD_CPU_LIMIT=100".to_string(),
    ] {
        assert!(
            container_env.contains(&expected),
            "{expected} missing from {container_env:?}"
        );
    }
    assert_eq!(containers_of(&job.id), vec![container.clone()]);

    running.interrupt();
    let (code, out) = running.finish();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("stopping the job in Nomad's order"), "{out}");
    assert!(
        task_lines(&out, "web.server")
            .iter()
            .any(|l| l.starts_with("==> Killing: sending SIGTERM, SIGKILL after 3s")),
        "{out}"
    );
    assert!(out.contains(&format!("job {:?} stopped", job.id)), "{out}");
    assert!(containers_of(&job.id).is_empty(), "no container remains");
}

#[test]
fn web_with_two_allocations_gets_two_ports() {
    let env = RunnerEnv::new("run-web-count");
    let job = env.example("web");
    let mut running = env.spawn(&["run", "--var", "count=2", job.path()]);
    running.wait_for("web[0].server | ==> Started");
    let out = running.wait_for("web[1].server | ==> Started");
    let ports = ports_of(&out, "http");
    assert_eq!(ports.len(), 2, "{out}");
    assert_ne!(ports[0], ports[1]);
    let allocs = env.alloc_dirs(&job.id);
    assert_eq!(allocs.len(), 2);
    let pages: Vec<String> = ports.iter().map(|p| http_get(*p, "/")).collect();
    for alloc in &allocs {
        let id = alloc
            .file_name()
            .expect("id")
            .to_string_lossy()
            .into_owned();
        assert_eq!(
            pages.iter().filter(|p| p.contains(&id)).count(),
            1,
            "each allocation serves on its own port"
        );
    }
    running.interrupt();
    let (code, out) = running.finish();
    assert_eq!(code, 0, "{out}");
    assert!(containers_of(&job.id).is_empty());
}

#[test]
fn lifecycle_hooks_start_and_stop_in_nomads_order() {
    let env = RunnerEnv::new("run-lifecycle");
    let job = env.example("lifecycle");
    let out = env.run(&["run", job.path()]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let o = &out.stdout;
    // main waits for the prestart task to finish and the prestart sidecar to run
    assert!(
        line_of(o, "order.init     | ==> Exited with code 0")
            < line_of(o, "order.main     | ==> Started"),
        "{o}"
    );
    assert!(
        line_of(o, "order.helper   | ==> Started") < line_of(o, "order.main     | ==> Started"),
        "{o}"
    );
    // poststart waits for main to run
    assert!(
        line_of(o, "order.main     | ==> Started") < line_of(o, "order.announce | ==> Started"),
        "{o}"
    );
    // the leader's exit stops the sidecar; poststop runs last
    assert!(
        line_of(o, "order.main     | ==> Exited with code 0")
            < line_of(o, "order.helper   | ==> Killing"),
        "{o}"
    );
    assert!(
        line_of(o, "order.helper   | ==> Exited") < line_of(o, "order.cleanup  | ==> Started"),
        "{o}"
    );
    assert!(
        o.contains("leader task \"main\" finished, stopping the other tasks"),
        "{o}"
    );

    let order = read(&env.alloc_dirs(&job.id)[0].join("alloc/data/order"));
    let lines: Vec<&str> = order.lines().collect();
    let at = |s: &str| {
        lines
            .iter()
            .position(|l| *l == s)
            .unwrap_or_else(|| panic!("{s} missing: {order}"))
    };
    assert!(at("prestart") < at("main"));
    assert!(
        at("main") < at("poststop")
            && at("poststart") < at("poststop")
            && at("sidecar") < at("poststop")
    );
    assert!(
        task_lines(o, "order.cleanup")
            .iter()
            .any(|l| l.starts_with("order: ")),
        "{o}"
    );
    assert!(containers_of(&job.id).is_empty());
}

#[test]
fn restart_policy_restarts_a_failing_task_then_gives_up() {
    let env = RunnerEnv::new("run-restart");
    let job = env.example("restart");
    let out = env.run(&["run", job.path()]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let flaky = task_lines(&out.stdout, "flaky.flaky");
    assert_eq!(
        flaky
            .iter()
            .filter(|l| l.starts_with("==> Restarting in "))
            .count(),
        2,
        "{}",
        out.stdout
    );
    assert!(
        flaky.iter().any(|l| l == "run 3 succeeds"),
        "{}",
        out.stdout
    );
    assert_eq!(
        read(&env.alloc_dirs(&job.id)[0].join("alloc/data/runs")),
        "3\n"
    );

    let out = env.run(&["run", "--var", "fail_times=5", job.path()]);
    assert_eq!(
        out.code, 1,
        "a task that fails for good gives exit code 1:\n{}",
        out.stdout
    );
    let flaky = task_lines(&out.stdout, "flaky.flaky");
    assert_eq!(
        flaky
            .iter()
            .filter(|l| l.starts_with("==> Started"))
            .count(),
        4,
        "{}",
        out.stdout
    );
    assert!(
        flaky
            .iter()
            .any(|l| l.starts_with("==> Not restarting: exceeded 3 restart attempts in 1m")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("failed: task \"flaky\" failed"),
        "{}",
        out.stdout
    );
    assert!(containers_of(&job.id).is_empty());
}

/// The Go plugin README's three pod patterns: the sidecar reaches the server on
/// localhost, the port is reachable from the host, detach/ps/logs/stop work.
fn pod_pattern(example: &str, body: &str, tasks: &[&str], server_env: &[&str]) {
    let env = RunnerEnv::new(&format!("run-{example}"));
    let job = env.example(example);
    let started = env.run(&["run", "--detach", job.path()]);
    assert_eq!(started.code, 0, "{}{}", started.stdout, started.stderr);
    assert!(
        started
            .stdout
            .contains(&format!("job {:?} is running in the background", job.id)),
        "{}",
        started.stdout
    );

    let ps = env.run(&["ps", &job.id]);
    assert_eq!(ps.code, 0, "{}", ps.stderr);
    for task in tasks {
        assert!(
            ps.stdout
                .lines()
                .any(|l| l.split_whitespace().nth(3) == Some(task) && l.contains("running")),
            "{task} running in:\n{}",
            ps.stdout
        );
    }
    assert!(ps.stdout.contains("runner pid"), "{}", ps.stdout);
    let port: u16 = ps
        .stdout
        .split("http 127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split("->").next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("port in:\n{}", ps.stdout));
    assert!(
        http_get(port, "/").contains(body),
        "reachable from the host"
    );

    let server = containers_of(&job.id)
        .into_iter()
        .find(|n| n.starts_with("server-"))
        .expect("server container");
    let env_of_server = container_env(&server);
    for expected in server_env {
        assert!(
            env_of_server.iter().any(|e| e == expected),
            "{expected} missing from {env_of_server:?}"
        );
    }

    // The probe sidecar reaches the server on localhost.
    let expected = format!("probe: {body}");
    let mut seen = String::new();
    for _ in 0..300 {
        seen = env.run(&["logs", &job.id, "probe"]).stdout;
        if seen.contains(&expected) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(
        task_lines(&seen, "pod.probe")
            .iter()
            .any(|l| l == &expected),
        "{seen}"
    );

    let stop = env.run(&["stop", &job.id]);
    assert_eq!(stop.code, 0, "{}{}", stop.stdout, stop.stderr);
    assert!(containers_of(&job.id).is_empty(), "no container remains");
    let ps = env.run(&["ps", &job.id]);
    assert!(ps.stdout.contains("no containers of job"), "{}", ps.stdout);
    let runner_log = read(&env.state.join(&job.id).join("runner.log"));
    assert!(
        runner_log.contains(&format!("job {:?} stopped", job.id)),
        "{runner_log}"
    );
}

#[test]
fn pod_with_a_sidecar_joining_the_server() {
    pod_pattern(
        "pod-task",
        "server-ok",
        &["server", "probe"],
        &["NOMAD_PORT_http=8080"],
    );
}

#[test]
fn pod_with_a_pause_container_owning_the_namespace() {
    pod_pattern(
        "pod-pause",
        "pause-ok",
        &["pod", "server", "probe"],
        &["NOMAD_PORT_http=8080"],
    );
}

#[test]
fn pod_with_a_group_bridge_network() {
    pod_pattern(
        "pod-bridge",
        "bridge-ok",
        &["nomad_init", "server", "probe"],
        &[
            "NOMAD_PORT_http=8080",
            "NOMAD_ALLOC_PORT_http=8080",
            "NOMAD_ALLOC_INTERFACE_http=eth0",
        ],
    );
}

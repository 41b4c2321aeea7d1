//! The runner SIGKILLed in the foreground: `ps` and `stop` still find its containers, and a
//! new `run` of the same job starts cleanly (no leftover names or ports in the way).

use crate::run::harness::{containers_of, http_get, ports_of, RunnerEnv};

#[test]
fn sigkilled_runner_leaves_containers_that_ps_and_stop_handle_and_run_again_works() {
    let env = RunnerEnv::new("fault-runner");
    let job = env.example("web");

    let mut first = env.spawn(&["run", job.path()]);
    let out = first.wait_for("==> Started (container server-");
    let first_port = *ports_of(&out, "http")
        .first()
        .expect("port of the first run");
    assert!(http_get(first_port, "/").contains("Hello from the runner"));
    let before = containers_of(&job.id);
    assert!(!before.is_empty());

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first.pid()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("SIGKILL the runner");
    let (code, _) = first.finish();
    assert_eq!(code, -1, "killed by a signal");

    let left = containers_of(&job.id);
    assert_eq!(left, before, "the containers outlive their runner");
    let ps = env.run(&["ps", &job.id]);
    assert_eq!(ps.code, 0, "{}", ps.stderr);
    assert!(
        ps.stdout.contains("server") && ps.stdout.contains("running"),
        "{}",
        ps.stdout
    );

    let stop = env.run(&["stop", &job.id]);
    assert_eq!(stop.code, 0, "{}{}", stop.stdout, stop.stderr);
    assert!(containers_of(&job.id).is_empty(), "stop removed them all");

    let mut second = env.spawn(&["run", job.path()]);
    let out = second.wait_for("==> Started (container server-");
    let second_port = *ports_of(&out, "http")
        .first()
        .expect("port of the second run");
    assert!(http_get(second_port, "/").contains("Hello from the runner"));
    let after = containers_of(&job.id);
    assert_eq!(after.len(), before.len());
    second.interrupt();
    let (code, _) = second.finish();
    assert_eq!(code, 0, "Ctrl-C ends the second run cleanly");
    assert!(containers_of(&job.id).is_empty());

    println!(
        "faults/runner SIGKILL: {} container(s) left running and listed by ps, removed by stop; \
         rerun started ({:?} -> {:?}, port {first_port} -> {second_port})",
        left.len(),
        before,
        after
    );
}

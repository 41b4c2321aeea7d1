//! e2e: registry credentials and secrets never appear in anything the driver or runner
//! prints or returns.
//!
//! Every test runs something with credentials of the local auth registry (right ones and
//! wrong ones), collects every text the driver core returns (errors in `Display` and
//! `Debug` form, task events, task status) or the runner prints (stdout and stderr of
//! `validate`, `plan` (plain and JSON), `run`, `logs`), and greps all of it for the
//! passwords, every form of the `X-Registry-Auth` header and the auth-file `auth` entry,
//! and the contents of a template rendered into `secrets/`.

use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use tokio::sync::broadcast;

use nomad_driver_podman::driver::{
    Driver, DriverConfig, TaskConfig, TaskContext, TaskEvent, TaskSpec,
};

use crate::support::{self, unique_name, ImageCleanup, LabelCleanup, TestRegistry};

/// Texts that must never be printed, each with what it is (for the failure message).
struct Secrets(Vec<(String, String)>);

impl Secrets {
    /// `password` in every encoding a leak could take for `user` on `registry`.
    fn for_credentials(registry: &str, user: &str, password: &str) -> Secrets {
        let mut secrets = Secrets(Vec::new());
        secrets.add(&format!("password {password:?}"), password);
        let engines = [
            ("standard", base64::engine::general_purpose::STANDARD),
            ("url-safe", base64::engine::general_purpose::URL_SAFE),
            (
                "standard unpadded",
                base64::engine::general_purpose::STANDARD_NO_PAD,
            ),
            (
                "url-safe unpadded",
                base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ),
        ];
        let headers = [
            json!({"username": user, "password": password, "serveraddress": registry}),
            json!({"username": user, "password": password}),
        ];
        for (name, engine) in engines {
            secrets.add(
                &format!("{name} base64 of user:password"),
                &engine.encode(format!("{user}:{password}")),
            );
            secrets.add(
                &format!("{name} base64 of the password"),
                &engine.encode(password),
            );
            for header in &headers {
                secrets.add(
                    &format!("{name} base64 X-Registry-Auth {header}"),
                    &engine.encode(header.to_string()),
                );
            }
        }
        secrets
    }

    fn add(&mut self, what: &str, text: &str) {
        self.0.push((what.to_string(), text.to_string()));
    }

    fn extend(&mut self, other: Secrets) {
        self.0.extend(other.0);
    }

    /// Fails naming the secret and where it showed up.
    fn assert_absent(&self, source: &str, text: &str) {
        for (what, secret) in &self.0 {
            assert!(
                !text.contains(secret.as_str()),
                "{what} leaked in {source}:\n{text}"
            );
        }
    }
}

fn credentials(registry: &TestRegistry) -> (String, String) {
    registry
        .credentials
        .clone()
        .expect("the auth registry has credentials")
}

fn driver(extra: Value) -> Arc<Driver> {
    let mut config = json!({ "socket_path": support::podman().socket_url() });
    if let (Value::Object(base), Value::Object(more)) = (&mut config, extra) {
        base.extend(more);
    }
    Driver::new(DriverConfig::from_value(&config).expect("driver config")).expect("driver")
}

/// A task that pulls `image` with `auth` (a task `auth` block) and exits 0.
fn pulling_task(label: &LabelCleanup, image: &str, auth: Value) -> TaskSpec {
    let config = json!({
        "image": image,
        "auth": auth,
        "command": "/bin/sh",
        "args": ["-c", "exit 0"],
        "labels": { label.key.clone(): label.value.clone() },
    });
    let alloc_id = uuid::Uuid::new_v4().to_string();
    TaskSpec {
        config: TaskConfig::from_value(&config).expect("task config"),
        context: TaskContext {
            id: format!("{alloc_id}/pull/0"),
            name: "pull".into(),
            alloc_id,
            job_name: "secrets".into(),
            task_group_name: "group".into(),
            kill_timeout: Duration::from_secs(1),
            ..TaskContext::default()
        },
    }
}

fn drain(events: &mut broadcast::Receiver<TaskEvent>) -> String {
    let mut text = String::new();
    while let Ok(event) = events.try_recv() {
        text.push_str(&format!("{event:?}\n"));
    }
    text
}

/// Starts `spec`, which must fail; checks the error (both forms) and the events.
async fn assert_start_fails_cleanly(d: &Driver, spec: TaskSpec, secrets: &Secrets) -> String {
    let mut events = d.subscribe_events();
    let err = d
        .start(spec)
        .await
        .expect_err("the pull must fail with wrong credentials");
    let text = err.to_string();
    secrets.assert_absent("the start error", &text);
    secrets.assert_absent("the start error (Debug)", &format!("{err:?}"));
    secrets.assert_absent("task events", &drain(&mut events));
    text
}

/// Starts `spec`, which must succeed and exit 0; checks events, status and handle state.
async fn assert_runs_cleanly(d: &Driver, spec: TaskSpec, secrets: &Secrets) {
    let mut events = d.subscribe_events();
    let id = spec.context.id.clone();
    let started = d
        .start(spec)
        .await
        .expect("start with the right credentials");
    secrets.assert_absent("the started task", &format!("{started:?}"));
    secrets.assert_absent(
        "the task state",
        &serde_json::to_string(&started.state).expect("state serializes"),
    );
    let exit = d.wait(&id).await.expect("wait");
    assert_eq!(exit.exit_code, 0, "{exit:?}");
    secrets.assert_absent("the task status", &format!("{:?}", d.inspect(&id).await));
    d.destroy(&id, true).await.expect("destroy");
    secrets.assert_absent("task events", &drain(&mut events));
}

#[tokio::test]
async fn task_auth_block_never_shows_in_errors_events_or_state() {
    let registry = support::auth_registry();
    let (user, password) = credentials(registry);
    let wrong = unique_name("wrong-pw");
    let image = registry.push_busybox("secret-task");
    let _images = ImageCleanup(vec![image.clone()]);
    let label = LabelCleanup::new("secrets-task");
    let mut secrets = Secrets::for_credentials(&registry.host(), &user, &password);
    secrets.extend(Secrets::for_credentials(&registry.host(), &user, &wrong));
    let d = driver(json!({}));

    let auth =
        |password: &str| json!({"username": user, "password": password, "tls_verify": false});
    let spec = pulling_task(&label, &image, auth(&wrong));
    let text = assert_start_fails_cleanly(&d, spec, &secrets).await;
    assert!(text.contains(&image), "the error names the image: {text}");

    let spec = pulling_task(&label, &image, auth(&password));
    assert_runs_cleanly(&d, spec, &secrets).await;
}

#[tokio::test]
async fn plugin_auth_file_never_shows_in_errors_or_events() {
    let registry = support::auth_registry();
    let (user, password) = credentials(registry);
    let wrong = unique_name("wrong-pw");
    let image = registry.push_busybox("secret-file");
    let _images = ImageCleanup(vec![image.clone()]);
    let label = LabelCleanup::new("secrets-file");
    let mut secrets = Secrets::for_credentials(&registry.host(), &user, &password);
    secrets.extend(Secrets::for_credentials(&registry.host(), &user, &wrong));
    let not_base64 = format!("{wrong}!not-base64");
    secrets.add("an auth entry that is not base64", &not_base64);

    let dir = support::podman().scratch_dir("secrets-authfile");
    let file = dir.join("auth.json");
    let write_auth = |entry: String| {
        let content = json!({"auths": {registry.host(): {"auth": entry}}});
        std::fs::write(&file, content.to_string()).expect("write auth file");
    };
    let b64 = |text: String| base64::engine::general_purpose::STANDARD.encode(text);
    let d = driver(json!({"auth": {"config": file.display().to_string()}}));
    // An auth block without credentials only turns TLS off (plain HTTP registry).
    let insecure = json!({"tls_verify": false});

    write_auth(b64(format!("{user}:{wrong}")));
    let text =
        assert_start_fails_cleanly(&d, pulling_task(&label, &image, insecure.clone()), &secrets)
            .await;
    assert!(text.contains(&image), "the error names the image: {text}");

    write_auth(not_base64.clone());
    let text =
        assert_start_fails_cleanly(&d, pulling_task(&label, &image, insecure.clone()), &secrets)
            .await;
    assert!(
        text.contains(&file.display().to_string()),
        "the error names the auth file: {text}"
    );

    write_auth(b64(format!("{user}:{password}")));
    assert_runs_cleanly(&d, pulling_task(&label, &image, insecure), &secrets).await;
}

/// The runner, run as operators do, against the private podman service.
struct Runner<'a> {
    dir: &'a Path,
    state_dir: std::path::PathBuf,
    password: String,
}

impl Runner<'_> {
    fn command(&self, args: &[&str]) -> Output {
        support::podman()
            .command_as_podman_user(Path::new(env!("CARGO_BIN_EXE_nomad-driver-podman")))
            .args(args)
            .current_dir(self.dir)
            .env("NOMAD_VAR_registry_password", &self.password)
            .env("NOMAD_RUNNER_STATE_DIR", &self.state_dir)
            .env("CONTAINER_HOST", support::podman().socket_url())
            .env("NO_COLOR", "1")
            .output()
            .expect("run the runner")
    }

    /// Runs the command and checks both output streams; returns the exit code and stdout.
    fn checked(&self, args: &[&str], secrets: &Secrets) -> (Option<i32>, String) {
        let out = self.command(args);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        secrets.assert_absent(&format!("stdout of {args:?}"), &stdout);
        secrets.assert_absent(&format!("stderr of {args:?}"), &stderr);
        (out.status.code(), format!("{stdout}{stderr}"))
    }
}

/// A batch job pulling `image` with a password from a sensitive variable and a template
/// rendered into the task's secrets dir; the task only reports that the secret is there.
fn job_file(
    job: &str,
    image: &str,
    user: &str,
    template_secret: &str,
    label: &LabelCleanup,
) -> String {
    format!(
        r#"variable "registry_password" {{
  type      = string
  sensitive = true
}}

job "{job}" {{
  type = "batch"
  group "g" {{
    restart {{
      attempts = 0
      mode     = "fail"
    }}
    task "t" {{
      driver = "podman"
      config {{
        image   = "{image}"
        command = "/bin/sh"
        args    = ["-c", "test -s /secrets/token.txt && echo secret-present"]
        auth {{
          username   = "{user}"
          password   = var.registry_password
          tls_verify = false
        }}
        labels {{
          {key} = "{value}"
        }}
      }}
      template {{
        data        = "{template_secret}"
        destination = "secrets/token.txt"
      }}
    }}
  }}
}}
"#,
        key = label.key,
        value = label.value,
    )
}

#[test]
fn runner_output_never_shows_passwords_or_secret_templates() {
    let registry = support::auth_registry();
    let (user, password) = credentials(registry);
    let wrong = unique_name("wrong-pw");
    let image = registry.push_busybox("secret-runner");
    let _images = ImageCleanup(vec![image.clone()]);
    let label = LabelCleanup::new("secrets-runner");
    let template_secret = unique_name("template-token");
    let mut secrets = Secrets::for_credentials(&registry.host(), &user, &password);
    secrets.extend(Secrets::for_credentials(&registry.host(), &user, &wrong));
    secrets.add("the secrets/ template contents", &template_secret);

    let dir = support::podman().scratch_dir("secrets-runner");
    let job = unique_name("secrets");
    // The template text is in the job file, which is fine; it must not come back out.
    std::fs::write(
        dir.join("job.nomad"),
        job_file(&job, &image, &user, &template_secret, &label),
    )
    .expect("write job file");
    let mut runner = Runner {
        dir: &dir,
        state_dir: dir.join("state"),
        password: password.clone(),
    };

    let mut plan = String::new();
    for args in [
        &["validate", "job.nomad"][..],
        &["validate", "--json", "job.nomad"],
        &["plan", "job.nomad"],
        &["plan", "--json", "job.nomad"],
    ] {
        let (code, output) = runner.checked(args, &secrets);
        assert_eq!(code, Some(0), "{args:?}:\n{output}");
        plan = output;
    }
    let plan: Value = serde_json::from_str(&plan).expect("plan --json is JSON");
    let auth = &plan["groups"][0]["tasks"][0]["registry_auth"];
    assert_eq!(
        auth["username"],
        json!(user),
        "the plan shows who pulls: {plan}"
    );
    assert_eq!(auth["password"], json!("<redacted>"), "{plan}");

    runner.password = wrong.clone();
    let (code, output) = runner.checked(&["run", "job.nomad"], &secrets);
    assert_eq!(code, Some(1), "a failed pull fails the job:\n{output}");
    assert!(
        output.contains(&image),
        "the failure names the image:\n{output}"
    );

    runner.password = password.clone();
    let (code, output) = runner.checked(&["run", "job.nomad"], &secrets);
    assert_eq!(
        code,
        Some(0),
        "the job runs with the right password:\n{output}"
    );
    assert!(output.contains("secret-present"), "{output}");
    let (_, logs) = runner.checked(&["logs", &job], &secrets);
    assert!(logs.contains("secret-present"), "{logs}");
}

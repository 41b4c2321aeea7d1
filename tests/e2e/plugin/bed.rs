//! One test's world: a socket directory, an allocation root, a cleanup label, and plugin
//! processes configured against the private podman service from the agent config example.

use std::path::{Path, PathBuf};

use nomad_driver_podman::modes::plugin::proto::{
    base::ConfigSchemaRequest,
    drivers::{self, StartTaskRequest, StartTaskResponse, TaskConfigSchemaRequest},
    hclspec::Spec,
};
use serde_json::Value;

use super::agent::{Agent, Plugin};
use super::alloc::{Alloc, TaskFiles};
use super::{cty_msgpack, hcldec};
use crate::support::{self, LabelCleanup};

/// The agent config example shipped for operators; the tests run with it.
pub const AGENT_CONFIG_EXAMPLE: &str = include_str!("../../../examples/agent/client.hcl");

pub struct Bed {
    pub socket_dir: tempfile::TempDir,
    pub alloc_root: PathBuf,
    pub cleanup: LabelCleanup,
}

impl Bed {
    pub fn new(name: &str) -> Bed {
        // Short on purpose: the socket path must fit in sun_path.
        let socket_dir = tempfile::Builder::new().prefix("ndp-").tempdir().unwrap();
        Bed {
            socket_dir,
            alloc_root: support::podman().scratch_dir(&format!("plugin-{name}")),
            cleanup: LabelCleanup::new(&format!("plugin-{name}")),
        }
    }

    pub fn socket_dir(&self) -> &Path {
        self.socket_dir.path()
    }

    /// A plugin launched like the agent does and configured with the agent config
    /// example (socket pointed at the private podman service).
    pub async fn plugin(&self) -> Plugin {
        self.plugin_as(Agent::default_agent()).await
    }

    /// Like [`Bed::plugin`], with the client playing `agent`.
    pub async fn plugin_as(&self, agent: Agent) -> Plugin {
        let plugin = Plugin::launch_as(self.socket_dir(), agent).await;
        let config = example_plugin_config(&plugin).await;
        plugin
            .set_config(config)
            .await
            .expect("SetConfig with the example config");
        plugin
    }

    pub fn alloc(&self) -> Alloc {
        Alloc::new(&self.alloc_root)
    }

    /// HCL task options with this test's cleanup label added.
    pub fn labelled(&self, hcl: &str) -> String {
        format!(
            "{hcl}\nlabels {{\n  {} = \"{}\"\n}}\n",
            self.cleanup.key, self.cleanup.value
        )
    }
}

/// The recommended locked-down agent config example.
pub const LOCKED_DOWN_EXAMPLE: &str = include_str!("../../../examples/agent/locked-down.hcl");

/// A plugin launched like the agent does and configured with the locked-down example.
pub async fn locked_down_plugin(bed: &Bed) -> Plugin {
    let plugin = Plugin::launch(bed.socket_dir()).await;
    let schema = config_schema(&plugin).await;
    let config = hcldec::decode(&schema, &plugin_config_tree(LOCKED_DOWN_EXAMPLE)).unwrap();
    plugin
        .set_config(cty_msgpack::encode(&config))
        .await
        .expect("SetConfig with the locked-down config");
    plugin
}

/// The `config {}` body of the `plugin "nomad-driver-podman"` block of the example, as
/// the agent's config parser hands it over, with `socket_path` aimed at the test service.
pub fn example_config_tree() -> serde_json::Map<String, Value> {
    plugin_config_tree(AGENT_CONFIG_EXAMPLE)
}

/// The `config {}` body of the plugin block of an agent config, socket aimed at the test
/// service.
pub fn plugin_config_tree(agent_config: &str) -> serde_json::Map<String, Value> {
    let agent = hcl::parse(agent_config).expect("the example agent config parses");
    let plugin = agent
        .blocks()
        .find(|b| {
            b.identifier() == "plugin"
                && b.labels().first().map(|l| l.as_str()) == Some("nomad-driver-podman")
        })
        .expect("a plugin \"nomad-driver-podman\" block");
    let config = plugin
        .body()
        .blocks()
        .find(|b| b.identifier() == "config")
        .expect("a config block");
    let mut tree = hcldec::body_to_json(config.body()).unwrap();
    tree.insert(
        "socket_path".to_string(),
        Value::String(support::podman().socket_url()),
    );
    tree
}

/// The plugin config of the example, encoded against the plugin's own ConfigSchema.
pub async fn example_plugin_config(plugin: &Plugin) -> Vec<u8> {
    let schema = config_schema(plugin).await;
    cty_msgpack::encode(&hcldec::decode(&schema, &example_config_tree()).unwrap())
}

pub async fn config_schema(plugin: &Plugin) -> Spec {
    plugin
        .base()
        .config_schema(ConfigSchemaRequest {})
        .await
        .unwrap()
        .into_inner()
        .spec
        .expect("ConfigSchema returns a spec")
}

pub async fn task_schema(plugin: &Plugin) -> Spec {
    plugin
        .driver()
        .task_config_schema(TaskConfigSchemaRequest {})
        .await
        .unwrap()
        .into_inner()
        .spec
        .expect("TaskConfigSchema returns a spec")
}

/// A task's `config {}` body in HCL -> msgpack, through the plugin's TaskConfigSchema.
pub async fn task_msgpack(plugin: &Plugin, hcl: &str) -> Vec<u8> {
    let schema = task_schema(plugin).await;
    hcldec::encode_hcl(&schema, hcl).unwrap_or_else(|e| panic!("task config {hcl:?}: {e}"))
}

/// A started task: its files, the config the agent sent, and the plugin's answer.
pub struct Started {
    pub files: TaskFiles,
    pub config: drivers::TaskConfig,
    pub response: StartTaskResponse,
}

impl Started {
    pub fn id(&self) -> String {
        self.config.id.clone()
    }

    pub fn handle(&self) -> drivers::TaskHandle {
        self.response
            .handle
            .clone()
            .expect("StartTask returns a handle")
    }
}

/// Prepares task `name` in `alloc` and starts it with the HCL task options `hcl`.
pub async fn start(plugin: &Plugin, alloc: &Alloc, name: &str, hcl: &str) -> Started {
    let files = alloc.task(name);
    let config = alloc.task_config(name, &files, task_msgpack(plugin, hcl).await);
    let response = plugin
        .driver()
        .start_task(StartTaskRequest {
            task: Some(config.clone()),
        })
        .await
        .unwrap_or_else(|e| panic!("StartTask {name}: {e}"))
        .into_inner();
    Started {
        files,
        config,
        response,
    }
}

/// WaitTask's result for a task, within `deadline` (`what` says why it is expected).
pub async fn wait_result(
    plugin: &Plugin,
    task_id: &str,
    deadline: std::time::Duration,
    what: &str,
) -> drivers::ExitResult {
    tokio::time::timeout(
        deadline,
        plugin.driver().wait_task(drivers::WaitTaskRequest {
            task_id: task_id.to_string(),
        }),
    )
    .await
    .unwrap_or_else(|_| panic!("WaitTask answers for {what}"))
    .unwrap()
    .into_inner()
    .result
    .expect("WaitTask sets result")
}

/// StopTask + DestroyTask, as the agent does when an allocation stops.
pub async fn stop_and_destroy(plugin: &Plugin, task_id: &str) {
    let mut driver = plugin.driver();
    driver
        .stop_task(drivers::StopTaskRequest {
            task_id: task_id.to_string(),
            timeout: Some(prost_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
            signal: "SIGKILL".to_string(),
        })
        .await
        .unwrap();
    driver
        .destroy_task(drivers::DestroyTaskRequest {
            task_id: task_id.to_string(),
            force: true,
        })
        .await
        .unwrap();
}

/// An HCL string literal.
pub fn quote(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}

/// Task options running `script` under busybox `sh -c`.
pub fn shell_task(script: &str) -> String {
    format!(
        "image = {}\ncommand = \"sh\"\nargs = [\"-c\", {}]\n",
        quote(support::BUSYBOX_IMAGE),
        quote(script)
    )
}

//! The go-plugin process protocol as the agent sees it: cookie, handshake, socket,
//! infrastructure services, BasePlugin, signals and Shutdown.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use futures::StreamExt;
use nix::sys::signal::Signal;
use nomad_driver_podman::modes::plugin::proto::{
    base::{ConfigSchemaRequest, PluginInfoRequest, PluginType, SetConfigRequest},
    drivers::{self, CapabilitiesRequest, FingerprintRequest},
    go_plugin::{
        grpc_broker_client::GrpcBrokerClient, grpc_stdio_client::GrpcStdioClient, ConnInfo, Empty,
    },
};
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

use super::agent::{binary, parse_handshake, Plugin};
use super::bed::{self, Bed};
use super::{cty_msgpack, hcldec};

/// The agent kills a plugin this long after `GRPCController.Shutdown`.
const AGENT_KILL_DELAY: Duration = Duration::from_secs(2);

#[tokio::test]
async fn running_by_hand_without_the_cookie_explains_and_exits_1() {
    let output = tokio::process::Command::new(binary())
        .arg("plugin")
        .env_remove("NOMAD_PLUGIN_MAGIC_COOKIE")
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("Nomad task driver plugin"), "{text}");
    assert!(text.contains("plugin_dir"), "{text}");
}

#[tokio::test]
async fn handshake_socket_and_infrastructure_services() {
    let bed = Bed::new("handshake");
    let mut plugin = Plugin::launch(bed.socket_dir()).await;
    let fields = parse_handshake(&plugin.handshake);
    assert_eq!(
        fields,
        ["1", "2", "unix", plugin.socket.to_str().unwrap(), "grpc"]
    );

    // A private directory in PLUGIN_UNIX_SOCKET_DIR holds the socket.
    let private_dir = plugin.socket.parent().unwrap().to_path_buf();
    assert_eq!(private_dir.parent().unwrap(), bed.socket_dir());
    let mode = std::fs::metadata(&private_dir)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "socket dir is private: {mode:o}");

    let mut health = HealthClient::new(plugin.channel.clone());
    let status = health
        .check(HealthCheckRequest {
            service: "plugin".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.status, ServingStatus::Serving as i32);

    // The agent opens these on connect; they stay open and quiet.
    let mut stdio = GrpcStdioClient::new(plugin.channel.clone())
        .stream_stdio(())
        .await
        .unwrap()
        .into_inner();
    let (broker_tx, broker_rx) = tokio::sync::mpsc::channel::<ConnInfo>(1);
    let mut broker = GrpcBrokerClient::new(plugin.channel.clone())
        .start_stream(tokio_stream::wrappers::ReceiverStream::new(broker_rx))
        .await
        .unwrap()
        .into_inner();
    broker_tx
        .send(ConnInfo {
            service_id: 1,
            ..Default::default()
        })
        .await
        .unwrap();

    let info = plugin
        .base()
        .plugin_info(PluginInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.r#type, PluginType::Driver as i32);
    assert_eq!(info.name, "podman");
    assert_eq!(info.plugin_api_versions, ["v0.1.0"]);
    assert_eq!(info.plugin_version, env!("CARGO_PKG_VERSION"));

    // SIGINT (Ctrl-C on a foreground agent) is ignored.
    plugin.signal(Signal::SIGINT);
    let again = plugin
        .base()
        .plugin_info(PluginInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.name, "podman");

    // Stderr carries hclog JSON records.
    let lines = plugin.stderr_lines();
    assert!(!lines.is_empty());
    for line in &lines {
        let record: serde_json::Value = serde_json::from_str(line).expect("JSON log line");
        assert!(
            record["@level"].is_string() && record["@message"].is_string(),
            "{line}"
        );
        let timestamp = record["@timestamp"].as_str().unwrap();
        let fraction = timestamp.rsplit('.').next().unwrap();
        assert_eq!(fraction.len(), "123456Z".len(), "{timestamp}");
    }

    // Shutdown: replied to, the process exits before the agent would kill it, the socket
    // directory is gone and the idle streams end.
    plugin.controller().shutdown(Empty {}).await.unwrap();
    let status = plugin
        .exit_within(AGENT_KILL_DELAY)
        .await
        .expect("plugin exits after Shutdown before the agent's SIGKILL");
    assert!(status.success(), "{status:?}");
    assert!(!private_dir.exists());
    assert!(stdio.next().await.map_or(true, |item| item.is_err()));
    assert!(broker.next().await.map_or(true, |item| item.is_err()));
}

#[tokio::test]
async fn sigterm_exits_cleanly() {
    let bed = Bed::new("sigterm");
    let mut plugin = Plugin::launch(bed.socket_dir()).await;
    let private_dir = plugin.socket.parent().unwrap().to_path_buf();
    plugin.signal(Signal::SIGTERM);
    let status = plugin
        .exit_within(Duration::from_secs(10))
        .await
        .expect("exit on SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(!private_dir.exists());
}

#[tokio::test]
async fn agent_start_sequence_validates_config_twice_then_fingerprints() {
    let bed = Bed::new("startup");
    // Launch 1 and 2 of the agent: PluginInfo, ConfigSchema, then SetConfig twice
    // without nomad_config on a short-lived instance.
    let plugin = Plugin::launch(bed.socket_dir()).await;
    let schema = bed::config_schema(&plugin).await;
    let config =
        cty_msgpack::encode(&hcldec::decode(&schema, &bed::example_config_tree()).unwrap());
    for _ in 0..2 {
        plugin
            .base()
            .set_config(SetConfigRequest {
                msgpack_config: config.clone(),
                nomad_config: None,
                plugin_api_version: "v0.1.0".into(),
            })
            .await
            .unwrap();
    }
    // With no config block at all the agent still sends every key (defaults applied).
    let empty = cty_msgpack::encode(&hcldec::decode(&schema, &serde_json::Map::new()).unwrap());
    plugin.set_config(empty).await.unwrap();
    // And an empty msgpack_config means "no configuration".
    plugin.set_config(Vec::new()).await.unwrap();

    // Launch 3: the long-lived instance.
    plugin.set_config(config).await.unwrap();
    let caps = plugin
        .driver()
        .capabilities(CapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner()
        .capabilities
        .expect("capabilities are always set");
    assert!(caps.send_signals && caps.exec);
    assert_eq!(
        caps.fs_isolation,
        drivers::driver_capabilities::FsIsolation::Image as i32
    );
    use drivers::network_isolation_spec::NetworkIsolationMode;
    assert_eq!(
        caps.network_isolation_modes,
        [
            NetworkIsolationMode::Group as i32,
            NetworkIsolationMode::Host as i32,
            NetworkIsolationMode::Task as i32
        ]
    );
    assert!(!caps.must_create_network);

    let mut fingerprints = plugin
        .driver()
        .fingerprint(FingerprintRequest {})
        .await
        .unwrap()
        .into_inner();
    let first = fingerprints.next().await.unwrap().unwrap();
    assert_eq!(
        first.health,
        drivers::fingerprint_response::HealthState::Healthy as i32,
        "{first:?}"
    );
    let attribute = |key: &str| first.attributes.get(key).and_then(|a| a.value.clone());
    use nomad_driver_podman::modes::plugin::proto::structs::attribute::Value;
    assert_eq!(attribute("driver.podman"), Some(Value::BoolVal(true)));
    assert_eq!(
        attribute("driver.podman.health"),
        Some(Value::StringVal("healthy".into()))
    );
    assert!(
        matches!(attribute("driver.podman.version"), Some(Value::StringVal(v)) if !v.is_empty())
    );
    assert!(matches!(
        attribute("driver.podman.rootless"),
        Some(Value::BoolVal(r)) if r == crate::support::lane().is_rootless()
    ));
    assert_eq!(
        attribute("driver.podman.defaultPodman"),
        Some(Value::BoolVal(true))
    );
    plugin.kill().await;
}

#[tokio::test]
async fn config_errors_name_the_option() {
    let bed = Bed::new("config-errors");
    let plugin = Plugin::launch(bed.socket_dir()).await;
    let schema = bed::config_schema(&plugin).await;

    let mut tree = bed::example_config_tree();
    tree.insert("recover_stopped".into(), serde_json::json!("maybe"));
    // The agent itself refuses a value hcldec cannot convert ...
    let err = hcldec::decode(&schema, &tree).unwrap_err();
    assert!(err.contains("recover_stopped"), "{err}");
    // ... and the plugin names the option when it gets one anyway.
    let mut config = match hcldec::decode(&schema, &bed::example_config_tree()).unwrap() {
        cty_msgpack::Cty::Map(map) => map,
        other => panic!("{other:?}"),
    };
    config.insert("recover_stopped".into(), cty_msgpack::string("maybe"));
    let status = plugin
        .set_config(cty_msgpack::encode(&cty_msgpack::Cty::Map(config.clone())))
        .await
        .unwrap_err();
    assert!(
        status.message().contains("config.recover_stopped"),
        "{status:?}"
    );
    assert_ne!(status.code(), tonic::Code::Unavailable);

    config.remove("recover_stopped");
    config.insert("socket_pth".into(), cty_msgpack::string("unix:///x"));
    let status = plugin
        .set_config(cty_msgpack::encode(&cty_msgpack::Cty::Map(config)))
        .await
        .unwrap_err();
    assert!(status.message().contains("config.socket_pth"), "{status:?}");

    let status = plugin.set_config(vec![0x81, 0xa1, b'a']).await.unwrap_err();
    assert!(status.message().contains("cty-msgpack"), "{status:?}");

    let info = plugin
        .base()
        .config_schema(ConfigSchemaRequest {})
        .await
        .unwrap();
    assert!(info.into_inner().spec.is_some());
    plugin.kill().await;
}

//! `TaskHandle.driver_state`: the bytes the agent keeps for us and hands back to
//! `RecoverTask`.
//!
//! Ours is the core's `TaskState` as JSON, with `TaskHandle.version` =
//! `TASK_STATE_VERSION`. Handles of version 1 (or below) come from the Go plugin and are
//! translated by [`super::go_state`], taking the task's identity from the handle's
//! `TaskConfig`, which the agent persists (§6.5).

use std::path::PathBuf;

use crate::driver::handle::{LogTarget, TaskState, TASK_STATE_VERSION};
use crate::driver::task::container_name;

use super::go_state;
use super::proto::drivers;

/// The handle version of the state this plugin writes.
pub(crate) fn handle_version() -> i32 {
    i32::try_from(TASK_STATE_VERSION).unwrap_or(i32::MAX)
}

pub(crate) fn encode(state: &TaskState) -> Result<Vec<u8>, String> {
    serde_json::to_vec(state).map_err(|e| format!("cannot encode the task state: {e}"))
}

/// The core state for a handle given to `RecoverTask`. The task id is always the handle
/// config's id: that is the id the agent addresses the task by afterwards.
pub(crate) fn decode(handle: &drivers::TaskHandle) -> Result<TaskState, String> {
    let config = handle
        .config
        .as_ref()
        .ok_or("the handle carries no task config")?;
    if config.id.is_empty() {
        return Err("the handle's task config has no id".to_string());
    }
    let mut state = if handle.version <= 1 {
        from_go_plugin(config, &handle.driver_state)?
    } else {
        serde_json::from_slice::<TaskState>(&handle.driver_state)
            .map_err(|e| format!("cannot decode driver state version {}: {e}", handle.version))?
    };
    state.task_id.clone_from(&config.id);
    if state.log.root.is_none() {
        // State written before the root was recorded (and the Go plugin's): the handle's
        // config names the allocation the sinks are in.
        state.log.root = alloc_root(config);
    }
    Ok(state)
}

/// The directory mounted at `/alloc`, below which the task controls every path.
fn alloc_root(config: &drivers::TaskConfig) -> Option<PathBuf> {
    (!config.alloc_dir.is_empty()).then(|| PathBuf::from(&config.alloc_dir).join("alloc"))
}

fn from_go_plugin(config: &drivers::TaskConfig, bytes: &[u8]) -> Result<TaskState, String> {
    let go = go_state::decode(bytes)
        .map_err(|e| format!("cannot decode the Go plugin's driver state: {e}"))?;
    let path = |p: &str| (!p.is_empty()).then(|| PathBuf::from(p));
    Ok(TaskState {
        version: TASK_STATE_VERSION,
        task_id: config.id.clone(),
        task_name: config.name.clone(),
        alloc_id: config.alloc_id.clone(),
        container_id: go.container_id,
        container_name: container_name(&config.name, &config.alloc_id),
        socket: go.socket,
        started_at: go.started_at,
        log: LogTarget {
            forward: go.log_streamer,
            stdout_path: path(&config.stdout_path),
            stderr_path: path(&config.stderr_path),
            ..LogTarget::default()
        },
        network: go.network,
        image_id: String::new(),
        kill_signal: None,
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use crate::driver::model::DriverNetwork;

    use super::*;

    fn handle_config() -> drivers::TaskConfig {
        drivers::TaskConfig {
            id: "alloc1/web/0a1b2c3d".into(),
            name: "web".into(),
            alloc_id: "alloc1".into(),
            stdout_path: "/alloc/logs/.web.stdout.fifo".into(),
            stderr_path: "/alloc/logs/.web.stderr.fifo".into(),
            ..Default::default()
        }
    }

    fn sample_state() -> TaskState {
        TaskState {
            version: TASK_STATE_VERSION,
            task_id: "alloc1/web/0a1b2c3d".into(),
            task_name: "web".into(),
            alloc_id: "alloc1".into(),
            container_id: "f00".into(),
            container_name: "web-alloc1".into(),
            socket: "default".into(),
            started_at: UNIX_EPOCH + Duration::from_secs(42),
            log: LogTarget::default(),
            network: Some(DriverNetwork {
                port_map: [("http".to_string(), 80)].into(),
                ip: "10.0.0.2".into(),
                auto_advertise: true,
            }),
            image_id: "sha".into(),
            kill_signal: Some("SIGINT".into()),
        }
    }

    #[test]
    fn own_state_round_trips() {
        let state = sample_state();
        let handle = drivers::TaskHandle {
            version: handle_version(),
            config: Some(handle_config()),
            state: drivers::TaskState::Running as i32,
            driver_state: encode(&state).unwrap(),
        };
        assert_eq!(decode(&handle).unwrap(), state);
    }

    #[test]
    fn go_plugin_state_is_translated() {
        let handle = drivers::TaskHandle {
            version: 1,
            config: Some(handle_config()),
            state: drivers::TaskState::Running as i32,
            driver_state: go_state::tests::go_state_bytes("cafe", None, 1_700_000_000),
        };
        let state = decode(&handle).unwrap();
        assert_eq!(state.task_id, "alloc1/web/0a1b2c3d");
        assert_eq!(state.container_id, "cafe");
        assert_eq!(state.container_name, "web-alloc1");
        assert_eq!(state.socket, "default");
        assert_eq!(state.version, TASK_STATE_VERSION);
        assert_eq!(
            state.log.stdout_path.as_deref(),
            Some(std::path::Path::new("/alloc/logs/.web.stdout.fifo"))
        );
        assert!(!state.log.forward);
        assert_eq!(state.network.unwrap().port_map["http"], 8080);
    }

    #[test]
    fn broken_handles_are_errors() {
        let mut handle = drivers::TaskHandle {
            version: handle_version(),
            config: None,
            state: 0,
            driver_state: b"{}".to_vec(),
        };
        assert_eq!(
            decode(&handle).unwrap_err(),
            "the handle carries no task config"
        );
        handle.config = Some(drivers::TaskConfig::default());
        assert_eq!(
            decode(&handle).unwrap_err(),
            "the handle's task config has no id"
        );
        handle.config = Some(handle_config());
        assert!(decode(&handle).unwrap_err().starts_with(&format!(
            "cannot decode driver state version {}",
            handle_version()
        )));
        handle.version = 1;
        handle.driver_state = vec![0x90];
        assert!(decode(&handle)
            .unwrap_err()
            .starts_with("cannot decode the Go plugin's driver state"));
    }
}

//! Operator gates: what a task may ask of the host, decided by plugin options.
//!
//! | gate (plugin option) | refuses |
//! |---|---|
//! | `allow_privileged = false` | `privileged`; everything that weakens the container boundary as much: `security_opt` `unmask=` (and `systempaths=unconfined`, the same), any `seccomp=` (unconfined or a profile), `apparmor=unconfined`, `label=disable` and `label=type:/level:/user:/role:`; `apparmor_profile = "unconfined"`; `selinux_opts` `disable`/`type:`/`level:`/`user:`/`role:`; namespace joins by path (`ns:` in `network_mode`, `ipc_mode`, `userns`); `ipc_mode`, `pid_mode`, `uts_mode` = `"host"`; `network_mode`/`ipc_mode`/`pid_mode` `container:` targets that are not a task of the same allocation (checked against podman at start) |
//! | `allow_caps` | `cap_add` entries not in the list |
//! | `allow_devices` | `devices` whose host path (as given and with links resolved) matches no glob |
//! | `allow_host_network = false` | `network_mode = "host"` |
//! | `volumes.enabled = false` | host paths outside the allocation in `volumes` and bind `mount`s (see `spec`), and every other host path a task can name: `init_path`, seccomp profile paths, `ns:` paths, volume `driver_config` (a driver's options can bind host paths) |
//!
//! Every refusal names the option and the gate. Defaults keep the Go plugin's behaviour
//! (everything allowed). Devices assigned by Nomad's device plugins arrive in the task's
//! context, not in `config.devices`, and are never gated here.

use std::path::{Path, PathBuf};

use super::config::DriverConfig;
use super::secopt::{SecurityOptKind, Userns};
use super::spec::SpecError;
use super::task::{IpcMode, MountKind, NetworkMode, PidMode, TaskConfig, UtsMode};

const PRIVILEGED_GATE: &str = "the plugin option allow_privileged = false";
const VOLUMES_GATE: &str = "host paths are not allowed: plugin option volumes.enabled = false";

/// Checks every gate that needs no podman call.
pub fn check(config: &TaskConfig, driver: &DriverConfig) -> Result<(), SpecError> {
    check_privileged(config, driver)?;
    check_caps(config, driver)?;
    check_devices(config, driver)?;
    check_host_network(config, driver)?;
    if !driver.allow_privileged {
        check_boundary(config)?;
    }
    if !driver.volumes.enabled {
        check_host_paths(config)?;
    }
    Ok(())
}

/// `container:` targets a task joins (option, target), which must be tasks of the same
/// allocation when `allow_privileged = false` (the caller asks podman).
pub fn join_targets<'a>(
    config: &'a TaskConfig,
    driver: &DriverConfig,
) -> Vec<(&'static str, &'a str)> {
    if driver.allow_privileged {
        return Vec::new();
    }
    let mut targets = Vec::new();
    if let NetworkMode::Container(target) = &config.network_mode {
        targets.push(("config.network_mode", target.as_str()));
    }
    if let IpcMode::Container(target) = &config.ipc_mode {
        targets.push(("config.ipc_mode", target.as_str()));
    }
    if let PidMode::Container(target) = &config.pid_mode {
        targets.push(("config.pid_mode", target.as_str()));
    }
    targets
}

/// The refusal of a `container:` target outside the task's allocation.
pub fn foreign_container(option: &str, target: &str) -> SpecError {
    denied(
        option,
        format!(
            "\"container:{target}\" is not a task of this allocation; joining other containers is refused by {PRIVILEGED_GATE}"
        ),
    )
}

fn denied(option: &str, reason: String) -> SpecError {
    SpecError::Denied {
        option: option.to_string(),
        reason,
    }
}

fn check_privileged(config: &TaskConfig, driver: &DriverConfig) -> Result<(), SpecError> {
    if config.privileged && !driver.allow_privileged {
        return Err(denied(
            "config.privileged",
            format!("privileged containers are disabled by {PRIVILEGED_GATE}"),
        ));
    }
    Ok(())
}

fn check_caps(config: &TaskConfig, driver: &DriverConfig) -> Result<(), SpecError> {
    let allowed: Vec<String> = driver.allow_caps.iter().map(|c| cap_name(c)).collect();
    if allowed.iter().any(|c| c == "all") {
        return Ok(());
    }
    let refused: Vec<&str> = config
        .cap_add
        .iter()
        .filter(|cap| !allowed.contains(&cap_name(cap)))
        .map(String::as_str)
        .collect();
    if refused.is_empty() {
        return Ok(());
    }
    Err(denied(
        "config.cap_add",
        format!(
            "capabilities {} are not in the plugin option allow_caps ({})",
            refused.join(", "),
            driver.allow_caps.join(", ")
        ),
    ))
}

/// `CAP_NET_ADMIN`, `net_admin` and `NET_ADMIN` are the same capability.
fn cap_name(cap: &str) -> String {
    let lower = cap.trim().to_ascii_lowercase();
    lower
        .strip_prefix("cap_")
        .map(str::to_string)
        .unwrap_or(lower)
}

fn check_devices(config: &TaskConfig, driver: &DriverConfig) -> Result<(), SpecError> {
    if driver.allow_devices.iter().any(|g| g == "*") {
        return Ok(());
    }
    for device in &config.devices {
        let host = device.split(':').next().unwrap_or_default();
        if !device_allowed(host, &driver.allow_devices) {
            return Err(denied(
                "config.devices",
                format!("{host:?} is not in the plugin option allow_devices"),
            ));
        }
    }
    Ok(())
}

/// A device path is allowed when both the path as written (`.`/`..` removed) and the
/// device it leads to (links resolved) match a glob, so neither `/dev/../dev/vda` nor a
/// link under `/dev` reaches a device the operator did not list.
fn device_allowed(host: &str, globs: &[String]) -> bool {
    let matches = |path: &str| globs.iter().any(|g| glob_match(g, path));
    let written = lexical_clean(Path::new(host));
    let resolved = std::fs::canonicalize(&written).unwrap_or_else(|_| written.clone());
    matches(&written.to_string_lossy()) && matches(&resolved.to_string_lossy())
}

fn check_host_network(config: &TaskConfig, driver: &DriverConfig) -> Result<(), SpecError> {
    if !driver.allow_host_network && config.network_mode == NetworkMode::Host {
        return Err(denied(
            "config.network_mode",
            "\"host\" is refused by the plugin option allow_host_network = false".to_string(),
        ));
    }
    Ok(())
}

/// With `allow_privileged = false`: nothing that weakens the container boundary as much
/// as `privileged` does.
fn check_boundary(config: &TaskConfig) -> Result<(), SpecError> {
    let refuse = |option: &str, value: &str| {
        Err(denied(
            option,
            format!("{value:?} weakens the container boundary and is refused by {PRIVILEGED_GATE}"),
        ))
    };
    for item in &config.security_opt.items {
        let weakening = match &item.kind {
            // `systempaths=unconfined` is podman's spelling of `unmask=ALL`.
            SecurityOptKind::Unmask(_)
            | SecurityOptKind::SystemPathsUnconfined
            | SecurityOptKind::Seccomp(_) => true,
            SecurityOptKind::Apparmor(profile) => profile == "unconfined",
            SecurityOptKind::Label(value) => label_weakens(value),
            SecurityOptKind::NoNewPrivileges(_)
            | SecurityOptKind::LabelNested
            | SecurityOptKind::ProcOpts(_)
            | SecurityOptKind::Mask(_) => false,
        };
        if weakening {
            return refuse("config.security_opt", &item.text);
        }
    }
    if config.apparmor_profile == "unconfined" {
        return refuse("config.apparmor_profile", &config.apparmor_profile);
    }
    if let Some(item) = config.selinux_opts.iter().find(|o| label_weakens(o)) {
        return refuse("config.selinux_opts", item);
    }
    if let NetworkMode::Path(_) = config.network_mode {
        return refuse("config.network_mode", &config.network_mode.to_string());
    }
    if let IpcMode::Path(_) | IpcMode::Host = config.ipc_mode {
        return refuse("config.ipc_mode", &config.ipc_mode.to_string());
    }
    if let Userns::Path(_) = config.userns {
        return refuse("config.userns", &config.userns.to_string());
    }
    if config.pid_mode == PidMode::Host {
        return refuse("config.pid_mode", &config.pid_mode.to_string());
    }
    if config.uts_mode == UtsMode::Host {
        return refuse("config.uts_mode", &config.uts_mode.to_string());
    }
    Ok(())
}

/// SELinux label options that take the container out of its confinement.
fn label_weakens(value: &str) -> bool {
    value == "disable"
        || ["type:", "level:", "user:", "role:"]
            .iter()
            .any(|prefix| value.starts_with(prefix))
}

/// With `volumes.enabled = false`: no option names a host path.
fn check_host_paths(config: &TaskConfig) -> Result<(), SpecError> {
    let refuse = |option: &str, value: &str| {
        Err(denied(
            option,
            format!("{value:?} names a host path; {VOLUMES_GATE}"),
        ))
    };
    if !config.init_path.is_empty() {
        return refuse("config.init_path", &config.init_path);
    }
    let seccomp = config.security_opt.seccomp_profile_path.as_deref();
    if let Some(profile) = seccomp.filter(|p| *p != "unconfined") {
        return refuse("config.security_opt", &format!("seccomp={profile}"));
    }
    if let NetworkMode::Path(_) = config.network_mode {
        return refuse("config.network_mode", &config.network_mode.to_string());
    }
    if let IpcMode::Path(_) = config.ipc_mode {
        return refuse("config.ipc_mode", &config.ipc_mode.to_string());
    }
    if let Userns::Path(_) = config.userns {
        return refuse("config.userns", &config.userns.to_string());
    }
    // A volume driver's options can bind any host path (`local` with `o=bind`).
    for (i, mount) in config.mounts.iter().enumerate() {
        if let MountKind::Volume {
            driver: Some(driver),
            ..
        } = &mount.kind
        {
            return Err(denied(
                &format!("config.mount[{i}].volume_options.driver_config"),
                format!(
                    "volume driver {:?} with options can mount host paths; {VOLUMES_GATE}",
                    driver.name
                ),
            ));
        }
    }
    Ok(())
}

/// `*` matches any run of characters; everything else matches itself.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let Some((first, rest)) = pattern.split_once('*') else {
        return pattern == text;
    };
    let Some(mut remaining) = text.strip_prefix(first) else {
        return false;
    };
    let mut pieces: Vec<&str> = rest.split('*').collect();
    let last = pieces.pop().unwrap_or("");
    for piece in pieces {
        match remaining.find(piece) {
            Some(at) => remaining = &remaining[at + piece.len()..],
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last)
}

/// `..` and `.` removed without touching the filesystem.
pub(crate) fn lexical_clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn task(options: serde_json::Value) -> TaskConfig {
        let mut value = json!({"image": "busybox"});
        if let (Some(base), Some(extra)) = (value.as_object_mut(), options.as_object()) {
            base.extend(extra.clone());
        }
        TaskConfig::from_value(&value).expect("valid task config")
    }

    fn locked_down() -> DriverConfig {
        DriverConfig::from_value(&json!({
            "volumes": {"enabled": false},
            "allow_privileged": false,
            "allow_caps": ["chown"],
            "allow_devices": [],
            "allow_host_network": false,
        }))
        .expect("config")
    }

    fn refusal(options: serde_json::Value) -> String {
        check(&task(options), &locked_down())
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn defaults_allow_everything_the_go_plugin_allowed() {
        let config = DriverConfig::default();
        for options in [
            json!({"privileged": true, "cap_add": ["sys_admin"]}),
            json!({"devices": ["/dev/vda"], "network_mode": "host", "ipc_mode": "host"}),
            json!({"security_opt": ["unmask=ALL", "seccomp=unconfined", "label=disable"]}),
            json!({"apparmor_profile": "unconfined", "init": true, "init_path": "/bin/busybox"}),
            json!({"network_mode": "ns:/proc/1/ns/net", "userns": "ns:/proc/1/ns/user"}),
            json!({"pid_mode": "host", "uts_mode": "host"}),
        ] {
            check(&task(options.clone()), &config).unwrap_or_else(|e| panic!("{options}: {e}"));
            assert!(join_targets(&task(options), &config).is_empty());
        }
    }

    #[test]
    fn every_locked_down_refusal_names_the_option_and_the_gate() {
        let cases = [
            (json!({"privileged": true}), "config.privileged: privileged containers are disabled by the plugin option allow_privileged = false"),
            (json!({"cap_add": ["SYS_ADMIN"]}), "config.cap_add: capabilities SYS_ADMIN are not in the plugin option allow_caps (chown)"),
            (json!({"devices": ["/dev/vda"]}), "config.devices: \"/dev/vda\" is not in the plugin option allow_devices"),
            (json!({"devices": ["/dev/vda:/dev/xvda:rwm"]}), "config.devices: \"/dev/vda\" is not in the plugin option allow_devices"),
            (json!({"network_mode": "host"}), "config.network_mode: \"host\" is refused by the plugin option allow_host_network = false"),
            (json!({"security_opt": ["unmask=ALL"]}), "config.security_opt: \"unmask=ALL\" weakens the container boundary and is refused by the plugin option allow_privileged = false"),
            (json!({"security_opt": ["systempaths=unconfined"]}), "config.security_opt: \"systempaths=unconfined\" weakens"),
            (json!({"security_opt": ["seccomp=unconfined"]}), "config.security_opt: \"seccomp=unconfined\" weakens"),
            (json!({"security_opt": ["seccomp=/tmp/profile.json"]}), "config.security_opt: \"seccomp=/tmp/profile.json\" weakens"),
            (json!({"security_opt": ["apparmor=unconfined"]}), "config.security_opt: \"apparmor=unconfined\" weakens"),
            (json!({"security_opt": ["label=disable"]}), "config.security_opt: \"label=disable\" weakens"),
            (json!({"security_opt": ["label=type:spc_t"]}), "config.security_opt: \"label=type:spc_t\" weakens"),
            (json!({"security_opt": ["label:level:s0"]}), "config.security_opt: \"label:level:s0\" weakens"),
            (json!({"apparmor_profile": "unconfined"}), "config.apparmor_profile: \"unconfined\" weakens"),
            (json!({"selinux_opts": ["role:system_r"]}), "config.selinux_opts: \"role:system_r\" weakens"),
            (json!({"network_mode": "ns:/proc/1/ns/net"}), "config.network_mode: \"ns:/proc/1/ns/net\" weakens"),
            (json!({"ipc_mode": "host"}), "config.ipc_mode: \"host\" weakens"),
            (json!({"ipc_mode": "ns:/proc/1/ns/ipc"}), "config.ipc_mode: \"ns:/proc/1/ns/ipc\" weakens"),
            (json!({"userns": "ns:/proc/1/ns/user"}), "config.userns: \"ns:/proc/1/ns/user\" weakens"),
            (json!({"pid_mode": "host"}), "config.pid_mode: \"host\" weakens"),
            (json!({"uts_mode": "host"}), "config.uts_mode: \"host\" weakens"),
        ];
        for (options, want) in cases {
            let got = refusal(options.clone());
            assert!(
                got.starts_with(want),
                "{options}:\n got  {got}\n want {want}"
            );
        }
    }

    #[test]
    fn without_host_volumes_no_option_names_a_host_path() {
        let mut config = DriverConfig::default();
        config.volumes.enabled = false;
        let cases = [
            (json!({"init": true, "init_path": "/bin/busybox"}), "config.init_path: \"/bin/busybox\" names a host path; host paths are not allowed: plugin option volumes.enabled = false"),
            (json!({"security_opt": ["seccomp=/etc/profile.json"]}), "config.security_opt: \"seccomp=/etc/profile.json\" names a host path"),
            (json!({"network_mode": "ns:/run/netns/x"}), "config.network_mode: \"ns:/run/netns/x\" names a host path"),
            (json!({"ipc_mode": "ns:/proc/1/ns/ipc"}), "config.ipc_mode: \"ns:/proc/1/ns/ipc\" names a host path"),
            (json!({"userns": "ns:/proc/1/ns/user"}), "config.userns: \"ns:/proc/1/ns/user\" names a host path"),
            (json!({"mount": [{"type": "volume", "source": "v", "target": "/v", "volume_options": {"driver_config": {"name": "local", "options": {"o": "bind", "device": "/etc"}}}}]}), "config.mount[0].volume_options.driver_config: volume driver \"local\" with options can mount host paths"),
        ];
        for (options, want) in cases {
            let got = check(&task(options.clone()), &config)
                .unwrap_err()
                .to_string();
            assert!(
                got.starts_with(want),
                "{options}:\n got  {got}\n want {want}"
            );
        }
        check(
            &task(json!({"security_opt": ["seccomp=unconfined"]})),
            &config,
        )
        .expect("unconfined names no path; allow_privileged decides");
    }

    #[test]
    fn ordinary_tasks_pass_the_locked_down_gates() {
        let ok = task(json!({
            "cap_add": ["chown"],
            "security_opt": ["no-new-privileges", "apparmor=my-profile", "label=nested", "mask=/proc/kcore"],
            "ipc_mode": "private",
            "network_mode": "bridge",
            "userns": "keep-id",
        }));
        check(&ok, &locked_down()).expect("allowed");
        let joins = task(
            json!({"network_mode": "container:web-a1", "ipc_mode": "container:db-a1", "pid_mode": "container:db-a1"}),
        );
        check(&joins, &locked_down()).expect("container joins are checked against podman");
        assert_eq!(
            join_targets(&joins, &locked_down()),
            vec![
                ("config.network_mode", "web-a1"),
                ("config.ipc_mode", "db-a1"),
                ("config.pid_mode", "db-a1")
            ]
        );
    }

    #[test]
    fn device_globs_match_the_written_and_the_resolved_path() {
        let dir = tempfile::tempdir().unwrap();
        let null = dir.path().join("null-link");
        std::os::unix::fs::symlink("/dev/null", &null).unwrap();
        let globs = vec![
            "/dev/null".to_string(),
            format!("{}/*", dir.path().display()),
        ];
        assert!(device_allowed("/dev/null", &globs));
        assert!(device_allowed("/dev/./null", &globs));
        assert!(!device_allowed("/dev/../dev/zero", &globs));
        // The link's own path matches a glob and so does what it leads to.
        assert!(device_allowed(&null.to_string_lossy(), &globs));
        let only_dir = vec![format!("{}/*", dir.path().display())];
        assert!(!device_allowed(&null.to_string_lossy(), &only_dir));
        let fuse = vec!["/dev/fuse".to_string(), "/dev/dri/*".to_string()];
        assert!(device_allowed("/dev/dri/card0", &fuse));
        assert!(!device_allowed("/dev/vda", &fuse));
    }
}

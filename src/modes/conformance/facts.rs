//! Host facts of one podman service, read from `GET /libpod/info`: what the drift table and
//! the preconditions decide on, and what the JSON report names so two runs can be diffed.

use serde::Serialize;
use serde_json::Value;

use super::drift::Version;

/// What one podman service is and runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostFacts {
    /// Engine version (`version.Version`).
    pub podman_version: String,
    /// API version (`version.APIVersion`; the driver's fingerprint reports this one).
    pub api_version: String,
    pub rootless: bool,
    /// `v1` or `v2`.
    pub cgroup_version: String,
    /// `systemd` or `cgroupfs`.
    pub cgroup_manager: String,
    /// OCI runtime name (`runc`, `crun`, ...).
    pub oci_runtime: String,
    /// `netavark` or `cni`; empty when podman does not say (podman < 4).
    pub network_backend: String,
    /// Default log driver of the service (`k8s-file`, `journald`, ...).
    pub log_driver: String,
    /// Log drivers the service offers (`plugins.log`).
    pub log_drivers: Vec<String>,
    pub kernel: String,
    /// The podman host's name (`host.hostname`).
    #[serde(default)]
    pub hostname: String,
    pub os: String,
    pub arch: String,
    /// `<distribution> <version>`.
    pub distribution: String,
    pub seccomp: bool,
    pub apparmor: bool,
    pub selinux: bool,
    /// Storage driver (`overlay`, `vfs`, ...).
    pub storage_driver: String,
}

impl HostFacts {
    /// Reads the facts from a libpod info document; absent fields stay empty.
    pub fn from_info(info: &Value) -> HostFacts {
        let text = |pointer: &str| {
            info.pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let flag = |pointer: &str| {
            info.pointer(pointer)
                .and_then(Value::as_bool)
                .unwrap_or_default()
        };
        let distribution = format!(
            "{} {}",
            text("/host/distribution/distribution"),
            text("/host/distribution/version")
        )
        .trim()
        .to_string();
        let log_drivers = info
            .pointer("/plugins/log")
            .and_then(Value::as_array)
            .map(|drivers| {
                drivers
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        HostFacts {
            podman_version: text("/version/Version"),
            api_version: text("/version/APIVersion"),
            rootless: flag("/host/security/rootless"),
            cgroup_version: text("/host/cgroupVersion"),
            cgroup_manager: text("/host/cgroupManager"),
            oci_runtime: text("/host/ociRuntime/name"),
            network_backend: text("/host/networkBackend"),
            log_driver: text("/host/logDriver"),
            log_drivers,
            kernel: text("/host/kernel"),
            hostname: text("/host/hostname"),
            os: text("/host/os"),
            arch: text("/host/arch"),
            distribution,
            seccomp: flag("/host/security/seccompEnabled"),
            apparmor: flag("/host/security/apparmorEnabled"),
            selinux: flag("/host/security/selinuxEnabled"),
            storage_driver: text("/store/graphDriverName"),
        }
    }

    /// The engine version, when podman reported a parsable one.
    pub fn version(&self) -> Option<Version> {
        self.podman_version.parse().ok()
    }

    pub fn cgroup_v2(&self) -> bool {
        self.cgroup_version == "v2"
    }

    /// One line for table headers: `podman 4.3.1, rootful, cgroup v1 (cgroupfs), runc, netavark`.
    pub fn summary(&self) -> String {
        let mut parts = vec![
            format!("podman {}", self.podman_version),
            if self.rootless { "rootless" } else { "rootful" }.to_string(),
            format!("cgroup {} ({})", self.cgroup_version, self.cgroup_manager),
            self.oci_runtime.clone(),
        ];
        if !self.network_backend.is_empty() {
            parts.push(self.network_backend.clone());
        }
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_a_podman_4_info_document() {
        let info = json!({
            "host": {
                "arch": "amd64", "cgroupManager": "cgroupfs", "cgroupVersion": "v1",
                "distribution": {"distribution": "debian", "version": "12"},
                "kernel": "6.1.0", "logDriver": "k8s-file", "networkBackend": "netavark",
                "ociRuntime": {"name": "runc", "path": "/usr/bin/runc"}, "os": "linux",
                "security": {"rootless": false, "seccompEnabled": true, "apparmorEnabled": false,
                             "selinuxEnabled": false}
            },
            "store": {"graphDriverName": "overlay"},
            "plugins": {"log": ["k8s-file", "none", "journald"]},
            "version": {"APIVersion": "4.3.1", "Version": "4.3.1"}
        });
        let facts = HostFacts::from_info(&info);
        assert_eq!(facts.podman_version, "4.3.1");
        assert_eq!(facts.version(), Some(Version::new(4, 3, 1)));
        assert!(!facts.rootless);
        assert!(!facts.cgroup_v2());
        assert_eq!(facts.oci_runtime, "runc");
        assert_eq!(facts.distribution, "debian 12");
        assert_eq!(facts.log_drivers, vec!["k8s-file", "none", "journald"]);
        assert_eq!(
            facts.summary(),
            "podman 4.3.1, rootful, cgroup v1 (cgroupfs), runc, netavark"
        );
    }

    #[test]
    fn missing_fields_stay_empty() {
        let facts = HostFacts::from_info(&json!({"host": null}));
        assert_eq!(facts.podman_version, "");
        assert_eq!(facts.version(), None);
        assert!(facts.log_drivers.is_empty());
    }
}

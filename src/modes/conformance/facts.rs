//! Facts of one podman service, read from `GET /libpod/info`: the driver's own
//! [`HostFacts`] (what its starts decide on) and, around them, what the drift table and
//! the preconditions decide on and what the JSON report names so two runs can be diffed.

use serde::{Serialize, Serializer};
use serde_json::Value;

use super::drift::Version;
use crate::driver::podman::Info;
use crate::driver::HostFacts;

/// What one podman service is and runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceFacts {
    /// What the driver knows of the service (rootless, cgroups, API version).
    pub host: HostFacts,
    /// Engine version (`version.Version`).
    pub podman_version: String,
    /// API version as podman wrote it (`version.APIVersion`; the driver's fingerprint
    /// reports this one).
    pub api_version: String,
    /// `v1` or `v2`; empty when podman does not say.
    pub cgroup_version: String,
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

/// The report's `facts` document: one flat object, as before the driver's facts were
/// shared, so reports of different versions still diff field by field.
#[derive(Serialize)]
struct Wire<'a> {
    podman_version: &'a str,
    api_version: &'a str,
    rootless: bool,
    cgroup_version: &'a str,
    cgroup_manager: &'a str,
    oci_runtime: &'a str,
    network_backend: &'a str,
    log_driver: &'a str,
    log_drivers: &'a [String],
    kernel: &'a str,
    hostname: &'a str,
    os: &'a str,
    arch: &'a str,
    distribution: &'a str,
    seccomp: bool,
    apparmor: bool,
    selinux: bool,
    storage_driver: &'a str,
}

impl Serialize for ServiceFacts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Wire {
            podman_version: &self.podman_version,
            api_version: &self.api_version,
            rootless: self.host.rootless,
            cgroup_version: &self.cgroup_version,
            cgroup_manager: &self.host.cgroup_manager,
            oci_runtime: &self.oci_runtime,
            network_backend: &self.network_backend,
            log_driver: &self.log_driver,
            log_drivers: &self.log_drivers,
            kernel: &self.kernel,
            hostname: &self.hostname,
            os: &self.os,
            arch: &self.arch,
            distribution: &self.distribution,
            seccomp: self.seccomp,
            apparmor: self.apparmor,
            selinux: self.selinux,
            storage_driver: &self.storage_driver,
        }
        .serialize(serializer)
    }
}

impl ServiceFacts {
    /// Reads the facts from a libpod info document of a service reached over a unix
    /// socket or not; absent fields stay empty.
    pub fn from_info(info: &Value, socket_is_unix: bool) -> ServiceFacts {
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
        // The driver reads the same document through its own model; a document that does
        // not fit it gives the driver's defaults, the text fields below still say what
        // podman sent.
        let typed: Info = serde_json::from_value(info.clone()).unwrap_or_default();
        let api_version = text("/version/APIVersion");
        ServiceFacts {
            host: HostFacts::from_info(&typed, &api_version, socket_is_unix),
            podman_version: text("/version/Version"),
            api_version,
            cgroup_version: text("/host/cgroupVersion"),
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
        self.host.cgroup_v2
    }

    pub fn rootless(&self) -> bool {
        self.host.rootless
    }

    /// One line for table headers: `podman 4.3.1, rootful, cgroup v1 (cgroupfs), runc, netavark`.
    pub fn summary(&self) -> String {
        let mut parts = vec![
            format!("podman {}", self.podman_version),
            if self.host.rootless {
                "rootless"
            } else {
                "rootful"
            }
            .to_string(),
            format!(
                "cgroup {} ({})",
                self.cgroup_version, self.host.cgroup_manager
            ),
            self.oci_runtime.clone(),
        ];
        if !self.network_backend.is_empty() {
            parts.push(self.network_backend.clone());
        }
        parts.join(", ")
    }
}

/// Whether a socket URL is a unix socket (`unix://...`).
pub fn is_unix(url: &str) -> bool {
    url.starts_with("unix:")
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
        let facts = ServiceFacts::from_info(&info, true);
        assert_eq!(facts.podman_version, "4.3.1");
        assert_eq!(facts.version(), Some(Version::new(4, 3, 1)));
        assert!(!facts.rootless());
        assert_eq!(facts.host.api_version, (4, 3, 1));
        assert_eq!(facts.host.cgroup_manager, "cgroupfs");
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
        let facts = ServiceFacts::from_info(&json!({"host": null}), true);
        assert_eq!(facts.podman_version, "");
        assert_eq!(facts.version(), None);
        assert!(facts.log_drivers.is_empty());
    }
}

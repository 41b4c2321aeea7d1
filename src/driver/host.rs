//! What the driver knows about the podman service a socket leads to: the facts its
//! starts decide on (rootless, cgroups, API version), which the conformance harness
//! reports with more of podman's info around them.

use serde::{Deserialize, Serialize};

use super::podman;

/// What the driver knows about the podman service a task runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    pub rootless: bool,
    pub cgroup_v2: bool,
    /// `systemd` or `cgroupfs`.
    pub cgroup_manager: String,
    /// libpod API version from the ping header.
    pub api_version: (u64, u64, u64),
    /// CPUs of the host, for the CPU hard limit.
    pub num_cpus: usize,
    pub socket_is_unix: bool,
}

impl Default for HostFacts {
    fn default() -> Self {
        HostFacts {
            rootless: false,
            cgroup_v2: false,
            cgroup_manager: "cgroupfs".to_string(),
            api_version: (4, 0, 0),
            num_cpus: 1,
            socket_is_unix: true,
        }
    }
}

impl HostFacts {
    /// The facts of a libpod info document and the ping's API version (`4.3.1`), for a
    /// service reached over a unix socket or not. The CPU count is this host's: the
    /// CPU hard limit is computed where the driver runs.
    pub fn from_info(info: &podman::Info, api_version: &str, socket_is_unix: bool) -> HostFacts {
        let host = info.host.clone().unwrap_or_default();
        HostFacts {
            rootless: host.security.rootless,
            cgroup_v2: host.cgroup_version == "v2",
            cgroup_manager: host.cgroup_manager.clone(),
            api_version: parse_version(api_version),
            num_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            socket_is_unix,
        }
    }
}

/// `4.3.1` -> (4, 3, 1); missing or unparsable parts count as 0.
pub(crate) fn parse_version(version: &str) -> (u64, u64, u64) {
    let mut parts = version
        .trim_start_matches('v')
        .split(['.', '-'])
        .map(|p| p.parse::<u64>().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("4.3.1"), (4, 3, 1));
        assert_eq!(parse_version("v5.0.0-dev"), (5, 0, 0));
        assert_eq!(parse_version("5"), (5, 0, 0));
        assert_eq!(parse_version(""), (0, 0, 0));
    }
}

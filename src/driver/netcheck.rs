//! Whether a started container has the network podman has on record for it.
//!
//! Rootless podman 4.3 keeps every bridge-network container's veth in one shared
//! rootless network namespace, which the cleanup of a container that exits tears down
//! when it believes no other container uses it. A container starting at that moment
//! comes up with only `lo`: podman's inspect still shows its address, rootlessport still
//! holds its published ports and resets every connection, and nothing tells the
//! orchestrator. Reproduced on this project's rootless lane: 2 of 25 starts of a
//! container publishing a port, while another container on the same network ran and
//! exited in a loop (none of 25 without that loop). The namespace keeper (`netns_keeper`)
//! prevents the teardown; this check is the second line, for what gets past it (a keeper
//! podman refused, a container of someone else's leaving before the keeper was on
//! record): the driver looks at the container's network namespace itself, through
//! `/proc/<pid>/net/dev`, and starts such a container again.

use std::path::Path;

use super::podman::ContainerInspect;

/// The interface names of `/proc/<pid>/net/dev` (the network namespace of that process).
fn interfaces(net_dev: &str) -> Vec<&str> {
    net_dev
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(name, _)| name.trim())
        .filter(|name| !name.is_empty() && !name.contains('|'))
        .collect()
}

/// True when podman says the container has an address on a network, yet its network
/// namespace has no interface but the loopback. Unknown (no process, an unreadable
/// `/proc`, a podman on another machine) is never "lost": the check can only add a retry,
/// not fail a start.
pub(crate) async fn network_lost(proc_root: &Path, inspect: &ContainerInspect) -> bool {
    let settings = &inspect.network_settings;
    let has_address = !settings.ip_address.is_empty()
        || !settings.global_ipv6_address.is_empty()
        || settings
            .networks
            .values()
            .any(|n| !n.ip_address.is_empty() || !n.global_ipv6_address.is_empty());
    if !has_address || inspect.state.pid <= 0 {
        return false;
    }
    let path = proc_root
        .join(inspect.state.pid.to_string())
        .join("net")
        .join("dev");
    match tokio::fs::read_to_string(&path).await {
        Ok(text) => {
            let names = interfaces(&text);
            !names.is_empty() && names.iter().all(|name| *name == "lo")
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONLY_LO: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     844      10    0    0    0     0          0         0      844      10    0    0    0     0       0          0
";

    const WITH_ETH0: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
  eth0:    1296      14    0    0    0     0          0         0      656       8    0    0    0     0       0          0
";

    fn inspect(pid: i64, ip: &str) -> ContainerInspect {
        serde_json::from_value(serde_json::json!({
            "Id": "c1",
            "State": {"Status": "running", "Running": true, "Pid": pid},
            "NetworkSettings": {"Networks": {"podman": {"IPAddress": ip}}},
        }))
        .expect("inspect")
    }

    fn proc_with(pid: i64, net_dev: &str) -> tempfile::TempDir {
        let root = tempfile::tempdir().expect("tempdir");
        let net = root.path().join(pid.to_string()).join("net");
        std::fs::create_dir_all(&net).expect("mkdir");
        std::fs::write(net.join("dev"), net_dev).expect("write");
        root
    }

    #[test]
    fn the_header_lines_are_no_interfaces() {
        assert_eq!(interfaces(ONLY_LO), ["lo"]);
        assert_eq!(interfaces(WITH_ETH0), ["lo", "eth0"]);
    }

    #[tokio::test]
    async fn an_address_on_record_with_only_loopback_is_a_lost_network() {
        let root = proc_with(7, ONLY_LO);
        assert!(network_lost(root.path(), &inspect(7, "10.88.1.191")).await);
        let root = proc_with(7, WITH_ETH0);
        assert!(!network_lost(root.path(), &inspect(7, "10.88.1.191")).await);
    }

    #[tokio::test]
    async fn no_address_on_record_or_nothing_to_read_is_not_lost() {
        // network_mode "none", or a namespace joined from another container.
        let root = proc_with(7, ONLY_LO);
        assert!(!network_lost(root.path(), &inspect(7, "")).await);
        // The process has exited already (a short batch task), or no pid at all.
        assert!(!network_lost(root.path(), &inspect(8, "10.88.0.2")).await);
        assert!(!network_lost(root.path(), &inspect(0, "10.88.0.2")).await);
    }
}

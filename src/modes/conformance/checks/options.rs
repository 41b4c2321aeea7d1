//! Task options of the Go plugin (and the orchestrator-provided resources,
//! env and user) whose effect a shell probe inside the task can see.

use serde_json::json;

use super::super::check::{ensure, Failure, Finding, Outcome, Skip, Tag};
use super::super::env::Env;
use super::probe::{always, contains, no_context, number, Probe};

const MIB: u64 = 1024 * 1024;

/// cgroup v2 file, else its cgroup v1 twin, else `absent`.
macro_rules! cgroup_file {
    ($v2:literal, $v1:literal) => {
        concat!(
            "cat /sys/fs/cgroup/",
            $v2,
            " 2>/dev/null || cat /sys/fs/cgroup/",
            $v1,
            " 2>/dev/null || echo absent"
        )
    };
}

fn rootful(env: &Env) -> Result<(), Skip> {
    match env.facts.as_ref() {
        Ok(facts) if facts.rootless() => Err(Skip(
            "rootless podman: the driver sets no CPU shares (cgroup delegation)".to_string(),
        )),
        _ => Ok(()),
    }
}

fn cgroup_v1(env: &Env) -> Result<(), Skip> {
    match env.facts.as_ref() {
        Ok(facts) if facts.cgroup_v2() => Err(Skip(
            "memory_swappiness is a cgroup v1 setting; the driver does not send it on v2"
                .to_string(),
        )),
        _ => Ok(()),
    }
}

fn seccomp(env: &Env) -> Result<(), Skip> {
    match env.facts.as_ref() {
        Ok(facts) if !facts.seccomp => Err(Skip("podman runs without seccomp".to_string())),
        _ => Ok(()),
    }
}

fn apparmor(env: &Env) -> Result<(), Skip> {
    match env.facts.as_ref() {
        Ok(facts) if !facts.apparmor => Err(Skip("AppArmor is not enabled".to_string())),
        _ => Ok(()),
    }
}

/// Whether capability number `bit` is in the `CapEff:` hex mask of `status`.
fn has_capability(status: &str, bit: u32) -> Result<bool, Failure> {
    let mask = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .ok_or_else(|| Failure(format!("no CapEff in {status:?}")))?;
    Ok(mask & (1 << bit) != 0)
}

/// Equality of a probed number with the expected one.
fn expect_number(output: &str, expected: u64, what: &str) -> Outcome {
    let found = number(output)?;
    ensure!(
        found == expected,
        "{what}: expected {expected}, found {found}"
    );
    Ok(Finding::pass(format!("{what} = {found}")))
}

pub static PROBES: &[Probe] = &[
    Probe {
        name: "resources.memory",
        tags: &[Tag::Resources],
        options: |_| json!({}),
        context: |_, context| context.resources.memory_mb = 64,
        precondition: always,
        script: cgroup_file!("memory.max", "memory/memory.limit_in_bytes"),
        judge: |_, output| expect_number(output, 64 * MIB, "memory limit"),
    },
    Probe {
        name: "resources.memory-reservation",
        tags: &[Tag::Resources],
        options: |_| json!({"memory_reservation": "32m"}),
        context: |_, context| context.resources.memory_mb = 64,
        precondition: always,
        script: cgroup_file!("memory.low", "memory/memory.soft_limit_in_bytes"),
        judge: |_, output| expect_number(output, 32 * MIB, "memory soft limit"),
    },
    Probe {
        name: "resources.memory-oversubscription",
        tags: &[Tag::Resources],
        options: |_| json!({}),
        context: |_, context| {
            context.resources.memory_mb = 32;
            context.resources.memory_max_mb = 64;
        },
        precondition: always,
        script: concat!(
            cgroup_file!("memory.max", "memory/memory.limit_in_bytes"),
            "; ",
            cgroup_file!("memory.low", "memory/memory.soft_limit_in_bytes")
        ),
        judge: |_, output| {
            let values: Vec<&str> = output.split_whitespace().collect();
            let expected = [(64 * MIB).to_string(), (32 * MIB).to_string()];
            ensure!(
                values == expected,
                "expected hard limit 64 MiB and soft limit 32 MiB, found {values:?}"
            );
            Ok(Finding::pass("memory_max 64 MiB hard, memory 32 MiB soft"))
        },
    },
    Probe {
        name: "resources.memory-swap",
        tags: &[Tag::Resources],
        options: |_| json!({"memory_swap": "96m"}),
        context: |_, context| context.resources.memory_mb = 32,
        precondition: always,
        script: cgroup_file!("memory.swap.max", "memory/memory.memsw.limit_in_bytes"),
        judge: |env, output| {
            if output == "absent" {
                return Ok(Finding::Skip(
                    "the kernel does not account swap (no memsw / swap.max)".to_string(),
                ));
            }
            // cgroup v2 limits swap alone; v1 limits memory plus swap.
            let expected = if env.facts()?.cgroup_v2() { 64 } else { 96 } * MIB;
            expect_number(output, expected, "swap limit")
        },
    },
    Probe {
        name: "resources.memory-swappiness",
        tags: &[Tag::Resources],
        options: |_| json!({"memory_swappiness": 10}),
        context: no_context,
        precondition: cgroup_v1,
        script: "cat /sys/fs/cgroup/memory/memory.swappiness",
        judge: |_, output| expect_number(output, 10, "swappiness"),
    },
    Probe {
        name: "resources.cpu-hard-limit",
        tags: &[Tag::Resources],
        options: |_| json!({"cpu_hard_limit": true, "cpu_cfs_period": 50000}),
        context: |_, context| context.resources.percent_ticks = 0.25,
        precondition: always,
        script: "cat /sys/fs/cgroup/cpu.max 2>/dev/null || echo \
                 $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)",
        judge: |_, output| {
            let values: Vec<&str> = output.split_whitespace().collect();
            let quota = values.first().and_then(|q| q.parse::<i64>().ok());
            ensure!(
                values.get(1) == Some(&"50000") && quota.is_some_and(|q| q > 0),
                "expected a CFS quota with period 50000, found {output:?}"
            );
            Ok(Finding::pass(format!("CFS quota {} per period 50000", values[0])))
        },
    },
    Probe {
        name: "resources.cpu-shares",
        tags: &[Tag::Resources],
        options: |_| json!({}),
        context: |_, context| context.resources.cpu_shares = 512,
        precondition: rootful,
        script: cgroup_file!("cpu.weight", "cpu/cpu.shares"),
        judge: |env, output| {
            if env.facts()?.cgroup_v2() {
                // The OCI runtime maps shares to weight: 1 + (shares - 2) * 9999 / 262142.
                expect_number(output, 1 + (512 - 2) * 9999 / 262_142, "cpu.weight")
            } else {
                expect_number(output, 512, "cpu.shares")
            }
        },
    },
    Probe {
        name: "resources.cpuset",
        tags: &[Tag::Resources],
        options: |_| json!({}),
        context: |_, context| context.resources.cpuset_cpus = "0".to_string(),
        precondition: always,
        script: cgroup_file!("cpuset.cpus", "cpuset/cpuset.cpus"),
        judge: |_, output| {
            ensure!(output == "0", "expected cpuset 0, found {output:?}");
            Ok(Finding::pass("cpuset.cpus = 0"))
        },
    },
    Probe {
        name: "resources.pids-limit",
        tags: &[Tag::Resources],
        options: |_| json!({"pids_limit": 64}),
        context: no_context,
        precondition: always,
        script: cgroup_file!("pids.max", "pids/pids.max"),
        judge: |_, output| expect_number(output, 64, "pids.max"),
    },
    Probe {
        name: "resources.oom-score-adj",
        tags: &[Tag::Resources],
        options: |_| json!({"oom_score_adj": 500}),
        context: no_context,
        precondition: always,
        script: "cat /proc/1/oom_score_adj",
        judge: |_, output| expect_number(output, 500, "oom_score_adj"),
    },
    Probe {
        name: "resources.shm-size",
        tags: &[Tag::Resources],
        options: |_| json!({"shm_size": "32m"}),
        context: no_context,
        precondition: always,
        script: "df -k /dev/shm | tail -n 1 | awk '{print $2}'",
        judge: |_, output| expect_number(output, 32 * 1024, "/dev/shm size (KiB)"),
    },
    Probe {
        name: "security.cap-drop",
        tags: &[Tag::Security],
        options: |_| json!({"cap_drop": ["CHOWN"]}),
        context: no_context,
        precondition: always,
        script: "cat /proc/self/status",
        judge: |_, output| {
            ensure!(!has_capability(output, 0)?, "CAP_CHOWN is still effective");
            Ok(Finding::pass("CAP_CHOWN dropped"))
        },
    },
    Probe {
        name: "security.cap-add",
        tags: &[Tag::Security],
        options: |_| json!({"cap_add": ["SYS_TIME"]}),
        context: no_context,
        precondition: always,
        script: "cat /proc/self/status",
        judge: |_, output| {
            ensure!(has_capability(output, 25)?, "CAP_SYS_TIME is not effective");
            Ok(Finding::pass("CAP_SYS_TIME added"))
        },
    },
    Probe {
        name: "security.privileged",
        tags: &[Tag::Security],
        options: |_| json!({"privileged": true}),
        context: no_context,
        precondition: always,
        script: "cat /proc/self/status",
        judge: |_, output| {
            ensure!(has_capability(output, 21)?, "CAP_SYS_ADMIN is not effective");
            Ok(Finding::pass("privileged: CAP_SYS_ADMIN effective"))
        },
    },
    Probe {
        name: "security.no-new-privileges",
        tags: &[Tag::Security],
        options: |_| json!({"security_opt": ["no-new-privileges"]}),
        context: no_context,
        precondition: always,
        script: "grep NoNewPrivs /proc/self/status",
        judge: |_, output| {
            contains(output, "1")?;
            Ok(Finding::pass("NoNewPrivs: 1"))
        },
    },
    Probe {
        name: "security.seccomp-unconfined",
        tags: &[Tag::Security],
        options: |_| json!({"security_opt": ["seccomp=unconfined"]}),
        context: no_context,
        precondition: seccomp,
        script: "grep '^Seccomp:' /proc/self/status",
        judge: |_, output| expect_number(output, 0, "Seccomp mode"),
    },
    Probe {
        name: "security.apparmor-profile",
        tags: &[Tag::Security],
        options: |_| json!({"apparmor_profile": "unconfined"}),
        context: no_context,
        precondition: apparmor,
        script: "cat /proc/self/attr/current",
        judge: |_, output| {
            contains(output, "unconfined")?;
            Ok(Finding::pass("AppArmor profile unconfined"))
        },
    },
    Probe {
        name: "security.readonly-rootfs",
        tags: &[Tag::Security],
        options: |_| json!({"readonly_rootfs": true}),
        context: no_context,
        precondition: always,
        script: "touch /conformance-probe 2>/dev/null; echo $?",
        judge: |_, output| {
            ensure!(output != "0", "writing to / succeeded on a read-only rootfs");
            Ok(Finding::pass("root filesystem is read-only"))
        },
    },
    Probe {
        name: "options.hostname",
        tags: &[Tag::Options],
        options: |_| json!({"hostname": "conformance-probe"}),
        context: no_context,
        precondition: always,
        script: "hostname",
        judge: |_, output| {
            ensure!(output == "conformance-probe", "hostname is {output:?}");
            Ok(Finding::pass("hostname conformance-probe"))
        },
    },
    Probe {
        name: "options.extra-hosts",
        tags: &[Tag::Options, Tag::Network],
        options: |_| json!({"extra_hosts": ["conformance.test:192.0.2.10"]}),
        context: no_context,
        precondition: always,
        script: "grep conformance.test /etc/hosts",
        judge: |_, output| {
            contains(output, "192.0.2.10")?;
            Ok(Finding::pass("/etc/hosts maps conformance.test to 192.0.2.10"))
        },
    },
    Probe {
        name: "options.dns",
        tags: &[Tag::Options, Tag::Network],
        options: |_| json!({}),
        context: |_, context| {
            context.dns = Some(crate::driver::task::DnsSpec {
                servers: vec!["192.0.2.53".to_string()],
                searches: vec!["conformance.test".to_string()],
                options: vec!["ndots:2".to_string()],
            })
        },
        precondition: always,
        script: "cat /etc/resolv.conf",
        judge: |_, output| {
            contains(output, "nameserver 192.0.2.53")?;
            contains(output, "conformance.test")?;
            contains(output, "ndots:2")?;
            Ok(Finding::pass("resolv.conf has the server, search domain and option"))
        },
    },
    Probe {
        name: "network.none",
        tags: &[Tag::Network],
        options: |_| json!({"network_mode": "none"}),
        context: no_context,
        precondition: always,
        script: "ls /sys/class/net",
        judge: |_, output| {
            ensure!(output == "lo", "interfaces: {output:?}, expected only lo");
            Ok(Finding::pass("only the loopback interface"))
        },
    },
    Probe {
        name: "options.sysctl",
        tags: &[Tag::Options],
        options: |_| json!({"sysctl": {"kernel.shm_rmid_forced": "1"}}),
        context: no_context,
        precondition: always,
        script: "cat /proc/sys/kernel/shm_rmid_forced",
        judge: |_, output| expect_number(output, 1, "kernel.shm_rmid_forced"),
    },
    Probe {
        name: "options.tmpfs",
        tags: &[Tag::Options],
        options: |_| json!({"tmpfs": ["/scratch:size=1m"]}),
        context: no_context,
        precondition: always,
        script: "grep ' /scratch ' /proc/mounts",
        judge: |_, output| {
            contains(output, "tmpfs /scratch tmpfs")?;
            contains(output, "size=1024k")?;
            Ok(Finding::pass("/scratch is a 1 MiB tmpfs"))
        },
    },
    Probe {
        name: "options.mount-tmpfs",
        tags: &[Tag::Options],
        options: |_| {
            json!({"mount": [{"type": "tmpfs", "target": "/scratch", "readonly": false,
                              "tmpfs_options": {"size": 2097152}}]})
        },
        context: no_context,
        precondition: always,
        script: "grep ' /scratch ' /proc/mounts",
        judge: |_, output| {
            contains(output, "tmpfs /scratch tmpfs")?;
            contains(output, "size=2048k")?;
            Ok(Finding::pass("a docker-style tmpfs mount block gives a 2 MiB /scratch"))
        },
    },
    Probe {
        name: "options.pid-mode-host",
        tags: &[Tag::Options],
        options: |_| json!({"pid_mode": "host"}),
        context: no_context,
        precondition: always,
        script: "cat /proc/1/comm",
        judge: |_, output| {
            // In its own PID namespace the task's shell is PID 1.
            ensure!(
                !output.is_empty() && output != "sh",
                "PID 1 is the task's own process ({output:?}): not the host's PID namespace"
            );
            Ok(Finding::pass(format!("PID 1 is the host's {output}")))
        },
    },
    Probe {
        name: "options.uts-mode-host",
        tags: &[Tag::Options],
        options: |_| json!({"uts_mode": "host"}),
        context: no_context,
        precondition: always,
        script: "hostname",
        judge: |env, output| {
            let host = env
                .facts
                .as_ref()
                .map(|f| f.hostname.clone())
                .unwrap_or_default();
            ensure!(
                !host.is_empty() && output == host,
                "the task's hostname is {output:?}, the podman host's {host:?}"
            );
            Ok(Finding::pass(format!("the host's name {output}")))
        },
    },
    Probe {
        name: "options.devices",
        tags: &[Tag::Options],
        options: |_| json!({"devices": ["/dev/null:/dev/conformance-null:rwm"]}),
        context: no_context,
        precondition: always,
        script: "ls -l /dev/conformance-null && echo probe > /dev/conformance-null",
        judge: |_, output| {
            ensure!(output.starts_with('c'), "not a character device: {output:?}");
            Ok(Finding::pass("/dev/null mapped to /dev/conformance-null, writable"))
        },
    },
    Probe {
        name: "options.init",
        tags: &[Tag::Options],
        options: |_| json!({"init": true}),
        context: no_context,
        precondition: always,
        script: "cat /proc/1/comm",
        judge: |_, output| {
            ensure!(
                !["sh", "sleep"].contains(&output),
                "PID 1 is the task's own process ({output})"
            );
            Ok(Finding::pass(format!("PID 1 is the init process {output}")))
        },
    },
    Probe {
        name: "options.working-dir",
        tags: &[Tag::Options],
        options: |_| json!({"working_dir": "/tmp"}),
        context: no_context,
        precondition: always,
        script: "pwd",
        judge: |_, output| {
            ensure!(output == "/tmp", "working directory is {output:?}");
            Ok(Finding::pass("working directory /tmp"))
        },
    },
    Probe {
        name: "options.env",
        tags: &[Tag::Options],
        options: |_| json!({}),
        context: |_, context| {
            context
                .env
                .insert("CONFORMANCE_VALUE".to_string(), "a b=c 'd'".to_string());
        },
        precondition: always,
        script: "printf '%s' \"$CONFORMANCE_VALUE\"",
        judge: |_, output| {
            ensure!(output == "a b=c 'd'", "CONFORMANCE_VALUE is {output:?}");
            Ok(Finding::pass("task environment reaches the process verbatim"))
        },
    },
    Probe {
        name: "options.user",
        tags: &[Tag::Options, Tag::Security],
        options: |_| json!({}),
        context: |_, context| context.user = "nobody".to_string(),
        precondition: always,
        script: "id -u",
        judge: |_, output| expect_number(output, 65534, "uid"),
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_masks() {
        let status = "Name:\tsh\nCapEff:\t00000000a80425fb\n";
        assert!(has_capability(status, 0).unwrap());
        assert!(!has_capability(status, 21).unwrap());
        assert!(has_capability("CapEff:\t000001ffffffffff", 21).unwrap());
        assert!(has_capability("nothing", 0).is_err());
    }

    #[test]
    fn names_are_unique_and_grouped() {
        for (i, probe) in PROBES.iter().enumerate() {
            assert!(PROBES[i + 1..].iter().all(|other| other.name != probe.name));
            let group = probe.name.split('.').next().unwrap();
            assert!(["resources", "security", "options", "network"].contains(&group));
        }
    }
}

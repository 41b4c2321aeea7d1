//! The registry of checks, in run order: API smoke checks first, the cleanup check last.
//! Groups live in one module each; option checks are rows of [`options::PROBES`].

mod api;
mod cleanup;
mod exec;
mod image;
mod lifecycle;
mod logs;
mod network;
mod options;
mod probe;
mod recovery;
mod stats;
mod ulimit;

use super::check::Check;

/// Every check, in run order.
pub fn all() -> Vec<&'static dyn Check> {
    let mut checks: Vec<&'static dyn Check> = vec![
        &api::Ping,
        &api::VersionCheck,
        &api::Info,
        &api::Fingerprint,
        &image::Resolve,
        &image::Import,
        &image::LoadArchive,
        &image::Pull,
        &image::PullDenied,
        &image::Missing,
        &lifecycle::ExitCode {
            name: "lifecycle.exit-zero",
            code: 0,
        },
        &lifecycle::ExitCode {
            name: "lifecycle.exit-code",
            code: 3,
        },
        &lifecycle::States,
        &lifecycle::Destroy,
        &lifecycle::Stop {
            name: "lifecycle.stop-timeout",
            trapped: None,
            via_kill_signal: false,
        },
        &lifecycle::Stop {
            name: "lifecycle.stop-signal",
            trapped: Some("SIGINT"),
            via_kill_signal: false,
        },
        &lifecycle::Stop {
            name: "lifecycle.kill-signal",
            trapped: Some("SIGHUP"),
            via_kill_signal: true,
        },
        &lifecycle::Signal,
        &lifecycle::Oom,
        &api::InspectTypes,
        &api::StatsStopped,
    ];
    checks.extend(options::PROBES.iter().map(|probe| probe as &dyn Check));
    checks.extend([
        &ulimit::Ulimit as &dyn Check,
        &network::Bridge,
        &network::Ports {
            name: "network.ports",
            legacy: false,
        },
        &network::Ports {
            name: "network.port-map",
            legacy: true,
        },
        &network::HostNetwork,
        &network::Sharing {
            name: "network.task-namespace",
            namespace: "net",
            join: "task:",
        },
        &network::Sharing {
            name: "network.container-namespace",
            namespace: "net",
            join: "container:",
        },
        &network::Sharing {
            name: "options.ipc-mode",
            namespace: "ipc",
            join: "task:",
        },
        &network::RootlessDefault,
        &logs::Forwarding {
            name: "logs.nomad",
            driver: "nomad",
        },
        &logs::Forwarding {
            name: "logs.journald",
            driver: "journald",
        },
        &exec::Run,
        &exec::Timeout,
        &exec::Streaming,
        &exec::Tty,
        &stats::Shape,
        &recovery::Running,
        &recovery::Exited,
        &recovery::Gone,
        &cleanup::RunLabel,
    ]);
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_dotted_and_tagged() {
        let checks = all();
        for (i, check) in checks.iter().enumerate() {
            let name = check.name();
            assert!(name.contains('.'), "{name}");
            assert!(!check.tags().is_empty(), "{name} has no tag");
            assert!(
                checks[i + 1..].iter().all(|other| other.name() != name),
                "{name} twice"
            );
        }
        assert_eq!(checks.first().map(|c| c.name()), Some("api.ping"));
        assert_eq!(checks.last().map(|c| c.name()), Some("cleanup.run-label"));
    }
}

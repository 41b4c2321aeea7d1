//! Known podman version drifts, as data.
//!
//! A check that observes a difference names the drift it matches (see
//! [`super::check::Finding::Drift`]). When the drift's version range and host conditions
//! cover the podman under test, the result is "degraded" with the drift's feature impact
//! (or a pass, for drifts the driver fully absorbs); otherwise the observation is a failure.
//! A new drift is one more [`DRIFTS`] row, not new code.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::facts::ServiceFacts;

/// A podman version (`major.minor.patch`; pre-release or distro suffixes are ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Version {
        Version {
            major,
            minor,
            patch,
        }
    }
}

impl FromStr for Version {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let core = value
            .trim()
            .trim_start_matches('v')
            .split(['-', '+', '~'])
            .next()
            .unwrap_or_default();
        let mut numbers = core.split('.').map(str::parse::<u32>);
        let mut next = |required: bool| match numbers.next() {
            Some(Ok(n)) => Ok(n),
            None if !required => Ok(0),
            _ => Err(format!("not a podman version: {value:?}")),
        };
        Ok(Version::new(next(true)?, next(false)?, next(false)?))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// `[min, below)`; an open end is unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionRange {
    pub min: Option<Version>,
    pub below: Option<Version>,
}

impl VersionRange {
    pub const ANY: VersionRange = VersionRange {
        min: None,
        below: None,
    };

    const fn between(min: Version, below: Version) -> VersionRange {
        VersionRange {
            min: Some(min),
            below: Some(below),
        }
    }

    const fn from(min: Version) -> VersionRange {
        VersionRange {
            min: Some(min),
            below: None,
        }
    }

    const fn below(below: Version) -> VersionRange {
        VersionRange {
            min: None,
            below: Some(below),
        }
    }

    pub fn contains(&self, version: Version) -> bool {
        self.min.map_or(true, |min| version >= min)
            && self.below.map_or(true, |below| version < below)
    }
}

impl fmt::Display for VersionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.min, self.below) {
            (None, None) => write!(f, "any podman"),
            (Some(min), None) => write!(f, "podman >= {min}"),
            (None, Some(below)) => write!(f, "podman < {below}"),
            (Some(min), Some(below)) => write!(f, "podman >= {min}, < {below}"),
        }
    }
}

/// What a drift costs the driver's users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// A feature is missing or reduced: the check reports "degraded".
    Degraded,
    /// The driver absorbs the difference: the check passes and names the drift.
    Handled,
}

/// One known difference between podman versions or host setups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drift {
    /// Stable identifier, named by the check that observes it.
    pub id: &'static str,
    pub podman: VersionRange,
    /// `Some("v1")`/`Some("v2")`: only on that cgroup version.
    pub cgroup: Option<&'static str>,
    /// `Some(true)`: only rootless; `Some(false)`: only rootful.
    pub rootless: Option<bool>,
    /// What this podman does.
    pub behaviour: &'static str,
    /// What it means for tasks run by the driver.
    pub impact: &'static str,
    pub severity: Severity,
}

impl Drift {
    /// Whether this drift is expected on the podman described by `facts`. An unknown
    /// podman version only matches drifts that hold for any version.
    pub fn applies_to(&self, facts: &ServiceFacts) -> bool {
        let version_matches = match facts.version() {
            Some(version) => self.podman.contains(version),
            None => self.podman == VersionRange::ANY,
        };
        version_matches
            && self
                .cgroup
                .map_or(true, |cgroup| facts.cgroup_version == cgroup)
            && self
                .rootless
                .map_or(true, |rootless| facts.rootless() == rootless)
    }

    /// `podman >= 5.0.0 on cgroup v2, rootless`.
    pub fn scope(&self) -> String {
        let mut scope = self.podman.to_string();
        if let Some(cgroup) = self.cgroup {
            scope.push_str(&format!(" on cgroup {cgroup}"));
        }
        match self.rootless {
            Some(true) => scope.push_str(", rootless"),
            Some(false) => scope.push_str(", rootful"),
            None => {}
        }
        scope
    }
}

/// Looks a drift up by id.
pub fn find(id: &str) -> Option<&'static Drift> {
    DRIFTS.iter().find(|drift| drift.id == id)
}

/// Whether the drift `id` is expected on this podman (false for unknown ids).
pub fn expected(id: &str, facts: &ServiceFacts) -> bool {
    find(id).is_some_and(|drift| drift.applies_to(facts))
}

/// Drift ids, named by checks.
pub mod ids {
    pub const OOM_FLAG_UNSET: &str = "oom-flag-unset";
    pub const STATS_STOPPED_CONFLICT: &str = "stats-stopped-409";
    pub const STATS_STOPPED_EMPTY: &str = "stats-stopped-empty-body";
    pub const STATS_STOPPED_CAUSE: &str = "stats-stopped-cause";
    pub const INSPECT_ENTRYPOINT_ARRAY: &str = "inspect-entrypoint-array";
    pub const INSPECT_STOPSIGNAL_STRING: &str = "inspect-stopsignal-string";
    pub const ROOTLESS_DEFAULT_PASTA: &str = "rootless-default-pasta";
    pub const CGROUP2_NO_MAX_USAGE: &str = "cgroup2-no-max-usage";
    pub const ROOTLESS_CGROUP1_NO_LIMITS: &str = "rootless-cgroup1-no-limits";
    pub const ROOTLESS_CGROUP1_NO_STATS: &str = "rootless-cgroup1-no-stats";
    pub const CONTAINER_NETNS_PODMAN3: &str = "container-netns-podman3";
    pub const NETWORKS_API_V4: &str = "networks-api-v4";
    pub const ULIMIT_REPLACES_DEFAULTS: &str = "ulimit-replaces-defaults";
}

/// This driver learns of exits from podman's events stream; the Go driver polled this
/// endpoint and had to recognise each shape.
const STATS_STOPPED_IMPACT: &str =
    "none: the driver learns of exits from the events stream, not from stats";

/// The known drifts: podman behaviours the Go plugin's users met across versions, and
/// podman 5.0's inspect changes.
pub static DRIFTS: &[Drift] = &[
    Drift {
        id: ids::OOM_FLAG_UNSET,
        podman: VersionRange::between(Version::new(4, 3, 0), Version::new(4, 4, 0)),
        cgroup: Some("v1"),
        rootless: None,
        behaviour: "State.OOMKilled is never set: conmon writes its `oom` marker into its \
                    working directory instead of the container's; the task exits 137 (SIGKILL)",
        impact: "an OOM-killed task is reported as exit code 137 without the OOM flag",
        severity: Severity::Degraded,
    },
    Drift {
        id: ids::STATS_STOPPED_CONFLICT,
        podman: VersionRange::below(Version::new(4, 1, 1)),
        cgroup: None,
        rootless: None,
        behaviour: "stats of a stopped container answer 409 (container has wrong state)",
        impact: STATS_STOPPED_IMPACT,
        severity: Severity::Handled,
    },
    Drift {
        id: ids::STATS_STOPPED_EMPTY,
        podman: VersionRange::between(Version::new(4, 1, 1), Version::new(4, 6, 0)),
        cgroup: None,
        rootless: None,
        behaviour: "stats of a stopped container answer 200 with an empty body",
        impact: STATS_STOPPED_IMPACT,
        severity: Severity::Handled,
    },
    Drift {
        id: ids::STATS_STOPPED_CAUSE,
        podman: VersionRange::from(Version::new(4, 6, 0)),
        cgroup: None,
        rootless: None,
        behaviour: "stats of a stopped container answer 200 {\"cause\":\"container is stopped\"}",
        impact: STATS_STOPPED_IMPACT,
        severity: Severity::Handled,
    },
    Drift {
        id: ids::INSPECT_ENTRYPOINT_ARRAY,
        podman: VersionRange::from(Version::new(5, 0, 0)),
        cgroup: None,
        rootless: None,
        behaviour: "container inspect Config.Entrypoint is a list (a string before 5.0)",
        impact: "none: the driver's client accepts both",
        severity: Severity::Handled,
    },
    Drift {
        id: ids::INSPECT_STOPSIGNAL_STRING,
        podman: VersionRange::from(Version::new(5, 0, 0)),
        cgroup: None,
        rootless: None,
        behaviour: "container inspect Config.StopSignal is a name such as \"SIGTERM\" \
                    (a number before 5.0)",
        impact: "none: the driver's client accepts both",
        severity: Severity::Handled,
    },
    Drift {
        id: ids::ROOTLESS_DEFAULT_PASTA,
        podman: VersionRange::from(Version::new(5, 0, 0)),
        cgroup: None,
        rootless: Some(true),
        behaviour: "the default rootless network is pasta (slirp4netns before 5.0)",
        impact: "none: the driver picks pasta or slirp4netns by API version",
        severity: Severity::Handled,
    },
    Drift {
        id: ids::CGROUP2_NO_MAX_USAGE,
        podman: VersionRange::ANY,
        cgroup: Some("v2"),
        rootless: None,
        behaviour: "memory_stats.max_usage is 0: cgroup v2 has no memory high-water mark",
        impact: "task stats report Max Usage as 0",
        severity: Severity::Degraded,
    },
    Drift {
        id: ids::ROOTLESS_CGROUP1_NO_LIMITS,
        podman: VersionRange::ANY,
        cgroup: Some("v1"),
        rootless: Some(true),
        behaviour: "rootless podman cannot set resource limits on cgroup v1",
        impact: "memory, cpu and pids limits of tasks are not enforced",
        severity: Severity::Degraded,
    },
    Drift {
        id: ids::ROOTLESS_CGROUP1_NO_STATS,
        podman: VersionRange::ANY,
        cgroup: Some("v1"),
        rootless: Some(true),
        behaviour: "container stats answer 409 \"container stats resource only available for \
                    cgroup v2\" (seen on 4.3.1)",
        impact: "tasks report no resource usage: their stats streams stay empty",
        severity: Severity::Degraded,
    },
    Drift {
        id: ids::CONTAINER_NETNS_PODMAN3,
        podman: VersionRange::between(Version::new(3, 0, 0), Version::new(3, 4, 0)),
        cgroup: None,
        rootless: None,
        behaviour: "joining another container's network namespace fails with \
                    \"namespace mode container requires a value\" (upstream issue 242)",
        impact: "network_mode task:<name> and container:<id> are unusable",
        severity: Severity::Degraded,
    },
    Drift {
        id: ids::NETWORKS_API_V4,
        podman: VersionRange::below(Version::new(4, 0, 0)),
        cgroup: None,
        rootless: None,
        behaviour: "no netavark network API (networks/{name}/exists, per-network options)",
        impact: "custom network_mode names and static IP/MAC per network are unavailable",
        severity: Severity::Degraded,
    },
    Drift {
        id: ids::ULIMIT_REPLACES_DEFAULTS,
        // Seen on 4.3.1 (Debian 12); 5.4.2 (Debian 13) on the same host keeps the
        // other limit within bounds.
        podman: VersionRange::below(Version::new(5, 0, 0)),
        cgroup: None,
        rootless: None,
        behaviour: "a task ulimit replaces containers.conf default_ulimits, and podman then \
                    sets its own nproc/nofile defaults, which the OCI runtime may not be \
                    permitted to apply on hosts with lower hard limits",
        impact: "a task that sets one of nofile/nproc in ulimit must set both, or it \
                 fails to start",
        severity: Severity::Degraded,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(version: &str, cgroup: &str, rootless: bool) -> ServiceFacts {
        let info = serde_json::json!({
            "host": {"cgroupVersion": cgroup, "security": {"rootless": rootless}},
            "version": {"Version": version}
        });
        ServiceFacts::from_info(&info, true)
    }

    #[test]
    fn versions_parse_with_suffixes() {
        assert_eq!("4.3.1".parse(), Ok(Version::new(4, 3, 1)));
        assert_eq!("5.0.0-dev".parse(), Ok(Version::new(5, 0, 0)));
        assert_eq!("v4.9".parse(), Ok(Version::new(4, 9, 0)));
        assert_eq!("4.9.4+rhel".parse(), Ok(Version::new(4, 9, 4)));
        assert!("".parse::<Version>().is_err());
        assert!("four".parse::<Version>().is_err());
    }

    #[test]
    fn ranges_are_half_open() {
        let range = VersionRange::between(Version::new(4, 1, 1), Version::new(4, 6, 0));
        assert!(range.contains(Version::new(4, 1, 1)));
        assert!(range.contains(Version::new(4, 5, 99)));
        assert!(!range.contains(Version::new(4, 6, 0)));
        assert!(!range.contains(Version::new(4, 1, 0)));
        assert!(VersionRange::ANY.contains(Version::new(1, 0, 0)));
        assert_eq!(range.to_string(), "podman >= 4.1.1, < 4.6.0");
    }

    #[test]
    fn oom_drift_is_the_debian_12_cgroup_v1_setup_only() {
        let drift = find(ids::OOM_FLAG_UNSET).unwrap();
        assert!(drift.applies_to(&facts("4.3.1", "v1", false)));
        assert!(!drift.applies_to(&facts("4.3.1", "v2", false)));
        assert!(!drift.applies_to(&facts("4.9.3", "v1", false)));
        assert!(!drift.applies_to(&facts("", "v1", false)));
        assert_eq!(drift.scope(), "podman >= 4.3.0, < 4.4.0 on cgroup v1");
    }

    #[test]
    fn exactly_one_stopped_stats_shape_per_version() {
        let shapes = [
            ids::STATS_STOPPED_CONFLICT,
            ids::STATS_STOPPED_EMPTY,
            ids::STATS_STOPPED_CAUSE,
        ];
        for version in [
            "3.4.4", "4.1.0", "4.1.1", "4.3.1", "4.5.9", "4.6.0", "5.2.0",
        ] {
            let host = facts(version, "v2", false);
            let matching = shapes.iter().filter(|id| expected(id, &host)).count();
            assert_eq!(matching, 1, "podman {version}");
        }
    }

    #[test]
    fn host_conditions_and_unknown_ids() {
        assert!(expected(ids::CGROUP2_NO_MAX_USAGE, &facts("", "v2", false)));
        assert!(!expected(
            ids::CGROUP2_NO_MAX_USAGE,
            &facts("4.3.1", "v1", false)
        ));
        assert!(expected(
            ids::ROOTLESS_DEFAULT_PASTA,
            &facts("5.0.1", "v2", true)
        ));
        assert!(!expected(
            ids::ROOTLESS_DEFAULT_PASTA,
            &facts("5.0.1", "v2", false)
        ));
        assert!(!expected("no-such-drift", &facts("4.3.1", "v1", false)));
    }

    #[test]
    fn rootless_cgroup_v1_drifts_and_ulimit_before_podman_5() {
        for id in [
            ids::ROOTLESS_CGROUP1_NO_LIMITS,
            ids::ROOTLESS_CGROUP1_NO_STATS,
        ] {
            assert!(expected(id, &facts("4.3.1", "v1", true)), "{id}");
            assert!(!expected(id, &facts("4.3.1", "v1", false)), "{id}");
            assert!(!expected(id, &facts("4.3.1", "v2", true)), "{id}");
        }
        assert!(expected(
            ids::ULIMIT_REPLACES_DEFAULTS,
            &facts("4.3.1", "v1", false)
        ));
        assert!(!expected(
            ids::ULIMIT_REPLACES_DEFAULTS,
            &facts("5.4.2", "v1", false)
        ));
    }

    #[test]
    fn ids_are_unique() {
        for (i, drift) in DRIFTS.iter().enumerate() {
            assert!(DRIFTS[i + 1..].iter().all(|other| other.id != drift.id));
        }
    }
}

//! This machine as the one Nomad client node of a local run: what `${attr.*}`,
//! `${node.*}` and `${meta.*}` resolve to, and what `constraint` blocks are checked
//! against. Host attributes are read as Nomad's fingerprinters read them; the operator
//! names the rest (`-meta`, `--node-class`, `--datacenter`, `--node-name`).

use std::collections::BTreeMap;

use super::cli::NodeArgs;
use super::model::Job;

/// The attribute whose value is only known once podman has answered.
pub const PODMAN_VERSION: &str = "attr.driver.podman.version";

#[derive(Debug, Clone, Default)]
pub struct NodeFacts {
    /// `node.unique.name`: `--node-name`, else the hostname.
    pub name: String,
    pub class: String,
    /// `--datacenter`; `None` puts the node in the job's datacenter.
    pub datacenter: Option<String>,
    pub meta: BTreeMap<String, String>,
    /// `attr.*` read from the host, keyed without the `attr.` prefix.
    pub host: BTreeMap<String, String>,
    pub unique_id: String,
    /// podman's version once it answered (`attr.driver.podman.version`).
    pub podman_version: Option<String>,
}

impl NodeFacts {
    /// Reads the host's facts (small files under /proc and /etc: call it off the async
    /// runtime) and takes the rest from the command line.
    pub fn gather(args: &NodeArgs) -> NodeFacts {
        let host = host_attributes();
        let hostname = host.get("unique.hostname").cloned().unwrap_or_default();
        let unique_id = std::fs::read_to_string("/etc/machine-id")
            .map(|s| s.trim().to_string())
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| hostname.clone());
        NodeFacts {
            name: args.node_name.clone().unwrap_or(hostname),
            class: args.node_class.clone().unwrap_or_default(),
            datacenter: args.datacenter.clone(),
            meta: args.meta.iter().cloned().collect(),
            host,
            unique_id,
            podman_version: None,
        }
    }

    /// The node's datacenter: the one given, else the job's first datacenter that is
    /// not a pattern (a local run is placed where the job asks), else Nomad's `dc1`.
    pub fn datacenter(&self, job: &Job) -> String {
        if let Some(dc) = &self.datacenter {
            return dc.clone();
        }
        job.datacenters
            .iter()
            .find(|dc| !dc.contains('*'))
            .cloned()
            .unwrap_or_else(|| "dc1".into())
    }

    /// Every fact keyed as a job writes it (`attr.kernel.name`, `node.class`,
    /// `meta.rack`), for interpolation and constraints.
    pub fn attributes(&self, job: &Job) -> BTreeMap<String, String> {
        let mut attrs: BTreeMap<String, String> = self
            .host
            .iter()
            .map(|(k, v)| (format!("attr.{k}"), v.clone()))
            .collect();
        if let Some(version) = &self.podman_version {
            attrs.insert(PODMAN_VERSION.into(), version.clone());
        }
        for (k, v) in &self.meta {
            attrs.insert(format!("meta.{k}"), v.clone());
        }
        let mut set = |k: &str, v: String| {
            attrs.insert(k.to_string(), v);
        };
        set("node.unique.id", self.unique_id.clone());
        set("node.unique.name", self.name.clone());
        set("node.datacenter", self.datacenter(job));
        // A node serves one region, and a job is only placed in its own.
        set("node.region", job.region.clone());
        set("node.class", self.class.clone());
        set("node.pool", "default".into());
        attrs
    }
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The `attr.*` values of Nomad's host, cpu, memory and os fingerprints that mean
/// something on this machine, plus the driver's own `driver.podman = 1`.
fn host_attributes() -> BTreeMap<String, String> {
    let mut attrs = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        if !v.is_empty() {
            attrs.insert(k.to_string(), v);
        }
    };
    set("kernel.name", std::env::consts::OS.to_string());
    set("kernel.version", read_trimmed("/proc/sys/kernel/osrelease"));
    set("kernel.arch", std::env::consts::ARCH.to_string());
    set("unique.hostname", read_trimmed("/proc/sys/kernel/hostname"));
    set("cpu.arch", go_arch(std::env::consts::ARCH).to_string());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpu_facts(&cpuinfo);
    set("cpu.numcores", cpu.cores.to_string());
    set("cpu.totalcompute", cpu.total_mhz.to_string());
    set("cpu.modelname", cpu.model);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    if let Some(bytes) = mem_total_bytes(&meminfo) {
        set("memory.totalbytes", bytes.to_string());
    }
    let os_release = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .unwrap_or_default();
    let os = parse_os_release(&os_release);
    set(
        "os.name",
        os.get("ID").cloned().unwrap_or_else(|| "linux".into()),
    );
    set(
        "os.version",
        os.get("VERSION_ID").cloned().unwrap_or_default(),
    );
    set("driver.podman", "1".into());
    attrs
}

/// Go's GOARCH names, which Nomad reports as `cpu.arch`.
fn go_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

struct CpuFacts {
    cores: usize,
    total_mhz: u64,
    model: String,
}

fn cpu_facts(cpuinfo: &str) -> CpuFacts {
    let field = |line: &str, name: &str| {
        line.split_once(':')
            .filter(|(k, _)| k.trim() == name)
            .map(|(_, v)| v.trim().to_string())
    };
    let cores = cpuinfo
        .lines()
        .filter(|l| field(l, "processor").is_some())
        .count();
    let total_mhz = cpuinfo
        .lines()
        .filter_map(|l| field(l, "cpu MHz"))
        .filter_map(|v| v.parse::<f64>().ok())
        .sum::<f64>() as u64;
    let model = cpuinfo
        .lines()
        .find_map(|l| field(l, "model name"))
        .unwrap_or_default();
    CpuFacts {
        cores,
        total_mhz,
        model,
    }
}

fn mem_total_bytes(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// `KEY=value` / `KEY="value"` lines of os-release(5).
fn parse_os_release(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            (k.trim().to_string(), v.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modes::run::jobspec::{parse, Source, VarInputs};

    fn job(datacenters: &str) -> Job {
        let text = format!(
            "job \"j\" {{\n  datacenters = {datacenters}\n  region = \"eu\"\n  group \"g\" {{\n    task \"t\" {{\n      driver = \"podman\"\n      config {{ image = \"i\" }}\n    }}\n  }}\n}}\n"
        );
        parse(Source::new("j.nomad", text), &VarInputs::default())
            .unwrap()
            .job
    }

    #[test]
    fn flags_and_host_become_job_keyed_facts() {
        let args = NodeArgs {
            meta: vec![("rack".into(), "r1".into()), ("zone".into(), "a=b".into())],
            node_class: Some("gpu".into()),
            datacenter: Some("west".into()),
            node_name: Some("box1".into()),
        };
        let mut facts = NodeFacts::gather(&args);
        let attrs = facts.attributes(&job("[\"dc1\"]"));
        assert_eq!(attrs["meta.rack"], "r1");
        assert_eq!(attrs["meta.zone"], "a=b");
        assert_eq!(attrs["node.class"], "gpu");
        assert_eq!(attrs["node.datacenter"], "west");
        assert_eq!(attrs["node.unique.name"], "box1");
        assert_eq!(attrs["node.region"], "eu");
        assert_eq!(attrs["attr.kernel.name"], "linux");
        assert_eq!(attrs["attr.driver.podman"], "1");
        assert!(!attrs["attr.unique.hostname"].is_empty());
        assert!(!attrs["attr.kernel.version"].is_empty());
        assert!(!attrs.contains_key(PODMAN_VERSION));
        facts.podman_version = Some("5.2.0".into());
        assert_eq!(facts.attributes(&job("[\"dc1\"]"))[PODMAN_VERSION], "5.2.0");
    }

    #[test]
    fn without_a_datacenter_the_node_is_in_the_jobs() {
        let facts = NodeFacts::default();
        assert_eq!(facts.datacenter(&job("[\"*\", \"east\"]")), "east");
        assert_eq!(facts.datacenter(&job("[\"us-*\"]")), "dc1");
    }

    #[test]
    fn host_files_parse_as_nomad_reads_them() {
        let cpu = cpu_facts(
            "processor\t: 0\nmodel name\t: Test CPU\ncpu MHz\t\t: 1000.5\n\nprocessor\t: 1\ncpu MHz\t\t: 999.5\n",
        );
        assert_eq!((cpu.cores, cpu.total_mhz), (2, 2000));
        assert_eq!(cpu.model, "Test CPU");
        assert_eq!(
            mem_total_bytes("MemTotal:        2048 kB\nMemFree: 1 kB\n"),
            Some(2048 * 1024)
        );
        let os = parse_os_release("ID=debian\nVERSION_ID=\"12\"\nNAME='Debian'\n");
        assert_eq!(os["ID"], "debian");
        assert_eq!(os["VERSION_ID"], "12");
        assert_eq!(os["NAME"], "Debian");
    }
}

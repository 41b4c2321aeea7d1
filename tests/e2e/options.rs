//! e2e: every task option group, proved by inspecting the created container.
//!
//! Each test decodes a task `config {}` exactly as a mode would, starts the task with
//! `Driver::start` on the private test service (which builds the spec with `container_spec`),
//! then asserts on `podman inspect` and, where inspect cannot show the effect, on what the
//! container's main process sees (`/proc/1/...`, `/etc/hosts`, ...). Refused input is
//! checked to fail with the option named and to leave no container behind.
//!
//! Not checkable on this host (each noted at its test): `userns = "auto"` (no subuid range
//! for `containers`), `keep-id` (rootless only), AppArmor and SELinux (both disabled),
//! cgroup v2 only behaviour (`cgroup_parent`; swappiness is checked on v1).

use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nomad_driver_podman::driver::{
    custom_network, DnsSpec, Driver, DriverConfig, DriverError, HostFacts, LegacyNetwork,
    LegacyPort, PortSpec, SpecError, TaskConfig, TaskContext, TaskResources, TaskSpec,
    MANAGED_LABEL,
};
use serde_json::{json, Value};

use crate::support::{self, unique_name, LabelCleanup, BUSYBOX_IMAGE};

const MIB: i64 = 1024 * 1024;

/// One started task container; removed (with anything else carrying its label) on drop.
struct Started {
    id: String,
    name: String,
    inspect: Value,
    _cleanup: LabelCleanup,
    /// Kept so the task stays registered (and monitored) while the test looks at it.
    _driver: Arc<Driver>,
}

impl Started {
    fn host_config(&self, key: &str) -> &Value {
        &self.inspect["HostConfig"][key]
    }

    fn config(&self, key: &str) -> &Value {
        &self.inspect["Config"][key]
    }

    /// Runs `args` in the container and returns its stdout; panics on failure.
    fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["exec", self.id.as_str()];
        full.extend_from_slice(args);
        support::podman().cli_ok(&full)
    }

    /// Runs `args` in the container, returning (success, stdout+stderr).
    fn try_exec(&self, args: &[&str]) -> (bool, String) {
        let mut full = vec!["exec", self.id.as_str()];
        full.extend_from_slice(args);
        let out = support::podman().cli(&full);
        let mut text = String::from_utf8_lossy(&out.stdout).to_string();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }
}

fn host_facts() -> HostFacts {
    let info: Value =
        serde_json::from_str(&support::podman().cli_ok(&["info", "--format", "json"]))
            .expect("podman info is JSON");
    let version: Value =
        serde_json::from_str(&support::podman().cli_ok(&["version", "--format", "json"]))
            .expect("podman version is JSON");
    let api = version["Server"]["APIVersion"].as_str().unwrap_or("4.0.0");
    let mut parts = api.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    HostFacts {
        rootless: info["host"]["security"]["rootless"]
            .as_bool()
            .unwrap_or(false),
        cgroup_v2: info["host"]["cgroupVersion"] == "v2",
        cgroup_manager: info["host"]["cgroupManager"]
            .as_str()
            .unwrap_or("cgroupfs")
            .to_string(),
        api_version: (
            parts.next().unwrap_or(4),
            parts.next().unwrap_or(0),
            parts.next().unwrap_or(0),
        ),
        num_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        socket_is_unix: true,
    }
}

/// A task spec from a `config {}` block; the image defaults to busybox and the command to a
/// long sleep, and the test label is added so cleanup finds the container.
fn task(mut config: Value, cleanup: &LabelCleanup) -> TaskSpec {
    if config.get("image").is_none() {
        config["image"] = json!(BUSYBOX_IMAGE);
    }
    if config.get("command").is_none() && config.get("args").is_none() {
        config["command"] = json!("sleep");
        config["args"] = json!(["300"]);
    }
    let test_label = json!({&cleanup.key: &cleanup.value});
    config["labels"] = match config.get("labels").cloned() {
        Some(Value::Array(mut maps)) => {
            maps.push(test_label);
            Value::Array(maps)
        }
        Some(Value::Object(mut map)) => {
            map.insert(cleanup.key.clone(), json!(cleanup.value));
            Value::Object(map)
        }
        _ => test_label,
    };
    let config = TaskConfig::from_value(&config).unwrap_or_else(|e| panic!("config: {e}"));
    TaskSpec {
        config,
        context: TaskContext {
            id: unique_name("task-id"),
            name: unique_name("opt"),
            alloc_id: unique_name("alloc"),
            job_name: "options-job".into(),
            job_id: "options-job".into(),
            task_group_name: "options-group".into(),
            namespace: "default".into(),
            node_name: "e2e-node".into(),
            node_id: "e2e-node-id".into(),
            kill_timeout: Duration::from_secs(5),
            ..TaskContext::default()
        },
    }
}

/// A driver on the test service with the given plugin options.
fn driver_on_test_service(options: &DriverConfig) -> Arc<Driver> {
    let mut config = options.clone();
    config.socket_path = support::podman().socket_url();
    Driver::new(config).expect("driver for the test socket")
}

/// Starts the task through the driver (image, create, start) and inspects the container.
async fn start_with(spec: &TaskSpec, options: &DriverConfig, cleanup: LabelCleanup) -> Started {
    let driver = driver_on_test_service(options);
    let started = driver
        .start(spec.clone())
        .await
        .unwrap_or_else(|e| panic!("start: {e}"));
    let id = started.state.container_id;
    let inspect: Value = serde_json::from_str(&support::podman().cli_ok(&["inspect", &id]))
        .expect("inspect is JSON");
    Started {
        id,
        name: spec.container_name(),
        inspect: inspect[0].clone(),
        _cleanup: cleanup,
        _driver: driver,
    }
}

/// Starts through the driver expecting a refusal before any container exists.
async fn refused(spec: TaskSpec, options: &DriverConfig, cleanup: &LabelCleanup) -> SpecError {
    let driver = driver_on_test_service(options);
    let err = match driver.start(spec).await {
        Ok(started) => panic!(
            "started {} instead of refusing",
            started.state.container_name
        ),
        Err(DriverError::Spec { source, .. }) => source,
        Err(other) => panic!("expected a spec error, got: {other}"),
    };
    assert!(
        containers_with(cleanup).is_empty(),
        "a container was left behind"
    );
    err
}

async fn start(config: Value) -> Started {
    start_ctx(config, |_| {}).await
}

async fn start_ctx(config: Value, context: impl FnOnce(&mut TaskContext)) -> Started {
    let cleanup = LabelCleanup::new("options");
    let mut spec = task(config, &cleanup);
    context(&mut spec.context);
    start_with(&spec, &DriverConfig::default(), cleanup).await
}

/// The containers carrying the test label.
fn containers_with(cleanup: &LabelCleanup) -> Vec<String> {
    support::podman()
        .cli_ok(&[
            "ps",
            "-a",
            "-q",
            "--filter",
            &format!("label={}", cleanup.pair()),
        ])
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn limit_line<'a>(limits: &'a str, name: &str) -> Vec<&'a str> {
    limits
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("{name} in {limits}"))
        .trim_start_matches(name)
        .split_whitespace()
        .collect()
}

fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind tcp");
        let port = tcp.local_addr().expect("addr").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

#[tokio::test]
async fn resources_cpu_shares_cpuset_and_memory() {
    if support::skip_without_limits_or_stats("") {
        return;
    }
    let c = start_ctx(
        json!({"memory_reservation": "32m", "memory_swap": "256m", "memory_swappiness": 20}),
        |ctx| {
            ctx.resources = TaskResources {
                cpu_shares: 750,
                cpuset_cpus: "0".into(),
                memory_mb: 128,
                memory_max_mb: 0,
                percent_ticks: 0.0,
            }
        },
    )
    .await;
    assert_eq!(c.host_config("CpuShares"), 750);
    assert_eq!(c.host_config("CpusetCpus"), "0");
    assert_eq!(c.host_config("Memory"), 128 * MIB);
    assert_eq!(c.host_config("MemoryReservation"), 32 * MIB);
    assert_eq!(c.host_config("MemorySwap"), 256 * MIB);
    // cgroup v1 on this host: swappiness is sent and applied.
    assert_eq!(c.host_config("MemorySwappiness"), 20);
    // Without cpu_hard_limit there is no CFS quota.
    assert_eq!(c.host_config("CpuQuota"), 0);
}

#[tokio::test]
async fn memory_max_is_the_hard_limit_and_memory_the_soft_one() {
    if support::skip_without_limits_or_stats("") {
        return;
    }
    let c = start_ctx(json!({}), |ctx| {
        ctx.resources.memory_mb = 64;
        ctx.resources.memory_max_mb = 256;
    })
    .await;
    assert_eq!(c.host_config("Memory"), 256 * MIB);
    assert_eq!(c.host_config("MemoryReservation"), 64 * MIB);
    // Unset swappiness is not sent: podman reports its "unset" value, not 0.
    assert_ne!(c.host_config("MemorySwappiness"), 0);
}

#[tokio::test]
async fn no_hard_memory_limit_and_unlimited_swap() {
    if support::skip_without_limits_or_stats("") {
        return;
    }
    let c = start_ctx(json!({"memory_reservation": "16m"}), |ctx| {
        ctx.resources.memory_mb = 64;
        ctx.resources.memory_max_mb = -1;
    })
    .await;
    assert_eq!(c.host_config("Memory"), 0);
    assert_eq!(c.host_config("MemoryReservation"), 16 * MIB);

    let c = start_ctx(json!({"memory_swap": "-1"}), |ctx| {
        ctx.resources.memory_mb = 64
    })
    .await;
    assert_eq!(c.host_config("Memory"), 64 * MIB);
    let memsw = c.exec(&["cat", "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"]);
    assert_eq!(memsw, "9223372036854771712", "unlimited swap");
}

#[tokio::test]
async fn cpu_hard_limit_with_cfs_period() {
    if support::skip_without_limits_or_stats("") {
        return;
    }
    let c = start_ctx(
        json!({"cpu_hard_limit": true, "cpu_cfs_period": 50000}),
        |ctx| {
            ctx.resources.percent_ticks = 0.5;
        },
    )
    .await;
    let cpus = host_facts().num_cpus as i64;
    assert_eq!(c.host_config("CpuPeriod"), 50000);
    assert_eq!(c.host_config("CpuQuota"), (25000 * cpus).max(1000));
}

#[tokio::test]
async fn pids_limit() {
    if support::skip_without_limits_or_stats("") {
        return;
    }
    let c = start(json!({"pids_limit": 42})).await;
    assert_eq!(c.host_config("PidsLimit"), 42);
    assert_eq!(c.exec(&["sh", "-c", PIDS_MAX]), "42");
}

/// The container's pids limit, on cgroup v1 or v2.
const PIDS_MAX: &str =
    "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max";

/// -1 is podman's "unlimited": the cgroup has no pids limit, where leaving the option
/// out gives podman's default.
#[tokio::test]
async fn pids_limit_minus_one_is_unlimited() {
    if support::skip_without_limits_or_stats("") {
        return;
    }
    let c = start(json!({"pids_limit": -1})).await;
    assert_eq!(c.exec(&["sh", "-c", PIDS_MAX]), "max");
    // Left out, podman's default limit applies (what -1 used to give, as in Go).
    let c = start(json!({})).await;
    assert_ne!(c.exec(&["sh", "-c", PIDS_MAX]), "max");
}

#[tokio::test]
async fn ulimits_reach_the_main_process() {
    // Both nofile and nproc: podman fills a missing one with 1048576, above this host's
    // hard limits (see README host notes). nproc well above what a host user runs: on the
    // rootless lane it counts every process of the test user, and the exec must fork.
    let c = start(json!({"ulimit": {"nofile": "512:1000", "nproc": "4000"}})).await;
    let ulimits = c
        .host_config("Ulimits")
        .as_array()
        .expect("Ulimits")
        .clone();
    assert!(ulimits.contains(&json!({"Name": "RLIMIT_NOFILE", "Soft": 512, "Hard": 1000})));
    assert!(ulimits.contains(&json!({"Name": "RLIMIT_NPROC", "Soft": 4000, "Hard": 4000})));
    let limits = c.exec(&["cat", "/proc/1/limits"]);
    assert_eq!(&limit_line(&limits, "Max open files")[..2], ["512", "1000"]);
    assert_eq!(&limit_line(&limits, "Max processes")[..2], ["4000", "4000"]);
}

/// Whether capability number `bit` is in the `CapEff` mask of `/proc/1/status`.
fn has_cap(status: &str, bit: u32) -> bool {
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|m| u64::from_str_radix(m.trim(), 16).expect("hex mask"))
        .expect("CapEff line");
    mask & (1 << bit) != 0
}

#[tokio::test]
async fn cap_add_and_cap_drop() {
    const CAP_NET_ADMIN: u32 = 12;
    const CAP_CHOWN: u32 = 0;
    // CHOWN: in every podman's default set (MKNOD left it in podman 5, whose inspect
    // then lists no CapDrop for it).
    let c = start(json!({"cap_add": ["NET_ADMIN"], "cap_drop": ["CHOWN"]})).await;
    assert_eq!(c.host_config("CapAdd"), &json!(["CAP_NET_ADMIN"]));
    assert_eq!(c.host_config("CapDrop"), &json!(["CAP_CHOWN"]));
    let status = c.exec(&["cat", "/proc/1/status"]);
    assert!(has_cap(&status, CAP_NET_ADMIN));
    assert!(!has_cap(&status, CAP_CHOWN));
}

#[tokio::test]
async fn security_opt_fields() {
    let c = start(json!({"security_opt": [
        "no-new-privileges",
        "label=disable",
        "seccomp=unconfined",
        "mask=/proc/cpuinfo",
    ]}))
    .await;
    let opts: Vec<String> =
        serde_json::from_value(c.host_config("SecurityOpt").clone()).expect("SecurityOpt list");
    for expected in ["no-new-privileges", "label=disable", "seccomp=unconfined"] {
        assert!(opts.iter().any(|o| o == expected), "{expected} in {opts:?}");
    }
    let status = c.exec(&["cat", "/proc/1/status"]);
    assert!(status.lines().any(|l| l == "NoNewPrivs:\t1"), "{status}");
    assert!(status.lines().any(|l| l == "Seccomp:\t0"), "{status}");
    assert_eq!(
        c.exec(&["cat", "/proc/cpuinfo"]),
        "",
        "masked path is empty"
    );
}

#[tokio::test]
async fn no_new_privileges_false_is_false() {
    let c = start(json!({"security_opt": ["no-new-privileges=false"]})).await;
    let status = c.exec(&["cat", "/proc/1/status"]);
    assert!(status.lines().any(|l| l == "NoNewPrivs:\t0"), "{status}");
}

#[tokio::test]
async fn tmpfs_mounts() {
    let c = start(json!({"tmpfs": ["/scratch:size=4m,mode=1777"]})).await;
    let tmpfs = &c.host_config("Tmpfs")["/scratch"];
    assert!(
        tmpfs
            .as_str()
            .expect("tmpfs options")
            .starts_with("size=4m,mode=1777"),
        "{tmpfs}"
    );
    let df = c.exec(&["df", "-k", "/scratch"]);
    assert!(df.contains("4096"), "{df}");
}

#[tokio::test]
async fn volumes_and_alloc_dirs() {
    let dir = support::podman().scratch_dir("volumes");
    for sub in [
        "alloc",
        "web",
        "web/local",
        "web/secrets",
        "web/data",
        "host",
    ] {
        std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
        // As Nomad makes task directories: writable by any task user (and by the user
        // a rootless podman maps root to).
        std::fs::set_permissions(
            dir.join(sub),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .expect("chmod");
    }
    std::fs::write(dir.join("alloc/shared.txt"), "alloc").expect("write");
    std::fs::write(dir.join("web/local/local.txt"), "local").expect("write");
    std::fs::write(dir.join("web/data/rel.txt"), "relative").expect("write");
    std::fs::write(dir.join("host/abs.txt"), "absolute").expect("write");
    let host = dir.join("host");
    let c = start_ctx(
        json!({"volumes": ["data:/data", format!("{}:/host:ro", host.display())]}),
        |ctx| {
            ctx.alloc_dir = Some(dir.join("alloc"));
            ctx.task_dir = Some(dir.join("web"));
            ctx.local_dir = Some(dir.join("web/local"));
            ctx.secrets_dir = Some(dir.join("web/secrets"));
        },
    )
    .await;
    assert_eq!(c.exec(&["cat", "/alloc/shared.txt"]), "alloc");
    assert_eq!(c.exec(&["cat", "/local/local.txt"]), "local");
    assert_eq!(c.exec(&["cat", "/data/rel.txt"]), "relative");
    assert_eq!(c.exec(&["cat", "/host/abs.txt"]), "absolute");
    let (ok, out) = c.try_exec(&["touch", "/host/new"]);
    assert!(!ok, "read-only volume accepted a write: {out}");
    c.exec(&["touch", "/secrets/written"]);
    assert!(dir.join("web/secrets/written").exists());
}

#[tokio::test]
async fn disabled_volumes_refuse_host_paths_and_symlink_escapes() {
    let dir = support::podman().scratch_dir("novolumes");
    std::fs::create_dir_all(dir.join("alloc/web/data")).expect("mkdir");
    std::os::unix::fs::symlink("/etc", dir.join("alloc/web/escape")).expect("symlink");
    let driver = DriverConfig::from_value(&json!({"volumes": {"enabled": false}})).expect("config");
    let task_with = |volume: &str, cleanup: &LabelCleanup| {
        let mut spec = task(json!({"volumes": [volume]}), cleanup);
        spec.context.alloc_dir = Some(dir.join("alloc"));
        spec.context.task_dir = Some(dir.join("alloc/web"));
        spec
    };
    for bad in ["/etc:/etc", "escape:/e", "../../..:/up"] {
        let cleanup = LabelCleanup::new("options");
        let err = refused(task_with(bad, &cleanup), &driver, &cleanup).await;
        assert_eq!(err.field(), "config.volumes");
        assert!(err.to_string().contains(bad), "{err}");
    }
    let cleanup = LabelCleanup::new("options");
    let spec = task_with("data:/data", &cleanup);
    let c = start_with(&spec, &driver, cleanup).await;
    assert_eq!(c.exec(&["ls", "-d", "/data"]), "/data");
}

#[tokio::test]
async fn devices() {
    let c = start(json!({"devices": ["/dev/null:/dev/extra-null:rw"]})).await;
    // Rootless podman cannot create device nodes: it bind-mounts the host's, and its
    // inspect lists no devices.
    if support::lane().is_rootless() {
        support::skip_part("Devices in inspect: rootless podman bind-mounts devices");
    } else {
        let devices = c.host_config("Devices");
        assert_eq!(devices[0]["PathOnHost"], "/dev/null");
        assert_eq!(devices[0]["PathInContainer"], "/dev/extra-null");
    }
    let ls = c.exec(&["ls", "-l", "/dev/extra-null"]);
    assert!(ls.starts_with('c'), "character device: {ls}");
}

#[tokio::test]
async fn sysctl() {
    let c = start(json!({"sysctl": {"net.ipv4.ip_unprivileged_port_start": "123"}})).await;
    assert_eq!(
        c.exec(&["cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"]),
        "123"
    );
}

#[tokio::test]
async fn init_runs_as_pid_1() {
    let c = start(json!({"init": true})).await;
    assert_eq!(c.host_config("Init"), true);
    let comm = c.exec(&["cat", "/proc/1/cmdline"]);
    assert!(
        !comm.starts_with("sleep"),
        "pid 1 is the init, not the task: {comm:?}"
    );
    assert!(c.exec(&["ps"]).contains("sleep 300"));
}

#[tokio::test]
async fn tty() {
    let c = start(json!({"tty": true})).await;
    assert_eq!(c.config("Tty"), true);
    let stdout = c.exec(&["readlink", "/proc/1/fd/1"]);
    assert!(stdout.starts_with("/dev/pts/"), "{stdout}");
}

#[tokio::test]
async fn readonly_rootfs() {
    let c = start(json!({"readonly_rootfs": true})).await;
    assert_eq!(c.host_config("ReadonlyRootfs"), true);
    let (ok, out) = c.try_exec(&["touch", "/newfile"]);
    assert!(!ok);
    assert!(out.contains("Read-only"), "{out}");
}

#[tokio::test]
async fn userns_host() {
    // `auto` needs a subuid range for `containers` and `keep-id` a rootless podman: neither
    // exists here, so the host mode is what can be proved (parsing is unit-tested).
    let c = start(json!({"userns": "host"})).await;
    assert!(
        matches!(c.host_config("UsernsMode").as_str(), Some("" | "host")),
        "{}",
        c.host_config("UsernsMode")
    );
    let map = c.exec(&["cat", "/proc/1/uid_map"]);
    let map: Vec<&str> = map.split_whitespace().collect();
    if support::lane().is_rootless() {
        // "host" of a rootless podman is its user's namespace: root is the test user.
        assert_eq!(
            map[..2],
            ["0".to_string(), support::rootless_uid().to_string()]
        );
    } else {
        assert_eq!(map, ["0", "0", "4294967295"]);
    }
}

#[tokio::test]
async fn shm_size() {
    let c = start(json!({"shm_size": "8m"})).await;
    assert_eq!(c.host_config("ShmSize"), 8 * MIB);
    let df = c.exec(&["df", "-k", "/dev/shm"]);
    assert!(df.contains("8192"), "{df}");
}

fn namespace(c: &Started, kind: &str) -> String {
    c.exec(&["readlink", &format!("/proc/1/ns/{kind}")])
}

#[tokio::test]
async fn ipc_modes() {
    let shareable = start(json!({"ipc_mode": "shareable"})).await;
    assert_eq!(shareable.host_config("IpcMode"), "shareable");

    let by_container = start(json!({"ipc_mode": format!("container:{}", shareable.id)})).await;
    assert_eq!(
        by_container.host_config("IpcMode"),
        &json!(format!("container:{}", shareable.id))
    );
    assert_eq!(
        namespace(&by_container, "ipc"),
        namespace(&shareable, "ipc")
    );

    // task:<name> joins the allocation's container `<name>-<alloc id>`.
    let cleanup = LabelCleanup::new("options");
    let mut first = task(json!({"ipc_mode": "shareable"}), &cleanup);
    first.context.name = "ipc-owner".into();
    let owner = start_with(&first, &DriverConfig::default(), cleanup).await;
    let cleanup = LabelCleanup::new("options");
    let mut second = task(json!({"ipc_mode": "task:ipc-owner"}), &cleanup);
    second.context.alloc_id = first.context.alloc_id.clone();
    let joiner = start_with(&second, &DriverConfig::default(), cleanup).await;
    assert_eq!(
        joiner.host_config("IpcMode"),
        &json!(format!("container:{}", owner.id))
    );
    assert_eq!(namespace(&joiner, "ipc"), namespace(&owner, "ipc"));

    // podman 4.3 reports `shareable` for `none`; what `none` means is: no /dev/shm.
    let none = start(json!({"ipc_mode": "none"})).await;
    let (has_shm, _) = none.try_exec(&["ls", "/dev/shm"]);
    assert!(!has_shm, "ipc none still has /dev/shm");
    // Rootless podman bind-mounts the host's /dev/mqueue for `host`; this host (no
    // systemd) has none mounted.
    if support::lane().is_rootless() && !std::path::Path::new("/dev/mqueue").exists() {
        support::skip_part(
            "the ipc_mode host part: rootless podman needs /dev/mqueue, not mounted here",
        );
        return;
    }
    // podman 4.3 also reports `shareable` for `host`: compare the namespace with ours.
    let host = start(json!({"ipc_mode": "host"})).await;
    let ours = std::fs::read_link("/proc/self/ns/ipc").expect("own ipc namespace");
    assert_eq!(namespace(&host, "ipc"), ours.to_string_lossy());
}

#[tokio::test]
async fn network_modes() {
    let bridge = start(json!({})).await;
    let ip = bridge.inspect["NetworkSettings"]["IPAddress"]
        .as_str()
        .expect("IPAddress")
        .to_string();
    // Rootless: the default is slirp4netns, not the bridge (spec.rs picks it).
    assert!(
        !ip.is_empty() || support::lane().is_rootless(),
        "bridge gives an address"
    );

    let none = start(json!({"network_mode": "none"})).await;
    assert_eq!(none.host_config("NetworkMode"), "none");
    let links = none.exec(&["ls", "/sys/class/net"]);
    assert_eq!(links.split_whitespace().collect::<Vec<_>>(), ["lo"]);

    let host = start(json!({"network_mode": "host"})).await;
    assert_eq!(host.host_config("NetworkMode"), "host");

    let joined = start(json!({"network_mode": format!("container:{}", bridge.id)})).await;
    assert_eq!(
        joined.host_config("NetworkMode"),
        &json!(format!("container:{}", bridge.id))
    );
    assert_eq!(namespace(&joined, "net"), namespace(&bridge, "net"));
}

#[tokio::test]
async fn network_mode_task_joins_the_other_task() {
    let cleanup = LabelCleanup::new("options");
    let mut first = task(json!({}), &cleanup);
    first.context.name = "net-owner".into();
    let owner = start_with(&first, &DriverConfig::default(), cleanup).await;
    let cleanup = LabelCleanup::new("options");
    let mut second = task(json!({"network_mode": "task:net-owner"}), &cleanup);
    second.context.alloc_id = first.context.alloc_id.clone();
    let joiner = start_with(&second, &DriverConfig::default(), cleanup).await;
    assert_eq!(owner.name, format!("net-owner-{}", first.context.alloc_id));
    assert_eq!(
        joiner.host_config("NetworkMode"),
        &json!(format!("container:{}", owner.id))
    );
    assert_eq!(namespace(&joiner, "net"), namespace(&owner, "net"));
}

#[tokio::test]
async fn custom_network_and_static_addresses() {
    let network = support::podman().network_name().to_string();
    let subnet: Value =
        serde_json::from_str(&support::podman().cli_ok(&["network", "inspect", &network]))
            .expect("network inspect");
    let cidr = subnet[0]["subnets"][0]["subnet"].as_str().expect("subnet");
    let prefix = cidr.trim_end_matches("0/24");
    // From the host numbers podman does not assign itself (two distinct ones).
    let first = support::STATIC_HOSTS.start + rand::random::<u8>() % 50;
    let wanted_ip = format!("{prefix}{first}");

    let cleanup = LabelCleanup::new("options");
    let spec = task(
        json!({"network_mode": network, "ipv4_address": wanted_ip, "static_mac": "02:00:00:AB:CD:EF"}),
        &cleanup,
    );
    assert_eq!(custom_network(&spec), Some(network.as_str()));
    assert!(support::client()
        .network_exists(&network)
        .await
        .expect("network exists call"));
    let c = start_with(&spec, &DriverConfig::default(), cleanup).await;
    let settings = &c.inspect["NetworkSettings"]["Networks"][&network];
    assert_eq!(settings["IPAddress"], wanted_ip.as_str());
    assert_eq!(settings["MacAddress"], "02:00:00:ab:cd:ef");

    // The same on the default bridge (network_mode unset): keyed as podman's default.
    let other_ip = format!("{prefix}{}", first + 50);
    if support::lane().is_rootless() {
        // Rootless, the default is slirp4netns: a static address is refused up front.
        let cleanup = LabelCleanup::new("options");
        let spec = task(json!({"ipv4_address": other_ip}), &cleanup);
        let err = refused(spec, &DriverConfig::default(), &cleanup).await;
        assert_eq!(err.field(), "config.network_mode");
        return;
    }
    let d = start(json!({"ipv4_address": other_ip})).await;
    assert_eq!(d.inspect["NetworkSettings"]["IPAddress"], other_ip.as_str());
}

#[tokio::test]
async fn ports_publish_tcp_and_udp() {
    let port = free_port();
    let c = start_ctx(json!({"ports": ["http"]}), |ctx| {
        ctx.ports = Some(vec![PortSpec {
            label: "http".into(),
            value: port,
            to: 8080,
            host_ip: "127.0.0.1".into(),
        }]);
    })
    .await;
    let bindings = c.host_config("PortBindings").as_object().expect("bindings");
    assert_eq!(bindings.len(), 2, "{bindings:?}");
    for proto in ["tcp", "udp"] {
        assert_eq!(
            bindings[&format!("8080/{proto}")],
            json!([{"HostIp": "127.0.0.1", "HostPort": port.to_string()}])
        );
    }
}

#[tokio::test]
async fn port_map_publishes_and_exports_env() {
    let port = free_port();
    let c = start_ctx(json!({"port_map": {"http": 8080}}), |ctx| {
        ctx.networks = Some(vec![LegacyNetwork {
            ip: "127.0.0.1".into(),
            reserved_ports: vec![],
            dynamic_ports: vec![LegacyPort {
                label: "http".into(),
                value: port,
            }],
        }]);
    })
    .await;
    let bindings = c.host_config("PortBindings");
    assert_eq!(
        bindings["8080/tcp"],
        json!([{"HostIp": "127.0.0.1", "HostPort": port.to_string()}])
    );
    assert!(c
        .exec(&["env"])
        .lines()
        .any(|l| l == "NOMAD_PORT_http=8080"));
}

#[tokio::test]
async fn hostname_extra_hosts_dns() {
    let c = start_ctx(
        json!({"hostname": "optbox", "extra_hosts": ["db.internal:10.1.2.3", "v6.internal:[fd00::7]"]}),
        |ctx| {
            ctx.dns = Some(DnsSpec {
                servers: vec!["1.1.1.1".into()],
                searches: vec!["internal.corp".into()],
                options: vec!["ndots:2".into()],
            });
        },
    )
    .await;
    assert_eq!(c.config("Hostname"), "optbox");
    assert_eq!(c.exec(&["hostname"]), "optbox");
    let hosts = c.exec(&["cat", "/etc/hosts"]);
    assert!(
        hosts
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["10.1.2.3", "db.internal"]),
        "{hosts}"
    );
    assert!(
        hosts
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["fd00::7", "v6.internal"]),
        "{hosts}"
    );
    let resolv = c.exec(&["cat", "/etc/resolv.conf"]);
    for line in [
        "nameserver 1.1.1.1",
        "search internal.corp",
        "options ndots:2",
    ] {
        assert!(resolv.lines().any(|l| l == line), "{line} in {resolv}");
    }
}

#[tokio::test]
async fn plugin_dns_servers_apply_without_task_dns() {
    let cleanup = LabelCleanup::new("options");
    let spec = task(json!({}), &cleanup);
    let driver = DriverConfig::from_value(&json!({"dns_servers": ["9.9.9.9"]})).expect("config");
    let c = start_with(&spec, &driver, cleanup).await;
    let resolv = c.exec(&["cat", "/etc/resolv.conf"]);
    assert!(
        resolv.lines().any(|l| l == "nameserver 9.9.9.9"),
        "{resolv}"
    );
}

#[tokio::test]
async fn labels() {
    let cleanup = LabelCleanup::new("options");
    let spec = task(
        json!({"labels": [{"team": "infra"}, {"tier": "web"}]}),
        &cleanup,
    );
    let driver = DriverConfig::from_value(&json!({"extra_labels": ["node_*"]})).expect("config");
    let c = start_with(&spec, &driver, cleanup).await;
    let labels = c.config("Labels");
    assert_eq!(labels["team"], "infra");
    assert_eq!(labels["tier"], "web");
    assert_eq!(
        labels["com.hashicorp.nomad.alloc_id"],
        spec.context.alloc_id.as_str()
    );
    assert_eq!(labels["com.hashicorp.nomad.job_name"], "options-job");
    assert_eq!(
        labels["com.hashicorp.nomad.task_group_name"],
        "options-group"
    );
    assert_eq!(
        labels["com.hashicorp.nomad.task_name"],
        spec.context.name.as_str()
    );
    assert_eq!(labels["com.hashicorp.nomad.node_name"], "e2e-node");
    assert_eq!(labels["com.hashicorp.nomad.node_id"], "e2e-node-id");
    assert_eq!(labels[MANAGED_LABEL], "true");
    assert!(labels.get("com.hashicorp.nomad.namespace").is_none());
    assert_eq!(c.inspect["Name"], spec.container_name().as_str());
}

#[tokio::test]
async fn working_dir_env_oom_score_adj() {
    let c = start_ctx(
        json!({"working_dir": "/tmp", "oom_score_adj": 321}),
        |ctx| {
            ctx.env.insert("GREETING".into(), "hello world".into());
            ctx.user = "nobody".into();
        },
    )
    .await;
    assert_eq!(c.config("WorkingDir"), "/tmp");
    assert_eq!(c.exec(&["pwd"]), "/tmp");
    assert!(c
        .exec(&["env"])
        .lines()
        .any(|l| l == "GREETING=hello world"));
    assert_eq!(c.exec(&["cat", "/proc/1/oom_score_adj"]), "321");
    assert_eq!(c.config("User"), "nobody");
    let status = c.exec(&["cat", "/proc/1/status"]);
    assert!(
        status.lines().any(|l| l.starts_with("Uid:\t65534")),
        "{status}"
    );
}

/// Waits for the container's main process to exit and returns its logs.
async fn finished_logs(c: &Started) -> String {
    let client = support::client();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let state = client.container_inspect(&c.id).await.expect("inspect");
        if state.state.status == "exited" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "container did not exit"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    support::podman().cli_ok(&["logs", &c.id])
}

#[tokio::test]
async fn entrypoint_command_and_args() {
    let c = start(json!({"entrypoint": ["/bin/echo", "from-entrypoint"], "command": "cmd", "args": ["arg1", 2]})).await;
    // A string before podman 5, a list since (drift inspect-entrypoint-array).
    let entrypoint = c.config("Entrypoint");
    assert!(
        entrypoint == "/bin/echo from-entrypoint"
            || entrypoint == &json!(["/bin/echo", "from-entrypoint"]),
        "{entrypoint}"
    );
    assert_eq!(c.config("Cmd"), &json!(["cmd", "arg1", "2"]));
    assert_eq!(finished_logs(&c).await, "from-entrypoint cmd arg1 2");

    // args alone replace the image CMD; the deprecated string entrypoint is one element.
    let c = start(json!({"entrypoint": "/bin/echo", "args": ["only", "args"]})).await;
    assert_eq!(finished_logs(&c).await, "only args");
}

#[tokio::test]
async fn stop_signal_and_timeout_are_the_tasks() {
    let script = "trap 'echo got-usr1; exit 7' USR1; echo ready; while :; do sleep 0.1; done";
    let c = start_ctx(json!({"command": "sh", "args": ["-c", script]}), |ctx| {
        ctx.kill_signal = Some("SIGUSR1".into());
        ctx.kill_timeout = Duration::from_secs(7);
    })
    .await;
    assert_eq!(c.config("StopTimeout"), 7);
    // podman stop (no signal given) uses the container's stop signal.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while support::podman().cli_ok(&["logs", &c.id]) != "ready" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "task never got ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    support::podman().cli_ok(&["stop", &c.id]);
    let exit: Value =
        serde_json::from_str(&support::podman().cli_ok(&["inspect", &c.id])).expect("inspect");
    assert_eq!(exit[0]["State"]["ExitCode"], 7);
    assert_eq!(
        support::podman().cli_ok(&["logs", &c.id]),
        "ready\ngot-usr1"
    );
}

#[tokio::test]
async fn logging_uses_k8s_file() {
    // journald: this host has no journal socket, so podman refuses such containers; the
    // journald spec is unit-tested.
    let c = start(json!({"logging": {"driver": "nomad", "options": {"max-size": "1mb"}}})).await;
    assert_eq!(c.host_config("LogConfig")["Type"], "k8s-file");
    // podman shows the 1 MiB limit in decimal units.
    assert_eq!(c.host_config("LogConfig")["Size"], "1.049MB");
}

#[tokio::test]
async fn privileged_and_gates() {
    let c = start(json!({"privileged": true})).await;
    assert_eq!(c.host_config("Privileged"), true);

    let strict =
        DriverConfig::from_value(&json!({"allow_privileged": false, "allow_caps": ["chown"]}))
            .expect("config");
    for (config, option) in [
        (json!({"privileged": true}), "config.privileged"),
        (json!({"cap_add": ["SYS_ADMIN"]}), "config.cap_add"),
    ] {
        let cleanup = LabelCleanup::new("options");
        let err = refused(task(config, &cleanup), &strict, &cleanup).await;
        assert!(matches!(err, SpecError::Denied { .. }));
        assert_eq!(err.field(), option);
    }
}

/// Every invalid option value is refused before podman is called, naming option and value.
#[tokio::test]
async fn bad_input_names_option_and_value() {
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"memory_reservation": "100M"}),
            "config.memory_reservation",
            "100M",
        ),
        (json!({"memory_swap": "lots"}), "config.memory_swap", "lots"),
        (json!({"shm_size": "1.5m"}), "config.shm_size", "1.5m"),
        (
            json!({"memory_swappiness": 200}),
            "config.memory_swappiness",
            "200",
        ),
        (
            json!({"cpu_cfs_period": 2000000}),
            "config.cpu_cfs_period",
            "2000000",
        ),
        (
            json!({"oom_score_adj": -5000}),
            "config.oom_score_adj",
            "-5000",
        ),
        (
            json!({"ulimit": {"nofile": "many"}}),
            "config.ulimit.nofile",
            "many",
        ),
        (
            json!({"security_opt": ["apparmor"]}),
            "config.security_opt",
            "apparmor",
        ),
        (json!({"userns": "sideways"}), "config.userns", "sideways"),
        (json!({"ipc_mode": "public"}), "config.ipc_mode", "public"),
        (
            json!({"shm_size": "1m", "ipc_mode": "host"}),
            "config.shm_size",
            "host",
        ),
        (
            json!({"extra_hosts": ["nocolon"]}),
            "config.extra_hosts",
            "nocolon",
        ),
        (
            json!({"volumes": ["/only-source"]}),
            "config.volumes",
            "/only-source",
        ),
        (json!({"tmpfs": ["relative"]}), "config.tmpfs", "relative"),
        (
            json!({"ipv4_address": "10.0.0.999"}),
            "config.ipv4_address",
            "10.0.0.999",
        ),
        (
            json!({"ipv6_address": "nope"}),
            "config.ipv6_address",
            "nope",
        ),
        (json!({"static_ips": ["x.y"]}), "config.static_ips", "x.y"),
        (json!({"static_mac": "00:11"}), "config.static_mac", "00:11"),
        (
            json!({"image_pull_timeout": "forever"}),
            "config.image_pull_timeout",
            "forever",
        ),
        (
            json!({"logging": {"driver": "syslog"}}),
            "config.logging.driver",
            "syslog",
        ),
        (
            json!({"network_mode": "container:"}),
            "config.network_mode",
            "container:",
        ),
        (
            json!({"port_map": {"http": 0}}),
            "config.port_map.http",
            "0",
        ),
        (
            json!({"entrypoint": {"a": 1}}),
            "config.entrypoint",
            "object",
        ),
        (json!({"tty": "maybe"}), "config.tty", "maybe"),
        (
            json!({"memory_reservation": 5}),
            "config.memory_reservation",
            "number 5",
        ),
        (
            json!({"no_such_option": 1}),
            "config.no_such_option",
            "unknown option",
        ),
        (json!({"image": ""}), "config.image", "image name required"),
    ];
    for (mut config, option, shown) in cases {
        let cleanup = LabelCleanup::new("options");
        if config.get("image").is_none() {
            config["image"] = json!(BUSYBOX_IMAGE);
        }
        config["labels"] = json!({&cleanup.key: &cleanup.value});
        let err = TaskConfig::from_value(&config).expect_err(option);
        assert_eq!(err.field(), option, "{config}");
        assert!(err.to_string().contains(shown), "{config}: {err}");
        assert!(containers_with(&cleanup).is_empty());
    }

    // Context-dependent errors come from the spec builder, still before any podman call.
    let cleanup = LabelCleanup::new("options");
    type ContextCase = (Value, fn(&mut TaskContext), &'static str, &'static str);
    let context_cases: Vec<ContextCase> = vec![
        (
            json!({"ports": ["http"]}),
            |_| {},
            "config.ports",
            "No ports defined",
        ),
        (
            json!({}),
            |ctx| ctx.kill_signal = Some("SIGWHATEVER".into()),
            "kill_signal",
            "SIGWHATEVER",
        ),
        (
            json!({"memory_swap": "64m"}),
            |_| {},
            "config.memory_swap",
            "memory limit",
        ),
        (
            json!({"logging": {"options": {"tag": "t"}}}),
            |_| {},
            "config.logging.options.tag",
            "journald",
        ),
        (
            json!({}),
            |ctx| {
                ctx.dns = Some(DnsSpec {
                    servers: vec!["one.one.one.one".into()],
                    ..DnsSpec::default()
                })
            },
            "dns.servers",
            "one.one.one.one",
        ),
    ];
    for (config, context, field, shown) in context_cases {
        let mut spec = task(config, &cleanup);
        context(&mut spec.context);
        let err = refused(spec, &DriverConfig::default(), &cleanup).await;
        assert_eq!(err.field(), field);
        assert!(err.to_string().contains(shown), "{err}");
    }
}

/// The same option values written as Nomad sends them (blocks as lists, numbers as strings)
/// produce the same container.
#[tokio::test]
async fn nomad_shaped_config_gives_the_same_container() {
    let c = start(json!({
        "ulimit": [{"nofile": "256:512"}, {"nproc": "4000"}],
        "pids_limit": "33",
        "sysctl": [{"net.ipv4.ip_unprivileged_port_start": "99"}],
        "logging": [{"driver": "nomad", "options": [{"max-size": "1mb"}]}],
        "auth": null,
        "shm_size": "",
    }))
    .await;
    if !support::skip_without_limits_or_stats("the pids limit part") {
        assert_eq!(c.host_config("PidsLimit"), 33);
    }
    let limits = c.exec(&["cat", "/proc/1/limits"]);
    assert_eq!(&limit_line(&limits, "Max open files")[..2], ["256", "512"]);
    assert_eq!(
        c.exec(&["cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"]),
        "99"
    );
    assert!(Path::new(c.host_config("LogConfig")["Path"].as_str().unwrap_or("")).is_absolute());
}

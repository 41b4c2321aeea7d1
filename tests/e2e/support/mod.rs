//! Test bed: a private podman service, the busybox test image, a local registry.
//!
//! Everything here is started at most once per test process and torn down by a small `sh`
//! watchdog when the process ends (normally, by panic or by SIGKILL): the watchdog blocks on
//! a pipe whose write end only this process holds, so the kernel closing that pipe is the
//! signal. Helpers are plain blocking functions; calling them from `#[tokio::test]` is fine.

// Shared by every e2e suite; each suite uses a different subset.
#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use nomad_driver_podman::driver::podman::PodmanClient;

mod registry;
pub use registry::{auth_registry, registry, TestRegistry};

/// The busybox image every test can run; imported into the private storage once.
pub const BUSYBOX_IMAGE: &str = "localhost/ndp-busybox:latest";
/// Label key every test container carries (value: see [`unique_name`]).
pub const TEST_LABEL_KEY: &str = "ndp-test";

const SERVICE_START_DEADLINE: Duration = Duration::from_secs(60);
/// The test user of the rootless lane (made by `scripts/lane prepare rootless`).
const ROOTLESS_USER: &str = "ndp-rootless";

/// Which podman the test bed runs, from env `NDP_LANE` (set by `scripts/test`):
/// unset (or `host`): the host's rootful podman; `podman5`: the rootful podman 5 of the
/// cached Debian 13 root (`scripts/lane prepare podman5`); `rootless`: the host's podman
/// as the test user (`scripts/lane prepare rootless`). Each test process still gets its
/// own service, storage, network and subnet on every lane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    Host,
    Podman5,
    Rootless,
}

/// The lane of this test process.
pub fn lane() -> Lane {
    static LANE: OnceLock<Lane> = OnceLock::new();
    *LANE.get_or_init(
        || match std::env::var("NDP_LANE").unwrap_or_default().as_str() {
            "" | "host" => Lane::Host,
            "podman5" => Lane::Podman5,
            "rootless" => Lane::Rootless,
            other => panic!("NDP_LANE={other}: expected host, podman5 or rootless"),
        },
    )
}

/// Skips the calling test on the lanes it cannot apply to, printing why: returns true
/// when the test should `return` at once.
pub fn skip_on(lanes: &[Lane], reason: &str) -> bool {
    let l = lane();
    if lanes.contains(&l) {
        record_skip(true, reason);
        true
    } else {
        false
    }
}

/// Prints a skip (whole test, or a part of it) and appends it to `$NDP_SKIP_LOG` (one
/// line: `whole|part <test name>: <reason>`), which scripts/test counts.
fn record_skip(whole: bool, reason: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("unknown test")
        .to_string();
    let kind = if whole { "whole" } else { "part" };
    println!("SKIPPED ({kind}) on lane {:?}: {reason}", lane());
    if let Some(path) = std::env::var_os("NDP_SKIP_LOG") {
        if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "{kind} {test}: {reason}");
        }
    }
}

/// Records that a part of the calling test does not apply to this lane (see [`skip_on`]).
pub fn skip_part(reason: &str) {
    record_skip(false, reason);
}

/// Rootless podman on cgroup v1 (the rootless lane here) sets no resource limits and has
/// no container stats (drifts rootless-cgroup1-no-limits and rootless-cgroup1-no-stats):
/// skips the calling test with that reason when so.
/// `what` names the part skipped: "" for the whole test.
pub fn skip_without_limits_or_stats(what: &str) -> bool {
    let cgroup_v1 = !Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    if lane().is_rootless() && cgroup_v1 {
        let reason = "rootless podman on cgroup v1 sets no resource limits and reports no stats";
        if what.is_empty() {
            record_skip(true, reason);
        } else {
            record_skip(false, &format!("{what}: {reason}"));
        }
        true
    } else {
        false
    }
}

/// UID of the rootless lane's test user.
pub fn rootless_uid() -> u32 {
    podman_user_ids().0
}

/// UID and GID of the rootless lane's test user.
pub fn podman_user_ids() -> (u32, u32) {
    rootless_ids().unwrap_or_else(|e| panic!("{e}"))
}

/// On the rootless lane, gives `path` to the test user, as if that user (who runs the
/// runner there) had written it; elsewhere leaves it alone.
pub fn give_to_podman_user(path: &Path) {
    if lane().is_rootless() {
        let (uid, gid) = podman_user_ids();
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    }
}

impl Lane {
    /// Second octet of this lane's `10.X.N.0/24` test subnets, where concurrent test
    /// processes claim N, and the prefix of their network names; lanes never share either.
    fn subnets(self) -> (u8, &'static str, &'static str) {
        match self {
            Lane::Host => (233, "/tmp/ndp-e2e-subnets", "ndpe2e"),
            Lane::Podman5 => (234, "/tmp/ndp-e2e-subnets-podman5", "ndp5e2e"),
            Lane::Rootless => (235, "/tmp/ndp-e2e-subnets-rootless", "ndpre2e"),
        }
    }

    pub fn is_rootless(self) -> bool {
        self == Lane::Rootless
    }

    fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/lane")
    }
}

fn rootless_ids() -> Result<(u32, u32), String> {
    let id = |flag: &str| -> Result<u32, String> {
        let out = Command::new("id")
            .args([flag, ROOTLESS_USER])
            .output()
            .map_err(|e| format!("id: {e}"))?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| format!("no user {ROOTLESS_USER}: run scripts/lane prepare rootless"))
    };
    Ok((id("-u")?, id("-g")?))
}

/// Runs the main command until stdin reaches EOF (the test process ended), then kills it
/// and runs `$CLEANUP`. With `$CRASH_DIR` set, a main command that ends on its own before
/// that (podman 5's service has crashed under load with Go's fatal errors) is recorded
/// there (its log and exit status) and started again with the same arguments on the same
/// socket (`$SOCKET`), so one podman crash costs the tests in flight, not the rest of the
/// suite; scripts/test re-runs the tests that failed in a lane that recorded a crash.
const WATCHDOG: &str = r#"trap '' INT HUP
exec 3<&0
start() { "$@" </dev/null 3<&- >>"$LOG" 2>&1 & echo $! >"$LOG.pid"; }
start "$@"
{ cat <&3 >/dev/null; : >"$LOG.stopping"; kill "$(cat "$LOG.pid")" 2>/dev/null; } &
watcher=$!
exec 3<&-
while :; do
  wait "$(cat "$LOG.pid")"; status=$?
  [ -e "$LOG.stopping" ] && break
  if [ -z "$CRASH_DIR" ]; then wait "$watcher"; break; fi
  mkdir -p "$CRASH_DIR"
  record="$CRASH_DIR/service-$(date +%Y%m%dT%H%M%S)-$$.log"
  { echo "podman service exited with status $status at $(date -u +%FT%TZ): $*"; cat "$LOG"; } >"$record"
  : >"$LOG"
  rm -f "$SOCKET"
  start "$@"
done
wait "$watcher"
eval "$CLEANUP"
"#;

/// Where the shared service's crashes are recorded (scripts/test reads them per lane):
/// under /tmp, the one host directory the podman 5 lane's namespace sees.
fn service_crash_dir() -> PathBuf {
    std::env::var_os("NDP_SERVICE_CRASH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("ndp-e2e-service-crashes"))
}

/// The private podman service of this test process.
pub struct TestPodman {
    lane: Lane,
    /// Podman 5 lane: a process in the service's mount namespace (its watchdog).
    ns_pid: Option<u32>,
    dir: PathBuf,
    socket: PathBuf,
    conf: PathBuf,
    registries_conf: PathBuf,
    network: String,
    /// Held until the process exits; its closing stops the watchdog.
    _watchdog: ChildStdin,
}

/// The private podman service, started on first use.
pub fn podman() -> &'static TestPodman {
    static PODMAN: OnceLock<TestPodman> = OnceLock::new();
    PODMAN.get_or_init(|| {
        TestPodman::start(Some(service_crash_dir())).unwrap_or_else(|e| panic!("test bed: {e}"))
    })
}

/// A libpod client for the private service (default deadline).
pub fn client() -> PodmanClient {
    PodmanClient::new(&podman().socket_url(), None).expect("client for the test socket")
}

/// A second, independent podman service (own storage, network and socket) for a test that
/// must disturb its service; torn down when the returned value is dropped.
pub fn start_private_podman() -> TestPodman {
    // Never restarted: the tests that use one stop and start its service themselves.
    TestPodman::start(None).unwrap_or_else(|e| panic!("private test bed: {e}"))
}

/// A private service supervised like the shared one: when it dies on its own it is
/// recorded in `crash_dir` and started again.
pub fn start_supervised_private_podman(crash_dir: &Path) -> TestPodman {
    TestPodman::start(Some(crash_dir.to_path_buf()))
        .unwrap_or_else(|e| panic!("supervised test bed: {e}"))
}

impl TestPodman {
    /// With `crash_dir`, a service that dies on its own is recorded there and restarted.
    fn start(crash_dir: Option<PathBuf>) -> Result<Self, String> {
        let lane = lane();
        let dir = make_temp_dir("podman")?;
        let (subnet, claim) = claim_subnet(lane)?;
        let (octet, _, prefix) = lane.subnets();
        let network = format!("{prefix}{subnet}");
        let paths = StoragePaths::new(&dir, lane);
        for d in [&paths.root, &paths.runroot, &paths.tmp, &paths.networks] {
            fs::create_dir_all(d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
        }
        if lane == Lane::Rootless {
            let (uid, gid) = rootless_ids()?;
            fs::create_dir_all(&paths.xdg).map_err(|e| format!("mkdir xdg: {e}"))?;
            fs::set_permissions(&paths.xdg, fs::Permissions::from_mode(0o700))
                .map_err(|e| format!("chmod xdg: {e}"))?;
            for d in [
                &dir,
                &paths.root,
                &paths.runroot,
                &paths.tmp,
                &paths.networks,
                &paths.xdg,
            ] {
                std::os::unix::fs::chown(d, Some(uid), Some(gid))
                    .map_err(|e| format!("chown {}: {e}", d.display()))?;
            }
        }
        let conf = dir.join("containers.conf");
        write(&conf, &containers_conf(&paths.networks, &network))?;
        let registries_conf = dir.join("registries.conf");
        write(
            &registries_conf,
            "unqualified-search-registries = [\"localhost\"]\nshort-name-mode = \"permissive\"\n",
        )?;
        // Our own bridge (name and subnet unique on the host) so concurrent test processes
        // never share IPAM state or a bridge.
        write(
            &paths.networks.join(format!("{network}.json")),
            &network_json(&network, octet, subnet),
        )?;
        let socket = dir.join("podman.sock");

        let storage = paths.args().join(" ");
        // The podman 5 lane's watchdog runs inside the lane's mount namespace, so its
        // cleanup sees the service's mounts; the rootless lane's CLI runs as the test user.
        let cli = match lane {
            Lane::Host | Lane::Podman5 => format!("podman {storage}"),
            Lane::Rootless => format!(
                "'{}' exec rootless podman {storage}",
                Lane::script().display()
            ),
        };
        let cleanup = format!(
            "{cli} rm -a -f -t 0 >/dev/null 2>&1\n\
             {cli} pod rm -a -f >/dev/null 2>&1\n\
             for p in $(grep -l -s -F '{dir}/' /proc/[0-9]*/cmdline | cut -d/ -f3); do [ \"$p\" = $$ ] || kill -9 \"$p\" 2>/dev/null; done\n\
             for p in $(grep -l -s -z -x -F 'XDG_RUNTIME_DIR={xdg}' /proc/[0-9]*/environ | cut -d/ -f3); do [ \"$p\" = $$ ] || kill -9 \"$p\" 2>/dev/null; done\n\
             grep -o ' {dir}/[^ ]*' /proc/self/mounts | sort -r | while read -r m; do umount -l \"$m\"; done\n\
             rm -rf '{dir}' '{claim}'\n",
            dir = dir.display(),
            claim = claim.display(),
            // Rootless: the user namespace's pause process (`catatonit -P`) of this
            // service, whose command line does not name the directory, has our own
            // XDG_RUNTIME_DIR in its environment.
            xdg = paths.xdg.display(),
        );
        let mut cmd = match lane {
            Lane::Host | Lane::Podman5 => Command::new("podman"),
            Lane::Rootless => {
                let mut c = Command::new(Lane::script());
                c.args(["exec", "rootless", "podman"]);
                c
            }
        };
        cmd.args(paths.args())
            .arg("system")
            .arg("service")
            .arg("--time=0")
            .arg(format!("unix://{}", socket.display()));
        let wrapper: Vec<std::ffi::OsString> = match lane {
            Lane::Podman5 => vec![
                Lane::script().into_os_string(),
                "exec".into(),
                "podman5".into(),
            ],
            Lane::Host | Lane::Rootless => Vec::new(),
        };
        let mut envs = paths.envs(&conf, &registries_conf);
        envs.push(("SOCKET", socket.as_os_str()));
        if let Some(crash_dir) = &crash_dir {
            envs.push(("CRASH_DIR", crash_dir.as_os_str()));
        }
        let (watchdog, watchdog_pid) = spawn_watchdog(
            &dir,
            &wrapper,
            cmd,
            &dir.join("service.log"),
            &cleanup,
            &envs,
        )?;
        let podman = TestPodman {
            lane,
            ns_pid: (lane == Lane::Podman5).then_some(watchdog_pid),
            dir,
            socket,
            conf,
            registries_conf,
            network,
            _watchdog: watchdog,
        };
        podman.wait_ready()?;
        podman.import_busybox(BUSYBOX_IMAGE, &[])?;
        Ok(podman)
    }

    /// `unix:///...` URL of the service socket.
    pub fn socket_url(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// Names of the containers (any state) carrying `label` (`key` or `key=value`).
    pub fn containers_labelled(&self, label: &str) -> Vec<String> {
        self.cli_ok(&[
            "ps",
            "-a",
            "--format",
            "{{.Names}}",
            "--filter",
            &format!("label={label}"),
        ])
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
    }

    /// The generated containers.conf the service runs with.
    pub fn containers_conf(&self) -> &Path {
        &self.conf
    }

    /// `program` as the user this lane's podman runs as, the way that user would run it:
    /// on the rootless lane the test user, with the service's runtime dir (so the bed's
    /// cleanup also ends whatever it leaves running); else this process's user.
    /// A binary below a directory the test user cannot enter (a checkout in /root) is
    /// run from a copy in the bed's directory.
    pub fn command_as_podman_user(&self, program: &Path) -> Command {
        match self.lane {
            Lane::Rootless => {
                let mut c = Command::new(Lane::script());
                c.args(["exec", "rootless"])
                    .arg(self.reachable_by_test_user(program))
                    .env("XDG_RUNTIME_DIR", self.dir.join("xdg"))
                    .env("XDG_DATA_HOME", self.dir.join("data"));
                c
            }
            Lane::Host | Lane::Podman5 => Command::new(program),
        }
    }

    /// The path [`Self::command_as_podman_user`] runs `program` from.
    pub fn program_for_podman_user(&self, program: &Path) -> PathBuf {
        match self.lane {
            Lane::Rootless => self.reachable_by_test_user(program),
            Lane::Host | Lane::Podman5 => program.to_path_buf(),
        }
    }

    fn reachable_by_test_user(&self, program: &Path) -> PathBuf {
        // A bare name is looked up in PATH (system directories).
        if program.components().count() == 1 || open_to_others(program) {
            return program.to_path_buf();
        }
        static COPIES: Mutex<Vec<(PathBuf, PathBuf)>> = Mutex::new(Vec::new());
        let mut copies = COPIES.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, copy)) = copies.iter().find(|(p, _)| p == program) {
            return copy.clone();
        }
        let dir = self.dir.join("bin");
        let copy = dir.join(unique_name("bin"));
        fs::create_dir_all(&dir)
            .and_then(|()| fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)))
            .and_then(|()| fs::copy(program, &copy).map(drop))
            .and_then(|()| fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)))
            .unwrap_or_else(|e| panic!("copy {} for the test user: {e}", program.display()));
        copies.push((program.to_path_buf(), copy.clone()));
        copy
    }

    /// Name of the default (bridge) network of the private service.
    pub fn network_name(&self) -> &str {
        &self.network
    }

    /// A scratch directory that is removed with the test bed. On the rootless lane it is
    /// writable by everyone, as Nomad's task directories are (0777), so containers of the
    /// test user can write where a root-owned test puts them.
    pub fn scratch_dir(&self, prefix: &str) -> PathBuf {
        let d = self.dir.join("scratch").join(unique_name(prefix));
        fs::create_dir_all(&d).expect("create scratch dir");
        if self.lane.is_rootless() {
            fs::set_permissions(&d, fs::Permissions::from_mode(0o777)).expect("chmod scratch");
        }
        d
    }

    /// The lane this service belongs to.
    pub fn lane(&self) -> Lane {
        self.lane
    }

    /// A `podman` CLI command on the private storage (for test setup and assertions): the
    /// lane's own podman, in the service's mount namespace (podman 5) or as the test user
    /// (rootless).
    pub fn command(&self) -> Command {
        let paths = StoragePaths::new(&self.dir, self.lane);
        let mut cmd = match (self.lane, self.ns_pid) {
            (Lane::Podman5, Some(pid)) => {
                let mut c = Command::new("nsenter");
                // The CLI cannot start conmon itself here (`podman run` fails with conmon's
                // "Failed to get working directory"): tests start containers through the
                // API and use the CLI for the rest.
                c.arg("-t")
                    .arg(pid.to_string())
                    .arg("-m")
                    .arg(format!("--wd={}", self.dir.display()))
                    .arg("--")
                    .arg("podman");
                c
            }
            (Lane::Rootless, _) => {
                let mut c = Command::new(Lane::script());
                c.args(["exec", "rootless", "podman"]);
                c
            }
            _ => Command::new("podman"),
        };
        cmd.args(paths.args())
            .envs(paths.envs(&self.conf, &self.registries_conf))
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs the CLI and returns its output, whatever the exit status.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("podman CLI runs")
    }

    /// Runs the CLI, panics with its stderr on failure, returns trimmed stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "podman {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Imports the busybox rootfs again under `name` with extra `--change` instructions
    /// (e.g. `STOPSIGNAL=SIGUSR1`).
    pub fn import_busybox(&self, name: &str, changes: &[&str]) -> Result<(), String> {
        let tar = busybox_rootfs_tar(&self.dir)?;
        let mut all = vec![
            "CMD=[\"/bin/sh\"]",
            "ENV=PATH=/usr/sbin:/usr/bin:/sbin:/bin",
        ];
        all.extend(changes);
        self.import_rootfs(&tar, name, &all)
    }

    /// Imports a rootfs tar as image `name` with `--change` instructions (no spaces in
    /// them: podman splits a change at the first one).
    pub fn import_rootfs(&self, tar: &Path, name: &str, changes: &[&str]) -> Result<(), String> {
        let mut cmd = self.command();
        cmd.arg("import");
        for c in changes {
            cmd.arg("--change").arg(c);
        }
        let out = cmd
            .arg(tar)
            .arg(name)
            .output()
            .map_err(|e| format!("podman import: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "podman import {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }

    /// SIGKILLs this service's `podman system service` process(es), as a crash would;
    /// containers keep running under conmon. Never call it on the shared [`podman()`].
    pub fn kill_service(&self) {
        let socket_arg = self.socket_url();
        let services: Vec<i32> = fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
                // The podman process itself, not the watchdog shell that carries its argv.
                args.first().is_some_and(|a| a.ends_with(b"podman"))
                    && args
                        .windows(2)
                        .any(|w| w == [&b"system"[..], &b"service"[..]])
                    && args.contains(&socket_arg.as_bytes())
            })
            .collect();
        assert!(!services.is_empty(), "no podman service on {socket_arg}");
        for pid in &services {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let deadline = Instant::now() + SERVICE_START_DEADLINE;
        // Gone, or a zombie its parent has not reaped yet.
        while services.iter().any(|pid| {
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|stat| {
                    !stat
                        .rsplit(')')
                        .next()
                        .unwrap_or("")
                        .trim_start()
                        .starts_with('Z')
                })
                .unwrap_or(false)
        }) {
            assert!(Instant::now() < deadline, "podman service survived SIGKILL");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts `podman system service` again on the same socket and storage (after
    /// [`TestPodman::kill_service`]) and waits until it answers. The watchdog's cleanup
    /// still ends it: it kills every process whose command line names this test bed's dir.
    pub fn restart_service(&self) {
        let _ = fs::remove_file(&self.socket);
        let log = fs::File::create(self.dir.join("service-restarted.log")).expect("service log");
        let mut service = self
            .command()
            .arg("system")
            .arg("service")
            .arg("--time=0")
            .arg(self.socket_url())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("podman system service starts again");
        // Reaped whenever it ends (a later kill_service, or the cleanup), leaving no zombie.
        std::thread::spawn(move || service.wait());
        self.wait_ready()
            .unwrap_or_else(|e| panic!("restarted service: {e}"));
    }

    /// Whether the service answers a ping now.
    pub fn answers(&self) -> bool {
        ping(&self.socket)
    }

    fn wait_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + SERVICE_START_DEADLINE;
        loop {
            if ping(&self.socket) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = fs::read_to_string(self.dir.join("service.log")).unwrap_or_default();
                return Err(format!(
                    "podman service did not answer in time; log:\n{log}"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

struct StoragePaths {
    root: PathBuf,
    runroot: PathBuf,
    tmp: PathBuf,
    networks: PathBuf,
    /// XDG_RUNTIME_DIR of a rootless service (unused by rootful ones).
    xdg: PathBuf,
    /// XDG_DATA_HOME of a rootless service: its blob cache and any default storage stay
    /// in the bed, not in the test user's home.
    data: PathBuf,
    rootless: bool,
}

impl StoragePaths {
    fn new(dir: &Path, lane: Lane) -> Self {
        StoragePaths {
            root: dir.join("root"),
            runroot: dir.join("runroot"),
            tmp: dir.join("tmp"),
            networks: dir.join("networks"),
            xdg: dir.join("xdg"),
            data: dir.join("data"),
            rootless: lane.is_rootless(),
        }
    }

    /// The environment of the service and the CLI: the rootless lane's own
    /// XDG_RUNTIME_DIR only there (rootful services keep today's environment).
    fn envs<'a>(
        &'a self,
        conf: &'a Path,
        registries_conf: &'a Path,
    ) -> Vec<(&'static str, &'a std::ffi::OsStr)> {
        let mut envs = vec![
            ("CONTAINERS_CONF", conf.as_os_str()),
            ("CONTAINERS_REGISTRIES_CONF", registries_conf.as_os_str()),
            ("PODMAN_IGNORE_CGROUPSV1_WARNING", "1".as_ref()),
        ];
        if self.rootless {
            envs.push(("XDG_RUNTIME_DIR", self.xdg.as_os_str()));
            envs.push(("XDG_DATA_HOME", self.data.as_os_str()));
        }
        envs
    }

    fn args(&self) -> Vec<String> {
        let mut args = vec![
            format!("--root={}", self.root.display()),
            format!("--runroot={}", self.runroot.display()),
            format!("--tmpdir={}", self.tmp.display()),
        ];
        // No fuse-overlayfs here: rootless storage is vfs.
        if self.rootless {
            args.push("--storage-driver=vfs".into());
        }
        args
    }
}

/// Settings this host needs: runc (cgroup v1), ulimits under the hard limits, no systemd,
/// file locks (the default shm locks are shared with every other podman on the host).
/// Podman 5 (netavark 1.14) keeps its default nftables firewall driver (its root has
/// `nft`): its rules then stay in its own nft table instead of the NETAVARK-* iptables
/// chains that the host's netavark 1.4 manages too.
fn containers_conf(networks: &Path, network: &str) -> String {
    format!(
        r#"[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
log_driver = "k8s-file"

[network]
network_config_dir = "{}"
default_network = "{network}"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
lock_type = "file"
"#,
        networks.display()
    )
}

/// Host numbers of the test bed's network that podman never assigns by itself: static
/// addresses of tests come from here.
pub const STATIC_HOSTS: std::ops::Range<u8> = 150..255;

fn network_json(name: &str, octet: u8, subnet: u8) -> String {
    serde_json::json!({
        "name": name,
        "id": format!("{:0>64}", format!("{subnet:x}e2e")),
        "driver": "bridge",
        "network_interface": name,
        // Podman hands out addresses round-robin, so over a suite run they reach every
        // host number: dynamic ones stay below STATIC_HOSTS, where tests pick static ones.
        "subnets": [{
            "subnet": format!("10.{octet}.{subnet}.0/24"),
            "gateway": format!("10.{octet}.{subnet}.1"),
            "lease_range": {
                "start_ip": format!("10.{octet}.{subnet}.2"),
                "end_ip": format!("10.{octet}.{subnet}.{}", STATIC_HOSTS.start - 1),
            },
        }],
        "ipv6_enabled": false,
        "internal": false,
        "dns_enabled": false,
        "ipam_options": {"driver": "host-local"}
    })
    .to_string()
}

/// Claims a free `10.<lane>.X.0/24` for this process; stale claims of dead processes are
/// taken over.
fn claim_subnet(lane: Lane) -> Result<(u8, PathBuf), String> {
    let (_, claims_dir, _) = lane.subnets();
    fs::create_dir_all(claims_dir).map_err(|e| format!("mkdir {claims_dir}: {e}"))?;
    let pid = std::process::id();
    let start = (pid % 250) as u8;
    for i in 0..250u16 {
        let x = ((u16::from(start) + i) % 250 + 1) as u8;
        let claim = Path::new(claims_dir).join(x.to_string());
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&claim)
        {
            Ok(mut f) => {
                let _ = write!(f, "{pid}");
                return Ok((x, claim));
            }
            Err(_) => {
                let owner = fs::read_to_string(&claim).unwrap_or_default();
                let alive = owner
                    .trim()
                    .parse::<u32>()
                    .map(|p| Path::new(&format!("/proc/{p}")).exists())
                    .unwrap_or(false);
                if !alive && fs::write(&claim, pid.to_string()).is_ok() {
                    return Ok((x, claim));
                }
            }
        }
    }
    Err(format!(
        "no free subnet for the test network in {claims_dir}"
    ))
}

/// Starts `cmd` under the watchdog (itself run by `wrapper`, when given, which must exec
/// it); the returned pipe end keeps it alive; also returns the watchdog's PID.
fn spawn_watchdog(
    dir: &Path,
    wrapper: &[std::ffi::OsString],
    cmd: Command,
    log: &Path,
    cleanup: &str,
    envs: &[(&str, &std::ffi::OsStr)],
) -> Result<(ChildStdin, u32), String> {
    let mut sh = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg("sh");
            c
        }
        None => Command::new("sh"),
    };
    sh.arg("-c")
        .arg(WATCHDOG)
        .arg("watchdog")
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .env("LOG", log)
        .env("CLEANUP", cleanup)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Out of the terminal's process group, so Ctrl-C reaches only the test process
        // and the watchdog still cleans up.
        .process_group(0);
    for (k, v) in envs {
        sh.env(k, v);
    }
    let mut child: Child = sh.spawn().map_err(|e| format!("spawn watchdog: {e}"))?;
    let pid = child.id();
    let stdin = child
        .stdin
        .take()
        .ok_or_else(|| "watchdog has no stdin".to_string())?;
    Ok((stdin, pid))
}

/// Whether any user can run `program`: it and every directory above it are open to
/// others (execute bit).
fn open_to_others(program: &Path) -> bool {
    program
        .ancestors()
        .all(|p| fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

fn ping(socket: &Path) -> bool {
    let Ok(mut s) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET /libpod/_ping HTTP/1.0\r\nHost: d\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    reply.starts_with("HTTP/1.1 200") || reply.starts_with("HTTP/1.0 200")
}

fn make_temp_dir(what: &str) -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!(
        "ndp-e2e-{what}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    Ok(dir)
}

fn write(path: &Path, content: &str) -> Result<(), String> {
    fs::write(path, content).map_err(|e| format!("write {}: {e}", path.display()))
}

/// A rootfs tar of Debian's static busybox: applets as symlinks in /bin, passwd/group, /tmp.
fn busybox_rootfs_tar(testbed_dir: &Path) -> Result<PathBuf, String> {
    static TAR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    TAR.get_or_init(|| {
        let busybox = Path::new("/bin/busybox");
        let list = Command::new(busybox)
            .arg("--list")
            .output()
            .map_err(|e| format!("{} --list (install busybox-static): {e}", busybox.display()))?;
        let dir = testbed_dir.join("busybox");
        let rootfs = dir.join("rootfs");
        for d in ["bin", "etc", "tmp", "root", "usr", "proc", "sys", "dev"] {
            fs::create_dir_all(rootfs.join(d)).map_err(|e| format!("mkdir rootfs/{d}: {e}"))?;
        }
        fs::copy(busybox, rootfs.join("bin/busybox")).map_err(|e| format!("copy busybox: {e}"))?;
        for applet in String::from_utf8_lossy(&list.stdout).split_whitespace() {
            if applet != "busybox" {
                symlink("busybox", rootfs.join("bin").join(applet))
                    .map_err(|e| format!("symlink {applet}: {e}"))?;
            }
        }
        symlink("bin", rootfs.join("sbin")).map_err(|e| e.to_string())?;
        symlink("../bin", rootfs.join("usr/bin")).map_err(|e| e.to_string())?;
        symlink("../bin", rootfs.join("usr/sbin")).map_err(|e| e.to_string())?;
        write(
            &rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )?;
        write(&rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
        fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777))
            .map_err(|e| e.to_string())?;
        let tar = dir.join("rootfs.tar");
        let out = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .output()
            .map_err(|e| format!("tar: {e}"))?;
        if !out.status.success() {
            return Err(format!("tar: {}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(tar)
    })
    .clone()
}

/// A name unique in this process and across processes: `<prefix>-<pid>-<n>-<random>`.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}-{:04x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        rand::random::<u16>()
    )
}

/// A fresh test label: `(TEST_LABEL_KEY, unique value)`.
pub fn test_label(prefix: &str) -> (String, String) {
    (TEST_LABEL_KEY.to_string(), unique_name(prefix))
}

/// Force-removes the containers carrying `key=value` (and only those).
pub fn cleanup_label(key: &str, value: &str) {
    let p = podman();
    let ids = p.cli_ok(&[
        "ps",
        "-a",
        "-q",
        "--filter",
        &format!("label={key}={value}"),
    ]);
    let ids: Vec<&str> = ids.split_whitespace().collect();
    if !ids.is_empty() {
        let mut args = vec!["rm", "-f", "-t", "0"];
        args.extend(ids);
        let _ = p.cli(&args);
    }
}

/// Removes the labelled containers when dropped, so a failing test still cleans up.
pub struct LabelCleanup {
    pub key: String,
    pub value: String,
}

impl LabelCleanup {
    /// A fresh label and its cleanup guard.
    pub fn new(prefix: &str) -> Self {
        let (key, value) = test_label(prefix);
        LabelCleanup { key, value }
    }

    /// `key=value`, as podman filters and `--label` take it.
    pub fn pair(&self) -> String {
        format!("{}={}", self.key, self.value)
    }
}

impl Drop for LabelCleanup {
    fn drop(&mut self) {
        cleanup_label(&self.key, &self.value);
    }
}

/// Removes image names (tags) when dropped; the busybox layers they share stay.
pub struct ImageCleanup(pub Vec<String>);

impl Drop for ImageCleanup {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = podman().cli(&["rmi", name]);
        }
    }
}

pub(crate) fn free_loopback_port() -> Result<SocketAddr, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map_err(|e| e.to_string())
}

//! Task configs on the wire: the Go plugin's job syntax for all 49 options goes through
//! the plugin's TaskConfigSchema, and bad configs are rejected naming the option — by the
//! agent's own decoding where it would catch them, and by the plugin where a config gets
//! past it.

use nomad_driver_podman::modes::plugin::proto::drivers::{self, StartTaskRequest};
use tonic::Code;

use super::agent::Plugin;
use super::alloc::Alloc;
use super::bed::{self, Bed};
use super::cty_msgpack::{self, Cty};
use super::hcldec;
use crate::support;

/// Every task option of the Go plugin in its documented job syntax (blocks where the Go
/// README uses blocks). `socket` names no configured socket, so the task stops right after
/// decoding.
fn every_option(image: &str) -> String {
    format!(
        r#"
apparmor_profile = "unconfined"
args = ["-c", "sleep 1"]
auth {{
  username   = "user"
  password   = "secret"
  tls_verify = false
}}
auth_soft_fail = true
command = "sh"
cap_add = ["NET_RAW"]
cap_drop = ["MKNOD"]
selinux_opts = ["disable"]
cpu_hard_limit = true
cpu_cfs_period = 100000
devices = ["/dev/null:/dev/nulltest:rwm"]
entrypoint = ["/bin/sh"]
working_dir = "/tmp"
hostname = "every-option"
image = "{image}"
arch = "amd64"
os = "linux"
variant = "v8"
image_pull_timeout = "2m"
init = true
init_path = "/usr/libexec/podman/catatonit"
ipv4_address = "10.88.0.50"
ipv6_address = "fd00::50"
static_ips = ["10.88.0.51"]
static_mac = "02:42:ac:11:00:02"
labels {{
  tier = "test"
}}
logging {{
  driver = "journald"
  options {{
    tag = "every-option"
  }}
}}
memory_reservation = "32m"
memory_swap = "128m"
memory_swappiness = 10
network_mode = "bridge"
ipc_mode = "private"
oom_score_adj = 100
extra_hosts = ["example.internal:127.0.0.1"]
pids_limit = 100
port_map {{
}}
ports = []
privileged = false
security_opt = ["no-new-privileges"]
socket = "not-configured"
sysctl = [{{ "net.core.somaxconn" = "1024" }}]
tmpfs = ["/scratch:size=1m"]
tty = true
ulimit {{
  nofile = "1024:2048"
}}
volumes = ["local:/data"]
force_pull = false
readonly_rootfs = true
userns = "host"
shm_size = "16m"
mount {{
  type = "bind"
  source = "local/conf"
  target = "/etc/app"
  readonly = true
  bind_options {{
    propagation = "rslave"
  }}
}}
mount {{
  type = "tmpfs"
  target = "/scratch"
  tmpfs_options {{
    size = 10000000
    mode = 493
  }}
}}
mount {{
  source = "app-cache"
  target = "/cache"
  volume_options {{
    no_copy = true
    labels {{
      app = "web"
    }}
  }}
}}
healthchecks {{
  disable = true
}}
pid_mode = "host"
uts_mode = ""
"#
    )
}

async fn start_raw(plugin: &Plugin, alloc: &Alloc, name: &str, msgpack: Vec<u8>) -> tonic::Status {
    let files = alloc.task(name);
    let config: drivers::TaskConfig = alloc.task_config(name, &files, msgpack);
    plugin
        .driver()
        .start_task(StartTaskRequest { task: Some(config) })
        .await
        .expect_err("StartTask must fail")
}

/// The decoded object of a valid config, to break one option at a time.
async fn valid_object(plugin: &Plugin, bed: &Bed) -> std::collections::BTreeMap<String, Cty> {
    let schema = bed::task_schema(plugin).await;
    let body = hcl::parse(&bed.labelled(&bed::shell_task("sleep 1"))).unwrap();
    match hcldec::decode(&schema, &hcldec::body_to_json(&body).unwrap()).unwrap() {
        Cty::Map(map) => map,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn every_task_option_decodes_on_the_wire() {
    let bed = Bed::new("every-option");
    let plugin = bed.plugin().await;
    let schema = bed::task_schema(&plugin).await;
    let hcl = every_option(support::BUSYBOX_IMAGE);
    let msgpack = hcldec::encode_hcl(&schema, &hcl).expect("the agent decodes every option");
    let status = start_raw(&plugin, &bed.alloc(), "every", msgpack).await;
    // Decoding and validation passed: the failure is the unknown socket.
    assert!(status.message().contains("not-configured"), "{status:?}");
    assert!(!status.message().contains("decode"), "{status:?}");
    assert_ne!(status.code(), Code::Unavailable);
    plugin.kill().await;
}

#[tokio::test]
async fn bad_task_configs_name_the_option() {
    let bed = Bed::new("decode-errors");
    let plugin = bed.plugin().await;
    let schema = bed::task_schema(&plugin).await;
    let alloc = bed.alloc();

    // What the agent's decoder refuses before any StartTask.
    let agent_error = |hcl: &str| hcldec::encode_hcl(&schema, hcl).unwrap_err();
    let wrong_type = agent_error(
        &bed::shell_task("true")
            .replace("command = \"sh\"", "privileged = \"yes\"\ncommand = \"sh\""),
    );
    assert!(wrong_type.contains("\"privileged\""), "{wrong_type}");
    let missing = agent_error("command = \"sh\"");
    assert!(missing.contains("\"image\""), "{missing}");
    let unknown = agent_error(&format!("{}imagee = \"x\"\n", bed::shell_task("true")));
    assert!(unknown.contains("\"imagee\""), "{unknown}");

    // What the plugin says when such a config reaches it anyway.
    let valid = valid_object(&plugin, &bed).await;
    let mut wrong = valid.clone();
    wrong.insert("privileged".into(), cty_msgpack::string("yes"));
    let status = start_raw(
        &plugin,
        &alloc,
        "wrong",
        cty_msgpack::encode(&Cty::Map(wrong)),
    )
    .await;
    assert!(status.message().contains("config.privileged"), "{status:?}");
    assert_eq!(status.code(), Code::InvalidArgument);

    let mut no_image = valid.clone();
    no_image.insert("image".into(), Cty::Null);
    let status = start_raw(
        &plugin,
        &alloc,
        "noimage",
        cty_msgpack::encode(&Cty::Map(no_image)),
    )
    .await;
    assert!(status.message().contains("config.image"), "{status:?}");

    let mut extra = valid.clone();
    extra.insert("imagee".into(), cty_msgpack::string("x"));
    let status = start_raw(
        &plugin,
        &alloc,
        "extra",
        cty_msgpack::encode(&Cty::Map(extra)),
    )
    .await;
    assert!(status.message().contains("config.imagee"), "{status:?}");

    // Labels in the driver's reserved prefix: a job cannot exempt itself from the
    // dangling-container sweep or pose as a runner's container.
    for (name, key) in [
        ("managed", "io.nomad-driver-podman.managed"),
        ("runner", "io.nomad-driver-podman.runner.job"),
    ] {
        let mut spoof = valid.clone();
        let mut labels = std::collections::BTreeMap::new();
        labels.insert(key.to_string(), cty_msgpack::string("false"));
        labels.insert(
            bed.cleanup.key.clone(),
            cty_msgpack::string(&bed.cleanup.value),
        );
        spoof.insert("labels".into(), Cty::List(vec![Cty::Map(labels)]));
        let status = start_raw(&plugin, &alloc, name, cty_msgpack::encode(&Cty::Map(spoof))).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("config.labels"), "{status:?}");
        assert!(status.message().contains(key), "{status:?}");
    }

    // An unknown cty value (ext) inside an option.
    let mut bytes = cty_msgpack::encode(&Cty::Map(
        valid
            .into_iter()
            .map(|(k, v)| {
                if k == "hostname" {
                    (k, cty_msgpack::string("\u{1}"))
                } else {
                    (k, v)
                }
            })
            .collect(),
    ));
    let marker = bytes.windows(2).position(|w| w == [0xa1, 0x01]).unwrap();
    bytes.splice(marker..marker + 2, [0xd4, 0x00, 0x00]);
    let status = start_raw(&plugin, &alloc, "unknown", bytes).await;
    assert!(status.message().contains("config.hostname"), "{status:?}");
    assert!(status.message().contains("unknown value"), "{status:?}");

    // Nothing was created for any of them.
    let left = support::podman().cli_ok(&[
        "ps",
        "-a",
        "-q",
        "--filter",
        &format!("label={}", bed.cleanup.pair()),
    ]);
    assert_eq!(left, "");
    plugin.kill().await;
}

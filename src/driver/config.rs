//! Plugin (agent-level) options: `plugin "nomad-driver-podman" { config { ... } }`.
//!
//! Differences from the Go plugin, on purpose:
//! * `client_http_timeout` defaults to 60 s, as the upstream README says; Go leaves it unset,
//!   which means no deadline at all.
//! * `logging.driver` and `dns_servers` are checked when the config is read, not at the first
//!   task start.
//! * Socket blocks with the same name are an error instead of "first wins, log an error".
//! * When no socket block is named `default`, the first block also answers to `default`
//!   (Go flags it as default but tasks that leave `socket` unset still fail).
//! * `unix://run/...` (two slashes) names the absolute path `/run/...`.
//! * New operator gates: `allow_privileged`, `allow_caps`, `allow_devices`,
//!   `allow_host_network` (see [`super::gates`]); new garbage collection:
//!   `gc.image`, `gc.image_delay`, `gc.dangling_containers`. Their defaults keep the Go
//!   behaviour (everything allowed, no image GC).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::decode::Block;
pub use super::decode::ConfigError;
use super::units::parse_duration;

const ROOT: &str = "config";

/// Every plugin option, decoded and checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriverConfig {
    pub auth: PluginAuth,
    pub volumes: VolumesConfig,
    pub gc: GcConfig,
    pub recover_stopped: bool,
    /// Glob patterns over `job_name`, `job_id`, `task_group_name`, `task_name`, `namespace`,
    /// `node_name`, `node_id`; matches become `com.hashicorp.nomad.<key>` labels.
    pub extra_labels: Vec<String>,
    pub logging: LoggingConfig,
    pub networking: NetworkingConfig,
    pub socket: Vec<SocketBlock>,
    /// A single socket registered as `default`; empty = none given.
    pub socket_path: String,
    pub disable_log_collection: bool,
    /// Deadline of every non-streaming podman call.
    pub client_http_timeout: Duration,
    /// Default DNS servers when the task has no Nomad `network.dns`.
    pub dns_servers: Vec<IpAddr>,
    /// When false, tasks asking for `privileged = true` fail before any podman call.
    pub allow_privileged: bool,
    /// Capabilities tasks may add with `cap_add`; `"all"` allows any.
    pub allow_caps: Vec<String>,
    /// Globs over the host device paths tasks may map with `devices`; `*` allows any.
    /// Devices Nomad's device plugins assign are not affected.
    pub allow_devices: Vec<String>,
    /// When false, `network_mode = "host"` is refused.
    pub allow_host_network: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginAuth {
    /// Path of a containers-auth.json / docker config file; empty = none.
    pub config: String,
    /// Credential helper name (`docker-credential-<helper>`); empty = none.
    pub helper: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumesConfig {
    pub enabled: bool,
    /// SELinux relabel option (`z`/`Z`) for alloc dirs and Nomad mounts; empty = none.
    pub selinuxlabel: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcConfig {
    /// Remove the container (and its anonymous volumes) on destroy.
    pub container: bool,
    /// Remove a task's image once no task uses it for `image_delay`.
    pub image: bool,
    pub image_delay: Duration,
    pub dangling_containers: DanglingContainersConfig,
}

/// Sweep of containers this driver created that no task owns any more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DanglingContainersConfig {
    pub enabled: bool,
    pub period: Duration,
    /// Containers younger than this are never swept (a start may be in flight).
    pub creation_grace: Duration,
    /// Only log what would be removed.
    pub dry_run: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggingConfig {
    /// `"nomad"` (also written `""`) or `"journald"`.
    pub driver: String,
    pub options: BTreeMap<String, String>,
    /// Bytes of a task's output podman keeps on disk (the k8s-file the plugin forwards
    /// from) unless the task's `max-size` says otherwise; 0 = no bound.
    pub max_disk: i64,
}

/// Default of `logging.max_disk`: conmon starts the file over at this size.
pub const DEFAULT_LOG_MAX_DISK: i64 = 10 * 1024 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkingConfig {
    /// netns mode for rootless tasks without `network_mode`; empty = pasta/slirp4netns by API.
    pub default_rootless_mode: String,
}

/// A `socket { name, socket_path }` block as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketBlock {
    pub name: String,
    pub socket_path: String,
}

/// A podman socket the driver talks to, after the naming rules were applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketConfig {
    pub name: String,
    /// `unix:///abs/path` or an `http://host:port` base URL.
    pub url: String,
    /// The socket tasks get when they name `default` (and the one fingerprinted as
    /// `driver.podman`).
    pub default: bool,
}

impl SocketConfig {
    /// The socket file, for `unix:` sockets.
    pub fn unix_path(&self) -> Option<&Path> {
        self.url.strip_prefix("unix://").map(Path::new)
    }
}

/// The socket a task names: an exact name match, else for `default` the default socket.
pub fn find_socket<'a>(sockets: &'a [SocketConfig], name: &str) -> Option<&'a SocketConfig> {
    sockets
        .iter()
        .find(|s| s.name == name)
        .or_else(|| match name {
            "default" => sockets.iter().find(|s| s.default),
            _ => None,
        })
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            auth: PluginAuth::default(),
            volumes: VolumesConfig {
                enabled: true,
                selinuxlabel: String::new(),
            },
            gc: GcConfig {
                container: true,
                image: false,
                image_delay: Duration::from_secs(180),
                dangling_containers: DanglingContainersConfig {
                    enabled: true,
                    period: Duration::from_secs(300),
                    creation_grace: Duration::from_secs(300),
                    dry_run: false,
                },
            },
            recover_stopped: false,
            extra_labels: Vec::new(),
            logging: LoggingConfig {
                driver: "nomad".to_string(),
                options: BTreeMap::new(),
                max_disk: DEFAULT_LOG_MAX_DISK,
            },
            networking: NetworkingConfig::default(),
            socket: Vec::new(),
            socket_path: String::new(),
            disable_log_collection: false,
            client_http_timeout: Duration::from_secs(60),
            dns_servers: Vec::new(),
            allow_privileged: true,
            allow_caps: vec!["all".to_string()],
            allow_devices: vec!["*".to_string()],
            allow_host_network: true,
        }
    }
}

impl DriverConfig {
    /// Decodes the plugin `config {}` block (Nomad's cty shape or plain HCL, see
    /// [`super::decode`]). `null` gives the defaults.
    pub fn from_value(value: &Value) -> Result<DriverConfig, ConfigError> {
        let mut config = DriverConfig::default();
        if value.is_null() {
            return Ok(config);
        }
        let root = Block::new(ROOT, value)?;
        root.deny_unknown(&[
            "auth",
            "volumes",
            "gc",
            "recover_stopped",
            "extra_labels",
            "logging",
            "networking",
            "socket",
            "socket_path",
            "disable_log_collection",
            "client_http_timeout",
            "dns_servers",
            "allow_privileged",
            "allow_caps",
            "allow_devices",
            "allow_host_network",
        ])?;

        if let Some(auth) = root.block("auth")? {
            auth.deny_unknown(&["config", "helper"])?;
            config.auth.config = auth.string("config")?.unwrap_or_default();
            config.auth.helper = auth.string("helper")?.unwrap_or_default();
        }
        if let Some(volumes) = root.block("volumes")? {
            volumes.deny_unknown(&["enabled", "selinuxlabel"])?;
            if let Some(enabled) = volumes.bool("enabled")? {
                config.volumes.enabled = enabled;
            }
            config.volumes.selinuxlabel = volumes.string("selinuxlabel")?.unwrap_or_default();
        }
        if let Some(gc) = root.block("gc")? {
            read_gc(&gc, &mut config.gc)?;
        }
        if let Some(recover) = root.bool("recover_stopped")? {
            config.recover_stopped = recover;
        }
        config.extra_labels = root.strings("extra_labels")?;
        if let Some(logging) = root.block("logging")? {
            logging.deny_unknown(&["driver", "options", "max_disk"])?;
            if let Some(text) = logging.string("max_disk")?.filter(|t| !t.is_empty()) {
                config.logging.max_disk = super::units::parse_memory(&text.to_ascii_lowercase())
                    .ok()
                    .filter(|bytes| *bytes >= 0)
                    .ok_or_else(|| {
                        ConfigError::invalid(
                            logging.child("max_disk"),
                            text.as_str(),
                            "expected a size such as \"10m\" or \"1g\", or \"0\" for no bound",
                        )
                    })?;
            }
            let driver = logging.string("driver")?.unwrap_or_default();
            config.logging.driver = match driver.as_str() {
                "" | "nomad" => "nomad".to_string(),
                "journald" => driver,
                _ => {
                    return Err(ConfigError::invalid(
                        logging.child("driver"),
                        driver,
                        "expected \"nomad\" or \"journald\"",
                    ))
                }
            };
            config.logging.options = logging.string_map("options")?;
        }
        if let Some(networking) = root.block("networking")? {
            networking.deny_unknown(&["default_rootless_mode"])?;
            config.networking.default_rootless_mode = networking
                .string("default_rootless_mode")?
                .unwrap_or_default();
        }
        for block in root.blocks("socket")? {
            block.deny_unknown(&["name", "socket_path"])?;
            let socket_path = block
                .string("socket_path")?
                .filter(|p| !p.is_empty())
                .ok_or(ConfigError::Missing {
                    field: block.child("socket_path"),
                    what: "socket_path is required in a socket block",
                })?;
            config.socket.push(SocketBlock {
                name: block.string("name")?.unwrap_or_default(),
                socket_path,
            });
        }
        config.socket_path = root.string("socket_path")?.unwrap_or_default();
        if let Some(disable) = root.bool("disable_log_collection")? {
            config.disable_log_collection = disable;
        }
        if let Some(timeout) = root.string("client_http_timeout")? {
            if !timeout.is_empty() {
                config.client_http_timeout =
                    duration(&root.child("client_http_timeout"), &timeout)?;
            }
        }
        config.dns_servers = root
            .strings("dns_servers")?
            .iter()
            .enumerate()
            .map(|(i, server)| {
                server.parse().map_err(|_| {
                    ConfigError::invalid(
                        format!("{ROOT}.dns_servers[{i}]"),
                        server.as_str(),
                        "not an IP address",
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        if let Some(allow) = root.bool("allow_privileged")? {
            config.allow_privileged = allow;
        }
        if root.get("allow_caps").is_some() {
            config.allow_caps = root.strings("allow_caps")?;
        }
        if root.get("allow_devices").is_some() {
            config.allow_devices = root.strings("allow_devices")?;
        }
        if let Some(allow) = root.bool("allow_host_network")? {
            config.allow_host_network = allow;
        }
        config.sockets()?;
        Ok(config)
    }

    /// The sockets to connect to, in configuration order.
    ///
    /// `socket` blocks and `socket_path` are mutually exclusive; with neither, the socket of
    /// the podman service of the plugin's user is used (`/run/podman/podman.sock` for uid 0,
    /// else `/run/user/<uid>/podman/podman.sock`). An unnamed block is `default`. Exactly one
    /// socket is flagged default: the one named so, else the first.
    pub fn sockets(&self) -> Result<Vec<SocketConfig>, ConfigError> {
        if !self.socket.is_empty() && !self.socket_path.is_empty() {
            return Err(ConfigError::Conflict {
                field: format!("{ROOT}.socket_path"),
                reason: "can't define socket blocks and socket_path, they're mutually exclusive"
                    .to_string(),
            });
        }
        if self.socket.is_empty() {
            let path = if self.socket_path.is_empty() {
                default_socket_path(nix::unistd::getuid().as_raw())
            } else {
                self.socket_path.clone()
            };
            let url = socket_url(&format!("{ROOT}.socket_path"), &path)?;
            return Ok(vec![SocketConfig {
                name: "default".to_string(),
                url,
                default: true,
            }]);
        }
        let mut sockets: Vec<SocketConfig> = Vec::with_capacity(self.socket.len());
        for (i, block) in self.socket.iter().enumerate() {
            let name = if block.name.is_empty() {
                "default".to_string()
            } else {
                block.name.clone()
            };
            if sockets.iter().any(|s| s.name == name) {
                return Err(ConfigError::invalid(
                    format!("{ROOT}.socket[{i}].name"),
                    name,
                    "another socket block has the same name",
                ));
            }
            let url = socket_url(
                &format!("{ROOT}.socket[{i}].socket_path"),
                &block.socket_path,
            )?;
            sockets.push(SocketConfig {
                name,
                url,
                default: false,
            });
        }
        let default_index = sockets
            .iter()
            .position(|s| s.name == "default")
            .unwrap_or(0);
        sockets[default_index].default = true;
        Ok(sockets)
    }
}

fn read_gc(gc: &Block<'_>, config: &mut GcConfig) -> Result<(), ConfigError> {
    gc.deny_unknown(&["container", "image", "image_delay", "dangling_containers"])?;
    if let Some(container) = gc.bool("container")? {
        config.container = container;
    }
    if let Some(image) = gc.bool("image")? {
        config.image = image;
    }
    if let Some(delay) = gc.string("image_delay")? {
        config.image_delay = duration(&gc.child("image_delay"), &delay)?;
    }
    if let Some(dangling) = gc.block("dangling_containers")? {
        dangling.deny_unknown(&["enabled", "period", "creation_grace", "dry_run"])?;
        let target = &mut config.dangling_containers;
        if let Some(enabled) = dangling.bool("enabled")? {
            target.enabled = enabled;
        }
        if let Some(period) = dangling.string("period")? {
            target.period = duration(&dangling.child("period"), &period)?;
            if target.period.is_zero() {
                return Err(ConfigError::invalid(
                    dangling.child("period"),
                    period,
                    "must be greater than zero",
                ));
            }
        }
        if let Some(grace) = dangling.string("creation_grace")? {
            target.creation_grace = duration(&dangling.child("creation_grace"), &grace)?;
        }
        if let Some(dry_run) = dangling.bool("dry_run")? {
            target.dry_run = dry_run;
        }
    }
    Ok(())
}

fn duration(field: &str, text: &str) -> Result<Duration, ConfigError> {
    parse_duration(text).map_err(|e| ConfigError::invalid(field, text, e.to_string()))
}

fn default_socket_path(uid: u32) -> String {
    if uid == 0 {
        "unix:///run/podman/podman.sock".to_string()
    } else {
        format!("unix:///run/user/{uid}/podman/podman.sock")
    }
}

/// Canonical form of a socket option: `unix:///abs/path` for unix sockets (any number of
/// slashes after `unix:`), `http://...` as given, `tcp://` as `http://`.
fn socket_url(field: &str, text: &str) -> Result<String, ConfigError> {
    if let Some(rest) = text.strip_prefix("unix:") {
        let path = rest.trim_start_matches('/');
        if path.is_empty() {
            return Err(ConfigError::invalid(
                field,
                text,
                "no socket path after unix:",
            ));
        }
        return Ok(format!("unix:///{path}"));
    }
    if let Some(rest) = text.strip_prefix("tcp://") {
        return Ok(format!("http://{}", rest.trim_end_matches('/')));
    }
    if text.starts_with("http://") && text.len() > "http://".len() {
        return Ok(text.trim_end_matches('/').to_string());
    }
    Err(ConfigError::invalid(
        field,
        text,
        "expected unix:///path/to/podman.sock or http://host:port",
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn defaults_match_the_go_plugin() {
        let config = DriverConfig::from_value(&json!({})).unwrap();
        assert_eq!(config, DriverConfig::default());
        assert!(config.volumes.enabled);
        assert!(config.gc.container);
        assert!(!config.gc.image);
        assert_eq!(config.gc.image_delay, Duration::from_secs(180));
        assert!(config.gc.dangling_containers.enabled);
        assert_eq!(
            config.gc.dangling_containers.period,
            Duration::from_secs(300)
        );
        assert!(!config.recover_stopped);
        assert_eq!(config.logging.driver, "nomad");
        assert!(config.allow_privileged);
        assert_eq!(config.allow_caps, vec!["all"]);
        assert_eq!(config.allow_devices, vec!["*"]);
        assert!(config.allow_host_network);
        assert_eq!(config.client_http_timeout, Duration::from_secs(60));
        assert_eq!(DriverConfig::from_value(&Value::Null).unwrap(), config);
    }

    #[test]
    fn nomad_shape_with_nulls_decodes() {
        // What Nomad sends: every key, absent ones null, blocks as lists.
        let value = json!({
            "auth": null, "volumes": [{"enabled": null, "selinuxlabel": "z"}],
            "gc": [{"container": false, "image": null, "image_delay": null, "dangling_containers": null}],
            "recover_stopped": null, "extra_labels": null,
            "logging": [{"driver": "journald", "options": [{"tag": "{{.ImageName}}"}]}],
            "networking": null, "socket": [], "socket_path": null,
            "disable_log_collection": null, "client_http_timeout": null, "dns_servers": null,
            "allow_privileged": null, "allow_caps": null,
        });
        let config = DriverConfig::from_value(&value).unwrap();
        assert!(config.volumes.enabled);
        assert_eq!(config.volumes.selinuxlabel, "z");
        assert!(!config.gc.container);
        assert_eq!(config.logging.driver, "journald");
        assert_eq!(config.logging.options["tag"], "{{.ImageName}}");
        assert_eq!(config.allow_caps, vec!["all"]);
    }

    #[test]
    fn hcl_shape_decodes_every_option() {
        let value = json!({
            "auth": {"config": "/etc/auth.json", "helper": "pass"},
            "volumes": {"enabled": false},
            "gc": {"container": true, "image": true, "image_delay": "10m",
                   "dangling_containers": {"enabled": false, "period": "1m",
                                           "creation_grace": "30s", "dry_run": true}},
            "recover_stopped": true,
            "extra_labels": ["job_name", "task_*"],
            "logging": {"driver": "", "options": {"tag": "x"}},
            "networking": {"default_rootless_mode": "slirp4netns"},
            "socket_path": "unix:///run/podman/podman.sock",
            "disable_log_collection": true,
            "client_http_timeout": "90s",
            "dns_servers": ["1.1.1.1", "2606:4700::1111"],
            "allow_privileged": false,
            "allow_caps": ["chown", "net_raw"],
            "allow_devices": ["/dev/fuse", "/dev/dri/*"],
            "allow_host_network": false,
        });
        let config = DriverConfig::from_value(&value).unwrap();
        assert_eq!(config.auth.config, "/etc/auth.json");
        assert_eq!(config.auth.helper, "pass");
        assert_eq!(config.allow_devices, vec!["/dev/fuse", "/dev/dri/*"]);
        assert!(!config.allow_host_network);
        assert!(!config.volumes.enabled);
        assert!(config.gc.image);
        assert_eq!(config.gc.image_delay, Duration::from_secs(600));
        let dangling = &config.gc.dangling_containers;
        assert!(!dangling.enabled && dangling.dry_run);
        assert_eq!(dangling.period, Duration::from_secs(60));
        assert_eq!(dangling.creation_grace, Duration::from_secs(30));
        assert!(config.recover_stopped);
        assert_eq!(config.extra_labels, vec!["job_name", "task_*"]);
        assert_eq!(config.logging.driver, "nomad");
        assert_eq!(config.networking.default_rootless_mode, "slirp4netns");
        assert!(config.disable_log_collection);
        assert_eq!(config.client_http_timeout, Duration::from_secs(90));
        assert_eq!(config.dns_servers.len(), 2);
        assert!(!config.allow_privileged);
        assert_eq!(config.allow_caps, vec!["chown", "net_raw"]);
    }

    #[test]
    fn bad_values_name_the_option() {
        let cases = [
            (json!({"bogus": 1}), "config.bogus: unknown option"),
            (json!({"gc": {"imagee": true}}), "config.gc.imagee: unknown option; did you mean \"image\"?"),
            (
                json!({"logging": {"driver": "syslog"}}),
                "config.logging.driver: invalid value \"syslog\": expected \"nomad\" or \"journald\"",
            ),
            (
                json!({"dns_servers": ["1.1.1.1", "dns.google"]}),
                "config.dns_servers[1]: invalid value \"dns.google\": not an IP address",
            ),
            (
                json!({"recover_stopped": "maybe"}),
                "config.recover_stopped: expected bool, got string \"maybe\"",
            ),
            (
                json!({"socket": [{"name": "a"}]}),
                "config.socket[0].socket_path: socket_path is required in a socket block",
            ),
            (
                json!({"socket_path": "ssh://host"}),
                "config.socket_path: invalid value \"ssh://host\": expected unix:///path/to/podman.sock or http://host:port",
            ),
        ];
        for (value, message) in cases {
            assert_eq!(
                DriverConfig::from_value(&value).unwrap_err().to_string(),
                message
            );
        }
        let err = DriverConfig::from_value(&json!({"client_http_timeout": "soon"})).unwrap_err();
        assert_eq!(err.field(), "config.client_http_timeout");
        assert!(err.to_string().contains("\"soon\""));
    }

    #[test]
    fn socket_and_socket_path_are_exclusive() {
        let value = json!({
            "socket_path": "unix:///run/podman/podman.sock",
            "socket": [{"name": "a", "socket_path": "unix:///run/a.sock"}],
        });
        let err = DriverConfig::from_value(&value).unwrap_err();
        assert_eq!(
            err.to_string(),
            "config.socket_path: can't define socket blocks and socket_path, they're mutually exclusive"
        );
    }

    #[test]
    fn default_socket_follows_uid() {
        assert_eq!(default_socket_path(0), "unix:///run/podman/podman.sock");
        assert_eq!(
            default_socket_path(1000),
            "unix:///run/user/1000/podman/podman.sock"
        );
        let sockets = DriverConfig::default().sockets().unwrap();
        assert_eq!(sockets.len(), 1);
        assert_eq!(sockets[0].name, "default");
        assert!(sockets[0].default);
    }

    #[test]
    fn socket_urls_are_canonical() {
        let f = "f";
        assert_eq!(
            socket_url(f, "unix:///run/p.sock").unwrap(),
            "unix:///run/p.sock"
        );
        assert_eq!(
            socket_url(f, "unix:/run/p.sock").unwrap(),
            "unix:///run/p.sock"
        );
        assert_eq!(
            socket_url(f, "unix://run/p.sock").unwrap(),
            "unix:///run/p.sock"
        );
        assert_eq!(
            socket_url(f, "http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            socket_url(f, "tcp://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(socket_url(f, "unix:").is_err());
        assert!(socket_url(f, "/run/p.sock").is_err());
        let socket = SocketConfig {
            name: "x".into(),
            url: "unix:///run/p.sock".into(),
            default: true,
        };
        assert_eq!(socket.unix_path(), Some(Path::new("/run/p.sock")));
    }

    #[test]
    fn socket_blocks_naming_rules() {
        let value = json!({"socket": [
            {"name": "fast", "socket_path": "unix:///run/a.sock"},
            {"socket_path": "unix:///run/b.sock"},
        ]});
        let sockets = DriverConfig::from_value(&value).unwrap().sockets().unwrap();
        assert_eq!(sockets[0].name, "fast");
        assert!(!sockets[0].default);
        assert_eq!(sockets[1].name, "default");
        assert!(sockets[1].default);
        assert_eq!(
            find_socket(&sockets, "default").unwrap().url,
            "unix:///run/b.sock"
        );
        assert_eq!(
            find_socket(&sockets, "fast").unwrap().url,
            "unix:///run/a.sock"
        );
        assert!(find_socket(&sockets, "slow").is_none());
    }

    #[test]
    fn first_socket_answers_to_default_when_none_is_named_so() {
        let value = json!({"socket": [
            {"name": "a", "socket_path": "unix:///run/a.sock"},
            {"name": "b", "socket_path": "unix:///run/b.sock"},
        ]});
        let sockets = DriverConfig::from_value(&value).unwrap().sockets().unwrap();
        assert!(sockets[0].default);
        assert_eq!(find_socket(&sockets, "default").unwrap().name, "a");
        assert_eq!(find_socket(&sockets, "b").unwrap().name, "b");
    }

    #[test]
    fn duplicate_socket_names_are_an_error() {
        let value = json!({"socket": [
            {"socket_path": "unix:///run/a.sock"},
            {"name": "default", "socket_path": "unix:///run/b.sock"},
        ]});
        let err = DriverConfig::from_value(&value).unwrap_err();
        assert_eq!(err.field(), "config.socket[1].name");
    }
}

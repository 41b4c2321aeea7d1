//! The small languages inside `security_opt` and `userns`.
//!
//! Difference from the Go driver: `no-new-privileges=false` means false (Go turns any
//! `no-new-privileges=...` into true), and a value other than true/false is an error.

use super::decode::serde_as_text;

/// What a `security_opt` list asks for, ready for the container spec; `items` keeps each
/// entry as written (the gates quote it, and it is persisted in that form).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityOptions {
    pub items: Vec<SecurityOpt>,
    pub no_new_privileges: bool,
    pub labels_nested: bool,
    /// `label=<x>` values, in order.
    pub selinux_opts: Vec<String>,
    pub apparmor_profile: Option<String>,
    pub seccomp_profile_path: Option<String>,
    pub procfs_opts: Vec<String>,
    pub mask: Vec<String>,
    pub unmask: Vec<String>,
}

/// One `security_opt` entry: how it was written, and what it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityOpt {
    pub text: String,
    pub kind: SecurityOptKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityOptKind {
    NoNewPrivileges(bool),
    /// `label=nested`.
    LabelNested,
    /// `label=<x>`, any other label option.
    Label(String),
    Apparmor(String),
    Seccomp(String),
    ProcOpts(Vec<String>),
    Mask(Vec<String>),
    Unmask(Vec<String>),
    /// `systempaths=unconfined`: podman's spelling of `unmask=ALL`.
    SystemPathsUnconfined,
}

impl std::fmt::Display for SecurityOpt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl SecurityOpt {
    /// Parses one entry; an error says why.
    pub fn parse_text(item: &str) -> Result<SecurityOpt, String> {
        let fail = |reason: &str| reason.to_string();
        let (key, value) = match item.split_once('=') {
            Some(pair) => pair,
            None if item == "no-new-privileges" => (item, "true"),
            None => item
                .split_once(':')
                .ok_or_else(|| fail("expected key=value"))?,
        };
        let kind = match key {
            "no-new-privileges" => SecurityOptKind::NoNewPrivileges(match value {
                "true" => true,
                "false" => false,
                _ => return Err(fail("no-new-privileges takes true or false")),
            }),
            "label" if value == "nested" => SecurityOptKind::LabelNested,
            "label" if !value.is_empty() => SecurityOptKind::Label(value.to_string()),
            "apparmor" if !value.is_empty() => SecurityOptKind::Apparmor(value.to_string()),
            "seccomp" if !value.is_empty() => SecurityOptKind::Seccomp(value.to_string()),
            "proc-opts" => SecurityOptKind::ProcOpts(non_empty(value.split(','))),
            "mask" => SecurityOptKind::Mask(non_empty(value.split(':'))),
            "unmask" => SecurityOptKind::Unmask(non_empty(value.split(':'))),
            "systempaths" if value == "unconfined" => SecurityOptKind::SystemPathsUnconfined,
            "systempaths" => return Err(fail("only systempaths=unconfined is supported")),
            _ => return Err(fail("unknown security option")),
        };
        Ok(SecurityOpt {
            text: item.to_string(),
            kind,
        })
    }
}

/// Parses `security_opt`; an error carries the offending item and why.
pub fn parse_security_opts(items: &[String]) -> Result<SecurityOptions, (String, String)> {
    let items = items
        .iter()
        .map(|item| SecurityOpt::parse_text(item).map_err(|reason| (item.clone(), reason)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SecurityOptions::from_items(items))
}

impl SecurityOptions {
    /// The container spec's view of parsed entries (later entries win, lists add up).
    pub fn from_items(items: Vec<SecurityOpt>) -> SecurityOptions {
        let mut options = SecurityOptions::default();
        for item in &items {
            match &item.kind {
                SecurityOptKind::NoNewPrivileges(on) => options.no_new_privileges = *on,
                SecurityOptKind::LabelNested => options.labels_nested = true,
                SecurityOptKind::Label(value) => options.selinux_opts.push(value.clone()),
                SecurityOptKind::Apparmor(value) => options.apparmor_profile = Some(value.clone()),
                SecurityOptKind::Seccomp(value) => {
                    options.seccomp_profile_path = Some(value.clone())
                }
                SecurityOptKind::ProcOpts(values) => options.procfs_opts.extend_from_slice(values),
                SecurityOptKind::Mask(paths) => options.mask.extend_from_slice(paths),
                SecurityOptKind::Unmask(paths) => options.unmask.extend_from_slice(paths),
                SecurityOptKind::SystemPathsUnconfined => options.unmask.push("ALL".to_string()),
            }
        }
        options.items = items;
        options
    }
}

/// Persisted as the list of entries as written, the shape of the `security_opt` option.
impl serde::Serialize for SecurityOptions {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.items.iter().map(|item| &item.text))
    }
}

impl<'de> serde::Deserialize<'de> for SecurityOptions {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let items = <Vec<SecurityOpt> as serde::Deserialize>::deserialize(deserializer)?;
        Ok(SecurityOptions::from_items(items))
    }
}

serde_as_text!(SecurityOpt);

fn non_empty<'a>(parts: impl Iterator<Item = &'a str>) -> Vec<String> {
    parts
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

/// One `container:host:size` id range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub container_id: u32,
    pub host_id: u32,
    pub size: u32,
}

/// A parsed `userns` option.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Userns {
    /// `""`: podman's default.
    #[default]
    Default,
    Host,
    /// `auto[:size=..,uidmapping=..,gidmapping=..]`.
    Auto {
        /// The text after `auto:`, as written (podman gets it verbatim besides the maps).
        options: String,
        size: Option<u32>,
        uid_maps: Vec<IdMap>,
        gid_maps: Vec<IdMap>,
    },
    /// `keep-id[:uid=..,gid=..]`, options passed to podman verbatim.
    KeepId(String),
    NoMap,
    /// `ns:<path>`.
    Path(String),
}

impl Userns {
    /// Parses `userns`; an error says why.
    pub fn parse_text(text: &str) -> Result<Userns, String> {
        parse_userns(text)
    }
}

/// The option as written, up to a trailing empty `:` (`keep-id:` is `keep-id`).
impl std::fmt::Display for Userns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let with = |f: &mut std::fmt::Formatter<'_>, mode: &str, options: &str| {
            if options.is_empty() {
                f.write_str(mode)
            } else {
                write!(f, "{mode}:{options}")
            }
        };
        match self {
            Userns::Default => Ok(()),
            Userns::Host => f.write_str("host"),
            Userns::NoMap => f.write_str("nomap"),
            Userns::KeepId(options) => with(f, "keep-id", options),
            Userns::Auto { options, .. } => with(f, "auto", options),
            Userns::Path(path) => write!(f, "ns:{path}"),
        }
    }
}

serde_as_text!(Userns);

/// Parses `userns`; an error says why.
pub fn parse_userns(text: &str) -> Result<Userns, String> {
    let (mode, config) = text.split_once(':').unwrap_or((text, ""));
    match mode {
        "" => Ok(Userns::Default),
        "host" => Ok(Userns::Host),
        "nomap" => Ok(Userns::NoMap),
        "keep-id" => {
            for item in config.split(',').filter(|i| !i.is_empty()) {
                let (key, value) = item
                    .split_once('=')
                    .ok_or_else(|| format!("invalid keep-id option {item:?}"))?;
                if !matches!(key, "uid" | "gid") || value.parse::<u32>().is_err() {
                    return Err(format!("invalid keep-id option {item:?}"));
                }
            }
            Ok(Userns::KeepId(config.to_string()))
        }
        "ns" if !config.is_empty() => Ok(Userns::Path(config.to_string())),
        "ns" => Err("ns needs a path: ns:/proc/<pid>/ns/user".to_string()),
        "auto" => parse_auto(config),
        other => Err(format!(
            "unknown userns mode {other:?}: expected auto, host, keep-id, nomap or ns:<path>"
        )),
    }
}

fn parse_auto(config: &str) -> Result<Userns, String> {
    let mut size = None;
    let mut uid_maps = Vec::new();
    let mut gid_maps = Vec::new();
    for item in config.split(',').filter(|i| !i.is_empty()) {
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| format!("invalid userns configuration {item:?}"))?;
        match key {
            "size" => {
                size = Some(
                    value
                        .parse()
                        .map_err(|_| format!("invalid userns size {value:?}"))?,
                )
            }
            "uidmapping" => uid_maps.push(parse_id_map(key, value)?),
            "gidmapping" => gid_maps.push(parse_id_map(key, value)?),
            _ => return Err(format!("invalid userns auto option {key:?}")),
        }
    }
    Ok(Userns::Auto {
        options: config.to_string(),
        size,
        uid_maps,
        gid_maps,
    })
}

fn parse_id_map(key: &str, value: &str) -> Result<IdMap, String> {
    let bad = || format!("invalid {key} {value:?}: expected container_id:host_id:size");
    let parts: Vec<u32> = value
        .split(':')
        .map(|p| p.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    match parts[..] {
        [container_id, host_id, size] if size > 0 => Ok(IdMap {
            container_id,
            host_id,
            size,
        }),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(items: &[&str]) -> Result<SecurityOptions, (String, String)> {
        parse_security_opts(&items.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn every_security_opt_form() {
        let parsed = opts(&[
            "no-new-privileges",
            "label=disable",
            "label=type:spc_t",
            "label:nested",
            "apparmor=unconfined",
            "seccomp=/etc/seccomp.json",
            "proc-opts=hidepid=2,subset=pid",
            "mask=/proc/a:/proc/b",
            "unmask=/proc/c",
            "systempaths=unconfined",
        ])
        .unwrap();
        assert!(parsed.no_new_privileges);
        assert!(parsed.labels_nested);
        assert_eq!(parsed.selinux_opts, vec!["disable", "type:spc_t"]);
        assert_eq!(parsed.apparmor_profile.as_deref(), Some("unconfined"));
        assert_eq!(
            parsed.seccomp_profile_path.as_deref(),
            Some("/etc/seccomp.json")
        );
        assert_eq!(parsed.procfs_opts, vec!["hidepid=2", "subset=pid"]);
        assert_eq!(parsed.mask, vec!["/proc/a", "/proc/b"]);
        assert_eq!(parsed.unmask, vec!["/proc/c", "ALL"]);
    }

    #[test]
    fn no_new_privileges_false_means_false() {
        assert!(
            !opts(&["no-new-privileges=false"])
                .unwrap()
                .no_new_privileges
        );
        assert!(opts(&["no-new-privileges=true"]).unwrap().no_new_privileges);
        assert!(opts(&["no-new-privileges:true"]).unwrap().no_new_privileges);
        assert!(opts(&["no-new-privileges=yes"]).is_err());
    }

    #[test]
    fn bad_security_opts_name_the_item() {
        for bad in ["bogus", "foo=bar", "systempaths=x", "label=", "seccomp="] {
            let (item, _) = opts(&["label=disable", bad]).unwrap_err();
            assert_eq!(item, bad);
        }
    }

    #[test]
    fn userns_modes() {
        assert_eq!(parse_userns(""), Ok(Userns::Default));
        assert_eq!(parse_userns("host"), Ok(Userns::Host));
        assert_eq!(parse_userns("nomap"), Ok(Userns::NoMap));
        assert_eq!(parse_userns("keep-id"), Ok(Userns::KeepId(String::new())));
        assert_eq!(
            parse_userns("keep-id:uid=1000,gid=1000"),
            Ok(Userns::KeepId("uid=1000,gid=1000".into()))
        );
        assert_eq!(
            parse_userns("ns:/proc/1/ns/user"),
            Ok(Userns::Path("/proc/1/ns/user".into()))
        );
        assert!(parse_userns("ns").is_err());
        assert!(parse_userns("keep-id:user=x").is_err());
        assert!(parse_userns("private").unwrap_err().contains("\"private\""));
    }

    #[test]
    fn userns_auto_options() {
        assert_eq!(
            parse_userns("auto:size=65536,uidmapping=0:100000:1000,gidmapping=0:200000:10"),
            Ok(Userns::Auto {
                options: "size=65536,uidmapping=0:100000:1000,gidmapping=0:200000:10".into(),
                size: Some(65536),
                uid_maps: vec![IdMap {
                    container_id: 0,
                    host_id: 100000,
                    size: 1000
                }],
                gid_maps: vec![IdMap {
                    container_id: 0,
                    host_id: 200000,
                    size: 10
                }],
            })
        );
        assert_eq!(
            parse_userns("auto"),
            Ok(Userns::Auto {
                options: String::new(),
                size: None,
                uid_maps: vec![],
                gid_maps: vec![]
            })
        );
        assert!(parse_userns("auto:size").unwrap_err().contains("\"size\""));
        assert!(parse_userns("auto:size=-1").is_err());
        assert!(parse_userns("auto:color=red")
            .unwrap_err()
            .contains("\"color\""));
        let uid_error = parse_userns("auto:uidmapping=0:1").unwrap_err();
        assert!(uid_error.starts_with("invalid uidmapping"), "{uid_error}");
        assert!(parse_userns("auto:gidmapping=0:1:0").is_err());
    }
}

//! Turns the evaluated job body into the runner's model, checking it against Nomad's
//! jobspec schema: unknown arguments are errors, parts a local run cannot honour are
//! collected as notices (never dropped silently), non-podman tasks are skipped.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use hcl::edit::expr::Expression;
use hcl::edit::structure::{Attribute, Block, Body, Structure};
use hcl::edit::Span;
use serde::Serialize;
use serde_json::Value;

mod artifact;
mod logs;

use super::error::JobFileError;
use super::eval::Evaluator;
use super::source::Location;
use super::value::{self, type_name};
use crate::modes::run::model::{
    duration_text, ChangeMode, Constraint, Dns, Group, GroupNetwork, Hook, Job, JobType, Lifecycle,
    LogsPolicy, NetworkMode, PortSpec, Resources, RestartMode, RestartPolicy, Task, TemplateSpec,
};

/// What the runner will not do with a job file, reported once per kind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Notices {
    pub ignored: Vec<Ignored>,
    pub skipped_tasks: Vec<SkippedTask>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ignored {
    /// The block or argument name, e.g. `service` or `constraint`.
    pub what: String,
    /// Its first occurrence.
    pub location: Location,
    pub count: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct SkippedTask {
    pub group: String,
    pub task: String,
    pub driver: String,
    pub location: Location,
}

impl Notices {
    fn ignore(&mut self, what: &str, location: Location) {
        match self.ignored.iter_mut().find(|i| i.what == what) {
            Some(existing) => existing.count += 1,
            None => self.ignored.push(Ignored {
                what: what.to_string(),
                location,
                count: 1,
            }),
        }
    }
}

/// The arguments and blocks each block type takes (besides the ignored ones), for the
/// "Did you mean" of an unsupported name.
const JOB_KEYS: &[&str] = &[
    "type",
    "name",
    "region",
    "namespace",
    "datacenters",
    "meta",
    "group",
    "constraint",
];
const GROUP_KEYS: &[&str] = &["count", "meta", "task", "network", "restart", "constraint"];
/// Nomad's constraint arguments: the long form and its shorthands (`version = ">= 1"` is
/// `operator = "version"` with that value).
const CONSTRAINT_KEYS: &[&str] = &[
    "attribute",
    "operator",
    "value",
    "version",
    "semver",
    "regexp",
    "set_contains",
    "set_contains_any",
    "set_contains_all",
    "distinct_hosts",
    "distinct_property",
];
/// Every operator Nomad's scheduler knows.
pub const CONSTRAINT_OPERATORS: &[&str] = &[
    "=",
    "==",
    "is",
    "!=",
    "not",
    ">",
    ">=",
    "<",
    "<=",
    "regexp",
    "set_contains",
    "set_contains_all",
    "set_contains_any",
    "version",
    "semver",
    "is_set",
    "is_not_set",
    "distinct_hosts",
    "distinct_property",
];
const NETWORK_KEYS: &[&str] = &["mode", "hostname", "mbits", "port", "dns", "cni"];
const PORT_KEYS: &[&str] = &["static", "to", "host_network"];
const DNS_KEYS: &[&str] = &["servers", "searches", "options"];
const RESTART_KEYS: &[&str] = &["attempts", "interval", "delay", "mode", "render_templates"];
const TASK_KEYS: &[&str] = &[
    "driver",
    "user",
    "leader",
    "kill_signal",
    "kill_timeout",
    "env",
    "meta",
    "config",
    "lifecycle",
    "restart",
    "resources",
    "template",
    "constraint",
    "logs",
    "artifact",
];
const LIFECYCLE_KEYS: &[&str] = &["hook", "sidecar"];
const RESOURCES_KEYS: &[&str] = &[
    "cpu",
    "memory",
    "memory_max",
    "cores",
    "disk",
    "iops",
    "secrets",
    "device",
    "network",
    "numa",
];
const TEMPLATE_KEYS: &[&str] = &[
    "data",
    "source",
    "destination",
    "env",
    "perms",
    "left_delimiter",
    "right_delimiter",
    "error_on_missing_key",
    "change_mode",
    "change_signal",
    "splay",
    "uid",
    "gid",
    "vault_grace",
    "wait",
    "change_script",
];

/// Blocks and arguments Nomad accepts that have no effect in a local run.
const IGNORED_IN_JOB: &[&str] = &[
    "all_at_once",
    "priority",
    "node_pool",
    "affinity",
    "spread",
    "update",
    "migrate",
    "reschedule",
    "periodic",
    "parameterized",
    "multiregion",
    "vault",
    "consul",
    "ui",
    "vault_token",
    "consul_token",
    "vault_namespace",
    "consul_namespace",
    "id",
];
const IGNORED_IN_GROUP: &[&str] = &[
    "affinity",
    "spread",
    "service",
    "volume",
    "update",
    "migrate",
    "reschedule",
    "scaling",
    "consul",
    "vault",
    "ephemeral_disk",
    "stop_after_client_disconnect",
    "max_client_disconnect",
    "prevent_reschedule_on_lost",
    "disconnect",
    "shutdown_delay",
];
const IGNORED_IN_TASK: &[&str] = &[
    "service",
    "vault",
    "consul",
    "identity",
    "volume_mount",
    "affinity",
    "dispatch_payload",
    "kind",
    "shutdown_delay",
    "scaling",
    "csi_plugin",
    "action",
    "schedule",
    "secret",
];

pub struct Decoder<'a> {
    pub ev: Evaluator<'a>,
    pub errors: Vec<JobFileError>,
    pub notices: Notices,
    /// `(group, task)` of the tasks whose `config` failed to decode (or is missing): they
    /// are incomplete, so checking them would only repeat those errors.
    pub failed_tasks: std::collections::BTreeSet<(String, String)>,
}

impl<'a> Decoder<'a> {
    pub fn new(ev: Evaluator<'a>) -> Self {
        Decoder {
            ev,
            errors: Vec::new(),
            notices: Notices::default(),
            failed_tasks: std::collections::BTreeSet::new(),
        }
    }

    fn at(&self, span: Option<std::ops::Range<usize>>) -> Location {
        self.ev.location(span)
    }

    fn error(&mut self, span: Option<std::ops::Range<usize>>, message: impl Into<String>) {
        let location = self.at(span);
        self.errors.push(JobFileError::at(location, message));
    }

    fn value(&mut self, expr: &Expression) -> Option<Value> {
        match self.ev.eval(expr) {
            Ok(v) => Some(v),
            Err(e) => {
                self.errors.push(e);
                None
            }
        }
    }

    fn string(&mut self, attr: &Attribute) -> Option<String> {
        let v = self.value(&attr.value)?;
        match value::to_string(&v) {
            Ok(s) => Some(s),
            Err(m) => {
                self.error(
                    attr.value.span(),
                    format!(
                        "Incorrect attribute value type: {} must be a string; {m}",
                        key(attr)
                    ),
                );
                None
            }
        }
    }

    fn bool(&mut self, attr: &Attribute) -> Option<bool> {
        let v = self.value(&attr.value)?;
        match value::to_bool(&v) {
            Ok(b) => Some(b),
            Err(m) => {
                self.error(
                    attr.value.span(),
                    format!(
                        "Incorrect attribute value type: {} must be a bool; {m}",
                        key(attr)
                    ),
                );
                None
            }
        }
    }

    fn whole_number(&mut self, attr: &Attribute, min: f64, max: f64) -> Option<u64> {
        let v = self.value(&attr.value)?;
        match value::to_number(&v) {
            Ok(n) if n.fract() == 0.0 && n >= min && n <= max => Some(n as u64),
            Ok(n) => {
                self.error(
                    attr.value.span(),
                    format!(
                        "Invalid value for {}: {n} is not a whole number between {min} and {max}",
                        key(attr)
                    ),
                );
                None
            }
            Err(m) => {
                self.error(
                    attr.value.span(),
                    format!(
                        "Incorrect attribute value type: {} must be a number; {m}",
                        key(attr)
                    ),
                );
                None
            }
        }
    }

    fn duration(&mut self, attr: &Attribute) -> Option<Duration> {
        let text = self.string(attr)?;
        match duration_text::parse(&text) {
            Ok(d) => Some(d),
            Err(m) => {
                self.error(
                    attr.value.span(),
                    format!("Invalid value for {}: {m}", key(attr)),
                );
                None
            }
        }
    }

    fn string_list(&mut self, attr: &Attribute) -> Option<Vec<String>> {
        let v = self.value(&attr.value)?;
        let items = match v {
            Value::Array(items) => items,
            other => {
                self.error(
                    attr.value.span(),
                    format!(
                        "Incorrect attribute value type: {} must be a list of strings, got a {}",
                        key(attr),
                        type_name(&other)
                    ),
                );
                return None;
            }
        };
        let mut out = Vec::with_capacity(items.len());
        for item in &items {
            match value::to_string(item) {
                Ok(s) => out.push(s),
                Err(m) => {
                    self.error(
                        attr.value.span(),
                        format!(
                            "Incorrect attribute value type: {} must be a list of strings; {m}",
                            key(attr)
                        ),
                    );
                    return None;
                }
            }
        }
        Some(out)
    }

    /// `meta`/`env` given as a map attribute (`env = { A = "1" }`).
    fn string_map_attr(&mut self, attr: &Attribute) -> BTreeMap<String, String> {
        let Some(v) = self.value(&attr.value) else {
            return BTreeMap::new();
        };
        let Value::Object(map) = v else {
            self.error(
                attr.value.span(),
                format!(
                    "Incorrect attribute value type: {} must be a map of strings, got a {}",
                    key(attr),
                    type_name(&v)
                ),
            );
            return BTreeMap::new();
        };
        let mut out = BTreeMap::new();
        for (k, v) in map {
            match value::to_string(&v) {
                Ok(s) => {
                    out.insert(k, s);
                }
                Err(m) => self.error(
                    attr.value.span(),
                    format!("Incorrect value for {}.{k}: {m}", key(attr)),
                ),
            }
        }
        out
    }

    /// `meta { A = "1" }` / `env { A = "1" }` as a block of string attributes.
    fn string_map_block(&mut self, block: &Block) -> BTreeMap<String, String> {
        self.no_labels(block);
        let mut out = BTreeMap::new();
        for structure in block.body.iter() {
            match structure {
                Structure::Attribute(attr) => {
                    if let Some(s) = self.string(attr) {
                        out.insert(key(attr).to_string(), s);
                    }
                }
                Structure::Block(b) => self.error(
                    b.ident.span(),
                    format!(
                        "Unsupported block type: {} holds only attributes",
                        block.ident.value().as_str()
                    ),
                ),
            }
        }
        out
    }

    fn no_labels(&mut self, block: &Block) {
        if let Some(label) = block.labels.first() {
            self.error(
                label.span(),
                format!(
                    "Extraneous label for {}: no labels are expected",
                    block.ident.value().as_str()
                ),
            );
        }
    }

    fn one_label(&mut self, block: &Block, what: &str) -> Option<String> {
        match block.labels.as_slice() {
            [label] => {
                let name = label.as_str().to_string();
                if name.is_empty() {
                    self.error(label.span(), format!("a {what} name must not be empty"));
                    return None;
                }
                Some(name)
            }
            _ => {
                self.error(
                    block.ident.span(),
                    format!("Missing name for {what}: a {what} block needs exactly one label"),
                );
                None
            }
        }
    }

    fn unsupported_attr(&mut self, attr: &Attribute, within: &str, known: &[&[&str]]) {
        self.error(
            attr.key.span(),
            format!(
                "Unsupported argument: an argument named {:?} is not expected in {within}{}",
                key(attr),
                suggestion(key(attr), known)
            ),
        );
    }

    fn unsupported_block(&mut self, block: &Block, within: &str, known: &[&[&str]]) {
        let name = block.ident.value().as_str();
        self.error(
            block.ident.span(),
            format!(
                "Unsupported block type: blocks of type {name:?} are not expected in {within}{}",
                suggestion(name, known)
            ),
        );
    }

    /// Rejects a second definition of the same argument (Nomad: "Attribute redefined").
    fn check_duplicates(&mut self, body: &Body) {
        let mut seen: BTreeMap<&str, ()> = BTreeMap::new();
        for attr in body.attributes() {
            if seen.insert(key(attr), ()).is_some() {
                self.error(
                    attr.key.span(),
                    format!(
                        "Attribute redefined: the argument {:?} was already set in this block",
                        key(attr)
                    ),
                );
            }
        }
    }

    pub fn job(&mut self, block: &Block, file: &Path) -> Option<Job> {
        let id = self.one_label(block, "job")?;
        self.check_duplicates(&block.body);
        let mut job = Job {
            name: id.clone(),
            id,
            job_type: JobType::Service,
            region: "global".into(),
            datacenters: vec!["dc1".into()],
            namespace: "default".into(),
            meta: BTreeMap::new(),
            constraints: Vec::new(),
            datacenters_location: None,
            groups: Vec::new(),
            file: file.to_path_buf(),
        };
        // The type decides restart defaults, so read it before the groups.
        if let Some(attr) = block.body.get_attribute("type") {
            if let Some(t) = self.string(attr) {
                match JobType::parse(&t) {
                    Some(t) => job.job_type = t,
                    None => self.error(
                        attr.value.span(),
                        format!(
                            "Invalid job type {t:?}: expected service, batch, system or sysbatch"
                        ),
                    ),
                }
            }
        }
        let mut group_blocks = Vec::new();
        for structure in block.body.iter() {
            match structure {
                Structure::Attribute(attr) => match key(attr) {
                    "type" => {}
                    "name" => {
                        if let Some(n) = self.string(attr) {
                            job.name = n;
                        }
                    }
                    "region" => {
                        if let Some(r) = self.string(attr) {
                            job.region = r;
                        }
                    }
                    "namespace" => {
                        if let Some(n) = self.string(attr) {
                            job.namespace = n;
                        }
                    }
                    "datacenters" => {
                        if let Some(dcs) = self.string_list(attr) {
                            job.datacenters = dcs;
                            job.datacenters_location = Some(self.at(attr.span()));
                        }
                    }
                    "meta" => job.meta = self.string_map_attr(attr),
                    k if IGNORED_IN_JOB.contains(&k) => {
                        self.notices.ignore(k, self.ev.location(attr.key.span()))
                    }
                    _ => self.unsupported_attr(attr, "a job block", &[JOB_KEYS, IGNORED_IN_JOB]),
                },
                Structure::Block(b) => match b.ident.value().as_str() {
                    "group" => group_blocks.push(b),
                    "meta" => job.meta.extend(self.string_map_block(b)),
                    "constraint" => job.constraints.extend(self.constraint(b)),
                    k if IGNORED_IN_JOB.contains(&k) => {
                        self.notices.ignore(k, self.ev.location(b.ident.span()))
                    }
                    _ => self.unsupported_block(b, "a job block", &[JOB_KEYS, IGNORED_IN_JOB]),
                },
            }
        }
        if group_blocks.is_empty() {
            self.error(
                block.ident.span(),
                "Missing group: a job needs at least one group block",
            );
        }
        for b in group_blocks {
            if let Some(group) = self.group(b, job.job_type) {
                if job.groups.iter().any(|g| g.name == group.name) {
                    self.error(
                        b.labels.first().and_then(|l| l.span()),
                        format!(
                            "Duplicate group {:?}: group names must be unique within a job",
                            group.name
                        ),
                    );
                    continue;
                }
                job.groups.push(group);
            }
        }
        Some(job)
    }

    fn group(&mut self, block: &Block, job_type: JobType) -> Option<Group> {
        let name = self.one_label(block, "group")?;
        self.check_duplicates(&block.body);
        let location = self.at(block.span());
        let mut count = 1;
        let mut meta = BTreeMap::new();
        let mut constraints = Vec::new();
        let mut network = None;
        let mut restart_block = None;
        let mut task_blocks = Vec::new();
        for structure in block.body.iter() {
            match structure {
                Structure::Attribute(attr) => match key(attr) {
                    "count" => {
                        if let Some(n) = self.whole_number(attr, 0.0, 1000.0) {
                            count = n as u32;
                        }
                    }
                    "meta" => meta = self.string_map_attr(attr),
                    k if IGNORED_IN_GROUP.contains(&k) => {
                        self.notices.ignore(k, self.ev.location(attr.key.span()))
                    }
                    _ => self.unsupported_attr(
                        attr,
                        "a group block",
                        &[GROUP_KEYS, IGNORED_IN_GROUP],
                    ),
                },
                Structure::Block(b) => match b.ident.value().as_str() {
                    "task" => task_blocks.push(b),
                    "meta" => meta.extend(self.string_map_block(b)),
                    "constraint" => constraints.extend(self.constraint(b)),
                    "network" => {
                        if network.is_some() {
                            self.error(
                                b.ident.span(),
                                "Duplicate network block: a group has at most one network",
                            );
                        } else {
                            network = self.network(b);
                        }
                    }
                    "restart" => restart_block = Some(b),
                    k if IGNORED_IN_GROUP.contains(&k) => {
                        self.notices.ignore(k, self.ev.location(b.ident.span()))
                    }
                    _ => {
                        self.unsupported_block(b, "a group block", &[GROUP_KEYS, IGNORED_IN_GROUP])
                    }
                },
            }
        }
        let group_restart = match restart_block {
            Some(b) => self.restart(b, RestartPolicy::default_for(job_type)),
            None => RestartPolicy::default_for(job_type),
        };
        if task_blocks.is_empty() {
            self.error(
                block.ident.span(),
                format!("Missing task: group {name:?} needs at least one task block"),
            );
        }
        let mut tasks: Vec<Task> = Vec::new();
        for b in task_blocks {
            let Some(task) = self.task(b, &name, group_restart) else {
                continue;
            };
            if tasks.iter().any(|t| t.name == task.name) {
                self.error(
                    b.labels.first().and_then(|l| l.span()),
                    format!(
                        "Duplicate task {:?}: task names must be unique within a group",
                        task.name
                    ),
                );
                continue;
            }
            tasks.push(task);
        }
        let leaders: Vec<&Task> = tasks.iter().filter(|t| t.leader).collect();
        if leaders.len() > 1 {
            let at = leaders[1].location.clone();
            self.errors.push(JobFileError::at(
                at,
                format!("Only one task may be marked as leader in group {name:?}"),
            ));
        }
        Some(Group {
            name,
            count,
            meta,
            constraints,
            network,
            tasks,
            location,
        })
    }

    fn network(&mut self, block: &Block) -> Option<GroupNetwork> {
        self.no_labels(block);
        self.check_duplicates(&block.body);
        let mut net = GroupNetwork {
            mode: NetworkMode::Host,
            ports: Vec::new(),
            dns: None,
            hostname: None,
            location: self.at(block.span()),
        };
        for structure in block.body.iter() {
            match structure {
                Structure::Attribute(attr) => match key(attr) {
                    "mode" => {
                        let Some(mode) = self.string(attr) else {
                            continue;
                        };
                        net.mode = match mode.as_str() {
                            "host" => NetworkMode::Host,
                            "bridge" => NetworkMode::Bridge,
                            "none" => NetworkMode::None,
                            other => {
                                self.error(attr.value.span(), format!("Unsupported network mode {other:?}: the runner supports host, bridge and none (CNI networks need a Nomad client)"));
                                continue;
                            }
                        }
                    }
                    "hostname" => net.hostname = self.string(attr),
                    "mbits" => self
                        .notices
                        .ignore("mbits", self.ev.location(attr.key.span())),
                    _ => self.unsupported_attr(attr, "a network block", &[NETWORK_KEYS]),
                },
                Structure::Block(b) => match b.ident.value().as_str() {
                    "port" => {
                        if let Some(port) = self.port(b) {
                            if net.ports.iter().any(|p| p.label == port.label) {
                                self.error(b.labels.first().and_then(|l| l.span()), format!("Duplicate port {:?}: port labels must be unique within a network", port.label));
                            } else {
                                net.ports.push(port);
                            }
                        }
                    }
                    "dns" => net.dns = Some(self.dns(b)),
                    "cni" => self.notices.ignore("cni", self.ev.location(b.ident.span())),
                    _ => self.unsupported_block(b, "a network block", &[NETWORK_KEYS]),
                },
            }
        }
        for (i, port) in net.ports.iter().enumerate() {
            if let Some(p) = port.static_port {
                if net.ports[..i]
                    .iter()
                    .any(|other| other.static_port == Some(p))
                {
                    self.errors.push(JobFileError::at(
                        port.location.clone(),
                        format!("Port collision: static port {p} is used by two labels"),
                    ));
                }
            }
        }
        Some(net)
    }

    fn port(&mut self, block: &Block) -> Option<PortSpec> {
        let label = self.one_label(block, "port")?;
        self.check_duplicates(&block.body);
        let mut port = PortSpec {
            label,
            static_port: None,
            to: None,
            host_network: None,
            location: self.at(block.span()),
        };
        for structure in block.body.iter() {
            match structure {
                Structure::Attribute(attr) => match key(attr) {
                    "static" => port.static_port = self.whole_number(attr, 1.0, 65535.0).map(|n| n as u16),
                    // -1 is Nomad's "same as the host port"; 0 means unset.
                    "to" => {
                        port.to = self.value(&attr.value).and_then(|v| match value::to_number(&v) {
                            Ok(n) if n == -1.0 || n == 0.0 => None,
                            Ok(n) if n.fract() == 0.0 && (1.0..=65535.0).contains(&n) => Some(n as u16),
                            _ => {
                                self.error(attr.value.span(), "Invalid value for to: a port number between 1 and 65535 (or -1) is required");
                                None
                            }
                        })
                    }
                    "host_network" => {
                        port.host_network = self.string(attr);
                        self.notices.ignore("host_network", self.ev.location(attr.key.span()));
                    }
                    _ => self.unsupported_attr(attr, "a port block", &[PORT_KEYS]),
                },
                Structure::Block(b) => self.unsupported_block(b, "a port block", &[PORT_KEYS]),
            }
        }
        Some(port)
    }

    fn dns(&mut self, block: &Block) -> Dns {
        self.no_labels(block);
        let mut dns = Dns::default();
        for structure in block.body.iter() {
            match structure {
                Structure::Attribute(attr) => {
                    let list = match key(attr) {
                        "servers" => &mut dns.servers,
                        "searches" => &mut dns.searches,
                        "options" => &mut dns.options,
                        _ => {
                            self.unsupported_attr(attr, "a dns block", &[DNS_KEYS]);
                            continue;
                        }
                    };
                    let Some(values) = self.string_list(attr) else {
                        continue;
                    };
                    *list = values;
                }
                Structure::Block(b) => self.unsupported_block(b, "a dns block", &[DNS_KEYS]),
            }
        }
        dns
    }

    fn restart(&mut self, block: &Block, mut policy: RestartPolicy) -> RestartPolicy {
        self.no_labels(block);
        self.check_duplicates(&block.body);
        for structure in block.body.iter() {
            match structure {
                Structure::Attribute(attr) => match key(attr) {
                    "attempts" => {
                        if let Some(n) = self.whole_number(attr, 0.0, 1_000_000.0) {
                            policy.attempts = n as u32;
                        }
                    }
                    "interval" => {
                        if let Some(d) = self.duration(attr) {
                            policy.interval = d;
                        }
                    }
                    "delay" => {
                        if let Some(d) = self.duration(attr) {
                            policy.delay = d;
                        }
                    }
                    "mode" => match self.string(attr).as_deref() {
                        Some("fail") => policy.mode = RestartMode::Fail,
                        Some("delay") => policy.mode = RestartMode::Delay,
                        Some(other) => self.error(
                            attr.value.span(),
                            format!(
                                "Invalid restart mode {other:?}: expected \"fail\" or \"delay\""
                            ),
                        ),
                        None => {}
                    },
                    "render_templates" => self
                        .notices
                        .ignore("render_templates", self.ev.location(attr.key.span())),
                    _ => self.unsupported_attr(attr, "a restart block", &[RESTART_KEYS]),
                },
                Structure::Block(b) => {
                    self.unsupported_block(b, "a restart block", &[RESTART_KEYS])
                }
            }
        }
        if policy.attempts > 0 && policy.delay > policy.interval {
            self.error(
                block.ident.span(),
                "Invalid restart policy: delay must not be longer than interval",
            );
        }
        policy
    }

    fn task(&mut self, block: &Block, group: &str, group_restart: RestartPolicy) -> Option<Task> {
        let name = self.one_label(block, "task")?;
        self.check_duplicates(&block.body);
        let location = self.at(block.span());
        let driver = match block.body.get_attribute("driver") {
            Some(attr) => self.string(attr)?,
            None => {
                self.error(
                    block.ident.span(),
                    format!("Missing required argument: task {name:?} needs a driver"),
                );
                return None;
            }
        };
        if driver != "podman" {
            self.notices.skipped_tasks.push(SkippedTask {
                group: group.to_string(),
                task: name,
                driver,
                location,
            });
            return None;
        }
        let mut task = Task {
            name,
            config: Value::Object(Default::default()),
            config_locations: BTreeMap::new(),
            config_location: location.clone(),
            env: BTreeMap::new(),
            meta: BTreeMap::new(),
            constraints: Vec::new(),
            user: None,
            kill_signal: None,
            kill_timeout: Duration::from_secs(5),
            lifecycle: None,
            leader: false,
            restart: group_restart,
            resources: Resources::default(),
            templates: Vec::new(),
            artifacts: Vec::new(),
            logs: LogsPolicy::default(),
            location,
        };
        let mut has_config = false;
        let mut config_failed = false;
        for structure in block.body.iter() {
            let is_config = match structure {
                Structure::Attribute(attr) => key(attr) == "config",
                Structure::Block(b) => b.ident.value().as_str() == "config",
            };
            let errors_before = self.errors.len();
            match structure {
                Structure::Attribute(attr) => match key(attr) {
                    "driver" => {}
                    "user" => task.user = self.string(attr),
                    "leader" => task.leader = self.bool(attr).unwrap_or(false),
                    "kill_signal" => task.kill_signal = self.string(attr),
                    "kill_timeout" => {
                        if let Some(d) = self.duration(attr) {
                            task.kill_timeout = d;
                        }
                    }
                    "env" => task.env = self.string_map_attr(attr),
                    "meta" => task.meta = self.string_map_attr(attr),
                    "config" => {
                        has_config = true;
                        task.config_location = self.at(attr.span());
                        if let Some(v) = self.value(&attr.value) {
                            if let Value::Object(map) = &v {
                                for k in map.keys() {
                                    task.config_locations
                                        .insert(k.clone(), task.config_location.clone());
                                }
                                task.config = v;
                            } else {
                                self.error(
                                    attr.value.span(),
                                    "Incorrect attribute value type: config must be an object",
                                );
                            }
                        }
                    }
                    k if IGNORED_IN_TASK.contains(&k) => {
                        self.notices.ignore(k, self.ev.location(attr.key.span()))
                    }
                    _ => self.unsupported_attr(attr, "a task block", &[TASK_KEYS, IGNORED_IN_TASK]),
                },
                Structure::Block(b) => match b.ident.value().as_str() {
                    "config" => {
                        if has_config {
                            self.error(
                                b.ident.span(),
                                "Duplicate config block: a task has one config",
                            );
                            continue;
                        }
                        has_config = true;
                        self.no_labels(b);
                        task.config_location = self.at(b.span());
                        let (config, locations) = self.config_body(&b.body);
                        task.config = config;
                        task.config_locations = locations;
                    }
                    "env" => task.env.extend(self.string_map_block(b)),
                    "meta" => task.meta.extend(self.string_map_block(b)),
                    "lifecycle" => task.lifecycle = self.lifecycle(b),
                    "constraint" => task.constraints.extend(self.constraint(b)),
                    "restart" => task.restart = self.restart(b, group_restart),
                    "resources" => task.resources = self.resources(b),
                    "logs" => task.logs = self.logs(b),
                    "template" => {
                        if let Some(t) = self.template(b) {
                            task.templates.push(t);
                        }
                    }
                    "artifact" => {
                        if let Some(a) = self.artifact(b) {
                            task.artifacts.push(a);
                        }
                    }
                    k if IGNORED_IN_TASK.contains(&k) => {
                        self.notices.ignore(k, self.ev.location(b.ident.span()))
                    }
                    _ => self.unsupported_block(b, "a task block", &[TASK_KEYS, IGNORED_IN_TASK]),
                },
            }
            config_failed |= is_config && self.errors.len() > errors_before;
        }
        if config_failed || !has_config {
            self.failed_tasks
                .insert((group.to_string(), task.name.clone()));
        }
        if !has_config {
            self.error(
                block.ident.span(),
                format!(
                    "Missing config: podman task {:?} needs a config block with an image",
                    task.name
                ),
            );
        }
        Some(task)
    }

    /// A task `config` body as JSON: attributes by name; nested blocks as lists of objects
    /// (Nomad's block-to-list form), which the core's decoder accepts.
    fn config_body(&mut self, body: &Body) -> (Value, BTreeMap<String, Location>) {
        self.check_duplicates(body);
        let mut out = value::Object::new();
        let mut locations = BTreeMap::new();
        for structure in body.iter() {
            match structure {
                Structure::Attribute(attr) => {
                    locations.insert(key(attr).to_string(), self.at(attr.span()));
                    if let Some(v) = self.value(&attr.value) {
                        out.insert(key(attr).to_string(), v);
                    }
                }
                Structure::Block(b) => {
                    let name = b.ident.value().as_str().to_string();
                    if !b.labels.is_empty() {
                        self.error(
                            b.labels[0].span(),
                            format!("Extraneous label for {name}: config blocks take no labels"),
                        );
                        continue;
                    }
                    locations
                        .entry(name.clone())
                        .or_insert_with(|| self.at(b.span()));
                    let (inner, _) = self.config_body(&b.body);
                    match out.entry(name).or_insert_with(|| Value::Array(Vec::new())) {
                        Value::Array(items) => items.push(inner),
                        _ => self.error(
                            b.ident.span(),
                            format!(
                                "{} is set both as an argument and as a block",
                                b.ident.value().as_str()
                            ),
                        ),
                    }
                }
            }
        }
        (Value::Object(out), locations)
    }

    /// A `constraint` block in Nomad's forms: `attribute`/`operator`/`value`, or one of
    /// the shorthands that set the operator (`version = "..."`, `distinct_hosts = true`,
    /// `distinct_property = "${meta.rack}"`). Targets stay unresolved: the node's facts
    /// are only known when the job is checked against them.
    fn constraint(&mut self, block: &Block) -> Option<Constraint> {
        self.no_labels(block);
        self.check_duplicates(&block.body);
        let location = self.at(block.ident.span());
        let mut attribute = String::new();
        let mut operator: Option<(String, Option<std::ops::Range<usize>>)> = None;
        let mut value = String::new();
        let mut ok = true;
        for structure in block.body.iter() {
            let Structure::Attribute(attr) = structure else {
                if let Structure::Block(b) = structure {
                    self.unsupported_block(b, "a constraint block", &[CONSTRAINT_KEYS]);
                }
                ok = false;
                continue;
            };
            let k = key(attr);
            let mut set_operator = |this: &mut Self, op: &str| {
                if let Some((previous, _)) = &operator {
                    this.error(
                        attr.key.span(),
                        format!(
                            "Conflicting constraint: {k} sets the operator, already {previous:?}"
                        ),
                    );
                    return false;
                }
                operator = Some((op.to_string(), attr.value.span()));
                true
            };
            match k {
                "attribute" => match self.string(attr) {
                    Some(a) => attribute = a,
                    None => ok = false,
                },
                "value" => match self.string(attr) {
                    Some(v) => value = v,
                    None => ok = false,
                },
                "operator" => match self.string(attr) {
                    Some(op) => ok &= set_operator(self, &op),
                    None => ok = false,
                },
                "version" | "semver" | "regexp" | "set_contains" | "set_contains_any"
                | "set_contains_all" => match self.string(attr) {
                    Some(v) => {
                        value = v;
                        ok &= set_operator(self, k);
                    }
                    None => ok = false,
                },
                "distinct_hosts" => match self.bool(attr) {
                    Some(true) => ok &= set_operator(self, k),
                    Some(false) => {}
                    None => ok = false,
                },
                "distinct_property" => match self.string(attr) {
                    Some(p) => {
                        attribute = p;
                        ok &= set_operator(self, k);
                    }
                    None => ok = false,
                },
                _ => {
                    self.unsupported_attr(attr, "a constraint block", &[CONSTRAINT_KEYS]);
                    ok = false;
                }
            }
        }
        let (operator, operator_span) = operator.unwrap_or_else(|| ("=".to_string(), None));
        if !CONSTRAINT_OPERATORS.contains(&operator.as_str()) {
            self.error(
                operator_span,
                format!(
                    "Unknown constraint operator {operator:?}: expected one of {}",
                    CONSTRAINT_OPERATORS.join(", ")
                ),
            );
            return None;
        }
        ok.then_some(Constraint {
            attribute,
            operator,
            value,
            location,
        })
    }

    fn lifecycle(&mut self, block: &Block) -> Option<Lifecycle> {
        self.no_labels(block);
        let mut hook = None;
        let mut sidecar = false;
        for structure in block.body.iter() {
            match structure {
                Structure::Attribute(attr) => match key(attr) {
                    "hook" => {
                        hook = match self.string(attr).as_deref() {
                            Some("prestart") => Some(Hook::Prestart),
                            Some("poststart") => Some(Hook::Poststart),
                            Some("poststop") => Some(Hook::Poststop),
                            Some(other) => {
                                self.error(attr.value.span(), format!("Invalid lifecycle hook {other:?}: expected prestart, poststart or poststop"));
                                return None;
                            }
                            None => return None,
                        }
                    }
                    "sidecar" => sidecar = self.bool(attr).unwrap_or(false),
                    _ => self.unsupported_attr(attr, "a lifecycle block", &[LIFECYCLE_KEYS]),
                },
                Structure::Block(b) => {
                    self.unsupported_block(b, "a lifecycle block", &[LIFECYCLE_KEYS])
                }
            }
        }
        let Some(hook) = hook else {
            self.error(
                block.ident.span(),
                "Missing required argument: a lifecycle block needs a hook",
            );
            return None;
        };
        if hook == Hook::Poststop && sidecar {
            self.error(
                block.ident.span(),
                "Invalid lifecycle: a poststop task cannot be a sidecar",
            );
        }
        Some(Lifecycle { hook, sidecar })
    }

    fn resources(&mut self, block: &Block) -> Resources {
        self.no_labels(block);
        let mut r = Resources::default();
        for structure in block.body.iter() {
            match structure {
                Structure::Attribute(attr) => match key(attr) {
                    "cpu" => {
                        r.cpu = self
                            .whole_number(attr, 1.0, 1e7)
                            .map_or(r.cpu, |n| n as u32)
                    }
                    "memory" => {
                        r.memory_mb = self.whole_number(attr, 10.0, 1e9).unwrap_or(r.memory_mb)
                    }
                    "memory_max" => {
                        // -1 is Nomad's "no hard limit" (the core maps it); other values are MiB.
                        if let Some(v) = self.value(&attr.value) {
                            match value::to_number(&v) {
                                Ok(n) if n.fract() == 0.0 && n >= -1.0 => r.memory_max_mb = Some(n as i64),
                                _ => self.error(attr.value.span(), "Invalid value for memory_max: a whole number of MiB (or -1) is required"),
                            }
                        }
                    }
                    "cores" => r.cores = self.whole_number(attr, 1.0, 4096.0).map(|n| n as u32),
                    "disk" | "iops" | "secrets" => self.notices.ignore(
                        &format!("resources.{}", key(attr)),
                        self.ev.location(attr.key.span()),
                    ),
                    _ => self.unsupported_attr(attr, "a resources block", &[RESOURCES_KEYS]),
                },
                Structure::Block(b) => match b.ident.value().as_str() {
                    k @ ("device" | "network" | "numa") => self
                        .notices
                        .ignore(&format!("resources.{k}"), self.ev.location(b.ident.span())),
                    _ => self.unsupported_block(b, "a resources block", &[RESOURCES_KEYS]),
                },
            }
        }
        if let Some(max) = r.memory_max_mb {
            if max >= 0 && (max as u64) < r.memory_mb {
                self.error(
                    block.ident.span(),
                    "Invalid resources: memory_max must not be below memory",
                );
            }
        }
        r
    }

    fn template(&mut self, block: &Block) -> Option<TemplateSpec> {
        self.no_labels(block);
        self.check_duplicates(&block.body);
        let location = self.at(block.span());
        let mut spec = TemplateSpec {
            data: None,
            source: None,
            destination: String::new(),
            env: false,
            perms: 0o644,
            left_delimiter: "{{".into(),
            right_delimiter: "}}".into(),
            error_on_missing_key: false,
            change_mode: ChangeMode::Restart,
            change_signal: None,
            splay: Duration::from_secs(5),
            uid: None,
            gid: None,
            location,
        };
        for structure in block.body.iter() {
            match structure {
                Structure::Attribute(attr) => match key(attr) {
                    "data" => spec.data = self.string(attr),
                    "source" => {
                        spec.source = self.string(attr).map(|s| self.ev.source.base_dir().join(s));
                    }
                    "destination" => spec.destination = self.string(attr).unwrap_or_default(),
                    "env" => spec.env = self.bool(attr).unwrap_or(false),
                    "perms" => {
                        let Some(p) = self.string(attr) else { continue };
                        match u32::from_str_radix(&p, 8) {
                            Ok(mode) if mode <= 0o7777 => spec.perms = mode,
                            _ => self.error(attr.value.span(), format!("Invalid perms {p:?}: an octal file mode such as \"0644\" is required")),
                        }
                    }
                    "left_delimiter" => spec.left_delimiter = self.string(attr).unwrap_or_default(),
                    "right_delimiter" => {
                        spec.right_delimiter = self.string(attr).unwrap_or_default()
                    }
                    "error_on_missing_key" => {
                        spec.error_on_missing_key = self.bool(attr).unwrap_or(false)
                    }
                    "change_mode" => {
                        let Some(mode) = self.string(attr) else {
                            continue;
                        };
                        spec.change_mode = match mode.as_str() {
                            "noop" => ChangeMode::Noop,
                            "restart" => ChangeMode::Restart,
                            "signal" => ChangeMode::Signal,
                            other => {
                                self.error(
                                    attr.value.span(),
                                    format!("Invalid change_mode {other:?}: one of \"noop\", \"restart\" or \"signal\" is required (\"script\" is not supported in a local run)"),
                                );
                                continue;
                            }
                        };
                    }
                    "change_signal" => spec.change_signal = self.string(attr),
                    "splay" => {
                        if let Some(d) = self.duration(attr) {
                            spec.splay = d;
                        }
                    }
                    "uid" => {
                        spec.uid = self
                            .whole_number(attr, 0.0, f64::from(u32::MAX - 1))
                            .map(|n| n as u32)
                    }
                    "gid" => {
                        spec.gid = self
                            .whole_number(attr, 0.0, f64::from(u32::MAX - 1))
                            .map(|n| n as u32)
                    }
                    k @ "vault_grace" => {
                        self.notices
                            .ignore(&format!("template.{k}"), self.ev.location(attr.key.span()));
                    }
                    _ => self.unsupported_attr(attr, "a template block", &[TEMPLATE_KEYS]),
                },
                Structure::Block(b) => match b.ident.value().as_str() {
                    k @ ("wait" | "change_script") => self
                        .notices
                        .ignore(&format!("template.{k}"), self.ev.location(b.ident.span())),
                    _ => self.unsupported_block(b, "a template block", &[TEMPLATE_KEYS]),
                },
            }
        }
        if spec.destination.is_empty() {
            self.error(
                block.ident.span(),
                "Missing required argument: a template needs a destination",
            );
            return None;
        }
        if spec.change_mode == ChangeMode::Signal
            && spec.change_signal.as_deref().unwrap_or("").is_empty()
        {
            self.error(
                block.ident.span(),
                "Invalid template: change_mode = \"signal\" needs a change_signal",
            );
            return None;
        }
        if spec.left_delimiter.is_empty() || spec.right_delimiter.is_empty() {
            self.error(
                block.ident.span(),
                "Invalid template: delimiters must not be empty",
            );
            return None;
        }
        match (&spec.data, &spec.source) {
            (Some(_), Some(_)) => {
                self.error(
                    block.ident.span(),
                    "Invalid template: set either data or source, not both",
                );
                None
            }
            (None, None) => {
                self.error(
                    block.ident.span(),
                    "Invalid template: one of data or source is required",
                );
                None
            }
            _ => Some(spec),
        }
    }
}

/// ` Did you mean "x"?` with the known name nearest to `name`, or nothing.
fn suggestion(name: &str, known: &[&[&str]]) -> String {
    crate::driver::decode::nearest_name(name, known.iter().flat_map(|k| k.iter().copied()))
        .map(|s| format!(". Did you mean {s:?}?"))
        .unwrap_or_default()
}

fn key(attr: &Attribute) -> &str {
    attr.key.value().as_str()
}

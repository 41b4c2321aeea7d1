//! `constraint` blocks checked against this node as Nomad's scheduler checks them
//! (scheduler/feasible.go): a target is a literal unless it is a whole `${...}`
//! reference, a missing fact fails every operator but `!=` and `is_not_set`, ordering is
//! numeric when both sides are numbers, `version`/`semver` take go-version constraint
//! strings. `distinct_hosts`/`distinct_property` hold as long as this one node may hold
//! every allocation they cover.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use super::jobspec::JobFileError;
use super::model::{Constraint, Job};
use super::node::PODMAN_VERSION;

/// The outcome of checking a job against the node.
#[derive(Debug, Default)]
pub struct ConstraintCheck {
    /// Constraints the node does not satisfy, each at its block.
    pub errors: Vec<JobFileError>,
    /// Constraints that need a fact not known yet (podman's version before podman
    /// answered), to be checked again once it is.
    pub unchecked: Vec<Unchecked>,
}

#[derive(Debug, Clone)]
pub struct Unchecked {
    pub constraint: Constraint,
    pub fact: String,
}

impl fmt::Display for Constraint {
    /// Nomad's `attribute operator value`, without the empty parts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts = [&self.attribute, &self.operator, &self.value];
        let text: Vec<&str> = parts
            .iter()
            .map(|p| p.as_str())
            .filter(|p| !p.is_empty())
            .collect();
        f.write_str(&text.join(" "))
    }
}

/// Checks the job's datacenters and every constraint (job, group, task) against the
/// node's facts (`attrs`, keyed as jobs write them: `attr.kernel.name`).
/// `datacenter_given`: the operator named the node's datacenter, so the job's
/// `datacenters` must include it.
pub fn check(
    job: &Job,
    attrs: &BTreeMap<String, String>,
    datacenter_given: bool,
) -> ConstraintCheck {
    let mut out = ConstraintCheck::default();
    if datacenter_given {
        let dc = attrs.get("node.datacenter").map_or("", String::as_str);
        if !job
            .datacenters
            .iter()
            .any(|pattern| glob_match(pattern, dc))
        {
            let message = format!(
                "Datacenter not served by this node: the job runs in {:?}, this node is in \
                 {dc:?} (--datacenter)",
                job.datacenters
            );
            out.errors.push(match &job.datacenters_location {
                Some(at) => JobFileError::at(at.clone(), message),
                None => JobFileError::unlocated(message),
            });
        }
    }
    let runs = |g: &&super::model::Group| !g.tasks.is_empty();
    let job_allocs: u32 = job.groups.iter().filter(runs).map(|g| g.count).sum();
    for c in &job.constraints {
        check_one(c, "job", job_allocs, attrs, &mut out);
    }
    for group in job.groups.iter().filter(runs) {
        let scope = format!("group {:?}", group.name);
        for c in &group.constraints {
            check_one(c, &scope, group.count, attrs, &mut out);
        }
        for task in &group.tasks {
            let scope = format!("task {:?}", task.name);
            for c in &task.constraints {
                if matches!(c.operator.as_str(), "distinct_hosts" | "distinct_property") {
                    out.errors.push(JobFileError::at(
                        c.location.clone(),
                        format!(
                            "Constraint \"{c}\" in {scope}: {} is allowed in job and group \
                             constraints only",
                            c.operator
                        ),
                    ));
                    continue;
                }
                check_one(c, &scope, group.count, attrs, &mut out);
            }
        }
    }
    out
}

fn check_one(
    c: &Constraint,
    scope: &str,
    allocs: u32,
    attrs: &BTreeMap<String, String>,
    out: &mut ConstraintCheck,
) {
    for target in [&c.attribute, &c.value] {
        if let Some(fact) = reference(target) {
            if fact == PODMAN_VERSION && !attrs.contains_key(fact) {
                out.unchecked.push(Unchecked {
                    constraint: c.clone(),
                    fact: fact.to_string(),
                });
                return;
            }
        }
    }
    let failure = match c.operator.as_str() {
        "distinct_hosts" => (allocs > 1).then(|| {
            format!(
                "it needs a node per allocation and the {scope} has {allocs} allocations on \
                 this one node (set count = 1)"
            )
        }),
        "distinct_property" => distinct_property(c, allocs, attrs, scope),
        _ => {
            let (l, r) = (resolve(&c.attribute, attrs), resolve(&c.value, attrs));
            match holds(&c.operator, l.as_deref(), r.as_deref()) {
                Ok(true) => None,
                Ok(false) => Some(node_has(&c.attribute, &c.value, l.as_deref(), r.as_deref())),
                Err(why) => Some(why),
            }
        }
    };
    if let Some(why) = failure {
        out.errors.push(JobFileError::at(
            c.location.clone(),
            format!("Constraint \"{c}\" in {scope} is not satisfied by this node: {why}"),
        ));
    }
}

/// At most `value` (default 1) allocations per value of the property: this node has one
/// value, so that is how many it may run.
fn distinct_property(
    c: &Constraint,
    allocs: u32,
    attrs: &BTreeMap<String, String>,
    scope: &str,
) -> Option<String> {
    let Some(value) = resolve(&c.attribute, attrs) else {
        return Some(node_has(&c.attribute, "", None, Some("")));
    };
    let limit = if c.value.trim().is_empty() {
        1
    } else {
        match c.value.trim().parse::<u64>() {
            Ok(n) if n > 0 => n,
            _ => return Some(format!("the limit {:?} is not a positive number", c.value)),
        }
    };
    (u64::from(allocs) > limit).then(|| {
        format!(
            "every allocation here has {} = {value:?}, at most {limit} may share it and the \
             {scope} has {allocs}",
            reference(&c.attribute).unwrap_or(&c.attribute)
        )
    })
}

/// What the node has for the side(s) that are facts, for the error message.
fn node_has(attribute: &str, value: &str, l: Option<&str>, r: Option<&str>) -> String {
    let mut parts = Vec::new();
    for (target, resolved) in [(attribute, l), (value, r)] {
        let Some(fact) = reference(target) else {
            continue;
        };
        parts.push(match resolved {
            Some(v) => format!("this node has {fact} = {v:?}"),
            None => format!("{fact} is not set on this node{}", how_to_set(fact)),
        });
    }
    if parts.is_empty() {
        "the values do not match".into()
    } else {
        parts.join("; ")
    }
}

fn how_to_set(fact: &str) -> String {
    if let Some(key) = fact.strip_prefix("meta.") {
        return format!(" (set it with -meta {key}=VALUE)");
    }
    match fact {
        "node.class" => " (set it with --node-class)".into(),
        _ => String::new(),
    }
}

/// `${name}` -> `name`; anything else is a literal.
fn reference(target: &str) -> Option<&str> {
    target
        .strip_prefix("${")
        .and_then(|t| t.strip_suffix('}'))
        .map(str::trim)
}

/// A target's value on this node: literals as written, `${...}` from the facts (`None`
/// when the node has no such fact).
pub fn resolve(target: &str, attrs: &BTreeMap<String, String>) -> Option<String> {
    match reference(target) {
        Some(name) => attrs.get(name).cloned(),
        None if target.starts_with("${") => None,
        None => Some(target.to_string()),
    }
}

/// Nomad's `checkConstraint`: whether `l operator r` holds. `Err` says why a malformed
/// right-hand side (regexp, version constraint) cannot hold.
pub fn holds(operator: &str, l: Option<&str>, r: Option<&str>) -> Result<bool, String> {
    if operator == "is_set" {
        return Ok(l.is_some());
    }
    if operator == "is_not_set" {
        return Ok(l.is_none());
    }
    if matches!(operator, "!=" | "not") {
        return Ok(l != r);
    }
    let (Some(l), Some(r)) = (l, r) else {
        return Ok(false);
    };
    Ok(match operator {
        "=" | "==" | "is" => l == r,
        "<" | "<=" | ">" | ">=" => {
            let order = match (l.trim().parse::<f64>(), r.trim().parse::<f64>()) {
                (Ok(a), Ok(b)) => a.partial_cmp(&b),
                _ => Some(l.cmp(r)),
            };
            order.is_some_and(|o| match operator {
                "<" => o == Ordering::Less,
                "<=" => o != Ordering::Greater,
                ">" => o == Ordering::Greater,
                _ => o != Ordering::Less,
            })
        }
        "regexp" => regex::Regex::new(r)
            .map_err(|e| format!("the regular expression {r:?} is invalid: {e}"))?
            .is_match(l),
        "set_contains" | "set_contains_all" => {
            let have = set(l);
            set(r).iter().all(|x| have.contains(x))
        }
        "set_contains_any" => {
            let have = set(l);
            set(r).iter().any(|x| have.contains(x))
        }
        "version" | "semver" => {
            let strict = operator == "semver";
            let constraints = parse_constraints(r, strict)?;
            match Version::parse(l) {
                Some(v) => constraints.iter().all(|c| c.matches(&v, strict)),
                None => false,
            }
        }
        _ => false,
    })
}

fn set(text: &str) -> Vec<&str> {
    text.split(',').map(str::trim).collect()
}

/// Nomad's datacenter patterns: `*` matches any run of characters.
fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &text[first.len()..];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(i) => rest = &rest[i + middle.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// A version as hashicorp/go-version reads it: `v1.2.3`, `1.2`, `1.2.3-beta.1`,
/// `1.2.3beta1`, `+metadata` (ignored). Missing segments count as 0.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Version {
    segments: Vec<u64>,
    /// How many segments were written (`~> 1.2` pins the first one).
    written: usize,
    prerelease: String,
}

impl Version {
    fn parse(text: &str) -> Option<Version> {
        let text = text.trim();
        let text = text.strip_prefix('v').unwrap_or(text);
        let (text, _metadata) = text.split_once('+').unwrap_or((text, ""));
        let numeric_end = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (numbers, rest) = text.split_at(numeric_end);
        let segments = numbers
            .split('.')
            .map(|s| s.parse::<u64>().ok())
            .collect::<Option<Vec<u64>>>()?;
        let prerelease = rest.strip_prefix('-').unwrap_or(rest);
        if (!rest.is_empty() && prerelease.is_empty())
            || !prerelease
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-~.".contains(c))
        {
            return None;
        }
        let written = segments.len();
        let mut segments = segments;
        segments.resize(written.max(3), 0);
        Some(Version {
            segments,
            written,
            prerelease: prerelease.to_string(),
        })
    }

    fn compare(&self, other: &Version) -> Ordering {
        let len = self.segments.len().max(other.segments.len());
        let seg = |v: &Version, i: usize| v.segments.get(i).copied().unwrap_or(0);
        for i in 0..len {
            match seg(self, i).cmp(&seg(other, i)) {
                Ordering::Equal => {}
                unequal => return unequal,
            }
        }
        match (self.prerelease.is_empty(), other.prerelease.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => compare_prerelease(&self.prerelease, &other.prerelease),
        }
    }
}

/// Semver's precedence: identifier by identifier, numbers numerically and below words.
fn compare_prerelease(a: &str, b: &str) -> Ordering {
    let mut left = a.split('.');
    let mut right = b.split('.');
    loop {
        match (left.next(), right.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let order = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(m), Ok(n)) => m.cmp(&n),
                    (Ok(_), Err(_)) => Ordering::Less,
                    (Err(_), Ok(_)) => Ordering::Greater,
                    (Err(_), Err(_)) => x.cmp(y),
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

#[derive(Debug)]
struct VersionConstraint {
    op: &'static str,
    version: Version,
}

/// `">= 1.2, < 2"`: every comma-separated part must hold. `semver` has no `~>`.
fn parse_constraints(text: &str, strict: bool) -> Result<Vec<VersionConstraint>, String> {
    let bad = |part: &str, why: &str| {
        format!("the version constraint {text:?} is malformed at {part:?}: {why}")
    };
    let mut out = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let op = ["~>", ">=", "<=", "!=", ">", "<", "="]
            .into_iter()
            .find(|op| part.starts_with(op));
        if strict && op == Some("~>") {
            return Err(bad(part, "semver constraints have no ~> operator"));
        }
        let version_text = part[op.map_or(0, str::len)..].trim();
        let version =
            Version::parse(version_text).ok_or_else(|| bad(part, "not a version number"))?;
        out.push(VersionConstraint {
            op: op.unwrap_or("="),
            version,
        });
    }
    Ok(out)
}

impl VersionConstraint {
    fn matches(&self, v: &Version, strict: bool) -> bool {
        let c = &self.version;
        // go-version (not semver): a pre-release only satisfies constraints written for
        // pre-releases of the same version.
        if !strict {
            match (v.prerelease.is_empty(), c.prerelease.is_empty()) {
                (false, false) if v.segments != c.segments => return false,
                (false, true) => return false,
                _ => {}
            }
        }
        let order = v.compare(c);
        match self.op {
            "=" => order == Ordering::Equal,
            "!=" => order != Ordering::Equal,
            ">" => order == Ordering::Greater,
            "<" => order == Ordering::Less,
            ">=" => order != Ordering::Less,
            "<=" => order != Ordering::Greater,
            _ => {
                // ~>: at least the version, and the same in all but the last written segment.
                order != Ordering::Less
                    && (0..c.written.saturating_sub(1))
                        .all(|i| v.segments.get(i).copied().unwrap_or(0) == c.segments[i])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(op: &str, l: Option<&str>, r: Option<&str>) -> bool {
        holds(op, l, r).unwrap()
    }

    #[test]
    fn equality_and_set_operators() {
        assert!(h("=", Some("linux"), Some("linux")));
        assert!(h("==", Some("a"), Some("a")));
        assert!(h("is", Some("a"), Some("a")));
        assert!(!h("=", Some("linux"), Some("windows")));
        assert!(!h("=", None, Some("")), "a missing fact equals nothing");
        assert!(h("!=", Some("a"), Some("b")));
        assert!(
            h("!=", None, Some("b")),
            "a missing fact differs from anything"
        );
        assert!(!h("not", Some("b"), Some("b")));
        assert!(h("is_set", Some(""), None));
        assert!(!h("is_set", None, None));
        assert!(h("is_not_set", None, Some("x")));
        assert!(h("set_contains", Some("a, b,c"), Some("c,a")));
        assert!(!h("set_contains", Some("a,b"), Some("a,d")));
        assert!(h("set_contains_all", Some("a,b"), Some("b")));
        assert!(h("set_contains_any", Some("a,b"), Some("d, b")));
        assert!(!h("set_contains_any", Some("a,b"), Some("d,e")));
        assert!(!h("set_contains", None, Some("a")));
        assert!(!h("unknown", Some("a"), Some("a")));
    }

    #[test]
    fn ordering_is_numeric_when_both_sides_are_numbers() {
        assert!(h(">", Some("10"), Some("9")), "numbers compare as numbers");
        assert!(h("<", Some("9"), Some("10")));
        assert!(h(">=", Some("2.5"), Some("2.50")));
        assert!(h("<=", Some("3"), Some("3")));
        assert!(
            h("<", Some("10"), Some("9a")),
            "lexical when one is not a number"
        );
        assert!(h(">", Some("b"), Some("a")));
        assert!(!h(">", None, Some("a")));
    }

    #[test]
    fn regexp_matches_anywhere_and_reports_a_bad_pattern() {
        assert!(h("regexp", Some("6.1.0-18-amd64"), Some("^6\\.")));
        assert!(h("regexp", Some("debian"), Some("bia")));
        assert!(!h("regexp", Some("debian"), Some("^ubuntu$")));
        let err = holds("regexp", Some("x"), Some("(")).unwrap_err();
        assert!(err.contains("regular expression \"(\" is invalid"), "{err}");
    }

    #[test]
    fn version_constraints_follow_go_version() {
        assert!(h("version", Some("4.3.1"), Some(">= 4.0, < 5")));
        assert!(!h("version", Some("5.0.0"), Some(">= 4.0, < 5")));
        assert!(h("version", Some("v1.2"), Some("= 1.2.0")));
        assert!(h("version", Some("1.2.9"), Some("~> 1.2.3")));
        assert!(!h("version", Some("1.3.0"), Some("~> 1.2.3")));
        assert!(h("version", Some("1.9"), Some("~> 1.2")));
        assert!(!h("version", Some("2.0"), Some("~> 1.2")));
        // More segments in the constraint than in the version: missing ones count as 0.
        assert!(!h("version", Some("1.2"), Some("~> 1.2.0.0.1")));
        assert!(h("version", Some("1.2.0.0.5"), Some("~> 1.2.0.0.1")));
        assert!(h("version", Some("1.2.3+build.7"), Some("1.2.3")));
        // Pre-releases satisfy only constraints about pre-releases of the same version.
        assert!(!h("version", Some("5.0.0-dev"), Some(">= 4.0")));
        assert!(h("version", Some("5.0.0-rc2"), Some(">= 5.0.0-rc1")));
        assert!(h("version", Some("1.2.3beta"), Some(">= 1.2.3-alpha")));
        assert!(!h("version", Some("not-a-version"), Some(">= 1")));
        let err = holds("version", Some("1.0"), Some(">= one")).unwrap_err();
        assert!(err.contains("not a version number"), "{err}");
    }

    #[test]
    fn semver_orders_prereleases_and_refuses_pessimistic() {
        assert!(h("semver", Some("5.0.0-dev"), Some(">= 4.0")));
        assert!(h("semver", Some("1.0.0-alpha.2"), Some("> 1.0.0-alpha.1")));
        assert!(h(
            "semver",
            Some("1.0.0-alpha.beta"),
            Some("> 1.0.0-alpha.9")
        ));
        assert!(h("semver", Some("1.0.0"), Some("> 1.0.0-rc.1")));
        assert!(!h("semver", Some("1.0.0-rc.1"), Some(">= 1.0.0")));
        let err = holds("semver", Some("1.0.0"), Some("~> 1.0")).unwrap_err();
        assert!(err.contains("no ~> operator"), "{err}");
    }

    #[test]
    fn datacenter_patterns() {
        assert!(glob_match("*", "dc1"));
        assert!(glob_match("us-*", "us-east"));
        assert!(glob_match("us-*-1", "us-east-1"));
        assert!(!glob_match("us-*-1", "us-1"));
        assert!(!glob_match("dc1", "dc2"));
    }

    #[test]
    fn targets_resolve_only_as_whole_references() {
        let attrs: BTreeMap<String, String> = [("meta.rack".to_string(), "r1".to_string())].into();
        assert_eq!(resolve("${meta.rack}", &attrs).as_deref(), Some("r1"));
        assert_eq!(resolve("${meta.nope}", &attrs), None);
        assert_eq!(
            resolve("rack-${meta.rack}", &attrs).as_deref(),
            Some("rack-${meta.rack}")
        );
        assert_eq!(resolve("literal", &attrs).as_deref(), Some("literal"));
    }

    fn job(text: &str) -> Job {
        use crate::modes::run::jobspec::{parse, Source, VarInputs};
        parse(Source::new("job.nomad", text), &VarInputs::default())
            .unwrap_or_else(|e| panic!("{e}"))
            .job
    }

    const JOB: &str = r#"job "j" {
  datacenters = ["eu-*"]
  constraint {
    attribute = "${meta.rack}"
    value     = "r1"
  }
  group "g" {
    count = 2
    constraint {
      distinct_hosts = true
    }
    task "t" {
      driver = "podman"
      config { image = "x" }
      constraint {
        attribute = "${meta.disk}"
        operator  = "is_set"
      }
      constraint {
        attribute = "${attr.driver.podman.version}"
        version   = ">= 4.0"
      }
      constraint {
        operator = "distinct_hosts"
      }
    }
  }
}
"#;

    #[test]
    fn a_job_is_checked_against_the_node_with_located_failures() {
        let job = job(JOB);
        let attrs: BTreeMap<String, String> = [
            ("meta.rack", "r2"),
            ("node.datacenter", "us-1"),
            ("attr.kernel.name", "linux"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let result = check(&job, &attrs, true);
        let errors: Vec<String> = result.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            [
                "job.nomad:2:3: Datacenter not served by this node: the job runs in [\"eu-*\"], this node is in \"us-1\" (--datacenter)",
                "job.nomad:3:3: Constraint \"${meta.rack} = r1\" in job is not satisfied by this node: this node has meta.rack = \"r2\"",
                "job.nomad:9:5: Constraint \"distinct_hosts\" in group \"g\" is not satisfied by this node: it needs a node per allocation and the group \"g\" has 2 allocations on this one node (set count = 1)",
                "job.nomad:15:7: Constraint \"${meta.disk} is_set\" in task \"t\" is not satisfied by this node: meta.disk is not set on this node (set it with -meta disk=VALUE)",
                "job.nomad:23:7: Constraint \"distinct_hosts\" in task \"t\": distinct_hosts is allowed in job and group constraints only",
            ]
        );
        // podman's version is not known yet: that constraint waits for it.
        assert_eq!(result.unchecked.len(), 1);
        assert_eq!(result.unchecked[0].fact, PODMAN_VERSION);

        let mut attrs = attrs;
        attrs.insert("meta.rack".into(), "r1".into());
        attrs.insert("meta.disk".into(), "ssd".into());
        attrs.insert("node.datacenter".into(), "eu-west".into());
        attrs.insert(PODMAN_VERSION.into(), "3.4.4".into());
        let result = check(&job, &attrs, true);
        let errors: Vec<String> = result.errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[1].starts_with("job.nomad:19:7: Constraint \"${attr.driver.podman.version} version >= 4.0\" in task \"t\" is not satisfied by this node: this node has attr.driver.podman.version = \"3.4.4\""), "{errors:?}");
        assert!(result.unchecked.is_empty());
    }

    #[test]
    fn distinct_property_allows_as_many_allocations_as_its_limit() {
        let text = |limit: &str| {
            format!(
                "job \"j\" {{\n  group \"g\" {{\n    count = 2\n    constraint {{\n      distinct_property = \"${{meta.rack}}\"\n      {limit}\n    }}\n    task \"t\" {{\n      driver = \"podman\"\n      config {{ image = \"x\" }}\n    }}\n  }}\n}}\n"
            )
        };
        let rack: BTreeMap<String, String> = [("meta.rack".to_string(), "r1".to_string())].into();
        assert!(check(&job(&text("value = 2")), &rack, false)
            .errors
            .is_empty());
        let errors = check(&job(&text("")), &rack, false).errors;
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].message.contains("at most 1 may share it"),
            "{errors:?}"
        );
        let errors = check(&job(&text("value = 2")), &BTreeMap::new(), false).errors;
        assert!(
            errors[0]
                .message
                .contains("meta.rack is not set on this node"),
            "{errors:?}"
        );
    }
}

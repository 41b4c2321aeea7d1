//! JSON report: the whole [`RunReport`], pretty-printed with stable key order so that two
//! runs can be compared with `diff` or `jq`.

use super::RunReport;

pub fn render(report: &RunReport) -> String {
    let mut text = serde_json::to_string_pretty(report)
        .unwrap_or_else(|err| format!("{{\"error\": \"cannot encode report: {err}\"}}"));
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;
    use serde_json::Value;

    #[test]
    fn names_version_facts_and_every_result() {
        let json: Value = serde_json::from_str(&render(&fixtures::report())).unwrap();
        assert_eq!(json["run_id"], "test-run");
        assert_eq!(json["summary"]["failed"], 2);
        let local = &json["sockets"][0];
        assert_eq!(local["facts"]["podman_version"], "4.3.1");
        assert_eq!(local["facts"]["rootless"], false);
        assert_eq!(local["facts"]["cgroup_version"], "v1");
        assert_eq!(local["facts"]["oci_runtime"], "runc");
        assert_eq!(local["facts"]["network_backend"], "netavark");
        assert_eq!(local["checks"][0]["name"], "api.ping");
        assert_eq!(local["checks"][0]["status"], "pass");
        assert_eq!(local["checks"][0]["duration_ms"], 1500);
        assert_eq!(local["checks"][1]["status"], "degraded");
        assert_eq!(local["checks"][1]["drift"]["id"], "oom-flag-unset");
        assert!(local["checks"][0].get("drift").is_none());
        assert_eq!(json["sockets"][1]["facts"], Value::Null);
    }
}

//! Registry credentials for a pull: task `auth` block, then the auth file, then the
//! credential helper.
//!
//! Differences from the Go driver, on purpose:
//! * Auth file keys match at registry/path boundaries (`example.co` no longer matches
//!   `example.com/...`), and the longest matching key wins (Go picked one at random).
//! * `credHelpers` entries of the auth file are honoured.
//! * Helpers run as `docker-credential-<name> get` (Go passed `get` as argv\[0\], so real
//!   helpers never saw the action); when one knows nothing for `registry/path` it is asked
//!   again for the bare registry, which is what docker-compatible helpers store.
//! * A helper may also be given as an absolute path to the helper program.
//! * An `auth` entry that is not base64 `user:password` is an error, not empty credentials.
//!
//! Secrets never appear in errors: messages name the file, key or helper only.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::io::AsyncWriteExt;

use super::reference::RegistryRef;
use super::{AuthConfig, RegistryAuth};
use crate::driver::podman::RegistryCredentials;

/// How long a credential helper may take.
const HELPER_DEADLINE: Duration = Duration::from_secs(10);

/// Finds credentials for `image`. `Ok(None)`: pull without credentials. A failing backend
/// aborts unless `soft_fail`, in which case the next one is tried.
pub async fn resolve(
    image: &RegistryRef,
    task: Option<&RegistryAuth>,
    config: &AuthConfig,
    soft_fail: bool,
) -> Result<Option<RegistryCredentials>, String> {
    let credentials = |username: String, password: String| RegistryCredentials {
        username,
        password,
        server_address: image.domain.clone(),
    };
    if let Some(auth) = task.filter(|a| !a.username.is_empty() || !a.password.is_empty()) {
        return Ok(Some(credentials(
            auth.username.clone(),
            auth.password.clone(),
        )));
    }
    if let Some(file) = &config.file {
        match from_file(file, image).await {
            Ok(Some((u, p))) => return Ok(Some(credentials(u, p))),
            Ok(None) => {}
            Err(e) if soft_fail => drop(e),
            Err(e) => return Err(e),
        }
    }
    if let Some(helper) = config.helper.as_deref().filter(|h| !h.is_empty()) {
        match from_helper(helper, image).await {
            Ok(Some((u, p))) => return Ok(Some(credentials(u, p))),
            Ok(None) => {}
            Err(e) if soft_fail => drop(e),
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// An auth file (`auth.json`, docker's `config.json`): the parts the driver reads.
#[derive(Debug, Default)]
struct AuthFile {
    auths: HashMap<String, AuthEntry>,
    cred_helpers: HashMap<String, String>,
}

/// One `auths` entry. `Debug` never shows `auth` or `password`.
#[derive(Default)]
struct AuthEntry {
    auth: String,
    username: String,
    password: String,
}

impl std::fmt::Debug for AuthEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthEntry")
            .field("auth", &"<redacted>")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// JSON type names for errors, which never show a value (it may be a secret).
fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// `value` as an object; `field` names it in the error. Absent and null are empty.
fn object<'a>(
    value: Option<&'a Value>,
    field: &str,
) -> Result<Option<&'a Map<String, Value>>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(other) => Err(format!(
            "{field}: expected an object, got {}",
            json_type(other)
        )),
    }
}

/// `value` as a string; absent and null are empty.
fn string(value: Option<&Value>, field: &str) -> Result<String, String> {
    match value {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!(
            "{field}: expected a string, got {}",
            json_type(other)
        )),
    }
}

impl AuthFile {
    /// Parses an auth file. Errors name the field or the position, never a value: a
    /// serde message would quote the string it found (`invalid type: string "..."`),
    /// which in an auth file is a credential.
    fn parse(text: &str) -> Result<AuthFile, String> {
        let root: Value = serde_json::from_str(text).map_err(|e| {
            format!(
                "not valid JSON ({}) at line {} column {}",
                match e.classify() {
                    serde_json::error::Category::Eof => "it ends early",
                    _ => "a syntax error",
                },
                e.line(),
                e.column()
            )
        })?;
        let root = match &root {
            Value::Object(map) => map,
            other => return Err(format!("expected an object, got {}", json_type(other))),
        };
        let mut file = AuthFile::default();
        for (key, entry) in object(root.get("auths"), "auths")?.into_iter().flatten() {
            let field = format!("auths.{key:?}");
            let Some(entry) = object(Some(entry), &field)? else {
                continue;
            };
            file.auths.insert(
                key.clone(),
                AuthEntry {
                    auth: string(entry.get("auth"), &format!("{field}.auth"))?,
                    username: string(entry.get("username"), &format!("{field}.username"))?,
                    password: string(entry.get("password"), &format!("{field}.password"))?,
                },
            );
        }
        for (registry, helper) in object(root.get("credHelpers"), "credHelpers")?
            .into_iter()
            .flatten()
        {
            let helper = string(Some(helper), &format!("credHelpers.{registry:?}"))?;
            file.cred_helpers.insert(registry.clone(), helper);
        }
        Ok(file)
    }
}

async fn from_file(path: &Path, image: &RegistryRef) -> Result<Option<(String, String)>, String> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| format!("cannot read auth file {}: {e}", path.display()))?;
    let file =
        AuthFile::parse(&text).map_err(|why| format!("auth file {}: {why}", path.display()))?;
    if let Some((key, entry)) = best_match(&file.auths, &image.repository()) {
        return decode_entry(entry)
            .map(Some)
            .map_err(|why| format!("auth file {} entry {key:?}: {why}", path.display()));
    }
    let helper = file
        .cred_helpers
        .iter()
        .find(|(registry, _)| normalize_key(registry) == image.domain)
        .map(|(_, helper)| helper.clone());
    match helper {
        Some(helper) => from_helper(&helper, image).await,
        None => Ok(None),
    }
}

/// The entry whose key is the longest registry/path prefix of `repository`.
fn best_match<'a>(
    auths: &'a HashMap<String, AuthEntry>,
    repository: &str,
) -> Option<(&'a str, &'a AuthEntry)> {
    auths
        .iter()
        .filter_map(|(key, entry)| {
            let normalized = normalize_key(key);
            let matches = repository == normalized
                || repository
                    .strip_prefix(normalized.as_str())
                    .is_some_and(|rest| rest.starts_with('/'));
            matches.then_some((normalized.len(), key.as_str(), entry))
        })
        .max_by_key(|(len, key, _)| (*len, std::cmp::Reverse(*key)))
        .map(|(_, key, entry)| (key, entry))
}

/// `https://index.docker.io/v1/` → `docker.io`; schemes and trailing slashes go.
fn normalize_key(key: &str) -> String {
    let key = key
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let key = key
        .strip_suffix("/v1")
        .or(key.strip_suffix("/v2"))
        .unwrap_or(key);
    match key {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        other => other.to_string(),
    }
}

fn decode_entry(entry: &AuthEntry) -> Result<(String, String), String> {
    if entry.auth.is_empty() {
        if entry.username.is_empty() {
            return Err("has neither `auth` nor `username`".into());
        }
        return Ok((entry.username.clone(), entry.password.clone()));
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(entry.auth.trim())
        .map_err(|_| "`auth` is not base64".to_string())?;
    let text = String::from_utf8(raw).map_err(|_| "`auth` is not UTF-8".to_string())?;
    let (user, password) = text
        .split_once(':')
        .ok_or_else(|| "`auth` is not `user:password`".to_string())?;
    Ok((user.to_string(), password.to_string()))
}

/// The program a helper setting names: `docker-credential-<name>` on PATH, or a path.
fn helper_program(helper: &str) -> String {
    if helper.contains('/') {
        helper.to_string()
    } else {
        format!("docker-credential-{helper}")
    }
}

async fn from_helper(
    helper: &str,
    image: &RegistryRef,
) -> Result<Option<(String, String)>, String> {
    for server in [image.repository(), image.domain.clone()] {
        if let Some(found) = ask_helper(helper, &server).await? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// A helper's answer. `Debug` never shows the secret.
#[derive(Default, Deserialize)]
#[serde(default)]
struct HelperReply {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

impl std::fmt::Debug for HelperReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HelperReply")
            .field("username", &self.username)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Runs `<helper> get` with `server` on stdin.
async fn ask_helper(helper: &str, server: &str) -> Result<Option<(String, String)>, String> {
    let program = helper_program(helper);
    let failed = |why: String| format!("credential helper {program:?}: {why}");
    let mut child = tokio::process::Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| failed(format!("cannot run it: {e}")))?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| failed("no stdin".into()))?;
    let run = async {
        // A helper that exits without reading stdin is judged by its exit status below.
        let _ = stdin.write_all(server.as_bytes()).await;
        drop(stdin);
        child.wait_with_output().await
    };
    let output = tokio::time::timeout(HELPER_DEADLINE, run)
        .await
        .map_err(|_| failed(format!("no answer within {HELPER_DEADLINE:?}")))?
        .map_err(|e| failed(e.to_string()))?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stdout).to_string()
            + &String::from_utf8_lossy(&output.stderr);
        if said.to_ascii_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        let first_line = said.lines().next().unwrap_or("").trim();
        return Err(failed(format!("{}: {first_line}", output.status)));
    }
    let reply: HelperReply = serde_json::from_slice(&output.stdout)
        .map_err(|_| failed("did not answer with JSON {\"Username\",\"Secret\"}".into()))?;
    if reply.username.is_empty() && reply.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some((reply.username, reply.secret)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(auth: &str) -> AuthEntry {
        AuthEntry {
            auth: auth.into(),
            ..AuthEntry::default()
        }
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn longest_key_at_a_path_boundary_wins() {
        let auths: HashMap<String, AuthEntry> = [
            ("docker.io".to_string(), entry("a")),
            ("docker.io/library".to_string(), entry("b")),
            ("https://example.co".to_string(), entry("c")),
            ("example.com/team/".to_string(), entry("d")),
        ]
        .into();
        let key = |repo: &str| best_match(&auths, repo).map(|(k, _)| k.to_string());
        assert_eq!(
            key("docker.io/library/bash"),
            Some("docker.io/library".into())
        );
        assert_eq!(key("docker.io/user/bash"), Some("docker.io".into()));
        assert_eq!(
            key("example.com/team/app"),
            Some("example.com/team/".into())
        );
        assert_eq!(
            key("example.com/other/app"),
            None,
            "example.co is not example.com"
        );
        assert_eq!(key("docker.io/libraryx/a"), Some("docker.io".into()));
    }

    #[test]
    fn docker_hub_aliases_are_one_registry() {
        assert_eq!(normalize_key("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalize_key("registry-1.docker.io"), "docker.io");
        assert_eq!(normalize_key("http://localhost:5000/"), "localhost:5000");
    }

    #[test]
    fn entries_decode_or_fail_without_echoing_secrets() {
        assert_eq!(
            decode_entry(&entry(&b64("user:pa:ss"))).expect("valid"),
            ("user".into(), "pa:ss".into())
        );
        let e = decode_entry(&entry(&b64("no-colon-secret"))).expect_err("no colon");
        assert!(!e.contains("no-colon-secret"), "{e}");
        assert!(decode_entry(&entry("!!!")).is_err());
        let plain = AuthEntry {
            username: "u".into(),
            password: "p".into(),
            ..AuthEntry::default()
        };
        assert_eq!(
            decode_entry(&plain).expect("plain"),
            ("u".into(), "p".into())
        );
        assert!(decode_entry(&AuthEntry::default()).is_err());
    }

    #[test]
    fn auth_file_errors_name_the_field_never_the_value() {
        let secret = "hunter2-secret";
        let cases = [
            (
                json!({"auths": {"reg.example": {"auth": b64(&format!("u:{secret}")), "password": [secret]}}}),
                "auths.\"reg.example\".password: expected a string, got a list",
            ),
            (
                json!({"auths": {"reg.example": secret}}),
                "auths.\"reg.example\": expected an object, got a string",
            ),
            (
                json!({"auths": {"reg.example": {"auth": 42}}}),
                "auths.\"reg.example\".auth: expected a string, got a number",
            ),
            (
                json!({"auths": [secret]}),
                "auths: expected an object, got a list",
            ),
            (
                json!({"credHelpers": {"reg.example": {"x": secret}}}),
                "credHelpers.\"reg.example\": expected a string, got an object",
            ),
            (json!(secret), "expected an object, got a string"),
        ];
        for (value, expected) in cases {
            let err = AuthFile::parse(&value.to_string()).expect_err(expected);
            assert!(!err.contains(secret), "{err}");
            assert_eq!(err, expected);
        }
        // What serde would have said quotes the value; the parser does not.
        let text = format!(r#"{{"auths": {{"r": {{"password": "{secret}" "#);
        let err = AuthFile::parse(&text).expect_err("cut short");
        assert!(!err.contains(secret), "{err}");
        assert!(err.starts_with("not valid JSON"), "{err}");
        let err = AuthFile::parse(&format!(
            r#"{{"auths": {{"r": {{"password": {secret}}}}}}}"#
        ))
        .expect_err("bare word");
        assert!(!err.contains(secret), "{err}");
        assert!(err.contains("line 1 column"), "{err}");
        // Unknown keys (docker's config.json has many) and nulls are fine.
        let file = AuthFile::parse(
            r#"{"auths": {"r": {"auth": null, "username": "u", "password": "p", "email": 1}}, "HttpHeaders": {}, "credHelpers": null}"#,
        )
        .expect("valid");
        assert_eq!(file.auths["r"].username, "u");
    }

    #[test]
    fn debug_never_shows_secrets() {
        let entry = AuthEntry {
            auth: b64("user:auth-secret"),
            username: "user".into(),
            password: "password-secret".into(),
        };
        let shown = format!("{entry:?}");
        assert!(shown.contains("user"), "{shown}");
        assert!(
            !shown.contains(&entry.auth) && !shown.contains("password-secret"),
            "{shown}"
        );
        let reply = HelperReply {
            username: "user".into(),
            secret: "helper-secret".into(),
        };
        let shown = format!("{reply:?}");
        assert!(
            shown.contains("user") && !shown.contains("helper-secret"),
            "{shown}"
        );
        let file = AuthFile::parse(&format!(
            r#"{{"auths": {{"r": {{"auth": "{}"}}}}}}"#,
            entry.auth
        ))
        .expect("valid");
        assert!(!format!("{file:?}").contains(&entry.auth));
    }

    #[test]
    fn helper_names_map_to_programs() {
        assert_eq!(helper_program("pass"), "docker-credential-pass");
        assert_eq!(helper_program("/opt/bin/helper"), "/opt/bin/helper");
    }

    fn image() -> RegistryRef {
        RegistryRef {
            name: "reg.example:5000/team/app:1".into(),
            domain: "reg.example:5000".into(),
            path: "team/app".into(),
        }
    }

    #[tokio::test]
    async fn task_auth_wins_and_nothing_configured_means_no_header() {
        let task = RegistryAuth {
            username: "t".into(),
            password: "p".into(),
            tls_verify: true,
        };
        let config = AuthConfig {
            file: Some("/nonexistent/auth.json".into()),
            helper: None,
        };
        let creds = resolve(&image(), Some(&task), &config, false)
            .await
            .expect("task auth")
            .expect("some");
        assert_eq!(creds.username, "t");
        assert_eq!(creds.server_address, "reg.example:5000");
        let none = resolve(&image(), None, &AuthConfig::default(), false)
            .await
            .expect("nothing configured");
        assert!(none.is_none());
    }

    #[tokio::test]
    async fn failing_backends_abort_unless_soft_fail() {
        let config = AuthConfig {
            file: Some("/nonexistent/auth.json".into()),
            helper: Some("/nonexistent/helper".into()),
        };
        let e = resolve(&image(), None, &config, false)
            .await
            .expect_err("missing file");
        assert!(e.contains("/nonexistent/auth.json"), "{e}");
        let soft = resolve(&image(), None, &config, true)
            .await
            .expect("soft fail skips both");
        assert!(soft.is_none());
    }
}

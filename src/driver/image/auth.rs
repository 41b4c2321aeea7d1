//! Registry credentials for a pull: task `auth` block, then the auth file, then the
//! credential helper (upstream §3.6 "Auth precedence").
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

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AuthFile {
    auths: HashMap<String, AuthEntry>,
    #[serde(rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AuthEntry {
    auth: String,
    username: String,
    password: String,
}

async fn from_file(path: &Path, image: &RegistryRef) -> Result<Option<(String, String)>, String> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| format!("cannot read auth file {}: {e}", path.display()))?;
    let file: AuthFile = serde_json::from_str(&text)
        .map_err(|e| format!("auth file {} is not valid JSON: {e}", path.display()))?;
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

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct HelperReply {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
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

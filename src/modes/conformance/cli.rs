//! Command-line arguments of `nomad-driver-podman conformance`.

use std::path::PathBuf;
use std::str::FromStr;

use regex::Regex;

/// Arguments of the `conformance` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct ConformanceArgs {
    /// Podman API socket to check: `URL` or `NAME=URL` (`unix:///run/podman/podman.sock`,
    /// `http://host:port`). Repeat to check several sockets and print a feature-by-socket
    /// matrix. Default: the driver's default socket for this user.
    #[arg(long = "socket", value_name = "[NAME=]URL")]
    pub sockets: Vec<SocketTarget>,

    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,

    /// Write the report to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Run only checks whose name or one of whose tags matches REGEX (repeatable).
    #[arg(long, value_name = "REGEX", value_parser = parse_regex)]
    pub only: Vec<Regex>,

    /// Skip checks whose name or one of whose tags matches REGEX (repeatable).
    #[arg(long, value_name = "REGEX", value_parser = parse_regex)]
    pub skip: Vec<Regex>,

    /// Record every podman API request and response of the run (the driver's and the
    /// harness's, through a recording proxy) to FILE.
    #[arg(long, value_name = "FILE")]
    pub log_http: Option<PathBuf>,

    /// A registry the podman service can push to and pull from, for the pull checks:
    /// `[http://|https://][USER:PASSWORD@]HOST[:PORT]`. With credentials, the authenticated
    /// pull is checked and an anonymous pull must be refused.
    #[arg(long, value_name = "URL", value_parser = parse_registry)]
    pub registry: Option<RegistryTarget>,

    /// Test image (a busybox-like image with `sh`, `sleep`, `cat`...). Default: import
    /// `localhost/nomad-driver-podman-conformance/busybox:latest` from the host's
    /// /bin/busybox (Debian's busybox-static) when it is missing.
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,

    /// List the checks with their tags (after --only/--skip) and exit.
    #[arg(long)]
    pub list: bool,

    /// Check the sockets one after another instead of at the same time: two podman
    /// installations on one host (say 4.3 and 5.4) publishing ports or creating veths at
    /// the same moment can disturb each other.
    #[arg(long)]
    pub sequential: bool,
}

/// Report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human table with a summary line (colors on a terminal).
    Table,
    /// Machine-readable, diffable across runs.
    Json,
    /// JUnit XML, one test suite per socket.
    Junit,
    /// Test Anything Protocol, version 13.
    Tap,
}

/// One `--socket` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketTarget {
    /// Name shown in reports; empty when the value had none (`execute` names it then).
    pub name: String,
    /// `unix://...` or `http://...`.
    pub url: String,
}

impl FromStr for SocketTarget {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let (name, url) = match value.split_once('=') {
            // `=` may appear in an http URL's query; a name never contains `:` or `/`.
            Some((name, url)) if !name.contains([':', '/']) => {
                if name.is_empty() {
                    return Err(format!("socket {value:?}: empty name before '='"));
                }
                (name.to_string(), url)
            }
            _ => (String::new(), value),
        };
        if !(url.starts_with("unix:") || url.starts_with("http://")) {
            return Err(format!(
                "socket {url:?} is neither a unix: socket nor an http:// URL"
            ));
        }
        Ok(SocketTarget {
            name,
            url: url.to_string(),
        })
    }
}

/// `--registry`: where the pull checks push the test image and pull it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryTarget {
    /// `host[:port]`, the registry part of image references.
    pub host: String,
    /// Whether podman must verify TLS (false for `http://` registries).
    pub tls_verify: bool,
    pub credentials: Option<(String, String)>,
}

fn parse_registry(value: &str) -> Result<RegistryTarget, String> {
    let (tls_verify, rest) = if let Some(rest) = value.strip_prefix("http://") {
        (false, rest)
    } else if let Some(rest) = value.strip_prefix("https://") {
        (true, rest)
    } else {
        (true, value)
    };
    let (credentials, host) = match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let (user, password) = userinfo
                .split_once(':')
                .ok_or_else(|| format!("registry {value:?}: credentials must be USER:PASSWORD@"))?;
            (Some((user.to_string(), password.to_string())), host)
        }
        None => (None, rest),
    };
    let host = host.trim_end_matches('/');
    if host.is_empty() || host.contains('/') {
        return Err(format!(
            "registry {value:?}: expected [scheme://][USER:PASSWORD@]HOST[:PORT]"
        ));
    }
    Ok(RegistryTarget {
        host: host.to_string(),
        tls_verify,
        credentials,
    })
}

fn parse_regex(value: &str) -> Result<Regex, String> {
    Regex::new(value).map_err(|err| format!("invalid regex {value:?}: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ConformanceArgs,
    }

    #[test]
    fn socket_values_with_and_without_names() {
        let plain: SocketTarget = "unix:///run/podman/podman.sock".parse().unwrap();
        assert_eq!(plain.name, "");
        assert_eq!(plain.url, "unix:///run/podman/podman.sock");

        let named: SocketTarget = "v5=http://127.0.0.1:8080".parse().unwrap();
        assert_eq!(named.name, "v5");
        assert_eq!(named.url, "http://127.0.0.1:8080");

        let query: SocketTarget = "http://host:1/?a=b".parse().unwrap();
        assert_eq!(query.name, "");
        assert_eq!(query.url, "http://host:1/?a=b");

        assert!("ssh://host".parse::<SocketTarget>().is_err());
        assert!("=unix:///x".parse::<SocketTarget>().is_err());
    }

    #[test]
    fn registry_values() {
        let anonymous = parse_registry("http://localhost:5000").unwrap();
        assert_eq!(anonymous.host, "localhost:5000");
        assert!(!anonymous.tls_verify);
        assert_eq!(anonymous.credentials, None);

        let with_auth = parse_registry("https://user:p:w@registry.local/").unwrap();
        assert_eq!(with_auth.host, "registry.local");
        assert!(with_auth.tls_verify);
        assert_eq!(
            with_auth.credentials,
            Some(("user".to_string(), "p:w".to_string()))
        );

        assert!(parse_registry("http://user@host").is_err());
        assert!(parse_registry("http://host/path").is_err());
    }

    #[test]
    fn full_command_line() {
        let cli = Cli::try_parse_from([
            "conformance",
            "--socket",
            "a=unix:///a.sock",
            "--socket",
            "unix:///b.sock",
            "--format",
            "junit",
            "--only",
            "^network\\.",
            "--skip",
            "slow",
            "--output",
            "out.xml",
        ])
        .unwrap();
        assert_eq!(cli.args.sockets.len(), 2);
        assert_eq!(cli.args.format, Format::Junit);
        assert_eq!(cli.args.only.len(), 1);
        assert_eq!(cli.args.skip[0].as_str(), "slow");
        assert!(Cli::try_parse_from(["conformance", "--only", "("]).is_err());
    }
}

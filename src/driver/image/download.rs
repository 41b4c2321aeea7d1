//! One GET over http or https with the body streamed to the caller: `docker-archive:`/
//! `oci-archive:` URLs (the body goes on to podman, never stored) and, through [`get`],
//! the runner's task artifacts.
//!
//! https verifies the server against the host's CA certificates (the `ca-certificates`
//! bundle; `SSL_CERT_FILE`/`SSL_CERT_DIR` override it, as for Go's and OpenSSL's clients),
//! read once, on the first https download, so a plugin that never downloads pays nothing.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::HOST;
use hyper::{Method, Request, StatusCode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

use super::ImageError;
use crate::driver::podman::transport;

/// Why a GET did not produce a body.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct DownloadError {
    pub url: String,
    pub reason: String,
}

/// The certificate authorities an https archive server is checked against.
#[derive(Clone)]
pub struct ArchiveTls {
    config: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for ArchiveTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ArchiveTls")
    }
}

impl ArchiveTls {
    /// The host's CA certificates. Unreadable or unparsable entries are skipped; with none
    /// at all, every https download fails naming the cause.
    pub fn system() -> Result<ArchiveTls, String> {
        static SYSTEM: OnceLock<Result<ArchiveTls, String>> = OnceLock::new();
        SYSTEM
            .get_or_init(|| {
                let found = rustls_native_certs::load_native_certs();
                let mut roots = rustls::RootCertStore::empty();
                let (added, _) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    let why = found
                        .errors
                        .first()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default();
                    return Err(format!(
                        "no CA certificates found on this host{why}; install ca-certificates or set SSL_CERT_FILE"
                    ));
                }
                Ok(ArchiveTls::with_roots(roots))
            })
            .clone()
    }

    /// Only the certificate authorities in `pem` (one or more `CERTIFICATE` blocks).
    pub fn from_pem(pem: &[u8]) -> Result<ArchiveTls, String> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("bad PEM certificate: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("unusable CA certificate: {e}"))?;
        }
        if roots.is_empty() {
            return Err("no CERTIFICATE block in the PEM data".into());
        }
        Ok(ArchiveTls::with_roots(roots))
    }

    fn with_roots(roots: rustls::RootCertStore) -> ArchiveTls {
        // ring, deprecated in rustls 0.23.48 only for lacking post-quantum key exchange:
        // aws-lc-rs would add a C/cmake build to every machine that builds the driver.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            // ring supports every default protocol version; nothing to fail on.
            .unwrap_or_else(|_| unreachable!("ring offers TLS 1.2 and 1.3"))
            .with_root_certificates(roots)
            .with_no_client_auth();
        ArchiveTls {
            config: Arc::new(config),
        }
    }
}

/// Where a URL points: scheme, `host:port` to dial, the host as the server is named, path.
#[derive(Debug, PartialEq, Eq)]
struct Target<'a> {
    tls: bool,
    authority: String,
    host: &'a str,
    path: &'a str,
}

fn target(url: &str) -> Result<Target<'_>, String> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err("only http:// and https:// URLs can be downloaded".into());
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err("no host in the URL".into());
    }
    if authority.contains('@') {
        return Err("credentials in archive URLs are not supported".into());
    }
    // `[v6]:port`, `[v6]`, `host:port`, `host`.
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let end = v6.find(']').ok_or("unclosed [ in the host")?;
            let port = v6[end + 1..].strip_prefix(':');
            (&v6[..end], port)
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    let port = match port {
        Some(p) => p.parse::<u16>().map_err(|_| format!("bad port {p:?}"))?,
        None if tls => 443,
        None => 80,
    };
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Ok(Target {
        tls,
        authority,
        host,
        path,
    })
}

/// Starts an image archive download (see [`get`]).
pub(super) async fn download(
    url: &str,
    connect_timeout: Duration,
    tls: impl FnOnce() -> Result<ArchiveTls, String>,
) -> Result<Incoming, ImageError> {
    get(url, connect_timeout, tls)
        .await
        .map_err(|e| ImageError::Download {
            url: e.url,
            reason: e.reason,
        })
}

/// Starts a GET of `url` (http or https, status 200 only, no redirects); the caller
/// streams the body. `connect_timeout` bounds the connection and the TLS handshake; the
/// body's reads are bounded by the caller.
pub async fn get(
    url: &str,
    connect_timeout: Duration,
    tls: impl FnOnce() -> Result<ArchiveTls, String>,
) -> Result<Incoming, DownloadError> {
    let failed = |reason: String| DownloadError {
        url: url.to_string(),
        reason,
    };
    let target = target(url).map_err(failed)?;
    let mut req = Request::new(transport::empty_body());
    *req.method_mut() = Method::GET;
    *req.uri_mut() = target
        .path
        .parse()
        .map_err(|e| failed(format!("bad path: {e}")))?;
    if let Ok(host) = target.authority.parse() {
        req.headers_mut().insert(HOST, host);
    }
    let bounded = |what: String| {
        move |_| {
            failed(format!(
                "{what} did not complete within {connect_timeout:?}"
            ))
        }
    };
    let tcp = tokio::time::timeout(connect_timeout, TcpStream::connect(&target.authority))
        .await
        .map_err(bounded(format!("connecting to {}", target.authority)))?
        .map_err(|e| failed(format!("cannot connect to {}: {e}", target.authority)))?;
    let connected = if target.tls {
        let config = tls().map_err(failed)?.config;
        let name = ServerName::try_from(target.host.to_string())
            .map_err(|e| failed(format!("bad server name {:?}: {e}", target.host)))?;
        let handshake = tokio_rustls::TlsConnector::from(config).connect(name, tcp);
        let session = tokio::time::timeout(connect_timeout, handshake)
            .await
            .map_err(bounded(format!(
                "the TLS handshake with {}",
                target.authority
            )))?
            .map_err(|e| {
                failed(format!(
                    "TLS handshake with {} failed: {e}",
                    target.authority
                ))
            })?;
        Stream::Tls(Box::new(session))
    } else {
        Stream::Plain(tcp)
    };
    let resp = match connected {
        Stream::Plain(s) => transport::send_on(s, req).await,
        Stream::Tls(s) => transport::send_on(s, req).await,
    }
    .map_err(|e| failed(e.to_string()))?;
    if resp.status() != StatusCode::OK {
        return Err(failed(format!("unexpected status {}", resp.status())));
    }
    Ok(resp.into_body())
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_default_ports_by_scheme_and_keep_v6_brackets() {
        let t = target("https://example.com/a/b.tar").expect("https");
        assert_eq!(
            t,
            Target {
                tls: true,
                authority: "example.com:443".into(),
                host: "example.com",
                path: "/a/b.tar"
            }
        );
        let t = target("http://127.0.0.1:8080").expect("http");
        assert_eq!(
            (t.tls, t.authority.as_str(), t.path),
            (false, "127.0.0.1:8080", "/")
        );
        let t = target("https://[::1]:8443/x.tar").expect("v6");
        assert_eq!((t.authority.as_str(), t.host), ("[::1]:8443", "::1"));
        let t = target("https://[::1]/x.tar").expect("v6 no port");
        assert_eq!(t.authority, "[::1]:443");
    }

    #[test]
    fn targets_refuse_what_they_cannot_fetch() {
        for (url, why) in [
            ("ftp://h/x.tar", "only http"),
            ("https:///x.tar", "no host"),
            ("https://u:p@h/x.tar", "credentials"),
            ("https://h:99999/x.tar", "bad port"),
            ("https://[::1/x.tar", "unclosed"),
        ] {
            let err = target(url).expect_err(url);
            assert!(err.contains(why), "{url}: {err}");
        }
    }

    #[test]
    fn pem_roots_need_at_least_one_certificate() {
        let err = ArchiveTls::from_pem(b"nothing here").expect_err("empty");
        assert!(err.contains("no CERTIFICATE"), "{err}");
    }
}

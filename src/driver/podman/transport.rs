//! Where podman listens and how one HTTP/1.1 exchange reaches it.
//!
//! Every call opens its own connection: unix-socket connects are cheap, a restarted podman
//! service never leaves stale pooled connections behind, and hijacked exec streams and
//! long-lived event streams never hold a pool slot.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use super::error::PodmanError;

/// Error type of request bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A request body: empty, JSON, or a streamed upload.
pub type RequestBody = UnsyncBoxBody<Bytes, BoxError>;

pub(crate) fn empty_body() -> RequestBody {
    Empty::<Bytes>::new().map_err(|e| match e {}).boxed_unsync()
}

pub(crate) fn full_body(data: impl Into<Bytes>) -> RequestBody {
    Full::new(data.into())
        .map_err(|e| match e {})
        .boxed_unsync()
}

/// A podman API address, parsed from the socket strings the Go driver accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    /// `http://host:port[/base]`: `authority` is `host:port`, `base` has no trailing `/`.
    Tcp {
        authority: String,
        base: String,
    },
}

impl Endpoint {
    /// Accepts `unix:///abs/path`, `unix:/abs/path`, `unix://abs/path` and `http://host[:port][/base]`.
    ///
    /// Differs from the Go driver: `unix://run/podman.sock` names `/run/podman.sock` (Go's URL
    /// parser would take `run` as a host and drop it), and anything that is neither `unix:` nor
    /// `http://` is rejected here instead of failing at the first request.
    pub fn parse(socket: &str) -> Result<Self, PodmanError> {
        let invalid = |reason: &str| PodmanError::InvalidSocket {
            socket: socket.to_string(),
            reason: reason.to_string(),
        };
        if let Some(rest) = socket.strip_prefix("unix:") {
            let path = rest.trim_start_matches('/');
            if path.is_empty() {
                return Err(invalid("no socket path after `unix:`"));
            }
            if !rest.starts_with('/') {
                return Err(invalid("the socket path must be absolute"));
            }
            return Ok(Endpoint::Unix(PathBuf::from(format!("/{path}"))));
        }
        if let Some(rest) = socket.strip_prefix("http://") {
            let (authority, base) = match rest.find('/') {
                Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
                None => (rest, ""),
            };
            if authority.is_empty() {
                return Err(invalid("no host in the http URL"));
            }
            let authority = if has_port(authority) {
                authority.to_string()
            } else {
                format!("{authority}:80")
            };
            return Ok(Endpoint::Tcp {
                authority,
                base: base.to_string(),
            });
        }
        if socket.starts_with("https://") {
            return Err(invalid("TLS is not supported; use unix: or http://"));
        }
        Err(invalid("expected unix:/path or http://host:port"))
    }

    /// Path prefix every request path is appended to.
    pub(crate) fn base_path(&self) -> &str {
        match self {
            Endpoint::Unix(_) => "",
            Endpoint::Tcp { base, .. } => base,
        }
    }

    pub(crate) fn host_header(&self) -> &str {
        match self {
            // Podman ignores the host of unix-socket requests; HTTP/1.1 needs one.
            Endpoint::Unix(_) => "podman",
            Endpoint::Tcp { authority, .. } => authority,
        }
    }

    async fn connect(&self) -> io::Result<Conn> {
        match self {
            Endpoint::Unix(path) => UnixStream::connect(path).await.map(Conn::Unix),
            Endpoint::Tcp { authority, .. } => {
                TcpStream::connect(authority.as_str()).await.map(Conn::Tcp)
            }
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(path) => write!(f, "unix://{}", path.display()),
            Endpoint::Tcp { authority, base } => write!(f, "http://{authority}{base}"),
        }
    }
}

/// `host:port`, `[v6]:port` have a port; `host`, `[v6]` do not.
fn has_port(authority: &str) -> bool {
    match authority.rfind(':') {
        Some(i) => !authority[i..].contains(']'),
        None => false,
    }
}

/// One connection to podman, unix or TCP.
#[derive(Debug)]
enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tcp(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tcp(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Unix(s) => Pin::new(s).poll_flush(cx),
            Conn::Tcp(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tcp(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Connects (within `connect_timeout`), sends `req` and waits for the response head
/// without a deadline: podman sends the head of event and follow-log streams only
/// with the first item.
pub(crate) async fn exchange(
    endpoint: &Endpoint,
    operation: &str,
    connect_timeout: Duration,
    req: Request<RequestBody>,
) -> Result<Response<Incoming>, PodmanError> {
    let transport = |source: TransportError| PodmanError::Transport {
        operation: operation.to_string(),
        endpoint: endpoint.to_string(),
        source: Arc::new(source),
    };
    let conn = tokio::time::timeout(connect_timeout, endpoint.connect())
        .await
        .map_err(|_| PodmanError::Timeout {
            operation: operation.to_string(),
            timeout: connect_timeout,
        })?
        .map_err(|e| transport(TransportError::Io(e)))?;
    send_on(conn, req).await.map_err(transport)
}

/// Sends `req` as the one HTTP/1.1 exchange of an open connection (any byte stream: a
/// socket, or a TLS session over one) and returns the response head.
pub(crate) async fn send_on<C>(
    conn: C,
    req: Request<RequestBody>,
) -> Result<Response<Incoming>, TransportError>
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(conn))
        .await
        .map_err(TransportError::Http)?;
    // Ends when the response is consumed or dropped; errors surface through `send_request`
    // and the body.
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });
    sender.send_request(req).await.map_err(TransportError::Http)
}

/// I/O or HTTP failure below the libpod layer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransportError {
    #[error("{0}")]
    Io(io::Error),
    #[error("{0}")]
    Http(hyper::Error),
}

/// Builds `?k=v&...` with every key and value percent-encoded.
#[derive(Debug, Default)]
pub(crate) struct Query(String);

impl Query {
    pub(crate) fn new() -> Self {
        Query::default()
    }

    pub(crate) fn push(&mut self, key: &str, value: impl std::fmt::Display) -> &mut Self {
        self.0.push(if self.0.is_empty() { '?' } else { '&' });
        self.0.push_str(&encode(key));
        self.0.push('=');
        self.0.push_str(&encode(&value.to_string()));
        self
    }

    pub(crate) fn push_opt<V: std::fmt::Display>(
        &mut self,
        key: &str,
        value: Option<V>,
    ) -> &mut Self {
        if let Some(v) = value {
            self.push(key, v);
        }
        self
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters (also for path segments).
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_socket_forms() {
        for s in [
            "unix:///run/podman/podman.sock",
            "unix:/run/podman/podman.sock",
            "unix:////run/podman/podman.sock",
        ] {
            assert_eq!(
                Endpoint::parse(s).expect(s),
                Endpoint::Unix(PathBuf::from("/run/podman/podman.sock")),
                "{s}"
            );
        }
        // Go's URL parsing quirk fixed: two slashes still mean an absolute path.
        assert_eq!(
            Endpoint::parse("unix://run/podman/podman.sock").expect("two slashes"),
            Endpoint::Unix(PathBuf::from("/run/podman/podman.sock"))
        );
    }

    #[test]
    fn http_base_urls() {
        assert_eq!(
            Endpoint::parse("http://127.0.0.1:8080").expect("http"),
            Endpoint::Tcp {
                authority: "127.0.0.1:8080".into(),
                base: String::new()
            }
        );
        assert_eq!(
            Endpoint::parse("http://podman.local/api/").expect("base path"),
            Endpoint::Tcp {
                authority: "podman.local:80".into(),
                base: "/api".into()
            }
        );
        assert_eq!(
            Endpoint::parse("http://[::1]").expect("v6"),
            Endpoint::Tcp {
                authority: "[::1]:80".into(),
                base: String::new()
            }
        );
        assert_eq!(
            Endpoint::parse("http://[::1]:9").expect("v6 port"),
            Endpoint::Tcp {
                authority: "[::1]:9".into(),
                base: String::new()
            }
        );
    }

    #[test]
    fn invalid_sockets_are_rejected_with_a_reason() {
        for (s, why) in [
            ("unix:", "no socket path"),
            ("unix:relative.sock", "absolute"),
            ("https://h:1", "TLS"),
            ("/run/podman.sock", "expected"),
            ("http://", "no host"),
        ] {
            let e = Endpoint::parse(s).expect_err(s).to_string();
            assert!(e.contains(why), "{s}: {e}");
        }
    }

    #[test]
    fn query_values_are_percent_encoded() {
        let mut q = Query::new();
        q.push("filters", r#"{"label":["a=b c"]}"#)
            .push("since", "2024-01-01T00:00:00+01:00")
            .push_opt::<u8>("none", None)
            .push_opt("n", Some(5));
        assert_eq!(
            q.as_str(),
            "?filters=%7B%22label%22%3A%5B%22a%3Db%20c%22%5D%7D&since=2024-01-01T00%3A00%3A00%2B01%3A00&n=5"
        );
        assert_eq!(Query::new().as_str(), "");
        assert_eq!(encode("a/b@sha256:x"), "a%2Fb%40sha256%3Ax");
    }
}

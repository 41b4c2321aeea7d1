//! `--log-http FILE`: a recording proxy in front of each podman socket. The driver under
//! test and the raw client both talk to the proxy, so the log holds every request and
//! response exactly as sent, without the driver knowing. The driver's client opens one
//! connection per call, so each logged connection is one exchange (or one hijacked exec
//! session or followed stream, logged when it closes).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::driver::podman::Endpoint;

/// Bytes kept per direction and connection; the rest is counted, not logged.
const KEEP: usize = 16 * 1024;

/// The shared log file.
#[derive(Clone)]
pub struct HttpLog {
    file: Arc<Mutex<tokio::fs::File>>,
    started: Instant,
    exchanges: Arc<AtomicU64>,
}

impl HttpLog {
    /// Creates (or truncates) the log, readable by its owner only: it records whole
    /// exchanges. A symlink at `path` is refused (O_NOFOLLOW), not followed.
    pub fn create(path: &Path) -> std::io::Result<HttpLog> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)?;
        // An existing file keeps its mode on open: narrow it.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        Ok(HttpLog {
            file: Arc::new(Mutex::new(tokio::fs::File::from_std(file))),
            started: Instant::now(),
            exchanges: Arc::new(AtomicU64::new(0)),
        })
    }

    async fn write(&self, record: String) {
        let mut file = self.file.lock().await;
        // A log write failure must not fail the run; the log is a diagnostic.
        let _ = file.write_all(record.as_bytes()).await;
        let _ = file.flush().await;
    }
}

/// A running proxy; stops when dropped.
pub struct Proxy {
    /// URL to give the driver instead of the real socket.
    pub url: String,
    accept_loop: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl Listener {
    async fn accept(&self) -> std::io::Result<Box<dyn Stream>> {
        Ok(match self {
            Listener::Unix(listener) => Box::new(listener.accept().await?.0),
            Listener::Tcp(listener) => Box::new(listener.accept().await?.0),
        })
    }
}

async fn connect(upstream: &Endpoint) -> std::io::Result<Box<dyn Stream>> {
    Ok(match upstream {
        Endpoint::Unix(path) => Box::new(UnixStream::connect(path).await?),
        Endpoint::Tcp { authority, .. } => Box::new(TcpStream::connect(authority.as_str()).await?),
    })
}

/// Starts a proxy for socket `name` at `upstream_url`, listening in `dir` (unix) or on
/// loopback (http).
pub async fn start_proxy(
    log: HttpLog,
    name: &str,
    upstream_url: &str,
    dir: &Path,
) -> Result<Proxy, String> {
    let upstream = Endpoint::parse(upstream_url).map_err(|err| err.to_string())?;
    let (listener, url) = match &upstream {
        Endpoint::Unix(_) => {
            let path = dir.join("podman-log-http.sock");
            let listener = UnixListener::bind(&path)
                .map_err(|err| format!("cannot listen on {}: {err}", path.display()))?;
            (
                Listener::Unix(listener),
                format!("unix://{}", path.display()),
            )
        }
        Endpoint::Tcp { base, .. } => {
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|err| format!("cannot listen on loopback: {err}"))?;
            let port = listener.local_addr().map_err(|err| err.to_string())?.port();
            (
                Listener::Tcp(listener),
                format!("http://127.0.0.1:{port}{base}"),
            )
        }
    };
    let name = name.to_string();
    let accept_loop = tokio::spawn(async move {
        while let Ok(client) = listener.accept().await {
            let (log, upstream, name) = (log.clone(), upstream.clone(), name.clone());
            tokio::spawn(async move { relay(log, &upstream, &name, client).await });
        }
    });
    Ok(Proxy { url, accept_loop })
}

/// Copies both directions until both end, then logs what went through.
async fn relay(log: HttpLog, upstream: &Endpoint, name: &str, client: Box<dyn Stream>) {
    let number = log.exchanges.fetch_add(1, Ordering::Relaxed) + 1;
    let opened = Instant::now();
    let offset = opened.duration_since(log.started);
    let server = match connect(upstream).await {
        Ok(server) => server,
        Err(err) => {
            log.write(format!(
                "### {number} socket={name} t=+{:.3}s\n!!! cannot connect to {upstream}: {err}\n\n",
                offset.as_secs_f64()
            ))
            .await;
            return;
        }
    };
    let (client_read, client_write) = tokio::io::split(client);
    let (server_read, server_write) = tokio::io::split(server);
    let (request, response) = tokio::join!(
        pump(client_read, server_write),
        pump(server_read, client_write)
    );
    log.write(format!(
        "### {number} socket={name} t=+{:.3}s duration={:.3}s\n>>> {} bytes\n{}\n<<< {} bytes\n{}\n\n",
        offset.as_secs_f64(),
        opened.elapsed().as_secs_f64(),
        request.total,
        render(&request),
        response.total,
        render(&response),
    ))
    .await;
}

/// What went one way: the first [`KEEP`] bytes and the total.
struct Captured {
    kept: Vec<u8>,
    total: usize,
}

async fn pump(mut from: impl AsyncRead + Unpin, mut to: impl AsyncWrite + Unpin) -> Captured {
    let mut captured = Captured {
        kept: Vec::new(),
        total: 0,
    };
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let room = KEEP.saturating_sub(captured.kept.len());
        captured.kept.extend_from_slice(&buffer[..n.min(room)]);
        captured.total += n;
        if to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
    }
    // Pass the end of input on (e.g. exec stdin closed).
    let _ = to.shutdown().await;
    captured
}

/// Headers whose values are credentials; the log shows `<redacted>` instead.
const SECRET_HEADERS: [&str; 4] = [
    "x-registry-auth",
    "x-registry-config",
    "authorization",
    "proxy-authorization",
];

/// Replaces the value of every [`SECRET_HEADERS`] line of `text` (whichever request
/// of a connection it is in).
fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let secret = line.split_once(':').is_some_and(|(name, _)| {
            SECRET_HEADERS
                .iter()
                .any(|secret| name.trim().eq_ignore_ascii_case(secret))
        });
        match line.split_once(':') {
            Some((name, _)) if secret => {
                out.push_str(name);
                out.push_str(": <redacted>");
                if line.ends_with('\n') {
                    out.push('\n');
                }
            }
            _ => out.push_str(line),
        }
    }
    out
}

/// Head as text; body as text when it is text, else a byte count. Credential headers
/// are redacted.
fn render(captured: &Captured) -> String {
    redact(&render_raw(captured))
}

fn render_raw(captured: &Captured) -> String {
    let bytes = &captured.kept;
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(bytes.len(), |i| i + 4);
    let (head, body) = bytes.split_at(split);
    let mut text = String::from_utf8_lossy(head).replace("\r\n", "\n");
    match std::str::from_utf8(body) {
        Ok(body) if !body.contains('\0') => text.push_str(body),
        _ => text.push_str(&format!("[{} bytes of binary data]", body.len())),
    }
    if captured.total > bytes.len() {
        text.push_str(&format!(
            "\n[... {} more bytes]",
            captured.total - bytes.len()
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_heads_text_and_binary_bodies() {
        let text = Captured {
            kept: b"GET /x HTTP/1.1\r\nHost: podman\r\n\r\n{\"a\":1}".to_vec(),
            total: 44,
        };
        assert_eq!(
            render(&text),
            "GET /x HTTP/1.1\nHost: podman\n\n{\"a\":1}\n[... 4 more bytes]"
        );
        let binary = Captured {
            kept: b"HTTP/1.1 200 OK\r\n\r\n\x01\0\0\0\0\0\0\x02hi".to_vec(),
            total: 29,
        };
        assert_eq!(
            render(&binary),
            "HTTP/1.1 200 OK\n\n[10 bytes of binary data]"
        );
    }

    #[test]
    fn credential_headers_are_redacted() {
        let captured = Captured {
            kept: b"POST /v4.0.0/libpod/images/pull HTTP/1.1\r\nHost: d\r\nX-Registry-Auth: eyJzZWNyZXQiOiJ4In0=\r\nx-registry-config:eyJ9\r\nAuthorization: Basic dTpw\r\nX-Other: kept\r\n\r\n".to_vec(),
            total: 154,
        };
        let text = render(&captured);
        for secret in ["eyJzZWNyZXQiOiJ4In0=", "eyJ9", "dTpw"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert!(text.contains("\nX-Registry-Auth: <redacted>\n"), "{text}");
        assert!(text.contains("\nx-registry-config: <redacted>\n"), "{text}");
        assert!(text.contains("\nAuthorization: <redacted>\n"), "{text}");
        assert!(text.contains("\nX-Other: kept\n"), "{text}");
    }

    #[test]
    fn the_log_is_private_and_never_a_followed_symlink() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("http.log");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        HttpLog::create(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), 0);
        let target = dir.path().join("target");
        std::fs::write(&target, "keep").unwrap();
        let link = dir.path().join("link.log");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(HttpLog::create(&link).is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    }

    #[tokio::test]
    async fn proxies_and_logs_an_exchange() {
        let dir = tempfile::tempdir().unwrap();
        let upstream_path = dir.path().join("upstream.sock");
        let upstream = UnixListener::bind(&upstream_path).unwrap();
        tokio::spawn(async move {
            let (mut conn, _) = upstream.accept().await.unwrap();
            let mut request = vec![0u8; 64];
            let n = conn.read(&mut request).await.unwrap();
            assert!(request[..n].starts_with(b"GET /ping"));
            conn.write_all(b"HTTP/1.1 200 OK\r\n\r\npong")
                .await
                .unwrap();
        });
        let log_path = dir.path().join("http.log");
        let log = HttpLog::create(&log_path).unwrap();
        let proxy_dir = dir.path().join("proxy");
        std::fs::create_dir(&proxy_dir).unwrap();
        let proxy = start_proxy(
            log,
            "test",
            &format!("unix://{}", upstream_path.display()),
            &proxy_dir,
        )
        .await
        .unwrap();
        let path = proxy.url.strip_prefix("unix://").unwrap();
        let mut client = UnixStream::connect(path).await.unwrap();
        client
            .write_all(b"GET /ping HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        client.shutdown().await.unwrap();
        let mut reply = String::new();
        client.read_to_string(&mut reply).await.unwrap();
        assert_eq!(reply, "HTTP/1.1 200 OK\r\n\r\npong");
        drop(client);
        let mut logged = String::new();
        for _ in 0..50 {
            logged = std::fs::read_to_string(&log_path).unwrap();
            if logged.contains("pong") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(logged.starts_with("### 1 socket=test"), "{logged}");
        assert!(
            logged.contains(">>> 22 bytes\nGET /ping HTTP/1.1\n"),
            "{logged}"
        );
        assert!(
            logged.contains("<<< 23 bytes\nHTTP/1.1 200 OK\n\npong"),
            "{logged}"
        );
    }
}

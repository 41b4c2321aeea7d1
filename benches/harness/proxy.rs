//! A unix-socket proxy in front of the podman service that counts HTTP requests per route,
//! so the bench can say how many API calls a design makes, whoever the client is.
//!
//! Requests are found by parsing each client-to-server byte stream as HTTP/1.1: request
//! line, headers, then `Content-Length` bytes of body. A chunked body or a protocol
//! upgrade (exec/attach) makes the rest of that connection opaque; such connections are
//! counted so a figure can show it was not silently undercounted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use regex::Regex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use super::BenchResult;

/// Requests seen so far, by `METHOD /route` (API version prefix dropped, ids replaced
/// by `{id}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestCounts {
    pub by_route: BTreeMap<String, u64>,
    pub opaque_connections: u64,
}

impl RequestCounts {
    pub fn total(&self) -> u64 {
        self.by_route.values().sum()
    }

    /// What was counted after `earlier`.
    pub fn since(&self, earlier: &RequestCounts) -> RequestCounts {
        let by_route = self
            .by_route
            .iter()
            .filter_map(|(route, n)| {
                let delta = n - earlier.by_route.get(route).copied().unwrap_or(0);
                (delta > 0).then(|| (route.clone(), delta))
            })
            .collect();
        RequestCounts {
            by_route,
            opaque_connections: self.opaque_connections - earlier.opaque_connections,
        }
    }
}

/// When each request was seen, and its route.
type Timeline = Vec<(Instant, String)>;

pub struct CountingProxy {
    path: PathBuf,
    counts: Arc<Mutex<RequestCounts>>,
    timeline: Arc<Mutex<Timeline>>,
    accept: tokio::task::JoinHandle<()>,
}

impl CountingProxy {
    /// Listens on `listen` and forwards every connection to `upstream`.
    pub fn start(listen: &Path, upstream: &Path) -> BenchResult<Self> {
        let listener = UnixListener::bind(listen)
            .map_err(|e| format!("listen on {}: {e}", listen.display()))?;
        let counts = Arc::new(Mutex::new(RequestCounts::default()));
        let timeline = Arc::new(Mutex::new(Vec::new()));
        let upstream = upstream.to_path_buf();
        let recorder = Recorder {
            counts: counts.clone(),
            timeline: timeline.clone(),
            routes: Arc::new(RouteNames::new()),
        };
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let recorder = recorder.clone();
                tokio::spawn(async move {
                    if let Ok(server) = UnixStream::connect(&upstream).await {
                        relay(client, server, recorder).await;
                    }
                });
            }
        });
        Ok(CountingProxy {
            path: listen.to_path_buf(),
            counts,
            timeline,
            accept,
        })
    }

    /// `unix://` URL of the proxy.
    pub fn url(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    pub fn counts(&self) -> RequestCounts {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Requests seen after `start`, as offsets from it.
    pub fn timeline_since(&self, start: Instant) -> Vec<(Duration, String)> {
        self.timeline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(at, _)| *at >= start)
            .map(|(at, route)| (*at - start, route.clone()))
            .collect()
    }
}

#[derive(Clone)]
struct Recorder {
    counts: Arc<Mutex<RequestCounts>>,
    timeline: Arc<Mutex<Timeline>>,
    routes: Arc<RouteNames>,
}

impl Recorder {
    fn record(&self, routes: Vec<String>, became_opaque: bool) {
        let now = Instant::now();
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let mut timeline = self.timeline.lock().unwrap_or_else(|e| e.into_inner());
        for route in routes {
            *counts.by_route.entry(route.clone()).or_default() += 1;
            timeline.push((now, route));
        }
        if became_opaque {
            counts.opaque_connections += 1;
        }
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.accept.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn relay(client: UnixStream, server: UnixStream, recorder: Recorder) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let responses = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    });
    let mut scanner = RequestScanner::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match client_read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let was_opaque = scanner.is_opaque();
        let mut seen = Vec::new();
        scanner.feed(&buf[..n], |line| seen.push(recorder.routes.route(line)));
        let became_opaque = scanner.is_opaque() && !was_opaque;
        if !seen.is_empty() || became_opaque {
            recorder.record(seen, became_opaque);
        }
        if server_write.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = server_write.shutdown().await;
    let _ = responses.await;
}

/// Turns a request line into a route name.
struct RouteNames {
    version: Regex,
    id: Regex,
}

impl RouteNames {
    fn new() -> Self {
        RouteNames {
            version: Regex::new(r"^/v[0-9][0-9.]*").expect("static regex"),
            // Container/image ids and the names of the bench's containers (they carry a
            // UUID), so one route covers every container.
            id: Regex::new(
                r"/([0-9a-f]{12,64}|[A-Za-z0-9_.-]*[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}[A-Za-z0-9_.-]*)(/|$)",
            )
            .expect("static regex"),
        }
    }

    fn route(&self, request_line: &str) -> String {
        let mut parts = request_line.split(' ');
        let method = parts.next().unwrap_or("?");
        let target = parts.next().unwrap_or("?");
        let path = target.split('?').next().unwrap_or(target);
        let path = self.version.replace(path, "");
        let path = self.id.replace_all(&path, "/{id}$2");
        format!("{method} {path}")
    }
}

/// Finds request lines in one connection's client-to-server bytes.
#[derive(Debug, Default)]
pub struct RequestScanner {
    state: ScanState,
}

#[derive(Debug)]
enum ScanState {
    /// Collecting a request head until the blank line.
    Head(Vec<u8>),
    /// Skipping this many body bytes.
    Body(u64),
    /// Chunked body or upgraded connection: no longer parsed.
    Opaque,
}

impl Default for ScanState {
    fn default() -> Self {
        ScanState::Head(Vec::new())
    }
}

impl RequestScanner {
    pub fn is_opaque(&self) -> bool {
        matches!(self.state, ScanState::Opaque)
    }

    /// Feeds the next bytes; `on_request` gets each complete request line.
    pub fn feed(&mut self, mut data: &[u8], mut on_request: impl FnMut(&str)) {
        while !data.is_empty() {
            match &mut self.state {
                ScanState::Opaque => return,
                ScanState::Body(left) => {
                    let take = usize::try_from(*left).unwrap_or(usize::MAX).min(data.len());
                    *left -= take as u64;
                    data = &data[take..];
                    if *left == 0 {
                        self.state = ScanState::default();
                    }
                }
                ScanState::Head(head) => {
                    let before = head.len();
                    head.extend_from_slice(data);
                    let Some(end) = find(head, b"\r\n\r\n") else {
                        return;
                    };
                    let consumed = end + 4 - before;
                    data = &data[consumed..];
                    let text = String::from_utf8_lossy(&head[..end]).into_owned();
                    let mut lines = text.split("\r\n");
                    on_request(lines.next().unwrap_or(""));
                    self.state = next_state(lines);
                }
            }
        }
    }
}

fn next_state<'a>(headers: impl Iterator<Item = &'a str>) -> ScanState {
    let mut body = 0u64;
    for header in headers {
        let Some((name, value)) = header.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        match name.as_str() {
            "content-length" => body = value.parse().unwrap_or(0),
            "transfer-encoding" if value.eq_ignore_ascii_case("chunked") => {
                return ScanState::Opaque
            }
            "upgrade" => return ScanState::Opaque,
            _ => {}
        }
    }
    if body == 0 {
        ScanState::default()
    } else {
        ScanState::Body(body)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The scanner must count every pipelined request exactly once however the stream is
/// split, skip bodies that look like requests, and give up on chunked bodies.
pub fn self_check() -> BenchResult<()> {
    let body = "GET /not/a/request HTTP/1.1\r\n\r\n";
    let stream = format!(
        "GET /v4.3.1/libpod/containers/stats?stream=false HTTP/1.1\r\nHost: d\r\n\r\n\
         POST /v4.3.1/libpod/containers/create HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}\
         GET /v4.3.1/libpod/containers/0123456789abcdef/json HTTP/1.1\r\n\r\n\
         POST /libpod/images/load HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
         GET /after/opaque HTTP/1.1\r\n\r\n",
        body.len()
    );
    let routes = RouteNames::new();
    for split in [1, 3, 7, 64, stream.len()] {
        let mut scanner = RequestScanner::default();
        let mut seen = Vec::new();
        for piece in stream.as_bytes().chunks(split) {
            scanner.feed(piece, |line| seen.push(routes.route(line)));
        }
        let expected = [
            "GET /libpod/containers/stats",
            "POST /libpod/containers/create",
            "GET /libpod/containers/{id}/json",
            "POST /libpod/images/load",
        ];
        if seen != expected || !scanner.is_opaque() {
            return Err(format!(
                "request counting is wrong with {split}-byte reads: {seen:?}"
            ));
        }
    }
    Ok(())
}

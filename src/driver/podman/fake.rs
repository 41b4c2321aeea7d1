//! A scripted libpod for unit tests (issue 14): an HTTP/1.1 server on a unix socket that
//! answers every request from a handler, so the core's races with podman (a kill refused
//! because the process just ended, an inspect that fails meanwhile) are replayed exactly,
//! without a podman service and without waiting for the timing to happen.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::sync::{broadcast, Notify};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// One scripted answer.
pub(crate) enum Reply {
    /// A status and a JSON body.
    Json(u16, String),
    /// A 200 whose body never ends (the events stream of a podman with nothing to say).
    Silent,
    /// `_ping`'s answer: "OK" with the `Libpod-API-Version` header.
    Ping(&'static str),
    /// No answer at all, not even headers (podman 4 answers an events request only once
    /// the first event exists).
    Hang,
    /// A 200 whose body is every line sent on the channel from then on (an events stream
    /// the test feeds).
    Lines(broadcast::Receiver<String>),
    /// 101 Switching Protocols (an attached exec start): `output` is written on the raw
    /// stream, which ends once `close` is notified.
    Upgrade { output: Vec<u8>, close: Arc<Notify> },
}

impl Reply {
    /// Podman's error document for `status` with `message`.
    pub(crate) fn error(status: u16, message: &str) -> Reply {
        Reply::Json(
            status,
            serde_json::json!({"cause": message, "message": message, "response": status})
                .to_string(),
        )
    }
}

type Handler = dyn Fn(&str, &str) -> Reply + Send + Sync;

/// A request the fake got: `METHOD /path?query`, and its body.
struct Seen {
    line: String,
    body: String,
}

/// The fake service: its socket URL, and the requests it got.
pub(crate) struct FakePodman {
    _dir: tempfile::TempDir,
    url: String,
    requests: Arc<Mutex<Vec<Seen>>>,
    server: tokio::task::JoinHandle<()>,
}

impl FakePodman {
    /// Serves `handler(method, path_and_query)` until dropped. Needs a tokio runtime.
    pub(crate) fn start(handler: impl Fn(&str, &str) -> Reply + Send + Sync + 'static) -> Self {
        let dir = tempfile::tempdir().expect("fake podman dir");
        let socket = dir.path().join("podman.sock");
        let listener = tokio::net::UnixListener::bind(&socket).expect("fake podman socket");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let seen = requests.clone();
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (handler, seen) = (handler.clone(), seen.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |mut req: Request<hyper::body::Incoming>| {
                            let target = req
                                .uri()
                                .path_and_query()
                                .map_or_else(|| req.uri().path().to_string(), |p| p.to_string());
                            let method = req.method().to_string();
                            let (handler, seen) = (handler.clone(), seen.clone());
                            async move {
                                let upgrade = hyper::upgrade::on(&mut req);
                                let body = req
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                                    .unwrap_or_default();
                                seen.lock().unwrap_or_else(|e| e.into_inner()).push(Seen {
                                    line: format!("{method} {target}"),
                                    body,
                                });
                                let reply = handler(&method, &target);
                                if let Reply::Upgrade { output, close } = reply {
                                    tokio::spawn(async move {
                                        let Ok(upgraded) = upgrade.await else { return };
                                        let mut raw = TokioIo::new(upgraded);
                                        let _ = raw.write_all(&output).await;
                                        close.notified().await;
                                        let _ = raw.shutdown().await;
                                    });
                                    return Ok::<_, Infallible>(switching_protocols());
                                }
                                if let Reply::Hang = reply {
                                    futures::future::pending::<()>().await;
                                }
                                Ok::<_, Infallible>(respond(reply))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        FakePodman {
            url: format!("unix://{}", socket.display()),
            _dir: dir,
            requests,
            server,
        }
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The requests so far whose `METHOD target` contains `part`.
    pub(crate) fn requests_to(&self, part: &str) -> Vec<String> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|r| r.line.contains(part))
            .map(|r| r.line.clone())
            .collect()
    }

    /// The bodies of the requests so far whose `METHOD target` contains `part`.
    pub(crate) fn bodies_to(&self, part: &str) -> Vec<String> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|r| r.line.contains(part))
            .map(|r| r.body.clone())
            .collect()
    }
}

impl Drop for FakePodman {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn respond(reply: Reply) -> Response<BoxBody<Bytes, Infallible>> {
    let version = match &reply {
        Reply::Ping(version) => Some(*version),
        _ => None,
    };
    let (status, body) = match reply {
        Reply::Ping(_) => (200, Full::new(Bytes::from_static(b"OK")).boxed()),
        Reply::Lines(lines) => {
            let lines = futures::stream::unfold(lines, |mut lines| async move {
                loop {
                    match lines.recv().await {
                        Ok(line) => {
                            let frame = Frame::data(Bytes::from(format!("{line}\n")));
                            return Some((Ok::<_, Infallible>(frame), lines));
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            });
            (200, StreamBody::new(lines).boxed())
        }
        // Answered before `respond` is reached.
        Reply::Hang | Reply::Upgrade { .. } => (500, Full::new(Bytes::new()).boxed()),
        Reply::Json(status, body) => (status, Full::new(Bytes::from(body)).boxed()),
        Reply::Silent => (
            200,
            StreamBody::new(futures::stream::pending::<Result<Frame<Bytes>, Infallible>>()).boxed(),
        ),
    };
    let mut response = Response::new(body);
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    if let Some(version) = version {
        response.headers_mut().insert(
            "Libpod-API-Version",
            hyper::header::HeaderValue::from_static(version),
        );
    }
    response
}

fn switching_protocols() -> Response<BoxBody<Bytes, Infallible>> {
    let mut response = Response::new(Full::new(Bytes::new()).boxed());
    *response.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
    response.headers_mut().insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("Upgrade"),
    );
    response.headers_mut().insert(
        hyper::header::UPGRADE,
        hyper::header::HeaderValue::from_static("tcp"),
    );
    response
}

//! Thin libpod REST client: one method per endpoint the driver uses.
//!
//! Paths carry the `/v4.0.0/libpod` prefix (podman 4.0 and later serve it), except `_ping`.
//! Non-streaming calls are bounded by the client deadline; streaming calls (logs follow,
//! events, stats stream, exec attach, image pull and load, container wait) are bounded only
//! while connecting, and their callers decide how long to follow them.

pub mod error;
#[cfg(test)]
pub(crate) mod fake;
pub mod frames;
pub mod models;
pub mod transport;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Incoming;
use hyper::header::{CONNECTION, CONTENT_TYPE, HOST, UPGRADE};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncWrite, WriteHalf};
use tokio_util::codec::FramedRead;
use tokio_util::io::{ReaderStream, StreamReader};

pub use error::PodmanError;
pub use frames::{Frame, FrameDecoder, FrameError, StreamKind};
pub use models::{
    parse_time, ContainerConfig, ContainerInspect, ContainerState, ContainerStats, CreateResponse,
    Event, EventActor, ExecConfig, ExecInspect, HostConfig, HostInfo, ImageConfig, ImageInspect,
    Info, ListContainer, NetworkEndpoint, NetworkSettings, OciRuntimeInfo, PortBinding,
    RemoteSocketInfo, SecurityInfo, Ulimit, Version, VersionComponent, VersionInfo,
};
pub use transport::{BoxError, Endpoint, RequestBody};

use models::{decode, LoadReport, PullReport, RemoveReport, StatsReport};
use transport::{empty_body, exchange, full_body, Query};

const API_PREFIX: &str = "/v4.0.0/libpod";
/// Deadline of non-streaming calls when the operator sets none (`client_http_timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Error bodies of streaming calls are read with this much patience.
const JSON: &str = "application/json";
/// How often a GET is tried when podman answers with its transient nil-pointer panic.
const GET_ATTEMPTS: u32 = 4;
/// Pause before the n-th retry: n times this.
const GET_RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Stream of log or exec output frames, stdout and stderr kept apart.
pub type FrameStream = BoxStream<'static, Result<Frame, PodmanError>>;
/// Stream of podman events.
pub type EventStream = BoxStream<'static, Result<Event, PodmanError>>;
/// Stream of stats samples, one `Vec` (one entry per container) per interval.
pub type StatsStream = BoxStream<'static, Result<Vec<ContainerStats>, PodmanError>>;

/// A libpod API client for one podman socket. Cheap to clone; share it freely.
#[derive(Clone)]
pub struct PodmanClient {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Endpoint,
    timeout: Duration,
}

impl std::fmt::Debug for PodmanClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodmanClient")
            .field("endpoint", &self.inner.endpoint)
            .field("timeout", &self.inner.timeout)
            .finish()
    }
}

/// Conditions `container_wait` can wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCondition {
    Configured,
    Created,
    Running,
    Stopped,
    Paused,
    Exited,
    Removing,
}

impl WaitCondition {
    fn as_str(self) -> &'static str {
        match self {
            WaitCondition::Configured => "configured",
            WaitCondition::Created => "created",
            WaitCondition::Running => "running",
            WaitCondition::Stopped => "stopped",
            WaitCondition::Paused => "paused",
            WaitCondition::Exited => "exited",
            WaitCondition::Removing => "removing",
        }
    }
}

/// Which containers `container_list` returns.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Include stopped containers.
    pub all: bool,
    /// `key` or `key=value` label filters; all must match.
    pub labels: Vec<String>,
    /// Name filters (podman matches them as regular expressions).
    pub names: Vec<String>,
}

/// Options of `container_delete`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeleteOptions {
    /// Stop a running container first.
    pub force: bool,
    /// Also remove the container's anonymous volumes.
    pub volumes: bool,
    /// How long a forced removal lets the container stop before killing it
    /// (podman's default: the container's stop timeout).
    pub stop_timeout: Option<Duration>,
}

/// Options of `container_logs`.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub follow: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// Only lines logged after this time.
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
    /// Prefix each payload with `<RFC 3339 time> ` (podman 4.3: whole seconds).
    pub timestamps: bool,
    /// Only the last `n` lines.
    pub tail: Option<u64>,
}

/// Options of `events`.
#[derive(Debug, Clone, Default)]
pub struct EventsOptions {
    /// `key` or `key=value` label filters.
    pub labels: Vec<String>,
    /// Event types, e.g. `container`.
    pub types: Vec<String>,
    /// Event actions, e.g. `died`, `oom`.
    pub actions: Vec<String>,
    /// Container names or ids.
    pub containers: Vec<String>,
    /// Replay events since this time, then follow.
    pub since: Option<SystemTime>,
    /// Stop at this time (the stream then ends).
    pub until: Option<SystemTime>,
}

/// Registry credentials for one pull. `Debug` never shows the password.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RegistryCredentials {
    pub username: String,
    pub password: String,
    /// Registry the credentials are for (`host[:port]`); may be empty.
    pub server_address: String,
}

impl std::fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("server_address", &self.server_address)
            .finish()
    }
}

/// The header that carries registry credentials to podman.
pub const REGISTRY_AUTH: &str = "X-Registry-Auth";

/// An `X-Registry-Auth` value, marked sensitive so that hyper and anything that prints
/// headers (`Debug`, HTTP/2 HPACK indexing) treat it as a secret. `None` if the encoded
/// value is not a valid header value.
pub fn registry_auth_header(encoded: &str) -> Option<hyper::header::HeaderValue> {
    let mut value = hyper::header::HeaderValue::from_str(encoded).ok()?;
    value.set_sensitive(true);
    Some(value)
}

impl RegistryCredentials {
    /// The `X-Registry-Auth` value: URL-safe base64 of the JSON auth config, empty fields omitted.
    fn header_value(&self) -> String {
        #[derive(Serialize)]
        struct AuthConfig<'a> {
            #[serde(skip_serializing_if = "str::is_empty")]
            username: &'a str,
            #[serde(skip_serializing_if = "str::is_empty")]
            password: &'a str,
            #[serde(skip_serializing_if = "str::is_empty")]
            serveraddress: &'a str,
        }
        let json = serde_json::to_vec(&AuthConfig {
            username: &self.username,
            password: &self.password,
            serveraddress: &self.server_address,
        })
        .unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE.encode(json)
    }
}

/// What `image_pull` pulls and how.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// Image reference as podman resolves it (short names go through registries.conf).
    pub reference: String,
    pub tls_verify: bool,
    pub credentials: Option<RegistryCredentials>,
    pub arch: Option<String>,
    pub os: Option<String>,
    pub variant: Option<String>,
}

/// An attached exec session: output frames and the stdin writer.
pub struct ExecSession {
    /// Non-tty: frames as podman multiplexes them. Tty: raw bytes, reported as stdout.
    pub output: FrameStream,
    /// Stdin of the process; `shutdown()` half-closes it (the process sees EOF).
    pub input: ExecInput,
}

/// Write side of an attached exec session.
pub struct ExecInput {
    inner: WriteHalf<TokioIo<hyper::upgrade::Upgraded>>,
}

impl AsyncWrite for ExecInput {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl PodmanClient {
    /// A client for `socket` (see [`Endpoint::parse`]). `timeout` bounds every non-streaming
    /// call and every connect; `None` means [`DEFAULT_TIMEOUT`].
    ///
    /// Differs from the Go driver, where an unset `client_http_timeout` means no deadline.
    pub fn new(socket: &str, timeout: Option<Duration>) -> Result<Self, PodmanError> {
        Ok(PodmanClient {
            inner: Arc::new(Inner {
                endpoint: Endpoint::parse(socket)?,
                timeout: timeout.unwrap_or(DEFAULT_TIMEOUT),
            }),
        })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.endpoint
    }

    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    // ---- system -------------------------------------------------------------------------

    /// `GET /libpod/_ping`: the `Libpod-API-Version` header (e.g. `4.3.1`).
    pub async fn ping(&self) -> Result<String, PodmanError> {
        let op = "ping podman";
        let req = self.request(Method::GET, "/libpod/_ping".to_string(), empty_body());
        let deadline = self.timeout();
        let fut = async {
            let resp = exchange(self.endpoint(), op, deadline, req).await?;
            let status = resp.status();
            let version = resp
                .headers()
                .get("Libpod-API-Version")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let body = self.collect(op, resp.into_body()).await?;
            if !status.is_success() {
                return Err(PodmanError::from_status(op, status.as_u16(), &body));
            }
            if version.is_empty() {
                return Err(PodmanError::Failed {
                    operation: op.into(),
                    message: "no Libpod-API-Version header: not a podman service".into(),
                });
            }
            Ok(version)
        };
        self.bounded(op, deadline, fut).await
    }

    /// `GET /libpod/info`.
    pub async fn info(&self) -> Result<Info, PodmanError> {
        self.get_json("read podman info", libpod("/info")).await
    }

    /// `GET /libpod/version`.
    pub async fn version(&self) -> Result<Version, PodmanError> {
        self.get_json("read podman version", libpod("/version"))
            .await
    }

    // ---- images -------------------------------------------------------------------------

    /// `GET /libpod/images/{name}/exists`.
    pub async fn image_exists(&self, name: &str) -> Result<bool, PodmanError> {
        let path = libpod(&format!("/images/{}/exists", transport::encode(name)));
        self.exists(&format!("check image {name}"), path).await
    }

    /// `DELETE /libpod/images/{name}` without force: podman refuses while a container
    /// uses the image (409), which is what image garbage collection wants.
    pub async fn image_remove(&self, name: &str) -> Result<(), PodmanError> {
        let op = format!("remove image {name}");
        let path = libpod(&format!("/images/{}", transport::encode(name)));
        let req = self.request(Method::DELETE, path, empty_body());
        self.call(&op, req, self.timeout()).await.map(|_| ())
    }

    /// `GET /libpod/images/{name}/json`.
    pub async fn image_inspect(&self, name: &str) -> Result<ImageInspect, PodmanError> {
        let path = libpod(&format!("/images/{}/json", transport::encode(name)));
        self.get_json(&format!("inspect image {name}"), path).await
    }

    /// `POST /libpod/images/pull`; `progress` receives each progress line. Returns the
    /// image id. An `error` line in the reply fails the pull with podman's message.
    /// No total deadline: bound it with the pull timeout.
    pub async fn image_pull(
        &self,
        opts: &PullOptions,
        mut progress: impl FnMut(&str) + Send,
    ) -> Result<String, PodmanError> {
        let op = format!("pull image {}", opts.reference);
        let mut q = Query::new();
        q.push("reference", &opts.reference)
            .push("tlsVerify", opts.tls_verify)
            .push("quiet", false)
            .push_opt("Arch", opts.arch.as_deref().filter(|s| !s.is_empty()))
            .push_opt("OS", opts.os.as_deref().filter(|s| !s.is_empty()))
            .push_opt("Variant", opts.variant.as_deref().filter(|s| !s.is_empty()));
        let mut req = self.request(
            Method::POST,
            libpod(&format!("/images/pull{}", q.as_str())),
            empty_body(),
        );
        if let Some(value) = opts
            .credentials
            .as_ref()
            .and_then(|c| registry_auth_header(&c.header_value()))
        {
            req.headers_mut().insert(REGISTRY_AUTH, value);
        }
        let body = self.stream(&op, req).await?;
        let mut reports = json_lines::<PullReport>(op.clone(), body);
        let mut image_id = String::new();
        while let Some(report) = reports.next().await {
            let report = report?;
            if !report.error.is_empty() {
                return Err(PodmanError::Failed {
                    operation: op,
                    message: report.error.trim().to_string(),
                });
            }
            let line = report.stream.trim_end();
            if !line.is_empty() {
                progress(line);
            }
            if !report.id.is_empty() {
                image_id = report.id;
            }
        }
        if image_id.is_empty() {
            return Err(PodmanError::Failed {
                operation: op,
                message: "pull ended without an image id".into(),
            });
        }
        Ok(image_id)
    }

    /// `POST /libpod/images/load` with a tar archive (docker-archive or oci-archive) as the
    /// streamed body. Returns the loaded image names. No total deadline.
    pub async fn image_load<S, E>(&self, archive: S) -> Result<Vec<String>, PodmanError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        let op = "load image archive";
        let body = StreamBody::new(archive.map_ok(hyper::body::Frame::data).map_err(Into::into))
            .boxed_unsync();
        let mut req = self.request(Method::POST, libpod("/images/load"), body);
        req.headers_mut().insert(
            CONTENT_TYPE,
            "application/x-tar".parse().expect("static header"),
        );
        let reply = self.stream(op, req).await?;
        let body = self
            .bounded(op, self.timeout(), self.collect(op, reply))
            .await?;
        let report: LoadReport = decode(op, &body)?;
        if report.names.is_empty() {
            return Err(PodmanError::Failed {
                operation: op.into(),
                message: "podman loaded the archive but named no image".into(),
            });
        }
        Ok(report.names)
    }

    /// `POST /libpod/images/import`: a root filesystem tarball becomes the image
    /// `reference`, with Containerfile `changes` (`ENTRYPOINT [...]`, `LABEL k=v`) applied,
    /// as `podman import --change` does. Returns the image id.
    pub async fn image_import(
        &self,
        reference: &str,
        changes: &[String],
        tarball: Vec<u8>,
    ) -> Result<String, PodmanError> {
        let op = format!("import image {reference}");
        let mut q = Query::new();
        q.push("reference", reference);
        for change in changes {
            q.push("changes", change);
        }
        let mut req = self.request(
            Method::POST,
            libpod(&format!("/images/import{}", q.as_str())),
            full_body(tarball),
        );
        req.headers_mut().insert(
            CONTENT_TYPE,
            "application/x-tar".parse().expect("static header"),
        );
        let body = self.call(&op, req, self.timeout()).await?;
        #[derive(serde::Deserialize)]
        struct ImportReport {
            #[serde(rename = "Id", default)]
            id: String,
        }
        let report: ImportReport = decode(&op, &body)?;
        Ok(report.id)
    }

    // ---- containers ---------------------------------------------------------------------

    /// `POST /libpod/containers/create` with a SpecGenerator.
    pub async fn container_create<S: serde::Serialize + ?Sized>(
        &self,
        spec: &S,
    ) -> Result<CreateResponse, PodmanError> {
        let encode = |operation: &str, e: serde_json::Error| PodmanError::Decode {
            operation: operation.to_string(),
            message: e.to_string(),
        };
        let spec = serde_json::to_value(spec).map_err(|e| encode("create container", e))?;
        let name = spec.get("name").and_then(Value::as_str).unwrap_or("");
        let op = format!("create container {name}");
        let body = serde_json::to_vec(&spec).map_err(|e| encode(&op, e))?;
        let req = self.json_request(Method::POST, libpod("/containers/create"), body);
        let body = self.call(&op, req, self.timeout()).await?;
        decode(&op, &body)
    }

    /// `POST /libpod/containers/{id}/start`. Starting a running container succeeds.
    pub async fn container_start(&self, id: &str) -> Result<(), PodmanError> {
        let path = container_path(id, "/start", &Query::new());
        self.post_empty(&format!("start container {id}"), path, self.timeout())
            .await
    }

    /// `POST /libpod/containers/{id}/init`: the OCI runtime creates the container (mounts
    /// made, process not yet run).
    pub async fn container_init(&self, id: &str) -> Result<(), PodmanError> {
        let path = container_path(id, "/init", &Query::new());
        self.post_empty(&format!("initialize container {id}"), path, self.timeout())
            .await
    }

    /// `GET /libpod/containers/{id}/json`.
    pub async fn container_inspect(&self, id: &str) -> Result<ContainerInspect, PodmanError> {
        let op = format!("inspect container {id}");
        let raw: Value = self
            .get_json(&op, container_path(id, "/json", &Query::new()))
            .await?;
        let mut inspect: ContainerInspect =
            serde_json::from_value(raw.clone()).map_err(|e| PodmanError::Decode {
                operation: op,
                message: e.to_string(),
            })?;
        inspect.raw = raw;
        Ok(inspect)
    }

    /// `POST /libpod/containers/{id}/wait`: waits until one condition holds and returns the
    /// exit code. No deadline: it lasts as long as the container does.
    pub async fn container_wait(
        &self,
        id: &str,
        conditions: &[WaitCondition],
    ) -> Result<i32, PodmanError> {
        let op = format!("wait for container {id}");
        let mut q = Query::new();
        for c in conditions {
            q.push("condition", c.as_str());
        }
        let req = self.request(Method::POST, container_path(id, "/wait", &q), empty_body());
        let body = self.stream(&op, req).await?;
        let body = self.collect(&op, body).await?;
        let code: Value = decode(&op, &body)?;
        code.as_i64()
            .and_then(|c| i32::try_from(c).ok())
            .ok_or_else(|| PodmanError::Decode {
                operation: op,
                message: format!("expected an exit code, got {code}"),
            })
    }

    /// `POST /libpod/containers/{id}/stop?timeout=`: podman sends the container's stop
    /// signal, waits `timeout`, then kills. Stopping a stopped container succeeds.
    pub async fn container_stop(&self, id: &str, timeout: Duration) -> Result<(), PodmanError> {
        let mut q = Query::new();
        q.push("timeout", timeout.as_secs());
        self.post_empty(
            &format!("stop container {id}"),
            container_path(id, "/stop", &q),
            self.timeout() + timeout,
        )
        .await
    }

    /// `POST /libpod/containers/{id}/kill?signal=` (a name like `SIGTERM`/`TERM` or a number).
    pub async fn container_kill(&self, id: &str, signal: &str) -> Result<(), PodmanError> {
        let mut q = Query::new();
        q.push("signal", signal);
        self.post_empty(
            &format!("send {signal} to container {id}"),
            container_path(id, "/kill", &q),
            self.timeout(),
        )
        .await
    }

    /// `DELETE /libpod/containers/{id}`.
    pub async fn container_delete(&self, id: &str, opts: DeleteOptions) -> Result<(), PodmanError> {
        let op = format!("remove container {id}");
        let mut q = Query::new();
        q.push("force", opts.force)
            .push("volumes", opts.volumes)
            .push_opt("timeout", opts.stop_timeout.map(|t| t.as_secs()));
        let req = self.request(Method::DELETE, container_path(id, "", &q), empty_body());
        let deadline = self.timeout() + opts.stop_timeout.unwrap_or(Duration::from_secs(10));
        let body = self.call(&op, req, deadline).await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let reports: Vec<RemoveReport> = decode(&op, &body)?;
        match reports
            .into_iter()
            .find_map(|r| r.err.filter(|e| !e.is_null()))
        {
            Some(err) => Err(PodmanError::Failed {
                operation: op,
                message: err.as_str().map(str::to_string).unwrap_or(err.to_string()),
            }),
            None => Ok(()),
        }
    }

    /// `GET /libpod/containers/json`.
    pub async fn container_list(
        &self,
        opts: &ListOptions,
    ) -> Result<Vec<ListContainer>, PodmanError> {
        let mut filters = serde_json::Map::new();
        if !opts.labels.is_empty() {
            filters.insert("label".into(), opts.labels.clone().into());
        }
        if !opts.names.is_empty() {
            filters.insert("name".into(), opts.names.clone().into());
        }
        let mut q = Query::new();
        q.push("all", opts.all);
        if !filters.is_empty() {
            q.push("filters", Value::Object(filters));
        }
        let list: Option<Vec<ListContainer>> = self
            .get_json(
                "list containers",
                libpod(&format!("/containers/json{}", q.as_str())),
            )
            .await?;
        Ok(list.unwrap_or_default())
    }

    /// One stats sample of several containers in one request
    /// (`GET /libpod/containers/stats?stream=false`). An empty `ids` means every running
    /// container. Podman fails the whole request when one container is gone.
    pub async fn container_stats(
        &self,
        ids: &[String],
    ) -> Result<Vec<ContainerStats>, PodmanError> {
        let op = format!("read stats of {}", describe_ids(ids));
        let path = stats_path(ids, false, None);
        let body = self
            .call(
                &op,
                self.request(Method::GET, path, empty_body()),
                self.timeout(),
            )
            .await?;
        let report: StatsReport = decode(&op, &body)?;
        stats_result(&op, report)
    }

    /// A stats sample of several containers every `interval` (whole seconds, at least 1).
    pub async fn container_stats_stream(
        &self,
        ids: &[String],
        interval: Duration,
    ) -> Result<StatsStream, PodmanError> {
        let op = format!("stream stats of {}", describe_ids(ids));
        let path = stats_path(ids, true, Some(interval.as_secs().max(1)));
        let body = self
            .stream(&op, self.request(Method::GET, path, empty_body()))
            .await?;
        Ok(json_lines::<StatsReport>(op.clone(), body)
            .map(move |r| r.and_then(|report| stats_result(&op, report)))
            .boxed())
    }

    /// `GET /libpod/containers/{id}/logs`: frames with stdout and stderr kept apart (also
    /// for tty containers, which libpod reports as stdout). Without `follow` the stream ends
    /// after the logged lines; with it, when the container stops.
    pub async fn container_logs(
        &self,
        id: &str,
        opts: &LogOptions,
    ) -> Result<FrameStream, PodmanError> {
        let op = format!("read logs of container {id}");
        let mut q = Query::new();
        q.push("follow", opts.follow)
            .push("stdout", opts.stdout)
            .push("stderr", opts.stderr)
            .push("timestamps", opts.timestamps)
            .push_opt("since", opts.since.map(format_time))
            .push_opt("until", opts.until.map(format_time))
            .push_opt("tail", opts.tail);
        let req = self.request(Method::GET, container_path(id, "/logs", &q), empty_body());
        let body = self.stream(&op, req).await?;
        Ok(frames(op, body))
    }

    // ---- events -------------------------------------------------------------------------

    /// `GET /libpod/events?stream=true` with filters. The call returns once podman sends the
    /// first event (podman 4 sends no reply head before that).
    pub async fn events(&self, opts: &EventsOptions) -> Result<EventStream, PodmanError> {
        let op = "follow podman events".to_string();
        let mut filters = serde_json::Map::new();
        for (key, values) in [
            ("label", &opts.labels),
            ("type", &opts.types),
            ("event", &opts.actions),
            ("container", &opts.containers),
        ] {
            if !values.is_empty() {
                filters.insert(key.into(), values.clone().into());
            }
        }
        let mut q = Query::new();
        q.push("stream", true)
            .push_opt("since", opts.since.map(format_time))
            .push_opt("until", opts.until.map(format_time));
        if !filters.is_empty() {
            q.push("filters", Value::Object(filters));
        }
        let req = self.request(
            Method::GET,
            libpod(&format!("/events{}", q.as_str())),
            empty_body(),
        );
        let body = self.stream(&op, req).await?;
        Ok(json_lines::<Event>(op, body).boxed())
    }

    // ---- exec ---------------------------------------------------------------------------

    /// `POST /libpod/containers/{id}/exec`: creates an exec session, returns its id.
    pub async fn exec_create(
        &self,
        container: &str,
        config: &ExecConfig,
    ) -> Result<String, PodmanError> {
        let op = format!("create exec session in container {container}");
        let body = serde_json::to_vec(config).map_err(|e| PodmanError::Decode {
            operation: op.clone(),
            message: e.to_string(),
        })?;
        let req = self.json_request(
            Method::POST,
            container_path(container, "/exec", &Query::new()),
            body,
        );
        let body = self.call(&op, req, self.timeout()).await?;
        #[derive(serde::Deserialize)]
        struct Created {
            #[serde(rename = "Id")]
            id: String,
        }
        Ok(decode::<Created>(&op, &body)?.id)
    }

    /// `POST /libpod/exec/{id}/start`, attached: the connection is upgraded to a raw
    /// bidirectional stream. `tty` must match the session's `Tty`.
    /// Starts an attached exec session. `size` (height, width) sets the terminal's size
    /// before the process starts, which a resize sent afterwards cannot promise.
    pub async fn exec_start(
        &self,
        exec_id: &str,
        tty: bool,
        size: Option<(u16, u16)>,
    ) -> Result<ExecSession, PodmanError> {
        let op = format!("start exec session {exec_id}");
        let mut body = serde_json::json!({"Detach": false, "Tty": tty});
        if let Some((height, width)) = size.filter(|_| tty) {
            body["h"] = height.into();
            body["w"] = width.into();
        }
        let body = body.to_string();
        let mut req = self.json_request(
            Method::POST,
            libpod(&format!("/exec/{}/start", transport::encode(exec_id))),
            body.into_bytes(),
        );
        req.headers_mut()
            .insert(CONNECTION, "Upgrade".parse().expect("static header"));
        req.headers_mut()
            .insert(UPGRADE, "tcp".parse().expect("static header"));
        let deadline = self.timeout();
        let upgraded = self
            .bounded(&op, deadline, async {
                let resp = exchange(self.endpoint(), &op, deadline, req).await?;
                let status = resp.status();
                if status != StatusCode::SWITCHING_PROTOCOLS {
                    let body = self.collect(&op, resp.into_body()).await?;
                    if status.is_success() {
                        return Err(PodmanError::Failed {
                            operation: op.clone(),
                            message: format!("expected 101 Switching Protocols, got {status}"),
                        });
                    }
                    return Err(PodmanError::from_status(&op, status.as_u16(), &body));
                }
                hyper::upgrade::on(resp)
                    .await
                    .map_err(|e| self.transport_error(&op, e))
            })
            .await?;
        let (read, write) = tokio::io::split(TokioIo::new(upgraded));
        let output = if tty {
            let op = op.clone();
            ReaderStream::new(read)
                .map(move |chunk| {
                    chunk
                        .map(|payload| Frame::new(StreamKind::Stdout, payload))
                        .map_err(|e| PodmanError::Transport {
                            operation: op.clone(),
                            endpoint: String::new(),
                            source: Arc::new(e),
                        })
                })
                .boxed()
        } else {
            frame_stream(op, FramedRead::new(read, FrameDecoder::new()))
        };
        Ok(ExecSession {
            output,
            input: ExecInput { inner: write },
        })
    }

    /// `POST /libpod/exec/{id}/resize`: the session's terminal size.
    pub async fn exec_resize(
        &self,
        exec_id: &str,
        height: u16,
        width: u16,
    ) -> Result<(), PodmanError> {
        let mut q = Query::new();
        q.push("h", height).push("w", width);
        self.post_empty(
            &format!("resize exec session {exec_id}"),
            libpod(&format!(
                "/exec/{}/resize{}",
                transport::encode(exec_id),
                q.as_str()
            )),
            self.timeout(),
        )
        .await
    }

    /// `GET /libpod/exec/{id}/json`.
    pub async fn exec_inspect(&self, exec_id: &str) -> Result<ExecInspect, PodmanError> {
        self.get_json(
            &format!("inspect exec session {exec_id}"),
            libpod(&format!("/exec/{}/json", transport::encode(exec_id))),
        )
        .await
    }

    // ---- networks -----------------------------------------------------------------------

    /// `GET /libpod/networks/{name}/exists`.
    pub async fn network_exists(&self, name: &str) -> Result<bool, PodmanError> {
        let path = libpod(&format!("/networks/{}/exists", transport::encode(name)));
        self.exists(&format!("check network {name}"), path).await
    }

    /// `GET /libpod/volumes/{name}/exists`.
    pub async fn volume_exists(&self, name: &str) -> Result<bool, PodmanError> {
        let path = libpod(&format!("/volumes/{}/exists", transport::encode(name)));
        self.exists(&format!("check volume {name}"), path).await
    }

    /// `POST /libpod/volumes/create`. Creating a volume that exists fails (409).
    pub async fn volume_create(
        &self,
        name: &str,
        driver: &str,
        options: &std::collections::BTreeMap<String, String>,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), PodmanError> {
        let op = format!("create volume {name}");
        let mut spec = serde_json::json!({"Name": name, "Label": labels, "Options": options});
        if !driver.is_empty() {
            spec["Driver"] = Value::String(driver.to_string());
        }
        let body = serde_json::to_vec(&spec).map_err(|e| PodmanError::Decode {
            operation: op.clone(),
            message: e.to_string(),
        })?;
        let req = self.json_request(Method::POST, libpod("/volumes/create"), body);
        self.call(&op, req, self.timeout()).await.map(|_| ())
    }

    // ---- plumbing -----------------------------------------------------------------------

    fn request(&self, method: Method, path: String, body: RequestBody) -> Request<RequestBody> {
        let mut req = Request::new(body);
        *req.method_mut() = method;
        let uri = format!("{}{path}", self.endpoint().base_path());
        // Paths are built from percent-encoded parts, so they always parse.
        *req.uri_mut() = uri.parse().unwrap_or_default();
        if let Ok(host) = self.endpoint().host_header().parse() {
            req.headers_mut().insert(HOST, host);
        }
        req
    }

    fn json_request(&self, method: Method, path: String, body: Vec<u8>) -> Request<RequestBody> {
        let mut req = self.request(method, path, full_body(body));
        req.headers_mut()
            .insert(CONTENT_TYPE, JSON.parse().expect("static header"));
        req
    }

    fn transport_error(
        &self,
        op: &str,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> PodmanError {
        PodmanError::Transport {
            operation: op.to_string(),
            endpoint: self.endpoint().to_string(),
            source: Arc::new(e),
        }
    }

    async fn bounded<T>(
        &self,
        op: &str,
        deadline: Duration,
        fut: impl std::future::Future<Output = Result<T, PodmanError>>,
    ) -> Result<T, PodmanError> {
        tokio::time::timeout(deadline, fut)
            .await
            .map_err(|_| PodmanError::Timeout {
                operation: op.to_string(),
                timeout: deadline,
            })?
    }

    async fn collect(&self, op: &str, body: Incoming) -> Result<Bytes, PodmanError> {
        Ok(body
            .collect()
            .await
            .map_err(|e| self.transport_error(op, e))?
            .to_bytes())
    }

    /// A whole exchange within `deadline`; non-2xx replies become typed errors.
    async fn call(
        &self,
        op: &str,
        req: Request<RequestBody>,
        deadline: Duration,
    ) -> Result<Bytes, PodmanError> {
        let (status, body) = self.call_status(op, req, deadline).await?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(PodmanError::from_status(op, status.as_u16(), &body))
        }
    }

    async fn call_status(
        &self,
        op: &str,
        req: Request<RequestBody>,
        deadline: Duration,
    ) -> Result<(StatusCode, Bytes), PodmanError> {
        self.bounded(op, deadline, async {
            let resp = exchange(self.endpoint(), op, deadline, req).await?;
            let status = resp.status();
            let body = self.collect(op, resp.into_body()).await?;
            Ok((status, body))
        })
        .await
    }

    /// Opens a streaming reply: connect within the deadline, then no deadline.
    async fn stream(&self, op: &str, req: Request<RequestBody>) -> Result<Incoming, PodmanError> {
        let resp = exchange(self.endpoint(), op, self.timeout(), req).await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp.into_body());
        }
        let body = self
            .bounded(op, self.timeout(), self.collect(op, resp.into_body()))
            .await?;
        Err(PodmanError::from_status(op, status.as_u16(), &body))
    }

    /// A GET: idempotent, so asked again (a few times, briefly apart) when podman answers
    /// with a transient failure ([`PodmanError::is_retryable_read`]: its nil-pointer
    /// panic, or a container process that ended while podman read it).
    async fn get_json<T: DeserializeOwned>(
        &self,
        op: &str,
        path: String,
    ) -> Result<T, PodmanError> {
        let mut attempt = 1;
        loop {
            let req = self.request(Method::GET, path.clone(), empty_body());
            match self.call(op, req, self.timeout()).await {
                Ok(body) => return decode(op, &body),
                Err(e) if e.is_retryable_read() && attempt < GET_ATTEMPTS => {
                    tokio::time::sleep(GET_RETRY_PAUSE * attempt).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// POST without body; 304 (already in that state) counts as success.
    async fn post_empty(
        &self,
        op: &str,
        path: String,
        deadline: Duration,
    ) -> Result<(), PodmanError> {
        let req = self.request(Method::POST, path, empty_body());
        let (status, body) = self.call_status(op, req, deadline).await?;
        if status.is_success() || status == StatusCode::NOT_MODIFIED {
            Ok(())
        } else {
            Err(PodmanError::from_status(op, status.as_u16(), &body))
        }
    }

    /// 204 → true, 404 → false. Retried like [`Self::get_json`].
    async fn exists(&self, op: &str, path: String) -> Result<bool, PodmanError> {
        let mut attempt = 1;
        loop {
            let req = self.request(Method::GET, path.clone(), empty_body());
            let (status, body) = self.call_status(op, req, self.timeout()).await?;
            let e = match status {
                s if s.is_success() => return Ok(true),
                StatusCode::NOT_FOUND => return Ok(false),
                s => PodmanError::from_status(op, s.as_u16(), &body),
            };
            if !e.is_retryable_read() || attempt >= GET_ATTEMPTS {
                return Err(e);
            }
            tokio::time::sleep(GET_RETRY_PAUSE * attempt).await;
            attempt += 1;
        }
    }
}

fn libpod(path: &str) -> String {
    format!("{API_PREFIX}{path}")
}

fn container_path(id: &str, action: &str, q: &Query) -> String {
    libpod(&format!(
        "/containers/{}{action}{}",
        transport::encode(id),
        q.as_str()
    ))
}

fn stats_path(ids: &[String], stream: bool, interval: Option<u64>) -> String {
    let mut q = Query::new();
    for id in ids {
        q.push("containers", id);
    }
    q.push("stream", stream).push_opt("interval", interval);
    libpod(&format!("/containers/stats{}", q.as_str()))
}

fn describe_ids(ids: &[String]) -> String {
    if ids.is_empty() {
        "all running containers".to_string()
    } else {
        format!("containers {}", ids.join(", "))
    }
}

fn stats_result(op: &str, report: StatsReport) -> Result<Vec<ContainerStats>, PodmanError> {
    match report.error.filter(|e| !e.is_null()) {
        None => Ok(report.stats),
        Some(err) => {
            let detail = match &err {
                Value::String(s) => s.clone(),
                Value::Object(m) if m.is_empty() => {
                    "podman reported an error without details (a container may be gone)".into()
                }
                other => other.to_string(),
            };
            Err(PodmanError::Failed {
                operation: op.to_string(),
                message: detail,
            })
        }
    }
}

/// RFC 3339 with nanoseconds, which podman's time parser accepts first.
fn format_time(t: SystemTime) -> String {
    let nanos = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_string())
}

fn body_reader(body: Incoming) -> impl tokio::io::AsyncRead + Send + Unpin {
    StreamReader::new(body.into_data_stream().map_err(std::io::Error::other))
}

fn frames(op: String, body: Incoming) -> FrameStream {
    frame_stream(op, FramedRead::new(body_reader(body), FrameDecoder::new()))
}

fn frame_stream<R>(op: String, framed: FramedRead<R, FrameDecoder>) -> FrameStream
where
    R: tokio::io::AsyncRead + Send + Unpin + 'static,
{
    framed
        .map(move |r| {
            r.map_err(|e| match e {
                FrameError::ErrorChannel(message) => PodmanError::Failed {
                    operation: op.clone(),
                    message,
                },
                FrameError::Io(e) => PodmanError::Transport {
                    operation: op.clone(),
                    endpoint: String::new(),
                    source: Arc::new(e),
                },
                other => PodmanError::Decode {
                    operation: op.clone(),
                    message: other.to_string(),
                },
            })
        })
        .boxed()
}

/// Newline-delimited JSON objects (podman's streamed replies), decoded one by one.
fn json_lines<T: DeserializeOwned + Send + 'static>(
    op: String,
    body: Incoming,
) -> BoxStream<'static, Result<T, PodmanError>> {
    struct State {
        body: http_body_util::BodyDataStream<Incoming>,
        buf: BytesMut,
        done: bool,
    }
    let state = State {
        body: body.into_data_stream(),
        buf: BytesMut::new(),
        done: false,
    };
    futures::stream::unfold((state, op), |(mut st, op)| async move {
        loop {
            if let Some(i) = st.buf.iter().position(|b| *b == b'\n') {
                let line = st.buf.split_to(i + 1);
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let item = decode::<T>(&op, &line);
                return Some((item, (st, op)));
            }
            if st.done {
                if st.buf.iter().all(u8::is_ascii_whitespace) {
                    return None;
                }
                let rest = st.buf.split();
                return Some((decode::<T>(&op, &rest), (st, op)));
            }
            match st.body.next().await {
                Some(Ok(chunk)) => st.buf.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    st.done = true;
                    st.buf.clear();
                    let err = PodmanError::Transport {
                        operation: op.clone(),
                        endpoint: String::new(),
                        source: Arc::new(e),
                    };
                    return Some((Err(err), (st, op)));
                }
                None => st.done = true,
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_auth_header_is_url_safe_json_without_empty_fields() {
        let creds = RegistryCredentials {
            username: "u".into(),
            password: "p>?".into(),
            server_address: String::new(),
        };
        let decoded = base64::engine::general_purpose::URL_SAFE
            .decode(creds.header_value())
            .expect("url-safe base64");
        assert_eq!(
            serde_json::from_slice::<Value>(&decoded).expect("json"),
            serde_json::json!({"username": "u", "password": "p>?"})
        );
        assert!(!format!("{creds:?}").contains("p>?"));
    }

    #[test]
    fn registry_auth_header_is_sensitive() {
        let creds = RegistryCredentials {
            username: "u".into(),
            password: "secret".into(),
            server_address: "reg.example".into(),
        };
        let encoded = creds.header_value();
        let value = registry_auth_header(&encoded).expect("a header value");
        assert!(value.is_sensitive());
        assert_eq!(value.as_bytes(), encoded.as_bytes());
        assert!(!format!("{value:?}").contains(&encoded), "{value:?}");
        assert!(registry_auth_header("line\nbreak").is_none());
    }

    #[test]
    fn times_are_sent_as_rfc3339_with_nanoseconds() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(format_time(t), "2023-11-14T22:13:20.123456789Z");
        assert_eq!(parse_time(&format_time(t)), Some(t));
    }

    #[test]
    fn stats_errors_are_typed() {
        let report = StatsReport {
            error: Some(serde_json::json!({})),
            stats: Vec::new(),
        };
        let e = stats_result("read stats", report).expect_err("error reported");
        assert!(e.to_string().contains("without details"), "{e}");
        let ok = StatsReport {
            error: Some(Value::Null),
            stats: vec![ContainerStats::default()],
        };
        assert_eq!(stats_result("read stats", ok).expect("ok").len(), 1);
    }

    /// A one-connection-per-request HTTP server on a unix socket answering with `replies`
    /// in order; returns how many requests it served.
    fn scripted_server(
        path: &std::path::Path,
        replies: Vec<(u16, &'static str)>,
    ) -> tokio::task::JoinHandle<usize> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::UnixListener::bind(path).expect("bind");
        tokio::spawn(async move {
            let mut served = 0;
            for (status, body) in replies {
                let Ok((mut conn, _)) = listener.accept().await else {
                    break;
                };
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let reply = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(reply.as_bytes()).await;
                let _ = conn.shutdown().await;
                served += 1;
            }
            served
        })
    }

    const NIL_PANIC: &str = r#"{"cause":"runtime error: invalid memory address or nil pointer dereference","message":"runtime error: invalid memory address or nil pointer dereference","response":500}"#;

    #[tokio::test]
    async fn reads_are_asked_again_after_podmans_nil_pointer_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("podman.sock");
        let server = scripted_server(
            &path,
            vec![
                (500, NIL_PANIC),
                (500, NIL_PANIC),
                (200, r#"{"Id":"abc","RepoTags":["localhost/x:latest"]}"#),
                (500, NIL_PANIC),
                (204, ""),
            ],
        );
        let c = PodmanClient::new(&format!("unix://{}", path.display()), None).expect("client");
        let image = c.image_inspect("x").await.expect("third answer is used");
        assert_eq!(image.id, "abc");
        assert!(c.image_exists("x").await.expect("second answer is used"));
        assert_eq!(server.await.expect("server"), 5);
    }

    #[tokio::test]
    async fn reads_give_up_after_a_few_panics_and_other_500s_are_not_retried() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("podman.sock");
        let mut replies = vec![(500, NIL_PANIC); GET_ATTEMPTS as usize];
        replies.push((500, r#"{"cause":"boom","message":"boom","response":500}"#));
        let server = scripted_server(&path, replies);
        let c = PodmanClient::new(&format!("unix://{}", path.display()), None).expect("client");
        let e = c.image_inspect("x").await.expect_err("still panicking");
        assert!(e.is_transient_panic(), "{e}");
        let e = c.image_inspect("x").await.expect_err("another 500");
        assert!(
            !e.is_transient_panic() && e.to_string().ends_with("boom"),
            "{e}"
        );
        assert_eq!(server.await.expect("server"), GET_ATTEMPTS as usize + 1);
    }

    #[test]
    fn client_is_clone_send_sync() {
        fn assert_traits<T: Clone + Send + Sync + 'static>() {}
        assert_traits::<PodmanClient>();
        let c = PodmanClient::new("unix:///run/podman/podman.sock", None).expect("client");
        assert_eq!(c.timeout(), DEFAULT_TIMEOUT);
        assert!(PodmanClient::new("tcp://x", None).is_err());
    }
}

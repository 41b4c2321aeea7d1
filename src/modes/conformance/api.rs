//! Raw libpod access for the `api.*` checks and for housekeeping (test image, registry
//! push, label sweeps). Uses the driver's [`PodmanClient`] where it has the call and the
//! crate's transport for the few calls only the harness needs (import, push, export,
//! untyped inspect, the legacy one-container stats endpoint).

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::BodyExt;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::driver::podman::transport::{self, Query, RequestBody};
use crate::driver::podman::{
    registry_auth_header, DeleteOptions, ListOptions, PodmanClient, PodmanError, REGISTRY_AUTH,
};

use super::cli::RegistryTarget;
use super::rootfs::{self, RootfsError};

/// Deadline of one raw call; image transfers get [`TRANSFER_DEADLINE`].
const CALL_DEADLINE: Duration = Duration::from_secs(30);
const TRANSFER_DEADLINE: Duration = Duration::from_secs(300);

/// What a raw call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Podman(#[from] PodmanError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error("{operation}: {source}")]
    Io {
        operation: String,
        source: std::io::Error,
    },
}

/// A raw libpod client for one socket.
#[derive(Clone)]
pub struct Podman {
    client: PodmanClient,
}

impl Podman {
    pub fn connect(url: &str) -> Result<Podman, ApiError> {
        Ok(Podman {
            client: PodmanClient::new(url, Some(CALL_DEADLINE))?,
        })
    }

    /// `GET /libpod/_ping`: the `Libpod-API-Version` header.
    pub async fn ping(&self) -> Result<String, ApiError> {
        Ok(self.client.ping().await?)
    }

    /// `GET /libpod/version`, untyped.
    pub async fn version(&self) -> Result<Value, ApiError> {
        self.get_json("read podman version", "/libpod/version")
            .await
    }

    /// `GET /libpod/info`, untyped (fields drift between versions).
    pub async fn info(&self) -> Result<Value, ApiError> {
        self.get_json("read podman info", "/libpod/info").await
    }

    pub async fn image_exists(&self, reference: &str) -> Result<bool, ApiError> {
        Ok(self.client.image_exists(reference).await?)
    }

    pub async fn inspect_image(&self, reference: &str) -> Result<Value, ApiError> {
        let path = format!("/libpod/images/{}/json", transport::encode(reference));
        self.get_json(&format!("inspect image {reference}"), &path)
            .await
    }

    /// Container inspect as podman sends it (the typed model hides type drifts).
    pub async fn inspect_container(&self, name: &str) -> Result<Value, ApiError> {
        let path = format!("/libpod/containers/{}/json", transport::encode(name));
        self.get_json(&format!("inspect container {name}"), &path)
            .await
    }

    pub async fn container_exists(&self, name: &str) -> Result<bool, ApiError> {
        match self.client.container_inspect(name).await {
            Ok(_) => Ok(true),
            Err(err) if err.is_not_found() => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// `GET /libpod/containers/{name}/stats?stream=false` (the endpoint the Go driver
    /// polls): status and raw body.
    pub async fn stats_once(&self, name: &str) -> Result<(u16, Bytes), ApiError> {
        let op = format!("read stats of {name}");
        let path = format!(
            "/libpod/containers/{}/stats?stream=false",
            transport::encode(name)
        );
        let request = self.request(Method::GET, &path, transport::empty_body());
        self.exchange(&op, request, CALL_DEADLINE).await
    }

    /// Names of all containers (any state) carrying every `key=value` in `labels`.
    pub async fn containers_labelled(&self, labels: &[String]) -> Result<Vec<String>, ApiError> {
        let options = ListOptions {
            all: true,
            labels: labels.to_vec(),
            names: Vec::new(),
        };
        Ok(self
            .client
            .container_list(&options)
            .await?
            .into_iter()
            .map(|c| c.names.into_iter().next().unwrap_or(c.id))
            .collect())
    }

    /// Force-removes the containers carrying every label in `labels`; returns their names.
    pub async fn remove_labelled(&self, labels: &[String]) -> Result<Vec<String>, ApiError> {
        let names = self.containers_labelled(labels).await?;
        for name in &names {
            self.remove_container(name).await?;
        }
        Ok(names)
    }

    pub async fn remove_container(&self, name: &str) -> Result<(), ApiError> {
        let options = DeleteOptions {
            force: true,
            volumes: true,
            stop_timeout: Some(Duration::ZERO),
        };
        match self.client.container_delete(name, options).await {
            Err(err) if !err.is_not_found() => Err(err.into()),
            _ => Ok(()),
        }
    }

    /// Creates (does not start) a container of `image` with `labels`.
    pub async fn create_container(
        &self,
        name: &str,
        image: &str,
        labels: &[(&str, &str)],
    ) -> Result<(), ApiError> {
        let labels: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let spec = json!({"name": name, "image": image, "command": ["true"], "labels": labels});
        self.client.container_create(&spec).await?;
        Ok(())
    }

    /// Removes one image reference (the image itself goes with its last reference).
    pub async fn remove_image(&self, reference: &str) -> Result<(), ApiError> {
        let op = format!("remove image {reference}");
        let path = format!("/libpod/images/{}", transport::encode(reference));
        let request = self.request(Method::DELETE, &path, transport::empty_body());
        let (status, body) = self.exchange(&op, request, CALL_DEADLINE).await?;
        match status {
            200..=299 | 404 => Ok(()),
            _ => Err(PodmanError::from_status(&op, status, &body).into()),
        }
    }

    /// Builds a busybox rootfs from the host binary and imports it as `reference`.
    pub async fn import_busybox(&self, busybox: &Path, reference: &str) -> Result<(), ApiError> {
        let archive = rootfs::busybox_rootfs(busybox).await?;
        let op = format!("import image {reference}");
        let mut query = Query::new();
        query
            .push("reference", reference)
            .push("changes", "CMD [\"/bin/sh\"]")
            .push("changes", "ENV PATH=/bin");
        let path = format!("/libpod/images/import{}", query.as_str());
        let mut request = self.request(Method::POST, &path, transport::full_body(archive));
        request.headers_mut().insert(
            CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/x-tar"),
        );
        let (status, body) = self.exchange(&op, request, TRANSFER_DEADLINE).await?;
        if !(200..300).contains(&status) {
            return Err(PodmanError::from_status(&op, status, &body).into());
        }
        Ok(())
    }

    /// Pushes local image `source` to `destination` in `registry` (no local tag is made).
    pub async fn push_image(
        &self,
        source: &str,
        destination: &str,
        registry: &RegistryTarget,
    ) -> Result<(), ApiError> {
        let op = format!("push {source} to {destination}");
        let mut query = Query::new();
        query
            .push("destination", destination)
            .push("tlsVerify", registry.tls_verify);
        let path = format!(
            "/libpod/images/{}/push{}",
            transport::encode(source),
            query.as_str()
        );
        let mut request = self.request(Method::POST, &path, transport::empty_body());
        if let Some((username, password)) = &registry.credentials {
            let auth = json!({"username": username, "password": password});
            let encoded = base64::engine::general_purpose::URL_SAFE.encode(auth.to_string());
            if let Some(value) = registry_auth_header(&encoded) {
                request.headers_mut().insert(REGISTRY_AUTH, value);
            }
        }
        let (status, body) = self.exchange(&op, request, TRANSFER_DEADLINE).await?;
        if !(200..300).contains(&status) {
            return Err(PodmanError::from_status(&op, status, &body).into());
        }
        // The reply is a stream of JSON progress objects; failures arrive as `error`.
        let text = String::from_utf8_lossy(&body);
        let stream = serde_json::Deserializer::from_str(&text).into_iter::<Value>();
        for item in stream.flatten() {
            if let Some(error) = item.get("error").and_then(Value::as_str) {
                return Err(PodmanError::Failed {
                    operation: op,
                    message: error.to_string(),
                }
                .into());
            }
        }
        Ok(())
    }

    /// Writes `reference` as a docker-archive to `path`.
    pub async fn export_image(&self, reference: &str, path: &Path) -> Result<(), ApiError> {
        let op = format!("export image {reference}");
        let io_error = |source| ApiError::Io {
            operation: format!("write {}", path.display()),
            source,
        };
        let uri = format!(
            "/libpod/images/{}/get?format=docker-archive",
            transport::encode(reference)
        );
        let request = self.request(Method::GET, &uri, transport::empty_body());
        let transfer = async {
            let response =
                transport::exchange(self.client.endpoint(), &op, CALL_DEADLINE, request).await?;
            let status = response.status().as_u16();
            let mut body = response.into_body().into_data_stream();
            if !(200..300).contains(&status) {
                let mut text = Vec::new();
                while let Some(Ok(chunk)) = body.next().await {
                    text.extend_from_slice(&chunk);
                }
                return Err(PodmanError::from_status(&op, status, &text).into());
            }
            let mut file = tokio::fs::File::create(path).await.map_err(io_error)?;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|err| PodmanError::Failed {
                    operation: op.clone(),
                    message: err.to_string(),
                })?;
                file.write_all(&chunk).await.map_err(io_error)?;
            }
            file.flush().await.map_err(io_error)?;
            Ok(())
        };
        tokio::time::timeout(TRANSFER_DEADLINE, transfer)
            .await
            .map_err(|_| PodmanError::Timeout {
                operation: op.clone(),
                timeout: TRANSFER_DEADLINE,
            })?
    }

    async fn get_json(&self, operation: &str, path: &str) -> Result<Value, ApiError> {
        let request = self.request(Method::GET, path, transport::empty_body());
        let (status, body) = self.exchange(operation, request, CALL_DEADLINE).await?;
        if !(200..300).contains(&status) {
            return Err(PodmanError::from_status(operation, status, &body).into());
        }
        serde_json::from_slice(&body).map_err(|err| {
            PodmanError::Decode {
                operation: operation.to_string(),
                message: err.to_string(),
            }
            .into()
        })
    }

    /// A request for libpod `path` (`/libpod/...`, versioned like the driver's client).
    fn request(&self, method: Method, path: &str, body: RequestBody) -> Request<RequestBody> {
        let endpoint = self.client.endpoint();
        let mut request = Request::new(body);
        *request.method_mut() = method;
        // Paths are built from percent-encoded parts, so they always parse.
        *request.uri_mut() = format!("{}/v4.0.0{path}", endpoint.base_path())
            .parse()
            .unwrap_or_default();
        if let Ok(host) = endpoint.host_header().parse() {
            request.headers_mut().insert(HOST, host);
        }
        request
    }

    /// One whole exchange within `deadline`: status and body.
    async fn exchange(
        &self,
        operation: &str,
        request: Request<RequestBody>,
        deadline: Duration,
    ) -> Result<(u16, Bytes), ApiError> {
        let call = async {
            let response =
                transport::exchange(self.client.endpoint(), operation, deadline, request).await?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|err| PodmanError::Failed {
                    operation: operation.to_string(),
                    message: err.to_string(),
                })?
                .to_bytes();
            Ok::<_, PodmanError>((status, body))
        };
        Ok(tokio::time::timeout(deadline, call)
            .await
            .map_err(|_| PodmanError::Timeout {
                operation: operation.to_string(),
                timeout: deadline,
            })??)
    }
}

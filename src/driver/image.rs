//! Image resolution: find the image a task names locally, or load it from an archive, or
//! pull it with the right credentials.
//!
//! Differences from the Go driver, on purpose:
//! * TLS verification defaults to on when the task has no `auth` block (Go sent `false`).
//! * An image already present with the requested `arch`/`os`/`variant` is used without a
//!   pull (Go pulled whenever a platform was set).
//! * `image_pull_timeout` bounds the whole archive download, not a fixed 60 s.
//! * An inspect failure other than "not found" fails with podman's message only if the pull
//!   fails too (Go logged it and pulled; so do we, but nothing is lost).
//! * See `auth` for the credential lookup differences.
//!
//! Registry credentials never appear in progress lines or errors.

mod auth;
mod download;
pub mod pause;
mod reference;
mod singleflight;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;

use super::podman::transport;
use super::podman::{ImageInspect, PodmanClient, PodmanError, PullOptions};
pub use download::{get as http_get, ArchiveTls, DownloadError};
pub use reference::ArchiveFormat;
use reference::{RegistryRef, Source};
use singleflight::SingleFlight;

/// What a task asks for (the lead maps `TaskConfig` onto this).
#[derive(Debug, Clone)]
pub struct ImageRequest {
    pub image: String,
    /// The task's `auth` block; `None` when it has none.
    pub auth: Option<RegistryAuth>,
    pub auth_soft_fail: bool,
    pub force_pull: bool,
    /// Bounds a pull or an archive load (`image_pull_timeout`).
    pub pull_timeout: Duration,
    pub platform: Platform,
}

/// A task `auth` block. `Debug` never shows the password.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
    pub tls_verify: bool,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("tls_verify", &self.tls_verify)
            .finish()
    }
}

/// `arch`, `os`, `variant` overrides; `None` = podman's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Platform {
    pub arch: Option<String>,
    pub os: Option<String>,
    pub variant: Option<String>,
}

impl Platform {
    fn is_default(&self) -> bool {
        self.arch.is_none() && self.os.is_none() && self.variant.is_none()
    }

    /// True when `image` is of this platform (fields left unset match anything).
    fn matches(&self, image: &ImageInspect) -> bool {
        let same = |want: &Option<String>, have: &str| {
            want.as_deref()
                .map_or(true, |w| w.eq_ignore_ascii_case(have))
        };
        same(&self.arch, &image.architecture)
            && same(&self.os, &image.os)
            && same(&self.variant, &image.variant)
    }
}

/// Plugin-level credential sources (`auth.config`, `auth.helper`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthConfig {
    /// containers-auth.json / docker config file; re-read on every pull.
    pub file: Option<PathBuf>,
    /// Helper name (`docker-credential-<name>` on PATH) or absolute path of a helper.
    pub helper: Option<String>,
}

/// What happened while resolving, for progress bars and task events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageProgress {
    /// An archive is being loaded (a path or URL).
    Loading { source: String },
    /// A pull begins (upstream's "Pulling image <name>" event).
    Pulling { image: String },
    /// A progress line of the pull, as podman reports it.
    Line { image: String, line: String },
}

/// Where the image came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageOrigin {
    Local,
    Pulled,
    Loaded,
}

/// The image a container can be created from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    pub id: String,
    /// The name to create the container with.
    pub name: String,
    pub origin: ImageOrigin,
}

/// Why an image could not be made available.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image reference {image:?}: {reason}")]
    InvalidReference { image: String, reason: String },
    #[error("unsupported transport {transport:?} in image {image:?}")]
    UnsupportedTransport { image: String, transport: String },
    #[error("failed to determine authentication for {image:?}: {reason}")]
    Auth { image: String, reason: String },
    #[error("cannot read image archive {path}: {reason}")]
    Archive { path: String, reason: String },
    #[error("failed to download image archive {url}: {reason}")]
    Download { url: String, reason: String },
    #[error("unable to pull image {image}: {source}")]
    Pull {
        image: String,
        #[source]
        source: PodmanError,
    },
    #[error("image {image} was not ready within {timeout:?} (image_pull_timeout)")]
    Timeout { image: String, timeout: Duration },
    #[error("cannot load image archive {source_name}: {source}")]
    Load {
        source_name: String,
        #[source]
        source: PodmanError,
    },
    #[error("resolving image {image} was aborted")]
    Aborted { image: String },
    /// A `localhost/` name is podman's own local storage: no registry can provide it, so
    /// it is not pulled (podman would retry an unreachable "registry" for a minute).
    #[error("image {image} not found locally (a localhost/ image is never pulled: build or load it first, e.g. podman build -t {image} or podman load)")]
    NotFoundLocally { image: String },
}

impl ImageError {
    /// Whether trying again may help (a missing local image stays missing).
    pub fn is_recoverable(&self) -> bool {
        !matches!(
            self,
            ImageError::NotFoundLocally { .. }
                | ImageError::InvalidReference { .. }
                | ImageError::UnsupportedTransport { .. }
        )
    }
}

/// Whether `name` (a normalized reference) names podman's local storage (`localhost/...`)
/// rather than a registry.
pub fn is_local_only(name: &str) -> bool {
    name.starts_with("localhost/")
}

/// What an image string names, told without asking podman.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageKind {
    /// A registry (or local storage) image; `name` is what podman is asked for.
    Registry { name: String, local_only: bool },
    /// Loaded from an archive (a path or URL) when the task starts.
    Archive,
}

/// Classifies an image string as the start path will: the same parser, so a reference
/// refused here is refused at start.
pub fn classify(image: &str) -> Result<ImageKind, ImageError> {
    match reference::parse(image)? {
        Source::Registry(r) => Ok(ImageKind::Registry {
            local_only: is_local_only(&r.name),
            name: r.name,
        }),
        Source::ArchiveFile { .. } | Source::ArchiveUrl { .. } => Ok(ImageKind::Archive),
    }
}

/// What a start would find for an image, checked ahead of it (`validate`, `plan`).
#[derive(Debug, Clone)]
pub enum ImageCheck {
    /// In podman's local storage.
    Local,
    /// Not local, but a registry may provide it when the task starts.
    Pullable,
    /// An archive, loaded at start (not looked at here).
    Archive,
    /// The start would fail with this error.
    Unavailable(ImageError),
}

/// Checks `image` against podman's local storage the way a start resolves it, without
/// pulling: a `localhost/` image missing locally is [`ImageError::NotFoundLocally`], an
/// unparsable reference its parse error. Errors are podman's (not reachable, say).
pub async fn check_image(client: &PodmanClient, image: &str) -> Result<ImageCheck, PodmanError> {
    let (name, local_only) = match classify(image) {
        Ok(ImageKind::Registry { name, local_only }) => (name, local_only),
        Ok(ImageKind::Archive) => return Ok(ImageCheck::Archive),
        Err(e) => return Ok(ImageCheck::Unavailable(e)),
    };
    if client.image_exists(&name).await? {
        Ok(ImageCheck::Local)
    } else if local_only {
        Ok(ImageCheck::Unavailable(ImageError::NotFoundLocally {
            image: name,
        }))
    } else {
        Ok(ImageCheck::Pullable)
    }
}

type Resolution = Result<ResolvedImage, ImageError>;

/// Resolves and pulls images through one podman client. Clone it freely; clones share
/// the in-flight pulls.
#[derive(Clone)]
pub struct ImageResolver {
    client: PodmanClient,
    auth: AuthConfig,
    pulls: Arc<SingleFlight<Resolution>>,
    /// CAs for https archive URLs; `None`: the host's, read on first use.
    archive_tls: Option<ArchiveTls>,
}

impl ImageRequest {
    /// The name to hand podman's create directly when the image needs no check of ours:
    /// a registry image, no `force_pull`, no platform. When podman does not have it,
    /// create fails with "image not known" and [`ImageResolver::ensure`] pulls it.
    pub fn local_name(&self) -> Option<String> {
        if self.force_pull || !self.platform.is_default() {
            return None;
        }
        match reference::parse(&self.image) {
            Ok(Source::Registry(image)) => Some(image.name),
            _ => None,
        }
    }
}

impl ImageResolver {
    pub fn new(client: PodmanClient, auth: AuthConfig) -> Self {
        ImageResolver {
            client,
            auth,
            pulls: SingleFlight::new(),
            archive_tls: None,
        }
    }

    /// Checks https archive servers against these CAs instead of the host's.
    pub fn with_archive_tls(mut self, tls: ArchiveTls) -> Self {
        self.archive_tls = Some(tls);
        self
    }

    /// Makes the requested image available and says which one to use. Concurrent calls for
    /// the same image and platform share one pull (and see its progress).
    pub async fn ensure(
        &self,
        request: &ImageRequest,
        progress: impl Fn(ImageProgress) + Send + Sync,
    ) -> Resolution {
        match reference::parse(&request.image)? {
            Source::Registry(image) => self.ensure_from_registry(image, request, &progress).await,
            Source::ArchiveFile { path, .. } => {
                let shown = path.display().to_string();
                progress(ImageProgress::Loading {
                    source: shown.clone(),
                });
                let load = async {
                    let file =
                        tokio::fs::File::open(&path)
                            .await
                            .map_err(|e| ImageError::Archive {
                                path: shown.clone(),
                                reason: e.to_string(),
                            })?;
                    self.load(&shown, tokio_util::io::ReaderStream::new(file))
                        .await
                };
                bounded(&shown, request.pull_timeout, load).await
            }
            Source::ArchiveUrl { url, .. } => {
                progress(ImageProgress::Loading {
                    source: url.clone(),
                });
                let load = async {
                    let tls = || self.archive_tls.clone().map_or_else(ArchiveTls::system, Ok);
                    let body = download::download(&url, self.client.timeout(), tls).await?;
                    self.load(&url, body.into_data_stream()).await
                };
                bounded(&url, request.pull_timeout, load).await
            }
        }
    }

    async fn load<S, E>(&self, source_name: &str, archive: S) -> Resolution
    where
        S: futures::Stream<Item = Result<bytes::Bytes, E>> + Send + 'static,
        E: Into<transport::BoxError> + 'static,
    {
        let load_error = |source| ImageError::Load {
            source_name: source_name.to_string(),
            source,
        };
        let names = self.client.image_load(archive).await.map_err(load_error)?;
        let name = names.into_iter().next().unwrap_or_default();
        let found = self.client.image_inspect(&name).await.map_err(load_error)?;
        Ok(ResolvedImage {
            id: found.id,
            name,
            origin: ImageOrigin::Loaded,
        })
    }

    async fn ensure_from_registry(
        &self,
        image: RegistryRef,
        request: &ImageRequest,
        progress: &(impl Fn(ImageProgress) + Send + Sync),
    ) -> Resolution {
        if !request.force_pull {
            if let Ok(found) = self.client.image_inspect(&image.name).await {
                if request.platform.matches(&found) {
                    return Ok(ResolvedImage {
                        id: found.id,
                        name: image.name,
                        origin: ImageOrigin::Local,
                    });
                }
            }
        }
        if is_local_only(&image.name) {
            return Err(ImageError::NotFoundLocally { image: image.name });
        }
        progress(ImageProgress::Pulling {
            image: image.name.clone(),
        });
        let key = flight_key(&image.name, &request.platform);
        let client = self.client.clone();
        let auth = self.auth.clone();
        let request = request.clone();
        let name = image.name.clone();
        let work = move |sink: singleflight::ProgressSink| async move {
            let pull = async {
                let credentials =
                    auth::resolve(&image, request.auth.as_ref(), &auth, request.auth_soft_fail)
                        .await
                        .map_err(|reason| ImageError::Auth {
                            image: image.name.clone(),
                            reason,
                        })?;
                let options = PullOptions {
                    reference: image.name.clone(),
                    // No auth block: verify TLS (Go's zero value turned it off).
                    tls_verify: request.auth.as_ref().map_or(true, |a| a.tls_verify),
                    credentials,
                    arch: request.platform.arch.clone(),
                    os: request.platform.os.clone(),
                    variant: request.platform.variant.clone(),
                };
                let id = client
                    .image_pull(&options, |line| sink.send(line))
                    .await
                    .map_err(|source| ImageError::Pull {
                        image: image.name.clone(),
                        source,
                    })?;
                Ok(ResolvedImage {
                    id,
                    name: image.name.clone(),
                    origin: ImageOrigin::Pulled,
                })
            };
            bounded(&image.name, request.pull_timeout, pull).await
        };
        self.pulls
            .run(&key, work, |line| {
                progress(ImageProgress::Line {
                    image: name.clone(),
                    line,
                })
            })
            .await
            .unwrap_or(Err(ImageError::Aborted { image: name }))
    }
}

/// Pulls of the same name and platform are shared.
fn flight_key(name: &str, platform: &Platform) -> String {
    if platform.is_default() {
        return name.to_string();
    }
    let part = |p: &Option<String>| p.clone().unwrap_or_default();
    format!(
        "{name}|{}|{}|{}",
        part(&platform.os),
        part(&platform.arch),
        part(&platform.variant)
    )
}

async fn bounded(
    image: &str,
    timeout: Duration,
    work: impl std::future::Future<Output = Resolution>,
) -> Resolution {
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| {
            Err(ImageError::Timeout {
                image: image.to_string(),
                timeout,
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(arch: &str, os: &str, variant: &str) -> ImageInspect {
        ImageInspect {
            architecture: arch.into(),
            os: os.into(),
            variant: variant.into(),
            ..ImageInspect::default()
        }
    }

    #[test]
    fn platform_matching_ignores_unset_fields_and_case() {
        let any = Platform::default();
        assert!(any.matches(&image("amd64", "linux", "")));
        let arm = Platform {
            arch: Some("ARM64".into()),
            ..Platform::default()
        };
        assert!(arm.matches(&image("arm64", "linux", "v8")));
        assert!(!arm.matches(&image("amd64", "linux", "")));
        let v7 = Platform {
            arch: Some("arm".into()),
            variant: Some("v7".into()),
            os: Some("linux".into()),
        };
        assert!(!v7.matches(&image("arm", "linux", "v6")));
    }

    #[test]
    fn flight_keys_separate_platforms() {
        assert_eq!(flight_key("busybox", &Platform::default()), "busybox");
        let p = Platform {
            arch: Some("arm64".into()),
            os: Some("linux".into()),
            variant: None,
        };
        assert_eq!(flight_key("busybox", &p), "busybox|linux|arm64|");
    }

    #[test]
    fn classify_tells_local_only_registry_archive_and_invalid_apart() {
        let registry = |name: &str, local_only| ImageKind::Registry {
            name: name.into(),
            local_only,
        };
        assert_eq!(
            classify("localhost/app:1").unwrap(),
            registry("localhost/app:1", true)
        );
        assert_eq!(classify("busybox").unwrap(), registry("busybox", false));
        // A registry on localhost with a port is a registry, not local storage.
        assert_eq!(
            classify("localhost:5000/app").unwrap(),
            registry("localhost:5000/app", false)
        );
        assert_eq!(
            classify("docker://localhost/app").unwrap(),
            registry("localhost/app:latest", true)
        );
        assert_eq!(
            classify("docker-archive:/tmp/a.tar").unwrap(),
            ImageKind::Archive
        );
        for bad in ["", "has space", "Upper/Case"] {
            assert!(
                matches!(classify(bad), Err(ImageError::InvalidReference { .. })),
                "{bad:?}"
            );
        }
        assert!(matches!(
            classify("dir:/some/where"),
            Err(ImageError::UnsupportedTransport { .. })
        ));
    }

    #[test]
    fn auth_debug_hides_the_password() {
        let a = RegistryAuth {
            username: "u".into(),
            password: "hunter2".into(),
            tls_verify: true,
        };
        assert!(!format!("{a:?}").contains("hunter2"));
    }
}

//! A task's `artifact` blocks: each source (an http(s) URL or a local file) is fetched
//! into a temporary file in the allocation root (not visible to any task), checked
//! against its checksum, then written as a file or unpacked into the task's directory,
//! as Nomad's artifact hook does before templates render.

mod checksum;
mod unpack;

pub use checksum::{Checksum, DigestKind};
pub use unpack::{ArchiveFormat, Limits, UnpackError};

use std::io::Seek;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::alloc::AllocDir;
use super::interpolate::{interpolate, Scope};
use super::model::{ArchiveChoice, ArtifactMode, ArtifactSpec};
use crate::driver::hostfs::{HostPathError, VerifiedDir};
use crate::driver::image::{http_get, ArchiveTls, DownloadError};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Until the response headers arrive, and between two reads of the body.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Nomad's default `artifact.http_read_timeout`.
const TOTAL_TIMEOUT: Duration = Duration::from_secs(30 * 60);
const MAX_DOWNLOAD: u64 = 10 << 30;
/// Nomad's default `decompression_file_count_limit`; its size limit (100 GB) is lowered
/// to what a local run is likely to have room for.
const UNPACK_LIMITS: Limits = Limits {
    max_bytes: 10 << 30,
    max_entries: 4096,
};
const CHUNK: usize = 64 * 1024;

/// Why an artifact was not fetched.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("{0}")]
    Source(String),
    #[error("destination {0:?} leaves the allocation directory")]
    Destination(String),
    #[error(transparent)]
    Download(#[from] DownloadError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is not a regular file")]
    NotAFile(PathBuf),
    #[error("{what} did not complete within {limit:?}")]
    Timeout { what: &'static str, limit: Duration },
    #[error("the download is larger than {0} bytes")]
    TooLarge(u64),
    #[error("checksum mismatch: expected {expected}, got {actual}")]
    Checksum {
        expected: Checksum,
        actual: Checksum,
    },
    #[error(
        "mode = \"dir\" needs an archive source (.tar, .tar.gz, .tgz, .zip) or options {{ archive = \"tar\" }}"
    )]
    NotAnArchive,
    #[error("unpacking failed: {0}")]
    Unpack(#[from] UnpackError),
    #[error("{0}")]
    Host(#[from] HostPathError),
    #[error("temporary file: {0}")]
    Temp(std::io::Error),
}

/// Where an artifact comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Url(String),
    File(PathBuf),
}

impl Source {
    /// Reads `source`; a relative path is relative to `base_dir` (the job file's).
    pub fn parse(text: &str, base_dir: &Path) -> Result<Source, String> {
        if text.starts_with("http://") || text.starts_with("https://") {
            return Ok(Source::Url(text.to_string()));
        }
        if let Some(path) = text.strip_prefix("file://") {
            return Ok(Source::File(base_dir.join(path)));
        }
        if text.contains("::") || text.contains("://") {
            return Err(format!(
                "unsupported artifact source {text:?}: the runner fetches http://, https:// and local files"
            ));
        }
        if text.is_empty() {
            return Err("the artifact source is empty".into());
        }
        Ok(Source::File(base_dir.join(text)))
    }

    /// The last path segment: what names the file and gives its archive type.
    fn file_name(&self) -> String {
        match self {
            Source::Url(url) => {
                let path = url.split(['?', '#']).next().unwrap_or(url);
                let after_scheme = path.split_once("://").map_or(path, |(_, rest)| rest);
                match after_scheme.split_once('/') {
                    Some((_, path)) => path.rsplit('/').next().unwrap_or("").to_string(),
                    None => String::new(),
                }
            }
            Source::File(path) => path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }
}

/// What is done with the fetched bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Placement {
    /// Written as this file.
    File(PathBuf),
    /// Unpacked into this directory.
    Unpack(ArchiveFormat, PathBuf),
}

/// go-getter's modes: `file` writes the download as `destination`; `any` unpacks an
/// archive into `destination` or puts any other file there under its own name; `dir`
/// needs an archive.
pub fn placement(
    mode: ArtifactMode,
    archive: ArchiveChoice,
    file_name: &str,
    destination: PathBuf,
) -> Result<Placement, ArtifactError> {
    let format = match archive {
        ArchiveChoice::Never => None,
        ArchiveChoice::Format(f) => Some(f),
        ArchiveChoice::Detect => ArchiveFormat::detect(file_name),
    };
    match (mode, format) {
        (ArtifactMode::File, _) => Ok(Placement::File(destination)),
        (_, Some(format)) => Ok(Placement::Unpack(format, destination)),
        (ArtifactMode::Dir, None) => Err(ArtifactError::NotAnArchive),
        (ArtifactMode::Any, None) if file_name.is_empty() => Err(ArtifactError::Source(
            "the source names no file; use mode = \"file\" with a file destination".into(),
        )),
        (ArtifactMode::Any, None) => Ok(Placement::File(destination.join(file_name))),
    }
}

/// Fetches one artifact of `task` into its directory; returns where it went.
pub async fn fetch(
    spec: &ArtifactSpec,
    dir: &AllocDir,
    task: &str,
    scope: &Scope<'_>,
) -> Result<PathBuf, ArtifactError> {
    let source = Source::parse(&interpolate(&spec.source, scope), &spec.base_dir)
        .map_err(ArtifactError::Source)?;
    let destination = interpolate(&spec.destination, scope);
    let destination = dir
        .template_destination(task, &destination)
        .ok_or(ArtifactError::Destination(destination))?;
    let placement = placement(spec.mode, spec.archive, &source.file_name(), destination)?;

    let root = dir.root.clone();
    let temp = tokio::task::spawn_blocking(move || tempfile::tempfile_in(root))
        .await
        .map_err(|e| ArtifactError::Temp(std::io::Error::other(e)))?
        .map_err(ArtifactError::Temp)?;
    let mut sink = Sink {
        file: tokio::fs::File::from_std(temp),
        hasher: spec.checksum.as_ref().map(Checksum::hasher),
        written: 0,
    };
    tokio::time::timeout(TOTAL_TIMEOUT, sink.fill(&source))
        .await
        .map_err(|_| ArtifactError::Timeout {
            what: "the download",
            limit: TOTAL_TIMEOUT,
        })??;
    let Sink { file, hasher, .. } = sink;
    if let (Some(expected), Some(hasher)) = (&spec.checksum, hasher) {
        let actual = hasher.finish();
        if &actual != expected {
            return Err(ArtifactError::Checksum {
                expected: expected.clone(),
                actual,
            });
        }
    }
    let file = file.into_std().await;
    let root = dir.root.clone();
    tokio::task::spawn_blocking(move || place(file, &root, placement))
        .await
        .map_err(|e| ArtifactError::Temp(std::io::Error::other(e)))?
}

/// Writes the fetched bytes where `placement` says (blocking).
fn place(
    mut file: std::fs::File,
    root: &Path,
    placement: Placement,
) -> Result<PathBuf, ArtifactError> {
    file.rewind().map_err(ArtifactError::Temp)?;
    match placement {
        Placement::File(path) => {
            let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
                return Err(ArtifactError::Destination(path.display().to_string()));
            };
            VerifiedDir::open_or_create(root, parent, 0o755)?
                .replace_with(name, 0o644, |out| std::io::copy(&mut file, out).map(|_| ()))?;
            Ok(path)
        }
        Placement::Unpack(format, dir) => {
            unpack::unpack(file, format, root, &dir, UNPACK_LIMITS)?;
            Ok(dir)
        }
    }
}

/// The temporary file the download goes to, hashed and counted on the way.
struct Sink {
    file: tokio::fs::File,
    hasher: Option<checksum::Hasher>,
    written: u64,
}

impl Sink {
    async fn fill(&mut self, source: &Source) -> Result<(), ArtifactError> {
        match source {
            Source::Url(url) => {
                let get = http_get(url, CONNECT_TIMEOUT, ArchiveTls::system);
                let mut body = tokio::time::timeout(IDLE_TIMEOUT, get)
                    .await
                    .map_err(|_| ArtifactError::Timeout {
                        what: "waiting for the response",
                        limit: IDLE_TIMEOUT,
                    })??;
                loop {
                    let frame = tokio::time::timeout(IDLE_TIMEOUT, body.frame())
                        .await
                        .map_err(|_| ArtifactError::Timeout {
                            what: "reading the response body",
                            limit: IDLE_TIMEOUT,
                        })?;
                    let Some(frame) = frame else { break };
                    let frame = frame.map_err(|e| DownloadError {
                        url: url.clone(),
                        reason: format!("reading the response body failed: {e}"),
                    })?;
                    if let Ok(data) = frame.into_data() {
                        self.write(&data).await?;
                    }
                }
            }
            Source::File(path) => {
                let read_failed = |source| ArtifactError::Read {
                    path: path.clone(),
                    source,
                };
                let mut input = tokio::fs::File::open(path).await.map_err(read_failed)?;
                // A FIFO or device would block or never end.
                if !input.metadata().await.map_err(read_failed)?.is_file() {
                    return Err(ArtifactError::NotAFile(path.clone()));
                }
                let mut buf = vec![0; CHUNK];
                loop {
                    let n = input.read(&mut buf).await.map_err(read_failed)?;
                    if n == 0 {
                        break;
                    }
                    self.write(&buf[..n]).await?;
                }
            }
        }
        self.file.flush().await.map_err(ArtifactError::Temp)
    }

    async fn write(&mut self, data: &[u8]) -> Result<(), ArtifactError> {
        self.written += data.len() as u64;
        if self.written > MAX_DOWNLOAD {
            return Err(ArtifactError::TooLarge(MAX_DOWNLOAD));
        }
        if let Some(h) = &mut self.hasher {
            h.update(data);
        }
        self.file.write_all(data).await.map_err(ArtifactError::Temp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_urls_or_paths_relative_to_the_job_file() {
        let base = Path::new("/jobs");
        assert_eq!(
            Source::parse("https://h/a.tgz", base).unwrap(),
            Source::Url("https://h/a.tgz".into())
        );
        assert_eq!(
            Source::parse("files/a.txt", base).unwrap(),
            Source::File("/jobs/files/a.txt".into())
        );
        assert_eq!(
            Source::parse("/abs/a.txt", base).unwrap(),
            Source::File("/abs/a.txt".into())
        );
        assert_eq!(
            Source::parse("file:///abs/a.txt", base).unwrap(),
            Source::File("/abs/a.txt".into())
        );
        for bad in ["s3://bucket/x", "git::https://h/r.git", ""] {
            assert!(Source::parse(bad, base).is_err(), "{bad}");
        }
        let url = Source::Url("http://127.0.0.1:8080/d/app.tar.gz?x=1#f".into());
        assert_eq!(url.file_name(), "app.tar.gz");
        assert_eq!(Source::Url("http://h".into()).file_name(), "");
    }

    #[test]
    fn modes_place_downloads_as_go_getter_does() {
        let dest = || PathBuf::from("/a/t/local");
        let any = ArtifactMode::Any;
        assert_eq!(
            placement(any, ArchiveChoice::Detect, "app.tgz", dest()).unwrap(),
            Placement::Unpack(ArchiveFormat::TarGz, dest())
        );
        assert_eq!(
            placement(any, ArchiveChoice::Detect, "app.conf", dest()).unwrap(),
            Placement::File(dest().join("app.conf"))
        );
        assert_eq!(
            placement(any, ArchiveChoice::Never, "app.zip", dest()).unwrap(),
            Placement::File(dest().join("app.zip"))
        );
        assert_eq!(
            placement(ArtifactMode::File, ArchiveChoice::Detect, "app.zip", dest()).unwrap(),
            Placement::File(dest())
        );
        assert_eq!(
            placement(
                ArtifactMode::Dir,
                ArchiveChoice::Format(ArchiveFormat::Tar),
                "download",
                dest()
            )
            .unwrap(),
            Placement::Unpack(ArchiveFormat::Tar, dest())
        );
        let err = placement(ArtifactMode::Dir, ArchiveChoice::Detect, "a.txt", dest());
        assert!(matches!(err, Err(ArtifactError::NotAnArchive)));
        let err = placement(any, ArchiveChoice::Detect, "", dest());
        assert!(matches!(err, Err(ArtifactError::Source(_))));
    }
}

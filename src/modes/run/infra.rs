//! The container that holds a bridge group's network namespace (Nomad's `nomad_init`
//! pause container): it publishes the group's ports and every task joins it.
//!
//! Its image needs no registry: unless `--infra-image` names one, the runner makes its own
//! pause image on first use, as `podman pod create` makes `localhost/podman-pause`: the
//! host's static `catatonit` as the only file, entrypoint `catatonit -P`. It is imported
//! (a one-file tarball, `podman import` with changes) rather than built, so no build
//! machinery is involved, and it carries the label [`PAUSE_LABEL`].

use std::path::{Path, PathBuf};

use crate::driver::logs::{Rotation, SinkKind};
use crate::driver::podman::{PodmanClient, PodmanError};

use crate::driver::task::{NetworkMode, TaskConfig, TaskContext, TaskSpec};

use super::check::INFRA_TASK;
use super::env::BridgeInfo;
use super::labels;
use super::task_runner::{core_ports, AllocContext, BridgeNamespace};

/// A pause loop that exits at once on SIGTERM/SIGINT (for a `--infra-image` with a shell).
const PAUSE: &str = "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done";

/// The runner's own pause image; the tag changes with the runner's version.
pub const PAUSE_IMAGE: &str = concat!(
    "localhost/nomad-driver-podman-pause:",
    env!("CARGO_PKG_VERSION")
);
/// Label on the runner's pause image (value: the runner's version).
pub const PAUSE_LABEL: &str = "io.nomad-driver-podman.pause";

/// Where podman's packages install catatonit (podman looks in its helper_binaries_dir
/// and then $PATH for the same file when it builds its own pause image).
const CATATONIT_PATHS: &[&str] = &[
    "/usr/libexec/podman/catatonit",
    "/usr/local/libexec/podman/catatonit",
    "/usr/lib/podman/catatonit",
    "/usr/local/lib/podman/catatonit",
    "/usr/libexec/catatonit/catatonit",
    "/usr/bin/catatonit",
    "/usr/local/bin/catatonit",
];

/// The image the namespace holder runs.
#[derive(Debug, Clone)]
pub enum InfraImage {
    /// `--infra-image`: run as given, with a shell pause loop.
    Given(String),
    /// The runner's pause image: its entrypoint pauses.
    Pause(String),
}

impl InfraImage {
    fn name(&self) -> &str {
        match self {
            InfraImage::Given(n) | InfraImage::Pause(n) => n,
        }
    }
}

/// Why the runner's pause image is not there and could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PauseImageError {
    /// Asking podman for the image failed.
    #[error(transparent)]
    Podman(#[from] PodmanError),
    #[error(
        "no catatonit found to make the pause image from (looked in {}); install podman's \
         catatonit package or pass --infra-image IMAGE",
        CATATONIT_PATHS.join(", ")
    )]
    NoCatatonit,
    #[error("cannot make the pause image {PAUSE_IMAGE} from {}: {source}", catatonit.display())]
    Import {
        catatonit: PathBuf,
        #[source]
        source: PodmanError,
    },
}

/// The runner's pause image on the socket, imported on first use.
pub async fn ensure_pause_image(client: &PodmanClient) -> Result<String, PauseImageError> {
    if client.image_exists(PAUSE_IMAGE).await? {
        return Ok(PAUSE_IMAGE.to_string());
    }
    let (path, binary) = find_catatonit()?;
    let changes = vec![
        r#"ENTRYPOINT ["/catatonit", "-P"]"#.to_string(),
        format!("LABEL {PAUSE_LABEL}={}", env!("CARGO_PKG_VERSION")),
    ];
    client
        .image_import(
            PAUSE_IMAGE,
            &changes,
            one_file_tar("catatonit", 0o755, &binary),
        )
        .await
        .map_err(|source| PauseImageError::Import {
            catatonit: path,
            source,
        })?;
    Ok(PAUSE_IMAGE.to_string())
}

fn find_catatonit() -> Result<(PathBuf, Vec<u8>), PauseImageError> {
    for candidate in CATATONIT_PATHS {
        let path = Path::new(candidate);
        // Read only: the packaged file is often a link (Debian: to /usr/bin/catatonit).
        if let Ok(binary) = std::fs::read(path) {
            if binary.starts_with(b"\x7fELF") {
                return Ok((path.to_path_buf(), binary));
            }
        }
    }
    Err(PauseImageError::NoCatatonit)
}

/// A ustar archive holding one regular file owned by root.
fn one_file_tar(name: &str, mode: u32, data: &[u8]) -> Vec<u8> {
    fn octal(field: &mut [u8], value: u64) {
        let digits = field.len() - 1;
        let text = format!("{value:0digits$o}");
        field[..digits].copy_from_slice(&text.as_bytes()[text.len() - digits..]);
        field[digits] = 0;
    }
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut header[100..108], u64::from(mode));
    octal(&mut header[108..116], 0);
    octal(&mut header[116..124], 0);
    octal(&mut header[124..136], data.len() as u64);
    octal(&mut header[136..148], 0);
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[148..156].copy_from_slice(b"        ");
    let sum: u64 = header.iter().map(|b| u64::from(*b)).sum();
    octal(&mut header[148..155], sum);
    header[155] = b' ';
    let mut out = header.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512 + 1024, 0);
    out
}

pub fn task_id(ctx: &AllocContext) -> String {
    format!("{}/{INFRA_TASK}/1", ctx.alloc.id)
}

/// Starts the namespace holder; the returned namespace is what tasks join.
pub async fn start(ctx: &AllocContext, image: &InfraImage) -> Result<BridgeNamespace, String> {
    let group = ctx.group();
    let labels_map = labels::infra_labels(
        &ctx.job, group, INFRA_TASK, &ctx.alloc, &ctx.dir, &ctx.ports,
    );
    let (command, args) = match image {
        InfraImage::Given(_) => ("sh".to_string(), vec!["-c".to_string(), PAUSE.to_string()]),
        // The pause image's entrypoint pauses.
        InfraImage::Pause(_) => (String::new(), Vec::new()),
    };
    // Built as a config, not decoded from a job: its labels are the runner's own, in the
    // prefix a job's config may not use.
    let config = TaskConfig {
        image: image.name().to_string(),
        // Asked for by name: rootless podman's default would be slirp4netns, which gives
        // the group no address of its own on a bridge as Nomad's bridge mode does.
        network_mode: NetworkMode::Bridge,
        command,
        args,
        ports: ctx.ports.iter().map(|p| p.label.clone()).collect(),
        hostname: group
            .network
            .as_ref()
            .and_then(|n| n.hostname.clone())
            .unwrap_or_default(),
        labels: labels_map,
        ..TaskConfig::default()
    };
    let context = TaskContext {
        id: task_id(ctx),
        name: INFRA_TASK.to_string(),
        alloc_id: ctx.alloc.id.clone(),
        job_name: ctx.job.name.clone(),
        job_id: ctx.job.id.clone(),
        task_group_name: group.name.clone(),
        namespace: ctx.job.namespace.clone(),
        alloc_dir: Some(ctx.dir.shared()),
        ports: Some(core_ports(&ctx.ports)),
        stdout_path: Some(ctx.dir.stdout(INFRA_TASK)),
        stderr_path: Some(ctx.dir.stderr(INFRA_TASK)),
        log_sink: SinkKind::File,
        log_rotation: Some(Rotation::default()),
        kill_timeout: std::time::Duration::from_secs(2),
        ..TaskContext::default()
    };
    let spec = TaskSpec { config, context };
    let container_name = spec.container_name();
    let started = ctx.driver.start(spec).await.map_err(|e| e.to_string())?;
    let ip = started.network.map(|n| n.ip).unwrap_or_default();
    Ok(BridgeNamespace {
        container_name,
        info: BridgeInfo { ip },
    })
}

/// Stops and removes the namespace holder.
pub async fn stop(ctx: &AllocContext) {
    let id = task_id(ctx);
    let _ = ctx
        .driver
        .stop(&id, std::time::Duration::from_secs(2), None)
        .await;
    let _ = ctx.driver.destroy(&id, true).await;
}

#[cfg(test)]
mod tests {
    use super::one_file_tar;

    #[test]
    fn the_pause_tarball_is_a_valid_ustar_archive() {
        let tar = one_file_tar("catatonit", 0o755, b"\x7fELFdata");
        assert_eq!(tar.len(), 512 + 512 + 1024);
        assert_eq!(&tar[..9], b"catatonit");
        assert_eq!(&tar[100..108], b"0000755\0");
        assert_eq!(&tar[124..136], b"00000000010\0");
        let mut header = tar[..512].to_vec();
        let stored = u64::from_str_radix(std::str::from_utf8(&header[148..154]).unwrap(), 8);
        header[148..156].copy_from_slice(b"        ");
        let sum: u64 = header.iter().map(|b| u64::from(*b)).sum();
        assert_eq!(stored, Ok(sum));
        assert_eq!(&tar[512..520], b"\x7fELFdata");
    }
}

//! The driver's own pause image, made without a registry: as `podman pod create` makes
//! `localhost/podman-pause`, it holds the host's static `catatonit` as its only file, with
//! the entrypoint `catatonit -P`. It is imported (a one-file tarball, `podman import` with
//! changes) rather than built, so no build machinery is involved, and it carries the label
//! [`PAUSE_LABEL`]. The runner's bridge groups hold their namespace with it, and the core's
//! namespace keeper (`netns_keeper`) runs it.

use std::path::{Path, PathBuf};

use crate::driver::podman::{PodmanClient, PodmanError};

/// The driver's pause image; the tag changes with the driver's version.
pub const PAUSE_IMAGE: &str = concat!(
    "localhost/nomad-driver-podman-pause:",
    env!("CARGO_PKG_VERSION")
);
/// Label on the pause image (value: the driver's version).
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

/// Why the pause image is not there and could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PauseImageError {
    /// Asking podman for the image failed.
    #[error(transparent)]
    Podman(#[from] PodmanError),
    #[error(
        "no catatonit found to make the pause image from (looked in {}); install the \
         catatonit package (podman recommends it)",
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

/// The pause image on the socket, imported on first use.
pub async fn ensure(client: &PodmanClient) -> Result<String, PauseImageError> {
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

//! A minimal busybox root filesystem as an uncompressed tar archive (ustar), built in
//! memory from the host's statically linked busybox, for `images/import`.

use std::path::Path;

use tokio::process::Command;

/// Errors building the archive.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot list the applets of {path}: {reason}")]
    Applets { path: String, reason: String },
}

/// Builds a rootfs with `/bin/busybox`, a symlink per applet, `/etc/passwd`, `/etc/group`
/// and a sticky `/tmp`. The binary must be static: nothing else lands in the image.
pub async fn busybox_rootfs(busybox: &Path) -> Result<Vec<u8>, RootfsError> {
    let path = busybox.display().to_string();
    let binary = tokio::fs::read(busybox)
        .await
        .map_err(|source| RootfsError::Read {
            path: path.clone(),
            source,
        })?;
    let listing = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        Command::new(busybox).arg("--list").output(),
    )
    .await
    .map_err(|_| RootfsError::Applets {
        path: path.clone(),
        reason: "timed out".to_string(),
    })?
    .map_err(|err| RootfsError::Applets {
        path: path.clone(),
        reason: err.to_string(),
    })?;
    if !listing.status.success() {
        return Err(RootfsError::Applets {
            path,
            reason: format!("exit status {}", listing.status),
        });
    }
    let applets = String::from_utf8_lossy(&listing.stdout);

    let mut tar = Tar::default();
    for dir in ["bin", "etc", "root"] {
        tar.entry(dir, EntryKind::Directory, 0o755, &[]);
    }
    tar.entry("tmp", EntryKind::Directory, 0o1777, &[]);
    tar.entry("bin/busybox", EntryKind::File, 0o755, &binary);
    for applet in applets.split_whitespace().filter(|a| *a != "busybox") {
        if !applet.contains('/') {
            tar.entry(
                &format!("bin/{applet}"),
                EntryKind::Symlink("busybox"),
                0o777,
                &[],
            );
        }
    }
    tar.entry(
        "etc/passwd",
        EntryKind::File,
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    );
    tar.entry(
        "etc/group",
        EntryKind::File,
        0o644,
        b"root:x:0:\nnobody:x:65534:\n",
    );
    Ok(tar.finish())
}

enum EntryKind<'a> {
    File,
    Directory,
    Symlink(&'a str),
}

#[derive(Default)]
struct Tar {
    bytes: Vec<u8>,
}

impl Tar {
    fn entry(&mut self, name: &str, kind: EntryKind<'_>, mode: u32, data: &[u8]) {
        let mut header = [0u8; 512];
        let (typeflag, link, size) = match kind {
            EntryKind::File => (b'0', "", data.len()),
            EntryKind::Directory => (b'5', "", 0),
            EntryKind::Symlink(target) => (b'2', target, 0),
        };
        put(&mut header[0..100], name.as_bytes());
        put(&mut header[100..108], format!("{mode:07o}").as_bytes());
        put(&mut header[108..116], b"0000000");
        put(&mut header[116..124], b"0000000");
        put(&mut header[124..136], format!("{size:011o}").as_bytes());
        put(&mut header[136..148], b"00000000000");
        header[156] = typeflag;
        put(&mut header[157..257], link.as_bytes());
        put(&mut header[257..263], b"ustar\0");
        put(&mut header[263..265], b"00");
        // The checksum is computed with its own field read as spaces.
        header[148..156].fill(b' ');
        let checksum: u32 = header.iter().map(|b| u32::from(*b)).sum();
        put(
            &mut header[148..156],
            format!("{checksum:06o}\0 ").as_bytes(),
        );
        self.bytes.extend_from_slice(&header);
        if size > 0 {
            self.bytes.extend_from_slice(data);
            self.bytes.resize(self.bytes.len().next_multiple_of(512), 0);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.bytes.resize(self.bytes.len() + 1024, 0);
        self.bytes
    }
}

fn put(field: &mut [u8], value: &[u8]) {
    let len = value.len().min(field.len());
    field[..len].copy_from_slice(&value[..len]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_ustar_with_valid_checksums() {
        let mut tar = Tar::default();
        tar.entry("bin", EntryKind::Directory, 0o755, &[]);
        tar.entry("bin/hello", EntryKind::File, 0o644, b"hi\n");
        tar.entry("bin/link", EntryKind::Symlink("hello"), 0o777, &[]);
        let bytes = tar.finish();
        // 3 headers, 1 data block, 2 end blocks.
        assert_eq!(bytes.len(), 6 * 512);
        for block in [0, 1, 3] {
            let header = &bytes[block * 512..(block + 1) * 512];
            assert_eq!(&header[257..263], b"ustar\0");
            let stored = std::str::from_utf8(&header[148..154]).unwrap();
            let mut blank = header.to_vec();
            blank[148..156].fill(b' ');
            let sum: u32 = blank.iter().map(|b| u32::from(*b)).sum();
            assert_eq!(u32::from_str_radix(stored, 8).unwrap(), sum);
        }
        assert_eq!(&bytes[512 + 124..512 + 135], b"00000000003");
        assert_eq!(&bytes[1024..1027], b"hi\n");
        assert_eq!(bytes[3 * 512 + 156], b'2');
        assert_eq!(&bytes[3 * 512 + 157..3 * 512 + 162], b"hello");
    }

    #[tokio::test]
    async fn busybox_rootfs_lists_applets() {
        // Debian's busybox-static, installed by scripts/setup-host.
        let tar = busybox_rootfs(Path::new("/bin/busybox")).await.unwrap();
        let names: Vec<String> = (0..tar.len() / 512)
            .map(|i| &tar[i * 512..i * 512 + 100])
            .filter(|h| h[0] != 0 && h.iter().all(|b| *b == 0 || b.is_ascii_graphic()))
            .map(|h| {
                String::from_utf8_lossy(h)
                    .trim_end_matches('\0')
                    .to_string()
            })
            .collect();
        for expected in ["bin/busybox", "bin/sh", "bin/sleep", "etc/passwd", "tmp"] {
            assert!(names.iter().any(|n| n == expected), "{expected} missing");
        }
    }
}

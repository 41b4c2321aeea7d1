//! Unpacking tar, tar.gz and zip archives into a directory a task may also write to.
//!
//! Every entry is checked before anything is written: an absolute name or a `..`
//! component fails the whole archive (go-getter refuses those too), as does a symbolic
//! link whose target is absolute or leaves the destination, and a hard link. Directories
//! are reached from the allocation root through verified directory fds (never through a
//! link, also not one an earlier entry of the same archive made), files are written
//! through a fresh temporary file renamed into place. Entries and bytes are bounded.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Seek};
use std::path::{Component, Path, PathBuf};

use crate::driver::gates::lexical_clean;
use crate::driver::hostfs::{HostPathError, VerifiedDir};

/// The archive formats recognised by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    Tar,
    TarGz,
    Zip,
}

impl ArchiveFormat {
    /// The format a file name's extension says, if any (go-getter's detection).
    pub fn detect(name: &str) -> Option<ArchiveFormat> {
        let name = name.to_ascii_lowercase();
        if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
            Some(ArchiveFormat::TarGz)
        } else if name.ends_with(".tar") {
            Some(ArchiveFormat::Tar)
        } else if name.ends_with(".zip") {
            Some(ArchiveFormat::Zip)
        } else {
            None
        }
    }

    /// `options { archive = "..." }` naming a format.
    pub fn named(name: &str) -> Option<ArchiveFormat> {
        match name {
            "tar" => Some(ArchiveFormat::Tar),
            "tar.gz" | "tgz" => Some(ArchiveFormat::TarGz),
            "zip" => Some(ArchiveFormat::Zip),
            _ => None,
        }
    }
}

/// How much one archive may unpack to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: u64,
    pub max_entries: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("archive entry {name:?}: {reason}")]
    Unsafe { name: String, reason: &'static str },
    #[error("archive entry {name:?}: symbolic link to {target:?} leaves the destination")]
    LinkOutside { name: String, target: String },
    #[error("the archive unpacks to more than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the archive has more than {limit} entries")]
    TooManyEntries { limit: usize },
    #[error("not a valid {format} archive: {reason}")]
    Corrupt {
        format: &'static str,
        reason: String,
    },
    #[error(transparent)]
    Host(#[from] HostPathError),
}

/// What one archive entry is.
enum Kind {
    Dir,
    File {
        mode: u32,
    },
    Symlink {
        target: PathBuf,
    },
    /// Device, FIFO and other special entries: never created.
    Skipped,
}

/// Unpacks `archive` into `dest`, a directory at or below the trusted `root`.
pub fn unpack(
    archive: File,
    format: ArchiveFormat,
    root: &Path,
    dest: &Path,
    limits: Limits,
) -> Result<(), UnpackError> {
    let mut out = Writer {
        root,
        dest,
        limits,
        bytes: 0,
        entries: 0,
    };
    VerifiedDir::open_or_create(root, dest, 0o755)?;
    match format {
        ArchiveFormat::Tar => out.tar(archive),
        ArchiveFormat::TarGz => out.tar(flate2::read::GzDecoder::new(archive)),
        ArchiveFormat::Zip => out.zip(archive),
    }
}

struct Writer<'a> {
    root: &'a Path,
    dest: &'a Path,
    limits: Limits,
    bytes: u64,
    entries: usize,
}

impl Writer<'_> {
    fn tar(&mut self, input: impl Read) -> Result<(), UnpackError> {
        let corrupt = |e: io::Error| UnpackError::Corrupt {
            format: "tar",
            reason: e.to_string(),
        };
        let mut archive = tar::Archive::new(input);
        for entry in archive.entries().map_err(corrupt)? {
            let mut entry = entry.map_err(corrupt)?;
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let header = entry.header();
            let kind = match header.entry_type() {
                tar::EntryType::Directory => Kind::Dir,
                tar::EntryType::Regular | tar::EntryType::Continuous => Kind::File {
                    mode: header.mode().unwrap_or(0o644),
                },
                tar::EntryType::Symlink => {
                    let target = entry
                        .link_name()
                        .map_err(corrupt)?
                        .map(|t| t.into_owned())
                        .unwrap_or_default();
                    Kind::Symlink { target }
                }
                tar::EntryType::Link => {
                    return Err(UnpackError::Unsafe {
                        name,
                        reason: "hard links are not unpacked",
                    })
                }
                tar::EntryType::XGlobalHeader
                | tar::EntryType::XHeader
                | tar::EntryType::GNULongName
                | tar::EntryType::GNULongLink => continue,
                _ => Kind::Skipped,
            };
            self.entry(&name, kind, &mut entry)?;
        }
        Ok(())
    }

    fn zip(&mut self, input: impl Read + Seek) -> Result<(), UnpackError> {
        let corrupt = |e: zip::result::ZipError| UnpackError::Corrupt {
            format: "zip",
            reason: e.to_string(),
        };
        let mut archive = zip::ZipArchive::new(input).map_err(corrupt)?;
        for i in 0..archive.len() {
            let mut file = archive.by_index(i).map_err(corrupt)?;
            let name = file.name().to_string();
            let kind = if file.is_dir() {
                Kind::Dir
            } else if file.is_symlink() {
                let mut target = Vec::new();
                // A link target is a path: far below any sane limit.
                (&mut file)
                    .take(4096)
                    .read_to_end(&mut target)
                    .map_err(|e| UnpackError::Corrupt {
                        format: "zip",
                        reason: e.to_string(),
                    })?;
                Kind::Symlink {
                    target: PathBuf::from(
                        <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(target),
                    ),
                }
            } else {
                Kind::File {
                    mode: file.unix_mode().unwrap_or(0o644),
                }
            };
            self.entry(&name, kind, &mut file)?;
        }
        Ok(())
    }

    fn entry(&mut self, name: &str, kind: Kind, data: &mut impl Read) -> Result<(), UnpackError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(UnpackError::TooManyEntries {
                limit: self.limits.max_entries,
            });
        }
        let relative = entry_path(name)?;
        let Some(file_name) = relative.file_name().map(OsStr::to_os_string) else {
            // `./` itself: the destination, which exists.
            return Ok(());
        };
        let path = self.dest.join(&relative);
        let parent = path.parent().unwrap_or(self.dest);
        match kind {
            Kind::Dir => {
                VerifiedDir::open_or_create(self.root, &path, 0o755)?;
            }
            Kind::File { mode } => {
                let dir = VerifiedDir::open_or_create(self.root, parent, 0o755)?;
                let room = self.limits.max_bytes - self.bytes;
                let mut copied = 0;
                // Setuid, setgid and sticky bits are not carried over.
                dir.replace_with(&file_name, mode & 0o777, |file| {
                    copied = io::copy(&mut (&mut *data).take(room + 1), file)?;
                    if copied > room {
                        return Err(io::Error::other("too large"));
                    }
                    Ok(())
                })
                .map_err(|e| {
                    if copied > room {
                        UnpackError::TooLarge {
                            limit: self.limits.max_bytes,
                        }
                    } else {
                        UnpackError::Host(e)
                    }
                })?;
                self.bytes += copied;
            }
            Kind::Symlink { target } => {
                if target.is_absolute() || target.as_os_str().is_empty() {
                    return Err(UnpackError::LinkOutside {
                        name: name.to_string(),
                        target: target.display().to_string(),
                    });
                }
                if !lexical_clean(&parent.join(&target)).starts_with(self.dest) {
                    return Err(UnpackError::LinkOutside {
                        name: name.to_string(),
                        target: target.display().to_string(),
                    });
                }
                let dir = VerifiedDir::open_or_create(self.root, parent, 0o755)?;
                dir.symlink(&file_name, target.as_os_str())?;
            }
            Kind::Skipped => {}
        }
        Ok(())
    }
}

/// An entry's name as a path below the destination: no root, no `..`; `.` dropped.
fn entry_path(name: &str) -> Result<PathBuf, UnpackError> {
    let unsafe_entry = |reason| UnpackError::Unsafe {
        name: name.to_string(),
        reason,
    };
    let mut out = PathBuf::new();
    for component in Path::new(name).components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(unsafe_entry("a \"..\" component")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(unsafe_entry("an absolute path"))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const LIMITS: Limits = Limits {
        max_bytes: 1 << 20,
        max_entries: 100,
    };

    enum Item<'a> {
        File(&'a str, &'a [u8]),
        Dir(&'a str),
        Link(&'a str, &'a str),
    }

    /// A tar written header by header, so names the tar crate's builder refuses (`..`,
    /// absolute) can be made.
    fn tar_of(items: &[Item]) -> File {
        let mut out = tempfile::tempfile().unwrap();
        {
            let mut builder = tar::Builder::new(&mut out);
            for item in items {
                let mut header = tar::Header::new_gnu();
                let (name, data): (&str, &[u8]) = match item {
                    Item::File(name, data) => {
                        header.set_entry_type(tar::EntryType::Regular);
                        header.set_mode(0o755);
                        (name, data)
                    }
                    Item::Dir(name) => {
                        header.set_entry_type(tar::EntryType::Directory);
                        header.set_mode(0o755);
                        (name, b"")
                    }
                    Item::Link(name, target) => {
                        header.set_entry_type(tar::EntryType::Symlink);
                        header.set_link_name(target).unwrap();
                        (name, b"")
                    }
                };
                let raw = &mut header.as_old_mut().name;
                raw[..name.len()].copy_from_slice(name.as_bytes());
                header.set_size(data.len() as u64);
                header.set_cksum();
                builder.append(&header, data).unwrap();
            }
            builder.finish().unwrap();
        }
        out.rewind().unwrap();
        out
    }

    fn dirs() -> (tempfile::TempDir, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("task/local");
        std::fs::create_dir_all(&dest).unwrap();
        (root, dest)
    }

    #[test]
    fn unpacks_files_dirs_and_inner_links() {
        let (root, dest) = dirs();
        let tar = tar_of(&[
            Item::Dir("./conf/"),
            Item::File("conf/app.conf", b"port = 1\n"),
            Item::File("bin/run", b"#!/bin/sh\n"),
            Item::Link("conf/current", "app.conf"),
        ]);
        unpack(tar, ArchiveFormat::Tar, root.path(), &dest, LIMITS).unwrap();
        assert_eq!(
            std::fs::read_to_string(dest.join("conf/app.conf")).unwrap(),
            "port = 1\n"
        );
        assert_eq!(
            std::fs::read_to_string(dest.join("conf/current")).unwrap(),
            "port = 1\n"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dest.join("bin/run"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
    }

    #[test]
    fn refuses_entries_that_escape_the_destination() {
        for (items, want) in [
            (vec![Item::File("../x", b"owned")], "\"..\" component"),
            (vec![Item::File("a/../../x", b"owned")], "\"..\" component"),
            (vec![Item::File("/x", b"owned")], "absolute path"),
            (vec![Item::Link("l", "/etc")], "leaves the destination"),
            (vec![Item::Link("l", "../../x")], "leaves the destination"),
            (vec![Item::Link("a/l", "../../x")], "leaves the destination"),
        ] {
            let (root, dest) = dirs();
            let err = unpack(
                tar_of(&items),
                ArchiveFormat::Tar,
                root.path(),
                &dest,
                LIMITS,
            )
            .unwrap_err();
            assert!(err.to_string().contains(want), "{err}");
            assert!(!root.path().join("task/x").exists());
            assert!(!root.path().join("x").exists());
        }
    }

    #[test]
    fn never_writes_through_a_link_inside_the_archive_or_planted_by_the_task() {
        let (root, dest) = dirs();
        let outside = tempfile::tempdir().unwrap();
        // The task planted a link to a directory outside the allocation.
        std::os::unix::fs::symlink(outside.path(), dest.join("planted")).unwrap();
        let tar = tar_of(&[Item::File("planted/x", b"owned")]);
        let err = unpack(tar, ArchiveFormat::Tar, root.path(), &dest, LIMITS).unwrap_err();
        assert!(
            matches!(err, UnpackError::Host(HostPathError::Link { .. })),
            "{err}"
        );
        assert!(!outside.path().join("x").exists());

        // A link the archive itself made, inside the destination, is not walked either.
        let tar = tar_of(&[
            Item::Dir("d/"),
            Item::Link("l", "d"),
            Item::File("l/x", b"through the link"),
        ]);
        let err = unpack(tar, ArchiveFormat::Tar, root.path(), &dest, LIMITS).unwrap_err();
        assert!(
            matches!(err, UnpackError::Host(HostPathError::Link { .. })),
            "{err}"
        );
        assert!(!dest.join("d/x").exists());

        // A planted file link is replaced, its target untouched.
        let victim = outside.path().join("victim");
        std::fs::write(&victim, "untouched").unwrap();
        std::os::unix::fs::symlink(&victim, dest.join("f")).unwrap();
        unpack(
            tar_of(&[Item::File("f", b"new")]),
            ArchiveFormat::Tar,
            root.path(),
            &dest,
            LIMITS,
        )
        .unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
        assert_eq!(std::fs::read_to_string(dest.join("f")).unwrap(), "new");
    }

    #[test]
    fn bounds_bytes_and_entries() {
        let (root, dest) = dirs();
        let small = Limits {
            max_bytes: 10,
            max_entries: 2,
        };
        let big = vec![b'x'; 11];
        let err = unpack(
            tar_of(&[Item::File("big", &big)]),
            ArchiveFormat::Tar,
            root.path(),
            &dest,
            small,
        )
        .unwrap_err();
        assert!(matches!(err, UnpackError::TooLarge { limit: 10 }), "{err}");
        assert!(!dest.join("big").exists());
        let many = [Item::Dir("a/"), Item::Dir("b/"), Item::Dir("c/")];
        let err = unpack(tar_of(&many), ArchiveFormat::Tar, root.path(), &dest, small).unwrap_err();
        assert!(
            matches!(err, UnpackError::TooManyEntries { limit: 2 }),
            "{err}"
        );
    }

    #[test]
    fn unpacks_gzip_tar_and_zip() {
        let (root, dest) = dirs();
        let mut tgz = tempfile::tempfile().unwrap();
        {
            let mut gz = flate2::write::GzEncoder::new(&mut tgz, flate2::Compression::fast());
            let mut tar = tar_of(&[Item::File("a.txt", b"from tgz")]);
            io::copy(&mut tar, &mut gz).unwrap();
            gz.finish().unwrap();
        }
        tgz.rewind().unwrap();
        unpack(tgz, ArchiveFormat::TarGz, root.path(), &dest, LIMITS).unwrap();
        assert_eq!(
            std::fs::read_to_string(dest.join("a.txt")).unwrap(),
            "from tgz"
        );

        let mut zipped = tempfile::tempfile().unwrap();
        {
            let mut zip = zip::ZipWriter::new(&mut zipped);
            let options = zip::write::SimpleFileOptions::default();
            zip.add_directory("sub/", options).unwrap();
            zip.start_file("sub/b.txt", options).unwrap();
            zip.write_all(b"from zip").unwrap();
            zip.start_file("../evil", options).unwrap();
            zip.write_all(b"owned").unwrap();
            zip.finish().unwrap();
        }
        zipped.rewind().unwrap();
        let err = unpack(zipped, ArchiveFormat::Zip, root.path(), &dest, LIMITS).unwrap_err();
        assert!(err.to_string().contains("\"../evil\""), "{err}");
        assert_eq!(
            std::fs::read_to_string(dest.join("sub/b.txt")).unwrap(),
            "from zip"
        );
        assert!(!root.path().join("task/evil").exists());
    }

    #[test]
    fn detects_formats_by_name() {
        assert_eq!(ArchiveFormat::detect("a/B.TGZ"), Some(ArchiveFormat::TarGz));
        assert_eq!(
            ArchiveFormat::detect("x.tar.gz"),
            Some(ArchiveFormat::TarGz)
        );
        assert_eq!(ArchiveFormat::detect("x.tar"), Some(ArchiveFormat::Tar));
        assert_eq!(ArchiveFormat::detect("x.zip"), Some(ArchiveFormat::Zip));
        assert_eq!(ArchiveFormat::detect("x.gz"), None);
        assert_eq!(ArchiveFormat::detect("x.txt"), None);
    }
}

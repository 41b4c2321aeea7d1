//! What an image string names and how to obtain it.

use std::path::PathBuf;

use super::ImageError;

/// Transports podman knows that the driver does not pull through.
const UNSUPPORTED_TRANSPORTS: &[&str] = &[
    "containers-storage",
    "dir",
    "docker-daemon",
    "oci",
    "ostree",
    "sif",
    "tarball",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    Oci,
    Docker,
}

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Registry(RegistryRef),
    ArchiveFile {
        format: ArchiveFormat,
        path: PathBuf,
    },
    ArchiveUrl {
        format: ArchiveFormat,
        url: String,
    },
}

/// A registry image: what podman is asked for, plus the parts credential lookup needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryRef {
    /// Passed to podman as-is: short names stay short so registries.conf resolves them.
    pub name: String,
    /// Registry host (with port), `docker.io` when none is named.
    pub domain: String,
    /// Repository path inside the registry, without tag or digest.
    pub path: String,
}

impl RegistryRef {
    /// `domain/path`: the key credentials are looked up by.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }
}

/// Classifies an image string.
///
/// Differs from the Go driver: `localhost:5000/foo` (a registry port and no tag) is a
/// repository `foo` on `localhost:5000`, where Go took `5000/foo` for the tag.
pub fn parse(image: &str) -> Result<Source, ImageError> {
    let image = image.trim();
    let invalid = |reason: &str| ImageError::InvalidReference {
        image: image.to_string(),
        reason: reason.to_string(),
    };
    if image.is_empty() {
        return Err(invalid("empty image name"));
    }
    for (prefix, format) in [
        ("oci-archive:", ArchiveFormat::Oci),
        ("docker-archive:", ArchiveFormat::Docker),
    ] {
        if let Some(rest) = image.strip_prefix(prefix) {
            if rest.starts_with("http://") || rest.starts_with("https://") {
                return Ok(Source::ArchiveUrl {
                    format,
                    url: rest.to_string(),
                });
            }
            // `path[:reference]`: the reference names an image inside the archive.
            let path = rest.split(':').next().unwrap_or_default();
            if path.is_empty() {
                return Err(invalid("no archive path"));
            }
            return Ok(Source::ArchiveFile {
                format,
                path: PathBuf::from(path),
            });
        }
    }
    if let Some(rest) = image.strip_prefix("docker://") {
        let parts = split(rest).map_err(|r| invalid(&r))?;
        return Ok(Source::Registry(RegistryRef {
            name: parts.normalized(),
            domain: parts.domain,
            path: parts.path,
        }));
    }
    if let Some((transport, rest)) = image.split_once(':') {
        if UNSUPPORTED_TRANSPORTS.contains(&transport) && rest.contains('/') {
            return Err(ImageError::UnsupportedTransport {
                image: image.to_string(),
                transport: transport.to_string(),
            });
        }
    }
    let parts = split(image).map_err(|r| invalid(&r))?;
    Ok(Source::Registry(RegistryRef {
        name: image.to_string(),
        domain: parts.domain,
        path: parts.path,
    }))
}

struct Parts {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl Parts {
    /// The fully qualified docker reference (`docker.io/library/x:latest`).
    fn normalized(&self) -> String {
        let mut s = format!("{}/{}", self.domain, self.path);
        match (&self.tag, &self.digest) {
            (Some(tag), _) => {
                s.push(':');
                s.push_str(tag);
            }
            (None, None) => s.push_str(":latest"),
            (None, Some(_)) => {}
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }
}

/// Splits `[domain/]path[:tag][@digest]` the way docker references are read: the first
/// component is a registry when it has a `.` or `:` or is `localhost`; a tag is a `:` in the
/// last component only.
fn split(reference: &str) -> Result<Parts, String> {
    if reference.chars().any(char::is_whitespace) {
        return Err("whitespace in image name".into());
    }
    let (name, digest) = match reference.split_once('@') {
        Some((n, d)) if !d.is_empty() => (n, Some(d.to_string())),
        Some(_) => return Err("empty digest".into()),
        None => (reference, None),
    };
    let (repo, tag) = match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => {
            let tag = &name[i + 1..];
            if tag.is_empty() {
                return Err("empty tag".into());
            }
            (&name[..i], Some(tag.to_string()))
        }
        _ => (name, None),
    };
    let (domain, path) = match repo.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest.to_string())
        }
        Some(_) => ("docker.io".to_string(), repo.to_string()),
        None => ("docker.io".to_string(), format!("library/{repo}")),
    };
    if path.is_empty() || path.split('/').any(str::is_empty) {
        return Err("empty repository path component".into());
    }
    if let Some(bad) = path.split('/').find(|c| !valid_path_component(c)) {
        return Err(format!(
            "repository path component {bad:?} must be lowercase letters and digits, \
             separated by '.', '_', '__' or dashes"
        ));
    }
    if let Some(tag) = &tag {
        if !valid_tag(tag) {
            return Err(format!(
                "tag {tag:?} must be at most 128 letters, digits, '_', '.' or '-', \
                 not starting with '.' or '-'"
            ));
        }
    }
    Ok(Parts {
        domain,
        path,
        tag,
        digest,
    })
}

/// A path component as the docker reference grammar has it (podman refuses others):
/// `[a-z0-9]+` runs joined by one `.`, one or two `_`, or any number of `-`.
fn valid_path_component(component: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let bytes: Vec<char> = component.chars().collect();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alnum(*first) || !alnum(*last) {
        return false;
    }
    let mut separator = String::new();
    for c in bytes {
        if alnum(c) {
            let ok = separator.is_empty()
                || separator == "."
                || separator == "_"
                || separator == "__"
                || separator.chars().all(|s| s == '-');
            if !ok {
                return false;
            }
            separator.clear();
        } else if matches!(c, '.' | '_' | '-') {
            separator.push(c);
        } else {
            return false;
        }
    }
    true
}

/// A tag as the docker reference grammar has it: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn valid_tag(tag: &str) -> bool {
    tag.len() <= 128
        && tag.chars().enumerate().all(|(i, c)| {
            c.is_ascii_alphanumeric() || c == '_' || (i > 0 && matches!(c, '.' | '-'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(image: &str) -> RegistryRef {
        match parse(image).expect(image) {
            Source::Registry(r) => r,
            other => panic!("{image}: {other:?}"),
        }
    }

    #[test]
    fn short_and_qualified_names_pass_unchanged() {
        let r = registry("redis");
        assert_eq!(r.name, "redis");
        assert_eq!(r.repository(), "docker.io/library/redis");
        let r = registry("busybox:musl");
        assert_eq!(r.name, "busybox:musl");
        assert_eq!(r.repository(), "docker.io/library/busybox");
        let r = registry("user/repo:1");
        assert_eq!(r.repository(), "docker.io/user/repo");
        let r = registry("quay.io/org/app:v1");
        assert_eq!(r.name, "quay.io/org/app:v1");
        assert_eq!(r.repository(), "quay.io/org/app");
    }

    #[test]
    fn references_outside_the_docker_grammar_are_invalid() {
        for good in [
            "a/b__c/d-e--f/g.h:Tag_1.0-x",
            "quay.io/org/app_v2",
            "localhost/ndp-busybox:latest",
            "x@sha256:abc",
        ] {
            assert!(parse(good).is_ok(), "{good}");
        }
        for bad in [
            "Busybox",
            "org/App:1",
            "a/b..c",
            "a/-b",
            "a/b_",
            "a/b___c",
            "app:-tag",
            "app:.tag",
        ] {
            assert!(
                matches!(parse(bad), Err(ImageError::InvalidReference { .. })),
                "{bad}: {:?}",
                parse(bad)
            );
        }
        let long_tag = format!("app:{}", "t".repeat(129));
        assert!(parse(&long_tag).is_err());
    }

    #[test]
    fn registry_ports_are_not_tags() {
        let r = registry("localhost:5000/foo");
        assert_eq!(r.domain, "localhost:5000");
        assert_eq!(r.path, "foo");
        let r = registry("127.0.0.1:5000/a/b:tag");
        assert_eq!(r.repository(), "127.0.0.1:5000/a/b");
        let r = registry("localhost/ndp-busybox:latest");
        assert_eq!(r.repository(), "localhost/ndp-busybox");
    }

    #[test]
    fn docker_transport_is_normalized() {
        assert_eq!(
            registry("docker://root").name,
            "docker.io/library/root:latest"
        );
        assert_eq!(
            registry("docker://user/repo@sha256:abc").name,
            "docker.io/user/repo@sha256:abc"
        );
        assert_eq!(
            registry("docker://localhost:5000/x:1").name,
            "localhost:5000/x:1"
        );
        assert_eq!(
            registry("docker://quay.io/a/b:c@sha256:d").name,
            "quay.io/a/b:c@sha256:d"
        );
    }

    #[test]
    fn archives_local_and_remote() {
        assert_eq!(
            parse("oci-archive:/tmp/img.tar").expect("oci"),
            Source::ArchiveFile {
                format: ArchiveFormat::Oci,
                path: "/tmp/img.tar".into()
            }
        );
        assert_eq!(
            parse("docker-archive:/tmp/img.tar:busybox:latest").expect("docker"),
            Source::ArchiveFile {
                format: ArchiveFormat::Docker,
                path: "/tmp/img.tar".into()
            }
        );
        assert_eq!(
            parse("docker-archive:http://host:8080/img.tar").expect("url"),
            Source::ArchiveUrl {
                format: ArchiveFormat::Docker,
                url: "http://host:8080/img.tar".into()
            }
        );
    }

    #[test]
    fn bad_names_and_transports_are_rejected() {
        for bad in ["", "  ", "a b", "x:", "x@", "quay.io//x", "oci-archive:"] {
            assert!(
                matches!(parse(bad), Err(ImageError::InvalidReference { .. })),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse("dir:/var/lib/img"),
            Err(ImageError::UnsupportedTransport { ref transport, .. }) if transport == "dir"
        ));
        // A repository that happens to be named like a transport is still an image.
        assert_eq!(registry("oci:latest").name, "oci:latest");
    }
}

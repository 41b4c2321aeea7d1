//! e2e: image resolution and pull (src/driver/image.rs) against the private service and
//! local registries.

use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use nomad_driver_podman::driver::image::{
    ArchiveTls, AuthConfig, ImageError, ImageOrigin, ImageProgress, ImageRequest, ImageResolver,
    Platform, RegistryAuth,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::within;
use crate::support::{self, podman, ImageCleanup, BUSYBOX_IMAGE};

fn resolver(auth: AuthConfig) -> ImageResolver {
    ImageResolver::new(support::client(), auth)
}

fn request(image: &str) -> ImageRequest {
    ImageRequest {
        image: image.to_string(),
        auth: None,
        auth_soft_fail: false,
        force_pull: false,
        pull_timeout: Duration::from_secs(120),
        platform: Platform::default(),
    }
}

/// The local registries speak plain HTTP.
fn insecure(username: &str, password: &str) -> Option<RegistryAuth> {
    Some(RegistryAuth {
        username: username.into(),
        password: password.into(),
        tls_verify: false,
    })
}

type Recorded = Arc<Mutex<Vec<ImageProgress>>>;

fn recorder() -> (Recorded, impl Fn(ImageProgress) + Send + Sync) {
    let seen: Recorded = Arc::default();
    let sink = seen.clone();
    (seen, move |p| sink.lock().expect("lock").push(p))
}

#[tokio::test]
async fn pulls_once_then_uses_the_local_image_unless_forced() {
    let image = support::registry().push_busybox("pull");
    let _cleanup = ImageCleanup(vec![image.clone()]);
    let resolver = resolver(AuthConfig::default());
    let mut req = request(&image);
    req.auth = insecure("", "");

    let (seen, progress) = recorder();
    let first = resolver.ensure(&req, progress).await.expect("pull");
    assert_eq!(first.origin, ImageOrigin::Pulled);
    assert_eq!(first.name, image);
    let busybox = support::client()
        .image_inspect(BUSYBOX_IMAGE)
        .await
        .expect("busybox");
    assert_eq!(first.id, busybox.id, "same content as pushed");
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(
        seen[0],
        ImageProgress::Pulling {
            image: image.clone()
        }
    );
    assert!(
        seen.iter().any(
            |p| matches!(p, ImageProgress::Line { line, .. } if line.contains("Trying to pull"))
        ),
        "{seen:?}"
    );

    let again = resolver.ensure(&req, |_| {}).await.expect("cached");
    assert_eq!(again.origin, ImageOrigin::Local);
    assert_eq!(again.id, first.id);

    req.force_pull = true;
    let forced = resolver.ensure(&req, |_| {}).await.expect("forced");
    assert_eq!(forced.origin, ImageOrigin::Pulled);

    // The present image already has the requested platform: no pull.
    req.force_pull = false;
    req.platform = Platform {
        os: Some("linux".into()),
        arch: Some(busybox.architecture.clone()),
        variant: None,
    };
    let platform = resolver.ensure(&req, |_| {}).await.expect("platform");
    assert_eq!(platform.origin, ImageOrigin::Local);
}

#[tokio::test]
async fn tls_is_verified_without_an_auth_block() {
    let image = support::registry().push_busybox("tls");
    let err = resolver(AuthConfig::default())
        .ensure(&request(&image), |_| {})
        .await
        .expect_err("plain-HTTP registry with TLS verification");
    assert!(matches!(err, ImageError::Pull { .. }), "{err:?}");
    assert!(err.to_string().contains("HTTPS"), "{err}");
}

#[tokio::test]
async fn concurrent_pulls_of_one_image_share_the_result() {
    let image = support::registry().push_busybox("shared");
    let _cleanup = ImageCleanup(vec![image.clone()]);
    let resolver = resolver(AuthConfig::default());
    let mut req = request(&image);
    req.auth = insecure("", "");
    let (a, b) = tokio::join!(resolver.ensure(&req, |_| {}), resolver.ensure(&req, |_| {}));
    let (a, b) = (a.expect("first"), b.expect("second"));
    assert_eq!(a.id, b.id);
    assert_eq!(a.name, b.name);
}

#[tokio::test]
async fn task_credentials_and_clear_auth_errors() {
    let registry = support::auth_registry();
    let (user, password) = registry.credentials.clone().expect("credentials");
    let image = registry.push_busybox("auth");
    let _cleanup = ImageCleanup(vec![image.clone()]);
    let resolver = resolver(AuthConfig::default());

    let mut req = request(&image);
    req.auth = insecure(&user, "not-the-password-xyz");
    let err = resolver
        .ensure(&req, |_| {})
        .await
        .expect_err("wrong password");
    let text = err.to_string();
    assert!(text.contains(&image), "names the image: {text}");
    assert!(
        text.contains("unauthorized") || text.contains("authentication required"),
        "{text}"
    );
    assert!(
        !text.contains("not-the-password-xyz"),
        "password leaked: {text}"
    );
    assert!(!format!("{err:?}").contains("not-the-password-xyz"));

    req.auth = insecure(&user, &password);
    let ok = resolver.ensure(&req, |_| {}).await.expect("right password");
    assert_eq!(ok.origin, ImageOrigin::Pulled);
}

#[tokio::test]
async fn auth_file_longest_matching_key_wins() {
    let registry = support::auth_registry();
    let (user, password) = registry.credentials.clone().expect("credentials");
    let image = registry.push_busybox("authfile");
    let _cleanup = ImageCleanup(vec![image.clone()]);
    let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
    let dir = podman().scratch_dir("authfile");
    let file = dir.join("auth.json");
    // The registry-wide entry is wrong; the `ndp` namespace entry (longer) is right.
    std::fs::write(
        &file,
        serde_json::json!({"auths": {
            registry.host(): {"auth": b64(format!("{user}:wrong"))},
            format!("{}/ndp", registry.host()): {"auth": b64(format!("{user}:{password}"))},
            // Longer, but not at a path boundary of `ndp/authfile-...`: must not match.
            format!("{}/ndp/authfile", registry.host()): {"auth": b64(format!("{user}:wrong-too"))},
        }})
        .to_string(),
    )
    .expect("write auth file");
    let resolver = resolver(AuthConfig {
        file: Some(file.clone()),
        helper: None,
    });
    let mut req = request(&image);
    req.auth = insecure("", "");
    let pulled = resolver
        .ensure(&req, |_| {})
        .await
        .expect("pull with auth file");
    assert_eq!(pulled.origin, ImageOrigin::Pulled);

    std::fs::write(&file, "{not json").expect("break the file");
    req.force_pull = true;
    let err = resolver
        .ensure(&req, |_| {})
        .await
        .expect_err("broken file");
    assert!(matches!(err, ImageError::Auth { .. }), "{err:?}");
    assert!(err.to_string().contains("auth.json"), "{err}");

    // auth_soft_fail: the broken file is skipped and the pull goes on without credentials.
    req.auth_soft_fail = true;
    let err = resolver
        .ensure(&req, |_| {})
        .await
        .expect_err("no credentials");
    assert!(matches!(err, ImageError::Pull { .. }), "{err:?}");
}

#[tokio::test]
async fn credential_helper_is_asked_with_get_and_the_repository() {
    let registry = support::auth_registry();
    let (user, password) = registry.credentials.clone().expect("credentials");
    let image = registry.push_busybox("helper");
    let _cleanup = ImageCleanup(vec![image.clone()]);
    let dir = podman().scratch_dir("helper");
    let asked = dir.join("asked");
    let helper = dir.join("docker-credential-ndp");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || {{ echo \"bad action $1\" >&2; exit 2; }}\n\
             cat > '{asked}'\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"{user}\",\"Secret\":\"{password}\"}}' x\n",
            asked = asked.display()
        ),
    )
    .expect("write helper");
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let resolver = resolver(AuthConfig {
        file: None,
        helper: Some(helper.display().to_string()),
    });
    let mut req = request(&image);
    req.auth = insecure("", "");
    let pulled = resolver
        .ensure(&req, |_| {})
        .await
        .expect("pull with helper");
    assert_eq!(pulled.origin, ImageOrigin::Pulled);
    let repository = image.rsplit_once(':').expect("tag").0;
    assert_eq!(std::fs::read_to_string(&asked).expect("asked"), repository);

    let missing = resolver_with_helper(&dir.join("docker-credential-missing"));
    req.force_pull = true;
    let err = missing
        .ensure(&req, |_| {})
        .await
        .expect_err("missing helper");
    assert!(matches!(err, ImageError::Auth { .. }), "{err:?}");
    assert!(
        err.to_string().contains("docker-credential-missing"),
        "{err}"
    );
}

fn resolver_with_helper(path: &std::path::Path) -> ImageResolver {
    resolver(AuthConfig {
        file: None,
        helper: Some(path.display().to_string()),
    })
}

/// Saves the busybox image under a fresh name in `format`; returns (archive, name).
fn saved_archive(format: &str) -> (std::path::PathBuf, String) {
    let name = format!("localhost/{}:latest", support::unique_name("archive"));
    let archive = podman().scratch_dir("archive").join("image.tar");
    // An image id of its own: a tag of the shared busybox image goes when another test
    // removes that image by id (image GC tests do).
    podman()
        .import_busybox(&name, &[&format!("LABEL=archive={name}")])
        .expect("import");
    podman().cli_ok(&[
        "save",
        "--format",
        format,
        "-o",
        archive.to_str().expect("utf-8 path"),
        &name,
    ]);
    podman().cli_ok(&["rmi", &name]);
    (archive, name)
}

#[tokio::test]
async fn archives_are_loaded_from_local_paths() {
    for (format, transport) in [
        ("docker-archive", "docker-archive"),
        ("oci-archive", "oci-archive"),
    ] {
        let (archive, name) = saved_archive(format);
        let _cleanup = ImageCleanup(vec![name.clone()]);
        let (seen, progress) = recorder();
        let loaded = resolver(AuthConfig::default())
            .ensure(
                &request(&format!("{transport}:{}", archive.display())),
                progress,
            )
            .await
            .expect("load");
        assert_eq!(loaded.origin, ImageOrigin::Loaded);
        assert!(
            loaded.name.contains(
                name.trim_start_matches("localhost/")
                    .trim_end_matches(":latest")
            ),
            "{loaded:?}"
        );
        assert!(support::client()
            .image_exists(&loaded.name)
            .await
            .expect("exists"));
        assert_eq!(
            seen.lock().expect("lock")[0],
            ImageProgress::Loading {
                source: archive.display().to_string()
            }
        );
    }
    let err = resolver(AuthConfig::default())
        .ensure(&request("docker-archive:/nonexistent/image.tar"), |_| {})
        .await
        .expect_err("missing archive");
    assert!(matches!(err, ImageError::Archive { .. }), "{err:?}");
}

/// Serves `body` to every GET of `/image.tar`, 404 otherwise; over TLS with `tls`.
async fn serve_archive_on(
    body: Vec<u8>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let body = Arc::new(body);
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let body = body.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    Some(acceptor) => {
                        // A client that refuses the certificate ends the handshake here.
                        if let Ok(session) = acceptor.accept(conn).await {
                            answer_archive_get(session, &body).await;
                        }
                    }
                    None => answer_archive_get(conn, &body).await,
                }
            });
        }
    });
    addr
}

async fn serve_archive(body: Vec<u8>) -> std::net::SocketAddr {
    serve_archive_on(body, None).await
}

async fn answer_archive_get<S>(mut conn: S, body: &[u8])
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte).await.unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let found = head.starts_with(b"GET /image.tar ");
    let reply = if found {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
    } else {
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
    };
    let _ = conn.write_all(reply.as_bytes()).await;
    if found {
        let _ = conn.write_all(body).await;
    }
    let _ = conn.shutdown().await;
}

/// A fresh certificate authority (PEM) and a server certificate it signed for 127.0.0.1.
fn authority_and_server_tls() -> (String, tokio_rustls::TlsAcceptor) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let key = rcgen::KeyPair::generate().expect("server key");
    let server = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("server params")
        .signed_by(&key, &ca, &ca_key)
        .expect("server certificate");
    #[allow(deprecated)] // the driver's own choice of provider (src/driver/image/download.rs)
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![server.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .expect("server config");
    (ca.pem(), tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

#[tokio::test]
async fn archives_are_streamed_from_https_urls_only_from_trusted_servers() {
    let (archive, name) = saved_archive("oci-archive");
    let _cleanup = ImageCleanup(vec![name.clone()]);
    let (ca, acceptor) = authority_and_server_tls();
    let addr = serve_archive_on(
        std::fs::read(&archive).expect("read archive"),
        Some(acceptor),
    )
    .await;
    let url = format!("https://{addr}/image.tar");
    let trusted = ArchiveTls::from_pem(ca.as_bytes()).expect("CA");

    let loaded = resolver(AuthConfig::default())
        .with_archive_tls(trusted.clone())
        .ensure(&request(&format!("oci-archive:{url}")), |_| {})
        .await
        .expect("load over https");
    assert_eq!(loaded.origin, ImageOrigin::Loaded);
    assert!(
        loaded.name.contains(
            name.trim_start_matches("localhost/")
                .trim_end_matches(":latest")
        ),
        "{loaded:?}"
    );

    // A server certificate from another authority is refused before anything is loaded.
    let (other_ca, _) = authority_and_server_tls();
    let err = resolver(AuthConfig::default())
        .with_archive_tls(ArchiveTls::from_pem(other_ca.as_bytes()).expect("other CA"))
        .ensure(&request(&format!("oci-archive:{url}")), |_| {})
        .await
        .expect_err("untrusted server");
    assert!(matches!(err, ImageError::Download { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&url) && text.contains("certificate"),
        "{text}"
    );

    // https to a server that answers in plain http fails the handshake, naming the server.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let plain = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let _ = conn
                .write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
                .await;
        }
    });
    let err = resolver(AuthConfig::default())
        .with_archive_tls(trusted)
        .ensure(
            &request(&format!("docker-archive:https://{plain}/image.tar")),
            |_| {},
        )
        .await
        .expect_err("plain server");
    assert!(err.to_string().contains("TLS handshake"), "{err}");
}

#[tokio::test]
async fn archives_are_streamed_from_http_urls() {
    let (archive, name) = saved_archive("docker-archive");
    let _cleanup = ImageCleanup(vec![name.clone()]);
    let addr = serve_archive(std::fs::read(&archive).expect("read archive")).await;
    let loaded = resolver(AuthConfig::default())
        .ensure(
            &request(&format!("docker-archive:http://{addr}/image.tar")),
            |_| {},
        )
        .await
        .expect("load from http");
    assert_eq!(loaded.origin, ImageOrigin::Loaded);
    assert_eq!(loaded.name, name);

    let err = resolver(AuthConfig::default())
        .ensure(
            &request(&format!("docker-archive:http://{addr}/missing.tar")),
            |_| {},
        )
        .await
        .expect_err("404");
    assert!(matches!(err, ImageError::Download { .. }), "{err:?}");
    assert!(err.to_string().contains("404"), "{err}");
}

#[tokio::test]
async fn a_registry_that_never_answers_hits_the_pull_timeout() {
    // Accepts connections and says nothing.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = listener.accept().await {
            conns.push(c);
        }
    });
    let mut req = request(&format!("{addr}/ndp/silent:latest"));
    req.auth = insecure("", "");
    req.pull_timeout = Duration::from_secs(2);
    let err = within(
        "pull timeout",
        resolver(AuthConfig::default()).ensure(&req, |_| {}),
    )
    .await
    .expect_err("timeout");
    assert!(matches!(err, ImageError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("image_pull_timeout"), "{err}");
    held.abort();
}

#[tokio::test]
async fn invalid_references_fail_before_podman_is_asked() {
    for (image, want) in [
        ("bad image", "invalid image reference"),
        ("dir:/var/tmp/x", "unsupported transport"),
    ] {
        let err = resolver(AuthConfig::default())
            .ensure(&request(image), |_| {})
            .await
            .expect_err(image);
        assert!(err.to_string().contains(want), "{image}: {err}");
    }
}

//! Task `artifact` blocks fetched by a real run: a tar.gz over http from a server on
//! 127.0.0.1, unpacked and read by the task; a checksum mismatch failing the task with
//! both digests; a local file placed as a named file.

use std::io::{Read, Write};
use std::net::TcpListener;

use super::harness::{job_cleanup, task_lines, RunnerEnv};
use crate::support::unique_name;

/// Serves `body` at `/<name>` (404 elsewhere) on 127.0.0.1 until the test process ends.
fn serve(name: &str, body: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let wanted = format!("GET /{name} ");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match conn.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let found = head.starts_with(wanted.as_bytes());
            let (status, body): (&str, &[u8]) = if found {
                ("200 OK", &body)
            } else {
                ("404 Not Found", b"")
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(body);
        }
    });
    format!("http://{addr}/{name}")
}

fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (name, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, *data)
            .expect("tar entry");
    }
    tar.into_inner().expect("tar").finish().expect("gzip")
}

fn sha256(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A batch job whose task `cat`s `path` after fetching `artifact` (an artifact block body).
fn job(env: &RunnerEnv, id: &str, artifact: &str, path: &str) -> std::path::PathBuf {
    env.write_batch_job(
        id,
        "t",
        &format!(
            r#"      config {{
        image   = "localhost/ndp-busybox:latest"
        command = "cat"
        args    = ["{path}"]
      }}
      artifact {{
{artifact}
      }}"#
        ),
    )
}

fn printed(stdout: &str) -> Vec<String> {
    task_lines(stdout, "g.t")
        .into_iter()
        .filter(|l| !l.starts_with("==>"))
        .collect()
}

#[test]
fn a_task_reads_a_file_from_a_tar_gz_fetched_over_http() {
    let env = RunnerEnv::new("run-artifacts");
    let id = unique_name("artifact");
    let _cleanup = job_cleanup(&id);
    let archive = tar_gz(&[("conf/app.txt", b"from the archive\n")]);
    let sum = sha256(&archive);
    let url = serve("app.tar.gz", archive);
    let file = job(
        &env,
        &id,
        &format!(
            "source = \"{url}\"\ndestination = \"local/app\"\noptions {{\n checksum = \"sha256:{sum}\"\n}}"
        ),
        "/local/app/conf/app.txt",
    );
    let out = env.run(&["run", file.to_str().expect("utf-8")]);
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    assert_eq!(printed(&out.stdout), ["from the archive"], "{}", out.stdout);
    assert!(
        out.stdout
            .contains(&format!("Downloaded artifact {url} to local/app")),
        "{}",
        out.stdout
    );
}

#[test]
fn a_checksum_mismatch_fails_the_task_with_both_digests() {
    let env = RunnerEnv::new("run-artifacts");
    let id = unique_name("artifact");
    let _cleanup = job_cleanup(&id);
    let archive = tar_gz(&[("app.txt", b"tampered\n")]);
    let actual = sha256(&archive);
    let expected = "0".repeat(64);
    let url = serve("app.tgz", archive);
    let file = job(
        &env,
        &id,
        &format!("source = \"{url}\"\noptions {{\n checksum = \"sha256:{expected}\"\n}}"),
        "/local/app.txt",
    );
    let out = env.run(&["run", file.to_str().expect("utf-8")]);
    assert_ne!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    let all = format!("{}{}", out.stdout, out.stderr);
    let want = format!(
        "failed to download artifact \"{url}\" ({}:15:7): checksum mismatch: expected sha256:{expected}, got sha256:{actual}",
        file.display()
    );
    assert!(all.contains(&want), "want {want}\n{all}");
    assert!(printed(&out.stdout).is_empty(), "the task never ran: {all}");
}

#[test]
fn a_local_file_artifact_in_file_mode_becomes_the_named_file() {
    let env = RunnerEnv::new("run-artifacts");
    let id = unique_name("artifact");
    let _cleanup = job_cleanup(&id);
    // Relative to the job file, as a template's `source`; a .zip name is not unpacked
    // in file mode.
    let payload = format!("{id}-payload.zip");
    std::fs::write(env.state.join(&payload), "plain text, not a zip\n").expect("payload");
    let file = job(
        &env,
        &id,
        &format!("source = \"{payload}\"\ndestination = \"local/etc/app.cfg\"\nmode = \"file\""),
        "/local/etc/app.cfg",
    );
    let out = env.run(&["run", file.to_str().expect("utf-8")]);
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    assert_eq!(
        printed(&out.stdout),
        ["plain text, not a zip"],
        "{}",
        out.stdout
    );
}

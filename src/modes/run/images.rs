//! `validate` and `plan`: warn about task images a start could not get. The verdicts are
//! the core's (`driver::image::check_image`, the start path's parser and local-only
//! rule); this module only finds the images, reaches podman and words the result.
//! Warnings never change the exit code: the image may be built or loaded before `run`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::driver::config::DriverConfig;
use crate::driver::image::{self, ImageCheck};
use crate::driver::podman::PodmanClient;

use super::check::{config_field_location, decode_config};
use super::cli::ConnectionArgs;
use super::model::Job;
use super::service;
use super::statedir;

/// Bounds the whole check, so `validate` stays quick with a podman that hangs.
const CHECK_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Serialize)]
pub struct ImageWarning {
    pub group: String,
    pub task: String,
    pub image: String,
    /// Where `image` is written (`file:line:col`).
    pub location: String,
    pub message: String,
}

/// What the image check found, and whether podman's local storage was looked at.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImageReport {
    pub warnings: Vec<ImageWarning>,
    /// Why local storage was not checked (podman not reachable); `None` when it was.
    #[serde(
        rename = "image_check_skipped",
        skip_serializing_if = "Option::is_none"
    )]
    pub skipped: Option<String>,
    /// The version podman answered the ping with (`attr.driver.podman.version`).
    #[serde(skip)]
    pub podman_version: Option<String>,
}

/// One task's image as the start will read it.
struct TaskImage {
    group: String,
    task: String,
    image: String,
    location: String,
}

fn task_images(job: &Job) -> Vec<TaskImage> {
    job.groups
        .iter()
        .flat_map(|g| g.tasks.iter().map(move |t| (g, t)))
        .filter_map(|(g, t)| {
            let image = decode_config(t, &t.config).ok()?.image;
            // `${...}` is filled in when the task starts; nothing to check yet.
            (!image.contains("${")).then(|| TaskImage {
                group: g.name.clone(),
                task: t.name.clone(),
                location: config_field_location(t, "config.image").to_string(),
                image,
            })
        })
        .collect()
}

impl ImageReport {
    fn warn(&mut self, at: &TaskImage, message: String) {
        self.warnings.push(ImageWarning {
            group: at.group.clone(),
            task: at.task.clone(),
            image: at.image.clone(),
            location: at.location.clone(),
            message,
        });
    }

    /// Without podman: only what the reference itself tells (the start's parser).
    fn references_only(&mut self, images: &[TaskImage]) {
        for at in images {
            if let Err(e) = image::classify(&at.image) {
                self.warn(at, e.to_string());
            }
        }
    }

    /// The lines `validate` and `plan` print (empty when there is nothing to say).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        if !self.warnings.is_empty() {
            let _ = writeln!(
                out,
                "\nWarnings (the job is valid, but these tasks would not start as things are now):"
            );
            for w in &self.warnings {
                let _ = writeln!(
                    out,
                    "  {}.{} at {}: {}",
                    w.group, w.task, w.location, w.message
                );
            }
        }
        if let Some(why) = &self.skipped {
            let _ = writeln!(
                out,
                "\nImage check skipped (images were not looked up in podman's local storage): {why}"
            );
        }
        out
    }
}

/// Checks every task image: references the start would refuse always; local presence
/// (a `localhost/` image that is missing can never be pulled) only when podman answers.
pub async fn check(job: &Job, connection: &ConnectionArgs) -> ImageReport {
    let images = task_images(job);
    let mut report = ImageReport::default();
    if images.is_empty() {
        return report;
    }
    let url = match socket_url(connection) {
        Ok(url) => url,
        Err(why) => {
            report.references_only(&images);
            report.skipped = Some(why);
            return report;
        }
    };
    let unreachable = |reason: String| format!("podman is not reachable at {url}: {reason}");
    // One deadline for the ping and every lookup.
    let lookups = async {
        let client = PodmanClient::new(&url, Some(CHECK_DEADLINE))
            .map_err(|e| unreachable(e.to_string()))?;
        let version = client
            .ping()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let mut seen: BTreeMap<&str, Result<ImageCheck, String>> = BTreeMap::new();
        for at in &images {
            if !seen.contains_key(at.image.as_str()) {
                let verdict = image::check_image(&client, &at.image)
                    .await
                    .map_err(|e| format!("cannot look the image up in podman: {e}"));
                seen.insert(&at.image, verdict);
            }
        }
        Ok::<_, String>((version, seen))
    };
    let found = tokio::time::timeout(CHECK_DEADLINE, lookups)
        .await
        .unwrap_or_else(|_| {
            Err(unreachable(format!(
                "no answer within {}s",
                CHECK_DEADLINE.as_secs()
            )))
        });
    match found {
        Ok((version, verdicts)) => {
            report.podman_version = Some(version);
            for at in &images {
                match verdicts.get(at.image.as_str()) {
                    Some(Ok(ImageCheck::Unavailable(e))) => report.warn(at, e.to_string()),
                    Some(Err(e)) => report.warn(at, e.clone()),
                    Some(Ok(ImageCheck::Local | ImageCheck::Pullable | ImageCheck::Archive))
                    | None => {}
                }
            }
        }
        Err(why) => {
            report.references_only(&images);
            report.skipped = Some(why);
        }
    }
    report
}

/// The socket `run` would use. The state root is only looked at (for the embedded
/// service), never created: `validate` leaves nothing behind.
fn socket_url(connection: &ConnectionArgs) -> Result<String, String> {
    let socket = connection.socket_path().map_err(|e| e.to_string())?;
    let config = DriverConfig {
        socket_path: socket,
        ..DriverConfig::default()
    };
    let default = config
        .sockets()
        .ok()
        .and_then(|s| s.into_iter().next())
        .map_or_else(|| config.socket_path.clone(), |s| s.url);
    let root = connection
        .state_dir
        .clone()
        .unwrap_or_else(|| statedir::default_state_root().0);
    Ok(if root.is_dir() {
        service::fallback(connection.socket.as_deref(), &default, &root).unwrap_or(default)
    } else {
        default
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modes::run::jobspec::{parse, Source, VarInputs};

    const JOB: &str = r#"job "j" {
  group "g" {
    task "local" {
      driver = "podman"
      config {
        image = "localhost/app:1"
      }
    }
    task "later" {
      driver = "podman"
      config {
        image = "${NOMAD_META_image}"
      }
    }
    task "bad" {
      driver = "podman"
      config {
        image = "Bad/Name"
      }
    }
  }
}
"#;

    fn job() -> Job {
        parse(Source::new("job.nomad", JOB), &VarInputs::default())
            .unwrap()
            .job
    }

    #[test]
    fn images_still_holding_references_are_left_to_the_start() {
        let images: Vec<(String, String)> = task_images(&job())
            .into_iter()
            .map(|t| (t.task, t.location))
            .collect();
        assert_eq!(
            images,
            [
                ("local".to_string(), "job.nomad:6:9".to_string()),
                ("bad".to_string(), "job.nomad:18:9".to_string())
            ]
        );
    }

    #[tokio::test]
    async fn without_podman_only_the_references_are_checked_and_the_skip_is_said() {
        let dir = tempfile::tempdir().unwrap();
        let connection = ConnectionArgs {
            socket: Some(format!("unix://{}/podman.sock", dir.path().display())),
            state_dir: Some(dir.path().join("state")),
        };
        let report = check(&job(), &connection).await;
        let warned: Vec<&str> = report.warnings.iter().map(|w| w.task.as_str()).collect();
        assert_eq!(warned, ["bad"]);
        assert!(report.warnings[0]
            .message
            .starts_with("invalid image reference \"Bad/Name\""));
        let skipped = report.skipped.unwrap_or_default();
        assert!(
            skipped.starts_with("podman is not reachable at unix://"),
            "{skipped}"
        );
        assert!(
            !dir.path().join("state").exists(),
            "validate creates no state dir"
        );
    }

    fn warning(message: &str) -> ImageWarning {
        ImageWarning {
            group: "g".into(),
            task: "t".into(),
            image: "localhost/x".into(),
            location: "job.nomad:7:9".into(),
            message: message.into(),
        }
    }

    #[test]
    fn text_names_the_task_and_place_and_says_when_the_check_was_skipped() {
        assert_eq!(ImageReport::default().to_text(), "");
        let report = ImageReport {
            warnings: vec![warning("image localhost/x not found locally")],
            skipped: None,
            podman_version: None,
        };
        let text = report.to_text();
        assert!(
            text.contains("  g.t at job.nomad:7:9: image localhost/x not found locally\n"),
            "{text}"
        );
        assert!(!text.contains("skipped"), "{text}");
        let offline = ImageReport {
            warnings: Vec::new(),
            skipped: Some("podman is not reachable at unix:///x: refused".into()),
            podman_version: None,
        };
        assert!(offline
            .to_text()
            .contains("Image check skipped (images were not looked up in podman's local storage): podman is not reachable"));
    }
}

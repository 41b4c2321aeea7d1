//! Allocation directories in Nomad's layout, under the runner's state dir:
//!
//! ```text
//! <state>/<job id>/<alloc id>/
//!   alloc/{data,logs,tmp}          mounted at /alloc in every task
//!   <task>/{local,secrets,tmp}     local at /local, secrets at /secrets
//! ```
//!
//! Task output goes to `alloc/logs/<task>.stdout.<index>` and `.stderr.<index>`, rotated as
//! Nomad's logmon rotates them (the task's `logs` block), and both streams together, in
//! order and stamped, to `<task>.journal.<index>`, rotated the same way (Nomad has no such
//! file; the runner's `logs` needs it).
//!
//! Permissions: the shared `alloc/` dirs, `local/` and `tmp/` are 0777, as Nomad makes
//! them, so a task running as any user in its container can write there. `secrets/` is
//! 0700, owned by the runner's user: Nomad makes it a 0777 tmpfs and relies on its client
//! data dir being closed to other users, which a runner state dir need not be. Tasks
//! still use it: the runner runs containers as root by default (host root with rootful
//! podman, the runner's own uid with rootless), and a bind mount is reached through the
//! mount, not through its host parents. A task that sets a non-root `user` cannot read
//! `/secrets` (see docs/runner.md).

use crate::driver::gates::lexical_clean;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Where a task's journal is in an allocation's `alloc/logs` directory: the base of its
/// rotated files.
pub fn journal_path(logs: &Path, task: &str) -> PathBuf {
    logs.join(format!("{task}.journal"))
}

/// Mode of each task's `secrets/` directory.
pub const SECRETS_MODE: u32 = 0o700;

/// One allocation's directory tree.
#[derive(Debug, Clone)]
pub struct AllocDir {
    pub root: PathBuf,
}

impl AllocDir {
    pub fn new(state_root: &Path, job_id: &str, alloc_id: &str) -> Self {
        AllocDir {
            root: state_root.join(job_id).join(alloc_id),
        }
    }

    pub fn shared(&self) -> PathBuf {
        self.root.join("alloc")
    }

    pub fn logs(&self) -> PathBuf {
        self.shared().join("logs")
    }

    pub fn task_dir(&self, task: &str) -> PathBuf {
        self.root.join(task)
    }

    pub fn local(&self, task: &str) -> PathBuf {
        self.task_dir(task).join("local")
    }

    pub fn secrets(&self, task: &str) -> PathBuf {
        self.task_dir(task).join("secrets")
    }

    /// The base of a task's rotated stdout files (`<base>.<index>`).
    pub fn stdout(&self, task: &str) -> PathBuf {
        self.logs().join(format!("{task}.stdout"))
    }

    /// The base of a task's rotated stderr files.
    pub fn stderr(&self, task: &str) -> PathBuf {
        self.logs().join(format!("{task}.stderr"))
    }

    /// Both streams in the order written, stamped: what `logs` reads.
    pub fn journal(&self, task: &str) -> PathBuf {
        journal_path(&self.logs(), task)
    }

    /// Creates the tree. Directories are world-writable (as Nomad makes the shared alloc
    /// dir) so tasks running as another user inside their container can write to them;
    /// `secrets/` is the runner user's only (0700).
    pub async fn create(&self, tasks: &[&str]) -> std::io::Result<()> {
        let mut dirs = vec![
            (self.shared().join("data"), 0o777),
            (self.logs(), 0o777),
            (self.shared().join("tmp"), 0o777),
        ];
        for task in tasks {
            dirs.push((self.local(task), 0o777));
            dirs.push((self.secrets(task), SECRETS_MODE));
            dirs.push((self.task_dir(task).join("tmp"), 0o777));
        }
        for (dir, mode) in dirs {
            tokio::fs::create_dir_all(&dir).await?;
            tokio::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).await?;
        }
        Ok(())
    }

    /// The file a template `destination` names, which must stay inside the allocation
    /// (Nomad's template sandbox). Relative destinations are relative to the task dir.
    pub fn template_destination(&self, task: &str, destination: &str) -> Option<PathBuf> {
        let joined = if Path::new(destination).is_absolute() {
            PathBuf::from(destination)
        } else {
            self.task_dir(task).join(destination)
        };
        let normalized = lexical_clean(&joined);
        normalized.starts_with(&self.root).then_some(normalized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn creates_nomads_layout() {
        let state = tempfile::tempdir().unwrap();
        let dir = AllocDir::new(state.path(), "web", "a1");
        dir.create(&["server", "sidecar"]).await.unwrap();
        for sub in [
            "alloc/data",
            "alloc/logs",
            "alloc/tmp",
            "server/local",
            "server/secrets",
            "server/tmp",
            "sidecar/local",
            "sidecar/secrets",
        ] {
            let path = state.path().join("web/a1").join(sub);
            let meta =
                std::fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(meta.is_dir());
            let want = if sub.ends_with("secrets") {
                0o700
            } else {
                0o777
            };
            assert_eq!(meta.permissions().mode() & 0o777, want, "{sub}");
        }
        assert_eq!(
            dir.stdout("server"),
            state.path().join("web/a1/alloc/logs/server.stdout")
        );
    }

    #[test]
    fn template_destinations_stay_in_the_allocation() {
        let dir = AllocDir::new(Path::new("/state"), "web", "a1");
        assert_eq!(
            dir.template_destination("t", "local/x.conf"),
            Some(PathBuf::from("/state/web/a1/t/local/x.conf"))
        );
        assert_eq!(
            dir.template_destination("t", "../alloc/data/y"),
            Some(PathBuf::from("/state/web/a1/alloc/data/y"))
        );
        assert_eq!(dir.template_destination("t", "../../../etc/passwd"), None);
        assert_eq!(dir.template_destination("t", "/etc/passwd"), None);
    }
}

//! Templates while their task runs: as Nomad's template runner, a template is rendered
//! again when an input changes (its `source` file, the files its `file` calls read), and a
//! changed output is written and acted on by `change_mode`.
//!
//! Inputs are polled (a stat a second) rather than watched with inotify: a `file` input
//! may not exist yet, may be replaced by rename, and sits in directories the task can
//! change under us; a stat of each known path covers all of that.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::driver::hostfs::VerifiedDir;

use super::model::{ChangeMode, TemplateSpec};
use super::template::{render_in, RenderContext};

/// How often the inputs of a running task's templates are checked.
const POLL: Duration = Duration::from_secs(1);

/// What identifies one version of an input file without reading it. `None` in a list of
/// stamps: the file is missing (or unreadable), so its appearance is a change too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

/// One input of a render: a path and whether a link there is followed (the job's own
/// `source` file) or not (a `file` read in the task dir, where the task may plant links).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub path: PathBuf,
    pub follow: bool,
}

fn stamp(input: &Input) -> Option<Stamp> {
    let meta = if input.follow {
        std::fs::metadata(&input.path)
    } else {
        std::fs::symlink_metadata(&input.path)
    }
    .ok()?;
    Some(Stamp {
        dev: meta.dev(),
        ino: meta.ino(),
        size: meta.size(),
        mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
    })
}

/// The stamps of `inputs`, in order. Blocking (stats).
pub fn stamps(inputs: &[Input]) -> Vec<Option<Stamp>> {
    inputs.iter().map(stamp).collect()
}

/// One template of a running task, as last rendered.
#[derive(Debug, Clone)]
pub struct Watched {
    pub spec: TemplateSpec,
    /// The destination on the host.
    pub path: PathBuf,
    /// The destination as written in the job (for status lines).
    pub destination: String,
    pub output: String,
    pub inputs: Vec<Input>,
    pub stamps: Vec<Option<Stamp>>,
}

/// Everything a task's templates render with; the same for every render of one start.
#[derive(Clone)]
pub struct RenderInputs {
    pub env: Arc<BTreeMap<String, String>>,
    pub task_dir: PathBuf,
    pub alloc_root: PathBuf,
}

/// Renders `spec` (reading its source and its `file` inputs off the runtime); returns
/// the output and what it read, also when it failed: a missing file that appears later is
/// a change.
pub async fn render(
    spec: &TemplateSpec,
    inputs: &RenderInputs,
) -> (Result<String, String>, Vec<Input>) {
    let mut read = Vec::new();
    let rendered = render_reading(spec, inputs, &mut read).await;
    (rendered, read)
}

async fn render_reading(
    spec: &TemplateSpec,
    inputs: &RenderInputs,
    read: &mut Vec<Input>,
) -> Result<String, String> {
    let text = match (&spec.data, &spec.source) {
        (Some(data), _) => data.clone(),
        (None, Some(source)) => {
            read.push(Input {
                path: source.clone(),
                follow: true,
            });
            tokio::fs::read_to_string(source)
                .await
                .map_err(|e| format!("cannot read source {}: {e}", source.display()))?
        }
        (None, None) => String::new(),
    };
    let (left, right) = (spec.left_delimiter.clone(), spec.right_delimiter.clone());
    let missing_key_error = spec.error_on_missing_key;
    let (env, task_dir) = (inputs.env.clone(), inputs.task_dir.clone());
    let (rendered, files) = tokio::task::spawn_blocking(move || {
        let mut ctx = RenderContext::new(&env, Some(&task_dir));
        ctx.error_on_missing_key = missing_key_error;
        let rendered = render_in(&text, &left, &right, &ctx);
        (rendered, ctx.reads.into_inner())
    })
    .await
    .map_err(|e| format!("rendering failed: {e}"))?;
    read.extend(files.into_iter().map(|path| Input {
        path,
        follow: false,
    }));
    rendered.map_err(|e| e.to_string())
}

/// Writes a rendered template at `path` inside the allocation `root`: every directory
/// below the root is reached (or made) without following links, and the file is replaced
/// through a fresh temporary file, so a link the task planted in `/local` or `/alloc`
/// redirects nothing. `uid`/`gid` own the new file before it takes the name.
pub async fn write(
    root: &Path,
    path: PathBuf,
    contents: Vec<u8>,
    spec: &TemplateSpec,
) -> Result<(), String> {
    let root = root.to_path_buf();
    let (mode, uid, gid) = (spec.perms, spec.uid, spec.gid);
    tokio::task::spawn_blocking(move || {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(format!("{} names no file", path.display()));
        };
        VerifiedDir::open_or_create(&root, parent, 0o755)
            .and_then(|dir| {
                dir.replace_with(name, mode, |file| {
                    std::io::Write::write_all(file, &contents)?;
                    if uid.is_some() || gid.is_some() {
                        std::os::unix::fs::fchown(&*file, uid, gid)?;
                    }
                    file.sync_data()
                })
            })
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| format!("writing the template failed: {e}"))?
}

/// What the watcher asks of the task runner.
pub trait Actions {
    fn status(&self, line: String);
    /// Sends `signal` to the task's container.
    fn signal(&self, signal: String) -> impl std::future::Future<Output = Result<(), String>>;
}

/// Which templates changed in one poll and what their modes ask for.
#[derive(Debug, Default, PartialEq)]
pub struct Reaction {
    pub restart: bool,
    pub signals: Vec<String>,
    /// The longest splay of the changed templates that ask for an action.
    pub splay: Duration,
}

impl Reaction {
    fn add(&mut self, spec: &TemplateSpec) {
        match spec.change_mode {
            ChangeMode::Noop => return,
            ChangeMode::Restart => self.restart = true,
            ChangeMode::Signal => {
                let signal = spec.change_signal.clone().unwrap_or_default();
                if !self.signals.contains(&signal) {
                    self.signals.push(signal);
                }
            }
        }
        self.splay = self.splay.max(spec.splay);
    }
}

/// Re-renders one template if its inputs changed since the last look; writes a changed
/// output. Returns whether the file changed.
pub async fn poll_one(
    watched: &mut Watched,
    inputs: &RenderInputs,
    status: &impl Fn(String),
) -> bool {
    let known = watched.inputs.clone();
    let now = tokio::task::spawn_blocking(move || stamps(&known))
        .await
        .unwrap_or_default();
    if now == watched.stamps {
        return false;
    }
    // Taken before rendering: a change during the render is seen by the next poll.
    watched.stamps = now;
    let shown = &watched.destination;
    let (output, read) = render(&watched.spec, inputs).await;
    if read != watched.inputs {
        let again = read.clone();
        watched.stamps = tokio::task::spawn_blocking(move || stamps(&again))
            .await
            .unwrap_or_default();
        watched.inputs = read;
    }
    let output = match output {
        Ok(output) => output,
        Err(e) => {
            status(format!("Template {shown} failed to re-render: {e}"));
            return false;
        }
    };
    if output == watched.output {
        return false;
    }
    if let Err(e) = write(
        &inputs.alloc_root,
        watched.path.clone(),
        output.clone().into_bytes(),
        &watched.spec,
    )
    .await
    {
        status(format!("Template {shown} failed to re-render: {e}"));
        return false;
    }
    watched.output = output;
    true
}

/// Watches the templates of a running task until dropped (the task runner drops it when
/// the container ends). A change with `change_mode = "restart"` cancels `restart` and the
/// watch goes idle: the runner restarts the task, which renders and watches anew.
pub async fn watch(
    mut templates: Vec<Watched>,
    inputs: RenderInputs,
    actions: impl Actions,
    restart: CancellationToken,
) -> std::convert::Infallible {
    if templates.is_empty() {
        return std::future::pending().await;
    }
    let status = |line: String| actions.status(line);
    loop {
        tokio::time::sleep(POLL).await;
        let mut reaction = Reaction::default();
        for watched in &mut templates {
            if poll_one(watched, &inputs, &status).await {
                status(format!("Template re-rendered: {}", watched.destination));
                reaction.add(&watched.spec);
            }
        }
        if !reaction.restart && reaction.signals.is_empty() {
            continue;
        }
        if !reaction.splay.is_zero() {
            let nanos = rand::thread_rng().gen_range(0..reaction.splay.as_nanos().max(1));
            tokio::time::sleep(Duration::from_nanos(nanos as u64)).await;
        }
        // As Nomad: a restart makes the signals moot.
        if reaction.restart {
            restart.cancel();
            return std::future::pending().await;
        }
        for signal in reaction.signals {
            status(format!("Template re-rendered: sending {signal}"));
            if let Err(e) = actions.signal(signal.clone()).await {
                status(format!("Sending {signal} failed: {e}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(data: &str) -> TemplateSpec {
        TemplateSpec {
            data: Some(data.into()),
            source: None,
            destination: "local/out".into(),
            env: false,
            perms: 0o640,
            left_delimiter: "{{".into(),
            right_delimiter: "}}".into(),
            error_on_missing_key: false,
            change_mode: ChangeMode::Noop,
            change_signal: None,
            splay: Duration::ZERO,
            uid: None,
            gid: None,
            location: super::super::jobspec::source::Location {
                file: PathBuf::new(),
                line: 1,
                column: 1,
            },
        }
    }

    async fn first(spec: TemplateSpec, inputs: &RenderInputs) -> Watched {
        let (output, read) = render(&spec, inputs).await;
        let output = output.expect("renders");
        let again = read.clone();
        Watched {
            path: inputs.task_dir.join(&spec.destination),
            destination: spec.destination.clone(),
            spec,
            output,
            stamps: stamps(&again),
            inputs: read,
        }
    }

    fn inputs(dir: &Path) -> RenderInputs {
        std::fs::create_dir_all(dir.join("t/local")).unwrap();
        RenderInputs {
            env: Arc::new(BTreeMap::new()),
            task_dir: dir.join("t"),
            alloc_root: dir.to_path_buf(),
        }
    }

    #[tokio::test]
    async fn a_changed_file_input_re_renders_and_writes_only_a_changed_output() {
        let dir = tempfile::tempdir().unwrap();
        let inputs = inputs(dir.path());
        let data = dir.path().join("t/local/data");
        std::fs::write(&data, "one").unwrap();
        let mut w = first(spec("v={{ file \"local/data\" | toUpper }}"), &inputs).await;
        assert_eq!(w.output, "v=ONE");
        assert_eq!(
            w.inputs,
            [Input {
                path: data.clone(),
                follow: false
            }]
        );
        let quiet = |line: String| panic!("unexpected status {line}");
        // Nothing changed: no render, no write.
        assert!(!poll_one(&mut w, &inputs, &quiet).await);
        assert!(!w.path.exists());

        // Same size, new content: the stamp still differs (mtime/ctime).
        std::fs::write(&data, "two").unwrap();
        assert!(poll_one(&mut w, &inputs, &quiet).await);
        assert_eq!(std::fs::read_to_string(&w.path).unwrap(), "v=TWO");
        assert_eq!(std::fs::metadata(&w.path).unwrap().mode() & 0o7777, 0o640);

        // A new stamp with the same output writes nothing.
        std::fs::remove_file(&w.path).unwrap();
        std::fs::write(&data, "TWO").unwrap();
        assert!(!poll_one(&mut w, &inputs, &quiet).await);
        assert!(!w.path.exists());
    }

    #[tokio::test]
    async fn a_source_file_and_a_missing_input_that_appears_are_watched() {
        let dir = tempfile::tempdir().unwrap();
        let inputs = inputs(dir.path());
        let source = dir.path().join("job.tpl");
        std::fs::write(&source, "a").unwrap();
        let mut s = spec("");
        s.data = None;
        s.source = Some(source.clone());
        let mut w = first(s, &inputs).await;
        assert_eq!(w.output, "a");
        std::fs::write(&source, "{{ file \"local/later\" }}").unwrap();
        let lines = std::sync::Mutex::new(Vec::new());
        let record = |line: String| lines.lock().unwrap().push(line);
        // The new text reads a file that is not there yet: an error, but now watched.
        assert!(!poll_one(&mut w, &inputs, &record).await);
        assert!(lines.lock().unwrap()[0].contains("failed to re-render"));
        assert_eq!(w.inputs.len(), 2);
        std::fs::write(dir.path().join("t/local/later"), "b").unwrap();
        assert!(poll_one(&mut w, &inputs, &record).await);
        assert_eq!(std::fs::read_to_string(&w.path).unwrap(), "b");
    }

    #[test]
    fn restart_wins_over_signals_and_the_longest_splay_counts() {
        let mut r = Reaction::default();
        let mut noop = spec("");
        noop.splay = Duration::from_secs(9);
        r.add(&noop);
        assert_eq!(r, Reaction::default());
        let mut hup = spec("");
        hup.change_mode = ChangeMode::Signal;
        hup.change_signal = Some("SIGHUP".into());
        hup.splay = Duration::from_secs(1);
        r.add(&hup);
        r.add(&hup);
        assert_eq!(r.signals, ["SIGHUP"]);
        let mut restart = spec("");
        restart.change_mode = ChangeMode::Restart;
        restart.splay = Duration::from_secs(3);
        r.add(&restart);
        assert!(r.restart);
        assert_eq!(r.splay, Duration::from_secs(3));
    }
}

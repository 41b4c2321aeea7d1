//! Growth of log files, from one inotify instance shared by every tail of a driver: an
//! idle task costs nothing (no timer, no syscall) until its file is written. One
//! instance per driver rather than per file, as instances are limited per user (128 by
//! default) and watches are not.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::Path;
use std::sync::{Arc, Mutex};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// What wakes a tail: data written, and a file replaced or removed (rotation).
const WATCHED: AddWatchFlags = AddWatchFlags::IN_MODIFY
    .union(AddWatchFlags::IN_ATTRIB)
    .union(AddWatchFlags::IN_CLOSE_WRITE)
    .union(AddWatchFlags::IN_MOVE_SELF)
    .union(AddWatchFlags::IN_DELETE_SELF);

struct InotifyFd(Inotify);

impl AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

struct Shared {
    inotify: AsyncFd<InotifyFd>,
    /// Per watched file, the tails waiting on it (one usually).
    waiters: Mutex<HashMap<WatchDescriptor, Vec<Arc<Notify>>>>,
}

/// The shared instance. Cheap to clone.
#[derive(Clone)]
pub struct FileEvents {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for FileEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileEvents")
    }
}

impl FileEvents {
    /// Starts the instance and its reader on the current runtime; the reader ends with
    /// `cancel`.
    pub fn start(cancel: CancellationToken) -> std::io::Result<Self> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        // SAFETY: InotifyFd owns the descriptor (an OwnedFd inside Inotify), which stays
        // open and the same for as long as the AsyncFd holds it.
        let inotify =
            unsafe { AsyncFd::register_with_interest(InotifyFd(inotify), Interest::READABLE) }
                .map_err(|e| std::io::Error::other(e.to_string()))?;
        let shared = Arc::new(Shared {
            inotify,
            waiters: Mutex::new(HashMap::new()),
        });
        tokio::spawn(read_events(shared.clone(), cancel));
        Ok(FileEvents { shared })
    }

    /// Wakes the returned watch whenever `path` (the file there now) changes.
    pub(super) fn watch(&self, path: &Path) -> std::io::Result<FileWatch> {
        let descriptor = self.shared.inotify.get_ref().0.add_watch(path, WATCHED)?;
        let notify = Arc::new(Notify::new());
        self.shared
            .lock()
            .entry(descriptor)
            .or_default()
            .push(notify.clone());
        Ok(FileWatch {
            shared: self.shared.clone(),
            descriptor,
            notify,
        })
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<WatchDescriptor, Vec<Arc<Notify>>>> {
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn read_events(shared: Arc<Shared>, cancel: CancellationToken) {
    loop {
        let mut ready = tokio::select! {
            _ = cancel.cancelled() => return,
            ready = shared.inotify.readable() => match ready {
                Ok(ready) => ready,
                Err(_) => return,
            },
        };
        match shared.inotify.get_ref().0.read_events() {
            Ok(events) => {
                let waiters = shared.lock();
                for event in events {
                    for notify in waiters.get(&event.wd).into_iter().flatten() {
                        // Stores a wake-up when the tail is busy reading: none is lost.
                        notify.notify_one();
                    }
                }
            }
            Err(nix::errno::Errno::EAGAIN) => ready.clear_ready(),
            // Overflow or a broken instance: tails still poll now and then.
            Err(_) => ready.clear_ready(),
        }
    }
}

/// One tail's interest in one file; dropping it stops the watch.
pub(super) struct FileWatch {
    shared: Arc<Shared>,
    descriptor: WatchDescriptor,
    notify: Arc<Notify>,
}

impl FileWatch {
    /// Returns once the file changed since the last call (at once when it already has).
    pub(super) async fn changed(&self) {
        self.notify.notified().await;
    }
}

impl Drop for FileWatch {
    fn drop(&mut self) {
        let mut waiters = self.shared.lock();
        let Some(list) = waiters.get_mut(&self.descriptor) else {
            return;
        };
        list.retain(|n| !Arc::ptr_eq(n, &self.notify));
        if list.is_empty() {
            waiters.remove(&self.descriptor);
            // Gone already when the file was removed; nothing to undo then.
            let _ = self.shared.inotify.get_ref().0.rm_watch(self.descriptor);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Duration;

    #[tokio::test]
    async fn a_write_wakes_the_watch_and_idle_files_do_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (busy, idle) = (dir.path().join("busy.log"), dir.path().join("idle.log"));
        std::fs::write(&busy, "").expect("create");
        std::fs::write(&idle, "").expect("create");
        let cancel = CancellationToken::new();
        let events = FileEvents::start(cancel.clone()).expect("inotify");
        let busy_watch = events.watch(&busy).expect("watch");
        let idle_watch = events.watch(&idle).expect("watch");
        // A second tail of the same file is woken too, and keeps the watch alive.
        let second = events.watch(&busy).expect("watch");

        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&busy)
            .expect("open");
        file.write_all(b"line\n").expect("write");
        tokio::time::timeout(Duration::from_secs(10), busy_watch.changed())
            .await
            .expect("the write wakes the watch");
        tokio::time::timeout(Duration::from_secs(10), second.changed())
            .await
            .expect("and the second one");
        assert!(
            tokio::time::timeout(Duration::from_millis(200), idle_watch.changed())
                .await
                .is_err(),
            "an untouched file does not wake its watch"
        );
        drop(second);
        file.write_all(b"more\n").expect("write");
        tokio::time::timeout(Duration::from_secs(10), busy_watch.changed())
            .await
            .expect("still watched after the other tail left");
        cancel.cancel();
    }
}

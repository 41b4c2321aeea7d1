//! One watcher per podman socket for every task on it: exits come from a single events
//! stream (with a periodic reconcile for anything the stream missed), and stats for all
//! tasks come from one bulk stats request per tick, fanned out to each subscriber at its
//! own interval. The cost of watching tasks therefore stays flat as tasks are added.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::model::{ExitResult, TaskStats};
use super::podman::{self, PodmanClient, PodmanError};
use super::stats::{Compute, Sample, Tracker};

/// How often the exit watcher compares its view with podman's even when the events stream
/// is quiet: events can be lost while the stream reconnects.
const RECONCILE_PERIOD: Duration = Duration::from_secs(10);
/// Pause before reconnecting a failed events stream.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// Shortest stats tick, whatever a caller asks for.
const MIN_STATS_INTERVAL: Duration = Duration::from_millis(250);

/// Whether a task still runs, as the watcher last saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum ExitState {
    Running,
    Exited { result: ExitResult, at: SystemTime },
}

pub type ExitSender = watch::Sender<ExitState>;

struct StatsSubscriber {
    container_id: String,
    interval: Duration,
    next_due: Instant,
    tracker: Tracker,
    sink: mpsc::Sender<TaskStats>,
}

#[derive(Default)]
struct Shared {
    watched: HashMap<String, Arc<ExitSender>>,
    subscribers: Vec<StatsSubscriber>,
    exit_watcher_running: bool,
    stats_poller_running: bool,
}

/// The watcher of one podman socket.
pub struct Monitor {
    client: PodmanClient,
    compute: Compute,
    shared: Mutex<Shared>,
    wake_exit_watcher: Notify,
    cancel: CancellationToken,
}

impl Monitor {
    pub fn new(client: PodmanClient, compute: Compute, cancel: CancellationToken) -> Arc<Self> {
        Arc::new(Monitor {
            client,
            compute,
            shared: Mutex::new(Shared::default()),
            wake_exit_watcher: Notify::new(),
            cancel,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        // A panic while holding the lock leaves plain data behind; keep going with it.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts reporting the exit of `container_id` through `exit`.
    pub fn watch(self: &Arc<Self>, container_id: &str, exit: Arc<ExitSender>) {
        let start = {
            let mut shared = self.lock();
            shared.watched.insert(container_id.to_string(), exit);
            !std::mem::replace(&mut shared.exit_watcher_running, true)
        };
        if start {
            tokio::spawn(run_exit_watcher(Arc::downgrade(self)));
        } else {
            // A container that exits before the stream sees it is caught by a reconcile now.
            self.wake_exit_watcher.notify_one();
        }
    }

    pub fn unwatch(&self, container_id: &str) {
        let mut shared = self.lock();
        shared.watched.remove(container_id);
        shared
            .subscribers
            .retain(|s| s.container_id != container_id);
    }

    /// Stats of `container_id` every `interval` until the receiver is dropped or the task
    /// exits (the channel then closes).
    pub fn subscribe_stats(
        self: &Arc<Self>,
        container_id: &str,
        interval: Duration,
    ) -> mpsc::Receiver<TaskStats> {
        let (sink, receiver) = mpsc::channel(4);
        let start = {
            let mut shared = self.lock();
            shared.subscribers.push(StatsSubscriber {
                container_id: container_id.to_string(),
                interval: interval.max(MIN_STATS_INTERVAL),
                next_due: Instant::now(),
                tracker: Tracker::default(),
                sink,
            });
            !std::mem::replace(&mut shared.stats_poller_running, true)
        };
        if start {
            tokio::spawn(run_stats_poller(Arc::downgrade(self)));
        }
        receiver
    }

    /// The state of a container as one inspect shows it.
    pub fn state_of(inspect: &podman::ContainerInspect) -> ExitState {
        if inspect.state.running {
            ExitState::Running
        } else {
            ExitState::Exited {
                result: exit_result_of(&inspect.state),
                at: inspect.state.finished_at().unwrap_or_else(SystemTime::now),
            }
        }
    }

    /// The state of a container, when podman can tell: `None` when the inspect failed
    /// for another reason than the container being gone (podman restarting, a timeout),
    /// which is no evidence of an exit.
    pub async fn confirmed_state(client: &PodmanClient, container_id: &str) -> Option<ExitState> {
        match client.container_inspect(container_id).await {
            Ok(inspect) => Some(Self::state_of(&inspect)),
            Err(PodmanError::NotFound { .. }) => Some(ExitState::Exited {
                result: ExitResult {
                    exit_code: 0,
                    signal: 0,
                    oom_killed: false,
                    err: Some(format!(
                        "container {container_id} was removed outside the driver; its exit code is lost"
                    )),
                },
                at: SystemTime::now(),
            }),
            Err(_) => None,
        }
    }

    /// Settles a watched container once podman confirms it is no longer running; a
    /// failed inspect leaves it watched for the next event or reconcile.
    async fn settle(&self, container_id: &str) {
        let Some(exit) = self.lock().watched.get(container_id).cloned() else {
            return;
        };
        match Self::confirmed_state(&self.client, container_id).await {
            None | Some(ExitState::Running) => {}
            Some(state) => {
                self.lock().watched.remove(container_id);
                exit.send_replace(state);
            }
        }
    }

    /// Settles every watched container podman no longer reports as running. One list
    /// request, whatever the number of tasks. Every running container is listed, not
    /// only labelled ones: tasks adopted from the Go plugin carry none of our labels.
    async fn reconcile(&self) -> Result<(), PodmanError> {
        let watched: Vec<String> = self.lock().watched.keys().cloned().collect();
        if watched.is_empty() {
            return Ok(());
        }
        let running = self
            .client
            .container_list(&podman::ListOptions {
                all: false,
                labels: Vec::new(),
                names: Vec::new(),
            })
            .await?
            .into_iter()
            .filter(|c| c.state == "running")
            .map(|c| c.id)
            .collect::<std::collections::HashSet<_>>();
        for id in watched {
            if !running.contains(&id) {
                self.settle(&id).await;
            }
        }
        Ok(())
    }
}

/// Runs until the driver is dropped or cancelled. Holds the monitor only while working,
/// so dropping the driver ends the loop.
async fn run_exit_watcher(monitor: Weak<Monitor>) {
    // Every container's deaths, not only labelled ones: tasks adopted from the Go plugin
    // carry none of our labels. Containers nobody watches are ignored in `settle`.
    let filters = podman::EventsOptions {
        types: vec!["container".into()],
        actions: vec!["died".into()],
        ..podman::EventsOptions::default()
    };
    loop {
        let Some(monitor) = monitor.upgrade() else {
            return;
        };
        let cancel = monitor.cancel.clone();
        // Replaying the last seconds covers the gap between a reconcile and the
        // stream's start; settling twice is harmless.
        let options = podman::EventsOptions {
            since: Some(SystemTime::now() - RECONNECT_DELAY * 2),
            ..filters.clone()
        };
        // Podman 4 answers an events request only once the first event exists, so
        // reconciling goes on while the stream connects.
        let client = monitor.client.clone();
        let connect = client.events(&options);
        tokio::pin!(connect);
        let _ = monitor.reconcile().await;
        let connected = loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                stream = &mut connect => break stream,
                _ = tokio::time::sleep(RECONCILE_PERIOD) => { let _ = monitor.reconcile().await; }
                _ = monitor.wake_exit_watcher.notified() => { let _ = monitor.reconcile().await; }
            }
        };
        if let Ok(mut stream) = connected {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    event = stream.next() => match event {
                        Some(Ok(event)) => monitor.settle(event.id()).await,
                        Some(Err(_)) | None => break,
                    },
                    _ = tokio::time::sleep(RECONCILE_PERIOD) => { let _ = monitor.reconcile().await; }
                    _ = monitor.wake_exit_watcher.notified() => { let _ = monitor.reconcile().await; }
                }
            }
        }
        drop(monitor);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(RECONNECT_DELAY) => {}
        }
    }
}

async fn run_stats_poller(monitor: Weak<Monitor>) {
    loop {
        let Some(monitor) = monitor.upgrade() else {
            return;
        };
        let tick = {
            let mut shared = monitor.lock();
            shared.subscribers.retain(|s| !s.sink.is_closed());
            if shared.subscribers.is_empty() {
                shared.stats_poller_running = false;
                return;
            }
            shared
                .subscribers
                .iter()
                .map(|s| s.interval)
                .min()
                .unwrap_or(MIN_STATS_INTERVAL)
        };
        let cancel = monitor.cancel.clone();
        // Ticks at a fixed rate: the request's own duration does not stretch the period.
        let next_tick = tokio::time::Instant::now() + tick;
        // No ids: every running container, so a task that just exited cannot fail
        // the request for all the others.
        let polled = monitor.client.container_stats(&[]).await;
        if let Ok(stats) = polled {
            monitor.fan_out(&stats);
        }
        drop(monitor);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep_until(next_tick) => {}
        }
    }
}

impl Monitor {
    fn fan_out(&self, stats: &[podman::ContainerStats]) {
        let now = Instant::now();
        let wall = SystemTime::now();
        let by_id: HashMap<&str, &podman::ContainerStats> =
            stats.iter().map(|s| (s.container_id.as_str(), s)).collect();
        let compute = self.compute;
        let mut shared = self.lock();
        let Shared {
            watched,
            subscribers,
            ..
        } = &mut *shared;
        subscribers.retain_mut(|sub| {
            // The stream closes once the task's exit is known (or it was destroyed).
            if !watched.contains_key(&sub.container_id) {
                return false;
            }
            let Some(stat) = by_id.get(sub.container_id.as_str()) else {
                return true;
            };
            match next_due_after_sample(sub.next_due, sub.interval, now) {
                Some(next) => sub.next_due = next,
                None => return true,
            }
            let sample = Sample {
                system_nano: stat.system_nano,
                cpu_nano: stat.cpu_nano,
                cpu_system_nano: stat.cpu_system_nano,
                mem_usage: stat.mem_usage,
            };
            let report = sub.tracker.update(sample, compute, wall);
            !matches!(
                sub.sink.try_send(report),
                Err(mpsc::error::TrySendError::Closed(_))
            )
        });
    }
}

/// When a subscriber whose sample was due at `due` is next due, if a sample goes out at
/// `now`; `None` when it is not due yet. Fixed-rate, so the period does not drift; a
/// sample due a moment after this tick goes out now, as waiting for the next tick would
/// double its period; one far behind (an outage) starts over from now.
fn next_due_after_sample(due: Instant, interval: Duration, now: Instant) -> Option<Instant> {
    let slack = interval / 10;
    if due > now + slack {
        return None;
    }
    Some((due + interval).max(now + interval - slack))
}

/// The exit result podman's inspect describes. Podman reports a process killed by a
/// signal as exit code 128+N; that signal is reported too.
pub fn exit_result_of(state: &podman::ContainerState) -> ExitResult {
    let code = state.exit_code;
    let mut result = ExitResult {
        exit_code: code,
        signal: if (129..=128 + 64).contains(&code) {
            code - 128
        } else {
            0
        },
        oom_killed: state.oom_killed,
        err: (!state.error.is_empty()).then(|| state.error.clone()),
    };
    if state.oom_killed {
        result.err = Some("Podman container killed by OOM killer".to_string());
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_samples_keep_a_fixed_rate() {
        let second = Duration::from_secs(1);
        let start = Instant::now();
        // Not due yet.
        assert_eq!(next_due_after_sample(start + second, second, start), None);
        // Ticks that come a little late or early keep the schedule: no drift.
        let mut due = start;
        for (tick, jitter_ms) in [(0u32, 30u64), (1, 5), (2, 40), (3, 0)] {
            let now = start + second * tick + Duration::from_millis(jitter_ms);
            due = next_due_after_sample(due, second, now).expect("due");
            assert_eq!(due, start + second * (tick + 1));
        }
        // A tick a moment early still sends the sample (slack of a tenth of the period).
        let now = due - Duration::from_millis(50);
        assert_eq!(next_due_after_sample(due, second, now), Some(due + second));
        // After an outage the schedule starts over from now.
        let late = due + second * 10;
        assert_eq!(
            next_due_after_sample(due, second, late),
            Some(late + second - second / 10)
        );
    }
}

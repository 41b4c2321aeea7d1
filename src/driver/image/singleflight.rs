//! Concurrent requests for the same key share one run of the work, and its progress.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, watch};

/// Progress lines a run publishes to everyone waiting on it.
#[derive(Clone)]
pub struct ProgressSink(broadcast::Sender<String>);

impl ProgressSink {
    pub fn send(&self, line: &str) {
        // Nobody listening (all callers gone) is fine: the work still completes.
        let _ = self.0.send(line.to_string());
    }
}

struct Flight<T> {
    result: watch::Receiver<Option<T>>,
    progress: broadcast::Sender<String>,
}

/// Keyed single-flight: the first caller for a key starts the work on a task of its own
/// (so it finishes even if that caller goes away); later callers join it.
pub struct SingleFlight<T> {
    flights: Mutex<HashMap<String, Flight<T>>>,
}

impl<T: Clone + Send + Sync + 'static> SingleFlight<T> {
    pub fn new() -> Arc<Self> {
        Arc::new(SingleFlight {
            flights: Mutex::new(HashMap::new()),
        })
    }

    /// The result of the run for `key`, starting one with `work` unless one is in flight.
    /// `on_progress` sees the lines published after this caller joined. `None` when the
    /// work was aborted before finishing (runtime shutdown).
    pub async fn run<W, Fut>(
        self: &Arc<Self>,
        key: &str,
        work: W,
        mut on_progress: impl FnMut(String),
    ) -> Option<T>
    where
        W: FnOnce(ProgressSink) -> Fut,
        Fut: Future<Output = T> + Send + 'static,
    {
        let (mut result, mut progress) = {
            let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
            match flights.get(key) {
                Some(f) => (f.result.clone(), f.progress.subscribe()),
                None => {
                    let (result_tx, result_rx) = watch::channel(None);
                    let (progress_tx, progress_rx) = broadcast::channel(256);
                    flights.insert(
                        key.to_string(),
                        Flight {
                            result: result_rx.clone(),
                            progress: progress_tx.clone(),
                        },
                    );
                    let fut = work(ProgressSink(progress_tx));
                    let this = Arc::clone(self);
                    let key = key.to_string();
                    tokio::spawn(async move {
                        let out = fut.await;
                        // Forget the flight first: a caller arriving now starts a fresh run.
                        this.flights
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&key);
                        let _ = result_tx.send(Some(out));
                    });
                    (result_rx, progress_rx)
                }
            }
        };
        let mut progress_open = true;
        loop {
            tokio::select! {
                biased;
                line = progress.recv(), if progress_open => match line {
                    Ok(line) => on_progress(line),
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => progress_open = false,
                },
                done = result.wait_for(Option::is_some) => {
                    let value = done.ok().and_then(|v| v.clone());
                    while let Ok(line) = progress.try_recv() {
                        on_progress(line);
                    }
                    return value;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_callers_share_one_run() {
        let flights = SingleFlight::<u32>::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let (release_tx, release_rx) = watch::channel(false);
        let start = |flights: Arc<SingleFlight<u32>>| {
            let runs = runs.clone();
            let mut release = release_rx.clone();
            async move {
                let mut lines = Vec::new();
                let out = flights
                    .run(
                        "img",
                        move |sink| async move {
                            runs.fetch_add(1, Ordering::SeqCst);
                            let _ = release.wait_for(|r| *r).await;
                            sink.send("pulled");
                            7
                        },
                        |l| lines.push(l),
                    )
                    .await;
                (out, lines)
            }
        };
        let a = tokio::spawn(start(flights.clone()));
        let b = tokio::spawn(start(flights.clone()));
        // Both callers are registered once the flight exists and both subscribed.
        while flights
            .flights
            .lock()
            .expect("lock")
            .get("img")
            .map_or(0, |f| f.progress.receiver_count())
            < 2
        {
            tokio::task::yield_now().await;
        }
        release_tx.send(true).expect("release");
        let (ra, la) = a.await.expect("a");
        let (rb, lb) = b.await.expect("b");
        assert_eq!((ra, rb), (Some(7), Some(7)));
        assert_eq!(la, vec!["pulled".to_string()]);
        assert_eq!(lb, vec!["pulled".to_string()]);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(flights.flights.lock().expect("lock").is_empty());
    }

    #[tokio::test]
    async fn later_callers_start_a_new_run() {
        let flights = SingleFlight::<usize>::new();
        let runs = Arc::new(AtomicUsize::new(0));
        for want in 1..=2 {
            let runs = runs.clone();
            let got = flights
                .run(
                    "k",
                    move |_| async move { runs.fetch_add(1, Ordering::SeqCst) + 1 },
                    |_| {},
                )
                .await;
            assert_eq!(got, Some(want));
        }
    }

    #[tokio::test]
    async fn different_keys_run_separately() {
        let flights = SingleFlight::<&'static str>::new();
        let a = flights.run("a", |_| async { "A" }, |_| {}).await;
        let b = flights.run("b", |_| async { "B" }, |_| {}).await;
        assert_eq!((a, b), (Some("A"), Some("B")));
    }
}

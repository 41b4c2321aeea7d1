//! Nomad's restart tracker: what to do when a task exits or fails to start.

use std::time::{Duration, Instant};

use rand::Rng;

use super::model::{Hook, JobType, Lifecycle, RestartMode, RestartPolicy};

/// Up to 25% is added to every restart delay, as Nomad does, so tasks restarted together
/// spread out.
const JITTER: f64 = 0.25;

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Start the task again after this delay.
    Restart { delay: Duration, reason: String },
    /// The task finished successfully and is not restarted.
    Done,
    /// The task failed for good.
    Fail { reason: String },
}

#[derive(Debug)]
pub struct RestartTracker {
    policy: RestartPolicy,
    /// Whether a successful exit is restarted too (service tasks and sidecars).
    restart_on_success: bool,
    count: u32,
    interval_start: Instant,
}

impl RestartTracker {
    pub fn new(policy: RestartPolicy, job_type: JobType, lifecycle: Option<Lifecycle>) -> Self {
        let mut restart_on_success = !job_type.runs_to_completion();
        if let Some(lc) = lifecycle {
            restart_on_success = match lc.hook {
                Hook::Prestart | Hook::Poststart => lc.sidecar,
                Hook::Poststop => false,
            };
        }
        RestartTracker {
            policy,
            restart_on_success,
            count: 0,
            interval_start: Instant::now(),
        }
    }

    /// After the task exited; `success` is exit code 0 without a signal or OOM kill.
    pub fn on_exit(&mut self, success: bool, now: Instant) -> Decision {
        if success && !self.restart_on_success {
            return Decision::Done;
        }
        self.on_failure(now)
    }

    /// After starting the task failed with an error that might go away.
    pub fn on_start_error(&mut self, now: Instant) -> Decision {
        self.on_failure(now)
    }

    fn on_failure(&mut self, now: Instant) -> Decision {
        if self.policy.attempts == 0 {
            return Decision::Fail {
                reason: "the restart policy allows no restarts".into(),
            };
        }
        let interval_end = self.interval_start + self.policy.interval;
        if now >= interval_end {
            self.count = 0;
            self.interval_start = now;
        }
        self.count += 1;
        if self.count > self.policy.attempts {
            return match self.policy.mode {
                RestartMode::Fail => Decision::Fail {
                    reason: format!(
                        "exceeded {} restart attempts in {} and the restart mode is \"fail\"",
                        self.policy.attempts,
                        super::model::duration_text::format(self.policy.interval)
                    ),
                },
                RestartMode::Delay => {
                    // Wait for the interval to end, then start counting afresh.
                    let wait =
                        (self.interval_start + self.policy.interval).saturating_duration_since(now);
                    self.count = 0;
                    self.interval_start = now + wait;
                    Decision::Restart {
                        delay: wait + jitter(self.policy.delay),
                        reason: format!(
                            "exceeded {} restart attempts; waiting for the {} interval to end (mode \"delay\")",
                            self.policy.attempts,
                            super::model::duration_text::format(self.policy.interval)
                        ),
                    }
                }
            };
        }
        Decision::Restart {
            delay: jitter(self.policy.delay),
            reason: format!("restart {} of {}", self.count, self.policy.attempts),
        }
    }
}

fn jitter(delay: Duration) -> Duration {
    if delay.is_zero() {
        return delay;
    }
    let extra = rand::thread_rng().gen_range(0.0..JITTER);
    delay + delay.mul_f64(extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(attempts: u32, mode: RestartMode) -> RestartPolicy {
        RestartPolicy {
            attempts,
            interval: Duration::from_secs(60),
            delay: Duration::from_secs(4),
            mode,
        }
    }

    fn restarts(d: &Decision) -> bool {
        matches!(d, Decision::Restart { .. })
    }

    #[test]
    fn fail_mode_gives_up_after_the_attempts() {
        let now = Instant::now();
        let mut t = RestartTracker::new(policy(2, RestartMode::Fail), JobType::Service, None);
        for _ in 0..2 {
            match t.on_exit(false, now) {
                Decision::Restart { delay, .. } => {
                    assert!(
                        delay >= Duration::from_secs(4) && delay < Duration::from_secs(5),
                        "{delay:?}"
                    )
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(t.on_exit(false, now), Decision::Fail { .. }));
    }

    #[test]
    fn a_new_interval_resets_the_count() {
        let now = Instant::now();
        let mut t = RestartTracker::new(policy(1, RestartMode::Fail), JobType::Service, None);
        assert!(restarts(&t.on_exit(false, now)));
        assert!(restarts(&t.on_exit(false, now + Duration::from_secs(61))));
        assert!(matches!(
            t.on_exit(false, now + Duration::from_secs(62)),
            Decision::Fail { .. }
        ));
    }

    #[test]
    fn delay_mode_waits_for_the_interval() {
        let now = Instant::now();
        let mut t = RestartTracker::new(policy(1, RestartMode::Delay), JobType::Service, None);
        assert!(restarts(&t.on_exit(false, now)));
        match t.on_exit(false, now + Duration::from_secs(10)) {
            Decision::Restart { delay, .. } => {
                assert!(delay >= Duration::from_secs(54), "{delay:?}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn success_is_final_for_batch_and_hooks_but_restarted_for_services_and_sidecars() {
        let now = Instant::now();
        let p = policy(2, RestartMode::Fail);
        assert_eq!(
            RestartTracker::new(p, JobType::Batch, None).on_exit(true, now),
            Decision::Done
        );
        assert!(restarts(
            &RestartTracker::new(p, JobType::Service, None).on_exit(true, now)
        ));
        let prestart = Some(Lifecycle {
            hook: Hook::Prestart,
            sidecar: false,
        });
        assert_eq!(
            RestartTracker::new(p, JobType::Service, prestart).on_exit(true, now),
            Decision::Done
        );
        let sidecar = Some(Lifecycle {
            hook: Hook::Poststart,
            sidecar: true,
        });
        assert!(restarts(
            &RestartTracker::new(p, JobType::Batch, sidecar).on_exit(true, now)
        ));
        let poststop = Some(Lifecycle {
            hook: Hook::Poststop,
            sidecar: false,
        });
        assert_eq!(
            RestartTracker::new(p, JobType::Service, poststop).on_exit(true, now),
            Decision::Done
        );
        assert!(matches!(
            RestartTracker::new(policy(0, RestartMode::Fail), JobType::Batch, None)
                .on_exit(false, now),
            Decision::Fail { .. }
        ));
    }
}

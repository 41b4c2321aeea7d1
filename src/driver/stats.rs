//! Turning podman's cumulative counters into the rates and figures Nomad shows.
//!
//! Podman's bulk stats endpoint (one request for every container) reports cumulative CPU
//! nanoseconds (total and system mode) together with its own wall-clock timestamp, so rates
//! are computed against podman's clock, not ours: a late poll does not distort them. It has
//! no cgroup detail (RSS, cache, swap, throttling); those are reported as not measured
//! rather than as made-up numbers.

use std::time::SystemTime;

use super::model::{CpuStats, MemoryStats, TaskStats};

/// One container's counters as podman reported them at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// Podman's wall clock when it read the counters, in ns.
    pub system_nano: u64,
    /// CPU time used so far, in ns.
    pub cpu_nano: u64,
    /// CPU time used so far in kernel mode, in ns.
    pub cpu_system_nano: u64,
    pub mem_usage: u64,
}

/// The host's compute capacity, used to express CPU use in MHz ticks as Nomad does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Compute {
    pub total_mhz: f64,
    pub cores: usize,
}

impl Default for Compute {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Compute {
            total_mhz: cores as f64 * 1000.0,
            cores,
        }
    }
}

/// Keeps the previous sample of one task so each new sample yields rates.
#[derive(Debug, Default)]
pub struct Tracker {
    previous: Option<Sample>,
    max_usage: u64,
}

fn percent(delta_cpu: u64, delta_wall: u64) -> f64 {
    if delta_wall == 0 {
        0.0
    } else {
        delta_cpu as f64 / delta_wall as f64 * 100.0
    }
}

impl Tracker {
    /// Folds in a sample. The first sample of a task gives 0 % CPU (no interval yet).
    /// Counters that go backwards (container restarted) restart the interval.
    pub fn update(&mut self, sample: Sample, compute: Compute, now: SystemTime) -> TaskStats {
        self.max_usage = self.max_usage.max(sample.mem_usage);
        let (total, system) = match self.previous {
            Some(prev)
                if sample.system_nano > prev.system_nano
                    && sample.cpu_nano >= prev.cpu_nano
                    && sample.cpu_system_nano >= prev.cpu_system_nano =>
            {
                let wall = sample.system_nano - prev.system_nano;
                (
                    percent(sample.cpu_nano - prev.cpu_nano, wall),
                    percent(sample.cpu_system_nano - prev.cpu_system_nano, wall),
                )
            }
            _ => (0.0, 0.0),
        };
        self.previous = Some(sample);
        let cores = compute.cores.max(1) as f64;
        TaskStats {
            timestamp: now,
            cpu: CpuStats {
                percent: total,
                system_mode: system,
                user_mode: (total - system).max(0.0),
                total_ticks: total / 100.0 * compute.total_mhz / cores,
                throttled_periods: 0,
                throttled_time: 0,
                measured: vec!["Percent", "System Mode", "User Mode", "Total Ticks"],
            },
            memory: MemoryStats {
                rss: 0,
                cache: 0,
                swap: 0,
                usage: sample.mem_usage,
                max_usage: self.max_usage,
                measured: vec!["Usage", "Max Usage"],
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    fn compute() -> Compute {
        Compute {
            total_mhz: 4000.0,
            cores: 2,
        }
    }

    #[test]
    fn first_sample_has_no_rate_but_has_memory() {
        let mut t = Tracker::default();
        let s = t.update(
            Sample {
                system_nano: SECOND,
                cpu_nano: 5 * SECOND,
                cpu_system_nano: SECOND,
                mem_usage: 4096,
            },
            compute(),
            SystemTime::UNIX_EPOCH,
        );
        assert_eq!(s.cpu.percent, 0.0);
        assert_eq!(s.memory.usage, 4096);
        assert_eq!(s.memory.max_usage, 4096);
    }

    #[test]
    fn rates_use_podman_clock_and_split_user_and_system() {
        let mut t = Tracker::default();
        let base = Sample {
            system_nano: 10 * SECOND,
            cpu_nano: 0,
            cpu_system_nano: 0,
            mem_usage: 100,
        };
        t.update(base, compute(), SystemTime::UNIX_EPOCH);
        // 1.5 s of CPU over 2 s of podman wall clock: 75 %, a third of it in the kernel.
        let s = t.update(
            Sample {
                system_nano: 12 * SECOND,
                cpu_nano: 1_500_000_000,
                cpu_system_nano: 500_000_000,
                mem_usage: 50,
            },
            compute(),
            SystemTime::UNIX_EPOCH,
        );
        assert!((s.cpu.percent - 75.0).abs() < 1e-9);
        assert!((s.cpu.system_mode - 25.0).abs() < 1e-9);
        assert!((s.cpu.user_mode - 50.0).abs() < 1e-9);
        assert!((s.cpu.total_ticks - 1500.0).abs() < 1e-9);
        assert_eq!(s.memory.usage, 50);
        assert_eq!(s.memory.max_usage, 100, "max usage is the highest seen");
    }

    #[test]
    fn counters_going_backwards_restart_the_interval() {
        let mut t = Tracker::default();
        let s1 = Sample {
            system_nano: 10 * SECOND,
            cpu_nano: 9 * SECOND,
            cpu_system_nano: SECOND,
            mem_usage: 1,
        };
        t.update(s1, compute(), SystemTime::UNIX_EPOCH);
        let s = t.update(
            Sample {
                system_nano: 11 * SECOND,
                cpu_nano: SECOND,
                ..s1
            },
            compute(),
            SystemTime::UNIX_EPOCH,
        );
        assert_eq!(s.cpu.percent, 0.0);
    }

    #[test]
    fn same_timestamp_gives_zero_not_nan() {
        let mut t = Tracker::default();
        let s1 = Sample {
            system_nano: SECOND,
            cpu_nano: SECOND,
            cpu_system_nano: 0,
            mem_usage: 1,
        };
        t.update(s1, compute(), SystemTime::UNIX_EPOCH);
        let s = t.update(s1, compute(), SystemTime::UNIX_EPOCH);
        assert_eq!(s.cpu.percent, 0.0);
    }
}

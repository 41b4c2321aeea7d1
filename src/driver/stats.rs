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

/// The node's compute capacity, used to express CPU use in MHz ticks as Nomad does:
/// `TotalTicks = Percent/100 x total_mhz / cores`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Compute {
    pub total_mhz: f64,
    pub cores: usize,
}

/// What a core counts for when nothing says its speed.
const UNKNOWN_CORE_MHZ: u64 = 1000;

impl Default for Compute {
    fn default() -> Self {
        Compute::detect()
    }
}

impl Compute {
    /// From per-core speeds in MHz (Nomad's rule for a core: base speed, else max speed,
    /// else a guess), with the operator's `override_total_compute` winning when non-zero.
    /// `None` without cores.
    pub fn from_core_speeds(speeds: &[u64], override_total: u64) -> Option<Compute> {
        if speeds.is_empty() {
            return None;
        }
        let total = if override_total > 0 {
            override_total
        } else {
            speeds.iter().sum()
        };
        Some(Compute {
            total_mhz: total as f64,
            cores: speeds.len(),
        })
    }

    /// This host's compute, found as Nomad's own fingerprint does on Linux: per logical
    /// CPU, cpufreq's `base_frequency`, else `cpuinfo_max_freq`, else `/proc/cpuinfo`'s
    /// `cpu MHz`; 1000 MHz per core when none is readable.
    pub fn detect() -> Compute {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let sysfs = |cpu: usize, file: &str| {
            std::fs::read_to_string(format!("/sys/devices/system/cpu/cpu{cpu}/cpufreq/{file}")).ok()
        };
        let speeds = host_core_speeds(&cpuinfo, sysfs);
        Compute::from_core_speeds(&speeds, 0).unwrap_or_else(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            Compute {
                total_mhz: (cores as u64 * UNKNOWN_CORE_MHZ) as f64,
                cores,
            }
        })
    }
}

/// MHz of each logical CPU listed in `cpuinfo`; `sysfs(cpu, file)` reads a cpufreq file
/// (values in kHz).
fn host_core_speeds(cpuinfo: &str, sysfs: impl Fn(usize, &str) -> Option<String>) -> Vec<u64> {
    let khz = |cpu: usize, file: &str| {
        sysfs(cpu, file)
            .and_then(|text| text.trim().parse::<u64>().ok())
            .map(|khz| khz / 1000)
            .filter(|mhz| *mhz > 0)
    };
    let mut speeds = Vec::new();
    for block in cpuinfo.split("\n\n") {
        let field = |name: &str| {
            block.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == name).then(|| value.trim().to_string())
            })
        };
        let Some(cpu) = field("processor").and_then(|p| p.parse::<usize>().ok()) else {
            continue;
        };
        let guess = field("cpu MHz")
            .and_then(|mhz| mhz.parse::<f64>().ok())
            .map(|mhz| mhz.round() as u64)
            .filter(|mhz| *mhz > 0);
        let speed = khz(cpu, "base_frequency")
            .or_else(|| khz(cpu, "cpuinfo_max_freq"))
            .or(guess)
            .unwrap_or(UNKNOWN_CORE_MHZ);
        speeds.push(speed);
    }
    speeds
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

    #[test]
    fn host_speeds_follow_nomads_order_base_then_max_then_cpuinfo() {
        let cpuinfo = "processor\t: 0\ncpu MHz\t\t: 2445.406\n\nprocessor\t: 1\ncpu MHz\t\t: 2445.406\n\nprocessor\t: 2\nmodel name\t: x\n";
        let none = |_: usize, _: &str| None;
        assert_eq!(host_core_speeds(cpuinfo, none), vec![2445, 2445, 1000]);
        let sysfs = |cpu: usize, file: &str| match (cpu, file) {
            (0, "base_frequency") => Some("2100000\n".to_string()),
            (0 | 1, "cpuinfo_max_freq") => Some("3500000\n".to_string()),
            _ => None,
        };
        assert_eq!(host_core_speeds(cpuinfo, sysfs), vec![2100, 3500, 1000]);
    }

    #[test]
    fn topology_compute_sums_cores_unless_overridden() {
        let c = Compute::from_core_speeds(&[3000, 3000, 1500, 1500], 0).unwrap();
        assert_eq!((c.total_mhz, c.cores), (9000.0, 4));
        let c = Compute::from_core_speeds(&[3000, 3000], 10_000).unwrap();
        assert_eq!((c.total_mhz, c.cores), (10_000.0, 2));
        assert!(Compute::from_core_speeds(&[], 5000).is_none());
        // On this host: every core counted, none at the 1000 MHz placeholder unless
        // the host says nothing at all.
        let host = Compute::detect();
        assert!(host.cores >= 1 && host.total_mhz > 0.0);
    }

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

//! Start/stop/destroy cycles through one plugin process, several at once: nothing leaks,
//! neither containers nor the plugin's file descriptors or memory.
//!
//! `NDP_SOAK_CYCLES` sets the number of cycles (default 60; the full soak is 300).

use std::path::Path;

use futures::StreamExt;

use crate::plugin::agent::Plugin;
use crate::plugin::bed::{self, shell_task, Bed};
use crate::support;

const DEFAULT_CYCLES: usize = 60;
const CONCURRENCY: usize = 4;
/// Cycles run before the first measurement, so lazily built state (clients, pools,
/// watchers, image cache) is not counted as growth.
const WARM_UP_CYCLES: usize = 8;
/// Descriptors the plugin may legitimately hold on top of its warm state (pooled
/// connections opened by a late request, a stream still closing).
const FD_SLACK: usize = 10;
const MIB: u64 = 1024 * 1024;

fn cycles() -> usize {
    std::env::var("NDP_SOAK_CYCLES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_CYCLES)
}

fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the plugin's fd table")
        .count()
}

fn rss_bytes(pid: i32) -> u64 {
    let status = std::fs::read_to_string(Path::new(&format!("/proc/{pid}/status")))
        .expect("the plugin's status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS in /proc/<pid>/status")
        * 1024
}

/// `count` start -> stop -> destroy cycles, `CONCURRENCY` at a time, each in its own
/// allocation; task i exits by itself when i is odd, runs until stopped otherwise.
async fn run_cycles(bed: &Bed, plugin: &Plugin, count: usize) {
    futures::stream::iter(0..count)
        .for_each_concurrent(CONCURRENCY, |i| async move {
            let alloc = bed.alloc();
            let script = if i % 2 == 1 {
                "echo cycle; exit 0"
            } else {
                "echo cycle; exec sleep 3600"
            };
            let task = bed::start(plugin, &alloc, "soak", &bed.labelled(&shell_task(script))).await;
            task.files.stdout.wait_for("cycle").await;
            bed::stop_and_destroy(plugin, &task.id()).await;
        })
        .await;
}

#[tokio::test]
async fn start_stop_destroy_cycles_leak_no_containers_fds_or_memory() {
    let cycles = cycles();
    let bed = Bed::new("soak");
    let plugin = bed.plugin().await;
    let pid = plugin.pid();
    let label = bed.cleanup.pair();

    run_cycles(&bed, &plugin, WARM_UP_CYCLES).await;
    let (fds_start, rss_start) = (open_fds(pid), rss_bytes(pid));
    let started = std::time::Instant::now();
    run_cycles(&bed, &plugin, cycles).await;
    let took = started.elapsed();
    let (fds_end, rss_end) = (open_fds(pid), rss_bytes(pid));

    let leaked = support::podman().containers_labelled(&label);
    println!(
        "faults/soak: {cycles} cycles ({CONCURRENCY} at once) in {took:?}; leaked containers {}; \
         plugin fds {fds_start} -> {fds_end}; RSS {:.1} MiB -> {:.1} MiB",
        leaked.len(),
        rss_start as f64 / MIB as f64,
        rss_end as f64 / MIB as f64
    );
    assert!(leaked.is_empty(), "leaked containers: {leaked:?}");
    assert!(
        fds_end <= fds_start + FD_SLACK,
        "plugin fds grew from {fds_start} to {fds_end}"
    );
    // Generous: allocators keep freed pages; a real leak grows with the cycle count.
    assert!(
        rss_end < 2 * rss_start + 5 * MIB,
        "plugin RSS grew from {rss_start} to {rss_end} bytes"
    );
    plugin.kill().await;
}

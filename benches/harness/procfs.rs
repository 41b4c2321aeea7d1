//! CPU time and resident memory of a process, from /proc.

use super::BenchResult;

/// User plus system CPU seconds used so far by every thread of `pid`.
pub fn cpu_seconds(pid: u32) -> BenchResult<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    // The command name may contain spaces and parentheses; the fields after it do not.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| format!("{path}: no command name"))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // proc(5): utime and stime are fields 14 and 15; `state` (field 3) comes first here.
    let ticks = |field: usize| -> BenchResult<u64> {
        fields
            .get(field - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| format!("{path}: field {field} missing"))
    };
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = if per_second > 0 {
        per_second as f64
    } else {
        100.0
    };
    Ok((ticks(14)? + ticks(15)?) as f64 / per_second)
}

/// `VmRSS` of `pid` in bytes.
pub fn rss_bytes(pid: u32) -> BenchResult<u64> {
    status_kib(pid, "VmRSS:").map(|kib| kib * 1024)
}

fn status_kib(pid: u32, key: &str) -> BenchResult<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .ok_or_else(|| format!("{path}: no {key}"))
}

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

/// Resident memory of a process, split the way /proc/<pid>/status does.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// `VmRSS`, bytes.
    pub rss: u64,
    /// `RssAnon`: heap, stacks.
    pub anon: u64,
    /// `RssFile`: the mapped binary and libraries.
    pub file: u64,
    pub threads: u64,
}

pub fn memory(pid: u32) -> BenchResult<Memory> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let field = |key: &str| -> BenchResult<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("{path}: no {key}"))
    };
    Ok(Memory {
        rss: field("VmRSS:")? * 1024,
        anon: field("RssAnon:")? * 1024,
        file: field("RssFile:")? * 1024,
        threads: field("Threads:")?,
    })
}

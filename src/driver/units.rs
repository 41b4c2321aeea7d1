//! Memory-size strings and Go-style durations as written in job and plugin files.

use std::time::Duration;

/// Why a memory or duration string was rejected; the caller adds the option name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("invalid memory string {0:?}: expected an integer with an optional unit b, k, m or g (e.g. \"512m\")")]
    Memory(String),
    #[error("invalid duration {0:?}: expected a Go duration such as \"30s\", \"5m\" or \"1h30m\"")]
    Duration(String),
}

/// Parses a memory string into bytes.
///
/// Upstream accepts only `<integer><b|k|m|g>` with a lowercase unit. This keeps those forms
/// and also accepts what the upstream README documents but the Go code rejects: a bare
/// integer means bytes and `-1` means "unlimited" (callers decide where a negative value is
/// meaningful). Upper-case units and fractions stay rejected, as in Go, so a job never means
/// something different here than there.
pub fn parse_memory(text: &str) -> Result<i64, UnitError> {
    let bad = || UnitError::Memory(text.to_string());
    let (digits, multiplier) = match text.as_bytes().last() {
        Some(b'b') => (&text[..text.len() - 1], 1i64),
        Some(b'k') => (&text[..text.len() - 1], 1 << 10),
        Some(b'm') => (&text[..text.len() - 1], 1 << 20),
        Some(b'g') => (&text[..text.len() - 1], 1 << 30),
        Some(c) if c.is_ascii_digit() => (text, 1),
        _ => return Err(bad()),
    };
    let unsigned = digits.strip_prefix('-').unwrap_or(digits);
    if unsigned.is_empty() || !unsigned.bytes().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let value: i64 = digits.parse().map_err(|_| bad())?;
    value.checked_mul(multiplier).ok_or_else(bad)
}

/// Parses a Go `time.ParseDuration` string (`"300ms"`, `"1.5h"`, `"2h45m"`, `"0"`).
/// Negative durations are rejected: every duration option here is a timeout or a period.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let bad = || UnitError::Duration(text.to_string());
    let body = text.strip_prefix('+').unwrap_or(text);
    if body == "0" {
        return Ok(Duration::ZERO);
    }
    if body.is_empty() {
        return Err(bad());
    }
    let mut total_nanos: f64 = 0.0;
    let mut rest = body;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_len];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(bad());
        }
        let value: f64 = number.parse().map_err(|_| bad())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per_unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total_nanos += value * nanos_per_unit;
    }
    if !total_nanos.is_finite() || total_nanos > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(Duration::from_nanos(total_nanos.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_units_are_binary_multiples() {
        assert_eq!(parse_memory("10b"), Ok(10));
        assert_eq!(parse_memory("2k"), Ok(2048));
        assert_eq!(parse_memory("100m"), Ok(100 * 1024 * 1024));
        assert_eq!(parse_memory("1g"), Ok(1 << 30));
    }

    #[test]
    fn memory_accepts_bare_bytes_and_minus_one() {
        assert_eq!(parse_memory("180"), Ok(180));
        assert_eq!(parse_memory("-1"), Ok(-1));
        assert_eq!(parse_memory("-1b"), Ok(-1));
        assert_eq!(parse_memory("0"), Ok(0));
    }

    #[test]
    fn memory_rejects_what_go_rejects() {
        for bad in [
            "",
            "m",
            "100M",
            "1.5g",
            "10mb",
            "ten",
            "-",
            "-m",
            "1 m",
            "+5m",
            "99999999999g",
        ] {
            assert_eq!(
                parse_memory(bad),
                Err(UnitError::Memory(bad.to_string())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn durations_follow_go_syntax() {
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("10us"), Ok(Duration::from_micros(10)));
        assert_eq!(parse_duration("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("+2s"), Ok(Duration::from_secs(2)));
    }

    #[test]
    fn durations_reject_garbage_and_negatives() {
        for bad in ["", "5", "m", "5 m", "-5s", "1.2.3s", "5d", "s5", "."] {
            assert_eq!(
                parse_duration(bad),
                Err(UnitError::Duration(bad.to_string())),
                "{bad:?}"
            );
        }
    }
}

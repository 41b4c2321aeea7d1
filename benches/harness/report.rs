//! Figures next to their baselines and goals, printed as a table as they come in and as
//! a Markdown table at the end (for BENCHMARKS.md).

use std::fmt::Write as _;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Met,
    Missed,
    /// Context for another figure; no goal of its own.
    Info,
}

impl Verdict {
    /// `Met` when `ok`, else `Missed`.
    pub fn of(ok: bool) -> Self {
        if ok {
            Verdict::Met
        } else {
            Verdict::Missed
        }
    }

    fn label(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "MISSED",
            Verdict::Info => "-",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Row {
    pub figure: String,
    pub measured: String,
    pub baseline: String,
    pub goal: String,
    pub verdict: Verdict,
}

#[derive(Default)]
pub struct Report {
    rows: Vec<Row>,
}

impl Report {
    /// Records a row and prints it at once.
    pub fn add(
        &mut self,
        figure: &str,
        measured: String,
        baseline: String,
        goal: &str,
        verdict: Verdict,
    ) {
        let row = Row {
            figure: figure.to_string(),
            measured,
            baseline,
            goal: goal.to_string(),
            verdict,
        };
        println!(
            "  {:<46} {:<24} | baseline: {:<40} | goal: {:<22} [{}]",
            row.figure,
            row.measured,
            row.baseline,
            row.goal,
            row.verdict.label()
        );
        self.rows.push(row);
    }

    /// A figure that could not be measured: it counts as missed.
    pub fn failed(&mut self, figure: &str, error: &str, goal: &str) {
        self.add(
            figure,
            format!("not measured: {error}"),
            "-".into(),
            goal,
            Verdict::Missed,
        );
    }

    pub fn missed(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| r.verdict == Verdict::Missed)
            .count()
    }

    pub fn markdown(&self) -> String {
        let mut out = String::from(
            "| Figure | Measured | Baseline | Goal | Verdict |\n|---|---|---|---|---|\n",
        );
        for r in &self.rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                r.figure,
                r.measured,
                r.baseline,
                r.goal,
                r.verdict.label()
            );
        }
        out
    }
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

pub fn ratio(value: f64, baseline: f64) -> f64 {
    if baseline > 0.0 {
        value / baseline
    } else {
        f64::INFINITY
    }
}

/// Median of non-empty `samples`.
pub fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    match sorted.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
    }
}

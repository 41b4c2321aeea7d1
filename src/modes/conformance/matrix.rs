//! Feature-by-socket matrix: one row per check, one column per socket.

use std::fmt::Write;

use super::report::{paint, RunReport, Status};

pub struct Matrix {
    sockets: Vec<String>,
    /// Check name and its status on each socket (`None`: not run there).
    rows: Vec<(String, Vec<Option<Status>>)>,
}

impl Matrix {
    /// Rows follow the order in which checks first appear across the sockets.
    pub fn of(report: &RunReport) -> Matrix {
        let sockets: Vec<String> = report.sockets.iter().map(|s| s.name.clone()).collect();
        let mut rows: Vec<(String, Vec<Option<Status>>)> = Vec::new();
        for (column, socket) in report.sockets.iter().enumerate() {
            for check in &socket.checks {
                let row = match rows.iter().position(|(name, _)| *name == check.name) {
                    Some(row) => row,
                    None => {
                        rows.push((check.name.clone(), vec![None; sockets.len()]));
                        rows.len() - 1
                    }
                };
                rows[row].1[column] = Some(check.status);
            }
        }
        Matrix { sockets, rows }
    }

    pub fn render(&self, color: bool) -> String {
        let name_width = self
            .rows
            .iter()
            .map(|(name, _)| name.len())
            .max()
            .unwrap_or(0)
            .max("CHECK".len());
        let widths: Vec<usize> = self.sockets.iter().map(|s| s.len().max(8)).collect();
        let mut out = format!("  {:<name_width$}", "CHECK");
        for (socket, width) in self.sockets.iter().zip(&widths) {
            let _ = write!(out, "  {socket:<width$}");
        }
        out = out.trim_end().to_string();
        out.push('\n');
        for (name, cells) in &self.rows {
            let mut line = format!("  {name:<name_width$}");
            for (cell, width) in cells.iter().zip(&widths) {
                let text = cell.map_or("-", Status::as_str);
                let padded = format!("{text:<width$}");
                let _ = write!(
                    line,
                    "  {}",
                    match cell {
                        Some(status) => paint(*status, &padded, color),
                        None => padded,
                    }
                );
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::report::fixtures;
    use super::*;

    #[test]
    fn one_row_per_check_one_column_per_socket() {
        let text = Matrix::of(&fixtures::report()).render(false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "  CHECK          local     down");
        assert_eq!(lines[1], "  api.ping       pass      fail");
        assert_eq!(lines[2], "  lifecycle.oom  degraded  -");
        assert_eq!(lines.len(), 5);
    }
}

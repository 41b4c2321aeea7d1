//! One module per figure of issue 6; each measures, then adds its rows to the report.

pub mod fleet;
pub mod logs;
pub mod runner;
pub mod scale;
pub mod start;

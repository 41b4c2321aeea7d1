//! A task's `logs` block, checked as Nomad checks it: `max_files` at least 1,
//! `max_file_size` (MiB) at least 1, `disabled` (and Nomad's older spelling, `enabled`).

use hcl::edit::structure::{Block, Structure};
use hcl::edit::Span;

use super::{key, Decoder};
use crate::driver::logs::rotate::MIB;
use crate::modes::run::model::LogsPolicy;

const LOGS_KEYS: &[&str] = &["max_files", "max_file_size", "disabled", "enabled"];
/// Far above any sensible value; keeps the byte count well inside u64.
const MAX_FILES_LIMIT: f64 = 100_000.0;
const MAX_FILE_SIZE_LIMIT_MIB: f64 = 1_048_576.0;

impl Decoder<'_> {
    pub(super) fn logs(&mut self, block: &Block) -> LogsPolicy {
        self.no_labels(block);
        self.check_duplicates(&block.body);
        let mut policy = LogsPolicy::default();
        let mut disabled = None;
        let mut enabled = None;
        for structure in block.body.iter() {
            match structure {
                Structure::Attribute(attr) => match key(attr) {
                    "max_files" => {
                        if let Some(n) = self.whole_number(attr, 0.0, MAX_FILES_LIMIT) {
                            match u32::try_from(n) {
                                Ok(n) if n >= 1 => policy.rotation.max_files = n,
                                _ => self.error(
                                    attr.value.span(),
                                    format!("Invalid max_files: the minimum number of files is 1; got {n}"),
                                ),
                            }
                        }
                    }
                    "max_file_size" => {
                        if let Some(n) = self.whole_number(attr, 0.0, MAX_FILE_SIZE_LIMIT_MIB) {
                            if n >= 1 {
                                policy.rotation.max_file_size = n * MIB;
                            } else {
                                self.error(
                                    attr.value.span(),
                                    format!("Invalid max_file_size: the minimum file size is 1MB; got {n}"),
                                );
                            }
                        }
                    }
                    "disabled" => disabled = self.bool(attr).map(|b| (b, attr.value.span())),
                    "enabled" => enabled = self.bool(attr).map(|b| (b, attr.value.span())),
                    _ => self.unsupported_attr(attr, "a logs block", &[LOGS_KEYS]),
                },
                Structure::Block(b) => self.unsupported_block(b, "a logs block", &[LOGS_KEYS]),
            }
        }
        policy.disabled = match (disabled, enabled) {
            (Some((d, _)), Some((e, span))) if d == e => {
                self.error(
                    span,
                    format!(
                        "Conflicting logs settings: enabled = {e} contradicts disabled = {d} (enabled is Nomad's older spelling of the opposite of disabled; set only disabled)"
                    ),
                );
                d
            }
            (Some((d, _)), _) => d,
            (None, Some((e, _))) => !e,
            (None, None) => false,
        };
        policy
    }
}

//! A task's `artifact` block, checked when the job file is read so `validate` reports a
//! missing source, an unknown mode or a malformed checksum at its place in the file.

use std::collections::BTreeMap;

use hcl::edit::structure::{Block, Structure};
use hcl::edit::Span;

use super::{key, Decoder};
use crate::modes::run::alloc::AllocDir;
use crate::modes::run::artifact::{ArchiveFormat, Checksum, Source};
use crate::modes::run::model::{ArchiveChoice, ArtifactMode, ArtifactSpec};

const ARTIFACT_KEYS: &[&str] = &[
    "source",
    "destination",
    "mode",
    "options",
    "headers",
    "chown",
];
const OPTION_KEYS: &[&str] = &["checksum", "archive"];

impl Decoder<'_> {
    pub(super) fn artifact(&mut self, block: &Block) -> Option<ArtifactSpec> {
        self.no_labels(block);
        self.check_duplicates(&block.body);
        let mut spec = ArtifactSpec {
            source: String::new(),
            base_dir: self.ev.source.base_dir(),
            destination: "local/".into(),
            mode: ArtifactMode::Any,
            checksum: None,
            archive: ArchiveChoice::Detect,
            location: self.at(block.span()),
        };
        let mut ok = true;
        for structure in block.body.iter() {
            let errors_before = self.errors.len();
            match structure {
                Structure::Attribute(attr) => match key(attr) {
                    "source" => {
                        spec.source = self.string(attr).unwrap_or_default();
                        // `${NOMAD_*}` is only known when the task starts.
                        if !spec.source.contains("${") {
                            if let Err(e) = Source::parse(&spec.source, &spec.base_dir) {
                                self.error(
                                    attr.value.span(),
                                    format!("Invalid artifact source: {e}"),
                                );
                            }
                        }
                    }
                    "destination" => {
                        spec.destination = self.string(attr).unwrap_or_default();
                        // Any allocation will do: only the shape of the path matters.
                        let probe = AllocDir::new(std::path::Path::new("/"), "job", "alloc");
                        if !spec.destination.contains("${")
                            && probe
                                .template_destination("task", &spec.destination)
                                .is_none()
                        {
                            self.error(
                                attr.value.span(),
                                format!(
                                    "Invalid artifact destination {:?}: it must stay inside the allocation directory",
                                    spec.destination
                                ),
                            );
                        }
                    }
                    "mode" => {
                        let Some(mode) = self.string(attr) else {
                            continue;
                        };
                        match mode.as_str() {
                            "any" => spec.mode = ArtifactMode::Any,
                            "file" => spec.mode = ArtifactMode::File,
                            "dir" => spec.mode = ArtifactMode::Dir,
                            _ => self.error(
                                attr.value.span(),
                                format!("Invalid artifact mode {mode:?}: one of \"any\", \"file\" or \"dir\" is required"),
                            ),
                        }
                    }
                    "options" => {
                        let options = self.string_map_attr(attr);
                        self.options(
                            &mut spec,
                            options
                                .into_iter()
                                .map(|(k, v)| (k, v, attr.value.span()))
                                .collect(),
                        );
                    }
                    k @ ("headers" | "chown") => self
                        .notices
                        .ignore(&format!("artifact.{k}"), self.ev.location(attr.key.span())),
                    _ => self.unsupported_attr(attr, "an artifact block", &[ARTIFACT_KEYS]),
                },
                Structure::Block(b) => match b.ident.value().as_str() {
                    "options" => {
                        self.no_labels(b);
                        let mut options = Vec::new();
                        for attr in b.body.attributes() {
                            if let Some(v) = self.string(attr) {
                                options.push((key(attr).to_string(), v, attr.span()));
                            }
                        }
                        for inner in b.body.blocks() {
                            self.unsupported_block(
                                inner,
                                "an artifact options block",
                                &[OPTION_KEYS],
                            );
                        }
                        self.options(&mut spec, options);
                    }
                    "headers" => self
                        .notices
                        .ignore("artifact.headers", self.ev.location(b.ident.span())),
                    _ => self.unsupported_block(b, "an artifact block", &[ARTIFACT_KEYS]),
                },
            }
            ok &= self.errors.len() == errors_before;
        }
        if spec.source.is_empty() {
            self.error(
                block.ident.span(),
                "Missing required argument: an artifact needs a source",
            );
            return None;
        }
        ok.then_some(spec)
    }

    fn options(
        &mut self,
        spec: &mut ArtifactSpec,
        options: Vec<(String, String, Option<std::ops::Range<usize>>)>,
    ) {
        let mut seen = BTreeMap::new();
        for (name, value, span) in options {
            if seen.insert(name.clone(), ()).is_some() {
                continue;
            }
            match name.as_str() {
                "checksum" => match Checksum::parse(&value) {
                    Ok(c) => spec.checksum = Some(c),
                    Err(e) => self.error(span, format!("Invalid artifact option: {e}")),
                },
                "archive" => match value.as_str() {
                    "false" => spec.archive = ArchiveChoice::Never,
                    "true" => spec.archive = ArchiveChoice::Detect,
                    other => match ArchiveFormat::named(other) {
                        Some(f) => spec.archive = ArchiveChoice::Format(f),
                        None => self.error(
                            span,
                            format!("Invalid artifact option: archive = {other:?}; use \"false\", \"tar\", \"tar.gz\", \"tgz\" or \"zip\""),
                        ),
                    },
                },
                other => self.error(
                    span,
                    format!(
                        "Unsupported artifact option {other:?}: the runner honours checksum and archive{}",
                        super::suggestion(other, &[OPTION_KEYS])
                    ),
                ),
            }
        }
    }
}

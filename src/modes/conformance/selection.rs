//! `--only` / `--skip`: which checks run, matched by name or tag.

use regex::Regex;

use super::check::Tag;

#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub only: Vec<Regex>,
    pub skip: Vec<Regex>,
}

impl Selection {
    /// A check runs when `--only` is empty or one of its patterns matches the name or a
    /// tag, and no `--skip` pattern does.
    pub fn selects(&self, name: &str, tags: &[Tag]) -> bool {
        let matches = |pattern: &Regex| {
            pattern.is_match(name) || tags.iter().any(|tag| pattern.is_match(tag.as_str()))
        };
        (self.only.is_empty() || self.only.iter().any(matches)) && !self.skip.iter().any(matches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selection(only: &[&str], skip: &[&str]) -> Selection {
        let compile = |patterns: &[&str]| patterns.iter().map(|p| Regex::new(p).unwrap()).collect();
        Selection {
            only: compile(only),
            skip: compile(skip),
        }
    }

    #[test]
    fn matches_names_and_tags() {
        let all = selection(&[], &[]);
        assert!(all.selects("network.ports", &[Tag::Network]));

        let network = selection(&["^network$"], &[]);
        assert!(network.selects("network.ports", &[Tag::Network]));
        assert!(!network.selects("exec.tty", &[Tag::Exec]));

        let by_name = selection(&["^exec\\.tty$"], &[]);
        assert!(by_name.selects("exec.tty", &[Tag::Exec]));
        assert!(!by_name.selects("exec.plain", &[Tag::Exec]));

        let skip_tag = selection(&[], &["recovery"]);
        assert!(!skip_tag.selects("lifecycle.recover", &[Tag::Recovery]));
        assert!(skip_tag.selects("lifecycle.exit-code", &[Tag::Lifecycle]));

        let both = selection(&["network"], &["ports"]);
        assert!(!both.selects("network.ports", &[Tag::Network]));
        assert!(both.selects("network.host", &[Tag::Network]));
    }
}

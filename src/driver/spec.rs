//! TaskSpec -> libpod SpecGenerator.

//! Plugin (agent-level) options.

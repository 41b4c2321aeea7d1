//! e2e: plugin

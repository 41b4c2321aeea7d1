//! e2e: run

//! e2e: client

//! e2e: conformance

//! e2e: driver

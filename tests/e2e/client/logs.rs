//! e2e: log forwarding into files and FIFOs (src/driver/logs.rs).

//! e2e: registry credentials and secrets never appear in anything the driver or runner prints.

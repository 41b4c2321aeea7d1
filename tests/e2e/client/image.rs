//! e2e: image resolution and pull (src/driver/image.rs).

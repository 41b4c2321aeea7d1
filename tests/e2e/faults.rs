//! e2e: faults (plugin and podman restarts, runner crash) and a soak of start/stop cycles.

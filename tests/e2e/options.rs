//! e2e: every task option group, proved by inspecting the created container.

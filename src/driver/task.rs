//! Task model: task options + orchestrator context.

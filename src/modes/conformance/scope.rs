//! What one check created, so that the runner can remove it after the check whatever the
//! check's fate (pass, failure, deadline, Ctrl-C): tasks through the driver that started
//! them, then any container still carrying the check's label, then images.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::driver::error::DriverError;
use crate::driver::Driver;

use super::env::Env;

/// Deadline of each cleanup step.
const STEP_DEADLINE: Duration = Duration::from_secs(30);

pub struct Scope {
    check: &'static str,
    tasks: Mutex<Vec<(Arc<Driver>, String)>>,
    images: Mutex<Vec<String>>,
}

impl Scope {
    pub fn new(check: &'static str) -> Scope {
        Scope {
            check,
            tasks: Mutex::new(Vec::new()),
            images: Mutex::new(Vec::new()),
        }
    }

    /// The check this scope belongs to (its containers carry it as a label).
    pub fn check(&self) -> &'static str {
        self.check
    }

    /// A task `driver` started (or recovered) for this check.
    pub fn track_task(&self, driver: &Arc<Driver>, task_id: &str) {
        lock(&self.tasks).push((Arc::clone(driver), task_id.to_string()));
    }

    /// An image reference this check created (removed by reference: other tags of the
    /// same image stay).
    pub fn track_image(&self, reference: &str) {
        lock(&self.images).push(reference.to_string());
    }

    /// Removes everything the check created; returns what could not be removed.
    pub async fn cleanup(&self, env: &Env) -> Vec<String> {
        let mut problems = Vec::new();
        let tasks = std::mem::take(&mut *lock(&self.tasks));
        for (driver, task_id) in tasks.iter().rev() {
            match tokio::time::timeout(STEP_DEADLINE, driver.destroy(task_id, true)).await {
                Ok(Ok(())) => {}
                Ok(Err(DriverError::TaskNotFound(_))) => {}
                Ok(Err(err)) => problems.push(format!("destroy task {task_id}: {err}")),
                Err(_) => problems.push(format!("destroy task {task_id}: timed out")),
            }
        }
        // Containers whose start failed half-way, or that destroy did not remove.
        match env
            .podman
            .remove_labelled(&env.check_label(self.check))
            .await
        {
            Ok(removed) if removed.is_empty() => {}
            Ok(removed) => problems.push(format!(
                "containers left behind (now removed): {}",
                removed.join(", ")
            )),
            Err(err) => problems.push(format!("sweep of the check's containers: {err}")),
        }
        let images = std::mem::take(&mut *lock(&self.images));
        for image in images {
            if let Err(err) = env.podman.remove_image(&image).await {
                problems.push(format!("remove image {image}: {err}"));
            }
        }
        problems
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

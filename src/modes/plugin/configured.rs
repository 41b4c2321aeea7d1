//! The core driver that `SetConfig` builds, shared by the gRPC services.
//!
//! `SetConfig` may come several times (the agent validates the config twice on a
//! short-lived instance; a reattached agent does not call it at all). Repeating the same
//! config keeps the existing driver, with every task it tracks; a different config builds
//! a new one.

use std::sync::{Arc, RwLock};

use tonic::Status;

use crate::driver::config::DriverConfig;
use crate::driver::error::DriverError;
use crate::driver::model::WARNING_ANNOTATION;
use crate::driver::{Compute, Driver, DriverOptions};

/// The host's compute, read once.
static HOST_COMPUTE: std::sync::OnceLock<Compute> = std::sync::OnceLock::new();

use super::{logging, status};

#[derive(Default)]
pub(crate) struct ConfiguredDriver {
    current: RwLock<Option<Arc<Driver>>>,
}

impl ConfiguredDriver {
    /// The driver of the latest `SetConfig`.
    pub(crate) fn get(&self) -> Result<Arc<Driver>, Status> {
        let current = self
            .current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        current.clone().ok_or_else(status::not_configured)
    }

    /// Whether this is a new configuration. `compute` is the node's as the agent's
    /// topology gives it; `None` (older agents) keeps the host's own figures.
    pub(crate) fn set(
        &self,
        config: DriverConfig,
        compute: Option<Compute>,
    ) -> Result<bool, DriverError> {
        let compute = compute.unwrap_or_else(|| *HOST_COMPUTE.get_or_init(Compute::detect));
        let mut current = self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if current
            .as_ref()
            .is_some_and(|driver| *driver.config() == config && driver.compute() == compute)
        {
            return Ok(false);
        }
        let options = DriverOptions {
            compute,
            ..DriverOptions::default()
        };
        let driver = Driver::with_options(config, options)?;
        driver.start_garbage_collection();
        log_warning_events(&driver);
        *current = Some(driver);
        Ok(true)
    }
}

/// Task events the core marks as warnings (a refused log sink, ...) also go to the
/// plugin's log, where an operator looks first.
fn log_warning_events(driver: &Driver) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let mut events = driver.subscribe_events();
    runtime.spawn(async move {
        loop {
            match events.recv().await {
                Ok(event) => {
                    if let Some(kind) = event.annotations.get(WARNING_ANNOTATION) {
                        logging::warn(
                            &event.message,
                            &[
                                ("warning", kind),
                                ("task_id", &event.task_id),
                                ("alloc_id", &event.alloc_id),
                            ],
                        );
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
}

//! `TaskConfig::from_value` and `DriverConfig::from_value` on arbitrary JSON: the shape the
//! runner (plain HCL) and the plugin (cty) hand the core. A config that decodes must
//! also pass every accessor the start path calls on it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nomad_driver_podman::driver::{DriverConfig, TaskConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    match TaskConfig::from_value(&value) {
        Ok(config) => {
            assert!(config.validate().is_ok());
            assert!(config.ulimits().is_ok());
            assert!(config.security_options().is_ok());
            assert!(config.userns_mode().is_ok());
            assert!(config.ipc().is_ok());
            assert!(config.network().is_ok());
            assert!(config.hosts().is_ok());
            assert!(config.bind_volumes().is_ok());
            assert!(config.tmpfs_mounts().is_ok());
        }
        Err(e) => {
            assert!(e.field().starts_with("config"), "{e}");
            assert!(e.to_string().starts_with(e.field()), "{e}");
        }
    }
    if let Err(e) = DriverConfig::from_value(&value) {
        assert!(e.field().starts_with("config"), "{e}");
        assert!(e.to_string().starts_with(e.field()), "{e}");
    }
});

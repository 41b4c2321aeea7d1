//! `TaskConfig::from_value` and `DriverConfig::from_value` on arbitrary JSON: the shape the
//! runner (plain HCL) and the plugin (cty) hand the core. A config that decodes must
//! also pass the start path's check and read back unchanged from its persisted form (the
//! runner's `poststop.json`), which writes typed options as the strings they parse from.
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
            let persisted = serde_json::to_value(&config).expect("serializes");
            let back: TaskConfig = serde_json::from_value(persisted).expect("reads back");
            assert_eq!(back, config);
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

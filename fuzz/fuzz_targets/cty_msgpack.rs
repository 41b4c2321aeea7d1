//! The cty-msgpack decoder on arbitrary bytes, then both option readers on what it
//! produces: the path `msgpack_config` / `msgpack_driver_config` take in the plugin.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nomad_driver_podman::driver::{DriverConfig, TaskConfig};
use nomad_driver_podman::modes::plugin::cty;

fuzz_target!(|data: &[u8]| {
    match cty::decode(data) {
        Ok(value) => {
            if let Err(e) = TaskConfig::from_value(&value) {
                assert!(e.field().starts_with("config"), "{e}");
            }
            if let Err(e) = DriverConfig::from_value(&value) {
                assert!(e.field().starts_with("config"), "{e}");
            }
        }
        Err(e) => {
            assert!(e.field.starts_with("config"), "{e}");
            assert!(e.to_string().starts_with(&e.field), "{e}");
        }
    }
});

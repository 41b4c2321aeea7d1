//! Compiles the Nomad and go-plugin protos in `proto/` with protox (a pure-Rust
//! protobuf compiler), so a fresh machine builds without a system `protoc`.

use std::path::Path;

const PROTO_ROOT: &str = "proto";

const PROTO_FILES: &[&str] = &[
    "plugins/base/proto/base.proto",
    "plugins/drivers/proto/driver.proto",
    "plugins/shared/hclspec/hcl_spec.proto",
    "plugins/shared/structs/proto/attribute.proto",
    "plugins/shared/structs/proto/recoverable_error.proto",
    "plugin/grpc_controller.proto",
    "plugin/grpc_stdio.proto",
    "plugin/grpc_broker.proto",
    "google/rpc/status.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    for file in PROTO_FILES {
        println!(
            "cargo:rerun-if-changed={}",
            Path::new(PROTO_ROOT).join(file).display()
        );
    }
    let descriptors = protox::compile(PROTO_FILES, [PROTO_ROOT])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .include_file("plugin_protos.rs")
        .compile_fds(descriptors)?;
    Ok(())
}

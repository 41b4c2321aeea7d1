//! `hashicorp.nomad.plugins.base.proto.BasePlugin`: who we are, the plugin config schema,
//! and `SetConfig`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::configured::ConfiguredDriver;
use super::proto::base::{
    base_plugin_server::BasePlugin, ConfigSchemaRequest, ConfigSchemaResponse, PluginInfoRequest,
    PluginInfoResponse, PluginType, SetConfigRequest, SetConfigResponse,
};
use super::{convert, hclspec, logging, status};

/// The driver name jobs use (`driver = "podman"`), as the Go plugin.
pub(crate) const DRIVER_NAME: &str = "podman";
/// The only Nomad plugin API version for drivers.
const PLUGIN_API_VERSION: &str = "v0.1.0";

pub(crate) struct BaseService {
    pub(crate) driver: Arc<ConfiguredDriver>,
}

#[tonic::async_trait]
impl BasePlugin for BaseService {
    async fn plugin_info(
        &self,
        _request: Request<PluginInfoRequest>,
    ) -> Result<Response<PluginInfoResponse>, Status> {
        Ok(Response::new(PluginInfoResponse {
            r#type: PluginType::Driver as i32,
            plugin_api_versions: vec![PLUGIN_API_VERSION.to_string()],
            plugin_version: env!("CARGO_PKG_VERSION").to_string(),
            name: DRIVER_NAME.to_string(),
        }))
    }

    async fn config_schema(
        &self,
        _request: Request<ConfigSchemaRequest>,
    ) -> Result<Response<ConfigSchemaResponse>, Status> {
        Ok(Response::new(ConfigSchemaResponse {
            spec: Some(hclspec::config_schema()),
        }))
    }

    async fn set_config(
        &self,
        request: Request<SetConfigRequest>,
    ) -> Result<Response<SetConfigResponse>, Status> {
        let request = request.into_inner();
        let config = convert::driver_config(&request.msgpack_config).map_err(|e| {
            logging::error("rejected plugin config", &[("error", &e)]);
            status::invalid(e.to_string())
        })?;
        let compute = convert::agent_compute(request.nomad_config.as_ref());
        let changed = self
            .driver
            .set(config, compute)
            .map_err(|e| status::invalid(format!("invalid plugin config: {e}")))?;
        logging::info(
            "plugin configured",
            &[
                ("changed", &changed),
                ("api_version", &request.plugin_api_version),
                ("agent_config", &request.nomad_config.is_some()),
                (
                    "compute",
                    &compute.map_or("the host's (no agent topology)".to_string(), |c| {
                        format!(
                            "{} MHz over {} cores (agent topology)",
                            c.total_mhz, c.cores
                        )
                    }),
                ),
            ],
        );
        Ok(Response::new(SetConfigResponse {}))
    }
}

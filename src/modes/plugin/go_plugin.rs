//! go-plugin's infrastructure services: the controller
//! whose `Shutdown` ends the process, and the stdio and broker streams the agent opens on
//! every connection. Nomad sends nothing over the latter two, so they stay idle until the
//! agent closes them or the plugin exits.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::logging;
use super::proto::go_plugin::{
    grpc_broker_server::GrpcBroker, grpc_controller_server::GrpcController,
    grpc_stdio_server::GrpcStdio, ConnInfo, Empty, StdioData,
};

type IdleStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// A stream that sends nothing and ends once `done` resolves.
fn idle_until<T: Send + 'static>(
    done: impl std::future::Future<Output = ()> + Send + 'static,
) -> IdleStream<T> {
    Box::pin(futures::stream::once(done).filter_map(|()| async { None }))
}

/// `plugin.GRPCController`: `Shutdown` answers, then starts the orderly exit.
pub(crate) struct Controller {
    pub(crate) exit: CancellationToken,
}

#[tonic::async_trait]
impl GrpcController for Controller {
    async fn shutdown(&self, _request: Request<Empty>) -> Result<Response<Empty>, Status> {
        logging::info("shutdown requested by the agent", &[]);
        // The graceful server shutdown this triggers still delivers this reply.
        self.exit.cancel();
        Ok(Response::new(Empty {}))
    }
}

/// `plugin.GRPCStdio`: the plugin never writes to its stdout/stderr through gRPC.
pub(crate) struct Stdio {
    pub(crate) exit: CancellationToken,
}

#[tonic::async_trait]
impl GrpcStdio for Stdio {
    type StreamStdioStream = IdleStream<StdioData>;

    async fn stream_stdio(
        &self,
        _request: Request<()>,
    ) -> Result<Response<Self::StreamStdioStream>, Status> {
        Ok(Response::new(idle_until(
            self.exit.clone().cancelled_owned(),
        )))
    }
}

/// `plugin.GRPCBroker`: nothing is ever brokered; incoming messages are drained and the
/// stream ends with the agent's side.
pub(crate) struct Broker {
    pub(crate) exit: CancellationToken,
}

#[tonic::async_trait]
impl GrpcBroker for Broker {
    type StartStreamStream = IdleStream<ConnInfo>;

    async fn start_stream(
        &self,
        request: Request<Streaming<ConnInfo>>,
    ) -> Result<Response<Self::StartStreamStream>, Status> {
        let mut incoming = request.into_inner();
        let exit = self.exit.clone();
        let drained = async move {
            loop {
                tokio::select! {
                    message = incoming.next() => match message {
                        Some(Ok(info)) => logging::debug(
                            "ignoring broker message",
                            &[("service_id", &info.service_id)],
                        ),
                        Some(Err(_)) | None => break,
                    },
                    () = exit.cancelled() => break,
                }
            }
        };
        Ok(Response::new(idle_until(drained)))
    }
}

//! `hashicorp.nomad.plugins.drivers.proto.Driver`: every task RPC, translated onto the
//! core.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{BroadcastStream, ReceiverStream};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request, Response, Status, Streaming};

use crate::driver::task::TaskSpec;
use crate::driver::{Driver, PULL_PROGRESS_ANNOTATION};

use super::configured::ConfiguredDriver;
use super::proto::drivers::{
    self, driver_capabilities::FsIsolation, driver_server, network_isolation_spec,
};
use super::{convert, driver_state, exec_stream, hclspec, logging, status};

/// How often the fingerprint is re-sent after the first one (as the Go plugin).
const FINGERPRINT_PERIOD: Duration = Duration::from_secs(30);
/// The agent's exec timeout 0 means "no limit"; a day stands in for it so the call still
/// has a deadline.
const EXEC_WITHOUT_LIMIT: Duration = Duration::from_secs(24 * 3600);
/// Within the agent's 2 s wait for `Shutdown`.
const SHUTDOWN_DEADLINE: Duration = Duration::from_millis(1500);
/// The agent's default stats interval, used when a request carries none.
const DEFAULT_STATS_INTERVAL: Duration = Duration::from_secs(1);

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

pub(crate) struct DriverService {
    pub(crate) driver: Arc<ConfiguredDriver>,
    /// Cancelled when the plugin exits; ends the long-lived streams.
    pub(crate) exit: CancellationToken,
}

impl DriverService {
    fn driver(&self) -> Result<Arc<Driver>, Status> {
        self.driver.get()
    }
}

/// Capabilities as the Go plugin reports them.
pub(crate) fn capabilities() -> drivers::DriverCapabilities {
    use network_isolation_spec::NetworkIsolationMode;
    drivers::DriverCapabilities {
        send_signals: true,
        exec: true,
        fs_isolation: FsIsolation::Image as i32,
        network_isolation_modes: vec![
            NetworkIsolationMode::Group as i32,
            NetworkIsolationMode::Host as i32,
            NetworkIsolationMode::Task as i32,
        ],
        must_create_network: false,
        mount_configs: drivers::driver_capabilities::MountConfigs::UnknownMounts as i32,
        remote_tasks: false,
        disable_log_collection: false,
        dynamic_workload_users: false,
    }
}

/// Sends `item` unless the receiver is gone or the plugin exits; false = stop producing.
async fn deliver<T>(
    tx: &mpsc::Sender<Result<T, Status>>,
    item: T,
    exit: &CancellationToken,
) -> bool {
    tokio::select! {
        sent = tx.send(Ok(item)) => sent.is_ok(),
        () = exit.cancelled() => false,
    }
}

#[tonic::async_trait]
impl driver_server::Driver for DriverService {
    async fn task_config_schema(
        &self,
        _request: Request<drivers::TaskConfigSchemaRequest>,
    ) -> Result<Response<drivers::TaskConfigSchemaResponse>, Status> {
        Ok(Response::new(drivers::TaskConfigSchemaResponse {
            spec: Some(hclspec::task_config_schema()),
        }))
    }

    async fn capabilities(
        &self,
        _request: Request<drivers::CapabilitiesRequest>,
    ) -> Result<Response<drivers::CapabilitiesResponse>, Status> {
        Ok(Response::new(drivers::CapabilitiesResponse {
            capabilities: Some(capabilities()),
        }))
    }

    type FingerprintStream = ResponseStream<drivers::FingerprintResponse>;

    async fn fingerprint(
        &self,
        _request: Request<drivers::FingerprintRequest>,
    ) -> Result<Response<Self::FingerprintStream>, Status> {
        let driver = self.driver()?;
        if driver.config().recover_stopped {
            logging::warn(
                "recover_stopped restarts exited containers on recovery; containers that \
                 should stay stopped may come back after a node reboot",
                &[],
            );
        }
        let (tx, rx) = mpsc::channel(1);
        let exit = self.exit.clone();
        tokio::spawn(async move {
            loop {
                let fingerprint = driver.fingerprint().await;
                if !deliver(&tx, convert::fingerprint(&fingerprint), &exit).await {
                    break;
                }
                tokio::select! {
                    () = tokio::time::sleep(FINGERPRINT_PERIOD) => {}
                    () = tx.closed() => break,
                    () = exit.cancelled() => break,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn recover_task(
        &self,
        request: Request<drivers::RecoverTaskRequest>,
    ) -> Result<Response<drivers::RecoverTaskResponse>, Status> {
        let driver = self.driver()?;
        let handle = request
            .into_inner()
            .handle
            .ok_or_else(|| status::invalid("error: handle cannot be nil"))?;
        let state = driver_state::decode(&handle).map_err(|e| {
            status::invalid(format!("failed to decode task state from handle: {e}"))
        })?;
        let task_id = state.task_id.clone();
        driver.recover(state).await.map_err(|e| {
            logging::warn(
                "cannot recover task",
                &[("task_id", &task_id), ("error", &e)],
            );
            status::from_driver(&e)
        })?;
        logging::info("task recovered", &[("task_id", &task_id)]);
        Ok(Response::new(drivers::RecoverTaskResponse {}))
    }

    async fn start_task(
        &self,
        request: Request<drivers::StartTaskRequest>,
    ) -> Result<Response<drivers::StartTaskResponse>, Status> {
        let driver = self.driver()?;
        let task = request.into_inner().task.ok_or_else(|| {
            status::recoverable(
                Code::InvalidArgument,
                "StartTask without a task config".into(),
                false,
            )
        })?;
        let unusable = |e: convert::ConvertError| {
            logging::error("cannot start task", &[("task_id", &task.id), ("error", &e)]);
            status::recoverable(Code::InvalidArgument, e.to_string(), false)
        };
        let config = convert::task_config(&task.msgpack_driver_config).map_err(unusable)?;
        let context = convert::task_context(&task).map_err(unusable)?;
        let started = driver
            .start(TaskSpec { config, context })
            .await
            .map_err(|e| {
                logging::error("cannot start task", &[("task_id", &task.id), ("error", &e)]);
                status::with_recoverable(&e)
            })?;
        let driver_state = driver_state::encode(&started.state)
            .map_err(|message| status::recoverable(Code::Internal, message, false))?;
        logging::info(
            "task started",
            &[
                ("task_id", &task.id),
                ("container_id", &started.state.container_id),
            ],
        );
        Ok(Response::new(drivers::StartTaskResponse {
            result: drivers::start_task_response::Result::Success as i32,
            driver_error_msg: String::new(),
            network_override: started.network.as_ref().map(convert::network_override),
            handle: Some(drivers::TaskHandle {
                version: driver_state::handle_version(),
                config: Some(task),
                state: drivers::TaskState::Running as i32,
                driver_state,
            }),
        }))
    }

    async fn wait_task(
        &self,
        request: Request<drivers::WaitTaskRequest>,
    ) -> Result<Response<drivers::WaitTaskResponse>, Status> {
        let driver = self.driver()?;
        let task_id = request.into_inner().task_id;
        let result = driver
            .wait(&task_id)
            .await
            .map_err(|e| status::from_driver(&e))?;
        Ok(Response::new(drivers::WaitTaskResponse {
            result: Some(convert::exit_result(&result)),
            err: result.err.unwrap_or_default(),
        }))
    }

    async fn stop_task(
        &self,
        request: Request<drivers::StopTaskRequest>,
    ) -> Result<Response<drivers::StopTaskResponse>, Status> {
        let driver = self.driver()?;
        let request = request.into_inner();
        let signal = (!request.signal.is_empty()).then_some(request.signal.as_str());
        driver
            .stop(
                &request.task_id,
                convert::duration(request.timeout.as_ref()),
                signal,
            )
            .await
            .map_err(|e| status::from_driver(&e))?;
        Ok(Response::new(drivers::StopTaskResponse {}))
    }

    async fn destroy_task(
        &self,
        request: Request<drivers::DestroyTaskRequest>,
    ) -> Result<Response<drivers::DestroyTaskResponse>, Status> {
        let driver = self.driver()?;
        let request = request.into_inner();
        driver
            .destroy(&request.task_id, request.force)
            .await
            .map_err(|e| status::from_driver(&e))?;
        Ok(Response::new(drivers::DestroyTaskResponse {}))
    }

    async fn inspect_task(
        &self,
        request: Request<drivers::InspectTaskRequest>,
    ) -> Result<Response<drivers::InspectTaskResponse>, Status> {
        let driver = self.driver()?;
        let status = driver
            .inspect(&request.into_inner().task_id)
            .await
            .map_err(|e| status::from_driver(&e))?;
        Ok(Response::new(drivers::InspectTaskResponse {
            task: Some(convert::task_status(&status)),
            driver: Some(drivers::TaskDriverStatus {
                attributes: status.attributes.clone().into_iter().collect(),
            }),
            network_override: None,
        }))
    }

    type TaskStatsStream = ResponseStream<drivers::TaskStatsResponse>;

    async fn task_stats(
        &self,
        request: Request<drivers::TaskStatsRequest>,
    ) -> Result<Response<Self::TaskStatsStream>, Status> {
        let driver = self.driver()?;
        let request = request.into_inner();
        let interval = Some(convert::duration(request.collection_interval.as_ref()))
            .filter(|interval| !interval.is_zero())
            .unwrap_or(DEFAULT_STATS_INTERVAL);
        let samples = driver
            .stats(&request.task_id, interval)
            .map_err(|e| status::with_recoverable(&e))?;
        let task_id = request.task_id;
        let exit = self.exit.clone();
        let stream = ReceiverStream::new(samples)
            .take_until(exit.cancelled_owned())
            .map(move |sample| {
                Ok(drivers::TaskStatsResponse {
                    stats: Some(convert::task_stats(&task_id, &sample)),
                })
            });
        Ok(Response::new(Box::pin(stream)))
    }

    type TaskEventsStream = ResponseStream<drivers::DriverTaskEvent>;

    async fn task_events(
        &self,
        _request: Request<drivers::TaskEventsRequest>,
    ) -> Result<Response<Self::TaskEventsStream>, Status> {
        let driver = self.driver()?;
        let exit = self.exit.clone();
        let stream = BroadcastStream::new(driver.subscribe_events())
            .take_until(exit.cancelled_owned())
            // A lagging receiver skipped events; the stream itself stays usable.
            .filter_map(|event| async move { event.ok() })
            // Nomad wants task events: not the driver's own, nor per-layer pull lines.
            .filter(|event| {
                let wanted = !event.task_id.is_empty()
                    && !event.annotations.contains_key(PULL_PROGRESS_ANNOTATION);
                async move { wanted }
            })
            .map(|event| Ok(convert::task_event(&event)));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn signal_task(
        &self,
        request: Request<drivers::SignalTaskRequest>,
    ) -> Result<Response<drivers::SignalTaskResponse>, Status> {
        let driver = self.driver()?;
        let request = request.into_inner();
        driver
            .signal(&request.task_id, &request.signal)
            .await
            .map_err(|e| status::from_driver(&e))?;
        Ok(Response::new(drivers::SignalTaskResponse {}))
    }

    async fn exec_task(
        &self,
        request: Request<drivers::ExecTaskRequest>,
    ) -> Result<Response<drivers::ExecTaskResponse>, Status> {
        let driver = self.driver()?;
        let request = request.into_inner();
        if request.command.is_empty() {
            return Err(status::invalid("exec needs a command"));
        }
        let timeout = Some(convert::duration(request.timeout.as_ref()))
            .filter(|timeout| !timeout.is_zero())
            .unwrap_or(EXEC_WITHOUT_LIMIT);
        let output = driver
            .exec(&request.task_id, request.command, timeout)
            .await
            .map_err(|e| status::from_driver(&e))?;
        Ok(Response::new(drivers::ExecTaskResponse {
            stdout: output.stdout,
            stderr: output.stderr,
            result: Some(drivers::ExitResult {
                exit_code: output.exit_code,
                signal: 0,
                oom_killed: false,
            }),
        }))
    }

    type ExecTaskStreamingStream = ResponseStream<drivers::ExecTaskStreamingResponse>;

    async fn exec_task_streaming(
        &self,
        request: Request<Streaming<drivers::ExecTaskStreamingRequest>>,
    ) -> Result<Response<Self::ExecTaskStreamingStream>, Status> {
        let driver = self.driver()?;
        let responses = exec_stream::run(driver, request.into_inner()).await?;
        Ok(Response::new(Box::pin(ReceiverStream::new(responses))))
    }

    async fn create_network(
        &self,
        _request: Request<drivers::CreateNetworkRequest>,
    ) -> Result<Response<drivers::CreateNetworkResponse>, Status> {
        Err(Status::unimplemented(
            "the podman driver does not create networks (must_create_network is false)",
        ))
    }

    async fn destroy_network(
        &self,
        _request: Request<drivers::DestroyNetworkRequest>,
    ) -> Result<Response<drivers::DestroyNetworkResponse>, Status> {
        Err(Status::unimplemented(
            "the podman driver does not create networks (must_create_network is false)",
        ))
    }

    async fn init(
        &self,
        _request: Request<drivers::InitRequest>,
    ) -> Result<Response<drivers::InitResponse>, Status> {
        Ok(Response::new(drivers::InitResponse {}))
    }

    async fn shutdown(
        &self,
        _request: Request<drivers::ShutdownRequest>,
    ) -> Result<Response<drivers::ShutdownResponse>, Status> {
        // The agent is about to kill this process (agent restart or upgrade). Tasks
        // outlive it; what must survive is where log forwarding got to, so the next
        // process neither loses nor repeats a line. The agent waits 2 s.
        if let Ok(driver) = self.driver() {
            let stopped = driver.shutdown(SHUTDOWN_DEADLINE).await;
            logging::info(
                "shutdown: log forwarding stopped at its recorded positions",
                &[("tasks", &stopped)],
            );
        }
        Ok(Response::new(drivers::ShutdownResponse {}))
    }
}

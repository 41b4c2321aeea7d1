//! Core errors as gRPC statuses the agent interprets.
//!
//! The agent looks at no code except `UNAVAILABLE` (taken as "the plugin died") and
//! `CANCELLED`; neither is ever used for an ordinary failure here. For `StartTask` and
//! `TaskStats` the first status detail is a `RecoverableError`, sent both inside the
//! `google.rpc.Status` blob and as the plain code/message because grpc-go reads both from
//! the blob.

use prost::Message;
use tonic::{Code, Status};

use crate::driver::error::DriverError;

use super::proto::google::rpc;
use super::proto::structs::RecoverableError;

const RECOVERABLE_ERROR_TYPE_URL: &str =
    "type.googleapis.com/hashicorp.nomad.plugins.shared.structs.RecoverableError";

fn code_of(err: &DriverError) -> Code {
    if matches!(err, DriverError::TaskNotFound(_)) {
        Code::NotFound
    } else if matches!(
        err,
        DriverError::Config { .. }
            | DriverError::Spec { .. }
            | DriverError::PluginConfig(_)
            | DriverError::UnknownSocket { .. }
    ) {
        // The job or the plugin configuration asks for something this driver refuses.
        Code::InvalidArgument
    } else if err.is_recoverable() {
        Code::FailedPrecondition
    } else {
        Code::Unknown
    }
}

/// A core error for RPCs where the agent only shows the message.
pub(crate) fn from_driver(err: &DriverError) -> Status {
    Status::new(code_of(err), err.to_string())
}

/// A core error carrying the `RecoverableError` detail (`StartTask`, `TaskStats`).
pub(crate) fn with_recoverable(err: &DriverError) -> Status {
    recoverable(code_of(err), err.to_string(), err.is_recoverable())
}

/// A status with a `RecoverableError{recoverable}` first detail.
pub(crate) fn recoverable(code: Code, message: String, recoverable: bool) -> Status {
    let detail = prost_types::Any {
        type_url: RECOVERABLE_ERROR_TYPE_URL.to_string(),
        value: RecoverableError { recoverable }.encode_to_vec(),
    };
    let blob = rpc::Status {
        code: code as i32,
        message: message.clone(),
        details: vec![detail],
    };
    Status::with_details(code, message, blob.encode_to_vec().into())
}

/// The agent sent something this plugin cannot use (a config that does not decode, a
/// missing field): never retried.
pub(crate) fn invalid(message: impl Into<String>) -> Status {
    Status::invalid_argument(message)
}

/// Driver RPCs before the first `SetConfig`.
pub(crate) fn not_configured() -> Status {
    Status::failed_precondition("the podman driver is not configured yet (no SetConfig call)")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The `recoverable` flag of the first detail, read as grpc-go does.
    pub(crate) fn recoverable_flag(status: &Status) -> Option<bool> {
        let blob = rpc::Status::decode(status.details()).ok()?;
        let first = blob.details.first()?;
        assert_eq!(first.type_url, RECOVERABLE_ERROR_TYPE_URL);
        assert_eq!(blob.code, status.code() as i32);
        assert_eq!(blob.message, status.message());
        Some(
            RecoverableError::decode(first.value.as_slice())
                .ok()?
                .recoverable,
        )
    }

    #[test]
    fn recoverable_detail_round_trips() {
        let status = recoverable(Code::FailedPrecondition, "podman hiccup".into(), true);
        assert_eq!(recoverable_flag(&status), Some(true));
        let status = recoverable(Code::Unknown, "bad image".into(), false);
        assert_eq!(recoverable_flag(&status), Some(false));
        assert_eq!(status.message(), "bad image");
    }

    #[test]
    fn never_unavailable() {
        let err = DriverError::TaskNotFound("t1".into());
        let status = from_driver(&err);
        assert_eq!(status.code(), Code::NotFound);
        assert!(status.message().contains("t1"));
        assert_ne!(with_recoverable(&err).code(), Code::Unavailable);
        assert_eq!(not_configured().code(), Code::FailedPrecondition);
        assert_eq!(invalid("x").code(), Code::InvalidArgument);
    }
}

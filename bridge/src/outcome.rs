//! How a webhook ended, and why: the handler's reply, the fallback, or a
//! rejection. Every response, log line and metric label comes from these types,
//! and [`classify_upstream`] is the one place a gRPC result becomes an outcome.

use std::fmt;

use bytes::Bytes;
use http::StatusCode;
use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};

use crate::{
    delivery::{DeliveryError, Freshness},
    proto::ExchangeResponse,
    reply::{self, InvalidReply},
    signature::SignatureError,
};

/// Why the fallback was sent instead of the handler's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FallbackReason {
    /// The budget ran out before the handler answered.
    Deadline,
    /// The handler could not be reached (connection refused, reset, no route),
    /// or answered UNAVAILABLE.
    UpstreamUnavailable,
    /// The handler answered with a gRPC error status.
    UpstreamError,
    /// The handler answered OK with a reply Platica would not accept.
    InvalidReply,
    /// Too many handler calls were already in flight (load shedding).
    Shed,
}

impl FallbackReason {
    pub const ALL: [FallbackReason; 5] = [
        FallbackReason::Deadline,
        FallbackReason::UpstreamUnavailable,
        FallbackReason::UpstreamError,
        FallbackReason::InvalidReply,
        FallbackReason::Shed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FallbackReason::Deadline => "deadline",
            FallbackReason::UpstreamUnavailable => "upstream_unavailable",
            FallbackReason::UpstreamError => "upstream_error",
            FallbackReason::InvalidReply => "invalid_reply",
            FallbackReason::Shed => "shed",
        }
    }

    /// Whether the handler may have run for this delivery. Only then is the
    /// outcome cached for duplicates; otherwise a retry deserves a real call.
    pub fn handler_may_have_run(self) -> bool {
        !matches!(
            self,
            FallbackReason::UpstreamUnavailable | FallbackReason::Shed
        )
    }
}

/// Why a webhook was refused (4xx). The handler is never called for these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    NotFound,
    MethodNotAllowed,
    UnsupportedMediaType,
    BodyTooLarge { limit: usize },
    BodyTimeout,
    BodyRead,
    Signature(SignatureError),
    Timestamp(Freshness),
    MalformedJson(String),
    InvalidDelivery(String),
    UnsupportedEvent(String),
    HeaderMismatch { header: &'static str },
    IdConflict,
}

impl Rejection {
    pub const REASONS: [&'static str; 16] = [
        "not_found",
        "method_not_allowed",
        "unsupported_media_type",
        "body_too_large",
        "body_timeout",
        "body_read_error",
        "signature_missing",
        "signature_malformed",
        "signature_mismatch",
        "timestamp_stale",
        "timestamp_future",
        "malformed_json",
        "invalid_delivery",
        "unsupported_event",
        "header_mismatch",
        "id_conflict",
    ];

    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::NotFound => StatusCode::NOT_FOUND,
            Rejection::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Rejection::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Rejection::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Rejection::BodyRead => StatusCode::BAD_REQUEST,
            Rejection::Signature(_) | Rejection::Timestamp(_) => StatusCode::UNAUTHORIZED,
            Rejection::MalformedJson(_) | Rejection::HeaderMismatch { .. } => {
                StatusCode::BAD_REQUEST
            }
            Rejection::InvalidDelivery(_) | Rejection::UnsupportedEvent(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Rejection::IdConflict => StatusCode::CONFLICT,
        }
    }

    /// The stable machine-readable reason: metric label, log field, `error` in the body.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::NotFound => "not_found",
            Rejection::MethodNotAllowed => "method_not_allowed",
            Rejection::UnsupportedMediaType => "unsupported_media_type",
            Rejection::BodyTooLarge { .. } => "body_too_large",
            Rejection::BodyTimeout => "body_timeout",
            Rejection::BodyRead => "body_read_error",
            Rejection::Signature(SignatureError::Missing) => "signature_missing",
            Rejection::Signature(SignatureError::Malformed) => "signature_malformed",
            Rejection::Signature(SignatureError::Mismatch) => "signature_mismatch",
            Rejection::Timestamp(Freshness::Stale) => "timestamp_stale",
            Rejection::Timestamp(Freshness::Future) => "timestamp_future",
            Rejection::MalformedJson(_) => "malformed_json",
            Rejection::InvalidDelivery(_) => "invalid_delivery",
            Rejection::UnsupportedEvent(_) => "unsupported_event",
            Rejection::HeaderMismatch { .. } => "header_mismatch",
            Rejection::IdConflict => "id_conflict",
        }
    }

    /// A human-readable explanation for the JSON error body. It never echoes
    /// the body's content (which may hold personal data), only its shape.
    pub fn message(&self) -> String {
        match self {
            Rejection::NotFound => "no webhook endpoint at this path".into(),
            Rejection::MethodNotAllowed => "webhooks must be sent with POST".into(),
            Rejection::UnsupportedMediaType => "the Content-Type must be application/json".into(),
            Rejection::BodyTooLarge { limit } => format!("the body is larger than {limit} bytes"),
            Rejection::BodyTimeout => "the body was not received in time".into(),
            Rejection::BodyRead => "the body could not be read".into(),
            Rejection::Signature(e) => e.to_string(),
            Rejection::Timestamp(e) => e.to_string(),
            Rejection::MalformedJson(e) => format!("the body is not valid JSON: {e}"),
            Rejection::InvalidDelivery(e) => format!("the body is not a flows delivery: {e}"),
            Rejection::UnsupportedEvent(_) => {
                "the event is not a WhatsApp Flows event (whatsapp.flows.*)".into()
            }
            Rejection::HeaderMismatch { header } => {
                format!("the {header} header does not match the signed body")
            }
            Rejection::IdConflict => "a different body was already delivered with this id".into(),
        }
    }

    /// The JSON error body: `{"error": reason, "message": ...}`.
    pub fn body(&self) -> Bytes {
        let body = serde_json::json!({"error": self.reason(), "message": self.message()});
        Bytes::from(body.to_string())
    }
}

impl From<DeliveryError> for Rejection {
    fn from(error: DeliveryError) -> Rejection {
        match error {
            // serde_json's message gives line and column, never the content.
            DeliveryError::Json(e) => Rejection::MalformedJson(e.to_string()),
            DeliveryError::Invalid(what) => Rejection::InvalidDelivery(what),
            DeliveryError::UnsupportedEvent(event) => Rejection::UnsupportedEvent(event),
        }
    }
}

/// The one place a FlowHandler call's result becomes an answer.
/// `None` means the local deadline passed first. `at_deadline` says the call
/// ended at the deadline: a tonic server enforces `grpc-timeout` itself and
/// answers CANCELLED, sometimes a hair before the local timer fires.
pub fn classify_upstream(
    result: Option<Result<tonic::Response<ExchangeResponse>, tonic::Status>>,
    at_deadline: bool,
) -> Result<Bytes, (FallbackReason, Detail)> {
    match result {
        None => Err((FallbackReason::Deadline, Detail::None)),
        Some(Ok(response)) => reply::render(response.get_ref())
            .map_err(|e| (FallbackReason::InvalidReply, Detail::Invalid(e))),
        Some(Err(status)) => {
            let reason = match status.code() {
                tonic::Code::DeadlineExceeded => FallbackReason::Deadline,
                tonic::Code::Cancelled if at_deadline => FallbackReason::Deadline,
                tonic::Code::Unavailable => FallbackReason::UpstreamUnavailable,
                _ => FallbackReason::UpstreamError,
            };
            Err((reason, Detail::Status(status.code())))
        }
    }
}

/// Extra detail for the log line of a fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    None,
    Status(tonic::Code),
    Invalid(InvalidReply),
}

impl fmt::Display for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Detail::None => Ok(()),
            Detail::Status(code) => write!(f, "grpc status {code:?}"),
            Detail::Invalid(e) => write!(f, "{e}"),
        }
    }
}

impl EncodeLabelValue for FallbackReason {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> fmt::Result {
        fmt::Write::write_str(encoder, self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rejection_has_a_listed_reason_and_a_4xx() {
        let all = [
            Rejection::NotFound,
            Rejection::MethodNotAllowed,
            Rejection::UnsupportedMediaType,
            Rejection::BodyTooLarge { limit: 1 },
            Rejection::BodyTimeout,
            Rejection::BodyRead,
            Rejection::Signature(SignatureError::Missing),
            Rejection::Signature(SignatureError::Malformed),
            Rejection::Signature(SignatureError::Mismatch),
            Rejection::Timestamp(Freshness::Stale),
            Rejection::Timestamp(Freshness::Future),
            Rejection::MalformedJson("x".into()),
            Rejection::InvalidDelivery("x".into()),
            Rejection::UnsupportedEvent("x".into()),
            Rejection::HeaderMismatch {
                header: "X-Webhook-Event",
            },
            Rejection::IdConflict,
        ];
        for r in &all {
            assert!(Rejection::REASONS.contains(&r.reason()), "{r:?}");
            assert!(r.status().is_client_error(), "{r:?}");
            let body: serde_json::Value = serde_json::from_slice(&r.body()).unwrap();
            assert_eq!(body["error"], r.reason());
        }
    }

    #[test]
    fn grpc_statuses_map_to_reasons() {
        let fail = |code| {
            classify_upstream(Some(Err(tonic::Status::new(code, "x"))), false)
                .unwrap_err()
                .0
        };
        assert_eq!(
            fail(tonic::Code::DeadlineExceeded),
            FallbackReason::Deadline
        );
        assert_eq!(
            fail(tonic::Code::Unavailable),
            FallbackReason::UpstreamUnavailable
        );
        assert_eq!(fail(tonic::Code::Internal), FallbackReason::UpstreamError);
        assert_eq!(
            fail(tonic::Code::InvalidArgument),
            FallbackReason::UpstreamError
        );
        assert_eq!(fail(tonic::Code::Cancelled), FallbackReason::UpstreamError);
        let cancelled = Some(Err(tonic::Status::cancelled("Timeout expired")));
        assert_eq!(
            classify_upstream(cancelled, true).unwrap_err().0,
            FallbackReason::Deadline
        );
        assert_eq!(
            classify_upstream(None, true).unwrap_err().0,
            FallbackReason::Deadline
        );
        let empty = tonic::Response::new(ExchangeResponse::default());
        assert_eq!(
            classify_upstream(Some(Ok(empty)), false).unwrap_err().0,
            FallbackReason::InvalidReply
        );
    }
}

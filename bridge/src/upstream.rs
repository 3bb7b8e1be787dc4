//! The gRPC side: tonic's generated clients over one shared HTTP/2 connection to
//! the FlowHandler ([`crate::transport`]), calls bounded by the delivery's deadline (sent on
//! the wire and enforced here), and the health check behind `/readyz`.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::time::Instant;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::{
    config::UpstreamAddr,
    outcome::{self, Detail, FallbackReason},
    proto::{ExchangeRequest, flow_handler_client::FlowHandlerClient},
    transport::{Connector, Transport},
};

/// The service name the health check asks about first.
pub const SERVICE_NAME: &str = "platica.flows.v1.FlowHandler";

/// Largest reply accepted from the handler; a larger one is an `upstream_error`.
/// Flows screens carry kilobytes; the cap bounds what the idempotency cache holds.
pub const MAX_REPLY_BYTES: usize = 1024 * 1024;

/// A call ending this close to its deadline ended because of it (timers differ
/// in granularity: tokio's are millisecond, grpc-timeout is microsecond).
const DEADLINE_SLACK: Duration = Duration::from_millis(5);

/// Request metadata forwarded to the handler.
const FORWARDED_HEADERS: [&str; 4] = [
    "traceparent",
    "tracestate",
    "x-webhook-id",
    "x-webhook-event-id",
];

#[derive(Debug, Clone)]
pub struct Upstream {
    flows: FlowHandlerClient<Transport>,
    health: HealthClient<Transport>,
}

/// What the health check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Serving,
    /// Reachable, but it has no `grpc.health.v1` service: assumed ready.
    NoHealthService,
    NotServing,
    Unreachable(String),
}

impl Health {
    pub fn is_ready(&self) -> bool {
        matches!(self, Health::Serving | Health::NoHealthService)
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Health::Serving => "serving",
            Health::NoHealthService => "no_health_service",
            Health::NotServing => "not_serving",
            Health::Unreachable(_) => "unreachable",
        }
    }
}

impl Upstream {
    /// Does not connect: the bridge starts (and answers with the fallback)
    /// whether or not the handler is up yet.
    pub fn new(addr: &UpstreamAddr) -> Upstream {
        Upstream::over(Transport::new(addr))
    }

    /// An upstream whose connections come from `connector` (tests use
    /// in-memory pipes).
    pub fn with_connector(connector: Connector) -> Upstream {
        Upstream::over(Transport::with_connector(connector))
    }

    fn over(transport: Transport) -> Upstream {
        Upstream {
            flows: FlowHandlerClient::new(transport.clone())
                .max_decoding_message_size(MAX_REPLY_BYTES),
            health: HealthClient::new(transport),
        }
    }

    /// Calls `Exchange`, bounded by `deadline`. The remaining time goes on the
    /// wire as `grpc-timeout` so the handler knows its budget, and bounds the
    /// wait here too, in case the handler ignores it.
    pub async fn exchange(
        &self,
        mut request: Box<ExchangeRequest>,
        deadline: Instant,
        headers: &http::HeaderMap,
    ) -> Result<Bytes, (FallbackReason, Detail)> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err((FallbackReason::Deadline, Detail::None));
        }
        if let Some(context) = request.context.as_mut() {
            context.deadline = Some((SystemTime::now() + remaining).into());
            context.time_remaining = prost_types::Duration::try_from(remaining).ok();
        }
        let mut call = tonic::Request::new(*request);
        call.set_timeout(remaining);
        forward_metadata(headers, call.metadata_mut());
        let mut client = self.flows.clone();
        let result = tokio::time::timeout_at(deadline, client.exchange(call))
            .await
            .ok();
        if let Some(Err(status)) = &result {
            // The message may carry user data: debug level only.
            tracing::debug!(code = ?status.code(), message = status.message(), "FlowHandler error status");
        }
        let at_deadline = Instant::now() + DEADLINE_SLACK >= deadline;
        outcome::classify_upstream(result, at_deadline)
    }

    /// Asks `grpc.health.v1.Health/Check` for the FlowHandler service, then for
    /// the server as a whole (`""`) if the service is not registered.
    pub async fn check_health(&self, timeout: Duration) -> Health {
        match self.health_status(SERVICE_NAME, timeout).await {
            Err(status) if status.code() == tonic::Code::NotFound => {
                match self.health_status("", timeout).await {
                    Ok(status) => status,
                    Err(status) if status.code() == tonic::Code::NotFound => Health::NotServing,
                    Err(status) => health_error(&status),
                }
            }
            Ok(status) => status,
            Err(status) => health_error(&status),
        }
    }

    async fn health_status(
        &self,
        service: &str,
        timeout: Duration,
    ) -> Result<Health, tonic::Status> {
        let mut request = tonic::Request::new(HealthCheckRequest {
            service: service.to_owned(),
        });
        request.set_timeout(timeout);
        let mut client = self.health.clone();
        let response = tokio::time::timeout(timeout, client.check(request))
            .await
            .map_err(|_| tonic::Status::deadline_exceeded("health check timed out"))??;
        Ok(match response.into_inner().status() {
            ServingStatus::Serving => Health::Serving,
            _ => Health::NotServing,
        })
    }
}

fn health_error(status: &tonic::Status) -> Health {
    match status.code() {
        tonic::Code::Unimplemented => Health::NoHealthService,
        _ => Health::Unreachable(format!("{:?}: {}", status.code(), status.message())),
    }
}

/// Copies trace context and webhook ids into gRPC metadata; values that are
/// not valid ASCII metadata are skipped rather than failing the call.
fn forward_metadata(headers: &http::HeaderMap, metadata: &mut MetadataMap) {
    for name in FORWARDED_HEADERS {
        let value = headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<AsciiMetadataValue>().ok());
        if let Some(value) = value {
            metadata.insert(name, value);
        }
    }
}

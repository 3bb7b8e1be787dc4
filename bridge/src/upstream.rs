//! The gRPC side: one shared channel to the FlowHandler, calls bounded by the
//! delivery's deadline (sent on the wire and enforced here), and the health
//! check behind `/readyz`.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;
use tonic::{
    Status,
    body::Body,
    metadata::{AsciiMetadataValue, MetadataMap},
    transport::{Channel, Endpoint},
};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tower::Service;

use crate::{
    config::UpstreamAddr,
    outcome::{self, Detail, FallbackReason},
    proto::{ExchangeRequest, flow_handler_client::FlowHandlerClient},
};

/// The service name the health check asks about first.
pub const SERVICE_NAME: &str = "platica.flows.v1.FlowHandler";

/// Bounds connection setup; a refused connection fails at once anyway.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Detects a dead connection (peer gone without a FIN) between deliveries.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

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
    flows: FlowHandlerClient<WholeBody>,
    health: HealthClient<Channel>,
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
    /// Builds the channel without connecting: the bridge starts (and answers
    /// with the fallback) whether or not the handler is up yet.
    pub fn new(addr: &UpstreamAddr) -> Result<Upstream, tonic::transport::Error> {
        let channel = match addr {
            UpstreamAddr::Tcp(uri) => endpoint(Endpoint::from(uri.clone())).connect_lazy(),
            UpstreamAddr::Unix(path) => {
                let path = path.clone();
                // The URI is a placeholder: the connector below ignores it.
                endpoint(Endpoint::from_static("http://localhost")).connect_with_connector_lazy(
                    tower::service_fn(move |_: http::Uri| {
                        let path = path.clone();
                        async move {
                            let stream = tokio::net::UnixStream::connect(path).await?;
                            Ok::<_, std::io::Error>(TokioIo::new(stream))
                        }
                    }),
                )
            }
        };
        Ok(Upstream::from_channel(channel))
    }

    /// An upstream over an existing channel (tests use in-memory transports).
    pub fn from_channel(channel: Channel) -> Upstream {
        Upstream {
            flows: FlowHandlerClient::new(WholeBody(channel.clone()))
                .max_decoding_message_size(MAX_REPLY_BYTES),
            health: HealthClient::new(channel),
        }
    }

    /// Calls `Exchange`, bounded by `deadline`. The remaining time goes on the
    /// wire as `grpc-timeout` so the handler knows its budget, and bounds the
    /// wait here too, in case the handler ignores it.
    pub async fn exchange(
        &self,
        mut request: ExchangeRequest,
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
        let mut call = tonic::Request::new(request);
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

/// The channel, sending each request's body as one buffer that knows it is
/// the whole body. tonic streams even a unary request, so hyper would write
/// HEADERS, then DATA, then an empty DATA frame ending the stream: three
/// writes to the socket per call. A whole body goes as HEADERS, then one DATA
/// frame that ends the stream (benches/README.md: one system call less per
/// delivery). The body of a unary call is ready at once; collecting it does
/// not wait.
#[derive(Debug, Clone)]
pub struct WholeBody(Channel);

impl Service<http::Request<Body>> for WholeBody {
    type Response = http::Response<Body>;
    type Error = Status;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<http::Response<Body>, Status>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Status>> {
        self.0.poll_ready(cx).map_err(transport_status)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // The channel that was made ready is the one that must be called.
        let fresh = self.0.clone();
        let mut ready = std::mem::replace(&mut self.0, fresh);
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let bytes = body.collect().await?.to_bytes();
            let request = http::Request::from_parts(parts, Body::new(Full::new(bytes)));
            ready.call(request).await.map_err(transport_status)
        })
    }
}

/// What tonic itself makes of a transport error (it reads h2 and hyper
/// errors out of the chain).
fn transport_status(error: tonic::transport::Error) -> Status {
    Status::from_error(Box::new(error))
}

fn endpoint(endpoint: Endpoint) -> Endpoint {
    endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
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

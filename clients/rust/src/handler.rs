//! The `FlowHandler` service: the quote flow behind gRPC, honouring the
//! deadline the bridge sends.

use std::time::Duration;

use tokio::time::Instant;
use tonic::{Request, Response, Status, metadata::MetadataMap};

use crate::{
    flow,
    proto::{ExchangeRequest, ExchangeResponse, flow_handler_server::FlowHandler},
};

/// `FlowHandler` serving the quote flow.
///
/// `work` simulates slow work (a database, another service) before
/// answering; zero by default. It shows how to honour the deadline: a reply
/// after it is discarded by the bridge, so do not start work that cannot
/// finish in time.
#[derive(Debug, Default, Clone, Copy)]
pub struct QuoteFlow {
    work: Duration,
}

impl QuoteFlow {
    /// The quote flow, answering at once.
    pub fn new() -> Self {
        Self::default()
    }

    /// The quote flow, spending `work` on every call before it answers.
    pub fn with_work(work: Duration) -> Self {
        Self { work }
    }
}

#[tonic::async_trait]
impl FlowHandler for QuoteFlow {
    async fn exchange(
        &self,
        request: Request<ExchangeRequest>,
    ) -> Result<Response<ExchangeResponse>, Status> {
        // The deadline the caller set (`grpc-timeout`), counted from now;
        // none when the caller set no deadline.
        let deadline = grpc_timeout(request.metadata()).map(|timeout| Instant::now() + timeout);
        let request = request.into_inner();
        if let Some(deadline) = deadline {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining <= self.work {
                tracing::warn!(
                    delivery = %request.id,
                    remaining_ms = remaining.as_millis(),
                    "not enough time left for the work; giving up"
                );
                return Err(Status::deadline_exceeded("no time left"));
            }
        }
        if !self.work.is_zero() {
            tokio::time::sleep(self.work).await;
        }

        let exchange = request.flow_exchange.as_ref();
        let action = exchange.map_or("-", |e| e.action_name.as_str());
        let screen = exchange.and_then(|e| e.screen.as_deref()).unwrap_or("-");
        match flow::answer(&request) {
            Ok(reply) => {
                // Ids and names only: payloads and `client` hold personal data.
                tracing::info!(
                    delivery = %request.id,
                    action,
                    screen,
                    next = reply.screen.as_deref().unwrap_or("-"),
                    "answered"
                );
                Ok(Response::new(reply))
            }
            Err(no_step) => {
                tracing::warn!(delivery = %request.id, action, screen, "{no_step}");
                Err(Status::invalid_argument(no_step.to_string()))
            }
        }
    }
}

/// The call's `grpc-timeout`, when it has a valid one.
fn grpc_timeout(metadata: &MetadataMap) -> Option<Duration> {
    parse_grpc_timeout(metadata.get("grpc-timeout")?.to_str().ok()?)
}

/// Parses a `grpc-timeout` value: at most 8 ASCII digits and a unit
/// (`H`, `M`, `S`, `m`, `u`, `n`), as the gRPC over HTTP/2 spec defines it.
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (&unit, digits) = value.as_bytes().split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let amount: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(amount * 3600),
        b'M' => Duration::from_secs(amount * 60),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_grpc_timeouts() {
        assert_eq!(parse_grpc_timeout("599m"), Some(Duration::from_millis(599)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_grpc_timeout("250u"), Some(Duration::from_micros(250)));
        assert_eq!(
            parse_grpc_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        assert_eq!(parse_grpc_timeout("0m"), Some(Duration::ZERO));
        for bad in [
            "",
            "m",
            "100",
            "123456789m",
            "1x",
            "-1m",
            "1.5S",
            "١m",
            "10é",
        ] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }
}

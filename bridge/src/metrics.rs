//! Prometheus metrics, served on the admin port at `/metrics`.

use std::{fmt, time::Duration};

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram, info::Info},
    registry::Registry,
};

use crate::{outcome::FallbackReason, proto::Event, server::ConnectionMetrics};

/// Buckets (seconds) dense around the 600 ms budget and Platica's 700 ms limit.
const LATENCY_BUCKETS: [f64; 17] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7,
    1.0,
];

/// How a delivery ended, for `flows_bridge_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutcomeLabel {
    Reply,
    Fallback,
    Rejected,
}

/// The event, bounded to the known ones so a hostile body cannot mint labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventLabel {
    Init,
    ScreenAdvance,
    Back,
    Other,
    /// Rejected before the body was parsed.
    None,
}

impl From<Event> for EventLabel {
    fn from(event: Event) -> EventLabel {
        match event {
            Event::Init => EventLabel::Init,
            Event::ScreenAdvance => EventLabel::ScreenAdvance,
            Event::Back => EventLabel::Back,
            Event::Unspecified => EventLabel::Other,
        }
    }
}

impl EventLabel {
    pub const ALL: [EventLabel; 5] = [
        EventLabel::Init,
        EventLabel::ScreenAdvance,
        EventLabel::Back,
        EventLabel::Other,
        EventLabel::None,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventLabel::Init => "init",
            EventLabel::ScreenAdvance => "screen_advance",
            EventLabel::Back => "back",
            EventLabel::Other => "other",
            EventLabel::None => "none",
        }
    }
}

impl OutcomeLabel {
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeLabel::Reply => "reply",
            OutcomeLabel::Fallback => "fallback",
            OutcomeLabel::Rejected => "rejected",
        }
    }
}

impl EncodeLabelValue for EventLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> fmt::Result {
        fmt::Write::write_str(encoder, self.as_str())
    }
}

impl EncodeLabelValue for OutcomeLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> fmt::Result {
        fmt::Write::write_str(encoder, self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    pub event: EventLabel,
    pub outcome: OutcomeLabel,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct FallbackLabels {
    pub reason: FallbackReason,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RejectionLabels {
    pub reason: &'static str,
}

/// Why hyper closed a connection before any handler ran.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ConnectionErrorLabels {
    pub reason: &'static str,
}

/// Every `ConnectionErrorLabels::reason`.
pub const CONNECTION_ERROR_REASONS: [&str; 5] = [
    "header_timeout",
    "headers_too_large",
    "malformed_http",
    "incomplete_message",
    "other",
];

/// Why an idle connection (no request in flight) was closed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct IdleCloseLabels {
    pub reason: &'static str,
}

/// Every `IdleCloseLabels::reason`.
pub const IDLE_CLOSE_REASONS: [&str; 2] = ["idle_timeout", "connection_cap"];

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// Every metric of the bridge. Cheap to share: all handles are atomics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub fallbacks: Family<FallbackLabels, Counter>,
    pub rejections: Family<RejectionLabels, Counter>,
    /// The webhook listener's connections.
    pub connections: ConnectionMetrics,
    pub duplicates: Counter,
    pub request_duration: Histogram,
    pub upstream_duration: Histogram,
    pub in_flight: Gauge,
    pub upstream_ready: Gauge,
    pub secrets: Gauge,
    pub journal_records: Counter,
    pub journal_dropped: Counter,
    pub journal_errors: Counter,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("flows_bridge");
        let requests = Family::<RequestLabels, Counter>::default();
        let fallbacks = Family::<FallbackLabels, Counter>::default();
        let rejections = Family::<RejectionLabels, Counter>::default();
        let connections = ConnectionMetrics::default();
        let duplicates = Counter::default();
        let request_duration = Histogram::new(LATENCY_BUCKETS);
        let upstream_duration = Histogram::new(LATENCY_BUCKETS);
        let in_flight = Gauge::default();
        let upstream_ready = Gauge::default();
        let secrets = Gauge::default();
        let journal_records = Counter::default();
        let journal_dropped = Counter::default();
        let journal_errors = Counter::default();

        // Zero-valued series exist from the start, so rate() and alerts see them.
        for event in EventLabel::ALL {
            for outcome in [
                OutcomeLabel::Reply,
                OutcomeLabel::Fallback,
                OutcomeLabel::Rejected,
            ] {
                let _ = requests.get_or_create(&RequestLabels { event, outcome });
            }
        }
        for reason in FallbackReason::ALL {
            let _ = fallbacks.get_or_create(&FallbackLabels { reason });
        }
        for reason in CONNECTION_ERROR_REASONS {
            let _ = connections
                .errors
                .get_or_create(&ConnectionErrorLabels { reason });
        }
        for reason in IDLE_CLOSE_REASONS {
            let _ = connections
                .idle_closed
                .get_or_create(&IdleCloseLabels { reason });
        }
        for reason in crate::outcome::Rejection::REASONS {
            let _ = rejections.get_or_create(&RejectionLabels { reason });
        }

        registry.register(
            "requests",
            "Webhook deliveries by event and outcome (reply, fallback, rejected)",
            requests.clone(),
        );
        registry.register(
            "fallbacks",
            "Deliveries answered with the fallback reply, by reason",
            fallbacks.clone(),
        );
        registry.register(
            "rejections",
            "Webhooks refused with a 4xx, by reason",
            rejections.clone(),
        );
        registry.register(
            "connection_errors",
            "Webhook connections closed by the HTTP layer before any handler ran, by reason \
             (header timeout, headers too large, malformed HTTP, ...)",
            connections.errors.clone(),
        );
        registry.register(
            "idle_connections_closed",
            "Webhook connections closed with no request in flight: idle for the header timeout \
             (idle_timeout) or to make room at FLOWS_BRIDGE_MAX_CONNECTIONS (connection_cap)",
            connections.idle_closed.clone(),
        );
        registry.register(
            "open_connections",
            "Webhook connections open now",
            connections.open.clone(),
        );
        registry.register(
            "duplicates",
            "Deliveries answered from the idempotency cache (same id seen before)",
            duplicates.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from a webhook's arrival to its response, all outcomes",
            request_duration.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "Duration of FlowHandler.Exchange calls, until reply, error or deadline",
            upstream_duration.clone(),
        );
        registry.register(
            "in_flight",
            "FlowHandler calls in flight",
            in_flight.clone(),
        );
        registry.register(
            "upstream_ready",
            "1 when the FlowHandler is reachable and serving, else 0",
            upstream_ready.clone(),
        );
        registry.register(
            "secrets",
            "Webhook signing secrets currently accepted",
            secrets.clone(),
        );
        registry.register(
            "journal_records",
            "Fallback deliveries written (and synced) to the fallback journal",
            journal_records.clone(),
        );
        registry.register(
            "journal_dropped",
            "Fallback deliveries not journaled because the writer's queue was full",
            journal_dropped.clone(),
        );
        registry.register(
            "journal_errors",
            "Failed writes to the fallback journal (each may hold several records)",
            journal_errors.clone(),
        );
        registry.register(
            "build",
            "Build information",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );

        Metrics {
            registry,
            requests,
            fallbacks,
            rejections,
            connections,
            duplicates,
            request_duration,
            upstream_duration,
            in_flight,
            upstream_ready,
            secrets,
            journal_records,
            journal_dropped,
            journal_errors,
        }
    }

    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    pub fn observe_request(&self, event: EventLabel, outcome: OutcomeLabel, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels { event, outcome })
            .inc();
        self.request_duration.observe(elapsed.as_secs_f64());
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_described_from_the_start() {
        let text = Metrics::new().encode();
        for family in [
            "# TYPE flows_bridge_requests counter",
            "# TYPE flows_bridge_fallbacks counter",
            "# TYPE flows_bridge_rejections counter",
            "# TYPE flows_bridge_request_duration_seconds histogram",
            "# TYPE flows_bridge_upstream_duration_seconds histogram",
            "# TYPE flows_bridge_in_flight gauge",
            "# TYPE flows_bridge_upstream_ready gauge",
        ] {
            assert!(text.contains(family), "{family} missing");
        }
        assert!(text.contains(r#"flows_bridge_fallbacks_total{reason="shed"} 0"#));
        assert!(text.ends_with("# EOF\n"));
    }
}

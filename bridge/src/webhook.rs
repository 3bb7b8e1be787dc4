//! The HTTP side: `POST {path}` with a signed delivery in, the handler's reply
//! or the fallback out.
//!
//! The order of checks is the order of cost and trust: method and path (routing),
//! content type, size, then the HMAC over the raw bytes, and only then JSON
//! parsing, freshness, header consistency, de-duplication and the gRPC call.

use std::{sync::Arc, time::SystemTime};

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    response::{IntoResponse, Response},
    routing::post,
};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::{sync::Semaphore, time::Instant};

use crate::{
    config::{Config, SignatureMode},
    delivery::{self, Delivery},
    idempotency::{self, BodyDigest, Cached, Idempotency, Once},
    journal::Journal,
    metrics::{EventLabel, FallbackLabels, Metrics, OutcomeLabel, RejectionLabels},
    outcome::{Detail, FallbackReason, Rejection},
    proto::{DeliveryContext, ExchangeRequest},
    secrets::SharedSecrets,
    signature::{self, VerifiedBody},
    upstream::Upstream,
};

/// The state shared by every webhook request.
pub struct Webhook {
    path: String,
    secrets: Option<SharedSecrets>,
    upstream: Upstream,
    budget: std::time::Duration,
    tolerance: Option<std::time::Duration>,
    max_body: usize,
    body_timeout: std::time::Duration,
    fallback: Bytes,
    permits: Arc<Semaphore>,
    idempotency: Idempotency,
    journal: Option<Journal>,
    metrics: Arc<Metrics>,
}

impl Webhook {
    pub fn new(
        config: &Config,
        secrets: Option<SharedSecrets>,
        upstream: Upstream,
        journal: Option<Journal>,
        metrics: Arc<Metrics>,
    ) -> Webhook {
        debug_assert_eq!(
            secrets.is_none(),
            matches!(config.signature, SignatureMode::InsecureSkip)
        );
        Webhook {
            path: config.path.clone(),
            secrets,
            upstream,
            budget: config.budget,
            tolerance: config.timestamp_tolerance,
            max_body: config.max_body,
            body_timeout: config.body_timeout,
            fallback: config.fallback.clone(),
            permits: Arc::new(Semaphore::new(config.max_in_flight)),
            idempotency: Idempotency::new(
                config.idempotency_capacity,
                config.idempotency_memory,
                config.idempotency_ttl,
            ),
            journal,
            metrics,
        }
    }
}

/// The webhook router. Tested without a socket through `tower::ServiceExt::oneshot`.
pub fn router(webhook: Arc<Webhook>) -> Router {
    let path = webhook.path.clone();
    Router::new()
        .route(&path, post(receive).fallback(wrong_method))
        .fallback(not_found)
        .with_state(webhook)
}

async fn not_found(State(webhook): State<Arc<Webhook>>) -> Response {
    webhook.respond(Instant::now(), Handled::Rejected(Rejection::NotFound, None))
}

async fn wrong_method(State(webhook): State<Arc<Webhook>>) -> Response {
    webhook.respond(
        Instant::now(),
        Handled::Rejected(Rejection::MethodNotAllowed, None),
    )
}

async fn receive(State(webhook): State<Arc<Webhook>>, request: Request) -> Response {
    // The budget counts from here: hyper has just parsed the request head.
    let arrived = Instant::now();
    let (parts, body) = request.into_parts();
    // Boxed: the delivery's whole path (body, cache, gRPC call) is one large
    // future, and axum boxes this handler's future; unboxed, every move of it
    // on the way there copies kilobytes (callgrind: ~80k instructions a delivery).
    let handled = Box::pin(webhook.handle(&parts.headers, body, arrived)).await;
    webhook.respond(arrived, handled)
}

/// How a request ended, before it becomes a response, a log line and metrics.
enum Handled {
    Answered {
        about: About,
        answer: Result<Bytes, (FallbackReason, Detail)>,
        duplicate: bool,
    },
    Rejected(Rejection, Option<About>),
}

/// What the log line says about a delivery: ids, event, flow and screen, no
/// personal data. Kept apart so the request itself can go to the handler.
struct About {
    id: String,
    event: EventLabel,
    flow_id: Option<String>,
    screen: Option<String>,
}

impl About {
    fn of(delivery: &Delivery) -> About {
        let request = &delivery.request;
        About {
            id: request.id.clone(),
            event: EventLabel::from(request.event()),
            flow_id: request.flow.as_ref().and_then(|f| f.id.clone()),
            screen: request
                .flow_exchange
                .as_ref()
                .and_then(|x| x.screen.clone()),
        }
    }
}

impl Webhook {
    async fn handle(&self, headers: &HeaderMap, body: Body, arrived: Instant) -> Handled {
        let (handled, body) = self.answer(headers, body, arrived).await;
        if let (
            Some(journal),
            Handled::Answered {
                about,
                answer: Err((reason, _)),
                duplicate: false,
            },
            Some(body),
        ) = (&self.journal, &handled, body)
        {
            let webhook_id = headers.get("x-webhook-id").and_then(|v| v.to_str().ok());
            journal.record(*reason, &about.id, webhook_id, body.bytes());
        }
        handled
    }

    /// The request's outcome, and its verified body once there is one.
    async fn answer(
        &self,
        headers: &HeaderMap,
        body: Body,
        arrived: Instant,
    ) -> (Handled, Option<VerifiedBody>) {
        let verified = match self.receive_body(headers, body).await {
            Ok(verified) => verified,
            Err(rejection) => return (Handled::Rejected(rejection, None), None),
        };
        let delivery = match delivery::parse(&verified) {
            Ok(delivery) => delivery,
            Err(error) => return (Handled::Rejected(error.into(), None), Some(verified)),
        };
        let about = About::of(&delivery);
        if let Some(tolerance) = self.tolerance
            && let Err(e) =
                delivery::check_freshness(&delivery.timestamp(), SystemTime::now(), tolerance)
        {
            return (
                Handled::Rejected(Rejection::Timestamp(e), Some(about)),
                Some(verified),
            );
        }
        if let Err(header) = check_headers(headers, &delivery) {
            return (
                Handled::Rejected(Rejection::HeaderMismatch { header }, Some(about)),
                Some(verified),
            );
        }

        let digest = idempotency::body_digest(verified.bytes());
        // Boxed: the call is a large future, moved before it is polled.
        // The request itself goes to the handler (moved, not copied).
        let call = Box::pin(self.call(delivery.request, headers, digest, arrived));
        let handled = match self.idempotency.once(&about.id, call).await {
            Once::Duplicate(cached) if cached.digest != digest => {
                Handled::Rejected(Rejection::IdConflict, Some(about))
            }
            Once::Duplicate(cached) => Handled::Answered {
                about,
                answer: cached.answer.clone(),
                duplicate: true,
            },
            // An `Err` was not kept: the handler did not see it (down, shed);
            // a duplicate waiting on this call makes its own.
            Once::Called(called) => Handled::Answered {
                about,
                answer: called.and_then(|cached| cached.answer.clone()),
                duplicate: false,
            },
        };
        (handled, Some(verified))
    }

    /// Content type, size and signature, in that order.
    async fn receive_body(
        &self,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<VerifiedBody, Rejection> {
        if !is_json(headers) {
            return Err(Rejection::UnsupportedMediaType);
        }
        let too_large = Rejection::BodyTooLarge {
            limit: self.max_body,
        };
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.max_body as u64) {
            return Err(too_large);
        }
        let limited = Limited::new(body, self.max_body);
        let bytes = match tokio::time::timeout(self.body_timeout, limited.collect()).await {
            Err(_) => return Err(Rejection::BodyTimeout),
            Ok(Err(e)) if e.is::<LengthLimitError>() => return Err(too_large),
            Ok(Err(_)) => return Err(Rejection::BodyRead),
            Ok(Ok(collected)) => collected.to_bytes(),
        };
        match &self.secrets {
            None => Ok(VerifiedBody::unchecked(bytes)),
            Some(secrets) => signature::verify(
                &secrets.load(),
                bytes,
                headers
                    .get("x-webhook-signature")
                    .map(HeaderValue::as_bytes),
            )
            .map_err(Rejection::Signature),
        }
    }

    /// One FlowHandler call, run once per delivery id by the cache. `Ok` is
    /// cached for duplicates; `Err` (the handler never saw it) is not.
    async fn call(
        &self,
        mut request: Box<ExchangeRequest>,
        headers: &HeaderMap,
        digest: BodyDigest,
        arrived: Instant,
    ) -> Result<Arc<Cached>, (FallbackReason, Detail)> {
        // Shed instead of queueing: a queued delivery would miss its budget anyway.
        let Ok(_permit) = self.permits.clone().try_acquire_owned() else {
            return Err((FallbackReason::Shed, Detail::None));
        };
        let _in_flight = InFlight::enter(&self.metrics);
        request.context = Some(DeliveryContext {
            webhook_id: headers
                .get("x-webhook-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            unverified: self.secrets.is_none(),
            ..DeliveryContext::default()
        });
        let started = Instant::now();
        let answer = self
            .upstream
            .exchange(request, arrived + self.budget, headers)
            .await;
        self.metrics
            .upstream_duration
            .observe(started.elapsed().as_secs_f64());
        match answer {
            Err((reason, detail)) if !reason.handler_may_have_run() => Err((reason, detail)),
            answer => Ok(Cached::new(digest, answer)),
        }
    }

    /// The one place a request's end becomes a response, a log line and metrics.
    fn respond(&self, arrived: Instant, handled: Handled) -> Response {
        let elapsed = arrived.elapsed();
        let latency_ms = elapsed.as_secs_f64() * 1000.0;
        match handled {
            Handled::Answered {
                about,
                answer,
                duplicate,
            } => {
                let event = about.event;
                let flow_id = about.flow_id.as_deref().unwrap_or("");
                let screen = about.screen.as_deref().unwrap_or("");
                if duplicate {
                    self.metrics.duplicates.inc();
                }
                match answer {
                    Ok(body) => {
                        self.metrics
                            .observe_request(event, OutcomeLabel::Reply, elapsed);
                        tracing::info!(
                            delivery_id = about.id,
                            event = event.as_str(),
                            flow_id,
                            screen,
                            outcome = "reply",
                            duplicate,
                            latency_ms,
                            "delivery answered"
                        );
                        json_response(StatusCode::OK, body)
                    }
                    Err((reason, detail)) => {
                        self.metrics
                            .observe_request(event, OutcomeLabel::Fallback, elapsed);
                        self.metrics
                            .fallbacks
                            .get_or_create(&FallbackLabels { reason })
                            .inc();
                        tracing::warn!(
                            delivery_id = about.id,
                            event = event.as_str(),
                            flow_id,
                            screen,
                            outcome = "fallback",
                            reason = reason.as_str(),
                            detail = %detail,
                            duplicate,
                            latency_ms,
                            "delivery answered with the fallback"
                        );
                        json_response(StatusCode::OK, self.fallback.clone())
                    }
                }
            }
            Handled::Rejected(rejection, about) => {
                let event = about.as_ref().map_or(EventLabel::None, |a| a.event);
                self.metrics
                    .observe_request(event, OutcomeLabel::Rejected, elapsed);
                self.metrics
                    .rejections
                    .get_or_create(&RejectionLabels {
                        reason: rejection.reason(),
                    })
                    .inc();
                tracing::warn!(
                    delivery_id = about.as_ref().map(|a| a.id.as_str()),
                    event = event.as_str(),
                    outcome = "rejected",
                    reason = rejection.reason(),
                    status = rejection.status().as_u16(),
                    latency_ms,
                    "webhook rejected"
                );
                let mut response = json_response(rejection.status(), rejection.body());
                if rejection == Rejection::MethodNotAllowed {
                    response
                        .headers_mut()
                        .insert(header::ALLOW, HeaderValue::from_static("POST"));
                }
                response
            }
        }
    }
}

fn json_response(status: StatusCode, body: Bytes) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// `application/json`, with or without parameters (`; charset=utf-8`).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// Platica repeats parts of the signed body in headers. A header that is
/// present must agree with the body; a disagreement means tampering or a bug.
fn check_headers(headers: &HeaderMap, delivery: &Delivery) -> Result<(), &'static str> {
    let request = &delivery.request;
    let pairs: [(&'static str, Option<&str>); 5] = [
        ("X-Webhook-Event-Id", Some(&request.id)),
        ("X-Webhook-Event", Some(&request.event_name)),
        ("X-Webhook-Timestamp", Some(&delivery.raw_timestamp)),
        ("X-Webhook-Resource-Type", request.resource_type.as_deref()),
        ("X-Webhook-Resource-Id", request.resource_id.as_deref()),
    ];
    for (name, body_value) in pairs {
        if let Some(header) = headers.get(name) {
            let header = header.to_str().map_err(|_| name)?.trim();
            if header != body_value.unwrap_or("") {
                return Err(name);
            }
        }
    }
    Ok(())
}

/// Counts a FlowHandler call in flight for as long as it lives, even when the
/// request is dropped midway (client gone).
struct InFlight<'a>(&'a Metrics);

impl<'a> InFlight<'a> {
    fn enter(metrics: &'a Metrics) -> InFlight<'a> {
        metrics.in_flight.inc();
        InFlight(metrics)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

//! The admin listener: `/livez`, `/readyz`, `/metrics`, on their own port so
//! probes and scrapes never touch the webhook path or its limits.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwap;
use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use tokio_util::sync::CancellationToken;

use crate::{
    metrics::Metrics,
    upstream::{Health, Upstream},
};

/// What `/readyz` reports: ready while listening, not draining, and the
/// FlowHandler reachable.
#[derive(Debug)]
pub struct Readiness {
    listening: AtomicBool,
    draining: AtomicBool,
    upstream: ArcSwap<Health>,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness {
            listening: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            upstream: ArcSwap::from_pointee(Health::Unreachable("not checked yet".into())),
        }
    }
}

impl Readiness {
    pub fn set_listening(&self) {
        self.listening.store(true, Ordering::Release);
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.listening.load(Ordering::Acquire)
            && !self.draining.load(Ordering::Acquire)
            && self.upstream.load().is_ready()
    }
}

#[derive(Clone)]
struct AdminState {
    readiness: Arc<Readiness>,
    metrics: Arc<Metrics>,
}

pub fn router(readiness: Arc<Readiness>, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AdminState { readiness, metrics })
}

/// Alive means the process answers; it never depends on the upstream, so a
/// down business container does not get the sidecar restarted.
async fn livez() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

async fn readyz(State(state): State<AdminState>) -> Response {
    let r = &state.readiness;
    let upstream = r.upstream.load();
    let ready = r.is_ready();
    let mut body = serde_json::json!({
        "ready": ready,
        "listening": r.listening.load(Ordering::Acquire),
        "draining": r.draining.load(Ordering::Acquire),
        "upstream": upstream.as_str(),
    });
    if let Health::Unreachable(why) = &**upstream {
        body["upstream_error"] = why.clone().into();
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn metrics_text(State(state): State<AdminState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

/// Checks the upstream's health every `interval` until `stop`, logging each change.
pub async fn watch_upstream(
    upstream: Upstream,
    readiness: Arc<Readiness>,
    metrics: Arc<Metrics>,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned_no_health = false;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.cancelled() => return,
        }
        let health = upstream
            .check_health(interval.min(Duration::from_secs(1)))
            .await;
        let previous = readiness.upstream.load();
        if **previous != health {
            match &health {
                Health::Serving => tracing::info!("upstream is serving"),
                Health::NoHealthService => {
                    if !warned_no_health {
                        warned_no_health = true;
                        tracing::warn!(
                            "upstream has no grpc.health.v1 service; readiness assumes it is serving while it answers"
                        );
                    }
                }
                Health::NotServing => tracing::warn!("upstream reports NOT_SERVING"),
                Health::Unreachable(error) => tracing::warn!(%error, "upstream is unreachable"),
            }
        }
        metrics.upstream_ready.set(i64::from(health.is_ready()));
        readiness.upstream.store(Arc::new(health));
    }
}

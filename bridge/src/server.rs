//! The accept loop both listeners use. `axum::serve` sets no hyper timer, so
//! hyper's header-read timeout would never fire under it (slowloris); this loop
//! builds each connection with a timer, header limits, HTTP/1.1 and h2c, and
//! drains connections gracefully when told to stop.

use std::time::Duration;

use axum::Router;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use std::sync::Arc;

use prometheus_client::metrics::{counter::Counter, family::Family};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::sync::CancellationToken;

use crate::metrics::ConnectionErrorLabels;

/// Limits applied to every connection, before any handler runs.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub max_headers: usize,
    pub max_header_bytes: usize,
}

/// Bounds the streams one HTTP/2 connection may open at once.
const MAX_CONCURRENT_STREAMS: u32 = 256;
/// Back-off after a failed accept (e.g. out of file descriptors).
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// Serves `app` on `listener` until `stop` is cancelled, then stops accepting
/// and waits for open connections to finish their requests.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    errors: Family<ConnectionErrorLabels, Counter>,
    stop: CancellationToken,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_headers(limits.max_headers)
        .max_buf_size(limits.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS);

    let graceful = GracefulShutdown::new();
    // A permit per open connection: at the cap, stop accepting (new
    // connections wait in the kernel's backlog) until one closes.
    // 0 means no cap.
    let cap = match limits.max_connections {
        0 => Semaphore::MAX_PERMITS,
        n => n,
    };
    let connections = Arc::new(Semaphore::new(cap));
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = stop.cancelled() => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let connection = builder
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()))
            .into_owned();
        let connection = graceful.watch(connection);
        let errors = errors.clone();
        tokio::spawn(async move {
            let _permit = permit;
            // Requests refused by hyper itself end here, before any handler:
            // it has already answered what deserved an answer (400, 431).
            if let Err(error) = connection.await {
                let reason = classify(&*error);
                errors
                    .get_or_create(&ConnectionErrorLabels { reason })
                    .inc();
                if reason == "other" {
                    tracing::debug!(%error, "connection closed with an error");
                } else {
                    tracing::info!(reason, %error, "connection refused by the HTTP layer");
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The reason label for a connection that ended in an error.
fn classify(error: &(dyn std::error::Error + Send + Sync + 'static)) -> &'static str {
    match error.downcast_ref::<hyper::Error>() {
        Some(e) if e.is_timeout() => "header_timeout",
        Some(e) if e.is_parse_too_large() => "headers_too_large",
        Some(e) if e.is_parse() => "malformed_http",
        Some(e) if e.is_incomplete_message() => "incomplete_message",
        _ => "other",
    }
}

//! The accept loop both listeners use. `axum::serve` sets no hyper timer, so
//! hyper's header-read timeout would never fire under it (slowloris); this loop
//! builds each connection with a timer, header limits, HTTP/1.1 and h2c, and
//! watches every connection itself:
//!
//! - a connection with no request in flight for the header timeout is closed,
//!   whatever it is doing: silent after connecting, half an HTTP/2 preface
//!   (hyper-util's protocol sniffing has no timer of its own), an HTTP/2
//!   connection that opens no stream, an idle keep-alive;
//! - at the connection cap, idle connections are closed to make room for a
//!   new one, so silent connections cannot lock deliveries out;
//! - on shutdown, each connection finishes its requests in flight and is then
//!   closed, without waiting on a client that does not answer HTTP/2's GOAWAY.

use std::{
    convert::Infallible,
    future::Future,
    pin::{Pin, pin},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{Router, extract::Request, response::Response};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
    service::TowerToHyperService,
};
use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{Notify, OwnedSemaphorePermit, Semaphore, watch},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::metrics::{ConnectionErrorLabels, IdleCloseLabels};

/// Limits applied to every connection, before any handler runs.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Most connections open at once; 0 means no cap.
    pub max_connections: usize,
    /// Time to send a request head, and most time a connection may stay open
    /// with no request in flight.
    pub header_timeout: Duration,
    pub max_headers: usize,
    pub max_header_bytes: usize,
}

/// What one listener reports about its connections.
#[derive(Debug, Clone, Default)]
pub struct ConnectionMetrics {
    pub errors: Family<ConnectionErrorLabels, Counter>,
    pub idle_closed: Family<IdleCloseLabels, Counter>,
    pub open: Gauge,
}

/// Bounds the streams one HTTP/2 connection may open at once.
const MAX_CONCURRENT_STREAMS: u32 = 256;
/// Back-off after a failed accept (e.g. out of file descriptors).
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);
/// While a new connection waits for a slot, idle ones are asked this often to
/// close (a connection that was busy at the last call may be idle now).
const EVICTION_RETRY: Duration = Duration::from_millis(50);
/// On shutdown, how long a connection with nothing in flight is given to close
/// by itself (an HTTP/2 client answering GOAWAY) before it is closed.
const DRAIN_LINGER: Duration = Duration::from_millis(250);

type HyperConnection<'a> =
    auto::Connection<'a, TokioIo<TcpStream>, TowerToHyperService<Tracked>, TokioExecutor>;

/// Everything the accept loop shares with its connections.
struct Listener {
    app: Router,
    builder: auto::Builder<TokioExecutor>,
    limits: HttpLimits,
    metrics: ConnectionMetrics,
    /// Notified when a new connection waits for a slot at the cap.
    make_room: Notify,
    stop: CancellationToken,
}

/// Serves `app` on `listener` until `stop` is cancelled, then stops accepting,
/// lets open connections finish their requests in flight, and returns once
/// every connection is closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    metrics: ConnectionMetrics,
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

    let shared = Arc::new(Listener {
        app,
        builder,
        limits,
        metrics,
        make_room: Notify::new(),
        stop,
    });
    let slots = Arc::new(Semaphore::new(match limits.max_connections {
        0 => Semaphore::MAX_PERMITS,
        n => n,
    }));
    let connections = TaskTracker::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            },
            () = shared.stop.cancelled() => break,
        };
        let Some(slot) = take_slot(&slots, &shared).await else {
            break;
        };
        let _ = stream.set_nodelay(true);
        connections.spawn(serve_connection(stream, slot, shared.clone()));
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// A slot for a new connection. At the cap, idle connections are asked to
/// close until one does; busy ones are left alone, so the new connection waits
/// (in the accept loop, new ones in the kernel's backlog) for a request to end.
/// `None` once the listener stops.
async fn take_slot(slots: &Arc<Semaphore>, shared: &Listener) -> Option<OwnedSemaphorePermit> {
    if let Ok(slot) = slots.clone().try_acquire_owned() {
        return Some(slot);
    }
    tracing::debug!("at the connection cap: closing idle connections to make room");
    loop {
        shared.make_room.notify_waiters();
        tokio::select! {
            slot = slots.clone().acquire_owned() => return slot.ok(),
            () = tokio::time::sleep(EVICTION_RETRY) => {}
            () = shared.stop.cancelled() => return None,
        }
    }
}

async fn serve_connection(stream: TcpStream, slot: OwnedSemaphorePermit, shared: Arc<Listener>) {
    let _slot = slot;
    let _open = OpenConnection::new(&shared.metrics.open);
    let activity = Arc::new(Activity::default());
    let service = TowerToHyperService::new(Tracked {
        inner: shared.app.clone(),
        activity: activity.clone(),
    });
    let connection = pin!(
        shared
            .builder
            .serve_connection(TokioIo::new(stream), service)
    );
    let ending = watch(connection, &activity, &shared).await;
    report(
        ending,
        activity.served.load(Ordering::Relaxed),
        &shared.metrics,
    );
}

/// How a connection ended.
enum Ending {
    /// It closed by itself, or hyper closed it (with the reason).
    Closed(Result<(), Box<dyn std::error::Error + Send + Sync>>),
    /// No request in flight for the header timeout.
    Idle,
    /// Idle while a new connection waited for a slot at the cap.
    MadeRoom,
    /// Idle, or left idle by a client that ignored GOAWAY, during shutdown.
    Drained,
}

async fn watch(
    mut connection: Pin<&mut HyperConnection<'_>>,
    activity: &Activity,
    shared: &Listener,
) -> Ending {
    let in_flight = activity.in_flight.subscribe();
    tokio::select! {
        result = connection.as_mut() => return Ending::Closed(result),
        () = idle_for(in_flight.clone(), shared.limits.header_timeout) => return Ending::Idle,
        () = asked_to_make_room(&shared.make_room, &in_flight) => return Ending::MadeRoom,
        () = shared.stop.cancelled() => {}
    }
    // HTTP/1: closes after the response in flight, at once when idle.
    // HTTP/2: GOAWAY, then the streams in flight finish.
    connection.as_mut().graceful_shutdown();
    tokio::select! {
        result = connection => Ending::Closed(result),
        () = idle_for(in_flight, DRAIN_LINGER) => Ending::Drained,
    }
}

/// Resolves once no request has been in flight for `quiet`.
async fn idle_for(mut in_flight: watch::Receiver<usize>, quiet: Duration) {
    loop {
        if in_flight.wait_for(|n| *n == 0).await.is_err() {
            return;
        }
        if tokio::time::timeout(quiet, in_flight.changed())
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Resolves when a new connection waits for a slot and this one is idle.
async fn asked_to_make_room(make_room: &Notify, in_flight: &watch::Receiver<usize>) {
    loop {
        make_room.notified().await;
        if *in_flight.borrow() == 0 {
            return;
        }
    }
}

fn report(ending: Ending, served: bool, metrics: &ConnectionMetrics) {
    let idle_closed = |reason| {
        metrics
            .idle_closed
            .get_or_create(&IdleCloseLabels { reason })
            .inc();
    };
    match ending {
        Ending::Closed(Ok(())) | Ending::Drained => {}
        // hyper's HTTP/1 header timeout also runs between two requests of a
        // keep-alive connection: after a request, it is an idle close.
        Ending::Closed(Err(error)) if served && is_timeout(&*error) => {
            idle_closed("idle_timeout");
        }
        Ending::Idle if served => idle_closed("idle_timeout"),
        Ending::MadeRoom => idle_closed("connection_cap"),
        Ending::Idle => {
            metrics
                .errors
                .get_or_create(&ConnectionErrorLabels {
                    reason: "header_timeout",
                })
                .inc();
            tracing::info!(
                reason = "header_timeout",
                "connection closed: no request within the header timeout"
            );
        }
        // Requests refused by hyper itself end here, before any handler: it
        // has already answered what deserved an answer (400, 431).
        Ending::Closed(Err(error)) => {
            let reason = classify(&*error);
            metrics
                .errors
                .get_or_create(&ConnectionErrorLabels { reason })
                .inc();
            if reason == "other" {
                tracing::debug!(%error, "connection closed with an error");
            } else {
                tracing::info!(reason, %error, "connection refused by the HTTP layer");
            }
        }
    }
}

fn is_timeout(error: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    error
        .downcast_ref::<hyper::Error>()
        .is_some_and(hyper::Error::is_timeout)
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

/// Requests in flight on one connection, and whether it has served any.
#[derive(Default)]
struct Activity {
    in_flight: watch::Sender<usize>,
    served: AtomicBool,
}

/// Counts a request in flight from its head until its response is ready.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(activity: Arc<Activity>) -> Self {
        activity.in_flight.send_modify(|n| *n += 1);
        activity.served.store(true, Ordering::Relaxed);
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.send_modify(|n| *n -= 1);
    }
}

/// Counts a connection in the open-connections gauge while it lives.
struct OpenConnection<'a>(&'a Gauge);

impl<'a> OpenConnection<'a> {
    fn new(gauge: &'a Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The app, with each request counted in its connection's [`Activity`].
#[derive(Clone)]
struct Tracked {
    inner: Router,
    activity: Arc<Activity>,
}

impl tower::Service<Request<hyper::body::Incoming>> for Tracked {
    type Response = Response;
    type Error = Infallible;
    type Future = TrackedFuture<<Router as tower::Service<Request<hyper::body::Incoming>>>::Future>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<hyper::body::Incoming>) -> Self::Future {
        TrackedFuture {
            _in_flight: InFlight::new(self.activity.clone()),
            inner: tower::Service::call(&mut self.inner, request),
        }
    }
}

/// The app's response future, holding its request's [`InFlight`] until the
/// response is ready (no allocation of its own).
struct TrackedFuture<F> {
    inner: F,
    _in_flight: InFlight,
}

impl<F: Future + Unpin> Future for TrackedFuture<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        Pin::new(&mut self.inner).poll(cx)
    }
}

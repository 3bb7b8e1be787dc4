//! The load generator: N keep-alive connections in a closed loop, or a fixed
//! rate (open model) whose latencies count from each request's scheduled send
//! time, so a stalled server cannot hide its queue (no coordinated omission).

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use flows_bridge::proto::{ExchangeRequest, flow_handler_client::FlowHandlerClient};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tonic::transport::{Channel, Endpoint};

use crate::payload::{self, BUDGET, Deliveries, Ids};

/// Where the load goes.
#[derive(Clone)]
pub enum Target {
    /// Signed deliveries over HTTP/1.1 keep-alive connections (a proxy).
    Http {
        addr: SocketAddr,
        deliveries: Arc<Deliveries>,
        /// The body that means "fallback" (flows-bridge's default).
        fallback: Bytes,
    },
    /// `FlowHandler/Exchange` over one HTTP/2 channel (the floor).
    Grpc {
        addr: SocketAddr,
        request: Arc<ExchangeRequest>,
        ids: Arc<Ids>,
    },
}

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// 200 with the handler's reply (gRPC OK for the floor).
    Reply,
    /// 200 with the fallback JSON.
    Fallback,
    /// Any other HTTP status.
    Status(u16),
    /// A gRPC status other than OK.
    Grpc(i32),
    /// A success status with a body that is not the handler's reply.
    Unexpected,
    /// The connection failed.
    Error,
}

impl Outcome {
    pub fn label(self) -> String {
        match self {
            Outcome::Reply => "reply".into(),
            Outcome::Fallback => "fallback".into(),
            Outcome::Status(code) => format!("http_{code}"),
            Outcome::Grpc(code) => format!("grpc_{code}"),
            Outcome::Unexpected => "unexpected_body".into(),
            Outcome::Error => "error".into(),
        }
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Percentiles {
        let us = |ns: u64| ns as f64 / 1000.0;
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            min: us(h.min()),
            max: us(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

/// What one load run measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoadResult {
    /// Requests started inside the measured window.
    pub measured: u64,
    /// Every request completed, warm-up included (for CPU per request).
    pub completed: u64,
    pub window_s: f64,
    pub rps: f64,
    pub latency_us: Percentiles,
    /// Open model: how late the generator sent each request (included in `latency_us`).
    pub send_lag_us: Option<Percentiles>,
    /// Outcomes in the measured window, by label.
    pub outcomes: BTreeMap<String, u64>,
    /// Open model: scheduled requests never sent (the run's time bound hit).
    pub dropped: u64,
}

impl LoadResult {
    pub fn count(&self, label: &str) -> u64 {
        self.outcomes.get(label).copied().unwrap_or(0)
    }
}

#[allow(clippy::unwrap_used)]
fn histogram() -> Histogram<u64> {
    // 1 ns .. 100 s, 3 significant digits: valid bounds, cannot fail.
    Histogram::new_with_bounds(1, 100_000_000_000, 3).unwrap()
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    let _ = h.record((d.as_nanos() as u64).max(1));
}

/// One connection (or, for gRPC, one in-flight slot on the shared channel).
enum Conn {
    Http {
        sender: SendRequest<Full<Bytes>>,
        deliveries: Arc<Deliveries>,
        fallback: Bytes,
    },
    Grpc {
        client: FlowHandlerClient<Channel>,
        request: Arc<ExchangeRequest>,
        ids: Arc<Ids>,
    },
}

impl Target {
    async fn connect(&self, n: usize) -> Result<Vec<Conn>, String> {
        match self {
            Target::Http {
                addr,
                deliveries,
                fallback,
            } => {
                let mut conns = Vec::with_capacity(n);
                for _ in 0..n {
                    let stream = tokio::net::TcpStream::connect(addr)
                        .await
                        .map_err(|e| format!("connect {addr}: {e}"))?;
                    let _ = stream.set_nodelay(true);
                    let (sender, connection) =
                        hyper::client::conn::http1::handshake(TokioIo::new(stream))
                            .await
                            .map_err(|e| format!("handshake {addr}: {e}"))?;
                    tokio::spawn(connection);
                    conns.push(Conn::Http {
                        sender,
                        deliveries: deliveries.clone(),
                        fallback: fallback.clone(),
                    });
                }
                Ok(conns)
            }
            Target::Grpc { addr, request, ids } => {
                let channel = Endpoint::from_shared(format!("http://{addr}"))
                    .map_err(|e| e.to_string())?
                    .tcp_nodelay(true)
                    .connect()
                    .await
                    .map_err(|e| format!("connect {addr}: {e}"))?;
                let client = FlowHandlerClient::new(channel);
                Ok((0..n)
                    .map(|_| Conn::Grpc {
                        client: client.clone(),
                        request: request.clone(),
                        ids: ids.clone(),
                    })
                    .collect())
            }
        }
    }
}

impl Conn {
    async fn call(&mut self) -> Outcome {
        match self {
            Conn::Http {
                sender,
                deliveries,
                fallback,
            } => {
                if sender.ready().await.is_err() {
                    return Outcome::Error;
                }
                let Ok(response) = sender.send_request(deliveries.next()).await else {
                    return Outcome::Error;
                };
                let status = response.status();
                // A gRPC error can come back inside an HTTP 200 (Envoy, trailers-only).
                let grpc_status = response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .unwrap_or(0);
                let Ok(body) = response.into_body().collect().await else {
                    return Outcome::Error;
                };
                let body = body.to_bytes();
                match status.as_u16() {
                    _ if grpc_status != 0 => Outcome::Grpc(grpc_status),
                    200 if body == *fallback => Outcome::Fallback,
                    200 if is_reply(&body) => Outcome::Reply,
                    200 => Outcome::Unexpected,
                    code => Outcome::Status(code),
                }
            }
            Conn::Grpc {
                client,
                request,
                ids,
            } => {
                let mut message = ExchangeRequest::clone(request);
                message.id = ids.next();
                message.timestamp = Some(std::time::SystemTime::now().into());
                let mut call = tonic::Request::new(message);
                call.set_timeout(BUDGET);
                match client.exchange(call).await {
                    Ok(reply) if reply.get_ref().screen.as_deref() == Some("PAYMENT") => {
                        Outcome::Reply
                    }
                    Ok(_) => Outcome::Unexpected,
                    Err(status) => Outcome::Grpc(status.code() as i32),
                }
            }
        }
    }
}

/// The handler's reply (`handler::reply`), as either proxy renders it.
fn is_reply(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|json| {
        json["screen"] == "PAYMENT" && json["data"]["amount_mxn"].as_f64() == Some(499.0)
    })
}

/// Per-task tallies, merged at the end.
struct Tally {
    latency: Histogram<u64>,
    lag: Histogram<u64>,
    outcomes: BTreeMap<Outcome, u64>,
    measured: u64,
    completed: u64,
    dropped: u64,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            latency: histogram(),
            lag: histogram(),
            outcomes: BTreeMap::new(),
            measured: 0,
            completed: 0,
            dropped: 0,
        }
    }

    fn merge(&mut self, other: Tally) {
        let _ = self.latency.add(&other.latency);
        let _ = self.lag.add(&other.lag);
        for (k, v) in other.outcomes {
            *self.outcomes.entry(k).or_default() += v;
        }
        self.measured += other.measured;
        self.completed += other.completed;
        self.dropped += other.dropped;
    }

    fn result(self, window: Duration, open: bool) -> LoadResult {
        LoadResult {
            measured: self.measured,
            completed: self.completed,
            window_s: window.as_secs_f64(),
            rps: self.measured as f64 / window.as_secs_f64(),
            latency_us: Percentiles::of(&self.latency),
            send_lag_us: open.then(|| Percentiles::of(&self.lag)),
            outcomes: self
                .outcomes
                .into_iter()
                .map(|(k, v)| (k.label(), v))
                .collect(),
            dropped: self.dropped,
        }
    }
}

/// Closed model: `connections` requests in flight, each sent as soon as the
/// previous one on its connection is answered, for `warmup + window`.
pub async fn closed(
    target: &Target,
    connections: usize,
    warmup: Duration,
    window: Duration,
) -> Result<LoadResult, String> {
    closed_limited(target, connections, warmup, window, None).await
}

/// [`closed`], stopping after `limit` requests in all if given.
pub async fn closed_limited(
    target: &Target,
    connections: usize,
    warmup: Duration,
    window: Duration,
    limit: Option<u64>,
) -> Result<LoadResult, String> {
    let conns = target.connect(connections).await?;
    let remaining = Arc::new(AtomicU64::new(limit.unwrap_or(u64::MAX)));
    let start = Instant::now();
    let record_from = start + warmup;
    let end = record_from + window;
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut conn| {
            let remaining = remaining.clone();
            tokio::spawn(async move {
                let mut tally = Tally::new();
                loop {
                    let sent = Instant::now();
                    if sent >= end
                        || remaining
                            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                                n.checked_sub(1)
                            })
                            .is_err()
                    {
                        break;
                    }
                    let outcome = conn.call().await;
                    let done = Instant::now();
                    tally.completed += 1;
                    if sent >= record_from {
                        tally.measured += 1;
                        record(&mut tally.latency, done - sent);
                        *tally.outcomes.entry(outcome).or_default() += 1;
                    }
                    if outcome == Outcome::Error {
                        // A broken connection: do not spin on it.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                tally
            })
        })
        .collect();
    let mut total = Tally::new();
    for task in tasks {
        if let Ok(tally) = task.await {
            total.merge(tally);
        }
    }
    Ok(total.result(window, false))
}

/// Open model: `rate` requests per second on a schedule, spread over
/// `connections` keep-alive connections. A dedicated thread keeps the schedule
/// (tokio's timer has millisecond granularity); each latency counts from the
/// scheduled time, the generator's own lateness included and reported.
pub async fn open(
    target: &Target,
    rate: f64,
    connections: usize,
    warmup: Duration,
    window: Duration,
) -> Result<LoadResult, String> {
    let conns = target.connect(connections).await?;
    let (tx, rx) = async_channel::unbounded::<Instant>();
    let start = Instant::now() + Duration::from_millis(20);
    let record_from = start + warmup;
    let end = record_from + window;
    // Requests still queued this long after the schedule ends are dropped.
    let hard_end = end + Duration::from_secs(2);
    let total = ((warmup + window).as_secs_f64() * rate) as u64;
    let pacer = std::thread::spawn(move || {
        for i in 0..total {
            let at = start + Duration::from_secs_f64(i as f64 / rate);
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
            if tx.send_blocking(at).is_err() {
                break;
            }
        }
    });
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut conn| {
            let rx = rx.clone();
            tokio::spawn(async move {
                let mut tally = Tally::new();
                while let Ok(at) = rx.recv().await {
                    let sent = Instant::now();
                    if sent >= hard_end {
                        tally.dropped += 1;
                        continue;
                    }
                    let outcome = conn.call().await;
                    let done = Instant::now();
                    tally.completed += 1;
                    if at >= record_from {
                        tally.measured += 1;
                        record(&mut tally.latency, done - at);
                        record(&mut tally.lag, sent - at);
                        *tally.outcomes.entry(outcome).or_default() += 1;
                    }
                }
                tally
            })
        })
        .collect();
    drop(rx);
    let mut sum = Tally::new();
    for task in tasks {
        if let Ok(tally) = task.await {
            sum.merge(tally);
        }
    }
    let _ = tokio::task::spawn_blocking(move || pacer.join()).await;
    Ok(sum.result(window, true))
}

/// The floor's target: the handler, called directly.
pub fn grpc(addr: SocketAddr) -> Result<Target, String> {
    Ok(Target::Grpc {
        addr,
        request: Arc::new(payload::exchange_request()?),
        ids: Arc::new(Ids::new()),
    })
}

/// A proxy's target.
pub fn http(addr: SocketAddr, body: payload::Body, fallback: Bytes) -> Result<Target, String> {
    Ok(Target::Http {
        addr,
        deliveries: Arc::new(Deliveries::new(body, &addr.to_string())?),
        fallback,
    })
}

//! A real tonic FlowHandler whose behaviour the test switches at run time, on
//! a real socket whose server it can kill (every connection dropped, port
//! closed), restart on the same port, or replace with a black hole.
//!
//! The server is tonic's generated `FlowHandlerServer` plus `grpc.health.v1`,
//! served by hyper's HTTP/2 connection builder in an accept loop this file
//! owns: that is what `tonic::transport::Server` does, minus its
//! `grpc-timeout` layer, so a handler that never answers really never answers
//! (the stream stays open, PINGs are answered, nothing is closed) until the
//! bridge gives up on it.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use flows_bridge::{
    proto::{
        ExchangeRequest, ExchangeResponse,
        flow_handler_server::{FlowHandler, FlowHandlerServer},
    },
    quote, reply, upstream,
};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use prost_types::value::Kind;
use tokio::{net::TcpListener, task::JoinHandle};
use tonic::{Code, Request, Response, Status};

/// What the handler does with each call, switched at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The quote flow's answer, at once.
    Healthy,
    /// `percent` of the calls (every call whose number modulo 100 is below it)
    /// sleep `ms` before answering; the others answer at once.
    Slow { percent: u64, ms: u64 },
    /// Each call answers the next status of [`ERROR_CODES`].
    Errors,
    /// Each call answers an invalid reply of [`INVALID_KINDS`].
    Invalid,
    /// No call is ever answered: the future never completes.
    Hang,
    /// Every call takes `ms`, then answers (a fixed service time).
    Service { ms: u64 },
}

/// The statuses `Errors` cycles through, with the fallback reason the README
/// gives for each.
pub const ERROR_CODES: [(Code, &str); 7] = [
    (Code::Internal, "upstream_error"),
    (Code::InvalidArgument, "upstream_error"),
    (Code::Unavailable, "upstream_unavailable"),
    (Code::PermissionDenied, "upstream_error"),
    (Code::ResourceExhausted, "upstream_error"),
    (Code::Unknown, "upstream_error"),
    (Code::DeadlineExceeded, "deadline"),
];

/// The replies `Invalid` gives, with their fallback reason (the last one for
/// one call in 20).
pub const INVALID_KINDS: [(&str, &str); 5] = [
    ("empty", "invalid_reply"),
    ("empty_screen", "invalid_reply"),
    ("nan", "invalid_reply"),
    ("infinity", "invalid_reply"),
    // Past the bridge's 1 MiB cap: refused by its gRPC client.
    ("oversized", "upstream_error"),
];

/// What the handler did for one delivery id.
#[derive(Debug, Clone, PartialEq)]
pub enum Did {
    /// Answered this (rendered as the bridge would render it).
    Replied(Bytes),
    /// Slept `ms`, then answered this (if the bridge was still waiting).
    SleptThenReplied(u64, Bytes),
    Error(Code),
    Invalid(&'static str),
    /// Took the call and never answered.
    Hung,
}

impl Did {
    /// The reply the bridge may forward, if any.
    pub fn reply(&self) -> Option<&Bytes> {
        match self {
            Did::Replied(body) | Did::SleptThenReplied(_, body) => Some(body),
            _ => None,
        }
    }

    /// The fallback reason this must give, when it is certain.
    pub fn expected_reason(&self) -> Option<&'static str> {
        match self {
            Did::Error(code) => ERROR_CODES
                .iter()
                .find(|(c, _)| c == code)
                .map(|(_, reason)| *reason),
            Did::Invalid(kind) => INVALID_KINDS
                .iter()
                .find(|(k, _)| k == kind)
                .map(|(_, reason)| *reason),
            Did::Hung => Some("deadline"),
            Did::SleptThenReplied(ms, _) if Duration::from_millis(*ms) > crate::support::BUDGET => {
                Some("deadline")
            }
            _ => None,
        }
    }
}

/// The handler's switchable behaviour and its record of every call.
#[derive(Debug)]
pub struct State {
    mode: Mutex<Mode>,
    calls: AtomicU64,
    active: AtomicUsize,
    max_active: AtomicUsize,
    did: Mutex<HashMap<String, Did>>,
}

impl State {
    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub fn did(&self, id: &str) -> Option<Did> {
        self.did.lock().unwrap().get(id).cloned()
    }

    /// Calls in progress at once, at most, since the last reset.
    pub fn max_active(&self) -> usize {
        self.max_active.load(Ordering::Relaxed)
    }

    pub fn reset_max_active(&self) {
        self.max_active
            .store(self.active.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    fn record(&self, id: &str, did: Did) {
        self.did.lock().unwrap().insert(id.to_owned(), did);
    }
}

/// Counts a call as active for as long as its future lives (the bridge may
/// cancel it midway).
struct Active<'a>(&'a State);

impl<'a> Active<'a> {
    fn enter(state: &'a State) -> Active<'a> {
        let now = state.active.fetch_add(1, Ordering::Relaxed) + 1;
        state.max_active.fetch_max(now, Ordering::Relaxed);
        Active(state)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Clone)]
struct Script(Arc<State>);

#[tonic::async_trait]
impl FlowHandler for Script {
    async fn exchange(
        &self,
        request: Request<ExchangeRequest>,
    ) -> Result<Response<ExchangeResponse>, Status> {
        let state = &*self.0;
        let _active = Active::enter(state);
        let n = state.calls.fetch_add(1, Ordering::Relaxed);
        let request = request.into_inner();
        let id = request.id.as_str();
        let mode = *state.mode.lock().unwrap();
        let answer = |request: &ExchangeRequest| {
            let response = quote::answer(request).expect("the quote flow answers every seed");
            let body = reply::render(&response).expect("the quote flow's replies are valid");
            (response, body)
        };
        match mode {
            Mode::Healthy => {
                let (response, body) = answer(&request);
                state.record(id, Did::Replied(body));
                Ok(Response::new(response))
            }
            Mode::Slow { percent, ms } if n % 100 < percent => {
                let (response, body) = answer(&request);
                state.record(id, Did::SleptThenReplied(ms, body));
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(Response::new(response))
            }
            Mode::Slow { .. } => {
                let (response, body) = answer(&request);
                state.record(id, Did::Replied(body));
                Ok(Response::new(response))
            }
            Mode::Service { ms } => {
                let (response, body) = answer(&request);
                state.record(id, Did::SleptThenReplied(ms, body));
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(Response::new(response))
            }
            Mode::Errors => {
                let (code, _) = ERROR_CODES[(n % ERROR_CODES.len() as u64) as usize];
                state.record(id, Did::Error(code));
                Err(Status::new(code, "chaos: scripted error"))
            }
            Mode::Invalid => {
                // One call in 20 gets the oversized reply (1 MiB each: more
                // would measure this debug-build handler's copying, not the
                // bridge); the others cycle through the rest.
                let kind = if n % 20 == 19 {
                    "oversized"
                } else {
                    INVALID_KINDS[(n % 4) as usize].0
                };
                state.record(id, Did::Invalid(kind));
                Ok(Response::new(invalid_reply(kind)))
            }
            Mode::Hang => {
                state.record(id, Did::Hung);
                std::future::pending::<()>().await;
                unreachable!("a pending future never completes")
            }
        }
    }
}

fn invalid_reply(kind: &str) -> ExchangeResponse {
    let number = |n: f64| {
        let mut data = prost_types::Struct::default();
        data.fields.insert(
            "n".into(),
            prost_types::Value {
                kind: Some(Kind::NumberValue(n)),
            },
        );
        ExchangeResponse {
            screen: Some("X".into()),
            data: Some(data),
        }
    };
    match kind {
        "empty" => ExchangeResponse::default(),
        "empty_screen" => ExchangeResponse {
            screen: Some(String::new()),
            data: None,
        },
        "nan" => number(f64::NAN),
        "infinity" => number(f64::INFINITY),
        "oversized" => ExchangeResponse {
            screen: Some("X".repeat(upstream::MAX_REPLY_BYTES + 1024)),
            data: None,
        },
        other => panic!("unknown invalid reply {other}"),
    }
}

/// Most connections one server accepts (a bound on its accept loop).
const MAX_ACCEPTS: usize = 100_000;

enum Serving {
    Grpc {
        accept: JoinHandle<()>,
        connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    },
    BlackHole(JoinHandle<()>),
}

/// The handler's server on a fixed loopback port.
pub struct ChaosHandler {
    pub addr: SocketAddr,
    pub state: Arc<State>,
    serving: Option<Serving>,
}

impl ChaosHandler {
    /// Serves the handler (healthy) on a free port.
    pub async fn start() -> ChaosHandler {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            mode: Mutex::new(Mode::Healthy),
            calls: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            max_active: AtomicUsize::new(0),
            did: Mutex::new(HashMap::new()),
        });
        let serving = serve_grpc(listener, state.clone()).await;
        ChaosHandler {
            addr,
            state,
            serving: Some(serving),
        }
    }

    pub fn upstream(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn is_serving_grpc(&self) -> bool {
        matches!(self.serving, Some(Serving::Grpc { .. }))
    }

    /// Kills the server as a crash would: the listener and every connection
    /// are dropped at once (the port refuses; open calls see their
    /// connection close), nothing graceful.
    pub async fn kill(&mut self) {
        match self.serving.take() {
            None => {}
            Some(Serving::Grpc {
                accept,
                connections,
            }) => {
                accept.abort();
                let _ = accept.await;
                let connections: Vec<_> = connections.lock().unwrap().drain(..).collect();
                for connection in connections {
                    connection.abort();
                    let _ = connection.await;
                }
            }
            Some(Serving::BlackHole(task)) => {
                task.abort();
                let _ = task.await;
            }
        }
    }

    /// Kills whatever serves the port, and serves the handler on it again.
    pub async fn restart(&mut self) {
        self.kill().await;
        let listener = bind_again(self.addr).await;
        self.serving = Some(serve_grpc(listener, self.state.clone()).await);
    }

    /// Kills the server and puts a black hole on its port: connections are
    /// accepted and held open, and not a byte is read or written.
    pub async fn black_hole(&mut self) {
        self.kill().await;
        let listener = bind_again(self.addr).await;
        self.serving = Some(Serving::BlackHole(tokio::spawn(async move {
            let mut held = Vec::new();
            for _ in 0..MAX_ACCEPTS {
                match listener.accept().await {
                    Ok((stream, _)) => held.push(stream),
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
            std::future::pending::<()>().await;
        })));
    }
}

impl Drop for ChaosHandler {
    fn drop(&mut self) {
        match self.serving.take() {
            Some(Serving::Grpc {
                accept,
                connections,
            }) => {
                accept.abort();
                for connection in connections.lock().unwrap().drain(..) {
                    connection.abort();
                }
            }
            Some(Serving::BlackHole(task)) => task.abort(),
            None => {}
        }
    }
}

/// Binds the port a killed server used (the kernel may take a moment to
/// release it; bounded to 5 s).
async fn bind_again(addr: SocketAddr) -> TcpListener {
    for _ in 0..500 {
        if let Ok(listener) = TcpListener::bind(addr).await {
            return listener;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("could not bind {addr} again");
}

async fn serve_grpc(listener: TcpListener, state: Arc<State>) -> Serving {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<FlowHandlerServer<Script>>().await;
    let routes =
        tonic::service::Routes::new(FlowHandlerServer::new(Script(state))).add_service(health);
    let connections = Arc::new(Mutex::new(Vec::new()));
    let accept = tokio::spawn({
        let connections = connections.clone();
        async move {
            for _ in 0..MAX_ACCEPTS {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let service = TowerToHyperService::new(routes.clone());
                let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .serve_connection(TokioIo::new(stream), service);
                let task = tokio::spawn(async move {
                    let _ = connection.await;
                });
                let mut connections = connections.lock().unwrap();
                connections.retain(|c: &JoinHandle<()>| !c.is_finished());
                connections.push(task);
            }
        }
    });
    Serving::Grpc {
        accept,
        connections,
    }
}

//! Shared test fixtures: the real `flows-bridge` binary as a child process, a
//! scripted FlowHandler on a real socket, and signed deliveries.

use std::{
    collections::HashMap,
    net::SocketAddr,
    process::{Command, ExitStatus},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use flows_bridge::{
    proto::{
        ExchangeRequest, ExchangeResponse,
        flow_handler_server::{FlowHandler, FlowHandlerServer},
    },
    quote,
    sender::{self, HttpClient, Sent},
};
use prost_types::value::Kind;
use serde_json::{Value as Json, json};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::{Request, Response, Status};

// Shared with the chaos suite; each uses its own part of it.
#[allow(dead_code)]
#[path = "../common/process.rs"]
mod process;

pub use process::BIN;
use process::BridgeProcess;

pub const SECRET: &str = "integration-test-secret";

pub const INIT: &str = include_str!("../vectors/deliveries/init.json");
pub const ADVANCE_FULL: &str = include_str!("../vectors/deliveries/screen_advance_full.json");
pub const ADVANCE: &str = include_str!("../vectors/deliveries/screen_advance.json");
pub const BACK: &str = include_str!("../vectors/deliveries/back.json");

/// A seed delivery with a fresh id and timestamp.
pub fn delivery(seed: &str) -> Json {
    sender::refresh(serde_json::from_str(seed).unwrap())
}

/// A fresh delivery whose payload tells the scripted handler what to do.
pub fn scripted(behaviour: &str) -> Json {
    let mut d = delivery(INIT);
    d["data"]["flowExchange"]["payload"] = json!({ "behaviour": behaviour });
    d
}

/// What one handler call saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub request: ExchangeRequest,
    pub metadata: HashMap<String, String>,
}

/// A FlowHandler that answers as the quote flow does, unless the payload's
/// `behaviour` says otherwise: `sleep:MS`, `error:CODE`, `empty`, `nan`, `huge`.
#[derive(Clone, Default)]
pub struct Scripted {
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

#[tonic::async_trait]
impl FlowHandler for Scripted {
    async fn exchange(
        &self,
        request: Request<ExchangeRequest>,
    ) -> Result<Response<ExchangeResponse>, Status> {
        let metadata = request
            .metadata()
            .clone()
            .into_headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let request = request.into_inner();
        self.seen.lock().unwrap().push(Seen {
            request: request.clone(),
            metadata,
        });
        let behaviour = request
            .flow_exchange
            .as_ref()
            .and_then(|x| x.payload.as_ref())
            .and_then(|p| p.fields.get("behaviour"))
            .and_then(|v| match &v.kind {
                Some(Kind::StringValue(s)) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default();
        let (verb, arg) = behaviour.split_once(':').unwrap_or((&behaviour, ""));
        match verb {
            "sleep" => {
                tokio::time::sleep(Duration::from_millis(arg.parse().unwrap())).await;
                Ok(Response::new(ExchangeResponse {
                    screen: Some("SLEPT".into()),
                    data: None,
                }))
            }
            "error" => Err(Status::new(
                tonic::Code::from_i32(arg.parse().unwrap()),
                "scripted error",
            )),
            "empty" => Ok(Response::new(ExchangeResponse::default())),
            "bytes" => Ok(Response::new(ExchangeResponse {
                screen: Some("X".repeat(arg.parse().unwrap())),
                data: None,
            })),
            "huge" => Ok(Response::new(ExchangeResponse {
                screen: Some("X".repeat(2 * 1024 * 1024)),
                data: None,
            })),
            "nan" => {
                let mut data = prost_types::Struct::default();
                data.fields.insert(
                    "n".into(),
                    prost_types::Value {
                        kind: Some(Kind::NumberValue(f64::NAN)),
                    },
                );
                Ok(Response::new(ExchangeResponse {
                    screen: Some("X".into()),
                    data: Some(data),
                }))
            }
            _ => quote::answer(&request).map(Response::new),
        }
    }
}

impl Scripted {
    pub fn calls(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn calls_for(&self, id: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.request.id == id)
            .count()
    }
}

/// A FlowHandler server on 127.0.0.1, stopped when dropped.
pub struct Handler {
    pub addr: SocketAddr,
    pub script: Scripted,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Handler {
    pub async fn start() -> Handler {
        Handler::start_on("127.0.0.1:0".parse().unwrap(), true).await
    }

    /// `with_health: false` serves only FlowHandler (no grpc.health.v1).
    pub async fn start_on(addr: SocketAddr, with_health: bool) -> Handler {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let script = Scripted::default();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async {
            let _ = stopped.await;
        };
        let task = if with_health {
            let script = script.clone();
            tokio::spawn(async move {
                quote::serve(listener, script, shutdown).await.unwrap();
            })
        } else {
            let script = script.clone();
            tokio::spawn(async move {
                tonic::transport::Server::builder()
                    .add_service(FlowHandlerServer::new(script))
                    .serve_with_incoming_shutdown(
                        tokio_stream::wrappers::TcpListenerStream::new(listener),
                        shutdown,
                    )
                    .await
                    .unwrap();
            })
        };
        Handler {
            addr,
            script,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn upstream(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving and waits until the port is closed.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

impl Drop for Handler {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A port nothing listens on (bound, then released).
pub fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// The real binary, started with JSON logs on loopback; killed when dropped.
pub struct Bridge {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    process: BridgeProcess,
    client: HttpClient,
}

impl Bridge {
    /// Starts `flows-bridge serve` with `upstream`, the test secret, and `env`
    /// overrides (which may unset the secret by giving it an empty value).
    pub fn start(upstream: &str, env: &[(&str, &str)]) -> Bridge {
        let process = BridgeProcess::spawn(Bridge::command(upstream, env));
        Bridge {
            addr: process.addr,
            admin: process.admin,
            process,
            client: sender::http_client(),
        }
    }

    /// The command with a clean environment: only what the test sets.
    pub fn command(upstream: &str, env: &[(&str, &str)]) -> Command {
        let mut command = process::serve_command(
            upstream,
            SECRET,
            &[("FLOWS_BRIDGE_READY_INTERVAL", "100ms")],
        );
        command.envs(env.iter().copied());
        command
    }

    /// Posts `delivery` signed with the test secret, as Platica would.
    pub async fn send(&self, delivery: &Json) -> Sent {
        self.send_signed(delivery, Some(SECRET.as_bytes())).await
    }

    pub async fn send_signed(&self, delivery: &Json, secret: Option<&[u8]>) -> Sent {
        self.send_request(sender::request(self.addr, "/", delivery, secret))
            .await
    }

    pub async fn send_request(&self, request: http::Request<http_body_util::Full<Bytes>>) -> Sent {
        sender::send(&self.client, request).await.unwrap()
    }

    /// GET on the admin port: (status, body).
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        let request = http::Request::get(format!("http://{}{path}", self.admin))
            .body(http_body_util::Full::new(Bytes::new()))
            .unwrap();
        let sent = sender::send(&self.client, request).await.unwrap();
        (
            sent.status.as_u16(),
            String::from_utf8(sent.body.to_vec()).unwrap(),
        )
    }

    /// The value of one metric series, e.g. `flows_bridge_fallbacks_total{reason="shed"}`.
    pub async fn metric(&self, series: &str) -> f64 {
        let (_, text) = self.admin_get("/metrics").await;
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// Waits until `/readyz` answers `status` (polls every 50 ms, up to 10 s).
    pub async fn wait_ready(&self, status: u16) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (got, body) = self.admin_get("/readyz").await;
            if got == status {
                return;
            }
            assert!(Instant::now() < deadline, "/readyz stayed {got}: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn logs(&self) -> Vec<String> {
        self.process.logs()
    }

    /// Log lines (parsed) whose `message` is `message`.
    pub fn log_events(&self, message: &str) -> Vec<Json> {
        self.process
            .log_json()
            .into_iter()
            .filter(|j| j["message"] == message)
            .collect()
    }

    /// Waits (up to 5 s) for a log line matching `matches`: stderr is read on
    /// another thread, so a line may land just after the response does.
    pub async fn wait_for_log(&self, what: &str, matches: impl Fn(&Json) -> bool) -> Json {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let found = self
                .logs()
                .iter()
                .filter_map(|l| serde_json::from_str::<Json>(l).ok())
                .find(|j| matches(j));
            if let Some(line) = found {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no log line for {what}: {:?}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.process.terminate();
    }

    /// Waits for the process to exit (up to `timeout`).
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        self.process
            .wait_exit(timeout)
            .unwrap_or_else(|| panic!("bridge did not exit in {timeout:?}"))
    }
}

/// The JSON body of a response.
pub fn body_json(sent: &Sent) -> Json {
    serde_json::from_slice(&sent.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&sent.body)))
}

pub const FALLBACK: &str = r#"{"data":{"acknowledged":true}}"#;

pub fn assert_fallback(sent: &Sent) {
    assert_eq!(sent.status, 200, "{:?}", sent.body);
    assert_eq!(&sent.body[..], FALLBACK.as_bytes());
}

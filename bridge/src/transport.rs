//! The connection to the FlowHandler: HTTP/2 on the `h2` crate, under tonic's
//! generated clients and codec.
//!
//! tonic's `Channel` sends a call through tower's buffer task, hyper's dispatch
//! task, a response task and a body task. hyper also waits for a new stream's
//! send capacity before it sends the body, and h2 only gives that capacity from
//! its connection task, so HEADERS and DATA leave in two writes. A unary call's
//! body is whole before the call starts: here it is queued right behind its
//! HEADERS, both leave in one write, and the reply wakes the caller itself
//! (benches/README.md has the figures).
//!
//! One connection is shared by every call. It is opened on first use, opened
//! again when it dies (a failed call that never reached the handler is tried
//! once on the new connection), and closed when a keepalive PING goes
//! unanswered.

use std::{
    error::Error as StdError,
    fmt,
    future::Future,
    io,
    path::PathBuf,
    pin::Pin,
    sync::{Arc, Mutex, Weak},
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::Bytes;
use h2::{RecvStream, client::SendRequest};
use http::{HeaderValue, Uri, uri::PathAndQuery};
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::{Status, body::Body};
use tower::Service;

use crate::config::UpstreamAddr;

/// Bounds connection setup; a refused connection fails at once anyway.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Detects a dead connection (peer gone without a FIN) between deliveries.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Receive windows large enough that no reply the bridge accepts waits for a
/// WINDOW_UPDATE round trip. They are credit, not buffers.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 8 * 1024 * 1024;
/// Tells the handler's logs who is calling.
const USER_AGENT: &str = concat!("flows-bridge/", env!("CARGO_PKG_VERSION"));
/// Largest header block accepted from the handler (hyper's default).
const MAX_HEADER_LIST: u32 = 16 * 1024;

/// A tonic transport to one FlowHandler address. Clones share the connection.
#[derive(Clone)]
pub struct Transport {
    shared: Arc<Shared>,
}

struct Shared {
    target: Target,
    /// `http://authority`, the origin every request's path is put under.
    origin: Uri,
    /// The open connection, and its number to tell it from a newer one.
    current: Mutex<Option<(SendRequest<Bytes>, u64)>>,
    /// Held while connecting, so that concurrent calls wait for one attempt.
    connecting: tokio::sync::Mutex<u64>,
}

enum Target {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
    Connector(Connector),
}

/// Opens a byte stream to a handler; tests use in-memory pipes.
pub type Connector =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = io::Result<Io>> + Send>> + Send + Sync>;

/// A connection's byte stream.
pub type Io = Box<dyn ReadWrite + Send + Unpin>;

pub trait ReadWrite: AsyncRead + AsyncWrite {}

impl<T: AsyncRead + AsyncWrite> ReadWrite for T {}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("origin", &self.shared.origin)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// Does not connect: the bridge starts, and answers with the fallback,
    /// whether or not the handler is up yet.
    pub fn new(addr: &UpstreamAddr) -> Transport {
        let (target, origin) = match addr {
            UpstreamAddr::Tcp(uri) => {
                let host = uri.host().unwrap_or("localhost");
                let port = uri.port_u16().unwrap_or(80);
                let origin = format!("http://{host}:{port}/")
                    .parse()
                    .unwrap_or_else(|_| Uri::from_static("http://localhost/"));
                // `[::1]` in a URI is `::1` to a resolver.
                let host = host.trim_start_matches('[').trim_end_matches(']');
                (
                    Target::Tcp {
                        host: host.to_owned(),
                        port,
                    },
                    origin,
                )
            }
            UpstreamAddr::Unix(path) => (
                Target::Unix(path.clone()),
                Uri::from_static("http://localhost/"),
            ),
        };
        Transport::to(target, origin)
    }

    /// A transport whose connections come from `connector`.
    pub fn with_connector(connector: Connector) -> Transport {
        Transport::to(
            Target::Connector(connector),
            Uri::from_static("http://localhost/"),
        )
    }

    fn to(target: Target, origin: Uri) -> Transport {
        Transport {
            shared: Arc::new(Shared {
                target,
                origin,
                current: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(0),
            }),
        }
    }
}

impl Service<http::Request<Body>> for Transport {
    type Response = http::Response<Body>;
    type Error = Status;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Status>> + Send>>;

    /// Always ready: a call waits for the connection inside `call`, where the
    /// caller's deadline bounds it.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let shared = self.shared.clone();
        Box::pin(async move { shared.call(request).await })
    }
}

impl Shared {
    async fn call(
        self: Arc<Self>,
        request: http::Request<Body>,
    ) -> Result<http::Response<Body>, Status> {
        let (mut parts, body) = request.into_parts();
        // A unary call's body is one encoded message, ready at once.
        let body = body.collect().await?.to_bytes();
        parts.uri = self.uri_for(&parts.uri)?;
        parts.headers.insert(
            http::header::USER_AGENT,
            HeaderValue::from_static(USER_AGENT),
        );
        let mut send = self.ready_sender().await?;
        let (response, mut stream) = send
            .send_request(http::Request::from_parts(parts, ()), false)
            .map_err(|e| Status::unavailable(format!("FlowHandler connection: {e}")))?;
        // Queued behind the HEADERS: the connection task writes both at once.
        stream.send_data(body, true).map_err(h2_status)?;
        let response = response.await.map_err(h2_status)?;
        Ok(response.map(|recv| {
            Body::new(Incoming {
                recv,
                data_done: false,
            })
        }))
    }

    /// A sender ready for a new stream, on the current connection or a new one.
    /// A connection that turns out dead is replaced once.
    async fn ready_sender(self: &Arc<Self>) -> Result<SendRequest<Bytes>, Status> {
        let mut replaced = false;
        loop {
            let (send, number) = match self.current() {
                Some(current) => current,
                None => self.connect().await?,
            };
            match send.ready().await {
                Ok(send) => return Ok(send),
                Err(e) if replaced => {
                    return Err(Status::unavailable(format!("FlowHandler connection: {e}")));
                }
                Err(_) => {
                    self.forget(number);
                    replaced = true;
                }
            }
        }
    }

    fn current(&self) -> Option<(SendRequest<Bytes>, u64)> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Drops connection `number` if it is still the current one.
    fn forget(&self, number: u64) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.as_ref().is_some_and(|(_, n)| *n == number) {
            *current = None;
        }
    }

    /// Opens a connection, unless another call did while this one waited.
    async fn connect(self: &Arc<Self>) -> Result<(SendRequest<Bytes>, u64), Status> {
        let mut opened = self.connecting.lock().await;
        if let Some(current) = self.current() {
            return Ok(current);
        }
        let number = *opened + 1;
        let send = tokio::time::timeout(CONNECT_TIMEOUT, self.open(number))
            .await
            .unwrap_or_else(|elapsed| Err(io::Error::new(io::ErrorKind::TimedOut, elapsed)))
            .map_err(|e| Status::unavailable(format!("FlowHandler connection: {e}")))?;
        *opened += 1;
        let current = (send, *opened);
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(current.clone());
        Ok(current)
    }

    /// Connects, starts HTTP/2 and spawns the task that drives the connection.
    async fn open(self: &Arc<Self>, number: u64) -> io::Result<SendRequest<Bytes>> {
        let io: Io = match &self.target {
            Target::Tcp { host, port } => {
                let tcp = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                tcp.set_nodelay(true)?;
                Box::new(tcp)
            }
            Target::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
            Target::Connector(connect) => connect().await?,
        };
        let (send, connection) = h2::client::Builder::new()
            .enable_push(false)
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_header_list_size(MAX_HEADER_LIST)
            .handshake(io)
            .await
            .map_err(io::Error::other)?;
        tokio::spawn(drive(connection, Arc::downgrade(self), number));
        Ok(send)
    }

    /// The request's path under the handler's origin.
    fn uri_for(&self, uri: &Uri) -> Result<Uri, Status> {
        let mut parts = self.origin.clone().into_parts();
        parts.path_and_query = uri
            .path_and_query()
            .cloned()
            .or(Some(PathAndQuery::from_static("/")));
        Uri::from_parts(parts).map_err(|e| Status::internal(format!("request URI: {e}")))
    }
}

/// Runs a connection until it ends or stops answering PINGs, then makes sure
/// the next call opens a new one.
async fn drive(
    mut connection: h2::client::Connection<Io, Bytes>,
    shared: Weak<Shared>,
    number: u64,
) {
    // Taken once, here: only a second call gets `None`.
    let ping_pong = connection.ping_pong();
    let keepalive = async move {
        let Some(mut ping_pong) = ping_pong else {
            return std::future::pending().await;
        };
        loop {
            tokio::time::sleep(KEEPALIVE_INTERVAL).await;
            let pong = tokio::time::timeout(KEEPALIVE_TIMEOUT, ping_pong.ping(h2::Ping::opaque()));
            match pong.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return format!("keepalive PING failed: {e}"),
                Err(_) => return "keepalive PING unanswered".to_owned(),
            }
        }
    };
    let ended = tokio::select! {
        result = &mut connection => match result {
            Ok(()) => "closed".to_owned(),
            Err(e) => e.to_string(),
        },
        reason = keepalive => reason,
    };
    tracing::debug!(reason = %ended, "FlowHandler connection ended");
    if let Some(shared) = shared.upgrade() {
        shared.forget(number);
    }
}

/// What tonic makes of an h2 error: REFUSED_STREAM is UNAVAILABLE (the handler
/// never saw the call), CANCEL is CANCELLED, a lost connection is UNKNOWN.
fn h2_status(error: h2::Error) -> Status {
    Status::from_error(Box::new(error))
}

/// A reply's body: DATA frames, then trailers. Received data is released
/// back to the flow-control window as it is read.
struct Incoming {
    recv: RecvStream,
    data_done: bool,
}

impl http_body::Body for Incoming {
    type Data = Bytes;
    type Error = Box<dyn StdError + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if !self.data_done {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                None => self.data_done = true,
            }
        }
        match ready!(self.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e.into()))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }
}

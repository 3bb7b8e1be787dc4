//! The tonic server: `FlowHandler`, `grpc.health.v1.Health` and server
//! reflection (`grpc.reflection.v1` and `v1alpha`, so old and new grpcurl
//! both work), started in the background and stopped gracefully.

use std::{io, net::SocketAddr, time::Duration};

use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::server::NamedService;
use tonic_health::{
    ServingStatus,
    server::{HealthReporter, HealthService},
};

use crate::proto::flow_handler_server::{FlowHandler, FlowHandlerServer};

/// The gRPC service name health is reported under: `platica.flows.v1.FlowHandler`.
pub const SERVICE_NAME: &str = <FlowHandlerServer<crate::handler::QuoteFlow> as NamedService>::NAME;

/// Why the server could not start or stop.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: io::Error },
    #[error("cannot read the listening address: {0}")]
    LocalAddr(io::Error),
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("the server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error("the server task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// How a graceful stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every call in flight finished.
    Drained,
    /// The grace period ran out with calls in flight. The server stopped
    /// waiting for them; their connections end with the runtime (the binary
    /// exits right after).
    GraceExpired,
}

/// A server that is accepting connections.
#[derive(Debug)]
pub struct Running {
    local_addr: SocketAddr,
    health: HealthReporter,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

/// Binds `host:port` (port 0 picks a free one) and serves `handler` on it.
pub async fn start<H: FlowHandler>(host: &str, port: u16, handler: H) -> Result<Running, Error> {
    let listener = TcpListener::bind((host, port))
        .await
        .map_err(|source| Error::Bind {
            addr: format!("{host}:{port}"),
            source,
        })?;
    serve(listener, handler).await
}

/// Serves `handler`, health and reflection on `listener`, in the background.
pub async fn serve<H: FlowHandler>(listener: TcpListener, handler: H) -> Result<Running, Error> {
    let local_addr = listener.local_addr().map_err(Error::LocalAddr)?;
    // The reporter starts with "" (the whole server) SERVING.
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<FlowHandlerServer<H>>().await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let router = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(FlowHandlerServer::new(handler))
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?);
    let (shutdown, stop) = oneshot::channel::<()>();
    let task = tokio::spawn(router.serve_with_incoming_shutdown(
        TcpListenerStream::new(listener),
        async {
            // Sent by `stop`, or the `Running` was dropped: stop either way.
            let _ = stop.await;
        },
    ));
    Ok(Running {
        local_addr,
        health,
        shutdown,
        task,
    })
}

impl Running {
    /// The address the server listens on (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Sets the health statuses; a service would report NOT_SERVING here while
    /// a dependency it cannot work without is down.
    pub fn health_reporter(&self) -> &HealthReporter {
        &self.health
    }

    /// The health service itself, to ask it in process (it outlives `stop`).
    pub fn health(&self) -> HealthService {
        HealthService::from_health_reporter(self.health.clone())
    }

    /// Graceful stop: health turns NOT_SERVING, the server stops accepting
    /// connections and calls, and the calls in flight get `grace` to finish.
    pub async fn stop(self, grace: Duration) -> Result<Stopped, Error> {
        for service in ["", SERVICE_NAME] {
            self.health
                .set_service_status(service, ServingStatus::NotServing)
                .await;
        }
        // Err only when the server already ended, which the task reports.
        let _ = self.shutdown.send(());
        let mut task = self.task;
        match tokio::time::timeout(grace, &mut task).await {
            Ok(joined) => {
                joined??;
                Ok(Stopped::Drained)
            }
            Err(_elapsed) => {
                task.abort();
                Ok(Stopped::GraceExpired)
            }
        }
    }
}

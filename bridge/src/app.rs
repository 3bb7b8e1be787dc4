//! Wires the pieces together: binds both listeners, starts the background
//! tasks, and runs the shutdown sequence (readiness off, delay, stop accepting,
//! drain within the grace period).

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use arc_swap::ArcSwap;

use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::{
    admin::{self, Readiness},
    config::{Config, SignatureMode},
    journal::Journal,
    metrics::Metrics,
    secrets,
    server::{self, ConnectionMetrics, HttpLimits},
    upstream::Upstream,
    webhook::{self, Webhook},
};

/// How the shutdown ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every in-flight request finished within the grace period.
    Clean,
    /// The grace period ran out with requests still open.
    GraceExpired,
}

/// A started bridge.
pub struct Running {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub readiness: Arc<Readiness>,
    pub metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    task: JoinHandle<Drained>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr} ({name}): {source}")]
    Bind {
        name: &'static str,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error("cannot open the fallback journal {path}: {source}")]
    Journal {
        path: std::path::PathBuf,
        source: io::Error,
    },
    #[error("invalid upstream: {0}")]
    Upstream(#[from] tonic::transport::Error),
}

/// Binds the listeners and starts serving. Returns once both ports are bound.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let bind = |name, addr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { name, addr, source })
    };
    let listener = bind(crate::config::ENV_LISTEN, config.listen).await?;
    let admin_listener = bind(crate::config::ENV_ADMIN_LISTEN, config.admin_listen).await?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        name: crate::config::ENV_LISTEN,
        addr: config.listen,
        source,
    })?;
    let admin_addr = admin_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            name: crate::config::ENV_ADMIN_LISTEN,
            addr: config.admin_listen,
            source,
        })?;

    let metrics = Arc::new(Metrics::new());
    let readiness = Arc::new(Readiness::default());
    let upstream = Upstream::new(&config.upstream);
    let shutdown = CancellationToken::new();
    // Background tasks and the admin server stop last, after the drain.
    let background = CancellationToken::new();
    let stop_accepting = CancellationToken::new();

    let shared_secrets = match &config.signature {
        SignatureMode::InsecureSkip => {
            tracing::warn!(
                "INSECURE: webhook signatures are NOT verified ({}); never run this in production",
                crate::config::ENV_INSECURE_SKIP_SIGNATURE
            );
            None
        }
        SignatureMode::Verify {
            secrets,
            inline,
            file,
        } => {
            let shared = Arc::new(ArcSwap::from_pointee(secrets.clone()));
            metrics.secrets.set(secrets.len() as i64);
            if let Some(file) = file {
                tokio::spawn(secrets::watch(
                    shared.clone(),
                    inline.clone(),
                    file.clone(),
                    config.secret_reload_interval,
                    metrics.clone(),
                    background.clone(),
                ));
            }
            Some(shared)
        }
    };

    let journal = match &config.journal {
        None => None,
        Some(journal) => {
            let started = Journal::start(journal.clone(), metrics.clone()).map_err(|source| {
                StartError::Journal {
                    path: journal.path.clone(),
                    source,
                }
            })?;
            tracing::info!(path = %journal.path.display(), "fallback journal enabled");
            Some(started)
        }
    };
    let webhook = Arc::new(Webhook::new(
        &config,
        shared_secrets,
        upstream.clone(),
        journal,
        metrics.clone(),
    ));
    let limits = HttpLimits {
        max_connections: config.max_connections,
        header_timeout: config.header_timeout,
        max_headers: config.max_headers,
        max_header_bytes: config.max_header_bytes,
    };
    let webhook_server = tokio::spawn(server::serve(
        listener,
        webhook::router(webhook),
        limits,
        metrics.connections.clone(),
        stop_accepting.clone(),
    ));
    let admin_server = tokio::spawn(server::serve(
        admin_listener,
        admin::router(readiness.clone(), metrics.clone()),
        limits,
        // The admin port's own connection errors are not the webhook's.
        ConnectionMetrics::default(),
        background.clone(),
    ));
    tokio::spawn(admin::watch_upstream(
        upstream,
        readiness.clone(),
        metrics.clone(),
        config.ready_interval,
        background.clone(),
    ));
    readiness.set_listening();
    tracing::info!(
        %addr,
        %admin_addr,
        upstream = %config.upstream,
        path = %config.path,
        budget_ms = config.budget.as_millis() as u64,
        "listening"
    );

    let task = tokio::spawn({
        let shutdown = shutdown.clone();
        let readiness = readiness.clone();
        let (delay, grace) = (config.shutdown_delay, config.shutdown_grace);
        async move {
            shutdown.cancelled().await;
            readiness.set_draining();
            tracing::info!(
                delay_ms = delay.as_millis() as u64,
                "shutting down: /readyz now fails"
            );
            tokio::time::sleep(delay).await;
            stop_accepting.cancel();
            tracing::info!(
                grace_ms = grace.as_millis() as u64,
                "listener closed; draining in-flight requests"
            );
            let drained = match tokio::time::timeout(grace, webhook_server).await {
                Ok(_) => Drained::Clean,
                Err(_) => Drained::GraceExpired,
            };
            background.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(1), admin_server).await;
            drained
        }
    });

    Ok(Running {
        addr,
        admin_addr,
        readiness,
        metrics,
        shutdown,
        task,
    })
}

impl Running {
    /// Starts the shutdown sequence; [`Running::wait`] tells how it ended.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    pub async fn wait(self) -> Drained {
        self.task.await.unwrap_or(Drained::GraceExpired)
    }
}

/// Resolves on the first SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!(signal = "SIGTERM", "signal received"),
                    _ = int.recv() => tracing::info!(signal = "SIGINT", "signal received"),
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

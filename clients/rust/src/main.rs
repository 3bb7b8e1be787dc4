//! `flow-handler`: the quote-flow FlowHandler server.
//!
//! Prints `listening on HOST:PORT` once it serves; SIGTERM or SIGINT stop it
//! gracefully (health NOT_SERVING, calls in flight get `--grace`), exit 0.

#![forbid(unsafe_code)]

use std::{
    error::Error,
    io::{self, IsTerminal as _, Write as _},
    process::ExitCode,
    time::Duration,
};

use clap::Parser;
use flows_handler_example::{
    handler::QuoteFlow,
    server::{self, Stopped},
};
use tracing_subscriber::EnvFilter;

/// The reference quote flow as a platica.flows.v1.FlowHandler (tonic).
#[derive(Debug, Parser)]
#[command(name = "flow-handler", version)]
struct Args {
    /// Address to bind (0.0.0.0 to accept other hosts).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to bind; 0 picks a free one (printed).
    #[arg(long, env = "PORT", default_value_t = 50051)]
    port: u16,
    /// Seconds the calls in flight get on SIGTERM/SIGINT.
    #[arg(long, default_value_t = 5.0)]
    grace: f64,
    /// Simulated work per call in milliseconds, to try the deadline and the
    /// bridge's fallback.
    #[arg(long, default_value_t = 0)]
    work_ms: u64,
    /// Log filter (tracing's EnvFilter syntax); logs go to stderr.
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    log_level: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let filter = match EnvFilter::try_new(&args.log_level) {
        Ok(filter) => filter,
        Err(error) => {
            eprintln!(
                "flow-handler: invalid --log-level {:?}: {error}",
                args.log_level
            );
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .init();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn Error>> {
    let grace = Duration::try_from_secs_f64(args.grace)
        .map_err(|error| format!("invalid --grace {}: {error}", args.grace))?;
    // Handle the signals before announcing the port, so that a SIGTERM sent
    // right after the line stops the server gracefully.
    let mut signals = Signals::new()?;
    let handler = QuoteFlow::with_work(Duration::from_millis(args.work_ms));
    let running = server::start(&args.host, args.port, handler).await?;
    {
        let mut stdout = io::stdout().lock();
        writeln!(
            stdout,
            "listening on {}",
            address(&args.host, running.local_addr().port())
        )?;
        stdout.flush()?;
    }

    let signal = signals.recv().await;
    tracing::info!(signal, grace_s = grace.as_secs_f64(), "stopping");
    match running.stop(grace).await? {
        Stopped::Drained => tracing::info!("stopped"),
        Stopped::GraceExpired => {
            tracing::warn!("grace period expired with calls in flight; stopped");
        }
    }
    Ok(())
}

/// `host:port`, with an IPv6 literal in brackets.
fn address(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// SIGTERM and SIGINT (Ctrl-C where there are no Unix signals).
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    /// Waits for the first signal; returns its name.
    async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

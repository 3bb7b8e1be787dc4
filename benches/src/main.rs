//! `flows-bench`: the end-to-end benchmark of flows-bridge against the direct
//! gRPC call (the floor) and Envoy's gRPC-JSON transcoder (the peer). See
//! benches/README.md; `benches/run` is the one command.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand, ValueEnum};

mod handler;
mod load;
mod payload;
mod procs;
mod report;
mod run;
mod svg;

#[derive(Parser)]
#[command(
    name = "flows-bench",
    about = "flows-bridge vs the direct call vs Envoy, side by side"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the minimal FlowHandler (answers at once, or after --delay-ms).
    Handler {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        delay_ms: Option<u64>,
    },
    /// Load one server (for profiling by hand).
    Load {
        #[arg(long, value_enum)]
        target: TargetKind,
        #[arg(long)]
        addr: SocketAddr,
        /// Closed model: this many connections.
        #[arg(short, long, default_value_t = 16)]
        connections: usize,
        /// Open model: this many requests per second (over --connections).
        #[arg(long)]
        rate: Option<f64>,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
        /// Closed model: stop after this many requests in all.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Run every configuration side by side; write results, tables and plots.
    Run(Box<RunArgs>),
    /// Redraw the tables and plots from a results.json.
    Report {
        #[arg(long, default_value = "benches/results")]
        out: PathBuf,
        #[arg(long)]
        readme: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum TargetKind {
    Grpc,
    Bridge,
    Envoy,
}

#[derive(clap::Args)]
struct RunArgs {
    /// A few seconds per configuration: proves the harness works, measures nothing.
    #[arg(long)]
    smoke: bool,
    /// The flows-bridge binary (a release build).
    #[arg(long, default_value = "target/release/flows-bridge")]
    bridge: PathBuf,
    /// The Envoy binary.
    #[arg(long)]
    envoy: PathBuf,
    /// Where results.json, results.md and the SVG plots go.
    #[arg(long, default_value = "benches/results")]
    out: PathBuf,
    /// A README whose results section (between the markers) is rewritten.
    #[arg(long)]
    readme: Option<PathBuf>,
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    #[arg(long, default_value_t = 5)]
    startup_reps: usize,
    /// How the run was started, for the report.
    #[arg(long, default_value = "benches/run")]
    command: String,
    /// FLOWS_BRIDGE_WORKER_THREADS for the bridge (the manifests' value).
    #[arg(long, default_value_t = 1)]
    bridge_workers: usize,
    /// Envoy's --concurrency: the same number of worker threads as the bridge.
    #[arg(long, default_value_t = 1)]
    envoy_concurrency: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Handler { listen, delay_ms } => runtime(true).and_then(|rt| {
            rt.block_on(handler::serve(listen, delay_ms.map(Duration::from_millis)))
        }),
        Command::Load {
            target,
            addr,
            connections,
            rate,
            seconds,
            warmup,
            count,
        } => runtime(false).and_then(|rt| {
            rt.block_on(async {
                let fallback = bytes::Bytes::from_static(br#"{"data":{"acknowledged":true}}"#);
                let target = match target {
                    TargetKind::Grpc => load::grpc(addr)?,
                    TargetKind::Bridge => load::http(addr, payload::Body::Delivery, fallback)?,
                    TargetKind::Envoy => load::http(addr, payload::Body::ProtoJson, fallback)?,
                };
                let (warmup, window) = (
                    Duration::from_secs_f64(warmup),
                    Duration::from_secs_f64(seconds),
                );
                let result = match rate {
                    None => {
                        load::closed_limited(&target, connections, warmup, window, count).await?
                    }
                    Some(rate) => load::open(&target, rate, connections, warmup, window).await?,
                };
                println!(
                    "{}",
                    serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?
                );
                Ok(())
            })
        }),
        Command::Run(args) => runtime(false).and_then(|rt| {
            let args = *args;
            let smoke = args.smoke;
            let settings = run::Settings {
                smoke,
                warmup_s: if smoke { 0.3 } else { args.warmup },
                window_s: if smoke { 1.0 } else { args.seconds },
                fallback_window_s: if smoke { 1.5 } else { args.seconds },
                connections: vec![1, 16, 64],
                rate: if smoke { 500.0 } else { args.rate },
                open_connections: 32,
                fallback_connections: 16,
                slow_handler_ms: 1000,
                startup_reps: if smoke { 1 } else { args.startup_reps },
                envoy_concurrency: args.envoy_concurrency,
                bridge_worker_threads: args.bridge_workers,
                command: args.command.clone(),
            };
            rt.block_on(run::run(run::Options {
                settings,
                bridge: args.bridge,
                envoy: args.envoy,
                out: args.out,
                readme: args.readme,
            }))
            .map(|_| ())
        }),
        Command::Report { out, readme } => std::fs::read_to_string(out.join("results.json"))
            .map_err(|e| e.to_string())
            .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
            .and_then(|results| report::write(&results, &out, readme.as_deref())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("flows-bench: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The servers get tokio's default (one worker per core); the load generator
/// one thread, so it takes at most one of the two cores.
fn runtime(multi_thread: bool) -> Result<tokio::runtime::Runtime, String> {
    let mut builder = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder.enable_all().build().map_err(|e| e.to_string())
}

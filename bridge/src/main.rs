//! The `flows-bridge` binary: parse, then hand over to the library.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use flows_bridge::{
    app::{self, Drained},
    config::{Config, ServeArgs},
    demo, doctor, telemetry, tools,
};

/// EX_USAGE from sysexits.h: the configuration or command line is wrong.
const EXIT_USAGE: u8 = 64;

#[derive(Parser)]
#[command(
    name = "flows-bridge",
    version,
    about = "Platica WhatsApp Flows webhooks in, FlowHandler gRPC calls out"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the sidecar: verify webhooks, call the FlowHandler, reply or fall back.
    Serve(Box<ServeArgs>),
    /// Run the bridge in front of the built-in quote-flow handler on loopback
    /// and send the seed's deliveries through it.
    Demo,
    /// Print the ExchangeRequest the bridge would send for a delivery, as
    /// proto JSON (pipe it to `grpcurl -d @`).
    Convert(tools::ConvertArgs),
    /// Print the X-Webhook-Signature value for a body.
    Sign(tools::SignArgs),
    /// Post a signed delivery to a bridge; print status, reply and latency.
    Send(tools::SendArgs),
    /// Check that a FlowHandler is ready for production behind the bridge.
    Doctor(doctor::DoctorArgs),
    /// Exit 0 when a URL answers 200 (an exec probe for an image without a shell).
    Healthcheck(tools::HealthcheckArgs),
    /// Send the deliveries of a fallback journal to a FlowHandler again.
    Replay(tools::ReplayArgs),
    /// Write the contract's descriptor set, for grpcurl against servers
    /// without reflection.
    Protoset(tools::ProtosetArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    // Every setting of `serve` is checked before the runtime starts and any
    // port is bound; the worker-thread count is one of them.
    let config = match &cli.command {
        Command::Serve(args) => match Config::from_args(args) {
            Ok(config) => Some(config),
            Err(errors) => {
                eprint!("flows-bridge: {errors}");
                return ExitCode::from(EXIT_USAGE);
            }
        },
        _ => None,
    };
    let mut builder = match config.as_ref().and_then(|c| c.worker_threads) {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(threads) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(threads);
            builder
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("flows-bridge: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Serve(_) => {
            let Some(config) = config else {
                return ExitCode::FAILURE;
            };
            telemetry::init(config.log_format, &config.log);
            runtime.block_on(serve(config))
        }
        Command::Healthcheck(args) => {
            report("healthcheck", runtime.block_on(tools::healthcheck(&args)))
        }
        Command::Demo => {
            telemetry::init(flows_bridge::config::LogFormat::Text, "error");
            report("demo", runtime.block_on(demo::run()).map(|()| true))
        }
        Command::Convert(args) => report("convert", tools::convert(&args).map(|()| true)),
        Command::Sign(args) => report("sign", tools::sign(&args).map(|()| true)),
        Command::Send(args) => report("send", runtime.block_on(tools::send(&args))),
        Command::Doctor(args) => report("doctor", runtime.block_on(doctor::run(&args))),
        Command::Replay(args) => report("replay", runtime.block_on(tools::replay(&args))),
        Command::Protoset(args) => report("protoset", tools::protoset(&args).map(|()| true)),
    }
}

/// Exit 0 on success, 1 when the command ran but its check failed (a non-2xx
/// reply, a failed doctor check), 1 with a message on an error.
fn report(command: &str, result: Result<bool, tools::BoxError>) -> ExitCode {
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("flows-bridge {command}: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> ExitCode {
    let running = match app::start(config).await {
        Ok(running) => running,
        Err(error) => {
            tracing::error!(%error, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    app::shutdown_signal().await;
    running.shutdown();
    match running.wait().await {
        Drained::Clean => {
            tracing::info!("drained; exiting");
            ExitCode::SUCCESS
        }
        Drained::GraceExpired => {
            tracing::warn!("grace period expired with requests in flight; exiting");
            ExitCode::FAILURE
        }
    }
}

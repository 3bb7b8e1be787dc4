//! flows-bridge: a sidecar that turns Platica's signed WhatsApp Flows webhooks
//! into `platica.flows.v1.FlowHandler/Exchange` gRPC calls and their replies
//! (or a fallback) back into JSON.
//!
//! Dependency direction: `config`, `secrets`, `signature`, `delivery`, `reply`
//! and the generated `proto` know nothing of the rest; `webhook` (HTTP) and
//! `upstream` (gRPC) use them; `app` wires everything; `main` only calls `app`.

#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod config;
pub mod delivery;
pub mod demo;
pub mod doctor;
pub mod idempotency;
pub mod journal;
pub mod metrics;
pub mod outcome;
pub mod quote;
pub mod reply;
pub mod secrets;
pub mod sender;
pub mod server;
pub mod signature;
pub mod telemetry;
pub mod tools;
pub mod transport;
pub mod upstream;
pub mod vectors;
pub mod webhook;

/// Code generated from `proto/platica/flows/v1/flows.proto` at build time.
#[allow(clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("platica.flows.v1");
}

//! The reference quote flow as a Platica `platica.flows.v1.FlowHandler`,
//! served with tonic.
//!
//! flows-bridge (the sidecar) receives Platica's signed WhatsApp Flows
//! webhooks and calls `FlowHandler/Exchange` here; the reply goes back to
//! Platica as JSON. The flow, the same in every language under `clients/`:
//!
//! - `ACTION_INIT` or `ACTION_BACK`, on any screen: WELCOME with the products.
//! - `ACTION_DATA_EXCHANGE` on WELCOME: `selected_product` must be a known
//!   product, then `email` and `postal_code` (each only when given as a
//!   string) must be valid, checked in that order; the first failure answers
//!   WELCOME with the products and `error_message`. Otherwise PAYMENT with the
//!   product and its amount.
//! - `ACTION_DATA_EXCHANGE` on PAYMENT: SUCCESS with `acknowledged`.
//! - Anything else: `INVALID_ARGUMENT` (the bridge then answers its fallback).
//!
//! [`flow`] is the flow itself (no gRPC), [`handler`] the `FlowHandler`
//! service around it (deadline, logging), [`server`] the tonic server with
//! health and reflection, started and stopped gracefully.

#![forbid(unsafe_code)]

pub mod flow;
pub mod handler;
pub mod server;

/// Code generated from `proto/platica/flows/v1/flows.proto` by `build.rs`.
#[allow(clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("platica.flows.v1");
}

/// The encoded descriptor set of `proto/` (with its imports), for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/flows_descriptor.bin"));

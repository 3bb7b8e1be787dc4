//! Integration tests: the real `flows-bridge` binary on loopback, in front of
//! a real tonic FlowHandler, driven over real HTTP.

#![forbid(unsafe_code)]
// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod deliveries;
mod demo;
mod fallbacks;
mod idempotency;
mod journal;
mod operations;
mod rejections;
mod support;
mod tools;
mod upstream_deadline;

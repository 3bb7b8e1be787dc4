//! Chaos tests: the real `flows-bridge` binary on loopback, under an
//! open-model load while its FlowHandler fails in every way we could think
//! of, under overload, and under hostile input. See `README.md` here for the
//! short (CI) and long forms and the figures of a long run.

#![forbid(unsafe_code)]
// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod faults;
mod handler;
mod hostile_body;
mod hostile_conn;
mod load;
mod overload;
mod support;

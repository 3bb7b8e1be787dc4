//! Property tests and boundary tests for the conversions a delivery and a reply
//! go through (issue 6, "Fuzzing and properties"). The fuzz targets in `fuzz/`
//! check the same oracles ([`oracle`]) on inputs libFuzzer makes up; this crate
//! checks them on structured inputs proptest makes up, and pins down by hand
//! the edges a fuzzer would take long to reach.
//!
//! `cargo test -p flows-bridge --test properties` (PROPTEST_CASES=N for more).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod boundaries;
mod oracle;
mod payload;
mod reply;
mod signature;
mod strategies;

use bytes::Bytes;
use flows_bridge::{
    delivery::{self, Delivery, DeliveryError},
    signature::VerifiedBody,
};
use serde_json::Value as Json;

/// The seed deliveries (the same files the fuzz corpus starts from).
pub const FULL: &str = include_str!("../vectors/deliveries/screen_advance_full.json");
pub const INIT: &str = include_str!("../vectors/deliveries/init.json");

pub fn parse_bytes(body: &[u8]) -> Result<Delivery, DeliveryError> {
    delivery::parse(&VerifiedBody::unchecked(Bytes::copy_from_slice(body)))
}

pub fn parse_json(body: &Json) -> Result<Delivery, DeliveryError> {
    parse_bytes(&serde_json::to_vec(body).unwrap())
}

/// The init seed delivery with `payload` as its `data.flowExchange.payload`.
pub fn delivery_with_payload(payload: Json) -> Json {
    let mut body: Json = serde_json::from_str(INIT).unwrap();
    body["data"]["flowExchange"]["payload"] = payload;
    body
}

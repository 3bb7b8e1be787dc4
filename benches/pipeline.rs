//! Criterion micro-benchmarks of each CPU stage of a delivery's path through
//! flows-bridge, on the seed's full example (tests/vectors/deliveries/
//! screen_advance_full.json, as Platica sends it: compact JSON).
//!
//! `cargo bench -p flows-bridge --bench pipeline` (see benches/README.md).

// Fixed inputs that are known to be valid: a failure is a broken benchmark.
#![allow(clippy::unwrap_used)]

use std::{hint::black_box, time::Duration};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use flows_bridge::{
    delivery, idempotency,
    metrics::{EventLabel, Metrics, OutcomeLabel},
    proto::{DeliveryContext, ExchangeResponse},
    reply,
    secrets::Secrets,
    signature::{self, VerifiedBody},
    tools,
};
use prost::Message;
use prost_types::{Struct, Value, value::Kind};
use serde_json::Value as Json;

const SECRET: &str = "bench-secret";

/// The seed's full delivery as sent on the wire (compact), with a fresh
/// timestamp so the freshness check passes.
fn body() -> Bytes {
    let seed: Json = serde_json::from_str(tools::SEED_SCREEN_ADVANCE_FULL).unwrap();
    Bytes::from(flows_bridge::sender::refresh(seed).to_string())
}

/// The quote flow's PAYMENT reply.
fn response() -> ExchangeResponse {
    let mut data = Struct::default();
    data.fields.insert(
        "amount_mxn".into(),
        Value {
            kind: Some(Kind::NumberValue(499.0)),
        },
    );
    ExchangeResponse {
        screen: Some("PAYMENT".into()),
        data: Some(data),
    }
}

fn context() -> DeliveryContext {
    DeliveryContext {
        webhook_id: Some("wh_bench".into()),
        deadline: Some(std::time::SystemTime::now().into()),
        time_remaining: prost_types::Duration::try_from(Duration::from_millis(600)).ok(),
        unverified: false,
        replay: false,
    }
}

fn stages(c: &mut Criterion) {
    let body = body();
    let secrets = Secrets::from_list(SECRET);
    let header = signature::sign(SECRET.as_bytes(), &body);
    let verified = VerifiedBody::unchecked(body.clone());
    let parsed = delivery::parse(&verified).unwrap();
    let mut request = parsed.request.clone();
    request.context = Some(context());
    let reply = response();
    let metrics = Metrics::new();
    let tolerance = Duration::from_secs(300);

    let mut g = c.benchmark_group("stage");
    g.bench_function("1_signature_verify", |b| {
        b.iter(|| signature::verify(&secrets, body.clone(), Some(header.as_bytes())).unwrap())
    });
    // For scale: what reading the same body into a generic serde_json::Value costs.
    g.bench_function("2_json_value_parse_reference", |b| {
        b.iter(|| serde_json::from_slice::<Json>(black_box(&body)).unwrap())
    });
    g.bench_function("3_delivery_parse", |b| {
        b.iter(|| delivery::parse(black_box(&verified)).unwrap())
    });
    g.bench_function("4_freshness", |b| {
        b.iter(|| {
            delivery::check_freshness(&parsed.timestamp(), std::time::SystemTime::now(), tolerance)
        })
    });
    g.bench_function("5_idempotency_digest", |b| {
        b.iter(|| idempotency::body_digest(black_box(&body)))
    });
    g.bench_function("7_protobuf_encode", |b| {
        b.iter(|| black_box(&request).encode_to_vec())
    });
    g.bench_function("8_reply_render", |b| {
        b.iter(|| reply::render(black_box(&reply)).unwrap())
    });
    g.bench_function("9_metrics_observe", |b| {
        b.iter(|| {
            metrics.observe_request(
                EventLabel::ScreenAdvance,
                OutcomeLabel::Reply,
                Duration::from_micros(300),
            )
        })
    });
    g.finish();

    c.bench_function("pipeline/cpu_path", |b| {
        b.iter(|| {
            let verified =
                signature::verify(&secrets, body.clone(), Some(header.as_bytes())).unwrap();
            let delivery = delivery::parse(&verified).unwrap();
            delivery::check_freshness(
                &delivery.timestamp(),
                std::time::SystemTime::now(),
                tolerance,
            )
            .unwrap();
            let digest = idempotency::body_digest(verified.bytes());
            let mut request = delivery.request;
            request.context = Some(context());
            let encoded = request.encode_to_vec();
            let rendered = reply::render(&reply).unwrap();
            metrics.observe_request(
                EventLabel::ScreenAdvance,
                OutcomeLabel::Reply,
                Duration::from_micros(300),
            );
            (digest, encoded, rendered)
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = stages
}
criterion_main!(benches);

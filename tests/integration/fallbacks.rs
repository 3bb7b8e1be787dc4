//! Every reason the fallback is sent: each one a 200 with the fallback JSON,
//! logged with its reason and counted by reason.

use std::time::{Duration, Instant};

use crate::support::*;

async fn fallback_count(bridge: &Bridge, reason: &str) -> f64 {
    bridge
        .metric(&format!(
            r#"flows_bridge_fallbacks_total{{reason="{reason}"}}"#
        ))
        .await
}

async fn logged_reason(bridge: &Bridge, id: &str) -> String {
    let line = bridge
        .wait_for_log(id, |l| {
            l["message"] == "delivery answered with the fallback" && l["delivery_id"] == id
        })
        .await;
    line["reason"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_handler_gets_the_fallback_at_the_budget() {
    let handler = Handler::start().await;
    let bridge = Bridge::start(&handler.upstream(), &[("FLOWS_BRIDGE_BUDGET", "300ms")]);
    let d = scripted("sleep:2000");
    let sent = bridge.send(&d).await;
    assert_fallback(&sent);
    // Not before the budget, and nowhere near the handler's 2 s.
    assert!(
        sent.latency >= Duration::from_millis(300),
        "{:?}",
        sent.latency
    );
    assert!(
        sent.latency < Duration::from_millis(1500),
        "{:?}",
        sent.latency
    );
    assert_eq!(
        logged_reason(&bridge, d["id"].as_str().unwrap()).await,
        "deadline"
    );
    assert_eq!(fallback_count(&bridge, "deadline").await, 1.0);
    // The handler was told its budget.
    let seen = handler.script.calls().pop().unwrap();
    assert!(seen.metadata.contains_key("grpc-timeout"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_handler_fails_fast() {
    let upstream = format!("http://{}", closed_port());
    // A long budget: the fallback must not wait for it when the port refuses.
    let bridge = Bridge::start(&upstream, &[("FLOWS_BRIDGE_BUDGET", "5s")]);
    for _ in 0..3 {
        let d = delivery(INIT);
        let started = Instant::now();
        let sent = bridge.send(&d).await;
        assert_fallback(&sent);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            logged_reason(&bridge, d["id"].as_str().unwrap()).await,
            "upstream_unavailable"
        );
    }
    assert_eq!(fallback_count(&bridge, "upstream_unavailable").await, 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_errors_get_the_fallback() {
    let handler = Handler::start().await;
    let bridge = Bridge::start(&handler.upstream(), &[]);
    // INTERNAL (13), INVALID_ARGUMENT (3), PERMISSION_DENIED (7): upstream_error;
    // UNAVAILABLE (14): upstream_unavailable; DEADLINE_EXCEEDED (4): deadline.
    for (code, reason) in [
        (13, "upstream_error"),
        (3, "upstream_error"),
        (7, "upstream_error"),
        (14, "upstream_unavailable"),
        (4, "deadline"),
    ] {
        let d = scripted(&format!("error:{code}"));
        assert_fallback(&bridge.send(&d).await);
        assert_eq!(
            logged_reason(&bridge, d["id"].as_str().unwrap()).await,
            reason,
            "code {code}"
        );
    }
    assert_eq!(fallback_count(&bridge, "upstream_error").await, 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_replies_get_the_fallback() {
    let handler = Handler::start().await;
    let bridge = Bridge::start(&handler.upstream(), &[]);
    for behaviour in ["empty", "nan"] {
        let d = scripted(behaviour);
        assert_fallback(&bridge.send(&d).await);
        assert_eq!(
            logged_reason(&bridge, d["id"].as_str().unwrap()).await,
            "invalid_reply"
        );
    }
    assert_eq!(fallback_count(&bridge, "invalid_reply").await, 2.0);
    // A reply past the size cap (1 MiB) is refused by the gRPC client.
    let d = scripted("huge");
    assert_fallback(&bridge.send(&d).await);
    assert_eq!(
        logged_reason(&bridge, d["id"].as_str().unwrap()).await,
        "upstream_error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_in_flight_cap_deliveries_are_shed_at_once() {
    let handler = Handler::start().await;
    let bridge = Bridge::start(
        &handler.upstream(),
        &[
            ("FLOWS_BRIDGE_MAX_IN_FLIGHT", "2"),
            ("FLOWS_BRIDGE_BUDGET", "3s"),
        ],
    );
    let slow: Vec<_> = (0..2).map(|_| scripted("sleep:1000")).collect();
    let (first, second, shed) = tokio::join!(bridge.send(&slow[0]), bridge.send(&slow[1]), async {
        // Let the two slow calls take both permits first.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let d = delivery(INIT);
        let sent = bridge.send(&d).await;
        (d, sent)
    });
    let (d, sent) = shed;
    assert_fallback(&sent);
    assert!(
        sent.latency < Duration::from_millis(500),
        "shed must not queue: {:?}",
        sent.latency
    );
    assert_eq!(
        logged_reason(&bridge, d["id"].as_str().unwrap()).await,
        "shed"
    );
    assert_eq!(handler.script.calls_for(d["id"].as_str().unwrap()), 0);
    assert_eq!(&first.body[..], br#"{"screen":"SLEPT"}"#);
    assert_eq!(&second.body[..], br#"{"screen":"SLEPT"}"#);
    assert_eq!(fallback_count(&bridge, "shed").await, 1.0);
    // The shed delivery was not cached: its retry reaches the handler.
    let sent = bridge.send(&d).await;
    assert_eq!(sent.status, 200);
    assert_eq!(handler.script.calls_for(d["id"].as_str().unwrap()), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_fallback_is_served() {
    let upstream = format!("http://{}", closed_port());
    let fallback = r#"{"screen":"SORRY","data":{"reason":"busy"}}"#;
    let bridge = Bridge::start(&upstream, &[("FLOWS_BRIDGE_FALLBACK", fallback)]);
    let sent = bridge.send(&delivery(INIT)).await;
    assert_eq!(sent.status, 200);
    assert_eq!(
        body_json(&sent),
        serde_json::from_str::<serde_json::Value>(fallback).unwrap()
    );
}

//! The same delivery id calls the handler once; duplicates get the same reply.

use std::time::Duration;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_is_answered_from_the_cache() {
    let handler = Handler::start().await;
    let bridge = Bridge::start(&handler.upstream(), &[]);
    let d = delivery(ADVANCE);
    let first = bridge.send(&d).await;
    let second = bridge.send(&d).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.body, second.body);
    assert_eq!(handler.script.calls_for(d["id"].as_str().unwrap()), 1);
    assert_eq!(bridge.metric("flows_bridge_duplicates_total").await, 1.0);
    bridge
        .wait_for_log("the duplicate", |l| {
            l["message"] == "delivery answered"
                && l["delivery_id"] == d["id"]
                && l["duplicate"] == true
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_wait_for_the_first_call() {
    let handler = Handler::start().await;
    let bridge = Bridge::start(&handler.upstream(), &[]);
    let d = scripted("sleep:300");
    let sends: Vec<_> = (0..5).map(|_| bridge.send(&d)).collect();
    let replies = futures_util::future::join_all(sends).await;
    for sent in &replies {
        assert_eq!(sent.status, 200);
        assert_eq!(&sent.body[..], br#"{"screen":"SLEPT"}"#);
    }
    assert_eq!(handler.script.calls_for(d["id"].as_str().unwrap()), 1);
    assert_eq!(bridge.metric("flows_bridge_duplicates_total").await, 4.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_fallback_is_not_retried_against_the_handler() {
    let handler = Handler::start().await;
    let bridge = Bridge::start(&handler.upstream(), &[("FLOWS_BRIDGE_BUDGET", "200ms")]);
    let d = scripted("sleep:1000");
    assert_fallback(&bridge.send(&d).await);
    assert_fallback(&bridge.send(&d).await);
    assert_eq!(handler.script.calls_for(d["id"].as_str().unwrap()), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_the_handler_never_saw_is_retried() {
    let port = closed_port();
    let bridge = Bridge::start(&format!("http://{port}"), &[]);
    let d = delivery(INIT);
    assert_fallback(&bridge.send(&d).await);

    let handler = Handler::start_on(port, true).await;
    bridge.wait_ready(200).await;
    let sent = bridge.send(&d).await;
    assert_eq!(sent.status, 200);
    assert!(
        sent.body.starts_with(br#"{"screen":"WELCOME""#),
        "{:?}",
        sent.body
    );
    assert_eq!(handler.script.calls_for(d["id"].as_str().unwrap()), 1);
    tokio::time::sleep(Duration::from_millis(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_keeps_its_memory_budget_with_large_replies() {
    let handler = Handler::start().await;
    // 256 KiB holds about 30 answers of 8 KB; the default count alone would keep all 100.
    let bridge = Bridge::start(
        &handler.upstream(),
        &[("FLOWS_BRIDGE_IDEMPOTENCY_MEMORY", "256KiB")],
    );
    let deliveries: Vec<_> = (0..100).map(|_| scripted("bytes:8000")).collect();
    for d in &deliveries {
        let sent = bridge.send(d).await;
        assert_eq!(sent.status, 200);
        assert_eq!(sent.body.len(), r#"{"screen":""}"#.len() + 8000);
    }
    for d in &deliveries {
        assert_eq!(bridge.send(d).await.status, 200);
    }
    let duplicates = bridge.metric("flows_bridge_duplicates_total").await;
    assert!((10.0..=40.0).contains(&duplicates), "{duplicates}");
    let calls = handler.script.calls().len();
    assert_eq!(calls as f64, 200.0 - duplicates);
}

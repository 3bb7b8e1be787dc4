//! Every rejection: its status, its JSON error body, its metric and log line,
//! and the handler never called.

use std::time::Duration;

use bytes::Bytes;
use flows_bridge::{sender, signature};
use http_body_util::Full;
use serde_json::{Value as Json, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

fn post(bridge: &Bridge) -> http::request::Builder {
    http::Request::post(format!("http://{}/", bridge.addr))
        .header("content-type", "application/json")
}

fn signed(bridge: &Bridge, body: &[u8]) -> http::Request<Full<Bytes>> {
    post(bridge)
        .header(
            "x-webhook-signature",
            signature::sign(SECRET.as_bytes(), body),
        )
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap()
}

async fn expect(bridge: &Bridge, request: http::Request<Full<Bytes>>, status: u16, reason: &str) {
    let before = bridge
        .metric(&format!(
            r#"flows_bridge_rejections_total{{reason="{reason}"}}"#
        ))
        .await;
    let sent = bridge.send_request(request).await;
    assert_eq!(sent.status, status, "{reason}: {:?}", sent.body);
    assert_eq!(sent.headers["content-type"], "application/json", "{reason}");
    let body = body_json(&sent);
    assert_eq!(body["error"], reason, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    let after = bridge
        .metric(&format!(
            r#"flows_bridge_rejections_total{{reason="{reason}"}}"#
        ))
        .await;
    assert_eq!(after, before + 1.0, "{reason} not counted");
    bridge
        .wait_for_log(reason, |l| {
            l["message"] == "webhook rejected" && l["reason"] == reason && l["status"] == status
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rejection_is_specific() {
    let handler = Handler::start().await;
    let bridge = Bridge::start(&handler.upstream(), &[("FLOWS_BRIDGE_MAX_BODY", "4KiB")]);
    let good = delivery(INIT);
    let good_bytes = good.to_string().into_bytes();

    // Routing.
    let get = http::Request::get(format!("http://{}/", bridge.addr))
        .body(Full::default())
        .unwrap();
    let sent = bridge.send_request(get).await;
    assert_eq!(sent.headers["allow"], "POST");
    let get = http::Request::get(format!("http://{}/", bridge.addr))
        .body(Full::default())
        .unwrap();
    expect(&bridge, get, 405, "method_not_allowed").await;
    let other = http::Request::post(format!("http://{}/other", bridge.addr))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(good_bytes.clone())))
        .unwrap();
    expect(&bridge, other, 404, "not_found").await;

    // Content type.
    let mut text = signed(&bridge, &good_bytes);
    text.headers_mut()
        .insert("content-type", "text/plain".parse().unwrap());
    expect(&bridge, text, 415, "unsupported_media_type").await;
    let mut none = signed(&bridge, &good_bytes);
    none.headers_mut().remove("content-type");
    expect(&bridge, none, 415, "unsupported_media_type").await;
    let mut with_charset = signed(&bridge, &good_bytes);
    with_charset.headers_mut().insert(
        "content-type",
        "Application/JSON; charset=utf-8".parse().unwrap(),
    );
    assert_eq!(bridge.send_request(with_charset).await.status, 200);

    // Size, before the signature is even looked at.
    let big = vec![b' '; 5000];
    expect(&bridge, signed(&bridge, &big), 413, "body_too_large").await;

    // Signature.
    let unsigned = post(&bridge)
        .body(Full::new(Bytes::from(good_bytes.clone())))
        .unwrap();
    expect(&bridge, unsigned, 401, "signature_missing").await;
    for bad in ["", "sha256=", "sha256=zz", "md5=abc", "sha256=00"] {
        let mut r = signed(&bridge, &good_bytes);
        r.headers_mut()
            .insert("x-webhook-signature", bad.parse().unwrap());
        expect(&bridge, r, 401, "signature_malformed").await;
    }
    let mut other_secret = signed(&bridge, &good_bytes);
    other_secret.headers_mut().insert(
        "x-webhook-signature",
        signature::sign(b"other", &good_bytes).parse().unwrap(),
    );
    expect(&bridge, other_secret, 401, "signature_mismatch").await;
    let mut other_body = signed(&bridge, &good_bytes);
    let tampered = good.to_string().replace("ws_456", "ws_999");
    *other_body.body_mut() = Full::new(Bytes::from(tampered));
    expect(&bridge, other_body, 401, "signature_mismatch").await;

    // Freshness (validly signed).
    let mut stale = delivery(INIT);
    stale["timestamp"] = "2026-01-01T00:00:00.000Z".into();
    expect(
        &bridge,
        signed(&bridge, stale.to_string().as_bytes()),
        401,
        "timestamp_stale",
    )
    .await;
    let mut future = delivery(INIT);
    future["timestamp"] = "2999-01-01T00:00:00.000Z".into();
    expect(
        &bridge,
        signed(&bridge, future.to_string().as_bytes()),
        401,
        "timestamp_future",
    )
    .await;

    // Shape (validly signed).
    expect(
        &bridge,
        signed(&bridge, b"{\"id\": "),
        400,
        "malformed_json",
    )
    .await;
    expect(
        &bridge,
        signed(&bridge, b"\xff\xfe{}"),
        400,
        "malformed_json",
    )
    .await;
    expect(
        &bridge,
        signed(&bridge, br#"{"hello":"world"}"#),
        422,
        "invalid_delivery",
    )
    .await;
    let mut not_flows = delivery(INIT);
    not_flows["event"] = "whatsapp.message.received".into();
    expect(
        &bridge,
        signed(&bridge, not_flows.to_string().as_bytes()),
        422,
        "unsupported_event",
    )
    .await;

    // Headers that contradict the signed body.
    for header in [
        "x-webhook-event-id",
        "x-webhook-event",
        "x-webhook-timestamp",
        "x-webhook-resource-id",
    ] {
        let d = delivery(INIT);
        let mut r = sender::request(bridge.addr, "/", &d, Some(SECRET.as_bytes()));
        r.headers_mut()
            .insert(header, "something-else".parse().unwrap());
        expect(&bridge, r, 400, "header_mismatch").await;
    }

    // The same id with another body.
    let first = delivery(INIT);
    assert_eq!(bridge.send(&first).await.status, 200);
    let mut reused = delivery(BACK);
    reused["id"] = first["id"].clone();
    let r = sender::request(bridge.addr, "/", &reused, Some(SECRET.as_bytes()));
    expect(&bridge, r, 409, "id_conflict").await;

    // Only the two accepted deliveries reached the handler; every rejection was
    // logged once and counted once.
    let rejected = bridge
        .metric(r#"flows_bridge_requests_total{event="none",outcome="rejected"}"#)
        .await
        + bridge
            .metric(r#"flows_bridge_requests_total{event="init",outcome="rejected"}"#)
            .await
        + bridge
            .metric(r#"flows_bridge_requests_total{event="back",outcome="rejected"}"#)
            .await;
    let mut logged = 0;
    for _ in 0..100 {
        logged = bridge.log_events("webhook rejected").len();
        if logged as f64 == rejected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(logged as f64, rejected);
    assert_eq!(handler.script.calls().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_past_the_limit_is_cut_off() {
    let handler = Handler::start().await;
    let bridge = Bridge::start(&handler.upstream(), &[("FLOWS_BRIDGE_MAX_BODY", "1KiB")]);
    let mut stream = tokio::net::TcpStream::connect(bridge.addr).await.unwrap();
    let head = "POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    // 64 chunks of 100 bytes: 6400 bytes, far past 1 KiB.
    let chunk = format!("64\r\n{}\r\n", "x".repeat(100));
    for _ in 0..64 {
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(
        response.contains(r#""error":"body_too_large""#),
        "{response}"
    );
    assert!(handler.script.calls().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_headers_are_cut_at_the_header_timeout() {
    let handler = Handler::start().await;
    let bridge = Bridge::start(
        &handler.upstream(),
        &[("FLOWS_BRIDGE_HEADER_TIMEOUT", "1s")],
    );
    let mut stream = tokio::net::TcpStream::connect(bridge.addr).await.unwrap();
    stream
        .write_all(b"POST / HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut closed = false;
    // Trickle one header line every 300 ms for up to 6 s.
    for i in 0..20 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if stream
            .write_all(format!("x-slow-{i}: 1\r\n").as_bytes())
            .await
            .is_err()
        {
            closed = true;
            break;
        }
        let mut buf = [0u8; 256];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(1), stream.read(&mut buf)).await
            && (n == 0 || String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"))
        {
            closed = true;
            break;
        }
    }
    assert!(
        closed,
        "the connection was still open after {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    // The bridge still serves everyone else.
    assert_eq!(bridge.send(&delivery(INIT)).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_or_too_large_headers_are_refused() {
    let handler = Handler::start().await;
    let bridge = Bridge::start(&handler.upstream(), &[("FLOWS_BRIDGE_MAX_HEADERS", "20")]);
    let d = delivery(INIT);
    let mut many = sender::request(bridge.addr, "/", &d, Some(SECRET.as_bytes()));
    for i in 0..30 {
        many.headers_mut().insert(
            http::HeaderName::from_bytes(format!("x-extra-{i}").as_bytes()).unwrap(),
            "1".parse().unwrap(),
        );
    }
    let client = sender::http_client();
    let result = sender::send(&client, many).await;
    assert!(
        result.is_err() || result.as_ref().unwrap().status.as_u16() == 431,
        "{result:?}"
    );

    let mut huge = sender::request(bridge.addr, "/", &d, Some(SECRET.as_bytes()));
    huge.headers_mut()
        .insert("x-huge", "a".repeat(64 * 1024).parse().unwrap());
    let result = sender::send(&client, huge).await;
    assert!(
        result.is_err() || result.as_ref().unwrap().status.as_u16() == 431,
        "{result:?}"
    );
    assert!(handler.script.calls().is_empty());
    assert_eq!(bridge.send(&delivery(INIT)).await.status, 200);
    assert_eq!(
        bridge
            .metric(r#"flows_bridge_connection_errors_total{reason="headers_too_large"}"#)
            .await,
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_personal_data_or_secret_in_logs() {
    let handler = Handler::start().await;
    let bridge = Bridge::start(&handler.upstream(), &[]);
    let d = delivery(ADVANCE_FULL);
    assert_eq!(bridge.send(&d).await.status, 200);
    let mut bad: Json = d.clone();
    bad["id"] = json!("another-id");
    let r = sender::request(bridge.addr, "/", &bad, Some(b"wrong"));
    assert_eq!(bridge.send_request(r).await.status, 401);
    let mut stale = delivery(ADVANCE_FULL);
    stale["timestamp"] = "2020-01-01T00:00:00.000Z".into();
    assert_eq!(bridge.send(&stale).await.status, 401);
    let logs = bridge.logs().join("\n");
    assert!(!logs.is_empty());
    for secret_or_pii in [
        SECRET,
        "+5215555555555",
        "5215555555555",
        "juan@empresa.com",
        "Juan",
        "selected_product",
        "p2\"",
    ] {
        assert!(
            !logs.contains(secret_or_pii),
            "{secret_or_pii:?} leaked into the logs:\n{logs}"
        );
    }
}

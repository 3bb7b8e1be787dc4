//! Deliveries that reach the handler, and the handler's replies coming back.

use std::time::Duration;

use bytes::Bytes;
use flows_bridge::{
    proto::{Action, Event},
    sender,
};
use http_body_util::{BodyExt, Full};
use prost_types::value::Kind;
use serde_json::json;

use crate::support::*;

const PRODUCTS: &str = r#"[{"id":"p1","title":"Plan Básico"},{"id":"p2","title":"Plan Premium"}]"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_reaches_the_handler_and_its_reply_comes_back() {
    let handler = Handler::start().await;
    let bridge = Bridge::start(&handler.upstream(), &[]);
    let cases = [
        (INIT, Event::Init, Action::Init, format!(r#"{{"screen":"WELCOME","data":{{"products":{PRODUCTS}}}}}"#)),
        (
            ADVANCE_FULL,
            Event::ScreenAdvance,
            Action::DataExchange,
            r#"{"screen":"PAYMENT","data":{"amount_mxn":499,"product_id":"p2","product_title":"Plan Premium"}}"#.to_owned(),
        ),
        (
            ADVANCE,
            Event::ScreenAdvance,
            Action::DataExchange,
            r#"{"screen":"PAYMENT","data":{"amount_mxn":499,"product_id":"p2","product_title":"Plan Premium"}}"#.to_owned(),
        ),
        (BACK, Event::Back, Action::Back, format!(r#"{{"screen":"WELCOME","data":{{"products":{PRODUCTS}}}}}"#)),
    ];
    let mut cases_sent = Vec::new();
    for (seed, event, action, want) in cases {
        let d = delivery(seed);
        cases_sent.push(d["id"].clone());
        let sent = bridge.send(&d).await;
        assert_eq!(sent.status, 200);
        assert_eq!(sent.headers["content-type"], "application/json");
        // Byte for byte: integers stay integers (499, not 499.0).
        assert_eq!(std::str::from_utf8(&sent.body).unwrap(), want);

        let id = d["id"].as_str().unwrap();
        let seen = handler
            .script
            .calls()
            .into_iter()
            .find(|s| s.request.id == id)
            .unwrap();
        assert_eq!(seen.request.event(), event);
        assert_eq!(seen.request.event_name, d["event"]);
        assert_eq!(
            seen.request.flow_exchange.as_ref().unwrap().action(),
            action
        );
        let context = seen.request.context.as_ref().unwrap();
        assert_eq!(context.webhook_id.as_deref(), Some("wh_demo"));
        assert!(!context.unverified);
        // The remaining budget is on the wire and in the request, and within 600 ms.
        let remaining = context.time_remaining.unwrap();
        assert!(
            remaining.seconds == 0 && remaining.nanos > 0 && remaining.nanos <= 600_000_000,
            "{remaining:?}"
        );
        assert!(context.deadline.is_some());
        assert!(
            seen.metadata["user-agent"].starts_with("flows-bridge/"),
            "{:?}",
            seen.metadata.get("user-agent")
        );
        let timeout = &seen.metadata["grpc-timeout"];
        assert!(
            timeout.ends_with('u') || timeout.ends_with('m') || timeout.ends_with('n'),
            "{timeout}"
        );
        assert_eq!(seen.metadata["x-webhook-id"], "wh_demo");
        assert_eq!(seen.metadata["x-webhook-event-id"], id);
    }
    assert_eq!(
        bridge
            .metric(r#"flows_bridge_requests_total{event="init",outcome="reply"}"#)
            .await,
        1.0
    );
    assert_eq!(
        bridge
            .metric(r#"flows_bridge_requests_total{event="screen_advance",outcome="reply"}"#)
            .await,
        2.0
    );
    assert_eq!(
        bridge
            .metric(r#"flows_bridge_requests_total{event="back",outcome="reply"}"#)
            .await,
        1.0
    );
    let last = cases_sent.last().unwrap().clone();
    bridge
        .wait_for_log("the last delivery", |l| l["delivery_id"] == last)
        .await;
    let lines = bridge.log_events("delivery answered");
    assert_eq!(lines.len(), 4);
    for line in &lines {
        for field in [
            "delivery_id",
            "event",
            "flow_id",
            "screen",
            "outcome",
            "latency_ms",
        ] {
            assert!(line.get(field).is_some(), "{field} missing in {line}");
        }
        assert_eq!(line["flow_id"], "flow_doc_abc");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_full_delivery_arrives_field_by_field() {
    let handler = Handler::start().await;
    let bridge = Bridge::start(&handler.upstream(), &[]);
    let d = delivery(ADVANCE_FULL);
    assert_eq!(bridge.send(&d).await.status, 200);
    let seen = handler.script.calls().pop().unwrap().request;
    assert_eq!(seen.workspace_id.as_deref(), Some("ws_456"));
    assert_eq!(seen.resource_id.as_deref(), Some("ZmxvdyQwMQ=="));
    let client = seen.client.unwrap();
    assert_eq!(client.phone_number.as_deref(), Some("+5215555555555"));
    assert_eq!(client.email.as_deref(), Some("juan@empresa.com"));
    let conversation = seen.conversation.unwrap();
    assert_eq!(conversation.message_count, Some(3));
    assert_eq!(conversation.topic.as_deref(), Some(""));
    let flow_response = seen.flow_response.unwrap();
    assert_eq!(flow_response.completed_at, None);
    assert_eq!(flow_response.message_id.as_deref(), Some("wamid.HBgN..."));
    assert_eq!(seen.flow.unwrap().categories, vec!["LEAD_GENERATION"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_reach_the_handler() {
    let handler = Handler::start().await;
    let bridge = Bridge::start(&handler.upstream(), &[]);
    let mut d = delivery(ADVANCE_FULL);
    d["platicaRegion"] = json!("mx-1");
    d["data"]["locale"] = json!({"language": "es"});
    d["data"]["client"]["vip"] = json!(true);
    d["data"]["flowExchange"]["signature"] = json!([1, 2]);
    d["data"]["flow"]["creationDate"] = json!("not a date");
    assert_eq!(bridge.send(&d).await.status, 200);
    let r = handler.script.calls().pop().unwrap().request;
    let get = |s: &Option<prost_types::Struct>, k: &str| {
        s.as_ref().unwrap().fields[k].kind.clone().unwrap()
    };
    assert_eq!(
        get(&r.unknown_fields, "platicaRegion"),
        Kind::StringValue("mx-1".into())
    );
    assert!(matches!(
        get(&r.data_unknown_fields, "locale"),
        Kind::StructValue(_)
    ));
    assert_eq!(
        get(&r.client.unwrap().unknown_fields, "vip"),
        Kind::BoolValue(true)
    );
    assert!(matches!(
        get(&r.flow_exchange.unwrap().unknown_fields, "signature"),
        Kind::ListValue(_)
    ));
    assert_eq!(
        get(&r.flow.unwrap().unknown_fields, "creationDate"),
        Kind::StringValue("not a date".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_context_is_forwarded() {
    let handler = Handler::start().await;
    let bridge = Bridge::start(&handler.upstream(), &[]);
    let d = delivery(INIT);
    let mut request = sender::request(bridge.addr, "/", &d, Some(SECRET.as_bytes()));
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    request
        .headers_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    request
        .headers_mut()
        .insert("tracestate", "platica=1".parse().unwrap());
    assert_eq!(bridge.send_request(request).await.status, 200);
    let seen = handler.script.calls().pop().unwrap();
    assert_eq!(seen.metadata["traceparent"], traceparent);
    assert_eq!(seen.metadata["tracestate"], "platica=1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_cleartext_is_served() {
    let handler = Handler::start().await;
    let bridge = Bridge::start(&handler.upstream(), &[]);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let d = delivery(INIT);
    let request = sender::request(bridge.addr, "/", &d, Some(SECRET.as_bytes()));
    let response = client.request(request).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(body.starts_with(br#"{"screen":"WELCOME""#), "{body:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("handler.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let script = Scripted::default();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(
                flows_bridge::proto::flow_handler_server::FlowHandlerServer::new(script.clone()),
            )
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
    );
    let bridge = Bridge::start(&format!("unix://{}", socket.display()), &[]);
    let d = delivery(BACK);
    let sent = bridge.send(&d).await;
    assert_eq!(sent.status, 200);
    assert!(sent.body.starts_with(br#"{"screen":"WELCOME""#));
    assert_eq!(script.calls_for(d["id"].as_str().unwrap()), 1);
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_mode_accepts_unsigned_and_says_so() {
    let handler = Handler::start().await;
    let bridge = Bridge::start(
        &handler.upstream(),
        &[
            ("FLOWS_BRIDGE_SECRET", ""),
            ("FLOWS_BRIDGE_INSECURE_SKIP_SIGNATURE", "true"),
        ],
    );
    let sent = bridge.send_signed(&delivery(INIT), None).await;
    assert_eq!(sent.status, 200);
    assert!(
        handler
            .script
            .calls()
            .pop()
            .unwrap()
            .request
            .context
            .unwrap()
            .unverified
    );
    let warned = bridge
        .logs()
        .iter()
        .any(|l| l.contains("INSECURE") && l.contains("WARN"));
    assert!(warned, "{:?}", bridge.logs());
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_tolerance_accepts_any_timestamp() {
    let handler = Handler::start().await;
    let bridge = Bridge::start(
        &handler.upstream(),
        &[("FLOWS_BRIDGE_TIMESTAMP_TOLERANCE", "0")],
    );
    for stamp in ["2020-01-01T00:00:00.000Z", "2999-12-31T23:59:59.999Z"] {
        let mut d = delivery(INIT);
        d["timestamp"] = stamp.into();
        let sent = bridge.send(&d).await;
        assert_eq!(sent.status, 200, "{stamp}: {:?}", sent.body);
        assert_eq!(handler.script.calls_for(d["id"].as_str().unwrap()), 1);
    }
}

/// The tests run the bridge on one thread (the manifests' setting, tokio's
/// current-thread runtime); more threads use the multi-threaded runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_worker_threads_serve_the_same_replies() {
    let handler = Handler::start().await;
    for threads in ["2", "0"] {
        let bridge = Bridge::start(
            &handler.upstream(),
            &[("FLOWS_BRIDGE_WORKER_THREADS", threads)],
        );
        let deliveries: Vec<_> = (0..32).map(|_| delivery(ADVANCE)).collect();
        let sent = futures_util::future::join_all(deliveries.iter().map(|d| bridge.send(d))).await;
        for (d, sent) in deliveries.iter().zip(sent) {
            assert_eq!(sent.status, 200, "{threads} threads");
            assert!(
                sent.body.starts_with(br#"{"screen":"PAYMENT""#),
                "{threads} threads"
            );
            assert_eq!(handler.script.calls_for(d["id"].as_str().unwrap()), 1);
        }
    }
}

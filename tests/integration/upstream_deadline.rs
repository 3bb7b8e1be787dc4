//! The deadline and the connection keepalive against a handler over an
//! in-memory transport, on a paused clock: exact, and independent of how busy
//! the machine is.

use std::time::Duration;

use flows_bridge::{
    outcome::FallbackReason, proto::ExchangeRequest, transport::Io, upstream::Upstream,
};
use tokio::time::Instant;
use tonic::transport::Server;

use crate::support::Scripted;

/// An upstream whose one connection is an in-memory pipe to a tonic server.
async fn in_memory(script: Scripted) -> Upstream {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    tokio::spawn(
        Server::builder()
            .add_service(flows_bridge::proto::flow_handler_server::FlowHandlerServer::new(script))
            .serve_with_incoming(tokio_stream::once(Ok::<_, std::io::Error>(server_io))),
    );
    let client_io = std::sync::Mutex::new(Some(client_io));
    Upstream::with_connector(std::sync::Arc::new(move || {
        let io = client_io.lock().unwrap().take();
        Box::pin(async move {
            io.map(|io| Box::new(io) as Io)
                .ok_or_else(|| std::io::Error::other("one connection only"))
        })
    }))
}

fn request(behaviour: &str) -> Box<ExchangeRequest> {
    let mut json = serde_json::from_str::<serde_json::Value>(crate::support::INIT).unwrap();
    json["data"]["flowExchange"]["payload"] = serde_json::json!({ "behaviour": behaviour });
    json["timestamp"] = flows_bridge::sender::now_rfc3339().into();
    let body = flows_bridge::signature::VerifiedBody::unchecked(json.to_string().into());
    let mut request = flows_bridge::delivery::parse(&body).unwrap().request;
    request.context = Some(Default::default());
    request
}

#[tokio::test(start_paused = true)]
async fn the_wait_ends_exactly_at_the_deadline() {
    let script = Scripted::default();
    let upstream = in_memory(script.clone()).await;
    let started = Instant::now();
    let deadline = started + Duration::from_millis(600);
    let result = upstream
        .exchange(request("sleep:10000"), deadline, &http::HeaderMap::new())
        .await;
    assert_eq!(result.unwrap_err().0, FallbackReason::Deadline);
    assert_eq!(started.elapsed(), Duration::from_millis(600));
    // The handler was told the same budget: grpc-timeout of at most 600 ms.
    let seen = script.calls().pop().unwrap();
    let timeout = &seen.metadata["grpc-timeout"];
    let micros: u64 = timeout
        .trim_end_matches(char::is_alphabetic)
        .parse()
        .unwrap();
    let unit = timeout.trim_start_matches(char::is_numeric);
    let millis = match unit {
        "m" => micros,
        "u" => micros / 1000,
        "n" => micros / 1_000_000,
        other => panic!("unit {other}"),
    };
    assert!((590..=600).contains(&millis), "{timeout}");
    let context = seen.request.context.unwrap();
    assert_eq!(context.time_remaining.unwrap().seconds, 0);
}

#[tokio::test(start_paused = true)]
async fn a_deadline_already_past_never_calls_the_handler() {
    let script = Scripted::default();
    let upstream = in_memory(script.clone()).await;
    let deadline = Instant::now();
    tokio::time::advance(Duration::from_millis(1)).await;
    let result = upstream
        .exchange(request(""), deadline, &http::HeaderMap::new())
        .await;
    assert_eq!(result.unwrap_err().0, FallbackReason::Deadline);
    assert!(script.calls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_fast_reply_inside_the_budget_is_rendered() {
    let upstream = in_memory(Scripted::default()).await;
    let deadline = Instant::now() + Duration::from_millis(600);
    let body = upstream
        .exchange(request("sleep:599"), deadline, &http::HeaderMap::new())
        .await
        .unwrap();
    assert_eq!(&body[..], br#"{"screen":"SLEPT"}"#);
}

/// A handler that took the connection and then went silent (no FIN, not a
/// byte): the keepalive PING goes unanswered, the connection is closed, and
/// the next call opens a new one.
#[tokio::test(start_paused = true)]
async fn a_connection_that_goes_silent_is_replaced() {
    use std::sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering::SeqCst},
    };
    let opened = Arc::new(AtomicUsize::new(0));
    // The silent peers' ends, held open for the whole test.
    let silent = Arc::new(Mutex::new(Vec::new()));
    let upstream = Upstream::with_connector({
        let (opened, silent) = (opened.clone(), silent.clone());
        Arc::new(move || {
            let (client, server) = tokio::io::duplex(64 * 1024);
            opened.fetch_add(1, SeqCst);
            silent.lock().unwrap().push(server);
            Box::pin(async move { Ok(Box::new(client) as Io) })
        })
    });
    let probe = Duration::from_secs(1);
    assert!(!upstream.check_health(probe).await.is_ready());
    assert!(!upstream.check_health(probe).await.is_ready());
    assert_eq!(
        opened.load(SeqCst),
        1,
        "a connection not known dead is reused"
    );

    // PING at 10 s, unanswered at 15 s.
    tokio::time::sleep(Duration::from_secs(16)).await;
    assert!(!upstream.check_health(probe).await.is_ready());
    assert_eq!(opened.load(SeqCst), 2, "the silent connection was replaced");
}

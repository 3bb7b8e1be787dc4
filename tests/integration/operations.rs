//! The operations surface: configuration errors, readiness, metrics, secret
//! rotation and the SIGTERM drain, all against the real binary.

use std::{
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use flows_bridge::proto::flow_handler_server::FlowHandlerServer;

use crate::support::*;

#[test]
fn invalid_configuration_names_every_bad_value_and_exits_64() {
    let output = Bridge::command(
        "ftp://nope",
        &[
            ("FLOWS_BRIDGE_BUDGET", "600"),
            ("FLOWS_BRIDGE_MAX_BODY", "big"),
            ("FLOWS_BRIDGE_FALLBACK", "{}"),
            ("FLOWS_BRIDGE_LOG_FORMAT", "yaml"),
        ],
    )
    .stderr(Stdio::piped())
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for name in [
        "FLOWS_BRIDGE_UPSTREAM",
        "FLOWS_BRIDGE_BUDGET",
        "FLOWS_BRIDGE_MAX_BODY",
        "FLOWS_BRIDGE_FALLBACK",
        "FLOWS_BRIDGE_LOG_FORMAT",
    ] {
        assert!(stderr.contains(name), "{name} not named in:\n{stderr}");
    }
    assert!(!stderr.contains("listening"), "{stderr}");
}

#[test]
fn no_secret_no_start() {
    let output = Bridge::command("http://127.0.0.1:1", &[("FLOWS_BRIDGE_SECRET", "")])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("FLOWS_BRIDGE_SECRET") && stderr.contains("FLOWS_BRIDGE_SECRET_FILE"),
        "{stderr}"
    );
}

#[test]
fn help_lists_every_variable() {
    let output = std::process::Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for name in [
        "FLOWS_BRIDGE_LISTEN",
        "FLOWS_BRIDGE_ADMIN_LISTEN",
        "FLOWS_BRIDGE_UPSTREAM",
        "FLOWS_BRIDGE_SECRET",
        "FLOWS_BRIDGE_SECRET_FILE",
        "FLOWS_BRIDGE_BUDGET",
        "FLOWS_BRIDGE_TIMESTAMP_TOLERANCE",
        "FLOWS_BRIDGE_MAX_BODY",
        "FLOWS_BRIDGE_MAX_IN_FLIGHT",
        "FLOWS_BRIDGE_FALLBACK",
        "FLOWS_BRIDGE_SHUTDOWN_GRACE",
        "FLOWS_BRIDGE_IDEMPOTENCY_MEMORY",
        "FLOWS_BRIDGE_LOG_FORMAT",
    ] {
        assert!(help.contains(name), "{name} missing from --help");
    }
    // Every variable `--help` names has a row in the README's configuration table.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let variables: Vec<&str> = help
        .split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split(['=', ']']).next())
        .collect();
    assert!(variables.len() > 25, "{variables:?}");
    for name in variables {
        assert!(
            readme.contains(&format!("| `{name}` |")),
            "{name} has no row in README.md's configuration table"
        );
    }
    let bad_flag = std::process::Command::new(BIN)
        .args(["serve", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(bad_flag.status.code(), Some(64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_upstream_and_liveness_does_not() {
    let port = closed_port();
    let bridge = Bridge::start(&format!("http://{port}"), &[]);
    assert_eq!(bridge.admin_get("/livez").await.0, 200);
    bridge.wait_ready(503).await;
    let (_, body) = bridge.admin_get("/readyz").await;
    assert!(body.contains(r#""upstream":"unreachable""#), "{body}");
    assert_eq!(bridge.metric("flows_bridge_upstream_ready").await, 0.0);

    let handler = Handler::start_on(port, true).await;
    bridge.wait_ready(200).await;
    let (_, body) = bridge.admin_get("/readyz").await;
    assert!(body.contains(r#""upstream":"serving""#), "{body}");
    assert_eq!(bridge.metric("flows_bridge_upstream_ready").await, 1.0);

    handler.stop().await;
    bridge.wait_ready(503).await;
    assert_eq!(bridge.admin_get("/livez").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_without_health_service_is_ready_with_a_warning() {
    let handler = Handler::start_on("127.0.0.1:0".parse().unwrap(), false).await;
    let bridge = Bridge::start(&handler.upstream(), &[]);
    bridge.wait_ready(200).await;
    let (_, body) = bridge.admin_get("/readyz").await;
    assert!(body.contains(r#""upstream":"no_health_service""#), "{body}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let warnings = bridge
        .logs()
        .iter()
        .filter(|l| l.contains("no grpc.health.v1 service"))
        .count();
    assert_eq!(warnings, 1, "warned {warnings} times");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_reporting_not_serving_is_not_ready() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_not_serving::<FlowHandlerServer<Scripted>>()
        .await;
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .add_service(FlowHandlerServer::new(Scripted::default()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let bridge = Bridge::start(&format!("http://{addr}"), &[]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, body) = bridge.admin_get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(r#""upstream":"not_serving""#), "{body}");
    reporter.set_serving::<FlowHandlerServer<Scripted>>().await;
    bridge.wait_ready(200).await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_and_are_prometheus_text() {
    let handler = Handler::start().await;
    let bridge = Bridge::start(&handler.upstream(), &[]);
    let (status, text) = bridge.admin_get("/metrics").await;
    assert_eq!(status, 200);
    for family in [
        "flows_bridge_requests_total",
        "flows_bridge_fallbacks_total",
        "flows_bridge_rejections_total",
        "flows_bridge_request_duration_seconds",
        "flows_bridge_upstream_duration_seconds",
        "flows_bridge_in_flight",
        "flows_bridge_upstream_ready",
    ] {
        let described = format!("# TYPE {} ", family.trim_end_matches("_total"));
        assert!(text.contains(&described), "{family} missing");
    }
    assert!(
        text.contains(r#"flows_bridge_request_duration_seconds_bucket{le="0.6"}"#),
        "budget bucket missing"
    );
    let count = "flows_bridge_request_duration_seconds_count";
    assert_eq!(bridge.metric(count).await, 0.0);
    bridge.send(&delivery(INIT)).await;
    bridge.send(&scripted("error:13")).await;
    assert_eq!(bridge.metric(count).await, 2.0);
    assert_eq!(
        bridge
            .metric("flows_bridge_upstream_duration_seconds_count")
            .await,
        2.0
    );
    assert_eq!(
        bridge
            .metric(r#"flows_bridge_requests_total{event="init",outcome="fallback"}"#)
            .await,
        1.0
    );
    assert_eq!(bridge.metric("flows_bridge_in_flight").await, 0.0);
    assert_eq!(bridge.metric("flows_bridge_secrets").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits_0() {
    let handler = Handler::start().await;
    let mut bridge = Bridge::start(
        &handler.upstream(),
        &[
            ("FLOWS_BRIDGE_BUDGET", "5s"),
            ("FLOWS_BRIDGE_SHUTDOWN_DELAY", "500ms"),
            ("FLOWS_BRIDGE_SHUTDOWN_GRACE", "5s"),
        ],
    );
    bridge.wait_ready(200).await;
    let slow = scripted("sleep:1200");
    let (sent, ()) = tokio::join!(bridge.send(&slow), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        bridge.terminate();
        // During the delay: not ready, still accepting.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (status, body) = bridge.admin_get("/readyz").await;
        assert_eq!(status, 503, "{body}");
        assert!(body.contains(r#""draining":true"#), "{body}");
        let during_delay = bridge.send(&delivery(INIT)).await;
        assert_eq!(during_delay.status, 200);
        assert!(during_delay.body.starts_with(br#"{"screen":"WELCOME""#));
    });
    // The in-flight request got its real reply, not the fallback.
    assert_eq!(sent.status, 200);
    assert_eq!(&sent.body[..], br#"{"screen":"SLEPT"}"#);
    let status = bridge.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{:?}", bridge.logs());
    // After exit nothing listens.
    assert!(std::net::TcpStream::connect(bridge.addr).is_err());
    bridge
        .wait_for_log("drained", |l| l["message"] == "drained; exiting")
        .await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mounted_secret_rotation_by_symlink_swap() {
    use std::os::unix::fs::symlink;
    let handler = Handler::start().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // The layout Kubernetes uses for a mounted Secret.
    let publish = |version: &str, content: &str| {
        std::fs::create_dir(root.join(version)).unwrap();
        std::fs::write(root.join(version).join("webhook-secret"), content).unwrap();
        let tmp = root.join("..data_tmp");
        symlink(version, &tmp).unwrap();
        std::fs::rename(&tmp, root.join("..data")).unwrap();
    };
    publish("..v1", "old-secret\n");
    symlink("..data/webhook-secret", root.join("webhook-secret")).unwrap();

    let file = root.join("webhook-secret");
    let bridge = Bridge::start(
        &handler.upstream(),
        &[
            ("FLOWS_BRIDGE_SECRET", ""),
            ("FLOWS_BRIDGE_SECRET_FILE", file.to_str().unwrap()),
            ("FLOWS_BRIDGE_SECRET_RELOAD_INTERVAL", "100ms"),
        ],
    );
    let status_with = |secret: &'static str| {
        let bridge = &bridge;
        async move {
            bridge
                .send_signed(&delivery(INIT), Some(secret.as_bytes()))
                .await
                .status
                .as_u16()
        }
    };
    assert_eq!(status_with("old-secret").await, 200);
    assert_eq!(status_with("new-secret").await, 401);

    publish_and_wait(
        root,
        &publish,
        "..v2",
        "old-secret\nnew-secret\n",
        || status_with("new-secret"),
        200,
    )
    .await;
    assert_eq!(
        status_with("old-secret").await,
        200,
        "old must still work during the overlap"
    );

    publish_and_wait(
        root,
        &publish,
        "..v3",
        "new-secret\n",
        || status_with("old-secret"),
        401,
    )
    .await;
    assert_eq!(status_with("new-secret").await, 200);
    assert_eq!(bridge.metric("flows_bridge_secrets").await, 1.0);
}

async fn publish_and_wait<F, Fut>(
    _root: &Path,
    publish: &impl Fn(&str, &str),
    version: &str,
    content: &str,
    probe: F,
    want: u16,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = u16>,
{
    publish(version, content);
    let deadline = Instant::now() + Duration::from_secs(5);
    while probe().await != want {
        assert!(
            Instant::now() < deadline,
            "rotation to {version} not picked up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_follows_readyz() {
    let port = closed_port();
    let bridge = Bridge::start(&format!("http://{port}"), &[]);
    let url = format!("http://{}/readyz", bridge.admin);
    let probe = |url: String| async move {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(BIN)
                .args(["healthcheck", "--url", &url])
                .env_clear()
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    };
    bridge.wait_ready(503).await;
    let down = probe(url.clone()).await;
    assert_eq!(down.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&down.stderr).contains("503"));
    let _handler = Handler::start_on(port, true).await;
    bridge.wait_ready(200).await;
    assert!(probe(url).await.status.success());
    let nothing = probe(format!("http://{}/readyz", closed_port())).await;
    assert_eq!(nothing.status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_idle_connections_make_room() {
    use tokio::io::AsyncReadExt;
    let handler = Handler::start().await;
    let bridge = Bridge::start(
        &handler.upstream(),
        &[("FLOWS_BRIDGE_MAX_CONNECTIONS", "2")],
    );
    let mut idle_a = tokio::net::TcpStream::connect(bridge.addr).await.unwrap();
    let mut idle_b = tokio::net::TcpStream::connect(bridge.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Both slots are held by idle connections: a third closes them, and is served.
    let client = flows_bridge::sender::http_client();
    let request =
        flows_bridge::sender::request(bridge.addr, "/", &delivery(INIT), Some(SECRET.as_bytes()));
    let sent = tokio::time::timeout(
        Duration::from_secs(5),
        flows_bridge::sender::send(&client, request),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(sent.status, 200);
    for idle in [&mut idle_a, &mut idle_b] {
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(1), idle.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0) | Err(_))), "still open: {read:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_restarted_gracefully_gets_the_next_delivery() {
    let port = closed_port();
    let first = Handler::start_on(port, true).await;
    let bridge = Bridge::start(&first.upstream(), &[]);
    bridge.wait_ready(200).await;
    let before = delivery(INIT);
    assert!(bridge.send(&before).await.body.starts_with(br#"{"screen""#));

    // GOAWAY, in-flight calls finished, port closed; a new process on it.
    first.stop().await;
    let second = Handler::start_on(port, true).await;
    let after = delivery(INIT);
    let sent = bridge.send(&after).await;
    assert_eq!(sent.status, 200);
    assert!(sent.body.starts_with(br#"{"screen""#), "{:?}", sent.body);
    assert_eq!(second.script.calls_for(after["id"].as_str().unwrap()), 1);
}

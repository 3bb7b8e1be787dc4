//! The local tooling in the binary: convert, sign, send, doctor, protoset.

use std::process::{Command, Output};

use prost::Message as _;
use serde_json::Value as Json;

use crate::support::*;

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).env_clear().output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn convert_prints_the_request_as_proto_json() {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/vectors/deliveries/screen_advance_full.json"
    );
    let output = run(&["convert", file, "--webhook-id", "wh_9"]);
    assert!(output.status.success(), "{output:?}");
    let json: Json = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["event"], "EVENT_SCREEN_ADVANCE");
    assert_eq!(json["flowExchange"]["screen"], "WELCOME");
    assert_eq!(json["context"]["webhookId"], "wh_9");
    assert_eq!(json["context"]["timeRemaining"], "0.600s");
    let bad = run(&["convert", "/nonexistent.json"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("cannot read"));
}

#[test]
fn sign_matches_the_bridge() {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/vectors/deliveries/init.json"
    );
    let output = run(&["sign", "--secret", "s3cret", file]);
    assert!(output.status.success(), "{output:?}");
    let body = std::fs::read(file).unwrap();
    let want = flows_bridge::signature::sign(b"s3cret", &body);
    assert_eq!(stdout(&output).trim(), want);
    let header = run(&["sign", "--secret", "s3cret", "--header", file]);
    assert_eq!(
        stdout(&header).trim(),
        format!("X-Webhook-Signature: {want}")
    );
}

#[test]
fn protoset_holds_the_contract() {
    let output = run(&["protoset"]);
    assert!(output.status.success());
    let set = prost_types::FileDescriptorSet::decode(output.stdout.as_slice()).unwrap();
    let names: Vec<_> = set.file.iter().map(|f| f.name().to_owned()).collect();
    assert!(
        names.contains(&"platica/flows/v1/flows.proto".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"google/protobuf/struct.proto".to_owned()),
        "{names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_posts_a_signed_delivery() {
    let handler = Handler::start().await;
    let bridge = Bridge::start(&handler.upstream(), &[]);
    let url = format!("http://{}/", bridge.addr);
    let output = tokio::task::spawn_blocking(move || {
        run(&[
            "send",
            "--url",
            &url,
            "--secret",
            SECRET,
            "--event",
            "screen_advance",
            "--payload",
            r#"{"selected_product":"p1"}"#,
        ])
    })
    .await
    .unwrap();
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.starts_with("200 OK in "), "{text}");
    assert!(text.contains(r#""amount_mxn": 199"#), "{text}");
    assert_eq!(handler.script.calls().len(), 1);

    let url = format!("http://{}/", bridge.addr);
    let wrong =
        tokio::task::spawn_blocking(move || run(&["send", "--url", &url, "--secret", "wrong"]))
            .await
            .unwrap();
    assert_eq!(wrong.status.code(), Some(1));
    assert!(stdout(&wrong).contains("401"), "{}", stdout(&wrong));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_a_good_handler() {
    let handler = Handler::start().await;
    let upstream = handler.upstream();
    let output = tokio::task::spawn_blocking(move || {
        run(&["doctor", "--upstream", &upstream, "--requests", "50"])
    })
    .await
    .unwrap();
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    for line in [
        "✓ reachable",
        "✓ health",
        "✓ reflection",
        "✓ vectors",
        "✓ latency",
        "✓ deadline",
        "ready for production",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
    assert!(
        !text.contains('\u{1b}'),
        "no colours when not a terminal:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_warns_and_fails_where_it_should() {
    // No health service, no reflection: warnings, still passing the vectors.
    let bare = Handler::start_on("127.0.0.1:0".parse().unwrap(), false).await;
    let upstream = bare.upstream();
    let output = tokio::task::spawn_blocking(move || {
        run(&["doctor", "--upstream", &upstream, "--requests", "10"])
    })
    .await
    .unwrap();
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("! health") && text.contains("! reflection"),
        "{text}"
    );
    assert!(text.contains("ready, with warnings"), "{text}");

    // Nothing listening: a failure and exit 1.
    let closed = format!("http://{}", closed_port());
    let output = tokio::task::spawn_blocking(move || run(&["doctor", "--upstream", &closed]))
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).contains("✗ reachable"),
        "{}",
        stdout(&output)
    );
}

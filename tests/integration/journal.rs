//! The fallback journal records every delivery the handler could not answer,
//! and `flows-bridge replay` sends them to a handler later.

use std::{process::Command, time::Duration};

use serde_json::Value as Json;

use crate::support::*;

/// Runs `flows-bridge replay JOURNAL --upstream UPSTREAM ARGS...` off the runtime.
async fn replay(
    journal: &std::path::Path,
    upstream: String,
    args: &[&str],
) -> std::process::Output {
    let mut command = Command::new(BIN);
    command
        .args(["replay", journal.to_str().unwrap(), "--upstream", &upstream])
        .args(args)
        .env_clear();
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn read_records(path: &std::path::Path) -> Vec<Json> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallbacks_are_journaled_and_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("fallbacks.jsonl");
    let handler = Handler::start().await;
    let bridge = Bridge::start(
        &handler.upstream(),
        &[
            ("FLOWS_BRIDGE_JOURNAL", journal.to_str().unwrap()),
            ("FLOWS_BRIDGE_BUDGET", "300ms"),
        ],
    );
    // A reply, a deadline, an error, an invalid reply, and a duplicate of the deadline.
    let ok = delivery(ADVANCE_FULL);
    let slow = scripted("sleep:1000");
    let error = scripted("error:13");
    let invalid = scripted("empty");
    assert_eq!(bridge.send(&ok).await.status, 200);
    for d in [&slow, &error, &invalid, &slow] {
        assert_fallback(&bridge.send(d).await);
    }
    // A rejection is not a fallback: not journaled.
    assert_eq!(
        bridge
            .send_signed(&delivery(INIT), Some(b"wrong"))
            .await
            .status,
        401
    );

    // The counter moves once a batch is synced: then the lines are durable.
    for _ in 0..250 {
        if bridge.metric("flows_bridge_journal_records_total").await >= 3.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let records = read_records(&journal);
    let reasons: Vec<_> = records
        .iter()
        .map(|r| r["reason"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(reasons, ["deadline", "upstream_error", "invalid_reply"]);
    assert_eq!(records[0]["delivery_id"], slow["id"]);
    assert_eq!(records[0]["webhook_id"], "wh_demo");
    assert_eq!(records[0]["delivery"], slow, "the whole delivery, as sent");
    assert_eq!(
        bridge.metric("flows_bridge_journal_records_total").await,
        3.0
    );
    assert_eq!(
        bridge.metric("flows_bridge_journal_dropped_total").await,
        0.0
    );

    // Replay the errors (not the deadline) to a handler: each is called again,
    // marked as a replay, with its original id.
    let replayed = Handler::start().await;
    let output = replay(
        &journal,
        replayed.upstream(),
        &["--reason", "upstream_error"],
    )
    .await;
    let text = String::from_utf8_lossy(&output.stdout);
    // The scripted handler fails "error:13" again: the replay reports it.
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("0 replayed, 1 failed, 2 skipped"), "{text}");
    let calls = replayed.script.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].request.id, error["id"].as_str().unwrap());
    assert!(calls[0].request.context.as_ref().unwrap().replay);

    let output = replay(
        &journal,
        replayed.upstream(),
        &["--reason", "deadline", "--timeout", "3s"],
    )
    .await;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(text.contains(r#"-> {"screen":"SLEPT"}"#), "{text}");
    assert!(text.contains("1 replayed, 0 failed, 2 skipped"), "{text}");
}

#[test]
fn an_unwritable_journal_stops_the_start() {
    let output = Bridge::command(
        "http://127.0.0.1:1",
        &[("FLOWS_BRIDGE_JOURNAL", "/proc/flows-bridge/journal")],
    )
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("fallback journal"));
}

//! Hostile bodies and signatures: deeply nested JSON, invalid UTF-8,
//! duplicate keys, huge numbers and `1e999`, absurd timestamps, every
//! malformed signature header form, a signature over another body, and
//! validly signed bodies that are not flows deliveries. Each case asserts the
//! exact answer; all of them together must be counted exactly by reason, and
//! must not slow down a well-behaved client or grow the bridge's memory.
//! Every error body (and every log line) is checked for personal data.

use std::{collections::BTreeMap, time::Duration};

use bytes::Bytes;
use flows_bridge::{sender, signature};
use http::{HeaderName, HeaderValue};
use serde_json::{Value as Json, json};

use crate::{handler::ChaosHandler, support::*};

/// What a case must get back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// This status with this `error`.
    Reject(u16, &'static str),
    /// 200 with the handler's real reply.
    Reply,
}

use Expect::*;

/// How the request is signed.
#[derive(Debug, Clone)]
enum Sig {
    /// The correct signature of the bytes sent.
    Valid,
    None,
    /// These header values, in order (raw bytes, possibly not UTF-8).
    Raw(Vec<Vec<u8>>),
}

struct Case {
    name: String,
    body: Vec<u8>,
    sig: Sig,
    headers: Vec<(&'static str, Vec<u8>)>,
    expect: Expect,
}

fn case(name: impl Into<String>, body: impl Into<Vec<u8>>, expect: Expect) -> Case {
    Case {
        name: name.into(),
        body: body.into(),
        sig: Sig::Valid,
        headers: Vec::new(),
        expect,
    }
}

fn signed_with(name: impl Into<String>, body: &[u8], values: Vec<Vec<u8>>, expect: Expect) -> Case {
    Case {
        sig: Sig::Raw(values),
        ..case(name, body, expect)
    }
}

/// A fresh delivery carrying personal data, with `edit` applied, as bytes.
fn edited(edit: impl FnOnce(&mut Json)) -> Vec<u8> {
    let mut d = personal_delivery();
    edit(&mut d);
    d.to_string().into_bytes()
}

/// Replaces the first occurrence of `from` in the serialized delivery.
fn spliced(from: &str, to: &str) -> Vec<u8> {
    let text = personal_delivery().to_string();
    assert!(text.contains(from), "{from} not in the delivery");
    text.replacen(from, to, 1).into_bytes()
}

/// A fresh delivery whose top-level `"id":"…"` is replaced by `to(id)`.
fn with_id(to: impl FnOnce(&str) -> String) -> Vec<u8> {
    let d = personal_delivery();
    let id = d["id"].as_str().unwrap().to_owned();
    d.to_string()
        .replacen(&format!(r#""id":"{id}""#), &to(&id), 1)
        .into_bytes()
}

/// A fresh delivery whose payload holds `value` (raw JSON text).
fn with_payload_value(value: &str) -> Vec<u8> {
    spliced(
        r#""payload":{"#,
        &format!(r#""payload":{{"hostile":{value},"#),
    )
}

/// A fresh delivery with `timestamp` as given (raw JSON text).
fn with_timestamp(raw: &str) -> Vec<u8> {
    let d = personal_delivery();
    let now = d["timestamp"].as_str().unwrap().to_owned();
    d.to_string()
        .replacen(&format!("\"{now}\""), raw, 1)
        .into_bytes()
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let good = personal_delivery().to_string().into_bytes();
    let mac = signature::sign(SECRET.as_bytes(), &good);
    let hex = mac.strip_prefix("sha256=").unwrap().to_owned();

    // Deeply nested JSON: serde_json's recursion limit (128) stops it.
    let deep = |open: &str, close: &str, n: usize| format!("{}{}", open.repeat(n), close.repeat(n));
    cases.push(case(
        "200 000 nested arrays",
        deep("[", "]", 200_000),
        Reject(400, "malformed_json"),
    ));
    cases.push(case(
        "100 000 nested objects",
        deep(r#"{"a":"#, "}", 100_000),
        Reject(400, "malformed_json"),
    ));
    cases.push(case(
        "payload nested 130 deep",
        with_payload_value(&deep("[", "]", 130)),
        Reject(400, "malformed_json"),
    ));
    // Within serde_json's limit but past what protobuf decoders read (prost,
    // C++, Java: 100 nested messages; here 4 + 2 per array): refused up front
    // rather than sent to a handler that could not decode it.
    for (depth, expect) in [
        (100, Reject(422, "invalid_delivery")),
        (49, Reject(422, "invalid_delivery")),
        (48, Reply),
    ] {
        cases.push(case(
            format!("payload nested {depth} deep"),
            with_payload_value(&deep("[", "]", depth)),
            expect,
        ));
    }
    cases.push(case(
        "payload nested 20 deep",
        with_payload_value(&deep("[", "]", 20)),
        Reply,
    ));

    // Invalid UTF-8 and other encodings.
    let mut bad = personal_delivery().to_string().into_bytes();
    let at = bad.windows(5).position(|w| w == b"Juan ").unwrap();
    bad[at + 1] = 0xff;
    cases.push(case(
        "invalid UTF-8 in a string",
        bad,
        Reject(400, "malformed_json"),
    ));
    let mut overlong = personal_delivery().to_string().into_bytes();
    let at = overlong.windows(4).position(|w| w == b"Juan").unwrap();
    // "/" encoded in two bytes (0xc0 0xaf): an overlong form, invalid UTF-8.
    overlong.splice(at + 1..at + 1, [0xc0, 0xaf]);
    cases.push(case(
        "overlong UTF-8 in a string",
        overlong,
        Reject(400, "malformed_json"),
    ));
    cases.push(case(
        "a lone surrogate escape",
        spliced(r#""Juan""#, r#""\ud800Juan""#),
        Reject(400, "malformed_json"),
    ));
    cases.push(case(
        "a byte order mark",
        [b"\xef\xbb\xbf".as_slice(), &good].concat(),
        Reject(400, "malformed_json"),
    ));
    cases.push(case(
        "UTF-16",
        personal_delivery()
            .to_string()
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect::<Vec<u8>>(),
        Reject(400, "malformed_json"),
    ));
    cases.push(case(
        "an escaped NUL in a string (valid JSON)",
        with_payload_value(r#""a\u0000b""#),
        Reply,
    ));
    cases.push(Case {
        headers: vec![("x-webhook-event-id", b"\xff\xfe-not-utf8".to_vec())],
        ..case(
            "a non-UTF-8 X-Webhook-Event-Id",
            good.clone(),
            Reject(400, "header_mismatch"),
        )
    });

    // Duplicate keys: readers disagree on which value wins, so an object with
    // a key twice is malformed, at any depth.
    let dup = Reject(400, "malformed_json");
    cases.push(case(
        "duplicate id",
        with_id(|id| format!(r#""id":"dup-first","id":"{id}""#)),
        dup,
    ));
    cases.push(case(
        "duplicate event, the last not a flows event",
        spliced(r#""event":"#, r#""event":"whatsapp.flows.screen_advance","event":"whatsapp.message.received","ignored":"#),
        dup,
    ));
    cases.push(case(
        "duplicate event, the last a flows event",
        spliced(
            r#""event":"#,
            r#""event":"whatsapp.message.received","event":"#,
        ),
        dup,
    ));
    let now = sender::now_rfc3339();
    cases.push(case(
        "duplicate timestamp",
        with_timestamp(&format!(
            r#""2020-01-01T00:00:00.000Z","timestamp":"{now}""#
        )),
        dup,
    ));
    cases.push(case(
        "duplicate key inside the payload",
        spliced(r#""payload":{"#, r#""payload":{"pin":"1","pin":"2","#),
        dup,
    ));

    // Numbers.
    for (name, value, expect) in [
        ("1e308", "1e308", Reply),
        ("1e999", "1e999", Reject(400, "malformed_json")),
        ("-1e999", "-1e999", Reject(400, "malformed_json")),
        ("1e-999 (underflows to 0)", "1e-999", Reply),
        (
            "a 30-digit integer",
            "123456789012345678901234567890",
            Reply,
        ),
        (
            "a 10 000-digit integer",
            &"9".repeat(10_000),
            Reject(400, "malformed_json"),
        ),
        ("-0", "-0", Reply),
        ("u64::MAX + 1", "18446744073709551616", Reply),
        ("NaN (not JSON)", "NaN", Reject(400, "malformed_json")),
        (
            "Infinity (not JSON)",
            "Infinity",
            Reject(400, "malformed_json"),
        ),
    ] {
        cases.push(case(
            format!("payload number {name}"),
            with_payload_value(value),
            expect,
        ));
    }
    cases.push(case(
        "messageCount past i64",
        spliced(
            r#""messageCount":3"#,
            r#""messageCount":9223372036854775808"#,
        ),
        Reply,
    ));
    cases.push(case(
        "id as 1e999",
        with_id(|_| r#""id":1e999"#.to_owned()),
        Reject(400, "malformed_json"),
    ));

    // Timestamps.
    for (name, raw, expect) in [
        (
            "the epoch",
            r#""1970-01-01T00:00:00Z""#,
            Reject(401, "timestamp_stale"),
        ),
        (
            "year 1",
            r#""0001-01-01T00:00:00Z""#,
            Reject(401, "timestamp_stale"),
        ),
        (
            "year 0",
            r#""0000-01-01T00:00:00Z""#,
            Reject(401, "timestamp_stale"),
        ),
        (
            "year -1",
            r#""-0001-01-01T00:00:00Z""#,
            Reject(401, "timestamp_stale"),
        ),
        (
            "far future",
            r#""2999-01-01T00:00:00.000Z""#,
            Reject(401, "timestamp_future"),
        ),
        (
            "9999-12-31T23:59:60Z",
            r#""9999-12-31T23:59:60Z""#,
            Reject(401, "timestamp_future"),
        ),
        (
            "year +10000",
            r#""+10000-01-01T00:00:00Z""#,
            Reject(401, "timestamp_future"),
        ),
        (
            "10000 (five digits, no sign)",
            r#""10000-01-01T00:00:00Z""#,
            Reject(422, "invalid_delivery"),
        ),
        (
            "past i64 seconds",
            r#""+292277026597-01-01T00:00:00Z""#,
            Reject(422, "invalid_delivery"),
        ),
        (
            "a 30-digit year",
            r#""+999999999999999999999999999999-01-01T00:00:00Z""#,
            Reject(422, "invalid_delivery"),
        ),
        (
            "February 30",
            r#""2026-02-30T00:00:00Z""#,
            Reject(422, "invalid_delivery"),
        ),
        (
            "month 13",
            r#""2026-13-01T00:00:00Z""#,
            Reject(422, "invalid_delivery"),
        ),
        (
            "hour 24",
            r#""2026-05-06T24:00:00Z""#,
            Reject(422, "invalid_delivery"),
        ),
        (
            "second 61",
            r#""2026-05-06T19:00:61Z""#,
            Reject(422, "invalid_delivery"),
        ),
        (
            "a fraction point without digits",
            r#""2026-05-06T19:00:30.Z""#,
            Reject(422, "invalid_delivery"),
        ),
        (
            "offset +24:00",
            r#""2026-05-06T19:00:30+24:00""#,
            Reject(422, "invalid_delivery"),
        ),
        ("empty", r#""""#, Reject(422, "invalid_delivery")),
        ("now", r#""now""#, Reject(422, "invalid_delivery")),
        ("a number", "1778094030", Reject(422, "invalid_delivery")),
        ("null", "null", Reject(422, "invalid_delivery")),
        (
            "an object",
            r#"{"seconds":1}"#,
            Reject(422, "invalid_delivery"),
        ),
    ] {
        cases.push(case(
            format!("timestamp {name}"),
            with_timestamp(raw),
            expect,
        ));
    }
    // Fresh, in forms RFC 3339 allows (and one it does not, which the parser
    // accepts too: see the README of this suite).
    let fresh = |form: &str| with_timestamp(&format!("\"{form}\""));
    cases.push(case(
        "timestamp fresh, lowercase t and z",
        fresh(&now.replace('T', "t").replace('Z', "z")),
        Reply,
    ));
    cases.push(case(
        "timestamp fresh, space separator",
        fresh(&now.replace('T', " ")),
        Reply,
    ));
    cases.push(case(
        "timestamp fresh, no offset (lax)",
        fresh(now.trim_end_matches('Z')),
        Reply,
    ));
    cases.push(case(
        "timestamp fresh, 20 fraction digits (truncated to 9)",
        fresh(&now.replace('Z', "00000000000000000Z")),
        Reply,
    ));

    // Every malformed signature header form.
    let tag = |s: &str| format!("sha256={s}").into_bytes();
    let bad_forms: Vec<(&str, Vec<u8>)> = vec![
        ("empty", b"".to_vec()),
        ("prefix only", b"sha256=".to_vec()),
        ("no =", format!("sha256{hex}").into_bytes()),
        ("hex without prefix", hex.clone().into_bytes()),
        ("uppercase prefix", format!("SHA256={hex}").into_bytes()),
        ("sha-256 prefix", format!("sha-256={hex}").into_bytes()),
        ("sha1", format!("sha1={}", &hex[..40]).into_bytes()),
        ("sha512 length", tag(&hex.repeat(2))),
        ("63 digits", tag(&hex[..63])),
        ("62 digits", tag(&hex[..62])),
        ("65 digits", tag(&format!("{hex}0"))),
        ("66 digits", tag(&format!("{hex}00"))),
        ("not hex", tag(&"g".repeat(64))),
        (
            "space inside",
            tag(&format!("{} {}", &hex[..32], &hex[32..])),
        ),
        ("space after =", format!("sha256= {hex}").into_bytes()),
        (
            "two signatures",
            format!("sha256={hex},sha256={hex}").into_bytes(),
        ),
        (
            "Stripe style",
            format!("t=1778094030,v1={hex}").into_bytes(),
        ),
        (
            "base64",
            tag("uHsL2QY0lI2BvP9VwLn7dtqFkLlWzM3rQwq3UPCvxJQ="),
        ),
        ("0x prefix", tag(&format!("0x{}", &hex[..62]))),
        ("non-UTF-8", [b"sha256=".as_slice(), &[0xff; 64]].concat()),
        (
            "no-break spaces around",
            format!("\u{a0}sha256={hex}\u{a0}").into_bytes(),
        ),
        ("15 KiB", tag(&"a".repeat(15 * 1024))),
    ];
    for (name, value) in bad_forms {
        cases.push(signed_with(
            format!("signature {name}"),
            &good,
            vec![value],
            Reject(401, "signature_malformed"),
        ));
    }
    cases.push(Case {
        sig: Sig::None,
        ..case(
            "signature missing",
            good.clone(),
            Reject(401, "signature_missing"),
        )
    });
    cases.push(signed_with(
        "signature in uppercase hex",
        &good,
        vec![tag(&hex.to_uppercase())],
        Reply,
    ));
    // Two X-Webhook-Signature lines: only the first is read.
    cases.push(signed_with(
        "two signature headers, the first valid",
        &good,
        vec![mac.clone().into_bytes(), b"garbage".to_vec()],
        Reply,
    ));
    cases.push(signed_with(
        "two signature headers, the second valid",
        &good,
        vec![b"garbage".to_vec(), mac.clone().into_bytes()],
        Reject(401, "signature_malformed"),
    ));
    // A signature over something else.
    let other = personal_delivery().to_string().into_bytes();
    cases.push(signed_with(
        "signature over a different body",
        &good,
        vec![signature::sign(SECRET.as_bytes(), &other).into_bytes()],
        Reject(401, "signature_mismatch"),
    ));
    cases.push(signed_with(
        "signature with another secret",
        &good,
        vec![signature::sign(b"not-the-secret", &good).into_bytes()],
        Reject(401, "signature_mismatch"),
    ));
    cases.push(signed_with(
        "signature of the body without its last byte",
        &good,
        vec![signature::sign(SECRET.as_bytes(), &good[..good.len() - 1]).into_bytes()],
        Reject(401, "signature_mismatch"),
    ));
    cases.push(signed_with(
        "all-zero signature",
        &good,
        vec![tag(&"0".repeat(64))],
        Reject(401, "signature_mismatch"),
    ));

    // Validly signed, not a flows delivery.
    for (name, body, expect) in [
        ("empty body", b"".to_vec(), Reject(400, "malformed_json")),
        (
            "whitespace",
            b"  \n".to_vec(),
            Reject(400, "malformed_json"),
        ),
        ("{}", b"{}".to_vec(), Reject(422, "invalid_delivery")),
        ("[]", b"[]".to_vec(), Reject(422, "invalid_delivery")),
        ("null", b"null".to_vec(), Reject(422, "invalid_delivery")),
        (
            "a string",
            br#""whatsapp.flows.init""#.to_vec(),
            Reject(422, "invalid_delivery"),
        ),
        ("a number", b"42".to_vec(), Reject(422, "invalid_delivery")),
        (
            "two objects",
            [good.as_slice(), &good].concat(),
            Reject(400, "malformed_json"),
        ),
        (
            "trailing garbage",
            [good.as_slice(), b" x"].concat(),
            Reject(400, "malformed_json"),
        ),
        (
            "truncated",
            good[..good.len() / 2].to_vec(),
            Reject(400, "malformed_json"),
        ),
        (
            "a message event",
            edited(|d| d["event"] = json!("whatsapp.message.received")),
            Reject(422, "unsupported_event"),
        ),
        (
            "event whatsapp.flows. only",
            edited(|d| d["event"] = json!("whatsapp.flows.")),
            Reply,
        ),
        (
            "id empty",
            edited(|d| d["id"] = json!("")),
            Reject(422, "invalid_delivery"),
        ),
        (
            "id a number",
            edited(|d| d["id"] = json!(7)),
            Reject(422, "invalid_delivery"),
        ),
        (
            "id missing",
            edited(|d| {
                d.as_object_mut().unwrap().remove("id");
            }),
            Reject(422, "invalid_delivery"),
        ),
        (
            "event missing",
            edited(|d| {
                d.as_object_mut().unwrap().remove("event");
            }),
            Reject(422, "invalid_delivery"),
        ),
        (
            "data missing",
            edited(|d| {
                d.as_object_mut().unwrap().remove("data");
            }),
            Reject(422, "invalid_delivery"),
        ),
        (
            "data an array",
            edited(|d| d["data"] = json!([1])),
            Reject(422, "invalid_delivery"),
        ),
        (
            "flowExchange missing",
            edited(|d| {
                d["data"].as_object_mut().unwrap().remove("flowExchange");
            }),
            Reject(422, "invalid_delivery"),
        ),
        (
            "action a number",
            edited(|d| d["data"]["flowExchange"]["action"] = json!(1)),
            Reject(422, "invalid_delivery"),
        ),
        (
            "a GitHub webhook",
            br#"{"zen":"Keep it logically awesome.","hook_id":1}"#.to_vec(),
            Reject(422, "invalid_delivery"),
        ),
    ] {
        cases.push(case(format!("not a delivery: {name}"), body, expect));
    }
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bodies_get_exact_answers() {
    let _serial = serial().await;
    let handler = ChaosHandler::start().await;
    let mut bridge = Bridge::start(&handler.upstream(), &[]);
    let before = quiet_latency(&bridge, 20).await;
    let rss_before = bridge.rss_kib();
    let probe = Probe::start(&bridge, Duration::from_millis(10));
    let client = sender::http_client();

    let cases = cases();
    let mut failures = Vec::new();
    let mut bodies = Vec::new();
    let mut rejected: BTreeMap<&str, u64> = BTreeMap::new();
    let mut replies = 0;
    for case in &cases {
        let mut request = http::Request::post(format!("http://{}/", bridge.addr))
            .header("content-type", "application/json");
        match &case.sig {
            Sig::Valid => {
                request = request.header(
                    "x-webhook-signature",
                    signature::sign(SECRET.as_bytes(), &case.body),
                );
            }
            Sig::None => {}
            Sig::Raw(values) => {
                for value in values {
                    request = request.header(
                        "x-webhook-signature",
                        HeaderValue::from_bytes(value).unwrap(),
                    );
                }
            }
        }
        for (name, value) in &case.headers {
            request = request.header(
                HeaderName::from_static(name),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        let request = request
            .body(http_body_util::Full::new(Bytes::from(case.body.clone())))
            .unwrap();
        let sent = tokio::time::timeout(Duration::from_secs(10), sender::send(&client, request))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        let text = String::from_utf8_lossy(&sent.body).into_owned();
        let json: Option<Json> = serde_json::from_slice(&sent.body).ok();
        let ok = match case.expect {
            Reject(status, error) => {
                *rejected.entry(error).or_default() += 1;
                sent.status == status
                    && sent.headers["content-type"] == "application/json"
                    && json.as_ref().is_some_and(|j| {
                        j["error"] == error && j["message"].as_str().is_some_and(|m| !m.is_empty())
                    })
            }
            Reply => {
                replies += 1;
                sent.status == 200 && json.is_some() && &sent.body[..] != FALLBACK
            }
        };
        if !ok {
            failures.push(format!(
                "{}: expected {:?}, got {} {text}",
                case.name, case.expect, sent.status
            ));
        }
        if matches!(case.expect, Reject(..)) {
            bodies.push(text);
        }
    }
    let during = probe.finish("hostile bodies").await;
    let after = quiet_latency(&bridge, 20).await;
    let rss_after = bridge.rss_kib();
    println!(
        "\n== {} hostile bodies: {} rejected {rejected:?}, {replies} replies; \
         probe before {before}; during {during}; after {after}; RSS {rss_before} -> {rss_after} KiB",
        cases.len(),
        rejected.values().sum::<u64>()
    );
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Counted exactly, by reason.
    let metrics = bridge.metrics().await;
    let counted: BTreeMap<String, u64> = metrics.by_reason("flows_bridge_rejections_total");
    let expected: BTreeMap<String, u64> =
        rejected.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    assert_eq!(counted, expected, "rejections by reason");
    assert_eq!(
        metrics.by_reason("flows_bridge_fallbacks_total"),
        BTreeMap::new(),
        "no fallback: every case that reached the handler got its reply"
    );

    // Duplicate keys: the handler never saw them.
    assert!(handler.state.did("dup-first").is_none());

    // Others were not slowed down, and memory stayed put.
    assert!(
        during.max <= Duration::from_millis(300),
        "probe during: {during}"
    );
    assert!(
        rss_after <= rss_before + 16 * 1024,
        "RSS {rss_before} -> {rss_after} KiB"
    );
    bridge.assert_alive_without_panic();

    // No error body and no log line holds the secret or personal data.
    assert_no_secret_or_personal_data("error bodies", &bodies);
    assert_no_secret_or_personal_data("hostile-body logs", &bridge.logs());
}

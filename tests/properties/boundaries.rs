//! Edges a fuzzer would take long to reach: integer and float extremes, empty
//! inputs, the largest and smallest timestamps, nesting limits.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use flows_bridge::{
    delivery::{DeliveryError, Freshness, check_freshness},
    proto::{ExchangeRequest, ExchangeResponse},
    reply::{self, InvalidReply},
    secrets::Secrets,
    signature::{self, SignatureError},
};
use prost::Message;
use prost_types::{ListValue, Struct, Timestamp, Value, value::Kind};
use serde_json::{Value as Json, json};

use crate::{INIT, delivery_with_payload, oracle, parse_bytes, parse_json};

// ---------------------------------------------------------------------------
// Freshness.

fn at(seconds: i64, nanos: i32) -> Timestamp {
    Timestamp { seconds, nanos }
}

#[test]
fn freshness_at_the_i64_extremes() {
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let tolerance = Duration::from_secs(300);
    for nanos in [i32::MIN, -999_999_999, 0, 999_999_999, i32::MAX] {
        assert_eq!(
            check_freshness(&at(i64::MIN, nanos), now, tolerance),
            Err(Freshness::Stale),
            "{nanos}"
        );
        assert_eq!(
            check_freshness(&at(i64::MAX, nanos), now, tolerance),
            Err(Freshness::Future),
            "{nanos}"
        );
        // The widest tolerance accepts anything, even the extremes.
        for seconds in [i64::MIN, i64::MAX] {
            assert_eq!(
                check_freshness(&at(seconds, nanos), now, Duration::MAX),
                Ok(())
            );
        }
    }
}

#[test]
fn freshness_edges_to_the_nanosecond() {
    let now = UNIX_EPOCH + Duration::new(1_800_000_000, 500);
    let tolerance = Duration::from_secs(300);
    let now_s = 1_800_000_000;
    assert_eq!(
        check_freshness(&at(now_s - 300, 500), now, tolerance),
        Ok(())
    );
    assert_eq!(
        check_freshness(&at(now_s - 300, 499), now, tolerance),
        Err(Freshness::Stale)
    );
    assert_eq!(
        check_freshness(&at(now_s + 300, 500), now, tolerance),
        Ok(())
    );
    assert_eq!(
        check_freshness(&at(now_s + 300, 501), now, tolerance),
        Err(Freshness::Future)
    );
    // A zero tolerance (the config turns 0 into "no check" before this is
    // called) accepts only the exact instant.
    assert_eq!(
        check_freshness(&at(now_s, 500), now, Duration::ZERO),
        Ok(())
    );
    assert_eq!(
        check_freshness(&at(now_s, 501), now, Duration::ZERO),
        Err(Freshness::Future)
    );
    // Unnormalised nanos (not from the parser, but a Timestamp can hold them).
    assert_eq!(
        check_freshness(&at(now_s + 1, -999_999_500), now, Duration::ZERO),
        Ok(())
    );
}

#[test]
fn freshness_with_now_at_the_clock_edges() {
    let tolerance = Duration::from_secs(300);
    assert_eq!(check_freshness(&at(0, 0), UNIX_EPOCH, tolerance), Ok(()));
    let before_epoch = UNIX_EPOCH - Duration::new(10, 1);
    assert_eq!(
        check_freshness(&at(-10, 0), before_epoch, tolerance),
        Ok(())
    );
    if let Some(far) = UNIX_EPOCH.checked_add(Duration::from_secs(i64::MAX as u64 - 1)) {
        assert_eq!(
            check_freshness(&at(i64::MAX - 1, 0), far, tolerance),
            Ok(())
        );
        assert_eq!(
            check_freshness(&at(i64::MIN, 0), far, tolerance),
            Err(Freshness::Stale)
        );
    }
}

/// The widest timestamps RFC 3339 allows parse, and check as far off.
#[test]
fn rfc3339_extremes() {
    let now = SystemTime::now();
    let tolerance = Duration::from_secs(300);
    for (stamp, want) in [
        ("0001-01-01T00:00:00Z", Err(Freshness::Stale)),
        ("9999-12-31T23:59:59.999999999Z", Err(Freshness::Future)),
        ("1970-01-01T00:00:00Z", Err(Freshness::Stale)),
        ("1969-12-31T23:59:59.999999999Z", Err(Freshness::Stale)),
    ] {
        let mut body: Json = serde_json::from_str(INIT).unwrap();
        body["timestamp"] = stamp.into();
        let delivery = parse_json(&body).unwrap_or_else(|e| panic!("{stamp}: {e}"));
        assert_eq!(delivery.raw_timestamp, stamp);
        assert_eq!(
            check_freshness(&delivery.timestamp(), now, tolerance),
            want,
            "{stamp}"
        );
    }
}

// ---------------------------------------------------------------------------
// Numbers in a delivery.

fn payload_number(text: &str) -> Result<f64, String> {
    let body = format!(
        r#"{{"id":"1","event":"whatsapp.flows.init","timestamp":"2026-05-06T19:00:00Z","data":{{"flowExchange":{{"action":"init","payload":{{"n":{text}}}}}}}}}"#
    );
    let request = parse_bytes(body.as_bytes())
        .map_err(|e| e.to_string())?
        .request;
    match &request.flow_exchange.unwrap().payload.unwrap().fields["n"].kind {
        Some(Kind::NumberValue(n)) => Ok(*n),
        other => Err(format!("{other:?}")),
    }
}

/// google.protobuf.Struct holds numbers as doubles: every integer up to 2^53
/// survives exactly, above it only the ones a double can hold; the others
/// arrive rounded to the nearest double. Handlers needing larger integers
/// exactly must get them as strings.
#[test]
fn integers_beyond_2_pow_53_round() {
    assert_eq!(
        payload_number("9007199254740991"),
        Ok(9_007_199_254_740_991.0)
    );
    assert_eq!(
        payload_number("9007199254740992"),
        Ok(9_007_199_254_740_992.0)
    );
    // 2^53 + 1 has no double: it arrives as 2^53.
    assert_eq!(
        payload_number("9007199254740993"),
        Ok(9_007_199_254_740_992.0)
    );
    assert_eq!(
        payload_number("9007199254740994"),
        Ok(9_007_199_254_740_994.0)
    );
    assert_eq!(
        payload_number("-9007199254740993"),
        Ok(-9_007_199_254_740_992.0)
    );
    assert_eq!(
        payload_number(&i64::MIN.to_string()),
        Ok(-9_223_372_036_854_775_808.0)
    );
    assert_eq!(
        payload_number(&i64::MAX.to_string()),
        Ok(9_223_372_036_854_775_808.0)
    );
    assert_eq!(
        payload_number(&u64::MAX.to_string()),
        Ok(18_446_744_073_709_551_616.0)
    );
    // Beyond u64 the reader goes through floating point.
    assert_eq!(payload_number("100000000000000000000000"), Ok(1e23));
}

#[test]
fn float_edges_in_a_delivery() {
    // Negative zero keeps its sign, however it is written.
    for text in ["-0", "-0.0", "-0e0"] {
        let n = payload_number(text).unwrap();
        assert!(n == 0.0 && n.is_sign_negative(), "{text}: {n}");
    }
    assert_eq!(payload_number("1e308"), Ok(1e308));
    assert_eq!(payload_number("1.7976931348623157e308"), Ok(f64::MAX));
    assert_eq!(payload_number("-1.7976931348623157e308"), Ok(f64::MIN));
    assert_eq!(
        payload_number("2.2250738585072014e-308"),
        Ok(f64::MIN_POSITIVE)
    );
    assert_eq!(payload_number("5e-324"), Ok(5e-324));
    // Below the smallest double: zero. Above the largest: not a JSON the
    // bridge reads (400 malformed_json), never an infinity.
    assert_eq!(payload_number("1e-400"), Ok(0.0));
    for text in ["1e309", "-1e309", "1e999", "2e308"] {
        let body = delivery_with_payload(json!({}))
            .to_string()
            .replace("{}", &format!("{{\"n\":{text}}}"));
        assert!(
            matches!(parse_bytes(body.as_bytes()), Err(DeliveryError::Json(_))),
            "{text}"
        );
    }
}

// ---------------------------------------------------------------------------
// Numbers in a reply.

fn render_number(n: f64) -> Result<String, InvalidReply> {
    let mut fields = std::collections::BTreeMap::new();
    fields.insert(
        "n".to_owned(),
        Value {
            kind: Some(Kind::NumberValue(n)),
        },
    );
    let reply = ExchangeResponse {
        screen: None,
        data: Some(Struct { fields }),
    };
    let rendered = reply::render(&reply);
    oracle::check_reply(&reply, &rendered).unwrap();
    rendered.map(|b| String::from_utf8(b.to_vec()).unwrap())
}

#[test]
fn number_edges_in_a_reply() {
    let cases: &[(f64, &str)] = &[
        (0.0, r#"{"data":{"n":0}}"#),
        // -0.0 is whole: written as the integer 0 (equal as a double).
        (-0.0, r#"{"data":{"n":0}}"#),
        (499.0, r#"{"data":{"n":499}}"#),
        (
            9_007_199_254_740_992.0,
            r#"{"data":{"n":9007199254740992}}"#,
        ),
        (
            -9_007_199_254_740_992.0,
            r#"{"data":{"n":-9007199254740992}}"#,
        ),
        // Past 2^53, whole numbers are written as doubles.
        (
            9_007_199_254_740_994.0,
            r#"{"data":{"n":9007199254740994.0}}"#,
        ),
        (1e308, r#"{"data":{"n":1e+308}}"#),
        (f64::MAX, r#"{"data":{"n":1.7976931348623157e+308}}"#),
        (
            f64::MIN_POSITIVE,
            r#"{"data":{"n":2.2250738585072014e-308}}"#,
        ),
        (5e-324, r#"{"data":{"n":5e-324}}"#),
        (0.1 + 0.2, r#"{"data":{"n":0.30000000000000004}}"#),
    ];
    for (n, want) in cases {
        assert_eq!(render_number(*n).as_deref(), Ok(*want), "{n:e}");
    }
    for bad in [f64::NAN, -f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert_eq!(render_number(bad), Err(InvalidReply::NonFiniteNumber));
    }
}

/// A NaN anywhere, however deep, makes the reply invalid (and only that).
#[test]
fn non_finite_deep_inside_a_reply() {
    let mut value = Value {
        kind: Some(Kind::NumberValue(f64::INFINITY)),
    };
    for i in 0..40 {
        value = if i % 2 == 0 {
            Value {
                kind: Some(Kind::ListValue(ListValue {
                    values: vec![Value { kind: None }, value],
                })),
            }
        } else {
            let mut fields = std::collections::BTreeMap::new();
            fields.insert("k".to_owned(), value);
            Value {
                kind: Some(Kind::StructValue(Struct { fields })),
            }
        };
    }
    let mut fields = std::collections::BTreeMap::new();
    fields.insert("deep".to_owned(), value);
    let reply = ExchangeResponse {
        screen: Some("S".into()),
        data: Some(Struct { fields }),
    };
    assert_eq!(reply::render(&reply), Err(InvalidReply::NonFiniteNumber));
}

// ---------------------------------------------------------------------------
// Empty inputs.

#[test]
fn empty_body() {
    assert!(matches!(parse_bytes(b""), Err(DeliveryError::Json(_))));
    assert!(matches!(parse_bytes(b" \n"), Err(DeliveryError::Json(_))));
    assert!(matches!(parse_bytes(b"{}"), Err(DeliveryError::Invalid(_))));
    // An empty body signs and verifies like any other.
    let header = signature::sign(b"s", b"");
    assert!(
        signature::verify(
            &Secrets::from_list("s"),
            Bytes::new(),
            Some(header.as_bytes())
        )
        .is_ok()
    );
}

#[test]
fn empty_secret_list_verifies_nothing() {
    for list in ["", " ", ",", " , ,"] {
        let secrets = Secrets::from_list(list);
        assert!(secrets.is_empty(), "{list:?}");
        // Not even a signature made with an empty key.
        for key in [&b""[..], b" ", b","] {
            let header = signature::sign(key, b"{}");
            assert_eq!(
                signature::verify(&secrets, Bytes::from_static(b"{}"), Some(header.as_bytes()))
                    .map(|_| ()),
                Err(SignatureError::Mismatch)
            );
        }
    }
}

#[test]
fn empty_and_blank_headers() {
    let secrets = Secrets::from_list("s");
    let body = Bytes::from_static(b"{}");
    let check = |h: &[u8]| signature::verify(&secrets, body.clone(), Some(h)).map(|_| ());
    assert_eq!(
        signature::verify(&secrets, body.clone(), None).map(|_| ()),
        Err(SignatureError::Missing)
    );
    for header in [
        &b""[..],
        b" ",
        b"\t",
        b"sha256=",
        b" sha256= ",
        b"=",
        b"\0",
        b"sha256=\0",
    ] {
        assert_eq!(check(header), Err(SignatureError::Malformed), "{header:?}");
    }
    let valid = signature::sign(b"s", b"{}");
    assert_eq!(check(valid.as_bytes()), Ok(()));
    // A NUL or a second value around a valid signature is not whitespace.
    assert_eq!(
        check(format!("{valid}\0").as_bytes()),
        Err(SignatureError::Malformed)
    );
    assert_eq!(
        check(format!("{valid}, {valid}").as_bytes()),
        Err(SignatureError::Malformed)
    );
}

/// Known finding S1 (see fuzz/README.md and `oracle::KNOWN_S1_UNICODE_TRIM`):
/// only HTTP's optional whitespace (SP, HTAB) may surround the value.
#[test]
fn s1_regression_only_http_whitespace_is_trimmed() {
    let secrets = Secrets::from_list("s");
    let valid = signature::sign(b"s", b"{}");
    for space in [
        '\u{a0}', '\u{85}', '\u{2028}', '\u{3000}', '\u{b}', '\u{c}', '\n', '\r',
    ] {
        let header = format!("{space}{valid}{space}");
        assert_eq!(
            signature::verify(&secrets, Bytes::from_static(b"{}"), Some(header.as_bytes()))
                .map(|_| ()),
            Err(SignatureError::Malformed),
            "{space:?}"
        );
    }
}

#[test]
fn empty_payloads() {
    let payload_of = |body: &Json| {
        parse_json(body)
            .unwrap()
            .request
            .flow_exchange
            .unwrap()
            .payload
    };
    // `{}`, absent and `null` are all the empty Struct, never a missing one.
    assert_eq!(
        payload_of(&delivery_with_payload(json!({}))),
        Some(Struct::default())
    );
    assert_eq!(
        payload_of(&delivery_with_payload(Json::Null)),
        Some(Struct::default())
    );
    let mut absent: Json = serde_json::from_str(INIT).unwrap();
    absent["data"]["flowExchange"]
        .as_object_mut()
        .unwrap()
        .remove("payload");
    assert_eq!(payload_of(&absent), Some(Struct::default()));
    // A payload that is not an object: empty, and the value in unknown_fields.
    for odd in [json!([]), json!(""), json!(0), json!([{}])] {
        let body = delivery_with_payload(odd.clone());
        let parsed = parse_json(&body);
        oracle::check_delivery(&body, &parsed).unwrap();
        let exchange = parsed.unwrap().request.flow_exchange.unwrap();
        assert_eq!(exchange.payload, Some(Struct::default()));
        assert!(
            exchange
                .unknown_fields
                .unwrap()
                .fields
                .contains_key("payload")
        );
    }
    // Empty keys and empty strings are kept.
    let body = delivery_with_payload(json!({"": "", "a": [], "b": {}}));
    oracle::check_delivery(&body, &parse_json(&body)).unwrap();
}

#[test]
fn empty_strings_in_the_envelope() {
    let edit = |pointer: &str, value: Json| {
        let mut body: Json = serde_json::from_str(INIT).unwrap();
        *body.pointer_mut(pointer).unwrap() = value;
        let parsed = parse_json(&body);
        oracle::check_delivery(&body, &parsed).unwrap();
        parsed
    };
    assert!(matches!(
        edit("/id", json!("")),
        Err(DeliveryError::Invalid(_))
    ));
    assert!(matches!(
        edit("/event", json!("")),
        Err(DeliveryError::UnsupportedEvent(_))
    ));
    assert!(edit("/event", json!("whatsapp.flows.")).is_ok());
    assert!(matches!(
        edit("/timestamp", json!("")),
        Err(DeliveryError::Invalid(_))
    ));
    let action = edit("/data/flowExchange/action", json!("")).unwrap();
    assert_eq!(action.request.flow_exchange.unwrap().action, 0);
    let screen = edit("/data/flowExchange/screen", json!("")).unwrap();
    assert_eq!(
        screen.request.flow_exchange.unwrap().screen.as_deref(),
        Some("")
    );
}

#[test]
fn empty_replies() {
    let reply = |screen: Option<&str>, data: Option<Struct>| ExchangeResponse {
        screen: screen.map(str::to_owned),
        data,
    };
    assert_eq!(reply::render(&reply(None, None)), Err(InvalidReply::Empty));
    assert_eq!(
        reply::render(&reply(Some(""), None)),
        Err(InvalidReply::Empty)
    );
    for (r, want) in [
        (reply(None, Some(Struct::default())), r#"{"data":{}}"#),
        (reply(Some(""), Some(Struct::default())), r#"{"data":{}}"#),
        (reply(Some(" "), None), r#"{"screen":" "}"#),
    ] {
        let rendered = reply::render(&r);
        oracle::check_reply(&r, &rendered).unwrap();
        assert_eq!(rendered.unwrap(), Bytes::from(want));
    }
}

// ---------------------------------------------------------------------------
// Nesting.

/// A payload nested `depth` objects deep: {"k":{"k":...{}}}.
fn nested_payload(depth: usize) -> String {
    let mut payload = "{}".to_owned();
    for _ in 1..depth {
        payload = format!("{{\"k\":{payload}}}");
    }
    payload
}

fn delivery_with_nested_payload(depth: usize) -> String {
    INIT.replace(
        "\"payload\": {}",
        &format!("\"payload\": {}", nested_payload(depth)),
    )
}

/// Protobuf decoders refuse messages nested more than 100 deep (prost, the
/// C++, Java and Python runtimes); every Struct level is three messages
/// (Struct, map entry, Value). Up to this depth a payload reaches the handler.
const DECODABLE_PAYLOAD_DEPTH: usize = 33;

#[test]
fn payload_nesting_that_protobuf_decoders_accept() {
    let body = delivery_with_nested_payload(DECODABLE_PAYLOAD_DEPTH);
    let request = parse_bytes(body.as_bytes()).unwrap().request;
    let back = ExchangeRequest::decode(request.encode_to_vec().as_slice());
    assert_eq!(back.as_ref(), Ok(&*request));
}

/// Known bug B2 (see fuzz/README.md): serde_json reads JSON nested up to 128
/// deep, so the bridge accepts a payload nested deeper than a protobuf decoder
/// reads, and sends the handler a request it cannot decode (the handler fails
/// the call, the user gets the fallback, with reason upstream_error). The
/// bridge should refuse such a delivery itself (422 invalid_delivery) or
/// flatten what it cannot send.
#[test]
fn b2_regression_a_parsed_delivery_always_decodes() {
    for depth in [DECODABLE_PAYLOAD_DEPTH + 1, 60, 120] {
        let body = delivery_with_nested_payload(depth);
        match parse_bytes(body.as_bytes()) {
            Err(DeliveryError::Invalid(_)) => {}
            Err(other) => panic!("{depth}: {other}"),
            Ok(d) => {
                let back = ExchangeRequest::decode(d.request.encode_to_vec().as_slice());
                assert_eq!(back.as_ref(), Ok(&*d.request), "depth {depth}");
            }
        }
    }
}

/// What the handler sends is read by prost with the same limit, so the deepest
/// reply the bridge ever renders is about 33 objects deep, far within what any
/// JSON reader takes; deeper than that fails to decode (upstream_error).
#[test]
fn deep_replies_render() {
    let body = delivery_with_nested_payload(DECODABLE_PAYLOAD_DEPTH);
    let request = parse_bytes(body.as_bytes()).unwrap().request;
    let reply = ExchangeResponse {
        screen: None,
        data: request.flow_exchange.unwrap().payload,
    };
    let rendered = reply::render(&reply);
    oracle::check_reply(&reply, &rendered).unwrap();
    let decoded = ExchangeResponse::decode(reply.encode_to_vec().as_slice());
    assert_eq!(decoded.as_ref(), Ok(&reply));
}

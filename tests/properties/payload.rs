//! Properties (1) and (2): a delivery's JSON reaches the handler whole.

use proptest::prelude::*;
use prost_types::{Value, value::Kind};
use serde_json::{Map, Value as Json};

use crate::{FULL, delivery_with_payload, oracle, parse_bytes, parse_json, strategies::*};

proptest! {
    /// (1) For any JSON object, a delivery with it as its payload parses, and
    /// the payload Struct is that object: same keys, strings, booleans, nulls,
    /// nesting, and each number the very double it was (bit for bit, -0.0
    /// included). The one loss is the one `google.protobuf.Struct` imposes:
    /// numbers are doubles, so integers beyond 2^53 arrive as the nearest
    /// double (`boundaries::integers_beyond_2_pow_53_round`); the generated
    /// i64/u64 integers are compared as that double.
    #[test]
    fn payload_survives_conversion(payload in json_object()) {
        let body = delivery_with_payload(Json::Object(payload.clone()));
        let parsed = parse_json(&body);
        let request = &parsed.as_ref().expect("a delivery with any payload parses").request;
        let got = request.flow_exchange.as_ref().unwrap().payload.as_ref().unwrap();
        oracle::struct_matches_json(got, &payload, "payload").map_err(TestCaseError::fail)?;
        // And the Struct turned back into JSON is the payload.
        let back = oracle::struct_to_json(got).unwrap();
        let back = back.as_object().unwrap();
        prop_assert_eq!(back.len(), payload.len());
        oracle::struct_matches_json(got, back, "payload as JSON").map_err(TestCaseError::fail)?;
        // The whole delivery, not only the payload, is accounted for.
        oracle::check_delivery(&body, &parsed).map_err(TestCaseError::fail)?;
    }

    /// (2) Unknown keys at every level (top, data, client, conversation, flow,
    /// flowResponse, flowExchange), and known keys holding a value of another
    /// type, all reach the handler in that level's `unknown_fields`; known keys
    /// of the right type fill their typed fields; nothing else is there.
    #[test]
    fn every_key_lands_in_a_typed_field_or_unknown_fields(
        edits in prop::collection::vec((0usize..7, key(), json_value(3)), 1..12),
    ) {
        let mut body: Json = serde_json::from_str(FULL).unwrap();
        for (level, key, value) in &edits {
            if let Some(object) = level_of(&mut body, *level) {
                object.insert(key.clone(), value.clone());
            }
        }
        let parsed = parse_json(&body);
        prop_assert!(parsed.is_ok(), "{parsed:?}");
        oracle::check_delivery(&body, &parsed).map_err(TestCaseError::fail)?;
    }

    /// The same for arbitrary edits, required keys included: the parser gives
    /// the documented error, or a request that accounts for every key.
    #[test]
    fn any_edit_gives_the_documented_outcome(
        edits in prop::collection::vec((0usize..7, any_key(), json_value(2)), 1..6),
    ) {
        let mut body: Json = serde_json::from_str(FULL).unwrap();
        for (level, key, value) in &edits {
            if let Some(object) = level_of(&mut body, *level) {
                object.insert(key.clone(), value.clone());
            }
        }
        let parsed = parse_json(&body);
        oracle::check_delivery(&body, &parsed).map_err(TestCaseError::fail)?;
    }

    /// Numbers reach the handler as the nearest double to their text, as
    /// Python, Go and JavaScript read them: the shortest text of any double
    /// reads back as that double. (Bug B1, fixed by serde_json's
    /// `float_roundtrip`: without it, 1 in 4 were 1-2 ULP off.)
    #[test]
    fn payload_numbers_are_the_nearest_double(n in finite_f64()) {
        let text = serde_json::to_string(&n).unwrap();
        let body = INIT_WITH_NUMBER.replace("NUMBER", &text);
        let request = parse_bytes(body.as_bytes()).unwrap().request;
        let payload = request.flow_exchange.unwrap().payload.unwrap();
        let got = match payload.fields["n"].kind { Some(Kind::NumberValue(x)) => x, _ => f64::NAN };
        prop_assert_eq!(got.to_bits(), n.to_bits(), "{} read as {:e}", text, got);
    }
}

const INIT_WITH_NUMBER: &str = r#"{"id":"1","event":"whatsapp.flows.init","timestamp":"2026-05-06T19:00:00Z","data":{"flowExchange":{"action":"init","payload":{"n":NUMBER}}}}"#;

/// Bug B1's first counterexample: `1.2345678901234567e-300` arrived as
/// `1.234567890123457e-300`.
#[test]
fn b1_regression_number_read_as_the_nearest_double() {
    let body = INIT_WITH_NUMBER.replace("NUMBER", "1.2345678901234567e-300");
    let request = parse_bytes(body.as_bytes()).unwrap().request;
    let payload = request.flow_exchange.unwrap().payload.unwrap();
    assert_eq!(
        payload.fields["n"],
        Value {
            kind: Some(Kind::NumberValue(1.234_567_890_123_456_8e-300))
        }
    );
}

/// Keys of every level's typed fields, and new ones, but not the required
/// keys (whose removal or change makes the delivery invalid: tested below).
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => prop::sample::select(OPTIONAL_KEYS.to_vec()).prop_map(str::to_owned),
        1 => any_string().prop_filter("not a required key", |k| !REQUIRED_KEYS.contains(&k.as_str())),
    ]
}

fn any_key() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => prop::sample::select(REQUIRED_KEYS.to_vec()).prop_map(str::to_owned),
        1 => key(),
    ]
}

const REQUIRED_KEYS: &[&str] = &["id", "event", "timestamp", "data", "flowExchange", "action"];

/// The typed keys at one level or another (a key typed at one level is
/// unknown at the others, which is tested too).
const OPTIONAL_KEYS: &[&str] = &[
    "workspaceId",
    "source",
    "resourceType",
    "resourceId",
    "changes",
    "client",
    "conversation",
    "flow",
    "flowResponse",
    "name",
    "phoneNumber",
    "creationDate",
    "lastUpdate",
    "canSendDirectMessage",
    "owners",
    "tags",
    "messageCount",
    "categories",
    "lastSyncAt",
    "completedAt",
    "screen",
    "version",
    "payload",
    "status",
];

/// The object at one of the seven levels of a delivery, if it is one.
fn level_of(body: &mut Json, level: usize) -> Option<&mut Map<String, Json>> {
    let pointer = [
        "",
        "/data",
        "/data/client",
        "/data/conversation",
        "/data/flow",
        "/data/flowResponse",
        "/data/flowExchange",
    ][level];
    body.pointer_mut(pointer)?.as_object_mut()
}

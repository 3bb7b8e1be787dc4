//! proptest strategies: JSON values a payload can hold, and replies a handler
//! can send.

use flows_bridge::proto::ExchangeResponse;
use proptest::prelude::*;
use prost_types::{ListValue, Struct, Value, value::Kind};
use serde_json::{Map, Number, Value as Json};

/// Strings with any Unicode scalar (controls, quotes, backslashes, NUL,
/// astral planes), biased towards the ones JSON escapes.
pub fn any_string() -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        4 => any::<char>(),
        1 => prop::sample::select(vec![
            '"', '\\', '/', '\0', '\n', '\u{7f}', '\u{2028}', '\u{feff}', '\u{fffd}', '😀', 'é',
        ]),
    ];
    prop::collection::vec(ch, 0..12).prop_map(String::from_iter)
}

/// Finite doubles of every class, plus the integer and range edges.
pub fn finite_f64() -> impl Strategy<Value = f64> {
    use prop::num::f64::{NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};
    prop_oneof![
        4 => POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO,
        1 => prop::sample::select(vec![
            0.0,
            -0.0,
            0.1,
            19.99,
            9_007_199_254_740_992.0,
            -9_007_199_254_740_992.0,
            9_007_199_254_740_994.0,
            1e308,
            -1e308,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            5e-324,
            1e-300,
        ]),
    ]
}

/// JSON numbers as Platica could write them: integers of any i64/u64 value,
/// short decimals, and any finite double.
pub fn json_number() -> impl Strategy<Value = Number> {
    prop_oneof![
        any::<i64>().prop_map(Number::from),
        any::<u64>().prop_map(Number::from),
        (-1_000_000i64..1_000_000, 0u32..6).prop_map(|(m, k)| {
            Number::from_f64(m as f64 / 10f64.powi(k as i32)).unwrap_or_else(|| Number::from(m))
        }),
        finite_f64().prop_map(|f| Number::from_f64(f).unwrap_or_else(|| Number::from(0))),
    ]
}

pub fn json_leaf() -> impl Strategy<Value = Json> {
    prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        json_number().prop_map(Json::Number),
        any_string().prop_map(Json::String),
    ]
}

/// Any JSON value, nested at most `depth` deep.
pub fn json_value(depth: u32) -> impl Strategy<Value = Json> {
    json_leaf().prop_recursive(depth, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
            prop::collection::vec((any_string(), inner), 0..6)
                .prop_map(|entries| Json::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Any JSON object (what a payload holds).
pub fn json_object() -> impl Strategy<Value = Map<String, Json>> {
    prop::collection::vec((any_string(), json_value(4)), 0..8)
        .prop_map(|entries| entries.into_iter().collect())
}

/// Any number a handler can put in a Struct: NaN, infinities, every class of
/// double, the edges.
pub fn any_number() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => finite_f64(),
        1 => prop::sample::select(vec![f64::NAN, -f64::NAN, f64::INFINITY, f64::NEG_INFINITY]),
        1 => any::<u64>().prop_map(f64::from_bits),
    ]
}

fn value(kind: Option<Kind>) -> Value {
    Value { kind }
}

/// Any `google.protobuf.Value`, unset kind and any `NullValue` number included.
pub fn proto_value(depth: u32) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(value(None)),
        any::<i32>().prop_map(|n| value(Some(Kind::NullValue(n)))),
        any::<bool>().prop_map(|b| value(Some(Kind::BoolValue(b)))),
        any_number().prop_map(|n| value(Some(Kind::NumberValue(n)))),
        any_string().prop_map(|s| value(Some(Kind::StringValue(s)))),
    ];
    leaf.prop_recursive(depth, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6)
                .prop_map(|values| value(Some(Kind::ListValue(ListValue { values })))),
            prop::collection::btree_map(any_string(), inner, 0..6)
                .prop_map(|fields| value(Some(Kind::StructValue(Struct { fields })))),
        ]
    })
}

pub fn proto_struct() -> impl Strategy<Value = Struct> {
    prop::collection::btree_map(any_string(), proto_value(4), 0..8)
        .prop_map(|fields| Struct { fields })
}

/// Any reply a handler can send: any screen (absent, empty, any string), any
/// data (absent or any Struct).
pub fn exchange_response() -> impl Strategy<Value = ExchangeResponse> {
    (
        prop::option::of(prop_oneof![Just(String::new()), any_string()]),
        prop::option::of(proto_struct()),
    )
        .prop_map(|(screen, data)| ExchangeResponse { screen, data })
}

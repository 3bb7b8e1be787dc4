//! Any reply a handler can send through `reply::render`: bytes a strict JSON
//! reader takes as a reply Platica accepts, equal to the reply, or
//! `Empty`/`NonFiniteNumber` exactly when the reply is one
//! (`oracle::check_reply`). Never a panic.
//!
//! First byte even: the rest is an `ExchangeResponse` on the wire, decoded
//! with prost as the bridge does (what a handler in any language can send).
//! Odd: the rest drives `arbitrary` to build one directly, with numbers drawn
//! towards NaN, infinities, -0.0, 2^53 and the extremes, unset Value kinds and
//! any NullValue number.

#![no_main]

use arbitrary::{Result, Unstructured};
use flows_bridge::{proto::ExchangeResponse, reply};
use libfuzzer_sys::fuzz_target;
use prost::Message;
use prost_types::{ListValue, Struct, Value, value::Kind};

#[path = "../../tests/properties/oracle.rs"]
mod oracle;

const SPECIAL: &[f64] = &[
    0.0,
    -0.0,
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    9_007_199_254_740_991.0,
    9_007_199_254_740_992.0,
    9_007_199_254_740_994.0,
    -9_007_199_254_740_992.0,
    9_223_372_036_854_775_808.0,
    -9_223_372_036_854_775_808.0,
    18_446_744_073_709_551_616.0,
    1e308,
    f64::MAX,
    f64::MIN,
    f64::MIN_POSITIVE,
    5e-324,
    0.5,
    0.1,
];

fn number(u: &mut Unstructured) -> Result<f64> {
    Ok(match u.int_in_range(0..=3)? {
        0 => f64::from_bits(u.arbitrary()?),
        1 => *u.choose(SPECIAL)?,
        2 => u.arbitrary::<i64>()? as f64,
        _ => f64::from(u.arbitrary::<i32>()?) / 10f64.powi(i32::from(u.int_in_range(0u8..=6)?)),
    })
}

fn value(u: &mut Unstructured, depth: u32) -> Result<Value> {
    let top = if depth == 0 { 5 } else { 7 };
    let kind = match u.int_in_range(0..=top)? {
        0 => None,
        1 => Some(Kind::NullValue(u.arbitrary()?)),
        2 => Some(Kind::BoolValue(u.arbitrary()?)),
        3 => Some(Kind::NumberValue(number(u)?)),
        4 | 5 => Some(Kind::StringValue(u.arbitrary()?)),
        6 => {
            let n = u.int_in_range(0..=4)?;
            let values = (0..n)
                .map(|_| value(u, depth - 1))
                .collect::<Result<Vec<_>>>()?;
            Some(Kind::ListValue(ListValue { values }))
        }
        _ => Some(Kind::StructValue(structure(u, depth - 1)?)),
    };
    Ok(Value { kind })
}

fn structure(u: &mut Unstructured, depth: u32) -> Result<Struct> {
    let n = u.int_in_range(0..=4)?;
    let mut fields = std::collections::BTreeMap::new();
    for _ in 0..n {
        fields.insert(u.arbitrary::<String>()?, value(u, depth)?);
    }
    Ok(Struct { fields })
}

fn build(u: &mut Unstructured) -> Result<ExchangeResponse> {
    let screen = match u.int_in_range(0..=2)? {
        0 => None,
        1 => Some(String::new()),
        _ => Some(u.arbitrary()?),
    };
    let data = if u.arbitrary()? {
        Some(structure(u, 40)?)
    } else {
        None
    };
    Ok(ExchangeResponse { screen, data })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let reply = if mode % 2 == 0 {
        match ExchangeResponse::decode(rest) {
            Ok(reply) => reply,
            Err(_) => return, // the bridge answers upstream_error
        }
    } else {
        match build(&mut Unstructured::new(rest)) {
            Ok(reply) => reply,
            Err(_) => return,
        }
    };
    let rendered = reply::render(&reply);
    if let Err(problem) = oracle::check_reply(&reply, &rendered) {
        panic!("{problem}");
    }
});

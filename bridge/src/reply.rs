//! What Platica accepts back: a JSON object with an object `data` and/or a
//! non-empty string `screen`. Renders the handler's [`ExchangeResponse`] and
//! validates the configured fallback against the same rule.

use bytes::Bytes;
use prost_types::{Struct, Value, value::Kind};
use serde::{
    Serialize, Serializer,
    ser::{Error as _, SerializeMap, SerializeSeq},
};
use serde_json::Value as Json;

use crate::proto::ExchangeResponse;

/// Why a handler's reply cannot go to Platica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidReply {
    #[error("the reply has neither `data` nor a non-empty `screen`")]
    Empty,
    #[error("the reply's `data` holds a number JSON cannot carry (NaN or infinity)")]
    NonFiniteNumber,
}

/// Largest integer a double holds exactly (2^53).
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_992.0;

/// Renders a valid reply as `{"screen": .., "data": ..}`, or says why it is not valid.
pub fn render(reply: &ExchangeResponse) -> Result<Bytes, InvalidReply> {
    let screen = reply.screen.as_deref().filter(|s| !s.is_empty());
    if screen.is_none() && reply.data.is_none() {
        return Err(InvalidReply::Empty);
    }
    #[derive(Serialize)]
    struct Body<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        screen: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        data: Option<StructJson<'a>>,
    }
    let body = Body {
        screen,
        data: reply.data.as_ref().map(StructJson),
    };
    let mut json = serde_json::to_vec(&body).map_err(|_| InvalidReply::NonFiniteNumber)?;
    // Exactly sized: the idempotency cache keeps it for minutes.
    json.shrink_to_fit();
    Ok(Bytes::from(json))
}

/// Validates a configured fallback reply and returns it compacted.
pub fn parse_fallback(text: &str) -> Result<Bytes, String> {
    let json: Json = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let valid = match &json {
        Json::Object(map) => {
            map.get("data").is_some_and(Json::is_object)
                || map
                    .get("screen")
                    .and_then(Json::as_str)
                    .is_some_and(|s| !s.is_empty())
        }
        _ => false,
    };
    if !valid {
        return Err(format!(
            "{text:?} is not a reply Platica accepts: a JSON object with an object `data` \
             and/or a non-empty string `screen`"
        ));
    }
    serde_json::to_vec(&json)
        .map(Bytes::from)
        .map_err(|e| e.to_string())
}

struct StructJson<'a>(&'a Struct);
struct ValueJson<'a>(&'a Value);

impl Serialize for StructJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.fields.len()))?;
        for (key, value) in &self.0.fields {
            map.serialize_entry(key, &ValueJson(value))?;
        }
        map.end()
    }
}

impl Serialize for ValueJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0.kind {
            None | Some(Kind::NullValue(_)) => serializer.serialize_unit(),
            Some(Kind::BoolValue(b)) => serializer.serialize_bool(*b),
            Some(Kind::StringValue(s)) => serializer.serialize_str(s),
            Some(Kind::NumberValue(n)) => {
                if !n.is_finite() {
                    Err(S::Error::custom("non-finite number"))
                } else if n.fract() == 0.0 && n.abs() <= MAX_SAFE_INTEGER {
                    // Exact: |n| <= 2^53 fits i64 without rounding.
                    serializer.serialize_i64(*n as i64)
                } else {
                    serializer.serialize_f64(*n)
                }
            }
            Some(Kind::StructValue(s)) => StructJson(s).serialize(serializer),
            Some(Kind::ListValue(list)) => {
                let mut seq = serializer.serialize_seq(Some(list.values.len()))?;
                for value in &list.values {
                    seq.serialize_element(&ValueJson(value))?;
                }
                seq.end()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::delivery::to_struct;

    fn data(j: Json) -> Option<Struct> {
        match j {
            Json::Object(map) => Some(to_struct(map)),
            _ => None,
        }
    }

    fn rendered(reply: ExchangeResponse) -> Result<Json, InvalidReply> {
        render(&reply).map(|b| serde_json::from_slice(&b).unwrap())
    }

    #[test]
    fn seed_examples_round_trip() {
        for example in [
            json!({"data": {"products": [{"id": "p1", "title": "Plan Básico"}, {"id": "p2", "title": "Plan Premium"}]}}),
            json!({"screen": "PAYMENT", "data": {"amount_mxn": 499}}),
            json!({"data": {"error_message": "El código postal no es válido"}}),
        ] {
            let reply = ExchangeResponse {
                screen: example
                    .get("screen")
                    .and_then(Json::as_str)
                    .map(str::to_owned),
                data: data(example["data"].clone()),
            };
            assert_eq!(rendered(reply), Ok(example));
        }
    }

    #[test]
    fn integers_stay_integers() {
        let reply = ExchangeResponse {
            screen: None,
            data: data(json!({"a": 499, "b": -3, "c": 0.5, "d": 1e300, "e": 9007199254740992.0})),
        };
        let bytes = render(&reply).unwrap();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.contains(r#""a":499"#), "{text}");
        assert!(text.contains(r#""b":-3"#), "{text}");
        assert!(text.contains(r#""c":0.5"#), "{text}");
        assert!(text.contains(r#""d":1e+300"#), "{text}");
        assert!(text.contains(r#""e":9007199254740992"#), "{text}");
    }

    #[test]
    fn screen_alone_is_valid() {
        let reply = ExchangeResponse {
            screen: Some("DONE".into()),
            data: None,
        };
        assert_eq!(rendered(reply), Ok(json!({"screen": "DONE"})));
    }

    #[test]
    fn empty_data_object_is_valid() {
        let reply = ExchangeResponse {
            screen: Some(String::new()),
            data: Some(Struct::default()),
        };
        assert_eq!(rendered(reply), Ok(json!({"data": {}})));
    }

    #[test]
    fn invalid_replies() {
        assert_eq!(
            render(&ExchangeResponse::default()),
            Err(InvalidReply::Empty)
        );
        let empty_screen = ExchangeResponse {
            screen: Some(String::new()),
            data: None,
        };
        assert_eq!(render(&empty_screen), Err(InvalidReply::Empty));
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let mut s = Struct::default();
            s.fields.insert(
                "n".into(),
                Value {
                    kind: Some(Kind::NumberValue(bad)),
                },
            );
            let reply = ExchangeResponse {
                screen: Some("X".into()),
                data: Some(s),
            };
            assert_eq!(render(&reply), Err(InvalidReply::NonFiniteNumber));
        }
    }

    #[test]
    fn unset_value_is_null() {
        let mut s = Struct::default();
        s.fields.insert("x".into(), Value { kind: None });
        let reply = ExchangeResponse {
            screen: None,
            data: Some(s),
        };
        assert_eq!(rendered(reply), Ok(json!({"data": {"x": null}})));
    }

    #[test]
    fn fallback_validation() {
        assert_eq!(
            parse_fallback(r#"{ "data" : { "acknowledged" : true } }"#).unwrap(),
            Bytes::from_static(br#"{"data":{"acknowledged":true}}"#)
        );
        assert!(parse_fallback(r#"{"screen":"SORRY"}"#).is_ok());
        for bad in [
            "",
            "{}",
            "[]",
            r#"{"data":[]}"#,
            r#"{"screen":""}"#,
            r#"{"data":null}"#,
            "nope",
        ] {
            assert!(parse_fallback(bad).is_err(), "{bad:?}");
        }
    }
}

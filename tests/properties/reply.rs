//! Property (3): any reply a handler can send becomes itself or the fallback.

use flows_bridge::{proto::ExchangeResponse, reply};
use proptest::prelude::*;
use prost::Message;

use crate::{oracle, strategies::*};

proptest! {
    /// `render` gives bytes that a strict JSON reader takes as a reply Platica
    /// accepts and that equal the reply (screen, and data with every number as
    /// the same double, whole ones up to 2^53 written as integers), or says
    /// `Empty` / `NonFiniteNumber` exactly when the reply is one (and the
    /// bridge then sends the fallback). Never invalid JSON, never a reply
    /// Platica would refuse.
    #[test]
    fn a_reply_renders_as_itself_or_is_refused(reply in exchange_response()) {
        let rendered = reply::render(&reply);
        oracle::check_reply(&reply, &rendered).map_err(TestCaseError::fail)?;
    }

    /// The same after the wire: what the bridge decodes from the handler's
    /// bytes renders the same.
    #[test]
    fn a_reply_renders_the_same_after_the_wire(reply in exchange_response()) {
        let decoded = ExchangeResponse::decode(reply.encode_to_vec().as_slice()).unwrap();
        let rendered = reply::render(&decoded);
        oracle::check_reply(&reply, &rendered).map_err(TestCaseError::fail)?;
        prop_assert_eq!(rendered, reply::render(&reply));
    }

    /// A reply with a screen and data made only of finite numbers always goes
    /// through (the fallback is for replies that are really invalid).
    #[test]
    fn a_reply_with_finite_data_is_never_refused(
        screen in prop::option::of(any_string()),
        data in prop::collection::btree_map(any_string(), finite_f64(), 0..6),
    ) {
        let data = prost_types::Struct {
            fields: data
                .into_iter()
                .map(|(k, n)| (k, prost_types::Value { kind: Some(prost_types::value::Kind::NumberValue(n)) }))
                .collect(),
        };
        let reply = ExchangeResponse { screen, data: Some(data) };
        let rendered = reply::render(&reply);
        prop_assert!(rendered.is_ok());
        oracle::check_reply(&reply, &rendered).map_err(TestCaseError::fail)?;
    }
}

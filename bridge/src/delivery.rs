//! A Platica flows delivery: its JSON turned into an [`ExchangeRequest`].
//!
//! The only module that sees both the Platica JSON and the protobuf. It is
//! lossless: every key of every object ends up either in its typed field or in
//! that object's `unknown_fields`, so a field Platica adds tomorrow, or a known
//! field with an unexpected type, still reaches the handler.

use std::time::SystemTime;

use std::{borrow::Cow, collections::BTreeMap, fmt, marker::PhantomData};

use prost_types::{ListValue, Struct, Timestamp, Value, value::Kind};
use serde::{
    Deserialize, Deserializer,
    de::{MapAccess, SeqAccess, Visitor},
};
use serde_json::{Map, Value as Json};

use crate::{
    proto::{
        Action, Client, Conversation, Event, ExchangeRequest, Flow, FlowExchange, FlowResponse,
    },
    signature::VerifiedBody,
};

/// The prefix of every flows event; anything else was sent to the wrong endpoint.
pub const EVENT_PREFIX: &str = "whatsapp.flows.";

/// A parsed delivery and the raw envelope strings its headers are checked against.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Boxed: 1.7 KB inline, and it travels through several futures on its
    /// way to the handler; a pointer moves for free.
    pub request: Box<ExchangeRequest>,
    /// `timestamp` exactly as sent (the `X-Webhook-Timestamp` header repeats it).
    pub raw_timestamp: String,
}

impl Delivery {
    pub fn id(&self) -> &str {
        &self.request.id
    }

    pub fn timestamp(&self) -> Timestamp {
        self.request.timestamp.unwrap_or_default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("the body is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the body is not a flows delivery: {0}")]
    Invalid(String),
    #[error("event {0:?} is not a WhatsApp Flows event (whatsapp.flows.*)")]
    UnsupportedEvent(String),
}

fn invalid(what: impl Into<String>) -> DeliveryError {
    DeliveryError::Invalid(what.into())
}

/// Parses a verified body. Required: an object with a non-empty string `id`, a
/// string `event` under `whatsapp.flows.`, an RFC 3339 `timestamp`, and a
/// `data.flowExchange` object with a string `action`. Everything else is optional.
///
/// The JSON is read straight into the protobuf types, in one pass: a known
/// key goes to its typed field, any other key (or a known key whose value has
/// an unexpected type) to that object's `unknown_fields`.
///
/// An object with the same key twice is malformed: readers disagree on which
/// value counts (serde_json keeps the last, others the first), and a signed
/// body must mean one thing.
pub fn parse(body: &VerifiedBody) -> Result<Delivery, DeliveryError> {
    let envelope = match serde_json::from_slice::<Read<Envelope>>(body.bytes())? {
        Read::Typed(envelope) => envelope,
        Read::Null | Read::Other(_) => {
            return Err(invalid("the top level must be a JSON object"));
        }
    };

    let id = required_string("id", envelope.id)?
        .filter(|id| !id.is_empty())
        .ok_or_else(|| invalid("`id` must be a non-empty string"))?;
    let event_name = required_string("event", envelope.event)?
        .ok_or_else(|| invalid("`event` must be a string"))?;
    if !event_name.starts_with(EVENT_PREFIX) {
        return Err(DeliveryError::UnsupportedEvent(event_name));
    }
    let raw_timestamp = required_string("timestamp", envelope.timestamp)?
        .ok_or_else(|| invalid("`timestamp` must be a string"))?;
    let timestamp: Timestamp = raw_timestamp
        .parse()
        .map_err(|_| invalid("`timestamp` must be an RFC 3339 date-time"))?;
    let Read::Typed(data) = envelope.data else {
        return Err(invalid("`data` must be an object"));
    };
    let Read::Typed(exchange) = data.flow_exchange else {
        return Err(invalid("`data.flowExchange` must be an object"));
    };
    let action_name = required_string("action", exchange.action)?
        .ok_or_else(|| invalid("`data.flowExchange.action` must be a string"))?;

    let request = Box::new(ExchangeRequest {
        event: event_from_name(&event_name) as i32,
        event_name,
        id,
        workspace_id: envelope.workspace_id,
        timestamp: Some(timestamp),
        source: envelope.source,
        resource_type: envelope.resource_type,
        resource_id: envelope.resource_id,
        changes: envelope.changes,
        client: data.client,
        conversation: data.conversation,
        flow: data.flow,
        flow_response: data.flow_response,
        flow_exchange: Some(FlowExchange {
            action: action_from_name(&action_name) as i32,
            action_name,
            screen: exchange.screen,
            version: exchange.version,
            payload: Some(exchange.payload.unwrap_or_default()),
            unknown_fields: exchange.unknown_fields,
        }),
        data_unknown_fields: data.unknown_fields,
        unknown_fields: envelope.unknown_fields,
        context: None,
    });
    if message_depth(&request) > MAX_MESSAGE_DEPTH {
        return Err(invalid(format!(
            "nested deeper than protobuf decoders read ({MAX_MESSAGE_DEPTH} messages; \
             a JSON object is three, an array two)"
        )));
    }
    Ok(Delivery {
        request,
        raw_timestamp,
    })
}

/// For the envelope's required strings: a wrong type is an error, not unknown.
fn required_string(key: &str, value: Option<Value>) -> Result<Option<String>, DeliveryError> {
    match value.and_then(|v| v.kind) {
        None | Some(Kind::NullValue(_)) => Ok(None),
        Some(Kind::StringValue(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(format!("`{key}` must be a string"))),
    }
}

/// The deepest nesting protobuf decoders accept: prost, and the C++, Java and
/// Python runtimes, stop at 100 nested messages. A delivery deeper than this
/// would parse here but fail in every handler, so it is refused up front.
pub const MAX_MESSAGE_DEPTH: usize = 100;

/// How deep the request's messages nest, the request itself being 1.
fn message_depth(request: &ExchangeRequest) -> usize {
    // Each field's depth: the message holding it, plus its own Struct/Value tree.
    let under =
        |parent: usize, s: &Option<Struct>| s.as_ref().map_or(0, |s| parent + struct_depth(s));
    let values =
        |parent: usize, v: &[Value]| v.iter().map(|v| parent + value_depth(v)).max().unwrap_or(0);
    let x = request.flow_exchange.as_ref();
    [
        under(1, &request.unknown_fields),
        under(1, &request.data_unknown_fields),
        request.changes.as_ref().map_or(0, |v| 1 + value_depth(v)),
        x.map_or(0, |x| under(2, &x.payload).max(under(2, &x.unknown_fields))),
        request
            .client
            .as_ref()
            .map_or(0, |c| under(2, &c.unknown_fields)),
        request
            .flow
            .as_ref()
            .map_or(0, |f| under(2, &f.unknown_fields)),
        request
            .flow_response
            .as_ref()
            .map_or(0, |f| under(2, &f.unknown_fields)),
        request.conversation.as_ref().map_or(0, |c| {
            under(2, &c.unknown_fields)
                .max(values(2, &c.owners))
                .max(values(2, &c.tags))
        }),
        1,
    ]
    .into_iter()
    .max()
    .unwrap_or(1)
}

/// A Struct, its map entries, their Values, and so on down.
fn struct_depth(s: &Struct) -> usize {
    1 + s
        .fields
        .values()
        .map(|v| 1 + value_depth(v))
        .max()
        .unwrap_or(0)
}

fn value_depth(v: &Value) -> usize {
    1 + match &v.kind {
        Some(Kind::StructValue(s)) => struct_depth(s),
        Some(Kind::ListValue(list)) => 1 + list.values.iter().map(value_depth).max().unwrap_or(0),
        _ => 0,
    }
}

pub fn event_from_name(name: &str) -> Event {
    match name {
        "whatsapp.flows.init" => Event::Init,
        "whatsapp.flows.screen_advance" => Event::ScreenAdvance,
        "whatsapp.flows.back" => Event::Back,
        _ => Event::Unspecified,
    }
}

pub fn action_from_name(name: &str) -> Action {
    match name {
        "init" => Action::Init,
        "data_exchange" => Action::DataExchange,
        "back" => Action::Back,
        _ => Action::Unspecified,
    }
}

/// One JSON value as read for a field: the expected shape, `null`, or any
/// other value (kept for `unknown_fields`).
#[derive(Default)]
enum Read<T> {
    Typed(T),
    #[default]
    Null,
    Other(Value),
}

/// A JSON object read into a message: `KEYS` are its typed fields, in the
/// order `read` numbers them; every other key goes to `unknown_fields`.
trait Fields: Default {
    const KEYS: &'static [&'static str];

    /// Reads the value of `KEYS[key]` into its field; a value of another type
    /// is handed back for `unknown_fields`.
    fn read<'de, A: MapAccess<'de>>(
        &mut self,
        key: usize,
        map: &mut A,
    ) -> Result<Option<Value>, A::Error>;

    fn set_unknown(&mut self, unknown: Option<Struct>);
}

fn same_key_twice<E: serde::de::Error>() -> E {
    // The key is not named: payload keys are the business's data.
    E::custom("an object has the same key twice")
}

fn read_object<'de, T: Fields, A: MapAccess<'de>>(mut map: A) -> Result<T, A::Error> {
    let mut fields = T::default();
    let mut unknown = BTreeMap::new();
    let mut seen = 0u32;
    while let Some(Key(key)) = map.next_key()? {
        let other = match T::KEYS.iter().position(|known| *known == key) {
            Some(index) => {
                if seen & (1 << index) != 0 {
                    return Err(same_key_twice());
                }
                seen |= 1 << index;
                fields.read(index, &mut map)?
            }
            None => Some(map.next_value::<Any>()?.0),
        };
        if let Some(value) = other
            && unknown.insert(key.into_owned(), value).is_some()
        {
            return Err(same_key_twice());
        }
    }
    fields.set_unknown((!unknown.is_empty()).then_some(Struct { fields: unknown }));
    Ok(fields)
}

/// An object key, borrowed from the body unless it has escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(reader: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        reader.deserialize_str(KeyVisitor)
    }
}

/// Any JSON value as a `google.protobuf.Value`. Numbers become doubles, as
/// the Value type requires.
struct Any(Value);

fn value(kind: Kind) -> Value {
    Value { kind: Some(kind) }
}

impl<'de> Deserialize<'de> for Any {
    fn deserialize<D: Deserializer<'de>>(reader: D) -> Result<Self, D::Error> {
        reader.deserialize_any(AnyVisitor).map(Any)
    }
}

struct AnyVisitor;

impl<'de> Visitor<'de> for AnyVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(value(Kind::NullValue(0)))
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(value(Kind::BoolValue(b)))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(value(Kind::NumberValue(n as f64)))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(value(Kind::NumberValue(n as f64)))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        Ok(value(Kind::NumberValue(n)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(value(Kind::StringValue(s.to_owned())))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(value(Kind::StringValue(s)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(Any(item)) = seq.next_element()? {
            values.push(item);
        }
        Ok(value(Kind::ListValue(ListValue { values })))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut fields = BTreeMap::new();
        while let Some(Key(key)) = map.next_key()? {
            let Any(item) = map.next_value()?;
            if fields.insert(key.into_owned(), item).is_some() {
                return Err(same_key_twice());
            }
        }
        Ok(value(Kind::StructValue(Struct { fields })))
    }
}

/// What a field expects beyond the scalar JSON types: an object read into a
/// message, or an exact integer.
trait Shape<'de>: Sized {
    fn object<A: MapAccess<'de>>(map: A) -> Result<Read<Self>, A::Error> {
        AnyVisitor.visit_map(map).map(Read::Other)
    }
    fn integer(n: i64) -> Read<Self> {
        Read::Other(value(Kind::NumberValue(n as f64)))
    }
}

impl<'de, T: Fields> Shape<'de> for T {
    fn object<A: MapAccess<'de>>(map: A) -> Result<Read<T>, A::Error> {
        read_object(map).map(Read::Typed)
    }
}

/// A JSON integer that fits an i64 (`5`, not `5.0`).
struct Integer(i64);

impl Shape<'_> for Integer {
    fn integer(n: i64) -> Read<Integer> {
        Read::Typed(Integer(n))
    }
}

impl<'de, T: Shape<'de>> Deserialize<'de> for Read<T> {
    fn deserialize<D: Deserializer<'de>>(reader: D) -> Result<Self, D::Error> {
        reader.deserialize_any(ShapeVisitor(PhantomData))
    }
}

struct ShapeVisitor<T>(PhantomData<T>);

impl<'de, T: Shape<'de>> Visitor<'de> for ShapeVisitor<T> {
    type Value = Read<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Read<T>, E> {
        Ok(Read::Null)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Read<T>, E> {
        Ok(Read::Other(value(Kind::BoolValue(b))))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Read<T>, E> {
        Ok(T::integer(n))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Read<T>, E> {
        Ok(i64::try_from(n).map_or_else(
            |_| Read::Other(value(Kind::NumberValue(n as f64))),
            T::integer,
        ))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Read<T>, E> {
        Ok(Read::Other(value(Kind::NumberValue(n))))
    }
    fn visit_str<E>(self, s: &str) -> Result<Read<T>, E> {
        Ok(Read::Other(value(Kind::StringValue(s.to_owned()))))
    }
    fn visit_string<E>(self, s: String) -> Result<Read<T>, E> {
        Ok(Read::Other(value(Kind::StringValue(s))))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Read<T>, A::Error> {
        AnyVisitor.visit_seq(seq).map(Read::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Read<T>, A::Error> {
        T::object(map)
    }
}

// The typed fields, each taking its value or handing it back for `unknown_fields`.
// `null` is the same as absent.

fn string(v: Value, field: &mut Option<String>) -> Option<Value> {
    match v.kind {
        Some(Kind::StringValue(s)) => *field = Some(s),
        Some(Kind::NullValue(_)) => {}
        _ => return Some(v),
    }
    None
}

fn boolean(v: Value, field: &mut Option<bool>) -> Option<Value> {
    match v.kind {
        Some(Kind::BoolValue(b)) => *field = Some(b),
        Some(Kind::NullValue(_)) => {}
        _ => return Some(v),
    }
    None
}

fn timestamp(v: Value, field: &mut Option<Timestamp>) -> Option<Value> {
    match &v.kind {
        Some(Kind::StringValue(s)) => match s.parse() {
            Ok(ts) => *field = Some(ts),
            Err(_) => return Some(v),
        },
        Some(Kind::NullValue(_)) => {}
        _ => return Some(v),
    }
    None
}

fn list(v: Value, field: &mut Vec<Value>) -> Option<Value> {
    match v.kind {
        Some(Kind::ListValue(list)) => *field = list.values,
        Some(Kind::NullValue(_)) => {}
        _ => return Some(v),
    }
    None
}

fn strings(v: Value, field: &mut Vec<String>) -> Option<Value> {
    match v.kind {
        Some(Kind::ListValue(list))
            if list
                .values
                .iter()
                .all(|item| matches!(item.kind, Some(Kind::StringValue(_)))) =>
        {
            *field = list
                .values
                .into_iter()
                .filter_map(|item| match item.kind {
                    Some(Kind::StringValue(s)) => Some(s),
                    _ => None,
                })
                .collect();
        }
        Some(Kind::NullValue(_)) => {}
        _ => return Some(v),
    }
    None
}

fn object(v: Value, field: &mut Option<Struct>) -> Option<Value> {
    match v.kind {
        Some(Kind::StructValue(s)) => *field = Some(s),
        Some(Kind::NullValue(_)) => {}
        _ => return Some(v),
    }
    None
}

fn any(v: Value, field: &mut Option<Value>) -> Option<Value> {
    if !matches!(v.kind, Some(Kind::NullValue(_))) {
        *field = Some(v);
    }
    None
}

/// A field holding a message: an object is read into it.
fn message<T>(read: Read<T>, field: &mut Option<T>) -> Option<Value> {
    match read {
        Read::Typed(t) => *field = Some(t),
        Read::Null => {}
        Read::Other(v) => return Some(v),
    }
    None
}

fn next<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Value, A::Error> {
    map.next_value::<Any>().map(|Any(v)| v)
}

/// The top level. The required strings are kept as read and checked after
/// the whole body has been read, so malformed JSON is always reported as such.
#[derive(Default)]
struct Envelope {
    id: Option<Value>,
    event: Option<Value>,
    timestamp: Option<Value>,
    workspace_id: Option<String>,
    source: Option<String>,
    resource_type: Option<String>,
    resource_id: Option<String>,
    changes: Option<Value>,
    data: Read<Data>,
    unknown_fields: Option<Struct>,
}

impl Fields for Envelope {
    const KEYS: &'static [&'static str] = &[
        "id",
        "event",
        "timestamp",
        "workspaceId",
        "source",
        "resourceType",
        "resourceId",
        "changes",
        "data",
    ];

    fn read<'de, A: MapAccess<'de>>(
        &mut self,
        key: usize,
        map: &mut A,
    ) -> Result<Option<Value>, A::Error> {
        if key == 8 {
            self.data = map.next_value()?;
            return Ok(None);
        }
        let v = next(map)?;
        Ok(match key {
            0 => any(v, &mut self.id),
            1 => any(v, &mut self.event),
            2 => any(v, &mut self.timestamp),
            3 => string(v, &mut self.workspace_id),
            4 => string(v, &mut self.source),
            5 => string(v, &mut self.resource_type),
            6 => string(v, &mut self.resource_id),
            _ => any(v, &mut self.changes),
        })
    }

    fn set_unknown(&mut self, unknown: Option<Struct>) {
        self.unknown_fields = unknown;
    }
}

/// `data`: the context objects and the exchange itself.
#[derive(Default)]
struct Data {
    client: Option<Client>,
    conversation: Option<Conversation>,
    flow: Option<Flow>,
    flow_response: Option<FlowResponse>,
    flow_exchange: Read<Exchange>,
    unknown_fields: Option<Struct>,
}

impl Fields for Data {
    const KEYS: &'static [&'static str] = &[
        "client",
        "conversation",
        "flow",
        "flowResponse",
        "flowExchange",
    ];

    fn read<'de, A: MapAccess<'de>>(
        &mut self,
        key: usize,
        map: &mut A,
    ) -> Result<Option<Value>, A::Error> {
        Ok(match key {
            0 => message(map.next_value()?, &mut self.client),
            1 => message(map.next_value()?, &mut self.conversation),
            2 => message(map.next_value()?, &mut self.flow),
            3 => message(map.next_value()?, &mut self.flow_response),
            _ => {
                self.flow_exchange = map.next_value()?;
                None
            }
        })
    }

    fn set_unknown(&mut self, unknown: Option<Struct>) {
        self.unknown_fields = unknown;
    }
}

/// `data.flowExchange`; `action` is checked once the body has been read.
#[derive(Default)]
struct Exchange {
    action: Option<Value>,
    screen: Option<String>,
    version: Option<String>,
    payload: Option<Struct>,
    unknown_fields: Option<Struct>,
}

impl Fields for Exchange {
    const KEYS: &'static [&'static str] = &["action", "screen", "version", "payload"];

    fn read<'de, A: MapAccess<'de>>(
        &mut self,
        key: usize,
        map: &mut A,
    ) -> Result<Option<Value>, A::Error> {
        let v = next(map)?;
        Ok(match key {
            0 => any(v, &mut self.action),
            1 => string(v, &mut self.screen),
            2 => string(v, &mut self.version),
            _ => object(v, &mut self.payload),
        })
    }

    fn set_unknown(&mut self, unknown: Option<Struct>) {
        self.unknown_fields = unknown;
    }
}

impl Fields for Client {
    const KEYS: &'static [&'static str] = &[
        "id",
        "phoneNumber",
        "creationDate",
        "lastUpdate",
        "name",
        "firstname",
        "email",
    ];

    fn read<'de, A: MapAccess<'de>>(
        &mut self,
        key: usize,
        map: &mut A,
    ) -> Result<Option<Value>, A::Error> {
        let v = next(map)?;
        Ok(match key {
            0 => string(v, &mut self.id),
            1 => string(v, &mut self.phone_number),
            2 => timestamp(v, &mut self.creation_date),
            3 => timestamp(v, &mut self.last_update),
            4 => string(v, &mut self.name),
            5 => string(v, &mut self.firstname),
            _ => string(v, &mut self.email),
        })
    }

    fn set_unknown(&mut self, unknown: Option<Struct>) {
        self.unknown_fields = unknown;
    }
}

impl Fields for Conversation {
    const KEYS: &'static [&'static str] = &[
        "id",
        "conversationId",
        "canSendDirectMessage",
        "workspaceId",
        "channelId",
        "contactName",
        "phoneNumber",
        "topic",
        "platform",
        "owners",
        "tags",
        "creationDate",
        "lastUpdate",
        "status",
        "operation",
        "messageCount",
    ];

    fn read<'de, A: MapAccess<'de>>(
        &mut self,
        key: usize,
        map: &mut A,
    ) -> Result<Option<Value>, A::Error> {
        if key == 15 {
            let count = map.next_value::<Read<Integer>>()?;
            let mut field = None;
            let other = message(count, &mut field);
            self.message_count = field.map(|Integer(n)| n);
            return Ok(other);
        }
        let v = next(map)?;
        Ok(match key {
            0 => string(v, &mut self.id),
            1 => string(v, &mut self.conversation_id),
            2 => boolean(v, &mut self.can_send_direct_message),
            3 => string(v, &mut self.workspace_id),
            4 => string(v, &mut self.channel_id),
            5 => string(v, &mut self.contact_name),
            6 => string(v, &mut self.phone_number),
            7 => string(v, &mut self.topic),
            8 => string(v, &mut self.platform),
            9 => list(v, &mut self.owners),
            10 => list(v, &mut self.tags),
            11 => timestamp(v, &mut self.creation_date),
            12 => timestamp(v, &mut self.last_update),
            13 => string(v, &mut self.status),
            _ => string(v, &mut self.operation),
        })
    }

    fn set_unknown(&mut self, unknown: Option<Struct>) {
        self.unknown_fields = unknown;
    }
}

impl Fields for Flow {
    const KEYS: &'static [&'static str] = &[
        "id",
        "wabaId",
        "name",
        "status",
        "categories",
        "dataApiVersion",
        "endpointUri",
        "jsonVersion",
        "creationDate",
        "lastUpdate",
        "lastSyncAt",
    ];

    fn read<'de, A: MapAccess<'de>>(
        &mut self,
        key: usize,
        map: &mut A,
    ) -> Result<Option<Value>, A::Error> {
        let v = next(map)?;
        Ok(match key {
            0 => string(v, &mut self.id),
            1 => string(v, &mut self.waba_id),
            2 => string(v, &mut self.name),
            3 => string(v, &mut self.status),
            4 => strings(v, &mut self.categories),
            5 => string(v, &mut self.data_api_version),
            6 => string(v, &mut self.endpoint_uri),
            7 => string(v, &mut self.json_version),
            8 => timestamp(v, &mut self.creation_date),
            9 => timestamp(v, &mut self.last_update),
            _ => timestamp(v, &mut self.last_sync_at),
        })
    }

    fn set_unknown(&mut self, unknown: Option<Struct>) {
        self.unknown_fields = unknown;
    }
}

impl Fields for FlowResponse {
    const KEYS: &'static [&'static str] = &[
        "flowToken",
        "status",
        "sentAt",
        "openedAt",
        "lastActivityAt",
        "completedAt",
        "expiresAt",
        "clientId",
        "conversationId",
        "messageId",
        "campaignId",
        "agentId",
        "channelId",
    ];

    fn read<'de, A: MapAccess<'de>>(
        &mut self,
        key: usize,
        map: &mut A,
    ) -> Result<Option<Value>, A::Error> {
        let v = next(map)?;
        Ok(match key {
            0 => string(v, &mut self.flow_token),
            1 => string(v, &mut self.status),
            2 => timestamp(v, &mut self.sent_at),
            3 => timestamp(v, &mut self.opened_at),
            4 => timestamp(v, &mut self.last_activity_at),
            5 => timestamp(v, &mut self.completed_at),
            6 => timestamp(v, &mut self.expires_at),
            7 => string(v, &mut self.client_id),
            8 => string(v, &mut self.conversation_id),
            9 => string(v, &mut self.message_id),
            10 => string(v, &mut self.campaign_id),
            11 => string(v, &mut self.agent_id),
            _ => string(v, &mut self.channel_id),
        })
    }

    fn set_unknown(&mut self, unknown: Option<Struct>) {
        self.unknown_fields = unknown;
    }
}

/// JSON object to `google.protobuf.Struct`. Numbers become doubles, as the
/// Struct type requires.
pub fn to_struct(map: Map<String, Json>) -> Struct {
    Struct {
        fields: map.into_iter().map(|(k, v)| (k, to_value(v))).collect(),
    }
}

pub fn to_value(json: Json) -> Value {
    let kind = match json {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(b),
        // serde_json only holds finite numbers, so as_f64 always succeeds.
        Json::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        Json::String(s) => Kind::StringValue(s),
        Json::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.into_iter().map(to_value).collect(),
        }),
        Json::Object(map) => Kind::StructValue(to_struct(map)),
    };
    Value { kind: Some(kind) }
}

/// How far a delivery's timestamp may be from now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Freshness {
    #[error("the delivery timestamp is older than the accepted tolerance")]
    Stale,
    #[error("the delivery timestamp is further in the future than the accepted tolerance")]
    Future,
}

/// Checks `timestamp` against `now ± tolerance`. All arithmetic is on i128
/// nanoseconds, wide enough for any i64 seconds, so no timestamp can overflow it.
pub fn check_freshness(
    timestamp: &Timestamp,
    now: SystemTime,
    tolerance: std::time::Duration,
) -> Result<(), Freshness> {
    let nanos_of =
        |seconds: i64, nanos: i32| i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
    let now = Timestamp::from(now);
    let age = nanos_of(now.seconds, now.nanos) - nanos_of(timestamp.seconds, timestamp.nanos);
    let tolerance = i128::try_from(tolerance.as_nanos()).unwrap_or(i128::MAX);
    if age > tolerance {
        Err(Freshness::Stale)
    } else if -age > tolerance {
        Err(Freshness::Future)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;

    const FULL: &str = include_str!("../../tests/vectors/deliveries/screen_advance_full.json");
    const INIT: &str = include_str!("../../tests/vectors/deliveries/init.json");
    const BACK: &str = include_str!("../../tests/vectors/deliveries/back.json");

    fn parse_str(body: &str) -> Result<Delivery, DeliveryError> {
        parse(&VerifiedBody::unchecked(Bytes::copy_from_slice(
            body.as_bytes(),
        )))
    }

    fn ts(s: &str) -> Option<Timestamp> {
        Some(s.parse().unwrap())
    }

    fn s(v: &str) -> Option<String> {
        Some(v.to_owned())
    }

    fn string_value(v: &str) -> Value {
        Value {
            kind: Some(Kind::StringValue(v.to_owned())),
        }
    }

    #[test]
    fn full_seed_delivery_field_by_field() {
        let d = parse_str(FULL).unwrap();
        let r = &d.request;
        assert_eq!(r.id, "8f2c4d6a-1b3e-4f5d-8a9c-2e7b6d1a3f4e");
        assert_eq!(r.event(), Event::ScreenAdvance);
        assert_eq!(r.event_name, "whatsapp.flows.screen_advance");
        assert_eq!(r.workspace_id, s("ws_456"));
        assert_eq!(r.timestamp, ts("2026-05-06T19:00:30.000Z"));
        assert_eq!(d.raw_timestamp, "2026-05-06T19:00:30.000Z");
        assert_eq!(r.source, s("whatsapp.flows"));
        assert_eq!(r.resource_type, s("flow_response"));
        assert_eq!(r.resource_id, s("ZmxvdyQwMQ=="));
        assert_eq!(r.changes, None, "null changes stay absent");
        assert_eq!(r.unknown_fields, None);
        assert_eq!(r.data_unknown_fields, None);

        let c = r.client.as_ref().unwrap();
        assert_eq!(c.id, s("client_123"));
        assert_eq!(c.phone_number, s("+5215555555555"));
        assert_eq!(c.creation_date, ts("2026-05-01T12:00:00.000Z"));
        assert_eq!(c.last_update, ts("2026-05-06T18:59:00.000Z"));
        assert_eq!(c.name, s("Juan Pérez"));
        assert_eq!(c.firstname, s("Juan"));
        assert_eq!(c.email, s("juan@empresa.com"));
        assert_eq!(c.unknown_fields, None);

        let v = r.conversation.as_ref().unwrap();
        assert_eq!(v.id, s("conv_123"));
        assert_eq!(v.conversation_id, s("conv_123"));
        assert_eq!(v.can_send_direct_message, Some(true));
        assert_eq!(v.workspace_id, s("ws_456"));
        assert_eq!(v.channel_id, s("channel_wa_123"));
        assert_eq!(v.contact_name, s("Juan Pérez"));
        assert_eq!(v.phone_number, s("+5215555555555"));
        assert_eq!(v.topic, s(""), "an empty string is present, not absent");
        assert_eq!(v.platform, s("whatsapp"));
        assert!(v.owners.is_empty() && v.tags.is_empty());
        assert_eq!(v.creation_date, ts("2026-05-06T18:58:00.000Z"));
        assert_eq!(v.last_update, ts("2026-05-06T19:00:00.000Z"));
        assert_eq!(v.status, s("open"));
        assert_eq!(v.operation, s("automatic"));
        assert_eq!(v.message_count, Some(3));
        assert_eq!(v.unknown_fields, None);

        let f = r.flow.as_ref().unwrap();
        assert_eq!(f.id, s("flow_doc_abc"));
        assert_eq!(f.waba_id, s("1234567890"));
        assert_eq!(f.name, s("Quote flow"));
        assert_eq!(f.status, s("PUBLISHED"));
        assert_eq!(f.categories, vec!["LEAD_GENERATION".to_owned()]);
        assert_eq!(f.data_api_version, s("3.0"));
        assert_eq!(
            f.endpoint_uri,
            s("https://app.platica.mx/api/whatsapp/flows/1234567890/data")
        );
        assert_eq!(f.json_version, s("7.1"));
        assert_eq!(f.creation_date, ts("2026-05-01T12:00:00.000Z"));
        assert_eq!(f.last_update, ts("2026-05-06T18:55:00.000Z"));
        assert_eq!(f.last_sync_at, ts("2026-05-06T18:55:00.000Z"));
        assert_eq!(f.unknown_fields, None);

        let fr = r.flow_response.as_ref().unwrap();
        assert_eq!(fr.flow_token, s("ZmxvdyQwMQ=="));
        assert_eq!(fr.status, s("IN_PROGRESS"));
        assert_eq!(fr.sent_at, ts("2026-05-06T18:59:00.000Z"));
        assert_eq!(fr.opened_at, ts("2026-05-06T19:00:00.000Z"));
        assert_eq!(fr.last_activity_at, ts("2026-05-06T19:00:30.000Z"));
        assert_eq!(fr.completed_at, None, "null timestamp stays absent");
        assert_eq!(fr.expires_at, ts("2026-05-07T18:59:00.000Z"));
        assert_eq!(fr.client_id, s("client_123"));
        assert_eq!(fr.conversation_id, s("conv_123"));
        assert_eq!(fr.message_id, s("wamid.HBgN..."));
        assert_eq!(fr.campaign_id, None);
        assert_eq!(fr.agent_id, None);
        assert_eq!(fr.channel_id, s("channel_wa_123"));
        assert_eq!(fr.unknown_fields, None);

        let x = r.flow_exchange.as_ref().unwrap();
        assert_eq!(x.action(), Action::DataExchange);
        assert_eq!(x.action_name, "data_exchange");
        assert_eq!(x.screen, s("WELCOME"));
        assert_eq!(x.version, s("3.0"));
        let payload = &x.payload.as_ref().unwrap().fields;
        assert_eq!(payload.len(), 2);
        assert_eq!(payload["selected_product"], string_value("p2"));
        assert_eq!(payload["email"], string_value("juan@empresa.com"));
        assert_eq!(x.unknown_fields, None);
    }

    #[test]
    fn init_seed_delivery() {
        let r = parse_str(INIT).unwrap().request;
        assert_eq!(r.event(), Event::Init);
        assert_eq!(r.client, None, "null client stays absent");
        assert_eq!(r.conversation, None);
        let f = r.flow.unwrap();
        assert_eq!(
            (f.id, f.waba_id, f.name),
            (s("flow_doc_abc"), s("1234567890"), None)
        );
        let fr = r.flow_response.unwrap();
        assert_eq!(
            (fr.flow_token, fr.status),
            (s("ZmxvdyQwMQ=="), s("IN_PROGRESS"))
        );
        let x = r.flow_exchange.unwrap();
        assert_eq!(x.action(), Action::Init);
        assert_eq!(x.screen, None, "null screen stays absent");
        assert_eq!(x.payload, Some(Struct::default()));
    }

    #[test]
    fn back_seed_delivery() {
        let r = parse_str(BACK).unwrap().request;
        assert_eq!(r.event(), Event::Back);
        let x = r.flow_exchange.unwrap();
        assert_eq!(x.action(), Action::Back);
        assert_eq!(x.screen, s("PAYMENT"));
    }

    #[test]
    fn unknown_fields_reach_the_handler_at_every_level() {
        let mut json: Json = serde_json::from_str(FULL).unwrap();
        json["newTop"] = serde_json::json!({"a": 1});
        json["data"]["newData"] = serde_json::json!([1, "x"]);
        json["data"]["client"]["loyaltyTier"] = serde_json::json!("gold");
        json["data"]["conversation"]["messageCount"] = serde_json::json!("many");
        json["data"]["flow"]["creationDate"] = serde_json::json!("yesterday");
        json["data"]["flowResponse"]["newState"] = serde_json::json!(true);
        json["data"]["flowExchange"]["nonce"] = serde_json::json!(7);
        json["data"]["newObject"] = serde_json::json!(null);
        let r = parse_str(&json.to_string()).unwrap().request;

        let field = |s: &Option<Struct>, k: &str| s.as_ref().unwrap().fields[k].clone();
        assert_eq!(
            field(&r.unknown_fields, "newTop"),
            to_value(serde_json::json!({"a": 1}))
        );
        assert_eq!(
            field(&r.data_unknown_fields, "newData"),
            to_value(serde_json::json!([1, "x"]))
        );
        assert_eq!(
            field(&r.data_unknown_fields, "newObject"),
            to_value(Json::Null)
        );
        assert_eq!(
            field(&r.client.unwrap().unknown_fields, "loyaltyTier"),
            string_value("gold")
        );
        let conversation = r.conversation.unwrap();
        assert_eq!(conversation.message_count, None);
        assert_eq!(
            field(&conversation.unknown_fields, "messageCount"),
            string_value("many")
        );
        let flow = r.flow.unwrap();
        assert_eq!(flow.creation_date, None);
        assert_eq!(
            field(&flow.unknown_fields, "creationDate"),
            string_value("yesterday")
        );
        assert_eq!(
            field(&r.flow_response.unwrap().unknown_fields, "newState"),
            to_value(Json::Bool(true))
        );
        assert_eq!(
            field(&r.flow_exchange.unwrap().unknown_fields, "nonce"),
            to_value(serde_json::json!(7))
        );
    }

    #[test]
    fn unknown_event_and_action_keep_their_names() {
        let mut json: Json = serde_json::from_str(INIT).unwrap();
        json["event"] = "whatsapp.flows.complete".into();
        json["data"]["flowExchange"]["action"] = "complete".into();
        let r = parse_str(&json.to_string()).unwrap().request;
        assert_eq!(r.event(), Event::Unspecified);
        assert_eq!(r.event_name, "whatsapp.flows.complete");
        let x = r.flow_exchange.unwrap();
        assert_eq!(x.action(), Action::Unspecified);
        assert_eq!(x.action_name, "complete");
    }

    #[test]
    fn not_a_flows_delivery() {
        type Mutation = fn(&mut Json);
        let cases: &[(&str, Mutation)] = &[
            ("no id", |j| drop(j.as_object_mut().unwrap().remove("id"))),
            ("empty id", |j| j["id"] = "".into()),
            ("numeric id", |j| j["id"] = 5.into()),
            ("no event", |j| {
                drop(j.as_object_mut().unwrap().remove("event"))
            }),
            ("no timestamp", |j| {
                drop(j.as_object_mut().unwrap().remove("timestamp"))
            }),
            ("bad timestamp", |j| j["timestamp"] = "yesterday".into()),
            ("numeric timestamp", |j| {
                j["timestamp"] = 1_700_000_000.into()
            }),
            ("no data", |j| {
                drop(j.as_object_mut().unwrap().remove("data"))
            }),
            ("null data", |j| j["data"] = Json::Null),
            ("no flowExchange", |j| {
                drop(j["data"].as_object_mut().unwrap().remove("flowExchange"))
            }),
            ("no action", |j| {
                drop(
                    j["data"]["flowExchange"]
                        .as_object_mut()
                        .unwrap()
                        .remove("action"),
                )
            }),
        ];
        for (name, mutate) in cases {
            let mut json: Json = serde_json::from_str(INIT).unwrap();
            mutate(&mut json);
            let got = parse_str(&json.to_string());
            assert!(
                matches!(got, Err(DeliveryError::Invalid(_))),
                "{name}: {got:?}"
            );
        }
        assert!(matches!(parse_str("[]"), Err(DeliveryError::Invalid(_))));
        assert!(matches!(parse_str("\"x\""), Err(DeliveryError::Invalid(_))));
    }

    #[test]
    fn other_events_are_unsupported() {
        let mut json: Json = serde_json::from_str(INIT).unwrap();
        json["event"] = "whatsapp.message.received".into();
        assert!(matches!(
            parse_str(&json.to_string()),
            Err(DeliveryError::UnsupportedEvent(e)) if e == "whatsapp.message.received"
        ));
    }

    #[test]
    fn malformed_json() {
        for body in ["", "{", "{\"id\":", "nul", "{\"a\":1e999}", "\u{feff}{}"] {
            assert!(
                matches!(parse_str(body), Err(DeliveryError::Json(_))),
                "{body:?}"
            );
        }
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert!(matches!(parse_str(&deep), Err(DeliveryError::Json(_))));
    }

    #[test]
    fn a_key_twice_is_malformed_at_any_depth() {
        let seed = include_str!("../../tests/vectors/deliveries/screen_advance.json");
        assert!(parse_str(seed).is_ok());
        for (find, twice) in [
            (r#""id": "#, r#""id": "first", "id": "#),
            (
                r#""event": "#,
                r#""event": "whatsapp.flows.init", "event": "#,
            ),
            (
                r#""flowExchange": "#,
                r#""flowExchange": {}, "flowExchange": "#,
            ),
            (
                r#""payload": {"#,
                r#""payload": {"secret_key": 1, "secret_key": 2, "#,
            ),
        ] {
            let body = seed.replacen(find, twice, 1);
            assert_ne!(body, seed, "{find}");
            let error = parse_str(&body).unwrap_err();
            let message = error.to_string();
            assert!(matches!(error, DeliveryError::Json(_)), "{find}: {message}");
            assert!(message.contains("same key twice"), "{message}");
            assert!(!message.contains("secret_key"), "{message}");
        }
        // The same key in two different objects is fine.
        assert!(
            parse_str(r#"{"a":{"k":1},"b":{"k":2}}"#)
                .is_err_and(|e| !e.to_string().contains("twice"))
        );
    }

    /// `{"a": {"a": ... {}}}` with `objects` objects.
    fn nested(objects: usize) -> Json {
        (1..objects).fold(
            serde_json::json!({}),
            |inner, _| serde_json::json!({ "a": inner }),
        )
    }

    #[test]
    fn nesting_is_capped_where_protobuf_decoders_stop() {
        use prost::Message;
        // An unknown top-level field: ExchangeRequest > Struct, then three
        // messages an object (Struct, entry, Value).
        for objects in 30..36 {
            let mut json: Json = serde_json::from_str(INIT).unwrap();
            json["deep"] = nested(objects);
            match parse_str(&json.to_string()) {
                Ok(d) => {
                    assert!(message_depth(&d.request) <= MAX_MESSAGE_DEPTH);
                    let bytes = d.request.encode_to_vec();
                    assert_eq!(
                        ExchangeRequest::decode(bytes.as_slice()).unwrap(),
                        *d.request,
                        "{objects}"
                    );
                }
                Err(DeliveryError::Invalid(why)) => {
                    assert!(why.contains("nested deeper"), "{why}");
                    // One level more than a decodable request.
                    let mut json: Json = serde_json::from_str(INIT).unwrap();
                    json["deep"] = nested(objects - 1);
                    let ok = parse_str(&json.to_string()).unwrap();
                    assert!(
                        message_depth(&ok.request) > MAX_MESSAGE_DEPTH - 3,
                        "{objects}"
                    );
                    return;
                }
                Err(other) => panic!("{objects}: {other}"),
            }
        }
        panic!("no depth was refused");
    }

    #[test]
    fn the_cap_is_prosts_own_limit() {
        use prost::Message;
        // `changes` (a Value under the request) holding nested lists: two
        // messages a level, so every depth can be reached exactly.
        let request_of_depth = |depth: usize| {
            let mut value = Value {
                kind: Some(Kind::NullValue(0)),
            };
            let mut request = ExchangeRequest::default();
            while {
                request.changes = Some(value.clone());
                message_depth(&request) < depth
            } {
                value = Value {
                    kind: Some(Kind::ListValue(prost_types::ListValue {
                        values: vec![value],
                    })),
                };
            }
            request
        };
        for depth in [MAX_MESSAGE_DEPTH - 1, MAX_MESSAGE_DEPTH] {
            let request = request_of_depth(depth);
            assert!(message_depth(&request) <= MAX_MESSAGE_DEPTH);
            let bytes = request.encode_to_vec();
            assert_eq!(
                ExchangeRequest::decode(bytes.as_slice()).unwrap(),
                request,
                "{depth}"
            );
        }
        let too_deep = request_of_depth(MAX_MESSAGE_DEPTH + 1);
        assert!(message_depth(&too_deep) > MAX_MESSAGE_DEPTH);
        assert!(ExchangeRequest::decode(too_deep.encode_to_vec().as_slice()).is_err());
    }

    #[test]
    fn freshness_edges() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let at = |offset: i64| Timestamp {
            seconds: 1_800_000_000 + offset,
            nanos: 0,
        };
        let tol = Duration::from_secs(300);
        assert_eq!(check_freshness(&at(0), now, tol), Ok(()));
        assert_eq!(check_freshness(&at(-300), now, tol), Ok(()));
        assert_eq!(check_freshness(&at(300), now, tol), Ok(()));
        assert_eq!(check_freshness(&at(-301), now, tol), Err(Freshness::Stale));
        assert_eq!(check_freshness(&at(301), now, tol), Err(Freshness::Future));
        let extreme = |seconds| Timestamp {
            seconds,
            nanos: 999_999_999,
        };
        assert_eq!(
            check_freshness(&extreme(i64::MIN), now, tol),
            Err(Freshness::Stale)
        );
        assert_eq!(
            check_freshness(&extreme(i64::MAX), now, tol),
            Err(Freshness::Future)
        );
        assert_eq!(
            check_freshness(&at(i64::MAX - 1_800_000_000), now, Duration::MAX),
            Ok(())
        );
    }

    #[test]
    fn timestamps_far_out_of_range_are_invalid_not_panics() {
        for stamp in [
            "99999-01-01T00:00:00Z",
            "0000-00-00T00:00:00Z",
            "2026-13-40T25:61:61Z",
            "-1",
        ] {
            let mut json: Json = serde_json::from_str(INIT).unwrap();
            json["timestamp"] = stamp.into();
            assert!(parse_str(&json.to_string()).is_err(), "{stamp}");
        }
    }
}

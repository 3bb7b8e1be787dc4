//! What the load generator sends: the seed's full `screen_advance` delivery,
//! each time with a unique id and a fresh timestamp, signed over the exact bytes
//! (the bridge has idempotency and freshness checks on, as in production).
//!
//! The body is a template with the id and timestamp at fixed offsets, so a
//! request costs the generator a copy, a clock read and one HMAC.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use flows_bridge::{proto::ExchangeRequest, sender, signature, tools};
use http_body_util::Full;
use serde_json::Value as Json;

/// The signing secret the harness gives the bridge.
pub const SECRET: &str = "flows-bench-secret";
/// The seed's full example, as Platica sends it.
pub const SEED: &str = tools::SEED_SCREEN_ADVANCE_FULL;
/// The budget the bridge is configured with, and Envoy's route timeout.
pub const BUDGET: Duration = Duration::from_millis(600);

const ID_MARK: &str = "@@@@@@@@-@@@@-@@@@-@@@@-@@@@@@@@@@@@";
const TS_MARK: &str = "########################";
const ID_LEN: usize = ID_MARK.len();
const TS_LEN: usize = TS_MARK.len();

/// Unique delivery ids: `{run prefix}-0000-4000-8000-{counter}`, UUID-shaped.
#[derive(Debug)]
pub struct Ids {
    prefix: String,
    counter: AtomicU64,
}

impl Ids {
    pub fn new() -> Ids {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let prefix = format!(
            "{:08x}",
            (nanos as u64 ^ u64::from(std::process::id())) as u32
        );
        Ids {
            prefix,
            counter: AtomicU64::new(0),
        }
    }

    pub fn next(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!(
            "{}-0000-4000-8000-{:012x}",
            self.prefix,
            n & 0xffff_ffff_ffff
        )
    }
}

impl Default for Ids {
    fn default() -> Self {
        Ids::new()
    }
}

/// Which body a proxy receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// Platica's delivery JSON (flows-bridge).
    Delivery,
    /// The `ExchangeRequest` as proto JSON (Envoy's transcoder).
    ProtoJson,
}

/// Signed HTTP requests, each a new delivery.
#[derive(Debug)]
pub struct Deliveries {
    template: Vec<u8>,
    id_at: usize,
    ts_at: usize,
    path: String,
    host: String,
    event: String,
    resource_type: String,
    resource_id: String,
    ids: Ids,
}

fn find(haystack: &[u8], needle: &str) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
}

impl Deliveries {
    pub fn new(body: Body, host: &str) -> Result<Deliveries, String> {
        let seed: Json = serde_json::from_str(SEED).map_err(|e| e.to_string())?;
        let (mut json, path) = match body {
            Body::Delivery => (seed.clone(), "/".to_owned()),
            Body::ProtoJson => {
                let request = tools::to_request(SEED.as_bytes(), Some("wh_bench".into()), BUDGET)
                    .map_err(|e| e.to_string())?;
                let text = tools::proto_json(&request).map_err(|e| e.to_string())?;
                (
                    serde_json::from_str(&text).map_err(|e| e.to_string())?,
                    "/platica.flows.v1.FlowHandler/Exchange".to_owned(),
                )
            }
        };
        json["id"] = ID_MARK.into();
        json["timestamp"] = TS_MARK.into();
        let template = json.to_string().into_bytes();
        let id_at = find(&template, ID_MARK).ok_or("no id in the template")?;
        let ts_at = find(&template, TS_MARK).ok_or("no timestamp in the template")?;
        let text = |key: &str| {
            seed.get(key)
                .and_then(Json::as_str)
                .unwrap_or("")
                .to_owned()
        };
        Ok(Deliveries {
            template,
            id_at,
            ts_at,
            path,
            host: host.to_owned(),
            event: text("event"),
            resource_type: text("resourceType"),
            resource_id: text("resourceId"),
            ids: Ids::new(),
        })
    }

    /// A new signed delivery, with the headers Platica sets.
    pub fn next(&self) -> http::Request<Full<Bytes>> {
        let id = self.ids.next();
        let ts = sender::now_rfc3339();
        let mut body = self.template.clone();
        body[self.id_at..self.id_at + ID_LEN].copy_from_slice(&id.as_bytes()[..ID_LEN]);
        body[self.ts_at..self.ts_at + TS_LEN].copy_from_slice(&ts.as_bytes()[..TS_LEN]);
        let signature = signature::sign(SECRET.as_bytes(), &body);
        let request = http::Request::post(self.path.as_str())
            .header(http::header::HOST, self.host.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, "Platica-Webhooks/1.0")
            .header("x-webhook-event", self.event.as_str())
            .header("x-webhook-id", "wh_bench")
            .header("x-webhook-event-id", id.as_str())
            .header("x-webhook-resource-type", self.resource_type.as_str())
            .header("x-webhook-resource-id", self.resource_id.as_str())
            .header("x-webhook-timestamp", ts.as_str())
            .header("x-webhook-signature", signature)
            .body(Full::new(Bytes::from(body)));
        // Every part above is a valid header; the builder cannot fail.
        request.unwrap_or_default()
    }
}

/// The `ExchangeRequest` the bridge would send for the seed, for the direct
/// gRPC floor; each call gets a new id and timestamp.
pub fn exchange_request() -> Result<ExchangeRequest, String> {
    tools::to_request(SEED.as_bytes(), Some("wh_bench".into()), BUDGET).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_are_unique_signed_and_parse() {
        let deliveries = Deliveries::new(Body::Delivery, "localhost").unwrap();
        let a = deliveries.next();
        let b = deliveries.next();
        assert_ne!(
            a.headers()["x-webhook-event-id"],
            b.headers()["x-webhook-event-id"]
        );
        let sig = a.headers()["x-webhook-signature"].clone();
        let body = futures_body(a);
        assert_eq!(signature::sign(SECRET.as_bytes(), &body), sig);
        let json: Json = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["event"], "whatsapp.flows.screen_advance");
        assert!(json["timestamp"].as_str().unwrap().ends_with('Z'));
        let proto = Deliveries::new(Body::ProtoJson, "localhost").unwrap();
        let json: Json = serde_json::from_slice(&futures_body(proto.next())).unwrap();
        assert_eq!(json["flowExchange"]["action"], "ACTION_DATA_EXCHANGE");
    }

    fn futures_body(request: http::Request<Full<Bytes>>) -> Bytes {
        use http_body_util::BodyExt;
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(request.into_body().collect())
            .unwrap()
            .to_bytes()
    }
}

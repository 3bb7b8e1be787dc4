//! Sending signed deliveries the way Platica does: fresh id and timestamp,
//! the headers Platica sets, `X-Webhook-Signature` over the exact bytes sent.
//! Used by the demo and the tests.

use std::{
    net::SocketAddr,
    time::{Duration, Instant, SystemTime},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde_json::Value as Json;

use crate::signature;

/// An HTTP/1.1 client with connection reuse.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Gives a delivery a new `id` and a `timestamp` of now, as a new delivery would have.
pub fn refresh(mut delivery: Json) -> Json {
    delivery["id"] = uuid::Uuid::new_v4().to_string().into();
    delivery["timestamp"] = now_rfc3339().into();
    delivery
}

/// Now, as Platica writes it: `2026-05-06T19:00:30.000Z`.
pub fn now_rfc3339() -> String {
    now_rfc3339_of(SystemTime::now())
}

/// `time` as Platica writes timestamps: `2026-05-06T19:00:30.000Z`.
pub fn now_rfc3339_of(time: SystemTime) -> String {
    let ts = prost_types::Timestamp::from(time);
    let millis = ts.nanos / 1_000_000;
    let seconds = prost_types::Timestamp {
        seconds: ts.seconds,
        nanos: 0,
    };
    // Timestamp's Display gives `...:30Z` for whole seconds.
    let whole = seconds.to_string();
    format!("{}.{millis:03}Z", whole.trim_end_matches('Z'))
}

/// A signed POST of `delivery` to `http://{addr}{path}`, with the headers Platica sets.
pub fn request(
    addr: SocketAddr,
    path: &str,
    delivery: &Json,
    secret: Option<&[u8]>,
) -> http::Request<Full<Bytes>> {
    let uri = format!("http://{addr}{path}").parse().unwrap_or_default();
    request_to(&uri, delivery, secret).unwrap_or_default()
}

/// A signed POST of `delivery` to `uri`, with the headers Platica sets.
pub fn request_to(
    uri: &http::Uri,
    delivery: &Json,
    secret: Option<&[u8]>,
) -> Result<http::Request<Full<Bytes>>, http::Error> {
    let body = Bytes::from(delivery.to_string());
    let text = |key: &str| {
        delivery
            .get(key)
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let mut builder = http::Request::post(uri.clone())
        .header("content-type", "application/json")
        .header("user-agent", "Platica-Webhooks/1.0")
        .header("x-webhook-event", text("event"))
        .header("x-webhook-id", "wh_demo")
        .header("x-webhook-event-id", text("id"))
        .header("x-webhook-resource-type", text("resourceType"))
        .header("x-webhook-resource-id", text("resourceId"))
        .header("x-webhook-timestamp", text("timestamp"));
    if let Some(secret) = secret {
        builder = builder.header("x-webhook-signature", signature::sign(secret, &body));
    }
    builder.body(Full::new(body))
}

/// What came back.
#[derive(Debug)]
pub struct Sent {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub latency: Duration,
}

pub async fn send(
    client: &HttpClient,
    request: http::Request<Full<Bytes>>,
) -> Result<Sent, Box<dyn std::error::Error + Send + Sync>> {
    let started = Instant::now();
    let response = client.request(request).await?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Sent {
        status,
        headers,
        body,
        latency: started.elapsed(),
    })
}

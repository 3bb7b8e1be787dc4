//! Local developer commands: `convert`, `sign`, `send`, `protoset`. They answer
//! "what does the bridge send my handler?" and "what does my bridge answer?"
//! without Platica in the loop.

use std::{
    error::Error,
    io::{Read, Write},
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use clap::Args;
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage};
use serde_json::{Value as Json, json};

use crate::{
    config::{self, ENV_SECRET},
    delivery,
    proto::{DeliveryContext, ExchangeRequest},
    quote::FILE_DESCRIPTOR_SET,
    sender, signature,
};

pub type BoxError = Box<dyn Error + Send + Sync>;

/// The seed's deliveries, embedded: `send --event` builds on them.
pub const SEED_INIT: &str = include_str!("../../tests/vectors/deliveries/init.json");
pub const SEED_SCREEN_ADVANCE: &str =
    include_str!("../../tests/vectors/deliveries/screen_advance.json");
pub const SEED_SCREEN_ADVANCE_FULL: &str =
    include_str!("../../tests/vectors/deliveries/screen_advance_full.json");
pub const SEED_BACK: &str = include_str!("../../tests/vectors/deliveries/back.json");

/// Reads a file, or standard input for `-`.
pub fn read_input(path: &Path) -> Result<Vec<u8>, BoxError> {
    if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes)?;
        Ok(bytes)
    } else {
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()).into())
    }
}

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// A delivery (the webhook's JSON body), or - for standard input.
    pub delivery: PathBuf,
    /// The X-Webhook-Id to put in `context.webhook_id`.
    #[arg(long)]
    pub webhook_id: Option<String>,
    /// The budget to put in `context` (as the bridge would, from now).
    #[arg(long, default_value = config::DEFAULT_BUDGET)]
    pub budget: String,
}

/// `flows-bridge convert`: the `ExchangeRequest` the bridge would send for a
/// delivery, as proto JSON (what `grpcurl -d @` reads).
pub fn convert(args: &ConvertArgs) -> Result<(), BoxError> {
    let budget = config::parse_duration(&args.budget)?.unwrap_or_default();
    let request = to_request(
        &read_input(&args.delivery)?,
        args.webhook_id.clone(),
        budget,
    )?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", proto_json(&request)?)?;
    Ok(())
}

/// Parses a delivery as the bridge does (no signature or freshness check) and
/// fills `context` as the bridge would at the moment of the call.
pub fn to_request(
    body: &[u8],
    webhook_id: Option<String>,
    budget: Duration,
) -> Result<ExchangeRequest, BoxError> {
    let verified = signature::VerifiedBody::unchecked(Bytes::copy_from_slice(body));
    let mut request = delivery::parse(&verified)?.request;
    request.context = Some(DeliveryContext {
        webhook_id,
        deadline: Some((SystemTime::now() + budget).into()),
        time_remaining: prost_types::Duration::try_from(budget).ok(),
        unverified: false,
        replay: false,
    });
    Ok(*request)
}

/// A message of the contract as canonical proto3 JSON.
pub fn proto_json(request: &ExchangeRequest) -> Result<String, BoxError> {
    let pool = DescriptorPool::decode(FILE_DESCRIPTOR_SET)?;
    let descriptor = pool
        .get_message_by_name("platica.flows.v1.ExchangeRequest")
        .ok_or("ExchangeRequest is missing from the descriptor set")?;
    let message = DynamicMessage::decode(descriptor, request.encode_to_vec().as_slice())?;
    Ok(serde_json::to_string_pretty(&message)?)
}

#[derive(Args, Debug)]
pub struct SignArgs {
    /// The body to sign (exact bytes), or - for standard input.
    #[arg(default_value = "-")]
    pub body: PathBuf,
    /// The signing secret (the first one if a comma-separated list).
    #[arg(long, env = ENV_SECRET, hide_env_values = true)]
    pub secret: String,
    /// Print the whole header line, `X-Webhook-Signature: sha256=...`.
    #[arg(long)]
    pub header: bool,
}

/// `flows-bridge sign`: the `X-Webhook-Signature` value for a body.
pub fn sign(args: &SignArgs) -> Result<(), BoxError> {
    let secret = first_secret(&args.secret)?;
    let value = signature::sign(secret.as_bytes(), &read_input(&args.body)?);
    if args.header {
        println!("X-Webhook-Signature: {value}");
    } else {
        println!("{value}");
    }
    Ok(())
}

fn first_secret(list: &str) -> Result<&str, BoxError> {
    list.split(',')
        .map(str::trim)
        .find(|s| !s.is_empty())
        .ok_or_else(|| "the secret is empty".into())
}

#[derive(Args, Debug)]
pub struct SendArgs {
    /// A delivery to send; without it, one is built from --event, --screen and --payload.
    pub delivery: Option<PathBuf>,
    /// The bridge's webhook URL.
    #[arg(long, default_value = "http://127.0.0.1:8080/")]
    pub url: String,
    /// The signing secret (the first one if a comma-separated list).
    #[arg(long, env = ENV_SECRET, hide_env_values = true)]
    pub secret: Option<String>,
    /// Send without a signature (for a bridge in insecure development mode).
    #[arg(long, conflicts_with = "secret")]
    pub unsigned: bool,
    /// The event of a built delivery: init, screen_advance or back.
    #[arg(long, default_value = "init", value_parser = ["init", "screen_advance", "back"])]
    pub event: String,
    /// The screen of a built delivery (default: none for init, WELCOME for
    /// screen_advance, PAYMENT for back).
    #[arg(long)]
    pub screen: Option<String>,
    /// The payload of a built delivery, a JSON object.
    #[arg(long)]
    pub payload: Option<String>,
    /// Keep the file's id and timestamp instead of fresh ones (to test
    /// duplicates and the replay window).
    #[arg(long)]
    pub keep_id: bool,
    /// The X-Webhook-Id header.
    #[arg(long, default_value = "wh_local")]
    pub webhook_id: String,
}

/// `flows-bridge send`: posts a signed delivery and prints status, reply and latency.
/// Returns whether the status was 2xx.
pub async fn send(args: &SendArgs) -> Result<bool, BoxError> {
    let delivery = build_delivery(args)?;
    let uri: http::Uri = args.url.parse()?;
    let secret = match (&args.secret, args.unsigned) {
        (_, true) => None,
        (Some(list), false) => Some(first_secret(list)?.to_owned()),
        (None, false) => {
            return Err(
                format!("no secret: pass --secret or set {ENV_SECRET} (or --unsigned)").into(),
            );
        }
    };
    let mut request = sender::request_to(&uri, &delivery, secret.as_deref().map(str::as_bytes))?;
    request
        .headers_mut()
        .insert("x-webhook-id", args.webhook_id.parse()?);
    let sent = sender::send(&sender::http_client(), request).await?;
    let ok = sent.status.is_success();
    let mut out = anstream::stdout().lock();
    let style = if ok {
        crate::doctor::GOOD
    } else {
        crate::doctor::BAD
    };
    writeln!(
        out,
        "{style}{}{style:#} in {:.1} ms  (delivery {} {})",
        sent.status,
        sent.latency.as_secs_f64() * 1000.0,
        delivery["id"].as_str().unwrap_or(""),
        delivery["event"].as_str().unwrap_or(""),
    )?;
    let body = serde_json::from_slice::<Json>(&sent.body)
        .and_then(|j| serde_json::to_string_pretty(&j))
        .unwrap_or_else(|_| String::from_utf8_lossy(&sent.body).into_owned());
    writeln!(out, "{body}")?;
    Ok(ok)
}

fn build_delivery(args: &SendArgs) -> Result<Json, BoxError> {
    let mut delivery: Json = match &args.delivery {
        Some(path) => serde_json::from_slice(&read_input(path)?)?,
        None => {
            let (seed, action, screen) = match args.event.as_str() {
                "screen_advance" => (SEED_SCREEN_ADVANCE, "data_exchange", Some("WELCOME")),
                "back" => (SEED_BACK, "back", Some("PAYMENT")),
                _ => (SEED_INIT, "init", None),
            };
            let mut d: Json = serde_json::from_str(seed)?;
            let exchange = &mut d["data"]["flowExchange"];
            exchange["action"] = action.into();
            exchange["screen"] = args
                .screen
                .as_deref()
                .or(screen)
                .map_or(Json::Null, Json::from);
            exchange["payload"] = json!({});
            d
        }
    };
    if let Some(payload) = &args.payload {
        let payload: Json = serde_json::from_str(payload).map_err(|e| format!("--payload: {e}"))?;
        if !payload.is_object() {
            return Err("--payload must be a JSON object".into());
        }
        delivery["data"]["flowExchange"]["payload"] = payload;
    }
    if args.delivery.is_some() && args.screen.is_some() {
        delivery["data"]["flowExchange"]["screen"] = args.screen.clone().into();
    }
    if args.keep_id && args.delivery.is_some() {
        Ok(delivery)
    } else {
        Ok(sender::refresh(delivery))
    }
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// Journal files (FLOWS_BRIDGE_JOURNAL and its rotated .1, .2, ...), oldest first.
    #[arg(required = true)]
    pub journals: Vec<PathBuf>,
    /// The FlowHandler: http://host:port or unix:///path.
    #[arg(long, env = config::ENV_UPSTREAM, default_value = config::DEFAULT_UPSTREAM)]
    pub upstream: String,
    /// Deadline of each replayed call. Nobody waits for these replies, so it
    /// can be longer than the live budget.
    #[arg(long, default_value = "5s")]
    pub timeout: String,
    /// Replay only records with this reason (deadline, upstream_unavailable,
    /// upstream_error, invalid_reply, shed); repeatable.
    #[arg(long = "reason")]
    pub reasons: Vec<String>,
    /// Print what would be replayed without calling the handler.
    #[arg(long)]
    pub dry_run: bool,
}

/// `flows-bridge replay`: sends journaled deliveries to a FlowHandler again,
/// marked `context.replay`. Returns whether every record was delivered.
pub async fn replay(args: &ReplayArgs) -> Result<bool, BoxError> {
    let timeout = config::parse_duration(&args.timeout)?.ok_or("--timeout must be positive")?;
    let addr = config::parse_upstream(&args.upstream)?;
    let upstream = crate::upstream::Upstream::new(&addr);
    let (mut delivered, mut failed, mut skipped) = (0usize, 0usize, 0usize);
    let mut out = anstream::stdout().lock();
    for path in &args.journals {
        for record in crate::journal::read(path).map_err(|e| format!("{}: {e}", path.display()))? {
            let record = match record {
                Ok(record) => record,
                Err(error) => {
                    failed += 1;
                    writeln!(
                        out,
                        "{}skip{:#} {}: {error}",
                        crate::doctor::BAD,
                        crate::doctor::BAD,
                        path.display()
                    )?;
                    continue;
                }
            };
            if !args.reasons.is_empty() && !args.reasons.contains(&record.reason) {
                skipped += 1;
                continue;
            }
            let label = format!(
                "{} ({}, {})",
                record.delivery_id, record.reason, record.time
            );
            if args.dry_run {
                writeln!(out, "would replay {label}")?;
                continue;
            }
            let mut request = match to_request(
                record.delivery.to_string().as_bytes(),
                record.webhook_id.clone(),
                timeout,
            ) {
                Ok(request) => request,
                Err(error) => {
                    failed += 1;
                    writeln!(
                        out,
                        "{}fail{:#} {label}: not a delivery: {error}",
                        crate::doctor::BAD,
                        crate::doctor::BAD
                    )?;
                    continue;
                }
            };
            if let Some(context) = request.context.as_mut() {
                context.replay = true;
            }
            let deadline = tokio::time::Instant::now() + timeout;
            match upstream
                .exchange(Box::new(request), deadline, &http::HeaderMap::new())
                .await
            {
                Ok(reply) => {
                    delivered += 1;
                    writeln!(
                        out,
                        "{}ok{:#}   {label} -> {}",
                        crate::doctor::GOOD,
                        crate::doctor::GOOD,
                        String::from_utf8_lossy(&reply)
                    )?;
                }
                Err((reason, detail)) => {
                    failed += 1;
                    writeln!(
                        out,
                        "{}fail{:#} {label}: {} {detail}",
                        crate::doctor::BAD,
                        crate::doctor::BAD,
                        reason.as_str()
                    )?;
                }
            }
        }
    }
    writeln!(
        out,
        "{delivered} replayed, {failed} failed, {skipped} skipped"
    )?;
    Ok(failed == 0)
}

#[derive(Args, Debug)]
pub struct HealthcheckArgs {
    /// The URL to GET; healthy when it answers 200.
    #[arg(long, default_value = "http://127.0.0.1:9090/readyz")]
    pub url: String,
    /// Give up after this long.
    #[arg(long, default_value = "2s")]
    pub timeout: String,
}

/// `flows-bridge healthcheck`: GETs a URL and succeeds on 200, for container
/// health checks and exec probes (the image has no shell and no curl).
pub async fn healthcheck(args: &HealthcheckArgs) -> Result<bool, BoxError> {
    let timeout = config::parse_duration(&args.timeout)?.ok_or("--timeout must be positive")?;
    let request = http::Request::get(args.url.parse::<http::Uri>()?)
        .body(http_body_util::Full::new(Bytes::new()))?;
    match tokio::time::timeout(timeout, sender::send(&sender::http_client(), request)).await {
        Ok(Ok(sent)) if sent.status == http::StatusCode::OK => Ok(true),
        Ok(Ok(sent)) => {
            eprintln!(
                "{} answered {}: {}",
                args.url,
                sent.status,
                String::from_utf8_lossy(&sent.body)
            );
            Ok(false)
        }
        Ok(Err(error)) => Err(format!("{}: {error}", args.url).into()),
        Err(_) => Err(format!("{}: no answer within {}", args.url, args.timeout).into()),
    }
}

#[derive(Args, Debug)]
pub struct ProtosetArgs {
    /// Where to write the descriptor set (default: standard output).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

/// `flows-bridge protoset`: the contract's descriptor set (with its imports),
/// for `grpcurl -protoset` against servers without reflection.
pub fn protoset(args: &ProtosetArgs) -> Result<(), BoxError> {
    match &args.output {
        Some(path) => std::fs::write(path, FILE_DESCRIPTOR_SET)?,
        None => std::io::stdout().lock().write_all(FILE_DESCRIPTOR_SET)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proto_json_uses_the_canonical_mapping() {
        let request = to_request(
            SEED_SCREEN_ADVANCE_FULL.as_bytes(),
            Some("wh_1".into()),
            Duration::from_millis(600),
        )
        .unwrap();
        let json: Json = serde_json::from_str(&proto_json(&request).unwrap()).unwrap();
        assert_eq!(json["id"], "8f2c4d6a-1b3e-4f5d-8a9c-2e7b6d1a3f4e");
        assert_eq!(json["event"], "EVENT_SCREEN_ADVANCE");
        assert_eq!(json["eventName"], "whatsapp.flows.screen_advance");
        assert_eq!(json["timestamp"], "2026-05-06T19:00:30Z");
        assert_eq!(json["client"]["phoneNumber"], "+5215555555555");
        assert_eq!(
            json["conversation"]["messageCount"], "3",
            "int64 is a string in proto JSON"
        );
        assert_eq!(json["flowExchange"]["action"], "ACTION_DATA_EXCHANGE");
        assert_eq!(
            json["flowExchange"]["payload"],
            json!({"selected_product": "p2", "email": "juan@empresa.com"})
        );
        assert_eq!(json["context"]["webhookId"], "wh_1");
        assert_eq!(json["context"]["timeRemaining"], "0.600s");
        assert!(json.get("changes").is_none());
    }

    #[test]
    fn convert_refuses_what_the_bridge_refuses() {
        assert!(to_request(b"{}", None, Duration::ZERO).is_err());
        assert!(to_request(b"not json", None, Duration::ZERO).is_err());
    }

    #[test]
    fn built_deliveries_follow_the_event() {
        let args = |event: &str, screen: Option<&str>, payload: Option<&str>| SendArgs {
            delivery: None,
            url: String::new(),
            secret: None,
            unsigned: true,
            event: event.into(),
            screen: screen.map(str::to_owned),
            payload: payload.map(str::to_owned),
            keep_id: false,
            webhook_id: String::new(),
        };
        let d = build_delivery(&args("init", None, None)).unwrap();
        assert_eq!(d["event"], "whatsapp.flows.init");
        assert_eq!(d["data"]["flowExchange"]["screen"], Json::Null);
        let d = build_delivery(&args(
            "screen_advance",
            None,
            Some(r#"{"selected_product":"p1"}"#),
        ))
        .unwrap();
        assert_eq!(d["event"], "whatsapp.flows.screen_advance");
        assert_eq!(d["data"]["flowExchange"]["action"], "data_exchange");
        assert_eq!(d["data"]["flowExchange"]["screen"], "WELCOME");
        assert_eq!(
            d["data"]["flowExchange"]["payload"]["selected_product"],
            "p1"
        );
        assert_ne!(
            d["id"], "8f2c4d6a-1b3e-4f5d-8a9c-2e7b6d1a3f4e",
            "a fresh id"
        );
        let d = build_delivery(&args("back", Some("SUMMARY"), None)).unwrap();
        assert_eq!(d["data"]["flowExchange"]["screen"], "SUMMARY");
        assert!(build_delivery(&args("init", None, Some("[1]"))).is_err());
    }
}

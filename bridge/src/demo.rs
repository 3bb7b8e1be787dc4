//! `flows-bridge demo`: the quick start. Runs the bridge in front of the
//! built-in quote-flow FlowHandler on loopback, sends the seed's deliveries
//! through it (signed, fresh), and shows each reply, then what happens on a
//! duplicate, a bad signature, and with the handler down (the fallback).

use std::{error::Error, net::SocketAddr, time::Duration};

use clap::Parser;
use serde_json::Value as Json;

use crate::{
    app,
    config::{Config, ServeArgs},
    quote::{self, QuoteFlow},
    sender::{self, HttpClient},
};

const SEEDS: [(&str, &str); 4] = [
    (
        "init",
        include_str!("../../tests/vectors/deliveries/init.json"),
    ),
    (
        "screen_advance (the full example)",
        include_str!("../../tests/vectors/deliveries/screen_advance_full.json"),
    ),
    (
        "back",
        include_str!("../../tests/vectors/deliveries/back.json"),
    ),
    (
        "screen_advance",
        include_str!("../../tests/vectors/deliveries/screen_advance.json"),
    ),
];

pub async fn run() -> Result<(), Box<dyn Error + Send + Sync>> {
    let loopback: SocketAddr = "127.0.0.1:0".parse()?;
    let (listener, handler_addr) = quote::bind(loopback).await?;
    let (stop_handler, handler_stopped) = tokio::sync::oneshot::channel::<()>();
    let handler = tokio::spawn(quote::serve(listener, QuoteFlow, async {
        let _ = handler_stopped.await;
    }));

    let secret = uuid::Uuid::new_v4().to_string();
    let args = ServeArgs::try_parse_from([
        "demo",
        "--listen=127.0.0.1:0",
        "--admin-listen=127.0.0.1:0",
        &format!("--upstream=http://{handler_addr}"),
        &format!("--secret={secret}"),
        "--ready-interval=100ms",
    ])?;
    let config = Config::from_args(&args).map_err(|e| e.to_string())?;
    let bridge = app::start(config).await?;
    let addr = bridge.addr;
    for _ in 0..50 {
        if bridge.readiness.is_ready() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    println!("flows-bridge demo");
    println!("  FlowHandler (built-in quote flow)  grpc://{handler_addr}");
    println!("  bridge webhook endpoint            http://{addr}/");
    println!(
        "  bridge admin (/livez /readyz /metrics) http://{}",
        bridge.admin_addr
    );
    println!();

    let client = sender::http_client();
    let secret = secret.as_bytes();
    let mut last = Json::Null;
    for (name, seed) in SEEDS {
        let delivery = sender::refresh(serde_json::from_str(seed)?);
        show(
            &client,
            addr,
            &format!("{name}: the seed's delivery"),
            &delivery,
            Some(secret),
        )
        .await?;
        last = delivery;
    }

    let mut bad_email = sender::refresh(serde_json::from_str(SEEDS[3].1)?);
    bad_email["data"]["flowExchange"]["payload"]["email"] = "juan@".into();
    show(
        &client,
        addr,
        "screen_advance with an invalid email: stays, with error_message",
        &bad_email,
        Some(secret),
    )
    .await?;

    show(
        &client,
        addr,
        "the same delivery again (a retry): answered once, from the cache",
        &last,
        Some(secret),
    )
    .await?;

    let fresh = sender::refresh(serde_json::from_str(SEEDS[0].1)?);
    show(
        &client,
        addr,
        "signed with another secret: rejected",
        &fresh,
        Some(b"not-the-secret"),
    )
    .await?;

    let _ = stop_handler.send(());
    let _ = handler.await;
    let fresh = sender::refresh(serde_json::from_str(SEEDS[0].1)?);
    show(
        &client,
        addr,
        "the FlowHandler is down: the fallback, at once",
        &fresh,
        Some(secret),
    )
    .await?;

    println!("metrics (from /metrics):");
    for line in bridge.metrics.encode().lines() {
        let interesting = (line.starts_with("flows_bridge_requests_total")
            || line.starts_with("flows_bridge_fallbacks_total")
            || line.starts_with("flows_bridge_rejections_total")
            || line.starts_with("flows_bridge_duplicates_total"))
            && !line.ends_with(" 0");
        if interesting {
            println!("  {line}");
        }
    }
    bridge.shutdown();
    bridge.wait().await;
    Ok(())
}

async fn show(
    client: &HttpClient,
    addr: SocketAddr,
    title: &str,
    delivery: &Json,
    secret: Option<&[u8]>,
) -> Result<(), Box<dyn Error + Send + Sync>> {
    let request = sender::request(addr, "/", delivery, secret);
    let sent = sender::send(client, request).await?;
    let exchange = &delivery["data"]["flowExchange"];
    println!("> {title}");
    println!(
        "  {} action={} screen={} payload={}",
        delivery["event"].as_str().unwrap_or(""),
        exchange["action"].as_str().unwrap_or(""),
        exchange["screen"].as_str().unwrap_or("-"),
        exchange["payload"]
    );
    println!(
        "  < {} in {:.1} ms: {}",
        sent.status,
        sent.latency.as_secs_f64() * 1000.0,
        String::from_utf8_lossy(&sent.body)
    );
    println!();
    Ok(())
}

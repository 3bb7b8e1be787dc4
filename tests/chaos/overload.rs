//! Overload: a handler with a fixed service time behind a small
//! `FLOWS_BRIDGE_MAX_IN_FLIGHT`, so that the bridge's capacity is known and
//! measured (Little's law: cap / service time), then an open-model load at a
//! multiple of it. The excess must get the fallback at once (`shed`), the
//! admitted deliveries must keep their latency, and nothing may queue: the
//! in-flight gauge never passes the cap, and admitted latency does not drift
//! upwards over the run.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use flows_bridge::sender;
use serde_json::Value as Json;

use crate::{
    handler::{ChaosHandler, Mode},
    load::{Deliveries, Shot, open_load},
    support::*,
};

/// `FLOWS_BRIDGE_MAX_IN_FLIGHT` for this test.
const CAP: usize = 8;
/// The handler's service time: capacity is about CAP / SERVICE = 160/s.
const SERVICE: Duration = Duration::from_millis(50);
/// A shed delivery is answered at once: no handler, no queue. Its median
/// must stay under `SHED_P50` and its worst under `SHED_MAX`: slack for two
/// shared cores (a compile next door adds tens of milliseconds of
/// scheduling delay), still an order of magnitude under the budget.
const SHED_P50: Duration = Duration::from_millis(20);
const SHED_MAX: Duration = Duration::from_millis(200);
/// An admitted delivery keeps its latency: its median within this of the
/// median at half the capacity, the median of the last third of the run
/// within this of the first third (a growing queue would push it up), and
/// none slower than the service time plus `ADMITTED_MAX_SLACK`.
const ADMITTED_P50_SLACK: Duration = Duration::from_millis(25);
const ADMITTED_MAX_SLACK: Duration = Duration::from_millis(250);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_shed_at_once_and_admitted_latency_holds() {
    let _serial = serial().await;
    let multiple: f64 = env_or("CHAOS_OVERLOAD_MULTIPLE", 4.0);
    // Long form: a fifth of CHAOS_SECONDS; short form: 3 s.
    let seconds = (env_or::<f64>("CHAOS_SECONDS", 15.0) / 5.0).max(3.0);
    let handler = ChaosHandler::start().await;
    handler.state.set_mode(Mode::Service {
        ms: SERVICE.as_millis() as u64,
    });
    let mut bridge = Bridge::start(
        &handler.upstream(),
        &[
            ("FLOWS_BRIDGE_MAX_IN_FLIGHT", &CAP.to_string()),
            ("FLOWS_BRIDGE_IDEMPOTENCY_CAPACITY", "100"),
        ],
    );

    // Capacity: CAP closed-loop clients, back to back, for 1.5 s.
    let (capacity, capacity_replies, capacity_fallbacks) =
        measure_capacity(&bridge, Duration::from_millis(1500)).await;
    assert_eq!(
        bridge
            .metrics()
            .await
            .get(r#"flows_bridge_fallbacks_total{reason="shed"}"#),
        0.0,
        "closed-loop clients at the cap are never shed"
    );
    let baseline_rss = bridge.rss_kib();

    // Admitted latency with room to spare: half the capacity.
    let start = Instant::now() + Duration::from_millis(50);
    let calm = open_load(
        bridge.addr,
        capacity / 2.0,
        Duration::from_millis(1500),
        start,
    )
    .await;
    let calm_latency = Latency::of(
        &calm
            .iter()
            .map(|s| s.latency.saturating_sub(s.stalled()))
            .collect::<Vec<_>>(),
    );
    // (A request the machine stalled past the budget may get the fallback.)
    let calm_fallbacks = calm.iter().filter(|s| s.is_fallback()).count() as u64;
    assert!(
        calm.iter()
            .all(|s| matches!(&s.answer, Ok((200, _)))
                && (!s.is_fallback() || !s.stalled().is_zero())),
        "at half the capacity, every delivery must get its reply"
    );

    // The overload, with the in-flight gauge and the handler's own count of
    // concurrent calls watched throughout.
    let rate = capacity * multiple;
    handler.state.reset_max_active();
    let watching = Arc::new(AtomicBool::new(true));
    let max_gauge = Arc::new(AtomicU64::new(0));
    let watcher = tokio::spawn({
        let (watching, max_gauge, admin) = (watching.clone(), max_gauge.clone(), bridge.admin);
        async move {
            let client = sender::http_client();
            let mut scrapes = 0;
            for _ in 0..10_000 {
                if !watching.load(Ordering::Relaxed) {
                    break;
                }
                let request = http::Request::get(format!("http://{admin}/metrics"))
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .unwrap();
                if let Ok(sent) = sender::send(&client, request).await {
                    let metrics = Metrics::parse(&String::from_utf8_lossy(&sent.body));
                    max_gauge.fetch_max(
                        metrics.get("flows_bridge_in_flight") as u64,
                        Ordering::Relaxed,
                    );
                    scrapes += 1;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            scrapes
        }
    });
    let cpu_before = bridge.cpu_time();
    let own_cpu_before = cpu_time("self");
    let start = Instant::now() + Duration::from_millis(50);
    let shots = open_load(bridge.addr, rate, Duration::from_secs_f64(seconds), start).await;
    let cpu = bridge.cpu_time().saturating_sub(cpu_before);
    let own_cpu = cpu_time("self").saturating_sub(own_cpu_before);
    let lag = shots.iter().map(|s| s.lag).max().unwrap_or_default();
    let stalls = match (shots.first(), shots.last()) {
        (Some(first), Some(last)) => stalls_between(first.scheduled, last.scheduled + last.latency),
        _ => (0, Duration::ZERO, Duration::ZERO),
    };
    watching.store(false, Ordering::Relaxed);
    let scrapes = watcher.await.unwrap();
    let max_gauge = max_gauge.load(Ordering::Relaxed);
    let max_active = handler.state.max_active();

    // Every delivery: a 200 with the real reply or exactly the fallback, and
    // every fallback a shed (or a deadline, for a request during which the
    // machine stalled this process: see `watch_stalls`).
    let lines = bridge
        .wait_logs(shots.len(), |l| {
            l["message"] == "delivery answered"
                || l["message"] == "delivery answered with the fallback"
        })
        .await;
    let reason_of: std::collections::HashMap<&str, &str> = lines
        .iter()
        .filter_map(|l| {
            Some((
                l["delivery_id"].as_str()?,
                l["reason"].as_str().unwrap_or(""),
            ))
        })
        .collect();
    let mut admitted = Vec::new();
    let mut shed = Vec::new();
    let mut stalled_deadlines = 0;
    for shot in &shots {
        let Ok((200, body)) = &shot.answer else {
            panic!("#{}: {:?}", shot.seq, shot.answer);
        };
        serde_json::from_slice::<Json>(body).expect("valid JSON");
        if shot.is_fallback() {
            match reason_of.get(shot.id.as_str()) {
                Some(&"shed") => shed.push(shot),
                Some(&"deadline") if !shot.stalled().is_zero() => stalled_deadlines += 1,
                other => panic!("#{}: a fallback for {other:?}", shot.seq),
            }
        } else {
            let did = handler.state.did(&shot.id).expect("the handler saw it");
            assert_eq!(did.reply(), Some(body), "#{}", shot.seq);
            admitted.push(shot);
        }
    }
    let metrics = bridge.metrics().await;
    let by_reason = metrics.by_reason("flows_bridge_fallbacks_total");

    // Latency net of any time the machine did not run this process (see
    // `watch_stalls`).
    let net = |s: &Shot| s.latency.saturating_sub(s.stalled());
    let latency = |shots: &[&Shot]| Latency::of(&shots.iter().map(|s| net(s)).collect::<Vec<_>>());
    let admitted_latency = latency(&admitted);
    let shed_latency = latency(&shed);
    let third = shots.len() / 3;
    let early: Vec<&Shot> = admitted.iter().copied().filter(|s| s.seq < third).collect();
    let late: Vec<&Shot> = admitted
        .iter()
        .copied()
        .filter(|s| s.seq >= 2 * third)
        .collect();
    let (early, late) = (latency(&early), latency(&late));
    let admitted_rate = admitted.len() as f64 / seconds;
    let end_rss = bridge.rss_kib();

    println!(
        "\n== overload: capacity {capacity:.0}/s measured (cap {CAP}, service {} ms); offered {rate:.0}/s ({multiple}x) for {seconds} s",
        SERVICE.as_millis()
    );
    println!("at half capacity: {calm_latency}");
    println!(
        "requests {}: admitted {} ({admitted_rate:.0}/s), shed {}; fallbacks by reason {by_reason:?}",
        shots.len(),
        admitted.len(),
        shed.len()
    );
    println!("admitted latency: {admitted_latency} (first third {early}; last third {late})");
    println!("shed latency: {shed_latency}");
    println!(
        "(latencies net of machine stalls, this process or the bridge not run: {} stalls, {:?} in all, worst {:?})",
        stalls.0, stalls.1, stalls.2
    );
    println!(
        "in_flight gauge max {max_gauge} over {scrapes} scrapes; handler's max concurrent calls {max_active}; \
         CPU: bridge {:.2} s, this process (generator and handler) {:.2} s; generator lag max {lag:?}; \
         RSS {baseline_rss} -> {end_rss} KiB",
        cpu.as_secs_f64(),
        own_cpu.as_secs_f64()
    );

    assert!(
        !shed.is_empty(),
        "nothing was shed at {multiple}x the capacity"
    );
    assert_eq!(by_reason.get("shed").copied(), Some(shed.len() as u64));
    assert_eq!(
        by_reason.get("deadline").copied().unwrap_or(0),
        stalled_deadlines + calm_fallbacks + capacity_fallbacks,
        "deadlines only for requests the machine stalled"
    );
    assert!(
        by_reason.keys().all(|r| r == "shed" || r == "deadline"),
        "no other fallback reason: {by_reason:?}"
    );
    assert_eq!(
        metrics.sum("flows_bridge_requests_total", "outcome=\"reply\"") as usize,
        capacity_replies + calm.len() - calm_fallbacks as usize + admitted.len(),
        "every reply counted"
    );
    assert_eq!(
        metrics.sum("flows_bridge_requests_total", "outcome=\"fallback\"") as u64,
        shed.len() as u64 + stalled_deadlines + calm_fallbacks + capacity_fallbacks,
        "every fallback counted"
    );
    // Shed quickly.
    assert!(
        shed_latency.p50 <= SHED_P50 && shed_latency.max <= SHED_MAX,
        "shed deliveries: {shed_latency}"
    );
    // Admitted deliveries keep their latency, and it does not drift up.
    assert!(
        admitted_latency.max <= SERVICE + ADMITTED_MAX_SLACK,
        "admitted deliveries: {admitted_latency}"
    );
    assert!(
        admitted_latency.p50 <= calm_latency.p50 + ADMITTED_P50_SLACK,
        "admitted {admitted_latency} vs {calm_latency} at half capacity"
    );
    assert!(
        late.p50 <= early.p50 + ADMITTED_P50_SLACK,
        "admitted latency drifts up: {early} then {late}"
    );
    // The bridge kept serving at about its capacity: shedding did not
    // collapse the admitted throughput.
    assert!(
        admitted_rate >= 0.6 * capacity,
        "admitted {admitted_rate:.0}/s, capacity {capacity:.0}/s"
    );
    // No queue: never more calls in flight than the cap.
    assert!(
        max_gauge <= CAP as u64,
        "in_flight gauge reached {max_gauge}"
    );
    assert!(
        max_active <= CAP,
        "the handler saw {max_active} concurrent calls"
    );
    assert!(scrapes > 10, "the gauge was watched only {scrapes} times");

    // Recovered at once: the next delivery gets its reply.
    let sent = bridge.send(&Deliveries::default().nth(0).0).await;
    assert_eq!(sent.status, 200);
    assert_ne!(&sent.body[..], FALLBACK);
    bridge.assert_alive_without_panic();
    assert!(
        end_rss <= baseline_rss + (baseline_rss / 4).max(8 * 1024),
        "RSS {baseline_rss} -> {end_rss} KiB"
    );
}

/// Requests per second `CAP` closed-loop clients get through in `window`,
/// and how many replies and fallbacks that was (a fallback only if the
/// machine stalls this process past the budget).
async fn measure_capacity(bridge: &Bridge, window: Duration) -> (f64, usize, u64) {
    let deliveries = Arc::new(Deliveries::default());
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..CAP {
        let (addr, deliveries) = (bridge.addr, deliveries.clone());
        workers.push(tokio::spawn(async move {
            let client = sender::http_client();
            let (mut replies, mut fallbacks) = (0usize, 0u64);
            for n in 0..10_000 {
                if started.elapsed() >= window {
                    break;
                }
                let (delivery, _) = deliveries.nth(worker * 10_000 + n);
                let request = sender::request(addr, "/", &delivery, Some(SECRET.as_bytes()));
                let sent =
                    tokio::time::timeout(Duration::from_secs(10), sender::send(&client, request))
                        .await
                        .expect("an answer within 10 s")
                        .unwrap();
                assert_eq!(sent.status, 200);
                if &sent.body[..] == FALLBACK {
                    fallbacks += 1;
                } else {
                    replies += 1;
                }
            }
            (replies, fallbacks)
        }));
    }
    let (mut replies, mut fallbacks) = (0, 0);
    for worker in workers {
        let (r, f) = worker.await.unwrap();
        replies += r;
        fallbacks += f;
    }
    (
        replies as f64 / started.elapsed().as_secs_f64(),
        replies,
        fallbacks,
    )
}

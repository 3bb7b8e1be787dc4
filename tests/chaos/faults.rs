//! Faults under load: a steady open-model load of signed deliveries through
//! the real binary while the FlowHandler behind it is healthy, slow, failing,
//! wrong, killed, restarted, hung, black-holed and flapping, in turn.
//!
//! Asserted for every request: a 200 with valid JSON that is exactly the
//! handler's reply or exactly the fallback, within the budget plus
//! [`margin`]; its log line and its fallback reason agree with what the
//! handler did with it. Afterwards: no panic, memory on a plateau near its
//! baseline, real replies again within [`RECOVERY`] of each recovery, no call
//! left open at the handler, the metrics equal to what the load generator
//! saw, and no secret or personal data in the bridge's log.

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

use serde_json::Value as Json;

use crate::{
    handler::{ChaosHandler, Did, Mode},
    load::{Shot, open_load},
    support::*,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// The handler answers at once (served again first if it was not).
    Healthy,
    /// 30 % of the calls take 900 ms, past the 600 ms budget.
    Slow,
    /// gRPC error statuses.
    Errors,
    /// Replies Platica would not accept.
    Invalid,
    /// The server is gone: listener and connections dropped, port closed.
    Kill,
    /// A new server on the same port.
    Restart,
    /// Calls are taken and never answered; the connection stays open.
    Hang,
    /// The port accepts connections and never reads or writes a byte.
    BlackHole,
    /// Killed and restarted every [`FLAP`].
    Flap,
}

/// The run, in order; each phase gets an equal share of `CHAOS_SECONDS`.
const PHASES: [(&str, Fault); 13] = [
    ("warmup", Fault::Healthy),
    ("slow", Fault::Slow),
    ("errors", Fault::Errors),
    ("invalid", Fault::Invalid),
    ("recovered", Fault::Healthy),
    ("killed", Fault::Kill),
    ("restarted", Fault::Restart),
    ("hang", Fault::Hang),
    ("unhung", Fault::Healthy),
    ("black_hole", Fault::BlackHole),
    ("restarted_2", Fault::Restart),
    ("flapping", Fault::Flap),
    ("final", Fault::Healthy),
];

/// Half-period of the flapping phase.
const FLAP: Duration = Duration::from_millis(300);
/// Share and delay of the slow phase's slow calls.
const SLOW: Mode = Mode::Slow {
    percent: 30,
    ms: 900,
};
/// Requests this close to a switch may see either side of it: the phase's
/// own strict expectations apply only between its switch plus this and its
/// end minus this (the universal ones apply to every request).
const SETTLE: Duration = Duration::from_millis(150);
/// After the handler is back (restarted, or answering again), every delivery
/// arriving later than this gets its real reply. One reconnection on
/// loopback takes well under a millisecond; the rest is generous slack for
/// two shared cores.
const RECOVERY: Duration = Duration::from_millis(500);
/// A killed handler refuses connections: its fallback must not wait for the
/// deadline ("refused at once").
const FAST_FAIL: Duration = Duration::from_millis(250);

/// How far past the 600 ms budget a response may arrive, as measured by the
/// load generator from each request's scheduled departure: 300 ms by default
/// (`CHAOS_MARGIN_MS` to change it).
///
/// Platica's own limit is 700 ms, a 100 ms margin, and that is what the long
/// form on a quiet machine shows (see README.md). This test runs on two cores
/// shared by the bridge, the handler, this generator and whatever else the
/// machine runs: with other engineers' compilers at a load average of 6 we
/// measured CPU starvation pushing a burst of deadline fallbacks (the hang
/// phase: ~90 calls expiring together, in a debug build) to 887 ms, with the
/// generator itself starved 123 ms. 300 ms absorbs that, and still catches
/// every way the bridge itself could wait past its budget: a connect timeout
/// (1 s), HTTP/2 keep-alive detection (10 + 5 s), the client's own timeout.
/// Responses past 700 ms are counted and printed in any case.
fn margin() -> Duration {
    Duration::from_millis(env_or("CHAOS_MARGIN_MS", 300))
}

/// Platica's limit: responses later than this are reported (not failed).
const PLATICA_LIMIT: Duration = Duration::from_millis(700);

struct PhaseRun {
    name: &'static str,
    fault: Fault,
    /// Scheduled start and end, from the start of the run.
    start: Duration,
    end: Duration,
    /// When the fault was in place (switches take a few milliseconds).
    switched: Duration,
}

impl PhaseRun {
    fn holds(&self, shot: &Shot) -> bool {
        shot.at >= self.start && shot.at < self.end
    }

    fn steady(&self, shot: &Shot) -> bool {
        // Calls held by a black hole end when it is killed at the end of its
        // phase (their connection closes): they are left to the universal checks.
        let tail = if self.fault == Fault::BlackHole {
            BUDGET
        } else {
            Duration::ZERO
        };
        shot.at >= self.switched + SETTLE && shot.at + SETTLE + tail < self.end
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_under_load() {
    let _serial = serial().await;
    let seconds: f64 = env_or("CHAOS_SECONDS", 19.5);
    let rate: f64 = env_or("CHAOS_RATE", 150.0);
    let margin = margin();
    let total = Duration::from_secs_f64(seconds);
    // CHAOS_PHASES=warmup,flapping,final runs only those (for investigations).
    let only = std::env::var("CHAOS_PHASES").unwrap_or_default();
    let plan: Vec<(&str, Fault)> = PHASES
        .into_iter()
        .filter(|(name, _)| only.is_empty() || only.split(',').any(|o| o == *name))
        .collect();
    let phase_len = total / plan.len() as u32;
    assert!(
        phase_len >= Duration::from_millis(900),
        "CHAOS_SECONDS={seconds} leaves too little time per phase"
    );

    let mut handler = ChaosHandler::start().await;
    // A small idempotency cache, full before the memory baseline is taken, so
    // that what it holds (by design) does not pass for growth.
    let mut bridge = Bridge::start(
        &handler.upstream(),
        &[("FLOWS_BRIDGE_IDEMPOTENCY_CAPACITY", "100")],
    );
    let cpu_before = bridge.cpu_time();
    let waited_before = runqueue_wait(bridge.pid());

    // Memory, sampled through the run.
    let pid = bridge.pid();
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = tokio::spawn({
        let sampling = sampling.clone();
        async move {
            let (mut peak, mut trace) = (0, Vec::new());
            let started = Instant::now();
            for n in 0..(3600 * 4) {
                if !sampling.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let rss = rss_kib(pid);
                peak = peak.max(rss);
                if n % 4 == 0 {
                    trace.push(format!(
                        "t={:>6.1}s rss={rss} KiB bridge_cpu={:.2}s bridge_waiting_for_cpu={:.2}s own_cpu={:.2}s",
                        started.elapsed().as_secs_f64(),
                        cpu_time(&pid.to_string()).as_secs_f64(),
                        runqueue_wait(pid).as_secs_f64(),
                        cpu_time("self").as_secs_f64()
                    ));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            (peak, trace)
        }
    });

    let begin = Instant::now() + Duration::from_millis(200);
    let load = tokio::spawn(open_load(bridge.addr, rate, total, begin));
    let mut phases = Vec::new();
    let mut baseline_rss = 0;
    let mut rss_marks = Vec::new();
    for (i, (name, fault)) in plan.iter().copied().enumerate() {
        let start = phase_len * i as u32;
        let end = start + phase_len;
        tokio::time::sleep_until((begin + start).into()).await;
        if i > 0 {
            rss_marks.push((plan[i - 1].0, bridge.rss_kib()));
        }
        if i == 1 {
            // The end of the warmup: connections open, the cache full.
            baseline_rss = bridge.rss_kib();
        }
        match fault {
            Fault::Healthy => {
                handler.state.set_mode(Mode::Healthy);
                if !handler.is_serving_grpc() {
                    handler.restart().await;
                }
            }
            Fault::Slow => handler.state.set_mode(SLOW),
            Fault::Errors => handler.state.set_mode(Mode::Errors),
            Fault::Invalid => handler.state.set_mode(Mode::Invalid),
            Fault::Hang => handler.state.set_mode(Mode::Hang),
            Fault::Kill => handler.kill().await,
            Fault::Restart => {
                handler.state.set_mode(Mode::Healthy);
                handler.restart().await;
            }
            Fault::BlackHole => handler.black_hole().await,
            Fault::Flap => {
                handler.state.set_mode(Mode::Healthy);
                handler.kill().await;
            }
        }
        let switched = begin.elapsed();
        if fault == Fault::Flap {
            // Restart, kill, restart... until the phase ends (bounded count).
            let flips = (phase_len.as_millis() / FLAP.as_millis()) as u32;
            for k in 1..flips {
                tokio::time::sleep_until((begin + start + FLAP * k).into()).await;
                if k % 2 == 1 {
                    handler.restart().await;
                } else {
                    handler.kill().await;
                }
            }
        }
        phases.push(PhaseRun {
            name,
            fault,
            start,
            end,
            switched,
        });
    }
    let shots = load.await.unwrap();
    // Quiet: let the last calls' cancellations reach the handler, and the
    // allocator settle, before memory is read again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let (peak_rss, trace) = sampler.await.unwrap();
    if std::env::var_os("CHAOS_TRACE").is_some() {
        println!("{}", trace.join("\n"));
    }
    if let Ok(path) = std::env::var("CHAOS_DUMP") {
        dump(&path, &bridge, &handler, &shots);
    }
    let end_rss = bridge.rss_kib();
    let cpu = bridge.cpu_time().saturating_sub(cpu_before);
    let waited = runqueue_wait(bridge.pid()).saturating_sub(waited_before);

    let report = check(&bridge, &handler, &phases, &shots, margin).await;
    println!(
        "\n== faults under load: {rate} req/s for {seconds} s ({} phases of {:.2} s), margin {} ms",
        plan.len(),
        phase_len.as_secs_f64(),
        margin.as_millis()
    );
    report.print();
    println!(
        "bridge RSS: baseline {} KiB (end of warmup), peak {} KiB, after {} KiB; CPU {:.2} s ({:.0} us/request)",
        baseline_rss,
        peak_rss,
        end_rss,
        cpu.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / shots.len() as f64
    );
    println!(
        "bridge threads runnable but waiting for a CPU: {:.2} s in all (machine contention)",
        waited.as_secs_f64()
    );
    println!("bridge RSS at the end of each phase (KiB): {rss_marks:?}");
    report.assert_ok();

    // Nothing left open at the handler: every hung or slow call was cancelled
    // by the bridge at its deadline.
    let mut open = usize::MAX;
    for _ in 0..50 {
        handler.state.reset_max_active();
        open = handler.state.max_active();
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(open, 0, "calls still open at the handler after the run");

    bridge.assert_alive_without_panic();
    // Memory: the allocator keeps what the bursts of the hang and invalid
    // phases took (~100 calls in flight at once, 1 MiB replies), so RSS does
    // not fall back to the warm baseline; it must plateau instead. After the
    // run it is within 2 MiB of its level before the last three phases
    // (restarted_2, flapping, final: a leak of 1 KiB per request would add
    // 0.7 MiB in the short form, 3.5 MiB in the long one), and within 16 MiB
    // of the baseline.
    let plateau = rss_marks
        .iter()
        .find(|(name, _)| *name == "black_hole")
        .map_or(end_rss, |(_, rss)| *rss);
    assert!(
        end_rss <= plateau + 2 * 1024,
        "RSS still growing: {end_rss} KiB after the run, {plateau} KiB three phases earlier"
    );
    assert!(
        end_rss <= baseline_rss + 16 * 1024,
        "RSS after the run {end_rss} KiB, baseline {baseline_rss} KiB"
    );

    // Part 3: a full run's logs, at the default level, hold no secret and no
    // personal data (a third of the deliveries carry the seed's client data).
    assert_no_secret_or_personal_data("chaos run logs", &bridge.logs());
}

/// What the run saw, and every assertion that failed.
#[derive(Default)]
struct Report {
    requests: usize,
    replies: usize,
    fallbacks: BTreeMap<String, u64>,
    /// Fallbacks by reason and by the detail the bridge logged.
    details: BTreeMap<(String, String), u64>,
    worst: Duration,
    worst_lag: Duration,
    past_platica_limit: usize,
    /// Requests during which the machine stalled this process, and the
    /// worst latency of the others.
    stalled: usize,
    unstalled_worst: Duration,
    stalls: (usize, Duration, Duration),
    latency_all: Option<Latency>,
    per_phase: Vec<String>,
    recoveries: Vec<(String, Option<Duration>)>,
    failures: Vec<String>,
}

impl Report {
    fn fail(&mut self, failure: String) {
        self.failures.push(failure);
    }

    fn print(&self) {
        println!(
            "requests {}, replies {}, fallbacks {} {:?}",
            self.requests,
            self.replies,
            self.fallbacks.values().sum::<u64>(),
            self.fallbacks
        );
        for ((reason, detail), count) in &self.details {
            println!("  fallback {reason:<21} {detail:<60} {count:>6}");
        }
        if let Some(all) = self.latency_all {
            println!(
                "latency (from scheduled departure): {all}; {} past 700 ms; generator lag max {:.1} ms",
                self.past_platica_limit,
                self.worst_lag.as_secs_f64() * 1e3
            );
        }
        println!(
            "machine stalls (this process or the bridge not run): {} ({:.0} ms in all, worst {:.0} ms), overlapping {} requests; \
             worst latency of the others {:.1} ms",
            self.stalls.0,
            self.stalls.1.as_secs_f64() * 1e3,
            self.stalls.2.as_secs_f64() * 1e3,
            self.stalled,
            self.unstalled_worst.as_secs_f64() * 1e3
        );
        for line in &self.per_phase {
            println!("  {line}");
        }
        for (name, recovery) in &self.recoveries {
            match recovery {
                Some(r) => println!(
                    "  recovery in {name}: every reply real from {:.0} ms after the switch",
                    r.as_secs_f64() * 1e3
                ),
                None => println!("  recovery in {name}: never"),
            }
        }
    }

    fn assert_ok(&self) {
        assert!(
            self.failures.is_empty(),
            "{} failures, first ones:\n{}",
            self.failures.len(),
            self.failures
                .iter()
                .take(25)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

async fn check(
    bridge: &Bridge,
    handler: &ChaosHandler,
    phases: &[PhaseRun],
    shots: &[Shot],
    margin: Duration,
) -> Report {
    let mut report = Report {
        requests: shots.len(),
        ..Report::default()
    };
    // The bridge's own account of each delivery: one log line per id.
    let answered = |l: &Json| {
        l["message"] == "delivery answered" || l["message"] == "delivery answered with the fallback"
    };
    let lines = bridge.wait_logs(shots.len(), answered).await;
    let mut by_id: HashMap<&str, Vec<&Json>> = HashMap::new();
    for line in &lines {
        by_id
            .entry(line["delivery_id"].as_str().unwrap_or(""))
            .or_default()
            .push(line);
    }
    let mut latencies = Vec::new();
    let mut events: BTreeMap<&str, u64> = BTreeMap::new();

    for shot in shots {
        let phase = phases
            .iter()
            .find(|p| p.holds(shot))
            .expect("every shot falls in a phase");
        let at = format!(
            "#{} ({} at {:.3} s, {})",
            shot.seq,
            phase.name,
            shot.at.as_secs_f64(),
            shot.id
        );
        latencies.push(shot.latency);
        report.worst = report.worst.max(shot.latency);
        report.worst_lag = report.worst_lag.max(shot.lag);
        if shot.latency > PLATICA_LIMIT {
            report.past_platica_limit += 1;
        }
        *events.entry(shot.event).or_default() += 1;

        // Every request: 200, valid JSON, the real reply or exactly the fallback.
        let (status, body) = match &shot.answer {
            Ok(answer) => answer,
            Err(e) => {
                report.fail(format!("{at}: no response: {e}"));
                continue;
            }
        };
        if *status != 200 {
            report.fail(format!("{at}: status {status}: {body:?}"));
            continue;
        }
        if serde_json::from_slice::<Json>(body).is_err() {
            report.fail(format!("{at}: not JSON: {body:?}"));
        }
        let did = handler.state.did(&shot.id);
        let fallback = shot.is_fallback();
        if fallback {
            // Counted below, by the reason the bridge logged.
        } else if did.as_ref().and_then(Did::reply) == Some(body) {
            report.replies += 1;
        } else {
            report.fail(format!(
                "{at}: neither the fallback nor the handler's reply ({did:?}): {body:?}"
            ));
            continue;
        }
        // Within the budget plus the margin, plus any time the machine
        // demonstrably did not run this process while the request was out.
        let stalled = shot.stalled();
        if !stalled.is_zero() {
            report.stalled += 1;
        } else {
            report.unstalled_worst = report.unstalled_worst.max(shot.latency);
        }
        if shot.latency > BUDGET + margin + stalled {
            report.fail(format!(
                "{at}: {:.1} ms > budget + margin (+ {:.1} ms stalled)",
                shot.latency.as_secs_f64() * 1e3,
                stalled.as_secs_f64() * 1e3
            ));
        }

        // Its one log line says the same, and its reason fits what the handler did.
        let logged = by_id
            .get(shot.id.as_str())
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let [line] = logged else {
            report.fail(format!("{at}: {} log lines", logged.len()));
            continue;
        };
        let reason = line["reason"].as_str().unwrap_or("");
        if fallback {
            if line["message"] != "delivery answered with the fallback" {
                report.fail(format!("{at}: fallback sent, logged as {line}"));
            }
            *report.fallbacks.entry(reason.to_owned()).or_default() += 1;
            let detail = line["detail"].as_str().unwrap_or("").to_owned();
            *report
                .details
                .entry((reason.to_owned(), detail))
                .or_default() += 1;
            // (A stalled machine may turn any answer into a deadline.)
            if let Some(expected) = did.as_ref().and_then(Did::expected_reason)
                && reason != expected
                && (reason != "deadline" || stalled.is_zero())
            {
                report.fail(format!("{at}: reason {reason}, the handler did {did:?}"));
            }
            if matches!(reason, "shed" | "invalid_reply") && did.is_none() {
                report.fail(format!("{at}: {reason} for a call the handler never saw"));
            }
        } else if line["message"] != "delivery answered" {
            report.fail(format!("{at}: reply sent, logged as {line}"));
        }

        // The phase's own expectations, away from its edges and from stalls.
        if phase.steady(shot) && stalled.is_zero() {
            let recovered = shot.at >= phase.switched + RECOVERY;
            let ok = match phase.fault {
                Fault::Healthy | Fault::Restart => !fallback || !recovered,
                Fault::Slow => match &did {
                    Some(Did::SleptThenReplied(..)) => fallback && reason == "deadline",
                    Some(Did::Replied(_)) => !fallback,
                    _ => false,
                },
                Fault::Errors => matches!(did, Some(Did::Error(_))) && fallback,
                Fault::Invalid => matches!(did, Some(Did::Invalid(_))) && fallback,
                Fault::Kill => {
                    did.is_none()
                        && fallback
                        && reason == "upstream_unavailable"
                        && shot.latency <= FAST_FAIL
                }
                Fault::Hang => did == Some(Did::Hung) && fallback && shot.latency >= BUDGET,
                // Deadline; or, once the bridge's HTTP/2 keep-alive (PING
                // every 10 s, 5 s to answer) finds the peer silent and drops
                // the connection, upstream_unavailable for the calls on it.
                Fault::BlackHole => {
                    did.is_none()
                        && fallback
                        && matches!(reason, "deadline" | "upstream_unavailable")
                }
                Fault::Flap => true,
            };
            if !ok {
                report.fail(format!(
                    "{at}: unexpected in {:?}: fallback {fallback} ({reason}), {:.1} ms, handler {did:?}",
                    phase.fault,
                    shot.latency.as_secs_f64() * 1e3
                ));
            }
        }
    }
    report.latency_all = Some(Latency::of(&latencies));
    if let (Some(first), Some(last)) = (shots.first(), shots.last()) {
        report.stalls = stalls_between(first.scheduled, last.scheduled + last.latency);
    }

    // Per phase: counts and latency.
    for phase in phases {
        let own: Vec<&Shot> = shots.iter().filter(|s| phase.holds(s)).collect();
        let fallbacks = own.iter().filter(|s| s.is_fallback()).count();
        let lat = Latency::of(&own.iter().map(|s| s.latency).collect::<Vec<_>>());
        report.per_phase.push(format!(
            "{:<12} {:>5} requests, {:>5} fallbacks, {lat}",
            phase.name,
            own.len(),
            fallbacks
        ));
    }

    // Recovery: in each phase that follows a fault with a healthy handler,
    // the time from the switch after which every delivery got a real reply.
    for (i, phase) in phases.iter().enumerate().skip(1) {
        if !matches!(phase.fault, Fault::Healthy | Fault::Restart)
            || matches!(phases[i - 1].fault, Fault::Healthy)
        {
            continue;
        }
        let own: Vec<&Shot> = shots
            .iter()
            .filter(|s| s.at >= phase.switched && s.at + SETTLE < phase.end)
            .collect();
        // (A request the machine stalled is left out.)
        let real = |s: &Shot| {
            matches!(&s.answer, Ok((200, _))) && !s.is_fallback() || !s.stalled().is_zero()
        };
        let from = match own.iter().rposition(|s| !real(s)) {
            None => own.first().map(|s| s.at),
            Some(k) => own.get(k + 1).map(|s| s.at),
        };
        let recovery = from.map(|at| at.saturating_sub(phase.switched));
        if recovery.is_none_or(|r| r > RECOVERY) {
            report.fail(format!(
                "{}: real replies only {recovery:?} after the handler recovered (bound {RECOVERY:?})",
                phase.name
            ));
        }
        report.recoveries.push((phase.name.to_owned(), recovery));
    }

    // The metrics equal what the load generator saw: nothing unaccounted.
    let metrics = bridge.metrics().await;
    let observed_fallbacks: u64 = report.fallbacks.values().sum();
    let counted = |outcome: &str| {
        metrics.sum(
            "flows_bridge_requests_total",
            &format!("outcome=\"{outcome}\""),
        ) as u64
    };
    let pairs = [
        (
            "requests_total",
            metrics.sum("flows_bridge_requests_total", "") as u64,
            shots.len() as u64,
        ),
        ("outcome=reply", counted("reply"), report.replies as u64),
        ("outcome=fallback", counted("fallback"), observed_fallbacks),
        ("outcome=rejected", counted("rejected"), 0),
        (
            "duplicates_total",
            metrics.get("flows_bridge_duplicates_total") as u64,
            0,
        ),
        (
            "in_flight after the run",
            metrics.get("flows_bridge_in_flight") as u64,
            0,
        ),
    ];
    for (what, metric, seen) in pairs {
        if metric != seen {
            report.fail(format!(
                "metrics {what} = {metric}, the generator saw {seen}"
            ));
        }
    }
    for (event, seen) in &events {
        let metric =
            metrics.sum("flows_bridge_requests_total", &format!("event=\"{event}\"")) as u64;
        if metric != *seen {
            report.fail(format!("metrics event={event} = {metric}, sent {seen}"));
        }
    }
    let by_reason = metrics.by_reason("flows_bridge_fallbacks_total");
    if by_reason != report.fallbacks {
        report.fail(format!(
            "fallbacks_total by reason {by_reason:?} != observed {:?}",
            report.fallbacks
        ));
    }
    let histogram = metrics.get("flows_bridge_request_duration_seconds_count") as u64;
    if histogram != shots.len() as u64 {
        report.fail(format!(
            "request_duration_seconds_count {histogram} != {} requests",
            shots.len()
        ));
    }
    report
}

/// Every shot as a line of `path` (CHAOS_DUMP=path): sequence, scheduled
/// time, latency, lag, status, what the bridge logged, what the handler did.
fn dump(path: &str, bridge: &Bridge, handler: &ChaosHandler, shots: &[Shot]) {
    let logged: HashMap<String, Json> = bridge
        .log_json()
        .into_iter()
        .filter(|l| l["delivery_id"].is_string())
        .map(|l| (l["delivery_id"].as_str().unwrap_or("").to_owned(), l))
        .collect();
    let mut out =
        String::from("seq\tat_s\tlatency_ms\tlag_ms\tstatus\tlogged\treason\tdetail\thandler\n");
    for shot in shots {
        let line = logged.get(&shot.id);
        let field = |k: &str| line.and_then(|l| l[k].as_str()).unwrap_or("").to_owned();
        out.push_str(&format!(
            "{}\t{:.3}\t{:.1}\t{:.1}\t{}\t{}\t{}\t{}\t{:?}\n",
            shot.seq,
            shot.at.as_secs_f64(),
            shot.latency.as_secs_f64() * 1e3,
            shot.lag.as_secs_f64() * 1e3,
            shot.answer.as_ref().map_or(0, |(status, _)| *status),
            field("outcome"),
            field("reason"),
            field("detail"),
            handler.state.did(&shot.id)
        ));
    }
    std::fs::write(path, out).unwrap();
}

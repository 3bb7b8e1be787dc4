//! Fixtures for the chaos suite: the real `flows-bridge` binary as a child
//! process (JSON logs on stderr, kept in memory), signed deliveries, metrics
//! and memory readings, raw sockets, and a background prober that measures a
//! well-behaved client's latency while something hostile goes on.
//!
//! The process itself is `tests/common/process.rs`, shared with the
//! integration tests.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use flows_bridge::{
    sender::{self, HttpClient, Sent},
    signature,
};
use http_body_util::Full;
use serde_json::{Value as Json, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    task::JoinHandle,
};

// Shared with the integration tests; each uses its own part of it.
#[allow(dead_code)]
#[path = "../common/process.rs"]
mod process;

use process::BridgeProcess;

pub const SECRET: &str = "chaos-test-secret-7f3a9c";

pub const INIT: &str = include_str!("../vectors/deliveries/init.json");
pub const ADVANCE_FULL: &str = include_str!("../vectors/deliveries/screen_advance_full.json");
pub const BACK: &str = include_str!("../vectors/deliveries/back.json");

pub const FALLBACK: &[u8] = br#"{"data":{"acknowledged":true}}"#;

/// The bridge's default budget, which every chaos bridge keeps.
pub const BUDGET: Duration = Duration::from_millis(600);

/// Personal data in the seed deliveries (and in the hostile bodies), and the
/// secret: none may appear in a log line or an error body.
pub const NEVER_LOGGED: [&str; 10] = [
    SECRET,
    "+5215555555555",
    "5215555555555",
    "juan@empresa.com",
    "Juan",
    "Pérez",
    "selected_product",
    "\"p2\"",
    PII_MARKER,
    PII_PHONE,
];
/// Personal-looking values the hostile suite puts in bodies and headers.
pub const PII_MARKER: &str = "maria.lopez@correo.example";
pub const PII_PHONE: &str = "+5215550009876";

/// Tests of this binary run one at a time: they measure latency and memory,
/// and two at once on two shared cores would measure each other. (Each test
/// has its own runtime; tokio's mutex works across runtimes.)
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    watch_stalls();
    let guard = SERIAL.lock().await;
    // The same watch inside this test's runtime: a worker the machine does
    // not run (while the thread above happens to be run) stalls the
    // generator and the handler all the same. Ends with the runtime.
    tokio::spawn(async {
        let tick = Duration::from_millis(5);
        for _ in 0..(3600 * 200) {
            let before = Instant::now();
            tokio::time::sleep(tick).await;
            let woke = Instant::now();
            if woke - before > tick + STALL {
                STALLS
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((before + tick, woke));
            }
        }
    });
    guard
}

/// Times this process, or the bridge, was not run for a while: (from, to).
static STALLS: Mutex<Vec<(Instant, Instant)>> = Mutex::new(Vec::new());
static WATCH: std::sync::Once = std::sync::Once::new();
/// A wake-up this much later than asked counts as a stall of the machine.
const STALL: Duration = Duration::from_millis(30);

/// Time the threads of process `pid` spent runnable but not running (waiting
/// for a CPU), summed (`/proc/PID/task/*/schedstat`).
pub fn runqueue_wait(pid: u32) -> Duration {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Duration::ZERO;
    };
    let nanos: u64 = tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(nanos)
}

/// Starts (once) a thread that asks to sleep 5 ms, over and over, and notes
/// every time it woke up much later than that: times the machine did not run
/// this process (two shared cores, other jobs). The load generator, the
/// handler and the prober live in this process; a request that overlapped
/// such a stall gets the stall's length on top of its latency bound (see
/// [`stall_overlap`]): time the machine took from the test is not the
/// bridge's. Bounded: one hour.
pub fn watch_stalls() {
    WATCH.call_once(|| {
        std::thread::spawn(|| {
            let tick = Duration::from_millis(5);
            for _ in 0..(3600 * 200) {
                let before = Instant::now();
                std::thread::sleep(tick);
                let woke = Instant::now();
                if woke - before > tick + STALL {
                    STALLS
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((before + tick, woke));
                }
            }
        });
    });
}

/// Starts a thread that reads how long the threads of process `pid` (the
/// bridge) waited for a CPU, every 10 ms, and records as a stall every
/// interval in which they waited, in all, at least as long as the interval:
/// the machine did not run the bridge, though it had work. (Runqueue wait is
/// time runnable but not running: waiting on a lock or a socket does not
/// count.) Stops when the process is gone; bounded: one hour.
pub fn watch_runqueue(pid: u32) {
    std::thread::spawn(move || {
        let tick = Duration::from_millis(10);
        let mut last = (Instant::now(), runqueue_wait(pid));
        for _ in 0..(3600 * 100) {
            std::thread::sleep(tick);
            if !std::path::Path::new(&format!("/proc/{pid}/task")).exists() {
                break;
            }
            let now = (Instant::now(), runqueue_wait(pid));
            if now.1.saturating_sub(last.1) >= now.0 - last.0 {
                STALLS
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((last.0, now.0));
            }
            last = now;
        }
    });
}

/// The stalls (of this process or the bridge) within `from`..`to`, clipped
/// to it and merged where they overlap.
fn stalls_within(from: Instant, to: Instant) -> Vec<(Instant, Instant)> {
    let mut within: Vec<(Instant, Instant)> = STALLS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(start, end)| ((*start).max(from), (*end).min(to)))
        .filter(|(start, end)| start < end)
        .collect();
    within.sort();
    let mut merged: Vec<(Instant, Instant)> = Vec::new();
    for (start, end) in within {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

/// How long this process or the bridge was stalled between `from` and `to`.
pub fn stall_overlap(from: Instant, to: Instant) -> Duration {
    stalls_within(from, to)
        .iter()
        .map(|(start, end)| *end - *start)
        .sum()
}

/// Time since `started`, less the time this process was stalled meanwhile.
pub fn net_elapsed(started: Instant) -> Duration {
    let now = Instant::now();
    (now - started).saturating_sub(stall_overlap(started, now))
}

/// The stalls between `from` and `to`: their count, total and worst.
pub fn stalls_between(from: Instant, to: Instant) -> (usize, Duration, Duration) {
    let within: Vec<Duration> = stalls_within(from, to)
        .iter()
        .map(|(start, end)| *end - *start)
        .collect();
    (
        within.len(),
        within.iter().sum(),
        within.iter().max().copied().unwrap_or_default(),
    )
}

/// A seed delivery with a fresh id and timestamp.
pub fn delivery(seed: &str) -> Json {
    sender::refresh(serde_json::from_str(seed).unwrap())
}

/// An environment variable as a number, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The real binary, started with JSON logs on loopback; killed when dropped.
pub struct Bridge {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    process: BridgeProcess,
    client: HttpClient,
}

impl Bridge {
    /// `flows-bridge serve` in front of `upstream`, signed with [`SECRET`],
    /// default log level, with `env` overrides.
    pub fn start(upstream: &str, env: &[(&str, &str)]) -> Bridge {
        let mut command = process::serve_command(
            upstream,
            SECRET,
            &[("FLOWS_BRIDGE_READY_INTERVAL", "500ms")],
        );
        command.envs(env.iter().copied());
        let process = BridgeProcess::spawn(command);
        watch_runqueue(process.pid());
        Bridge {
            addr: process.addr,
            admin: process.admin,
            process,
            client: sender::http_client(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Posts `delivery` signed with the test secret, as Platica would.
    pub async fn send(&self, delivery: &Json) -> Sent {
        let request = sender::request(self.addr, "/", delivery, Some(SECRET.as_bytes()));
        tokio::time::timeout(Duration::from_secs(10), sender::send(&self.client, request))
            .await
            .expect("no answer in 10 s")
            .unwrap()
    }

    /// GET on the admin port: the body.
    pub async fn admin_get(&self, path: &str) -> String {
        let request = http::Request::get(format!("http://{}{path}", self.admin))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let sent =
            tokio::time::timeout(Duration::from_secs(10), sender::send(&self.client, request))
                .await
                .expect("admin port did not answer in 10 s")
                .unwrap();
        String::from_utf8(sent.body.to_vec()).unwrap()
    }

    /// Every series of `/metrics` with its value.
    pub async fn metrics(&self) -> Metrics {
        Metrics::parse(&self.admin_get("/metrics").await)
    }

    pub fn logs(&self) -> Vec<String> {
        self.process.logs()
    }

    /// Log lines, parsed (the lines that are not JSON, such as a panic
    /// message, are in [`Bridge::logs`]).
    pub fn log_json(&self) -> Vec<Json> {
        self.process.log_json()
    }

    /// Waits (bounded) until at least `count` log lines match: stderr is read
    /// on another thread, so lines may land after the responses did.
    pub async fn wait_logs(&self, count: usize, matches: impl Fn(&Json) -> bool) -> Vec<Json> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let found: Vec<Json> = self.log_json().into_iter().filter(&matches).collect();
            if found.len() >= count || Instant::now() > deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Resident memory of the bridge process, in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid())
    }

    /// CPU time (user + system) the bridge has used so far.
    pub fn cpu_time(&self) -> Duration {
        cpu_time(&self.pid().to_string())
    }

    /// No panic in the log, and the process is still running.
    pub fn assert_alive_without_panic(&mut self) {
        assert!(
            self.process.is_running(),
            "the bridge exited; logs: {:?}",
            tail(&self.logs())
        );
        let panics: Vec<String> = self
            .logs()
            .into_iter()
            .filter(|l| l.contains("panicked") || l.contains("RUST_BACKTRACE"))
            .collect();
        assert!(panics.is_empty(), "panic in the bridge log: {panics:?}");
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.process.terminate();
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.process.wait_exit(timeout)
    }
}

pub fn tail(lines: &[String]) -> &[String] {
    &lines[lines.len().saturating_sub(20)..]
}

/// CPU time (user + system) process `pid` (or `self`) has used so far.
pub fn cpu_time(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command (which is in parentheses and may hold spaces).
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The soft limit on open files of this process (the bridge inherits it).
pub fn open_files_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
}

/// `/metrics`, parsed: series (name and labels, as printed) to value.
#[derive(Debug, Clone, Default)]
pub struct Metrics(pub BTreeMap<String, f64>);

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        Metrics(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| {
                    let (series, value) = l.rsplit_once(' ')?;
                    Some((series.to_owned(), value.parse().ok()?))
                })
                .collect(),
        )
    }

    pub fn get(&self, series: &str) -> f64 {
        self.0.get(series).copied().unwrap_or(0.0)
    }

    /// The sum over every series of `name` whose labels contain `label` (e.g.
    /// `outcome="reply"`), or over all of them when `label` is empty.
    pub fn sum(&self, name: &str, label: &str) -> f64 {
        self.0
            .iter()
            .filter(|(series, _)| {
                series.strip_prefix(name).is_some_and(|rest| {
                    (rest.is_empty() || rest.starts_with('{')) && rest.contains(label)
                })
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// `{reason: count}` for a metric labelled by `reason`, zeros left out.
    pub fn by_reason(&self, name: &str) -> BTreeMap<String, u64> {
        self.0
            .iter()
            .filter_map(|(series, v)| {
                let reason = series
                    .strip_prefix(name)?
                    .strip_prefix("{reason=\"")?
                    .strip_suffix("\"}")?;
                (*v > 0.0).then(|| (reason.to_owned(), *v as u64))
            })
            .collect()
    }
}

/// The status line and body of one HTTP/1.1 exchange on a raw socket, read
/// until the peer closes or `timeout` passes (then `closed` is false).
#[derive(Debug, Default)]
pub struct RawReply {
    pub text: String,
    pub closed: bool,
    /// Net of machine stalls (see [`watch_stalls`]).
    pub elapsed: Duration,
}

impl RawReply {
    pub fn status(&self) -> Option<u16> {
        self.text
            .strip_prefix("HTTP/1.1 ")
            .and_then(|s| s.get(..3))
            .and_then(|s| s.parse().ok())
    }

    /// The JSON body of the first response, if it has one.
    pub fn json(&self) -> Option<Json> {
        let (_, rest) = self.text.split_once("\r\n\r\n")?;
        let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<Json>();
        stream.next()?.ok()
    }

    /// The number of HTTP responses in the text.
    pub fn responses(&self) -> usize {
        self.text.matches("HTTP/1.1 ").count()
    }
}

/// Reads what the peer sends until it closes, or `timeout`.
pub async fn read_until_close(stream: &mut TcpStream, timeout: Duration) -> RawReply {
    let started = Instant::now();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + timeout;
    let closed = loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => break false,
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    RawReply {
        text: String::from_utf8_lossy(&buf).into_owned(),
        closed,
        elapsed: net_elapsed(started),
    }
}

/// Connects, writes `bytes` (ignoring a write the peer cut short), and reads
/// the answer until the peer closes or `timeout`.
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> RawReply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(bytes).await;
    read_until_close(&mut stream, timeout).await
}

/// An HTTP/1.1 request head for a signed body: `extra` header lines are
/// appended as given (each ending in `\r\n`).
pub fn raw_head(body: &[u8], extra: &str) -> String {
    format!(
        "POST / HTTP/1.1\r\nhost: bridge\r\ncontent-type: application/json\r\n\
         x-webhook-signature: {}\r\n{extra}\r\n",
        signature::sign(SECRET.as_bytes(), body)
    )
}

/// Latency figures of a set of samples.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    pub count: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Latency {
    pub fn of(samples: &[Duration]) -> Latency {
        let mut sorted = samples.to_vec();
        sorted.sort();
        let at = |q: f64| {
            sorted
                .get(((sorted.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or_default()
        };
        Latency {
            count: sorted.len(),
            p50: at(0.5),
            p99: at(0.99),
            max: sorted.last().copied().unwrap_or_default(),
        }
    }
}

impl std::fmt::Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "n={} p50={:.1}ms p99={:.1}ms max={:.1}ms",
            self.count,
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
            self.max.as_secs_f64() * 1e3
        )
    }
}

/// A well-behaved client sending one signed delivery every `every`, on
/// schedule, measuring each answer from its scheduled time.
pub struct Probe {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Vec<(Instant, Result<Sent, String>)>>,
}

impl Probe {
    pub fn start(bridge: &Bridge, every: Duration) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let addr = bridge.addr;
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let client = sender::http_client();
                let mut sent = Vec::new();
                let mut next = Instant::now();
                // Bounded: at most 10 minutes of probes.
                for _ in 0..(600_000 / every.as_millis().max(1)) {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let request = fresh_connection_request(addr);
                    let client = client.clone();
                    let scheduled = next;
                    sent.push(tokio::spawn(async move {
                        let answer = tokio::time::timeout(
                            Duration::from_secs(5),
                            sender::send(&client, request),
                        )
                        .await;
                        let answer = match answer {
                            Err(_) => Err("no answer in 5 s".to_owned()),
                            Ok(Err(e)) => Err(e.to_string()),
                            Ok(Ok(mut sent)) => {
                                sent.latency = scheduled.elapsed();
                                Ok(sent)
                            }
                        };
                        (scheduled, answer)
                    }));
                    next += every;
                    tokio::time::sleep_until(next.into()).await;
                }
                let mut done = Vec::new();
                for handle in sent {
                    done.push(handle.await.unwrap());
                }
                done
            }
        });
        Probe { stop, task }
    }

    /// Stops, and checks that every probe got a real reply: returns the
    /// latencies, net of machine stalls (see [`watch_stalls`]).
    pub async fn finish(self, what: &str) -> Latency {
        self.stop.store(true, Ordering::Relaxed);
        let done = self.task.await.unwrap();
        let mut latencies = Vec::new();
        for (scheduled, answer) in &done {
            let sent = answer
                .as_ref()
                .unwrap_or_else(|e| panic!("{what}: a probe delivery failed: {e}"));
            assert_eq!(sent.status, 200, "{what}: probe got {:?}", sent.body);
            assert_ne!(
                &sent.body[..],
                FALLBACK,
                "{what}: a probe delivery got the fallback"
            );
            // Net of any time the machine did not run this process.
            latencies.push(
                sent.latency
                    .saturating_sub(stall_overlap(*scheduled, *scheduled + sent.latency)),
            );
        }
        assert!(!latencies.is_empty(), "{what}: no probe was sent");
        Latency::of(&latencies)
    }
}

/// A signed delivery on a connection of its own (`Connection: close`): a
/// probe leaves no idle keep-alive connection behind for the bridge to time
/// out, which would count as a connection error and blur exact counts.
fn fresh_connection_request(addr: SocketAddr) -> http::Request<Full<Bytes>> {
    let mut request = sender::request(addr, "/", &delivery(INIT), Some(SECRET.as_bytes()));
    request
        .headers_mut()
        .insert(http::header::CONNECTION, "close".parse().unwrap());
    request
}

/// Latency of `n` sequential probe deliveries (a quiet baseline), net of
/// machine stalls.
pub async fn quiet_latency(bridge: &Bridge, n: usize) -> Latency {
    let client = sender::http_client();
    let mut samples = Vec::new();
    for _ in 0..n {
        let sent = tokio::time::timeout(
            Duration::from_secs(10),
            sender::send(&client, fresh_connection_request(bridge.addr)),
        )
        .await
        .expect("a probe answered within 10 s")
        .unwrap();
        assert_eq!(sent.status, 200);
        assert_ne!(&sent.body[..], FALLBACK);
        let started = Instant::now() - sent.latency;
        samples.push(
            sent.latency
                .saturating_sub(stall_overlap(started, started + sent.latency)),
        );
    }
    Latency::of(&samples)
}

/// Asserts that no secret or personal value appears in `texts`.
pub fn assert_no_secret_or_personal_data(what: &str, texts: &[String]) {
    assert!(!texts.is_empty(), "{what}: nothing to check");
    for text in texts {
        for needle in NEVER_LOGGED {
            assert!(
                !text.contains(needle),
                "{what}: {needle:?} leaked into: {text}"
            );
        }
    }
}

/// A delivery whose payload and client data carry the hostile suite's
/// personal-looking markers.
pub fn personal_delivery() -> Json {
    let mut d = delivery(ADVANCE_FULL);
    d["data"]["client"]["email"] = json!(PII_MARKER);
    d["data"]["client"]["phoneNumber"] = json!(PII_PHONE);
    d["data"]["flowExchange"]["payload"]["email"] = json!(PII_MARKER);
    d
}

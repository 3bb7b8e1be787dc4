//! An open-model load generator: requests leave on a fixed schedule whatever
//! the replies do, each in its own task, and each one's latency counts from
//! the time it was *scheduled* to leave. A slow bridge therefore cannot slow
//! the load down and hide its own slowness (no coordinated omission): time
//! the generator itself lost (its lag) is part of the latency measured.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use bytes::Bytes;
use flows_bridge::sender;
use serde_json::Value as Json;

use crate::support::SECRET;

/// The longest a request may take before the generator records it as lost.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// One request and what came back.
#[derive(Debug, Clone)]
pub struct Shot {
    pub seq: usize,
    /// Its scheduled departure, from the start of the run.
    pub at: Duration,
    /// The same, as an instant.
    pub scheduled: Instant,
    pub id: String,
    /// `event` of the delivery (init, screen_advance, back).
    pub event: &'static str,
    /// From the scheduled departure to the whole response.
    pub latency: Duration,
    /// How late the generator was in sending it.
    pub lag: Duration,
    pub answer: Result<(u16, Bytes), String>,
}

impl Shot {
    pub fn body(&self) -> Option<&Bytes> {
        self.answer.as_ref().ok().map(|(_, body)| body)
    }

    pub fn is_fallback(&self) -> bool {
        self.body()
            .is_some_and(|b| &b[..] == crate::support::FALLBACK)
    }

    /// How long this process was stalled while the request was out.
    pub fn stalled(&self) -> Duration {
        crate::support::stall_overlap(self.scheduled, self.scheduled + self.latency)
    }
}

/// The deliveries a run cycles through: the three seed events, the
/// screen_advance one carrying the seed's personal data.
pub struct Deliveries {
    seeds: Vec<(Json, &'static str)>,
}

impl Default for Deliveries {
    fn default() -> Deliveries {
        let seed = |text: &str| serde_json::from_str::<Json>(text).unwrap();
        Deliveries {
            seeds: vec![
                (seed(crate::support::INIT), "init"),
                (seed(crate::support::ADVANCE_FULL), "screen_advance"),
                (seed(crate::support::BACK), "back"),
            ],
        }
    }
}

impl Deliveries {
    /// The `seq`-th delivery: a fresh id and timestamp.
    pub fn nth(&self, seq: usize) -> (Json, &'static str) {
        let (seed, event) = &self.seeds[seq % self.seeds.len()];
        (sender::refresh(seed.clone()), event)
    }
}

/// Sends `rate` signed deliveries a second for `duration` from `start`, to
/// `addr`, and returns every shot once every one has its answer (or has
/// timed out after [`CLIENT_TIMEOUT`]).
pub async fn open_load(
    addr: SocketAddr,
    rate: f64,
    duration: Duration,
    start: Instant,
) -> Vec<Shot> {
    let deliveries = Deliveries::default();
    let client = sender::http_client();
    let period = Duration::from_secs_f64(1.0 / rate);
    let count = (duration.as_secs_f64() * rate).round() as usize;
    let mut tasks = Vec::with_capacity(count);
    for seq in 0..count {
        let at = period * seq as u32;
        let scheduled = start + at;
        tokio::time::sleep_until(scheduled.into()).await;
        let (delivery, event) = deliveries.nth(seq);
        let id = delivery["id"].as_str().unwrap_or_default().to_owned();
        let request = sender::request(addr, "/", &delivery, Some(SECRET.as_bytes()));
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let lag = scheduled.elapsed();
            let answer = tokio::time::timeout(CLIENT_TIMEOUT, sender::send(&client, request)).await;
            let latency = scheduled.elapsed();
            let answer = match answer {
                Err(_) => Err(format!("no answer in {CLIENT_TIMEOUT:?}")),
                Ok(Err(e)) => Err(e.to_string()),
                Ok(Ok(sent)) => Ok((sent.status.as_u16(), sent.body)),
            };
            Shot {
                seq,
                at,
                scheduled,
                id,
                event,
                latency,
                lag,
                answer,
            }
        }));
    }
    let mut shots = Vec::with_capacity(count);
    for task in tasks {
        shots.push(task.await.unwrap());
    }
    shots
}

//! One handler call per delivery id: concurrent duplicates wait for the first
//! call, later ones get its answer from a bounded cache.
//!
//! Compact on purpose (a sidecar runs in every pod): an entry is a 16-byte
//! digest of the id and a pointer to the answer, about 250 bytes plus the
//! reply's JSON, a third of what a general-purpose cache with per-entry expiry
//! took (benches/README.md).
//!
//! Two limits hold together: at most `capacity` answers, and at most `memory`
//! bytes of them, whatever the replies' size. Each entry weighs its size, but
//! never less than `memory / capacity`: small replies fill the count first,
//! large ones the bytes.
//!
//! Ids and bodies are digested with XXH3-128, not a cryptographic hash: both
//! come from bodies that passed the HMAC check, so only the signer chooses
//! them, and a signer can send anything anyway. 128 bits make an accidental
//! collision negligible; XXH3 costs a sixteenth of SHA-256 on a delivery.
//! (With signatures off, a development mode, anyone chooses them; that mode
//! trusts its callers anyway.)

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;

use crate::outcome::{Detail, FallbackReason};

/// A delivery id by its digest: a fixed 16 bytes whatever the id's length.
type Key = [u8; 16];

/// What tells a retry (same body) from a reused id (another body).
pub type BodyDigest = [u8; 16];

/// The digest of a delivery's raw body.
pub fn body_digest(body: &[u8]) -> BodyDigest {
    xxhash_rust::xxh3::xxh3_128(body).to_le_bytes()
}

/// What a duplicate gets: the first call's answer, and a digest of the first
/// body to tell a retry from a reused id.
#[derive(Debug)]
pub struct Cached {
    pub digest: BodyDigest,
    pub answer: Result<Bytes, (FallbackReason, Detail)>,
    stored: Instant,
}

impl Cached {
    /// What an entry holds, about: the cache's slot, this struct behind its
    /// `Arc`, and the reply's bytes (measured: benches/README.md).
    fn size(&self) -> u64 {
        let reply = self.answer.as_ref().map_or(0, |json| json.len());
        ENTRY_OVERHEAD + u64::try_from(reply).unwrap_or(u64::MAX)
    }

    pub fn new(digest: BodyDigest, answer: Result<Bytes, (FallbackReason, Detail)>) -> Arc<Cached> {
        Arc::new(Cached {
            digest,
            answer,
            stored: Instant::now(),
        })
    }
}

/// How [`Idempotency::once`] went.
pub enum Once<E> {
    /// This request made the call (or tried to: `Err` is not kept).
    Called(Result<Arc<Cached>, E>),
    /// An earlier request with this id made it.
    Duplicate(Arc<Cached>),
}

/// Bytes an entry takes besides its reply (10 000 entries with a 46-byte reply
/// peaked 2.9 MiB above the cache turned off).
const ENTRY_OVERHEAD: u64 = 256;

/// Fixed, not quick_cache's four per core: each shard holds `memory / SHARDS`,
/// which bounds the largest answer kept (2 MiB by default, over the 1 MiB a
/// reply may take), so it must not shrink on a node with many cores. A
/// delivery holds a shard's lock for a lookup or an insert only.
const SHARDS: usize = 8;

/// An entry's weight in the cache: its size, at least `floor`.
#[derive(Clone)]
struct Weight {
    floor: u64,
}

impl quick_cache::Weighter<Key, Arc<Cached>> for Weight {
    fn weight(&self, _: &Key, cached: &Arc<Cached>) -> u64 {
        cached.size().max(self.floor)
    }
}

pub struct Idempotency {
    cache: quick_cache::sync::Cache<Key, Arc<Cached>, Weight>,
    ttl: Duration,
}

impl Idempotency {
    /// Keeps up to about `capacity` answers and `memory` bytes of them, each
    /// for `ttl`. An answer over about `memory / SHARDS` is not kept.
    pub fn new(capacity: u64, memory: u64, ttl: Duration) -> Idempotency {
        let floor = (memory / capacity.max(1)).max(1);
        let weight_capacity = if capacity == 0 { 0 } else { memory };
        let estimated_items = capacity.min(memory / ENTRY_OVERHEAD);
        #[allow(clippy::expect_used)]
        let options = quick_cache::OptionsBuilder::new()
            .estimated_items_capacity(usize::try_from(estimated_items).unwrap_or(usize::MAX))
            .weight_capacity(weight_capacity)
            .shards(SHARDS)
            .build()
            .expect("fails only when a required option is missing; both are set");
        Idempotency {
            cache: quick_cache::sync::Cache::with_options(
                options,
                Weight { floor },
                Default::default(),
                Default::default(),
            ),
            ttl,
        }
    }

    /// Runs `call` unless `id` has an answer already, or is being answered:
    /// then waits for that call. An `Err` is not kept, so the next request with
    /// this id (a waiting duplicate included) calls again.
    pub async fn once<E, F>(&self, id: &str, call: F) -> Once<E>
    where
        F: Future<Output = Result<Arc<Cached>, E>>,
    {
        let key = key(id);
        loop {
            match self.cache.get_value_or_guard_async(&key).await {
                Ok(cached) if cached.stored.elapsed() <= self.ttl => {
                    return Once::Duplicate(cached);
                }
                Ok(_expired) => {
                    self.cache.remove(&key);
                }
                Err(slot) => {
                    let called = call.await;
                    if let Ok(cached) = &called {
                        let _ = slot.insert(cached.clone());
                    }
                    return Once::Called(called);
                }
            }
        }
    }
}

fn key(id: &str) -> Key {
    xxhash_rust::xxh3::xxh3_128(id.as_bytes()).to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(reply: &'static str) -> Result<Arc<Cached>, ()> {
        Ok(Cached::new(
            [0; 16],
            Ok(Bytes::from_static(reply.as_bytes())),
        ))
    }

    fn reply(once: Once<()>) -> (bool, Bytes) {
        match once {
            Once::Called(Ok(c)) => (false, c.answer.clone().unwrap()),
            Once::Duplicate(c) => (true, c.answer.clone().unwrap()),
            Once::Called(Err(())) => panic!("an error"),
        }
    }

    #[tokio::test]
    async fn the_first_answer_is_kept_for_duplicates() {
        let cache = Idempotency::new(100, MIB, Duration::from_secs(60));
        assert_eq!(
            reply(cache.once("a", async { answer("1") }).await),
            (false, "1".into())
        );
        assert_eq!(
            reply(cache.once("a", async { answer("2") }).await),
            (true, "1".into())
        );
        assert_eq!(
            reply(cache.once("b", async { answer("3") }).await),
            (false, "3".into())
        );
    }

    #[tokio::test]
    async fn an_error_is_not_kept() {
        let cache = Idempotency::new(100, MIB, Duration::from_secs(60));
        assert!(matches!(
            cache.once("a", async { Err(()) }).await,
            Once::Called(Err(()))
        ));
        assert_eq!(
            reply(cache.once("a", async { answer("1") }).await),
            (false, "1".into())
        );
    }

    #[tokio::test]
    async fn an_expired_answer_is_called_again() {
        let cache = Idempotency::new(100, MIB, Duration::ZERO);
        assert_eq!(
            reply(cache.once("a", async { answer("1") }).await),
            (false, "1".into())
        );
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(
            reply(cache.once("a", async { answer("2") }).await),
            (false, "2".into())
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_duplicates_wait_for_the_first_call() {
        let cache = Arc::new(Idempotency::new(100, MIB, Duration::from_secs(60)));
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (cache, calls) = (cache.clone(), calls.clone());
                tokio::spawn(async move {
                    let once = cache
                        .once("a", async {
                            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            answer("1")
                        })
                        .await;
                    reply(once)
                })
            })
            .collect();
        let mut duplicates = 0;
        for task in tasks {
            let (duplicate, body) = task.await.unwrap();
            assert_eq!(body, "1");
            duplicates += usize::from(duplicate);
        }
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(duplicates, 7);
    }

    const MIB: u64 = 1024 * 1024;

    /// Answers `count` ids with `reply`; returns how many the cache kept.
    fn fill(cache: &Idempotency, count: usize, reply: &'static str) -> usize {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for n in 0..count {
            let _ = rt.block_on(cache.once(&n.to_string(), async { answer(reply) }));
        }
        cache.cache.len()
    }

    #[test]
    fn small_replies_are_bounded_by_count() {
        let cache = Idempotency::new(1_000, 16 * MIB, Duration::from_secs(60));
        let kept = fill(&cache, 10_000, "1");
        assert!((900..=1_100).contains(&kept), "{kept}");
    }

    #[test]
    fn large_replies_are_bounded_by_bytes() {
        static REPLY: std::sync::LazyLock<String> =
            std::sync::LazyLock::new(|| format!(r#"{{"data":{{"x":"{}"}}}}"#, "y".repeat(4000)));
        let cache = Idempotency::new(10_000, MIB, Duration::from_secs(60));
        let kept = fill(&cache, 2_000, REPLY.as_str());
        // 1 MiB holds ~247 entries of 4 KiB + 256 bytes; with the count alone
        // all 2 000 (8 MiB) would stay.
        assert!((200..=260).contains(&kept), "{kept}");
        let entry = REPLY.len() as u64 + ENTRY_OVERHEAD;
        assert!(kept as u64 * entry <= MIB, "{kept}");
    }

    #[test]
    fn a_reply_of_the_largest_size_is_kept_by_default() {
        static REPLY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!(r#"{{"data":{{"x":"{}"}}}}"#, "y".repeat(1024 * 1024))
        });
        let cache = Idempotency::new(10_000, 16 * MIB, Duration::from_secs(60));
        assert_eq!(fill(&cache, 1, REPLY.as_str()), 1);
        // Over `memory / SHARDS`: answered, not kept.
        let cache = Idempotency::new(10_000, 4 * MIB, Duration::from_secs(60));
        assert_eq!(fill(&cache, 1, REPLY.as_str()), 0);
    }

    #[test]
    fn a_capacity_of_zero_keeps_nothing() {
        let cache = Idempotency::new(0, MIB, Duration::from_secs(60));
        assert_eq!(fill(&cache, 100, "1"), 0);
    }
}

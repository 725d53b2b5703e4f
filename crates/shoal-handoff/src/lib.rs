//! Hinted handoff (Dynamo §4.6): when a replica is down, the coordinator writes its copy to the
//! next healthy node beyond N instead, tagged with the intended owner. That node keeps the copy
//! as a *hint*, apart from its own data, and hands it to the owner once SWIM sees it alive
//! again. A merge is a join, so delivering a hint twice, or after the owner got the write some
//! other way, changes nothing.
//!
//! Guarantees:
//! - A hint is durable (the `hints` column family, written through the WAL) before the hinted
//!   write is acknowledged, and deleted only after the owner acknowledged a delivery that
//!   covers it; a newer hint for the same key that arrived during delivery stays.
//! - Hints for one owner are bounded by `max_hints_per_target`; past it a hinted write is
//!   refused (the coordinator then counts that replica as failed) and the refusal is logged
//!   and counted.
//! - A hinted copy counts toward the write's `w`, so it is never simply thrown away while it
//!   may be one of the write's copies. A hint whose owner stays out of reach (or cannot take
//!   it, while a layout change blocks) for longer than `window` is *redirected*: merged into
//!   the key's other live replicas, and released only once one of them stored it as news, so
//!   its copy has moved to a node that lacked it rather than vanished. A hint whose copy every
//!   reachable replica already holds stays for its owner.
//! - Only a hint older than `max_age` is dropped, not delivered: anti-entropy repairs the
//!   owner from the other copies. Tombstone GC's grace period must exceed `max_age` by more
//!   than the clocks can disagree, so a hint (delivered or redirected) can never bring a
//!   collected key back.

mod strays;
mod throttle;

pub use strays::{hand_off_strays, StrayOwners};
pub use throttle::Throttle;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use shoal_storage::{blocking, system_clock, Clock, Object, Store, StoreError};
use tracing::{debug, info, warn};

const LOCK_STRIPES: usize = 256;

/// A stored hint: the copy for the owner and when this node stored (or last merged into) it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HintRecord {
    pub object: Object,
    pub stored_ms: u64,
}

impl HintRecord {
    fn encode(&self) -> Vec<u8> {
        // Serializing plain data into a Vec cannot fail.
        rmp_serde::to_vec_named(self).unwrap_or_default()
    }

    fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let r: HintRecord =
            rmp_serde::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("undecodable hint: {e}")))?;
        r.object
            .siblings
            .validate()
            .map_err(|e| StoreError::Corrupt(format!("hint: {e}")))?;
        Ok(r)
    }
}

#[derive(Clone, Debug)]
pub struct HandoffConfig {
    /// How long a hint waits for its owner; past it, it is redirected to the key's other
    /// replicas (see the module docs).
    pub window: Duration,
    /// Hints older than this are dropped and anti-entropy takes over. At least `window`, and
    /// below tombstone GC's grace period.
    pub max_age: Duration,
    /// The most keys hinted for one owner.
    pub max_hints_per_target: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum HintError {
    #[error("hint queue for {owner} is full: it holds {limit} hints, the limit max_hints_per_target = {limit}")]
    QueueFull { owner: String, limit: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One hint read for delivery.
#[derive(Clone, Debug)]
pub struct Hint {
    pub partition: u32,
    pub key: Bytes,
    pub record: HintRecord,
}

/// The hints this node holds for others.
pub struct Hints<S: Store> {
    store: Arc<S>,
    locks: Vec<Mutex<()>>,
    counts: Mutex<HashMap<String, usize>>,
    config: HandoffConfig,
    /// Hint ages are measured on this node's wall clock (virtual in the simulator).
    clock: Arc<dyn Clock>,
}

impl<S: Store> Hints<S> {
    /// Opens the hint store, counting the hints already held per owner.
    pub fn open(store: Arc<S>, config: HandoffConfig) -> Result<Self, StoreError> {
        let mut counts: HashMap<String, usize> = HashMap::new();
        store.hint_scan(None, None, &mut |owner, _, _, _| {
            *counts.entry(owner.to_string()).or_default() += 1;
            true
        })?;
        for (owner, count) in &counts {
            metrics::gauge!("shoal_hints_pending", "target" => owner.clone()).set(*count as f64);
        }
        Ok(Self {
            store,
            locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            counts: Mutex::new(counts),
            config,
            clock: system_clock(),
        })
    }

    /// Measure hint ages on `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn config(&self) -> &HandoffConfig {
        &self.config
    }

    fn lock(&self, owner: &str, key: &[u8]) -> parking_lot::MutexGuard<'_, ()> {
        let h = xxhash_rust::xxh3::xxh3_64_with_seed(key, owner.len() as u64)
            ^ xxhash_rust::xxh3::xxh3_64(owner.as_bytes());
        self.locks[h as usize % LOCK_STRIPES].lock()
    }

    fn adjust(&self, owner: &str, delta: isize) {
        let mut counts = self.counts.lock();
        let c = counts.entry(owner.to_string()).or_default();
        *c = c.saturating_add_signed(delta);
        metrics::gauge!("shoal_hints_pending", "target" => owner.to_string()).set(*c as f64);
    }

    fn read(&self, owner: &str, partition: u32, key: &[u8]) -> Result<Option<HintRecord>, StoreError> {
        self.store
            .hint_get(owner, partition, key)?
            .map(|b| HintRecord::decode(&b))
            .transpose()
    }

    /// Keep `object` for `owner`, merging it into a hint already held for the key.
    pub fn record(&self, owner: &str, partition: u32, key: &[u8], object: &Object) -> Result<(), HintError> {
        let _guard = self.lock(owner, key);
        let existing = self.read(owner, partition, key)?;
        if existing.is_none() {
            let held = self.counts.lock().get(owner).copied().unwrap_or(0);
            if held >= self.config.max_hints_per_target {
                metrics::counter!("shoal_hints_refused_total", "reason" => "queue_full").increment(1);
                warn!(
                    owner,
                    limit = self.config.max_hints_per_target,
                    "hint queue full (max_hints_per_target): refusing a hinted write; anti-entropy will repair the owner"
                );
                return Err(HintError::QueueFull {
                    owner: owner.to_string(),
                    limit: self.config.max_hints_per_target,
                });
            }
        }
        let mut merged = existing.as_ref().map_or_else(|| object.clone(), |e| e.object.clone());
        if existing.is_some() {
            merged.merge(object);
        }
        merged.deleted_at = None;
        let record = HintRecord {
            object: merged,
            stored_ms: self.clock.unix_ms(),
        };
        self.store.hint_put(owner, partition, key, &record.encode())?;
        if existing.is_none() {
            self.adjust(owner, 1);
        }
        metrics::counter!("shoal_hints_stored_total").increment(1);
        Ok(())
    }

    /// The copy held for `owner` of `key`, for a read that asked this node in the owner's place.
    pub fn get(&self, owner: &str, partition: u32, key: &[u8]) -> Result<Option<Object>, StoreError> {
        Ok(self.read(owner, partition, key)?.map(|r| r.object))
    }

    /// Up to `max_keys` hints for `owner` (and about `max_bytes` of values, at least one),
    /// from `(partition, key)` `from` on.
    pub fn batch(
        &self,
        owner: &str,
        from: Option<(u32, &[u8])>,
        max_keys: usize,
        max_bytes: usize,
    ) -> Result<Vec<Hint>, StoreError> {
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut failed = None;
        self.store
            .hint_scan(Some(owner), from, &mut |_, partition, key, value| {
                match HintRecord::decode(value) {
                    Ok(record) => {
                        bytes += key.len() + record.object.payload_len();
                        out.push(Hint {
                            partition,
                            key: Bytes::copy_from_slice(key),
                            record,
                        });
                    }
                    Err(e) => {
                        failed = Some(e);
                        return false;
                    }
                }
                out.len() < max_keys && bytes < max_bytes
            })?;
        match failed {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// The owner acknowledged `delivered` for `key`: delete the hint unless a newer write was
    /// hinted meanwhile. Returns whether it was deleted.
    pub fn acknowledge(&self, owner: &str, partition: u32, key: &[u8], delivered: &Object) -> Result<bool, StoreError> {
        let _guard = self.lock(owner, key);
        match self.read(owner, partition, key)? {
            Some(current) if delivered.siblings.covers(&current.object.siblings) => {
                self.store.hint_delete(owner, partition, key)?;
                self.adjust(owner, -1);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Drop one hint that outlived the window (unless it was refreshed meanwhile).
    fn drop_expired(&self, owner: &str, partition: u32, key: &[u8], cutoff: u64) -> Result<bool, StoreError> {
        let _guard = self.lock(owner, key);
        match self.read(owner, partition, key)? {
            Some(r) if r.stored_ms < cutoff => {
                self.store.hint_delete(owner, partition, key)?;
                self.adjust(owner, -1);
                metrics::counter!("shoal_hints_expired_total").increment(1);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The `stored_ms` before which a hint is older than `age`.
    fn cutoff(&self, age: Duration) -> u64 {
        self.clock.unix_ms().saturating_sub(age.as_millis() as u64)
    }

    /// Drop every hint older than `max_age`. Returns how many went.
    pub fn expire(&self) -> Result<u64, StoreError> {
        let cutoff = self.cutoff(self.config.max_age);
        let mut old = Vec::new();
        self.store.hint_scan(None, None, &mut |owner, partition, key, value| {
            if HintRecord::decode(value).map_or(true, |r| r.stored_ms < cutoff) {
                old.push((owner.to_string(), partition, key.to_vec()));
            }
            true
        })?;
        let mut dropped = 0;
        for (owner, partition, key) in old {
            dropped += self.drop_expired(&owner, partition, &key, cutoff)? as u64;
        }
        if dropped > 0 {
            info!(
                dropped,
                "dropped hints older than handoff.max_age; anti-entropy repairs their owners"
            );
        }
        Ok(dropped)
    }

    /// Hints held per owner (owners with none are left out).
    pub fn pending(&self) -> Vec<(String, usize)> {
        let mut v: Vec<(String, usize)> = self
            .counts
            .lock()
            .iter()
            .filter(|(_, c)| **c > 0)
            .map(|(o, c)| (o.clone(), *c))
            .collect();
        v.sort();
        v
    }
}

/// Where hints go: the node's view of liveness and its peer transport.
pub trait Deliver: Send + Sync + 'static {
    /// Whether delivery for `owner` should be tried now: it is alive (per SWIM) and a member, or
    /// it has left the layout and its hints go to the keys' current replicas instead.
    fn ready(&self, owner: &str) -> bool;
    /// Merge these copies into `owner`'s replica; `Ok` once it has stored all of them.
    fn deliver(&self, owner: &str, objects: Vec<(Bytes, Object)>) -> impl Future<Output = Result<(), String>> + Send;
    /// Merge these copies, meant for `owner`, into every live replica of each key but `owner`
    /// (the write set, while a layout change is under way), and say, per object, whether some
    /// replica stored it as news: its copy then exists on a node that lacked it. A replica
    /// that fails takes nothing and counts for nothing.
    fn redirect(
        &self,
        owner: &str,
        objects: Vec<(Bytes, Object)>,
    ) -> impl Future<Output = Result<Vec<bool>, String>> + Send;
}

#[derive(Clone, Debug)]
pub struct DeliveryConfig {
    /// How often to look for owners that came back.
    pub interval: Duration,
    pub batch_keys: usize,
    pub batch_bytes: usize,
    /// How often hints older than `max_age` are swept.
    pub sweep_interval: Duration,
    /// How often the hints of an owner that is not ready are redirected, once past the window.
    pub redirect_interval: Duration,
}

/// Walks the hints held for one owner, batch by batch, each batch starting just after the
/// last key of the one before.
struct HintCursor<'a, S: Store> {
    hints: &'a Arc<Hints<S>>,
    owner: &'a str,
    config: &'a DeliveryConfig,
    from: Option<(u32, Vec<u8>)>,
}

impl<'a, S: Store> HintCursor<'a, S> {
    fn new(hints: &'a Arc<Hints<S>>, owner: &'a str, config: &'a DeliveryConfig) -> Self {
        Self {
            hints,
            owner,
            config,
            from: None,
        }
    }

    /// The next batch; `None` once the owner's hints are all read.
    async fn next(&mut self) -> Result<Option<Vec<Hint>>, String> {
        let (h, o) = (self.hints.clone(), self.owner.to_string());
        let (keys, bytes) = (self.config.batch_keys, self.config.batch_bytes);
        let from = self.from.clone();
        let batch = blocking(move || h.batch(&o, from.as_ref().map(|(p, k)| (*p, k.as_slice())), keys, bytes))
            .await?
            .map_err(|e| e.to_string())?;
        let Some(last) = batch.last() else {
            return Ok(None);
        };
        // The smallest key after `last.key`: the key with a zero byte appended.
        let mut next = last.key.to_vec();
        next.push(0);
        self.from = Some((last.partition, next));
        Ok(Some(batch))
    }
}

/// Paces `hints` on `throttle` and returns their copies, ready to send.
async fn paced_copies(hints: &[Hint], throttle: &Throttle) -> Vec<(Bytes, Object)> {
    let size: u64 = hints
        .iter()
        .map(|h| (h.key.len() + h.record.object.payload_len()) as u64)
        .sum();
    throttle.pace(size).await;
    hints.iter().map(|h| (h.key.clone(), h.record.object.clone())).collect()
}

/// Deletes each of `sent` that its copy still covers (see [`Hints::acknowledge`]); how many
/// went.
async fn acknowledge_all<S: Store>(hints: &Arc<Hints<S>>, owner: &str, sent: Vec<Hint>) -> Result<u64, String> {
    let (h, o) = (hints.clone(), owner.to_string());
    blocking(move || {
        let mut n = 0u64;
        for hint in sent {
            n += h
                .acknowledge(&o, hint.partition, &hint.key, &hint.record.object)
                .map_err(|e| e.to_string())? as u64;
        }
        Ok::<_, String>(n)
    })
    .await?
}

/// Deliver every hint held for `owner`, batch by batch, until none is left or a delivery
/// fails. Returns how many hints were delivered.
pub async fn deliver_owner<S: Store, D: Deliver>(
    hints: &Arc<Hints<S>>,
    target: &D,
    owner: &str,
    config: &DeliveryConfig,
    throttle: &Throttle,
) -> Result<u64, String> {
    let mut delivered = 0u64;
    let mut cursor = HintCursor::new(hints, owner, config);
    while let Some(batch) = cursor.next().await? {
        let cutoff = hints.cutoff(hints.config.max_age);
        let (fresh, stale): (Vec<Hint>, Vec<Hint>) = batch.into_iter().partition(|h| h.record.stored_ms >= cutoff);
        for h in &stale {
            hints
                .drop_expired(owner, h.partition, &h.key, cutoff)
                .map_err(|e| e.to_string())?;
        }
        if fresh.is_empty() {
            continue;
        }
        target.deliver(owner, paced_copies(&fresh, throttle).await).await?;
        let acked = acknowledge_all(hints, owner, fresh).await?;
        metrics::counter!("shoal_hints_delivered_total").increment(acked);
        delivered += acked;
        // Hints refreshed during delivery stay, behind the cursor, for the next round.
    }
    Ok(delivered)
}

/// Redirect the hints held for `owner` that waited longer than the window (see the module
/// docs), batch by batch. Returns how many were released: those whose copy some other
/// replica stored as news. The rest stay, for their owner or a later try.
pub async fn redirect_owner<S: Store, D: Deliver>(
    hints: &Arc<Hints<S>>,
    target: &D,
    owner: &str,
    config: &DeliveryConfig,
    throttle: &Throttle,
) -> Result<u64, String> {
    let mut released = 0u64;
    let mut cursor = HintCursor::new(hints, owner, config);
    while let Some(batch) = cursor.next().await? {
        let (waited, too_old) = (hints.cutoff(hints.config.window), hints.cutoff(hints.config.max_age));
        let due: Vec<Hint> = batch
            .into_iter()
            .filter(|h| h.record.stored_ms < waited && h.record.stored_ms >= too_old)
            .collect();
        if due.is_empty() {
            continue;
        }
        let news = target.redirect(owner, paced_copies(&due, throttle).await).await?;
        let moved: Vec<Hint> = due
            .into_iter()
            .zip(news)
            .filter(|(_, news)| *news)
            .map(|(h, _)| h)
            .collect();
        let moved = acknowledge_all(hints, owner, moved).await?;
        metrics::counter!("shoal_hints_redirected_total").increment(moved);
        released += moved;
    }
    Ok(released)
}

/// Merges `objects` into the replicas `routes` names (node → indices into `objects`) with
/// `merge`, and says, per object, whether some replica stored it as news. A replica that
/// fails takes nothing and counts for nothing. Serves every [`Deliver::redirect`].
pub async fn merge_for_news<N, F, Fut>(
    routes: impl IntoIterator<Item = (N, Vec<usize>)>,
    objects: &[(Bytes, Object)],
    mut merge: F,
) -> Vec<bool>
where
    N: std::fmt::Display,
    F: FnMut(N, Vec<(Bytes, Object)>) -> Fut,
    Fut: Future<Output = Result<Vec<bool>, String>>,
{
    let mut news = vec![false; objects.len()];
    for (node, indices) in routes {
        let batch = indices.iter().map(|&i| objects[i].clone()).collect();
        let shown = node.to_string();
        match merge(node, batch).await {
            Ok(stored) => {
                for (i, new) in indices.into_iter().zip(stored) {
                    news[i] |= new;
                }
            }
            Err(e) => debug!(to = %shown, error = %e, "redirecting hints to a replica failed"),
        }
    }
    news
}

/// The delivery loop: every interval, hand each ready owner its hints; every sweep interval,
/// drop hints past `max_age`; for an owner that is not ready, redirect its hints past the
/// window, at most every `redirect_interval` (longer after passes that released nothing).
pub async fn run<S: Store, D: Deliver>(
    hints: Arc<Hints<S>>,
    target: D,
    config: DeliveryConfig,
    throttle: Arc<Throttle>,
) {
    let mut next_sweep = tokio::time::Instant::now();
    // Per owner: when to try redirecting again, and the pause after that. A pass that released
    // nothing (every reachable replica already held the hints) doubles the pause, up to the
    // window, so a long outage does not re-send a large backlog every interval.
    let mut next_redirect: HashMap<String, (tokio::time::Instant, Duration)> = HashMap::new();
    loop {
        tokio::time::sleep(config.interval).await;
        let now = tokio::time::Instant::now();
        if now >= next_sweep {
            let h = hints.clone();
            match blocking(move || h.expire().map_err(|e| e.to_string())).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) | Err(e) => warn!(error = %e, "sweeping expired hints failed"),
            }
            next_sweep = tokio::time::Instant::now() + config.sweep_interval;
        }
        let pending = hints.pending();
        next_redirect.retain(|owner, _| pending.iter().any(|(o, _)| o == owner));
        for (owner, _) in pending {
            if !target.ready(&owner) {
                let (at, pause) = next_redirect
                    .get(&owner)
                    .copied()
                    .unwrap_or((now, config.redirect_interval));
                if now >= at {
                    let result = redirect_owner(&hints, &target, &owner, &config, &throttle).await;
                    let pause = match result {
                        Ok(0) | Err(_) => (pause * 2).min(hints.config.window.max(config.redirect_interval)),
                        Ok(_) => config.redirect_interval,
                    };
                    next_redirect.insert(owner.clone(), (tokio::time::Instant::now() + pause, pause));
                    match result {
                        Ok(0) => {}
                        Ok(n) => info!(
                            %owner,
                            redirected = n,
                            "redirected hints that waited past the handoff window to the keys' other replicas"
                        ),
                        Err(e) => debug!(%owner, error = %e, "redirecting hints failed; retrying later"),
                    }
                }
                continue;
            }
            match deliver_owner(&hints, &target, &owner, &config, &throttle).await {
                Ok(0) => {}
                Ok(n) => info!(%owner, delivered = n, "handed off hints"),
                Err(e) => debug!(%owner, error = %e, "hint delivery failed; retrying later"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_storage::{MemoryStore, Value};
    use shoal_version::{SiblingLimits, VersionVector};

    fn obj(actor: &str, v: &str) -> Object {
        let mut o = Object {
            n: 3,
            ..Default::default()
        };
        o.siblings
            .write(
                actor,
                &VersionVector::new(),
                Value::Data(Bytes::from(v.to_string())),
                &SiblingLimits::default(),
            )
            .unwrap();
        o
    }

    fn hints(limit: usize, window: Duration) -> Arc<Hints<MemoryStore>> {
        hints_aged(limit, window, window * 2)
    }

    fn hints_aged(limit: usize, window: Duration, max_age: Duration) -> Arc<Hints<MemoryStore>> {
        let config = HandoffConfig {
            window,
            max_age,
            max_hints_per_target: limit,
        };
        Arc::new(Hints::open(Arc::new(MemoryStore::new()), config).unwrap())
    }

    /// A clock the test moves by hand.
    struct Manual(std::sync::atomic::AtomicU64);

    impl Clock for Manual {
        fn unix_ms(&self) -> u64 {
            self.0.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    #[test]
    fn hints_merge_per_key_and_are_bounded_per_owner() {
        let h = hints(2, Duration::from_secs(60));
        h.record("n2", 1, b"a", &obj("n1", "x")).unwrap();
        h.record("n2", 1, b"a", &obj("n3", "y")).unwrap();
        assert_eq!(
            h.get("n2", 1, b"a").unwrap().unwrap().siblings.len(),
            2,
            "a second hint merges"
        );
        h.record("n2", 1, b"b", &obj("n1", "x")).unwrap();
        match h.record("n2", 1, b"c", &obj("n1", "x")) {
            Err(e @ HintError::QueueFull { .. }) => {
                assert!(e.to_string().contains("max_hints_per_target = 2"), "{e}")
            }
            other => panic!("expected the queue limit, got {other:?}"),
        }
        h.record("n2", 1, b"a", &obj("n4", "z"))
            .expect("a key already hinted can still be updated");
        h.record("n5", 1, b"c", &obj("n1", "x"))
            .expect("the limit is per owner");
        assert_eq!(h.pending(), vec![("n2".to_string(), 2), ("n5".to_string(), 1)]);
        // Reopening counts what is on disk.
        let reopened = Hints::open(h.store.clone(), h.config.clone()).unwrap();
        assert_eq!(reopened.pending(), h.pending());
    }

    #[test]
    fn an_acknowledgement_never_deletes_a_newer_hint() {
        let h = hints(10, Duration::from_secs(60));
        let first = obj("n1", "x");
        h.record("n2", 1, b"a", &first).unwrap();
        // A newer write is hinted while the first is being delivered.
        h.record("n2", 1, b"a", &obj("n3", "y")).unwrap();
        assert!(!h.acknowledge("n2", 1, b"a", &first).unwrap());
        assert!(h.get("n2", 1, b"a").unwrap().is_some());
        let both = h.get("n2", 1, b"a").unwrap().unwrap();
        assert!(h.acknowledge("n2", 1, b"a", &both).unwrap());
        assert!(h.get("n2", 1, b"a").unwrap().is_none());
        assert!(h.pending().is_empty());
    }

    #[test]
    fn hints_older_than_max_age_are_dropped() {
        let h = hints_aged(10, Duration::ZERO, Duration::ZERO);
        h.record("n2", 1, b"a", &obj("n1", "x")).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(h.expire().unwrap(), 1);
        assert!(h.pending().is_empty());
    }

    struct Owner {
        got: Mutex<Vec<Bytes>>,
        fail: std::sync::atomic::AtomicBool,
        /// What the other replicas lack, for `redirect`: keys they store as news.
        lacking: Mutex<Vec<Bytes>>,
        redirected: Mutex<Vec<Bytes>>,
    }

    impl Owner {
        fn new(fail: bool) -> Self {
            Self {
                got: Mutex::new(Vec::new()),
                fail: fail.into(),
                lacking: Mutex::new(Vec::new()),
                redirected: Mutex::new(Vec::new()),
            }
        }
    }

    impl Deliver for Owner {
        fn ready(&self, _: &str) -> bool {
            true
        }
        async fn deliver(&self, _: &str, objects: Vec<(Bytes, Object)>) -> Result<(), String> {
            if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
                return Err("connection refused".into());
            }
            self.got.lock().extend(objects.into_iter().map(|(k, _)| k));
            Ok(())
        }
        async fn redirect(&self, _: &str, objects: Vec<(Bytes, Object)>) -> Result<Vec<bool>, String> {
            if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
                return Err("connection refused".into());
            }
            let mut lacking = self.lacking.lock();
            let news = objects
                .iter()
                .map(|(k, _)| {
                    let news = lacking.contains(k);
                    lacking.retain(|l| l != k);
                    news
                })
                .collect();
            self.redirected.lock().extend(objects.into_iter().map(|(k, _)| k));
            Ok(news)
        }
    }

    #[tokio::test]
    async fn hints_past_the_window_move_to_replicas_that_lack_them_and_stay_otherwise() {
        let clock = Arc::new(Manual(1_000_000.into()));
        let config = HandoffConfig {
            window: Duration::from_secs(10),
            max_age: Duration::from_secs(100),
            max_hints_per_target: 100,
        };
        let h = Arc::new(
            Hints::open(Arc::new(MemoryStore::new()), config)
                .unwrap()
                .with_clock(clock.clone()),
        );
        for k in ["a", "b", "c"] {
            h.record("n2", 1, k.as_bytes(), &obj("n1", "v")).unwrap();
        }
        let target = Owner::new(false);
        *target.lacking.lock() = vec![Bytes::from("a"), Bytes::from("b")];
        let config = DeliveryConfig {
            interval: Duration::from_millis(10),
            batch_keys: 2,
            batch_bytes: 1 << 20,
            sweep_interval: Duration::from_secs(60),
            redirect_interval: Duration::from_secs(60),
        };
        let throttle = Throttle::new(0.0);
        // Within the window nothing moves: the hints wait for their owner.
        clock.0.store(1_000_000 + 9_000, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(redirect_owner(&h, &target, "n2", &config, &throttle).await.unwrap(), 0);
        assert!(target.redirected.lock().is_empty());
        // A newer write to `c` restarts its wait.
        h.record("n2", 1, b"c", &obj("n3", "w")).unwrap();
        clock.0.store(1_000_000 + 11_000, std::sync::atomic::Ordering::SeqCst);
        // A failed redirect keeps every hint.
        target.fail.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(redirect_owner(&h, &target, "n2", &config, &throttle).await.is_err());
        assert_eq!(h.pending(), vec![("n2".to_string(), 3)]);
        target.fail.store(false, std::sync::atomic::Ordering::SeqCst);
        // Past the window: `a` and `b` go where they were news and are released.
        assert_eq!(redirect_owner(&h, &target, "n2", &config, &throttle).await.unwrap(), 2);
        assert_eq!(*target.redirected.lock(), vec![Bytes::from("a"), Bytes::from("b")]);
        assert!(h.get("n2", 1, b"a").unwrap().is_none());
        // `c`'s wait has not run out; once it has, every replica already holds it, so the hint
        // stays: releasing it would leave the write one copy short.
        clock.0.store(1_000_000 + 25_000, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(redirect_owner(&h, &target, "n2", &config, &throttle).await.unwrap(), 0);
        assert_eq!(target.redirected.lock().last(), Some(&Bytes::from("c")));
        assert_eq!(h.pending(), vec![("n2".to_string(), 1)]);
        // Past max_age it goes: anti-entropy repairs the owner from the other copies.
        clock.0.store(1_000_000 + 200_000, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(h.expire().unwrap(), 1);
        assert!(h.pending().is_empty());
    }

    #[tokio::test]
    async fn delivery_hands_over_everything_in_batches_and_keeps_hints_on_failure() {
        let h = hints(1000, Duration::from_secs(60));
        for i in 0..50 {
            h.record("n2", i % 4, format!("k{i}").as_bytes(), &obj("n1", "v"))
                .unwrap();
        }
        let owner = Owner::new(true);
        let config = DeliveryConfig {
            interval: Duration::from_millis(10),
            batch_keys: 8,
            batch_bytes: 1 << 20,
            sweep_interval: Duration::from_secs(60),
            redirect_interval: Duration::from_secs(60),
        };
        let throttle = Throttle::new(0.0);
        assert!(deliver_owner(&h, &owner, "n2", &config, &throttle).await.is_err());
        assert_eq!(
            h.pending(),
            vec![("n2".to_string(), 50)],
            "a failed delivery keeps every hint"
        );
        owner.fail.store(false, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(deliver_owner(&h, &owner, "n2", &config, &throttle).await.unwrap(), 50);
        assert!(h.pending().is_empty());
        let mut got = owner.got.lock().clone();
        got.sort();
        got.dedup();
        assert_eq!(got.len(), 50);
    }
}

//! Active anti-entropy: every replica keeps a tictac Merkle tree per (partition, n), updated in
//! O(1) on every write, and periodically compares it with another replica's, descending only
//! into differing branches, then exchanging key/version digests for the differing segments and
//! sending each side what it lacks (Dynamo §4.7 with Riak's tictac trees in place of hash
//! trees rebuilt from scratch).
//!
//! Why a tree per (partition, n) and not per partition: an object written with n = 2 lives on
//! the first two nodes of its partition's preference list, one with n = 3 on the first three.
//! A tree that mixed them would never match between the second and third replica.
//!
//! Tombstone GC lives here too, because only anti-entropy can say that every replica holds a
//! tombstone: a replica reaps a tombstone only when it is older than the grace period and
//! every other replica of its tree matched this one's root after the tombstone was written;
//! each replica then deletes its copy only if it is still that exact tombstone.
//!
//! The trees are kept in memory and rebuilt from storage when the node starts (one scan);
//! [`AntiEntropy::open`] must run before the replica takes writes.

mod tree;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use serde::Serialize;
use shoal_storage::{blocking, Object, Replica, ReplicaObserver, Store, StoreError};

mod plan;
pub use plan::{pick_peer, plan_round, PlannedTree};
pub use tree::{differing, version_hash, TicTacTree, TreeQuery, BRANCHES, LEAVES_PER_BRANCH};

const SHARDS: usize = 64;
/// Segments asked for in one digest request.
const SEGMENTS_PER_REQUEST: usize = 32;
/// Keys fetched or pushed per request, and the most bytes of objects one answer or push holds.
pub const KEYS_PER_REQUEST: usize = 256;
pub const BYTES_PER_REQUEST: usize = 4 << 20;
/// Tombstones considered by one GC pass of one tree; within what a peer accepts in one
/// `Reap` request (4,096).
const REAP_BATCH: usize = 4_000;

/// The Merkle trees of one replica, kept current by the replica's observer hook.
pub struct Trees {
    shards: Vec<Mutex<HashMap<(u32, u8), TicTacTree>>>,
}

impl Default for Trees {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

impl Trees {
    fn shard(&self, partition: u32) -> &Mutex<HashMap<(u32, u8), TicTacTree>> {
        &self.shards[partition as usize % SHARDS]
    }

    /// Read the tree of (partition, n); an absent tree reads as empty.
    pub fn with<R>(&self, partition: u32, n: u8, f: impl FnOnce(&TicTacTree) -> R) -> R {
        let shard = self.shard(partition).lock();
        match shard.get(&(partition, n)) {
            Some(t) => f(t),
            None => f(&TicTacTree::default()),
        }
    }

    /// Every tree this replica has: ((partition, n), keys, tombstones, root).
    pub fn list(&self) -> Vec<TreeSummary> {
        let mut out: Vec<TreeSummary> = self
            .shards
            .iter()
            .flat_map(|s| {
                s.lock()
                    .iter()
                    .map(|(&(partition, n), t)| TreeSummary {
                        partition,
                        n,
                        keys: t.keys(),
                        tombstones: t.tombstones(),
                        root: t.root(),
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        out.sort_by_key(|t| (t.partition, t.n));
        out
    }
}

impl ReplicaObserver for Trees {
    fn changed(&self, partition: u32, key: &[u8], old: Option<&Object>, new: Option<&Object>) {
        let mut shard = self.shard(partition).lock();
        if let Some(o) = old {
            shard.entry((partition, o.n)).or_default().remove(key, o);
        }
        if let Some(o) = new {
            shard.entry((partition, o.n)).or_default().insert(key, o);
        }
    }
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct TreeSummary {
    pub partition: u32,
    pub n: u8,
    pub keys: u64,
    pub tombstones: u64,
    pub root: u64,
}

/// The other side of an exchange: another replica of the same (partition, n), reached over the
/// peer protocol by the node and in memory by tests.
pub trait Remote: Send + Sync {
    fn tree(&self, partition: u32, n: u8, query: TreeQuery) -> impl Future<Output = Result<Vec<u64>, String>> + Send;
    /// (key, version hash) of every key of `n` in these segments.
    fn digests(
        &self,
        partition: u32,
        n: u8,
        segments: Vec<u16>,
    ) -> impl Future<Output = Result<Vec<(Bytes, u64)>, String>> + Send;
    /// The remote's copies of `keys`, in order, possibly fewer than asked for (the rest must
    /// be asked again); `None` for a key it does not hold.
    fn fetch(
        &self,
        partition: u32,
        keys: Vec<Bytes>,
    ) -> impl Future<Output = Result<Vec<(Bytes, Option<Object>)>, String>> + Send;
    /// Merge these copies into the remote's replica.
    fn push(&self, objects: Vec<(Bytes, Object)>) -> impl Future<Output = Result<(), String>> + Send;
    /// Tombstone GC: delete each key the remote holds as exactly this tombstone version; answer
    /// the keys the remote no longer holds (reaped now or before).
    fn reap(
        &self,
        partition: u32,
        n: u8,
        keys: Vec<(Bytes, u64)>,
    ) -> impl Future<Output = Result<Vec<Bytes>, String>> + Send;
}

/// What one exchange found and did.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct ExchangeReport {
    /// The roots matched: nothing to do.
    pub in_sync: bool,
    /// Bytes of hashes, digests and objects sent and received.
    pub bytes: u64,
    pub segments: u64,
    /// Keys whose version differed or that only one side held.
    pub divergent: u64,
    /// Keys merged into this replica, and pushed to the remote.
    pub pulled: u64,
    pub pushed: u64,
}

/// The last exchange of one tree, for `shoal admin aae status`.
#[derive(Clone, Debug, Serialize)]
pub struct TreeStatus {
    pub partition: u32,
    pub n: u8,
    pub peer: String,
    pub at_ms: u64,
    pub result: String,
    pub report: ExchangeReport,
}

#[derive(Clone, Debug)]
pub struct AaeConfig {
    /// How old a tombstone must be before GC may remove it.
    pub tombstone_grace: Duration,
}

/// One replica's anti-entropy: its trees, the server side of exchanges, and the client side.
pub struct AntiEntropy<S: Store> {
    replica: Arc<Replica<S>>,
    trees: Arc<Trees>,
    config: AaeConfig,
    status: Mutex<BTreeMap<(u32, u8), TreeStatus>>,
    /// When (this node's Unix ms, taken before asking) each peer last matched each tree's root.
    synced: Mutex<HashMap<(u32, u8), HashMap<String, u64>>>,
}

impl<S: Store> AntiEntropy<S> {
    /// Build the trees of every partition below `partitions` from storage and attach them to
    /// the replica. Blocks for one scan of the store; call before the replica takes writes.
    pub fn open(replica: Arc<Replica<S>>, partitions: u32, config: AaeConfig) -> Result<Arc<Self>, StoreError> {
        let trees = Arc::new(Trees::default());
        for p in 0..partitions {
            let mut shard = trees.shard(p).lock();
            replica.store().scan_partition(p, b"", &mut |key, obj| {
                shard.entry((p, obj.n)).or_default().insert(key, &obj);
                true
            })?;
        }
        replica.set_observer(trees.clone());
        Ok(Arc::new(Self {
            replica,
            trees,
            config,
            status: Mutex::new(BTreeMap::new()),
            synced: Mutex::new(HashMap::new()),
        }))
    }

    pub fn trees(&self) -> &Arc<Trees> {
        &self.trees
    }

    pub fn replica(&self) -> &Arc<Replica<S>> {
        &self.replica
    }

    pub fn status(&self) -> Vec<TreeStatus> {
        self.status.lock().values().cloned().collect()
    }

    // ---- the server side ----

    pub fn answer_tree(&self, partition: u32, n: u8, query: &TreeQuery) -> Vec<u64> {
        self.trees.with(partition, n, |t| t.answer(query))
    }

    fn local_digests(&self, partition: u32, n: u8, segments: &[u16]) -> Result<Vec<(Bytes, u64)>, StoreError> {
        let mut out = Vec::new();
        for &s in segments.iter().take(shoal_storage::SEGMENTS as usize) {
            self.replica.store().scan_segment(partition, s, &mut |key, obj| {
                if obj.n == n {
                    out.push((Bytes::copy_from_slice(key), version_hash(key, &obj)));
                }
                true
            })?;
        }
        Ok(out)
    }

    pub async fn answer_digests(
        self: &Arc<Self>,
        partition: u32,
        n: u8,
        segments: Vec<u16>,
    ) -> Result<Vec<(Bytes, u64)>, String> {
        let this = self.clone();
        blocking(move || this.local_digests(partition, n, &segments))
            .await?
            .map_err(|e| e.to_string())
    }

    fn local_objects(&self, partition: u32, keys: &[Bytes]) -> Result<Vec<(Bytes, Option<Object>)>, StoreError> {
        let mut out = Vec::new();
        let mut bytes = 0;
        for key in keys.iter().take(KEYS_PER_REQUEST) {
            if bytes >= BYTES_PER_REQUEST {
                break;
            }
            let obj = self.replica.read(partition, key)?;
            bytes += key.len() + obj.as_ref().map_or(0, |o| o.payload_len());
            out.push((key.clone(), obj));
        }
        Ok(out)
    }

    pub async fn answer_fetch(
        self: &Arc<Self>,
        partition: u32,
        keys: Vec<Bytes>,
    ) -> Result<Vec<(Bytes, Option<Object>)>, String> {
        let this = self.clone();
        blocking(move || this.local_objects(partition, &keys))
            .await?
            .map_err(|e| e.to_string())
    }

    /// Delete each key held as exactly the given tombstone version; answer the keys now absent.
    pub async fn answer_reap(self: &Arc<Self>, partition: u32, keys: Vec<(Bytes, u64)>) -> Result<Vec<Bytes>, String> {
        let this = self.clone();
        blocking(move || {
            let mut gone = Vec::new();
            let mut reaped = 0u64;
            for (key, hash) in keys {
                if this
                    .replica
                    .reap_if(partition, &key, |o| version_hash(&key, o) == hash)?
                {
                    reaped += 1;
                    gone.push(key);
                } else if this.replica.read(partition, &key)?.is_none() {
                    gone.push(key);
                }
            }
            metrics::counter!("shoal_tombstones_reaped_total").increment(reaped);
            Ok::<_, StoreError>(gone)
        })
        .await?
        .map_err(|e| e.to_string())
    }

    /// Merge copies from a peer (validated) into this replica; returns how many changed it.
    pub async fn merge(self: &Arc<Self>, partition: u32, objects: Vec<(Bytes, Object)>) -> Result<u64, String> {
        let replica = self.replica.clone();
        blocking(move || {
            let mut changed = 0;
            for (key, obj) in objects {
                changed += replica
                    .apply_from_peer(partition, &key, &obj)
                    .map_err(|e| e.to_string())? as u64;
            }
            Ok(changed)
        })
        .await?
    }

    // ---- the client side ----

    /// One exchange of tree (partition, n) with `peer`. `pace` is awaited with the bytes of
    /// every round trip, so the caller can throttle exchanges.
    pub async fn exchange<R: Remote, P: Future<Output = ()>>(
        self: &Arc<Self>,
        partition: u32,
        n: u8,
        peer: &str,
        remote: &R,
        pace: impl Fn(u64) -> P,
    ) -> Result<ExchangeReport, String> {
        let result = self.exchange_inner(partition, n, peer, remote, &pace).await;
        let (label, report) = match &result {
            Ok(r) if r.in_sync => ("in_sync", r.clone()),
            Ok(r) => ("repaired", r.clone()),
            Err(_) => ("failed", ExchangeReport::default()),
        };
        metrics::counter!("shoal_aae_exchanges_total", "result" => label).increment(1);
        metrics::counter!("shoal_aae_bytes_total").increment(report.bytes);
        metrics::counter!("shoal_aae_divergent_keys_total").increment(report.divergent);
        self.status.lock().insert(
            (partition, n),
            TreeStatus {
                partition,
                n,
                peer: peer.to_string(),
                at_ms: self.replica.now_ms(),
                result: match &result {
                    Err(e) => format!("failed: {e}"),
                    Ok(_) => label.to_string(),
                },
                report,
            },
        );
        result
    }

    async fn exchange_inner<R: Remote, P: Future<Output = ()>>(
        self: &Arc<Self>,
        partition: u32,
        n: u8,
        peer: &str,
        remote: &R,
        pace: &impl Fn(u64) -> P,
    ) -> Result<ExchangeReport, String> {
        let mut report = ExchangeReport::default();
        // Read our root before asking: if they match, the peer held, when it answered, every
        // version we held at `asked` (tombstone GC relies on exactly this).
        let asked = self.replica.now_ms();
        let ours = self.answer_tree(partition, n, &TreeQuery::Root);
        let theirs = remote.tree(partition, n, TreeQuery::Root).await?;
        report.bytes += 16 + 8;
        if ours == theirs {
            report.in_sync = true;
            self.synced
                .lock()
                .entry((partition, n))
                .or_default()
                .insert(peer.to_string(), asked);
            return Ok(report);
        }
        let ours = self.answer_tree(partition, n, &TreeQuery::Branches);
        let theirs = remote.tree(partition, n, TreeQuery::Branches).await?;
        report.bytes += 16 + 8 * theirs.len() as u64;
        let branches: Vec<u8> = differing(&ours, &theirs).into_iter().map(|b| b as u8).collect();
        let query = TreeQuery::Leaves(branches.clone());
        let ours = self.answer_tree(partition, n, &query);
        let theirs = remote.tree(partition, n, query).await?;
        report.bytes += 16 + branches.len() as u64 + 8 * theirs.len() as u64;
        pace(report.bytes).await;
        let segments: Vec<u16> = differing(&ours, &theirs)
            .into_iter()
            .filter_map(|i| {
                let b = *branches.get(i / LEAVES_PER_BRANCH)? as usize;
                Some((b * LEAVES_PER_BRANCH + i % LEAVES_PER_BRANCH) as u16)
            })
            .collect();
        report.segments = segments.len() as u64;

        for chunk in segments.chunks(SEGMENTS_PER_REQUEST) {
            let theirs = remote.digests(partition, n, chunk.to_vec()).await?;
            let ours = self.answer_digests(partition, n, chunk.to_vec()).await?;
            let digest_bytes: u64 =
                theirs.iter().map(|(k, _)| k.len() as u64 + 10).sum::<u64>() + 2 * chunk.len() as u64;
            report.bytes += digest_bytes;
            pace(digest_bytes).await;
            let theirs: BTreeMap<Bytes, u64> = theirs.into_iter().collect();
            let ours: BTreeMap<Bytes, u64> = ours.into_iter().collect();
            let keys: BTreeSet<&Bytes> = theirs.keys().chain(ours.keys()).collect();
            let mut want = Vec::new();
            let mut give = Vec::new();
            for k in keys {
                match (ours.get(k), theirs.get(k)) {
                    (Some(a), Some(b)) if a == b => continue,
                    (mine, other) => {
                        report.divergent += 1;
                        if other.is_some() {
                            want.push(k.clone());
                        }
                        if mine.is_some() {
                            give.push(k.clone());
                        }
                    }
                }
            }
            // Pull what they have that differs, merge it here.
            let mut rest = &want[..];
            while !rest.is_empty() {
                let got = remote.fetch(partition, rest.to_vec()).await?;
                if got.is_empty() {
                    return Err("the peer answered a fetch with no objects".into());
                }
                rest = &rest[got.len().min(rest.len())..];
                let objects: Vec<(Bytes, Object)> = got.into_iter().filter_map(|(k, o)| Some((k, o?))).collect();
                let bytes: u64 = objects.iter().map(|(k, o)| (k.len() + o.encode().len()) as u64).sum();
                report.bytes += bytes;
                let pulled = self.merge(partition, objects).await?;
                // Counted as each batch lands, so an exchange that fails later still counts
                // the keys it did repair.
                metrics::counter!("shoal_aae_repaired_keys_total", "direction" => "pulled").increment(pulled);
                report.pulled += pulled;
                pace(bytes).await;
            }
            // Push what we have that differs: the merge there joins both versions.
            let mut rest = &give[..];
            while !rest.is_empty() {
                let objects = self.answer_fetch(partition, rest.to_vec()).await?;
                rest = &rest[objects.len().max(1).min(rest.len())..];
                let objects: Vec<(Bytes, Object)> = objects.into_iter().filter_map(|(k, o)| Some((k, o?))).collect();
                if objects.is_empty() {
                    continue;
                }
                let bytes: u64 = objects.iter().map(|(k, o)| (k.len() + o.encode().len()) as u64).sum();
                let pushed = objects.len() as u64;
                remote.push(objects).await?;
                metrics::counter!("shoal_aae_repaired_keys_total", "direction" => "pushed").increment(pushed);
                report.pushed += pushed;
                report.bytes += bytes;
                pace(bytes).await;
            }
        }
        Ok(report)
    }

    /// Tombstone GC for tree (partition, n), whose other replicas are `peers`: remove the
    /// tombstones older than the grace period that every peer is known to hold. Returns how
    /// many this replica removed.
    pub async fn collect_garbage<R: Remote>(
        self: &Arc<Self>,
        partition: u32,
        n: u8,
        peers: &[(String, R)],
    ) -> Result<u64, String> {
        if self.trees.with(partition, n, |t| t.tombstones()) == 0 {
            return Ok(0);
        }
        // Every tombstone written before the oldest of the peers' last root matches is held
        // by every peer (or was replaced there by something newer, which the version check
        // below catches).
        let confirmed = {
            let synced = self.synced.lock();
            let Some(tree) = synced.get(&(partition, n)) else {
                return Ok(0);
            };
            match peers
                .iter()
                .map(|(p, _)| tree.get(p).copied())
                .collect::<Option<Vec<u64>>>()
            {
                Some(times) => times.into_iter().min().unwrap_or(0),
                None => return Ok(0),
            }
        };
        let grace = self.config.tombstone_grace.as_millis() as u64;
        let cutoff = self
            .replica
            .now_ms()
            .saturating_sub(grace)
            .min(confirmed.saturating_sub(1));
        let this = self.clone();
        let candidates = blocking(move || {
            let mut out = Vec::new();
            this.replica.store().scan_partition(partition, b"", &mut |key, obj| {
                if obj.n == n && obj.is_deleted() && obj.deleted_at.is_some_and(|d| d <= cutoff) {
                    out.push((Bytes::copy_from_slice(key), version_hash(key, &obj)));
                }
                out.len() < REAP_BATCH
            })?;
            Ok::<_, StoreError>(out)
        })
        .await?
        .map_err(|e| e.to_string())?;
        if candidates.is_empty() {
            return Ok(0);
        }
        // Remove remotely first: a tombstone left here but gone there only costs a re-send by
        // the next exchange, while the reverse could not resurrect anything either, but would
        // keep the tombstone alive longer.
        let mut everywhere: BTreeSet<Bytes> = candidates.iter().map(|(k, _)| k.clone()).collect();
        for (_, remote) in peers {
            let gone: BTreeSet<Bytes> = remote
                .reap(partition, n, candidates.clone())
                .await?
                .into_iter()
                .collect();
            everywhere.retain(|k| gone.contains(k));
        }
        let hashes: HashMap<Bytes, u64> = candidates.into_iter().collect();
        let this = self.clone();
        let reaped = blocking(move || {
            let mut reaped = 0u64;
            for key in everywhere {
                let hash = hashes[&key];
                if this
                    .replica
                    .reap_if(partition, &key, |o| version_hash(&key, o) == hash)?
                {
                    reaped += 1;
                }
            }
            Ok::<_, StoreError>(reaped)
        })
        .await?
        .map_err(|e| e.to_string())?;
        metrics::counter!("shoal_tombstones_reaped_total").increment(reaped);
        Ok(reaped)
    }
}

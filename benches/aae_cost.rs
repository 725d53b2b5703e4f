//! Anti-entropy cost against the number of differences: two replicas of a RocksDB store with
//! KEYS keys each (default 1,000,000), then for each divergence level D (default 0, 10,
//! 1,000 and 100,000) D keys get a new version on one side only, and one full exchange round
//! (every partition's tree, one after the other, unthrottled) brings them back together.
//! Reports, per level, the bytes the exchange put on the wire (every request and answer
//! encoded as the peer protocol encodes them, msgpack, before QUIC framing) and its wall time.
//!
//!   cargo run --example aae_cost -- [KEYS] [D,D,...]
//!
//! Both replicas live in this process, so wall time is the exchange's own work (tree
//! comparison, segment scans, merges) without network latency; bytes are what would cross it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use shoal_antientropy::{AaeConfig, AntiEntropy, Remote, TreeQuery};
use shoal_ring::{key_hash, partition_for_hash};
use shoal_storage::{Object, Replica, ReplicaLimits, RocksOptions, RocksStore, Value};

const PARTITIONS: u32 = 1024;
const N: u8 = 3;

type Aae = Arc<AntiEntropy<RocksStore>>;

/// The other replica, with every request and answer counted as encoded for the wire.
struct Wire {
    peer: Aae,
    bytes: AtomicU64,
}

impl Wire {
    fn count<T: Serialize>(&self, value: &T) {
        let len = rmp_serde::to_vec(value).map_or(0, |v| v.len());
        self.bytes.fetch_add(len as u64, Ordering::Relaxed);
    }
}

impl Remote for Wire {
    async fn tree(&self, partition: u32, n: u8, query: TreeQuery) -> Result<Vec<u64>, String> {
        self.count(&(partition, n, &query));
        let answer = self.peer.answer_tree(partition, n, &query);
        self.count(&answer);
        Ok(answer)
    }
    async fn digests(&self, partition: u32, n: u8, segments: Vec<u16>) -> Result<Vec<(Bytes, u64)>, String> {
        self.count(&(partition, n, &segments));
        let answer = self.peer.answer_digests(partition, n, segments).await?;
        self.count(&answer);
        Ok(answer)
    }
    async fn fetch(&self, partition: u32, keys: Vec<Bytes>) -> Result<Vec<(Bytes, Option<Object>)>, String> {
        self.count(&(partition, &keys));
        let answer = self.peer.answer_fetch(partition, keys).await?;
        self.count(&answer);
        Ok(answer)
    }
    async fn push(&self, objects: Vec<(Bytes, Object)>) -> Result<(), String> {
        self.count(&objects);
        let by_partition = objects
            .into_iter()
            .map(|(k, o)| (partition_for_hash(key_hash(&k), PARTITIONS), k, o));
        for (p, k, o) in by_partition {
            self.peer.merge(p, vec![(k, o)]).await?;
        }
        Ok(())
    }
    async fn reap(&self, partition: u32, _n: u8, keys: Vec<(Bytes, u64)>) -> Result<Vec<Bytes>, String> {
        self.count(&(partition, &keys));
        self.peer.answer_reap(partition, keys).await
    }
}

fn open(dir: &std::path::Path) -> Aae {
    let store = Arc::new(RocksStore::open(dir, &RocksOptions::default()).expect("open RocksDB"));
    let replica = Arc::new(Replica::new(store, ReplicaLimits::default()).expect("open replica"));
    AntiEntropy::open(
        replica,
        PARTITIONS,
        AaeConfig {
            tombstone_grace: Duration::from_secs(86_400),
        },
    )
    .expect("build trees")
}

fn key(k: u64) -> String {
    format!("key{k:010}")
}

#[derive(Serialize)]
struct Row {
    keys: u64,
    divergent_injected: u64,
    divergent_found: u64,
    repaired: u64,
    segments_compared: u64,
    bytes: u64,
    wall_ms: f64,
    trees_in_sync_after: bool,
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let keys: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let levels: Vec<u64> = args
        .get(2)
        .map(|a| a.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![0, 10, 1_000, 100_000]);
    let tmp = tempfile::tempdir().expect("temp dir");
    let a = open(&tmp.path().join("a"));
    let b = open(&tmp.path().join("b"));

    let loading = Instant::now();
    let value = Value::Data(Bytes::from(vec![b'v'; 100]));
    {
        let (ra, rb) = (a.replica().clone(), b.replica().clone());
        let value = value.clone();
        tokio::task::spawn_blocking(move || {
            for k in 0..keys {
                let key = key(k);
                let p = partition_for_hash(key_hash(key.as_bytes()), PARTITIONS);
                let (obj, _) = ra
                    .coordinate(p, key.as_bytes(), "a", &Default::default(), value.clone(), N)
                    .expect("write");
                rb.apply(p, key.as_bytes(), &obj).expect("replicate");
            }
        })
        .await
        .expect("load");
    }
    eprintln!("loaded {keys} keys into both replicas in {:?}", loading.elapsed());

    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let wire = Wire {
        peer: b.clone(),
        bytes: AtomicU64::new(0),
    };
    let mut rows = Vec::new();
    for &d in &levels {
        // D distinct keys get a new version on B only.
        let mut chosen = std::collections::BTreeSet::new();
        while (chosen.len() as u64) < d.min(keys) {
            chosen.insert(rng.gen_range(0..keys));
        }
        for &k in &chosen {
            let key = key(k);
            let p = partition_for_hash(key_hash(key.as_bytes()), PARTITIONS);
            let ctx = b
                .replica()
                .read(p, key.as_bytes())
                .expect("read")
                .map(|o| o.siblings.context())
                .unwrap_or_default();
            b.replica()
                .coordinate(p, key.as_bytes(), "b", &ctx, value.clone(), N)
                .expect("diverge");
        }
        wire.bytes.store(0, Ordering::Relaxed);
        let started = Instant::now();
        let (mut found, mut repaired, mut segments) = (0, 0, 0);
        for p in 0..PARTITIONS {
            let r = a.exchange(p, N, "b", &wire, |_| async {}).await.expect("exchange");
            found += r.divergent;
            repaired += r.pulled + r.pushed;
            segments += r.segments;
        }
        let wall = started.elapsed();
        let in_sync =
            (0..PARTITIONS).all(|p| a.answer_tree(p, N, &TreeQuery::Root) == b.answer_tree(p, N, &TreeQuery::Root));
        let row = Row {
            keys,
            divergent_injected: chosen.len() as u64,
            divergent_found: found,
            repaired,
            segments_compared: segments,
            bytes: wire.bytes.load(Ordering::Relaxed),
            wall_ms: wall.as_secs_f64() * 1e3,
            trees_in_sync_after: in_sync,
        };
        println!("{}", serde_json::to_string(&row).expect("row"));
        rows.push(row);
    }
    println!();
    println!("| keys per node | divergent keys | found | segments compared | bytes exchanged | bytes per divergent key | wall time per round | in sync after |");
    println!("|---:|---:|---:|---:|---:|---:|---:|:---:|");
    for r in &rows {
        let per = if r.divergent_injected == 0 {
            "-".to_string()
        } else {
            format!("{:.0}", r.bytes as f64 / r.divergent_injected as f64)
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.0} ms | {} |",
            r.keys,
            r.divergent_injected,
            r.divergent_found,
            r.segments_compared,
            r.bytes,
            per,
            r.wall_ms,
            if r.trees_in_sync_after { "yes" } else { "no" }
        );
    }
}

//! Exchanges between two in-memory replicas: what diverged is found and repaired both ways,
//! the cost follows the number of differences, and tombstone GC removes only what both hold.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use shoal_antientropy::{AaeConfig, AntiEntropy, Remote, TreeQuery};
use shoal_storage::{MemoryStore, Object, Replica, ReplicaLimits, Value};

type Aae = Arc<AntiEntropy<MemoryStore>>;

fn replica(grace: Duration) -> Aae {
    let r = Arc::new(Replica::new(Arc::new(MemoryStore::new()), ReplicaLimits::default()).unwrap());
    AntiEntropy::open(r, 8, AaeConfig { tombstone_grace: grace }).unwrap()
}

/// The other replica, reached directly.
struct Direct(Aae, Arc<Replica<MemoryStore>>);

impl Remote for Direct {
    async fn tree(&self, partition: u32, n: u8, query: TreeQuery) -> Result<Vec<u64>, String> {
        Ok(self.0.answer_tree(partition, n, &query))
    }
    async fn digests(&self, partition: u32, n: u8, segments: Vec<u16>) -> Result<Vec<(Bytes, u64)>, String> {
        self.0.answer_digests(partition, n, segments).await
    }
    async fn fetch(&self, partition: u32, keys: Vec<Bytes>) -> Result<Vec<(Bytes, Option<Object>)>, String> {
        self.0.answer_fetch(partition, keys).await
    }
    async fn push(&self, objects: Vec<(Bytes, Object)>) -> Result<(), String> {
        for (k, o) in objects {
            self.1.apply(0, &k, &o).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
    async fn reap(&self, partition: u32, _n: u8, keys: Vec<(Bytes, u64)>) -> Result<Vec<Bytes>, String> {
        self.0.answer_reap(partition, keys).await
    }
}

struct Pair {
    a: Aae,
    ra: Arc<Replica<MemoryStore>>,
    b: Aae,
    rb: Arc<Replica<MemoryStore>>,
}

/// Two replicas of partition 0 built through `AntiEntropy::open`, so their trees track writes.
fn pair(grace: Duration) -> Pair {
    let a = replica(grace);
    let b = replica(grace);
    let (ra, rb) = (a.replica().clone(), b.replica().clone());
    Pair { a, ra, b, rb }
}

fn write(r: &Replica<MemoryStore>, actor: &str, key: &str, v: Option<&str>) -> Object {
    let ctx = r
        .read(0, key.as_bytes())
        .unwrap()
        .map(|o| o.siblings.context())
        .unwrap_or_default();
    let value = v.map_or(Value::Tombstone, |v| Value::Data(Bytes::from(v.to_string())));
    r.coordinate(0, key.as_bytes(), actor, &ctx, value, 3).unwrap().0
}

fn root(a: &Aae) -> u64 {
    a.answer_tree(0, 3, &TreeQuery::Root)[0]
}

async fn exchange(p: &Pair) -> shoal_antientropy::ExchangeReport {
    let remote = Direct(p.b.clone(), p.rb.clone());
    p.a.exchange(0, 3, "b", &remote, |_| async {}).await.unwrap()
}

#[tokio::test]
async fn an_exchange_repairs_both_sides_and_then_they_match() {
    let p = pair(Duration::from_secs(3600));
    for i in 0..2000 {
        let obj = write(&p.ra, "a", &format!("k{i}"), Some("v"));
        p.rb.apply(0, format!("k{i}").as_bytes(), &obj).unwrap();
    }
    assert_eq!(root(&p.a), root(&p.b));
    let report = exchange(&p).await;
    assert!(report.in_sync);
    assert_eq!(report.bytes, 24, "matching roots cost one hash each way");

    // Diverge: a key only A has, one only B has, and one both changed concurrently.
    write(&p.ra, "a", "only-a", Some("1"));
    write(&p.rb, "b", "only-b", Some("2"));
    write(&p.ra, "a", "k7", Some("a-side"));
    write(&p.rb, "b", "k7", Some("b-side"));
    assert_ne!(root(&p.a), root(&p.b));
    let report = exchange(&p).await;
    assert!(!report.in_sync);
    assert_eq!(report.divergent, 3);
    assert_eq!((report.pulled, report.pushed), (2, 2));
    assert!(report.segments <= 3);
    assert_eq!(root(&p.a), root(&p.b), "one exchange converges them");
    let k7 = p.ra.read(0, b"k7").unwrap().unwrap();
    assert_eq!(
        k7.siblings.len(),
        2,
        "concurrent versions are kept as siblings, not dropped"
    );
    assert!(exchange(&p).await.in_sync);
}

#[tokio::test]
async fn the_cost_follows_the_differences_not_the_keys() {
    let mut bytes = Vec::new();
    for keys in [1_000usize, 20_000] {
        let p = pair(Duration::from_secs(3600));
        for i in 0..keys {
            let obj = write(&p.ra, "a", &format!("k{i}"), Some("v"));
            p.rb.apply(0, format!("k{i}").as_bytes(), &obj).unwrap();
        }
        for i in 0..10 {
            write(&p.ra, "a", &format!("diff{i}"), Some("v"));
        }
        let report = exchange(&p).await;
        assert_eq!(report.divergent, 10);
        bytes.push(report.bytes);
    }
    // 20× the keys: the tree and digests grow only with keys per differing segment.
    assert!(
        bytes[1] < bytes[0] * 4,
        "exchange bytes {bytes:?} grew with the key count"
    );
}

#[tokio::test]
async fn gc_removes_tombstones_only_once_both_replicas_hold_them() {
    let p = pair(Duration::ZERO);
    let live = write(&p.ra, "a", "k", Some("v"));
    p.rb.apply(0, b"k", &live).unwrap();
    let dead = write(&p.ra, "a", "k", None);
    let peers = [("b".to_string(), Direct(p.b.clone(), p.rb.clone()))];
    // B still holds the live value and the roots differ: no sync with B, so nothing is reaped.
    assert_eq!(p.a.collect_garbage(0, 3, &peers).await.unwrap(), 0);
    exchange(&p).await; // pushes the tombstone to B
    assert!(p.rb.read(0, b"k").unwrap().unwrap().is_deleted());
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(
        exchange(&p).await.in_sync,
        "now they match, after the tombstone was written"
    );
    assert_eq!(p.a.collect_garbage(0, 3, &peers).await.unwrap(), 1);
    assert!(p.ra.read(0, b"k").unwrap().is_none());
    assert!(p.rb.read(0, b"k").unwrap().is_none(), "the peer removed its copy too");
    assert!(exchange(&p).await.in_sync);
    let _ = dead;
}

#[tokio::test]
async fn gc_keeps_a_tombstone_a_peer_has_overwritten() {
    let p = pair(Duration::ZERO);
    let dead = write(&p.ra, "a", "k", None);
    p.rb.apply(0, b"k", &dead).unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(exchange(&p).await.in_sync);
    // B gets a new write after the sync: its copy is no longer that tombstone.
    write(&p.rb, "b", "k", Some("back"));
    let peers = [("b".to_string(), Direct(p.b.clone(), p.rb.clone()))];
    assert_eq!(p.a.collect_garbage(0, 3, &peers).await.unwrap(), 0);
    assert!(
        p.ra.read(0, b"k").unwrap().is_some(),
        "A keeps its tombstone when B refused"
    );
    exchange(&p).await;
    let k = p.ra.read(0, b"k").unwrap().unwrap();
    assert_eq!(k.values(), vec![Bytes::from("back")], "the newer write wins everywhere");
}

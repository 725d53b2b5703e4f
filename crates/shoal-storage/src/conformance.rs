//! One conformance suite, run against every [`Store`] implementation (openraft's
//! `testing/log/suite.rs` pattern), so the in-memory store used by tests and the simulator
//! cannot drift from RocksDB's behaviour.

use std::sync::Arc;

use bytes::Bytes;
use shoal_version::{SiblingLimits, VersionVector};

use crate::{segment_of, Object, Replica, ReplicaError, ReplicaLimits, ReplicaObserver, Store, Value};

fn object(actor: &str, v: &'static [u8]) -> Object {
    let mut o = Object {
        n: 3,
        ..Default::default()
    };
    o.siblings
        .write(
            actor,
            &VersionVector::new(),
            Value::Data(Bytes::from_static(v)),
            &SiblingLimits::default(),
        )
        .expect("one sibling is under every limit");
    o
}

pub fn run_all<S: Store>(make: impl Fn() -> S) {
    get_missing_is_none(make());
    put_then_get(make());
    partitions_are_separate(make());
    scan_is_ordered_and_bounded(make());
    delete_removes(make());
    meta_round_trips(make());
    replica_exports_and_hands_off_strays_by_n(make());
    replica_merges_and_mints(make());
    replica_refuses_oversized_objects(make());
    segments_scan_alone(make());
    hints_are_kept_by_owner(make());
    replica_tells_its_observer(make());
    tombstones_are_stamped_and_reaped(make());
    prepared_writes_apply_later(make());
}

/// `prepare` mints a version without storing it (the injected-latency path of `shoal bench`):
/// the replica is unchanged, the dot is spent, and the object merges in later like a peer's.
fn prepared_writes_apply_later<S: Store>(s: S) {
    let r = Replica::new(Arc::new(s), ReplicaLimits::default()).unwrap();
    let (first, _) = r
        .coordinate(
            5,
            b"k",
            "n1",
            &VersionVector::new(),
            Value::Data(Bytes::from_static(b"a")),
            3,
        )
        .unwrap();
    let ctx = first.siblings.context();
    let (prepared, outcome) = r
        .prepare(5, b"k", "n1", &ctx, Value::Data(Bytes::from_static(b"b")), 3)
        .unwrap();
    assert_eq!(r.read(5, b"k").unwrap(), Some(first.clone()), "prepare stores nothing");
    assert_eq!(prepared.values(), vec![Bytes::from_static(b"b")]);
    // A write minted meanwhile gets a later dot: the prepared one is never reused.
    let (_, later) = r
        .coordinate(
            5,
            b"other",
            "n1",
            &VersionVector::new(),
            Value::Data(Bytes::from_static(b"c")),
            3,
        )
        .unwrap();
    assert!(later.dot.counter > outcome.dot.counter);
    let merged = r.apply(5, b"k", &prepared).unwrap();
    assert_eq!(merged.values(), vec![Bytes::from_static(b"b")], "b supersedes a");
    assert_eq!(r.read(5, b"k").unwrap(), Some(merged));
}

/// Keys in the order every store scans a partition: by (segment, key).
fn store_order(keys: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = keys.iter().map(|k| k.to_vec()).collect();
    v.sort_by_key(|k| (segment_of(k), k.clone()));
    v
}

fn segments_scan_alone<S: Store>(s: S) {
    let keys: Vec<Vec<u8>> = (0..200).map(|i| format!("key{i}").into_bytes()).collect();
    for k in &keys {
        s.put(2, k, &object("n1", b"v")).unwrap();
        s.put(3, k, &object("n1", b"v")).unwrap();
    }
    let target = segment_of(&keys[0]);
    let mut want: Vec<Vec<u8>> = keys.iter().filter(|k| segment_of(k) == target).cloned().collect();
    want.sort();
    let mut seen = Vec::new();
    s.scan_segment(2, target, &mut |k, _| {
        seen.push(k.to_vec());
        true
    })
    .unwrap();
    assert_eq!(
        seen, want,
        "a segment scan yields exactly that segment's keys of that partition"
    );
    let mut last = Vec::new();
    s.scan_segment(2, crate::SEGMENTS - 1, &mut |k, _| {
        last.push(k.to_vec());
        true
    })
    .unwrap();
    assert!(
        last.iter().all(|k| segment_of(k) == crate::SEGMENTS - 1),
        "the last segment stops at its partition"
    );
}

fn hints_are_kept_by_owner<S: Store>(s: S) {
    s.hint_put("n2", 5, b"b", b"r1").unwrap();
    s.hint_put("n2", 5, b"a", b"r2").unwrap();
    s.hint_put("n10", 1, b"a", b"r3").unwrap();
    s.hint_put("n2", 4, b"z", b"r4").unwrap();
    assert_eq!(s.hint_get("n2", 5, b"a").unwrap(), Some(b"r2".to_vec()));
    assert_eq!(s.hint_get("n3", 5, b"a").unwrap(), None);
    let collect = |owner: Option<&str>| {
        let mut out = Vec::new();
        s.hint_scan(owner, None, &mut |o, p, k, v| {
            out.push((o.to_string(), p, k.to_vec(), v.to_vec()));
            true
        })
        .unwrap();
        out
    };
    let n2 = collect(Some("n2"));
    assert_eq!(
        n2.iter().map(|(_, p, k, _)| (*p, k.clone())).collect::<Vec<_>>(),
        vec![(4, b"z".to_vec()), (5, b"a".to_vec()), (5, b"b".to_vec())],
        "one owner's hints, by (partition, key); n10 is not mistaken for a prefix match"
    );
    assert_eq!(collect(None).len(), 4);
    let mut from = Vec::new();
    s.hint_scan(Some("n2"), Some((5, b"a")), &mut |_, p, k, _| {
        from.push((p, k.to_vec()));
        true
    })
    .unwrap();
    assert_eq!(
        from,
        vec![(5, b"a".to_vec()), (5, b"b".to_vec())],
        "a scan resumes at `from`, inclusive"
    );
    s.hint_delete("n2", 5, b"a").unwrap();
    assert_eq!(collect(Some("n2")).len(), 2);
    let mut objects = 0;
    s.scan_partition(5, b"", &mut |_, _| {
        objects += 1;
        true
    })
    .unwrap();
    assert_eq!(objects, 0, "hints are not objects");
}

#[derive(Default)]
struct Log(std::sync::Mutex<Vec<(Vec<u8>, bool, bool)>>);

impl ReplicaObserver for Log {
    fn changed(&self, _partition: u32, key: &[u8], old: Option<&Object>, new: Option<&Object>) {
        self.0
            .lock()
            .unwrap()
            .push((key.to_vec(), old.is_some(), new.is_some()));
    }
}

fn replica_tells_its_observer<S: Store>(s: S) {
    let r = Replica::new(Arc::new(s), ReplicaLimits::default()).unwrap();
    let log = Arc::new(Log::default());
    assert!(r.set_observer(log.clone()));
    let data = Value::Data(Bytes::from_static(b"a"));
    r.coordinate(1, b"k", "n1", &VersionVector::new(), data, 3).unwrap();
    let copy = object("n2", b"b");
    r.apply(1, b"k", &copy).unwrap();
    r.apply(1, b"k", &copy).unwrap();
    let strays = r.strays(1, |_| false).unwrap();
    r.drop_handed_off(1, &strays, |_| false).unwrap();
    assert_eq!(
        *log.0.lock().unwrap(),
        vec![
            (b"k".to_vec(), false, true),
            (b"k".to_vec(), true, true),
            (b"k".to_vec(), true, false)
        ],
        "a write, a merge that changed something, and a drop; the idempotent merge is silent"
    );
}

fn tombstones_are_stamped_and_reaped<S: Store>(s: S) {
    let store = Arc::new(s);
    let r = Replica::new(store.clone(), ReplicaLimits::default()).unwrap();
    let data = Value::Data(Bytes::from_static(b"a"));
    let (live, _) = r.coordinate(1, b"k", "n1", &VersionVector::new(), data, 3).unwrap();
    assert_eq!(live.deleted_at, None);
    assert!(!r.reap_if(1, b"k", |_| true).unwrap(), "a live key is never reaped");
    let (dead, _) = r
        .coordinate(1, b"k", "n1", &live.siblings.context(), Value::Tombstone, 3)
        .unwrap();
    assert!(dead.deleted_at.is_some(), "a delete stamps the tombstone");
    assert!(!r.reap_if(1, b"k", |_| false).unwrap(), "the caller's check can refuse");
    assert!(r.reap_if(1, b"k", |_| true).unwrap());
    assert!(r.read(1, b"k").unwrap().is_none());
    // The key is gone, but a new blind write still gets a dot above the tombstone's: another
    // replica still holding {n1:2} must not swallow it.
    let again = Value::Data(Bytes::from_static(b"b"));
    let (_, outcome) = r.coordinate(1, b"k", "n1", &VersionVector::new(), again, 3).unwrap();
    assert!(outcome.dot.counter > dead.siblings.siblings()[0].dot.counter);
    // The clock survives a reopen of the replica.
    let minted = outcome.dot.counter;
    drop(r);
    let r = Replica::new(store, ReplicaLimits::default()).unwrap();
    let (_, outcome) = r
        .coordinate(2, b"other", "n1", &VersionVector::new(), Value::Tombstone, 3)
        .unwrap();
    assert!(
        outcome.dot.counter > minted,
        "a reopened replica mints above what it minted before"
    );
}

fn get_missing_is_none<S: Store>(s: S) {
    assert!(s.get(0, b"absent").unwrap().is_none());
}

fn put_then_get<S: Store>(s: S) {
    let o = object("n1", b"hello");
    s.put(7, b"k", &o).unwrap();
    assert_eq!(s.get(7, b"k").unwrap(), Some(o.clone()));
    let o2 = object("n2", b"world");
    s.put(7, b"k", &o2).unwrap();
    assert_eq!(s.get(7, b"k").unwrap(), Some(o2), "put replaces");
}

fn partitions_are_separate<S: Store>(s: S) {
    s.put(1, b"k", &object("n1", b"a")).unwrap();
    assert!(s.get(2, b"k").unwrap().is_none());
    // A partition id whose bytes prefix another's key must not leak into its scan.
    s.put(0, &[0, 0, 1, b'x'], &object("n1", b"b")).unwrap();
    let mut seen = Vec::new();
    s.scan_partition(1, b"", &mut |k, _| {
        seen.push(k.to_vec());
        true
    })
    .unwrap();
    assert_eq!(seen, vec![b"k".to_vec()]);
}

fn scan_is_ordered_and_bounded<S: Store>(s: S) {
    for k in [b"c".as_slice(), b"a", b"b"] {
        s.put(5, k, &object("n1", b"v")).unwrap();
    }
    s.put(6, b"z", &object("n1", b"v")).unwrap();
    s.put(4, b"z", &object("n1", b"v")).unwrap();
    let order = store_order(&[b"a", b"b", b"c"]);
    let mut seen = Vec::new();
    s.scan_partition(5, b"", &mut |k, _| {
        seen.push(k.to_vec());
        true
    })
    .unwrap();
    assert_eq!(seen, order);
    let mut first = Vec::new();
    s.scan_partition(5, b"", &mut |k, _| {
        first.push(k.to_vec());
        false
    })
    .unwrap();
    assert_eq!(first, order[..1], "visit returning false stops the scan");
    let mut resumed = Vec::new();
    s.scan_partition(5, &order[1], &mut |k, _| {
        resumed.push(k.to_vec());
        true
    })
    .unwrap();
    assert_eq!(resumed, order[1..], "a scan resumes at `from`, inclusive");
}

fn meta_round_trips<S: Store>(s: S) {
    assert_eq!(s.get_meta("incarnation").unwrap(), None);
    s.put_meta("incarnation", b"7").unwrap();
    s.put_meta("layout", b"x").unwrap();
    assert_eq!(s.get_meta("incarnation").unwrap(), Some(b"7".to_vec()));
    s.put_meta("incarnation", b"8").unwrap();
    assert_eq!(s.get_meta("incarnation").unwrap(), Some(b"8".to_vec()));
    let mut objects = 0;
    s.scan_partition(0, b"", &mut |_, _| {
        objects += 1;
        true
    })
    .unwrap();
    assert_eq!(objects, 0, "metadata is not an object");
}

fn delete_removes<S: Store>(s: S) {
    s.put(3, b"k", &object("n1", b"v")).unwrap();
    s.delete(3, b"k").unwrap();
    assert!(s.get(3, b"k").unwrap().is_none());
}

fn replica_merges_and_mints<S: Store>(s: S) {
    let r = Replica::new(Arc::new(s), ReplicaLimits::default()).unwrap();
    let data = |v: &'static [u8]| Value::Data(Bytes::from_static(v));
    let (o1, _) = r
        .coordinate(9, b"k", "n1", &VersionVector::new(), data(b"a"), 3)
        .unwrap();
    // A concurrent write arriving from another coordinator becomes a sibling.
    let merged = r.apply(9, b"k", &object("n2", b"b")).unwrap();
    assert_eq!(merged.siblings.len(), 2);
    // Applying the same copy again changes nothing (merge is idempotent).
    assert_eq!(r.apply(9, b"k", &object("n2", b"b")).unwrap(), merged);
    assert!(!r.apply_from_peer(9, b"k", &object("n2", b"b")).unwrap(), "and says so");
    assert!(r.apply_from_peer(9, b"k", &object("n3", b"c")).unwrap());
    let merged = r.read(9, b"k").unwrap().unwrap();
    // A write carrying the merged context resolves every sibling.
    let (o3, outcome) = r
        .coordinate(9, b"k", "n1", &merged.siblings.context(), data(b"c"), 3)
        .unwrap();
    assert_eq!(o3.siblings.len(), 1);
    assert_eq!(o3.values(), vec![Bytes::from_static(b"c")]);
    assert!(outcome.dot.counter > o1.siblings.siblings()[0].dot.counter);
    assert_eq!(r.read(9, b"k").unwrap(), Some(o3));
}

fn replica_refuses_oversized_objects<S: Store>(s: S) {
    let limits = ReplicaLimits {
        max_object_bytes: 1024,
        ..Default::default()
    };
    let r = Replica::new(Arc::new(s), limits).unwrap();
    let big = Value::Data(Bytes::from(vec![7u8; 2048]));
    match r.coordinate(1, b"k", "n1", &VersionVector::new(), big, 3) {
        Err(ReplicaError::ObjectTooLarge { limit, .. }) => assert_eq!(limit, 1024),
        other => panic!("expected ObjectTooLarge, got {other:?}"),
    }
    assert!(
        r.read(1, b"k").unwrap().is_none(),
        "a refused write leaves nothing behind"
    );
}

#[test]
fn memory_store_conforms() {
    run_all(crate::MemoryStore::new);
}

#[cfg(feature = "rocksdb")]
#[test]
fn rocks_store_conforms() {
    let dirs = std::sync::Mutex::new(Vec::new());
    run_all(|| {
        let dir = tempfile::tempdir().unwrap();
        let s = crate::RocksStore::open(dir.path(), &crate::RocksOptions::default()).unwrap();
        dirs.lock().unwrap().push(dir);
        s
    });
}

#[cfg(feature = "rocksdb")]
#[test]
fn rocks_store_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let o = object("n1", b"durable");
    {
        let s = crate::RocksStore::open(dir.path(), &crate::RocksOptions::default()).unwrap();
        s.put(1, b"k", &o).unwrap();
    }
    let s = crate::RocksStore::open(dir.path(), &crate::RocksOptions::default()).unwrap();
    assert_eq!(s.get(1, b"k").unwrap(), Some(o));
}

fn replica_exports_and_hands_off_strays_by_n<S: Store>(s: S) {
    let r = Replica::new(Arc::new(s), ReplicaLimits::default()).unwrap();
    for (i, n) in [1u8, 2, 3, 2, 3, 1].into_iter().enumerate() {
        let key = format!("k{i}");
        let v = Value::Data(Bytes::from(vec![b'x'; 100]));
        r.coordinate(4, key.as_bytes(), "n1", &VersionVector::new(), v, n)
            .unwrap();
    }
    let keys = |chunk: &[(Vec<u8>, Object)]| {
        chunk
            .iter()
            .map(|(k, _)| String::from_utf8(k.clone()).unwrap())
            .collect::<Vec<_>>()
    };
    // Keys in store order, with the n each was written with.
    let ns = [1u8, 2, 3, 2, 3, 1];
    let order: Vec<String> = store_order(&[b"k0", b"k1", b"k2", b"k3", b"k4", b"k5"])
        .into_iter()
        .map(|k| String::from_utf8(k).unwrap())
        .collect();
    let n_of = |k: &str| ns[k[1..].parse::<usize>().unwrap()];
    let with_n = |lo: u8, hi: u8| {
        order
            .iter()
            .filter(|k| (lo..=hi).contains(&n_of(k)))
            .cloned()
            .collect::<Vec<_>>()
    };
    let (all, resume) = r.export(4, b"", 2, 3, usize::MAX).unwrap();
    assert_eq!(keys(&all), with_n(2, 3));
    assert_eq!(resume, None);
    // Chunked: a chunk stops before the object that would overflow max_bytes (each object here
    // is 102 bytes), and the next resumes where it stopped.
    let (first, resume) = r.export(4, b"", 1, 3, 250).unwrap();
    assert_eq!(keys(&first), order[..2]);
    let (rest, end) = r.export(4, &resume.unwrap(), 1, 3, usize::MAX).unwrap();
    assert_eq!(keys(&rest), order[2..]);
    // An object larger than max_bytes still goes, alone, so a transfer always progresses.
    let (one, more) = r.export(4, b"", 1, 3, 10).unwrap();
    assert_eq!(keys(&one), order[..1]);
    assert_eq!(more.as_deref(), Some(order[1].as_bytes()));
    assert_eq!(end, None);
    // Strays: what this node no longer holds, by replication factor.
    let held_n3 = |n: u8| n == 3;
    let strays = r.strays(4, held_n3).unwrap();
    let mut stray_keys: Vec<String> = strays
        .iter()
        .map(|(k, _)| String::from_utf8(k.clone()).unwrap())
        .collect();
    stray_keys.sort();
    let mut expected = with_n(1, 2);
    expected.sort();
    assert_eq!(stray_keys, expected);
    // A stray the newest placement gives back to this node is kept, and so is one merged
    // into since it was handed over (the merge would be lost).
    assert_eq!(r.drop_handed_off(4, &strays, |_| true).unwrap(), 0);
    let (changed_key, handed) = &strays[0];
    let mut late = handed.clone();
    late.siblings
        .write(
            "n9",
            &VersionVector::new(),
            Value::Data(Bytes::from_static(b"late")),
            &SiblingLimits::default(),
        )
        .unwrap();
    r.apply(4, changed_key, &late).unwrap();
    assert_eq!(r.drop_handed_off(4, &strays, held_n3).unwrap(), strays.len() - 1);
    let (left, _) = r.export(4, b"", 1, 3, usize::MAX).unwrap();
    let mut expected_left = with_n(3, 3);
    expected_left.push(String::from_utf8(changed_key.clone()).unwrap());
    expected_left.sort();
    let mut left = keys(&left);
    left.sort();
    assert_eq!(left, expected_left);
}

//! One conformance suite, run against every [`Store`] implementation (openraft's
//! `testing/log/suite.rs` pattern), so the in-memory store used by tests and the simulator
//! cannot drift from RocksDB's behaviour.

use std::sync::Arc;

use bytes::Bytes;
use shoal_version::{SiblingLimits, VersionVector};

use crate::{Object, Replica, ReplicaError, ReplicaLimits, Store, Value};

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
    replica_exports_and_drops_by_n(make());
    replica_merges_and_mints(make());
    replica_refuses_oversized_objects(make());
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
    let mut seen = Vec::new();
    s.scan_partition(5, b"", &mut |k, _| {
        seen.push(k.to_vec());
        true
    })
    .unwrap();
    assert_eq!(seen, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    let mut first = Vec::new();
    s.scan_partition(5, b"", &mut |k, _| {
        first.push(k.to_vec());
        false
    })
    .unwrap();
    assert_eq!(first, vec![b"a".to_vec()], "visit returning false stops the scan");
    let mut resumed = Vec::new();
    s.scan_partition(5, b"b", &mut |k, _| {
        resumed.push(k.to_vec());
        true
    })
    .unwrap();
    assert_eq!(
        resumed,
        vec![b"b".to_vec(), b"c".to_vec()],
        "a scan resumes at `from`, inclusive"
    );
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
    let r = Replica::new(Arc::new(s), ReplicaLimits::default());
    let data = |v: &'static [u8]| Value::Data(Bytes::from_static(v));
    let (o1, _) = r
        .coordinate(9, b"k", "n1", &VersionVector::new(), data(b"a"), 3)
        .unwrap();
    // A concurrent write arriving from another coordinator becomes a sibling.
    let merged = r.apply(9, b"k", &object("n2", b"b")).unwrap();
    assert_eq!(merged.siblings.len(), 2);
    // Applying the same copy again changes nothing (merge is idempotent).
    assert_eq!(r.apply(9, b"k", &object("n2", b"b")).unwrap(), merged);
    // A write carrying the merged context resolves both siblings.
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
    let r = Replica::new(Arc::new(s), limits);
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

fn replica_exports_and_drops_by_n<S: Store>(s: S) {
    let r = Replica::new(Arc::new(s), ReplicaLimits::default());
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
    let (all, resume) = r.export(4, b"", 2, 3, usize::MAX).unwrap();
    assert_eq!(keys(&all), ["k1", "k2", "k3", "k4"]);
    assert_eq!(resume, None);
    // Chunked: a chunk stops before the object that would overflow max_bytes (each object here
    // is 102 bytes), and the next resumes where it stopped.
    let (first, resume) = r.export(4, b"", 1, 3, 250).unwrap();
    assert_eq!(keys(&first), ["k0", "k1"]);
    let (rest, end) = r.export(4, &resume.unwrap(), 1, 3, usize::MAX).unwrap();
    assert_eq!(keys(&rest), ["k2", "k3", "k4", "k5"]);
    // An object larger than max_bytes still goes, alone, so a transfer always progresses.
    let (one, more) = r.export(4, b"", 1, 3, 10).unwrap();
    assert_eq!(keys(&one), ["k0"]);
    assert_eq!(more.as_deref(), Some(b"k1".as_slice()));
    assert_eq!(end, None);
    assert_eq!(r.drop_range(4, 1, 2).unwrap(), 4);
    let (left, _) = r.export(4, b"", 1, 3, usize::MAX).unwrap();
    assert_eq!(keys(&left), ["k2", "k4"]);
}

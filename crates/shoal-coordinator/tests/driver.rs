//! The coordinator driver over an in-process network of three nodes with MemoryStore: quorum
//! counting, deadlines, forwarding to a replica, sibling merging and read repair.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::RwLock;
use shoal_coordinator::*;
use shoal_handoff::{HandoffConfig, Hints};
use shoal_ring::{Layout, Member, NodeId, Placement, RingConfig};
use shoal_storage::{MemoryStore, Object, Replica, ReplicaLimits};

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    None,
    Down,
    Hang,
}

#[derive(Default)]
struct Net {
    nodes: RwLock<HashMap<NodeId, Weak<Coordinator<MemoryStore, Link>>>>,
    faults: RwLock<HashMap<NodeId, Fault>>,
}

/// One node's transport: `me` is the node that calls.
struct Link {
    net: Arc<Net>,
    me: NodeId,
}

/// The coordinators' view of who is down: what SWIM would say, here the injected `Down` faults
/// (a `Hang` is a node SWIM has not caught yet).
impl Health for Net {
    fn is_down(&self, node: &NodeId) -> bool {
        self.faults.read().get(node) == Some(&Fault::Down)
    }
}

impl Net {
    fn target(&self, node: &NodeId) -> Result<Arc<Coordinator<MemoryStore, Link>>, Fault> {
        match self.faults.read().get(node).copied().unwrap_or(Fault::None) {
            Fault::None => self.nodes.read().get(node).and_then(|w| w.upgrade()).ok_or(Fault::Down),
            f => Err(f),
        }
    }
}

/// Why a replica request did not reach the replica's store.
enum Refused {
    Fault(Fault),
    /// Epoch fencing: the caller has already adopted the replica's placement, as membership
    /// does with the record a fencing replica sends.
    Stale(String),
}

impl Link {
    fn reach(&self, node: &NodeId, epoch: u64) -> Result<Arc<Coordinator<MemoryStore, Link>>, Refused> {
        let target = self.net.target(node).map_err(Refused::Fault)?;
        if let Err(stale) = target.check_fence("test", epoch) {
            if let Ok(me) = self.net.target(&self.me) {
                me.set_placement(target.placement().map(|p| (*p).clone()));
            }
            return Err(Refused::Stale(stale.to_string()));
        }
        Ok(target)
    }
}

async fn fail(r: Refused) -> String {
    match r {
        Refused::Fault(Fault::Hang) => std::future::pending().await,
        Refused::Fault(_) => "connection refused".to_string(),
        Refused::Stale(reason) => reason,
    }
}

impl Transport for Link {
    fn replica_put(
        &self,
        node: &NodeId,
        epoch: u64,
        key: Bytes,
        object: Arc<Object>,
        _t: Duration,
    ) -> TransportFuture<Result<(), String>> {
        let t = self.reach(node, epoch);
        Box::pin(async move {
            match t {
                Ok(c) => c.apply_local(key, (*object).clone()).await,
                Err(f) => Err(fail(f).await),
            }
        })
    }
    fn replica_get(
        &self,
        node: &NodeId,
        epoch: u64,
        key: Bytes,
        _t: Duration,
    ) -> TransportFuture<Result<Option<Object>, String>> {
        let t = self.reach(node, epoch);
        Box::pin(async move {
            match t {
                Ok(c) => c.read_local(key).await,
                Err(f) => Err(fail(f).await),
            }
        })
    }
    fn hinted_put(
        &self,
        node: &NodeId,
        epoch: u64,
        owner: &NodeId,
        key: Bytes,
        object: Arc<Object>,
        _t: Duration,
    ) -> TransportFuture<Result<(), String>> {
        let (t, owner) = (self.reach(node, epoch), owner.clone());
        Box::pin(async move {
            match t {
                Ok(c) => c.store_hint(owner, key, (*object).clone()).await,
                Err(f) => Err(fail(f).await),
            }
        })
    }
    fn hinted_get(
        &self,
        node: &NodeId,
        epoch: u64,
        owner: &NodeId,
        key: Bytes,
        _t: Duration,
    ) -> TransportFuture<Result<Option<Object>, String>> {
        let (t, owner) = (self.reach(node, epoch), owner.clone());
        Box::pin(async move {
            match t {
                Ok(c) => c.read_hint(owner, key).await,
                Err(f) => Err(fail(f).await),
            }
        })
    }
    fn forward_put(
        &self,
        node: &NodeId,
        req: PutRequest,
        _t: Duration,
    ) -> TransportFuture<Result<Result<PutResponse, CoordError>, String>> {
        let t = self.net.target(node);
        Box::pin(async move {
            match t {
                Ok(c) => Ok(c.put(req).await),
                Err(f) => Err(fail(Refused::Fault(f)).await),
            }
        })
    }
}

struct Cluster {
    net: Arc<Net>,
    nodes: Vec<Arc<Coordinator<MemoryStore, Link>>>,
}

fn cluster() -> Cluster {
    cluster_with(StorageExecution::Inline)
}

fn cluster_with(storage: StorageExecution) -> Cluster {
    cluster_of(3, storage)
}

fn cluster_of(size: usize, storage: StorageExecution) -> Cluster {
    cluster_config(
        size,
        CoordinatorConfig {
            default_timeout: Duration::from_millis(300),
            storage,
            ..Default::default()
        },
    )
}

fn cluster_config(size: usize, config: CoordinatorConfig) -> Cluster {
    let ids: Vec<NodeId> = (1..=size).map(|i| NodeId::from(format!("n{i}"))).collect();
    let members = ids
        .iter()
        .map(|id| Member {
            id: id.clone(),
            zone: "z".into(),
            weight: 1,
        })
        .collect();
    let layout = Arc::new(Layout::new(1, members, RingConfig::default()).unwrap());
    let net = Arc::new(Net::default());
    let nodes: Vec<_> = ids
        .iter()
        .map(|id| {
            let store = Arc::new(MemoryStore::new());
            let replica = Arc::new(Replica::new(store.clone(), ReplicaLimits::default()).unwrap());
            let hints = Hints::open(
                store,
                HandoffConfig {
                    window: Duration::from_secs(3600),
                    max_age: Duration::from_secs(7200),
                    max_hints_per_target: 1000,
                },
            )
            .unwrap();
            let c = Coordinator::new(
                id.clone(),
                Some(Placement::stable(layout.clone())),
                replica,
                Arc::new(Link {
                    net: net.clone(),
                    me: id.clone(),
                }),
                config.clone(),
            )
            .with_hints(Arc::new(hints));
            c.set_health(net.clone());
            Arc::new(c)
        })
        .collect();
    for n in &nodes {
        net.nodes.write().insert(n.me().clone(), Arc::downgrade(n));
    }
    Cluster { net, nodes }
}

fn put(key: &str, value: &str, n: u8, w: u8) -> PutRequest {
    PutRequest {
        key: Bytes::from(key.to_string()),
        value: Some(Bytes::from(value.to_string())),
        context: None,
        n: Some(n),
        w: Some(w),
        timeout_ms: None,
        forwarded: false,
        sloppy: None,
    }
}

fn get(key: &str, n: u8, r: u8) -> GetRequest {
    GetRequest {
        key: Bytes::from(key.to_string()),
        n: Some(n),
        r: Some(r),
        timeout_ms: None,
        sloppy: None,
    }
}

fn values(o: &Option<Object>) -> Vec<String> {
    let mut v: Vec<String> = o
        .iter()
        .flat_map(|o| o.values())
        .map(|b| String::from_utf8(b.to_vec()).unwrap())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn quorum_counts_acks_and_names_failures() {
    let c = cluster();
    c.net.faults.write().insert(NodeId::from("n3"), Fault::Down);
    let done = c.nodes[0].put(put("k", "v", 3, 2)).await.unwrap();
    assert_eq!(done.acks, 2);
    match c.nodes[0].put(put("k", "v", 3, 3)).await {
        Err(CoordError::Unavailable {
            required,
            acked,
            failed,
            ..
        }) => {
            assert_eq!((required, acked), (3, 2));
            assert_eq!(
                failed,
                vec![FailedReplica {
                    node: "n3".into(),
                    reason: "connection refused".into()
                }]
            );
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let got = c.nodes[1].get(get("k", 3, 2)).await.unwrap();
    assert!(!values(&got.object).is_empty());
}

#[tokio::test]
async fn a_hung_replica_fails_at_the_deadline() {
    let c = cluster();
    c.net.faults.write().insert(NodeId::from("n2"), Fault::Hang);
    let started = std::time::Instant::now();
    match c.nodes[0].put(put("k", "v", 3, 3)).await {
        Err(CoordError::Unavailable { acked, failed, .. }) => {
            assert_eq!(acked, 2);
            assert_eq!(failed[0].node, "n2");
            assert!(failed[0].reason.contains("deadline"), "{failed:?}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(
        c.nodes[0].put(put("k", "v", 3, 2)).await.is_ok(),
        "w=2 does not wait for the hung node"
    );
}

#[tokio::test]
async fn a_non_replica_forwards_the_write_to_a_replica() {
    let c = cluster();
    let layout = c.nodes[0].layout().unwrap();
    // Find a key whose single replica (n=1) is not n1, and write it through n1.
    let key = (0..1000)
        .map(|i| format!("key-{i}"))
        .find(|k| layout.preference_list(layout.partition_of(k.as_bytes()), 1)[0] != *c.nodes[0].me())
        .unwrap();
    let owner = layout.preference_list(layout.partition_of(key.as_bytes()), 1)[0].clone();
    c.nodes[0].put(put(&key, "forwarded", 1, 1)).await.unwrap();
    let owner_node = c.nodes.iter().find(|n| *n.me() == owner).unwrap();
    assert_eq!(
        values(&owner_node.read_local(Bytes::from(key.clone())).await.unwrap()),
        vec!["forwarded"]
    );
    assert!(
        c.nodes[0].read_local(Bytes::from(key)).await.unwrap().is_none(),
        "the non-replica stored nothing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_merge_siblings_and_repair_stale_replicas() {
    // Storage calls on the blocking pool here; the other tests run them inline.
    let c = cluster_with(StorageExecution::Pool);
    // n3 misses the first write; n1 misses the second: each replica is stale in its own way.
    c.net.faults.write().insert(NodeId::from("n3"), Fault::Down);
    c.nodes[0].put(put("k", "a", 3, 2)).await.unwrap();
    c.net.faults.write().clear();
    c.net.faults.write().insert(NodeId::from("n1"), Fault::Down);
    c.nodes[2].put(put("k", "b", 3, 2)).await.unwrap();
    c.net.faults.write().clear();

    let got = c.nodes[1].get(get("k", 3, 3)).await.unwrap();
    assert_eq!(
        values(&got.object),
        vec!["a", "b"],
        "concurrent blind writes are siblings"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    for n in &c.nodes {
        assert_eq!(
            values(&n.read_local(Bytes::from("k")).await.unwrap()),
            vec!["a", "b"],
            "{} repaired",
            n.me()
        );
    }
    // A write with the read's context resolves both siblings everywhere.
    let mut resolve = put("k", "c", 3, 3);
    resolve.context = Some(got.object.unwrap().siblings.context());
    c.nodes[0].put(resolve).await.unwrap();
    for n in &c.nodes {
        assert_eq!(values(&n.read_local(Bytes::from("k")).await.unwrap()), vec!["c"]);
    }
}

#[tokio::test]
async fn delete_without_context_removes_what_the_coordinator_holds() {
    let c = cluster();
    c.nodes[0].put(put("k", "a", 3, 3)).await.unwrap();
    let mut del = put("k", "", 3, 3);
    del.value = None;
    c.nodes[1].put(del).await.unwrap();
    let got = c.nodes[2].get(get("k", 3, 3)).await.unwrap();
    let obj = got.object.unwrap();
    assert!(obj.is_deleted(), "only the tombstone remains: {obj:?}");
}

/// The preference list and fallback order of `key` in a cluster `c`.
fn walk_of(c: &Cluster, key: &str) -> Vec<NodeId> {
    let layout = c.nodes[0].layout().unwrap();
    layout.walk(layout.partition_of(key.as_bytes())).to_vec()
}

fn node<'a>(c: &'a Cluster, id: &NodeId) -> &'a Arc<Coordinator<MemoryStore, Link>> {
    c.nodes.iter().find(|n| n.me() == id).unwrap()
}

#[tokio::test]
async fn sloppy_quorum_writes_hints_to_fallbacks_and_strict_refuses() {
    let c = cluster_of(5, StorageExecution::Inline);
    let walk = walk_of(&c, "k");
    // Two of the three primaries are down (SWIM knows): the coordinator is the first.
    for down in &walk[1..3] {
        c.net.faults.write().insert(down.clone(), Fault::Down);
    }
    let coordinator = node(&c, &walk[0]);
    let done = coordinator.put(put("k", "v", 3, 3)).await.unwrap();
    assert_eq!((done.acks, done.hinted), (3, 2), "the two fallbacks stood in");
    for (fallback, owner) in walk[3..5].iter().zip(&walk[1..3]) {
        let hint = node(&c, fallback)
            .read_hint(owner.clone(), Bytes::from("k"))
            .await
            .unwrap();
        assert_eq!(values(&hint), ["v"], "{fallback} keeps the hint for {owner}");
        assert!(
            node(&c, fallback).read_local(Bytes::from("k")).await.unwrap().is_none(),
            "a hint is not the fallback's own data"
        );
    }
    // A sloppy read with r = 3 gets its quorum from the hints.
    let got = coordinator.get(get("k", 3, 3)).await.unwrap();
    assert_eq!((got.replies, got.hinted), (3, 2));
    assert_eq!(values(&got.object), ["v"]);

    // Strict: only primaries count.
    let mut strict = put("k2", "v", 3, 2);
    strict.sloppy = Some(false);
    let walk2 = walk_of(&c, "k2");
    c.net.faults.write().clear();
    for down in &walk2[1..3] {
        c.net.faults.write().insert(down.clone(), Fault::Down);
    }
    match node(&c, &walk2[0]).put(strict).await {
        Err(CoordError::Unavailable { required, acked, .. }) => assert_eq!((required, acked), (2, 1)),
        other => panic!("a strict write with two primaries down must fail, got {other:?}"),
    }
}

#[tokio::test]
async fn a_primary_that_fails_mid_request_gets_a_stand_in() {
    let c = cluster_of(5, StorageExecution::Inline);
    let walk = walk_of(&c, "k");
    // SWIM has not noticed: the node just refuses connections, so the coordinator learns it
    // from the failed send and sends the copy to the first fallback instead.
    c.net.nodes.write().remove(&walk[2]);
    let done = node(&c, &walk[0]).put(put("k", "v", 3, 3)).await.unwrap();
    assert_eq!((done.acks, done.hinted), (3, 1));
    let hint = node(&c, &walk[3])
        .read_hint(walk[2].clone(), Bytes::from("k"))
        .await
        .unwrap();
    assert_eq!(values(&hint), ["v"]);
}

/// With a WARS latency profile, every replica (the coordinator's own included) gets a write
/// only after its injected W delay, the ack after W + A, a read after R + S; and the legs the
/// coordinator records are exactly the injected ones when the calls themselves take no time.
#[tokio::test(start_paused = true)]
async fn injected_latencies_delay_every_replica_the_coordinators_own_included() {
    use shoal_pbs::{Dist, Profile};
    let ms = |ms| Dist::Constant { ms };
    let profile = Profile {
        name: "test".into(),
        description: String::new(),
        w: ms(50.0),
        a: ms(10.0),
        r: ms(5.0),
        s: ms(7.0),
        far_ms: 0.0,
    };
    let c = cluster_config(
        3,
        CoordinatorConfig {
            default_timeout: Duration::from_secs(5),
            inject: Some(Arc::new(profile)),
            // Delays on tokio's clock, which this test pauses and advances.
            precise_delays: false,
            ..Default::default()
        },
    );
    let n1 = c.nodes[0].clone();
    let started = tokio::time::Instant::now();
    let write = tokio::spawn(async move { n1.put(put("k", "v", 3, 1)).await });
    tokio::time::sleep(Duration::from_millis(25)).await;
    // Halfway along W: not even the coordinator's own replica has the write yet.
    for n in &c.nodes {
        assert!(
            n.read_local(Bytes::from("k")).await.unwrap().is_none(),
            "{} has it early",
            n.me()
        );
    }
    let done = write.await.unwrap().unwrap();
    let took = started.elapsed();
    assert!(
        (Duration::from_millis(60)..Duration::from_millis(63)).contains(&took),
        "w=1 acks after W + A = 60 ms, took {took:?}"
    );
    assert_eq!(done.acks, 1);
    for n in &c.nodes {
        assert_eq!(
            values(&n.read_local(Bytes::from("k")).await.unwrap()),
            vec!["v"],
            "{}",
            n.me()
        );
    }
    let started = tokio::time::Instant::now();
    let got = c.nodes[1].get(get("k", 3, 1)).await.unwrap();
    let took = started.elapsed();
    assert_eq!(values(&got.object), vec!["v"]);
    assert!(
        (Duration::from_millis(12)..Duration::from_millis(15)).contains(&took),
        "r=1 answers after R + S = 12 ms, took {took:?}"
    );
    // Let the stragglers finish, then look at the legs n1 recorded.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let legs = c.nodes[0].legs().snapshot();
    let me = legs
        .peers
        .iter()
        .find(|p| p.peer == "n1")
        .expect("own replica recorded");
    assert!(me.local);
    assert_eq!((me.w.clone(), me.a.clone()), (vec![50.0], vec![10.0]));
    for other in legs.peers.iter().filter(|p| p.peer != "n1") {
        assert!(!other.local);
        assert_eq!(
            (other.w.clone(), other.a.clone()),
            (vec![50.0], vec![10.0]),
            "{}",
            other.peer
        );
    }
    let reader = c.nodes[1].legs().snapshot();
    let own = reader.peers.iter().find(|p| p.peer == "n2").expect("n2's own replica");
    assert_eq!((own.r.clone(), own.s.clone()), (vec![5.0], vec![7.0]));
}

/// A layout that drops `gone` from the cluster's members, at layout version `version`.
fn layout_without(c: &Cluster, gone: &NodeId, version: u64) -> Placement {
    let members = c.nodes[0]
        .layout()
        .unwrap()
        .members()
        .iter()
        .filter(|m| m.id != *gone)
        .cloned()
        .collect();
    Placement::stable(Arc::new(Layout::new(version, members, RingConfig::default()).unwrap()))
}

/// Epoch fencing: a coordinator that slept through a layout change (here: n4 removed at
/// version 5) is refused by every replica that has the new layout, learns it from the refusal,
/// and sends the object it already coordinated to the new owners: one version, not two.
#[tokio::test]
async fn a_coordinator_on_an_old_layout_is_fenced_and_writes_under_the_new_one() {
    let c = cluster_of(4, StorageExecution::Inline);
    let gone = NodeId::from("n4");
    // A key n1 replicates together with n4 under the old layout.
    let key = (0..1000)
        .map(|i| format!("k{i}"))
        .find(|k| {
            let pref = walk_of(&c, k);
            pref[..3].contains(&gone) && pref[..3].contains(&"n1".into())
        })
        .expect("some key has both n1 and n4 among its replicas");
    let old = c.nodes[0].placement().unwrap();
    let new = layout_without(&c, &gone, 5);
    for n in &c.nodes[1..] {
        n.set_placement(Some(new.clone()));
    }
    let stale = &c.nodes[0];
    assert_eq!(stale.placement().unwrap().epoch, 1);

    let done = stale.put(put(&key, "v", 3, 3)).await.unwrap();
    assert_eq!(done.acks, 3);
    assert_eq!(
        stale.placement().unwrap().epoch,
        5,
        "the refusal taught n1 the new layout"
    );
    for id in ["n1", "n2", "n3"] {
        let held = node(&c, &id.into()).read_local(Bytes::from(key.clone())).await.unwrap();
        assert_eq!(values(&held), ["v"], "{id} holds the write once");
    }
    assert!(
        node(&c, &gone)
            .read_local(Bytes::from(key.clone()))
            .await
            .unwrap()
            .is_none(),
        "the removed node refused the write"
    );

    // A stale reader is fenced out the same way and asks the new owners.
    let reader = node(&c, &"n2".into());
    reader.set_placement(Some((*old).clone()));
    let got = reader.get(get(&key, 3, 3)).await.unwrap();
    assert_eq!(values(&got.object), ["v"]);
    assert_eq!(reader.placement().unwrap().epoch, 5);
}

/// The replica side of the fence: its bounds and the refusal's wording (the fence of each
/// phase of a change is tested in `shoal-ring`).
#[tokio::test]
async fn replicas_refuse_coordinators_older_than_their_fence() {
    let c = cluster_of(3, StorageExecution::Inline);
    let n1 = &c.nodes[0];
    n1.check_fence("test", 1).unwrap();
    n1.set_placement(Some(layout_without(&c, &NodeId::from("nobody"), 7)));
    n1.check_fence("test", 7).unwrap();
    n1.check_fence("test", 9).unwrap();
    let refused = n1.check_fence("test", 6).unwrap_err();
    assert_eq!((refused.epoch, refused.fence), (6, 7));
    assert!(refused.to_string().contains("stale layout"), "{refused}");
}

/// The layout lease: a coordinator that has had no sign for a while that its layout is
/// current (it may have been paused or cut off through a change) does not count its own copy
/// or its own reply until a peer has accepted a request; one peer's acceptance renews it.
#[tokio::test]
async fn a_lapsed_layout_lease_holds_back_the_coordinators_own_ack() {
    let c = cluster_config(
        3,
        CoordinatorConfig {
            default_timeout: Duration::from_millis(300),
            layout_lease: Duration::from_secs(60),
            ..Default::default()
        },
    );
    let n1 = &c.nodes[0];
    assert!(!n1.layout_confirmed(), "no peer has confirmed n1's layout yet");
    for id in ["n2", "n3"] {
        c.net.faults.write().insert(id.into(), Fault::Down);
    }
    // Alone, with the lease lapsed: its own copy does not make w=1 nor its own reply r=1.
    let refused = n1.put(put("k", "alone", 3, 1)).await.unwrap_err();
    assert!(matches!(refused, CoordError::Unavailable { acked: 0, .. }), "{refused}");
    let refused = n1.get(get("k", 3, 1)).await.unwrap_err();
    assert!(matches!(refused, CoordError::Unavailable { acked: 0, .. }), "{refused}");
    assert!(!n1.layout_confirmed());

    // One peer back: its acceptance renews the lease and the write is acknowledged.
    c.net.faults.write().remove(&NodeId::from("n2"));
    let done = n1.put(put("k", "with-n2", 3, 1)).await.unwrap();
    assert!(done.acks >= 1);
    assert!(n1.layout_confirmed(), "n2's acceptance renewed the lease");

    // Alone again within the lease: its own copy counts.
    c.net.faults.write().insert("n2".into(), Fault::Down);
    let done = n1.put(put("k", "alone-again", 3, 1)).await.unwrap();
    assert_eq!(done.acks, 1);
    let got = n1.get(get("k", 3, 1)).await.unwrap();
    assert!(values(&got.object).contains(&"alone-again".to_string()));
}

//! The background repair loops of a node: hinted handoff delivery and anti-entropy exchanges
//! with tombstone GC. The mechanisms live in `shoal-handoff` and `shoal-antientropy`; this
//! module decides when and with whom, from SWIM liveness and the layout.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::seq::SliceRandom;
use shoal_antientropy::{pick_peer, plan_round, AntiEntropy, PlannedTree};
use shoal_handoff::Deliver;
use shoal_net::Throttle;
use shoal_ring::NodeId;
use shoal_storage::{Object, RocksStore};
use tracing::{debug, info};

use crate::membership::Membership;
use crate::peer::{unexpected, NodeCoordinator, PeerRemote, PeerRequest, PeerResponse, QuicTransport};

/// Hint delivery over the peer protocol.
pub struct HintTarget {
    pub membership: Arc<Membership>,
    pub transport: Arc<QuicTransport>,
    pub coordinator: Arc<NodeCoordinator>,
}

impl Deliver for HintTarget {
    fn ready(&self, owner: &str) -> bool {
        let id = NodeId::from(owner);
        match self.coordinator.placement() {
            None => false,
            Some(p) if p.current.member(&id).is_some() => self.membership.is_alive(&id),
            // An owner that has left the layout (a leave or a remove): its hints go to the
            // keys' owners now, as Riak hands a fallback vnode's data to the vnode's current
            // owner, once no change is in flight to move them again.
            Some(p) => !p.changing(),
        }
    }

    async fn deliver(&self, owner: &str, objects: Vec<(Bytes, Object)>) -> Result<(), String> {
        let id = NodeId::from(owner);
        let layout = self
            .coordinator
            .layout()
            .ok_or_else(|| "this node has not joined a cluster yet".to_string())?;
        if layout.member(&id).is_some() {
            return self.merge_into(&id, objects).await;
        }
        // The intended owner is gone. The copy may be the only one of an acknowledged write
        // (a sloppy write with n=1, or one whose other replicas have failed since), and the
        // transfer that moved the owner's ranges could not stream it from a dead node: give it
        // to every replica the key has now. Merges are joins, so a replica that already holds
        // it is unchanged.
        let mut by_node: BTreeMap<NodeId, Vec<(Bytes, Object)>> = BTreeMap::new();
        for (key, object) in objects {
            let partition = layout.partition_of(&key);
            for node in layout.preference_list(partition, object.n as usize) {
                by_node
                    .entry(node.clone())
                    .or_default()
                    .push((key.clone(), object.clone()));
            }
        }
        for (node, batch) in by_node {
            if node == *self.coordinator.me() {
                self.coordinator.apply_batch(batch).await?;
            } else {
                self.merge_into(&node, batch).await?;
            }
        }
        debug!(owner, "handed a departed owner's hints to the keys' current replicas");
        Ok(())
    }
}

impl HintTarget {
    async fn merge_into(&self, node: &NodeId, objects: Vec<(Bytes, Object)>) -> Result<(), String> {
        let req = PeerRequest::Merge { objects };
        match self.transport.call(node, req, Duration::from_secs(30)).await? {
            PeerResponse::Stored => Ok(()),
            other => Err(unexpected(other)),
        }
    }
}

/// Exchanges every tree this node replicates with a live other replica once per `interval`,
/// spread evenly over it, and collects the tombstones every replica holds.
pub async fn anti_entropy(
    aae: Arc<AntiEntropy<RocksStore>>,
    coordinator: Arc<NodeCoordinator>,
    membership: Arc<Membership>,
    transport: Arc<QuicTransport>,
    interval: Duration,
    throttle: Arc<Throttle>,
) {
    let me = coordinator.me().clone();
    let default_n = coordinator.config().defaults.n;
    let mut round_no = 0u64;
    loop {
        round_no += 1;
        let Some(placement) = coordinator.placement() else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        // During a layout change transfers move the data; exchanging by a layout that is
        // about to change would compare the wrong replicas.
        if placement.changing() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let layout = placement.current.clone();
        // Only requests may hold a placement for long: a layout change announces itself
        // once the replaced placement is no longer referenced (see `Membership::announce_seen`).
        drop(placement);
        let mut trees = plan_round(aae.trees(), &layout, &me, default_n);
        if trees.is_empty() {
            tokio::time::sleep(interval.min(Duration::from_secs(1))).await;
            continue;
        }
        trees.shuffle(&mut rand::thread_rng());
        let pause = interval / trees.len() as u32;
        let round = tokio::time::Instant::now();
        let (mut repaired, mut divergent, mut reaped) = (0u64, 0u64, 0u64);
        for PlannedTree { partition, n, others } in trees {
            let next = tokio::time::Instant::now() + pause;
            if coordinator
                .placement()
                .is_none_or(|p| !Arc::ptr_eq(&p.current, &layout) || p.changing())
            {
                break; // the layout changed: plan again
            }
            let live: Vec<&NodeId> = others.iter().filter(|o| membership.is_alive(o)).collect();
            let peer = pick_peer(&live, round_no, partition);
            if let Some(peer) = peer {
                let remote = PeerRemote {
                    transport: transport.clone(),
                    node: peer.clone(),
                };
                let pace = |bytes: u64| {
                    let t = throttle.clone();
                    async move { t.pace(bytes).await }
                };
                match aae.exchange(partition, n, peer.as_str(), &remote, pace).await {
                    Ok(r) => {
                        divergent += r.divergent;
                        repaired += r.pulled + r.pushed;
                    }
                    Err(e) => debug!(partition, n, %peer, error = %e, "anti-entropy exchange failed"),
                }
            }
            // GC needs every other replica: each must have matched our root after the
            // tombstone was written, and must delete its copy too.
            if live.len() == others.len() {
                let remotes: Vec<(String, PeerRemote)> = others
                    .iter()
                    .map(|o| {
                        let remote = PeerRemote {
                            transport: transport.clone(),
                            node: o.clone(),
                        };
                        (o.to_string(), remote)
                    })
                    .collect();
                match aae.collect_garbage(partition, n, &remotes).await {
                    Ok(k) => reaped += k,
                    Err(e) => debug!(partition, n, error = %e, "tombstone GC failed"),
                }
            }
            tokio::time::sleep_until(next).await;
        }
        metrics::gauge!("shoal_aae_round_seconds").set(round.elapsed().as_secs_f64());
        metrics::gauge!("shoal_aae_last_round_timestamp_seconds").set(shoal_storage::unix_ms() as f64 / 1e3);
        if divergent > 0 || reaped > 0 {
            info!(
                divergent,
                repaired,
                reaped,
                took_ms = round.elapsed().as_millis() as u64,
                "anti-entropy round"
            );
        }
    }
}

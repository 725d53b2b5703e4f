//! The background repair loops of a node: hinted handoff delivery and anti-entropy exchanges
//! with tombstone GC. The mechanisms live in `shoal-handoff` and `shoal-antientropy`; this
//! module decides when and with whom, from SWIM liveness and the layout.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::seq::SliceRandom;
use shoal_antientropy::{pick_peer, plan_round, AntiEntropy, PlannedTree};
use shoal_handoff::Deliver;
use shoal_handoff::Throttle;
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
        self.coordinator
            .placement()
            .is_some_and(|p| p.handoff_ready(&id, self.membership.is_alive(&id)))
    }

    async fn deliver(&self, owner: &str, objects: Vec<(Bytes, Object)>) -> Result<(), String> {
        let placement = self
            .coordinator
            .placement()
            .ok_or_else(|| "this node has not joined a cluster yet".to_string())?;
        let epoch = placement.epoch;
        let routes = placement.route_handoff(&NodeId::from(owner), objects, |o| o.n);
        drop(placement);
        for (node, batch) in routes {
            self.merge_into(&node, epoch, batch).await?;
        }
        Ok(())
    }

    async fn redirect(&self, owner: &str, objects: Vec<(Bytes, Object)>) -> Result<Vec<bool>, String> {
        let placement = self
            .coordinator
            .placement()
            .ok_or_else(|| "this node has not joined a cluster yet".to_string())?;
        let epoch = placement.epoch;
        let routes = placement.route_redirect(
            &NodeId::from(owner),
            &objects,
            |o| o.n,
            |id| id == self.coordinator.me() || self.membership.is_alive(id),
        );
        drop(placement);
        Ok(
            shoal_handoff::merge_for_news(routes, &objects, |node, batch| async move {
                self.merge_into(&node, epoch, batch).await
            })
            .await,
        )
    }
}

impl HintTarget {
    /// Merge `batch` into `node`'s replica (this node's own, without the network); per object,
    /// whether it was news there.
    async fn merge_into(&self, node: &NodeId, epoch: u64, batch: Vec<(Bytes, Object)>) -> Result<Vec<bool>, String> {
        if node == self.coordinator.me() {
            return self
                .coordinator
                .accept_handoff("handoff", epoch, batch)
                .await
                .map_err(|e| e.to_string());
        }
        let req = PeerRequest::Merge { epoch, objects: batch };
        match self.transport.call(node, req, Duration::from_secs(30)).await? {
            PeerResponse::Merged(news) => Ok(news),
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
        let (layout, epoch) = (placement.current.clone(), placement.epoch);
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
                    epoch,
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
            if live.len() == others.len() && membership.gc_allowed() {
                let remotes: Vec<(String, PeerRemote)> = others
                    .iter()
                    .map(|o| {
                        let remote = PeerRemote {
                            transport: transport.clone(),
                            node: o.clone(),
                            epoch,
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

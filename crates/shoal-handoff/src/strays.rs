//! Ownership handoff of strays: objects a node holds in ranges it no longer owns, which it
//! hands to the owners before deleting them, as Riak hands off a vnode its node no longer owns.
//!
//! A normal layout change needs none of this: the gaining nodes stream every range in while
//! all writes reach both member sets, so the losers simply drop. But a node that slept
//! through a change's streaming phase (crashed, SIGSTOPped, cut off, and not waited for) may
//! hold writes it acknowledged under its old layout, alone with `w = 1` or with other stale
//! nodes, that no gaining node streamed. Dropping them would lose acknowledged writes.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use shoal_storage::{blocking, Object, Replica, Store};

use crate::Deliver;

/// Where the objects of replication factor `n` in partition `p` go, or `None` when this node
/// holds them.
pub type StrayOwners = Arc<dyn Fn(u32, u8) -> Option<Vec<String>> + Send + Sync>;

/// Keys per handoff message.
const BATCH_KEYS: usize = 64;

/// Hands every stray of `partitions` to its owners through `target`, then deletes each one
/// that at least one owner stored (anti-entropy brings the others theirs) and that has not
/// changed since. Without `hand_over` (a node that followed the change, whose strays the
/// gaining nodes streamed in) it only deletes them. Returns how many strays went. An error
/// leaves the rest for the next try.
pub async fn hand_off_strays<S: Store>(
    replica: &Arc<Replica<S>>,
    partitions: u32,
    owners: StrayOwners,
    target: &impl Deliver,
    hand_over: bool,
) -> Result<usize, String> {
    let mut moved = 0;
    for partition in 0..partitions {
        let (r, o) = (replica.clone(), owners.clone());
        let strays = blocking(move || r.strays(partition, |n| o(partition, n).is_none()))
            .await?
            .map_err(|e| e.to_string())?;
        if strays.is_empty() {
            continue;
        }
        let mut by_owner: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, (_, obj)) in strays.iter().enumerate() {
            for owner in owners(partition, obj.n).unwrap_or_default() {
                by_owner.entry(owner).or_default().push(i);
            }
        }
        let mut stored = vec![!hand_over; strays.len()];
        let mut failure = None;
        for (owner, indices) in by_owner.into_iter().filter(|_| hand_over) {
            for chunk in indices.chunks(BATCH_KEYS) {
                let batch: Vec<(Bytes, Object)> = chunk
                    .iter()
                    .map(|&i| (Bytes::copy_from_slice(&strays[i].0), strays[i].1.clone()))
                    .collect();
                match target.deliver(&owner, batch).await {
                    Ok(()) => chunk.iter().for_each(|&i| stored[i] = true),
                    Err(e) => failure = Some(format!("handing strays of partition {partition} to {owner}: {e}")),
                }
            }
        }
        let handed: Vec<(Vec<u8>, Object)> = strays
            .into_iter()
            .zip(&stored)
            .filter(|(_, ok)| **ok)
            .map(|(s, _)| s)
            .collect();
        let (r, o) = (replica.clone(), owners.clone());
        moved += blocking(move || r.drop_handed_off(partition, &handed, |n| o(partition, n).is_none()))
            .await?
            .map_err(|e| e.to_string())?;
        if let Some(e) = failure {
            return Err(e);
        }
    }
    Ok(moved)
}

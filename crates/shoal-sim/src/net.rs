//! The simulated network and the nodes' process states.
//!
//! Every message takes a seeded delay (uniform, with an occasional long tail, so messages
//! overtake each other), and is dropped when the network's loss roll says so or when the
//! directed link is cut: partitions may be one-way. A dropped request or reply is never
//! answered, so the caller waits out its timeout, as over QUIC. Idempotent messages (replica
//! writes, merges, SWIM datagrams) are sometimes delivered twice, as a resend after a
//! connection reset does.
//!
//! A crashed node neither sends nor receives, and its store is fenced (see [`crate::store`]).
//! A paused node (SIGSTOP) handles nothing until it resumes: requests to it, and everything it
//! sends, wait, while the timers of everyone else run on.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::Rng;
use shoal_membership::Message;
use shoal_ring::NodeId;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::node::Core;

/// How messages travel; the nemesis changes it during a run.
#[derive(Clone, Debug)]
pub struct Weather {
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// The chance a message takes a long extra delay, up to `tail_max`.
    pub tail: f64,
    pub tail_max: Duration,
    pub loss: f64,
    pub duplicate: f64,
}

impl Weather {
    /// A healthy LAN: 0.1–2 ms, 1% of messages 2–30 ms late, nothing lost or repeated.
    pub fn calm() -> Self {
        Self {
            min_delay: Duration::from_micros(100),
            max_delay: Duration::from_millis(2),
            tail: 0.01,
            tail_max: Duration::from_millis(30),
            loss: 0.0,
            duplicate: 0.0,
        }
    }
}

struct Slot {
    /// The running incarnation, `None` while crashed.
    core: Option<Arc<Core>>,
    /// Bumped at every crash, so a dead incarnation's in-flight work can tell it is dead.
    incarnation: u64,
    paused: bool,
    /// Wakes what waits for the node to resume. Not a `watch` channel: tokio spreads a watch's
    /// waiters over eight queues chosen at random, so they would wake in a different order
    /// every run. A `Notify` wakes its waiters in a fixed order.
    resumed: Arc<Notify>,
}

pub struct Net {
    origin: Instant,
    rng: Mutex<StdRng>,
    weather: Mutex<Weather>,
    /// Cut directed links (from, to).
    cut: Mutex<BTreeSet<(usize, usize)>>,
    slots: Vec<Mutex<Slot>>,
    /// Messages sent, dropped and duplicated, for the report.
    pub stats: Mutex<NetStats>,
}

#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct NetStats {
    pub messages: u64,
    pub dropped: u64,
    pub duplicated: u64,
}

/// The simulated node index of `id` ("n3" is index 2).
pub fn index_of(id: &NodeId) -> usize {
    id.as_str()
        .strip_prefix('n')
        .and_then(|n| n.parse::<usize>().ok())
        .and_then(|n| n.checked_sub(1))
        .unwrap_or(usize::MAX)
}

pub fn node_id(index: usize) -> NodeId {
    NodeId::new(format!("n{}", index + 1))
}

/// A future that never completes: a message that is never answered.
async fn lost<T>() -> T {
    std::future::pending().await
}

impl Net {
    pub fn new(nodes: usize, rng: StdRng) -> Self {
        Self {
            origin: Instant::now(),
            rng: Mutex::new(rng),
            weather: Mutex::new(Weather::calm()),
            cut: Mutex::new(BTreeSet::new()),
            slots: (0..nodes)
                .map(|_| {
                    Mutex::new(Slot {
                        core: None,
                        incarnation: 0,
                        paused: false,
                        resumed: Arc::new(Notify::new()),
                    })
                })
                .collect(),
            stats: Mutex::new(NetStats::default()),
        }
    }

    pub fn nodes(&self) -> usize {
        self.slots.len()
    }

    /// Virtual time since the run began.
    pub fn now(&self) -> Duration {
        Instant::now() - self.origin
    }

    pub fn now_ms(&self) -> u64 {
        self.now().as_millis() as u64
    }

    /// Draw from the run's random stream. Tasks run in a seed-determined order on one thread,
    /// so draws happen in a seed-determined order too.
    pub fn with_rng<T>(&self, f: impl FnOnce(&mut StdRng) -> T) -> T {
        f(&mut self.rng.lock())
    }

    pub fn set_weather(&self, weather: Weather) {
        *self.weather.lock() = weather;
    }

    pub fn cut(&self, from: usize, to: usize) {
        self.cut.lock().insert((from, to));
    }

    pub fn heal_links(&self) {
        self.cut.lock().clear();
    }

    // ---- process states ----

    pub fn core(&self, i: usize) -> Option<Arc<Core>> {
        self.slots.get(i).and_then(|s| s.lock().core.clone())
    }

    pub fn incarnation(&self, i: usize) -> u64 {
        self.slots[i].lock().incarnation
    }

    pub fn is_up(&self, i: usize) -> bool {
        self.slots[i].lock().core.is_some()
    }

    pub fn is_paused(&self, i: usize) -> bool {
        self.slots[i].lock().paused
    }

    /// Whether incarnation `inc` of node `i` is still the one running.
    pub fn alive(&self, i: usize, inc: u64) -> bool {
        let s = self.slots[i].lock();
        s.core.is_some() && s.incarnation == inc
    }

    pub(crate) fn install(&self, i: usize, core: Arc<Core>) {
        self.slots[i].lock().core = Some(core);
    }

    /// Take the running incarnation out (a crash); later ones get a higher number.
    pub(crate) fn remove(&self, i: usize) -> Option<Arc<Core>> {
        let mut s = self.slots[i].lock();
        s.incarnation += 1;
        s.core.take()
    }

    pub fn set_paused(&self, i: usize, paused: bool) {
        let mut slot = self.slots[i].lock();
        slot.paused = paused;
        if !paused {
            slot.resumed.notify_waiters();
        }
    }

    /// Wait while node `i` is paused.
    pub async fn runnable(&self, i: usize) {
        loop {
            let resumed = {
                let slot = self.slots[i].lock();
                if !slot.paused {
                    return;
                }
                slot.resumed.clone()
            };
            let notified = resumed.notified();
            // Registered before the flag is read again: a resume in between is not missed.
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.is_paused(i) {
                return;
            }
            notified.await;
        }
    }

    /// Drop every reference to the nodes (they hold the network in turn).
    pub fn clear(&self) {
        for s in &self.slots {
            s.lock().core = None;
        }
    }

    // ---- messages ----

    fn delay(&self) -> Duration {
        let w = self.weather.lock().clone();
        self.with_rng(|rng| {
            let base = rng.gen_range(w.min_delay..=w.max_delay);
            if rng.gen_bool(w.tail) {
                base + rng.gen_range(Duration::ZERO..=w.tail_max)
            } else {
                base
            }
        })
    }

    /// One message from `from` to `to`: wait out its delay, then say whether it arrived
    /// (links are judged on arrival, so a partition cuts messages already in flight).
    async fn hop(&self, from: usize, to: usize) -> bool {
        self.runnable(from).await;
        tokio::time::sleep(self.delay()).await;
        let loss = self.weather.lock().loss;
        let dropped = self.cut.lock().contains(&(from, to)) || self.with_rng(|r| r.gen_bool(loss));
        let mut stats = self.stats.lock();
        stats.messages += 1;
        stats.dropped += dropped as u64;
        !dropped
    }

    fn duplicate(&self) -> bool {
        let p = self.weather.lock().duplicate;
        let dup = self.with_rng(|r| r.gen_bool(p));
        self.stats.lock().duplicated += dup as u64;
        dup
    }

    /// A request from incarnation `inc` of `from` to node `to`, handled there by `handle`;
    /// `Err` when no answer came back within `timeout`. With `idempotent`, the request may
    /// arrive twice (the second copy's answer is discarded).
    pub async fn call<R, F, Fut>(
        self: &Arc<Self>,
        from: usize,
        inc: u64,
        to: usize,
        timeout: Duration,
        idempotent: bool,
        handle: F,
    ) -> Result<R, String>
    where
        R: Send + 'static,
        F: Fn(Arc<Core>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
    {
        let handle = Arc::new(handle);
        let run = async {
            if !self.hop(from, to).await {
                return lost().await;
            }
            if idempotent && self.duplicate() {
                let (net, again) = (self.clone(), handle.clone());
                tokio::spawn(async move {
                    if net.hop(from, to).await {
                        if let Some(core) = net.arrive(to).await {
                            again(core).await;
                        }
                    }
                });
            }
            let Some(core) = self.arrive(to).await else {
                return lost().await;
            };
            let answer = handle(core).await;
            if !self.hop(to, from).await || !self.alive(from, inc) {
                return lost().await;
            }
            answer
        };
        tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| format!("no reply from {} within {} ms", node_id(to), timeout.as_millis()))
    }

    /// The running incarnation of `to` once it is runnable, or `None` if it is down.
    async fn arrive(&self, to: usize) -> Option<Arc<Core>> {
        self.runnable(to).await;
        self.core(to)
    }

    /// A SWIM datagram: delivered to the inbox of whatever incarnation of `to` runs when it
    /// arrives, maybe twice, maybe never.
    pub fn datagram(self: &Arc<Self>, from: usize, to: usize, message: Message<()>) {
        let copies = 1 + self.duplicate() as usize;
        for _ in 0..copies {
            let (net, message) = (self.clone(), message.clone());
            tokio::spawn(async move {
                if net.hop(from, to).await {
                    if let Some(core) = net.core(to) {
                        let _ = core.inbox.send(message);
                    }
                }
            });
        }
    }
}

//! Injected WARS delays, waited out precisely.
//!
//! tokio's timer wheel has millisecond ticks and rounds every sleep up to the next tick, so a
//! 0.26 ms draw from the `lnkd-ssd` profile became a 1–2 ms wait: the injected distribution
//! was not the profile's. Delays are instead handed to one thread that keeps them in a heap
//! and sleeps on a condition variable until the earliest is due (Linux wakes it within tens
//! of microseconds), then completes the waiting task's oneshot channel.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tokio::sync::oneshot;

struct Due {
    at: Instant,
    seq: u64,
    done: oneshot::Sender<()>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    /// Reversed, so the max-heap's top is the earliest deadline.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

#[derive(Default)]
struct Timer {
    heap: Mutex<(BinaryHeap<Due>, u64)>,
    wake: Condvar,
}

impl Timer {
    fn run(&self) {
        let mut state = self.heap.lock();
        loop {
            let now = Instant::now();
            while state.0.peek().is_some_and(|d| d.at <= now) {
                if let Some(d) = state.0.pop() {
                    let _ = d.done.send(());
                }
            }
            match state.0.peek().map(|d| d.at) {
                Some(at) => {
                    self.wake.wait_until(&mut state, at);
                }
                None => self.wake.wait(&mut state),
            }
        }
    }

    fn add(&self, at: Instant, done: oneshot::Sender<()>) {
        let mut state = self.heap.lock();
        state.1 += 1;
        let seq = state.1;
        let earliest = state.0.peek().is_none_or(|d| at < d.at);
        state.0.push(Due { at, seq, done });
        if earliest {
            self.wake.notify_one();
        }
    }
}

fn timer() -> Option<&'static Arc<Timer>> {
    static TIMER: OnceLock<Option<Arc<Timer>>> = OnceLock::new();
    TIMER
        .get_or_init(|| {
            let t = Arc::new(Timer::default());
            let runner = t.clone();
            std::thread::Builder::new()
                .name("shoal-delay".into())
                .spawn(move || runner.run())
                .ok()
                .map(|_| t)
        })
        .as_ref()
}

/// Wait `d` on the precise timer (tokio's sleep, if its thread could not be started).
pub async fn precise_sleep(d: Duration) {
    if d.is_zero() {
        return;
    }
    match timer() {
        Some(t) => {
            let (tx, rx) = oneshot::channel();
            t.add(Instant::now() + d, tx);
            let _ = rx.await;
        }
        None => tokio::time::sleep(d).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sub-millisecond delays are waited out, never cut short; and they end in the order due.
    #[tokio::test]
    async fn delays_are_never_short_and_fire_in_order() {
        for us in [50u64, 260, 900, 1500] {
            let d = Duration::from_micros(us);
            let started = Instant::now();
            precise_sleep(d).await;
            assert!(started.elapsed() >= d, "{us} µs: woke after {:?}", started.elapsed());
        }
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (i, ms) in [30u64, 10, 20].into_iter().enumerate() {
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                precise_sleep(Duration::from_millis(ms)).await;
                order.lock().push(i);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock(), vec![1, 2, 0]);
    }
}

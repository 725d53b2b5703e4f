//! Where storage work runs, and what time it reads.
//!
//! Both are seams for Shoal's deterministic simulator (`shoal-sim`): on a real node storage
//! scans and batches run on tokio's blocking pool and timestamps come from the system clock;
//! in a simulation, storage work runs inline on the simulation's single thread (a blocking
//! pool thread would finish at a time no seed decides) and every node reads its own skewed
//! virtual clock.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock time as Unix milliseconds: what tombstone stamps, hint ages and the tombstone
/// GC cutoff read. Each node reads only its own clock and compares only its own stamps, so
/// skew between nodes does not matter.
pub trait Clock: Send + Sync {
    fn unix_ms(&self) -> u64;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn unix_ms(&self) -> u64 {
        unix_ms()
    }
}

/// The system clock's current time as Unix milliseconds.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub fn system_clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

thread_local! {
    static INLINE: Cell<bool> = const { Cell::new(false) };
}

/// From now on, [`blocking`] runs its work inline on this thread. For the simulator, which
/// drives a whole cluster on one thread's runtime and must not let a pool thread's timing
/// into a run.
pub fn run_blocking_inline_on_this_thread() {
    INLINE.with(|c| c.set(true));
}

/// Run storage work that may take a while (a scan, a batch of merges) off the async workers,
/// on tokio's blocking pool; the error says the task failed (it panicked or the runtime is
/// shutting down).
pub async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Result<R, String> {
    if INLINE.with(Cell::get) {
        return Ok(f());
    }
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("storage task failed: {e}"))
}

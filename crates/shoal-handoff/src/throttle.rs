//! A byte-rate limiter for background traffic (partition transfers, hint delivery,
//! anti-entropy), so it never crowds out foreground requests.

use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

/// Paces work to a byte rate, as the generic cell rate algorithm does: each call reserves
/// `bytes / rate` of time after the previous reservation, and waits until its turn, less a
/// burst allowance. Shared by every task of one kind of traffic.
pub struct Throttle {
    /// Bytes per second; `None` for no limit.
    rate: Option<f64>,
    burst: Duration,
    /// The theoretical time at which everything reserved so far has been sent.
    tat: Mutex<Option<Instant>>,
}

impl Throttle {
    /// `mb_per_sec` in megabytes (10^6 bytes) per second; zero, negative or not finite means
    /// unlimited.
    pub fn new(mb_per_sec: f64) -> Self {
        let rate = (mb_per_sec.is_finite() && mb_per_sec > 0.0).then_some(mb_per_sec * 1e6);
        Self {
            rate,
            burst: Duration::from_millis(50),
            tat: Mutex::new(None),
        }
    }

    /// Reserve `bytes` and say how long to wait before sending them.
    pub fn delay(&self, bytes: u64) -> Duration {
        let Some(rate) = self.rate else {
            return Duration::ZERO;
        };
        let now = Instant::now();
        let mut tat = self.tat.lock();
        let start = tat.map_or(now, |t| t.max(now));
        let next = start + Duration::from_secs_f64(bytes as f64 / rate);
        *tat = Some(next);
        (next - now).saturating_sub(self.burst)
    }

    /// Wait for the turn of `bytes` bytes.
    pub async fn pace(&self, bytes: u64) {
        let wait = self.delay(bytes);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn holds_the_rate_over_many_calls() {
        let t = Throttle::new(1.0); // 1 MB/s
        let start = Instant::now();
        for _ in 0..20 {
            t.pace(100_000).await;
        }
        let took = start.elapsed();
        // 2 MB at 1 MB/s: 2 s, less the 50 ms burst allowance.
        assert!(
            took >= Duration::from_millis(1_900) && took <= Duration::from_millis(2_000),
            "{took:?}"
        );
    }

    #[test]
    fn zero_means_unlimited() {
        let t = Throttle::new(0.0);
        assert_eq!(t.delay(u64::MAX), Duration::ZERO);
    }
}

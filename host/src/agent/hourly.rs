//! The operator-wide token budget per hour: a sliding window over what model investigations
//! used. An investigation reserves its per-investigation budget (or what is left of the hour)
//! before it starts and settles to what it really used when it ends, so concurrent
//! investigations cannot overspend the hour between them.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(3600);

/// Below this, an investigation could not do a single useful step.
pub const MIN_GRANT: u64 = 2_000;

#[derive(Debug)]
pub struct HourlyTokens {
    /// 0: no limit.
    limit: u64,
    spent: Mutex<VecDeque<Entry>>,
}

#[derive(Debug)]
struct Entry {
    at: Instant,
    id: u64,
    tokens: u64,
}

/// Tokens set aside for one investigation; hand it back with [`HourlyTokens::settle`].
#[derive(Debug)]
pub struct Reservation {
    id: u64,
    /// The investigation's token budget: its own, or what is left of the hour if less.
    pub granted: u64,
}

impl HourlyTokens {
    pub fn new(limit: u64) -> HourlyTokens {
        HourlyTokens {
            limit,
            spent: Mutex::new(VecDeque::new()),
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Sets aside up to `want` tokens, or says how long until at least [`MIN_GRANT`] are free.
    pub fn reserve(&self, want: u64) -> Result<Reservation, Duration> {
        self.reserve_at(Instant::now(), want)
    }

    pub fn reserve_at(&self, now: Instant, want: u64) -> Result<Reservation, Duration> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.limit == 0 {
            return Ok(Reservation { id, granted: want });
        }
        let mut spent = self.spent.lock().unwrap();
        while spent
            .front()
            .is_some_and(|e| now.duration_since(e.at) >= WINDOW)
        {
            spent.pop_front();
        }
        let used: u64 = spent.iter().map(|e| e.tokens).sum();
        let left = self.limit.saturating_sub(used);
        if left < MIN_GRANT.min(want) {
            // Free once enough of the oldest entries leave the window.
            let mut freed = left;
            let wait = spent
                .iter()
                .find(|e| {
                    freed += e.tokens;
                    freed >= MIN_GRANT.min(want)
                })
                .map(|e| WINDOW.saturating_sub(now.duration_since(e.at)))
                .unwrap_or(WINDOW);
            return Err(wait.max(Duration::from_secs(1)));
        }
        let granted = want.min(left);
        spent.push_back(Entry {
            at: now,
            id,
            tokens: granted,
        });
        Ok(Reservation { id, granted })
    }

    /// Replaces the reservation with what the investigation really used.
    pub fn settle(&self, reservation: Reservation, used: u64) {
        let mut spent = self.spent.lock().unwrap();
        if let Some(e) = spent.iter_mut().find(|e| e.id == reservation.id) {
            e.tokens = used;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_limit_grants_everything() {
        let h = HourlyTokens::new(0);
        assert_eq!(h.reserve(60_000).unwrap().granted, 60_000);
    }

    #[test]
    fn reservations_share_the_hour_and_settle_to_what_was_used() {
        let h = HourlyTokens::new(100_000);
        let t0 = Instant::now();
        let a = h.reserve_at(t0, 60_000).unwrap();
        assert_eq!(a.granted, 60_000);
        // Two at once cannot overspend: the second gets what is left.
        let b = h.reserve_at(t0, 60_000).unwrap();
        assert_eq!(b.granted, 40_000);
        let wait = h.reserve_at(t0, 60_000).unwrap_err();
        assert_eq!(wait, WINDOW);
        // The first used far less than it reserved: the rest is free again.
        h.settle(a, 5_000);
        assert_eq!(h.reserve_at(t0, 60_000).unwrap().granted, 55_000);
    }

    #[test]
    fn spending_leaves_the_window_after_an_hour() {
        let h = HourlyTokens::new(10_000);
        let t0 = Instant::now();
        let a = h.reserve_at(t0, 10_000).unwrap();
        h.settle(a, 10_000);
        let later = t0 + Duration::from_secs(600);
        let wait = h.reserve_at(later, 5_000).unwrap_err();
        assert_eq!(
            wait,
            Duration::from_secs(3000),
            "free when the first spend is an hour old"
        );
        assert!(h.reserve_at(t0 + WINDOW, 5_000).is_ok());
    }
}

//! The operator-wide token budget per hour: a sliding window over what model investigations
//! used. An investigation reserves its per-investigation budget (or what is left of the hour)
//! before it starts and settles to what it really used when it ends, so concurrent
//! investigations cannot overspend the hour between them. One namespace may use at most its share
//! of the hour, so a namespace whose workloads fail by the hundred (or whose logs are written to
//! burn tokens) cannot starve the others.

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
    /// What one namespace may use of the hour (at most `limit`).
    namespace_limit: u64,
    spent: Mutex<VecDeque<Entry>>,
}

#[derive(Debug)]
struct Entry {
    at: Instant,
    id: u64,
    namespace: String,
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
            namespace_limit: limit,
            spent: Mutex::new(VecDeque::new()),
        }
    }

    /// The same budget with one namespace limited to `percent` of it.
    pub fn with_namespace_share(mut self, percent: u8) -> HourlyTokens {
        self.namespace_limit = self.limit * u64::from(percent.min(100)) / 100;
        self
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// What one namespace may use of the hour.
    pub fn namespace_limit(&self) -> u64 {
        self.namespace_limit
    }

    /// Sets aside up to `want` tokens, or says how long until at least [`MIN_GRANT`] are free.
    /// Reserves up to `want` tokens for an investigation in `namespace`, or says how long until
    /// enough of the hour (or of the namespace's share) frees up.
    pub fn reserve(&self, namespace: &str, want: u64) -> Result<Reservation, Duration> {
        self.reserve_at(Instant::now(), namespace, want)
    }

    pub fn reserve_at(
        &self,
        now: Instant,
        namespace: &str,
        want: u64,
    ) -> Result<Reservation, Duration> {
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
        let needed = MIN_GRANT.min(want);
        let mut granted = want;
        // The hour for everyone, then this namespace's share of it.
        for (limit, mine) in [(self.limit, None), (self.namespace_limit, Some(namespace))] {
            let counts = |e: &&Entry| mine.is_none_or(|ns| e.namespace == ns);
            let used: u64 = spent.iter().filter(counts).map(|e| e.tokens).sum();
            let left = limit.saturating_sub(used);
            if left < needed {
                let mut freed = left;
                let wait = spent
                    .iter()
                    .filter(counts)
                    .find(|e| {
                        freed += e.tokens;
                        freed >= needed
                    })
                    .map(|e| WINDOW.saturating_sub(now.duration_since(e.at)))
                    .unwrap_or(WINDOW);
                return Err(wait.max(Duration::from_secs(1)));
            }
            granted = granted.min(left);
        }
        spent.push_back(Entry {
            at: now,
            id,
            namespace: namespace.to_string(),
            tokens: granted,
        });
        Ok(Reservation { id, granted })
    }

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
        assert_eq!(h.reserve("a", 60_000).unwrap().granted, 60_000);
    }

    #[test]
    fn reservations_share_the_hour_and_settle_to_what_was_used() {
        let h = HourlyTokens::new(100_000);
        let t0 = Instant::now();
        let a = h.reserve_at(t0, "a", 60_000).unwrap();
        assert_eq!(a.granted, 60_000);
        // Two at once cannot overspend: the second gets what is left.
        let b = h.reserve_at(t0, "a", 60_000).unwrap();
        assert_eq!(b.granted, 40_000);
        let wait = h.reserve_at(t0, "a", 60_000).unwrap_err();
        assert_eq!(wait, WINDOW);
        // The first used far less than it reserved: the rest is free again.
        h.settle(a, 5_000);
        assert_eq!(h.reserve_at(t0, "a", 60_000).unwrap().granted, 55_000);
    }

    #[test]
    fn spending_leaves_the_window_after_an_hour() {
        let h = HourlyTokens::new(10_000);
        let t0 = Instant::now();
        let a = h.reserve_at(t0, "a", 10_000).unwrap();
        h.settle(a, 10_000);
        let later = t0 + Duration::from_secs(600);
        let wait = h.reserve_at(later, "a", 5_000).unwrap_err();
        assert_eq!(
            wait,
            Duration::from_secs(3000),
            "free when the first spend is an hour old"
        );
        assert!(h.reserve_at(t0 + WINDOW, "a", 5_000).is_ok());
    }

    #[test]
    fn one_namespace_gets_only_its_share_of_the_hour() {
        let h = HourlyTokens::new(100_000).with_namespace_share(50);
        let t0 = Instant::now();
        let a = h.reserve_at(t0, "noisy", 80_000).unwrap();
        assert_eq!(a.granted, 50_000, "half the hour at most");
        assert!(h.reserve_at(t0, "noisy", 10_000).is_err());
        let b = h.reserve_at(t0, "quiet", 80_000).unwrap();
        assert_eq!(b.granted, 50_000, "the other half stays for the others");
        h.settle(a, 10_000);
        assert_eq!(h.reserve_at(t0, "noisy", 60_000).unwrap().granted, 40_000);
    }
}

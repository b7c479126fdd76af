//! What each instance may ask of the issuer, so that no tenant can hurt another: a token budget
//! per verified instance, and the memory of the assertions it used, bounded per instance.
//!
//! The budget is a token bucket kept as one number per instance (the generic cell rate
//! algorithm): `burst` tokens at once, then one every `interval`. A sidecar asks about every
//! half hour and once per start, so with the defaults (20, then one every 30 s) it never meets
//! it; a client that asks more gets `429` with `Retry-After`, and only that instance does.
//! Only verified instances are counted: what a request without a proof costs is bounded by the
//! listener, not here.
//!
//! An assertion's `jti` is remembered until the assertion expires (at most 6 minutes), as a
//! keyed hash, with the instance that used it. An instance can have at most
//! [`Budget::max_remembered`] remembered at once (a spent budget stops it long before); the
//! global cap is the last resort, reachable only by tens of thousands of instances at once.

use std::collections::HashMap;
use std::hash::BuildHasher as _;
use std::time::Duration;

use parking_lot::Mutex;

use super::Refusal;

/// An instance's allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Tokens an instance may get at once.
    pub burst: u32,
    /// Then one every this long.
    pub interval: Duration,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            burst: 20,
            interval: Duration::from_secs(30),
        }
    }
}

impl Budget {
    fn interval_ms(&self) -> i64 {
        i64::try_from(self.interval.as_millis()).unwrap_or(i64::MAX / 4)
    }

    /// The most assertions one instance can have remembered: what its budget lets it use in an
    /// assertion's longest life (and until the sweep after it), one assertion per token.
    pub fn max_remembered(&self) -> u32 {
        let life_ms = (super::proof::assertion::MAX_AHEAD + super::proof::assertion::MAX_LIFETIME)
            * 1000
            + SWEEP_MS;
        let refills = u32::try_from(life_ms / self.interval_ms().max(1)).unwrap_or(u32::MAX);
        self.burst.saturating_add(refills).saturating_add(1)
    }
}

/// The most assertions remembered over all instances; beyond, requests are refused as busy.
pub(super) const MAX_REMEMBERED: usize = 1_000_000;
/// The most instances tracked at once (the same last resort).
pub(super) const MAX_TENANTS: usize = 500_000;
/// How often expired entries are swept out, in milliseconds.
const SWEEP_MS: i64 = 10_000;

/// Every instance's budget and remembered assertions.
#[derive(Debug)]
pub(super) struct Tenants {
    budget: Budget,
    max_tenants: usize,
    max_remembered: usize,
    hasher: std::collections::hash_map::RandomState,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    tenants: HashMap<u64, Tenant>,
    /// A remembered `jti` (keyed hash) → its expiry (Unix ms) and its instance (keyed hash).
    jtis: HashMap<u64, (i64, u64)>,
    next_sweep: i64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Tenant {
    /// When its bucket is full again (Unix ms): the generic cell rate algorithm's "theoretical
    /// arrival time".
    full_at: i64,
    /// How many of its assertions are remembered.
    remembered: u32,
}

impl Tenants {
    /// Nobody tracked yet.
    pub(super) fn new(budget: Budget) -> Self {
        Self::with_caps(budget, MAX_TENANTS, MAX_REMEMBERED)
    }

    /// With other global caps (tests reach them).
    fn with_caps(budget: Budget, max_tenants: usize, max_remembered: usize) -> Self {
        Self {
            budget,
            max_tenants,
            max_remembered,
            hasher: std::collections::hash_map::RandomState::new(),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Refuses a `jti` already remembered and unexpired (cheap; before anything is spent).
    pub(super) fn check_replay(&self, jti: &str, now_ms: i64) -> Result<(), Refusal> {
        let key = self.hasher.hash_one(jti);
        match self.inner.lock().jtis.get(&key) {
            Some((until, _)) if *until > now_ms => Err(Refusal::Replay),
            _ => Ok(()),
        }
    }

    /// Spends one token of `instance`'s budget and remembers its `jtis` (each with its
    /// expiry, Unix seconds), all at once or nothing.
    pub(super) fn spend(
        &self,
        instance: &str,
        jtis: &[(String, i64)],
        now_ms: i64,
    ) -> Result<(), Refusal> {
        let who = self.hasher.hash_one(instance);
        let keys: Vec<(u64, i64)> = jtis
            .iter()
            .map(|(jti, exp)| (self.hasher.hash_one(jti), exp.saturating_mul(1000)))
            .collect();
        let mut inner = self.inner.lock();
        if now_ms >= inner.next_sweep {
            inner.sweep(now_ms);
        }
        for (key, _) in &keys {
            if inner
                .jtis
                .get(key)
                .is_some_and(|(until, _)| *until > now_ms)
            {
                return Err(Refusal::Replay);
            }
        }
        let interval = self.budget.interval_ms();
        let tolerance = interval.saturating_mul(i64::from(self.budget.burst.max(1)) - 1);
        let known = inner.tenants.get(&who).copied();
        if known.is_none() && inner.tenants.len() >= self.max_tenants {
            return Err(Refusal::Busy);
        }
        let tenant = known.unwrap_or_default();
        let full_at = tenant.full_at.max(now_ms);
        if full_at - now_ms > tolerance {
            let wait_ms = full_at - now_ms - tolerance;
            return Err(Refusal::InstanceBudget {
                retry_after: secs_up(wait_ms),
            });
        }
        let adding = u32::try_from(keys.len()).unwrap_or(u32::MAX);
        if tenant.remembered.saturating_add(adding) > self.budget.max_remembered() {
            return Err(Refusal::InstanceBudget {
                retry_after: secs_up(interval),
            });
        }
        if inner.jtis.len() + keys.len() > self.max_remembered {
            return Err(Refusal::Busy);
        }
        for (key, until) in keys {
            inner.jtis.insert(key, (until, who));
        }
        inner.tenants.insert(
            who,
            Tenant {
                full_at: full_at + interval,
                remembered: tenant.remembered + adding,
            },
        );
        Ok(())
    }

    /// (instances tracked, assertions remembered).
    pub(super) fn len(&self) -> (usize, usize) {
        let inner = self.inner.lock();
        (inner.tenants.len(), inner.jtis.len())
    }
}

/// Milliseconds in whole seconds, rounded up, at least one.
fn secs_up(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0).div_ceil(1000).max(1)
}

impl Inner {
    /// Forgets expired assertions, and instances with a full bucket and nothing remembered.
    fn sweep(&mut self, now_ms: i64) {
        let Inner { tenants, jtis, .. } = self;
        jtis.retain(|_, (until, who)| {
            let keep = *until > now_ms;
            if !keep && let Some(t) = tenants.get_mut(who) {
                t.remembered = t.remembered.saturating_sub(1);
            }
            keep
        });
        tenants.retain(|_, t| t.full_at > now_ms || t.remembered > 0);
        self.next_sweep = now_ms + SWEEP_MS;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1000;

    fn jti(n: usize) -> Vec<(String, i64)> {
        vec![(format!("jti-{n:016}"), 1_000_000 + 300)]
    }

    #[test]
    fn a_sidecar_never_meets_its_budget() {
        // One token every half hour, and a dozen restarts in a minute.
        let t = Tenants::new(Budget::default());
        let mut now = 1_000_000 * SEC;
        for i in 0..12 {
            t.spend("instance", &[], now + i * 5 * SEC)
                .expect("a restart");
        }
        for _ in 0..48 {
            now += 1800 * SEC;
            t.spend("instance", &[], now).expect("a renewal");
        }
    }

    #[test]
    fn a_greedy_instance_gets_429_with_retry_after_and_nobody_else_does() {
        let b = Budget::default();
        let t = Tenants::new(b);
        let now = 1_000_000 * SEC;
        for i in 0..b.burst {
            t.spend("greedy", &jti(i as usize), now).expect("the burst");
        }
        let refused = t.spend("greedy", &jti(999), now).expect_err("spent");
        assert_eq!(refused, Refusal::InstanceBudget { retry_after: 30 });
        // Another instance is untouched.
        t.spend("quiet", &jti(1000), now).expect("its own budget");
        // One comes back after the interval.
        t.spend("greedy", &jti(1001), now + 30 * SEC)
            .expect("refilled one");
        assert!(t.spend("greedy", &jti(1002), now + 30 * SEC).is_err());
    }

    #[test]
    fn replays_are_refused_while_valid_and_cost_nothing() {
        let t = Tenants::new(Budget {
            burst: 1,
            interval: Duration::from_secs(60),
        });
        let now = 1_000_000 * SEC;
        let once = vec![("0123456789abcdef".to_owned(), 1_000_100)];
        t.spend("a", &once, now).expect("first use");
        assert_eq!(
            t.check_replay("0123456789abcdef", now),
            Err(Refusal::Replay)
        );
        assert_eq!(t.spend("b", &once, now), Err(Refusal::Replay));
        // Past its exp it is forgotten (and could no longer be used anyway).
        let later = 1_000_200 * SEC;
        assert_eq!(t.check_replay("0123456789abcdef", later), Ok(()));
        t.spend("c", &[], later + SWEEP_MS).expect("sweep");
        assert_eq!(t.len().1, 0);
    }

    #[test]
    fn the_global_caps_are_the_last_resort_and_answer_busy() {
        let t = Tenants::with_caps(Budget::default(), 2, 3);
        let now = 1_000_000 * SEC;
        t.spend("a", &jti(1), now).unwrap();
        t.spend("b", &jti(2), now).unwrap();
        // A third instance: no room to count it.
        assert_eq!(t.spend("c", &jti(3), now), Err(Refusal::Busy));
        // Known instances go on, until the assertions remembered reach their cap.
        t.spend("a", &jti(4), now).unwrap();
        assert_eq!(t.spend("b", &jti(5), now), Err(Refusal::Busy));
        let r = Refusal::Busy.response();
        assert_eq!(r.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[http::header::RETRY_AFTER], "1");
    }

    #[test]
    fn the_memory_per_instance_is_bounded_and_swept() {
        let b = Budget {
            burst: 5,
            interval: Duration::from_secs(100),
        };
        assert_eq!(b.max_remembered(), 9);
        let t = Tenants::new(b);
        let now = 1_000_000 * SEC;
        // Several assertions per request (two proofs could carry two): the cap bites before
        // the bucket does.
        let mut ok = 0;
        for i in 0..5 {
            let five: Vec<(String, i64)> = (0..5).flat_map(|j| jti(i * 5 + j)).collect();
            if t.spend("one", &five, now).is_ok() {
                ok += 1;
            }
        }
        assert_eq!(ok, 1);
        let four: Vec<(String, i64)> = (100..104).flat_map(jti).collect();
        t.spend("one", &four, now).expect("up to the cap");
        assert_eq!(t.len().1, 9);
        assert!(matches!(
            t.spend("one", &jti(200), now),
            Err(Refusal::InstanceBudget { .. })
        ));
        // Another tenant is not refused for it.
        t.spend("other", &jti(usize::MAX), now + 5000)
            .expect("its own");
        // Once the assertions expire, both are forgotten.
        t.spend("late", &[], (1_000_000 + 301) * SEC + SWEEP_MS)
            .expect("sweep");
        assert_eq!(t.len(), (1, 0));
    }
}

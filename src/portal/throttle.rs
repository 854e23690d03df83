//! Failed sign-ins slow down the next attempts: exponential back-off, bounded, in memory.
//!
//! Every sign-in (the form and API clients' Basic credentials alike) calls
//! [`Throttle::begin`] before any store lookup or hashing, and reports a success. Three
//! counters each allow a number of failures, then make every further attempt wait 1 s,
//! doubling with each failure, never more than `max_delay`:
//!
//! - per **user name and client address** (`failures`, tight): guessing one account from one
//!   place;
//! - per **client address**, whatever the user name (`address_failures`, looser, since many
//!   people may share an office's address): trying many accounts from one place;
//! - per **user name**, whatever the address (`user_failures`), **except from addresses the
//!   user signed in from lately**: guessing one account from many places.
//!
//! Why not simply per user name: then anyone who knows a name could keep its owner out, for
//! as long as they keep failing. Here the owner is only ever kept out by failures made from
//! their own address, or, on a new address, by a distributed attack on their account; and
//! then for at most `max_delay` after the last failure (attempts refused while waiting cost
//! no hashing and are not counted, so they do not lengthen the wait).
//!
//! An attempt counts as a failure from the moment it begins, and a success takes it back:
//! otherwise many attempts sent at once would all be checked before the first failure was
//! counted, and a burst would get round the back-off. A success also clears that user's
//! counter at that address, but never the address's or the user's failures (an attacker with
//! one good account could otherwise reset them at will).
//!
//! User names are counted whether or not they exist, so the throttle tells nobody which
//! users exist, and with ASCII letters folded to lower case: the sign-in finds
//! `Ann@Example.org` under `ann@example.org` (self-registered names), so each case variant
//! must count against the same user, not get free failures of its own. IPv6 addresses count by their /64, which one client usually owns
//! whole. Memory is bounded: each counter is a moka cache of at most [`CAPACITY`] entries,
//! forgotten a while after the last failure.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use moka::ops::compute::Op;
use moka::sync::Cache;

use crate::config::SigninThrottle;
use crate::crypto::IdHash;

/// Most entries in each counter; the least used are dropped first when it is full.
pub const CAPACITY: u64 = 65_536;

/// How long an address where a user signed in exempts them from the per-user counter.
const KNOWN_ADDRESS_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Which counter made an attempt wait, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    UserAtAddress,
    Address,
    User,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::UserAtAddress => "user name and address",
            Limit::Address => "address",
            Limit::User => "user name",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    /// When the last failure was counted: the wait runs from there.
    last: Instant,
}

struct Counter {
    limit: Limit,
    free: u32,
    max_delay: Duration,
    records: Cache<IdHash, Record>,
}

pub struct Throttle {
    pair: Counter,
    address: Counter,
    user: Counter,
    /// (user name, address) pairs that signed in lately: exempt from the per-user counter.
    known: Cache<IdHash, ()>,
    /// Makes [`Throttle::begin`]'s look and count one step: without it, attempts beginning
    /// at the same moment could all see the last free failure and all be checked.
    beginning: std::sync::Mutex<()>,
}

/// The keys of one attempt in each counter.
struct Keys {
    pair: IdHash,
    address: IdHash,
    user: IdHash,
}

impl Keys {
    fn of(user: &str, ip: IpAddr) -> Keys {
        let ip = address_bytes(ip);
        let folded = user.to_ascii_lowercase();
        let name = folded.as_bytes();
        let len = (name.len() as u64).to_be_bytes();
        let hash = |parts: &[&[u8]]| IdHash::of(&parts.concat());
        Keys {
            pair: hash(&[b"pair", &len, name, &ip]),
            address: hash(&[b"addr", &ip]),
            user: hash(&[b"user", name]),
        }
    }
}

/// The part of an address one client controls: IPv4 whole, IPv6 by its /64.
pub(super) fn address_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.octets().to_vec(),
            None => v6.octets()[..8].to_vec(),
        },
    }
}

/// The wait after `failures`, once `free` failures were allowed: 1 s after the `free`-th,
/// doubling with each one after, at most `max`.
pub fn delay(failures: u32, free: u32, max: Duration) -> Duration {
    if failures < free {
        return Duration::ZERO;
    }
    let doublings = (failures - free).min(32);
    Duration::from_secs(1u64 << doublings).min(max)
}

impl Counter {
    fn new(limit: Limit, free: u32, max_delay: Duration, forget: Duration) -> Self {
        Counter {
            limit,
            free,
            max_delay,
            records: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(forget)
                .build(),
        }
    }

    fn until(&self, r: &Record) -> Instant {
        r.last + delay(r.failures, self.free, self.max_delay)
    }

    fn wait(&self, key: &IdHash, now: Instant) -> Option<Duration> {
        let until = self.until(&self.records.get(key)?);
        (until > now).then(|| until - now)
    }

    /// Count a failure.
    fn add(&self, key: IdHash, now: Instant) {
        self.records.entry(key).and_upsert_with(|old| Record {
            failures: old.map_or(0, |e| e.value().failures).saturating_add(1),
            last: now,
        });
    }

    /// Take back one failure (counted when an attempt began that then succeeded).
    fn refund(&self, key: IdHash) {
        self.records.entry(key).and_compute_with(|old| match old {
            Some(e) if e.value().failures > 1 => Op::Put(Record {
                failures: e.value().failures - 1,
                ..*e.value()
            }),
            Some(_) => Op::Remove,
            None => Op::Nop,
        });
    }
}

impl Throttle {
    pub fn new(config: &SigninThrottle) -> Self {
        // Forget a counter well after its longest wait, so that an attacker cannot start
        // afresh by pausing for one `max_delay`.
        let forget = (config.max_delay * 4).max(Duration::from_secs(3600));
        let counter = |limit, free| Counter::new(limit, free, config.max_delay, forget);
        Throttle {
            pair: counter(Limit::UserAtAddress, config.failures),
            address: counter(Limit::Address, config.address_failures),
            user: counter(Limit::User, config.user_failures),
            known: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(KNOWN_ADDRESS_TTL)
                .build(),
            beginning: std::sync::Mutex::new(()),
        }
    }

    fn counters<'a>(&'a self, keys: &'a Keys) -> [(&'a Counter, &'a IdHash); 3] {
        [
            (&self.pair, &keys.pair),
            (&self.address, &keys.address),
            (&self.user, &keys.user),
        ]
    }

    /// Must an attempt wait now? The longest wait among the counters, and which one it is.
    pub fn check(&self, user: &str, ip: IpAddr) -> Option<(Duration, Limit)> {
        self.waits(&Keys::of(user, ip), Instant::now())
    }

    fn waits(&self, keys: &Keys, now: Instant) -> Option<(Duration, Limit)> {
        let known = self.known.contains_key(&keys.pair);
        self.counters(keys)
            .into_iter()
            .filter(|(c, _)| !(known && c.limit == Limit::User))
            .filter_map(|(c, key)| Some((c.wait(key, now)?, c.limit)))
            .max_by_key(|(wait, _)| *wait)
    }

    /// An attempt begins: refused with the wait when a counter holds it; else counted as a
    /// failure until [`Throttle::succeeded`] takes that back.
    pub fn begin(&self, user: &str, ip: IpAddr) -> Result<(), (Duration, Limit)> {
        let keys = Keys::of(user, ip);
        // Nothing under the lock can panic halfway, so a poisoned one is still sound.
        let _one_at_a_time = self.beginning.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if let Some(wait) = self.waits(&keys, now) {
            return Err(wait);
        }
        for (c, key) in self.counters(&keys) {
            c.add(*key, now);
        }
        Ok(())
    }

    /// The attempt succeeded: its failure is taken back, this user's counter at this address
    /// starts again, and the address becomes one of theirs.
    pub fn succeeded(&self, user: &str, ip: IpAddr) {
        let keys = Keys::of(user, ip);
        self.pair.records.invalidate(&keys.pair);
        self.address.refund(keys.address);
        self.user.refund(keys.user);
        self.known.insert(keys.pair, ());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(failures: u32, address: u32, user: u32) -> Throttle {
        Throttle::new(&SigninThrottle {
            failures,
            address_failures: address,
            user_failures: user,
            max_delay: Duration::from_secs(60),
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Attempts beginning at the same moment on many threads: exactly the free failures
    /// are let through, never one more.
    #[test]
    fn simultaneous_attempts_never_outrun_the_count() {
        for _ in 0..200 {
            let t = throttle(3, 100, 100);
            let start = std::sync::Barrier::new(8);
            let passed = std::thread::scope(|s| {
                let attempts: Vec<_> = (0..8)
                    .map(|_| {
                        s.spawn(|| {
                            start.wait();
                            t.begin("alice", ip("192.0.2.1")).is_ok()
                        })
                    })
                    .collect();
                attempts
                    .into_iter()
                    .map(|a| a.join().unwrap())
                    .filter(|ok| *ok)
                    .count()
            });
            assert_eq!(passed, 3);
        }
    }

    /// 1 s after the allowed failures, doubling, capped.
    #[test]
    fn delay_doubles_up_to_the_cap() {
        let max = Duration::from_secs(60);
        let secs: Vec<u64> = (0..10).map(|f| delay(f, 3, max).as_secs()).collect();
        assert_eq!(secs, [0, 0, 0, 1, 2, 4, 8, 16, 32, 60]);
        assert_eq!(delay(u32::MAX, 1, max), max);
    }

    fn fail(t: &Throttle, user: &str, ip: IpAddr) {
        t.begin(user, ip).expect("not held yet");
    }

    /// The per-user-and-address counter waits after its failures; other users and other
    /// addresses are not held by it; a success starts it again.
    #[test]
    fn pair_counter() {
        let t = throttle(2, 100, 100);
        let a = ip("192.0.2.1");
        fail(&t, "alice", a);
        assert!(t.check("alice", a).is_none());
        fail(&t, "alice", a);
        let (wait, limit) = t.check("alice", a).unwrap();
        assert_eq!((wait.as_secs(), limit), (0, Limit::UserAtAddress));
        assert!(wait > Duration::from_millis(900));
        assert_eq!(t.begin("alice", a).unwrap_err().1, Limit::UserAtAddress);
        assert!(t.check("bob", a).is_none());
        assert!(t.check("alice", ip("192.0.2.2")).is_none());
        t.succeeded("alice", a);
        assert!(t.check("alice", a).is_none());
    }

    /// Attempts still being checked count already: a burst cannot outrun the back-off.
    #[test]
    fn attempts_in_flight_count() {
        let t = throttle(3, 100, 100);
        let a = ip("192.0.2.1");
        let begun = (0..10).filter(|_| t.begin("alice", a).is_ok()).count();
        assert_eq!(begun, 3);
    }

    /// A success takes back its own count from the address and user counters.
    #[test]
    fn success_is_not_a_failure() {
        let t = throttle(100, 2, 2);
        let a = ip("192.0.2.1");
        for _ in 0..5 {
            t.begin("alice", a).unwrap();
            t.succeeded("alice", a);
        }
        fail(&t, "bob", a);
        assert!(t.check("carol", a).is_none(), "one failure at this address");
    }

    /// The per-address counter holds every user name at that address, and no other address.
    #[test]
    fn address_counter() {
        let t = throttle(100, 3, 100);
        let a = ip("2001:db8::1");
        for name in ["a", "b", "c"] {
            fail(&t, name, a);
        }
        assert_eq!(t.check("d", a).unwrap().1, Limit::Address);
        // The same /64 is the same client; another /64 is not.
        assert!(t.check("d", ip("2001:db8::ffff")).is_some());
        assert!(t.check("d", ip("2001:db8:0:1::1")).is_none());
        assert!(t.check("d", ip("192.0.2.1")).is_none());
    }

    /// The per-user counter holds that user everywhere except where they signed in lately.
    #[test]
    fn user_counter_spares_known_addresses() {
        let t = throttle(100, 100, 3);
        let home = ip("192.0.2.10");
        t.begin("alice", home).unwrap();
        t.succeeded("alice", home);
        for i in 1..=3 {
            fail(&t, "alice", ip(&format!("198.51.100.{i}")));
        }
        assert_eq!(
            t.check("alice", ip("198.51.100.99")).unwrap().1,
            Limit::User
        );
        assert!(t.check("alice", home).is_none(), "the owner's address");
        assert!(t.check("bob", ip("198.51.100.99")).is_none());
    }

    /// Unknown and known user names are counted alike (the throttle knows no users).
    #[test]
    fn names_are_opaque() {
        let t = throttle(1, 100, 100);
        let a = ip("192.0.2.1");
        fail(&t, "alice", a);
        fail(&t, "no-such-user", a);
        assert!(t.begin("alice", a).is_err());
        assert!(t.begin("no-such-user", a).is_err());
    }

    /// Case variants of one name share its counters: the sign-in finds `Ann@Example.org`
    /// under `ann@example.org`, so `aNn@…`, `ANn@…` must not each get free failures.
    #[test]
    fn case_variants_count_as_one_name() {
        let t = throttle(2, 100, 100);
        let a = ip("192.0.2.1");
        fail(&t, "Ann@Example.org", a);
        fail(&t, "aNn@example.org", a);
        assert_eq!(
            t.begin("ANN@EXAMPLE.ORG", a).unwrap_err().1,
            Limit::UserAtAddress
        );
        let t = throttle(100, 100, 2);
        fail(&t, "Ann@Example.org", ip("198.51.100.1"));
        fail(&t, "aNn@example.org", ip("198.51.100.2"));
        assert_eq!(
            t.check("anN@example.org", ip("198.51.100.3")).unwrap().1,
            Limit::User
        );
    }
}

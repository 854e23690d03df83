//! The gate's LOCAL table of active users: a moka cache keyed by the hash of the site
//! cookie (or of an API client's Basic credential), whose entries each live for *that
//! user's* idle timeout minus `cache_margin`, renewed on every use (per-entry expiry, not
//! one global TTL), and never past the session's absolute end.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::HeaderValue;
use moka::Expiry;
use moka::sync::Cache;

use crate::central::Admission;
use crate::config::Level;
use crate::crypto::IdHash;
use crate::crypto::ids::KeyedIdHashBuilder;

/// One admitted browser on one site. Header values are built once, at admission, so the
/// hot path only clones them (a reference-count bump).
#[derive(Debug)]
pub struct Entry {
    /// Index of the site this entry admits to; a cookie is good for its own site only.
    pub site: usize,
    pub level: Level,
    pub user: HeaderValue,
    pub account: HeaderValue,
    /// On a derived site: `Basic base64(user ":" SP)`, built once and marked sensitive (its
    /// Debug prints `Sensitive`). Dropped with the entry.
    /// Boxed: most sites have none, and every entry pays for the field (a table may hold
    /// millions).
    pub backend_authorization: Option<Box<HeaderValue>>,
    /// How long the entry lives after its last use.
    ttl: Duration,
    /// The session's absolute end.
    deadline: Instant,
    /// Used since the last sync? Reported to the portal, which then touches the session.
    used: AtomicBool,
}

impl Entry {
    /// Build an entry; `None` when the user or account cannot be a header value (or, with a
    /// site password, cannot be put in a Basic credential).
    pub fn new(site: usize, a: &Admission, cache_margin: Duration) -> Option<Entry> {
        let backend_authorization = match &a.site_password {
            Some(sp) => Some(Box::new(crate::crypto::derived::basic_authorization(
                &a.user,
                sp.expose(),
            )?)),
            None => None,
        };
        let now = Instant::now();
        let ttl = entry_ttl(a.idle_timeout, a.remaining, cache_margin);
        let user = HeaderValue::from_str(&a.user).ok()?;
        // Most accounts are named after their user: share the value (one allocation, one
        // reference count touched per request instead of two).
        let account = if a.account == a.user {
            user.clone()
        } else {
            HeaderValue::from_str(&a.account).ok()?
        };
        Some(Entry {
            site,
            level: a.level,
            user,
            account,
            backend_authorization,
            ttl,
            deadline: now + a.remaining,
            // The portal touched the session as it admitted it; the first use is news.
            used: AtomicBool::new(false),
        })
    }

    /// The level as a header value: shared prebuilt values for the usual levels, so the
    /// entry need not carry one.
    pub fn level_header(&self) -> std::borrow::Cow<'static, HeaderValue> {
        static COMMON: std::sync::LazyLock<Vec<HeaderValue>> =
            std::sync::LazyLock::new(|| (0..=255u32).map(HeaderValue::from).collect());
        match COMMON.get(self.level.0 as usize) {
            Some(v) => std::borrow::Cow::Borrowed(v),
            None => std::borrow::Cow::Owned(HeaderValue::from(self.level.0)),
        }
    }

    fn life_from(&self, now: Instant) -> Duration {
        self.ttl.min(self.deadline.saturating_duration_since(now))
    }

    /// The same entry for a user who chose another idle timeout (SPEC §6): it then lives
    /// the new timeout minus `cache_margin` from now. Not marked used (a fresh mark, so
    /// the next use is reported).
    fn with_idle_timeout(&self, idle_timeout: Duration, cache_margin: Duration) -> Entry {
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        Entry {
            site: self.site,
            level: self.level,
            user: self.user.clone(),
            account: self.account.clone(),
            backend_authorization: self.backend_authorization.clone(),
            ttl: entry_ttl(idle_timeout, remaining, cache_margin),
            deadline: self.deadline,
            used: AtomicBool::new(false),
        }
    }
}

/// How long an entry lives after its last use: the user's idle timeout minus the margin
/// (the portal has the last word), or, with no idle limit, until the session's end. An idle
/// timeout not longer than the margin makes an entry that lives for no time: the gate then
/// asks the portal at every request.
fn entry_ttl(idle_timeout: Duration, remaining: Duration, cache_margin: Duration) -> Duration {
    if idle_timeout.is_zero() {
        remaining
    } else {
        idle_timeout.saturating_sub(cache_margin)
    }
}

struct PerEntryExpiry;

impl Expiry<IdHash, Arc<Entry>> for PerEntryExpiry {
    fn expire_after_create(&self, _: &IdHash, e: &Arc<Entry>, now: Instant) -> Option<Duration> {
        Some(e.life_from(now))
    }

    /// Renewing an entry moves it in moka's timer wheel, which with a large table costs
    /// cache misses on every request. So a busy entry is renewed only once it has lost a
    /// sixteenth of its life: it may then expire up to that sixteenth early, never late, and
    /// an early expiry only makes the gate ask the portal again.
    fn expire_after_read(
        &self,
        _: &IdHash,
        e: &Arc<Entry>,
        now: Instant,
        left: Option<Duration>,
        _: Instant,
    ) -> Option<Duration> {
        let full = e.life_from(now);
        match left {
            Some(left) if left <= full && left >= full - full / 16 => Some(left),
            _ => Some(full),
        }
    }

    fn expire_after_update(
        &self,
        _: &IdHash,
        e: &Arc<Entry>,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(e.life_from(now))
    }
}

/// Entries first used since the last sync (see [`Table::take_used`]).
type UsedList = Vec<(IdHash, Arc<Entry>)>;

#[derive(Clone)]
pub struct Table {
    cache: Cache<IdHash, Arc<Entry>, KeyedIdHashBuilder>,
    /// Entries first used since the last sync, so a sync costs what was used, not a walk
    /// over the whole table.
    used: Arc<Mutex<UsedList>>,
}

impl Table {
    pub fn new(capacity: u64) -> Self {
        Table {
            cache: Cache::builder()
                .max_capacity(capacity)
                .expire_after(PerEntryExpiry)
                .build_with_hasher(KeyedIdHashBuilder::default()),
            used: Arc::default(),
        }
    }

    fn used_list(&self) -> std::sync::MutexGuard<'_, UsedList> {
        // A push or a swap cannot leave the list half-changed.
        self.used.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Look up and renew an entry, marking it used.
    pub fn get(&self, key: &IdHash) -> Option<Arc<Entry>> {
        let e = self.cache.get(key)?;
        // A plain load first: the common case (already marked) writes nothing.
        if !e.used.load(Ordering::Relaxed) && !e.used.swap(true, Ordering::Relaxed) {
            self.used_list().push((*key, e.clone()));
        }
        Some(e)
    }

    pub fn insert(&self, key: IdHash, entry: Entry) -> Arc<Entry> {
        let e = Arc::new(entry);
        self.cache.insert(key, e.clone());
        e
    }

    pub fn remove(&self, key: &IdHash) {
        self.cache.invalidate(key);
    }

    /// The user of this entry chose a new idle timeout: recompute its expiry (from now),
    /// keeping everything else. Atomic per key, so an entry removed or replaced meanwhile
    /// is left alone rather than brought back.
    pub fn set_idle_timeout(&self, key: &IdHash, idle_timeout: Duration, cache_margin: Duration) {
        use moka::ops::compute::Op;
        let _ = self
            .cache
            .entry(*key)
            .and_compute_with(|current| match current {
                Some(e) => Op::Put(Arc::new(
                    e.into_value().with_idle_timeout(idle_timeout, cache_margin),
                )),
                None => Op::Nop,
            });
    }

    pub fn clear(&self) {
        self.cache.invalidate_all();
    }

    /// Keys used since the last call, clearing their marks. Marks are cleared under the
    /// list's lock, so a use racing with this call lands in the next report.
    pub fn take_used(&self) -> Vec<IdHash> {
        let mut list = self.used_list();
        list.iter()
            .for_each(|(_, e)| e.used.store(false, Ordering::Relaxed));
        std::mem::take(&mut *list)
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    pub fn len(&self) -> u64 {
        self.cache.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Apply pending expiries and counts (moka does this lazily).
    pub fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(idle: u64, remaining: u64) -> Admission {
        Admission {
            user: "alice".into(),
            account: "alice".into(),
            level: Level(3),
            idle_timeout: Duration::from_secs(idle),
            remaining: Duration::from_secs(remaining),
            site_password: None,
        }
    }

    /// An entry lives idle_timeout − margin, capped by the absolute end.
    #[test]
    fn entry_lifetime() {
        let e = Entry::new(0, &admission(900, 3600), Duration::from_secs(60)).unwrap();
        assert_eq!(e.ttl, Duration::from_secs(840));
        let now = Instant::now();
        assert!(e.life_from(now) <= Duration::from_secs(840));
        let e = Entry::new(0, &admission(900, 100), Duration::from_secs(60)).unwrap();
        assert!(e.life_from(Instant::now()) <= Duration::from_secs(100));
        let e = Entry::new(0, &admission(0, 500), Duration::from_secs(60)).unwrap();
        assert_eq!(
            e.ttl,
            Duration::from_secs(500),
            "no idle limit: the absolute end rules"
        );
    }

    /// Entries expire on their own schedule, per entry.
    #[test]
    fn per_entry_expiry() {
        let t = Table::new(100);
        let short = IdHash([1; 32]);
        let long = IdHash([2; 32]);
        let mut a = admission(1, 10);
        a.idle_timeout = Duration::from_millis(1100);
        t.insert(short, Entry::new(0, &a, Duration::from_secs(1)).unwrap());
        t.insert(
            long,
            Entry::new(0, &admission(900, 3600), Duration::from_secs(60)).unwrap(),
        );
        std::thread::sleep(Duration::from_millis(300));
        assert!(t.get(&short).is_none(), "100 ms entry gone");
        assert!(t.get(&long).is_some());
    }

    /// The account header is the account's name, whether or not it is the user's.
    #[test]
    fn account_header_values() {
        let mut a = admission(900, 3600);
        let e = Entry::new(0, &a, Duration::from_secs(60)).unwrap();
        assert_eq!(e.account.as_bytes(), b"alice");
        a.account = "acme".into();
        let e = Entry::new(0, &a, Duration::from_secs(60)).unwrap();
        assert_eq!(
            (e.user.as_bytes(), e.account.as_bytes()),
            (&b"alice"[..], &b"acme"[..])
        );
    }

    /// The level header is the level in decimal, shared or not.
    #[test]
    fn level_header_values() {
        for level in [0, 3, 255, 256, 4_000_000] {
            let mut a = admission(900, 3600);
            a.level = Level(level);
            let e = Entry::new(0, &a, Duration::from_secs(60)).unwrap();
            assert_eq!(e.level_header().as_bytes(), level.to_string().as_bytes());
        }
    }

    /// Used marks are reported once.
    #[test]
    fn used_marks() {
        let t = Table::new(100);
        let k = IdHash([3; 32]);
        t.insert(
            k,
            Entry::new(0, &admission(900, 3600), Duration::from_secs(60)).unwrap(),
        );
        assert!(t.take_used().is_empty(), "admission itself is not news");
        t.get(&k);
        t.get(&k);
        assert_eq!(t.take_used(), vec![k], "reported once per sync");
        assert!(t.take_used().is_empty());
        t.get(&k);
        assert_eq!(t.take_used(), vec![k]);
    }

    /// A site password becomes a sensitive Basic header that Debug does not show.
    #[test]
    fn site_password_header() {
        let mut a = admission(900, 3600);
        let sp = crate::crypto::derived::SitePassword::derive("master", "app");
        a.site_password = Some(sp.clone());
        let e = Entry::new(0, &a, Duration::from_secs(60)).unwrap();
        let h = e.backend_authorization.as_ref().unwrap();
        assert!(h.is_sensitive());
        let debug = format!("{e:?} {a:?}");
        assert!(!debug.contains(sp.expose()), "{debug}");
        assert!(!debug.contains(h.to_str().unwrap()), "{debug}");
    }

    /// A new idle timeout recomputes an entry's expiry: a long-lived entry becomes a short
    /// one (and the reverse), keeping its identity.
    #[test]
    fn idle_timeout_recomputes_expiry() {
        let t = Table::new(100);
        let k = IdHash([4; 32]);
        let margin = Duration::from_secs(1);
        t.insert(k, Entry::new(0, &admission(900, 3600), margin).unwrap());
        t.set_idle_timeout(&k, Duration::from_millis(1200), margin);
        let e = t.cache.get(&k).expect("kept, not revoked");
        assert_eq!(e.ttl, Duration::from_millis(200));
        assert_eq!(e.user.as_bytes(), b"alice");
        std::thread::sleep(Duration::from_millis(350));
        assert!(t.get(&k).is_none(), "expired on the new schedule");

        t.insert(
            k,
            Entry::new(0, &admission(1, 3600), Duration::ZERO).unwrap(),
        );
        t.set_idle_timeout(&k, Duration::from_secs(900), margin);
        std::thread::sleep(Duration::from_millis(1100));
        assert!(t.get(&k).is_some(), "lengthened too");
        t.set_idle_timeout(&IdHash([5; 32]), Duration::from_secs(9), margin);
        assert!(t.cache.get(&IdHash([5; 32])).is_none(), "no entry made up");
    }

    /// User names that cannot be header values are refused, not mangled.
    #[test]
    fn bad_header_value_refused() {
        let mut a = admission(900, 3600);
        a.user = "bad\nname".into();
        assert!(Entry::new(0, &a, Duration::from_secs(60)).is_none());
    }
}

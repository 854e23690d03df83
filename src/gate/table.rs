//! The gate's LOCAL table of active users: a moka cache keyed by the hash of the site
//! cookie (or of an API client's Basic credential), whose entries each live for *that
//! user's* idle timeout minus `cache_margin`, renewed on every use (per-entry expiry, not
//! one global TTL), and never past the session's absolute end.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
    pub level_header: HeaderValue,
    pub account: HeaderValue,
    /// On a derived site: `Basic base64(user ":" SP)`, built once and marked sensitive (its
    /// Debug prints `Sensitive`). Dropped with the entry.
    pub backend_authorization: Option<HeaderValue>,
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
            Some(sp) => Some(crate::crypto::derived::basic_authorization(
                &a.user,
                sp.expose(),
            )?),
            None => None,
        };
        let now = Instant::now();
        let ttl = if a.idle_timeout.is_zero() {
            a.remaining
        } else {
            a.idle_timeout.saturating_sub(cache_margin)
        };
        Some(Entry {
            site,
            level: a.level,
            user: HeaderValue::from_str(&a.user).ok()?,
            level_header: HeaderValue::from(a.level.0),
            account: HeaderValue::from_str(&a.account).ok()?,
            backend_authorization,
            ttl,
            deadline: now + a.remaining,
            used: AtomicBool::new(true),
        })
    }

    /// Mark as used; a plain load first so the common case does not write the cache line.
    pub fn touch(&self) {
        if !self.used.load(Ordering::Relaxed) {
            self.used.store(true, Ordering::Relaxed);
        }
    }

    fn life_from(&self, now: Instant) -> Duration {
        self.ttl.min(self.deadline.saturating_duration_since(now))
    }
}

struct PerEntryExpiry;

impl Expiry<IdHash, Arc<Entry>> for PerEntryExpiry {
    fn expire_after_create(&self, _: &IdHash, e: &Arc<Entry>, now: Instant) -> Option<Duration> {
        Some(e.life_from(now))
    }

    fn expire_after_read(
        &self,
        _: &IdHash,
        e: &Arc<Entry>,
        now: Instant,
        _: Option<Duration>,
        _: Instant,
    ) -> Option<Duration> {
        Some(e.life_from(now))
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

#[derive(Clone)]
pub struct Table {
    cache: Cache<IdHash, Arc<Entry>, KeyedIdHashBuilder>,
}

impl Table {
    pub fn new(capacity: u64) -> Self {
        Table {
            cache: Cache::builder()
                .max_capacity(capacity)
                .expire_after(PerEntryExpiry)
                .build_with_hasher(KeyedIdHashBuilder::default()),
        }
    }

    /// Look up and renew an entry.
    pub fn get(&self, key: &IdHash) -> Option<Arc<Entry>> {
        let e = self.cache.get(key)?;
        e.touch();
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

    pub fn clear(&self) {
        self.cache.invalidate_all();
    }

    /// Keys used since the last call, clearing their marks.
    pub fn take_used(&self) -> Vec<IdHash> {
        self.cache
            .iter()
            .filter(|(_, e)| e.used.swap(false, Ordering::Relaxed))
            .map(|(k, _)| *k)
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

    /// Used marks are reported once.
    #[test]
    fn used_marks() {
        let t = Table::new(100);
        let k = IdHash([3; 32]);
        t.insert(
            k,
            Entry::new(0, &admission(900, 3600), Duration::from_secs(60)).unwrap(),
        );
        assert_eq!(t.take_used(), vec![k]);
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

    /// User names that cannot be header values are refused, not mangled.
    #[test]
    fn bad_header_value_refused() {
        let mut a = admission(900, 3600);
        a.user = "bad\nname".into();
        assert!(Entry::new(0, &a, Duration::from_secs(60)).is_none());
    }
}

//! The gate's LOCAL table of active users, keyed by the hash of the site cookie (or of an
//! API client's Basic credential). Each entry lives for *that user's* idle timeout minus
//! `cache_margin`, renewed by use (per-entry expiry, not one global TTL), and never past
//! the session's absolute end.
//!
//! Built for this one job rather than on a general cache: the table may hold millions of
//! entries, and every proxied request looks one up. An entry's expiry time sits beside it in
//! its shard's map (an atomic, renewed in place under the shard's shared lock), so a lookup
//! touches the map and the entry, and nothing else: no access-order list, no timer wheel, no
//! read log. An expired entry is never returned; its memory is reclaimed by
//! [`Table::sweep_some`], which each sync runs over a sixteenth of the shards, reading the
//! maps only (bench/README.md "A full table": moka's
//! bookkeeping cost about 570 bytes of memory per entry and its cache misses 14 % of the CPU
//! per request with a million entries).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use http::HeaderValue;

use crate::central::{Admission, Usage};
use crate::config::Level;
use crate::crypto::IdHash;
use crate::crypto::ids::KeyedIdHashBuilder;

/// One admitted browser on one site. Header values are built once, at admission, so the
/// hot path only clones them (a reference-count bump).
///
/// `repr(C)`, fields in the order a request touches them: with a million entries, each
/// cache line of an entry a request reads is a likely miss. With the `Arc`'s two counts
/// before it, an entry takes 128 bytes, and mimalloc starts its 128-byte blocks on a cache
/// line: what every lookup and every proxied request reads (counts, used mark, level, site,
/// request counter, life, bytes out) is one line, the user's name the start of the second,
/// and what only a request body, a derived site or a revocation reads comes last. (At 144
/// bytes, half the entries began mid-line and a request read three lines of them.)
#[derive(Debug)]
#[repr(C)]
pub struct Entry {
    /// Used since the last sync? Reported to the portal, which then touches the session.
    used: AtomicBool,
    pub level: Level,
    /// Index of the site this entry admits to; a cookie is good for its own site only.
    site: u32,
    /// Traffic since the last sync (SPEC §6 usage), taken by [`Table::take_used`]. Relaxed
    /// atomics: one uncontended add per request or body frame, no lock, no allocation.
    /// Requests fit 32 bits: no entry sees four billion requests between two syncs.
    requests: AtomicU32,
    /// How long the entry lives after its last use, in milliseconds (read by every lookup,
    /// to renew; milliseconds are the table's clock).
    ttl_ms: u64,
    /// The session's absolute end (likewise).
    deadline: Instant,
    bytes_out: AtomicU64,
    user: Name,
    /// The account's name when it is not the user's (most accounts are named after their
    /// user); boxed, so an entry pays 8 bytes for it. See [`Entry::account`].
    own_account: Option<Box<Name>>,
    bytes_in: AtomicU64,
    /// On a derived site: `Basic base64(user ":" SP)`, built once and marked sensitive (its
    /// Debug prints `Sensitive`). Dropped with the entry.
    /// Boxed: most sites have none, and every entry pays for the field (a table may hold
    /// millions).
    pub backend_authorization: Option<Box<HeaderValue>>,
    /// The portal's revocation-log position of the answer that made this entry (read at
    /// revocation only).
    seq: u64,
}

impl Entry {
    /// Build an entry; `None` when the user or account cannot be a header value (or, with a
    /// site password, cannot be put in a Basic credential, or the site index does not fit
    /// 32 bits, which no config can make): the client is then unknown here, never admitted.
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
        let user = Name::new(&a.user)?;
        let own_account = if a.account == a.user {
            None
        } else {
            Some(Box::new(Name::new(&a.account)?))
        };
        Some(Entry {
            // Sites are counted in a config file: far fewer than four billion.
            site: u32::try_from(site).ok()?,
            level: a.level,
            user,
            own_account,
            backend_authorization,
            ttl_ms: millis(ttl),
            deadline: now + a.remaining,
            // The portal touched the session as it admitted it; the first use is news.
            used: AtomicBool::new(false),
            requests: AtomicU32::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            seq: a.seq,
        })
    }

    /// One admitted request passed on to the backend.
    pub fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Request body bytes read by the backend.
    pub fn count_in(&self, bytes: usize) {
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Response body bytes on their way to the client.
    pub fn count_out(&self, bytes: usize) {
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// The traffic counted since the last call, resetting the counters.
    fn take_usage(&self) -> Usage {
        Usage {
            requests: u64::from(self.requests.swap(0, Ordering::Relaxed)),
            bytes_in: self.bytes_in.swap(0, Ordering::Relaxed),
            bytes_out: self.bytes_out.swap(0, Ordering::Relaxed),
        }
    }

    /// The level as a header value: prebuilt values for the usual levels, so the entry need
    /// not carry one. Static ones, whose clone is a plain copy: a clone of a shared value
    /// would write a reference count that every request on every core writes.
    pub fn level_header(&self) -> std::borrow::Cow<'static, HeaderValue> {
        static COMMON: std::sync::LazyLock<Vec<HeaderValue>> = std::sync::LazyLock::new(|| {
            (0..=255u32)
                // Leaked once per process: 256 short strings.
                .map(|l| HeaderValue::from_static(l.to_string().leak()))
                .collect()
        });
        match COMMON.get(self.level.0 as usize) {
            Some(v) => std::borrow::Cow::Borrowed(v),
            None => std::borrow::Cow::Owned(HeaderValue::from(self.level.0)),
        }
    }

    /// The user's name.
    pub fn user(&self) -> &str {
        self.user.as_str()
    }

    /// The account's name: the user's own, unless the account has another name.
    pub fn account(&self) -> &str {
        self.own_account.as_deref().unwrap_or(&self.user).as_str()
    }

    /// The user's name as a header value of the request's own (see [`Name`]).
    pub fn user_header(&self) -> Option<HeaderValue> {
        HeaderValue::from_bytes(self.user.as_bytes()).ok()
    }

    /// The account's name, likewise.
    pub fn account_header(&self) -> Option<HeaderValue> {
        let account = self.own_account.as_deref().unwrap_or(&self.user);
        HeaderValue::from_bytes(account.as_bytes()).ok()
    }

    /// Index of the site this entry admits to.
    pub fn site(&self) -> usize {
        self.site as usize
    }

    fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms)
    }

    fn life_from(&self, now: Instant) -> Duration {
        self.ttl().min(self.deadline.saturating_duration_since(now))
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
            own_account: self.own_account.clone(),
            backend_authorization: self.backend_authorization.clone(),
            ttl_ms: millis(entry_ttl(idle_timeout, remaining, cache_margin)),
            deadline: self.deadline,
            used: AtomicBool::new(false),
            // Traffic so far stays on the old entry, which the used list (or a body in
            // flight) still holds, and is reported from there.
            requests: AtomicU32::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            seq: self.seq,
        }
    }

    /// Is this [`Entry::with_idle_timeout`] of `other`: made by the same answer (same log
    /// position, same absolute end, which each new entry takes from its own clock) to the
    /// same site at the same level?
    fn is_copy_of(&self, other: &Entry) -> bool {
        self.seq == other.seq
            && self.deadline == other.deadline
            && self.site == other.site
            && self.level == other.level
    }
}

/// A user's or account's name, one that can be a header value. Short ones (nearly all) are
/// kept in the entry itself: with a million entries, a request then reads the name from a
/// cache line of the entry it has already loaded, where a `HeaderValue` would be two more
/// likely misses (its buffer, and the reference count a clone writes). Each request makes
/// its header value from it: one small allocation from the thread's own heap, and nothing
/// written that another core's requests write too.
#[derive(Debug, Clone)]
enum Name {
    Inline { len: u8, bytes: [u8; INLINE_NAME] },
    Long(Box<str>),
}

/// The longest name kept inline: the enum is then 32 bytes, a `Box<str>`'s 16 and a tag.
const INLINE_NAME: usize = 30;

impl Name {
    /// `None` when the name cannot be a header value.
    fn new(name: &str) -> Option<Name> {
        HeaderValue::from_str(name).ok()?;
        Some(match u8::try_from(name.len()) {
            Ok(len) if name.len() <= INLINE_NAME => {
                let mut bytes = [0; INLINE_NAME];
                bytes[..name.len()].copy_from_slice(name.as_bytes());
                Name::Inline { len, bytes }
            }
            _ => Name::Long(name.into()),
        })
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Name::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Name::Long(name) => name.as_bytes(),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            // Copied from a `str`, whole, so always UTF-8; the fallback cannot happen.
            Name::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            Name::Long(name) => name,
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

type UsedList = Vec<(IdHash, Arc<Entry>)>;

/// What [`Table::take_used`] keeps between syncs.
#[derive(Default)]
struct Lists {
    /// Entries first used since the last sync.
    used: UsedList,
    /// Entries a request or a streaming body still held at the last sync: their traffic
    /// may still grow without a new use marking them (a long download), so the next sync
    /// takes their counters too.
    in_flight: UsedList,
}

/// What a sync reports (see [`Table::take_used`]).
#[derive(Debug, Default)]
pub struct Taken {
    pub used: Vec<IdHash>,
    pub usage: Vec<(IdHash, Usage)>,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Shards of the table (a power of two): a lookup locks one, shared, so worker threads
/// rarely meet on a lock, and a sweep holds one at a time.
const SHARDS: usize = 64;
/// Shards swept by each [`Table::sweep_some`] (each sync): all of them every 16 syncs.
const SWEPT_PER_CALL: usize = SHARDS / 16;

/// An entry in its shard, with its key and its expiry beside it: a lookup of an expired
/// entry and a sweep read the map's own memory, not each entry's.
///
/// The shard is a set of slots, found by their key (`Borrow<IdHash>`), rather than a map
/// from key to slot: a map's bucket is the pair, which a cache-line alignment of the slot
/// alone would spread over two lines. Aligned to a cache line, a bucket of key, expiry and
/// entry is one line; at 48 bytes, half of them straddled two, and with a full table each
/// line is a likely miss.
#[repr(align(64))]
struct Slot {
    key: IdHash,
    entry: Arc<Entry>,
    /// When the entry expires, in milliseconds of the table's clock ([`Table::now_ms`]);
    /// renewed by use.
    expires: AtomicU64,
}

/// A slot is its key, as far as the set is concerned: hashed and compared as the key alone
/// (what `Borrow` requires).
impl std::hash::Hash for Slot {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

impl PartialEq for Slot {
    fn eq(&self, other: &Slot) -> bool {
        self.key == other.key
    }
}

impl Eq for Slot {}

impl std::borrow::Borrow<IdHash> for Slot {
    fn borrow(&self) -> &IdHash {
        &self.key
    }
}

type Map = HashSet<Slot, KeyedIdHashBuilder>;
type Shard = RwLock<Map>;

#[derive(Clone)]
pub struct Table {
    shards: Arc<[Shard]>,
    /// Picks a key's shard; keyed like the maps, so a user grinding cookies cannot pile
    /// keys into one shard either.
    hasher: KeyedIdHashBuilder,
    /// Most entries one shard holds: the table's capacity over the shards.
    shard_capacity: usize,
    /// The zero of the entries' expiry times.
    epoch: Instant,
    /// Entries used since the last sync (and those still in flight then), so a sync costs
    /// what was used, not a walk over the whole table.
    used: Arc<Mutex<Lists>>,
    /// See [`Table::set_renewing`].
    renew: Arc<AtomicBool>,
    /// The next shard [`Table::sweep_some`] sweeps.
    sweep_at: Arc<AtomicUsize>,
}

impl Table {
    pub fn new(capacity: u64) -> Self {
        let hasher = KeyedIdHashBuilder::default();
        let shards = (0..SHARDS)
            .map(|_| RwLock::new(HashSet::with_hasher(hasher.clone())))
            .collect();
        Table {
            shards,
            hasher,
            shard_capacity: usize::try_from(capacity)
                .unwrap_or(usize::MAX)
                .div_ceil(SHARDS)
                .max(1),
            epoch: Instant::now(),
            used: Arc::default(),
            renew: Arc::new(AtomicBool::new(true)),
            sweep_at: Arc::default(),
        }
    }

    /// Whether use renews an entry's life: on while the portal answers syncs, off while it
    /// cannot be reached (offline grace: entries then run out on their last schedule, so a
    /// user signed out meanwhile is not admitted for the whole outage).
    pub fn set_renewing(&self, on: bool) {
        self.renew.store(on, Ordering::Relaxed);
    }

    fn shard(&self, key: &IdHash) -> &Shard {
        use std::hash::BuildHasher;
        // Bits the maps use neither for a bucket (low) nor for its tag (top seven).
        let hash = self.hasher.hash_one(key);
        &self.shards[(hash >> 32) as usize % SHARDS]
    }

    /// A lock poisoned by a panic elsewhere: the maps are changed by single calls (insert,
    /// remove, retain) that leave them whole.
    fn read(shard: &Shard) -> std::sync::RwLockReadGuard<'_, Map> {
        shard.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(shard: &Shard) -> std::sync::RwLockWriteGuard<'_, Map> {
        shard.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Now, and in milliseconds of this table's clock.
    fn now_ms(&self) -> (Instant, u64) {
        let now = Instant::now();
        (now, millis(now.saturating_duration_since(self.epoch)))
    }

    fn used_list(&self) -> std::sync::MutexGuard<'_, Lists> {
        // A push or a swap cannot leave the list half-changed.
        self.used.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Look up and renew an entry, marking it used. An expired entry is not returned.
    pub fn get(&self, key: &IdHash) -> Option<Arc<Entry>> {
        let (now, now_ms) = self.now_ms();
        let e = {
            let map = Self::read(self.shard(key));
            let slot = map.get(key)?;
            let expires = slot.expires.load(Ordering::Relaxed);
            if now_ms >= expires {
                return None;
            }
            if self.renew.load(Ordering::Relaxed) {
                // Renewed only once it has lost a sixteenth of its life (or its end moved
                // closer): an entry may then expire up to that sixteenth early, never late,
                // and a busy entry is not written at every request.
                let full = millis(slot.entry.life_from(now));
                let left = expires - now_ms;
                if !(left <= full && left >= full - full / 16) {
                    slot.expires
                        .store(now_ms.saturating_add(full), Ordering::Relaxed);
                }
            }
            slot.entry.clone()
        };
        self.mark_used(key, &e);
        Some(e)
    }

    /// Does `entry` still admit under `key`: is it (or the copy [`Table::set_idle_timeout`]
    /// put in its place) the live entry there, before the session's absolute end? What an
    /// open WebSocket tunnel asks every second (`proxy::upgrade`). A look only: it neither
    /// renews the entry nor marks it used, so an open tunnel does not keep a session from
    /// idling out (like a download, see [`Table::take_used`]).
    pub fn still_admits(&self, key: &IdHash, entry: &Arc<Entry>) -> bool {
        let (now, now_ms) = self.now_ms();
        let map = Self::read(self.shard(key));
        map.get(key).is_some_and(|slot| {
            now_ms < slot.expires.load(Ordering::Relaxed)
                && now < entry.deadline
                && (Arc::ptr_eq(&slot.entry, entry) || slot.entry.is_copy_of(entry))
        })
    }

    /// Mark an entry used: the next sync reports it (and takes its traffic). For an entry
    /// admitted to serve the request at hand (a table miss), whose traffic would otherwise
    /// go unreported if the client sent nothing more.
    pub fn mark_used(&self, key: &IdHash, e: &Arc<Entry>) {
        // A plain load first: the common case (already marked) writes nothing.
        if !e.used.load(Ordering::Relaxed) && !e.used.swap(true, Ordering::Relaxed) {
            self.used_list().used.push((*key, e.clone()));
        }
    }

    /// Put an entry in, replacing any under its key; it expires its life from now. A full
    /// shard makes room among the first few entries it holds: the expired ones, or else the
    /// soonest to expire (that user's gate asks the portal again: an eviction never admits
    /// anyone).
    pub fn insert(&self, key: IdHash, entry: Entry) -> Arc<Entry> {
        self.insert_unless_revoked(key, entry, |_| None)
            .expect("nothing revoked")
    }

    /// [`Table::insert`] an entry the portal's answer made, unless `revoked_at` knows its key
    /// was revoked after that answer (a check that crossed a sign-out on its way). Asked
    /// under the shard's lock, the lock [`Table::revoke`] records a revocation under: the
    /// revocation either comes first and is seen here, or comes after and removes the entry.
    pub fn insert_unless_revoked(
        &self,
        key: IdHash,
        entry: Entry,
        revoked_at: impl FnOnce(&IdHash) -> Option<u64>,
    ) -> Option<Arc<Entry>> {
        let (now, now_ms) = self.now_ms();
        let expires = AtomicU64::new(now_ms.saturating_add(millis(entry.life_from(now))));
        let entry = Arc::new(entry);
        let mut map = Self::write(self.shard(&key));
        if revoked_at(&key).is_some_and(|at| entry.seq < at) {
            return None;
        }
        if map.len() >= self.shard_capacity && !map.contains(&key) {
            // Of a few entries, the expired ones, or else the one that would expire first:
            // a bounded cost per admission however full the shard (the sweeps take the
            // other expired entries).
            let sample: Vec<(IdHash, u64)> = map
                .iter()
                .take(16)
                .map(|slot| (slot.key, slot.expires.load(Ordering::Relaxed)))
                .collect();
            let expired: Vec<IdHash> = sample
                .iter()
                .filter(|(_, expires)| *expires <= now_ms)
                .map(|(k, _)| *k)
                .collect();
            let soonest = sample.iter().min_by_key(|(_, expires)| *expires);
            match (expired.is_empty(), soonest) {
                (false, _) => expired.iter().for_each(|k| {
                    map.remove(k);
                }),
                (true, Some((k, _))) => {
                    map.remove(k);
                }
                (true, None) => {}
            }
        }
        // `replace`, not `insert`: a set keeps the slot it has under an equal key.
        map.replace(Slot {
            key,
            entry: entry.clone(),
            expires,
        });
        Some(entry)
    }

    pub fn remove(&self, key: &IdHash) {
        Self::write(self.shard(key)).remove(key);
    }

    /// Drop the entry of a key revoked at log position `seq`, unless a newer answer of the
    /// portal made it (the session that replaced the revoked one under the same key).
    /// `remember` records the revocation for [`Table::insert_unless_revoked`], under the
    /// same lock.
    pub fn revoke(&self, key: &IdHash, seq: u64, remember: impl FnOnce()) {
        let mut map = Self::write(self.shard(key));
        remember();
        if map.get(key).is_some_and(|slot| slot.entry.seq < seq) {
            map.remove(key);
        }
    }

    /// The user of this entry chose a new idle timeout: recompute its expiry (from now),
    /// keeping everything else. Under the shard's lock, so an entry removed or replaced
    /// meanwhile is left alone rather than brought back.
    pub fn set_idle_timeout(&self, key: &IdHash, idle_timeout: Duration, cache_margin: Duration) {
        let mut map = Self::write(self.shard(key));
        let (now, now_ms) = self.now_ms();
        if map
            .get(key)
            .is_some_and(|slot| slot.expires.load(Ordering::Relaxed) <= now_ms)
        {
            // Expired, not yet swept: gone, not to be brought back with a new life.
            map.remove(key);
            return;
        }
        if let Some(slot) = map.get(key) {
            let entry = slot.entry.with_idle_timeout(idle_timeout, cache_margin);
            let life = millis(entry.life_from(now));
            map.replace(Slot {
                key: *key,
                entry: Arc::new(entry),
                expires: AtomicU64::new(now_ms.saturating_add(life)),
            });
        }
    }

    pub fn clear(&self) {
        for shard in self.shards.iter() {
            Self::write(shard).clear();
        }
    }

    /// Drop the expired entries of the next few shards (all of them every 16 calls). A
    /// shard is locked while it is swept, a sixty-fourth of the table.
    pub fn sweep_some(&self) {
        for _ in 0..SWEPT_PER_CALL {
            let at = self.sweep_at.fetch_add(1, Ordering::Relaxed) % SHARDS;
            self.sweep(&self.shards[at]);
        }
    }

    fn sweep(&self, shard: &Shard) {
        let (_, now_ms) = self.now_ms();
        let mut map = Self::write(shard);
        map.retain(|slot| slot.expires.load(Ordering::Relaxed) > now_ms);
        // After a burst of sign-ins has expired, give back what the map no longer needs.
        if map.capacity() > 4 * map.len().max(64) {
            map.shrink_to_fit();
        }
    }

    /// Keys used since the last call, clearing their marks, and the traffic counted since
    /// then. Marks are cleared under the list's lock, so a use racing with this call lands
    /// in the next report; counters are swapped to zero, so no byte is counted twice.
    ///
    /// An entry still held outside the table (a request or a response body in flight) is
    /// kept for the next call, so traffic counted after this one is not left behind. It
    /// is only its usage that is reported then, not a use: a running download does not by
    /// itself keep a session from idling out.
    pub fn take_used(&self) -> Taken {
        let (used, previous) = {
            let mut lists = self.used_list();
            lists
                .used
                .iter()
                .for_each(|(_, e)| e.used.store(false, Ordering::Relaxed));
            (
                std::mem::take(&mut lists.used),
                std::mem::take(&mut lists.in_flight),
            )
        };
        let keys = used.iter().map(|(k, _)| *k).collect();
        let mut all = used;
        all.extend(previous);
        // An entry used again while in flight is in both lists: take it once.
        all.sort_unstable_by_key(|(_, e)| Arc::as_ptr(e) as usize);
        all.dedup_by(|a, b| Arc::ptr_eq(&a.1, &b.1));
        let mut usage: Vec<(IdHash, Usage)> = Vec::new();
        for (k, e) in &all {
            let u = e.take_usage();
            if !u.is_zero() {
                usage.push((*k, u));
            }
        }
        // Two entries under one key (one replaced the other) make two rows; the sync merges.
        let in_flight: UsedList = all
            .into_iter()
            .filter(|(k, e)| self.held_elsewhere(k, e))
            .collect();
        self.used_list().in_flight.extend(in_flight);
        Taken { used: keys, usage }
    }

    /// Is this entry held by anyone but our list and the table (a request or a body in
    /// flight)?
    fn held_elsewhere(&self, key: &IdHash, e: &Arc<Entry>) -> bool {
        let in_table = Self::read(self.shard(key))
            .get(key)
            .is_some_and(|held| Arc::ptr_eq(&held.entry, e));
        Arc::strong_count(e) > 1 + usize::from(in_table)
    }

    /// Live entries: a walk over the maps (not the entries), one shard at a time, for the
    /// metrics; about a millisecond per 200 000 entries.
    pub fn len(&self) -> u64 {
        let (_, now_ms) = self.now_ms();
        self.shards
            .iter()
            .map(|s| {
                Self::read(s)
                    .iter()
                    .filter(|slot| slot.expires.load(Ordering::Relaxed) > now_ms)
                    .count() as u64
            })
            .sum()
    }

    /// Entries held, expired ones included until a sweep drops them.
    #[cfg(test)]
    fn held(&self) -> u64 {
        self.shards.iter().map(|s| Self::read(s).len() as u64).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entry under `key`, expired or not, without touching it.
    #[cfg(test)]
    fn peek(&self, key: &IdHash) -> Option<Arc<Entry>> {
        Self::read(self.shard(key))
            .get(key)
            .map(|slot| slot.entry.clone())
    }

    /// Drop every expired entry now (tests, and the benchmark seed before it measures).
    pub fn run_pending_tasks(&self) {
        for shard in self.shards.iter() {
            self.sweep(shard);
        }
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
            seq: 5,
        }
    }

    /// A revocation drops an entry made by an older answer, not one made by a newer answer
    /// (a session that replaced the revoked one under the same key).
    #[test]
    fn revoke_spares_newer_entries() {
        let t = Table::new(100);
        let k = IdHash([3; 32]);
        t.insert(
            k,
            Entry::new(0, &admission(600, 3600), Duration::ZERO).unwrap(),
        );
        t.revoke(&k, 5, || {});
        assert!(
            t.get(&k).is_some(),
            "made at 5, revoked at 5: the answer is the newer"
        );
        t.revoke(&k, 6, || {});
        assert!(t.get(&k).is_none());
    }

    /// An entry still admits (for a WebSocket tunnel) while it, or its copy with a new idle
    /// timeout, is the live entry under its key: not once revoked, replaced by another
    /// answer's entry, expired, or past its absolute end; and asking renews nothing.
    #[test]
    fn still_admits_follows_the_live_entry() {
        let t = Table::new(100);
        let k = IdHash([7; 32]);
        let margin = Duration::from_secs(1);
        let e = t.insert(k, Entry::new(0, &admission(900, 3600), margin).unwrap());
        assert!(t.still_admits(&k, &e));
        assert!(!t.still_admits(&IdHash([8; 32]), &e), "another key");
        t.set_idle_timeout(&k, Duration::from_secs(600), margin);
        assert!(t.still_admits(&k, &e), "a new idle timeout keeps it");
        assert!(t.take_used().used.is_empty(), "asking is not a use");
        t.revoke(&k, 6, || {});
        assert!(!t.still_admits(&k, &e), "revoked");

        // Replaced under its key by another answer's entry (same user, same level).
        let e = t.insert(k, Entry::new(0, &admission(900, 3600), margin).unwrap());
        t.insert(k, Entry::new(0, &admission(900, 3600), margin).unwrap());
        assert!(!t.still_admits(&k, &e), "replaced");

        // Idle: not renewed by asking, it runs out on its schedule.
        let mut a = admission(1, 3600);
        a.idle_timeout = Duration::from_millis(1300);
        let e = t.insert(k, Entry::new(0, &a, margin).unwrap());
        assert!(t.still_admits(&k, &e));
        std::thread::sleep(Duration::from_millis(200));
        assert!(t.still_admits(&k, &e));
        std::thread::sleep(Duration::from_millis(200));
        assert!(!t.still_admits(&k, &e), "expired");

        // Past the absolute end.
        let e = t.insert(k, Entry::new(0, &admission(900, 0), margin).unwrap());
        assert!(!t.still_admits(&k, &e), "ended");
    }

    /// While renewing is off (the portal unreachable), use does not extend an entry: it
    /// runs out on the schedule it had; on again, use renews it as before.
    #[test]
    fn no_renewal_while_offline() {
        let t = Table::new(100);
        let (a, b) = (IdHash([1; 32]), IdHash([2; 32]));
        let margin = Duration::from_millis(1000);
        // idle 2 s − margin 1 s: each entry lives 1 s from its last renewal.
        for k in [a, b] {
            t.insert(k, Entry::new(0, &admission(2, 3600), margin).unwrap());
        }
        t.set_renewing(false);
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(1500) {
            let _ = t.get(&a);
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(t.get(&a).is_none(), "busy, yet not renewed while offline");
        t.set_renewing(true);
        t.insert(b, Entry::new(0, &admission(2, 3600), margin).unwrap());
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(1500) {
            assert!(t.get(&b).is_some(), "renewed by use");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// An entry lives idle_timeout − margin, capped by the absolute end.
    #[test]
    fn entry_lifetime() {
        let e = Entry::new(0, &admission(900, 3600), Duration::from_secs(60)).unwrap();
        assert_eq!(e.ttl(), Duration::from_secs(840));
        let now = Instant::now();
        assert!(e.life_from(now) <= Duration::from_secs(840));
        let e = Entry::new(0, &admission(900, 100), Duration::from_secs(60)).unwrap();
        assert!(e.life_from(Instant::now()) <= Duration::from_secs(100));
        let e = Entry::new(0, &admission(0, 500), Duration::from_secs(60)).unwrap();
        assert_eq!(
            e.ttl(),
            Duration::from_secs(500),
            "no idle limit: the absolute end rules"
        );
    }

    /// A new idle timeout does not bring back an entry that has expired but not yet been
    /// swept: the user's next request asks the portal, which may have ended the session.
    #[test]
    fn idle_timeout_never_revives_an_expired_entry() {
        let t = Table::new(100);
        let k = IdHash([6; 32]);
        let mut a = admission(1, 3600);
        a.idle_timeout = Duration::from_millis(1100);
        t.insert(k, Entry::new(0, &a, Duration::from_secs(1)).unwrap());
        std::thread::sleep(Duration::from_millis(200));
        t.set_idle_timeout(&k, Duration::from_secs(900), Duration::from_secs(1));
        assert!(t.get(&k).is_none());
        assert!(t.peek(&k).is_none(), "dropped, not renewed");
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

    /// What every lookup and every proxied request reads of an entry fits the first 64
    /// bytes of its allocation (after the `Arc`'s two counts), its user's name the next 64;
    /// the allocation is 128 bytes, a size mimalloc places on a cache line (the binary's
    /// allocator; these tests run on the system's); a map bucket is one line.
    #[test]
    fn fields_every_request_reads_come_first() {
        use std::mem::{offset_of, size_of};
        let counts = 2 * size_of::<usize>();
        assert_eq!(counts + size_of::<Entry>(), 128);
        for end in [
            offset_of!(Entry, deadline) + size_of::<Instant>(),
            offset_of!(Entry, requests) + size_of::<u32>(),
            offset_of!(Entry, bytes_out) + size_of::<u64>(),
        ] {
            assert!(counts + end <= 64);
        }
        assert!(counts + offset_of!(Entry, user) + size_of::<Name>() <= 128);
        assert_eq!(size_of::<Slot>(), 64);
        // The earlier layout's guarantees, kept: what a proxied request reads comes before
        // the account, which ends within the first 128 bytes.
        assert!(counts + offset_of!(Entry, own_account) + size_of::<usize>() <= 128);
        assert!(offset_of!(Entry, requests) < offset_of!(Entry, own_account));
        assert!(offset_of!(Entry, bytes_out) < offset_of!(Entry, own_account));
        assert!(offset_of!(Entry, user) < offset_of!(Entry, own_account));
    }

    /// Names of every length, kept inline or not, come back whole, as text and as each
    /// request's header value; one that cannot be a header value makes no entry.
    #[test]
    fn names_inline_and_long() {
        let mut a = admission(900, 3600);
        for name in [
            "a",
            "alice",
            &"x".repeat(INLINE_NAME),
            &"y".repeat(INLINE_NAME + 1),
            "zoë ✓",
            &"é".repeat(16),
        ] {
            a.user = name.into();
            a.account = format!("{name}-acct").into();
            let e = Entry::new(0, &a, Duration::from_secs(60)).unwrap();
            assert_eq!((e.user(), e.account()), (name, &*a.account));
            assert_eq!(e.user_header().unwrap().as_bytes(), name.as_bytes());
            assert_eq!(e.account_header().unwrap().as_bytes(), a.account.as_bytes());
            let inline = matches!(e.user, Name::Inline { .. });
            assert_eq!(inline, name.len() <= INLINE_NAME, "{name:?}");
        }
        for bad in ["new\nline", "nul\0", "del\x7f"] {
            a.user = bad.into();
            assert!(
                Entry::new(0, &a, Duration::from_secs(60)).is_none(),
                "{bad:?}"
            );
        }
        assert_eq!(std::mem::size_of::<Name>(), 32);
    }

    /// The account header is the account's name, whether or not it is the user's.
    #[test]
    fn account_header_values() {
        let mut a = admission(900, 3600);
        let e = Entry::new(0, &a, Duration::from_secs(60)).unwrap();
        assert_eq!(e.account(), "alice");
        a.account = "acme".into();
        let e = Entry::new(0, &a, Duration::from_secs(60)).unwrap();
        assert_eq!((e.user(), e.account()), ("alice", "acme"));
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
        assert!(
            t.take_used().used.is_empty(),
            "admission itself is not news"
        );
        t.get(&k);
        t.get(&k);
        assert_eq!(t.take_used().used, vec![k], "reported once per sync");
        assert!(t.take_used().used.is_empty());
        t.get(&k);
        assert_eq!(t.take_used().used, vec![k]);
    }

    /// Traffic is reported once, as the delta since the last sync; an entry still held by
    /// a body in flight has its later bytes reported at the next sync, without a new use.
    #[test]
    fn usage_deltas() {
        let t = Table::new(100);
        let k = IdHash([4; 32]);
        t.insert(
            k,
            Entry::new(0, &admission(900, 3600), Duration::from_secs(60)).unwrap(),
        );
        let e = t.get(&k).unwrap();
        e.count_request();
        e.count_in(10);
        e.count_out(100);
        let taken = t.take_used();
        let expected = Usage {
            requests: 1,
            bytes_in: 10,
            bytes_out: 100,
        };
        assert_eq!(taken.usage, vec![(k, expected)]);
        // `e` is still held (a body streaming): its next bytes are not lost.
        e.count_out(50);
        let taken = t.take_used();
        assert!(taken.used.is_empty(), "streaming is not a new use");
        assert_eq!(
            taken.usage,
            vec![(
                k,
                Usage {
                    bytes_out: 50,
                    ..Usage::default()
                }
            )]
        );
        drop(e);
        assert!(t.take_used().usage.is_empty(), "nothing counted twice");
        t.run_pending_tasks();
        assert!(
            t.used_list().in_flight.is_empty(),
            "released once nothing holds it"
        );
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
        let e = t.peek(&k).expect("kept, not revoked");
        assert_eq!(e.ttl(), Duration::from_millis(200));
        assert_eq!(e.user(), "alice");
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
        assert!(t.peek(&IdHash([5; 32])).is_none(), "no entry made up");
    }

    fn random_key() -> IdHash {
        crate::crypto::Identifier::new().hash()
    }

    /// A full table makes room (expired entries first, then any one): it never holds more
    /// than its capacity, and the entry just admitted is in.
    #[test]
    fn capacity_is_kept() {
        let t = Table::new(SHARDS as u64 * 2);
        for _ in 0..1000 {
            let k = random_key();
            t.insert(
                k,
                Entry::new(0, &admission(900, 3600), Duration::ZERO).unwrap(),
            );
            assert!(t.get(&k).is_some());
        }
        assert!(t.held() <= SHARDS as u64 * 2, "{}", t.held());
    }

    /// Expired entries are never served; the sweeps of 16 syncs give all their memory back,
    /// and leave live entries alone.
    #[test]
    fn sweeps_reclaim_expired_entries() {
        let t = Table::new(10_000);
        let mut short = admission(1, 3600);
        short.idle_timeout = Duration::from_millis(1100);
        let keys: Vec<IdHash> = (0..200).map(|_| random_key()).collect();
        for k in &keys {
            t.insert(*k, Entry::new(0, &short, Duration::from_secs(1)).unwrap());
        }
        let live = random_key();
        t.insert(
            live,
            Entry::new(0, &admission(900, 3600), Duration::ZERO).unwrap(),
        );
        std::thread::sleep(Duration::from_millis(250));
        assert!(
            keys.iter().all(|k| t.get(k).is_none()),
            "expired, not served"
        );
        assert_eq!((t.len(), t.held()), (1, 201), "held until swept");
        for _ in 0..16 {
            t.sweep_some();
        }
        assert_eq!(t.held(), 1);
        assert!(t.get(&live).is_some());
    }

    /// Many threads looking up, admitting, renewing and revoking at once: every answer is
    /// an entry of the asked key or none, and a revocation is never undone.
    #[test]
    fn concurrent_use() {
        let t = Table::new(100_000);
        let keys: Vec<IdHash> = (0..256).map(|_| random_key()).collect();
        std::thread::scope(|s| {
            for worker in 0..4 {
                let (t, keys) = (&t, &keys);
                s.spawn(move || {
                    for round in 0..2_000usize {
                        let k = keys[(round * 7 + worker * 13) % keys.len()];
                        match round % 4 {
                            0 => {
                                t.insert(
                                    k,
                                    Entry::new(0, &admission(900, 3600), Duration::ZERO).unwrap(),
                                );
                            }
                            1 => t.revoke(&k, 6, || {}),
                            _ => {
                                if let Some(e) = t.get(&k) {
                                    assert_eq!(e.seq, 5);
                                }
                            }
                        }
                    }
                });
            }
        });
        for k in &keys {
            t.revoke(k, 6, || {});
            assert!(t.get(k).is_none());
        }
        assert_eq!(t.len(), 0);
    }

    /// User names that cannot be header values are refused, not mangled.
    #[test]
    fn bad_header_value_refused() {
        let mut a = admission(900, 3600);
        a.user = "bad\nname".into();
        assert!(Entry::new(0, &a, Duration::from_secs(60)).is_none());
    }
}

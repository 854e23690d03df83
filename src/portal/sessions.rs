//! The portal's session table: the MAIN table and SESSION TIMEOUT table of the design.
//!
//! A *session* is one sign-in (a browser's portal cookie, or an API client's Basic key).
//! Each site the browser was handed to adds a *binding*: the hash of that site's cookie,
//! pointing at the session. One-time codes carry a session to a site. This table is
//! authoritative for idle and absolute expiry; gates only cache what it says, and learn what
//! it ended from the revocation log (at each sync, and at once in-process through
//! [`SessionTable::subscribe`]).
//!
//! Sessions and bindings are also written behind to the store ([`persist`]), so a restart
//! of the portal signs nobody out; site passwords, codes and the log stay in memory.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::central::{Admission, SyncReply, SyncReport, Usage};
use crate::config::SiteId;
use crate::crypto::derived::SitePassword;
use crate::crypto::{IdHash, Identifier, ct_eq};
use crate::store::{UsageRow, UserRecord};

mod engine;
mod persist;
pub mod shared;
pub use engine::Sessions;
use persist::Dirty;

/// Changes (revocations, new idle timeouts) kept for gates that sync late; one that falls
/// further behind drops its table.
const REVOCATION_LOG_CAP: usize = 100_000;

/// How long the bindings of an ended session are remembered, so that the traffic a gate
/// counted before the end (reported at its next sync) still reaches the right account.
/// Several sync intervals; usage reported later than this is dropped (and logged).
const RETIRED_KEEP: Duration = Duration::from_secs(15 * 60);

/// Most sessions one reap looks at, so the table's lock is never held for long; the rest
/// wait for the next reap.
const REAP_BATCH: usize = 50_000;

/// Most one-time codes a session holds unredeemed; minting another drops its oldest. A
/// browser needs one per hand-off in progress; without a cap, a signed-in client looping on
/// `/login?site=…&h=…` would fill the portal's memory until the codes expire.
pub const CODES_PER_SESSION: usize = 8;

/// Most user names whose last change [`Inner::user_changes`] remembers; past that it
/// forgets them all at once, and sign-ins checked before then are refused (fail closed).
const USER_CHANGES_KEPT: usize = 100_000;

/// Where the table was in its users' changes when a sign-in read its user record from the
/// store ([`SessionTable::user_revision`]). A session starts from that record only if the
/// user has not changed since: a password check takes a while (argon2id, and the wait for a
/// hashing slot), and a password change, disabling or demotion that lands meanwhile ends
/// only the sessions that exist when it lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserRevision(u64);

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub default_idle: Duration,
    pub absolute: Duration,
    /// How long a one-time code may wait for its redemption.
    pub code_ttl: Duration,
}

type Listener = Box<dyn Fn(&[(IdHash, u64)]) + Send + Sync>;

/// The derived site passwords of one session, by site: made while the user typed their
/// password, kept only here in memory, wiped when the session ends (SPEC §5).
pub type SitePasswords = BTreeMap<SiteId, SitePassword>;

pub struct SessionTable {
    inner: Mutex<Inner>,
    timeouts: Timeouts,
    listeners: RwLock<Vec<Listener>>,
    /// Sent with every sync answer ([`SyncReply::epoch`]): the revocation log (the gates'
    /// cursors) lives in this process's memory, so a restart is a new epoch; gates then drop
    /// their tables and ask again about each user, and the sessions restored from the store
    /// answer.
    epoch: u64,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<IdHash, Session>,
    bindings: HashMap<IdHash, Binding>,
    codes: HashMap<IdHash, Code>,
    /// What gates must learn at their next sync, in order: the sequence number is the
    /// gates' cursor.
    log: VecDeque<(u64, Change)>,
    last_seq: u64,
    /// When each session should next be looked at by the reaper: its end as of when it was
    /// scheduled. Touching a session does not reschedule it (that would cost a tree update
    /// per request); the reaper finds it still alive and schedules it again. Entries of
    /// sessions already ended are skipped when they come due.
    due: BTreeSet<(Instant, IdHash)>,
    /// Bindings of ended sessions, for [`RETIRED_KEEP`]: whose traffic they carried.
    retired: HashMap<IdHash, Retired>,
    /// The same, oldest first, so forgetting them costs only what is forgotten.
    retired_order: VecDeque<(Instant, IdHash)>,
    /// Sessions changed since the last write to the store, and what to write of each (the
    /// write-behind, see [`persist`]).
    dirty: HashMap<IdHash, Dirty>,
    /// How many user changes the table has applied ([`SessionTable::user_changed`]).
    user_revision: u64,
    /// The revision of each user's latest change, at most [`USER_CHANGES_KEPT`] names.
    user_changes: HashMap<String, u64>,
    /// Changes up to this revision may have been forgotten (see [`USER_CHANGES_KEPT`]).
    user_changes_forgotten: u64,
}

struct Retired {
    user: Arc<UserRecord>,
    site: SiteId,
    at: Instant,
}

struct Session {
    user: Arc<UserRecord>,
    created: Instant,
    last_active: Instant,
    /// The last activity the store has (or gets at the next flush): a use only is written
    /// once the store's copy lags by [`Session::write_lag`].
    stored_active: Instant,
    bindings: Vec<IdHash>,
    site_passwords: SitePasswords,
    /// Signed in on a shared computer (SPEC §6, roaming): sign-out also asks the browser
    /// to clear what it kept of the visit.
    roaming: bool,
    /// Its codes minted lately, oldest first, at most [`CODES_PER_SESSION`] (some may be
    /// redeemed or expired already).
    codes: VecDeque<IdHash>,
}

struct Binding {
    session: IdHash,
    site: SiteId,
}

/// One change a gate learns at sync.
#[derive(Debug, Clone, Copy)]
enum Change {
    /// Drop this entry.
    Revoked(IdHash),
    /// This entry's user now has this idle timeout (zero: no idle limit).
    IdleTimeout(IdHash, Duration),
}

/// One live session of a user, as the account page shows it.
#[derive(Debug, Clone)]
pub struct SessionView {
    /// The session's key (hash of its portal cookie, or of an API client's credential).
    pub id: IdHash,
    pub started: Instant,
    pub last_active: Instant,
    /// The sites it was handed to, in order, without repeats.
    pub sites: Vec<SiteId>,
    /// An API client's Basic session rather than a browser's.
    pub basic: bool,
}

struct Code {
    site: SiteId,
    binding: IdHash,
    session: IdHash,
    expires: Instant,
}

/// Most a stored last activity lags behind a session in use (less with a short idle limit,
/// see [`Session::write_lag`]).
const MAX_WRITE_LAG: Duration = Duration::from_secs(60);

impl Session {
    fn idle_limit(&self, t: &Timeouts) -> Duration {
        self.user.idle_timeout.unwrap_or(t.default_idle)
    }

    /// How far the stored last activity may lag: a minute, or a sixteenth of the idle limit
    /// when that is less. Writing every use would cost a store write per active session per
    /// flush (10 000 a second with 10 000 browsers busy; bench/README.md "A full table"),
    /// where the lag costs only this: a session restored after a restart ends at most this
    /// much early, never late.
    fn write_lag(&self, t: &Timeouts) -> Duration {
        match self.idle_limit(t) {
            idle if idle.is_zero() => MAX_WRITE_LAG,
            idle => MAX_WRITE_LAG.min(idle / 16),
        }
    }

    /// Record a use at `now`; true when the store's copy should be written again.
    fn touch(&mut self, t: &Timeouts, now: Instant) -> bool {
        self.last_active = now;
        if now.saturating_duration_since(self.stored_active) < self.write_lag(t) {
            return false;
        }
        self.stored_active = now;
        true
    }

    fn alive(&self, t: &Timeouts, now: Instant) -> bool {
        let idle = self.idle_limit(t);
        let within_idle = idle.is_zero() || now.saturating_duration_since(self.last_active) <= idle;
        let within_absolute = now.saturating_duration_since(self.created) < t.absolute;
        within_idle && within_absolute && !self.user.disabled
    }

    /// When the session ends if nobody uses it again.
    fn ends_at(&self, t: &Timeouts) -> Instant {
        let absolute = self.created + t.absolute;
        let idle = self.idle_limit(t);
        if idle.is_zero() {
            absolute
        } else {
            absolute.min(self.last_active + idle)
        }
    }

    fn admission(&self, t: &Timeouts, site: &SiteId, now: Instant) -> Admission {
        Admission {
            user: self.user.name.as_str().into(),
            account: self.user.account.as_str().into(),
            level: self.user.level_on(&site.0),
            idle_timeout: self.idle_limit(t),
            remaining: t
                .absolute
                .saturating_sub(now.saturating_duration_since(self.created)),
            site_password: self.site_passwords.get(site).cloned(),
            seq: 0,
        }
    }
}

impl Inner {
    /// Has user `name` changed since a sign-in read its record at `read`? When the table
    /// cannot tell (it forgot changes since then), yes.
    fn user_changed_since(&self, name: &str, read: UserRevision) -> bool {
        match self.user_changes.get(name) {
            Some(&changed) => changed > read.0,
            None => read.0 < self.user_changes_forgotten,
        }
    }

    fn note_user_change(&mut self, name: &str) {
        if self.user_changes.len() >= USER_CHANGES_KEPT && !self.user_changes.contains_key(name) {
            self.user_changes.clear();
            self.user_changes_forgotten = self.user_revision;
        }
        self.user_revision += 1;
        self.user_changes
            .insert(name.to_string(), self.user_revision);
    }

    /// A new session (to be written to the store).
    fn add(&mut self, id: IdHash, session: Session, t: &Timeouts) {
        self.mark(id, Dirty::Changed);
        self.insert(id, session, t);
    }

    /// A session into the table and the reaper's schedule.
    fn insert(&mut self, id: IdHash, session: Session, t: &Timeouts) {
        self.due.insert((session.ends_at(t), id));
        self.sessions.insert(id, session);
    }

    /// Remove a session and log every binding it had as revoked.
    fn end(&mut self, id: &IdHash, revoked: &mut Vec<(IdHash, u64)>) {
        if let Some(s) = self.sessions.remove(id) {
            self.mark(*id, Dirty::Changed);
            let now = Instant::now();
            for b in s.bindings {
                if let Some(binding) = self.bindings.remove(&b) {
                    let retired = Retired {
                        user: s.user.clone(),
                        site: binding.site,
                        at: now,
                    };
                    self.retired.insert(b, retired);
                    self.retired_order.push_back((now, b));
                }
                self.revoke(b, revoked);
            }
            self.codes.retain(|_, c| c.session != *id);
        }
    }

    /// Revoke a binding: logged, and pushed to `revoked` with its log position.
    fn revoke(&mut self, hash: IdHash, revoked: &mut Vec<(IdHash, u64)>) {
        self.log_change(Change::Revoked(hash));
        revoked.push((hash, self.last_seq));
    }

    fn log_change(&mut self, change: Change) {
        self.last_seq += 1;
        self.log.push_back((self.last_seq, change));
        if self.log.len() > REVOCATION_LOG_CAP {
            self.log.pop_front();
        }
    }

    /// Forget the bindings ended more than [`RETIRED_KEEP`] ago.
    fn forget_retired(&mut self, now: Instant) {
        while let Some(&(at, key)) = self.retired_order.front() {
            if now.saturating_duration_since(at) < RETIRED_KEEP {
                break;
            }
            self.retired_order.pop_front();
            // Unless the key was retired again since (its newer record stays).
            if self.retired.get(&key).is_some_and(|r| r.at == at) {
                self.retired.remove(&key);
            }
        }
    }

    /// [`SessionTable::continue_basic`], under the table's lock.
    fn continue_basic(
        &mut self,
        t: &Timeouts,
        key: IdHash,
        user: &UserRecord,
        site: &SiteId,
        site_password: Option<&SitePassword>,
        now: Instant,
    ) -> Option<Admission> {
        let seq = self.last_seq;
        let existing = self.sessions.get_mut(&key)?;
        let same_password = match (existing.site_passwords.get(site), site_password) {
            (None, None) => true,
            (Some(a), Some(b)) => ct_eq(a.expose().as_bytes(), b.expose().as_bytes()),
            _ => false,
        };
        if !(existing.alive(t, now) && *existing.user == *user && same_password) {
            return None;
        }
        let touched = existing.touch(t, now);
        let admission = Admission {
            seq,
            ..existing.admission(t, site, now)
        };
        if touched {
            self.mark(key, Dirty::Touched);
        }
        Some(admission)
    }

    /// The live session behind a site binding, touched as used.
    fn live_binding(
        &mut self,
        t: &Timeouts,
        cookie: &IdHash,
        now: Instant,
    ) -> Option<(&Session, &SiteId)> {
        let binding = self.bindings.get(cookie)?;
        let session = self.sessions.get_mut(&binding.session)?;
        if !session.alive(t, now) {
            return None;
        }
        if session.touch(t, now) {
            // As `mark(.., Touched)`, which would borrow all of `self` while `session` is held.
            self.dirty.entry(binding.session).or_insert(Dirty::Touched);
        }
        Some((session, &binding.site))
    }
}

/// Traffic summed per (account, site), as the store's rows.
fn usage_rows(sums: BTreeMap<(String, String), Usage>) -> Vec<UsageRow> {
    sums.into_iter()
        .map(|((account, site), usage)| UsageRow {
            account,
            site,
            usage,
        })
        .collect()
}

impl SessionTable {
    pub fn new(timeouts: Timeouts) -> Self {
        SessionTable {
            inner: Mutex::new(Inner::default()),
            timeouts,
            listeners: RwLock::new(Vec::new()),
            epoch: u64::from_le_bytes(crate::crypto::ids::random_bytes()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every mutation below completes before it can panic, so a poisoned table is intact.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Be told at once of every revoked binding, with its revocation-log position
    /// (single-node mode: the local gate).
    pub fn subscribe(&self, f: impl Fn(&[(IdHash, u64)]) + Send + Sync + 'static) {
        self.listeners
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(Box::new(f));
    }

    fn notify(&self, revoked: &[(IdHash, u64)]) {
        if revoked.is_empty() {
            return;
        }
        for f in self
            .listeners
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            f(revoked);
        }
    }

    /// Start a session for a user who just proved who they are, with the site passwords
    /// derived from what they typed.
    ///
    /// `replacing` is the browser's previous session (its old portal cookie). The same user
    /// signing in again (e.g. asked for their password by a derived site the old session
    /// had no site password for) keeps the sites it was handed to, now under the new id,
    /// and stays roaming if it was; another user's session ends, on every site.
    ///
    /// `false`, and nothing done: the user changed after `read`, when `user` was read
    /// (see [`UserRevision`]); the sign-in must be refused.
    pub fn start(
        &self,
        replacing: Option<&IdHash>,
        id: IdHash,
        user: UserRecord,
        read: UserRevision,
        site_passwords: SitePasswords,
    ) -> bool {
        let now = Instant::now();
        let mut session = Session {
            user: Arc::new(user),
            created: now,
            last_active: now,
            stored_active: now,
            bindings: Vec::new(),
            site_passwords,
            roaming: false,
            codes: VecDeque::new(),
        };
        let mut revoked = Vec::new();
        {
            let mut inner = self.lock();
            if inner.user_changed_since(&session.user.name, read) {
                return false;
            }
            if let Some(old_id) = replacing.filter(|old| **old != id) {
                let same_user = inner.sessions.get(old_id).is_some_and(|old| {
                    old.user.name == session.user.name && old.alive(&self.timeouts, now)
                });
                if same_user && let Some(old) = inner.sessions.remove(old_id) {
                    inner.mark(*old_id, Dirty::Changed);
                    for b in &old.bindings {
                        if let Some(binding) = inner.bindings.get_mut(b) {
                            binding.session = id;
                        }
                    }
                    session.bindings = old.bindings;
                    // A visit from a shared computer stays one (sign-out must still clear it).
                    session.roaming = old.roaming;
                    inner.codes.retain(|_, c| c.session != *old_id);
                } else {
                    inner.end(old_id, &mut revoked);
                }
            }
            inner.end(&id, &mut revoked);
            inner.add(id, session, &self.timeouts);
        }
        self.notify(&revoked);
        true
    }

    /// Where the table is in its users' changes: read it before reading a user record a
    /// session may start from, and pass it to [`SessionTable::start`].
    pub fn user_revision(&self) -> UserRevision {
        UserRevision(self.lock().user_revision)
    }

    /// Has user `name` changed since `read`? (The start checks again under its lock.)
    pub(super) fn user_changed_since(&self, name: &str, read: UserRevision) -> bool {
        self.lock().user_changed_since(name, read)
    }

    /// Mark session `id` as a visit from a shared computer (roaming).
    pub fn mark_roaming(&self, id: &IdHash) {
        let mut inner = self.lock();
        if let Some(s) = inner.sessions.get_mut(id) {
            s.roaming = true;
            inner.mark(*id, Dirty::Changed);
        }
    }

    /// Is session `id` a visit from a shared computer?
    pub fn is_roaming(&self, id: &IdHash) -> bool {
        self.lock().sessions.get(id).is_some_and(|s| s.roaming)
    }

    /// Does the live session `id` hold a site password for `site`?
    pub fn has_site_password(&self, id: &IdHash, site: &SiteId) -> bool {
        self.lock()
            .sessions
            .get(id)
            .is_some_and(|s| s.site_passwords.contains_key(site))
    }

    /// The user of a live session (portal pages), touching it.
    pub fn user(&self, id: &IdHash) -> Option<Arc<UserRecord>> {
        let now = Instant::now();
        let mut inner = self.lock();
        let s = inner.sessions.get_mut(id)?;
        if !s.alive(&self.timeouts, now) {
            return None;
        }
        let write = s.touch(&self.timeouts, now);
        let user = s.user.clone();
        if write {
            inner.mark(*id, Dirty::Touched);
        }
        Some(user)
    }

    /// Mint a one-time code carrying session `id` to `site`, bound to the site cookie hash.
    pub fn mint_code(&self, id: &IdHash, site: &SiteId, binding: IdHash) -> Option<Identifier> {
        let now = Instant::now();
        let mut inner = self.lock();
        let session = inner.sessions.get_mut(id)?;
        if !session.alive(&self.timeouts, now) {
            return None;
        }
        let code = Identifier::new();
        session.codes.push_back(code.hash());
        let dropped = (session.codes.len() > CODES_PER_SESSION)
            .then(|| session.codes.pop_front())
            .flatten();
        if let Some(oldest) = dropped {
            inner.codes.remove(&oldest);
        }
        let entry = Code {
            site: site.clone(),
            binding,
            session: *id,
            expires: now + self.timeouts.code_ttl,
        };
        inner.codes.insert(code.hash(), entry);
        Some(code)
    }

    /// Redeem a code (consumed whatever the outcome). Admits only when the code is fresh,
    /// was minted for this site and for this very site cookie, and its session is alive.
    pub fn redeem(&self, code: &str, cookie: IdHash, site: &SiteId) -> Option<Admission> {
        let now = Instant::now();
        let mut inner = self.lock();
        let code = inner.codes.remove(&IdHash::of(code.as_bytes()))?;
        let fresh = now < code.expires;
        let same_site = code.site == *site;
        let same_cookie = ct_eq(&code.binding.0, &cookie.0);
        // A site cookie is bound once: the gate makes a fresh one for every hand-off, so a
        // bound one here is a code minted for someone else's cookie (its hash can be seen in
        // the victim's `/login?…&h=` address), which would move the victim's browser into
        // the minter's session. The shared table refuses it the same way.
        let unbound = !inner.bindings.contains_key(&cookie);
        if !(fresh && same_site && same_cookie && unbound) {
            return None;
        }
        let session = inner.sessions.get_mut(&code.session)?;
        if !session.alive(&self.timeouts, now) {
            return None;
        }
        // Written whole below, this use with it.
        session.touch(&self.timeouts, now);
        session.stored_active = now;
        session.bindings.push(cookie);
        let mut admission = session.admission(&self.timeouts, site, now);
        admission.seq = inner.last_seq;
        inner.mark(code.session, Dirty::Changed);
        inner.bindings.insert(
            cookie,
            Binding {
                session: code.session,
                site: site.clone(),
            },
        );
        Some(admission)
    }

    /// Is this site cookie still admitted on `site`?
    pub fn check(&self, cookie: IdHash, site: &SiteId) -> Option<Admission> {
        let now = Instant::now();
        let mut inner = self.lock();
        let seq = inner.last_seq;
        let (session, bound_site) = inner.live_binding(&self.timeouts, &cookie, now)?;
        (bound_site == site).then(|| Admission {
            seq,
            ..session.admission(&self.timeouts, site, now)
        })
    }

    /// The live session of an API client that presents its credential again: the key is
    /// made from the credential and the site, so a live session under it is this client's.
    /// With the same user record and site password it goes on (touched), so parallel calls
    /// of one client do not end each other's sessions: each end would revoke the key the
    /// other was just admitted under, and the gate refuses an answer older than a
    /// revocation of its key. `None`: no such session; start one.
    pub fn continue_basic(
        &self,
        key: IdHash,
        user: &UserRecord,
        site: &SiteId,
        site_password: Option<&SitePassword>,
    ) -> Option<Admission> {
        let mut inner = self.lock();
        inner.continue_basic(
            &self.timeouts,
            key,
            user,
            site,
            site_password,
            Instant::now(),
        )
    }

    /// Start an API client's session, known by its Basic key, bound to one site (with the
    /// site password derived from the password it presented, on a derived site); or go on
    /// with its live one ([`SessionTable::continue_basic`], under the same lock, so two
    /// first calls at once make one session, not one ending the other). `None`: the user
    /// changed after `read` (see [`UserRevision`]); refuse.
    pub fn start_basic(
        &self,
        key: IdHash,
        user: UserRecord,
        read: UserRevision,
        site: &SiteId,
        site_password: Option<SitePassword>,
    ) -> Option<Admission> {
        let now = Instant::now();
        let mut revoked = Vec::new();
        let admission = {
            let mut inner = self.lock();
            if inner.user_changed_since(&user.name, read) {
                return None;
            }
            if let Some(admission) = inner.continue_basic(
                &self.timeouts,
                key,
                &user,
                site,
                site_password.as_ref(),
                now,
            ) {
                return Some(admission);
            }
            let session = Session {
                user: Arc::new(user),
                created: now,
                last_active: now,
                stored_active: now,
                bindings: vec![key],
                site_passwords: site_password
                    .map(|sp| SitePasswords::from([(site.clone(), sp)]))
                    .unwrap_or_default(),
                roaming: false,
                codes: VecDeque::new(),
            };
            let mut admission = session.admission(&self.timeouts, site, now);
            inner.end(&key, &mut revoked);
            // After the revocation of the session it replaces (same key): newer than it.
            admission.seq = inner.last_seq;
            inner.add(key, session, &self.timeouts);
            inner.bindings.insert(
                key,
                Binding {
                    session: key,
                    site: site.clone(),
                },
            );
            admission
        };
        self.notify(&revoked);
        Some(admission)
    }

    /// Sign-out: end a session on every site.
    pub fn end(&self, id: &IdHash) {
        let mut revoked = Vec::new();
        self.lock().end(id, &mut revoked);
        self.notify(&revoked);
    }

    /// A user changed in the store. Disabled, removed or re-passworded users lose every
    /// session; other changes (levels, account) keep sessions but make gates ask again. A
    /// change of the idle timeout alone keeps the gates' entries and sends them the new
    /// value at their next sync, so they recompute their expiry (SPEC §6); the portal's
    /// own idle limit changes at once. An unchanged record changes nothing.
    pub fn user_changed(&self, name: &str, now_stored: Option<UserRecord>) {
        let mut revoked = Vec::new();
        {
            let mut inner = self.lock();
            inner.note_user_change(name);
            let ids: Vec<IdHash> = inner
                .sessions
                .iter()
                .filter(|(_, s)| s.user.name == name)
                .map(|(id, _)| *id)
                .collect();
            for id in ids {
                let keep = match (&now_stored, inner.sessions.get(&id)) {
                    (Some(new), Some(s)) => {
                        !new.disabled && new.password_hash == s.user.password_hash
                    }
                    _ => false,
                };
                if !keep {
                    inner.end(&id, &mut revoked);
                    continue;
                }
                let (Some(new), Some(s)) = (&now_stored, inner.sessions.get_mut(&id)) else {
                    continue;
                };
                if *s.user == *new {
                    continue;
                }
                let timeout_only = UserRecord {
                    idle_timeout: s.user.idle_timeout,
                    ..new.clone()
                } == *s.user;
                s.user = Arc::new(new.clone());
                // The user's idle timeout may have shortened.
                let ends_at = s.ends_at(&self.timeouts);
                let idle = s.idle_limit(&self.timeouts);
                let bindings = s.bindings.clone();
                inner.due.insert((ends_at, id));
                for b in bindings {
                    if timeout_only {
                        inner.log_change(Change::IdleTimeout(b, idle));
                    } else {
                        inner.revoke(b, &mut revoked);
                    }
                }
            }
        }
        self.notify(&revoked);
    }

    /// Activity up, revocations down.
    pub fn sync(&self, report: &SyncReport) -> SyncReply {
        let now = Instant::now();
        let mut inner = self.lock();
        for used in &report.used {
            let _ = inner.live_binding(&self.timeouts, used, now);
        }
        let oldest = inner
            .log
            .front()
            .map_or(inner.last_seq + 1, |(seq, _)| *seq);
        let reset = report.cursor.saturating_add(1) < oldest || report.cursor > inner.last_seq;
        let (mut revoked, mut idle_timeouts) = (Vec::new(), Vec::new());
        if !reset {
            for (seq, change) in inner.log.iter().filter(|(seq, _)| *seq > report.cursor) {
                match *change {
                    Change::Revoked(h) => revoked.push((h, *seq)),
                    Change::IdleTimeout(h, d) => idle_timeouts.push((h, d)),
                }
            }
        }
        SyncReply {
            epoch: self.epoch,
            cursor: inner.last_seq,
            revoked,
            idle_timeouts,
            reset,
            usage_refused: false,
        }
    }

    /// Whose traffic a gate reported: each entry's account (by its session's user, or the
    /// user of a session that ended since) and site, added up per (account, site). Entries
    /// nobody knows (ended longer than [`RETIRED_KEEP`] ago) are left out and counted in
    /// the second value.
    pub fn attribute(&self, usage: &[(IdHash, Usage)]) -> (Vec<UsageRow>, usize) {
        let mut sums: BTreeMap<(String, String), Usage> = BTreeMap::new();
        let mut unknown = 0;
        let inner = self.lock();
        for (key, u) in usage {
            let owner = match inner.bindings.get(key) {
                Some(b) => inner
                    .sessions
                    .get(&b.session)
                    .map(|s| (&s.user.account, &b.site)),
                None => inner.retired.get(key).map(|r| (&r.user.account, &r.site)),
            };
            match owner {
                Some((account, site)) => sums
                    .entry((account.clone(), site.0.clone()))
                    .or_default()
                    .add(u),
                None => unknown += 1,
            }
        }
        (usage_rows(sums), unknown)
    }

    /// End sessions past their idle or absolute limit, and drop stale codes.
    pub fn reap(&self) {
        let now = Instant::now();
        let mut revoked = Vec::new();
        {
            let mut inner = self.lock();
            for _ in 0..REAP_BATCH {
                let Some(&(at, id)) = inner.due.first() else {
                    break;
                };
                if at > now {
                    break;
                }
                inner.due.pop_first();
                match inner.sessions.get(&id) {
                    None => {}
                    // Used since it was scheduled: look again when it would end now.
                    Some(s) if s.alive(&self.timeouts, now) => {
                        let next = s.ends_at(&self.timeouts).max(now) + Duration::from_millis(1);
                        inner.due.insert((next, id));
                    }
                    Some(_) => inner.end(&id, &mut revoked),
                }
            }
            inner.codes.retain(|_, c| c.expires > now);
            inner.forget_retired(now);
        }
        self.notify(&revoked);
    }

    pub fn len(&self) -> usize {
        self.lock().sessions.len()
    }

    /// The live sessions of one user (the account page), oldest first.
    pub fn sessions_of(&self, name: &str) -> Vec<SessionView> {
        let now = Instant::now();
        let inner = self.lock();
        let mut list: Vec<SessionView> = inner
            .sessions
            .iter()
            .filter(|(_, s)| s.user.name == name && s.alive(&self.timeouts, now))
            .map(|(id, s)| {
                let mut sites: Vec<SiteId> = Vec::new();
                for b in &s.bindings {
                    if let Some(binding) = inner.bindings.get(b)
                        && !sites.contains(&binding.site)
                    {
                        sites.push(binding.site.clone());
                    }
                }
                SessionView {
                    id: *id,
                    started: s.created,
                    last_active: s.last_active,
                    sites,
                    // A Basic session is its own single binding.
                    basic: s.bindings.len() == 1 && s.bindings[0] == *id,
                }
            })
            .collect();
        list.sort_by_key(|v| v.started);
        list
    }

    /// End one session of `name` (the account page's "sign out this session"), on every
    /// site. False when it is not a live session of that user.
    pub fn end_session_of(&self, name: &str, id: &IdHash) -> bool {
        let mut revoked = Vec::new();
        let ended = {
            let mut inner = self.lock();
            let theirs = inner.sessions.get(id).is_some_and(|s| s.user.name == name);
            if theirs {
                inner.end(id, &mut revoked);
            }
            theirs
        };
        self.notify(&revoked);
        ended
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
#[path = "sessions_tests.rs"]
mod tests;

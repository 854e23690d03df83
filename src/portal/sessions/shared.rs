//! The session table of a portal that shares its deployment with other portals, on
//! PostgreSQL (`[portal] store = "postgres://…"`): the database is the authority
//! (`store::postgres::sessions`), so any portal can redeem a code minted by another, answer
//! a check for a session started on another, and end it; the edges' revocation log and
//! cursors are the database's too, so an edge may sync with any portal.
//!
//! Two things stay in this process's memory, as SPEC §5 and §6 ask:
//! - the derived site passwords of the sessions signed in here (never stored): a hand-off
//!   redeemed through another portal has none, and a derived site then asks the user for
//!   their password once more, as after a restart;
//! - API clients' Basic sessions (an in-memory [`SessionTable`]): their key would let
//!   whoever holds the database and the cluster secret test passwords at HMAC speed. An
//!   edge whose Basic entry is unknown to the portal it asks verifies the credential again.
//!   Their revocations are written to the shared log as they happen.
//!
//! Every method blocks on the database: callers run them off the reactor (see
//! [`super::engine::Sessions`]). A database failure is an error, never an admission.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{SessionTable, SessionView, SitePasswords, Timeouts, UserRevision};
use crate::central::{Admission, SyncReply, SyncReport, Usage};
use crate::config::SiteId;
use crate::crypto::derived::SitePassword;
use crate::crypto::{IdHash, Identifier, ct_eq};
use crate::store::postgres::PgStore;
use crate::store::postgres::sessions::{CodeRow, Limits, SessionRow};
use crate::store::{Store, StoreError, UsageRow, UserRecord};

pub struct SharedSessions {
    pg: Arc<PgStore>,
    timeouts: Timeouts,
    basic: SessionTable,
    site_passwords: Mutex<HashMap<IdHash, SitePasswords>>,
    /// Sessions in the database at the last reap (for `/metrics`, which cannot wait on it).
    counted: AtomicUsize,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

/// A stored Unix-milliseconds time as an `Instant` of this process (for the account page).
fn instant_of(at_ms: i64, now_ms: i64, now: Instant) -> Instant {
    let ago = Duration::from_millis(now_ms.saturating_sub(at_ms).max(0) as u64);
    now.checked_sub(ago).unwrap_or(now)
}

impl SharedSessions {
    pub fn new(pg: Arc<PgStore>, timeouts: Timeouts) -> Arc<Self> {
        let shared = Arc::new(SharedSessions {
            pg,
            timeouts,
            basic: SessionTable::new(timeouts),
            site_passwords: Mutex::new(HashMap::new()),
            counted: AtomicUsize::new(0),
        });
        // Every call into `basic` runs off the reactor (this type's methods all do), so the
        // log can be written as the revocation happens, before the caller goes on.
        let weak = Arc::downgrade(&shared);
        shared.basic.subscribe(move |revoked| {
            // The in-memory log's positions mean nothing to PostgreSQL's log: keys only.
            let keys: Vec<IdHash> = revoked.iter().map(|(k, _)| *k).collect();
            if let Some(shared) = weak.upgrade()
                && let Err(e) = shared.pg.revoke_keys(&keys, now_ms())
            {
                tracing::error!(keys = revoked.len(), error = %crate::http::error::error_chain(&e), "cannot log the revocation of API sessions; edges keep them until their entries expire");
            }
        });
        shared
    }

    fn passwords(&self) -> std::sync::MutexGuard<'_, HashMap<IdHash, SitePasswords>> {
        // Only inserts and removals under the lock: a poisoned map is intact.
        self.site_passwords
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn limits(&self) -> Limits {
        Limits {
            default_idle_ms: ms(self.timeouts.default_idle),
            absolute_ms: ms(self.timeouts.absolute),
        }
    }

    /// The session's user, if it is alive at `now`: the same rules as the in-memory table
    /// (idle and absolute limits), and, since the user is read fresh, a disabled, removed
    /// or re-passworded user ends it at once.
    fn live_user(&self, s: &SessionRow, now: i64) -> Result<Option<UserRecord>, StoreError> {
        Ok(self.alive(s, self.pg.user(&s.user_name)?, now))
    }

    /// [`SharedSessions::live_user`] with the user already read (`None`: removed).
    fn alive(&self, s: &SessionRow, user: Option<UserRecord>, now: i64) -> Option<UserRecord> {
        let user = user?;
        let idle = ms(user.idle_timeout.unwrap_or(self.timeouts.default_idle));
        let within_idle = idle == 0 || now.saturating_sub(s.last_active_ms) <= idle;
        let within_absolute = now.saturating_sub(s.created_ms) < ms(self.timeouts.absolute);
        let same_password = IdHash::of(user.password_hash.as_bytes()) == s.password_tag;
        (within_idle && within_absolute && same_password && !user.disabled).then_some(user)
    }

    fn admission(&self, s: &SessionRow, user: &UserRecord, site: &SiteId, now: i64) -> Admission {
        let age = Duration::from_millis(now.saturating_sub(s.created_ms).max(0) as u64);
        Admission {
            user: user.name.as_str().into(),
            account: user.account.as_str().into(),
            level: user.level_on(&site.0),
            idle_timeout: user.idle_timeout.unwrap_or(self.timeouts.default_idle),
            remaining: self.timeouts.absolute.saturating_sub(age),
            site_password: self
                .passwords()
                .get(&s.id)
                .and_then(|p| p.get(site).cloned()),
            seq: 0,
        }
    }

    pub fn start(
        &self,
        replacing: Option<&IdHash>,
        id: IdHash,
        user: UserRecord,
        site_passwords: SitePasswords,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let keep = match replacing.filter(|old| **old != id) {
            Some(old) => match self.pg.session(old)? {
                Some(s) if s.user_name == user.name => self.live_user(&s, now)?.is_some(),
                _ => false,
            },
            None => false,
        };
        let row = SessionRow {
            id,
            user_name: user.name.clone(),
            password_tag: IdHash::of(user.password_hash.as_bytes()),
            created_ms: now,
            last_active_ms: now,
            roaming: false,
        };
        self.pg
            .start_session(&row, replacing.map(|old| (old, keep)))?;
        let mut passwords = self.passwords();
        if let Some(old) = replacing {
            passwords.remove(old);
        }
        if !site_passwords.is_empty() {
            passwords.insert(id, site_passwords);
        }
        Ok(())
    }

    pub fn mark_roaming(&self, id: &IdHash) -> Result<(), StoreError> {
        self.pg.set_roaming(id)
    }

    pub fn is_roaming(&self, id: &IdHash) -> Result<bool, StoreError> {
        Ok(self.pg.session(id)?.is_some_and(|s| s.roaming))
    }

    pub fn has_site_password(&self, id: &IdHash, site: &SiteId) -> bool {
        self.passwords()
            .get(id)
            .is_some_and(|p| p.contains_key(site))
    }

    pub fn user(&self, id: &IdHash) -> Result<Option<Arc<UserRecord>>, StoreError> {
        let now = now_ms();
        let Some(s) = self.pg.session(id)? else {
            return Ok(None);
        };
        let Some(user) = self.live_user(&s, now)? else {
            return Ok(None);
        };
        self.pg.touch_sessions(&[*id], now)?;
        Ok(Some(Arc::new(user)))
    }

    pub fn mint_code(
        &self,
        id: &IdHash,
        site: &SiteId,
        binding: IdHash,
    ) -> Result<Option<Identifier>, StoreError> {
        let now = now_ms();
        let Some(s) = self.pg.session(id)? else {
            return Ok(None);
        };
        if self.live_user(&s, now)?.is_none() {
            return Ok(None);
        }
        let code = Identifier::new();
        let row = CodeRow {
            session: *id,
            site: site.0.clone(),
            binding,
            expires_ms: now.saturating_add(ms(self.timeouts.code_ttl)),
        };
        Ok(self
            .pg
            .insert_code(&code.hash(), &row, super::CODES_PER_SESSION)?
            .then_some(code))
    }

    /// Redeem a code: consumed (by the database, once across all portals) whatever the
    /// outcome; admits only when fresh, minted for this site and this very site cookie, and
    /// its session is alive.
    pub fn redeem(
        &self,
        code: &str,
        cookie: IdHash,
        site: &SiteId,
    ) -> Result<Option<Admission>, StoreError> {
        // The position is read with the session (see `store::postgres::sessions`).
        let Some((seq, c, found)) = self.pg.take_code_for_redeem(&IdHash::of(code.as_bytes()))?
        else {
            return Ok(None);
        };
        let now = now_ms();
        let fresh = now < c.expires_ms;
        let same_site = c.site == site.0;
        let same_cookie = ct_eq(&c.binding.0, &cookie.0);
        if !(fresh && same_site && same_cookie) {
            return Ok(None);
        }
        let Some((s, _, user)) = found else {
            return Ok(None);
        };
        let Some(user) = self.alive(&s, user, now) else {
            return Ok(None);
        };
        if !self.pg.bind(&cookie, &s.id, &site.0, now)? {
            return Ok(None);
        }
        Ok(Some(Admission {
            seq,
            ..self.admission(&s, &user, site, now)
        }))
    }

    pub fn check(&self, cookie: IdHash, site: &SiteId) -> Result<Option<Admission>, StoreError> {
        // One round trip: the log position with the session (see `store::postgres::sessions`).
        let (seq, found) = self.pg.check_binding(&cookie)?;
        if let Some(a) = self.basic.check(cookie, site) {
            return Ok(Some(Admission { seq, ..a }));
        }
        let now = now_ms();
        let Some((s, bound_site, user)) = found else {
            return Ok(None);
        };
        let Some(user) = self.alive(&s, user, now) else {
            return Ok(None);
        };
        self.pg.touch_sessions(&[s.id], now)?;
        Ok((bound_site == site.0).then(|| Admission {
            seq,
            ..self.admission(&s, &user, site, now)
        }))
    }

    /// Where its Basic sessions' table is in its users' changes: Basic sessions live in
    /// this process's memory (see [`SessionTable::start_basic`]).
    pub fn user_revision(&self) -> UserRevision {
        self.basic.user_revision()
    }

    pub fn start_basic(
        &self,
        key: IdHash,
        user: UserRecord,
        read: UserRevision,
        site: &SiteId,
        site_password: Option<SitePassword>,
    ) -> Result<Option<Admission>, StoreError> {
        // A record read before a change of its user starts nothing (checked again, under
        // the table's lock, by the start itself); asked first, it ends nothing either.
        if self.basic.user_changed_since(&user.name, read) {
            return Ok(None);
        }
        // The client's live session goes on (see `SessionTable::continue_basic`). The log
        // position is read first: a revocation after it is newer than this answer.
        let seq = self.pg.log_position()?;
        if let Some(admission) = self
            .basic
            .continue_basic(key, &user, site, site_password.as_ref())
        {
            return Ok(Some(Admission { seq, ..admission }));
        }
        // Otherwise the session this key had ends first (its revocation logged now), so this
        // answer's position is newer than that revocation.
        self.basic.end(&key);
        let seq = self.pg.log_position()?;
        let admission = self.basic.start_basic(key, user, read, site, site_password);
        Ok(admission.map(|a| Admission { seq, ..a }))
    }

    pub fn end(&self, id: &IdHash) -> Result<(), StoreError> {
        self.basic.end(id);
        self.pg.end_sessions(&[*id], now_ms())?;
        self.passwords().remove(id);
        Ok(())
    }

    /// A user changed in the store. Sessions of a disabled, removed or re-passworded user
    /// end; the others stay, but the edges drop their entries and ask again, so they learn
    /// the new level, account and idle timeout. (The in-memory table tells edges of a new
    /// idle timeout without a new question; this one does not keep the old record to know
    /// what changed.) Every portal polling the store does this; the second time finds the
    /// sessions already ended, or revokes the keys again, which costs an edge one question.
    pub fn user_changed(
        &self,
        name: &str,
        now_stored: Option<UserRecord>,
    ) -> Result<(), StoreError> {
        self.basic.user_changed(name, now_stored.clone());
        let sessions = self.pg.sessions_of_user(name)?;
        let (mut ended, mut asked_again) = (Vec::new(), Vec::new());
        for (s, bindings) in sessions {
            let keep = now_stored.as_ref().is_some_and(|u| {
                !u.disabled && IdHash::of(u.password_hash.as_bytes()) == s.password_tag
            });
            if keep {
                asked_again.extend(bindings.into_iter().map(|(key, _)| key));
            } else {
                ended.push(s.id);
            }
        }
        let now = now_ms();
        self.pg.end_sessions(&ended, now)?;
        self.pg.revoke_keys(&asked_again, now)?;
        let mut passwords = self.passwords();
        for id in &ended {
            passwords.remove(id);
        }
        Ok(())
    }

    /// Activity up (one statement for the whole set), revocations down from the shared log.
    pub fn sync(&self, report: &SyncReport) -> Result<SyncReply, StoreError> {
        self.pg.touch_bindings(&report.used, now_ms())?;
        // API clients' sessions live here: touch those this portal holds.
        let _ = self.basic.sync(report);
        let log = self.pg.log_since(report.cursor)?;
        Ok(SyncReply {
            epoch: self.pg.epoch()?,
            cursor: log.last,
            revoked: log.revoked,
            idle_timeouts: Vec::new(),
            reset: log.reset,
            usage_refused: false,
        })
    }

    /// Whose traffic a gate reported, added up per (account, site); unknown entries are
    /// counted in the second value.
    pub fn attribute(
        &self,
        usage: &[(IdHash, Usage)],
    ) -> Result<(Vec<UsageRow>, usize), StoreError> {
        let keys: Vec<IdHash> = usage.iter().map(|(k, _)| *k).collect();
        let owners: HashMap<IdHash, (String, String)> = self
            .pg
            .owners(&keys)?
            .into_iter()
            .map(|(key, account, site)| (key, (account, site)))
            .collect();
        let mut sums: BTreeMap<(String, String), Usage> = BTreeMap::new();
        let mut elsewhere = Vec::new();
        for (key, u) in usage {
            match owners.get(key) {
                Some(owner) => sums.entry(owner.clone()).or_default().add(u),
                None => elsewhere.push((*key, *u)),
            }
        }
        // The rest may be this portal's API clients.
        let (basic_rows, unknown) = self.basic.attribute(&elsewhere);
        for row in basic_rows {
            sums.entry((row.account, row.site))
                .or_default()
                .add(&row.usage);
        }
        Ok((super::usage_rows(sums), unknown))
    }

    /// End sessions past their limits (shared with the other portals' reapers), and forget
    /// the site passwords of sessions that ended anywhere.
    pub fn reap(&self) -> Result<(), StoreError> {
        self.basic.reap();
        self.pg.reap(self.limits(), now_ms())?;
        let held: Vec<IdHash> = self.passwords().keys().copied().collect();
        if !held.is_empty() {
            let alive: std::collections::HashSet<IdHash> =
                self.pg.existing_sessions(&held)?.into_iter().collect();
            self.passwords().retain(|id, _| alive.contains(id));
        }
        self.counted
            .store(self.pg.count_sessions()?, Ordering::Relaxed);
        Ok(())
    }

    /// See [`PgStore::claim_nonce`].
    pub fn claim_nonce(&self, nonce: &str) -> Result<bool, StoreError> {
        self.pg.claim_nonce(nonce, now_ms())
    }

    /// Sessions (as of the last reap) plus this portal's API clients.
    pub fn count(&self) -> usize {
        self.counted.load(Ordering::Relaxed) + self.basic.len()
    }

    pub fn sessions_of(&self, name: &str) -> Result<Vec<SessionView>, StoreError> {
        let (now, wall) = (Instant::now(), now_ms());
        let mut list = self.basic.sessions_of(name);
        for (s, bindings) in self.pg.sessions_of_user(name)? {
            if self.live_user(&s, wall)?.is_none() {
                continue;
            }
            let mut sites: Vec<SiteId> = Vec::new();
            for (_, site) in bindings {
                let site = SiteId(site);
                if !sites.contains(&site) {
                    sites.push(site);
                }
            }
            list.push(SessionView {
                id: s.id,
                started: instant_of(s.created_ms, wall, now),
                last_active: instant_of(s.last_active_ms, wall, now),
                sites,
                basic: false,
            });
        }
        list.sort_by_key(|v| v.started);
        Ok(list)
    }

    pub fn end_session_of(&self, name: &str, id: &IdHash) -> Result<bool, StoreError> {
        if self.basic.end_session_of(name, id) {
            return Ok(true);
        }
        match self.pg.session(id)? {
            Some(s) if s.user_name == name => {
                self.end(id)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

#[cfg(test)]
#[path = "shared_tests.rs"]
mod tests;

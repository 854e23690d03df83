//! The session table's write-behind to the store, so that a restart of the portal signs
//! nobody out.
//!
//! Every change marks its session ([`Dirty`]) while the table's lock is held anyway; no
//! request waits for the store. The portal's maintenance loop takes the marks about once a
//! second ([`SessionTable::take_writes`]) and writes them in one transaction off the
//! reactor (`Portal::save_sessions`), and once more after the last request at shutdown.
//! A mark says *which* session to write, not what happened to it: a flush writes the
//! session as it is then, or deletes it when it is gone, so any number of changes between
//! two flushes cost one row, and a flush that failed is retried by marking its sessions
//! again ([`SessionTable::requeue`]). A crash loses at most the changes since the last flush.
//! A use alone marks its session only once the stored last activity lags by
//! `Session::write_lag` (a minute at most): with thousands of browsers busy, writing every
//! use each second cost more CPU than serving them.
//!
//! At start ([`SessionTable::restore`]) the stored sessions come back with their times moved
//! from the wall clock to this process's monotonic clock.
//!
//! Kept in memory only, on purpose:
//! - site passwords (SPEC §5): a restored session has none, so a derived site sends its
//!   user back through sign-in, where the portal asks for the password again;
//! - one-time codes: they live about a minute; a hand-off cut by a restart starts again;
//! - the revocation log: a restart changes the table's epoch, gates drop their tables and
//!   ask again about each user, and the restored sessions answer;
//! - the bindings of ended sessions kept for usage attribution (traffic counted before a
//!   sign-out and reported after a restart is logged as unattributed).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{Binding, Inner, Session, SessionTable, SitePasswords};
use crate::config::SiteId;
use crate::crypto::IdHash;
use crate::store::{SessionWrites, StoredSession, UserRecord};

/// What the next flush must write of one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Dirty {
    /// Only used: its last activity.
    Touched,
    /// Started, ended, replaced, bound to a site, marked roaming: the whole row with its
    /// bindings, or its deletion once it is gone.
    Changed,
}

/// The wall clock and the monotonic clock read together, to turn one into the other.
#[derive(Debug, Clone, Copy)]
struct Clock {
    /// Unix milliseconds.
    wall_ms: i64,
    mono: Instant,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Clock {
    fn now() -> Self {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Clock {
            wall_ms: millis(since_epoch),
            mono: Instant::now(),
        }
    }

    /// The wall-clock time of `at`.
    fn wall(&self, at: Instant) -> i64 {
        match self.mono.checked_duration_since(at) {
            Some(ago) => self.wall_ms.saturating_sub(millis(ago)),
            None => self.wall_ms.saturating_add(millis(at - self.mono)),
        }
    }

    /// The instant of a wall-clock time: now minus the wall time elapsed since. A time
    /// ahead of the wall clock (it was set back) counts as now. `None` when the monotonic
    /// clock cannot reach that far back.
    fn instant(&self, wall_ms: i64) -> Option<Instant> {
        let ago = u64::try_from(self.wall_ms.saturating_sub(wall_ms)).unwrap_or(0);
        self.mono.checked_sub(Duration::from_millis(ago))
    }
}

impl Inner {
    pub(super) fn mark(&mut self, id: IdHash, dirty: Dirty) {
        let mark = self.dirty.entry(id).or_insert(dirty);
        *mark = (*mark).max(dirty);
    }

    /// Session `id` as the store keeps it: only the bindings that still point at it.
    fn stored(&self, id: &IdHash, s: &Session, clock: &Clock) -> StoredSession {
        StoredSession {
            id: *id,
            user: s.user.name.clone(),
            password_tag: IdHash::of(s.user.password_hash.as_bytes()),
            created_ms: clock.wall(s.created),
            last_active_ms: clock.wall(s.last_active),
            roaming: s.roaming,
            bindings: s
                .bindings
                .iter()
                .filter_map(|b| {
                    let binding = self.bindings.get(b).filter(|x| x.session == *id)?;
                    Some((*b, binding.site.0.clone()))
                })
                .collect(),
        }
    }
}

/// What [`SessionTable::restore`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    pub sessions: usize,
    /// Stored sessions that are over; the next flush deletes them.
    pub dropped: usize,
}

impl SessionTable {
    /// Take the changes since the last call, of at most `max` sessions (the rest wait for
    /// the next call), as the store writes them.
    pub fn take_writes(&self, max: usize) -> SessionWrites {
        let clock = Clock::now();
        let mut inner = self.lock();
        let taken: Vec<(IdHash, Dirty)> = if inner.dirty.len() <= max {
            inner.dirty.drain().collect()
        } else {
            let some: Vec<(IdHash, Dirty)> = inner
                .dirty
                .iter()
                .take(max)
                .map(|(k, v)| (*k, *v))
                .collect();
            for (id, _) in &some {
                inner.dirty.remove(id);
            }
            some
        };
        // After a burst (many sign-ins at once), give back what the marks no longer need.
        if inner.dirty.capacity() > 2 * max.max(inner.dirty.len()) {
            inner.dirty.shrink_to(max);
        }
        let mut writes = SessionWrites::default();
        for (id, dirty) in taken {
            match (inner.sessions.get(&id), dirty) {
                // An API client's session is known by a keyed hash of its credential: in
                // the store, next to the key, it would let a stolen file test passwords at
                // HMAC speed instead of argon2id's. The client is verified again after a
                // restart instead.
                (Some(s), _) if s.bindings.as_slice() == [id] => {}
                (None, _) => writes.ended.push(id),
                (Some(s), Dirty::Touched) => writes.touched.push((id, clock.wall(s.last_active))),
                (Some(s), Dirty::Changed) => writes.saved.push(inner.stored(&id, s, &clock)),
            }
        }
        writes
    }

    /// Mark again the sessions of a flush the store refused, so the next flush writes them
    /// (as they are then).
    pub fn requeue(&self, writes: &SessionWrites) {
        let mut inner = self.lock();
        let changed = writes
            .ended
            .iter()
            .chain(writes.saved.iter().map(|s| &s.id));
        for id in changed {
            inner.mark(*id, Dirty::Changed);
        }
        for (id, _) in &writes.touched {
            inner.mark(*id, Dirty::Touched);
        }
    }

    /// Put back the sessions a previous run stored, with their users as the store has them
    /// now (`users`, by name). A session is not restored, and the next flush deletes it,
    /// when it is past its idle or absolute limit by the wall clock, or its user is gone,
    /// disabled, or has another password since.
    pub fn restore(
        &self,
        stored: Vec<StoredSession>,
        users: &HashMap<String, Arc<UserRecord>>,
    ) -> Restored {
        let clock = Clock::now();
        let mut done = Restored {
            sessions: 0,
            dropped: 0,
        };
        let mut inner = self.lock();
        for s in stored {
            if inner.sessions.contains_key(&s.id) {
                // Started in this run already (restore comes first): the live one stands.
                continue;
            }
            let Some(mut session) = self.rebuild(&s, users, &clock) else {
                inner.mark(s.id, Dirty::Changed);
                done.dropped += 1;
                continue;
            };
            for (cookie, site) in s.bindings {
                let binding = Binding {
                    session: s.id,
                    site: SiteId(site),
                };
                inner.bindings.insert(cookie, binding);
                session.bindings.push(cookie);
            }
            inner.insert(s.id, session, &self.timeouts);
            done.sessions += 1;
        }
        done
    }

    /// A stored session as the table holds it, without site passwords; `None` when it is
    /// over.
    fn rebuild(
        &self,
        s: &StoredSession,
        users: &HashMap<String, Arc<UserRecord>>,
        clock: &Clock,
    ) -> Option<Session> {
        let user = users.get(&s.user)?;
        if IdHash::of(user.password_hash.as_bytes()) != s.password_tag {
            return None;
        }
        let session = Session {
            user: user.clone(),
            created: clock.instant(s.created_ms)?,
            last_active: clock.instant(s.last_active_ms)?,
            stored_active: clock.instant(s.last_active_ms)?,
            bindings: Vec::new(),
            site_passwords: SitePasswords::new(),
            roaming: s.roaming,
            codes: VecDeque::new(),
        };
        // Also refuses a disabled user.
        session.alive(&self.timeouts, clock.mono).then_some(session)
    }
}

#[cfg(test)]
#[path = "persist_tests.rs"]
mod tests;

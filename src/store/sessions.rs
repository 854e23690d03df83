//! The portal's sessions in SQLite, so that a restart of the portal signs nobody out.
//!
//! What is kept: each session's key (the hash of its portal cookie or of an API client's
//! Basic key), its user, when it started and was last used (wall-clock Unix milliseconds),
//! whether it is roaming, and its site bindings (hashes of site cookies). Never a cookie
//! value, never a site password (SPEC §5: those live only in the portal's memory).
//!
//! The portal writes here behind its in-memory table (`portal::sessions::persist`): one
//! transaction per flush, about once a second. The SQL is here, called from
//! [`super::SqliteStore`]'s [`super::Store`] methods.

use std::collections::HashMap;

use rusqlite::{Connection, params};

use super::StoreError;
use crate::crypto::IdHash;

/// A session as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    pub id: IdHash,
    pub user: String,
    /// SHA-256 of the user's password hash while the session was alive: a password changed
    /// while the portal was down ends the session at restore, as a change does while it runs.
    pub password_tag: IdHash,
    /// Unix milliseconds.
    pub created_ms: i64,
    pub last_active_ms: i64,
    /// Signed in on a shared computer (SPEC §6).
    pub roaming: bool,
    /// Its site bindings in the order they were made: (site cookie hash, site id). An API
    /// client's Basic session is its own single binding.
    pub bindings: Vec<(IdHash, String)>,
}

/// One flush of the session table, written in one transaction.
#[derive(Debug, Default)]
pub struct SessionWrites {
    /// Sessions that ended: their rows and bindings go.
    pub ended: Vec<IdHash>,
    /// Sessions new or changed (bindings, roaming): written whole, bindings replaced.
    pub saved: Vec<StoredSession>,
    /// Sessions only used since: their last activity (Unix milliseconds).
    pub touched: Vec<(IdHash, i64)>,
}

impl SessionWrites {
    /// How many sessions this flush writes.
    pub fn len(&self) -> usize {
        self.ended.len() + self.saved.len() + self.touched.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn id_hash(bytes: Vec<u8>, field: &'static str) -> Result<IdHash, StoreError> {
    Ok(IdHash(
        bytes
            .try_into()
            .map_err(|_| StoreError::Corrupt { field })?,
    ))
}

/// Every stored session with its bindings.
pub(super) fn load(c: &Connection) -> Result<Vec<StoredSession>, StoreError> {
    type Row = (Vec<u8>, String, Vec<u8>, i64, i64, bool);
    let mut stmt = c.prepare(
        "SELECT id, user_name, password_tag, created_ms, last_active_ms, roaming FROM sessions",
    )?;
    let rows = stmt.query_map([], |r| -> rusqlite::Result<Row> {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        ))
    })?;
    let mut sessions = Vec::new();
    let mut index = HashMap::new();
    for row in rows {
        let (id, user, tag, created_ms, last_active_ms, roaming) = row?;
        let id = id_hash(id, "sessions.id")?;
        index.insert(id, sessions.len());
        sessions.push(StoredSession {
            id,
            user,
            password_tag: id_hash(tag, "sessions.password_tag")?,
            created_ms,
            last_active_ms,
            roaming,
            bindings: Vec::new(),
        });
    }
    let mut stmt = c.prepare(
        "SELECT session_id, cookie_hash, site FROM session_bindings ORDER BY session_id, position",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, Vec<u8>>(0)?,
            r.get::<_, Vec<u8>>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    for row in rows {
        let (session, cookie, site) = row?;
        let session = id_hash(session, "session_bindings.session_id")?;
        let cookie = id_hash(cookie, "session_bindings.cookie_hash")?;
        // The foreign key keeps every binding's session; the lookup cannot miss.
        if let Some(&i) = index.get(&session) {
            sessions[i].bindings.push((cookie, site));
        }
    }
    Ok(sessions)
}

/// Apply one flush in one transaction: ended sessions first (their bindings go with them,
/// by the foreign key), then the saved ones whole, then the touched ones' last activity.
pub(super) fn save(c: &mut Connection, w: &SessionWrites) -> Result<(), StoreError> {
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut end = tx.prepare_cached("DELETE FROM sessions WHERE id = ?1")?;
        for id in &w.ended {
            end.execute([id.0.as_slice()])?;
        }
        let mut upsert = tx.prepare_cached(
            "INSERT INTO sessions (id, user_name, password_tag, created_ms, last_active_ms, roaming)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (id) DO UPDATE SET user_name = excluded.user_name,
                password_tag = excluded.password_tag, created_ms = excluded.created_ms,
                last_active_ms = excluded.last_active_ms, roaming = excluded.roaming",
        )?;
        let mut unbind = tx.prepare_cached("DELETE FROM session_bindings WHERE session_id = ?1")?;
        // A site cookie bound to one session at a time: a binding moved from another
        // session (the same user signing in again) replaces its old row.
        let mut bind = tx.prepare_cached(
            "INSERT OR REPLACE INTO session_bindings (cookie_hash, session_id, site, position)
             VALUES (?1, ?2, ?3, ?4)",
        )?;
        for s in &w.saved {
            let id = s.id.0.as_slice();
            upsert.execute(params![
                id,
                s.user,
                s.password_tag.0.as_slice(),
                s.created_ms,
                s.last_active_ms,
                s.roaming
            ])?;
            unbind.execute([id])?;
            for (position, (cookie, site)) in s.bindings.iter().enumerate() {
                bind.execute(params![cookie.0.as_slice(), id, site, position as i64])?;
            }
        }
        let mut touch = tx.prepare_cached(
            "UPDATE sessions SET last_active_ms = max(last_active_ms, ?2) WHERE id = ?1",
        )?;
        for (id, at) in &w.touched {
            touch.execute(params![id.0.as_slice(), at])?;
        }
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SqliteStore, Store};

    fn h(n: u8) -> IdHash {
        IdHash([n; 32])
    }

    fn session(id: u8, bindings: &[(u8, &str)]) -> StoredSession {
        StoredSession {
            id: h(id),
            user: "alice".into(),
            password_tag: h(200),
            created_ms: 1_000,
            last_active_ms: 2_000,
            roaming: false,
            bindings: bindings
                .iter()
                .map(|(b, s)| (h(*b), s.to_string()))
                .collect(),
        }
    }

    fn sorted(mut v: Vec<StoredSession>) -> Vec<StoredSession> {
        v.sort_by_key(|s| s.id.0);
        v
    }

    /// Saved sessions come back whole, bindings in the order they were made.
    #[test]
    fn saved_sessions_load_back() {
        let s = SqliteStore::in_memory().unwrap();
        assert!(s.load_sessions().unwrap().is_empty());
        let mut roaming = session(2, &[]);
        roaming.roaming = true;
        roaming.user = "bob".into();
        let saved = vec![
            session(1, &[(30, "wiki"), (10, "app"), (20, "app")]),
            roaming,
        ];
        s.save_sessions(&SessionWrites {
            saved: saved.clone(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(sorted(s.load_sessions().unwrap()), saved);
    }

    /// A touch updates the last activity only (never backwards); an end removes the row and
    /// its bindings; a save over an existing row replaces its bindings.
    #[test]
    fn touch_end_and_resave() {
        let s = SqliteStore::in_memory().unwrap();
        let one = session(1, &[(10, "app")]);
        let two = session(2, &[(20, "app"), (21, "wiki")]);
        s.save_sessions(&SessionWrites {
            saved: vec![one.clone(), two],
            ..Default::default()
        })
        .unwrap();
        s.save_sessions(&SessionWrites {
            ended: vec![h(2), h(99)],
            touched: vec![(h(1), 5_000), (h(98), 1)],
            ..Default::default()
        })
        .unwrap();
        s.save_sessions(&SessionWrites {
            touched: vec![(h(1), 4_000)],
            ..Default::default()
        })
        .unwrap();
        let loaded = s.load_sessions().unwrap();
        assert_eq!(loaded.len(), 1, "session 2 ended; unknown ids are no error");
        assert_eq!(loaded[0].last_active_ms, 5_000, "the later touch holds");
        assert_eq!(loaded[0].bindings, one.bindings);
        let count =
            |sql: &str| -> i64 { s.with(|c| Ok(c.query_row(sql, [], |r| r.get(0))?)).unwrap() };
        assert_eq!(count("SELECT count(*) FROM session_bindings"), 1);

        let mut again = session(1, &[(10, "app"), (11, "wiki")]);
        again.roaming = true;
        s.save_sessions(&SessionWrites {
            saved: vec![again.clone()],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.load_sessions().unwrap(), vec![again]);
    }

    /// The same user signing in again moves the old session's bindings to the new one in
    /// one flush: the old row goes, the bindings now point at the new session.
    #[test]
    fn bindings_move_to_a_replacing_session() {
        let s = SqliteStore::in_memory().unwrap();
        s.save_sessions(&SessionWrites {
            saved: vec![session(1, &[(10, "app"), (11, "wiki")])],
            ..Default::default()
        })
        .unwrap();
        let new = session(2, &[(10, "app"), (11, "wiki"), (12, "legacy")]);
        s.save_sessions(&SessionWrites {
            ended: vec![h(1)],
            saved: vec![new.clone()],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.load_sessions().unwrap(), vec![new]);
        // Moved without the old session ending first (rows written in another order).
        let newer = session(3, &[(12, "legacy")]);
        s.save_sessions(&SessionWrites {
            saved: vec![newer.clone()],
            ..Default::default()
        })
        .unwrap();
        let loaded = sorted(s.load_sessions().unwrap());
        assert_eq!(
            loaded[0].bindings.len(),
            2,
            "session 2 lost the moved binding"
        );
        assert_eq!(loaded[1], newer);
    }

    /// A flush is all or nothing.
    #[test]
    fn a_failed_flush_changes_nothing() {
        let s = SqliteStore::in_memory().unwrap();
        s.save_sessions(&SessionWrites {
            saved: vec![session(1, &[(10, "app")])],
            ..Default::default()
        })
        .unwrap();
        // A trigger refuses the new session's binding, after the end was applied.
        s.with(|c| {
            c.execute_batch(
                "CREATE TRIGGER refuse BEFORE INSERT ON session_bindings WHEN NEW.site = 'bad'
                 BEGIN SELECT RAISE(ABORT, 'refused'); END;",
            )?;
            Ok(())
        })
        .unwrap();
        let bad = SessionWrites {
            ended: vec![h(1)],
            saved: vec![session(2, &[(20, "bad")])],
            ..Default::default()
        };
        assert!(s.save_sessions(&bad).is_err());
        assert_eq!(s.load_sessions().unwrap(), vec![session(1, &[(10, "app")])]);
    }
}

//! [`Store`] on an SQLite file: WAL journal, every change in a transaction, schema versions
//! kept in `PRAGMA user_version` and applied in order at open.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::{
    AccountNode, AccountUsage, NewUser, SELECT_USER, SessionWrites, Store, StoreError,
    StoredSession, UsageRow, UserRecord, UserRow, encode_levels, idle_secs, links, now_secs,
    to_record, upsert_changes_nothing,
};
use crate::config::Level;
use crate::crypto::IdHash;

/// Schema versions, applied in order. Never edit a shipped step; add a new one.
const MIGRATIONS: &[&str] = &[
    // 1: users, accounts, secrets, and a revision counter for change polling.
    "CREATE TABLE accounts (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL
     );
     CREATE TABLE users (
        name TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        level INTEGER NOT NULL,
        site_levels TEXT NOT NULL DEFAULT '{}',
        idle_timeout_secs INTEGER,
        disabled INTEGER NOT NULL DEFAULT 0,
        account_id INTEGER NOT NULL REFERENCES accounts(id),
        revision INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL
     );
     CREATE INDEX users_revision ON users(revision);
     CREATE TABLE secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL);
     CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
     INSERT INTO meta (key, value) VALUES ('revision', 0);
     -- Removed users leave a row here so that running portals learn of the removal.
     CREATE TABLE removed_users (name TEXT NOT NULL, revision INTEGER NOT NULL);",
    // 2: accounts across sites (SPEC §6): temporary passwords, the sites each account has
    // reached, nodes (browsers) and the accounts seen on them, usage per account/site/day.
    "ALTER TABLE users ADD COLUMN temporary_until INTEGER;
     CREATE TABLE account_sites (
        account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        site TEXT NOT NULL,
        first_access INTEGER NOT NULL,
        PRIMARY KEY (account_id, site)
     );
     CREATE TABLE nodes (
        id INTEGER PRIMARY KEY,
        cookie_hash BLOB NOT NULL UNIQUE,
        created_at INTEGER NOT NULL,
        last_seen INTEGER NOT NULL
     );
     CREATE TABLE node_accounts (
        node_id INTEGER NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
        account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        PRIMARY KEY (node_id, account_id)
     );
     CREATE INDEX node_accounts_account ON node_accounts(account_id);
     CREATE TABLE usage (
        account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        site TEXT NOT NULL,
        day TEXT NOT NULL,
        requests INTEGER NOT NULL DEFAULT 0,
        bytes_in INTEGER NOT NULL DEFAULT 0,
        bytes_out INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (account_id, site, day)
     );",
    // 3: linking (SPEC §6): pairs of accounts a node's user chose to keep apart (asked no
    // more on that node; account_a < account_b), and the accounts merged into another, so
    // reports can say what an account now includes.
    "CREATE TABLE node_kept_apart (
        node_id INTEGER NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
        account_a INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        account_b INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        at INTEGER NOT NULL,
        PRIMARY KEY (node_id, account_a, account_b),
        CHECK (account_a < account_b)
     );
     CREATE TABLE account_merges (
        merged_name TEXT NOT NULL,
        into_account INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        at INTEGER NOT NULL
     );
     CREATE INDEX account_merges_into ON account_merges(into_account);",
    // 4: the portal's sessions, so a restart signs nobody out (see store::sessions): keys
    // and site bindings as hashes, times as Unix milliseconds, never a site password.
    "CREATE TABLE sessions (
        id BLOB PRIMARY KEY,
        user_name TEXT NOT NULL,
        password_tag BLOB NOT NULL,
        created_ms INTEGER NOT NULL,
        last_active_ms INTEGER NOT NULL,
        roaming INTEGER NOT NULL DEFAULT 0
     ) WITHOUT ROWID;
     CREATE TABLE session_bindings (
        cookie_hash BLOB PRIMARY KEY,
        session_id BLOB NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        site TEXT NOT NULL,
        position INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE INDEX session_bindings_session ON session_bindings(session_id, position);",
    // 5: the names of the batches of traffic already added (Store::add_usage_once), so a
    // batch a gate sends again after a lost answer is counted once.
    "CREATE TABLE usage_batches (batch INTEGER PRIMARY KEY, at INTEGER NOT NULL);
     CREATE INDEX usage_batches_at ON usage_batches(at);",
];

pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl SqliteStore {
    /// Open (creating file, folder and schema if missing) and migrate to the newest schema.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Open {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let conn = Connection::open(path)?;
        Self::setup(conn)
    }

    /// A private in-memory store (tests, tools).
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::setup(Connection::open_in_memory()?)
    }

    fn setup(mut conn: Connection) -> Result<Self, StoreError> {
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for (i, step) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
            tx.execute_batch(step)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        }
        tx.commit()?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }

    pub(super) fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // A panic while holding the lock cannot leave SQLite inconsistent (transactions roll
        // back), so a poisoned lock is safe to keep using.
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn)
    }
}

/// Bump the global revision inside `tx` and return the new value.
fn next_revision(tx: &rusqlite::Transaction) -> Result<i64, StoreError> {
    tx.execute(
        "UPDATE meta SET value = value + 1 WHERE key = 'revision'",
        [],
    )?;
    Ok(
        tx.query_row("SELECT value FROM meta WHERE key = 'revision'", [], |r| {
            r.get(0)
        })?,
    )
}

fn row_to_user(r: &rusqlite::Row) -> rusqlite::Result<UserRow> {
    Ok(super::user_row!(r, get))
}

fn insert_user(
    tx: &rusqlite::Transaction,
    u: &NewUser,
    revision: i64,
    temporary_until: Option<i64>,
) -> Result<(), StoreError> {
    // The account is named after its first user; a name clash (an account left by a removed
    // user) gets a numbered suffix rather than joining someone else's account.
    let mut account = u.name.clone();
    let mut n = 1;
    while tx
        .query_row("SELECT 1 FROM accounts WHERE name = ?1", [&account], |_| {
            Ok(())
        })
        .optional()?
        .is_some()
    {
        n += 1;
        account = format!("{}#{n}", u.name);
    }
    tx.execute(
        "INSERT INTO accounts (name, created_at) VALUES (?1, ?2)",
        params![account, now_secs()],
    )?;
    let account_id = tx.last_insert_rowid();
    tx.execute(
        "INSERT INTO users (name, password_hash, level, site_levels, idle_timeout_secs, disabled, account_id, revision, created_at, temporary_until)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            u.name,
            u.password_hash,
            u.level.0,
            encode_levels(&u.site_levels),
            u.idle_timeout.map(|d| d.as_secs() as i64),
            u.disabled,
            account_id,
            revision,
            now_secs(),
            temporary_until
        ],
    )?;
    Ok(())
}

impl Store for SqliteStore {
    fn user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        self.with(|c| {
            let row = c
                .query_row(
                    &format!("{SELECT_USER} WHERE u.name = ?1"),
                    [name],
                    row_to_user,
                )
                .optional()?;
            row.map(to_record).transpose()
        })
    }

    fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!("{SELECT_USER} ORDER BY u.name"))?;
            let rows = stmt.query_map([], row_to_user)?;
            rows.map(|r| to_record(r?)).collect()
        })
    }

    fn upsert_user(&self, u: &NewUser) -> Result<bool, StoreError> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let existing = tx.query_row(&format!("{SELECT_USER} WHERE u.name = ?1"), [&u.name], row_to_user).optional()?;
            let changed = match existing.map(to_record).transpose()? {
                None => {
                    let rev = next_revision(&tx)?;
                    insert_user(&tx, u, rev, None)?;
                    true
                }
                Some(old) => {
                    let same = upsert_changes_nothing(&old, u);
                    if !same {
                        let rev = next_revision(&tx)?;
                        tx.execute(
                            "UPDATE users SET password_hash = ?2, level = ?3, site_levels = ?4, idle_timeout_secs = ?5, disabled = ?6, revision = ?7, temporary_until = NULL WHERE name = ?1",
                            params![u.name, u.password_hash, u.level.0, encode_levels(&u.site_levels), u.idle_timeout.map(|d| d.as_secs() as i64), u.disabled, rev],
                        )?;
                    }
                    !same
                }
            };
            tx.commit()?;
            Ok(changed)
        })
    }

    fn add_user(&self, u: &NewUser) -> Result<bool, StoreError> {
        self.create_user(u, None)
    }

    fn set_password(&self, name: &str, password_hash: &str) -> Result<bool, StoreError> {
        self.update(
            name,
            "password_hash = ?3, temporary_until = NULL",
            &[&password_hash],
        )
    }

    fn upgrade_password_hash(&self, name: &str, old: &str, new: &str) -> Result<bool, StoreError> {
        self.swap_hash(name, old, new, "")
    }

    fn set_level(
        &self,
        name: &str,
        level: Level,
        site_levels: Option<&BTreeMap<String, Level>>,
    ) -> Result<bool, StoreError> {
        match site_levels {
            Some(levels) => self.update(
                name,
                "level = ?3, site_levels = ?4",
                &[&level.0, &encode_levels(levels)],
            ),
            None => self.update(name, "level = ?3", &[&level.0]),
        }
    }

    fn set_disabled(&self, name: &str, disabled: bool) -> Result<bool, StoreError> {
        self.update(name, "disabled = ?3", &[&disabled])
    }

    fn set_idle_timeout(&self, name: &str, idle: Option<Duration>) -> Result<bool, StoreError> {
        self.update(name, "idle_timeout_secs = ?3", &[&idle_secs(idle)])
    }

    fn account_nodes(&self, account: &str) -> Result<Vec<AccountNode>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT n.node_id, n.first_seen, n.last_seen FROM node_accounts n JOIN accounts a ON a.id = n.account_id
                 WHERE a.name = ?1 ORDER BY n.last_seen DESC, n.node_id",
            )?;
            let rows = stmt.query_map([account], |r| {
                Ok(AccountNode {
                    node: r.get(0)?,
                    first_seen: r.get(1)?,
                    last_seen: r.get(2)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    fn forget_node(&self, account: &str, node: i64) -> Result<bool, StoreError> {
        self.with(|c| {
            let n = c.execute(
                "DELETE FROM node_accounts WHERE node_id = ?2
                 AND account_id = (SELECT id FROM accounts WHERE name = ?1)",
                params![account, node],
            )?;
            Ok(n > 0)
        })
    }

    fn remove_user(&self, name: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let account: Option<i64> = tx.query_row("SELECT account_id FROM users WHERE name = ?1", [name], |r| r.get(0)).optional()?;
            let Some(account) = account else { return Ok(false) };
            let rev = next_revision(&tx)?;
            tx.execute("DELETE FROM users WHERE name = ?1", [name])?;
            tx.execute("DELETE FROM accounts WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM users WHERE account_id = ?1)", [account])?;
            tx.execute("INSERT INTO removed_users (name, revision) VALUES (?1, ?2)", params![name, rev])?;
            tx.commit()?;
            Ok(true)
        })
    }

    fn register_user(&self, u: &NewUser, temporary_until: i64) -> Result<bool, StoreError> {
        self.create_user(u, Some(temporary_until))
    }

    fn replace_password(&self, name: &str, old: &str, new: &str) -> Result<bool, StoreError> {
        self.swap_hash(name, old, new, ", temporary_until = NULL")
    }

    fn record_site_access(&self, account: &str, site: &str, at: i64) -> Result<bool, StoreError> {
        self.with(|c| {
            let n = c.execute(
                "INSERT OR IGNORE INTO account_sites (account_id, site, first_access)
                 SELECT id, ?2, ?3 FROM accounts WHERE name = ?1",
                params![account, site, at],
            )?;
            Ok(n > 0)
        })
    }

    fn account_sites(&self, account: &str) -> Result<Vec<(String, i64)>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT s.site, s.first_access FROM account_sites s JOIN accounts a ON a.id = s.account_id
                 WHERE a.name = ?1 ORDER BY s.first_access, s.site",
            )?;
            let rows = stmt.query_map([account], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    fn users_changed_since(&self, revision: i64) -> Result<(Vec<String>, i64), StoreError> {
        self.with(|c| {
            let newest: i64 = c.query_row("SELECT value FROM meta WHERE key = 'revision'", [], |r| r.get(0))?;
            if newest <= revision {
                return Ok((Vec::new(), newest));
            }
            let mut stmt = c.prepare(
                "SELECT name FROM users WHERE revision > ?1 UNION SELECT name FROM removed_users WHERE revision > ?1",
            )?;
            let names = stmt.query_map([revision], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?;
            Ok((names, newest))
        })
    }

    fn note_node_account(
        &self,
        node: &IdHash,
        account: &str,
        at: i64,
    ) -> Result<Vec<String>, StoreError> {
        self.with(|c| links::note_node_account(c, node, account, at))
    }

    fn link_candidates(&self, node: &IdHash, account: &str) -> Result<Vec<String>, StoreError> {
        self.with(|c| links::link_candidates(c, node, account))
    }

    fn keep_apart(
        &self,
        node: &IdHash,
        account: &str,
        others: &[String],
        at: i64,
    ) -> Result<(), StoreError> {
        self.with(|c| links::keep_apart(c, node, account, others, at))
    }

    fn account_login(&self, account: &str) -> Result<Option<String>, StoreError> {
        self.with(|c| links::account_login(c, account))
    }

    fn merge_accounts(
        &self,
        keep: &str,
        gone: &str,
        at: i64,
    ) -> Result<Option<Vec<String>>, StoreError> {
        self.with(|c| links::merge_accounts(c, keep, gone, at, next_revision))
    }

    fn merged_into(&self, account: &str) -> Result<Vec<(String, i64)>, StoreError> {
        self.with(|c| links::merged_into(c, account))
    }

    fn secret(&self, name: &str) -> Result<[u8; 32], StoreError> {
        self.with(|c| {
            let fresh = crate::crypto::random_bytes::<32>();
            c.execute(
                "INSERT OR IGNORE INTO secrets (name, value) VALUES (?1, ?2)",
                params![name, fresh.to_vec()],
            )?;
            let value: Vec<u8> =
                c.query_row("SELECT value FROM secrets WHERE name = ?1", [name], |r| {
                    r.get(0)
                })?;
            value.try_into().map_err(|_| StoreError::Corrupt {
                field: "secrets.value",
            })
        })
    }
    fn add_usage_once(&self, day: &str, rows: &[UsageRow], batch: u64) -> Result<bool, StoreError> {
        self.with(|c| super::usage::add(c, day, rows, batch))
    }

    fn usage_report(
        &self,
        account: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Vec<AccountUsage>, StoreError> {
        self.with(|c| super::usage::report(c, account, from, to))
    }

    fn load_sessions(&self) -> Result<Vec<StoredSession>, StoreError> {
        self.with(|c| super::sessions::load(c))
    }

    fn save_sessions(&self, writes: &SessionWrites) -> Result<(), StoreError> {
        self.with(|c| super::sessions::save(c, writes))
    }
}

impl SqliteStore {
    /// Create a user and their account unless the name is taken (false then). IMMEDIATE
    /// takes the write lock before the check, so concurrent creations of one name are
    /// serialised; the primary key on users.name would refuse a second row anyway.
    fn create_user(&self, u: &NewUser, temporary_until: Option<i64>) -> Result<bool, StoreError> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            if tx
                .query_row("SELECT 1 FROM users WHERE name = ?1", [&u.name], |_| Ok(()))
                .optional()?
                .is_some()
            {
                return Ok(false);
            }
            let rev = next_revision(&tx)?;
            insert_user(&tx, u, rev, temporary_until)?;
            tx.commit()?;
            Ok(true)
        })
    }

    /// Replace a user's password hash only if it is still `old` (compare-and-swap), also
    /// applying `extra_set` (more `col = value` pairs, each led by a comma).
    fn swap_hash(
        &self,
        name: &str,
        old: &str,
        new: &str,
        extra_set: &str,
    ) -> Result<bool, StoreError> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let current: Option<String> = tx
                .query_row(
                    "SELECT password_hash FROM users WHERE name = ?1",
                    [name],
                    |r| r.get(0),
                )
                .optional()?;
            if current.as_deref() != Some(old) {
                return Ok(false);
            }
            let rev = next_revision(&tx)?;
            tx.execute(
                &format!(
                    "UPDATE users SET password_hash = ?2, revision = ?3{extra_set} WHERE name = ?1"
                ),
                params![name, new, rev],
            )?;
            tx.commit()?;
            Ok(true)
        })
    }

    /// Update columns of one user and bump its revision. In `set`, `?1` is the name, `?2`
    /// the new revision, and `?3`… the `values`.
    fn update(
        &self,
        name: &str,
        set: &str,
        values: &[&dyn rusqlite::ToSql],
    ) -> Result<bool, StoreError> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            if tx
                .query_row("SELECT 1 FROM users WHERE name = ?1", [name], |_| Ok(()))
                .optional()?
                .is_none()
            {
                return Ok(false);
            }
            let rev = next_revision(&tx)?;
            let sql = format!("UPDATE users SET {set}, revision = ?2 WHERE name = ?1");
            let mut all: Vec<&dyn rusqlite::ToSql> = vec![&name, &rev];
            all.extend_from_slice(values);
            tx.execute(&sql, all.as_slice())?;
            tx.commit()?;
            Ok(true)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::engine_tests::{TestStore, engine_tests};

    impl TestStore for SqliteStore {
        fn count(&self, sql: &str) -> i64 {
            self.with(|c| Ok(c.query_row(sql, [], |r| r.get(0))?))
                .unwrap()
        }
    }

    fn open() -> SqliteStore {
        SqliteStore::in_memory().unwrap()
    }

    engine_tests!(open);

    /// A store made by schema 1 migrates forward and keeps its users.
    #[test]
    fn schema_one_migrates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let mut conn = Connection::open(&path).unwrap();
            let tx = conn.transaction().unwrap();
            tx.execute_batch(MIGRATIONS[0]).unwrap();
            tx.execute(
                "INSERT INTO accounts (id, name, created_at) VALUES (1, 'bob', 0)",
                [],
            )
            .unwrap();
            tx.execute("INSERT INTO users (name, password_hash, level, account_id, created_at) VALUES ('bob', 'h', 2, 1, 0)", []).unwrap();
            tx.pragma_update(None, "user_version", 1).unwrap();
            tx.commit().unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        let bob = s.user("bob").unwrap().unwrap();
        assert_eq!((bob.account.as_str(), bob.temporary_until), ("bob", None));
        assert!(s.record_site_access("bob", "app", 1).unwrap());
    }
}

//! [`Store`] on an SQLite file: WAL journal, every change in a transaction, schema versions
//! kept in `PRAGMA user_version` and applied in order at open.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::{
    AccountNode, AccountUsage, NewUser, SessionWrites, Store, StoreError, StoredSession, UsageRow,
    UserRecord, links,
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
];

pub struct SqliteStore {
    conn: Mutex<Connection>,
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
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

fn encode_levels(levels: &BTreeMap<String, Level>) -> String {
    let plain: BTreeMap<&str, u32> = levels.iter().map(|(k, v)| (k.as_str(), v.0)).collect();
    serde_json::to_string(&plain).unwrap_or_else(|_| "{}".into())
}

fn decode_levels(s: &str) -> Result<BTreeMap<String, Level>, StoreError> {
    let plain: BTreeMap<String, u32> =
        serde_json::from_str(s).map_err(|_| StoreError::Corrupt {
            field: "users.site_levels",
        })?;
    Ok(plain.into_iter().map(|(k, v)| (k, Level(v))).collect())
}

const SELECT_USER: &str = "SELECT u.name, u.password_hash, u.level, u.site_levels, u.idle_timeout_secs, u.disabled, a.name, u.temporary_until
     FROM users u JOIN accounts a ON a.id = u.account_id";

/// A `users` row as SQLite returns it, before its values are checked.
type UserRow = (
    String,
    String,
    i64,
    String,
    Option<i64>,
    bool,
    String,
    Option<i64>,
);

fn row_to_user(r: &rusqlite::Row) -> rusqlite::Result<UserRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

fn to_record(t: UserRow) -> Result<UserRecord, StoreError> {
    let (name, password_hash, level, site_levels, idle, disabled, account, temporary_until) = t;
    Ok(UserRecord {
        name,
        password_hash,
        level: Level(u32::try_from(level).map_err(|_| StoreError::Corrupt {
            field: "users.level",
        })?),
        site_levels: decode_levels(&site_levels)?,
        idle_timeout: idle.map(|s| Duration::from_secs(s.max(0) as u64)),
        disabled,
        account,
        temporary_until,
    })
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
                    let same = old.password_hash == u.password_hash
                        && old.level == u.level
                        && old.site_levels == u.site_levels
                        && old.idle_timeout == u.idle_timeout
                        && old.disabled == u.disabled
                        && old.temporary_until.is_none();
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
        let secs = idle.map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.update(name, "idle_timeout_secs = ?3", &[&secs])
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
    fn add_usage(&self, day: &str, rows: &[UsageRow]) -> Result<(), StoreError> {
        self.with(|c| super::usage::add(c, day, rows))
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

    fn user(name: &str) -> NewUser {
        NewUser {
            name: name.into(),
            password_hash: "$argon2id$x".into(),
            level: Level(3),
            site_levels: BTreeMap::from([("wiki".to_string(), Level(5))]),
            idle_timeout: Some(Duration::from_secs(600)),
            disabled: false,
        }
    }

    /// Users round-trip with their account, levels and timeout.
    #[test]
    fn add_and_read_user() {
        let s = SqliteStore::in_memory().unwrap();
        assert!(s.add_user(&user("alice")).unwrap());
        assert!(!s.add_user(&user("alice")).unwrap());
        let u = s.user("alice").unwrap().unwrap();
        assert_eq!(u.account, "alice");
        assert_eq!(u.level_on("wiki"), Level(5));
        assert_eq!(u.level_on("app"), Level(3));
        assert_eq!(u.idle_timeout, Some(Duration::from_secs(600)));
        assert!(s.user("bob").unwrap().is_none());
    }

    /// Every change bumps the revision so running portals can notice it.
    #[test]
    fn changes_are_visible_by_revision() {
        let s = SqliteStore::in_memory().unwrap();
        s.add_user(&user("alice")).unwrap();
        s.add_user(&user("bob")).unwrap();
        let (_, rev) = s.users_changed_since(0).unwrap();
        assert!(
            !s.upsert_user(&user("alice")).unwrap(),
            "same values change nothing"
        );
        assert!(s.set_level("bob", Level(1), None).unwrap());
        assert_eq!(
            s.users_changed_since(rev).unwrap().0,
            vec!["bob".to_string()]
        );
        let (_, rev) = s.users_changed_since(0).unwrap();
        assert!(s.remove_user("alice").unwrap());
        assert_eq!(
            s.users_changed_since(rev).unwrap().0,
            vec!["alice".to_string()]
        );
        assert!(!s.set_disabled("nobody", true).unwrap());
    }

    /// An upgraded hash replaces only the hash it was verified against.
    #[test]
    fn upgrade_is_compare_and_swap() {
        let s = SqliteStore::in_memory().unwrap();
        s.add_user(&user("alice")).unwrap();
        assert!(
            !s.upgrade_password_hash("alice", "{SHA}other", "$argon2id$new")
                .unwrap()
        );
        assert!(
            s.upgrade_password_hash("alice", "$argon2id$x", "$argon2id$new")
                .unwrap()
        );
        assert_eq!(
            s.user("alice").unwrap().unwrap().password_hash,
            "$argon2id$new"
        );
        assert!(
            !s.upgrade_password_hash("bob", "$argon2id$x", "$argon2id$new")
                .unwrap()
        );
    }

    /// A registered user's password is temporary until replaced; a replacement is a
    /// compare-and-swap, so one temporary password completes one change only.
    #[test]
    fn temporary_password_is_replaced_once() {
        let s = SqliteStore::in_memory().unwrap();
        assert!(s.register_user(&user("new@example.org"), 1234).unwrap());
        assert!(!s.register_user(&user("new@example.org"), 99).unwrap());
        let u = s.user("new@example.org").unwrap().unwrap();
        assert_eq!(u.temporary_until, Some(1234));
        assert_eq!(u.account, "new@example.org");
        assert!(
            s.replace_password("new@example.org", "$argon2id$x", "$argon2id$own")
                .unwrap()
        );
        assert!(
            !s.replace_password("new@example.org", "$argon2id$x", "$argon2id$again")
                .unwrap()
        );
        let u = s.user("new@example.org").unwrap().unwrap();
        assert_eq!(u.temporary_until, None);
        assert_eq!(u.password_hash, "$argon2id$own");
    }

    /// The first access of an account to a site is kept; later ones do not move it.
    #[test]
    fn first_site_access_is_recorded_once() {
        let s = SqliteStore::in_memory().unwrap();
        s.upsert_user(&user("alice")).unwrap();
        assert!(s.record_site_access("alice", "app", 100).unwrap());
        assert!(!s.record_site_access("alice", "app", 200).unwrap());
        assert!(s.record_site_access("alice", "wiki", 150).unwrap());
        assert!(!s.record_site_access("nobody", "app", 100).unwrap());
        assert_eq!(
            s.account_sites("alice").unwrap(),
            vec![("app".to_string(), 100), ("wiki".to_string(), 150)]
        );
        // Removing the last user of an account removes what was recorded of it.
        assert!(s.remove_user("alice").unwrap());
        assert!(s.account_sites("alice").unwrap().is_empty());
    }

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

    fn node(n: u8) -> IdHash {
        IdHash([n; 32])
    }

    fn usage_row(s: &SqliteStore, account: &str, site: &str, day: &str, n: i64) {
        s.with(|c| {
            c.execute(
                "INSERT INTO usage (account_id, site, day, requests, bytes_in, bytes_out)
                 SELECT id, ?2, ?3, ?4, ?4 * 10, ?4 * 100 FROM accounts WHERE name = ?1",
                params![account, site, day, n],
            )?;
            Ok(())
        })
        .unwrap();
    }

    fn usage_of(s: &SqliteStore, account: &str) -> Vec<(String, String, i64, i64, i64)> {
        s.with(|c| {
            let mut stmt = c.prepare(
                "SELECT u.site, u.day, u.requests, u.bytes_in, u.bytes_out FROM usage u
                 JOIN accounts a ON a.id = u.account_id WHERE a.name = ?1 ORDER BY u.site, u.day",
            )?;
            let rows = stmt.query_map([account], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .unwrap()
    }

    fn count(s: &SqliteStore, sql: &str) -> i64 {
        s.with(|c| Ok(c.query_row(sql, [], |r| r.get(0))?)).unwrap()
    }

    /// A node is registered once; each account signed in on it is noted, and the others
    /// seen there are the candidates for linking, until kept apart (either way round).
    #[test]
    fn nodes_note_accounts_and_offer_the_others() {
        let s = SqliteStore::in_memory().unwrap();
        for u in ["alice", "bob", "carol"] {
            s.add_user(&user(u)).unwrap();
        }
        assert!(
            s.note_node_account(&node(1), "alice", 10)
                .unwrap()
                .is_empty()
        );
        assert!(
            s.note_node_account(&node(1), "alice", 11)
                .unwrap()
                .is_empty()
        );
        assert!(s.note_node_account(&node(2), "bob", 12).unwrap().is_empty());
        assert_eq!(s.note_node_account(&node(1), "bob", 13).unwrap(), ["alice"]);
        assert_eq!(count(&s, "SELECT count(*) FROM nodes"), 2);
        assert_eq!(count(&s, "SELECT count(*) FROM node_accounts"), 3);
        assert_eq!(
            count(&s, "SELECT last_seen FROM nodes WHERE id = 1"),
            13,
            "seen again"
        );
        assert!(
            s.note_node_account(&node(3), "nobody", 14)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            count(&s, "SELECT count(*) FROM nodes"),
            2,
            "no account, no node"
        );

        s.note_node_account(&node(1), "carol", 15).unwrap();
        assert_eq!(
            s.link_candidates(&node(1), "alice").unwrap(),
            ["carol", "bob"]
        );
        s.keep_apart(&node(1), "bob", &["alice".into(), "bob".into()], 16)
            .unwrap();
        assert_eq!(s.link_candidates(&node(1), "alice").unwrap(), ["carol"]);
        assert_eq!(s.link_candidates(&node(1), "bob").unwrap(), ["carol"]);
        assert_eq!(s.link_candidates(&node(2), "carol").unwrap(), ["bob"]);
        assert!(s.link_candidates(&node(9), "alice").unwrap().is_empty());
    }

    /// A merge moves users, sites, usage (summed per site and day) and nodes into the kept
    /// account, records itself, and deletes the other account; a second merge carries the
    /// record along.
    #[test]
    fn merge_moves_everything_in_one_go() {
        let s = SqliteStore::in_memory().unwrap();
        for u in ["alice", "bob", "carol"] {
            s.add_user(&user(u)).unwrap();
        }
        s.record_site_access("alice", "app", 200).unwrap();
        s.record_site_access("bob", "app", 100).unwrap();
        s.record_site_access("bob", "wiki", 300).unwrap();
        usage_row(&s, "alice", "app", "2026-11-25", 1);
        usage_row(&s, "bob", "app", "2026-11-25", 2);
        usage_row(&s, "bob", "app", "2026-11-26", 4);
        s.note_node_account(&node(1), "alice", 10).unwrap();
        s.note_node_account(&node(1), "bob", 20).unwrap();
        s.note_node_account(&node(2), "bob", 30).unwrap();
        s.note_node_account(&node(1), "carol", 40).unwrap();
        s.keep_apart(&node(1), "bob", &["carol".into()], 41)
            .unwrap();
        let (_, rev) = s.users_changed_since(0).unwrap();

        assert_eq!(
            s.merge_accounts("alice", "bob", 50).unwrap(),
            Some(vec!["bob".to_string()])
        );
        assert_eq!(s.user("bob").unwrap().unwrap().account, "alice");
        assert_eq!(s.users_changed_since(rev).unwrap().0, ["bob"]);
        assert_eq!(count(&s, "SELECT count(*) FROM accounts"), 2);
        assert_eq!(
            s.account_sites("alice").unwrap(),
            [("app".to_string(), 100), ("wiki".to_string(), 300)]
        );
        assert_eq!(
            usage_of(&s, "alice"),
            [
                ("app".into(), "2026-11-25".into(), 3, 30, 300),
                ("app".into(), "2026-11-26".into(), 4, 40, 400)
            ]
        );
        assert_eq!(count(&s, "SELECT count(*) FROM usage"), 2);
        assert_eq!(
            count(
                &s,
                "SELECT count(*) FROM node_accounts WHERE account_id = 1"
            ),
            2
        );
        assert_eq!(
            count(
                &s,
                "SELECT first_seen FROM node_accounts WHERE account_id = 1 AND node_id = 1"
            ),
            10
        );
        assert!(
            s.link_candidates(&node(1), "alice").unwrap().is_empty(),
            "bob's choice to keep carol apart carries over"
        );
        assert_eq!(s.merged_into("alice").unwrap(), [("bob".to_string(), 50)]);
        assert_eq!(s.account_login("alice").unwrap().as_deref(), Some("alice"));

        // Merging alice (with bob) into carol moves both users and the merge history.
        assert_eq!(
            s.merge_accounts("carol", "alice", 60).unwrap(),
            Some(vec!["alice".to_string(), "bob".to_string()])
        );
        assert_eq!(
            s.merged_into("carol").unwrap(),
            [("bob".to_string(), 50), ("alice".to_string(), 60)]
        );
        assert_eq!(usage_of(&s, "carol").len(), 2);
        assert_eq!(count(&s, "SELECT count(*) FROM accounts"), 1);
    }

    /// Nothing happens for unknown accounts or an account merged with itself.
    #[test]
    fn merge_refuses_unknown_or_same() {
        let s = SqliteStore::in_memory().unwrap();
        s.add_user(&user("alice")).unwrap();
        let (_, rev) = s.users_changed_since(0).unwrap();
        assert_eq!(s.merge_accounts("alice", "alice", 1).unwrap(), None);
        assert_eq!(s.merge_accounts("alice", "nobody", 1).unwrap(), None);
        assert_eq!(s.merge_accounts("nobody", "alice", 1).unwrap(), None);
        assert_eq!(s.users_changed_since(rev).unwrap().1, rev);
        assert_eq!(count(&s, "SELECT count(*) FROM account_merges"), 0);
        assert_eq!(s.account_login("nobody").unwrap(), None);
    }

    /// An account whose namesake user was removed is proven by its oldest user.
    #[test]
    fn account_login_falls_back_to_oldest_user() {
        let s = SqliteStore::in_memory().unwrap();
        for u in ["alice", "bob", "zed"] {
            s.add_user(&user(u)).unwrap();
        }
        s.merge_accounts("alice", "zed", 1).unwrap();
        s.merge_accounts("alice", "bob", 2).unwrap();
        s.remove_user("alice").unwrap();
        assert_eq!(s.account_login("alice").unwrap().as_deref(), Some("bob"));
    }

    /// Usage adds up per account, site and day; a report sums the days of its range, per
    /// site, for every account (one without traffic too), or for the one asked for.
    #[test]
    fn usage_adds_up_over_a_range() {
        use crate::central::Usage;
        let s = SqliteStore::in_memory().unwrap();
        s.upsert_user(&user("alice")).unwrap();
        s.upsert_user(&user("bob")).unwrap();
        s.upsert_user(&user("carol")).unwrap();
        let u = |requests, bytes_in, bytes_out| Usage {
            requests,
            bytes_in,
            bytes_out,
        };
        let row = |account: &str, site: &str, usage| UsageRow {
            account: account.into(),
            site: site.into(),
            usage,
        };
        s.add_usage("2026-11-24", &[row("alice", "app", u(1, 10, 100))])
            .unwrap();
        s.add_usage(
            "2026-11-25",
            &[
                row("alice", "app", u(2, 20, 200)),
                row("alice", "wiki", u(3, 0, 300)),
                row("bob", "app", u(4, 40, 400)),
                // Removed meanwhile: skipped, the rest still recorded.
                row("nobody", "app", u(9, 9, 9)),
            ],
        )
        .unwrap();
        s.add_usage("2026-11-25", &[row("alice", "app", u(5, 50, 500))])
            .unwrap();
        s.add_usage("2026-11-26", &[row("bob", "wiki", u(6, 60, 600))])
            .unwrap();

        let all = s.usage_report(None, None, None).unwrap();
        let names: Vec<&str> = all.iter().map(|a| a.account.as_str()).collect();
        assert_eq!(names, ["alice", "bob", "carol"]);
        assert_eq!(all[0].sites["app"], u(8, 80, 800));
        assert_eq!(all[0].sites["wiki"], u(3, 0, 300));
        assert_eq!(all[0].total(), u(11, 80, 1100));
        assert_eq!(all[1].total(), u(10, 100, 1000));
        assert!(all[2].sites.is_empty(), "no traffic, still one row");

        // Both ends of the range are included.
        let day = s
            .usage_report(Some("alice"), Some("2026-11-25"), Some("2026-11-25"))
            .unwrap();
        assert_eq!(day.len(), 1);
        assert_eq!(day[0].sites["app"], u(7, 70, 700));
        assert_eq!(day[0].total(), u(10, 70, 1000));
        let from = s
            .usage_report(Some("bob"), Some("2026-11-26"), None)
            .unwrap();
        assert_eq!(from[0].sites.keys().collect::<Vec<_>>(), ["wiki"]);
        let to = s
            .usage_report(Some("bob"), None, Some("2026-11-25"))
            .unwrap();
        assert_eq!(to[0].sites.keys().collect::<Vec<_>>(), ["app"]);
        let none = s
            .usage_report(Some("alice"), Some("2026-12-01"), None)
            .unwrap();
        assert!(none[0].sites.is_empty());
        assert!(
            s.usage_report(Some("nobody"), None, None)
                .unwrap()
                .is_empty()
        );
    }

    /// Secrets are created once and then stable.
    /// An own idle timeout is stored, read back and reset to the default; it bumps the
    /// revision, so running portals learn of it.
    #[test]
    fn own_idle_timeout() {
        let s = SqliteStore::in_memory().unwrap();
        s.add_user(&user("alice")).unwrap();
        let (_, rev) = s.users_changed_since(0).unwrap();
        assert!(
            s.set_idle_timeout("alice", Some(Duration::from_secs(60)))
                .unwrap()
        );
        assert_eq!(
            s.user("alice").unwrap().unwrap().idle_timeout,
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            s.users_changed_since(rev).unwrap().0,
            vec!["alice".to_string()]
        );
        assert!(s.set_idle_timeout("alice", Some(Duration::ZERO)).unwrap());
        assert_eq!(
            s.user("alice").unwrap().unwrap().idle_timeout,
            Some(Duration::ZERO)
        );
        assert!(s.set_idle_timeout("alice", None).unwrap());
        assert_eq!(s.user("alice").unwrap().unwrap().idle_timeout, None);
        assert!(!s.set_idle_timeout("nobody", None).unwrap());
    }

    /// Nodes are listed per account, and forgetting one touches only that account's row.
    #[test]
    fn account_nodes_and_forgetting() {
        let s = SqliteStore::in_memory().unwrap();
        s.add_user(&user("alice")).unwrap();
        s.add_user(&user("bob")).unwrap();
        s.with(|c| {
            c.execute_batch(
                "INSERT INTO nodes (id, cookie_hash, created_at, last_seen) VALUES (7, x'01', 100, 300), (8, x'02', 100, 200);
                 INSERT INTO node_accounts (node_id, account_id, first_seen, last_seen)
                   SELECT 7, id, 100, 300 FROM accounts WHERE name = 'alice';
                 INSERT INTO node_accounts (node_id, account_id, first_seen, last_seen)
                   SELECT 8, id, 150, 200 FROM accounts WHERE name = 'alice';
                 INSERT INTO node_accounts (node_id, account_id, first_seen, last_seen)
                   SELECT 7, id, 110, 250 FROM accounts WHERE name = 'bob';",
            )?;
            Ok(())
        })
        .unwrap();
        let nodes = s.account_nodes("alice").unwrap();
        assert_eq!(
            nodes
                .iter()
                .map(|n| (n.node, n.first_seen, n.last_seen))
                .collect::<Vec<_>>(),
            vec![(7, 100, 300), (8, 150, 200)],
            "most recent first"
        );
        assert!(!s.forget_node("alice", 9).unwrap(), "not alice's");
        assert!(s.forget_node("alice", 7).unwrap());
        assert!(!s.forget_node("alice", 7).unwrap(), "already forgotten");
        assert_eq!(s.account_nodes("alice").unwrap().len(), 1);
        assert_eq!(s.account_nodes("bob").unwrap().len(), 1, "bob keeps node 7");
    }

    #[test]
    fn secrets_are_stable() {
        let s = SqliteStore::in_memory().unwrap();
        assert_eq!(s.secret("csrf").unwrap(), s.secret("csrf").unwrap());
        assert_ne!(s.secret("csrf").unwrap(), s.secret("other").unwrap());
    }
}

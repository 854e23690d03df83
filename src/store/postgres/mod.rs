//! [`Store`](super::Store) on PostgreSQL, for several portal processes serving one
//! deployment (`[portal] store = "postgres://…"`).
//!
//! Everything several portals must agree on lives here, not in a process's memory: users
//! and accounts ([`store`]), and the shared session table with its one-time codes and
//! revocation log ([`sessions`]). Schema versions are kept in `gatehouse_schema` and applied
//! at start under an advisory lock, so portals starting together migrate once.
//!
//! Calls are blocking, like SQLite's: async callers run them off the reactor. Connections
//! come from a small pool ([`Pool`]); the server must be on loopback or a Unix socket, as
//! this build speaks no TLS to PostgreSQL (see [`check_url`]).

pub mod sessions;
mod store;
pub mod testing;

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use postgres::config::Host;
use postgres::{Client, NoTls};

use super::StoreError;

/// Most connections one portal process opens; callers beyond wait for one to come back.
const MAX_CONNECTIONS: usize = 16;
/// How long a caller waits for a connection when all are in use, before failing (closed:
/// no session) rather than piling up behind a stalled server.
const WAIT_FOR_CONNECTION: Duration = Duration::from_secs(10);
/// A statement running longer than this fails, for the same reason (unless the URL sets
/// its own `options`). The longest, a sync touching 100 000 sessions, takes about 1 s.
const STATEMENT_TIMEOUT: &str = "-c statement_timeout=30000";

/// Serialises migrations of portals starting at once (any constant, the same in all).
const MIGRATION_LOCK: i64 = 0x6761_7465_686f_7573; // "gatehous"

/// Schema versions, applied in order. Never edit a shipped step; add a new one.
const MIGRATIONS: &[&str] = &[
    // 1: users and accounts, as SQLite's steps 1-3 (see sqlite.rs for what each is for).
    // Names, sites and days compare and sort byte by byte (COLLATE "C"), as in SQLite,
    // whatever the database's own collation.
    "CREATE TABLE accounts (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        name TEXT COLLATE \"C\" NOT NULL UNIQUE,
        created_at BIGINT NOT NULL
     );
     CREATE TABLE users (
        name TEXT COLLATE \"C\" PRIMARY KEY,
        password_hash TEXT NOT NULL,
        level BIGINT NOT NULL,
        site_levels TEXT NOT NULL DEFAULT '{}',
        idle_timeout_secs BIGINT,
        disabled BOOLEAN NOT NULL DEFAULT false,
        account_id BIGINT NOT NULL REFERENCES accounts(id),
        revision BIGINT NOT NULL DEFAULT 0,
        created_at BIGINT NOT NULL,
        temporary_until BIGINT
     );
     CREATE INDEX users_revision ON users(revision);
     CREATE INDEX users_account ON users(account_id);
     CREATE TABLE secrets (name TEXT PRIMARY KEY, value BYTEA NOT NULL);
     CREATE TABLE meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL);
     INSERT INTO meta (key, value) VALUES ('revision', 0);
     CREATE TABLE removed_users (name TEXT COLLATE \"C\" NOT NULL, revision BIGINT NOT NULL);
     CREATE TABLE account_sites (
        account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        site TEXT COLLATE \"C\" NOT NULL,
        first_access BIGINT NOT NULL,
        PRIMARY KEY (account_id, site)
     );
     CREATE TABLE nodes (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        cookie_hash BYTEA NOT NULL UNIQUE,
        created_at BIGINT NOT NULL,
        last_seen BIGINT NOT NULL
     );
     CREATE TABLE node_accounts (
        node_id BIGINT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
        account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        first_seen BIGINT NOT NULL,
        last_seen BIGINT NOT NULL,
        PRIMARY KEY (node_id, account_id)
     );
     CREATE INDEX node_accounts_account ON node_accounts(account_id);
     CREATE TABLE usage (
        account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        site TEXT COLLATE \"C\" NOT NULL,
        day TEXT COLLATE \"C\" NOT NULL,
        requests BIGINT NOT NULL DEFAULT 0,
        bytes_in BIGINT NOT NULL DEFAULT 0,
        bytes_out BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (account_id, site, day)
     );
     CREATE TABLE node_kept_apart (
        node_id BIGINT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
        account_a BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        account_b BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        at BIGINT NOT NULL,
        PRIMARY KEY (node_id, account_a, account_b),
        CHECK (account_a < account_b)
     );
     CREATE TABLE account_merges (
        merged_name TEXT COLLATE \"C\" NOT NULL,
        into_account BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        at BIGINT NOT NULL
     );
     CREATE INDEX account_merges_into ON account_merges(into_account);",
    // 2: the shared session table (see sessions.rs): sessions, their site bindings,
    // one-time codes, the revocation log the edges read with their cursors, and the
    // bindings of ended sessions (whose late-reported traffic still has an owner). Keys are
    // hashes; times are Unix milliseconds; no site password is ever stored.
    "CREATE TABLE sessions (
        id BYTEA PRIMARY KEY,
        user_name TEXT NOT NULL,
        password_tag BYTEA NOT NULL,
        created_ms BIGINT NOT NULL,
        last_active_ms BIGINT NOT NULL,
        roaming BOOLEAN NOT NULL DEFAULT false
     );
     CREATE INDEX sessions_user ON sessions(user_name);
     CREATE TABLE session_bindings (
        cookie_hash BYTEA PRIMARY KEY,
        session_id BYTEA NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        site TEXT NOT NULL,
        bound_ms BIGINT NOT NULL
     );
     CREATE INDEX session_bindings_session ON session_bindings(session_id);
     CREATE TABLE one_time_codes (
        code_hash BYTEA PRIMARY KEY,
        session_id BYTEA NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        site TEXT NOT NULL,
        binding BYTEA NOT NULL,
        expires_ms BIGINT NOT NULL
     );
     CREATE TABLE revocation_log (
        seq BIGINT PRIMARY KEY,
        key BYTEA NOT NULL,
        at_ms BIGINT NOT NULL
     );
     CREATE TABLE retired_bindings (
        cookie_hash BYTEA PRIMARY KEY,
        account TEXT NOT NULL,
        site TEXT NOT NULL,
        at_ms BIGINT NOT NULL
     );
     CREATE INDEX retired_bindings_at ON retired_bindings(at_ms);
     -- Nonces of the portal API's signed calls, so a call replayed to another portal is
     -- refused too (each portal also remembers its own).
     CREATE TABLE api_nonces (nonce TEXT PRIMARY KEY, at_ms BIGINT NOT NULL);
     -- The batches of reported traffic already added (Store::add_usage_once).
     CREATE TABLE usage_batches (batch BIGINT PRIMARY KEY, at BIGINT NOT NULL);
     CREATE INDEX usage_batches_at ON usage_batches(at);
     CREATE INDEX api_nonces_at ON api_nonces(at_ms);
     -- The log's newest sequence number (its row lock orders appends) and the oldest one
     -- still kept; the deployment's epoch, fixed for the life of the database.
     INSERT INTO meta (key, value) VALUES ('log_last', 0), ('log_floor', 1),
        ('epoch', (floor(random() * 9007199254740991))::BIGINT);",
    // 3: a session's codes found without a scan, for the cap on codes per session
    // (sessions::insert_code) and the cascade when a session ends.
    "CREATE INDEX one_time_codes_session ON one_time_codes(session_id, expires_ms);",
];

/// `url` with any password replaced, for logs and messages.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    // The user info ends at the last '@' before the query: a password may hold '/' or '@'
    // typed raw, and must not spill into what is shown.
    let head = &rest[..rest.find('?').unwrap_or(rest.len())];
    match head.rfind('@') {
        Some(at) => {
            let (userinfo, after) = (&rest[..at], &rest[at..]);
            let user = userinfo.split(':').next().unwrap_or("");
            let hidden = if userinfo.contains(':') { ":***" } else { "" };
            let (hosts, tail) = after.split_at(after.find(['/', '?']).unwrap_or(after.len()));
            format!(
                "{scheme}://{user}{hidden}{hosts}{}",
                hide_password_parameter(tail)
            )
        }
        None => {
            let (hosts, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
            format!("{scheme}://{hosts}{}", hide_password_parameter(tail))
        }
    }
}

fn hide_password_parameter(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_string();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some(("password", _)) => "password=***".to_string(),
            _ => kv.to_string(),
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

/// Is `url` a PostgreSQL URL this build can use? It must parse, name a database, and reach
/// the server over loopback or a Unix socket only: this build has no TLS towards
/// PostgreSQL, and a password or session key must never cross a network in the clear.
pub fn check_url(url: &str) -> Result<postgres::Config, String> {
    let config = postgres::Config::from_str(url)
        .map_err(|e| format!("is not a PostgreSQL URL this build understands ({e})"))?;
    if config.get_dbname().is_none() {
        return Err("names no database: give postgres://USER@HOST[:PORT]/DATABASE".into());
    }
    if config.get_hosts().is_empty() {
        return Err("names no host: give postgres://USER@HOST[:PORT]/DATABASE".into());
    }
    for host in config.get_hosts() {
        if let Host::Tcp(name) = host {
            let loopback = name == "localhost"
                || name
                    .trim_matches(['[', ']'])
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                return Err(format!(
                    "names host {name:?}: this build speaks no TLS to PostgreSQL, so the server must be on loopback (127.0.0.1, ::1, localhost) or a Unix socket (host=/run/postgresql); reach a remote server through a local TLS tunnel"
                ));
            }
        }
    }
    Ok(config)
}

pub struct PgStore {
    config: postgres::Config,
    pool: Pool,
    /// For log lines: the URL without its password.
    shown: String,
}

impl PgStore {
    /// Connect and migrate to the newest schema.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let mut config = check_url(url).map_err(|why| StoreError::Config {
            why: format!("portal.store {why}"),
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        config.application_name("gatehouse");
        if config.get_options().is_none() {
            config.options(STATEMENT_TIMEOUT);
        }
        let store = PgStore {
            config,
            pool: Pool::default(),
            shown: redacted(url),
        };
        store.with(migrate)?;
        Ok(store)
    }

    /// The URL without its password.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Run `f` on a pooled connection (opened if none is idle). A connection the server
    /// closed is dropped, not put back.
    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let client = match self.pool.take()? {
            Some(client) => client,
            None => match self.config.connect(NoTls) {
                Ok(client) => client,
                Err(e) => {
                    self.pool.one_closed();
                    return Err(e.into());
                }
            },
        };
        let mut lease = Lease {
            pool: &self.pool,
            client: Some(client),
        };
        let Some(client) = lease.client.as_mut() else {
            unreachable!("a lease holds its connection until it is dropped")
        };
        f(client)
    }

    /// Run `f` in one transaction, committed when it returns Ok.
    pub(crate) fn tx<T>(
        &self,
        f: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.with(|client| {
            let mut tx = client.transaction()?;
            let value = f(&mut tx)?;
            tx.commit()?;
            Ok(value)
        })
    }
}

fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    // Checked rather than `CREATE … IF NOT EXISTS`, whose notice would be logged at every start.
    let made: bool = tx
        .query_one("SELECT to_regclass('gatehouse_schema') IS NOT NULL", &[])?
        .get(0);
    if !made {
        tx.batch_execute("CREATE TABLE gatehouse_schema (version BIGINT NOT NULL)")?;
    }
    let version: i64 = match tx.query_opt("SELECT version FROM gatehouse_schema", &[])? {
        Some(row) => row.get(0),
        None => {
            tx.execute("INSERT INTO gatehouse_schema (version) VALUES (0)", &[])?;
            0
        }
    };
    if version > MIGRATIONS.len() as i64 {
        return Err(StoreError::Config {
            why: format!(
                "the PostgreSQL schema is at version {version}, newer than this build knows ({}); run the newer gatehouse",
                MIGRATIONS.len()
            ),
        });
    }
    for (i, step) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        tx.batch_execute(step)?;
        tx.execute(
            "UPDATE gatehouse_schema SET version = $1",
            &[&((i + 1) as i64)],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// Idle connections, and how many are open, capped at [`MAX_CONNECTIONS`].
#[derive(Default)]
struct Pool {
    state: Mutex<PoolState>,
    returned: Condvar,
}

#[derive(Default)]
struct PoolState {
    idle: Vec<Client>,
    open: usize,
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        // Only counters and a list change under the lock: a poisoned one is intact.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle connection, or `None` when the caller may open a new one (counted open now).
    /// Waits while all [`MAX_CONNECTIONS`] are in use, at most [`WAIT_FOR_CONNECTION`].
    fn take(&self) -> Result<Option<Client>, StoreError> {
        let deadline = std::time::Instant::now() + WAIT_FOR_CONNECTION;
        let mut state = self.lock();
        loop {
            if let Some(client) = state.idle.pop() {
                return Ok(Some(client));
            }
            if state.open < MAX_CONNECTIONS {
                state.open += 1;
                return Ok(None);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(StoreError::Config {
                    why: format!(
                        "all {MAX_CONNECTIONS} PostgreSQL connections stayed busy for {WAIT_FOR_CONNECTION:?}"
                    ),
                });
            }
            state = self
                .returned
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// One connection fewer is open (it failed to open, or was closed).
    fn one_closed(&self) {
        self.lock().open -= 1;
        self.returned.notify_one();
    }

    fn give_back(&self, client: Client) {
        let mut state = self.lock();
        if client.is_closed() {
            state.open -= 1;
        } else {
            state.idle.push(client);
        }
        drop(state);
        self.returned.notify_one();
    }
}

/// A connection taken from the pool: given back when dropped, or, when its user panicked
/// (the connection may be mid-transaction), closed and no longer counted, so a panic never
/// leaks a place in the pool.
struct Lease<'a> {
    pool: &'a Pool,
    client: Option<Client>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        if std::thread::panicking() {
            drop(client);
            self.pool.one_closed();
        } else {
            self.pool.give_back(client);
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        let idle = std::mem::take(&mut state.idle);
        if idle.is_empty() {
            return;
        }
        // A `postgres::Client` closes its connection on a runtime of its own, which cannot
        // start on a thread already running one (the server's, at shutdown): there it would
        // panic inside a destructor and abort the process. Close them on a thread of their own.
        let _ = std::thread::spawn(move || drop(idle)).join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_shown() {
        assert_eq!(
            redacted("postgres://gh:s3cret@127.0.0.1:5432/gh"),
            "postgres://gh:***@127.0.0.1:5432/gh"
        );
        assert_eq!(
            redacted("postgresql://gh@localhost/gh?password=s3cret&sslmode=disable"),
            "postgresql://gh@localhost/gh?password=***&sslmode=disable"
        );
        assert_eq!(
            redacted("postgres://localhost/gh"),
            "postgres://localhost/gh"
        );
        // A password typed raw with '/' or '@' in it is hidden whole.
        assert_eq!(
            redacted("postgres://gh:s3c/r@t@127.0.0.1/gh"),
            "postgres://gh:***@127.0.0.1/gh"
        );
    }

    #[test]
    fn only_loopback_or_unix_sockets() {
        assert!(check_url("postgres://gh@127.0.0.1:5432/gh").is_ok());
        assert!(check_url("postgres://gh@[::1]:5432/gh").is_ok());
        assert!(check_url("postgres://gh@localhost/gh").is_ok());
        assert!(check_url("postgres://gh@%2Frun%2Fpostgresql/gh").is_ok());
        let remote = check_url("postgres://gh@db.example.org/gh").unwrap_err();
        assert!(remote.contains("no TLS"), "{remote}");
        assert!(check_url("postgres://gh@10.0.0.5/gh").is_err());
        assert!(
            check_url("postgres://gh@127.0.0.1:5432").is_err(),
            "no database"
        );
        assert!(check_url("postgres://gh@127.0.0.1:notaport/gh").is_err());
    }
}

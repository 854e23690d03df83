//! The portal's durable state: users and their accounts, and the portal's sessions,
//! behind one interface.
//!
//! [`Store`] has two engines: [`sqlite::SqliteStore`], the default, for one portal process,
//! and [`postgres::PgStore`], shared by several portal processes. Calls are blocking and short: async callers run
//! them with `tokio::task::spawn_blocking` (see `portal::Portal::store_call`).

#[cfg(test)]
mod engine_tests;
mod links;
pub mod postgres;
pub mod sessions;
pub mod sqlite;
pub mod usage;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::Level;
use crate::crypto::IdHash;

pub use sessions::{SessionWrites, StoredSession};
pub use sqlite::SqliteStore;
pub use usage::{AccountUsage, UsageRow};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store failed")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the PostgreSQL store failed")]
    Postgres(#[from] ::postgres::Error),
    #[error("{why}")]
    Config { why: String },
    #[error("the store holds a bad value in {field}")]
    Corrupt { field: &'static str },
    #[error("cannot open the store at {path}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// How long the name of a batch of reported traffic is kept, so a repeat is known: a day
/// (a gate resends within seconds, or when the portal is back).
pub const USAGE_BATCH_KEEP_SECS: i64 = 24 * 3600;

/// A user as the portal needs it to sign them in and to decide their level.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub name: String,
    pub password_hash: String,
    pub level: Level,
    pub site_levels: BTreeMap<String, Level>,
    /// `None`: the portal default. `Some(ZERO)`: no idle limit.
    pub idle_timeout: Option<Duration>,
    pub disabled: bool,
    /// The account this user belongs to (sent to backends as the account header): the
    /// unique name of a row of the store's accounts.
    pub account: String,
    /// A temporary password (self-registration, SPEC §6): valid until this Unix time, and
    /// only to choose an own password. `None`: the password is the user's own.
    pub temporary_until: Option<i64>,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("name", &self.name)
            .field("password_hash", &"<redacted>")
            .field("level", &self.level)
            .field("site_levels", &self.site_levels)
            .field("idle_timeout", &self.idle_timeout)
            .field("disabled", &self.disabled)
            .field("account", &self.account)
            .field("temporary_until", &self.temporary_until)
            .finish()
    }
}

impl UserRecord {
    /// The level on one site: the per-site level where given, else the user's own.
    pub fn level_on(&self, site: &str) -> Level {
        self.site_levels.get(site).copied().unwrap_or(self.level)
    }
}

/// What the store keeps of a user; used to create or update one.
#[derive(Clone)]
pub struct NewUser {
    pub name: String,
    pub password_hash: String,
    pub level: Level,
    pub site_levels: BTreeMap<String, Level>,
    pub idle_timeout: Option<Duration>,
    pub disabled: bool,
}

/// A node (browser) an account was used on, as the account page lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountNode {
    /// The node's row id: names it in "forget this device" (only with its account).
    pub node: i64,
    /// Unix times the account was first and last seen on the node.
    pub first_seen: i64,
    pub last_seen: i64,
}

// Pure helpers shared by both engines (sqlite.rs and postgres/store.rs), so that they read
// and write users the same way.

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// An idle timeout as stored (whole seconds); one past `i64::MAX` seconds stops there.
fn idle_secs(idle: Option<Duration>) -> Option<i64> {
    idle.map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
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

/// A user with their account's name; both engines append their own `WHERE`/`ORDER BY`.
const SELECT_USER: &str = "SELECT u.name, u.password_hash, u.level, u.site_levels, u.idle_timeout_secs, u.disabled, a.name, u.temporary_until
     FROM users u JOIN accounts a ON a.id = u.account_id";

/// A row of [`SELECT_USER`] as the engine returns it, before its values are checked.
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

/// A [`UserRow`] from a row `$r` of [`SELECT_USER`], read with the engine's own getter
/// method `$get` (rusqlite's `get`, postgres' `try_get`).
macro_rules! user_row {
    ($r:expr, $get:ident) => {
        (
            $r.$get(0)?,
            $r.$get(1)?,
            $r.$get(2)?,
            $r.$get(3)?,
            $r.$get(4)?,
            $r.$get(5)?,
            $r.$get(6)?,
            $r.$get(7)?,
        )
    };
}
use user_row;

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

/// Would [`Store::upsert_user`] leave `old` as it is? (An upsert also makes a temporary
/// password the user's own.)
fn upsert_changes_nothing(old: &UserRecord, new: &NewUser) -> bool {
    old.password_hash == new.password_hash
        && old.level == new.level
        && old.site_levels == new.site_levels
        && old.idle_timeout == new.idle_timeout
        && old.disabled == new.disabled
        && old.temporary_until.is_none()
}

pub trait Store: Send + Sync + 'static {
    fn user(&self, name: &str) -> Result<Option<UserRecord>, StoreError>;
    fn list_users(&self) -> Result<Vec<UserRecord>, StoreError>;
    /// Create the user (and their account), or update every field of an existing one.
    /// Returns true when the stored user changed.
    fn upsert_user(&self, user: &NewUser) -> Result<bool, StoreError>;
    /// Create a user; false when the name is taken.
    fn add_user(&self, user: &NewUser) -> Result<bool, StoreError>;
    /// Create a self-registered user (and their account) whose password is temporary until
    /// `temporary_until` (Unix seconds); false when the name is taken. Atomic: of concurrent
    /// registrations of one name exactly one returns true.
    fn register_user(&self, user: &NewUser, temporary_until: i64) -> Result<bool, StoreError>;
    /// Set the user's own password (no longer temporary).
    fn set_password(&self, name: &str, password_hash: &str) -> Result<bool, StoreError>;
    /// A password change by the user: replace the hash only if it is still `old` (so a
    /// temporary password completes one change only), and make it the user's own.
    fn replace_password(&self, name: &str, old: &str, new: &str) -> Result<bool, StoreError>;
    /// Note that `account` has reached `site` (first access, SPEC §6). True when this was
    /// the first time; later calls keep the first time.
    fn record_site_access(&self, account: &str, site: &str, at: i64) -> Result<bool, StoreError>;
    /// The sites an account has reached, with the Unix time of each first access.
    fn account_sites(&self, account: &str) -> Result<Vec<(String, i64)>, StoreError>;
    /// Replace the hash only if it is still `old` (a compare-and-swap), e.g. an imported
    /// htpasswd hash upgraded to argon2id at sign-in. False when it had changed meanwhile.
    fn upgrade_password_hash(&self, name: &str, old: &str, new: &str) -> Result<bool, StoreError>;
    fn set_level(
        &self,
        name: &str,
        level: Level,
        site_levels: Option<&BTreeMap<String, Level>>,
    ) -> Result<bool, StoreError>;
    fn set_disabled(&self, name: &str, disabled: bool) -> Result<bool, StoreError>;
    /// The user's own idle timeout (`None`: the portal default; zero: no idle limit).
    /// False when there is no such user.
    fn set_idle_timeout(&self, name: &str, idle: Option<Duration>) -> Result<bool, StoreError>;
    /// The nodes `account` was used on, most recently seen first.
    fn account_nodes(&self, account: &str) -> Result<Vec<AccountNode>, StoreError>;
    /// Forget that `account` was used on `node` ("forget this device"). False when the
    /// account has no such node.
    fn forget_node(&self, account: &str, node: i64) -> Result<bool, StoreError>;
    fn remove_user(&self, name: &str) -> Result<bool, StoreError>;
    /// Users changed after `revision`, and the newest revision. Lets a running portal learn
    /// of changes made by `gatehouse user …` from another process.
    fn users_changed_since(&self, revision: i64) -> Result<(Vec<String>, i64), StoreError>;
    /// A browser signed in to `account` (SPEC §6, nodes): register the node known by
    /// `node` (the hash of its node cookie) if it is new, note the account on it, and return
    /// the other accounts seen on this node that it was not kept apart from there: the
    /// candidates for linking.
    fn note_node_account(
        &self,
        node: &IdHash,
        account: &str,
        at: i64,
    ) -> Result<Vec<String>, StoreError>;
    /// The candidates for linking, as [`Store::note_node_account`] returns them, without
    /// noting anything. Empty for an unknown node.
    fn link_candidates(&self, node: &IdHash, account: &str) -> Result<Vec<String>, StoreError>;
    /// On this node, keep `account` apart from each of `others`: they are not offered for
    /// linking there again (either way round).
    fn keep_apart(
        &self,
        node: &IdHash,
        account: &str,
        others: &[String],
        at: i64,
    ) -> Result<(), StoreError>;
    /// The user whose password proves an account: the user named like the account, else
    /// its oldest user. `None` for an unknown account.
    fn account_login(&self, account: &str) -> Result<Option<String>, StoreError>;
    /// Merge account `gone` into `keep`, in one transaction: its users, sites (earliest
    /// first access kept), usage (summed where both have a row for a site and day) and
    /// nodes move to `keep`, the merge is recorded, and `gone` is deleted. Returns the names
    /// of the users moved; `None` (and nothing changed) when either account is unknown or
    /// both are the same.
    fn merge_accounts(
        &self,
        keep: &str,
        gone: &str,
        at: i64,
    ) -> Result<Option<Vec<String>>, StoreError>;
    /// The accounts merged into `account` (also through accounts merged into it before),
    /// with the Unix time of each merge, oldest first.
    fn merged_into(&self, account: &str) -> Result<Vec<(String, i64)>, StoreError>;
    /// A named 256-bit secret, created on first use and kept across restarts.
    fn secret(&self, name: &str) -> Result<[u8; 32], StoreError>;
    /// Add traffic to accounts' usage on `day` (`YYYY-MM-DD`, UTC), every row in one
    /// transaction (all or nothing). Rows of accounts no longer in the store are skipped.
    fn add_usage(&self, day: &str, rows: &[UsageRow]) -> Result<(), StoreError> {
        self.add_usage_once(day, rows, 0).map(|_| ())
    }
    /// [`Store::add_usage`] for the traffic a gate reported as batch `batch` (see
    /// `SyncReport::usage_batch`): added once. False, and nothing added, when a batch of
    /// that name was added within [`USAGE_BATCH_KEEP_SECS`] (an answer was lost and the gate
    /// sent it again). Batch 0 has no name and is always added.
    fn add_usage_once(&self, day: &str, rows: &[UsageRow], batch: u64) -> Result<bool, StoreError>;
    /// Usage per account and site over the days `from..=to` (either end open), of one
    /// account or of all, by account name; every account asked for appears, even without
    /// traffic (none: `account` names no account).
    fn usage_report(
        &self,
        account: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Vec<AccountUsage>, StoreError>;
    /// Every stored session of the portal with its site bindings (restored at start).
    fn load_sessions(&self) -> Result<Vec<StoredSession>, StoreError>;
    /// Write one flush of the portal's session table, in one transaction (all or nothing):
    /// ended sessions deleted with their bindings, saved ones written whole, touched ones'
    /// last activity moved forward.
    fn save_sessions(&self, writes: &SessionWrites) -> Result<(), StoreError>;
}

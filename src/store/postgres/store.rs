//! [`Store`] on PostgreSQL: the same contract as `sqlite.rs`, method for method.
//!
//! Several portal processes share the database, so what SQLite gets from having one writer
//! at a time is spelled out here, in READ COMMITTED transactions:
//! - Every change to users first takes the row lock of the revision counter
//!   ([`lock_revision`]): those changes run one at a time, as SQLite's IMMEDIATE
//!   transactions do, so what one checks still holds when it writes.
//! - A transaction that writes rows belonging to accounts first locks those accounts, in id
//!   order ([`lock_accounts`]): `FOR UPDATE` to merge them, `FOR KEY SHARE` (which only
//!   keeps them from being deleted) to add to them. A merge or removal then either comes
//!   wholly before (the account is gone: its rows are skipped, as the contract says) or
//!   wholly after, and never fails a foreign key halfway.
//! - Locks are taken in that order (revision counter, accounts, then other rows in a fixed
//!   order), so transactions may wait for one another but never in a circle, which
//!   PostgreSQL would end by failing one of them with a deadlock error.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use postgres::GenericClient;
use postgres::types::ToSql;

use super::PgStore;
use crate::config::Level;
use crate::crypto::IdHash;
use crate::store::links::MAX_CANDIDATES;
use crate::store::usage::{add_merges, day_range, fold_report, sql_int};
use crate::store::{
    AccountNode, AccountUsage, NewUser, SELECT_USER, SessionWrites, Store, StoreError,
    StoredSession, UsageRow, UserRecord, UserRow, encode_levels, idle_secs, now_secs, to_record,
    upsert_changes_nothing,
};

/// A parameter of a query, as the `postgres` crate takes it.
type Param<'a> = &'a (dyn ToSql + Sync);

/// Lock the revision counter until the transaction ends and return its value. Every
/// change to users calls this (or [`next_revision`]) before touching any other row.
fn lock_revision(tx: &mut postgres::Transaction<'_>) -> Result<i64, StoreError> {
    let row = tx.query_one(
        "SELECT value FROM meta WHERE key = 'revision' FOR UPDATE",
        &[],
    )?;
    Ok(row.try_get(0)?)
}

/// Bump the global revision inside `tx` (locking it, see [`lock_revision`]) and return the
/// new value.
fn next_revision(tx: &mut postgres::Transaction<'_>) -> Result<i64, StoreError> {
    let row = tx.query_one(
        "UPDATE meta SET value = value + 1 WHERE key = 'revision' RETURNING value",
        &[],
    )?;
    Ok(row.try_get(0)?)
}

/// Lock the accounts named `names` that exist, in id order (see the module's doc), with
/// `lock` (`FOR UPDATE` or `FOR KEY SHARE`), and return their ids by name.
fn lock_accounts(
    tx: &mut postgres::Transaction<'_>,
    names: &[&str],
    lock: &str,
) -> Result<BTreeMap<String, i64>, StoreError> {
    let rows = tx.query(
        &format!("SELECT name, id FROM accounts WHERE name = ANY($1) ORDER BY id {lock}"),
        &[&names],
    )?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// Lock one account against deletion (see the module's doc); `None` when it is unknown.
fn lock_account(tx: &mut postgres::Transaction<'_>, name: &str) -> Result<Option<i64>, StoreError> {
    Ok(lock_accounts(tx, &[name], "FOR KEY SHARE")?.remove(name))
}

fn account_id(c: &mut impl GenericClient, name: &str) -> Result<Option<i64>, StoreError> {
    let row = c.query_opt("SELECT id FROM accounts WHERE name = $1", &[&name])?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

fn node_id(c: &mut impl GenericClient, node: &IdHash) -> Result<Option<i64>, StoreError> {
    let row = c.query_opt(
        "SELECT id FROM nodes WHERE cookie_hash = $1",
        &[&node.0.as_slice()],
    )?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

fn strings(rows: &[postgres::Row]) -> Result<Vec<String>, StoreError> {
    Ok(rows
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?)
}

/// The `(text, integer)` rows `sql` selects for one account, named as `$1`.
fn account_pairs(
    c: &mut postgres::Client,
    sql: &str,
    account: &str,
) -> Result<Vec<(String, i64)>, StoreError> {
    let rows = c.query(sql, &[&account])?;
    Ok(rows
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, postgres::Error>>()?)
}

pub(super) fn row_to_user(r: &postgres::Row) -> Result<UserRow, postgres::Error> {
    Ok(crate::store::user_row!(r, try_get))
}

/// A user's columns as PostgreSQL takes them (`users` holds the level as BIGINT).
struct Columns {
    level: i64,
    site_levels: String,
    idle_timeout_secs: Option<i64>,
}

impl Columns {
    fn of(u: &NewUser) -> Self {
        Columns {
            level: i64::from(u.level.0),
            site_levels: encode_levels(&u.site_levels),
            idle_timeout_secs: idle_secs(u.idle_timeout),
        }
    }

    /// `$1`… of an insert or update of `u`: name, password hash, level, site levels, idle
    /// timeout, disabled.
    fn params<'a>(&'a self, u: &'a NewUser) -> Vec<Param<'a>> {
        vec![
            &u.name,
            &u.password_hash,
            &self.level,
            &self.site_levels,
            &self.idle_timeout_secs,
            &u.disabled,
        ]
    }
}

/// Other accounts seen on `node`, not kept apart from `account` there.
fn candidates(
    c: &mut impl GenericClient,
    node: i64,
    account: i64,
) -> Result<Vec<String>, StoreError> {
    let rows = c.query(
        "SELECT a.name FROM node_accounts na JOIN accounts a ON a.id = na.account_id
         WHERE na.node_id = $1 AND na.account_id != $2
           AND NOT EXISTS (SELECT 1 FROM node_kept_apart k WHERE k.node_id = $1
                 AND k.account_a = LEAST($2, na.account_id) AND k.account_b = GREATEST($2, na.account_id))
         ORDER BY na.last_seen DESC, a.name LIMIT $3",
        &[&node, &account, &MAX_CANDIDATES],
    )?;
    strings(&rows)
}

/// Create the user and their account with revision `rev`, unless the name is taken
/// (false, and nothing written). A savepoint undoes the account when the user's insert
/// finds the name taken, so a concurrent creation never leaves an empty account behind.
fn insert_user(
    tx: &mut postgres::Transaction<'_>,
    u: &NewUser,
    rev: i64,
    temporary_until: Option<i64>,
) -> Result<bool, StoreError> {
    let mut sp = tx.transaction()?;
    // The account is named after its first user; a name clash (an account left by a removed
    // user) gets a numbered suffix rather than joining someone else's account.
    let mut account = u.name.clone();
    let mut n = 1;
    let account_id: i64 = loop {
        let row = sp.query_opt(
            "INSERT INTO accounts (name, created_at) VALUES ($1, $2)
             ON CONFLICT (name) DO NOTHING RETURNING id",
            &[&account, &now_secs()],
        )?;
        if let Some(row) = row {
            break row.try_get(0)?;
        }
        n += 1;
        account = format!("{}#{n}", u.name);
    };
    let columns = Columns::of(u);
    let created_at = now_secs();
    let mut params = columns.params(u);
    params.extend([
        &account_id as Param<'_>,
        &rev,
        &created_at,
        &temporary_until,
    ]);
    let inserted = sp.execute(
        "INSERT INTO users (name, password_hash, level, site_levels, idle_timeout_secs, disabled, account_id, revision, created_at, temporary_until)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (name) DO NOTHING",
        &params,
    )?;
    if inserted == 0 {
        return Ok(false); // dropping `sp` rolls back to the savepoint
    }
    sp.commit()?;
    Ok(true)
}

impl PgStore {
    /// Create a user and their account unless the name is taken (false then). Atomic: the
    /// insert's `ON CONFLICT DO NOTHING` lets one of concurrent creations of a name through,
    /// and the others, finding it taken, roll back whole (their revision bump included).
    fn create_user(&self, u: &NewUser, temporary_until: Option<i64>) -> Result<bool, StoreError> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            let rev = next_revision(&mut tx)?;
            if !insert_user(&mut tx, u, rev, temporary_until)? {
                return Ok(false); // dropping `tx` rolls it back
            }
            tx.commit()?;
            Ok(true)
        })
    }

    /// Update columns of one user where `cond` holds too (a compare-and-swap), giving it the
    /// next revision; false, and no revision used, when no row matched. In `set` and `cond`,
    /// `$1` is the name, `$2` the new revision, and `$3`… the `values`.
    fn update(
        &self,
        name: &str,
        set: &str,
        cond: &str,
        values: &[Param<'_>],
    ) -> Result<bool, StoreError> {
        self.tx(|tx| {
            let rev = lock_revision(tx)? + 1;
            let sql = format!("UPDATE users SET {set}, revision = $2 WHERE name = $1{cond}");
            let mut all: Vec<Param<'_>> = vec![&name, &rev];
            all.extend_from_slice(values);
            if tx.execute(&sql, &all)? == 0 {
                return Ok(false);
            }
            next_revision(tx)?;
            Ok(true)
        })
    }
}

/// Why [`Store::load_sessions`] and [`Store::save_sessions`] refuse here.
fn sessions_elsewhere() -> StoreError {
    StoreError::Config {
        why: "load_sessions and save_sessions are SQLite's write-behind of the portal's sessions: the PostgreSQL store keeps sessions in the shared session table, not through load/save_sessions".into(),
    }
}

impl Store for PgStore {
    fn user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        self.with(|c| {
            let row = c.query_opt(&format!("{SELECT_USER} WHERE u.name = $1"), &[&name])?;
            row.map(|r| to_record(row_to_user(&r)?)).transpose()
        })
    }

    fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.with(|c| {
            let rows = c.query(&format!("{SELECT_USER} ORDER BY u.name"), &[])?;
            rows.iter().map(|r| to_record(row_to_user(r)?)).collect()
        })
    }

    fn upsert_user(&self, u: &NewUser) -> Result<bool, StoreError> {
        self.tx(|tx| {
            lock_revision(tx)?;
            let existing = tx.query_opt(&format!("{SELECT_USER} WHERE u.name = $1"), &[&u.name])?;
            let old = existing
                .map(|r| to_record(row_to_user(&r)?))
                .transpose()?;
            match old {
                None => {
                    let rev = next_revision(tx)?;
                    insert_user(tx, u, rev, None)
                }
                Some(old) if upsert_changes_nothing(&old, u) => Ok(false),
                Some(_) => {
                    let rev = next_revision(tx)?;
                    let columns = Columns::of(u);
                    let mut params = columns.params(u);
                    params.push(&rev);
                    tx.execute(
                        "UPDATE users SET password_hash = $2, level = $3, site_levels = $4, idle_timeout_secs = $5, disabled = $6, revision = $7, temporary_until = NULL WHERE name = $1",
                        &params,
                    )?;
                    Ok(true)
                }
            }
        })
    }

    fn add_user(&self, u: &NewUser) -> Result<bool, StoreError> {
        self.create_user(u, None)
    }

    fn register_user(&self, u: &NewUser, temporary_until: i64) -> Result<bool, StoreError> {
        self.create_user(u, Some(temporary_until))
    }

    fn set_password(&self, name: &str, password_hash: &str) -> Result<bool, StoreError> {
        self.update(
            name,
            "password_hash = $3, temporary_until = NULL",
            "",
            &[&password_hash],
        )
    }

    fn replace_password(&self, name: &str, old: &str, new: &str) -> Result<bool, StoreError> {
        self.update(
            name,
            "password_hash = $4, temporary_until = NULL",
            " AND password_hash = $3",
            &[&old, &new],
        )
    }

    fn record_site_access(&self, account: &str, site: &str, at: i64) -> Result<bool, StoreError> {
        self.tx(|tx| {
            let Some(account) = lock_account(tx, account)? else {
                return Ok(false);
            };
            let n = tx.execute(
                "INSERT INTO account_sites (account_id, site, first_access) VALUES ($1, $2, $3)
                 ON CONFLICT (account_id, site) DO NOTHING",
                &[&account, &site, &at],
            )?;
            Ok(n > 0)
        })
    }

    fn account_sites(&self, account: &str) -> Result<Vec<(String, i64)>, StoreError> {
        self.with(|c| {
            account_pairs(
                c,
                "SELECT s.site, s.first_access FROM account_sites s JOIN accounts a ON a.id = s.account_id
                 WHERE a.name = $1 ORDER BY s.first_access, s.site",
                account,
            )
        })
    }

    fn upgrade_password_hash(&self, name: &str, old: &str, new: &str) -> Result<bool, StoreError> {
        self.update(
            name,
            "password_hash = $4",
            " AND password_hash = $3",
            &[&old, &new],
        )
    }

    fn set_level(
        &self,
        name: &str,
        level: Level,
        site_levels: Option<&BTreeMap<String, Level>>,
    ) -> Result<bool, StoreError> {
        let level = i64::from(level.0);
        match site_levels {
            Some(levels) => self.update(
                name,
                "level = $3, site_levels = $4",
                "",
                &[&level, &encode_levels(levels)],
            ),
            None => self.update(name, "level = $3", "", &[&level]),
        }
    }

    fn set_disabled(&self, name: &str, disabled: bool) -> Result<bool, StoreError> {
        self.update(name, "disabled = $3", "", &[&disabled])
    }

    fn set_idle_timeout(&self, name: &str, idle: Option<Duration>) -> Result<bool, StoreError> {
        self.update(name, "idle_timeout_secs = $3", "", &[&idle_secs(idle)])
    }

    fn account_nodes(&self, account: &str) -> Result<Vec<AccountNode>, StoreError> {
        self.with(|c| {
            let rows = c.query(
                "SELECT n.node_id, n.first_seen, n.last_seen FROM node_accounts n JOIN accounts a ON a.id = n.account_id
                 WHERE a.name = $1 ORDER BY n.last_seen DESC, n.node_id",
                &[&account],
            )?;
            Ok(rows
                .iter()
                .map(|r| {
                    Ok(AccountNode {
                        node: r.try_get(0)?,
                        first_seen: r.try_get(1)?,
                        last_seen: r.try_get(2)?,
                    })
                })
                .collect::<Result<_, postgres::Error>>()?)
        })
    }

    fn forget_node(&self, account: &str, node: i64) -> Result<bool, StoreError> {
        self.with(|c| {
            let n = c.execute(
                "DELETE FROM node_accounts WHERE node_id = $2
                 AND account_id = (SELECT id FROM accounts WHERE name = $1)",
                &[&account, &node],
            )?;
            Ok(n > 0)
        })
    }

    fn remove_user(&self, name: &str) -> Result<bool, StoreError> {
        self.tx(|tx| {
            lock_revision(tx)?;
            let row = tx.query_opt("SELECT account_id FROM users WHERE name = $1", &[&name])?;
            let Some(row) = row else { return Ok(false) };
            let account: i64 = row.try_get(0)?;
            let rev = next_revision(tx)?;
            tx.execute("DELETE FROM users WHERE name = $1", &[&name])?;
            tx.execute(
                "DELETE FROM accounts WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM users WHERE account_id = $1)",
                &[&account],
            )?;
            tx.execute(
                "INSERT INTO removed_users (name, revision) VALUES ($1, $2)",
                &[&name, &rev],
            )?;
            Ok(true)
        })
    }

    fn users_changed_since(&self, revision: i64) -> Result<(Vec<String>, i64), StoreError> {
        self.with(|c| {
            let newest: i64 = c
                .query_one("SELECT value FROM meta WHERE key = 'revision'", &[])?
                .try_get(0)?;
            if newest <= revision {
                return Ok((Vec::new(), newest));
            }
            // Read after `newest`: every change up to it is seen (a later one may be too,
            // and is reported again next time). Sorted, as SQLite's UNION returns them.
            let rows = c.query(
                "SELECT name FROM users WHERE revision > $1
                 UNION SELECT name FROM removed_users WHERE revision > $1 ORDER BY 1",
                &[&revision],
            )?;
            Ok((strings(&rows)?, newest))
        })
    }

    fn note_node_account(
        &self,
        node: &IdHash,
        account: &str,
        at: i64,
    ) -> Result<Vec<String>, StoreError> {
        self.tx(|tx| {
            let Some(account) = lock_account(tx, account)? else {
                return Ok(Vec::new());
            };
            let node: i64 = tx
                .query_one(
                    "INSERT INTO nodes (cookie_hash, created_at, last_seen) VALUES ($1, $2, $2)
                     ON CONFLICT (cookie_hash) DO UPDATE SET last_seen = excluded.last_seen
                     RETURNING id",
                    &[&node.0.as_slice(), &at],
                )?
                .try_get(0)?;
            tx.execute(
                "INSERT INTO node_accounts (node_id, account_id, first_seen, last_seen) VALUES ($1, $2, $3, $3)
                 ON CONFLICT (node_id, account_id) DO UPDATE SET last_seen = excluded.last_seen",
                &[&node, &account, &at],
            )?;
            candidates(tx, node, account)
        })
    }

    fn link_candidates(&self, node: &IdHash, account: &str) -> Result<Vec<String>, StoreError> {
        self.with(|c| match (node_id(c, node)?, account_id(c, account)?) {
            (Some(node), Some(account)) => candidates(c, node, account),
            _ => Ok(Vec::new()),
        })
    }

    fn keep_apart(
        &self,
        node: &IdHash,
        account: &str,
        others: &[String],
        at: i64,
    ) -> Result<(), StoreError> {
        self.tx(|tx| {
            let Some(node) = node_id(tx, node)? else {
                return Ok(());
            };
            let mut names = vec![account];
            names.extend(others.iter().map(String::as_str));
            let mut ids = lock_accounts(tx, &names, "FOR KEY SHARE")?;
            let Some(account) = ids.remove(account) else {
                return Ok(());
            };
            // In id order, so concurrent calls insert (and wait on) pairs in the same order.
            let others: BTreeSet<i64> = ids.into_values().collect();
            for other in others {
                tx.execute(
                    "INSERT INTO node_kept_apart (node_id, account_a, account_b, at)
                     VALUES ($1, LEAST($2::BIGINT, $3::BIGINT), GREATEST($2::BIGINT, $3::BIGINT), $4)
                     ON CONFLICT DO NOTHING",
                    &[&node, &account, &other, &at],
                )?;
            }
            Ok(())
        })
    }

    fn account_login(&self, account: &str) -> Result<Option<String>, StoreError> {
        self.with(|c| {
            let row = c.query_opt(
                "SELECT u.name FROM users u JOIN accounts a ON a.id = u.account_id WHERE a.name = $1
                 ORDER BY u.name = a.name DESC, u.created_at, u.name LIMIT 1",
                &[&account],
            )?;
            Ok(row.map(|r| r.try_get(0)).transpose()?)
        })
    }

    fn merge_accounts(
        &self,
        keep: &str,
        gone: &str,
        at: i64,
    ) -> Result<Option<Vec<String>>, StoreError> {
        self.tx(|tx| {
            lock_revision(tx)?;
            let ids = lock_accounts(tx, &[keep, gone], "FOR UPDATE")?;
            let (Some(&k), Some(&g)) = (ids.get(keep), ids.get(gone)) else {
                return Ok(None);
            };
            if k == g {
                return Ok(None);
            }
            let moved = strings(&tx.query(
                "SELECT name FROM users WHERE account_id = $1 ORDER BY name",
                &[&g],
            )?)?;
            // A new revision for the moved users: running portals (and this one) update
            // their sessions, and gates learn the new account name at their next question.
            let rev = next_revision(tx)?;
            tx.execute(
                "UPDATE users SET account_id = $1, revision = $3 WHERE account_id = $2",
                &[&k, &g, &rev],
            )?;
            tx.execute(
                "INSERT INTO account_sites (account_id, site, first_access)
                 SELECT $1::BIGINT, site, first_access FROM account_sites WHERE account_id = $2
                 ON CONFLICT (account_id, site) DO UPDATE
                    SET first_access = LEAST(account_sites.first_access, excluded.first_access)",
                &[&k, &g],
            )?;
            tx.execute(
                "INSERT INTO usage (account_id, site, day, requests, bytes_in, bytes_out)
                 SELECT $1::BIGINT, site, day, requests, bytes_in, bytes_out FROM usage WHERE account_id = $2
                 ON CONFLICT (account_id, site, day) DO UPDATE SET requests = usage.requests + excluded.requests,
                    bytes_in = usage.bytes_in + excluded.bytes_in, bytes_out = usage.bytes_out + excluded.bytes_out",
                &[&k, &g],
            )?;
            tx.execute(
                "INSERT INTO node_accounts (node_id, account_id, first_seen, last_seen)
                 SELECT node_id, $1::BIGINT, first_seen, last_seen FROM node_accounts WHERE account_id = $2
                 ON CONFLICT (node_id, account_id) DO UPDATE
                    SET first_seen = LEAST(node_accounts.first_seen, excluded.first_seen),
                        last_seen = GREATEST(node_accounts.last_seen, excluded.last_seen)",
                &[&k, &g],
            )?;
            // What the gone account was kept apart from, the merged one is too.
            tx.execute(
                "INSERT INTO node_kept_apart (node_id, account_a, account_b, at)
                 SELECT node_id, LEAST($1::BIGINT, other), GREATEST($1::BIGINT, other), at FROM
                   (SELECT node_id, CASE WHEN account_a = $2 THEN account_b ELSE account_a END AS other, at
                    FROM node_kept_apart WHERE account_a = $2 OR account_b = $2) AS kept
                 WHERE other != $1
                 ON CONFLICT DO NOTHING",
                &[&k, &g],
            )?;
            tx.execute(
                "UPDATE account_merges SET into_account = $1 WHERE into_account = $2",
                &[&k, &g],
            )?;
            tx.execute(
                "INSERT INTO account_merges (merged_name, into_account, at) VALUES ($1, $2, $3)",
                &[&gone, &k, &at],
            )?;
            // The gone account's own rows (sites, usage, nodes, kept-apart pairs) go with it.
            tx.execute("DELETE FROM accounts WHERE id = $1", &[&g])?;
            Ok(Some(moved))
        })
    }

    fn merged_into(&self, account: &str) -> Result<Vec<(String, i64)>, StoreError> {
        self.with(|c| {
            account_pairs(
                c,
                "SELECT m.merged_name, m.at FROM account_merges m JOIN accounts a ON a.id = m.into_account
                 WHERE a.name = $1 ORDER BY m.at, m.merged_name",
                account,
            )
        })
    }

    fn secret(&self, name: &str) -> Result<[u8; 32], StoreError> {
        self.with(|c| {
            // Of portals creating it at once, the first insert wins; the others' wait for
            // it, do nothing, and read the winner's value.
            let fresh = crate::crypto::random_bytes::<32>();
            c.execute(
                "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&name, &fresh.as_slice()],
            )?;
            let value: Vec<u8> = c
                .query_one("SELECT value FROM secrets WHERE name = $1", &[&name])?
                .try_get(0)?;
            value.try_into().map_err(|_| StoreError::Corrupt {
                field: "secrets.value",
            })
        })
    }

    fn add_usage_once(&self, day: &str, rows: &[UsageRow], batch: u64) -> Result<bool, StoreError> {
        self.tx(|tx| {
            if batch != 0 {
                let now = now_secs();
                tx.execute(
                    "DELETE FROM usage_batches WHERE at < $1",
                    &[&(now - crate::store::USAGE_BATCH_KEEP_SECS)],
                )?;
                // The name as a 64-bit integer (the same bits). Of two portals adding one
                // batch at once, the second waits on the first's row and then skips.
                let new = tx.execute(
                    "INSERT INTO usage_batches (batch, at) VALUES ($1, $2) ON CONFLICT (batch) DO NOTHING",
                    &[&(batch as i64), &now],
                )?;
                if new == 0 {
                    return Ok(false);
                }
            }
            let names: Vec<&str> = rows.iter().map(|r| r.account.as_str()).collect();
            let ids = lock_accounts(tx, &names, "FOR KEY SHARE")?;
            // Rows of accounts no longer in the store are skipped; the others are written
            // in key order, so concurrent flushes wait on rows in the same order.
            let mut known: Vec<(i64, &UsageRow)> = rows
                .iter()
                .filter_map(|r| Some((*ids.get(&r.account)?, r)))
                .collect();
            known.sort_by(|a, b| (a.0, &a.1.site).cmp(&(b.0, &b.1.site)));
            let stmt = tx.prepare(
                "INSERT INTO usage (account_id, site, day, requests, bytes_in, bytes_out)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (account_id, site, day) DO UPDATE SET
                    requests = usage.requests + excluded.requests,
                    bytes_in = usage.bytes_in + excluded.bytes_in,
                    bytes_out = usage.bytes_out + excluded.bytes_out",
            )?;
            for (account, r) in known {
                tx.execute(
                    &stmt,
                    &[
                        &account,
                        &r.site,
                        &day,
                        &sql_int(r.usage.requests),
                        &sql_int(r.usage.bytes_in),
                        &sql_int(r.usage.bytes_out),
                    ],
                )?;
            }
            Ok(true)
        })
    }

    fn usage_report(
        &self,
        account: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Vec<AccountUsage>, StoreError> {
        let (from, to) = day_range(from, to);
        self.with(|c| {
            // SUM of BIGINT is NUMERIC in PostgreSQL: back to BIGINT (the sums of one
            // account, site and range stay far below its limit).
            let rows = c.query(
                "SELECT a.name, u.site, SUM(u.requests)::BIGINT, SUM(u.bytes_in)::BIGINT, SUM(u.bytes_out)::BIGINT
                 FROM accounts a
                 LEFT JOIN usage u ON u.account_id = a.id AND u.day >= $1 AND u.day <= $2
                 WHERE $3::TEXT IS NULL OR a.name = $3
                 GROUP BY a.name, u.site
                 ORDER BY a.name, u.site",
                &[&from, &to, &account],
            )?;
            let mut out = fold_report(rows.iter().map(|r| {
                Ok((
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get(3)?,
                    r.try_get(4)?,
                ))
            }))?;
            let merges = c.query(
                "SELECT a.name, m.merged_name FROM account_merges m JOIN accounts a ON a.id = m.into_account
                 WHERE $1::TEXT IS NULL OR a.name = $1
                 ORDER BY a.name, m.at, m.merged_name",
                &[&account],
            )?;
            add_merges(
                &mut out,
                merges.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))),
            )?;
            Ok(out)
        })
    }

    fn load_sessions(&self) -> Result<Vec<StoredSession>, StoreError> {
        Err(sessions_elsewhere())
    }

    fn save_sessions(&self, _writes: &SessionWrites) -> Result<(), StoreError> {
        Err(sessions_elsewhere())
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;

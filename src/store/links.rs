//! Nodes and linking in SQLite (SPEC §6): the browsers an account was used from, the
//! pairs of accounts kept apart on a node, and the merge of two accounts into one.
//!
//! Free functions on a connection, called by [`super::SqliteStore`]'s `Store` methods; each
//! change runs in one IMMEDIATE transaction.

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::StoreError;
use crate::crypto::IdHash;

/// Most candidates offered for linking at once (the most recently seen first).
pub(super) const MAX_CANDIDATES: i64 = 20;

fn account_id(c: &Connection, name: &str) -> Result<Option<i64>, StoreError> {
    Ok(
        c.query_row("SELECT id FROM accounts WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()?,
    )
}

fn node_id(c: &Connection, node: &IdHash) -> Result<Option<i64>, StoreError> {
    Ok(c.query_row(
        "SELECT id FROM nodes WHERE cookie_hash = ?1",
        [node.0.as_slice()],
        |r| r.get(0),
    )
    .optional()?)
}

/// Other accounts seen on `node`, not kept apart from `account` there.
fn candidates(c: &Connection, node: i64, account: i64) -> Result<Vec<String>, StoreError> {
    let mut stmt = c.prepare(
        "SELECT a.name FROM node_accounts na JOIN accounts a ON a.id = na.account_id
         WHERE na.node_id = ?1 AND na.account_id != ?2
           AND NOT EXISTS (SELECT 1 FROM node_kept_apart k WHERE k.node_id = ?1
                 AND k.account_a = min(?2, na.account_id) AND k.account_b = max(?2, na.account_id))
         ORDER BY na.last_seen DESC, a.name LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![node, account, MAX_CANDIDATES], |r| r.get(0))?;
    Ok(rows.collect::<Result<Vec<String>, _>>()?)
}

pub(super) fn note_node_account(
    c: &mut Connection,
    node: &IdHash,
    account: &str,
    at: i64,
) -> Result<Vec<String>, StoreError> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let Some(account) = account_id(&tx, account)? else {
        return Ok(Vec::new());
    };
    tx.execute(
        "INSERT INTO nodes (cookie_hash, created_at, last_seen) VALUES (?1, ?2, ?2)
         ON CONFLICT (cookie_hash) DO UPDATE SET last_seen = excluded.last_seen",
        params![node.0.as_slice(), at],
    )?;
    let node = node_id(&tx, node)?.ok_or(StoreError::Corrupt { field: "nodes.id" })?;
    tx.execute(
        "INSERT INTO node_accounts (node_id, account_id, first_seen, last_seen) VALUES (?1, ?2, ?3, ?3)
         ON CONFLICT (node_id, account_id) DO UPDATE SET last_seen = excluded.last_seen",
        params![node, account, at],
    )?;
    let found = candidates(&tx, node, account)?;
    tx.commit()?;
    Ok(found)
}

pub(super) fn link_candidates(
    c: &Connection,
    node: &IdHash,
    account: &str,
) -> Result<Vec<String>, StoreError> {
    match (node_id(c, node)?, account_id(c, account)?) {
        (Some(node), Some(account)) => candidates(c, node, account),
        _ => Ok(Vec::new()),
    }
}

pub(super) fn keep_apart(
    c: &mut Connection,
    node: &IdHash,
    account: &str,
    others: &[String],
    at: i64,
) -> Result<(), StoreError> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (Some(node), Some(account)) = (node_id(&tx, node)?, account_id(&tx, account)?) else {
        return Ok(());
    };
    for other in others {
        let Some(other) = account_id(&tx, other)?.filter(|o| *o != account) else {
            continue;
        };
        tx.execute(
            "INSERT OR IGNORE INTO node_kept_apart (node_id, account_a, account_b, at)
             VALUES (?1, min(?2, ?3), max(?2, ?3), ?4)",
            params![node, account, other, at],
        )?;
    }
    tx.commit()?;
    Ok(())
}

pub(super) fn account_login(c: &Connection, account: &str) -> Result<Option<String>, StoreError> {
    Ok(c.query_row(
        "SELECT u.name FROM users u JOIN accounts a ON a.id = u.account_id WHERE a.name = ?1
         ORDER BY u.name = a.name DESC, u.created_at, u.name LIMIT 1",
        [account],
        |r| r.get(0),
    )
    .optional()?)
}

pub(super) fn merge_accounts(
    c: &mut Connection,
    keep: &str,
    gone: &str,
    at: i64,
    next_revision: impl Fn(&Transaction) -> Result<i64, StoreError>,
) -> Result<Option<Vec<String>>, StoreError> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (Some(k), Some(g)) = (account_id(&tx, keep)?, account_id(&tx, gone)?) else {
        return Ok(None);
    };
    if k == g {
        return Ok(None);
    }
    let moved = {
        let mut stmt = tx.prepare("SELECT name FROM users WHERE account_id = ?1 ORDER BY name")?;
        let rows = stmt.query_map([g], |r| r.get(0))?;
        rows.collect::<Result<Vec<String>, _>>()?
    };
    // A new revision for the moved users: running portals (and this one) update their
    // sessions, and gates learn the new account name at their next question.
    let rev = next_revision(&tx)?;
    tx.execute(
        "UPDATE users SET account_id = ?1, revision = ?3 WHERE account_id = ?2",
        params![k, g, rev],
    )?;
    // The WHERE clauses keep SQLite's parser from reading ON CONFLICT as a join's ON.
    tx.execute(
        "INSERT INTO account_sites (account_id, site, first_access)
         SELECT ?1, site, first_access FROM account_sites WHERE account_id = ?2
         ON CONFLICT (account_id, site) DO UPDATE SET first_access = min(first_access, excluded.first_access)",
        params![k, g],
    )?;
    tx.execute(
        "INSERT INTO usage (account_id, site, day, requests, bytes_in, bytes_out)
         SELECT ?1, site, day, requests, bytes_in, bytes_out FROM usage WHERE account_id = ?2
         ON CONFLICT (account_id, site, day) DO UPDATE SET requests = requests + excluded.requests,
            bytes_in = bytes_in + excluded.bytes_in, bytes_out = bytes_out + excluded.bytes_out",
        params![k, g],
    )?;
    tx.execute(
        "INSERT INTO node_accounts (node_id, account_id, first_seen, last_seen)
         SELECT node_id, ?1, first_seen, last_seen FROM node_accounts WHERE account_id = ?2
         ON CONFLICT (node_id, account_id) DO UPDATE SET first_seen = min(first_seen, excluded.first_seen),
            last_seen = max(last_seen, excluded.last_seen)",
        params![k, g],
    )?;
    // What the gone account was kept apart from, the merged one is too.
    tx.execute(
        "INSERT OR IGNORE INTO node_kept_apart (node_id, account_a, account_b, at)
         SELECT node_id, min(?1, other), max(?1, other), at FROM
           (SELECT node_id, CASE WHEN account_a = ?2 THEN account_b ELSE account_a END AS other, at
            FROM node_kept_apart WHERE account_a = ?2 OR account_b = ?2)
         WHERE other != ?1",
        params![k, g],
    )?;
    tx.execute(
        "UPDATE account_merges SET into_account = ?1 WHERE into_account = ?2",
        params![k, g],
    )?;
    tx.execute(
        "INSERT INTO account_merges (merged_name, into_account, at) VALUES (?1, ?2, ?3)",
        params![gone, k, at],
    )?;
    // The gone account's own rows (sites, usage, nodes, kept-apart pairs) go with it.
    tx.execute("DELETE FROM accounts WHERE id = ?1", [g])?;
    tx.commit()?;
    Ok(Some(moved))
}

pub(super) fn merged_into(c: &Connection, account: &str) -> Result<Vec<(String, i64)>, StoreError> {
    let mut stmt = c.prepare(
        "SELECT m.merged_name, m.at FROM account_merges m JOIN accounts a ON a.id = m.into_account
         WHERE a.name = ?1 ORDER BY m.at, m.merged_name",
    )?;
    let rows = stmt.query_map([account], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

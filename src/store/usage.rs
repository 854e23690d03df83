//! Usage per account, site and UTC day (SPEC §6): what the portal adds at each gate sync,
//! and the report `gatehouse report` and the admin listener give. The SQL for SQLite is
//! here, called from [`super::SqliteStore`]'s [`super::Store`] methods.

use std::collections::BTreeMap;

use rusqlite::{Connection, params};

use super::StoreError;
use crate::central::Usage;

/// Traffic to add to one account's usage on one site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    pub account: String,
    pub site: String,
    pub usage: Usage,
}

/// One account's usage over a range of days, per site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountUsage {
    pub account: String,
    /// Accounts merged into this one (SPEC §6 linking), oldest merge first: their usage is
    /// part of this account's.
    pub merged: Vec<String>,
    /// Only sites with traffic in the range.
    pub sites: BTreeMap<String, Usage>,
}

impl AccountUsage {
    /// The account's traffic across every site.
    pub fn total(&self) -> Usage {
        let mut total = Usage::default();
        self.sites.values().for_each(|u| total.add(u));
        total
    }
}

/// SQL integers are signed; a count past `i64::MAX` stops there rather than wrap.
pub(super) fn sql_int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Add every row on `day` in one transaction. Rows of accounts no longer in the store are
/// skipped (the account was removed meanwhile).
pub(super) fn add(
    conn: &mut Connection,
    day: &str,
    rows: &[UsageRow],
    batch: u64,
) -> Result<bool, StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    if batch != 0 {
        let now = super::now_secs();
        tx.execute(
            "DELETE FROM usage_batches WHERE at < ?1",
            [now - super::USAGE_BATCH_KEEP_SECS],
        )?;
        // The name as SQLite's 64-bit integer (the same bits).
        let new = tx.execute(
            "INSERT OR IGNORE INTO usage_batches (batch, at) VALUES (?1, ?2)",
            params![batch as i64, now],
        )?;
        if new == 0 {
            return Ok(false);
        }
    }
    {
        let mut stmt = tx.prepare(
            "INSERT INTO usage (account_id, site, day, requests, bytes_in, bytes_out)
             SELECT id, ?2, ?3, ?4, ?5, ?6 FROM accounts WHERE name = ?1
             ON CONFLICT (account_id, site, day) DO UPDATE SET
                requests = requests + excluded.requests,
                bytes_in = bytes_in + excluded.bytes_in,
                bytes_out = bytes_out + excluded.bytes_out",
        )?;
        for r in rows {
            stmt.execute(params![
                r.account,
                r.site,
                day,
                sql_int(r.usage.requests),
                sql_int(r.usage.bytes_in),
                sql_int(r.usage.bytes_out),
            ])?;
        }
    }
    tx.commit()?;
    Ok(true)
}

/// The days `from..=to` as bounds for a text comparison: days are `YYYY-MM-DD`, so text
/// order is date order, and the defaults hold every day.
pub(super) fn day_range<'a>(from: Option<&'a str>, to: Option<&'a str>) -> (&'a str, &'a str) {
    (from.unwrap_or("0000-00-00"), to.unwrap_or("9999-99-99"))
}

/// A row of the report query: account name, then site and sums (`None` for an account
/// without traffic in the range).
pub(super) type ReportRow = (
    String,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

/// Fold report rows, ordered by account name, into one [`AccountUsage`] per account.
pub(super) fn fold_report(
    rows: impl IntoIterator<Item = Result<ReportRow, StoreError>>,
) -> Result<Vec<AccountUsage>, StoreError> {
    let mut out: Vec<AccountUsage> = Vec::new();
    for row in rows {
        let (name, site, requests, bytes_in, bytes_out) = row?;
        if out.last().is_none_or(|a| a.account != name) {
            out.push(AccountUsage {
                account: name,
                merged: Vec::new(),
                sites: BTreeMap::new(),
            });
        }
        let (Some(site), Some(account)) = (site, out.last_mut()) else {
            continue;
        };
        let count = |v: Option<i64>, field| {
            u64::try_from(v.unwrap_or(0)).map_err(|_| StoreError::Corrupt { field })
        };
        account.sites.insert(
            site,
            Usage {
                requests: count(requests, "usage.requests")?,
                bytes_in: count(bytes_in, "usage.bytes_in")?,
                bytes_out: count(bytes_out, "usage.bytes_out")?,
            },
        );
    }
    Ok(out)
}

/// Note on each reported account the accounts merged into it, from `(into, merged)` pairs
/// in merge order.
pub(super) fn add_merges(
    out: &mut [AccountUsage],
    merges: impl IntoIterator<Item = Result<(String, String), StoreError>>,
) -> Result<(), StoreError> {
    for row in merges {
        let (into, name) = row?;
        if let Ok(i) = out.binary_search_by(|a| a.account.as_str().cmp(&into)) {
            out[i].merged.push(name);
        }
    }
    Ok(())
}

/// Usage per account over the days `from..=to` (`YYYY-MM-DD`, either end open), of one
/// account or of all, ordered by account name. Every account asked for appears, with no
/// sites when it had no traffic in the range.
pub(super) fn report(
    conn: &mut Connection,
    account: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<Vec<AccountUsage>, StoreError> {
    let (from, to) = day_range(from, to);
    let mut stmt = conn.prepare(
        "SELECT a.name, u.site, SUM(u.requests), SUM(u.bytes_in), SUM(u.bytes_out)
         FROM accounts a
         LEFT JOIN usage u ON u.account_id = a.id AND u.day >= ?1 AND u.day <= ?2
         WHERE ?3 IS NULL OR a.name = ?3
         GROUP BY a.name, u.site
         ORDER BY a.name, u.site",
    )?;
    let rows = stmt.query_map(params![from, to, account], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })?;
    let mut out = fold_report(rows.map(|r| r.map_err(StoreError::from)))?;
    drop(stmt);
    let mut merges = conn.prepare(
        "SELECT a.name, m.merged_name FROM account_merges m JOIN accounts a ON a.id = m.into_account
         WHERE ?1 IS NULL OR a.name = ?1
         ORDER BY a.name, m.at, m.merged_name",
    )?;
    let merged = merges.query_map(params![account], |r| Ok((r.get(0)?, r.get(1)?)))?;
    add_merges(&mut out, merged.map(|r| r.map_err(StoreError::from)))?;
    Ok(out)
}

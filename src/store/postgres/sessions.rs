//! The shared session table on PostgreSQL: what several portal processes must agree on.
//!
//! Every portal reads and writes it directly (no write-behind), so a sign-in through one
//! portal is seen by the next request through another; a one-time code is consumed by a
//! `DELETE … RETURNING`, so only one portal can redeem it; the revocation log is a table
//! whose sequence numbers are the edges' cursors, so an edge may sync with any portal.
//!
//! The log's order is its commit order: every append first bumps the `log_last` row of
//! `meta`, whose row lock is held until commit, so appends are serialised and a reader that
//! sees sequence number N has seen every change numbered below it. Answers carry the log
//! position read in the same statement as the session (one snapshot: [`CHECK_COLUMNS`]),
//! so an answer that crosses a revocation is always older than it (see `Admission::seq`).
//!
//! Liveness (idle and absolute limits, a disabled or re-passworded user) is decided by the
//! portal code (`portal::sessions::shared`) for single reads, and here in SQL for the
//! reaper, with the same rules.

use postgres::GenericClient;

use super::PgStore;
use crate::crypto::IdHash;
use crate::store::{StoreError, UserRecord};

/// Changes (revocations) kept for edges that sync late; one that falls further behind drops
/// its table (as the in-memory log's cap).
const LOG_CAP: i64 = 100_000;
/// How long the bindings of an ended session keep their owner, for traffic reported late.
const RETIRED_KEEP_MS: i64 = 15 * 60 * 1000;
/// Most sessions one reap ends, so no transaction grows large; the rest wait a round.
const REAP_BATCH: i64 = 5_000;
/// How long an API call's nonce is kept: longer than its signature's time passes the check.
const NONCE_KEEP_MS: i64 = 65_000;

/// One stored session, as read.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub id: IdHash,
    pub user_name: String,
    /// SHA-256 of the user's password hash at sign-in: a changed password ends it.
    pub password_tag: IdHash,
    pub created_ms: i64,
    pub last_active_ms: i64,
    pub roaming: bool,
}

/// A session of one user with its bindings (site cookie hash, site), oldest first.
pub type UserSession = (SessionRow, Vec<(IdHash, String)>);

/// A one-time code, as taken (consumed) from the table.
#[derive(Debug, Clone)]
pub struct CodeRow {
    pub session: IdHash,
    pub site: String,
    pub binding: IdHash,
    pub expires_ms: i64,
}

/// What an edge must learn from the log after its cursor.
#[derive(Debug, Default)]
pub struct LogSlice {
    /// The newest sequence number.
    pub last: u64,
    /// The cursor fell off the log (or is ahead of it): the edge must drop its table.
    pub reset: bool,
    pub revoked: Vec<(IdHash, u64)>,
}

/// The limits the reaper applies (the portal's config; all portals share it).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub default_idle_ms: i64,
    pub absolute_ms: i64,
}

fn hash(bytes: Vec<u8>, field: &'static str) -> Result<IdHash, StoreError> {
    Ok(IdHash(
        bytes
            .try_into()
            .map_err(|_| StoreError::Corrupt { field })?,
    ))
}

fn keys(hashes: &[IdHash]) -> Vec<&[u8]> {
    hashes.iter().map(|h| h.0.as_slice()).collect()
}

const SESSION_COLUMNS: &str =
    "s.id, s.user_name, s.password_tag, s.created_ms, s.last_active_ms, s.roaming";

fn session_row(row: &postgres::Row) -> Result<SessionRow, StoreError> {
    session_row_at(row, 0)
}

/// [`SESSION_COLUMNS`] read from column `at` on.
fn session_row_at(row: &postgres::Row, at: usize) -> Result<SessionRow, StoreError> {
    Ok(SessionRow {
        id: hash(row.try_get(at)?, "sessions.id")?,
        user_name: row.try_get(at + 1)?,
        password_tag: hash(row.try_get(at + 2)?, "sessions.password_tag")?,
        created_ms: row.try_get(at + 3)?,
        last_active_ms: row.try_get(at + 4)?,
        roaming: row.try_get(at + 5)?,
    })
}

/// The user columns (as `store::SELECT_USER`), the log position, then [`SESSION_COLUMNS`]
/// and the binding's site, for the binding or code joined in as `b` and its session `s`:
/// what a check or a redemption reads, in one statement, so in one snapshot (the position is
/// never newer than the session read with it).
const CHECK_COLUMNS: &str = "u.name, u.password_hash, u.level, u.site_levels, u.idle_timeout_secs,
    u.disabled, a.name, u.temporary_until,
    (SELECT value FROM meta WHERE key = 'log_last'),
    s.id, s.user_name, s.password_tag, s.created_ms, s.last_active_ms, s.roaming, b.site";

/// A session found by a check or a redemption, with the user it belongs to as stored now
/// (`None`: removed), and the site of its binding or code.
pub type Found = (SessionRow, String, Option<UserRecord>);

/// A row of [`CHECK_COLUMNS`]: the log position, and what was found (none when `s` is null).
fn found(row: &postgres::Row) -> Result<(u64, Option<Found>), StoreError> {
    let seq = row.try_get::<_, i64>(8)?.max(0) as u64;
    if row.try_get::<_, Option<Vec<u8>>>(9)?.is_none() {
        return Ok((seq, None));
    }
    let session = session_row_at(row, 9)?;
    let site: String = row.try_get(15)?;
    let user = match row.try_get::<_, Option<String>>(0)? {
        Some(_) => Some(crate::store::to_record(super::store::row_to_user(row)?)?),
        None => None,
    };
    Ok((seq, Some((session, site, user))))
}

fn log_last(c: &mut impl GenericClient) -> Result<u64, StoreError> {
    let row = c.query_one("SELECT value FROM meta WHERE key = 'log_last'", &[])?;
    Ok(row.get::<_, i64>(0).max(0) as u64)
}

/// Append revocations of `revoked` to the log (inside the caller's transaction, which holds
/// the log's lock from here to its commit).
fn append_revocations(
    tx: &mut postgres::Transaction<'_>,
    revoked: &[IdHash],
    now_ms: i64,
) -> Result<(), StoreError> {
    if revoked.is_empty() {
        return Ok(());
    }
    let n = revoked.len() as i64;
    let last: i64 = tx
        .query_one(
            "UPDATE meta SET value = value + $1 WHERE key = 'log_last' RETURNING value",
            &[&n],
        )?
        .get(0);
    let seqs: Vec<i64> = (last - n + 1..=last).collect();
    tx.execute(
        "INSERT INTO revocation_log (seq, key, at_ms)
         SELECT seq, key, $3 FROM unnest($1::BIGINT[], $2::BYTEA[]) AS r(seq, key)",
        &[&seqs, &keys(revoked), &now_ms],
    )?;
    Ok(())
}

/// End `ids` (inside the caller's transaction): their bindings are retired (kept with their
/// account for late traffic) and revoked in the log, their codes go with them. Returns the
/// revoked binding keys.
fn end_in(
    tx: &mut postgres::Transaction<'_>,
    ids: &[IdHash],
    now_ms: i64,
) -> Result<Vec<IdHash>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = tx.query(
        "WITH gone AS (
            DELETE FROM session_bindings WHERE session_id = ANY($1) RETURNING cookie_hash, session_id, site
         ), owned AS (
            SELECT g.cookie_hash, COALESCE(a.name, '') AS account, g.site
            FROM gone g JOIN sessions s ON s.id = g.session_id
            LEFT JOIN users u ON u.name = s.user_name
            LEFT JOIN accounts a ON a.id = u.account_id
         ), kept AS (
            INSERT INTO retired_bindings (cookie_hash, account, site, at_ms)
            SELECT cookie_hash, account, site, $2 FROM owned
            ON CONFLICT (cookie_hash) DO UPDATE SET account = excluded.account,
                site = excluded.site, at_ms = excluded.at_ms
         )
         SELECT cookie_hash FROM gone",
        &[&keys(ids), &now_ms],
    )?;
    let mut revoked = Vec::with_capacity(rows.len());
    for row in rows {
        revoked.push(hash(row.get(0), "session_bindings.cookie_hash")?);
    }
    tx.execute("DELETE FROM sessions WHERE id = ANY($1)", &[&keys(ids)])?;
    append_revocations(tx, &revoked, now_ms)?;
    Ok(revoked)
}

impl PgStore {
    /// The log's newest sequence number: read before a session, it dates an answer.
    pub fn log_position(&self) -> Result<u64, StoreError> {
        self.with(log_last)
    }

    /// This deployment's epoch: chosen when the schema was made, the same for every portal
    /// and across restarts (the log is in the database, so the edges' cursors stay valid).
    pub fn epoch(&self) -> Result<u64, StoreError> {
        self.with(|c| {
            let row = c.query_one("SELECT value FROM meta WHERE key = 'epoch'", &[])?;
            Ok(row.get::<_, i64>(0) as u64)
        })
    }

    pub fn session(&self, id: &IdHash) -> Result<Option<SessionRow>, StoreError> {
        self.with(|c| {
            let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions s WHERE s.id = $1");
            c.query_opt(&sql, &[&id.0.as_slice()])?
                .map(|r| session_row(&r))
                .transpose()
        })
    }

    /// What a check of a site cookie needs, in one round trip: the log position, and the
    /// session the cookie is bound to (with the binding's site and the session's user).
    pub fn check_binding(&self, cookie: &IdHash) -> Result<(u64, Option<Found>), StoreError> {
        self.with(|c| {
            let sql = format!(
                "SELECT {CHECK_COLUMNS} FROM (SELECT 1) AS one
                 LEFT JOIN session_bindings b ON b.cookie_hash = $1
                 LEFT JOIN sessions s ON s.id = b.session_id
                 LEFT JOIN users u ON u.name = s.user_name
                 LEFT JOIN accounts a ON a.id = u.account_id"
            );
            found(&c.query_one(&sql, &[&cookie.0.as_slice()])?)
        })
    }

    /// Take a one-time code out of the table (of any number of portals asking at once, exactly
    /// one gets it: the database's `DELETE … RETURNING`) and read what its redemption needs,
    /// in one round trip: the log position, and the code's session (with the site the code
    /// was minted for and the session's user). `None`: no such code.
    pub fn take_code_for_redeem(
        &self,
        code: &IdHash,
    ) -> Result<Option<(u64, CodeRow, Option<Found>)>, StoreError> {
        self.with(|c| {
            let sql = format!(
                "WITH b AS (
                    DELETE FROM one_time_codes WHERE code_hash = $1
                    RETURNING session_id, site, binding, expires_ms
                 )
                 SELECT {CHECK_COLUMNS}, b.session_id, b.binding, b.expires_ms FROM b
                 LEFT JOIN sessions s ON s.id = b.session_id
                 LEFT JOIN users u ON u.name = s.user_name
                 LEFT JOIN accounts a ON a.id = u.account_id"
            );
            let Some(row) = c.query_opt(&sql, &[&code.0.as_slice()])? else {
                return Ok(None);
            };
            let (seq, session) = found(&row)?;
            let taken = CodeRow {
                session: hash(row.try_get(16)?, "one_time_codes.session_id")?,
                site: row.try_get(15)?,
                binding: hash(row.try_get(17)?, "one_time_codes.binding")?,
                expires_ms: row.try_get(18)?,
            };
            Ok(Some((seq, taken, session)))
        })
    }

    /// Note activity on sessions (never moving it back).
    pub fn touch_sessions(&self, ids: &[IdHash], now_ms: i64) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.with(|c| {
            c.execute(
                "UPDATE sessions SET last_active_ms = $2 WHERE id = ANY($1) AND last_active_ms < $2",
                &[&keys(ids), &now_ms],
            )?;
            Ok(())
        })
    }

    /// Note activity through site cookies (an edge's sync): one statement for all of them.
    pub fn touch_bindings(&self, cookies: &[IdHash], now_ms: i64) -> Result<(), StoreError> {
        if cookies.is_empty() {
            return Ok(());
        }
        self.with(|c| {
            c.execute(
                "UPDATE sessions SET last_active_ms = $2
                 WHERE id IN (SELECT session_id FROM session_bindings WHERE cookie_hash = ANY($1))
                   AND last_active_ms < $2",
                &[&keys(cookies), &now_ms],
            )?;
            Ok(())
        })
    }

    /// Start session `new` in one transaction. `replacing` is the browser's previous
    /// session: with `keep` (the same user, still alive) its bindings and roaming mark move
    /// to the new one and it goes without a revocation; otherwise it ends on every site.
    /// Returns the revoked binding keys.
    pub fn start_session(
        &self,
        new: &SessionRow,
        replacing: Option<(&IdHash, bool)>,
    ) -> Result<Vec<IdHash>, StoreError> {
        self.tx(|tx| {
            let mut revoked = end_in(tx, &[new.id], new.created_ms)?;
            tx.execute(
                "INSERT INTO sessions (id, user_name, password_tag, created_ms, last_active_ms, roaming)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &new.id.0.as_slice(),
                    &new.user_name,
                    &new.password_tag.0.as_slice(),
                    &new.created_ms,
                    &new.last_active_ms,
                    &new.roaming,
                ],
            )?;
            match replacing {
                Some((old, true)) if *old != new.id => {
                    tx.execute(
                        "UPDATE sessions SET roaming = (SELECT roaming FROM sessions WHERE id = $2)
                         WHERE id = $1 AND EXISTS (SELECT 1 FROM sessions WHERE id = $2)",
                        &[&new.id.0.as_slice(), &old.0.as_slice()],
                    )?;
                    tx.execute(
                        "UPDATE session_bindings SET session_id = $1 WHERE session_id = $2",
                        &[&new.id.0.as_slice(), &old.0.as_slice()],
                    )?;
                    tx.execute("DELETE FROM sessions WHERE id = $1", &[&old.0.as_slice()])?;
                }
                Some((old, _)) if *old != new.id => {
                    revoked.extend(end_in(tx, &[*old], new.created_ms)?);
                }
                _ => {}
            }
            Ok(revoked)
        })
    }

    pub fn set_roaming(&self, id: &IdHash) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE sessions SET roaming = true WHERE id = $1",
                &[&id.0.as_slice()],
            )?;
            Ok(())
        })
    }

    /// Keep a one-time code (its hash), and drop the session's codes beyond the newest
    /// `per_session` (see `CODES_PER_SESSION`). False when its session is gone meanwhile.
    pub fn insert_code(
        &self,
        code: &IdHash,
        c_row: &CodeRow,
        per_session: usize,
    ) -> Result<bool, StoreError> {
        self.tx(|tx| {
            let n = tx.execute(
                "INSERT INTO one_time_codes (code_hash, session_id, site, binding, expires_ms)
                 SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM sessions WHERE id = $2)",
                &[
                    &code.0.as_slice(),
                    &c_row.session.0.as_slice(),
                    &c_row.site,
                    &c_row.binding.0.as_slice(),
                    &c_row.expires_ms,
                ],
            )?;
            tx.execute(
                "DELETE FROM one_time_codes WHERE code_hash IN (
                    SELECT code_hash FROM one_time_codes WHERE session_id = $1
                    ORDER BY expires_ms DESC, code_hash OFFSET $2)",
                &[&c_row.session.0.as_slice(), &(per_session as i64)],
            )?;
            Ok(n == 1)
        })
    }

    /// Bind a site cookie to a session, touching it. False when the session is gone (or the
    /// cookie is bound already, which a random cookie never is).
    pub fn bind(
        &self,
        cookie: &IdHash,
        session: &IdHash,
        site: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.tx(|tx| {
            let touched = tx.execute(
                "UPDATE sessions SET last_active_ms = GREATEST(last_active_ms, $2) WHERE id = $1",
                &[&session.0.as_slice(), &now_ms],
            )?;
            if touched == 0 {
                return Ok(false);
            }
            let n = tx.execute(
                "INSERT INTO session_bindings (cookie_hash, session_id, site, bound_ms)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (cookie_hash) DO NOTHING",
                &[&cookie.0.as_slice(), &session.0.as_slice(), &site, &now_ms],
            )?;
            Ok(n == 1)
        })
    }

    /// End sessions on every site. Returns the revoked binding keys.
    pub fn end_sessions(&self, ids: &[IdHash], now_ms: i64) -> Result<Vec<IdHash>, StoreError> {
        self.tx(|tx| end_in(tx, ids, now_ms))
    }

    /// Put keys in the revocation log without ending a session: an edge drops its entries
    /// and asks again (a changed user), or a key of a session kept in one portal's memory
    /// (an API client's) ended there.
    pub fn revoke_keys(&self, keys: &[IdHash], now_ms: i64) -> Result<(), StoreError> {
        self.tx(|tx| append_revocations(tx, keys, now_ms))
    }

    /// The sessions of one user, each with its bindings (cookie hash, site) in the order
    /// they were made.
    pub fn sessions_of_user(&self, name: &str) -> Result<Vec<UserSession>, StoreError> {
        self.with(|c| {
            let sql = format!(
                "SELECT {SESSION_COLUMNS} FROM sessions s WHERE s.user_name = $1 ORDER BY s.created_ms"
            );
            let mut out = Vec::new();
            for r in c.query(&sql, &[&name])? {
                out.push((session_row(&r)?, Vec::new()));
            }
            let ids: Vec<IdHash> = out.iter().map(|(s, _)| s.id).collect();
            let rows = c.query(
                "SELECT session_id, cookie_hash, site FROM session_bindings
                 WHERE session_id = ANY($1) ORDER BY bound_ms, cookie_hash",
                &[&keys(&ids)],
            )?;
            for r in rows {
                let session = hash(r.get(0), "session_bindings.session_id")?;
                let cookie = hash(r.get(1), "session_bindings.cookie_hash")?;
                if let Some((_, bindings)) = out.iter_mut().find(|(s, _)| s.id == session) {
                    bindings.push((cookie, r.get(2)));
                }
            }
            Ok(out)
        })
    }

    /// What an edge with `cursor` must learn.
    pub fn log_since(&self, cursor: u64) -> Result<LogSlice, StoreError> {
        self.with(|c| {
            // In one snapshot, so the floor, the end and the rows agree.
            let mut tx = c
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let last = log_last(&mut tx)?;
            let floor: i64 = tx
                .query_one("SELECT value FROM meta WHERE key = 'log_floor'", &[])?
                .get(0);
            let reset = cursor.saturating_add(1) < floor.max(1) as u64 || cursor > last;
            let mut slice = LogSlice {
                last,
                reset,
                revoked: Vec::new(),
            };
            if !reset {
                let rows = tx.query(
                    "SELECT seq, key FROM revocation_log WHERE seq > $1 ORDER BY seq",
                    &[&(cursor as i64)],
                )?;
                for r in rows {
                    let key = hash(r.get(1), "revocation_log.key")?;
                    slice.revoked.push((key, r.get::<_, i64>(0) as u64));
                }
            }
            tx.commit()?;
            Ok(slice)
        })
    }

    /// Whose traffic these keys carried: (key, account, site) for the keys bound now or
    /// ended within the last quarter hour; unknown keys are left out.
    pub fn owners(&self, cookies: &[IdHash]) -> Result<Vec<(IdHash, String, String)>, StoreError> {
        if cookies.is_empty() {
            return Ok(Vec::new());
        }
        self.with(|c| {
            let rows = c.query(
                "SELECT b.cookie_hash, a.name, b.site FROM session_bindings b
                 JOIN sessions s ON s.id = b.session_id
                 JOIN users u ON u.name = s.user_name
                 JOIN accounts a ON a.id = u.account_id
                 WHERE b.cookie_hash = ANY($1)
                 UNION ALL
                 SELECT r.cookie_hash, r.account, r.site FROM retired_bindings r
                 WHERE r.cookie_hash = ANY($1) AND r.account <> ''
                   AND NOT EXISTS (SELECT 1 FROM session_bindings b WHERE b.cookie_hash = r.cookie_hash)",
                &[&keys(cookies)],
            )?;
            rows.into_iter()
                .map(|r| {
                    Ok((
                        hash(r.get(0), "session_bindings.cookie_hash")?,
                        r.get(1),
                        r.get(2),
                    ))
                })
                .collect()
        })
    }

    /// Which of `ids` are still sessions.
    pub fn existing_sessions(&self, ids: &[IdHash]) -> Result<Vec<IdHash>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.with(|c| {
            c.query("SELECT id FROM sessions WHERE id = ANY($1)", &[&keys(ids)])?
                .into_iter()
                .map(|r| hash(r.get(0), "sessions.id"))
                .collect()
        })
    }

    /// Claim an API call's nonce for this deployment: false when any portal has seen it
    /// within [`NONCE_KEEP_MS`] (a replay).
    pub fn claim_nonce(&self, nonce: &str, now_ms: i64) -> Result<bool, StoreError> {
        self.with(|c| {
            let n = c.execute(
                "INSERT INTO api_nonces (nonce, at_ms) VALUES ($1, $2) ON CONFLICT (nonce) DO NOTHING",
                &[&nonce, &now_ms],
            )?;
            Ok(n == 1)
        })
    }

    pub fn count_sessions(&self) -> Result<usize, StoreError> {
        self.with(|c| {
            let n: i64 = c.query_one("SELECT count(*) FROM sessions", &[])?.get(0);
            Ok(n as usize)
        })
    }

    /// End the sessions past their limits (as `portal::sessions` decides for one: idle,
    /// absolute, a user removed, disabled or given a new password), drop stale codes, old
    /// retired bindings and the log beyond its cap. Portals reaping at once share the work
    /// (`SKIP LOCKED`). Returns the revoked binding keys.
    pub fn reap(&self, limits: Limits, now_ms: i64) -> Result<Vec<IdHash>, StoreError> {
        let revoked = self.tx(|tx| {
            let rows = tx.query(
                "SELECT s.id FROM sessions s LEFT JOIN users u ON u.name = s.user_name
                 WHERE u.name IS NULL OR u.disabled
                    OR s.password_tag <> sha256(convert_to(u.password_hash, 'UTF8'))
                    OR s.created_ms + $2 <= $1
                    OR (COALESCE(u.idle_timeout_secs * 1000, $3) > 0
                        AND s.last_active_ms + COALESCE(u.idle_timeout_secs * 1000, $3) < $1)
                 LIMIT $4
                 FOR UPDATE OF s SKIP LOCKED",
                &[
                    &now_ms,
                    &limits.absolute_ms,
                    &limits.default_idle_ms,
                    &REAP_BATCH,
                ],
            )?;
            let ids = rows
                .into_iter()
                .map(|r| hash(r.get(0), "sessions.id"))
                .collect::<Result<Vec<_>, _>>()?;
            end_in(tx, &ids, now_ms)
        })?;
        self.tx(|tx| {
            tx.execute(
                "DELETE FROM one_time_codes WHERE expires_ms <= $1",
                &[&now_ms],
            )?;
            tx.execute(
                "DELETE FROM api_nonces WHERE at_ms < $1",
                &[&(now_ms - NONCE_KEEP_MS)],
            )?;
            tx.execute(
                "DELETE FROM retired_bindings WHERE at_ms < $1",
                &[&(now_ms - RETIRED_KEEP_MS)],
            )?;
            // Under the log's lock: trimming and moving the floor in one step.
            let last: i64 = tx
                .query_one(
                    "SELECT value FROM meta WHERE key = 'log_last' FOR UPDATE",
                    &[],
                )?
                .get(0);
            let floor = last - LOG_CAP + 1;
            if floor > 1 {
                tx.execute("DELETE FROM revocation_log WHERE seq < $1", &[&floor])?;
                tx.execute(
                    "UPDATE meta SET value = GREATEST(value, $1) WHERE key = 'log_floor'",
                    &[&floor],
                )?;
            }
            Ok(())
        })?;
        Ok(revoked)
    }
}

//! Benchmark builds only (`--features bench-seed`): fill the portal's session table and the
//! gate's table with many signed-in browsers before serving, through the same calls a real
//! sign-in and hand-off make, so the full-table benchmark (bench/full-table.sh) measures the
//! product's own structures. Nothing here is reachable from the network: it runs once at
//! start, driven by environment variables, and it needs the user's real password.
//!
//! - `GATEHOUSE_BENCH_SEED`: how many sessions (unset: do nothing).
//! - `GATEHOUSE_BENCH_SEED_USER`, `GATEHOUSE_BENCH_SEED_PASSWORD`: who signs in (checked once
//!   with argon2id, as the sign-in form would).
//! - `GATEHOUSE_BENCH_SEED_COOKIES`: file that receives the first 10 000 site cookies, one
//!   per line, for wrk to pick from.
//!
//! - `GATEHOUSE_BENCH_SEED_HASHES`: optional file that receives the hash of every site
//!   cookie (base64url, one per line), for an edge's seed (below).
//!
//! It logs the resident memory before and after each phase, so the cost per entry of the
//! portal's table and of the gate's table can be read apart.
//!
//! On an edge (`[cluster] role = "edge"`, bench/cluster-sync.sh), `GATEHOUSE_BENCH_EDGE_HASHES`
//! names such a file: each hash is checked with the portal over its API (as a table miss
//! would), admitted and counted as used by one request, and then one sync is timed and its
//! request size logged ("bench sync").

use std::io::Write;
use std::time::Instant;

use crate::crypto::{IdHash, Identifier};
use crate::server::App;

const COOKIES_KEPT: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("bench seed: {0}")]
    Setup(String),
    #[error("bench seed: cannot write the cookie file: {0}")]
    Io(#[from] std::io::Error),
}

fn var(name: &str) -> Result<String, SeedError> {
    std::env::var(name).map_err(|_| SeedError::Setup(format!("{name} is not set")))
}

/// Resident set size of this process, in bytes (Linux).
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

pub async fn from_env(app: &App) -> Result<(), SeedError> {
    if let Ok(file) = std::env::var("GATEHOUSE_BENCH_EDGE_HASHES") {
        return edge(app, &file).await;
    }
    let Ok(count) = std::env::var("GATEHOUSE_BENCH_SEED") else {
        return Ok(());
    };
    let count: usize = count
        .parse()
        .map_err(|_| SeedError::Setup("GATEHOUSE_BENCH_SEED must be a number".into()))?;
    let name = var("GATEHOUSE_BENCH_SEED_USER")?;
    let password = var("GATEHOUSE_BENCH_SEED_PASSWORD")?;
    let cookie_file = var("GATEHOUSE_BENCH_SEED_COOKIES")?;
    let portal = app.portal.as_ref().ok_or_else(|| {
        SeedError::Setup("seeding needs the portal in this process (standalone)".into())
    })?;
    let gate = &app.gate;
    let site = gate
        .sites
        .first()
        .ok_or_else(|| SeedError::Setup("no site configured".into()))?;

    // The sign-in form's check, once: the password must be the user's.
    let lookup = name.clone();
    let record = portal
        .store_call(move |s| s.user(&lookup))
        .await
        .map_err(|e| SeedError::Setup(e.to_string()))?
        .ok_or_else(|| SeedError::Setup(format!("no user {name:?}")))?;
    let password = zeroize::Zeroizing::new(password);
    let site_passwords = portal.site_passwords(&record, &password);
    if !portal
        .verifier
        .verify(Some(record.password_hash.clone()), password)
        .await
    {
        return Err(SeedError::Setup(format!("wrong password for {name:?}")));
    }

    let started = Instant::now();
    // Touched now, so its pages count before the first reading, not in the portal's share.
    let mut bindings = vec![IdHash([0; 32]); count];
    let mut cookies = Vec::with_capacity(COOKIES_KEPT.min(count));
    let rss_start = rss();

    // Portal side, per browser: a signed-in session (login_submit), a one-time code bound to
    // a fresh site cookie (continue_to_site), the code redeemed for that cookie (callback).
    for binding in bindings.iter_mut() {
        let session = Identifier::new().hash();
        let failed = |e: crate::store::StoreError| SeedError::Setup(e.to_string());
        let read = portal.sessions.user_revision();
        let started = portal
            .sessions
            .start(None, session, record.clone(), read, site_passwords.clone())
            .await
            .map_err(failed)?;
        if !started {
            return Err(SeedError::Setup("the user changed while seeding".into()));
        }
        let site_cookie = Identifier::new();
        let code = portal
            .sessions
            .mint_code(&session, &site.config.id, site_cookie.hash())
            .await
            .ok_or_else(|| SeedError::Setup("could not mint a code".into()))?;
        portal
            .sessions
            .redeem(code.as_str(), site_cookie.hash(), &site.config.id)
            .await
            .map_err(failed)?
            .ok_or_else(|| SeedError::Setup("a fresh code was refused".into()))?;
        *binding = site_cookie.hash();
        if cookies.len() < COOKIES_KEPT {
            cookies.push(site_cookie);
        }
    }
    // The sessions' write-behind to the store, finished now: otherwise the runs would
    // measure a million new rows being written (SAVE_BATCH a second) for a minute, and the
    // gate's memory below would include the writing's.
    let saving = std::time::Instant::now();
    portal.save_all_sessions().await;
    let saved_seconds = saving.elapsed().as_secs_f64();
    let rss_portal = rss();

    // Gate side, per browser: a table miss asks the portal and admits (Gate::identify).
    for binding in &bindings {
        let admission = gate
            .central
            .check(*binding, &site.config.id)
            .await
            .map_err(|e| SeedError::Setup(e.to_string()))?
            .ok_or_else(|| SeedError::Setup("a seeded session was not admitted".into()))?;
        gate.admit(site, *binding, &admission)
            .ok_or_else(|| SeedError::Setup("admission refused".into()))?;
    }
    gate.table.run_pending_tasks();
    let rss_gate = rss();
    // The gate's checks touched the sessions again: in a seed longer than the touch
    // interval, every session made early on. Written now too, or the first minutes of runs
    // would measure the process writing them.
    let saving = std::time::Instant::now();
    portal.save_all_sessions().await;
    let saved_seconds = saved_seconds + saving.elapsed().as_secs_f64();
    if let Ok(file) = std::env::var("GATEHOUSE_BENCH_SEED_HASHES") {
        let mut out = std::io::BufWriter::new(std::fs::File::create(file)?);
        for b in &bindings {
            writeln!(out, "{}", b.to_b64())?;
        }
        out.flush()?;
    }
    drop(bindings);

    let mut out = std::io::BufWriter::new(std::fs::File::create(&cookie_file)?);
    for c in &cookies {
        writeln!(out, "{}", c.as_str())?;
    }
    out.flush()?;

    let per = |bytes: u64| bytes as f64 / count.max(1) as f64;
    tracing::warn!(
        saved_seconds,
        sessions = count,
        gate_entries = gate.table.len(),
        seconds = started.elapsed().as_secs_f64(),
        rss_start_mib = rss_start >> 20,
        rss_after_portal_mib = rss_portal >> 20,
        rss_after_gate_mib = rss_gate >> 20,
        portal_bytes_per_session = per(rss_portal.saturating_sub(rss_start)),
        gate_bytes_per_entry = per(rss_gate.saturating_sub(rss_portal)),
        "bench seed done"
    );
    Ok(())
}

/// An edge's seed: admit every hash of the file through the portal's API, then time one
/// sync reporting them all.
async fn edge(app: &App, file: &str) -> Result<(), SeedError> {
    use std::sync::Arc;
    let gate = app.gate.clone();
    let site = gate
        .sites
        .first()
        .ok_or_else(|| SeedError::Setup("no site configured".into()))?
        .clone();
    let hashes: Vec<IdHash> = std::fs::read_to_string(file)?
        .lines()
        .map(|l| IdHash::from_b64(l).ok_or_else(|| SeedError::Setup(format!("bad hash {l:?}"))))
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    // 64 checks in flight, as many browsers arriving at once would make.
    let hashes = Arc::new(hashes);
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..64 {
        let (gate, site, hashes) = (gate.clone(), site.clone(), hashes.clone());
        tasks.spawn(async move {
            for key in hashes.iter().skip(lane).step_by(64) {
                let admission = gate
                    .central
                    .check(*key, &site.config.id)
                    .await
                    .map_err(|e| SeedError::Setup(crate::http::error::error_chain(&e)))?
                    .ok_or_else(|| SeedError::Setup("a seeded session was not admitted".into()))?;
                let entry = gate
                    .admit(&site, *key, &admission)
                    .ok_or_else(|| SeedError::Setup("admission refused".into()))?;
                entry.count_request();
                gate.table.mark_used(key, &entry);
            }
            Ok::<(), SeedError>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| SeedError::Setup(e.to_string()))??;
    }
    let admitted = started.elapsed();

    let taken = gate.table.take_used();
    let report = crate::central::SyncReport {
        cursor: 0,
        used: taken.used,
        usage: taken.usage,
        usage_batch: u64::from_le_bytes(crate::crypto::ids::random_bytes()).max(1),
    };
    let bytes = serde_json::to_vec(&crate::central::wire::SyncRequest::from(&report))
        .map(|v| v.len())
        .unwrap_or(0);
    let entries = report.used.len();
    let t = Instant::now();
    let reply = gate
        .central
        .sync(report)
        .await
        .map_err(|e| SeedError::Setup(crate::http::error::error_chain(&e)))?;
    let sync_ms = t.elapsed().as_secs_f64() * 1000.0;
    let t = Instant::now();
    let empty = gate
        .central
        .sync(crate::central::SyncReport {
            cursor: reply.cursor,
            ..Default::default()
        })
        .await
        .map_err(|e| SeedError::Setup(crate::http::error::error_chain(&e)))?;
    let empty_ms = t.elapsed().as_secs_f64() * 1000.0;
    tracing::warn!(
        entries,
        checks_seconds = admitted.as_secs_f64(),
        checks_per_second = entries as f64 / admitted.as_secs_f64().max(1e-9),
        request_bytes = bytes,
        sync_ms,
        empty_sync_ms = empty_ms,
        revoked = empty.revoked.len(),
        "bench sync"
    );
    Ok(())
}

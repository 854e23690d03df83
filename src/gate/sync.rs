//! Every `sync_interval` the gate reports the entries used since its last report (the
//! portal touches those sessions), with the traffic each carried (the portal adds it to
//! the account's usage), and drops the entries the portal revoked since. One last sync
//! runs at shutdown, after the drain, so the traffic of the final moments is not lost.
//!
//! When the portal cannot be reached (an edge whose portal is down), the gate goes on
//! admitting the entries in its table until they expire (use no longer renews them, so
//! that is at most `idle_timeout - cache_margin` after the last contact), keeps what it
//! could not report,
//! and tries again sooner than `sync_interval` at first, then less and less often (1 s,
//! doubling, at most `sync_interval`), so it catches up soon after the portal returns.

use std::sync::Arc;
use std::time::Duration;

use super::Gate;
use crate::central::{SyncReport, Usage};
use crate::crypto::IdHash;

/// What one sync hands the next.
#[derive(Debug, Default)]
pub struct SyncState {
    /// Revocations up to here were already received.
    cursor: u64,
    /// The portal's epoch at the last sync: a new one means it restarted.
    epoch: Option<u64>,
    /// Syncs failed in a row.
    failures: u32,
    /// The configured pause between syncs.
    interval: Duration,
    /// Activity the portal has not heard of yet (a sync failed): sent with the next one, so
    /// a portal outage does not make busy sessions look idle.
    unsent: Vec<IdHash>,
    /// Traffic sent but not confirmed (the sync failed, or the portal could not record it),
    /// under its batch name: sent again as it is, so the portal can tell a repeat from new
    /// traffic and count it once.
    pending_usage: Vec<(IdHash, Usage)>,
    pending_batch: u64,
    /// Traffic counted since the pending batch was made: the next batch.
    unsent_usage: Vec<(IdHash, Usage)>,
}

impl SyncState {
    /// Traffic not yet confirmed by the portal.
    pub fn usage_waits(&self) -> bool {
        !self.pending_usage.is_empty() || !self.unsent_usage.is_empty()
    }
}

/// Runs until `shutdown` fires; returns the state for a last [`once`] after the drain.
pub async fn run(
    gate: Arc<Gate>,
    interval: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> SyncState {
    let mut state = SyncState {
        interval,
        ..SyncState::default()
    };
    loop {
        once(&gate, &mut state).await;
        let wait = next_wait(interval, state.failures);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return state,
        }
    }
}

/// The pause before the next sync: `interval`, or after failures 1 s doubling up to it.
fn next_wait(interval: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return interval;
    }
    Duration::from_secs(1)
        .saturating_mul(1 << (failures - 1).min(16))
        .min(interval)
}

/// One sync. On failure, `state` carries activity and traffic over to the next one.
pub async fn once(gate: &Gate, state: &mut SyncState) {
    // Expired entries are never served; their memory goes back here, a few shards a time.
    gate.table.sweep_some();
    let taken = gate.table.take_used();
    state.unsent.extend(taken.used);
    state.unsent.sort_unstable();
    state.unsent.dedup();
    state.unsent_usage.extend(taken.usage);
    merge_usage(&mut state.unsent_usage);
    if state.pending_usage.is_empty() && !state.unsent_usage.is_empty() {
        state.pending_usage = std::mem::take(&mut state.unsent_usage);
        state.pending_batch = u64::from_le_bytes(crate::crypto::ids::random_bytes()).max(1);
    }
    let report = SyncReport {
        cursor: state.cursor,
        used: state.unsent.clone(),
        usage: state.pending_usage.clone(),
        usage_batch: state.pending_batch,
    };
    match gate.central.sync(report).await {
        Ok(reply) => {
            if state.failures > 0 {
                tracing::info!(
                    failed_syncs = state.failures,
                    "the portal is reachable again; activity and traffic since reported"
                );
            }
            state.failures = 0;
            if state.epoch.is_some_and(|e| e != reply.epoch) {
                // Its revocation log (our cursor) was in its memory: what it ended meanwhile
                // is unknown here, so every user is checked with it again.
                tracing::warn!(
                    "the portal restarted; dropping the whole table (each user is checked again)"
                );
                gate.table.clear();
                // Its log positions start again: the old ones compare with nothing.
                gate.recent_revocations.invalidate_all();
            } else if reply.reset {
                tracing::warn!("revocation log moved past this gate; dropping the whole table");
                gate.table.clear();
            }
            state.epoch = Some(reply.epoch);
            for (key, idle) in &reply.idle_timeouts {
                gate.table.set_idle_timeout(key, *idle, gate.cache_margin);
            }
            for (key, seq) in &reply.revoked {
                gate.revoke(key, *seq);
            }
            gate.metrics.set_ready(true);
            gate.table.set_renewing(true);
            state.unsent.clear();
            if !reply.usage_refused {
                state.pending_usage.clear();
                state.pending_batch = 0;
            }
            state.cursor = reply.cursor;
        }
        Err(e) => {
            gate.metrics.set_ready(false);
            gate.table.set_renewing(false);
            gate.metrics.sync_failed();
            state.failures = state.failures.saturating_add(1);
            tracing::warn!(error = %crate::http::error::error_chain(&e), failed_syncs = state.failures, retry_in = ?next_wait(state.interval, state.failures), "sync with the portal failed; admitting only users already in the table");
        }
    }
}

/// One row per key, the traffic of repeated keys added up.
fn merge_usage(rows: &mut Vec<(IdHash, Usage)>) {
    rows.sort_unstable_by_key(|(k, _)| *k);
    rows.dedup_by(|later, kept| {
        if later.0 == kept.0 {
            kept.1.add(&later.1);
            true
        } else {
            false
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Traffic carried over a failed sync adds up with the next, one row per key.
    use crate::central::{Admission, BasicVerdict, BoxFuture, Central, CentralError, SyncReply};
    use crate::config::{Level, SiteId};
    use std::sync::Mutex;

    /// A portal that answers syncs from a script and records the reports.
    #[derive(Default)]
    struct Scripted {
        replies: Mutex<Vec<Option<SyncReply>>>,
        reports: Mutex<Vec<SyncReport>>,
    }

    impl Central for Scripted {
        fn redeem<'a>(
            &'a self,
            _: &'a str,
            _: IdHash,
            _: &'a SiteId,
        ) -> BoxFuture<'a, Result<Option<Admission>, CentralError>> {
            unreachable!("a sync test")
        }
        fn check<'a>(
            &'a self,
            _: IdHash,
            _: &'a SiteId,
        ) -> BoxFuture<'a, Result<Option<Admission>, CentralError>> {
            unreachable!("a sync test")
        }
        fn verify_basic<'a>(
            &'a self,
            _: &'a SiteId,
            _: &'a str,
            _: &'a str,
            _: IdHash,
            _: std::net::IpAddr,
        ) -> BoxFuture<'a, Result<BasicVerdict, CentralError>> {
            unreachable!("a sync test")
        }
        fn sync(&self, report: SyncReport) -> BoxFuture<'_, Result<SyncReply, CentralError>> {
            self.reports.lock().unwrap().push(report);
            let next = self.replies.lock().unwrap().remove(0);
            Box::pin(async move {
                next.ok_or_else(|| CentralError::Unreachable("scripted outage".into()))
            })
        }
    }

    fn reply(
        epoch: u64,
        cursor: u64,
        revoked: Vec<(IdHash, u64)>,
        reset: bool,
    ) -> Option<SyncReply> {
        Some(SyncReply {
            epoch,
            cursor,
            revoked,
            reset,
            ..SyncReply::default()
        })
    }

    /// A gate with no sites (its table is all these tests use), asking `central`.
    fn gate_on(central: Arc<Scripted>, metrics: Arc<crate::metrics::Metrics>) -> Gate {
        let file = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml"));
        let config = crate::config::Config::load(file).unwrap();
        Gate::new(
            vec![],
            central,
            crate::server::urls::Urls::for_config(&config, 8443),
            Duration::from_secs(1),
            100,
            metrics,
            crate::crypto::Key::random(),
        )
    }

    fn alice(seq: u64) -> Admission {
        Admission {
            user: "alice".into(),
            account: "alice".into(),
            level: Level(3),
            idle_timeout: Duration::from_secs(600),
            remaining: Duration::from_secs(3600),
            site_password: None,
            seq,
        }
    }

    /// A single node's gate (the shipped config's sites) following its portal's session
    /// table, and a user to sign in.
    fn single_node() -> (
        Arc<Gate>,
        crate::portal::sessions::SessionTable,
        Vec<Arc<crate::gate::SiteRuntime>>,
        crate::store::UserRecord,
    ) {
        use crate::portal::sessions::{SessionTable, Timeouts};
        let file = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml"));
        let config = crate::config::Config::load(file).unwrap();
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let sites = crate::server::site_runtimes(&config, &metrics);
        let gate = Arc::new(Gate::new(
            sites.clone(),
            Arc::new(Scripted::default()),
            crate::server::urls::Urls::for_config(&config, 8443),
            Duration::from_secs(1),
            100,
            metrics,
            crate::crypto::Key::random(),
        ));
        let sessions = SessionTable::new(Timeouts {
            default_idle: Duration::from_secs(900),
            absolute: Duration::from_secs(3600),
            code_ttl: Duration::from_secs(60),
        });
        gate.follow_revocations(&sessions);
        let user = crate::store::UserRecord {
            name: "alice".into(),
            password_hash: "unused".into(),
            level: Level(3),
            site_levels: Default::default(),
            idle_timeout: None,
            disabled: false,
            account: "alice".into(),
            temporary_until: None,
        };
        (gate, sessions, sites, user)
    }

    /// Single node: a sign-out reaches the gate at once, with its log position, and an
    /// answer the portal gave before it (a check that crossed the sign-out on its way) is
    /// not put in the table after it. Without the sign-out the same answer is admitted.
    #[tokio::test]
    async fn an_answer_crossing_a_local_sign_out_is_not_admitted() {
        let (gate, sessions, sites, user) = single_node();
        let site = &sites[0];
        // The portal's answer for a new site cookie: a signed-in session, a code, redeemed.
        let answer_for = |cookie: IdHash| {
            let session = crate::crypto::Identifier::new().hash();
            sessions.start(
                None,
                session,
                user.clone(),
                sessions.user_revision(),
                Default::default(),
            );
            let code = sessions
                .mint_code(&session, &site.config.id, cookie)
                .unwrap();
            let answer = sessions
                .redeem(code.as_str(), cookie, &site.config.id)
                .unwrap();
            (session, answer)
        };

        let kept = IdHash([7; 32]);
        let (_, answer) = answer_for(kept);
        assert!(gate.admit(site, kept, &answer).is_some(), "no sign-out");

        let crossed = IdHash([8; 32]);
        let (session, answer) = answer_for(crossed);
        sessions.end(&session);
        assert!(
            gate.admit(site, crossed, &answer).is_none(),
            "an answer older than the sign-out"
        );
        assert!(
            gate.recent_revocations
                .get(&crossed)
                .is_some_and(|at| at > answer.seq),
            "the sign-out reached the gate with its log position"
        );
        assert!(gate.table.get(&crossed).is_none());
        assert!(gate.table.get(&kept).is_some(), "another session stays");
    }

    /// Two verifications of one API credential (parallel first calls): the second goes on
    /// with the session the first started, so the first answer is still admitted. And a
    /// key's remembered revocation never moves back to an older one arriving late.
    #[tokio::test]
    async fn parallel_basic_answers_and_late_older_revocations() {
        let (gate, sessions, sites, user) = single_node();
        let site = &sites[0];
        let key = IdHash([9; 32]);
        let first = sessions
            .start_basic(
                key,
                user.clone(),
                sessions.user_revision(),
                &site.config.id,
                None,
            )
            .unwrap();
        let second = sessions
            .start_basic(
                key,
                user.clone(),
                sessions.user_revision(),
                &site.config.id,
                None,
            )
            .unwrap();
        assert!(
            gate.admit(site, key, &first).is_some(),
            "not ended by the second"
        );
        assert!(gate.admit(site, key, &second).is_some());

        // The user changed (a new level): that session ends, its key is revoked.
        let mut promoted = user.clone();
        promoted.level = Level(5);
        let third = sessions
            .start_basic(
                key,
                promoted,
                sessions.user_revision(),
                &site.config.id,
                None,
            )
            .unwrap();
        assert!(third.seq > second.seq);
        assert!(
            gate.admit(site, key, &second).is_none(),
            "older than the revocation"
        );

        // An older revocation of the key arriving after a newer one changes nothing.
        let k = IdHash([10; 32]);
        gate.revoke(&k, third.seq + 5);
        gate.revoke(&k, third.seq + 1);
        assert_eq!(gate.recent_revocations.get(&k), Some(third.seq + 5));
        let between = Admission {
            seq: third.seq + 3,
            ..first.clone()
        };
        assert!(gate.admit(site, k, &between).is_none());
    }

    /// A failed sync keeps the table and the activity for the next one; revocations apply;
    /// a new portal epoch or a reset drops the whole table.
    #[tokio::test]
    async fn outage_catch_up_restart_and_reset() {
        let (k1, k2) = (IdHash([1; 32]), IdHash([2; 32]));
        let central = Arc::new(Scripted::default());
        *central.replies.lock().unwrap() = vec![
            reply(7, 3, vec![], false),
            None,
            reply(7, 4, vec![(k2, 4)], false),
            reply(8, 0, vec![], false),
            reply(8, 1, vec![], true),
        ];
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let gate = gate_on(central.clone(), metrics.clone());
        let admission = alice(2);
        let admit = |k| {
            gate.table.insert(
                k,
                crate::gate::table::Entry::new(0, &admission, Duration::from_secs(1)).unwrap(),
            )
        };
        admit(k1);
        admit(k2);
        let mut state = SyncState::default();
        let len = |g: &Gate| {
            g.table.run_pending_tasks();
            g.table.len()
        };

        once(&gate, &mut state).await;
        assert!(metrics.is_ready());
        assert_eq!((len(&gate), state.cursor, state.epoch), (2, 3, Some(7)));

        gate.table.get(&k1).unwrap(); // used during the outage
        once(&gate, &mut state).await;
        assert!(!metrics.is_ready(), "an outage is reported");
        assert_eq!(
            (len(&gate), state.failures, state.cursor),
            (2, 1, 3),
            "the table is kept"
        );

        once(&gate, &mut state).await;
        assert!(metrics.is_ready());
        assert_eq!(state.failures, 0);
        assert!(gate.table.get(&k2).is_none(), "revoked");
        assert_eq!(
            gate.recent_revocations.get(&k2),
            Some(4),
            "remembered against late answers"
        );
        assert!(gate.table.get(&k1).is_some());
        let reports = central.reports.lock().unwrap().clone();
        assert!(
            reports[2].used.contains(&k1),
            "activity of the outage carried over"
        );
        assert_eq!(reports[2].cursor, 3);

        once(&gate, &mut state).await;
        assert_eq!(len(&gate), 0, "a new epoch: the portal restarted");
        admit(k1);
        once(&gate, &mut state).await;
        assert_eq!(len(&gate), 0, "reset: the cursor fell off the log");
    }

    /// Traffic whose answer was lost goes again under the same batch name (the portal
    /// counts a name once); traffic counted meanwhile follows in a batch of its own.
    #[tokio::test]
    async fn unconfirmed_traffic_is_resent_as_the_same_batch() {
        let k = IdHash([1; 32]);
        let central = Arc::new(Scripted::default());
        *central.replies.lock().unwrap() = vec![
            None,
            reply(7, 0, vec![], false),
            reply(7, 0, vec![], false),
            reply(7, 0, vec![], false),
        ];
        let gate = gate_on(central.clone(), Arc::new(crate::metrics::Metrics::new()));
        let admission = alice(0);
        let entry = gate.table.insert(
            k,
            crate::gate::table::Entry::new(0, &admission, Duration::from_secs(1)).unwrap(),
        );
        let mut state = SyncState::default();
        let traffic = |n| {
            for _ in 0..n {
                entry.count_request();
            }
            gate.table.mark_used(&k, &entry);
        };

        traffic(2);
        once(&gate, &mut state).await; // no answer
        traffic(3);
        once(&gate, &mut state).await; // the same batch again: answered
        assert!(
            state.usage_waits(),
            "the 3 requests since wait for the next sync"
        );
        once(&gate, &mut state).await;
        assert!(!state.usage_waits());
        once(&gate, &mut state).await; // nothing new: no batch
        let reports = central.reports.lock().unwrap().clone();
        let sent: Vec<(u64, u64)> = reports
            .iter()
            .map(|r| (r.usage_batch, r.usage.iter().map(|(_, u)| u.requests).sum()))
            .collect();
        assert_eq!(sent[0].1, 2);
        assert_eq!(sent[1], sent[0], "resent as it was, under its name");
        assert_eq!(sent[2].1, 3);
        assert!(
            sent[2].0 != sent[0].0 && sent[2].0 != 0,
            "a new name for new traffic"
        );
        assert_eq!(sent[3], (0, 0));
    }

    #[test]
    fn backoff_doubles_up_to_the_interval() {
        let i = Duration::from_secs(30);
        let waits: Vec<u64> = (0..8).map(|f| next_wait(i, f).as_secs()).collect();
        assert_eq!(waits, [30, 1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(
            next_wait(Duration::from_millis(500), 3),
            Duration::from_millis(500)
        );
        assert_eq!(next_wait(i, u32::MAX), i);
    }

    #[test]
    fn usage_rows_merge() {
        let (a, b) = (IdHash([1; 32]), IdHash([2; 32]));
        let u = |r| Usage {
            requests: r,
            bytes_in: r * 10,
            bytes_out: r * 100,
        };
        let mut rows = vec![(b, u(1)), (a, u(2)), (b, u(3))];
        merge_usage(&mut rows);
        assert_eq!(rows, vec![(a, u(2)), (b, u(4))]);
    }
}

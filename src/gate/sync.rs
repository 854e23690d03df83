//! Every `sync_interval` the gate reports the entries used since its last report (the
//! portal touches those sessions), with the traffic each carried (the portal adds it to
//! the account's usage), and drops the entries the portal revoked since. One last sync
//! runs at shutdown, after the drain, so the traffic of the final moments is not lost.

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
    /// Activity the portal has not heard of yet (a sync failed): sent with the next one, so
    /// a portal outage does not make busy sessions look idle.
    unsent: Vec<IdHash>,
    /// Traffic not yet reported, for the same reason: it is counted once it gets through.
    unsent_usage: Vec<(IdHash, Usage)>,
}

/// Runs until `shutdown` fires; returns the state for a last [`once`] after the drain.
pub async fn run(
    gate: Arc<Gate>,
    interval: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> SyncState {
    let mut state = SyncState::default();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return state,
        }
        once(&gate, &mut state).await;
    }
}

/// One sync. On failure, `state` carries activity and traffic over to the next one.
pub async fn once(gate: &Gate, state: &mut SyncState) {
    let taken = gate.table.take_used();
    state.unsent.extend(taken.used);
    state.unsent.sort_unstable();
    state.unsent.dedup();
    state.unsent_usage.extend(taken.usage);
    merge_usage(&mut state.unsent_usage);
    let report = SyncReport {
        cursor: state.cursor,
        used: state.unsent.clone(),
        usage: state.unsent_usage.clone(),
    };
    match gate.central.sync(report).await {
        Ok(reply) => {
            if reply.reset {
                tracing::warn!("revocation log moved past this gate; dropping the whole table");
                gate.table.clear();
            }
            for (key, idle) in &reply.idle_timeouts {
                gate.table.set_idle_timeout(key, *idle, gate.cache_margin);
            }
            for key in &reply.revoked {
                gate.table.remove(key);
            }
            gate.metrics.set_ready(true);
            state.unsent.clear();
            if !reply.usage_refused {
                state.unsent_usage.clear();
            }
            state.cursor = reply.cursor;
        }
        Err(e) => {
            gate.metrics.set_ready(false);
            tracing::warn!(error = %crate::http::error::error_chain(&e), "sync with the portal failed; admitting only users already in the table");
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

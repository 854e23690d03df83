//! Every `sync_interval` the gate reports the entries used since its last report (the
//! portal touches those sessions) and drops the ones the portal revoked since.

use std::sync::Arc;
use std::time::Duration;

use super::Gate;
use crate::central::SyncReport;

/// Runs until `shutdown` fires.
pub async fn run(
    gate: Arc<Gate>,
    interval: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut cursor = 0;
    // Activity the portal has not heard of yet (a sync failed): sent with the next one, so a
    // portal outage does not make busy sessions look idle.
    let mut unsent = Vec::new();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        cursor = once(&gate, cursor, &mut unsent).await;
    }
}

/// One sync; returns the new cursor. `unsent` carries activity over a failed sync.
pub async fn once(gate: &Gate, cursor: u64, unsent: &mut Vec<crate::crypto::IdHash>) -> u64 {
    unsent.extend(gate.table.take_used());
    unsent.sort_unstable();
    unsent.dedup();
    let used = unsent.clone();
    match gate.central.sync(SyncReport { cursor, used }).await {
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
            unsent.clear();
            reply.cursor
        }
        Err(e) => {
            gate.metrics.set_ready(false);
            tracing::warn!(error = %crate::http::error::error_chain(&e), "sync with the portal failed; admitting only users already in the table");
            cursor
        }
    }
}

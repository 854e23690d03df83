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
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        cursor = once(&gate, cursor).await;
    }
}

/// One sync; returns the new cursor.
pub async fn once(gate: &Gate, cursor: u64) -> u64 {
    let used = gate.table.take_used();
    match gate.central.sync(SyncReport { cursor, used }).await {
        Ok(reply) => {
            if reply.reset {
                tracing::warn!("revocation log moved past this gate; dropping the whole table");
                gate.table.clear();
            }
            for key in &reply.revoked {
                gate.table.remove(key);
            }
            gate.metrics.set_ready(true);
            reply.cursor
        }
        Err(e) => {
            gate.metrics.set_ready(false);
            tracing::warn!(error = %crate::http::error::error_chain(&e), "sync with the portal failed; admitting only users already in the table");
            cursor
        }
    }
}

//! The portal's side of the session table's write-behind (`sessions::persist`): restore
//! the stored sessions at start, write the table's changes every [`SAVE_INTERVAL`] (from
//! [`Portal::maintain`]) and the last ones at shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::Portal;
use crate::store::{StoreError, UserRecord};

/// How often the session table's changes are written to the store: a crash (`kill -9`)
/// loses at most the changes of this last interval.
pub(super) const SAVE_INTERVAL: Duration = Duration::from_secs(1);
/// Most sessions one write takes, so the store is never held for long (a burst of sign-ins
/// is written over the next few intervals).
const SAVE_BATCH: usize = 20_000;

impl Portal {
    /// Put back the sessions stored before a restart, with their users as the store has
    /// them now. Once at start, before serving, and after [`Portal::provision`] (so a user
    /// changed in the config meanwhile is seen changed). A store that cannot be read is
    /// logged, and everyone signs in again.
    pub fn restore_sessions(&self) {
        // The shared table (PostgreSQL) is written through: nothing to restore.
        let Some(table) = self.sessions.local() else {
            return;
        };
        let loaded = (|| {
            let (_, revision) = self.store.users_changed_since(i64::MAX)?;
            let stored = self.store.load_sessions()?;
            let mut users: HashMap<String, Option<Arc<UserRecord>>> = HashMap::new();
            for s in &stored {
                if !users.contains_key(&s.user) {
                    let user = self.store.user(&s.user)?.map(Arc::new);
                    users.insert(s.user.clone(), user);
                }
            }
            let users = users
                .into_iter()
                .filter_map(|(name, user)| Some((name, user?)))
                .collect();
            Ok::<_, StoreError>((revision, stored, users))
        })();
        match loaded {
            Ok((revision, stored, users)) => {
                let _ = self.restored_at.set(revision);
                let done = table.restore(stored, &users);
                tracing::info!(
                    sessions = done.sessions,
                    over = done.dropped,
                    "sessions restored from the store"
                );
            }
            Err(e) => {
                tracing::error!(error = %crate::http::error::error_chain(&e), "cannot restore the sessions from the store; their users must sign in again")
            }
        }
    }

    /// Write the session table's latest changes to the store, off the reactor, in one
    /// transaction. True when more changes wait (more than one write takes). A failure is
    /// logged and the changes are kept for the next write.
    pub async fn save_sessions(&self) -> bool {
        // The shared table (PostgreSQL) is written through: nothing waits.
        let Some(table) = self.sessions.local() else {
            return false;
        };
        let _one_at_a_time = self.save_lock.lock().await;
        let writes = Arc::new(table.take_writes(SAVE_BATCH));
        if writes.is_empty() {
            return false;
        }
        let sent = writes.clone();
        match self.store_call(move |s| s.save_sessions(&sent)).await {
            Ok(()) => writes.len() >= SAVE_BATCH,
            Err(e) => {
                tracing::error!(sessions = writes.len(), error = %crate::http::error::error_chain(&e), "cannot write sessions to the store; trying again");
                table.requeue(&writes);
                false
            }
        }
    }

    /// At shutdown, after the last request and the gates' last sync: write every change
    /// not written yet, so the next start finds the sessions as they were.
    pub async fn save_all_sessions(&self) {
        while self.save_sessions().await {}
    }
}

//! The portal's session table, whichever engine holds it: this process's memory
//! ([`SessionTable`], written behind to SQLite) or the database several portals share
//! ([`SharedSessions`], on PostgreSQL). The portal calls it only through [`Sessions`], so
//! each handler is written once.
//!
//! The in-memory table answers at once; the shared one runs on the blocking pool. Where a
//! database failure has a meaning the caller must act on (a gate's question, a sign-out) it
//! comes back as an error; elsewhere it is logged and read as "no session" — a failure
//! closes.

use std::sync::Arc;

use super::shared::SharedSessions;
use super::{SessionTable, SessionView, SitePasswords, UserRevision};
use crate::central::{Admission, SyncReply, SyncReport, Usage};
use crate::config::SiteId;
use crate::crypto::derived::SitePassword;
use crate::crypto::{IdHash, Identifier};
use crate::store::{StoreError, UsageRow, UserRecord};

// One per portal process, made once and never moved: the size of the in-memory variant
// costs nothing, and boxing it would add a hop to every local call.
#[allow(clippy::large_enum_variant)]
pub enum Sessions {
    Local(SessionTable),
    Shared(Arc<SharedSessions>),
}

/// Run `f` on the shared table off the reactor.
async fn blocking<T: Send + 'static>(
    shared: &Arc<SharedSessions>,
    f: impl FnOnce(&SharedSessions) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || f(&shared))
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::Config {
                why: "a call to the shared session table panicked".into(),
            })
        })
}

/// A failure where the caller can only go on with the safe answer `otherwise` (no session,
/// nothing listed): logged.
fn logged<T>(what: &str, result: Result<T, StoreError>, otherwise: T) -> T {
    result.unwrap_or_else(|e| {
        tracing::error!(error = %crate::http::error::error_chain(&e), "shared session table: cannot {what}; going on with the safe answer");
        otherwise
    })
}

impl Sessions {
    /// The in-memory table (for the write-behind to SQLite), when that is the engine.
    pub fn local(&self) -> Option<&SessionTable> {
        match self {
            Sessions::Local(t) => Some(t),
            Sessions::Shared(_) => None,
        }
    }

    /// Where the table is in its users' changes (see [`UserRevision`]): read before the
    /// user record a session may start from.
    pub fn user_revision(&self) -> UserRevision {
        match self {
            Sessions::Local(t) => t.user_revision(),
            Sessions::Shared(s) => s.user_revision(),
        }
    }

    /// Start a browser's session; `Ok(false)`: the user changed after `read` (see
    /// [`SessionTable::start`]), so the sign-in must be refused.
    pub async fn start(
        &self,
        replacing: Option<&IdHash>,
        id: IdHash,
        user: UserRecord,
        read: UserRevision,
        site_passwords: SitePasswords,
    ) -> Result<bool, StoreError> {
        match self {
            Sessions::Local(t) => Ok(t.start(replacing, id, user, read, site_passwords)),
            // Its sessions read their user afresh at every check (a password changed
            // meanwhile ends them there), so a record read before a change does no harm.
            Sessions::Shared(s) => {
                let replacing = replacing.copied();
                blocking(s, move |s| {
                    s.start(replacing.as_ref(), id, user, site_passwords)
                })
                .await
                .map(|()| true)
            }
        }
    }

    /// An error means the mark is not made: the caller must not go on as if it were (a
    /// sign-out would then leave the visit's traces on a shared computer).
    pub async fn mark_roaming(&self, id: &IdHash) -> Result<(), StoreError> {
        match self {
            Sessions::Local(t) => {
                t.mark_roaming(id);
                Ok(())
            }
            Sessions::Shared(s) => {
                let id = *id;
                blocking(s, move |s| s.mark_roaming(&id)).await
            }
        }
    }

    /// Unknown (the database failed) counts as roaming: a sign-out then clears what the
    /// browser kept, which costs a visit on the user's own computer nothing but a reload.
    pub async fn is_roaming(&self, id: &IdHash) -> bool {
        match self {
            Sessions::Local(t) => t.is_roaming(id),
            Sessions::Shared(s) => {
                let id = *id;
                logged(
                    "read whether a session is roaming",
                    blocking(s, move |s| s.is_roaming(&id)).await,
                    true,
                )
            }
        }
    }

    pub fn has_site_password(&self, id: &IdHash, site: &SiteId) -> bool {
        match self {
            Sessions::Local(t) => t.has_site_password(id, site),
            Sessions::Shared(s) => s.has_site_password(id, site),
        }
    }

    /// The user of a live session (portal pages), touching it.
    pub async fn user(&self, id: &IdHash) -> Option<Arc<UserRecord>> {
        match self {
            Sessions::Local(t) => t.user(id),
            Sessions::Shared(s) => {
                let id = *id;
                logged(
                    "read a session",
                    blocking(s, move |s| s.user(&id)).await,
                    None,
                )
            }
        }
    }

    pub async fn mint_code(
        &self,
        id: &IdHash,
        site: &SiteId,
        binding: IdHash,
    ) -> Option<Identifier> {
        match self {
            Sessions::Local(t) => t.mint_code(id, site, binding),
            Sessions::Shared(s) => {
                let (id, site) = (*id, site.clone());
                logged(
                    "mint a one-time code",
                    blocking(s, move |s| s.mint_code(&id, &site, binding)).await,
                    None,
                )
            }
        }
    }

    pub async fn redeem(
        &self,
        code: &str,
        cookie: IdHash,
        site: &SiteId,
    ) -> Result<Option<Admission>, StoreError> {
        match self {
            Sessions::Local(t) => Ok(t.redeem(code, cookie, site)),
            Sessions::Shared(s) => {
                let (code, site) = (code.to_string(), site.clone());
                blocking(s, move |s| s.redeem(&code, cookie, &site)).await
            }
        }
    }

    pub async fn check(
        &self,
        cookie: IdHash,
        site: &SiteId,
    ) -> Result<Option<Admission>, StoreError> {
        match self {
            Sessions::Local(t) => Ok(t.check(cookie, site)),
            Sessions::Shared(s) => {
                let site = site.clone();
                blocking(s, move |s| s.check(cookie, &site)).await
            }
        }
    }

    /// `Ok(None)`: the user changed after `read`; refuse (see [`SessionTable::start_basic`]).
    pub async fn start_basic(
        &self,
        key: IdHash,
        user: UserRecord,
        read: UserRevision,
        site: &SiteId,
        site_password: Option<SitePassword>,
    ) -> Result<Option<Admission>, StoreError> {
        match self {
            Sessions::Local(t) => Ok(t.start_basic(key, user, read, site, site_password)),
            Sessions::Shared(s) => {
                let site = site.clone();
                blocking(s, move |s| {
                    s.start_basic(key, user, read, &site, site_password)
                })
                .await
            }
        }
    }

    /// Sign-out: end a session on every site.
    pub async fn end(&self, id: &IdHash) -> Result<(), StoreError> {
        match self {
            Sessions::Local(t) => {
                t.end(id);
                Ok(())
            }
            Sessions::Shared(s) => {
                let id = *id;
                blocking(s, move |s| s.end(&id)).await
            }
        }
    }

    /// Apply a user's change to their sessions. `false`: the shared table could not
    /// (logged); the change is then still to apply, and the store's revision poll
    /// ([`crate::portal::Portal::maintain`]) tries it again: a demotion or disabling must
    /// not be lost to a passing database error.
    pub async fn user_changed(&self, name: &str, now_stored: Option<UserRecord>) -> bool {
        match self {
            Sessions::Local(t) => {
                t.user_changed(name, now_stored);
                true
            }
            Sessions::Shared(s) => {
                let name = name.to_string();
                let done = blocking(s, move |s| s.user_changed(&name, now_stored)).await;
                logged(
                    "apply a user's change to their sessions",
                    done.map(|()| true),
                    false,
                )
            }
        }
    }

    pub async fn sync(&self, report: &SyncReport) -> Result<SyncReply, StoreError> {
        match self {
            Sessions::Local(t) => Ok(t.sync(report)),
            Sessions::Shared(s) => {
                let report = report.clone();
                blocking(s, move |s| s.sync(&report)).await
            }
        }
    }

    pub async fn attribute(
        &self,
        usage: &[(IdHash, Usage)],
    ) -> Result<(Vec<UsageRow>, usize), StoreError> {
        match self {
            Sessions::Local(t) => Ok(t.attribute(usage)),
            Sessions::Shared(s) => {
                let usage = usage.to_vec();
                blocking(s, move |s| s.attribute(&usage)).await
            }
        }
    }

    pub async fn reap(&self) {
        match self {
            Sessions::Local(t) => t.reap(),
            Sessions::Shared(s) => {
                let done = blocking(s, |s| s.reap()).await;
                logged("end expired sessions", done, ());
            }
        }
    }

    /// An API call's nonce, not seen before by any portal of the deployment? (Each portal
    /// also keeps its own; with one portal that is enough.)
    pub async fn claim_nonce(&self, nonce: &str) -> Result<bool, StoreError> {
        match self {
            Sessions::Local(_) => Ok(true),
            Sessions::Shared(s) => {
                let nonce = nonce.to_string();
                blocking(s, move |s| s.claim_nonce(&nonce)).await
            }
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Sessions::Local(t) => t.len(),
            Sessions::Shared(s) => s.count(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub async fn sessions_of(&self, name: &str) -> Vec<SessionView> {
        match self {
            Sessions::Local(t) => t.sessions_of(name),
            Sessions::Shared(s) => {
                let name = name.to_string();
                logged(
                    "list a user's sessions",
                    blocking(s, move |s| s.sessions_of(&name)).await,
                    Vec::new(),
                )
            }
        }
    }

    pub async fn end_session_of(&self, name: &str, id: &IdHash) -> Result<bool, StoreError> {
        match self {
            Sessions::Local(t) => Ok(t.end_session_of(name, id)),
            Sessions::Shared(s) => {
                let (name, id) = (name.to_string(), *id);
                blocking(s, move |s| s.end_session_of(&name, &id)).await
            }
        }
    }
}

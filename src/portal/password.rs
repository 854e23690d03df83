//! Choosing a password (SPEC §6): `/password`.
//!
//! Two ways in. A browser that signed in with a temporary password holds no session: it
//! holds a *pending change*, bound to its portal cookie, and must prove the temporary
//! password again on the form (`temporary_password`); only then does a session start and
//! the hand-off continue. A signed-in user proves their `current_password`. Either way
//! the new hash replaces the old one by compare-and-swap (so a temporary password completes
//! one change only), and a change ends every other session of the user.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::header::{RETRY_AFTER, SET_COOKIE};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use zeroize::Zeroizing;

use super::handlers::{form_expired, portal_cookie, query, read_form};
use super::pages::{self, Handoff, Proof};
use super::{Attempt, Portal};
use crate::crypto::password::MAX_PASSWORD_BYTES;
use crate::crypto::{IdHash, Identifier};
use crate::http::body::Body;
use crate::http::cookies;
use crate::http::error::HttpError;
use crate::http::page;
use crate::store::UserRecord;

/// Shortest new password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 10;

/// How long a browser may take to fill in the change form after signing in.
const PENDING_TTL: Duration = Duration::from_secs(15 * 60);
/// Most pending changes held at once; beyond it a temporary sign-in is refused for a while.
const PENDING_CAP: usize = 10_000;

/// A browser that signed in with a temporary password: who, whether it said it is a shared
/// computer (kept for when the session starts), and until when.
struct Pending {
    user: String,
    shared_computer: bool,
    until: Instant,
}

/// Browsers (by portal cookie hash) that signed in with a temporary password, and whose
/// password they must now choose.
#[derive(Default)]
pub struct PendingChanges {
    inner: Mutex<HashMap<IdHash, Pending>>,
}

impl PendingChanges {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IdHash, Pending>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// False when full of live entries.
    fn insert(&self, cookie: IdHash, user: &str, shared_computer: bool) -> bool {
        let now = Instant::now();
        let mut map = self.lock();
        if map.len() >= PENDING_CAP {
            map.retain(|_, p| p.until > now);
        }
        if map.len() >= PENDING_CAP && !map.contains_key(&cookie) {
            return false;
        }
        let pending = Pending {
            user: user.to_string(),
            shared_computer,
            until: now + PENDING_TTL,
        };
        map.insert(cookie, pending);
        true
    }

    /// The user of a live pending change, and whether they are on a shared computer.
    fn get(&self, cookie: &IdHash) -> Option<(String, bool)> {
        let mut map = self.lock();
        match map.get(cookie) {
            Some(p) if p.until > Instant::now() => Some((p.user.clone(), p.shared_computer)),
            Some(_) => {
                map.remove(cookie);
                None
            }
            None => None,
        }
    }

    fn remove(&self, cookie: &IdHash) {
        self.lock().remove(cookie);
    }
}

/// Is `new` acceptable as the password replacing `old`?
fn check_new(new: &str, confirm: &str, old: &str) -> Result<(), &'static str> {
    if new != confirm {
        return Err("The two new passwords differ.");
    }
    if new.chars().count() < MIN_PASSWORD_CHARS {
        return Err("The new password is too short: use at least 10 characters.");
    }
    if new.len() > MAX_PASSWORD_BYTES {
        return Err("The new password is too long.");
    }
    if new == old {
        return Err("The new password must differ from the old one.");
    }
    Ok(())
}

/// POST /login with a good temporary password: no session, no site, only the change form.
pub(super) fn temporary_signed_in(
    portal: &Portal,
    cookie: &IdHash,
    record: &UserRecord,
    shared_computer: bool,
    handoff: Option<&Handoff>,
    peer: SocketAddr,
) -> Response<Body> {
    if !portal
        .pending
        .insert(*cookie, &record.name, shared_computer)
    {
        tracing::warn!(peer = %peer.ip(), "too many pending password changes; temporary sign-in refused");
        return page::message(
            StatusCode::SERVICE_UNAVAILABLE,
            "Busy",
            "Too many people are choosing a password right now. Please try again in a few minutes.",
        );
    }
    tracing::info!(peer = %peer.ip(), user = %record.name, "signed in with a temporary password; must choose a password");
    change_form(
        portal,
        cookie,
        handoff,
        Proof::Temporary,
        None,
        StatusCode::OK,
    )
}

fn change_form(
    portal: &Portal,
    cookie: &IdHash,
    handoff: Option<&Handoff>,
    proof: Proof,
    error: Option<&str>,
    status: StatusCode,
) -> Response<Body> {
    let look = portal.look_for(handoff.map(|h| h.site.as_str()));
    let html = pages::change_password(
        &look,
        &portal.csrf_token(cookie),
        handoff,
        proof,
        error,
        MIN_PASSWORD_CHARS,
    );
    portal.branded_page(handoff.map(|h| h.site.as_str()), status, html)
}

/// GET /password: the change form for a pending change or a signed-in user.
pub(super) async fn form(
    portal: &Portal,
    req: &Request<Incoming>,
) -> Result<Response<Body>, HttpError> {
    let Some(cookie) = portal_cookie(req)? else {
        return Ok(page::redirect(StatusCode::FOUND, "/login"));
    };
    let handoff = portal.handoff_from(&query(req));
    let proof = if portal.pending.get(&cookie).is_some() {
        Proof::Temporary
    } else if portal.sessions.user(&cookie).await.is_some() {
        Proof::Current
    } else {
        return Ok(page::redirect(StatusCode::FOUND, "/login"));
    };
    Ok(change_form(
        portal,
        &cookie,
        handoff.as_ref(),
        proof,
        None,
        StatusCode::OK,
    ))
}

/// What the form proves and who it is for.
enum Who {
    /// The user, and whether they said at sign-in that this is a shared computer.
    Pending(String, bool),
    SignedIn(String),
}

/// POST /password.
pub(super) async fn submit(
    portal: &Portal,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Body>, HttpError> {
    let cookie = portal_cookie(&req)?;
    let (parts, mut form) = read_form(req).await?;
    let Some(cookie) = cookie.filter(|_| portal.csrf_ok(cookie.as_ref(), &form)) else {
        return Ok(form_expired());
    };
    let handoff = portal.handoff_from(&form);
    let mut take = |name: &str| Zeroizing::new(form.remove(name).unwrap_or_default());
    let (new, confirm) = (take("new_password"), take("confirm_password"));
    let mut shared_computer = false;
    let who = if let Some((user, shared)) = portal.pending.get(&cookie) {
        Who::Pending(user, shared)
    } else if let Some(user) = portal.sessions.user(&cookie).await {
        Who::SignedIn(user.name.clone())
    } else {
        return Ok(page::redirect(StatusCode::SEE_OTHER, "/login"));
    };
    let (name, proof, old) = match who {
        Who::Pending(n, shared) => {
            shared_computer = shared;
            (n, Proof::Temporary, take("temporary_password"))
        }
        Who::SignedIn(n) => (n, Proof::Current, take("current_password")),
    };
    let refuse = |error: &str, status| {
        Ok(change_form(
            portal,
            &cookie,
            handoff.as_ref(),
            proof,
            Some(error),
            status,
        ))
    };

    // Through the sign-in throttle: a stolen session must not become a free password oracle.
    let record = match portal
        .attempt(&name, &old, peer.ip())
        .await
        .map_err(|e| HttpError::Internal(Box::new(e)))?
    {
        Attempt::Accepted(record, _) => Some(record),
        Attempt::Refused => None,
        Attempt::Throttled(wait) => {
            let mut res = refuse(
                "Too many wrong passwords. Wait a moment, then try again.",
                StatusCode::TOO_MANY_REQUESTS,
            )?;
            res.headers_mut()
                .insert(RETRY_AFTER, crate::http::error::retry_after_value(wait));
            return Ok(res);
        }
    };
    // A temporary password proves only a pending change; a current one only a session.
    let record = record.filter(|r| r.temporary_until.is_some() == (proof == Proof::Temporary));
    let Some(record) = record else {
        tracing::info!(peer = %peer.ip(), user = %name, "password change refused: wrong or expired password");
        let error = match proof {
            Proof::Temporary => "The temporary password is wrong, expired or already used.",
            Proof::Current => "Your current password is wrong.",
        };
        return refuse(error, StatusCode::UNAUTHORIZED);
    };
    if let Err(error) = check_new(&new, &confirm, &old) {
        return refuse(error, StatusCode::BAD_REQUEST);
    }
    drop((old, confirm));
    let hash = portal
        .verifier
        .hash(new.clone())
        .await
        .ok_or_else(|| HttpError::Internal("cannot hash a new password".into()))?;
    let (n, old_hash, new_hash) = (name.clone(), record.password_hash.clone(), hash.clone());
    let replaced = portal
        .store_call(move |s| s.replace_password(&n, &old_hash, &new_hash))
        .await
        .map_err(|e| HttpError::Internal(Box::new(e)))?;
    if !replaced {
        // Changed meanwhile: another use of the same temporary or current password won.
        tracing::info!(peer = %peer.ip(), user = %name, "password change refused: changed meanwhile");
        return refuse(
            "Your password was changed meanwhile. Sign in again.",
            StatusCode::CONFLICT,
        );
    }
    portal.pending.remove(&cookie);
    tracing::info!(peer = %peer.ip(), user = %name, "password changed");

    let updated = UserRecord {
        password_hash: hash,
        temporary_until: None,
        ..record
    };
    let site_passwords = portal.site_passwords(&updated, &new);
    drop(new);
    // A fresh portal cookie (no fixation); for a signed-in user it carries this browser's
    // sites over. Then every other session of the user ends at once, here and at the gates
    // (the store's revision poll would end them within seconds too).
    // The record is the one just written (its password is ours), so the session starts
    // from it unless another change of the user lands in the meantime.
    let fresh = Identifier::new();
    let read = portal.sessions.user_revision();
    let started = portal
        .sessions
        .start(
            Some(&cookie),
            fresh.hash(),
            updated.clone(),
            read,
            site_passwords,
        )
        .await
        .map_err(|e| HttpError::Internal(Box::new(e)))?;
    if !started {
        portal.sessions.user_changed(&name, Some(updated)).await;
        tracing::info!(peer = %peer.ip(), user = %name, "password changed; no session: the user changed meanwhile");
        return refuse(
            "Your password was changed, but your account changed meanwhile. Sign in again.",
            StatusCode::CONFLICT,
        );
    }
    let account = updated.account.clone();
    portal.sessions.user_changed(&name, Some(updated)).await;
    let mut res = match proof {
        // The first real sign-in of this user: the node (or roaming) as at any sign-in.
        Proof::Temporary => {
            portal
                .after_sign_in(
                    &fresh.hash(),
                    &account,
                    shared_computer,
                    handoff.as_ref(),
                    &parts.headers,
                )
                .await
        }
        Proof::Current => portal.page(StatusCode::OK, pages::password_changed()),
    };
    res.headers_mut()
        .append(SET_COOKIE, cookies::set(cookies::PORTAL, fresh.as_str()));
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// New passwords: confirmed, long enough, not too long, not the old one.
    #[test]
    fn new_password_rules() {
        assert!(check_new("long enough pw", "long enough pw", "old").is_ok());
        assert!(check_new("long enough pw", "long enough pX", "old").is_err());
        assert!(check_new("short", "short", "old").is_err());
        assert!(check_new("ääääääääää", "ääääääääää", "old").is_ok());
        let huge = "x".repeat(MAX_PASSWORD_BYTES + 1);
        assert!(check_new(&huge, &huge, "old").is_err());
        assert!(check_new("same as old!", "same as old!", "same as old!").is_err());
    }

    /// Pending changes expire and are bounded.
    #[test]
    fn pending_changes() {
        let p = PendingChanges::default();
        let c = IdHash([1; 32]);
        assert!(p.insert(c, "a@example.org", true));
        assert_eq!(p.get(&c), Some(("a@example.org".to_string(), true)));
        p.remove(&c);
        assert_eq!(p.get(&c), None);
        let expired = Pending {
            user: "x".into(),
            shared_computer: false,
            until: Instant::now() - Duration::from_secs(1),
        };
        p.lock().insert(c, expired);
        assert_eq!(p.get(&c), None, "expired");
    }
}

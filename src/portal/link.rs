//! Nodes and linking (SPEC §6): `/link`.
//!
//! Each browser that signs in (not on a shared computer) gets a lasting node cookie; the
//! store registers the node and notes the accounts signed in on it. When an account signs
//! in on a node where other accounts were seen, and was not kept apart from them there,
//! the sign-in continues to `/link` instead of the site: the user may declare their account
//! the same as one of those (proved by that account's password, through the sign-in
//! throttle so the form is no password oracle), and the two are merged into the chosen one;
//! or keep them apart, which is not asked again on that node. Either way the hand-off then
//! continues.

use std::net::SocketAddr;

use http::header::{RETRY_AFTER, SET_COOKIE};
use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::Incoming;
use zeroize::Zeroizing;

use super::handlers::{form_expired, portal_cookie, query, read_form};
use super::pages::{self, Handoff};
use super::{Attempt, Portal, unix_now};
use crate::crypto::{IdHash, Identifier};
use crate::http::body::Body;
use crate::http::cookies::{self, Found};
use crate::http::error::HttpError;
use crate::http::page;

/// The browser's node cookie value, if it sent one well-formed copy.
pub(super) fn node_cookie(headers: &HeaderMap) -> Option<&str> {
    match cookies::find(headers, cookies::NODE) {
        Found::One(v) if crate::crypto::ids::looks_like_identifier(v) => Some(v),
        // A duplicate or malformed node cookie is replaced by a fresh one at sign-in.
        Found::One(_) | Found::None | Found::Duplicate => None,
    }
}

/// The node cookie to (re)set at a sign-in: the browser's own, or a fresh identifier.
fn node_cookie_or_fresh(headers: &HeaderMap) -> String {
    node_cookie(headers)
        .map(str::to_string)
        .unwrap_or_else(|| Identifier::new().as_str().to_string())
}

/// `/link`, keeping the hand-off, where a sign-in goes when there is something to offer.
fn link_url(handoff: Option<&Handoff>) -> String {
    match handoff {
        Some(h) => {
            let q = form_urlencoded::Serializer::new(String::new())
                .append_pair("site", &h.site)
                .append_pair("h", &h.h)
                .append_pair("rd", &h.rd)
                .finish();
            format!("/link?{q}")
        }
        None => "/link".into(),
    }
}

impl Portal {
    /// Note in the store that `account` signed in on the node whose cookie is `node`;
    /// true when other accounts seen there may be offered for linking. A store failure is
    /// logged and offers nothing: the sign-in goes on.
    async fn note_node(&self, node: &str, account: &str) -> bool {
        let (hash, a) = (IdHash::of(node.as_bytes()), account.to_string());
        match self
            .store_call(move |s| s.note_node_account(&hash, &a, unix_now()))
            .await
        {
            Ok(others) => !others.is_empty(),
            Err(e) => {
                tracing::warn!(account = %account, error = %crate::http::error::error_chain(&e), "cannot note a node");
                false
            }
        }
    }

    /// The answer to a good sign-in that started session `session` for `account`: on a
    /// shared computer the session is marked roaming and nothing is kept for the node;
    /// otherwise the node cookie is set (or renewed) and the account noted on the node.
    /// Then on to `/link` when there is something to offer, else on with the hand-off.
    pub(super) async fn after_sign_in(
        &self,
        session: &IdHash,
        account: &str,
        shared_computer: bool,
        handoff: Option<&Handoff>,
        headers: &HeaderMap,
    ) -> Response<Body> {
        if shared_computer {
            // An existing node cookie (another user's) is neither renewed nor noted.
            if let Err(e) = self.sessions.mark_roaming(session).await {
                // Fail closed: without the mark, signing out would not clear the shared
                // computer; end the new session and show the error instead.
                let _ = self.sessions.end(session).await;
                return HttpError::Internal(Box::new(e)).into_response();
            }
            return self.continue_after_link(session, handoff).await;
        }
        let node = node_cookie_or_fresh(headers);
        let mut res = if self.note_node(&node, account).await {
            page::redirect(StatusCode::SEE_OTHER, &link_url(handoff))
        } else {
            self.continue_after_link(session, handoff).await
        };
        res.headers_mut().append(
            SET_COOKIE,
            cookies::set_lasting(cookies::NODE, &node, cookies::NODE_MAX_AGE_SECS),
        );
        res
    }

    /// On with the hand-off, or to the account page.
    async fn continue_after_link(
        &self,
        session: &IdHash,
        handoff: Option<&Handoff>,
    ) -> Response<Body> {
        let onward = match handoff {
            Some(h) => self.continue_to_site(session, h).await,
            None => None,
        };
        onward.unwrap_or_else(|| page::redirect(StatusCode::SEE_OTHER, "/"))
    }

    fn link_page(
        &self,
        status: StatusCode,
        session: &IdHash,
        handoff: Option<&Handoff>,
        account: &str,
        candidates: &[String],
        error: Option<&str>,
    ) -> Response<Body> {
        let look = self.look_for(handoff.map(|h| h.site.as_str()));
        let html = pages::link(
            &look,
            &self.csrf_token(session),
            handoff,
            account,
            candidates,
            error,
        );
        // In the site's look, so with the CSP that lets its branding's assets load.
        self.branded_page(handoff.map(|h| h.site.as_str()), status, html)
    }
}

/// What a `/link` request stands on: the session, its account, and the node's candidates.
struct Context {
    session: IdHash,
    account: String,
    node: IdHash,
    candidates: Vec<String>,
}

/// The signed-in, non-roaming session of a browser with a node cookie, and the accounts it
/// may be linked with there (possibly none). `Err`: the answer to give instead.
async fn context(
    portal: &Portal,
    cookie: Option<IdHash>,
    headers: &HeaderMap,
    handoff: Option<&Handoff>,
) -> Result<Result<Context, Response<Body>>, HttpError> {
    let signed_in = match cookie {
        Some(c) => portal.sessions.user(&c).await.map(|u| (c, u)),
        None => None,
    };
    let Some((session, user)) = signed_in else {
        return Ok(Err(page::redirect(StatusCode::SEE_OTHER, "/login")));
    };
    let node = node_cookie(headers).map(|v| IdHash::of(v.as_bytes()));
    let roaming = portal.sessions.is_roaming(&session).await;
    let Some(node) = node.filter(|_| !roaming) else {
        return Ok(Err(portal.continue_after_link(&session, handoff).await));
    };
    let account = user.account.clone();
    let a = account.clone();
    let candidates = portal
        .store_call(move |s| s.link_candidates(&node, &a))
        .await
        .map_err(|e| HttpError::Internal(Box::new(e)))?;
    Ok(Ok(Context {
        session,
        account,
        node,
        candidates,
    }))
}

/// GET /link: the offer, or on with the hand-off when there is nothing to offer.
pub(super) async fn form(
    portal: &Portal,
    req: &Request<Incoming>,
) -> Result<Response<Body>, HttpError> {
    let handoff = portal.handoff_from(&query(req));
    let cx = match context(portal, portal_cookie(req)?, req.headers(), handoff.as_ref()).await? {
        Ok(cx) => cx,
        Err(res) => return Ok(res),
    };
    if cx.candidates.is_empty() {
        return Ok(portal
            .continue_after_link(&cx.session, handoff.as_ref())
            .await);
    }
    Ok(portal.link_page(
        StatusCode::OK,
        &cx.session,
        handoff.as_ref(),
        &cx.account,
        &cx.candidates,
        None,
    ))
}

/// POST /link: `choice=apart` keeps the accounts apart on this node; `choice=link` with
/// `account` (one of those offered) and that account's `password` merges this account into
/// it.
pub(super) async fn submit(
    portal: &Portal,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Body>, HttpError> {
    let cookie = portal_cookie(&req)?;
    let (parts, mut form) = read_form(req).await?;
    let password = Zeroizing::new(form.remove("password").unwrap_or_default());
    if !portal.csrf_ok(cookie.as_ref(), &form) {
        return Ok(form_expired());
    }
    let handoff = portal.handoff_from(&form);
    let cx = match context(portal, cookie, &parts.headers, handoff.as_ref()).await? {
        Ok(cx) => cx,
        Err(res) => return Ok(res),
    };
    match form.get("choice").map(String::as_str) {
        Some("apart") => {
            let (node, account, others) = (cx.node, cx.account.clone(), cx.candidates.clone());
            portal
                .store_call(move |s| s.keep_apart(&node, &account, &others, unix_now()))
                .await
                .map_err(|e| HttpError::Internal(Box::new(e)))?;
            tracing::info!(account = %cx.account, others = cx.candidates.len(), "accounts kept apart on this node");
            Ok(portal
                .continue_after_link(&cx.session, handoff.as_ref())
                .await)
        }
        Some("link") => link(portal, cx, &form, &password, handoff.as_ref(), peer).await,
        _ => Err(HttpError::BadRequest("unknown choice")),
    }
}

/// Check the chosen account's password, then merge this account into it.
async fn link(
    portal: &Portal,
    cx: Context,
    form: &std::collections::HashMap<String, String>,
    password: &str,
    handoff: Option<&Handoff>,
    peer: SocketAddr,
) -> Result<Response<Body>, HttpError> {
    let refuse = |status, error| {
        portal.link_page(
            status,
            &cx.session,
            handoff,
            &cx.account,
            &cx.candidates,
            Some(error),
        )
    };
    // Only an account this node has seen (and that is still offered) can be named.
    let Some(other) = form
        .get("account")
        .filter(|a| cx.candidates.contains(a))
        .cloned()
    else {
        return Ok(refuse(
            StatusCode::BAD_REQUEST,
            "Choose one of the accounts listed.",
        ));
    };
    let o = other.clone();
    let login = portal
        .store_call(move |s| s.account_login(&o))
        .await
        .map_err(|e| HttpError::Internal(Box::new(e)))?
        // An account with no user left: the check still runs (and fails) the same way.
        .unwrap_or_else(|| other.clone());
    let proved = match portal
        .attempt(&login, password, peer.ip())
        .await
        .map_err(|e| HttpError::Internal(Box::new(e)))?
    {
        Attempt::Accepted(r, _) => r.account == other && r.temporary_until.is_none(),
        Attempt::Refused => false,
        Attempt::Throttled(wait) => {
            let mut res = refuse(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many wrong passwords. Wait a moment, then try again.",
            );
            res.headers_mut()
                .insert(RETRY_AFTER, crate::http::error::retry_after_value(wait));
            return Ok(res);
        }
    };
    if !proved {
        tracing::info!(peer = %peer.ip(), account = %cx.account, other = %other, "account link refused: wrong password");
        return Ok(refuse(
            StatusCode::UNAUTHORIZED,
            "Wrong password for that account.",
        ));
    }
    let (keep, gone) = (other.clone(), cx.account.clone());
    let merged = portal
        .store_call(move |s| {
            let Some(moved) = s.merge_accounts(&keep, &gone, unix_now())? else {
                return Ok(None);
            };
            let records = moved
                .into_iter()
                .map(|n| s.user(&n).map(|u| (n, u)))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some(records))
        })
        .await
        .map_err(|e| HttpError::Internal(Box::new(e)))?;
    let Some(records) = merged else {
        return Ok(page::message(
            StatusCode::CONFLICT,
            "Accounts changed",
            "These accounts changed meanwhile. Sign in again to see them as they are now.",
        ));
    };
    tracing::info!(peer = %peer.ip(), account = %cx.account, into = %other, users = records.len(), "accounts linked: merged");
    // Running sessions of the moved users keep going under the new account name; gates
    // holding them ask again (see SessionTable::user_changed).
    for (name, record) in records {
        // On a store failure the revision poll applies it (see `Sessions::user_changed`).
        portal.sessions.user_changed(&name, record).await;
    }
    Ok(portal.continue_after_link(&cx.session, handoff).await)
}

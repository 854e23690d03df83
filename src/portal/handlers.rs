//! The portal's routes, one `match (method, path)` table, and their handlers.

use std::collections::HashMap;
use std::net::SocketAddr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::{CONTENT_TYPE, RETRY_AFTER, SET_COOKIE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use zeroize::Zeroizing;

use super::pages::{self, Handoff, Notice};
use super::{Attempt, Portal, account, link, password, register};
use crate::crypto::{IdHash, Identifier, ct_eq};
use crate::http::body::Body;
use crate::http::cookies::{self, Found};
use crate::http::error::HttpError;
use crate::http::page;

/// Portal forms are small; anything larger is refused before it is buffered.
const MAX_FORM_BYTES: usize = 16 * 1024;

pub(super) async fn route(
    portal: &Portal,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    let result = match (req.method().clone(), path.as_str()) {
        (Method::GET | Method::HEAD, "/") => account::show(portal, &req).await,
        (Method::POST, "/") => account::submit(portal, req).await,
        (Method::GET | Method::HEAD, "/login") => login_page(portal, &req).await,
        (Method::POST, "/login") => login_submit(portal, req, peer).await,
        (Method::GET | Method::HEAD, "/logout") => logout_page(portal, &req).await,
        (Method::POST, "/logout") => logout_submit(portal, req).await,
        (Method::GET | Method::HEAD, "/register") => register::form(portal, &req),
        (Method::POST, "/register") => register::submit(portal, req, peer).await,
        (Method::GET | Method::HEAD, "/password") => password::form(portal, &req).await,
        (Method::POST, "/password") => password::submit(portal, req, peer).await,
        (Method::GET | Method::HEAD, "/link") => link::form(portal, &req).await,
        (Method::POST, "/link") => link::submit(portal, req, peer).await,
        (Method::GET | Method::HEAD, page::STYLESHEET_PATH) => Ok(crate::gate::stylesheet()),
        (_, "/" | "/login" | "/logout" | "/register" | "/password" | "/link") => {
            Err(HttpError::MethodNotAllowed)
        }
        _ => Err(HttpError::NotFound),
    };
    result.unwrap_or_else(HttpError::into_response)
}

/// The browser's portal cookie hash, if it sent a well-formed one.
pub(super) fn portal_cookie<B>(req: &Request<B>) -> Result<Option<IdHash>, HttpError> {
    match cookies::find(req.headers(), cookies::PORTAL) {
        Found::One(v) if crate::crypto::ids::looks_like_identifier(v) => {
            Ok(Some(IdHash::of(v.as_bytes())))
        }
        Found::One(_) | Found::None => Ok(None),
        Found::Duplicate => Err(HttpError::BadRequest("the portal cookie was sent twice")),
    }
}

/// The browser's portal cookie, or a fresh one (an identifier for this not-yet-known
/// client, which the form's CSRF token is bound to) with the header that sets it.
pub(super) fn cookie_or_fresh(cookie: Option<IdHash>) -> (IdHash, Option<http::HeaderValue>) {
    match cookie {
        Some(c) => (c, None),
        None => {
            let fresh = Identifier::new();
            (
                fresh.hash(),
                Some(cookies::set(cookies::PORTAL, fresh.as_str())),
            )
        }
    }
}

pub(super) fn query<B>(req: &Request<B>) -> HashMap<String, String> {
    first_values(req.uri().query().unwrap_or("").as_bytes())
}

/// Parse urlencoded pairs, keeping the first value of each name (a repeated field cannot
/// smuggle a second value past a check of the first).
fn first_values(bytes: &[u8]) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for (k, v) in form_urlencoded::parse(bytes) {
        map.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    map
}

pub(super) async fn read_form(
    req: Request<Incoming>,
) -> Result<(http::request::Parts, HashMap<String, String>), HttpError> {
    let is_form = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').next().is_some_and(|t| {
                t.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    if !is_form {
        return Err(HttpError::BadRequest("expected a form post"));
    }
    let (parts, mut body) = req.into_parts();
    // Refused before buffering; what is left of a refused form is read away (bounded) so
    // the client gets the 413 rather than a reset connection.
    if http_body::Body::size_hint(&body).lower() > MAX_FORM_BYTES as u64 {
        crate::http::body::discard(body);
        return Err(HttpError::PayloadTooLarge);
    }
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| HttpError::BadRequest("the form could not be read"))?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > MAX_FORM_BYTES {
                crate::http::body::discard(body);
                return Err(HttpError::PayloadTooLarge);
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok((parts, first_values(&bytes)))
}

impl Portal {
    pub(super) fn csrf_token(&self, portal_cookie: &IdHash) -> String {
        URL_SAFE_NO_PAD.encode(self.csrf_key.mac(&[b"csrf", &portal_cookie.0]))
    }

    pub(super) fn csrf_ok(
        &self,
        portal_cookie: Option<&IdHash>,
        form: &HashMap<String, String>,
    ) -> bool {
        match (portal_cookie, form.get("csrf")) {
            (Some(c), Some(token)) => ct_eq(self.csrf_token(c).as_bytes(), token.as_bytes()),
            _ => false,
        }
    }

    /// Does the hand-off come from a site open to self-registration?
    pub(super) fn registration_open(&self, handoff: Option<&Handoff>) -> bool {
        handoff
            .and_then(|h| self.site(&h.site))
            .is_some_and(|s| s.registration)
    }

    /// A page carrying the portal's CSP.
    pub(super) fn page(&self, status: StatusCode, html: String) -> Response<Body> {
        page::html(status, html, &self.csp())
    }

    /// The hand-off a request asks for, if it names a configured site and a well-formed hash.
    pub(super) fn handoff_from(&self, fields: &HashMap<String, String>) -> Option<Handoff> {
        let site = fields.get("site")?;
        self.site(site)?;
        let h = fields.get("h")?;
        IdHash::from_b64(h)?;
        let rd = fields
            .get("rd")
            .filter(|rd| rd.len() <= 2048)
            .cloned()
            .unwrap_or_else(|| "/".into());
        Some(Handoff {
            site: site.clone(),
            h: h.clone(),
            rd,
        })
    }

    /// Mint a code for the hand-off and send the browser to the site's callback.
    pub(super) async fn continue_to_site(
        &self,
        session: &IdHash,
        handoff: &Handoff,
    ) -> Option<Response<Body>> {
        let site = self.site(&handoff.site)?;
        let binding = IdHash::from_b64(&handoff.h)?;
        let code = self.sessions.mint_code(session, &site.id, binding).await?;
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("code", code.as_str())
            .append_pair("rd", &handoff.rd)
            .finish();
        Some(page::redirect(
            StatusCode::SEE_OTHER,
            &format!("{}/.gatehouse/callback?{query}", site.origin),
        ))
    }
}

/// GET /login: a known browser goes straight on to the site; others get the form (and a
/// portal cookie that identifies this not-yet-known client, binding the form's CSRF token).
async fn login_page(portal: &Portal, req: &Request<Incoming>) -> Result<Response<Body>, HttpError> {
    let q = query(req);
    let handoff = portal.handoff_from(&q);
    let cookie = portal_cookie(req)?;
    let mut notice = None;
    let mut username = String::new();
    if let Some(c) = &cookie
        && let Some(user) = portal.sessions.user(c).await
    {
        let again = handoff
            .as_ref()
            .is_some_and(|h| portal.needs_master_password(c, &user, &h.site));
        let next = match &handoff {
            _ if again => None,
            Some(h) => portal.continue_to_site(c, h).await,
            None => Some(page::redirect(StatusCode::FOUND, "/")),
        };
        if let Some(res) = next {
            return Ok(res);
        }
        if again {
            notice = Some(Notice::PasswordAgain);
            username = user.name.clone();
        }
    }
    // A well-formed portal cookie that is no live session is kept as this client's
    // pre-sign-in identifier: it only binds the form's CSRF token and never becomes a
    // session, since a good sign-in always rotates it (login_submit). Replacing it on every
    // visit would break a form open in another tab.
    let (cookie_hash, set_cookie) = cookie_or_fresh(cookie);
    let look = portal.look_for(handoff.as_ref().map(|h| h.site.as_str()));
    let html = pages::login(
        &look,
        &portal.csrf_token(&cookie_hash),
        handoff.as_ref(),
        notice,
        &username,
        portal.registration_open(handoff.as_ref()),
    );
    let mut res = portal.branded_page(
        handoff.as_ref().map(|h| h.site.as_str()),
        StatusCode::OK,
        html,
    );
    if let Some(sc) = set_cookie {
        res.headers_mut().append(SET_COOKIE, sc);
    }
    Ok(res)
}

/// POST /login: check the password off the reactor; on success derive the site passwords
/// of the derived sites (the only moment the master password exists: it is dropped when
/// this handler returns), rotate the portal cookie (no session fixation), start the session
/// and continue the hand-off.
///
/// Nodes (SPEC §6): the browser gets (or keeps, renewed) its lasting node cookie and the
/// account is noted on that node; when other accounts were seen there, the sign-in goes on
/// to `/link` first. On a shared computer (`shared_computer`) none of that: no node cookie,
/// no note, and the session is marked roaming so sign-out clears the browser.
async fn login_submit(
    portal: &Portal,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Body>, HttpError> {
    let old_cookie = portal_cookie(&req)?;
    let (parts, mut form) = read_form(req).await?;
    let password = Zeroizing::new(form.remove("password").unwrap_or_default());
    if !portal.csrf_ok(old_cookie.as_ref(), &form) {
        return Ok(page::message(
            StatusCode::FORBIDDEN,
            "Form expired",
            "This form has expired or did not come from this site. Go back, reload the page and try again.",
        ));
    }
    let handoff = portal.handoff_from(&form);
    let username = form
        .get("username")
        .map(|u| u.trim().to_string())
        .unwrap_or_default();
    let look = portal.look_for(handoff.as_ref().map(|h| h.site.as_str()));
    let cookie_hash = old_cookie.unwrap_or(IdHash([0; 32]));

    // Throttled or not, known or not: the answer depends only on the name (case folded) and the
    // address, and argon2 runs for unknown users too, so timing does not tell who exists.
    let attempt = portal
        .attempt(&username, &password, peer.ip())
        .await
        .map_err(|e| HttpError::Internal(Box::new(e)))?;
    let refused = |status, notice| {
        let html = pages::login(
            &look,
            &portal.csrf_token(&cookie_hash),
            handoff.as_ref(),
            Some(notice),
            &username,
            portal.registration_open(handoff.as_ref()),
        );
        portal.branded_page(handoff.as_ref().map(|h| h.site.as_str()), status, html)
    };
    let (record, read) = match attempt {
        Attempt::Accepted(record, read) => (record, read),
        Attempt::Refused => {
            portal.metrics.signin("failure");
            tracing::info!(peer = %peer.ip(), user = %username.chars().take(64).collect::<String>(), "sign-in refused");
            return Ok(refused(
                StatusCode::UNAUTHORIZED,
                Notice::Error("Wrong user name or password."),
            ));
        }
        Attempt::Throttled(wait) => {
            portal.metrics.signin("throttled");
            let mut res = refused(
                StatusCode::TOO_MANY_REQUESTS,
                Notice::Error("Too many failed sign-ins. Wait a moment, then try again."),
            );
            res.headers_mut()
                .insert(RETRY_AFTER, crate::http::error::retry_after_value(wait));
            return Ok(res);
        }
    };
    // Accounts (SPEC §6): a temporary password leads to the change form, never to a site.
    if record.temporary_until.is_some() {
        let shared_computer = form.get("shared_computer").is_some_and(|v| !v.is_empty());
        return Ok(password::temporary_signed_in(
            portal,
            &cookie_hash,
            &record,
            shared_computer,
            handoff.as_ref(),
            peer,
        ));
    }
    let site_passwords = portal.site_passwords(&record, &password);
    drop(password);
    let shared_computer = form.get("shared_computer").is_some_and(|v| !v.is_empty());
    let (account, name) = (record.account.clone(), record.name.clone());
    let fresh = Identifier::new();
    let started = portal
        .sessions
        .start(
            old_cookie.as_ref(),
            fresh.hash(),
            record,
            read,
            site_passwords,
        )
        .await
        .map_err(|e| HttpError::Internal(Box::new(e)))?;
    if !started {
        // Disabled, demoted or given a new password while this one was checked: the
        // password may be the old one, and the record is stale either way.
        tracing::info!(peer = %peer.ip(), user = %username.chars().take(64).collect::<String>(), "sign-in refused: the user changed while the password was checked");
        return Ok(refused(
            StatusCode::UNAUTHORIZED,
            Notice::Error("Wrong user name or password."),
        ));
    }
    portal.metrics.signin("success");
    tracing::info!(peer = %peer.ip(), user = %name, "signed in");
    let mut res = portal
        .after_sign_in(
            &fresh.hash(),
            &account,
            shared_computer,
            handoff.as_ref(),
            &parts.headers,
        )
        .await;
    res.headers_mut()
        .append(SET_COOKIE, cookies::set(cookies::PORTAL, fresh.as_str()));
    Ok(res)
}

/// The answer to a form whose CSRF token does not match the browser's portal cookie.
pub(super) fn form_expired() -> Response<Body> {
    page::message(
        StatusCode::FORBIDDEN,
        "Form expired",
        "This form has expired or did not come from this site. Go back, reload the page and try again.",
    )
}

async fn logout_page(
    portal: &Portal,
    req: &Request<Incoming>,
) -> Result<Response<Body>, HttpError> {
    let q = query(req);
    let rd = q
        .get("rd")
        .and_then(|rd| portal.urls.check_redirect(rd))
        .unwrap_or_else(|| "/".into());
    let cookie = portal_cookie(req)?;
    let user = match &cookie {
        Some(c) => portal.sessions.user(c).await.map(|u| (c, u)),
        None => None,
    };
    match user {
        Some((c, user)) => Ok(portal.page(
            StatusCode::OK,
            pages::logout_confirm(&portal.csrf_token(c), &rd, &user.name),
        )),
        None => Ok(portal.page(StatusCode::OK, pages::signed_out(Some(&rd)))),
    }
}

/// POST /logout: end the session on every site at once and clear the portal cookie. After
/// a visit from a shared computer (roaming), also ask the browser to drop every cookie,
/// cache and storage of the sites (`Clear-Site-Data`), so the visit leaves nothing behind.
async fn logout_submit(
    portal: &Portal,
    req: Request<Incoming>,
) -> Result<Response<Body>, HttpError> {
    let cookie = portal_cookie(&req)?;
    let (_, form) = read_form(req).await?;
    if !portal.csrf_ok(cookie.as_ref(), &form) {
        return Ok(form_expired());
    }
    let roaming = match &cookie {
        Some(c) => portal.sessions.is_roaming(c).await,
        None => false,
    };
    if let Some(c) = &cookie {
        if let Some(user) = portal.sessions.user(c).await {
            tracing::info!(user = %user.name, roaming, "signed out everywhere");
        }
        if let Err(e) = portal.sessions.end(c).await {
            // Not signed out anywhere: an error page, never "signed out".
            return Err(HttpError::Internal(Box::new(e)));
        }
        // Written through before the answer, not behind: a sign-out must never come back
        // with a crash in the next second.
        portal.save_sessions().await;
    }
    let rd = form.get("rd").and_then(|rd| portal.urls.check_redirect(rd));
    let mut res = portal.page(StatusCode::OK, pages::signed_out(rd.as_deref()));
    res.headers_mut()
        .append(SET_COOKIE, cookies::clear(cookies::PORTAL));
    if roaming {
        res.headers_mut().insert(
            "clear-site-data",
            http::HeaderValue::from_static("\"cache\", \"cookies\", \"storage\""),
        );
    }
    Ok(res)
}

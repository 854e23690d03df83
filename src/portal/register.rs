//! Self-registration (SPEC §6): `/register` on sites with `registration = true`.
//!
//! A new user gives an e-mail address; it becomes their user name, with a fresh account and
//! a temporary password sent by mail. The answer page is the same whether or not the
//! address was already registered (no account enumeration): a known address gets a notice
//! mail instead of a new account. Concurrent registrations of one address make one account
//! (the store's transaction and the primary key on the user name).

use std::net::SocketAddr;

use http::header::SET_COOKIE;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use zeroize::Zeroizing;

use super::handlers::{cookie_or_fresh, form_expired, portal_cookie, query, read_form};
use super::mail::{self, Message};
use super::pages::{self, Handoff};
use super::{Portal, unix_now};
use crate::config::Level;
use crate::http::body::Body;
use crate::http::error::HttpError;
use crate::http::page;
use crate::store::NewUser;

/// The level of a self-registered user on the sites open to registration: enough for their
/// default `min_level`. Elsewhere they have level 0 (see [`Portal::registration_levels`]).
/// Administrators raise it with `gatehouse user level` where needed.
const REGISTERED_LEVEL: Level = Level(1);

/// Characters of temporary passwords: 32 symbols (so a random byte maps without bias),
/// without the look-alikes 0/O and 1/I.
const ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
/// 16 symbols of 5 bits: 80 bits from the CSPRNG.
const TEMPORARY_LEN: usize = 16;

/// A fresh temporary password.
fn temporary_password() -> Zeroizing<String> {
    let bytes = Zeroizing::new(crate::crypto::random_bytes::<TEMPORARY_LEN>());
    Zeroizing::new(
        bytes
            .iter()
            .map(|b| ALPHABET[usize::from(b % 32)] as char)
            .collect(),
    )
}

/// Refused when the visit does not come from a site open to registration.
fn closed() -> Response<Body> {
    page::message(
        StatusCode::NOT_FOUND,
        "Registration closed",
        "New users cannot register here. Ask the people who run the site you came from.",
    )
}

/// GET /register: the form, reached from a site's sign-in page.
pub(super) fn form(portal: &Portal, req: &Request<Incoming>) -> Result<Response<Body>, HttpError> {
    let handoff = portal.handoff_from(&query(req));
    if !portal.registration_open(handoff.as_ref()) {
        return Ok(closed());
    }
    let (cookie_hash, set_cookie) = cookie_or_fresh(portal_cookie(req)?);
    let look = portal.look_for(handoff.as_ref().map(|h| h.site.as_str()));
    let html = pages::register(
        &look,
        &portal.csrf_token(&cookie_hash),
        handoff.as_ref(),
        None,
        "",
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

/// POST /register: create the user with a temporary password and mail it, or mail the
/// existing user a notice; answer the same either way.
pub(super) async fn submit(
    portal: &Portal,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Body>, HttpError> {
    let cookie = portal_cookie(&req)?;
    let (_, form) = read_form(req).await?;
    let Some(cookie_hash) = cookie.filter(|_| portal.csrf_ok(cookie.as_ref(), &form)) else {
        return Ok(form_expired());
    };
    let handoff = portal.handoff_from(&form);
    if !portal.registration_open(handoff.as_ref()) {
        return Ok(closed());
    }
    let look = portal.look_for(handoff.as_ref().map(|h| h.site.as_str()));
    let typed = form.get("email").map_or("", |e| e.trim());
    // Addresses are compared without case: one mailbox, one account.
    let email = typed.to_ascii_lowercase();
    if !mail::is_address(&email) {
        tracing::debug!(peer = %peer.ip(), "registration refused: not one e-mail address");
        let shown: String = typed
            .chars()
            .filter(|c| !c.is_control())
            .take(mail::MAX_ADDRESS_BYTES)
            .collect();
        let html = pages::register(
            &look,
            &portal.csrf_token(&cookie_hash),
            handoff.as_ref(),
            Some("Enter one e-mail address, like name@example.org."),
            &shown,
        );
        return Ok(portal.branded_page(
            handoff.as_ref().map(|h| h.site.as_str()),
            StatusCode::BAD_REQUEST,
            html,
        ));
    }

    if !portal.registration_limit.allow(&email, peer.ip()) {
        tracing::info!(peer = %peer.ip(), user = %email, "registration refused: too many requests for this address or from this client");
        let mut res = page::message(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests",
            "Too many registration requests for this address or from your network. Please try again in an hour.",
        );
        res.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from(super::register_limit::WINDOW.as_secs()),
        );
        return Ok(res);
    }

    // Hashed whether or not the address is known, so the answer takes as long either way.
    let temporary = temporary_password();
    let hash = portal
        .verifier
        .hash(temporary.clone())
        .await
        .ok_or_else(|| HttpError::Internal("cannot hash a temporary password".into()))?;
    let until = unix_now() + portal.temporary_password_ttl.as_secs() as i64;
    let user = NewUser {
        name: email.clone(),
        password_hash: hash,
        level: Level(0),
        site_levels: portal.registration_levels(REGISTERED_LEVEL),
        idle_timeout: None,
        disabled: false,
    };
    let created = portal
        .store_call(move |s| s.register_user(&user, until))
        .await
        .map_err(|e| HttpError::Internal(Box::new(e)))?;
    let site = handoff.as_ref().map_or("", |h| h.site.as_str());
    let message = if created {
        tracing::info!(peer = %peer.ip(), user = %email, site = %site, "user registered");
        welcome(portal, &email, &temporary, handoff.as_ref())
    } else {
        tracing::info!(peer = %peer.ip(), user = %email, site = %site, "registration of a known address; notice sent");
        notice(portal, &email, handoff.as_ref())
    };
    drop(temporary);
    if let Err(e) = send(portal, message).await {
        tracing::error!(user = %email, error = %crate::http::error::error_chain(&*e), "cannot send a registration mail");
        if created {
            // Nobody could ever learn this password: take the account back, so the
            // address can register again once mail works.
            let name = email.clone();
            if let Err(e) = portal.store_call(move |s| s.remove_user(&name)).await {
                tracing::error!(user = %email, error = %crate::http::error::error_chain(&e), "cannot undo a registration whose mail failed");
            }
        }
        return Ok(page::message(
            StatusCode::SERVICE_UNAVAILABLE,
            "Cannot send mail",
            "We could not send you mail just now. Please try again later.",
        ));
    }
    let login = login_url(handoff.as_ref());
    let html = pages::registered(&look, &email, &login);
    Ok(portal.branded_page(
        handoff.as_ref().map(|h| h.site.as_str()),
        StatusCode::OK,
        html,
    ))
}

async fn send(
    portal: &Portal,
    message: Message,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mailer = portal.mailer.clone();
    tokio::task::spawn_blocking(move || mailer.send(&message)).await??;
    Ok(())
}

/// The sign-in page for this hand-off (relative: the portal's own path).
fn login_url(handoff: Option<&Handoff>) -> String {
    match handoff {
        Some(h) => format!(
            "/login?{}",
            form_urlencoded::Serializer::new(String::new())
                .append_pair("site", &h.site)
                .append_pair("h", &h.h)
                .append_pair("rd", &h.rd)
                .finish()
        ),
        None => "/login".into(),
    }
}

fn welcome(portal: &Portal, email: &str, temporary: &str, handoff: Option<&Handoff>) -> Message {
    let hours = portal.temporary_password_ttl.as_secs().div_ceil(3600);
    let site = handoff.map_or(String::new(), |h| {
        format!(" (from the site \"{}\")", h.site)
    });
    Message {
        to: email.to_string(),
        subject: "Your temporary password".into(),
        body: format!(
            "Hello,\n\nsomeone, hopefully you, registered this address{site}.\n\n\
User name:          {email}\nTemporary password: {temporary}\n\n\
Sign in at {origin}/login within {hours} hours; you will then choose your own password.\n\
The temporary password works for that once.\n\n\
If you did not ask for this, ignore this message.\n",
            origin = portal.urls.portal_origin(),
        ),
    }
}

fn notice(portal: &Portal, email: &str, handoff: Option<&Handoff>) -> Message {
    let site = handoff.map_or(String::new(), |h| {
        format!(" (from the site \"{}\")", h.site)
    });
    Message {
        to: email.to_string(),
        subject: "You are already registered".into(),
        body: format!(
            "Hello,\n\nsomeone, hopefully you, asked to register this address again{site}.\n\
It already has an account, so nothing was changed.\n\n\
Sign in at {origin}/login with your user name {email} and your password.\n\
If you did not ask for this, ignore this message.\n",
            origin = portal.urls.portal_origin(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Temporary passwords are 16 symbols of the alphabet and differ each time.
    #[test]
    fn temporary_passwords() {
        let a = temporary_password();
        let b = temporary_password();
        assert_eq!(a.len(), TEMPORARY_LEN);
        assert!(a.bytes().all(|c| ALPHABET.contains(&c)));
        assert_ne!(*a, *b);
    }
}

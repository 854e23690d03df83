//! The account page (SPEC §6), the portal's `/`: who you are, your sites, your devices,
//! your active sessions ("sign out this session") and your own idle timeout.
//!
//! GET `/` shows it; POST `/` carries one `action`: `idle_timeout` (field `idle_timeout`,
//! in minutes), `end_session` (field `session`, an opaque reference to one of your
//! sessions) or `forget_device` (field `device`, see [`devices`]). Every post needs the
//! CSRF token bound to the portal cookie and must not come from another origin; it answers
//! with a redirect back to the page (post/redirect/get), carrying only a fixed notice name.

mod devices;
mod view;

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::SET_COOKIE;
use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::handlers::{form_expired, portal_cookie, query, read_form};
use super::{Portal, pages};
use crate::crypto::{IdHash, ct_eq};
use crate::http::body::Body;
use crate::http::cookies;
use crate::http::error::HttpError;
use crate::http::page;
use crate::store::UserRecord;
use view::{AccountView, IdleView, SessionRow, SiteRow};

/// What the portal lets users choose as their own idle timeout (SPEC §6).
#[derive(Debug, Clone, Copy)]
pub struct OwnIdle {
    /// `portal.idle_timeout`: what a user who chose nothing gets.
    pub default: Duration,
    /// `portal.max_idle_timeout`: the SYSTEM TIMEOUT, the longest choice.
    pub max: Duration,
    /// `portal.allow_no_idle_limit`: may 0 (no idle limit) be chosen?
    pub allow_none: bool,
}

/// The shortest idle timeout a user may choose (SPEC §6: "from 1 minute").
const MIN_OWN_IDLE: Duration = Duration::from_secs(60);

impl OwnIdle {
    /// The idle timeout typed in the form, in whole minutes: between 1 minute and the
    /// maximum, or 0 (no idle limit) where allowed. The error is the sentence shown.
    pub fn parse(&self, minutes: &str) -> Result<Duration, String> {
        let refused = || {
            let max = self.max.as_secs() / 60;
            if self.allow_none {
                format!("Choose a whole number of minutes from 1 to {max}, or 0 for no idle limit.")
            } else {
                format!("Choose a whole number of minutes from 1 to {max}.")
            }
        };
        let typed = minutes.trim();
        if typed.is_empty() || typed.len() > 9 || !typed.bytes().all(|b| b.is_ascii_digit()) {
            return Err(refused());
        }
        let minutes: u64 = typed.parse().map_err(|_| refused())?;
        let chosen = Duration::from_secs(minutes * 60);
        match chosen {
            d if d.is_zero() && self.allow_none => Ok(d),
            d if d >= MIN_OWN_IDLE && d <= self.max => Ok(d),
            _ => Err(refused()),
        }
    }
}

/// Does this post come from another origin? Browsers say so in `Sec-Fetch-Site` and
/// `Origin`; either one naming anything but the portal itself refuses the post (the CSRF
/// token is the main defence; this one holds even if a token leaked). `Origin: null` says
/// nothing: our pages' `Referrer-Policy: no-referrer` makes browsers send it on their own
/// same-origin posts (`Sec-Fetch-Site` still tells). Clients that send neither header
/// (old browsers, scripts) rely on the token alone.
fn cross_origin(headers: &HeaderMap, portal_origin: &str) -> bool {
    let fetch_site = headers
        .get("sec-fetch-site")
        .is_some_and(|v| !matches!(v.as_bytes(), b"same-origin" | b"none"));
    let origin = headers
        .get(http::header::ORIGIN)
        .is_some_and(|v| v.as_bytes() != b"null" && v.as_bytes() != portal_origin.as_bytes());
    fetch_site || origin
}

/// The notice shown after a post, by the fixed name the redirect carries.
fn notice(name: Option<&str>) -> Option<&'static str> {
    match name? {
        "idle_timeout" => {
            Some("Your idle timeout is saved. Every site applies it at its next sync.")
        }
        "session" => Some("That session is signed out, on every site."),
        "device" => Some("That device is forgotten."),
        _ => None,
    }
}

/// Wall-clock Unix time of an instant in the past (the session table keeps instants).
fn unix_at(t: Instant, now: Instant, wall: SystemTime) -> i64 {
    let ago = now.saturating_duration_since(t);
    wall.checked_sub(ago)
        .and_then(|w| w.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64)
}

impl Portal {
    /// An opaque name for one session in the page's forms: a MAC of its key, so the page
    /// never shows a session key and a reference is good for this portal only.
    fn session_ref(&self, id: &IdHash) -> String {
        URL_SAFE_NO_PAD.encode(self.csrf_key.mac(&[b"session-ref", &id.0]))
    }
}

/// GET /: the account page of the signed-in user; others go to the sign-in form.
pub(super) async fn show(
    portal: &Portal,
    req: &Request<Incoming>,
) -> Result<Response<Body>, HttpError> {
    let Some((cookie, user)) = signed_in(portal, portal_cookie(req)?).await else {
        return Ok(page::redirect(StatusCode::FOUND, "/login"));
    };
    let saved = notice(query(req).get("saved").map(String::as_str));
    render(portal, &cookie, &user, saved, None).await
}

/// The page for `user`, with a notice after a post, or the idle timeout form's error
/// (then answered with 400).
async fn render(
    portal: &Portal,
    cookie: &IdHash,
    user: &UserRecord,
    notice: Option<&'static str>,
    error: Option<&str>,
) -> Result<Response<Body>, HttpError> {
    let account = user.account.clone();
    let reached = portal
        .store_call(move |s| s.account_sites(&account))
        .await
        .map_err(|e| HttpError::Internal(Box::new(e)))?;
    let devices = devices::load(portal, &user.account).await?;
    let csrf = portal.csrf_token(cookie);
    let view = AccountView {
        user,
        csrf: &csrf,
        sites: site_rows(portal, user, &reached),
        sessions: session_rows(portal, user, cookie).await,
        devices: devices::section(&devices, &csrf),
        idle: IdleView {
            current: user.idle_timeout.unwrap_or(portal.own_idle.default),
            chosen: user.idle_timeout.is_some(),
            own: portal.own_idle,
        },
        notice,
        error,
    };
    let status = match error {
        Some(_) => StatusCode::BAD_REQUEST,
        None => StatusCode::OK,
    };
    Ok(portal.page(status, view::render(&view)))
}

async fn signed_in(
    portal: &Portal,
    cookie: Option<IdHash>,
) -> Option<(IdHash, std::sync::Arc<UserRecord>)> {
    let c = cookie?;
    let user = portal.sessions.user(&c).await?;
    Some((c, user))
}

/// Every configured site with the user's level there and the account's first access;
/// then sites the account reached that are no longer configured.
fn site_rows(portal: &Portal, user: &UserRecord, reached: &[(String, i64)]) -> Vec<SiteRow> {
    let first = |id: &str| reached.iter().find(|(s, _)| s == id).map(|(_, t)| *t);
    let view = portal.view.load();
    let mut rows: Vec<SiteRow> = view
        .sites
        .iter()
        .map(|s| SiteRow {
            id: s.id.0.clone(),
            origin: Some(s.origin.clone()),
            level: Some(user.level_on(&s.id.0).0),
            first_access: first(&s.id.0),
        })
        .collect();
    for (id, at) in reached {
        if !view.sites.iter().any(|s| s.id.0 == *id) {
            rows.push(SiteRow {
                id: id.clone(),
                origin: None,
                level: None,
                first_access: Some(*at),
            });
        }
    }
    rows
}

async fn session_rows(portal: &Portal, user: &UserRecord, current: &IdHash) -> Vec<SessionRow> {
    let listed = portal.sessions.sessions_of(&user.name).await;
    let (now, wall) = (Instant::now(), SystemTime::now());
    listed
        .into_iter()
        .map(|s| SessionRow {
            reference: portal.session_ref(&s.id),
            started: unix_at(s.started, now, wall),
            last_active: unix_at(s.last_active, now, wall),
            sites: s.sites.into_iter().map(|id| id.0).collect(),
            current: s.id == *current,
            basic: s.basic,
        })
        .collect()
}

/// POST /: one change to the account, then back to the page.
pub(super) async fn submit(
    portal: &Portal,
    req: Request<Incoming>,
) -> Result<Response<Body>, HttpError> {
    if cross_origin(req.headers(), &portal.urls.portal_origin()) {
        tracing::debug!("account form posted from another origin; refused");
        return Ok(form_expired());
    }
    let cookie = portal_cookie(&req)?;
    let (_, form) = read_form(req).await?;
    if !portal.csrf_ok(cookie.as_ref(), &form) {
        return Ok(form_expired());
    }
    let Some((cookie, user)) = signed_in(portal, cookie).await else {
        return Ok(page::redirect(StatusCode::SEE_OTHER, "/login"));
    };
    match form.get("action").map(String::as_str) {
        Some("idle_timeout") => set_idle_timeout(portal, &cookie, &user, &form).await,
        Some("end_session") => {
            let res = end_session(portal, &cookie, &user, &form).await?;
            // Written through, like a sign-out (see `handlers::logout_submit`).
            portal.save_sessions().await;
            Ok(res)
        }
        Some("forget_device") => devices::forget(portal, &user, &form).await,
        _ => Err(HttpError::BadRequest("unknown account action")),
    }
}

/// Store the user's own idle timeout and apply it at once to their portal sessions; the
/// gates' entries follow at their next sync (see `SessionTable::user_changed`).
async fn set_idle_timeout(
    portal: &Portal,
    cookie: &IdHash,
    user: &UserRecord,
    form: &HashMap<String, String>,
) -> Result<Response<Body>, HttpError> {
    let typed = form.get("idle_timeout").map_or("", String::as_str);
    let chosen = match portal.own_idle.parse(typed) {
        Ok(d) => d,
        Err(error) => return render(portal, cookie, user, None, Some(&error)).await,
    };
    let name = user.name.clone();
    let stored = portal
        .store_call(move |s| {
            if !s.set_idle_timeout(&name, Some(chosen))? {
                return Ok(None);
            }
            s.user(&name)
        })
        .await
        .map_err(|e| HttpError::Internal(Box::new(e)))?;
    if stored.is_none() {
        // Removed meanwhile: the store poll ends the session.
        return Ok(page::redirect(StatusCode::SEE_OTHER, "/login"));
    }
    tracing::info!(user = %user.name, idle_timeout_secs = chosen.as_secs(), "own idle timeout chosen");
    // On a store failure the revision poll applies it (see `Sessions::user_changed`).
    portal.sessions.user_changed(&user.name, stored).await;
    Ok(page::redirect(
        StatusCode::SEE_OTHER,
        "/?saved=idle_timeout",
    ))
}

/// "Sign out this session": end one of the user's sessions on every site. Ending the one
/// this browser uses is signing out here: the portal cookie is cleared too.
async fn end_session(
    portal: &Portal,
    cookie: &IdHash,
    user: &UserRecord,
    form: &HashMap<String, String>,
) -> Result<Response<Body>, HttpError> {
    let wanted = form.get("session").map_or("", String::as_str);
    let target = portal
        .sessions
        .sessions_of(&user.name)
        .await
        .into_iter()
        .map(|s| s.id)
        .find(|id| ct_eq(portal.session_ref(id).as_bytes(), wanted.as_bytes()));
    let Some(id) = target else {
        // Ended meanwhile (or never one of theirs): nothing to do.
        return Ok(page::redirect(StatusCode::SEE_OTHER, "/?saved=session"));
    };
    portal
        .sessions
        .end_session_of(&user.name, &id)
        .await
        .map_err(|e| HttpError::Internal(Box::new(e)))?;
    if id == *cookie {
        tracing::info!(user = %user.name, "signed out everywhere (from the account page)");
        let mut res = portal.page(StatusCode::OK, pages::signed_out(None));
        res.headers_mut()
            .append(SET_COOKIE, cookies::clear(cookies::PORTAL));
        return Ok(res);
    }
    tracing::info!(user = %user.name, "one session signed out from the account page");
    Ok(page::redirect(StatusCode::SEE_OTHER, "/?saved=session"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own(max_secs: u64, allow_none: bool) -> OwnIdle {
        OwnIdle {
            default: Duration::from_secs(900),
            max: Duration::from_secs(max_secs),
            allow_none,
        }
    }

    /// From 1 minute to the maximum, whole minutes; 0 only where no idle limit is allowed.
    #[test]
    fn own_idle_timeout_range() {
        let o = own(1800, false);
        assert_eq!(o.parse("1"), Ok(Duration::from_secs(60)));
        assert_eq!(o.parse(" 30 "), Ok(Duration::from_secs(1800)));
        for bad in [
            "0",
            "31",
            "",
            "-1",
            "1.5",
            "1m",
            "+5",
            "99999999999999999999",
            "٣",
        ] {
            assert!(o.parse(bad).is_err(), "{bad:?} accepted");
        }
        let o = own(1800, true);
        assert_eq!(o.parse("0"), Ok(Duration::ZERO));
        assert!(o.parse("0").is_ok() && o.parse("31").is_err());
        assert!(
            own(59, false).parse("1").is_err(),
            "a maximum under a minute leaves nothing"
        );
        assert!(own(1800, true).parse("31").unwrap_err().contains("or 0"));
    }

    /// Posts from another origin are refused; same-origin, direct and header-less pass.
    #[test]
    fn cross_origin_posts() {
        let portal = "https://auth.localhost:8443";
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, http::HeaderValue::from_static(v));
            }
            m
        };
        assert!(!cross_origin(&h(&[]), portal));
        assert!(!cross_origin(
            &h(&[
                ("sec-fetch-site", "same-origin"),
                ("origin", "https://auth.localhost:8443")
            ]),
            portal
        ));
        assert!(!cross_origin(&h(&[("sec-fetch-site", "none")]), portal));
        assert!(cross_origin(&h(&[("sec-fetch-site", "same-site")]), portal));
        assert!(cross_origin(
            &h(&[("sec-fetch-site", "cross-site")]),
            portal
        ));
        assert!(cross_origin(
            &h(&[("origin", "https://app.localhost:8443")]),
            portal
        ));
        assert!(!cross_origin(&h(&[("origin", "null")]), portal));
        assert!(!cross_origin(
            &h(&[("origin", "null"), ("sec-fetch-site", "same-origin")]),
            portal
        ));
        assert!(cross_origin(
            &h(&[("origin", "null"), ("sec-fetch-site", "cross-site")]),
            portal
        ));
    }

    /// Instants in the past become the wall-clock second they happened at.
    #[test]
    fn instants_to_unix_times() {
        let now = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(unix_at(now, now, wall), 1_000_000);
        assert_eq!(unix_at(now - Duration::from_secs(90), now, wall), 999_910);
    }
}

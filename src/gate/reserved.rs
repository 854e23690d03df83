//! Reserved paths on every site, under `/.gatehouse/`: `callback` (end of the hand-off),
//! `logout` (sign-out everywhere, via the portal), `signed-out` (back from it), `whoami`,
//! and the pages' stylesheet.

use http::header::{CONTENT_TYPE, HeaderValue, SET_COOKIE};
use http::{Method, Response, StatusCode};

use super::{Gate, Routed, SiteRuntime, site_cookie};
use crate::crypto::IdHash;
use crate::http::body::Body;
use crate::http::cookies;
use crate::http::error::HttpError;
use crate::http::page;

pub(super) async fn handle(
    gate: &Gate,
    site: &SiteRuntime,
    rest: &str,
    incoming: &Routed,
) -> Result<Response<Body>, HttpError> {
    let req = &incoming.req;
    let method = req.method();
    if method != Method::GET && method != Method::HEAD {
        return Err(HttpError::MethodNotAllowed);
    }
    match rest {
        "callback" => callback(gate, site, incoming).await,
        "logout" => {
            // Back from the portal's sign-out page through `signed-out` (below).
            let rd = format!(
                "{}/.gatehouse/signed-out",
                gate.urls.origin(&site.config.host)
            );
            let query = form_urlencoded::Serializer::new(String::new())
                .append_pair("rd", &rd)
                .finish();
            Ok(page::redirect(
                StatusCode::FOUND,
                &format!("{}/logout?{query}", gate.urls.portal_origin()),
            ))
        }
        // The portal's sign-out page links back here. The sign-out reaches this gate's table
        // at once on a single node, but an edge learns it only at its next sync: forget this
        // browser here now, so the site does not seem to have kept it. (Reached some other
        // way, it costs the browser one hand-off, never an admission.)
        "signed-out" => {
            if let Ok(Some(key)) = site_cookie(req) {
                gate.table.remove(&key);
            }
            let mut res = page::redirect(StatusCode::FOUND, "/");
            res.headers_mut()
                .append(SET_COOKIE, cookies::clear(cookies::SITE));
            Ok(res)
        }
        "whoami" => whoami(gate, site, incoming).await,
        "style.css" => Ok(stylesheet()),
        _ => Err(HttpError::NotFound),
    }
}

pub fn stylesheet() -> Response<Body> {
    let mut res = Response::new(Body::from(page::STYLESHEET));
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    res.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    res.headers_mut().insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}

/// SPEC §3 step 3: redeem the code for this browser's site cookie, admit, go on.
async fn callback(
    gate: &Gate,
    site: &SiteRuntime,
    incoming: &Routed,
) -> Result<Response<Body>, HttpError> {
    let mut code = None;
    let mut rd = None;
    for (k, v) in form_urlencoded::parse(incoming.req.uri().query().unwrap_or("").as_bytes()) {
        match &*k {
            "code" if code.is_none() => code = Some(v.into_owned()),
            "rd" if rd.is_none() => rd = Some(v.into_owned()),
            _ => {}
        }
    }
    let target = rd
        .and_then(|rd| gate.urls.check_redirect(&rd))
        .unwrap_or_else(|| "/".to_string());
    let cookie = site_cookie(&incoming.req)?;
    // A code is consumed by any attempt, even one without a site cookie: a code that
    // reached the wrong browser must be dead before anyone else can try it.
    let admission = match code {
        Some(code) if code.len() <= 64 => {
            let bound_to = cookie.unwrap_or(IdHash([0; 32]));
            let redeemed = gate
                .central
                .redeem(&code, bound_to, &site.config.id)
                .await
                .map_err(HttpError::PortalDown)?;
            redeemed.filter(|_| cookie.is_some()).map(|a| (bound_to, a))
        }
        _ => None,
    };
    let Some((cookie, admission)) = admission else {
        gate.metrics.signin("callback_refused");
        tracing::info!(site = %site.config.id, "hand-off code refused (expired, replayed, or for another browser or site)");
        let main = format!(
            "<p>This sign-in link is no longer valid: it was already used, has expired, or was meant for another browser.</p>\
             <p><a href=\"{}\">Try again</a></p>",
            page::escape(&target)
        );
        return Ok(page::html(
            StatusCode::FORBIDDEN,
            page::document(
                "Sign-in link not valid",
                &main,
                &Default::default(),
                page::STYLESHEET_PATH,
            ),
            &page::default_csp(),
        ));
    };
    if gate.admit(site, cookie, &admission).is_none() {
        if super::lacks_site_password(&site.config, &admission) {
            // The user may use this derived site since the code was minted, but their
            // session has no site password for it: going on to the target starts the
            // hand-off again, and the portal asks for the password.
            return Ok(page::redirect(StatusCode::FOUND, &target));
        }
        return Err(HttpError::Forbidden);
    }
    gate.metrics.signin("handoff");
    tracing::info!(site = %site.config.id, user = %admission.user, "browser admitted");
    Ok(page::redirect(StatusCode::FOUND, &target))
}

async fn whoami(
    gate: &Gate,
    site: &SiteRuntime,
    incoming: &Routed,
) -> Result<Response<Body>, HttpError> {
    let Some(entry) = gate
        .identify(site, &incoming.req, incoming.peer.ip())
        .await?
    else {
        return Ok(page::json(
            StatusCode::UNAUTHORIZED,
            &serde_json::json!({ "error": "not signed in" }),
        ));
    };
    Ok(page::json(
        StatusCode::OK,
        &serde_json::json!({
            "user": entry.user(),
            "level": entry.level.0,
            "account": entry.account(),
            "site": site.config.id.0,
        }),
    ))
}

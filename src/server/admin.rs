//! The admin listener (plain HTTP, keep it on loopback or a private network): `/healthz`
//! (the process answers), `/readyz` (the portal is reachable), `/metrics` (Prometheus),
//! `/report` (usage per account across all sites, SPEC §6; the same report as
//! `gatehouse report`, and only here: never on the public listeners).

use std::sync::Arc;

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use super::App;
use crate::http::body::Body;
use crate::portal::usage::Query;

const TEXT: &str = "text/plain; charset=utf-8";

pub async fn handle<B>(app: &Arc<App>, req: &Request<B>) -> Response<Body> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/healthz") => (StatusCode::OK, TEXT, "ok\n".to_string()),
        (&Method::GET | &Method::HEAD, "/readyz") if app.gate.metrics.is_ready() => {
            (StatusCode::OK, TEXT, "ready\n".to_string())
        }
        (&Method::GET | &Method::HEAD, "/readyz") => (
            StatusCode::SERVICE_UNAVAILABLE,
            TEXT,
            "not ready: the portal cannot be reached; admitting only users already in the table\n"
                .to_string(),
        ),
        (&Method::GET | &Method::HEAD, "/metrics") => {
            // Counting live entries walks the table (about 1 ms per 200 000): off the
            // event loop that serves requests.
            let table = app.gate.table.clone();
            let entries = tokio::task::spawn_blocking(move || table.len())
                .await
                .unwrap_or(0);
            let text = app
                .gate
                .metrics
                .render(entries, app.portal.as_ref().map(|p| p.sessions.len()));
            (
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                text,
            )
        }
        (&Method::GET | &Method::HEAD, "/report") => report(app, req.uri().query()).await,
        _ => (StatusCode::NOT_FOUND, TEXT, "not found\n".to_string()),
    };
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}

/// `/report?account=&from=YYYY-MM-DD&to=YYYY-MM-DD&format=csv|json`: 400 on a bad
/// parameter, 404 for an unknown account, 500 (details only in the log) if the store fails.
async fn report(app: &App, query: Option<&str>) -> (StatusCode, &'static str, String) {
    let q = match Query::from_url(query) {
        Ok(q) => q,
        Err(e) => return (StatusCode::BAD_REQUEST, TEXT, format!("bad request: {e}\n")),
    };
    let run = q.clone();
    let Some(portal) = &app.portal else {
        return (
            StatusCode::NOT_FOUND,
            TEXT,
            "this is an edge; usage reports are served by the portal's admin listener\n"
                .to_string(),
        );
    };
    match portal.store_call(move |s| run.run(s)).await {
        Ok(accounts) if accounts.is_empty() && q.account.is_some() => {
            (StatusCode::NOT_FOUND, TEXT, "no such account\n".to_string())
        }
        Ok(accounts) => {
            let (text, media) = q.render(&accounts);
            (StatusCode::OK, media, text)
        }
        Err(e) => {
            tracing::error!(error = %crate::http::error::error_chain(&e), "usage report failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                TEXT,
                "the report failed; see the log\n".to_string(),
            )
        }
    }
}

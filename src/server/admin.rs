//! The admin listener (plain HTTP, keep it on loopback or a private network): `/healthz`
//! (the process answers), `/readyz` (the portal is reachable), `/metrics` (Prometheus).

use std::sync::Arc;

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use super::App;
use crate::http::body::Body;

pub fn handle<B>(app: &Arc<App>, req: &Request<B>) -> Response<Body> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/healthz") => (
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "ok\n".to_string(),
        ),
        (&Method::GET | &Method::HEAD, "/readyz") if app.gate.metrics.is_ready() => (
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "ready\n".to_string(),
        ),
        (&Method::GET | &Method::HEAD, "/readyz") => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            "not ready: the portal cannot be reached; admitting only users already in the table\n"
                .to_string(),
        ),
        (&Method::GET | &Method::HEAD, "/metrics") => {
            app.gate.table.run_pending_tasks();
            let text = app
                .gate
                .metrics
                .render(app.gate.table.len(), app.portal.sessions.len());
            (
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                text,
            )
        }
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found\n".to_string(),
        ),
    };
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}

//! Every page and short answer the gateway itself makes, with the security headers applied
//! in this one place (HSTS, nosniff, frame-deny, no-store, CSP, referrer policy).

use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};

use super::body::Body;

/// Security headers for everything we answer ourselves. `csp` differs between the portal
/// (forms that post to itself and redirect to sites) and plain error pages.
pub fn secure(headers: &mut HeaderMap, csp: &HeaderValue) {
    headers.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CONTENT_SECURITY_POLICY, csp.clone());
}

/// CSP of pages that carry no forms: nothing but our own inline-free styles.
pub fn default_csp() -> HeaderValue {
    HeaderValue::from_static(
        "default-src 'none'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    )
}

/// HTML-escape text for element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(ch),
        }
    }
    out
}

/// Look and feel of a page: title and optional branding.
#[derive(Debug, Clone, Default)]
pub struct Look {
    pub title: Option<String>,
    pub logo: Option<String>,
    pub stylesheet: Option<String>,
}

/// A whole HTML document around `main` (already escaped HTML).
pub fn document(heading: &str, main: &str, look: &Look, stylesheet_href: &str) -> String {
    let brand = look.title.as_deref().unwrap_or("gatehouse");
    let logo = look
        .logo
        .as_deref()
        .map(|l| format!("<img class=\"logo\" src=\"{}\" alt=\"\">", escape(l)))
        .unwrap_or_default();
    let extra_css = look
        .stylesheet
        .as_deref()
        .map(|s| format!("<link rel=\"stylesheet\" href=\"{}\">", escape(s)))
        .unwrap_or_default();
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{heading} · {brand}</title><link rel=\"stylesheet\" href=\"{css}\">{extra_css}</head>\
<body><header>{logo}<span class=\"brand\">{brand}</span></header><main><h1>{heading}</h1>\n{main}\n</main></body></html>\n",
        heading = escape(heading),
        brand = escape(brand),
        css = escape(stylesheet_href),
    )
}

/// A short HTML page with a status, the security headers and no-store.
pub fn html(status: StatusCode, body: String, csp: &HeaderValue) -> Response<Body> {
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure(res.headers_mut(), csp);
    res
}

/// A plain message page (errors, notices) in the default look.
pub fn message(status: StatusCode, heading: &str, text: &str) -> Response<Body> {
    let main = format!("<p>{}</p>", escape(text));
    html(
        status,
        document(heading, &main, &Look::default(), STYLESHEET_PATH),
        &default_csp(),
    )
}

/// JSON answer with the security headers.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut res = Response::new(Body::from(value.to_string()));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    secure(res.headers_mut(), &default_csp());
    res
}

/// A 302/303 redirect. `location` must already be a checked target (see `http::redirect`).
pub fn redirect(status: StatusCode, location: &str) -> Response<Body> {
    let mut res = Response::new(Body::empty());
    *res.status_mut() = status;
    // A checked target never holds bytes invalid in a header; if one ever did, "/" is safe.
    let value = HeaderValue::from_str(location).unwrap_or(HeaderValue::from_static("/"));
    res.headers_mut().insert(header::LOCATION, value);
    secure(res.headers_mut(), &default_csp());
    res
}

/// Where the stylesheet is served, on every host (reserved path).
pub const STYLESHEET_PATH: &str = "/.gatehouse/style.css";

/// The stylesheet of every page: plain, readable, high-contrast, no external fonts.
pub const STYLESHEET: &str = r#"
:root { color-scheme: light dark; --fg:#1b1f24; --bg:#f6f7f9; --card:#fff; --accent:#1f5fbf; --muted:#5b6572; --bad:#b3261e; }
@media (prefers-color-scheme: dark) { :root { --fg:#e6e9ee; --bg:#14171b; --card:#1d2127; --accent:#7fb0ff; --muted:#a3acb9; --bad:#ff8a80; } }
* { box-sizing: border-box; }
body { margin:0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color:var(--fg); background:var(--bg); }
header { padding: .75rem 1.25rem; display:flex; align-items:center; gap:.6rem; font-weight:600; }
header .logo { height: 28px; }
main { max-width: 28rem; margin: 2rem auto; background: var(--card); padding: 1.5rem 1.75rem; border-radius: 10px; box-shadow: 0 1px 3px rgba(0,0,0,.12); }
h1 { font-size: 1.35rem; margin: 0 0 1rem; }
label { display:block; margin: .8rem 0 .25rem; font-weight: 600; }
input[type=text], input[type=password], input[type=email], input[type=number] { width:100%; padding:.55rem .6rem; font-size:1rem; border:1px solid var(--muted); border-radius:6px; background:var(--bg); color:var(--fg); }
input:focus, button:focus { outline: 3px solid var(--accent); outline-offset: 1px; }
.check { display:flex; gap:.5rem; align-items:center; font-weight: normal; }
button { margin-top: 1.1rem; padding: .6rem 1.1rem; font-size: 1rem; border:0; border-radius:6px; background: var(--accent); color:#fff; cursor:pointer; }
.error { color: var(--bad); font-weight:600; }
.muted { color: var(--muted); font-size: .9rem; }
dl { display:grid; grid-template-columns: max-content 1fr; gap: .3rem 1rem; }
dt { font-weight:600; }
h2 { font-size: 1.05rem; margin: 1.5rem 0 .5rem; }
.items { list-style: none; padding: 0; margin: 0; }
.items li { padding: .6rem 0; border-top: 1px solid rgba(127,127,127,.3); }
.items form button { margin-top: .4rem; padding: .35rem .8rem; font-size: .9rem; }
"#;

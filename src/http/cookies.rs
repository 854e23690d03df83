//! The gateway's cookies: names, reading them from requests, and `Set-Cookie` values.
//!
//! Every cookie is `Secure; HttpOnly; SameSite=Lax; Path=/`, host-only, `__Host-` prefixed.

use http::header::{COOKIE, HeaderMap, HeaderValue};

/// The site cookie: how a gate knows a browser.
pub const SITE: &str = "__Host-gatehouse";
/// The portal cookie: how the portal knows a browser.
pub const PORTAL: &str = "__Host-gatehouse-portal";

/// Every cookie name the gateway owns; none of them is forwarded to a backend.
pub fn is_ours(name: &str) -> bool {
    name.starts_with(SITE)
}

#[derive(Debug, PartialEq, Eq)]
pub enum Found<'a> {
    None,
    One(&'a str),
    /// The same cookie twice in one request: refused, since which one a server picks differs.
    Duplicate,
}

/// Find cookie `name` across every `Cookie` header of the request (HTTP/2 splits them).
pub fn find<'a>(headers: &'a HeaderMap, name: &str) -> Found<'a> {
    let mut found = Found::None;
    for value in headers.get_all(COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for pair in value.split(';') {
            let Some((n, v)) = pair.split_once('=') else {
                continue;
            };
            if n.trim() != name {
                continue;
            }
            if found != Found::None {
                return Found::Duplicate;
            }
            found = Found::One(v.trim().trim_matches('"'));
        }
    }
    found
}

/// Remove our cookies from the `Cookie` headers, keeping the application's own.
pub fn strip_ours(headers: &mut HeaderMap) {
    if !headers.contains_key(COOKIE) {
        return;
    }
    let mut kept: Vec<&str> = Vec::new();
    let values: Vec<HeaderValue> = headers.get_all(COOKIE).iter().cloned().collect();
    let mut any_ours = false;
    for value in &values {
        let Ok(value) = value.to_str() else { continue };
        for pair in value.split(';') {
            let name = pair.split_once('=').map_or(pair, |(n, _)| n).trim();
            if is_ours(name) {
                any_ours = true;
            } else if !pair.trim().is_empty() {
                kept.push(pair.trim());
            }
        }
    }
    if !any_ours {
        return;
    }
    headers.remove(COOKIE);
    if !kept.is_empty()
        && let Ok(v) = HeaderValue::from_str(&kept.join("; "))
    {
        headers.insert(COOKIE, v);
    }
}

/// `Set-Cookie` for a session cookie (no Max-Age: it ends with the browser session).
pub fn set(name: &str, value: &str) -> HeaderValue {
    let c = format!("{name}={value}; Secure; HttpOnly; SameSite=Lax; Path=/");
    HeaderValue::from_str(&c).unwrap_or(HeaderValue::from_static("invalid=1"))
}

/// `Set-Cookie` that removes a cookie.
pub fn clear(name: &str) -> HeaderValue {
    let c = format!("{name}=; Secure; HttpOnly; SameSite=Lax; Path=/; Max-Age=0");
    HeaderValue::from_str(&c).unwrap_or(HeaderValue::from_static("invalid=1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(COOKIE, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    /// A cookie is found across several Cookie headers; a second copy is a duplicate.
    #[test]
    fn find_cookie() {
        let h = headers(&["a=1; __Host-gatehouse=xyz", "b=2"]);
        assert_eq!(find(&h, SITE), Found::One("xyz"));
        assert_eq!(find(&h, "c"), Found::None);
        let h = headers(&["__Host-gatehouse=x", "__Host-gatehouse=y"]);
        assert_eq!(find(&h, SITE), Found::Duplicate);
    }

    /// Our cookies are removed; the application's stay, in order.
    #[test]
    fn strip_keeps_app_cookies() {
        let mut h = headers(&["a=1; __Host-gatehouse=x", "__Host-gatehouse-portal=p; b=2"]);
        strip_ours(&mut h);
        assert_eq!(
            h.get_all(COOKIE).iter().collect::<Vec<_>>(),
            vec!["a=1; b=2"]
        );
        let mut h = headers(&["__Host-gatehouse=x"]);
        strip_ours(&mut h);
        assert!(h.get(COOKIE).is_none());
    }

    /// Set-Cookie carries every required attribute.
    #[test]
    fn set_cookie_attributes() {
        let v = set(SITE, "abc");
        assert_eq!(
            v,
            "__Host-gatehouse=abc; Secure; HttpOnly; SameSite=Lax; Path=/"
        );
        assert!(clear(PORTAL).to_str().unwrap().contains("Max-Age=0"));
    }
}

//! The gateway's cookies: names, reading them from requests, and `Set-Cookie` values.
//!
//! Every cookie is `Secure; HttpOnly; SameSite=Lax; Path=/`, host-only, `__Host-` prefixed.

use http::header::{COOKIE, HeaderMap, HeaderValue};

/// The site cookie: how a gate knows a browser.
pub const SITE: &str = "__Host-gatehouse";
/// The portal cookie: how the portal knows a browser.
pub const PORTAL: &str = "__Host-gatehouse-portal";
/// The node cookie: how the portal knows a browser across sessions (SPEC §6, nodes). The
/// only lasting cookie; never set on a shared computer.
pub const NODE: &str = "__Host-gatehouse-node";

/// How long a node cookie lasts: 400 days, the most browsers keep a cookie (RFC 6265bis);
/// renewed at each sign-in.
pub const NODE_MAX_AGE_SECS: u64 = 400 * 24 * 60 * 60;

#[derive(Debug, PartialEq, Eq)]
pub enum Found<'a> {
    None,
    /// The value; empty when it was not valid UTF-8 (then it cannot be one of ours).
    One(&'a str),
    /// The same cookie twice in one request: refused, since which one a server picks differs.
    Duplicate,
}

/// The `name=value` crumbs of one `Cookie` field, as bytes: browsers send application
/// cookies with non-ASCII values, which must neither hide our cookie nor be lost.
fn crumbs(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|b| *b == b';')
        .map(<[u8]>::trim_ascii)
        .filter(|c| !c.is_empty())
}

fn split_crumb(crumb: &[u8]) -> (&[u8], &[u8]) {
    match crumb.iter().position(|b| *b == b'=') {
        Some(i) => (crumb[..i].trim_ascii(), crumb[i + 1..].trim_ascii()),
        None => (crumb, &[]),
    }
}

/// Find cookie `name` across every `Cookie` field of the request (HTTP/2 splits them).
pub fn find<'a>(headers: &'a HeaderMap, name: &str) -> Found<'a> {
    let mut all = headers.get_all(COOKIE).iter();
    // The usual case: one field holding only this cookie, `name=value`.
    if let (Some(only), None) = (all.next(), all.next())
        && let Some(value) = only
            .as_bytes()
            .strip_prefix(name.as_bytes())
            .and_then(|v| v.strip_prefix(b"="))
        && !value.contains(&b';')
    {
        let value = value.trim_ascii();
        let value = value
            .strip_prefix(b"\"")
            .and_then(|v| v.strip_suffix(b"\""))
            .unwrap_or(value);
        return Found::One(std::str::from_utf8(value).unwrap_or(""));
    }
    let mut found = Found::None;
    for value in headers.get_all(COOKIE) {
        for crumb in crumbs(value.as_bytes()) {
            let (n, v) = split_crumb(crumb);
            if n != name.as_bytes() {
                continue;
            }
            if found != Found::None {
                return Found::Duplicate;
            }
            let v = v
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(v);
            found = Found::One(std::str::from_utf8(v).unwrap_or(""));
        }
    }
    found
}

/// Make the request's cookies fit for the backend: ours removed, the application's kept
/// byte for byte, and several `Cookie` fields (HTTP/2) joined into one with "; "
/// (RFC 9113 §8.2.3), since HTTP/1.1 backends expect a single field.
pub fn strip_ours(headers: &mut HeaderMap) {
    // The usual request from a browser with no cookies of the application's own: a single
    // field holding only the site cookie. Drop it without taking the field apart.
    let mut all = headers.get_all(COOKIE).iter();
    if let (Some(only), None) = (all.next(), all.next())
        && !only.as_bytes().contains(&b';')
        && is_ours_bytes(only.as_bytes().trim_ascii_start())
    {
        headers.remove(COOKIE);
        return;
    }
    let mut fields = 0;
    let mut any_ours = false;
    for value in headers.get_all(COOKIE) {
        fields += 1;
        any_ours |= crumbs(value.as_bytes()).any(|c| is_ours_bytes(split_crumb(c).0));
    }
    if fields == 0 || (fields == 1 && !any_ours) {
        return;
    }
    let mut kept: Vec<u8> = Vec::new();
    for value in headers.get_all(COOKIE) {
        for crumb in crumbs(value.as_bytes()).filter(|c| !is_ours_bytes(split_crumb(c).0)) {
            if !kept.is_empty() {
                kept.extend_from_slice(b"; ");
            }
            kept.extend_from_slice(crumb);
        }
    }
    headers.remove(COOKIE);
    // The bytes all came from valid header values, so this cannot fail.
    if !kept.is_empty()
        && let Ok(v) = HeaderValue::from_bytes(&kept)
    {
        headers.insert(COOKIE, v);
    }
}

fn is_ours_bytes(name: &[u8]) -> bool {
    name.starts_with(SITE.as_bytes())
}

/// Does this `Set-Cookie` value (from a backend) set one of the gateway's cookies?
pub fn sets_ours(set_cookie: &HeaderValue) -> bool {
    let name = split_crumb(
        set_cookie
            .as_bytes()
            .split(|b| *b == b';')
            .next()
            .unwrap_or(&[]),
    )
    .0;
    is_ours_bytes(name)
}

/// `Set-Cookie` for a session cookie (no Max-Age: it ends with the browser session).
pub fn set(name: &str, value: &str) -> HeaderValue {
    let c = format!("{name}={value}; Secure; HttpOnly; SameSite=Lax; Path=/");
    HeaderValue::from_str(&c).unwrap_or(HeaderValue::from_static("invalid=1"))
}

/// `Set-Cookie` for a lasting cookie, kept by the browser for `max_age_secs`.
pub fn set_lasting(name: &str, value: &str, max_age_secs: u64) -> HeaderValue {
    let c =
        format!("{name}={value}; Secure; HttpOnly; SameSite=Lax; Path=/; Max-Age={max_age_secs}");
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

    /// The one-cookie fast path agrees with the general parse.
    #[test]
    fn single_cookie_fast_path() {
        for (raw, want) in [
            ("__Host-gatehouse=abc", Found::One("abc")),
            ("__Host-gatehouse=\"abc\"", Found::One("abc")),
            ("__Host-gatehouse= abc ", Found::One("abc")),
            ("__Host-gatehouse-portal=abc", Found::None),
            ("__Host-gatehousex=abc", Found::None),
            ("__Host-gatehouse=a; __Host-gatehouse=b", Found::Duplicate),
        ] {
            assert_eq!(find(&headers(&[raw]), SITE), want, "{raw}");
        }
    }

    /// A non-ASCII application cookie neither hides ours nor is lost.
    #[test]
    fn non_ascii_app_cookie() {
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_bytes(b"theme=dark; __Host-gatehouse=x; name=Zo\xc3\xab").unwrap(),
        );
        assert_eq!(find(&h, SITE), Found::One("x"));
        strip_ours(&mut h);
        assert_eq!(h[COOKIE].as_bytes(), b"theme=dark; name=Zo\xc3\xab");
    }

    /// Several Cookie fields are joined into one, even when none is ours.
    #[test]
    fn split_fields_joined() {
        let mut h = headers(&["a=1", "b=2"]);
        strip_ours(&mut h);
        assert_eq!(
            h.get_all(COOKIE).iter().collect::<Vec<_>>(),
            vec!["a=1; b=2"]
        );
    }

    /// Backends cannot set the gateway's cookies.
    #[test]
    fn backend_set_cookie_of_ours() {
        assert!(sets_ours(&HeaderValue::from_static(
            "__Host-gatehouse=x; Path=/"
        )));
        assert!(sets_ours(&HeaderValue::from_static(
            " __Host-gatehouse-portal=y"
        )));
        assert!(!sets_ours(&HeaderValue::from_static("app=1; Path=/")));
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
        assert_eq!(
            set_lasting(NODE, "n", NODE_MAX_AGE_SECS),
            "__Host-gatehouse-node=n; Secure; HttpOnly; SameSite=Lax; Path=/; Max-Age=34560000"
        );
    }
}

//! Header hygiene between browser and backend: what a backend receives is decided here.
//!
//! Order matters and is fixed: (1) hop-by-hop headers and those named in `Connection` go
//! (RFC 9110 §7.6.1); (2) every client copy of an identity header — in any case, with `_`
//! for `-` — and client-sent forwarding headers go; (3) only then does the gateway add its
//! own, so no client header can remove or shadow what the gateway injects.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::header_names::{HOP_BY_HOP, connection_tokens, fold, is_alias, starts_with_alias};
use crate::config::IdentityHeaders;

/// Client-sent headers that claim to describe the connection or the original request. Some
/// backends route or log by them; only the gateway may set them. Every `X-Forwarded-*` is
/// covered by [`FORWARDING_PREFIXES`].
const FORWARDING: &[&str] = &[
    "forwarded",
    "x-real-ip",
    "x-client-ip",
    "x-original-url",
    "x-original-uri",
    "x-original-host",
    "x-rewrite-url",
    "x-http-method-override",
    // httpoxy (CVE-2016-5385): CGI turns `Proxy` into HTTP_PROXY, which HTTP clients in the
    // backend then take as their outbound proxy.
    "proxy",
    // The names other sign-in gateways tell their backends the user by. An application
    // moved behind gatehouse from one of them may still believe them, and gatehouse sets
    // none of them (unless a site names its own headers so), so a client's copy can only
    // be someone pretending: gatehouse's default names (for a site that chose others),
    // Authelia's, Grafana's auth proxy default.
    "x-auth-user",
    "x-auth-level",
    "x-auth-account",
    "remote-user",
    "remote-groups",
    "remote-name",
    "remote-email",
    "x-webauth-user",
];

/// Name prefixes of the same kinds: `X-Forwarded-*` (with oauth2-proxy's `-User`, `-Email`,
/// `-Groups`, `-Access-Token`), oauth2-proxy behind nginx `auth_request`, the
/// `X-Remote-User`/`-Group`/`-Extra-*` convention, authentik, Pomerium, Google IAP, AWS
/// ALB's OIDC, Cloudflare Access and Azure App Service authentication.
const FORWARDING_PREFIXES: &[&str] = &[
    "x-forwarded-",
    "x-auth-request-",
    "x-remote-",
    "x-authentik-",
    "x-pomerium-",
    "x-goog-authenticated-user-",
    "x-goog-iap-",
    "x-amzn-oidc-",
    "cf-access-",
    "x-ms-client-principal",
];

/// Identity header names, folded once per site at start-up.
#[derive(Debug, Clone)]
pub struct Scrubber {
    identity: [String; 3],
}

impl Scrubber {
    pub fn new(ids: &IdentityHeaders) -> Self {
        Scrubber {
            identity: [
                fold(ids.user.as_str()),
                fold(ids.level.as_str()),
                fold(ids.account.as_str()),
            ],
        }
    }

    fn is_identity(&self, name: &str) -> bool {
        self.identity.iter().any(|f| is_alias(name, f))
    }
}

fn is_forwarding(name: &str) -> bool {
    FORWARDING.iter().any(|f| is_alias(name, f))
        || FORWARDING_PREFIXES
            .iter()
            .any(|p| starts_with_alias(name, p))
}

/// Remove hop-by-hop headers, the ones `Connection` lists, and those `also` picks. One pass
/// over the names; most messages have nothing to remove but `Connection` and allocate
/// nothing here.
fn remove_where(headers: &mut HeaderMap, also: impl Fn(&str) -> bool) {
    let mut doomed: Vec<HeaderName> = Vec::new();
    let mut has_connection = false;
    for name in headers.keys() {
        let n = name.as_str();
        // `Connection` itself is removed last, after its tokens are read, and not listed:
        // most messages carry it (`keep-alive`), and the list would cost them an allocation.
        if n == header::CONNECTION.as_str() {
            has_connection = true;
            continue;
        }
        // By folded name: a backend may read `Proxy_Authorization` as the real thing.
        if HOP_BY_HOP.iter().any(|h| is_alias(n, h)) || also(n) {
            doomed.push(name.clone());
        }
    }
    if has_connection {
        listed_by_connection(headers, &mut doomed);
    }
    for name in doomed {
        headers.remove(name);
    }
    if has_connection {
        headers.remove(header::CONNECTION);
    }
}

/// The header names that the `Connection` fields list, added to `names`.
fn listed_by_connection(headers: &HeaderMap, names: &mut Vec<HeaderName>) {
    for value in headers.get_all(header::CONNECTION) {
        let Ok(value) = value.to_str() else { continue };
        // The usual values ("keep-alive", "close", "upgrade") name hop-by-hop headers that
        // are dropped anyway; only other names need parsing.
        for token in value.split(',').map(|t| t.trim_matches([' ', '\t'])) {
            if token.is_empty()
                || HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(token))
                || token.eq_ignore_ascii_case("close")
            {
                continue;
            }
            names.extend(
                connection_tokens(token).filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok()),
            );
        }
    }
}

/// Remove hop-by-hop headers and the ones `Connection` lists (RFC 9110 §7.6.1).
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    remove_where(headers, |_| false);
}

/// Steps (1) and (2): make the request's headers safe to extend with our own.
pub fn scrub_request(headers: &mut HeaderMap, scrubber: &Scrubber) {
    remove_where(headers, |n| scrubber.is_identity(n) || is_forwarding(n));
    super::cookies::strip_ours(headers);
}

/// What the gateway tells the backend about the user. The user's and account's values are
/// this request's own (see `Entry::user_header`), moved into the request.
pub struct Identity<'a> {
    pub user: HeaderValue,
    pub level: &'a HeaderValue,
    pub account: HeaderValue,
    /// The gateway's own `Authorization` for the backend (SPEC §5), if the site has one.
    /// The client's copy was removed before; this one is added last, after every scrub.
    pub authorization: Option<&'a HeaderValue>,
}

/// Step (3): inject identity and forwarding headers.
pub fn inject(
    headers: &mut HeaderMap,
    names: &IdentityHeaders,
    identity: Identity,
    peer: &HeaderValue,
    host: &HeaderValue,
) {
    headers.insert(names.user.clone(), identity.user);
    headers.insert(names.level.clone(), identity.level.clone());
    headers.insert(names.account.clone(), identity.account);
    if let Some(authorization) = identity.authorization {
        headers.insert(header::AUTHORIZATION, authorization.clone());
    }
    forwarding(headers, peer, host);
}

/// `X-Forwarded-For/Proto/Host`, replacing anything the client sent: the gateway is the
/// edge, so the peer address is the only client address it can vouch for.
pub fn forwarding(headers: &mut HeaderMap, peer: &HeaderValue, host: &HeaderValue) {
    headers.insert(X_FORWARDED_FOR, peer.clone());
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
    headers.insert(X_FORWARDED_HOST, host.clone());
    headers.insert(header::HOST, host.clone());
}

// Built at compile time: `from_static` checks the name, which at run time costs every call.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// A backend's response headers on their way to the browser: hop-by-hop ones go, and a
/// backend may not set the gateway's own cookies (that would let it plant a session).
pub fn scrub_response(headers: &mut HeaderMap) {
    remove_hop_by_hop(headers);
    remove_our_set_cookies(headers);
}

/// A backend may not set the gateway's own cookies, not even on a `101` (whose `Upgrade` and
/// `Connection` must stay, so it skips [`scrub_response`]).
pub fn remove_our_set_cookies(headers: &mut HeaderMap) {
    if headers
        .get_all(header::SET_COOKIE)
        .iter()
        .any(super::cookies::sets_ours)
    {
        let kept: Vec<HeaderValue> = headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter(|v| !super::cookies::sets_ours(v))
            .cloned()
            .collect();
        headers.remove(header::SET_COOKIE);
        for v in kept {
            headers.append(header::SET_COOKIE, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> IdentityHeaders {
        IdentityHeaders {
            user: HeaderName::from_static("x-auth-user"),
            level: HeaderName::from_static("x-auth-level"),
            account: HeaderName::from_static("x-auth-account"),
        }
    }

    /// Client copies of identity headers, under any alias, never survive.
    #[test]
    fn identity_aliases_removed() {
        let mut h = HeaderMap::new();
        for n in [
            "x-auth-user",
            "X_AUTH_USER",
            "x_auth-level",
            "X-Auth_Account",
            "x-forwarded-for",
            "forwarded",
            "x-original-url",
        ] {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_static("mallory"),
            );
        }
        h.insert("x-auth-users", HeaderValue::from_static("kept"));
        scrub_request(&mut h, &Scrubber::new(&names()));
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h["x-auth-users"], "kept");
    }

    /// Hop-by-hop names are removed under any alias, and `Proxy` (httpoxy) always.
    #[test]
    fn hop_by_hop_aliases_and_proxy_removed() {
        let mut h = HeaderMap::new();
        for n in [
            "transfer_encoding",
            "Proxy_Authorization",
            "keep.alive",
            "proxy",
        ] {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_static("x"),
            );
        }
        h.insert("proxy-id", HeaderValue::from_static("kept"));
        scrub_request(&mut h, &Scrubber::new(&names()));
        assert_eq!(h.len(), 1, "{h:?}");
    }

    /// `Connection` goes, with every name any of its fields lists.
    #[test]
    fn connection_and_what_it_lists_removed() {
        let mut h = HeaderMap::new();
        h.append(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        h.append(header::CONNECTION, HeaderValue::from_static("x-one"));
        h.insert("x-one", HeaderValue::from_static("1"));
        h.insert("x-two", HeaderValue::from_static("2"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h["x-two"], "2");

        // The usual response: `Connection: keep-alive` and nothing else hop-by-hop.
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("100"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.get(header::CONNECTION).is_none());
    }

    /// A Connection header cannot remove what the gateway adds afterwards.
    #[test]
    fn connection_cannot_remove_injected() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("x-auth-user, host, keep-alive, x-app"),
        );
        h.insert("x-app", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        scrub_request(&mut h, &Scrubber::new(&names()));
        assert!(
            h.get("x-app").is_none()
                && h.get("keep-alive").is_none()
                && h.get(header::CONNECTION).is_none()
        );
        let v = HeaderValue::from_static("alice");
        let l = HeaderValue::from_static("3");
        inject(
            &mut h,
            &names(),
            Identity {
                user: v.clone(),
                level: &l,
                account: v,
                authorization: Some(&HeaderValue::from_static("Basic gateway")),
            },
            &HeaderValue::from_static("127.0.0.1"),
            &HeaderValue::from_static("app.localhost"),
        );
        assert_eq!(h["x-auth-user"], "alice");
        assert_eq!(h[header::AUTHORIZATION], "Basic gateway");
        assert_eq!(h[header::HOST], "app.localhost");
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    }
}

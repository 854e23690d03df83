//! SPEC §4 and §7, header hygiene end to end: no alias a backend framework could fold onto an
//! identity header survives, `Connection` cannot remove what the gateway adds, and the
//! client's forwarding headers never steer routing, rules or redirects.

mod common;

use bytes::Bytes;
use common::*;
use http::Method;

const IDENTITY: [&str; 3] = ["x-auth-user", "x-auth-level", "x-auth-account"];

/// The name as the most permissive backends see it (lighttpd's CGI: every byte that is not a
/// letter or digit becomes '_'), written here independently of the gateway's own folding.
fn as_backend_sees(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b.to_ascii_lowercase())
            } else {
                '_'
            }
        })
        .collect()
}

fn is_identity(name: &str) -> bool {
    IDENTITY
        .iter()
        .any(|id| as_backend_sees(id) == as_backend_sees(name))
}

/// Every spelling of `name` that folds onto it: each letter case pattern, each separator a
/// header name may hold (RFC 9110 tchar) in every position, and '-'/'_' mixed.
fn aliases(name: &str) -> Vec<String> {
    const SEPARATORS: &[u8] = b"-_.~!#$%&'*+^`|";
    let words: Vec<&str> = name.split('-').collect();
    let cases: [fn(&str) -> String; 4] = [
        |w| w.to_string(),
        |w| w.to_ascii_uppercase(),
        |w| w[..1].to_ascii_uppercase() + &w[1..],
        |w| {
            w.chars()
                .enumerate()
                .map(|(i, c)| {
                    if i % 2 == 0 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect()
        },
    ];
    let mut out = Vec::new();
    for case in cases {
        let cased: Vec<String> = words.iter().map(|w| case(w)).collect();
        for &sep in SEPARATORS {
            out.push(cased.join(&char::from(sep).to_string()));
        }
        // '-' and '_' mixed, in each of the positions.
        for mask in 0..(1u32 << (cased.len() - 1)) {
            let mut name = cased[0].clone();
            for (i, w) in cased.iter().enumerate().skip(1) {
                name.push(if mask & (1 << (i - 1)) != 0 { '_' } else { '-' });
                name.push_str(w);
            }
            out.push(name);
        }
    }
    out.sort();
    out.dedup();
    out
}

/// What the backend received for `path`, as (name, value) pairs.
fn seen_headers(backend: &Backend, path: &str) -> Vec<(String, String)> {
    let requests = backend.requests();
    let seen = requests
        .iter()
        .find(|r| r.path == path)
        .unwrap_or_else(|| panic!("the backend never saw {path}"));
    seen.headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// The backend got exactly the gateway's identity headers: one value each, the signed-in
/// user's, and no other header any backend could read under an identity name.
fn assert_only_injected_identity(backend: &Backend, path: &str) {
    let headers = seen_headers(backend, path);
    let identity: Vec<&(String, String)> = headers.iter().filter(|(n, _)| is_identity(n)).collect();
    let mut names: Vec<&str> = identity.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["x-auth-account", "x-auth-level", "x-auth-user"],
        "{path}: {identity:?}"
    );
    for (name, value) in identity {
        assert!(!value.starts_with("forged"), "{path}: {name}: {value}");
    }
    assert!(
        headers
            .iter()
            .any(|(n, v)| n == "x-auth-user" && v == "alice"),
        "{path}: {headers:?}"
    );
}

/// Every alias of every identity header, in raw HTTP/1.1 (nothing normalises the names on the
/// way in) and sent twice, is removed before the gateway injects its own.
#[tokio::test]
async fn every_identity_alias_scrubbed_http1() {
    let (backend, gw) = two_sites().await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    let all: Vec<String> = IDENTITY.iter().flat_map(|n| aliases(n)).collect();
    assert!(all.len() > 150, "{} aliases", all.len());
    // hyper takes at most 100 header lines per request: send the aliases in batches.
    for (batch, names) in all.chunks(40).enumerate() {
        let mut request = format!(
            "GET /alias/{batch} HTTP/1.1\r\nHost: app.localhost:{}\r\n{}Connection: close\r\n",
            gw.port,
            browser.cookie_line("app.localhost")
        );
        for (i, name) in names.iter().enumerate() {
            request.push_str(&format!("{name}: forged-{i}\r\n{name}: forged-again\r\n"));
        }
        request.push_str("\r\n");
        let reply = browser
            .raw_exchange("app.localhost", request.as_bytes())
            .await;
        assert_eq!(reply.status(), Some(200), "{names:?}: {reply:?}");
        assert_only_injected_identity(&backend, &format!("/alias/{batch}"));
    }
}

/// The same over HTTP/2 (lowercase names only, as HTTP/2 requires).
#[tokio::test]
async fn every_identity_alias_scrubbed_http2() {
    let (backend, gw) = two_sites().await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    let mut h2 = gw.client();
    h2.http2 = true;
    h2.set_cookie(
        "app.localhost",
        "__Host-gatehouse",
        &browser.cookie("app.localhost", "__Host-gatehouse").unwrap(),
    );
    let mut lower: Vec<String> = IDENTITY
        .iter()
        .flat_map(|n| aliases(n))
        .map(|a| a.to_ascii_lowercase())
        .collect();
    lower.sort();
    lower.dedup();
    let headers: Vec<(&str, &str)> = lower
        .iter()
        .flat_map(|n| [(n.as_str(), "forged"), (n.as_str(), "forged-again")])
        .collect();
    let res = h2
        .request(
            Method::GET,
            &gw.url("app.localhost", "/alias-h2"),
            &headers,
            Bytes::new(),
        )
        .await;
    assert_eq!(res.status, 200, "{res:?}");
    assert_only_injected_identity(&backend, "/alias-h2");
}

/// Whitespace around a header name (`X-Auth-User : v`, a leading space or tab that would
/// continue the previous line) is refused with 400 before anything reaches the backend.
#[tokio::test]
async fn whitespace_forms_of_header_names_refused() {
    let (backend, gw) = two_sites().await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    let before = backend.count();
    for line in [
        "X-Auth-User : forged",
        "X-Auth-User\t: forged",
        " X-Auth-User: forged",
        "\tX-Auth-User: forged",
        "X-Auth-User\x0b: forged",
        "X-Auth-User\0: forged",
        "X-Auth\u{a0}User: forged",
        "X-Auth-User\r: forged",
    ] {
        let request = format!(
            "GET /ws-form HTTP/1.1\r\nHost: app.localhost:{}\r\n{}X-Other: x\r\n{line}\r\nConnection: close\r\n\r\n",
            gw.port,
            browser.cookie_line("app.localhost")
        );
        let reply = browser
            .raw_exchange("app.localhost", request.as_bytes())
            .await;
        assert_eq!(reply.status(), Some(400), "{line:?}: {reply:?}");
        assert!(reply.closed, "{line:?}: connection left open");
    }
    assert_eq!(
        backend.count(),
        before,
        "a refused request reached the backend"
    );
}

/// A client's `Connection` header naming Host, the identity and the forwarding headers
/// removes only the client's copies: the gateway's are added afterwards.
#[tokio::test]
async fn connection_header_cannot_remove_gateway_headers() {
    let (backend, gw) = two_sites().await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    let request = format!(
        "GET /conn HTTP/1.1\r\nHost: app.localhost:{port}\r\n{cookie}\
         Connection: close, Host, X-Auth-User, x_auth_level, X-Auth-Account, \
         X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, Cookie\r\n\
         X-Auth-User: forged\r\n\r\n",
        port = gw.port,
        cookie = browser.cookie_line("app.localhost")
    );
    let reply = browser
        .raw_exchange("app.localhost", request.as_bytes())
        .await;
    assert_eq!(reply.status(), Some(200), "{reply:?}");
    assert_only_injected_identity(&backend, "/conn");
    let headers = seen_headers(&backend, "/conn");
    let value = |name: &str| -> Vec<&str> {
        headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let host = format!("app.localhost:{}", gw.port);
    assert_eq!(value("host"), [host.as_str()]);
    assert_eq!(value("x-forwarded-host"), [host.as_str()]);
    assert_eq!(value("x-forwarded-proto"), ["https"]);
    assert_eq!(value("x-forwarded-for"), ["127.0.0.1"]);
}

/// The headers other sign-in gateways tell their backends the user by (an application
/// moved behind gatehouse may still believe them), and gatehouse's default identity names
/// on a site that named its own, never reach the backend from a client, under any alias;
/// headers that only look alike pass.
#[tokio::test]
async fn other_gateways_identity_headers_never_reach_backend() {
    let backend = Backend::start().await;
    let gw = Gateway::builder()
        .user("alice", "alice-pw", 3)
        .site_with(
            "app",
            &backend.url(),
            r#"headers = { user = "X-App-User", level = "X-App-Level", account = "X-App-Account" }"#,
        )
        .start()
        .await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    let forged = [
        "Remote-User",
        "remote_groups",
        "Remote-Name",
        "Remote-Email",
        "X-Forwarded-User",
        "X_Forwarded_Email",
        "X-Forwarded-Groups",
        "X-Forwarded-Preferred-Username",
        "X-Forwarded-Access-Token",
        "X-Auth-Request-User",
        "x-auth-request-email",
        "X-WEBAUTH-USER",
        "X-Remote-User",
        "X-Remote-Group",
        "X-Remote-Extra-Scopes",
        "X-authentik-username",
        "X-Pomerium-Claim-Email",
        "X-Goog-Authenticated-User-Email",
        "X-Goog-IAP-JWT-Assertion",
        "X-Amzn-Oidc-Identity",
        "Cf-Access-Authenticated-User-Email",
        "X-MS-CLIENT-PRINCIPAL-NAME",
        "X-Auth-User",
        "X.Auth.Level",
        "x_auth_account",
    ];
    let kept = [
        "X-Auth-Token",
        "X-Remote",
        "Remote-Addr-Note",
        "X-Forwarded",
    ];
    let mut request = format!(
        "GET /others HTTP/1.1\r\nHost: app.localhost:{}\r\n{}Connection: close\r\n",
        gw.port,
        browser.cookie_line("app.localhost")
    );
    for name in forged {
        request.push_str(&format!("{name}: forged\r\n"));
    }
    for name in kept {
        request.push_str(&format!("{name}: kept\r\n"));
    }
    request.push_str("\r\n");
    let reply = browser
        .raw_exchange("app.localhost", request.as_bytes())
        .await;
    assert_eq!(reply.status(), Some(200), "{reply:?}");
    let headers = seen_headers(&backend, "/others");
    let forged_seen: Vec<&(String, String)> =
        headers.iter().filter(|(_, v)| v == "forged").collect();
    assert!(
        forged_seen.is_empty(),
        "reached the backend: {forged_seen:?}"
    );
    let mut kept_seen: Vec<&str> = headers
        .iter()
        .filter(|(_, v)| v == "kept")
        .map(|(n, _)| n.as_str())
        .collect();
    kept_seen.sort_unstable();
    assert_eq!(
        kept_seen,
        [
            "remote-addr-note",
            "x-auth-token",
            "x-forwarded",
            "x-remote"
        ]
    );
    assert!(
        headers.contains(&("x-app-user".to_string(), "alice".to_string())),
        "{headers:?}"
    );
}

/// Client-sent `X-Forwarded-*`, `Forwarded`, `X-Original-URL`, `X-Rewrite-URL` (and `Proxy`,
/// httpoxy) neither move a request past a path rule nor block it, and never reach the backend.
#[tokio::test]
async fn rewrite_headers_never_influence_rules() {
    let backend = Backend::start().await;
    let gw = Gateway::builder()
        .user("alice", "alice-pw", 3)
        .site_with(
            "app",
            &backend.url(),
            "[[sites.rules]]\npath = \"/admin\"\nmin_level = 5\n",
        )
        .start()
        .await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    let steer = |to: &'static str| {
        [
            ("X-Original-URL", to),
            ("X-Rewrite-URL", to),
            ("X-Original-URI", to),
            ("X-Forwarded-Uri", to),
            ("X-Forwarded-Prefix", to),
            ("Forwarded", "host=wiki.localhost;proto=http"),
            ("X-Forwarded-Host", "wiki.localhost"),
            ("X-Forwarded-Proto", "http"),
            ("X-Forwarded-Port", "80"),
            ("X-Forwarded-For", "10.0.0.1"),
            ("Proxy", "http://evil.example:1"),
        ]
    };
    let before = backend.count();
    let res = browser
        .request(
            Method::GET,
            &gw.url("app.localhost", "/admin/x"),
            &steer("/public"),
            Bytes::new(),
        )
        .await;
    assert_eq!(
        res.status, 403,
        "the rule is decided on the request's own path"
    );
    assert_eq!(
        backend.count(),
        before,
        "a refused request reached the backend"
    );

    let res = browser
        .request(
            Method::GET,
            &gw.url("app.localhost", "/public"),
            &steer("/admin/x"),
            Bytes::new(),
        )
        .await;
    assert_eq!(res.status, 200);
    let seen = backend.last();
    assert_eq!(seen.path, "/public");
    for gone in [
        "x-original-url",
        "x-rewrite-url",
        "x-original-uri",
        "x-forwarded-uri",
        "x-forwarded-prefix",
        "forwarded",
        "x-forwarded-port",
        "proxy",
    ] {
        assert!(
            seen.headers.get(gone).is_none(),
            "{gone} reached the backend"
        );
    }
    let host = format!("app.localhost:{}", gw.port);
    assert_eq!(seen.headers["x-forwarded-host"], host.as_str());
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
}

/// The redirects the gateway builds (site → portal, portal → site callback) use the
/// configured origins and the request's own path, whatever forwarding headers say.
#[tokio::test]
async fn forwarding_headers_never_influence_redirects() {
    let (_backend, gw) = two_sites().await;
    let steer = [
        ("X-Forwarded-Host", "evil.example"),
        ("X-Forwarded-Proto", "http"),
        ("X-Forwarded-Port", "1"),
        ("X-Forwarded-Prefix", "//evil.example"),
        ("Forwarded", "host=evil.example;proto=http"),
        ("X-Original-URL", "//evil.example/"),
        ("X-Rewrite-URL", "//evil.example/"),
    ];
    let browser = gw.client();
    let first = browser
        .request(
            Method::GET,
            &gw.url("app.localhost", "/start?x=1"),
            &steer,
            Bytes::new(),
        )
        .await;
    assert_eq!(first.status, 302);
    let login = first.location().unwrap();
    assert!(
        login.starts_with(&gw.url("auth.localhost", "/login?site=app&")),
        "{login}"
    );
    assert!(login.ends_with("&rd=%2Fstart%3Fx%3D1"), "{login}");
    assert!(!login.contains("evil"), "{login}");

    // Signed in at the portal, the hand-off goes back to the site's own callback.
    let form = browser.get(&login).await;
    let posted = submit_login(&browser, &gw, &form.body, "alice", "alice-pw").await;
    assert_eq!(posted.status, 303);
    let again = browser
        .request(
            Method::GET,
            &gw.url("wiki.localhost", "/w"),
            &steer,
            Bytes::new(),
        )
        .await;
    let minted = browser
        .request(
            Method::GET,
            &again.location().unwrap(),
            &steer,
            Bytes::new(),
        )
        .await;
    assert_eq!(minted.status, 303, "{minted:?}");
    let callback = minted.location().unwrap();
    assert!(
        callback.starts_with(&gw.url("wiki.localhost", "/.gatehouse/callback?code=")),
        "{callback}"
    );
    let landed = browser
        .request(Method::GET, &callback, &steer, Bytes::new())
        .await;
    assert_eq!(landed.header("location"), Some("/w"));
}

/// Requests are routed by Host (and SNI) alone: forwarding headers naming the other site
/// neither carry a request there nor bring a session along.
#[tokio::test]
async fn forwarding_headers_never_route() {
    let (backend, gw) = two_sites().await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    let to = |host: &'static str| {
        [
            ("X-Forwarded-Host", host),
            ("X-Original-Host", host),
            (
                "Forwarded",
                if host.starts_with("wiki") {
                    "host=wiki.localhost"
                } else {
                    "host=app.localhost"
                },
            ),
            ("X-Forwarded-Server", host),
        ]
    };
    // Signed in on app only: asked on app while naming wiki, it is app that answers.
    let res = browser
        .request(
            Method::GET,
            &gw.url("app.localhost", "/here"),
            &to("wiki.localhost"),
            Bytes::new(),
        )
        .await;
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(
        backend.last().headers["host"],
        format!("app.localhost:{}", gw.port).as_str()
    );
    // Asked on wiki while naming app: wiki does not know this browser, so a hand-off.
    let before = backend.count();
    let res = browser
        .request(
            Method::GET,
            &gw.url("wiki.localhost", "/there"),
            &to("app.localhost"),
            Bytes::new(),
        )
        .await;
    assert_eq!(res.status, 302, "{res:?}");
    assert!(
        res.location()
            .unwrap()
            .starts_with(&gw.url("auth.localhost", "/login?site=wiki&")),
        "{res:?}"
    );
    assert_eq!(backend.count(), before);
}

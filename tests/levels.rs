//! SPEC §4: access levels per user, per site and per path, matched on the normalised path;
//! ambiguous paths refused; nothing refused ever reaches the backend.

mod common;

use common::*;

async fn setup() -> (Backend, Gateway) {
    let backend = Backend::start().await;
    let rules = "[[sites.rules]]\npath = \"/admin\"\nmin_level = 5\n\
                 [[sites.rules]]\npath = \"/docs\"\nmin_level = 2\n\
                 [[sites.rules]]\npath = \"/docs/public\"\nmin_level = 1\n";
    let gw = Gateway::builder()
        .user_with("alice", "alice-pw", 3, "site_levels = { wiki = 5 }")
        .user("bob", "bob-pw", 1)
        .user_with("carol", "carol-pw", 4, "site_levels = { app = 0 }")
        .user("zero", "zero-pw", 0)
        .site_with("app", &backend.url(), rules)
        .site_with("wiki", &backend.url(), rules)
        .site_with(
            "other",
            &backend.url(),
            &format!("case_sensitive_paths = true\n{rules}"),
        )
        .start()
        .await;
    (backend, gw)
}

/// The user's level, the per-site level and the path's rule decide; refusals never proxy.
#[tokio::test]
async fn levels_per_user_site_and_path() {
    let (backend, gw) = setup().await;
    let alice = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    let bob = signed_in_browser(&gw, "app.localhost", "bob", "bob-pw").await;
    let before = backend.count();
    assert_eq!(
        alice.get(&gw.url("app.localhost", "/admin")).await.status,
        403,
        "3 < 5"
    );
    assert_eq!(
        bob.get(&gw.url("app.localhost", "/docs/x")).await.status,
        403,
        "1 < 2"
    );
    assert_eq!(
        backend.count(),
        before,
        "refused requests never reach the backend"
    );
    assert_eq!(
        bob.get(&gw.url("app.localhost", "/docs/public/x"))
            .await
            .status,
        200,
        "longest prefix wins"
    );
    assert_eq!(
        alice.get(&gw.url("app.localhost", "/docs/x")).await.status,
        200
    );
    assert_eq!(
        bob.get(&gw.url("app.localhost", "/administrator"))
            .await
            .status,
        200,
        "a rule matches whole segments"
    );

    // alice has level 5 on the wiki only.
    let res = alice
        .follow(&gw.url("wiki.localhost", "/admin/panel"))
        .await;
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(backend.last().headers["x-auth-level"], "5");
    let page = alice.get(&gw.url("app.localhost", "/admin")).await;
    assert!(page.body.contains("Access denied"), "a clear 403 page");
}

/// Level 0 means ACCESS DENIED, globally or on one site.
#[tokio::test]
async fn level_zero_is_denied() {
    let (backend, gw) = setup().await;
    let zero = gw.client();
    let res = sign_in(&zero, &gw, "app.localhost", "/", "zero", "zero-pw").await;
    assert_eq!(res.status, 403);
    let carol = gw.client();
    assert_eq!(
        sign_in(&carol, &gw, "app.localhost", "/", "carol", "carol-pw")
            .await
            .status,
        403,
        "app = 0"
    );
    let wiki = carol.follow(&gw.url("wiki.localhost", "/")).await;
    assert_eq!(wiki.status, 200, "level 4 elsewhere");
    assert!(
        backend
            .requests()
            .iter()
            .all(|r| r.headers["x-auth-user"] == "carol")
    );
    assert_eq!(backend.count(), 1);
}

/// Rules ignore letter case by default (a rule for /admin guards /ADMIN), unless the site
/// sets case_sensitive_paths.
#[tokio::test]
async fn rule_case() {
    let (_backend, gw) = setup().await;
    let bob = signed_in_browser(&gw, "app.localhost", "bob", "bob-pw").await;
    for path in ["/ADMIN", "/Admin/x", "/aDmIn/"] {
        assert_eq!(
            bob.get(&gw.url("app.localhost", path)).await.status,
            403,
            "{path}"
        );
    }
    let strict = bob.follow(&gw.url("other.localhost", "/")).await;
    assert_eq!(strict.status, 200);
    assert_eq!(
        bob.get(&gw.url("other.localhost", "/admin")).await.status,
        403
    );
    assert_eq!(
        bob.get(&gw.url("other.localhost", "/ADMIN")).await.status,
        200,
        "case-sensitive site"
    );
}

/// Paths are normalised before rules apply, and the normalised path is what is forwarded.
#[tokio::test]
async fn normalised_before_rules() {
    let (backend, gw) = setup().await;
    let bob = signed_in_browser(&gw, "app.localhost", "bob", "bob-pw").await;
    let before = backend.count();
    for target in [
        "/x/../admin",
        "//admin",
        "/./admin",
        "/%61dmin",
        "/%41DMIN",
        "/admin;jsessionid=1",
        "/docs/public/../secret",
        "/admin/",
        "///admin//x",
    ] {
        assert_eq!(bob.raw_get("app.localhost", target).await, 403, "{target}");
    }
    assert_eq!(backend.count(), before);
    assert_eq!(bob.raw_get("app.localhost", "/a/./b/../c?q=%2F").await, 200);
    assert_eq!(
        backend.last().path,
        "/a/c?q=%2F",
        "the backend gets the normalised path, the query untouched"
    );
}

/// A lower-level rule under a stricter one does not stretch to `;params` in its own
/// segment: `/docs/public;x/y` is `/docs/public/y` to a backend that strips params, but
/// `public;x` under `/docs` to one that keeps them, so the stricter `/docs` rule (2)
/// decides. Params further down change nothing.
#[tokio::test]
async fn params_do_not_stretch_a_lower_rule() {
    let (backend, gw) = setup().await;
    let bob = signed_in_browser(&gw, "app.localhost", "bob", "bob-pw").await;
    let before = backend.count();
    for target in ["/docs/public;x/y", "/docs/public;x", "/docs/public%3Bx/y"] {
        assert_eq!(bob.raw_get("app.localhost", target).await, 403, "{target}");
    }
    assert_eq!(backend.count(), before);
    assert_eq!(bob.raw_get("app.localhost", "/docs/public/x;y").await, 200);
    assert_eq!(bob.raw_get("app.localhost", "/docs/public").await, 200);
}

/// Paths a backend could read another way are refused with 400, before any decision.
#[tokio::test]
async fn ambiguous_paths_refused() {
    let (backend, gw) = setup().await;
    let alice = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    let before = backend.count();
    for target in [
        "/a%2fadmin",
        "/a%2Fb",
        "/a%5cb",
        "/a\\b",
        "/..",
        "/../admin",
        "/%2e%2e/admin",
        "/x/..;/admin",
        "/a%00b",
        "/%252e%252e/admin",
        "/%zz",
    ] {
        assert_eq!(
            alice.raw_get("app.localhost", target).await,
            400,
            "{target}"
        );
    }
    assert_eq!(backend.count(), before);
    // Unauthenticated too: refused before any redirect.
    let anon = gw.client();
    assert_eq!(anon.raw_get("app.localhost", "/a%2fb").await, 400);
}

/// whoami reports the identity the gate holds.
#[tokio::test]
async fn whoami() {
    let (_backend, gw) = setup().await;
    let alice = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    let me = alice
        .get(&gw.url("app.localhost", "/.gatehouse/whoami"))
        .await;
    assert_eq!(me.status, 200);
    assert_eq!(
        me.json(),
        serde_json::json!({"user": "alice", "level": 3, "account": "alice", "site": "app"})
    );
    let anon = gw
        .client()
        .get(&gw.url("app.localhost", "/.gatehouse/whoami"))
        .await;
    assert_eq!(anon.status, 401);
}

/// One path, one decision (issue 6 point 3), for the forms not covered above: what is
/// authorised is byte for byte what is forwarded, and a request target that names another
/// host than Host, or bytes that are not a URI, is refused.
#[tokio::test]
async fn one_path_one_decision() {
    let (backend, gw) = setup().await;
    let alice = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    let port = gw.port;
    let cookie = alice.cookie_line("app.localhost");
    let raw = |target: &[u8], host: &str| {
        let mut req = b"GET ".to_vec();
        req.extend_from_slice(target);
        req.extend_from_slice(
            format!(" HTTP/1.1\r\nHost: {host}\r\n{cookie}Connection: close\r\n\r\n").as_bytes(),
        );
        req
    };
    let here = format!("app.localhost:{port}");

    // An encoded byte that is not UTF-8 stays encoded, canonically (upper-case hex), and
    // that one form is both what the rules saw and what is forwarded.
    let reply = alice
        .raw_exchange("app.localhost", &raw(b"/x%ff/y", &here))
        .await;
    assert_eq!(reply.status(), Some(200), "{}", reply.text);
    assert_eq!(backend.last().path, "/x%FF/y");

    let before = backend.count();
    // A raw byte that is not a URI character, and absolute forms naming another host.
    for (target, what) in [
        (b"/x\xff".to_vec(), "raw 0xff"),
        (
            format!("https://wiki.localhost:{port}/x").into_bytes(),
            "absolute form for another site",
        ),
        (
            b"https://evil.example/x".to_vec(),
            "absolute form for a foreign host",
        ),
    ] {
        let reply = alice
            .raw_exchange("app.localhost", &raw(&target, &here))
            .await;
        assert_eq!(reply.status(), Some(400), "{what}: {}", reply.text);
    }
    assert_eq!(
        backend.count(),
        before,
        "nothing refused reached the backend"
    );

    // The absolute form for this very host is the same request, forwarded in origin form.
    let target = format!("https://app.localhost:{port}/a/./b/../c?q=1");
    let reply = alice
        .raw_exchange("app.localhost", &raw(target.as_bytes(), &here))
        .await;
    assert_eq!(reply.status(), Some(200), "{}", reply.text);
    assert_eq!(backend.last().path, "/a/c?q=1");
}

/// HTTP/2 connection reuse: a connection opened for one site cannot carry requests for
/// another (421), while requests for its own name go on being served on it.
#[tokio::test]
async fn http2_reuse_for_another_host_is_421() {
    let (backend, gw) = setup().await;
    let alice = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    let mut conn = alice.h2_connection("app.localhost").await;
    assert_eq!(conn.get("app.localhost", "/first").await, 200);
    let before = backend.count();
    for other in ["wiki.localhost", "auth.localhost", "evil.localhost"] {
        assert_eq!(conn.get(other, "/x").await, 421, "{other}");
    }
    assert_eq!(backend.count(), before);
    assert_eq!(conn.get("app.localhost", "/again").await, 200);
}

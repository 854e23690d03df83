//! SPEC §1, §2 and §7, serving: the admin listener, the plain-HTTP redirect listener,
//! routing by Host and SNI (421 for anything else), the security headers of the
//! gateway's own pages, and graceful shutdown.

mod common;

use std::time::{Duration, Instant};

use common::client::plain_request;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Send raw bytes over a TLS connection made for `sni`; the status and the whole answer.
async fn raw_over_tls(browser: &Client, sni: &str, request: &str) -> (u16, String) {
    let mut tls = browser.connect(sni).await;
    tokio::time::timeout(Duration::from_secs(10), async {
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let _ = tls.read_to_end(&mut buf).await;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line: {text:?}"));
        (status, text)
    })
    .await
    .expect("raw request timed out")
}

/// A counter or gauge, 0 when the line is not there yet.
async fn metric_or_zero(gw: &Gateway, name: &str) -> f64 {
    gw.metric(name).await.unwrap_or(0.0)
}

/// Admin `/healthz`, `/readyz` and `/metrics` (requests, sign-ins, table entries).
#[tokio::test]
async fn admin_health_and_metrics() {
    let (_backend, gw) = two_sites().await;
    assert_eq!(gw.admin_get("/healthz").await.0, 200);
    assert_eq!(gw.admin_get("/readyz").await.0, 200);
    assert_eq!(gw.admin_get("/nothing-here").await.0, 404);
    let ok = "gatehouse_requests_total{site=\"app\",status=\"200\"}";
    let redirected = "gatehouse_requests_total{site=\"app\",status=\"302\"}";
    let not_found = "gatehouse_requests_total{site=\"app\",status=\"404\"}";
    let success = "gatehouse_signins_total{result=\"success\"}";
    let failure = "gatehouse_signins_total{result=\"failure\"}";
    assert_eq!(metric_or_zero(&gw, ok).await, 0.0);
    assert_eq!(metric_or_zero(&gw, success).await, 0.0);
    assert_eq!(gw.metric("gatehouse_table_entries").await, Some(0.0));

    // Sign-in: the site's 302 to the portal, the callback's 302, then the 200 landing.
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    assert_eq!(gw.metric(ok).await, Some(1.0));
    assert_eq!(gw.metric(redirected).await, Some(2.0));
    assert_eq!(gw.metric(success).await, Some(1.0));
    assert_eq!(gw.metric("gatehouse_table_entries").await, Some(1.0));
    for i in 0..5 {
        assert_eq!(
            browser
                .get(&gw.url("app.localhost", &format!("/page/{i}")))
                .await
                .status,
            200
        );
    }
    for _ in 0..2 {
        assert_eq!(
            browser
                .get(&gw.url("app.localhost", "/.gatehouse/nope"))
                .await
                .status,
            404
        );
    }
    assert_eq!(
        gw.metric(ok).await,
        Some(6.0),
        "every proxied 200 counted once"
    );
    assert_eq!(gw.metric(not_found).await, Some(2.0));
    assert_eq!(
        metric_or_zero(&gw, "gatehouse_requests_total{site=\"wiki\"").await,
        0.0,
        "nothing counted for the wrong site"
    );

    // A wrong password, then a second browser: counters and the table follow.
    let other = gw.client();
    let first = other.get(&gw.url("wiki.localhost", "/")).await;
    let form = other.get(&first.location().unwrap()).await;
    assert_eq!(
        submit_login(&other, &gw, &form.body, "alice", "wrong")
            .await
            .status,
        401
    );
    assert_eq!(gw.metric(failure).await, Some(1.0));
    let _second = signed_in_browser(&gw, "wiki.localhost", "alice", "alice-pw").await;
    assert_eq!(gw.metric(success).await, Some(2.0));
    assert_eq!(gw.metric("gatehouse_table_entries").await, Some(2.0));
    assert_eq!(
        gw.metric("gatehouse_requests_total{site=\"wiki\",status=\"200\"}")
            .await,
        Some(1.0)
    );

    let (_, text) = gw.admin_get("/metrics").await;
    assert!(
        text.contains("# TYPE gatehouse_requests_total counter")
            || text.contains("# TYPE gatehouse_requests counter"),
        "{text}"
    );
}

/// Plain HTTP redirects known hosts to HTTPS (308); unknown hosts get 421, no redirect.
#[tokio::test]
async fn http_redirect_listener() {
    let (backend, gw) = two_sites().await;
    let (status, headers, _) = plain_request(gw.redirect, "app.localhost", "/x?y=1").await;
    assert_eq!(status, 308);
    assert_eq!(
        headers["location"],
        format!("https://app.localhost:{}/x?y=1", gw.port)
    );
    // The port the browser used on plain HTTP is not carried over; letter case is not kept.
    let (status, headers, _) = plain_request(gw.redirect, "Wiki.LocalHost:8080", "/a/b").await;
    assert_eq!(status, 308);
    assert_eq!(
        headers["location"],
        format!("https://wiki.localhost:{}/a/b", gw.port)
    );
    let (status, headers, _) = plain_request(gw.redirect, "auth.localhost", "/login").await;
    assert_eq!(status, 308);
    assert_eq!(
        headers["location"],
        format!("https://auth.localhost:{}/login", gw.port)
    );

    for unknown in ["evil.localhost", "evil.example", "127.0.0.1"] {
        let (status, headers, body) = plain_request(gw.redirect, unknown, "/x?y=1").await;
        assert_eq!(status, 421, "{unknown}");
        assert!(
            headers.get("location").is_none(),
            "{unknown}: no redirect for an unknown host"
        );
        assert!(
            !body.contains("localhost"),
            "{unknown}: the page names no configured host: {body}"
        );
    }
    assert_eq!(backend.count(), 0, "the redirect listener never proxies");
}

/// An unknown Host on HTTPS gets 421, and the page does not list the sites.
#[tokio::test]
async fn unknown_host_is_421_without_site_list() {
    let (backend, gw) = two_sites().await;
    let browser = gw.client();
    // Names the test certificate covers, none of them configured.
    for host in ["other.localhost", "api.localhost", "localhost"] {
        let res = browser.get(&gw.url(host, "/")).await;
        assert_eq!(res.status, 421, "{host}: {res:?}");
        assert!(res.header("location").is_none(), "{host}: no redirect");
        for leak in [
            "app.localhost",
            "wiki.localhost",
            "auth.localhost",
            "\"app\"",
            "wiki",
        ] {
            assert!(
                !res.body.contains(leak),
                "{host}: the 421 page leaks {leak}: {}",
                res.body
            );
        }
    }
    assert_eq!(backend.count(), 0);
}

/// A Host that disagrees with the TLS server name gets 421.
#[tokio::test]
async fn host_must_match_sni() {
    let (backend, gw) = two_sites().await;
    let browser = gw.client();
    let port = gw.port;
    for host in ["wiki.localhost", "auth.localhost", "evil.localhost"] {
        let request =
            format!("GET /x HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n");
        let (status, text) = raw_over_tls(&browser, "app.localhost", &request).await;
        assert_eq!(status, 421, "SNI app.localhost, Host {host}: {text}");
        assert!(
            !text.to_ascii_lowercase().contains("\r\nlocation:"),
            "{text}"
        );
        assert!(
            !text.contains("__Host-gatehouse"),
            "no cookie handed out: {text}"
        );
    }
    // Positive control: the right name in other letter case is routed (to the portal, 302).
    let request =
        format!("GET /x HTTP/1.1\r\nHost: App.LocalHost:{port}\r\nConnection: close\r\n\r\n");
    let (status, text) = raw_over_tls(&browser, "app.localhost", &request).await;
    assert_eq!(status, 302, "{text}");
    assert_eq!(backend.count(), 0);
}

/// Every security header the gateway promises for its own pages.
fn assert_secure(what: &str, res: &Resp) {
    let hsts = res
        .header("strict-transport-security")
        .unwrap_or_else(|| panic!("{what}: no HSTS: {res:?}"));
    let max_age: u64 = hsts
        .split(';')
        .find_map(|p| p.trim().strip_prefix("max-age="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{what}: HSTS without max-age: {hsts}"));
    assert!(
        max_age >= 180 * 24 * 3600,
        "{what}: HSTS max-age too short: {hsts}"
    );
    assert_eq!(
        res.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(
        res.header("x-frame-options")
            .map(str::to_ascii_uppercase)
            .as_deref(),
        Some("DENY"),
        "{what}"
    );
    assert_no_store(what, res);
    let csp = res
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no CSP"));
    assert!(
        csp.contains("default-src"),
        "{what}: CSP without default-src: {csp}"
    );
    assert!(
        csp.contains("frame-ancestors 'none'"),
        "{what}: CSP allows framing: {csp}"
    );
}

fn assert_no_store(what: &str, res: &Resp) {
    let cc = res
        .headers
        .get_all("cache-control")
        .iter()
        .map(|v| v.to_str().unwrap().to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(", ");
    assert!(
        cc.split(',').any(|d| d.trim() == "no-store"),
        "{what}: Cache-Control is {cc:?}, not no-store"
    );
}

/// Security headers on the gateway's pages; `no-store` on every cookie-setting response.
#[tokio::test]
async fn security_headers_and_no_store_on_cookies() {
    let (_backend, gw) = two_sites().await;
    let browser = gw.client();
    let mut seen: Vec<(String, Resp)> = Vec::new();

    let handoff = browser.get(&gw.url("app.localhost", "/start")).await;
    assert_eq!(handoff.status, 302);
    seen.push(("site hand-off redirect".into(), handoff.clone()));
    let form = browser.get(&handoff.location().unwrap()).await;
    assert_eq!(form.status, 200);
    assert_secure("sign-in form", &form);
    seen.push(("sign-in form".into(), form.clone()));
    let wrong = submit_login(&browser, &gw, &form.body, "alice", "wrong").await;
    assert_eq!(wrong.status, 401);
    assert_secure("wrong-password page", &wrong);
    seen.push(("wrong-password page".into(), wrong.clone()));
    let posted = submit_login(&browser, &gw, &wrong.body, "alice", "alice-pw").await;
    assert_eq!(posted.status, 303);
    assert_secure("sign-in redirect", &posted);
    seen.push(("sign-in redirect".into(), posted.clone()));
    let callback = browser.get(&posted.location().unwrap()).await;
    assert_eq!(callback.status, 302);
    assert_secure("callback redirect", &callback);
    seen.push(("callback redirect".into(), callback));
    let account = browser.get(&gw.url("auth.localhost", "/")).await;
    assert_eq!(account.status, 200);
    assert_secure("account page", &account);
    seen.push(("account page".into(), account.clone()));
    let whoami = browser
        .get(&gw.url("app.localhost", "/.gatehouse/whoami"))
        .await;
    assert_eq!(whoami.status, 200);
    assert_secure("whoami", &whoami);
    let logout_page = browser.get(&gw.url("auth.localhost", "/logout")).await;
    assert_eq!(logout_page.status, 200);
    assert_secure("sign-out page", &logout_page);
    let csrf = form_field(&account.body, "csrf").expect("account page has a sign-out form");
    let logout = browser
        .post_form(&gw.url("auth.localhost", "/logout"), &[("csrf", &csrf)])
        .await;
    assert_eq!(logout.status, 200);
    assert_secure("signed-out page", &logout);
    seen.push(("sign-out".into(), logout));
    let unknown = gw.client().get(&gw.url("other.localhost", "/")).await;
    assert_eq!(unknown.status, 421);
    assert_secure("421 page", &unknown);
    let csp = form.header("content-security-policy").unwrap();
    assert!(
        !csp.contains("'unsafe-inline'") && !csp.contains('*'),
        "the portal's CSP is strict: {csp}"
    );

    let setting: Vec<&(String, Resp)> = seen
        .iter()
        .filter(|(_, r)| r.headers.contains_key("set-cookie"))
        .collect();
    assert!(
        setting.len() >= 4,
        "hand-off, form, sign-in and sign-out set cookies: {:?}",
        setting.iter().map(|(w, _)| w).collect::<Vec<_>>()
    );
    for (what, res) in setting {
        assert_no_store(what, res);
    }
}

/// Shutdown finishes the in-flight request, refuses new connections, then `run` ends.
#[tokio::test]
async fn graceful_shutdown_finishes_in_flight() {
    let backend = Backend::start().await;
    let mut gw = Gateway::builder()
        .user("alice", "alice-pw", 3)
        .site("app", &backend.url())
        .start()
        .await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    let url = gw.url("app.localhost", "/slow?ms=1500");
    let in_flight = tokio::spawn(async move { browser.get(&url).await });
    let deadline = Instant::now() + Duration::from_secs(5);
    while !backend
        .requests()
        .iter()
        .any(|r| r.path.starts_with("/slow"))
    {
        assert!(
            Instant::now() < deadline,
            "the slow request never reached the backend"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stopping = Instant::now();
    let server = gw.begin_stop();

    // New connections are refused, while the slow request is still being served.
    // (A connection caught in the backlog as the listener closes is reset; keep trying.)
    loop {
        match tokio::net::TcpStream::connect(("127.0.0.1", gw.port)).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            other => {
                assert!(
                    stopping.elapsed() < Duration::from_secs(1),
                    "still accepting connections 1 s after shutdown began: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    assert!(
        !in_flight.is_finished(),
        "refusal observed while the request was in flight"
    );

    let res = tokio::time::timeout(Duration::from_secs(5), in_flight)
        .await
        .expect("in-flight request hung")
        .unwrap();
    assert_eq!(
        (res.status, res.body.as_str()),
        (200, "slow ok"),
        "the in-flight request completes"
    );
    tokio::time::timeout(Duration::from_secs(3), server)
        .await
        .expect("run did not return after its connections closed")
        .unwrap();
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "ended by closing connections, not by the 10 s grace"
    );
}

/// An idle keep-alive connection does not hold shutdown up, and is closed.
#[tokio::test]
async fn shutdown_closes_idle_connections() {
    let backend = Backend::start().await;
    let mut gw = Gateway::builder()
        .user("alice", "alice-pw", 3)
        .site("app", &backend.url())
        .start()
        .await;
    let browser = gw.client();
    // An idle keep-alive connection, opened before shutdown.
    let mut tls = browser.connect("app.localhost").await;
    tls.write_all(format!("GET / HTTP/1.1\r\nHost: app.localhost:{}\r\n\r\n", gw.port).as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 8192];
    let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 302"));
    let started = Instant::now();
    let server = gw.begin_stop();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("an idle connection kept the server from stopping")
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stopped in {:?}",
        started.elapsed()
    );
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2), tls.read_to_end(&mut rest)).await;
    assert!(
        read.is_ok(),
        "the idle connection was left open after the server stopped"
    );
}

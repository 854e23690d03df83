//! SPEC §3: the cross-site hand-off and its safety properties.

mod common;

use common::*;

async fn two_sites() -> (Backend, Gateway) {
    let backend = Backend::start().await;
    let gw = Gateway::builder()
        .user_with("alice", "alice-pw", 3, "site_levels = { wiki = 5 }")
        .site("app", &backend.url())
        .site("wiki", &backend.url())
        .start()
        .await;
    (backend, gw)
}

/// Sign in once on one site, then reach the other without a password; the backend sees who.
#[tokio::test]
async fn sign_in_then_single_sign_on() {
    let (backend, gw) = two_sites().await;
    let browser = gw.client();
    let res = sign_in(
        &browser,
        &gw,
        "app.localhost",
        "/docs/page?x=1",
        "alice",
        "alice-pw",
    )
    .await;
    assert_eq!(res.status, 200);
    assert_eq!(
        res.url,
        gw.url("app.localhost", "/docs/page?x=1"),
        "lands on the original URL"
    );
    let seen = backend.last();
    assert_eq!(seen.path, "/docs/page?x=1");
    assert_eq!(seen.headers["x-auth-user"], "alice");
    assert_eq!(seen.headers["x-auth-level"], "3");

    // The wiki: redirected to the portal, which knows the browser and hands it straight back.
    let first = browser.get(&gw.url("wiki.localhost", "/w")).await;
    assert_eq!(first.status, 302);
    let portal = browser.get(&first.location().unwrap()).await;
    assert_eq!(
        portal.status, 303,
        "no form for a known browser: {portal:?}"
    );
    assert!(
        portal
            .location()
            .unwrap()
            .starts_with(&gw.url("wiki.localhost", "/.gatehouse/callback?code="))
    );
    let landed = browser.follow(&portal.location().unwrap()).await;
    assert_eq!(landed.status, 200);
    assert_eq!(
        backend.last().headers["x-auth-level"],
        "5",
        "per-site level on the wiki"
    );
    assert_eq!(
        gw.metric("gatehouse_signins_total{result=\"success\"}")
            .await,
        Some(1.0)
    );
}

/// The portal cookie is rotated at sign-in: the pre-sign-in identifier never becomes a session.
#[tokio::test]
async fn portal_cookie_rotated_at_sign_in() {
    let (_backend, gw) = two_sites().await;
    let browser = gw.client();
    let first = browser.get(&gw.url("app.localhost", "/")).await;
    let form = browser.get(&first.location().unwrap()).await;
    let before = browser
        .cookie("auth.localhost", "__Host-gatehouse-portal")
        .expect("portal cookie set with the form");
    let posted = submit_login(&browser, &gw, &form.body, "alice", "alice-pw").await;
    assert_eq!(posted.status, 303);
    let after = browser
        .cookie("auth.localhost", "__Host-gatehouse-portal")
        .unwrap();
    assert_ne!(before, after);
    // Someone holding the old identifier (a fixation attacker) is not signed in.
    let attacker = gw.client();
    attacker.set_cookie("auth.localhost", "__Host-gatehouse-portal", &before);
    let page = attacker.get(&gw.url("auth.localhost", "/")).await;
    assert_eq!(page.status, 302, "the old cookie is not a session");
    assert!(page.location().unwrap().ends_with("/login"));
}

/// A wrong password shows the form again with one message, and sets no session.
#[tokio::test]
async fn wrong_password_refused() {
    let (backend, gw) = two_sites().await;
    let browser = gw.client();
    let first = browser.get(&gw.url("app.localhost", "/")).await;
    let form = browser.get(&first.location().unwrap()).await;
    let res = submit_login(&browser, &gw, &form.body, "alice", "nope").await;
    assert_eq!(res.status, 401);
    assert!(res.body.contains("Wrong user name or password."));
    let unknown = submit_login(&browser, &gw, &form.body, "nobody", "nope").await;
    assert_eq!(unknown.status, 401);
    assert_eq!(
        unknown.body.replace("nobody", "alice"),
        res.body,
        "unknown users get the same page"
    );
    assert_eq!(backend.count(), 0);
    assert_eq!(
        gw.metric("gatehouse_signins_total{result=\"failure\"}")
            .await,
        Some(2.0)
    );
}

/// A form posted without the CSRF token bound to the portal cookie is refused.
#[tokio::test]
async fn login_needs_csrf_token() {
    let (_backend, gw) = two_sites().await;
    let browser = gw.client();
    let first = browser.get(&gw.url("app.localhost", "/")).await;
    let form = browser.get(&first.location().unwrap()).await;
    let other = gw.client();
    let other_form = other.get(&first.location().unwrap()).await;
    // The other browser's token does not fit this browser's portal cookie.
    let token = form_field(&other_form.body, "csrf").unwrap();
    let res = browser
        .post_form(
            &gw.url("auth.localhost", "/login"),
            &[
                ("username", "alice"),
                ("password", "alice-pw"),
                ("csrf", &token),
            ],
        )
        .await;
    assert_eq!(res.status, 403);
    let res = browser
        .post_form(
            &gw.url("auth.localhost", "/login"),
            &[("username", "alice"), ("password", "alice-pw")],
        )
        .await;
    assert_eq!(res.status, 403);
    let _ = form;
}

/// Drive a browser up to the callback URL without following it.
async fn callback_url(browser: &Client, gw: &Gateway, host: &str) -> String {
    let first = browser.get(&gw.url(host, "/")).await;
    let portal = browser.get(&first.location().unwrap()).await;
    let posted = if portal.status == 200 {
        submit_login(browser, gw, &portal.body, "alice", "alice-pw").await
    } else {
        portal
    };
    assert_eq!(posted.status, 303);
    posted.location().unwrap()
}

/// A code works once: a replay admits nobody, not even the same browser again.
#[tokio::test]
async fn replayed_code_admits_nobody() {
    let (backend, gw) = two_sites().await;
    let browser = gw.client();
    let cb = callback_url(&browser, &gw, "app.localhost").await;
    assert_eq!(browser.get(&cb).await.status, 302);
    let thief = gw.client();
    thief.set_cookie(
        "app.localhost",
        "__Host-gatehouse",
        gatehouse::crypto::Identifier::new().as_str(),
    );
    assert_eq!(thief.get(&cb).await.status, 403);
    let fresh = gw.client();
    assert_eq!(fresh.get(&cb).await.status, 403, "no site cookie at all");
    let again = gw.client();
    again.set_cookie(
        "app.localhost",
        "__Host-gatehouse",
        &browser.cookie("app.localhost", "__Host-gatehouse").unwrap(),
    );
    assert_eq!(
        again.get(&cb).await.status,
        403,
        "even the right cookie cannot use a code twice"
    );
    let before = backend.count();
    assert_eq!(thief.get(&gw.url("app.localhost", "/")).await.status, 302);
    assert_eq!(backend.count(), before);
}

/// A code presented with another browser's site cookie admits nobody, and is burnt.
#[tokio::test]
async fn code_with_other_cookie_admits_nobody() {
    let (_backend, gw) = two_sites().await;
    let browser = gw.client();
    let cb = callback_url(&browser, &gw, "app.localhost").await;
    let attacker = gw.client();
    let _ = attacker.get(&gw.url("app.localhost", "/")).await; // gets a site cookie of its own
    assert!(
        attacker
            .cookie("app.localhost", "__Host-gatehouse")
            .is_some()
    );
    assert_eq!(attacker.get(&cb).await.status, 403);
    assert_eq!(
        browser.get(&cb).await.status,
        403,
        "the failed try burnt the code"
    );
    assert_eq!(browser.get(&gw.url("app.localhost", "/")).await.status, 302);
}

/// A code minted for one site is refused by another.
#[tokio::test]
async fn code_for_other_site_refused() {
    let (_backend, gw) = two_sites().await;
    let browser = gw.client();
    let cb = callback_url(&browser, &gw, "app.localhost").await;
    let cookie = browser.cookie("app.localhost", "__Host-gatehouse").unwrap();
    browser.set_cookie("wiki.localhost", "__Host-gatehouse", &cookie);
    let on_wiki = cb.replace("app.localhost", "wiki.localhost");
    assert_eq!(browser.get(&on_wiki).await.status, 403);
    assert_eq!(
        browser.get(&gw.url("wiki.localhost", "/")).await.status,
        302,
        "not admitted on the wiki"
    );
}

/// An expired code admits nobody.
#[tokio::test]
async fn expired_code_refused() {
    let backend = Backend::start().await;
    let gw = Gateway::builder()
        .portal("code_ttl = \"1s\"")
        .user("alice", "alice-pw", 3)
        .site("app", &backend.url())
        .start()
        .await;
    let browser = gw.client();
    let cb = callback_url(&browser, &gw, "app.localhost").await;
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    assert_eq!(browser.get(&cb).await.status, 403);
    assert_eq!(browser.get(&gw.url("app.localhost", "/")).await.status, 302);
    assert_eq!(backend.count(), 0);
}

/// A site cookie an attacker obtained and pushed through a victim's signed-in browser never
/// becomes the victim's session (login CSRF / session swap).
#[tokio::test]
async fn pushed_site_cookie_never_becomes_victims_session() {
    let (backend, gw) = two_sites().await;
    let victim = signed_in_browser(&gw, "wiki.localhost", "alice", "alice-pw").await;
    // The attacker gets a fresh site cookie and the portal URL that carries its hash.
    let attacker = gw.client();
    let lure = attacker
        .get(&gw.url("app.localhost", "/"))
        .await
        .location()
        .unwrap();
    // The victim's browser is made to open that URL; the portal knows the victim.
    let minted = victim.get(&lure).await;
    assert_eq!(minted.status, 303);
    let cb = minted.location().unwrap();
    // The victim's browser carries its own (or no) app cookie: refused.
    assert_eq!(victim.get(&cb).await.status, 403);
    // The attacker, with the cookie the code was bound to, cannot use the burnt code either.
    assert_eq!(attacker.get(&cb).await.status, 403);
    assert_eq!(
        attacker.get(&gw.url("app.localhost", "/")).await.status,
        302
    );
    assert!(
        backend
            .requests()
            .iter()
            .all(|r| r.headers.get("x-auth-user").is_some())
    );
    assert_eq!(
        backend
            .requests()
            .iter()
            .filter(|r| r
                .headers
                .get("host")
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("app."))
            .count(),
        0
    );
}

/// Redirect targets outside the configured sites land on "/".
#[tokio::test]
async fn redirect_targets_checked() {
    let (_backend, gw) = two_sites().await;
    for evil in [
        "//evil.example/",
        "/\\evil.example",
        "https:evil.example",
        "https://evil.example/",
        "/%2F%2Fevil.example",
        "%2F%2Fevil.example",
        "/\t/evil",
        "https://app.localhost@evil.example/",
    ] {
        let browser = gw.client();
        let first = browser.get(&gw.url("app.localhost", "/")).await;
        // Forge the rd parameter the gate sent to the portal.
        let login = first.location().unwrap();
        let forged = format!(
            "{}&rd={}",
            login.split("&rd=").next().unwrap(),
            form_urlencoded::byte_serialize(evil.as_bytes()).collect::<String>()
        );
        let form = browser.get(&forged).await;
        let posted = submit_login(&browser, &gw, &form.body, "alice", "alice-pw").await;
        let landed = browser.get(&posted.location().unwrap()).await;
        assert_eq!(landed.status, 302, "{evil}");
        assert_eq!(
            landed.header("location"),
            Some("/"),
            "rd {evil:?} must land on /"
        );
    }
}

/// Other methods than GET/HEAD get 401 without a cookie, never a redirect.
#[tokio::test]
async fn post_without_session_is_401() {
    let (backend, gw) = two_sites().await;
    let browser = gw.client();
    let res = browser
        .post_form(&gw.url("app.localhost", "/submit"), &[("a", "b")])
        .await;
    assert_eq!(res.status, 401);
    assert_eq!(backend.count(), 0);
}

/// With `public_url`s naming other ports than the one the gateway listens on (the app as if
/// behind an edge on 9443, the portal on 8443), the gate sends browsers to the portal's
/// origin, the portal hands them back to the app's callback on the app's origin, and the
/// allow-lists take the app on 9443, not on the listen port. The test client reaches the
/// gateway whatever port a URL names, as a port mapping in front of it would.
#[tokio::test]
async fn public_urls_give_each_host_its_port() {
    let backend = Backend::start().await;
    let gw = Gateway::builder()
        .portal("public_url = \"https://auth.localhost:8443\"")
        .user("alice", "alice-pw", 3)
        .site_with(
            "app",
            &backend.url(),
            "public_url = \"https://app.localhost:9443/\"",
        )
        .site("wiki", &backend.url())
        .start()
        .await;
    assert_ne!(gw.port, 9443);
    let browser = gw.client();
    let first = browser.get(&gw.url("app.localhost", "/docs?x=1")).await;
    assert_eq!(first.status, 302, "{first:?}");
    let login = first.location().unwrap();
    assert!(
        login.starts_with("https://auth.localhost:8443/login?site=app&"),
        "{login}"
    );
    let form = browser.get(&login).await;
    assert_eq!(form.status, 200, "{form:?}");
    let csp = form.header("content-security-policy").unwrap();
    assert!(
        csp.contains(&format!(
            "form-action 'self' https://app.localhost:9443 https://auth.localhost:8443 https://wiki.localhost:{}",
            gw.port
        )),
        "{csp}"
    );
    let posted = submit_login(&browser, &gw, &form.body, "alice", "alice-pw").await;
    assert_eq!(posted.status, 303, "{posted:?}");
    let callback = posted.location().unwrap();
    assert!(
        callback.starts_with("https://app.localhost:9443/.gatehouse/callback?code="),
        "{callback}"
    );
    let landed = browser.get(&callback).await;
    assert_eq!(landed.status, 302, "{landed:?}");
    assert_eq!(landed.header("location"), Some("/docs?x=1"));

    // A site without public_url keeps the listen port.
    let first = browser.get(&gw.url("wiki.localhost", "/w")).await;
    let handed = browser.get(&first.location().unwrap()).await;
    assert_eq!(handed.status, 303, "{handed:?}");
    assert!(
        handed
            .location()
            .unwrap()
            .starts_with(&gw.url("wiki.localhost", "/.gatehouse/callback?code=")),
        "{handed:?}"
    );

    // The callback follows an absolute target on the app's public origin only.
    let listen_port_target = gw.url("app.localhost", "/x");
    for (rd, lands) in [
        (
            "https://app.localhost:9443/x",
            "https://app.localhost:9443/x",
        ),
        (listen_port_target.as_str(), "/"),
    ] {
        let site_cookie = gatehouse::crypto::Identifier::new();
        browser.set_cookie("app.localhost", "__Host-gatehouse", site_cookie.as_str());
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("site", "app")
            .append_pair("h", &site_cookie.hash().to_b64())
            .append_pair("rd", rd)
            .finish();
        let minted = browser
            .get(&format!("https://auth.localhost:8443/login?{query}"))
            .await;
        assert_eq!(minted.status, 303, "{minted:?}");
        let landed = browser.get(&minted.location().unwrap()).await;
        assert_eq!(landed.status, 302, "{landed:?}");
        assert_eq!(landed.header("location"), Some(lands), "rd {rd}");
    }

    // Sign-out from the app goes to the portal's origin and back to the app's.
    let out = browser
        .get("https://app.localhost:9443/.gatehouse/logout")
        .await;
    assert_eq!(out.status, 302, "{out:?}");
    let logout = out.location().unwrap();
    assert_eq!(
        logout,
        "https://auth.localhost:8443/logout?rd=https%3A%2F%2Fapp.localhost%3A9443%2F.gatehouse%2Fsigned-out"
    );
    let page = browser.get(&logout).await;
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(
        form_field(&page.body, "rd").as_deref(),
        Some("https://app.localhost:9443/.gatehouse/signed-out")
    );

    // The plain-HTTP listener sends each host to its own origin.
    let (status, headers, _) = client::plain_request(gw.redirect, "app.localhost", "/a?b=1").await;
    assert_eq!(status, 308);
    assert_eq!(headers["location"], "https://app.localhost:9443/a?b=1");
    let (_, headers, _) = client::plain_request(gw.redirect, "auth.localhost", "/").await;
    assert_eq!(headers["location"], "https://auth.localhost:8443/");
}

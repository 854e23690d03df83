//! End to end in a real browser (headless Chromium through chromedriver): the SPEC §3
//! hand-off works with a browser's own cookie, redirect, CSP and form handling, not only with
//! the test client. Sign in on one site, reach a second without a password, sign out
//! everywhere from the first, and both sites ask for a password again.
//!
//! Needs the Debian packages `chromium` and `chromium-driver`; fails (never skips) without.

mod common;

use common::webdriver::{Driver, Session};
use common::*;

/// What the `builtin:echo` backend received, read from the JSON page Chromium shows.
async fn echoed(browser: &Session<'_>) -> serde_json::Value {
    // Chromium wraps a JSON response in <pre> (plus its own pretty-print controls).
    let text = browser.find("pre").await.text().await;
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("the backend page is not JSON ({e}): {text}"))
}

/// The sign-in form is on the portal and the backend did not answer.
async fn assert_refused(browser: &Session<'_>, gw: &Gateway, host: &str) {
    browser.goto(&gw.url(host, "/")).await;
    browser.wait_url(&gw.url("auth.localhost", "/login?")).await;
    browser
        .find("form[action='/login'] input[name=password]")
        .await;
    assert!(
        !browser.source().await.contains("x-auth-user"),
        "{host} must not be proxied after sign-out"
    );
}

/// Sign in, single sign-on to a second site, sign out everywhere: all in headless Chromium.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_sign_in_sso_and_sign_out() {
    let driver = Driver::start().await;
    let gw = Gateway::builder()
        .user_with("alice", "alice-pw", 3, "site_levels = { wiki = 5 }")
        .site("app", "builtin:echo")
        .site("wiki", "builtin:echo")
        .start()
        .await;
    let browser = driver.session().await;

    // An unknown browser is sent to the portal's sign-in form.
    browser.goto(&gw.url("app.localhost", "/hello?x=1")).await;
    browser.wait_url(&gw.url("auth.localhost", "/login?")).await;
    let username = browser
        .find("form[action='/login'] input[name=username]")
        .await;
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(docs.join("signin.png"), browser.screenshot().await).unwrap();

    // Typing and clicking (not posting by hand) proves the CSP lets the form post and follow
    // the redirect chain back to the site.
    username.send_keys("alice").await;
    browser
        .find("input[name=password]")
        .await
        .send_keys("alice-pw")
        .await;
    browser
        .find("form[action='/login'] button[type=submit]")
        .await
        .click()
        .await;
    browser
        .wait_url(&gw.url("app.localhost", "/hello?x=1"))
        .await;
    let seen = echoed(&browser).await;
    assert_eq!(
        seen["path"], "/hello?x=1",
        "lands on the original URL: {seen}"
    );
    assert_eq!(seen["headers"]["x-auth-user"], "alice", "{seen}");
    assert_eq!(seen["headers"]["x-auth-level"], "3", "{seen}");
    let cookies = seen["headers"]["cookie"].as_str().unwrap_or("");
    assert!(
        !cookies.contains("__Host-gatehouse"),
        "the site cookie is not forwarded: {seen}"
    );

    // The wiki: the portal knows this browser, so no form; straight to the wiki's page.
    browser.goto(&gw.url("wiki.localhost", "/w")).await;
    browser.wait_url(&gw.url("wiki.localhost", "/w")).await;
    let seen = echoed(&browser).await;
    assert_eq!(seen["headers"]["x-auth-user"], "alice", "{seen}");
    assert_eq!(
        seen["headers"]["x-auth-level"], "5",
        "the wiki's own level: {seen}"
    );

    // Sign out from the app: a confirmation page on the portal, one button for every site.
    browser
        .goto(&gw.url("app.localhost", "/.gatehouse/logout"))
        .await;
    browser.wait_url(&gw.url("auth.localhost", "/logout")).await;
    let button = browser
        .find("form[action='/logout'] button[type=submit]")
        .await;
    assert_eq!(button.text().await, "Sign out of every site");
    button.click().await;
    let deadline = std::time::Instant::now() + common::webdriver::WAIT;
    while !browser
        .source()
        .await
        .contains("You are signed out of every site.")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no sign-out page:\n{}",
            browser.source().await
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // Both sites now refuse this browser and show the sign-in form again.
    assert_refused(&browser, &gw, "app.localhost").await;
    assert_refused(&browser, &gw, "wiki.localhost").await;

    // A CSP that blocked the stylesheet or a form would show up here, not as a failed step.
    let console = browser.console().await;
    assert!(
        !console
            .iter()
            .any(|m| m.contains("Content Security Policy")),
        "CSP violations: {console:#?}"
    );

    browser.quit().await;
}

/// Wait until the page holds `text`.
async fn wait_text(browser: &Session<'_>, text: &str) {
    let deadline = std::time::Instant::now() + common::webdriver::WAIT;
    while !browser.source().await.contains(text) {
        assert!(
            std::time::Instant::now() < deadline,
            "no {text:?} in:\n{}",
            browser.source().await
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The account page's forms work in a real browser, which sends `Origin` and
/// `Sec-Fetch-Site` with them (the page refuses posts from other origins): choose an idle
/// timeout, then sign this session out; no CSP violation on the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_account_page_forms() {
    let driver = Driver::start().await;
    let gw = Gateway::builder()
        .user("alice", "alice-pw", 3)
        .site("app", "builtin:echo")
        .start()
        .await;
    let browser = driver.session().await;
    browser.goto(&gw.url("app.localhost", "/")).await;
    browser.wait_url(&gw.url("auth.localhost", "/login?")).await;
    browser
        .find("input[name=username]")
        .await
        .send_keys("alice")
        .await;
    browser
        .find("input[name=password]")
        .await
        .send_keys("alice-pw")
        .await;
    browser
        .find("form[action='/login'] button[type=submit]")
        .await
        .click()
        .await;
    browser.wait_url(&gw.url("app.localhost", "/")).await;

    browser.goto(&gw.url("auth.localhost", "/")).await;
    wait_text(&browser, "(this session)").await;
    let field = browser.find("input[name=idle_timeout]").await;
    field.clear().await;
    field.send_keys("5").await;
    browser
        .find("form:has(input[name=idle_timeout]) button[type=submit]")
        .await
        .click()
        .await;
    browser
        .wait_url(&gw.url("auth.localhost", "/?saved=idle_timeout"))
        .await;
    wait_text(&browser, "<strong>5 minutes</strong> without activity.").await;

    browser
        .find("form:has(input[name=session]) button[type=submit]")
        .await
        .click()
        .await;
    wait_text(&browser, "You are signed out of every site.").await;
    browser.goto(&gw.url("app.localhost", "/")).await;
    browser.wait_url(&gw.url("auth.localhost", "/login?")).await;

    let console = browser.console().await;
    assert!(
        !console
            .iter()
            .any(|m| m.contains("Content Security Policy")),
        "CSP violations: {console:#?}"
    );
    browser.quit().await;
}

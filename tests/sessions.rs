//! SPEC §4: the portal's session table is authoritative; gates hold entries for each user's
//! own idle timeout minus cache_margin; sign-out ends the session on every site at once;
//! user changes made in the store reach running sessions.

mod common;

use std::time::Duration;

use common::*;
use gatehouse::store::Store;

async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// Sign-out from one site ends the session on every site, at once (single process).
#[tokio::test]
async fn sign_out_everywhere() {
    let (backend, gw) = two_sites().await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    assert_eq!(
        browser.follow(&gw.url("wiki.localhost", "/")).await.status,
        200
    );

    let to_portal = browser
        .get(&gw.url("wiki.localhost", "/.gatehouse/logout"))
        .await;
    assert_eq!(to_portal.status, 302);
    let confirm = browser.get(&to_portal.location().unwrap()).await;
    assert_eq!(confirm.status, 200);
    assert_eq!(
        browser.get(&gw.url("app.localhost", "/")).await.status,
        200,
        "a GET alone signs nobody out"
    );
    let csrf = form_field(&confirm.body, "csrf").unwrap();
    let rd = form_field(&confirm.body, "rd").unwrap();
    assert_eq!(rd, gw.url("wiki.localhost", "/.gatehouse/signed-out"));
    let done = browser
        .post_form(
            &gw.url("auth.localhost", "/logout"),
            &[("csrf", &csrf), ("rd", &rd)],
        )
        .await;
    assert_eq!(done.status, 200);
    assert_eq!(done.header("cache-control"), Some("no-store"));
    assert!(
        browser
            .cookie("auth.localhost", "__Host-gatehouse-portal")
            .is_none(),
        "portal cookie cleared"
    );

    let before = backend.count();
    assert_eq!(browser.get(&gw.url("app.localhost", "/")).await.status, 302);
    assert_eq!(
        browser.get(&gw.url("wiki.localhost", "/")).await.status,
        302
    );
    assert_eq!(backend.count(), before);
}

/// Sign-out is a POST with the CSRF token: a forged post does nothing.
#[tokio::test]
async fn sign_out_needs_csrf() {
    let backend = Backend::start().await;
    let gw = Gateway::builder()
        .user("alice", "alice-pw", 3)
        .site("app", &backend.url())
        .start()
        .await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    let res = browser
        .post_form(&gw.url("auth.localhost", "/logout"), &[("csrf", "forged")])
        .await;
    assert_eq!(res.status, 403);
    assert_eq!(browser.get(&gw.url("app.localhost", "/")).await.status, 200);
}

/// Each user's own idle timeout: the short one is refused after it, the long one is not.
#[tokio::test]
async fn idle_timeout_per_user() {
    let backend = Backend::start().await;
    let gw = Gateway::builder()
        .portal("idle_timeout = \"2s\"\nmax_idle_timeout = \"30s\"\ncache_margin = \"1s\"\nsync_interval = \"1s\"")
        .user("short", "pw", 3)
        .user_with("long", "pw", 3, "idle_timeout = \"20s\"")
        .site("app", &backend.url())
        .start()
        .await;
    let short = signed_in_browser(&gw, "app.localhost", "short", "pw").await;
    let long = signed_in_browser(&gw, "app.localhost", "long", "pw").await;
    sleep_ms(3000).await;
    assert_eq!(
        short.get(&gw.url("app.localhost", "/")).await.status,
        302,
        "idle longer than 2s"
    );
    assert_eq!(long.get(&gw.url("app.localhost", "/")).await.status, 200);
    // The portal also refuses to hand the short one on without a new sign-in.
    let again = short.get(&gw.url("app.localhost", "/")).await;
    let form = short.get(&again.location().unwrap()).await;
    assert_eq!(form.status, 200, "the sign-in form again");
    assert!(form.body.contains("name=\"password\""));
}

/// Activity keeps a session alive past its idle timeout: the gate renews its entry on use
/// and reports use at each sync, so the portal does not expire a busy session.
#[tokio::test]
async fn activity_keeps_session() {
    let backend = Backend::start().await;
    let gw = Gateway::builder()
        .portal("idle_timeout = \"2s\"\ncache_margin = \"1s\"\nsync_interval = \"1s\"")
        .user("alice", "pw", 3)
        .site("app", &backend.url())
        .site("wiki", &backend.url())
        .start()
        .await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "pw").await;
    for _ in 0..10 {
        sleep_ms(500).await;
        assert_eq!(browser.get(&gw.url("app.localhost", "/")).await.status, 200);
    }
    // 5 s after sign-in, the portal still knows the browser: SSO to the wiki needs no form.
    let wiki = browser.get(&gw.url("wiki.localhost", "/")).await;
    let portal = browser.get(&wiki.location().unwrap()).await;
    assert_eq!(
        portal.status, 303,
        "the portal session was kept alive by the gate's sync"
    );
}

/// The gate's entry lives idle_timeout − cache_margin; after that the gate asks the portal,
/// which still admits a session within its own idle timeout.
#[tokio::test]
async fn gate_asks_portal_after_entry_expiry() {
    let backend = Backend::start().await;
    let gw = Gateway::builder()
        .portal("idle_timeout = \"3s\"\ncache_margin = \"2s\"\nsync_interval = \"30s\"")
        .user("alice", "pw", 3)
        .site("app", &backend.url())
        .start()
        .await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "pw").await;
    sleep_ms(1500).await;
    let _ = gw.metric("gatehouse_table_entries").await; // runs moka's pending expiries
    assert_eq!(
        gw.metric("gatehouse_table_entries").await,
        Some(0.0),
        "entry gone after 1 s"
    );
    assert_eq!(
        browser.get(&gw.url("app.localhost", "/")).await.status,
        200,
        "portal re-admits within 3 s"
    );
    assert_eq!(gw.metric("gatehouse_table_entries").await, Some(1.0));
}

/// The absolute timeout ends even a busy session.
#[tokio::test]
async fn absolute_timeout() {
    let backend = Backend::start().await;
    let gw = Gateway::builder()
        .portal("idle_timeout = \"2s\"\nabsolute_timeout = \"3s\"\ncache_margin = \"1s\"\nsync_interval = \"1s\"")
        .user("alice", "pw", 3)
        .site("app", &backend.url())
        .start()
        .await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "pw").await;
    let mut last = 200;
    for _ in 0..9 {
        sleep_ms(500).await;
        last = browser.get(&gw.url("app.localhost", "/")).await.status;
    }
    assert_eq!(
        last, 302,
        "4.5 s after sign-in, past the 3 s absolute limit"
    );
}

/// Changes made in the store by another process (the CLI) reach running sessions: a level
/// change is seen without signing in again; disabling ends the session.
#[tokio::test]
async fn store_changes_reach_sessions() {
    let backend = Backend::start().await;
    let gw = Gateway::builder()
        .user("alice", "pw", 3)
        .site("app", &backend.url())
        .start()
        .await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "pw").await;
    let store = gatehouse::store::SqliteStore::open(&gw.store_path()).unwrap();
    store
        .set_level("alice", gatehouse::config::Level(4), None)
        .unwrap();
    let mut level = String::new();
    for _ in 0..40 {
        sleep_ms(100).await;
        let res = browser.get(&gw.url("app.localhost", "/")).await;
        assert_eq!(res.status, 200);
        level = backend.last().headers["x-auth-level"]
            .to_str()
            .unwrap()
            .to_string();
        if level == "4" {
            break;
        }
    }
    assert_eq!(level, "4");
    store.set_disabled("alice", true).unwrap();
    let mut status = 200;
    for _ in 0..40 {
        sleep_ms(100).await;
        status = browser.get(&gw.url("app.localhost", "/")).await.status;
        if status != 200 {
            break;
        }
    }
    assert_eq!(status, 302);
}

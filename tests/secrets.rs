//! SPEC §5: the master password is never kept, and site passwords live only in memory.
//! After a full flow (form sign-in, single sign-on to a second derived site, an API client,
//! a demo echo backend, sign-out), neither appears — in clear or inside a Basic header — in
//! the SQLite file (and its WAL), in the logs captured at TRACE level, in `/metrics`, or in
//! any response a browser or client received.
//!
//! Its own test binary: the log capture is a process-wide tracing subscriber.

mod common;

use common::*;
use http::Method;

const MASTER: &str = "m4ster passw0rd of alice";

fn derived(derive_id: &str) -> String {
    format!("[sites.backend_auth]\nmode = \"derived\"\nderive_id = {derive_id:?}\n")
}

/// Every form a secret could take on the way: the text itself and Basic headers with it.
fn forms_of(secret: &str) -> Vec<String> {
    use base64::Engine;
    let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
    vec![
        secret.to_string(),
        b64(format!("alice:{secret}")),
        basic("alice", secret),
    ]
}

fn assert_absent(place: &str, haystack: &[u8], secrets: &[String]) {
    for s in secrets {
        let found = haystack.windows(s.len()).any(|w| w == s.as_bytes());
        assert!(
            !found,
            "{place} contains a secret ({} bytes searched)",
            haystack.len()
        );
    }
}

/// A full flow leaves no trace of the master password or any SP outside memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_and_site_passwords_leave_no_trace() {
    let logs = capture_logs();

    let sp_app = expected_sp(MASTER, "app.example");
    let sp_wiki = expected_sp(MASTER, "wiki.example");
    let sp_echo = expected_sp(MASTER, "echo.example");
    let app = Backend::with_logins(&[("alice", &sp_app)]).await;
    let wiki = Backend::with_logins(&[("alice", &sp_wiki)]).await;
    let gw = Gateway::builder()
        .user("alice", MASTER, 3)
        .site_with(
            "app",
            &app.url(),
            &format!("allow_basic = true\n{}", derived("app.example")),
        )
        .site_with("wiki", &wiki.url(), &derived("wiki.example"))
        .site_with("other", "builtin:echo", &derived("echo.example"))
        .start()
        .await;

    // A browser: one wrong attempt, then sign-in, single sign-on to two more derived sites.
    let browser = gw.client().recording();
    let first = browser.get(&gw.url("app.localhost", "/")).await;
    let form = browser.get(&first.location().unwrap()).await;
    let wrong = submit_login(&browser, &gw, &form.body, "alice", "not it").await;
    assert_eq!(wrong.status, 401);
    let posted = submit_login(&browser, &gw, &wrong.body, "alice", MASTER).await;
    assert_eq!(posted.status, 303, "{posted:?}");
    assert_eq!(
        browser.follow(&posted.location().unwrap()).await.status,
        200
    );
    assert_eq!(
        browser.follow(&gw.url("wiki.localhost", "/")).await.status,
        200
    );
    let echoed = browser.follow(&gw.url("other.localhost", "/")).await;
    assert_eq!(echoed.status, 200);
    assert_eq!(
        echoed.json()["headers"]["authorization"],
        "[sensitive: not shown]",
        "the echo backend got a credential and does not show it"
    );
    browser
        .get(&gw.url("app.localhost", "/.gatehouse/whoami"))
        .await;
    browser.get(&gw.url("auth.localhost", "/")).await;

    // An API client with the master password on the allow_basic derived site.
    let api = gw.client().recording();
    let res = api
        .request(
            Method::GET,
            &gw.url("app.localhost", "/api"),
            &[("authorization", &basic("alice", MASTER))],
            "".into(),
        )
        .await;
    assert_eq!(res.status, 200, "{res:?}");
    // Both backends really got their SPs (so the secrets searched for are the real ones).
    assert_eq!(app.last().headers["authorization"], basic("alice", &sp_app));
    assert_eq!(
        wiki.last().headers["authorization"],
        basic("alice", &sp_wiki)
    );

    // Sign out everywhere.
    let out_page = browser.get(&gw.url("auth.localhost", "/logout")).await;
    let csrf = form_field(&out_page.body, "csrf").unwrap();
    let out = browser
        .post_form(&gw.url("auth.localhost", "/logout"), &[("csrf", &csrf)])
        .await;
    assert_eq!(out.status, 200);

    let mut secrets = forms_of(MASTER);
    for sp in [&sp_app, &sp_wiki, &sp_echo] {
        secrets.extend(forms_of(sp));
    }
    let (_, metrics) = gw.admin_get("/metrics").await;
    assert!(metrics.contains("gatehouse_signins_total"));
    assert_absent("/metrics", metrics.as_bytes(), &secrets);
    let transcript = browser.transcript() + &api.transcript();
    assert!(
        transcript.contains("x-auth-user"),
        "the transcript is recorded"
    );
    assert_absent("a response to the browser", transcript.as_bytes(), &secrets);

    let store = gw.store_path();
    let wal = store.with_extension("db-wal");
    let read = |p: &std::path::Path| std::fs::read(p).unwrap_or_default();
    assert!(!read(&store).is_empty() || !read(&wal).is_empty());
    assert_absent("the store's WAL", &read(&wal), &secrets);
    assert_absent("the store", &read(&store), &secrets);
    gw.stop().await;
    assert_absent("the store after shutdown", &read(&store), &secrets);
    assert_absent("the store's WAL after shutdown", &read(&wal), &secrets);

    let captured = logs.0.lock().unwrap().clone();
    let text = String::from_utf8_lossy(&captured);
    assert!(text.contains("signed in"), "logs were captured:\n{text}");
    assert!(
        text.contains("DEBUG") || text.contains("TRACE"),
        "at every level"
    );
    assert_absent("the logs", &captured, &secrets);
}

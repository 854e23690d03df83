//! A derived site added by a reload (SIGHUP) while users are signed in (issue 5 point 6,
//! issue 6 point 8): their sessions hold no site password for it, so the portal asks for
//! the password again rather than forwarding without credentials; the other sites carry on
//! without a new sign-in.
//!
//! This file holds one test on purpose: it sends SIGHUP to its own process, which every
//! gateway running in that process would act on.

mod common;

use std::time::Duration;

use common::*;

const MASTER: &str = "alice-pw";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn derived_site_added_by_reload_asks_for_the_password() {
    let app = Backend::start().await;
    let legacy = Backend::with_logins(&[("alice", &expected_sp(MASTER, "legacy.example"))]).await;
    let gw = Gateway::builder()
        .user("alice", MASTER, 3)
        .site("app", &app.url())
        .start()
        .await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", MASTER).await;
    assert_eq!(
        browser.get(&gw.url("wiki.localhost", "/")).await.status,
        421
    );

    // The operator adds a derived site and reloads.
    let mut text = std::fs::read_to_string(&gw.config_path).unwrap();
    text += &format!(
        "\n[[sites]]\nid = \"wiki\"\nhost = \"wiki.localhost\"\nbackend = {:?}\n\
         [sites.backend_auth]\nmode = \"derived\"\nderive_id = \"legacy.example\"\n",
        legacy.url()
    );
    std::fs::write(&gw.config_path, text).unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    let mut handed = None;
    for _ in 0..50 {
        let res = browser.get(&gw.url("wiki.localhost", "/w")).await;
        if res.status == 302 {
            handed = Some(res);
            break;
        }
        assert_eq!(res.status, 421, "before the reload: {res:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let login = handed.expect("the new site was never served");
    let form = browser.get(&login.location().unwrap()).await;
    assert_eq!(
        form.status, 200,
        "the portal asks, it does not hand over: {form:?}"
    );
    assert!(
        form.body.contains("Enter your password again"),
        "{}",
        form.body
    );
    assert_eq!(
        legacy.count(),
        0,
        "nothing reached the legacy site without its password"
    );

    let posted = submit_login(&browser, &gw, &form.body, "alice", MASTER).await;
    assert_eq!(posted.status, 303, "{posted:?}");
    let res = browser.follow(&posted.location().unwrap()).await;
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(
        legacy.last().headers["authorization"],
        basic("alice", &expected_sp(MASTER, "legacy.example"))
    );

    // The site that was there before the reload: served at once, no new hand-off.
    let again = browser.get(&gw.url("app.localhost", "/still")).await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(app.last().path, "/still");
}

//! SPEC §6: the account page on the portal (`/`): who you are, your sites, your active
//! sessions ("sign out this session"), your devices ("forget this device") and your own
//! idle timeout, which reaches the gates' entries at their next sync.

mod common;

use std::time::{Duration, Instant};

use common::*;

async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// The account page of a signed-in browser.
async fn account_page(browser: &Client, gw: &Gateway) -> Resp {
    let res = browser.get(&gw.url("auth.localhost", "/")).await;
    assert_eq!(res.status, 200, "{res:?}");
    res
}

/// Post one action of the account page, with the page's CSRF token.
async fn post_action(
    browser: &Client,
    gw: &Gateway,
    html: &str,
    fields: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> Resp {
    let csrf = form_field(html, "csrf").expect("a CSRF token on the page");
    let mut all = vec![("csrf", csrf.as_str())];
    all.extend_from_slice(fields);
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&all)
        .finish();
    let mut h = vec![("content-type", "application/x-www-form-urlencoded")];
    h.extend_from_slice(headers);
    browser
        .request(
            http::Method::POST,
            &gw.url("auth.localhost", "/"),
            &h,
            bytes::Bytes::from(body),
        )
        .await
}

/// Every `value` of a hidden field `name` on the page, in order.
fn all_fields(html: &str, name: &str) -> Vec<String> {
    let needle = format!("name=\"{name}\" value=\"");
    html.match_indices(&needle)
        .map(|(i, _)| {
            let start = i + needle.len();
            html[start..start + html[start..].find('"').unwrap()].to_string()
        })
        .collect()
}

/// The reference of the session marked "(this session)".
fn this_session(html: &str) -> String {
    let at = html.find("(this session)").expect("this session is marked");
    form_field(&html[at..], "session").unwrap()
}

fn db(gw: &Gateway) -> rusqlite::Connection {
    rusqlite::Connection::open(gw.store_path()).unwrap()
}

fn stored_idle(gw: &Gateway, user: &str) -> Option<i64> {
    db(gw)
        .query_row(
            "SELECT idle_timeout_secs FROM users WHERE name = ?1",
            [user],
            |r| r.get(0),
        )
        .unwrap()
}

/// Who you are, your sites (with the first access, once recorded), this session with its
/// sites; every value escaped; never cached.
#[tokio::test]
async fn shows_who_sites_and_sessions() {
    let backend = Backend::start().await;
    let gw = Gateway::builder()
        .user_with("a<b>&\"c", "pw", 3, "site_levels = { wiki = 5 }")
        .site("app", &backend.url())
        .site("wiki", &backend.url())
        .start()
        .await;
    let browser = signed_in_browser(&gw, "app.localhost", "a<b>&\"c", "pw").await;
    // The first access is recorded in the background.
    let mut page = account_page(&browser, &gw).await;
    for _ in 0..50 {
        if page.body.contains("first used") {
            break;
        }
        sleep_ms(100).await;
        page = account_page(&browser, &gw).await;
    }
    let html = &page.body;
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert!(
        html.contains("<dd>a&lt;b&gt;&amp;&quot;c</dd>") && !html.contains("a<b>"),
        "escaped: {html}"
    );
    assert!(html.contains("<dt>Level</dt><dd>3</dd>"), "{html}");
    let app = &html[html.find(">app</a>").expect("a link to app")..];
    assert!(
        app.starts_with(">app</a>: <span class=\"muted\">level 3; first used 20"),
        "{app}"
    );
    let wiki = &html[html.find(">wiki</a>").expect("a link to wiki")..];
    assert!(
        wiki.starts_with(">wiki</a>: <span class=\"muted\">level 5; not used yet"),
        "{wiki}"
    );
    assert!(html.contains(&format!(
        "href=\"{}/\"",
        gw.url("wiki.localhost", "").trim_end_matches('/')
    )));
    assert_eq!(all_fields(html, "session").len(), 1, "one session");
    assert!(html.contains("(this session)"));
    assert!(html.contains("sites: app</span>"), "{html}");
    assert!(html.contains("name=\"idle_timeout\""));
    assert_eq!(
        all_fields(html, "device").len(),
        1,
        "this browser, recorded as a node at sign-in"
    );
}

/// Without a session the page sends you to sign in, and its forms do nothing.
#[tokio::test]
async fn needs_a_session() {
    let (_backend, gw) = two_sites().await;
    let browser = gw.client();
    let res = browser.get(&gw.url("auth.localhost", "/")).await;
    assert_eq!(
        (res.status, res.location()),
        (302, Some(gw.url("auth.localhost", "/login")))
    );
    let res = browser
        .post_form(
            &gw.url("auth.localhost", "/"),
            &[
                ("csrf", "x"),
                ("action", "idle_timeout"),
                ("idle_timeout", "5"),
            ],
        )
        .await;
    assert_eq!(res.status, 403);
}

/// "Sign out this session" ends another session of yours on every site at once and leaves
/// this one; on this session it signs this browser out.
#[tokio::test]
async fn sign_out_one_session() {
    let (backend, gw) = two_sites().await;
    let first = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    let second = signed_in_browser(&gw, "wiki.localhost", "alice", "alice-pw").await;
    let page = account_page(&first, &gw).await;
    let refs = all_fields(&page.body, "session");
    assert_eq!(refs.len(), 2, "both sessions listed");
    let mine = this_session(&page.body);
    let theirs = refs.iter().find(|r| **r != mine).unwrap().clone();
    assert!(
        page.body.contains("sites: wiki</span>"),
        "the other one's sites"
    );

    let done = post_action(
        &first,
        &gw,
        &page.body,
        &[("action", "end_session"), ("session", &theirs)],
        &[],
    )
    .await;
    assert_eq!(
        (done.status, done.location()),
        (303, Some(gw.url("auth.localhost", "/?saved=session")))
    );
    let before = backend.count();
    assert_eq!(
        second.get(&gw.url("wiki.localhost", "/")).await.status,
        302,
        "signed out there"
    );
    assert_eq!(backend.count(), before);
    assert_eq!(
        first.get(&gw.url("app.localhost", "/")).await.status,
        200,
        "this one stays"
    );
    let page = first.get(&done.location().unwrap()).await;
    assert_eq!(all_fields(&page.body, "session"), vec![mine.clone()]);
    assert!(page.body.contains("That session is signed out"));

    let done = post_action(
        &first,
        &gw,
        &page.body,
        &[("action", "end_session"), ("session", &mine)],
        &[],
    )
    .await;
    assert_eq!(done.status, 200);
    assert!(
        first
            .cookie("auth.localhost", "__Host-gatehouse-portal")
            .is_none(),
        "portal cookie cleared"
    );
    assert_eq!(first.get(&gw.url("app.localhost", "/")).await.status, 302);
}

/// The page's posts need the CSRF token and must not come from another origin; refused
/// ones change nothing. Another user's session cannot be named.
#[tokio::test]
async fn posts_need_token_and_same_origin() {
    let backend = Backend::start().await;
    let gw = Gateway::builder()
        .user("alice", "pw", 3)
        .user("bob", "pw", 3)
        .site("app", &backend.url())
        .start()
        .await;
    let alice = signed_in_browser(&gw, "app.localhost", "alice", "pw").await;
    let bob = signed_in_browser(&gw, "app.localhost", "bob", "pw").await;
    let page = account_page(&alice, &gw).await;
    let set = [("action", "idle_timeout"), ("idle_timeout", "5")];
    let forged = page
        .body
        .replace(&form_field(&page.body, "csrf").unwrap(), "forged");
    assert_eq!(
        post_action(&alice, &gw, &forged, &set, &[]).await.status,
        403
    );
    for headers in [
        &[("origin", "https://app.localhost")][..],
        &[("origin", "null"), ("sec-fetch-site", "cross-site")],
        &[("sec-fetch-site", "cross-site")],
        &[("sec-fetch-site", "same-site")],
    ] {
        let res = post_action(&alice, &gw, &page.body, &set, headers).await;
        assert_eq!(res.status, 403, "{headers:?}");
    }
    assert_eq!(stored_idle(&gw, "alice"), None, "nothing changed");
    // What Chromium sends with our no-referrer pages' own posts.
    let browser_like = [("origin", "null"), ("sec-fetch-site", "same-origin")];
    let res = post_action(
        &alice,
        &gw,
        &page.body,
        &[("action", "idle_timeout"), ("idle_timeout", "7")],
        &browser_like,
    )
    .await;
    assert_eq!(res.status, 303, "{res:?}");
    assert_eq!(stored_idle(&gw, "alice"), Some(420));
    let origin = gw.url("auth.localhost", "");
    let ok = post_action(
        &alice,
        &gw,
        &page.body,
        &set,
        &[
            ("origin", origin.trim_end_matches('/')),
            ("sec-fetch-site", "same-origin"),
        ],
    )
    .await;
    assert_eq!(ok.status, 303, "{ok:?}");
    assert_eq!(stored_idle(&gw, "alice"), Some(300));

    // Bob's own session reference, posted by alice with her token, ends nothing.
    let bobs = this_session(&account_page(&bob, &gw).await.body);
    let res = post_action(
        &alice,
        &gw,
        &page.body,
        &[("action", "end_session"), ("session", &bobs)],
        &[],
    )
    .await;
    assert_eq!(res.status, 303);
    assert_eq!(
        bob.get(&gw.url("app.localhost", "/")).await.status,
        200,
        "bob still signed in"
    );
}

/// The idle timeout is chosen from 1 minute to max_idle_timeout, in whole minutes; 0 only
/// where allow_no_idle_limit permits it; a refused choice says why and changes nothing.
#[tokio::test]
async fn idle_timeout_range() {
    let backend = Backend::start().await;
    let gw = Gateway::builder()
        .portal("max_idle_timeout = \"45m\"")
        .user("alice", "pw", 3)
        .site("app", &backend.url())
        .start()
        .await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "pw").await;
    let page = account_page(&browser, &gw).await;
    assert!(
        page.body.contains("without activity (the default)"),
        "{}",
        page.body
    );
    assert!(page.body.contains("<strong>15 minutes</strong>"));
    for bad in ["0", "46", "", "abc", "2.5", "-1", "1e3"] {
        let res = post_action(
            &browser,
            &gw,
            &page.body,
            &[("action", "idle_timeout"), ("idle_timeout", bad)],
            &[],
        )
        .await;
        assert_eq!(res.status, 400, "{bad:?} refused");
        assert!(
            res.body
                .contains("Choose a whole number of minutes from 1 to 45."),
            "{}",
            res.body
        );
    }
    assert_eq!(stored_idle(&gw, "alice"), None);
    for (typed, secs) in [("1", 60), ("45", 2700)] {
        let res = post_action(
            &browser,
            &gw,
            &page.body,
            &[("action", "idle_timeout"), ("idle_timeout", typed)],
            &[],
        )
        .await;
        assert_eq!(res.status, 303);
        assert_eq!(stored_idle(&gw, "alice"), Some(secs));
    }
    let page = account_page(&browser, &gw).await;
    assert!(
        page.body
            .contains("<strong>45 minutes</strong> without activity."),
        "{}",
        page.body
    );

    let gw = Gateway::builder()
        .portal("allow_no_idle_limit = true")
        .user("alice", "pw", 3)
        .site("app", &backend.url())
        .start()
        .await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "pw").await;
    let page = account_page(&browser, &gw).await;
    let res = post_action(
        &browser,
        &gw,
        &page.body,
        &[("action", "idle_timeout"), ("idle_timeout", "0")],
        &[],
    )
    .await;
    assert_eq!(res.status, 303);
    assert_eq!(stored_idle(&gw, "alice"), Some(0));
    assert!(
        account_page(&browser, &gw)
            .await
            .body
            .contains("<strong>no idle limit</strong>")
    );
    assert_eq!(browser.get(&gw.url("app.localhost", "/")).await.status, 200);
}

/// Lowering your idle timeout to 1 minute reaches the entry the gate holds for your
/// session at its next sync: the entry is kept (not revoked) and expires on the new
/// schedule (1 min − cache_margin 58 s = 2 s after the sync) instead of the old one
/// (10 min − 58 s); then the portal, whose session is still within its minute, admits
/// the browser again.
#[tokio::test]
async fn lowered_idle_timeout_reaches_gate_entries() {
    let backend = Backend::start().await;
    let gw = Gateway::builder()
        .portal("idle_timeout = \"10m\"\ncache_margin = \"58s\"\nsync_interval = \"1s\"")
        .user("alice", "pw", 3)
        .site("app", &backend.url())
        .start()
        .await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "pw").await;
    assert_eq!(gw.metric("gatehouse_table_entries").await, Some(1.0));
    // The old schedule: nothing happens to the entry for minutes.
    sleep_ms(2500).await;
    assert_eq!(
        gw.metric("gatehouse_table_entries").await,
        Some(1.0),
        "lives 9 min 2 s"
    );

    let page = account_page(&browser, &gw).await;
    let res = post_action(
        &browser,
        &gw,
        &page.body,
        &[("action", "idle_timeout"), ("idle_timeout", "1")],
        &[],
    )
    .await;
    assert_eq!(res.status, 303);
    let posted = Instant::now();
    sleep_ms(1300).await;
    // Within one sync the gate has the new value; its expiry counts from then (2 s), so the
    // entry is still there: recomputed, not dropped.
    assert_eq!(
        gw.metric("gatehouse_table_entries").await,
        Some(1.0),
        "kept, not revoked"
    );
    let mut gone = None;
    while posted.elapsed() < Duration::from_secs(30) {
        if gw.metric("gatehouse_table_entries").await == Some(0.0) {
            gone = Some(posted.elapsed());
            break;
        }
        sleep_ms(200).await;
    }
    let gone = gone.expect("the entry expired on the new schedule, not after 9 minutes");
    assert!(
        gone >= Duration::from_millis(1900),
        "not before its new 2 s: {gone:?}"
    );

    let before = backend.count();
    assert_eq!(
        browser.get(&gw.url("app.localhost", "/")).await.status,
        200,
        "the portal admits again"
    );
    assert_eq!(backend.count(), before + 1);
    assert_eq!(gw.metric("gatehouse_table_entries").await, Some(1.0));
}

/// "Your devices" lists the nodes the account was used on; "forget this device" removes
/// the account's row for it only, and cannot touch another account's.
#[tokio::test]
async fn forget_a_device() {
    let backend = Backend::start().await;
    let gw = Gateway::builder()
        .user("alice", "pw", 3)
        .user("bob", "pw", 3)
        .site("app", &backend.url())
        .start()
        .await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "pw").await;
    db(&gw)
        .execute_batch(
            "INSERT INTO nodes (id, cookie_hash, created_at, last_seen) VALUES (41, x'01', 1700000000, 1700003600), (42, x'02', 1700000000, 1700000000);
             INSERT INTO node_accounts (node_id, account_id, first_seen, last_seen)
               SELECT 41, id, 1700000000, 1700003600 FROM accounts WHERE name = 'alice';
             INSERT INTO node_accounts (node_id, account_id, first_seen, last_seen)
               SELECT 42, id, 1700000000, 1700000000 FROM accounts WHERE name = 'bob';",
        )
        .unwrap();
    let page = account_page(&browser, &gw).await;
    assert!(page.body.contains("Device 41"), "{}", page.body);
    assert!(
        page.body
            .contains("first used 2023-11-14 22:13 UTC, last used 2023-11-14 23:13 UTC")
    );
    assert!(
        !page.body.contains("Device 42"),
        "bob's device is not alice's"
    );
    // This browser's own node (recorded at sign-in) and the one added above.
    let devices = all_fields(&page.body, "device");
    assert_eq!(devices.len(), 2, "{devices:?}");
    assert!(devices.contains(&"41".to_string()) && !devices.contains(&"42".to_string()));

    let res = post_action(
        &browser,
        &gw,
        &page.body,
        &[("action", "forget_device"), ("device", "42")],
        &[],
    )
    .await;
    assert_eq!(res.status, 303);
    let rows = |gw: &Gateway| -> i64 {
        db(gw)
            .query_row("SELECT count(*) FROM node_accounts", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(rows(&gw), 3, "bob's row untouched");
    let res = post_action(
        &browser,
        &gw,
        &page.body,
        &[("action", "forget_device"), ("device", "41")],
        &[],
    )
    .await;
    assert_eq!(
        (res.status, res.location()),
        (303, Some(gw.url("auth.localhost", "/?saved=device")))
    );
    assert_eq!(rows(&gw), 2);
    let page = browser.get(&res.location().unwrap()).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("That device is forgotten."),
        "{}",
        page.body
    );
    assert!(!page.body.contains("Device 41"));
}

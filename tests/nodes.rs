//! SPEC §6: nodes (a lasting node cookie, the node and its accounts in the store), linking
//! accounts used on one node (`/link`), and roaming on a shared computer — against the
//! real gateway on 127.0.0.1:0.

mod common;

use common::*;

const NODE: &str = "__Host-gatehouse-node";
const PORTAL: &str = "__Host-gatehouse-portal";

/// Site `app` in front of a recording backend; users alice, bob and carol.
async fn gateway() -> (Backend, Gateway) {
    let backend = Backend::start().await;
    let gw = Gateway::builder()
        .user("alice", "alice-password", 3)
        .user("bob", "bob-password", 2)
        .user("carol", "carol-password", 2)
        .site("app", &backend.url())
        .start()
        .await;
    (backend, gw)
}

/// The gateway's store, read directly (once the gateway has answered a request).
fn db(gw: &Gateway) -> rusqlite::Connection {
    rusqlite::Connection::open(gw.store_path()).unwrap()
}

fn count(gw: &Gateway, sql: &str) -> i64 {
    db(gw).query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Wait until `n` first accesses to sites are in the store: the portal notes each one in
/// the background after the hand-off (SPEC §6), so a snapshot taken at once could miss it.
async fn first_accesses_noted(gw: &Gateway, n: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while count(gw, "SELECT count(*) FROM account_sites") < n {
        assert!(
            std::time::Instant::now() < deadline,
            "first accesses never noted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Every row of the tables a link touches, as text: equal before and after means nothing
/// changed.
fn snapshot(gw: &Gateway) -> String {
    let c = db(gw);
    let mut out = String::new();
    for sql in [
        "SELECT id, name FROM accounts ORDER BY id",
        "SELECT name, account_id, revision FROM users ORDER BY name",
        "SELECT account_id, site, first_access FROM account_sites ORDER BY 1, 2",
        "SELECT account_id, site, day, requests, bytes_in, bytes_out FROM usage ORDER BY 1, 2, 3",
        "SELECT node_id, account_id FROM node_accounts ORDER BY 1, 2",
        "SELECT node_id, account_a, account_b FROM node_kept_apart ORDER BY 1, 2, 3",
        "SELECT merged_name, into_account FROM account_merges ORDER BY 1",
    ] {
        let mut stmt = c.prepare(sql).unwrap();
        let n = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                Ok((0..n)
                    .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                    .collect::<Vec<_>>()
                    .join("|"))
            })
            .unwrap();
        for row in rows {
            out.push_str(&row.unwrap());
            out.push('\n');
        }
        out.push_str("--\n");
    }
    out
}

/// From `app` to the sign-in form, posted with `extra` fields; the portal's answer.
async fn post_login(
    browser: &Client,
    gw: &Gateway,
    user: &str,
    password: &str,
    extra: &[(&str, &str)],
) -> Resp {
    let html = login_form(browser, gw, "app.localhost").await;
    let mut fields: Vec<(&str, String)> = vec![
        ("username", user.to_string()),
        ("password", password.to_string()),
    ];
    fields.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    for name in ["csrf", "site", "h", "rd"] {
        if let Some(v) = form_field(&html, name) {
            fields.push((name, v));
        }
    }
    let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    browser
        .post_form(&gw.url("auth.localhost", "/login"), &pairs)
        .await
}

/// Every `Set-Cookie` of a response that sets cookie `name`.
fn set_cookies<'a>(res: &'a Resp, name: &str) -> Vec<&'a str> {
    res.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| v.starts_with(&format!("{name}=")))
        .collect()
}

/// Does a `Set-Cookie` make a lasting cookie?
fn lasting(set_cookie: &str) -> bool {
    set_cookie.split(';').any(|a| {
        let a = a.trim().to_ascii_lowercase();
        (a.starts_with("max-age=") && a != "max-age=0") || a.starts_with("expires=")
    })
}

/// Sign out everywhere through the portal; the answer to the POST.
async fn sign_out(browser: &Client, gw: &Gateway) -> Resp {
    let confirm = browser.get(&gw.url("auth.localhost", "/logout")).await;
    assert_eq!(confirm.status, 200, "{confirm:?}");
    let csrf = form_field(&confirm.body, "csrf").expect("signed in");
    browser
        .post_form(&gw.url("auth.localhost", "/logout"), &[("csrf", &csrf)])
        .await
}

/// `user` signs in on `browser` from `app`, is offered the link page; returns it.
async fn link_offer(browser: &Client, gw: &Gateway, user: &str, password: &str) -> Resp {
    let posted = post_login(browser, gw, user, password, &[]).await;
    assert_eq!(posted.status, 303, "{posted:?}");
    let to = posted.location().unwrap();
    assert!(
        to.starts_with(&gw.url("auth.localhost", "/link?")),
        "sent to the link page: {to}"
    );
    let page = browser.get(&to).await;
    assert_eq!(page.status, 200, "{page:?}");
    page
}

/// Post the link form in `html` with `fields`.
async fn post_link(browser: &Client, gw: &Gateway, html: &str, fields: &[(&str, &str)]) -> Resp {
    let mut all: Vec<(&str, String)> = fields.iter().map(|(k, v)| (*k, v.to_string())).collect();
    for name in ["csrf", "site", "h", "rd"] {
        if let Some(v) = form_field(html, name) {
            all.push((name, v));
        }
    }
    let pairs: Vec<(&str, &str)> = all.iter().map(|(k, v)| (*k, v.as_str())).collect();
    browser
        .post_form(&gw.url("auth.localhost", "/link"), &pairs)
        .await
}

/// alice, then bob, on one browser (alice signs out in between); carol on another. Returns
/// the browser, on bob's link page.
async fn two_accounts_on_one_browser(gw: &Gateway) -> (Client, Resp) {
    let browser = signed_in_browser(gw, "app.localhost", "alice", "alice-password").await;
    signed_in_browser(gw, "app.localhost", "carol", "carol-password").await;
    assert_eq!(sign_out(&browser, gw).await.status, 200);
    let page = link_offer(&browser, gw, "bob", "bob-password").await;
    first_accesses_noted(gw, 2).await;
    (browser, page)
}

/// Usage rows of one account, as (site, day, requests, bytes_in, bytes_out).
fn usage(gw: &Gateway, account: &str) -> Vec<(String, String, i64, i64, i64)> {
    let c = db(gw);
    let mut stmt = c
        .prepare(
            "SELECT u.site, u.day, u.requests, u.bytes_in, u.bytes_out FROM usage u
             JOIN accounts a ON a.id = u.account_id WHERE a.name = ?1 ORDER BY 1, 2",
        )
        .unwrap();
    stmt.query_map([account], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn add_usage(gw: &Gateway, account: &str, day: &str, requests: i64) {
    db(gw)
        .execute(
            "INSERT INTO usage (account_id, site, day, requests, bytes_in, bytes_out)
             SELECT id, 'app', ?2, ?3, ?3 * 10, ?3 * 100 FROM accounts WHERE name = ?1",
            rusqlite::params![account, day, requests],
        )
        .unwrap();
}

/// A sign-in sets a lasting node cookie (400 days, with the `__Host-` attributes the
/// client checks, on a no-store answer); the store registers the node by the cookie's hash
/// only, with the account; signing in again keeps and renews the same node.
#[tokio::test]
async fn sign_in_sets_node_cookie_and_registers_node() {
    let (_backend, gw) = gateway().await;
    let browser = gw.client();
    let posted = post_login(&browser, &gw, "alice", "alice-password", &[]).await;
    assert_eq!(posted.status, 303, "{posted:?}");
    let set = set_cookies(&posted, NODE);
    assert_eq!(set.len(), 1, "{posted:?}");
    assert!(set[0].ends_with("; Max-Age=34560000"), "{}", set[0]);
    for portal in set_cookies(&posted, PORTAL) {
        assert!(!lasting(portal), "the portal cookie is a session cookie");
    }
    let node = browser.cookie("auth.localhost", NODE).expect("node cookie");
    let hash = gatehouse::crypto::IdHash::of(node.as_bytes()).0.to_vec();
    let stored: Vec<u8> = db(&gw)
        .query_row("SELECT cookie_hash FROM nodes", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, hash, "only the hash is stored");
    assert_eq!(
        count(
            &gw,
            "SELECT count(*) FROM node_accounts na JOIN accounts a ON a.id = na.account_id WHERE a.name = 'alice'"
        ),
        1
    );
    assert_eq!(
        browser.follow(&posted.location().unwrap()).await.status,
        200
    );
    assert!(
        browser.cookie("app.localhost", NODE).is_none(),
        "the node cookie is the portal's alone"
    );

    sign_out(&browser, &gw).await;
    assert_eq!(browser.cookie("auth.localhost", NODE), Some(node.clone()));
    let again = post_login(&browser, &gw, "alice", "alice-password", &[]).await;
    assert_eq!(again.status, 303);
    assert_eq!(set_cookies(&again, NODE).len(), 1, "renewed");
    assert_eq!(browser.cookie("auth.localhost", NODE), Some(node));
    assert_eq!(count(&gw, "SELECT count(*) FROM nodes"), 1);
    assert_eq!(count(&gw, "SELECT count(*) FROM node_accounts"), 1);
}

/// A second account signing in on the same browser is offered to link with the first,
/// and only with accounts seen on this browser; every form carries its CSRF token.
#[tokio::test]
async fn second_account_on_one_browser_is_offered_link() {
    let (_backend, gw) = gateway().await;
    let (browser, page) = two_accounts_on_one_browser(&gw).await;
    assert!(page.body.contains("value=\"alice\""), "{}", page.body);
    assert!(
        !page.body.contains("carol"),
        "carol never used this browser"
    );
    assert!(page.body.contains("name=\"password\""));
    assert!(page.body.contains("value=\"apart\""));
    assert_eq!(count(&gw, "SELECT count(*) FROM nodes"), 2);

    // A forged form is refused and changes nothing.
    let before = snapshot(&gw);
    let forged = browser
        .post_form(
            &gw.url("auth.localhost", "/link"),
            &[
                ("csrf", "forged"),
                ("choice", "link"),
                ("account", "alice"),
                ("password", "alice-password"),
            ],
        )
        .await;
    assert_eq!(forged.status, 403);
    assert_eq!(snapshot(&gw), before);
    // An account not offered cannot be named.
    let other = post_link(
        &browser,
        &gw,
        &page.body,
        &[
            ("choice", "link"),
            ("account", "carol"),
            ("password", "carol-password"),
        ],
    )
    .await;
    assert_eq!(other.status, 400);
    assert_eq!(snapshot(&gw), before);
}

/// Confirming with a wrong password is refused and changes nothing in the store.
#[tokio::test]
async fn link_with_wrong_password_is_refused() {
    let (_backend, gw) = gateway().await;
    let (browser, page) = two_accounts_on_one_browser(&gw).await;
    add_usage(&gw, "alice", "2026-11-25", 1);
    add_usage(&gw, "bob", "2026-11-25", 2);
    let before = snapshot(&gw);
    for password in ["wrong", "bob-password", ""] {
        let refused = post_link(
            &browser,
            &gw,
            &page.body,
            &[
                ("choice", "link"),
                ("account", "alice"),
                ("password", password),
            ],
        )
        .await;
        assert_eq!(refused.status, 401, "{password:?}: {refused:?}");
        assert!(refused.body.contains("Wrong password"), "{}", refused.body);
        assert_eq!(snapshot(&gw), before, "nothing changed");
    }
    assert_eq!(count(&gw, "SELECT count(*) FROM accounts"), 3);
}

/// Confirming with the other account's password merges this account into it: one account,
/// users, sites, usage (summed) and nodes moved, the merge recorded; the browser goes on to
/// the site, where the gate already shows the merged account.
#[tokio::test]
async fn link_with_right_password_merges_accounts() {
    let (backend, gw) = gateway().await;
    let (browser, page) = two_accounts_on_one_browser(&gw).await;
    add_usage(&gw, "alice", "2026-11-25", 1);
    add_usage(&gw, "bob", "2026-11-25", 2);
    add_usage(&gw, "bob", "2026-11-26", 4);
    let linked = post_link(
        &browser,
        &gw,
        &page.body,
        &[
            ("choice", "link"),
            ("account", "alice"),
            ("password", "alice-password"),
        ],
    )
    .await;
    assert_eq!(linked.status, 303, "{linked:?}");
    let res = browser.follow(&linked.location().unwrap()).await;
    assert_eq!(res.status, 200, "on to the site: {res:?}");
    let seen = backend.last();
    assert_eq!(seen.headers["x-auth-user"], "bob");
    assert_eq!(seen.headers["x-auth-account"], "alice");

    assert_eq!(
        count(&gw, "SELECT count(*) FROM accounts WHERE name = 'bob'"),
        0
    );
    assert_eq!(
        count(
            &gw,
            "SELECT count(DISTINCT account_id) FROM users WHERE name IN ('alice', 'bob')"
        ),
        1
    );
    assert_eq!(
        usage(&gw, "alice"),
        [
            ("app".into(), "2026-11-25".into(), 3, 30, 300),
            ("app".into(), "2026-11-26".into(), 4, 40, 400)
        ]
    );
    assert_eq!(
        count(
            &gw,
            "SELECT count(*) FROM account_sites s JOIN accounts a ON a.id = s.account_id WHERE a.name = 'alice'"
        ),
        1
    );
    assert_eq!(
        count(
            &gw,
            "SELECT count(*) FROM account_merges m JOIN accounts a ON a.id = m.into_account WHERE a.name = 'alice' AND m.merged_name = 'bob'"
        ),
        1
    );
    assert_eq!(
        count(&gw, "SELECT count(*) FROM node_accounts"),
        2,
        "one per node"
    );
    // The usage report shows the merge: bob's traffic under alice, and bob named.
    let (status, report) = gw
        .admin_get("/report?account=alice&from=2026-11-25&to=2026-11-26&format=json")
        .await;
    assert_eq!(status, 200, "{report}");
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report[0]["merged"], serde_json::json!(["bob"]), "{report}");
    assert_eq!(report[0]["total"]["requests"], 7, "{report}");
    let (_, csv) = gw
        .admin_get("/report?account=alice&from=2026-11-25&to=2026-11-26")
        .await;
    assert!(csv.contains("\nalice,bob,7,70,700,"), "{csv}");

    // Nothing left to offer on this browser.
    sign_out(&browser, &gw).await;
    let again = post_login(&browser, &gw, "bob", "bob-password", &[]).await;
    assert_eq!(again.status, 303);
    assert!(
        again.location().unwrap().contains("/.gatehouse/callback"),
        "{again:?}"
    );
}

/// Keeping the accounts apart continues to the site and is not asked again on this node.
#[tokio::test]
async fn keep_apart_is_not_asked_again() {
    let (_backend, gw) = gateway().await;
    let (browser, page) = two_accounts_on_one_browser(&gw).await;
    let before = count(&gw, "SELECT count(*) FROM accounts");
    let apart = post_link(&browser, &gw, &page.body, &[("choice", "apart")]).await;
    assert_eq!(apart.status, 303, "{apart:?}");
    assert_eq!(browser.follow(&apart.location().unwrap()).await.status, 200);
    assert_eq!(count(&gw, "SELECT count(*) FROM accounts"), before);
    assert_eq!(count(&gw, "SELECT count(*) FROM node_kept_apart"), 1);

    for (user, password) in [("bob", "bob-password"), ("alice", "alice-password")] {
        sign_out(&browser, &gw).await;
        let again = post_login(&browser, &gw, user, password, &[]).await;
        assert_eq!(again.status, 303);
        assert!(
            again.location().unwrap().contains("/.gatehouse/callback"),
            "{user} is not asked again: {again:?}"
        );
    }
    // GET /link has nothing to offer either: on with the hand-off.
    let link = browser.get(&gw.url("auth.localhost", "/link")).await;
    assert_eq!(link.status, 303);
    assert_eq!(link.location().unwrap(), gw.url("auth.localhost", "/"));
}

/// "This is a shared computer": no node cookie, no lasting cookie anywhere, no node noted
/// (also when the browser already holds another user's node cookie, which stays as it
/// is), no link offer; sign-out ends the session everywhere, clears the portal cookie and
/// asks the browser to clear the sites' data.
#[tokio::test]
async fn shared_computer_leaves_nothing() {
    let (_backend, gw) = gateway().await;
    let browser = gw.client();
    let posted = post_login(
        &browser,
        &gw,
        "bob",
        "bob-password",
        &[("shared_computer", "1")],
    )
    .await;
    assert_eq!(posted.status, 303, "{posted:?}");
    assert!(set_cookies(&posted, NODE).is_empty(), "{posted:?}");
    let mut answers = vec![posted.clone()];
    let mut url = posted.location().unwrap();
    loop {
        let res = browser.get(&url).await;
        answers.push(res.clone());
        match res.location() {
            Some(next) if (300..400).contains(&res.status) => url = next,
            _ => break,
        }
    }
    assert_eq!(answers.last().unwrap().status, 200);
    for res in &answers {
        for sc in res.headers.get_all("set-cookie") {
            assert!(!lasting(sc.to_str().unwrap()), "lasting cookie: {sc:?}");
        }
    }
    assert!(browser.cookie("auth.localhost", NODE).is_none());
    assert_eq!(count(&gw, "SELECT count(*) FROM nodes"), 0);
    assert_eq!(count(&gw, "SELECT count(*) FROM node_accounts"), 0);

    let out = sign_out(&browser, &gw).await;
    assert_eq!(out.status, 200);
    assert_eq!(
        out.header("clear-site-data"),
        Some("\"cache\", \"cookies\", \"storage\"")
    );
    assert!(browser.cookie("auth.localhost", PORTAL).is_none());
    assert_eq!(
        browser.get(&gw.url("app.localhost", "/")).await.status,
        302,
        "signed out on the site too"
    );

    // A browser with alice's node cookie, used by bob as a shared computer.
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "alice-password").await;
    sign_out(&browser, &gw).await;
    let node = browser.cookie("auth.localhost", NODE).unwrap();
    first_accesses_noted(&gw, 2).await;
    let before = snapshot(&gw);
    let posted = post_login(
        &browser,
        &gw,
        "bob",
        "bob-password",
        &[("shared_computer", "on")],
    )
    .await;
    assert_eq!(posted.status, 303);
    assert!(
        posted.location().unwrap().contains("/.gatehouse/callback"),
        "no link offer: {posted:?}"
    );
    assert!(set_cookies(&posted, NODE).is_empty());
    assert_eq!(browser.cookie("auth.localhost", NODE), Some(node));
    assert_eq!(snapshot(&gw), before, "bob is not noted on alice's node");
    let out = sign_out(&browser, &gw).await;
    assert!(out.header("clear-site-data").is_some());

    // An ordinary sign-out does not clear the browser (its node cookie stays).
    let browser = signed_in_browser(&gw, "app.localhost", "carol", "carol-password").await;
    let out = sign_out(&browser, &gw).await;
    assert_eq!(out.header("clear-site-data"), None);
    assert!(browser.cookie("auth.localhost", NODE).is_some());
}

/// The link form's password check is the sign-in throttle's: after the allowed failures
/// even the right password is held (429, `Retry-After`), and nothing changes, so the form
/// is no way round the throttle to guess another account's password.
#[tokio::test]
async fn link_password_check_is_throttled() {
    let backend = Backend::start().await;
    let gw = Gateway::builder()
        .portal("signin_throttle = { failures = 2, address_failures = 100, user_failures = 100, max_delay = \"1h\" }")
        .user("alice", "alice-password", 3)
        .user("bob", "bob-password", 2)
        .user("carol", "carol-password", 2)
        .site("app", &backend.url())
        .start()
        .await;
    let (browser, page) = two_accounts_on_one_browser(&gw).await;
    let before = snapshot(&gw);
    for password in ["wrong", "also wrong"] {
        let res = post_link(
            &browser,
            &gw,
            &page.body,
            &[
                ("choice", "link"),
                ("account", "alice"),
                ("password", password),
            ],
        )
        .await;
        assert_eq!(res.status, 401, "{res:?}");
    }
    let held = post_link(
        &browser,
        &gw,
        &page.body,
        &[
            ("choice", "link"),
            ("account", "alice"),
            ("password", "alice-password"),
        ],
    )
    .await;
    assert_eq!(held.status, 429, "{held:?}");
    assert!(held.header("retry-after").is_some());
    assert_eq!(snapshot(&gw), before, "nothing changed");
    // The sign-in form for alice from this address is held too: one throttle.
    let other = gw.client();
    let form = login_form(&other, &gw, "app.localhost").await;
    let res = submit_login(&other, &gw, &form, "alice", "alice-password").await;
    assert_eq!(res.status, 429, "{res:?}");
}

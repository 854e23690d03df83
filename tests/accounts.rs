//! SPEC §6: accounts in the store, self-registration with a temporary password sent by mail
//! (the outbox), and choosing an own password — against the real gateway on 127.0.0.1:0.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;

/// Sites `app` (open to registration, Basic allowed) and `wiki` (closed); user `alice`.
async fn gateway(portal_line: &str) -> (Backend, Gateway) {
    let backend = Backend::start().await;
    let gw = Gateway::builder()
        .portal(portal_line)
        .user("alice", "alice-password", 3)
        .user("bob@example.org", "bob-password", 2)
        .site_with(
            "app",
            &backend.url(),
            "registration = true\nallow_basic = true",
        )
        .site("wiki", &backend.url())
        .start()
        .await;
    (backend, gw)
}

fn outbox_dir(gw: &Gateway) -> PathBuf {
    gw.dir.path().join("data/outbox")
}

/// Every message in the outbox, oldest first (by name: `<unix time>-<random>.eml`); fails
/// on a leftover temporary file.
fn outbox(gw: &Gateway) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(outbox_dir(gw)) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    paths.sort();
    for p in &paths {
        assert!(
            p.extension().is_some_and(|e| e == "eml"),
            "stray file {p:?}"
        );
    }
    paths
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

/// The temporary password in a welcome mail.
fn temporary_password(mail: &str) -> String {
    let line = mail
        .lines()
        .find(|l| l.starts_with("Temporary password:"))
        .unwrap_or_else(|| panic!("no temporary password in {mail}"));
    line["Temporary password:".len()..].trim().to_string()
}

fn header<'a>(mail: &'a str, name: &str) -> &'a str {
    let prefix = format!("{name}: ");
    mail.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name} in {mail}"))
}

/// The gateway's store, read directly. Open it only once the gateway has answered a
/// request: before that, opening would create an empty file under the starting gateway.
fn db(gw: &Gateway) -> rusqlite::Connection {
    rusqlite::Connection::open(gw.store_path()).unwrap()
}

fn count(gw: &Gateway, sql: &str, arg: &str) -> i64 {
    db(gw).query_row(sql, [arg], |r| r.get(0)).unwrap()
}

/// From a site's page to the portal's registration form (via "New user?").
async fn registration_form(browser: &Client, gw: &Gateway, host: &str, path: &str) -> Resp {
    let first = browser.get(&gw.url(host, path)).await;
    assert_eq!(first.status, 302, "{first:?}");
    let login = browser.get(&first.location().unwrap()).await;
    assert_eq!(login.status, 200);
    let start = login
        .body
        .find("href=\"/register?")
        .unwrap_or_else(|| panic!("no \"New user?\" link: {}", login.body))
        + "href=\"".len();
    let end = login.body[start..].find('"').unwrap() + start;
    let href = login.body[start..end].replace("&amp;", "&");
    let form = browser.get(&gw.url("auth.localhost", &href)).await;
    assert_eq!(form.status, 200, "{form:?}");
    assert!(form.body.contains("name=\"email\""));
    form
}

/// An answer page with the browser-specific hand-off binding `h` (from the form in `html`)
/// masked, so answers to different browsers compare.
fn masked(res: &Resp, html: &str) -> String {
    res.body.replace(&form_field(html, "h").unwrap(), "<h>")
}

/// Post `fields` to the portal's `path`, with the hidden fields of the form in `html`.
async fn post_with_form(
    browser: &Client,
    gw: &Gateway,
    path: &str,
    html: &str,
    fields: &[(&str, &str)],
) -> Resp {
    let mut all: Vec<(&str, String)> = fields.iter().map(|(k, v)| (*k, v.to_string())).collect();
    for name in ["csrf", "site", "h", "rd"] {
        if let Some(v) = form_field(html, name) {
            all.push((name, v));
        }
    }
    let pairs: Vec<(&str, &str)> = all.iter().map(|(k, v)| (*k, v.as_str())).collect();
    browser
        .post_form(&gw.url("auth.localhost", path), &pairs)
        .await
}

/// Post the registration form found in `html`.
async fn post_registration(browser: &Client, gw: &Gateway, html: &str, email: &str) -> Resp {
    post_with_form(browser, gw, "/register", html, &[("email", email)]).await
}

/// Post the change form found in `html` with the given fields.
async fn post_change(browser: &Client, gw: &Gateway, html: &str, fields: &[(&str, &str)]) -> Resp {
    post_with_form(browser, gw, "/password", html, fields).await
}

/// Register `email` from `host`+`path` and return its temporary password (from the mail).
async fn register(browser: &Client, gw: &Gateway, host: &str, path: &str, email: &str) -> String {
    let before = outbox(gw).len();
    let form = registration_form(browser, gw, host, path).await;
    let done = post_registration(browser, gw, &form.body, email).await;
    assert_eq!(done.status, 200, "{done:?}");
    let mails = outbox(gw);
    assert_eq!(mails.len(), before + 1);
    temporary_password(mails.last().unwrap())
}

/// From a site to the sign-in form, signing in with a temporary password: answered by the
/// change form, not by a hand-off.
async fn temporary_sign_in(
    browser: &Client,
    gw: &Gateway,
    host: &str,
    path: &str,
    user: &str,
    temporary: &str,
) -> Resp {
    let first = browser.get(&gw.url(host, path)).await;
    assert_eq!(first.status, 302, "not admitted yet: {first:?}");
    let form = browser.get(&first.location().unwrap()).await;
    assert_eq!(form.status, 200, "no session yet: {form:?}");
    submit_login(browser, gw, &form.body, user, temporary).await
}

/// Registration end to end: "New user?" on the site's sign-in page, the form, the mail in
/// the outbox, sign-in with the temporary password, the change form before any site, and
/// then the original URL; the account and its first site are in the store.
#[tokio::test]
async fn registration_then_change_form_then_original_url() {
    let (backend, gw) = gateway("temporary_password_ttl = \"2h\"").await;
    let browser = gw.client();
    let temporary = register(
        &browser,
        &gw,
        "app.localhost",
        "/docs?x=1",
        "New.User@Example.org",
    )
    .await;
    let mail = outbox(&gw).pop().unwrap();
    assert_eq!(header(&mail, "To"), "new.user@example.org");
    assert_eq!(header(&mail, "Subject"), "Your temporary password");
    assert_eq!(temporary.len(), 16);

    let user: (i64, Option<i64>, i64, String) = db(&gw)
        .query_row(
            "SELECT u.level, u.temporary_until, a.id, u.site_levels FROM users u JOIN accounts a ON a.id = u.account_id WHERE u.name = 'new.user@example.org'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert_eq!(
        (user.0, user.3.as_str()),
        (0, r#"{"app":1}"#),
        "level 1 on the sites open to registration, 0 elsewhere"
    );
    let until = user.1.expect("the password is temporary");
    assert!(
        (until - now - 7200).abs() < 30,
        "expires after the configured 2h"
    );

    let first = browser.get(&gw.url("app.localhost", "/docs?x=1")).await;
    let login_url = first.location().unwrap();
    let form = browser.get(&login_url).await;
    let change = submit_login(
        &browser,
        &gw,
        &form.body,
        "new.user@example.org",
        &temporary,
    )
    .await;
    assert_eq!(change.status, 200, "{change:?}");
    assert!(
        change.body.contains("name=\"temporary_password\""),
        "{}",
        change.body
    );
    assert!(change.body.contains("name=\"confirm_password\""));
    assert_eq!(change.header("cache-control"), Some("no-store"));
    // No session and no site before the change: the portal still shows the sign-in form.
    let login_again = browser.get(&login_url).await;
    assert_eq!(login_again.status, 200, "{login_again:?}");
    assert!(login_again.body.contains("name=\"password\""));
    let seen = backend.count();

    let done = post_change(
        &browser,
        &gw,
        &change.body,
        &[
            ("temporary_password", &temporary),
            ("new_password", "my own password"),
            ("confirm_password", "my own password"),
        ],
    )
    .await;
    assert_eq!(done.status, 303, "{done:?}");
    assert_eq!(
        seen,
        backend.count(),
        "nothing reached the backend before the change"
    );
    let landed = browser.follow(&done.location().unwrap()).await;
    assert_eq!(landed.status, 200, "{landed:?}");
    assert_eq!(
        landed.url,
        gw.url("app.localhost", "/docs?x=1"),
        "lands where it was going"
    );
    assert_eq!(
        backend.last().headers["x-auth-user"],
        "new.user@example.org"
    );
    assert_eq!(backend.last().headers["x-auth-level"], "1");

    // The first access to `app` is recorded for the account (in the background).
    let mut sites = 0;
    for _ in 0..50 {
        sites = count(
            &gw,
            "SELECT COUNT(*) FROM account_sites s JOIN accounts a ON a.id = s.account_id WHERE a.name = ?1 AND s.site = 'app'",
            "new.user@example.org",
        );
        if sites == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sites, 1);
    assert_eq!(
        count(
            &gw,
            "SELECT COUNT(*) FROM users WHERE name = ?1 AND temporary_until IS NULL",
            "new.user@example.org"
        ),
        1,
        "the password is now the user's own"
    );

    // The own password signs in from another browser, the address typed in any case.
    let other = gw.client();
    let res = sign_in(
        &other,
        &gw,
        "app.localhost",
        "/",
        "New.User@EXAMPLE.org",
        "my own password",
    )
    .await;
    assert_eq!(res.status, 200);
    assert_eq!(
        backend.last().headers["x-auth-user"],
        "new.user@example.org"
    );
    // A site that left registration off (default `min_level` 1) does not let them in:
    // registering through `app` opened `app`, not every site.
    let seen = backend.count();
    let wiki = other.follow(&gw.url("wiki.localhost", "/")).await;
    assert_eq!(wiki.status, 403, "{wiki:?}");
    assert_eq!(seen, backend.count(), "nothing reached the backend");
    // The answer pages never show the temporary password (tests/registration_secrets.rs
    // checks logs, store and every response).
    assert!(!change.body.contains(&temporary));
}

/// Provisioned users have an account row too, and their first access to each site is kept.
#[tokio::test]
async fn provisioned_users_have_accounts_and_sites() {
    let (_backend, gw) = gateway("").await;
    let browser = signed_in_browser(&gw, "wiki.localhost", "alice", "alice-password").await;
    assert_eq!(
        count(
            &gw,
            "SELECT COUNT(*) FROM accounts WHERE name = ?1",
            "alice"
        ),
        1
    );
    let again = browser.get(&gw.url("wiki.localhost", "/again")).await;
    assert_eq!(again.status, 200);
    let store = gatehouse::store::SqliteStore::open(&gw.store_path()).unwrap();
    let mut sites = Vec::new();
    for _ in 0..50 {
        sites = gatehouse::store::Store::account_sites(&store, "alice").unwrap();
        if !sites.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sites.len(), 1);
    assert_eq!(sites[0].0, "wiki");
}

/// An address already registered gets the same page, a notice mail (no password) and no
/// second account; its password is unchanged.
#[tokio::test]
async fn registration_of_a_known_address() {
    let (_backend, gw) = gateway("").await;
    let first = gw.client();
    let form1 = registration_form(&first, &gw, "app.localhost", "/").await;
    let fresh = post_registration(&first, &gw, &form1.body, "carol@example.org").await;
    let second = gw.client();
    let form2 = registration_form(&second, &gw, "app.localhost", "/").await;
    let again = post_registration(&second, &gw, &form2.body, "Carol@Example.org").await;
    assert_eq!((fresh.status, again.status), (200, 200));
    assert_eq!(
        masked(&fresh, &form1.body),
        masked(&again, &form2.body),
        "no account enumeration"
    );

    // A provisioned user's address: the same answer again, and bob keeps his password.
    let third = gw.client();
    let form3 = registration_form(&third, &gw, "app.localhost", "/").await;
    let bob = post_registration(&third, &gw, &form3.body, "bob@example.org").await;
    assert_eq!(bob.status, 200);
    assert_eq!(
        masked(&bob, &form3.body),
        masked(&fresh, &form1.body).replace("carol@", "bob@")
    );

    let mails = outbox(&gw);
    assert_eq!(mails.len(), 3);
    assert_eq!(header(&mails[0], "Subject"), "Your temporary password");
    for m in &mails[1..] {
        assert_eq!(header(m, "Subject"), "You are already registered");
        assert!(!m.contains("Temporary password"), "{m}");
    }
    assert_eq!(header(&mails[2], "To"), "bob@example.org");
    assert_eq!(
        count(
            &gw,
            "SELECT COUNT(*) FROM users WHERE name = ?1",
            "carol@example.org"
        ),
        1
    );
    assert_eq!(
        count(
            &gw,
            "SELECT COUNT(*) FROM accounts WHERE name LIKE ?1",
            "carol@%"
        ),
        1
    );
    let res = sign_in(
        &gw.client(),
        &gw,
        "wiki.localhost",
        "/",
        "bob@example.org",
        "bob-password",
    )
    .await;
    assert_eq!(res.status, 200);
    // Administrators see who has not chosen a password yet.
    let out = cli(
        &["user", "list", "-c", gw.config_path.to_str().unwrap()],
        "",
        &[],
    );
    let list = String::from_utf8_lossy(&out.stdout);
    let carol = list
        .lines()
        .find(|l| l.starts_with("carol@example.org"))
        .unwrap();
    assert!(carol.contains("temporary"), "{list}");
    let bob = list
        .lines()
        .find(|l| l.starts_with("bob@example.org"))
        .unwrap();
    assert!(bob.contains("active"), "{list}");
}

/// A temporary password past its expiry signs nobody in.
#[tokio::test]
async fn expired_temporary_password_is_refused() {
    let (_backend, gw) = gateway("").await;
    let browser = gw.client();
    let temporary = register(&browser, &gw, "app.localhost", "/", "late@example.org").await;
    db(&gw)
        .execute(
            "UPDATE users SET temporary_until = strftime('%s','now') - 1 WHERE name = 'late@example.org'",
            [],
        )
        .unwrap();
    let res = temporary_sign_in(
        &browser,
        &gw,
        "app.localhost",
        "/",
        "late@example.org",
        &temporary,
    )
    .await;
    assert_eq!(res.status, 401, "{res:?}");
    assert!(!res.body.contains("temporary_password"));
}

/// A temporary password completes one change: afterwards it neither signs in nor completes
/// a second change begun with it meanwhile; it never opens a site through Basic either.
#[tokio::test]
async fn temporary_password_works_once() {
    let (_backend, gw) = gateway("").await;
    let browser = gw.client();
    let temporary = register(&browser, &gw, "app.localhost", "/", "once@example.org").await;
    let basic_try = gw
        .client()
        .request(
            http::Method::GET,
            &gw.url("app.localhost", "/"),
            &[("authorization", &basic("once@example.org", &temporary))],
            bytes::Bytes::new(),
        )
        .await;
    assert_eq!(basic_try.status, 401, "no Basic with a temporary password");

    let other = gw.client();
    let change_a = temporary_sign_in(
        &browser,
        &gw,
        "app.localhost",
        "/",
        "once@example.org",
        &temporary,
    )
    .await;
    let change_b = temporary_sign_in(
        &other,
        &gw,
        "app.localhost",
        "/",
        "once@example.org",
        &temporary,
    )
    .await;
    assert_eq!((change_a.status, change_b.status), (200, 200));
    let fields = |new: &'static str| {
        [
            ("temporary_password", temporary.clone()),
            ("new_password", new.to_string()),
            ("confirm_password", new.to_string()),
        ]
    };
    let a = fields("first own password");
    let a: Vec<(&str, &str)> = a.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let done = post_change(&browser, &gw, &change_a.body, &a).await;
    assert_eq!(done.status, 303, "{done:?}");
    let b = fields("second own password");
    let b: Vec<(&str, &str)> = b.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let late = post_change(&other, &gw, &change_b.body, &b).await;
    assert_eq!(late.status, 401, "{late:?}");

    let again = temporary_sign_in(
        &gw.client(),
        &gw,
        "app.localhost",
        "/",
        "once@example.org",
        &temporary,
    )
    .await;
    assert_eq!(again.status, 401, "{again:?}");
    let res = sign_in(
        &gw.client(),
        &gw,
        "app.localhost",
        "/",
        "once@example.org",
        "first own password",
    )
    .await;
    assert_eq!(res.status, 200);
}

/// Concurrent registrations of one address make exactly one account; every request gets
/// the same answer, one welcome mail and notices for the rest.
#[tokio::test]
async fn concurrent_registrations_make_one_account() {
    // The race needs more requests for one address than the registration limit allows.
    let (_backend, gw) =
        gateway("max_concurrent_hashes = 8\nregistration_limit = { per_address = 100 }").await;
    const N: usize = 8;
    let mut ready = Vec::new();
    for _ in 0..N {
        let browser = gw.client();
        let form = registration_form(&browser, &gw, "app.localhost", "/").await;
        ready.push((browser, form.body));
    }
    let url = gw.url("auth.localhost", "/register");
    let mut tasks = tokio::task::JoinSet::new();
    for (browser, html) in ready {
        let url = url.clone();
        tasks.spawn(async move {
            let mut fields = vec![("email".to_string(), "race@example.org".to_string())];
            for name in ["csrf", "site", "h", "rd"] {
                fields.push((name.to_string(), form_field(&html, name).unwrap()));
            }
            let pairs: Vec<(&str, &str)> = fields
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let res = browser.post_form(&url, &pairs).await;
            (masked(&res, &html), res)
        });
    }
    let mut bodies = Vec::new();
    while let Some(res) = tasks.join_next().await {
        let (body, res) = res.unwrap();
        assert_eq!(res.status, 200, "{res:?}");
        bodies.push(body);
    }
    assert!(bodies.iter().all(|b| *b == bodies[0]));
    assert_eq!(
        count(
            &gw,
            "SELECT COUNT(*) FROM users WHERE name = ?1",
            "race@example.org"
        ),
        1
    );
    assert_eq!(
        count(
            &gw,
            "SELECT COUNT(*) FROM accounts WHERE name LIKE ?1",
            "race@%"
        ),
        1
    );
    let mails = outbox(&gw);
    assert_eq!(mails.len(), N);
    let welcomes = mails
        .iter()
        .filter(|m| header(m, "Subject") == "Your temporary password")
        .count();
    assert_eq!(welcomes, 1);
}

/// A change at `/password` ends the user's other sessions: a second browser signed in as
/// the same user is refused afterwards, while this browser stays signed in.
#[tokio::test]
async fn password_change_revokes_other_sessions() {
    let (_backend, gw) = gateway("").await;
    let mine = signed_in_browser(&gw, "app.localhost", "alice", "alice-password").await;
    let theirs = signed_in_browser(&gw, "app.localhost", "alice", "alice-password").await;
    let form = mine.get(&gw.url("auth.localhost", "/password")).await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains("name=\"current_password\""));
    let done = post_change(
        &mine,
        &gw,
        &form.body,
        &[
            ("current_password", "alice-password"),
            ("new_password", "a brand new password"),
            ("confirm_password", "a brand new password"),
        ],
    )
    .await;
    assert_eq!(done.status, 200, "{done:?}");
    assert_eq!(done.header("cache-control"), Some("no-store"));
    assert!(
        done.header("set-cookie").is_some(),
        "the portal cookie is rotated"
    );

    let refused = theirs.get(&gw.url("app.localhost", "/")).await;
    assert_eq!(
        refused.status, 302,
        "the other browser must sign in again: {refused:?}"
    );
    let portal = theirs.get(&refused.location().unwrap()).await;
    assert_eq!(portal.status, 200, "its portal session is gone too");
    let still = mine.follow(&gw.url("app.localhost", "/")).await;
    assert_eq!(still.status, 200, "{still:?}");
    let old = submit_login(&theirs, &gw, &portal.body, "alice", "alice-password").await;
    assert_eq!(old.status, 401);
    let res = sign_in(
        &gw.client(),
        &gw,
        "wiki.localhost",
        "/",
        "alice",
        "a brand new password",
    )
    .await;
    assert_eq!(res.status, 200);
}

/// A wrong current password (or a bad new one) changes nothing and ends nobody's session.
#[tokio::test]
async fn wrong_current_password_changes_nothing() {
    let (_backend, gw) = gateway("").await;
    let hash = |gw: &Gateway| -> String {
        db(gw)
            .query_row(
                "SELECT password_hash FROM users WHERE name = 'alice'",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    let mine = signed_in_browser(&gw, "app.localhost", "alice", "alice-password").await;
    let before = hash(&gw);
    let theirs = signed_in_browser(&gw, "app.localhost", "alice", "alice-password").await;
    let form = mine.get(&gw.url("auth.localhost", "/password")).await;
    for (current, new, confirm, status) in [
        (
            "not my password",
            "a brand new password",
            "a brand new password",
            401,
        ),
        (
            "alice-password",
            "a brand new password",
            "another new password",
            400,
        ),
        ("alice-password", "short", "short", 400),
    ] {
        let res = post_change(
            &mine,
            &gw,
            &form.body,
            &[
                ("current_password", current),
                ("new_password", new),
                ("confirm_password", confirm),
            ],
        )
        .await;
        assert_eq!(res.status, status, "{res:?}");
        assert!(res.body.contains("role=\"alert\""));
    }
    // A form without its CSRF token is refused outright.
    let forged = mine
        .post_form(
            &gw.url("auth.localhost", "/password"),
            &[
                ("current_password", "alice-password"),
                ("new_password", "a brand new password"),
                ("confirm_password", "a brand new password"),
            ],
        )
        .await;
    assert_eq!(forged.status, 403);
    tokio::time::sleep(Duration::from_millis(2500)).await; // past one store poll
    assert_eq!(hash(&gw), before);
    assert_eq!(theirs.get(&gw.url("app.localhost", "/")).await.status, 200);
    assert_eq!(mine.get(&gw.url("app.localhost", "/")).await.status, 200);
}

/// CR/LF (header injection) and other non-addresses are refused: no user, no mail.
#[tokio::test]
async fn bad_addresses_are_refused() {
    let (_backend, gw) = gateway("").await;
    let browser = gw.client();
    let form = registration_form(&browser, &gw, "app.localhost", "/").await;
    for bad in [
        "x@example.org\r\nBcc: victim@example.org",
        "x@example.org\nBcc: victim@example.org",
        "x@example.org, y@example.org",
        "no-at-sign",
        "a@b@example.org",
        &format!("{}@example.org", "a".repeat(300)),
    ] {
        let res = post_registration(&browser, &gw, &form.body, bad).await;
        assert_eq!(res.status, 400, "{bad:?}: {res:?}");
        assert!(!res.body.contains('\r'));
    }
    assert!(outbox(&gw).is_empty());
    assert_eq!(
        count(
            &gw,
            "SELECT COUNT(*) FROM users WHERE name LIKE ?1",
            "%example.org%"
        ),
        1,
        "only bob"
    );
}

/// Only sites with `registration = true` offer it; `/register` for another site is refused.
#[tokio::test]
async fn registration_only_where_enabled() {
    let (_backend, gw) = gateway("").await;
    let browser = gw.client();
    let first = browser.get(&gw.url("wiki.localhost", "/")).await;
    let login_url = first.location().unwrap();
    let login = browser.get(&login_url).await;
    assert!(!login.body.contains("/register"), "{}", login.body);
    let query = login_url.split_once('?').unwrap().1;
    let res = browser
        .get(&gw.url("auth.localhost", &format!("/register?{query}")))
        .await;
    assert_eq!(res.status, 404);
    let bare = browser.get(&gw.url("auth.localhost", "/register")).await;
    assert_eq!(bare.status, 404);
}

/// What a tiny SMTP sink received: (envelope recipients, message data).
type Received = std::sync::Arc<std::sync::Mutex<Vec<(Vec<String>, String)>>>;

/// An SMTP sink on 127.0.0.1:0: greets 220, answers 250 to commands and 354 to DATA, and
/// keeps each message up to `\r\n.\r\n`.
async fn smtp_sink() -> (u16, Received) {
    smtp_sink_with(None).await
}

/// A relay speaking SMTP over TLS from the first byte (`smtps://`), with the test
/// certificate for `localhost` (signed by the dev CA).
async fn smtps_sink() -> (u16, Received) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("certs");
    let chain = CertificateDer::pem_file_iter(certs.join("localhost.crt"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(certs.join("localhost.key")).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    smtp_sink_with(Some(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(
        config,
    ))))
    .await
}

async fn smtp_sink_with(tls: Option<tokio_rustls::TlsAcceptor>) -> (u16, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Received::default();
    let store = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (store, tls) = (store.clone(), tls.clone());
            tokio::spawn(async move {
                match tls {
                    // A client that does not trust the certificate ends here.
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            smtp_dialogue(stream, store).await;
                        }
                    }
                    None => smtp_dialogue(stream, store).await,
                }
            });
        }
    });
    (port, received)
}

async fn smtp_dialogue<S>(stream: S, store: Received)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let (read, mut write) = tokio::io::split(stream);
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"220 sink\r\n").await.unwrap();
    let mut rcpt = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("DATA") {
            write.write_all(b"354 go on\r\n").await.unwrap();
            let mut data = String::new();
            while let Ok(Some(l)) = lines.next_line().await {
                if l == "." {
                    break;
                }
                data.push_str(&l);
                data.push('\n');
            }
            store
                .lock()
                .unwrap()
                .push((std::mem::take(&mut rcpt), data));
            write.write_all(b"250 queued\r\n").await.unwrap();
        } else if upper.starts_with("QUIT") {
            let _ = write.write_all(b"221 bye\r\n").await;
            break;
        } else if upper.starts_with("EHLO") {
            write
                .write_all(b"250-sink\r\n250 AUTH PLAIN\r\n")
                .await
                .unwrap();
        } else if upper.starts_with("AUTH ") {
            // Kept with the message's envelope lines, for the test to read.
            rcpt.push(line.clone());
            write.write_all(b"235 welcome\r\n").await.unwrap();
        } else {
            if upper.starts_with("RCPT TO:") {
                rcpt.push(line[8..].trim().to_string());
            }
            write.write_all(b"250 ok\r\n").await.unwrap();
        }
    }
}

/// With `[portal.mail] smtp`, the temporary password goes to the relay (nothing to the
/// outbox), and it works like one from the outbox.
#[tokio::test]
async fn registration_over_smtp() {
    let (port, received) = smtp_sink().await;
    let (_backend, gw) = gateway(&format!(
        "[portal.mail]\nsmtp = \"smtp://127.0.0.1:{port}\"\nfrom = \"noreply@auth.localhost\""
    ))
    .await;
    let browser = gw.client();
    let form = registration_form(&browser, &gw, "app.localhost", "/").await;
    let done = post_registration(&browser, &gw, &form.body, "mailed@example.org").await;
    assert_eq!(done.status, 200, "{done:?}");
    assert!(outbox(&gw).is_empty());
    let (rcpt, data) = received.lock().unwrap().pop().expect("one message relayed");
    assert_eq!(rcpt, vec!["<mailed@example.org>".to_string()]);
    assert_eq!(header(&data, "From"), "noreply@auth.localhost");
    let temporary = temporary_password(&data);
    let change = temporary_sign_in(
        &browser,
        &gw,
        "app.localhost",
        "/",
        "mailed@example.org",
        &temporary,
    )
    .await;
    assert_eq!(change.status, 200);
    assert!(change.body.contains("name=\"temporary_password\""));
}

/// A relay that cannot be reached: 503, and the address may register again later (the
/// half-made account is taken back).
#[tokio::test]
async fn registration_when_mail_fails() {
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = unused.local_addr().unwrap().port();
    drop(unused);
    let (_backend, gw) = gateway(&format!(
        "[portal.mail]\nsmtp = \"smtp://127.0.0.1:{port}\""
    ))
    .await;
    let browser = gw.client();
    let form = registration_form(&browser, &gw, "app.localhost", "/").await;
    let res = post_registration(&browser, &gw, &form.body, "lost@example.org").await;
    assert_eq!(res.status, 503, "{res:?}");
    assert_eq!(
        count(
            &gw,
            "SELECT COUNT(*) FROM users WHERE name = ?1",
            "lost@example.org"
        ),
        0
    );
}

/// Mail settings that could leak or break mail are start-up errors naming the key: plain
/// SMTP beyond this machine, a sender that is not one address, a TTL out of range.
#[test]
fn bad_mail_settings_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let body = "[portal]\nhost = \"auth.localhost\"\nstore = \"g.db\"\ntemporary_password_ttl = \"5s\"\n\n\
                [portal.mail]\nsmtp = \"smtp://mail.example.org:25\"\nfrom = \"a@b.org\\r\\nBcc: c@d.org\"\n\n\
                [[sites]]\nid = \"app\"\nhost = \"app.localhost\"\nbackend = \"builtin:echo\"\nregistration = true\n";
    let path = write_config(dir.path(), body);
    let err = gatehouse::config::Config::load(&path)
        .unwrap_err()
        .to_string();
    for key in [
        "portal.temporary_password_ttl",
        "portal.mail.smtp",
        "portal.mail.from",
    ] {
        assert!(err.contains(key), "missing {key} in:\n{err}");
    }
    assert!(err.contains("loopback"), "{err}");

    // A login, or extra roots, only with TLS; a password from nowhere is refused too.
    for (mail, key, says) in [
        (
            "smtp = \"smtp://127.0.0.1:25\"\nuser = \"portal\"\npassword_env = \"X\"",
            "portal.mail.user",
            "only sent over TLS",
        ),
        (
            "smtp = \"smtp://127.0.0.1:25\"\nca_file = \"ca.pem\"",
            "portal.mail.ca_file",
            "smtps",
        ),
        (
            "smtp = \"smtps://mail.example.org\"\nuser = \"portal\"",
            "portal.mail.user",
            "password_env",
        ),
        (
            "smtp = \"smtps://mail.example.org\"\nca_file = \"missing.pem\"",
            "portal.mail.ca_file",
            "cannot be read",
        ),
    ] {
        let body = format!(
            "[portal]\nhost = \"auth.localhost\"\nstore = \"g.db\"\n\n[portal.mail]\n{mail}\n\n\
             [[sites]]\nid = \"app\"\nhost = \"app.localhost\"\nbackend = \"builtin:echo\"\n"
        );
        let path = write_config(dir.path(), &body);
        let err = gatehouse::config::Config::load(&path)
            .unwrap_err()
            .to_string();
        assert!(err.contains(key) && err.contains(says), "{mail}:\n{err}");
    }
}

/// The first real sign-in after a temporary password gets the node cookie like any other
/// sign-in, once the password is chosen; ticked as a shared computer on the sign-in form,
/// it gets none and the node is not noted (SPEC §6, nodes and roaming).
#[tokio::test]
async fn node_cookie_after_temporary_password() {
    let (_backend, gw) = gateway("").await;
    for (email, shared) in [("own@example.org", false), ("shared@example.org", true)] {
        let browser = gw.client();
        let temporary = register(&browser, &gw, "app.localhost", "/", email).await;
        let first = browser.get(&gw.url("app.localhost", "/")).await;
        let form = browser.get(&first.location().unwrap()).await;
        let mut fields = vec![("username", email), ("password", temporary.as_str())];
        if shared {
            fields.push(("shared_computer", "1"));
        }
        let change = post_with_form(&browser, &gw, "/login", &form.body, &fields).await;
        assert_eq!(change.status, 200, "{change:?}");
        assert!(
            browser
                .cookie("auth.localhost", "__Host-gatehouse-node")
                .is_none(),
            "not before the password is chosen"
        );
        let new = "a long new password";
        let done = post_change(
            &browser,
            &gw,
            &change.body,
            &[
                ("temporary_password", &temporary),
                ("new_password", new),
                ("confirm_password", new),
            ],
        )
        .await;
        assert_eq!(done.status, 303, "{done:?}");
        assert_eq!(
            browser
                .cookie("auth.localhost", "__Host-gatehouse-node")
                .is_some(),
            !shared
        );
        assert_eq!(browser.follow(&done.location().unwrap()).await.status, 200);
        let noted = count(
            &gw,
            "SELECT count(*) FROM node_accounts na JOIN accounts a ON a.id = na.account_id WHERE a.name = ?1",
            email,
        );
        assert_eq!(noted, i64::from(!shared), "{email}");
    }
}

/// Registration requests are limited per address and per client, whether or not the address
/// is registered (the same 429 for both, so the limit tells nothing), and nothing is sent
/// or created past the limit.
#[tokio::test]
async fn registration_is_rate_limited() {
    let (_backend, gw) = gateway("registration_limit = { per_address = 2, per_client = 5 }").await;
    let browser = gw.client();
    let form = registration_form(&browser, &gw, "app.localhost", "/").await;
    // A known address (notices) and a new one (a welcome, then notices): two mails each.
    for address in ["bob@example.org", "new@example.org"] {
        for _ in 0..2 {
            let res = post_registration(&browser, &gw, &form.body, address).await;
            assert_eq!(res.status, 200, "{res:?}");
        }
    }
    assert_eq!(outbox(&gw).len(), 4);
    let mut refused = Vec::new();
    for address in ["bob@example.org", "new@example.org"] {
        let res = post_registration(&browser, &gw, &form.body, address).await;
        assert_eq!(res.status, 429, "{res:?}");
        assert_eq!(res.header("retry-after"), Some("3600"));
        refused.push(res.body);
    }
    assert_eq!(
        refused[0], refused[1],
        "known and new addresses look the same"
    );
    assert_eq!(outbox(&gw).len(), 4, "nothing sent past the limit");

    // Every request counts against the client's budget (refused ones too): past it, a
    // fresh address is refused as well.
    let res = post_registration(&browser, &gw, &form.body, "third@example.org").await;
    assert_eq!(res.status, 429, "{res:?}");
    assert_eq!(
        count(
            &gw,
            "SELECT COUNT(*) FROM users WHERE name = ?1",
            "third@example.org"
        ),
        0
    );
}

/// Mail to a relay over TLS (`smtps://`): the relay's certificate is checked against the
/// roots in `ca_file` for the host name in the URL; a relay the portal cannot verify gets
/// nothing (the registration answers 503 and takes the new user back).
#[tokio::test]
async fn registration_over_smtps() {
    let (port, received) = smtps_sink().await;
    let ca = ca_file();
    let secrets = tempfile::tempdir().unwrap();
    let password_file = secrets.path().join("relay.pw");
    std::fs::write(&password_file, "relay secret\n").unwrap();
    let (_backend, gw) = gateway(&format!(
        "[portal.mail]\nsmtp = \"smtps://127.0.0.1:{port}\"\nca_file = \"{}\"\nuser = \"portal\"\npassword_file = \"{}\"\nfrom = \"noreply@auth.localhost\"",
        ca.display(),
        password_file.display()
    ))
    .await;
    let browser = gw.client();
    let form = registration_form(&browser, &gw, "app.localhost", "/").await;
    let done = post_registration(&browser, &gw, &form.body, "tls@example.org").await;
    assert_eq!(done.status, 200, "{done:?}");
    let (rcpt, data) = received.lock().unwrap().pop().expect("one message relayed");
    // AUTH PLAIN base64("\0portal\0relay secret"), sent only inside TLS.
    assert_eq!(
        rcpt,
        vec![
            "AUTH PLAIN AHBvcnRhbAByZWxheSBzZWNyZXQ=".to_string(),
            "<tls@example.org>".to_string()
        ]
    );
    assert!(!temporary_password(&data).is_empty());

    // Without the dev CA among its roots the portal refuses the relay's certificate.
    let (port, received) = smtps_sink().await;
    let (_backend, gw) = gateway(&format!(
        "[portal.mail]\nsmtp = \"smtps://127.0.0.1:{port}\"\nfrom = \"noreply@auth.localhost\""
    ))
    .await;
    let browser = gw.client();
    let form = registration_form(&browser, &gw, "app.localhost", "/").await;
    let done = post_registration(&browser, &gw, &form.body, "tls@example.org").await;
    assert_eq!(done.status, 503, "{done:?}");
    assert!(received.lock().unwrap().is_empty());
    assert_eq!(
        count(
            &gw,
            "SELECT COUNT(*) FROM users WHERE name = ?1",
            "tls@example.org"
        ),
        0
    );
}

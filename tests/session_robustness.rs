//! Session robustness (issue 6, point 7): cookies the gateway did not issue are never
//! adopted; a gateway cookie sent twice is refused; disabling a user or changing their
//! password (with the CLI, while the gateway runs) ends their sessions everywhere; sign-out
//! takes a POST with the CSRF token; every response that sets or clears a session cookie
//! says `Cache-Control: no-store`.

mod common;

use std::time::Duration;

use common::*;
use gatehouse::crypto::IdHash;
use http::Method;

const SITE: &str = "__Host-gatehouse";
const PORTAL: &str = "__Host-gatehouse-portal";

/// Well-formed (43 base64url characters) but never issued by the gateway.
const FORGED: &str = "forgedforgedforgedforgedforgedforgedforged0";

async fn gateway() -> (Backend, Gateway) {
    let backend = Backend::start().await;
    let gw = Gateway::builder()
        .portal("sync_interval = \"1s\"")
        .user("alice", "alice-pw", 3)
        .site("app", &backend.url())
        .site("wiki", &backend.url())
        .site_with("api", &backend.url(), "allow_basic = true")
        .start()
        .await;
    (backend, gw)
}

/// The `h` parameter of a hand-off redirect to the portal.
fn handoff_hash(location: &str) -> String {
    let query = location.split_once('?').unwrap().1;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "h")
        .unwrap()
        .1
        .into_owned()
}

/// A site cookie the gate did not issue (well-formed or not) starts the hand-off with a
/// fresh cookie, bound by its hash; after sign-in the forged value still admits nobody.
#[tokio::test]
async fn forged_site_cookie_never_adopted() {
    let (backend, gw) = gateway().await;
    for forged in [FORGED, "not-even-an-identifier"] {
        let browser = gw.client();
        browser.set_cookie("app.localhost", SITE, forged);
        let res = browser.get(&gw.url("app.localhost", "/")).await;
        assert_eq!(res.status, 302, "{res:?}");
        let fresh = browser.cookie("app.localhost", SITE).unwrap();
        assert_ne!(fresh, forged, "a fresh cookie, never the presented one");
        assert_eq!(
            handoff_hash(&res.location().unwrap()),
            IdHash::of(fresh.as_bytes()).to_b64(),
            "the hand-off is bound to the fresh cookie"
        );
        let form = browser.get(&res.location().unwrap()).await;
        let posted = submit_login(&browser, &gw, &form.body, "alice", "alice-pw").await;
        assert_eq!(posted.status, 303);
        assert_eq!(
            browser.follow(&posted.location().unwrap()).await.status,
            200
        );

        let holder = gw.client();
        holder.set_cookie("app.localhost", SITE, forged);
        let res = holder.get(&gw.url("app.localhost", "/")).await;
        assert_eq!(res.status, 302, "the forged value admits nobody");
        assert_ne!(holder.cookie("app.localhost", SITE).unwrap(), forged);
    }
    assert!(
        backend
            .requests()
            .iter()
            .all(|r| r.headers["x-auth-user"] == "alice")
    );
}

/// A site cookie that was admitted once but whose session ended (sign-out) is not reused
/// either: the next hand-off gets a fresh one, and the old one stays dead.
#[tokio::test]
async fn ended_site_cookie_replaced() {
    let (_backend, gw) = gateway().await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    let old = browser.cookie("app.localhost", SITE).unwrap();
    let confirm = browser.get(&gw.url("auth.localhost", "/logout")).await;
    let token = form_field(&confirm.body, "csrf").unwrap();
    let out = browser
        .post_form(&gw.url("auth.localhost", "/logout"), &[("csrf", &token)])
        .await;
    assert_eq!(out.status, 200);
    let res = browser.get(&gw.url("app.localhost", "/")).await;
    assert_eq!(res.status, 302);
    let fresh = browser.cookie("app.localhost", SITE).unwrap();
    assert_ne!(fresh, old);
    assert_eq!(
        handoff_hash(&res.location().unwrap()),
        IdHash::of(fresh.as_bytes()).to_b64()
    );
    let _ = sign_in(&browser, &gw, "app.localhost", "/", "alice", "alice-pw").await;
    let holder = gw.client();
    holder.set_cookie("app.localhost", SITE, &old);
    assert_eq!(holder.get(&gw.url("app.localhost", "/")).await.status, 302);
}

/// A portal cookie the portal did not issue never becomes a session: signing in with it
/// rotates it, and the forged value is not signed in afterwards, nor handed to any site.
#[tokio::test]
async fn forged_portal_cookie_never_becomes_a_session() {
    let (_backend, gw) = gateway().await;
    let browser = gw.client();
    browser.set_cookie("auth.localhost", PORTAL, FORGED);
    let first = browser.get(&gw.url("app.localhost", "/")).await;
    let form = browser.get(&first.location().unwrap()).await;
    assert_eq!(form.status, 200, "unknown to the portal: the form");
    let posted = submit_login(&browser, &gw, &form.body, "alice", "alice-pw").await;
    assert_eq!(posted.status, 303);
    let rotated = browser.cookie("auth.localhost", PORTAL).unwrap();
    assert_ne!(rotated, FORGED);

    let holder = gw.client();
    holder.set_cookie("auth.localhost", PORTAL, FORGED);
    let account = holder.get(&gw.url("auth.localhost", "/")).await;
    assert_eq!(account.status, 302, "not a session");
    assert!(account.location().unwrap().ends_with("/login"));
    let wiki = holder.get(&gw.url("wiki.localhost", "/")).await;
    let login = holder.get(&wiki.location().unwrap()).await;
    assert_eq!(login.status, 200, "the form again, no hand-off: {login:?}");
    assert!(login.body.contains("name=\"password\""));
}

/// A request whose Cookie holds `name` twice (one field, two fields, or HTTP/2's split
/// fields) is answered 400.
async fn assert_duplicate_refused(gw: &Gateway, name: &str, method: Method, url: &str) {
    let (a, b) = (FORGED.to_string(), FORGED.replace('0', "1"));
    for http2 in [false, true] {
        let mut client = gw.client();
        client.http2 = http2;
        let one_field = format!("{name}={a}; theme=dark; {name}={b}");
        let (first, second) = (format!("{name}={a}"), format!("{name}={b}"));
        for headers in [
            vec![("cookie", one_field.as_str())],
            vec![("cookie", first.as_str()), ("cookie", second.as_str())],
        ] {
            let mut headers = headers;
            headers.push(("content-type", "application/x-www-form-urlencoded"));
            let res = client
                .request(method.clone(), url, &headers, Default::default())
                .await;
            assert_eq!(res.status, 400, "{method} {url} http2={http2} {headers:?}");
        }
    }
}

/// Two site cookies in one request: 400 on the site's pages and reserved paths, also for a
/// signed-in browser's real cookie sent twice; nothing reaches the backend.
#[tokio::test]
async fn duplicate_site_cookie_refused() {
    let (backend, gw) = gateway().await;
    for path in [
        "/",
        "/page",
        "/.gatehouse/whoami",
        "/.gatehouse/callback?code=x",
    ] {
        assert_duplicate_refused(&gw, SITE, Method::GET, &gw.url("app.localhost", path)).await;
    }
    assert_duplicate_refused(&gw, SITE, Method::POST, &gw.url("app.localhost", "/form")).await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    let real = browser.cookie("app.localhost", SITE).unwrap();
    let before = backend.count();
    let twice = format!("{SITE}={real}; {SITE}={real}");
    let res = gw
        .client()
        .request(
            Method::GET,
            &gw.url("app.localhost", "/"),
            &[("cookie", &twice)],
            Default::default(),
        )
        .await;
    assert_eq!(res.status, 400);
    assert_eq!(backend.count(), before);
}

/// Two portal cookies in one request: 400 on every portal page.
#[tokio::test]
async fn duplicate_portal_cookie_refused() {
    let (_backend, gw) = gateway().await;
    for (method, path) in [
        (Method::GET, "/"),
        (Method::GET, "/login"),
        (Method::POST, "/login"),
        (Method::GET, "/logout"),
        (Method::POST, "/logout"),
    ] {
        assert_duplicate_refused(&gw, PORTAL, method, &gw.url("auth.localhost", path)).await;
    }
}

/// Poll until `done` holds (up to 6 s: the portal reads the store every 1 s here).
async fn eventually<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..60 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within 6 s");
}

/// Is this browser (or API client) signed out everywhere: both sites send it to the portal,
/// the portal shows no account page, the API refuses its credentials?
async fn signed_out_everywhere(gw: &Gateway, browser: &Client, api: &Client, pw: &str) -> bool {
    let app = browser.get(&gw.url("app.localhost", "/")).await.status;
    let wiki = browser.get(&gw.url("wiki.localhost", "/")).await.status;
    let portal = browser.get(&gw.url("auth.localhost", "/")).await.status;
    let basic_status = api
        .request(
            Method::GET,
            &gw.url("api.localhost", "/"),
            &[("authorization", &basic("alice", pw))],
            Default::default(),
        )
        .await
        .status;
    (app, wiki, portal, basic_status) == (302, 302, 302, 401)
}

/// A signed-in browser on two sites and an API client on a third.
async fn everywhere(gw: &Gateway) -> (Client, Client) {
    let browser = signed_in_browser(gw, "app.localhost", "alice", "alice-pw").await;
    assert_eq!(
        browser.follow(&gw.url("wiki.localhost", "/")).await.status,
        200
    );
    let api = gw.client();
    let res = api
        .request(
            Method::GET,
            &gw.url("api.localhost", "/"),
            &[("authorization", &basic("alice", "alice-pw"))],
            Default::default(),
        )
        .await;
    assert_eq!(res.status, 200);
    (browser, api)
}

/// Sign alice in on two sites and the API, run `gatehouse user ARGS…` against the store while
/// the gateway serves, and wait until she is signed out everywhere. Returns the gateway and
/// a fresh browser's sign-in form.
async fn after_user_command(args: &[&str], stdin: &str) -> (Backend, Gateway, Client, String) {
    let (backend, gw) = gateway().await;
    let (browser, api) = everywhere(&gw).await;
    let cfg = gw.config_path.to_str().unwrap();
    let out = cli(&[&["-c", cfg, "user"], args].concat(), stdin, &[]);
    assert!(out.status.success(), "{out:?}");
    eventually(&format!("signed out after {args:?}"), || {
        signed_out_everywhere(&gw, &browser, &api, "alice-pw")
    })
    .await;
    let again = gw.client();
    let form = login_form(&again, &gw, "app.localhost").await;
    (backend, gw, again, form)
}

/// `gatehouse user disable`, run while the gateway serves, ends the user's sessions on every
/// site, at the portal and for API clients; sign-in is then refused.
#[tokio::test]
async fn cli_disable_ends_sessions_everywhere() {
    let (_backend, gw, browser, form) = after_user_command(&["disable", "alice"], "").await;
    let res = submit_login(&browser, &gw, &form, "alice", "alice-pw").await;
    assert_eq!(res.status, 401);
}

/// `gatehouse user passwd` ends the user's sessions everywhere; the old password no longer
/// signs in, the new one does.
#[tokio::test]
async fn cli_passwd_ends_sessions_everywhere() {
    let (_backend, gw, browser, form) =
        after_user_command(&["passwd", "alice", "--password-stdin"], "new-pw\n").await;
    let old = submit_login(&browser, &gw, &form, "alice", "alice-pw").await;
    assert_eq!(old.status, 401);
    let new = submit_login(&browser, &gw, &form, "alice", "new-pw").await;
    assert_eq!(new.status, 303);
}

/// A GET of either logout address only shows a confirmation; a POST without the CSRF token,
/// with a wrong one, or with another browser's, signs nobody out. The right one does.
#[tokio::test]
async fn sign_out_needs_post_and_token() {
    let (_backend, gw) = gateway().await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    let still_in = || async {
        browser.get(&gw.url("app.localhost", "/")).await.status == 200
            && browser.get(&gw.url("auth.localhost", "/")).await.status == 200
    };

    let via_site = browser
        .get(&gw.url("app.localhost", "/.gatehouse/logout"))
        .await;
    assert_eq!(via_site.status, 302);
    let confirm = browser.get(&via_site.location().unwrap()).await;
    assert_eq!(confirm.status, 200);
    assert!(confirm.body.contains("method=\"post\" action=\"/logout\""));
    assert!(confirm.headers.get("set-cookie").is_none());
    let head = browser
        .request(
            Method::HEAD,
            &gw.url("auth.localhost", "/logout"),
            &[],
            Default::default(),
        )
        .await;
    assert_eq!(head.status, 200);
    assert!(still_in().await, "a GET signs nobody out");

    let other = signed_in_browser(&gw, "wiki.localhost", "alice", "alice-pw").await;
    let other_confirm = other.get(&gw.url("auth.localhost", "/logout")).await;
    let others_token = form_field(&other_confirm.body, "csrf").unwrap();
    let logout = gw.url("auth.localhost", "/logout");
    for fields in [
        vec![],
        vec![("csrf", "")],
        vec![("csrf", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")],
        vec![("csrf", others_token.as_str())],
    ] {
        let res = browser.post_form(&logout, &fields).await;
        assert_eq!(res.status, 403, "{fields:?}");
        assert!(res.headers.get("set-cookie").is_none());
    }
    assert!(still_in().await, "a forged POST signs nobody out");

    let token = form_field(&confirm.body, "csrf").unwrap();
    let done = browser.post_form(&logout, &[("csrf", &token)]).await;
    assert_eq!(done.status, 200);
    assert_eq!(browser.get(&gw.url("app.localhost", "/")).await.status, 302);
}

/// Each response that sets or clears a session cookie, named one by one: the gate's
/// hand-off, the portal's form, a refused and a good sign-in, the callback, sign-out.
#[tokio::test]
async fn session_cookie_responses_are_no_store() {
    let (_backend, gw) = gateway().await;
    let browser = gw.client();
    let no_store = |what: &str, res: &Resp| {
        assert_eq!(res.header("cache-control"), Some("no-store"), "{what}");
    };
    let sets = |res: &Resp, name: &str| {
        res.headers
            .get_all("set-cookie")
            .iter()
            .any(|v| v.to_str().unwrap().starts_with(&format!("{name}=")))
    };
    let handoff = browser.get(&gw.url("app.localhost", "/")).await;
    assert!(sets(&handoff, SITE));
    no_store("hand-off redirect", &handoff);
    let form = browser.get(&handoff.location().unwrap()).await;
    assert!(sets(&form, PORTAL));
    no_store("sign-in form", &form);
    let refused = submit_login(&browser, &gw, &form.body, "alice", "wrong").await;
    no_store("refused sign-in", &refused);
    let posted = submit_login(&browser, &gw, &form.body, "alice", "alice-pw").await;
    assert!(sets(&posted, PORTAL), "rotated");
    no_store("sign-in", &posted);
    let callback = browser.get(&posted.location().unwrap()).await;
    assert_eq!(callback.status, 302);
    no_store("callback", &callback);
    let confirm = browser.get(&gw.url("auth.localhost", "/logout")).await;
    no_store("sign-out confirmation", &confirm);
    let token = form_field(&confirm.body, "csrf").unwrap();
    let out = browser
        .post_form(&gw.url("auth.localhost", "/logout"), &[("csrf", &token)])
        .await;
    assert!(sets(&out, PORTAL), "cleared");
    no_store("sign-out", &out);
}

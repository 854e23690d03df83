//! SPEC §6 "Branding": a site's `branding = { title, logo, stylesheet }` is applied to the
//! sign-in, registration and password change pages reached from that site, and only
//! there; the pages' CSP allows exactly the branding's origins; branding values are
//! escaped, and unsafe URLs are refused when the config is loaded.

mod common;

use common::*;

const TITLE: &str = "Acme \"<Portal>\"";
const LOGO: &str = "https://cdn.example.org/acme/logo.svg?v=1&size=2";
const SHEET: &str = "https://static.example.org:8443/acme.css";

/// `app` is branded, `wiki` is not; both are open to registration.
async fn gateway() -> (Backend, Gateway) {
    let backend = Backend::start().await;
    let branding = format!(
        "registration = true\nbranding = {{ title = {TITLE:?}, logo = {LOGO:?}, stylesheet = {SHEET:?} }}"
    );
    let gw = Gateway::builder()
        .user("alice", "alice-password", 3)
        .site_with("app", &backend.url(), &branding)
        .site_with("wiki", &backend.url(), "registration = true")
        .start()
        .await;
    (backend, gw)
}

/// The page is in app's look: escaped title, logo, extra stylesheet, and a CSP that allows
/// their two origins (styles, images, fonts) and no other.
fn assert_branded(res: &Resp) {
    let html = &res.body;
    assert!(
        html.contains("<span class=\"brand\">Acme &quot;&lt;Portal&gt;&quot;</span>"),
        "{html}"
    );
    assert!(
        html.contains("· Acme &quot;&lt;Portal&gt;&quot;</title>"),
        "{html}"
    );
    assert!(!html.contains("<Portal>"));
    assert!(
        html.contains("<img class=\"logo\" src=\"https://cdn.example.org/acme/logo.svg?v=1&amp;size=2\" alt=\"\">"),
        "{html}"
    );
    assert!(html.contains(&format!("<link rel=\"stylesheet\" href=\"{SHEET}\">")));
    let csp = res.header("content-security-policy").unwrap();
    assert!(
        csp.contains("style-src 'self' https://static.example.org:8443;"),
        "{csp}"
    );
    assert!(
        csp.contains(
            "img-src 'self' data: https://cdn.example.org https://static.example.org:8443;"
        ),
        "{csp}"
    );
    assert!(
        csp.contains("font-src 'self' https://static.example.org:8443;"),
        "{csp}"
    );
    assert!(
        !csp.contains("https:;") && !csp.contains("https: "),
        "no blanket https: {csp}"
    );
}

/// The clean default look, and a CSP without any branding origin.
fn assert_default(res: &Resp) {
    let html = &res.body;
    assert!(
        html.contains("<span class=\"brand\">gatehouse</span>"),
        "{html}"
    );
    assert!(
        !html.contains("class=\"logo\"") && !html.contains("example.org"),
        "{html}"
    );
    assert_eq!(
        html.matches("rel=\"stylesheet\"").count(),
        1,
        "only our own"
    );
    let csp = res.header("content-security-policy").unwrap();
    assert!(!csp.contains("example.org"), "{csp}");
    assert!(
        csp.contains("style-src 'self';") && csp.contains("img-src 'self' data:;"),
        "{csp}"
    );
}

/// The sign-in page from a site's hand-off: in that site's look, or the default.
async fn signin_page(browser: &Client, gw: &Gateway, host: &str) -> Resp {
    let first = browser.get(&gw.url(host, "/")).await;
    let form = browser.get(&first.location().unwrap()).await;
    assert_eq!(form.status, 200);
    form
}

/// The registration page, through the sign-in page's "New user?" link.
async fn registration_page(browser: &Client, gw: &Gateway, host: &str) -> Resp {
    let login = signin_page(browser, gw, host).await;
    let start = login.body.find("href=\"/register?").unwrap() + "href=\"".len();
    let end = login.body[start..].find('"').unwrap() + start;
    let href = login.body[start..end].replace("&amp;", "&");
    let form = browser.get(&gw.url("auth.localhost", &href)).await;
    assert_eq!(form.status, 200, "{form:?}");
    form
}

/// Post a form of the portal with the hidden fields of `html`.
async fn post(
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

/// The newest temporary password in the outbox.
fn last_temporary_password(gw: &Gateway) -> String {
    let mut paths: Vec<_> = std::fs::read_dir(gw.dir.path().join("data/outbox"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    let mail = std::fs::read_to_string(paths.last().unwrap()).unwrap();
    let line = mail
        .lines()
        .find(|l| l.starts_with("Temporary password:"))
        .unwrap();
    line["Temporary password:".len()..].trim().to_string()
}

/// Sign-in page: branded from app (also when the password was wrong), default from wiki
/// and without a hand-off.
#[tokio::test]
async fn signin_pages() {
    let (_backend, gw) = gateway().await;
    let browser = gw.client();
    let app = signin_page(&browser, &gw, "app.localhost").await;
    assert_branded(&app);
    let wrong = post(
        &browser,
        &gw,
        "/login",
        &app.body,
        &[("username", "alice"), ("password", "nope")],
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert_branded(&wrong);

    assert_default(&signin_page(&gw.client(), &gw, "wiki.localhost").await);
    let bare = gw.client().get(&gw.url("auth.localhost", "/login")).await;
    assert_eq!(bare.status, 200);
    assert_default(&bare);
    // A hand-off naming an unknown site gets no look of any site.
    let unknown = gw
        .client()
        .get(&gw.url("auth.localhost", "/login?site=nope&h=AAAA&rd=/"))
        .await;
    assert_default(&unknown);
}

/// Registration page and its answer: branded from app, default from wiki.
#[tokio::test]
async fn registration_pages() {
    let (_backend, gw) = gateway().await;
    let browser = gw.client();
    let form = registration_page(&browser, &gw, "app.localhost").await;
    assert_branded(&form);
    let bad = post(
        &browser,
        &gw,
        "/register",
        &form.body,
        &[("email", "not an address")],
    )
    .await;
    assert_eq!(bad.status, 400);
    assert_branded(&bad);
    let done = post(
        &browser,
        &gw,
        "/register",
        &form.body,
        &[("email", "new@example.net")],
    )
    .await;
    assert_eq!(done.status, 200, "{done:?}");
    assert!(done.body.contains("Check your mail"));
    assert_branded(&done);

    let other = gw.client();
    let form = registration_page(&other, &gw, "wiki.localhost").await;
    assert_default(&form);
    let done = post(
        &other,
        &gw,
        "/register",
        &form.body,
        &[("email", "other@example.net")],
    )
    .await;
    assert_eq!(done.status, 200);
    assert!(done.body.contains("Check your mail"));
    // The answer shows the address typed, which holds "example": check the look only.
    assert!(done.body.contains("<span class=\"brand\">gatehouse</span>"));
    assert!(
        !done
            .header("content-security-policy")
            .unwrap()
            .contains("example.org")
    );
}

/// The change form after a temporary sign-in from app is branded; from wiki it is not. A
/// signed-in user's /password carrying app's hand-off is branded too.
#[tokio::test]
async fn change_pages() {
    let (_backend, gw) = gateway().await;
    for (host, branded) in [("app.localhost", true), ("wiki.localhost", false)] {
        let browser = gw.client();
        let email = format!("user-{}@example.net", &host[..3]);
        let form = registration_page(&browser, &gw, host).await;
        let done = post(&browser, &gw, "/register", &form.body, &[("email", &email)]).await;
        assert_eq!(done.status, 200);
        let temporary = last_temporary_password(&gw);
        let login = signin_page(&browser, &gw, host).await;
        let change = submit_login(&browser, &gw, &login.body, &email, &temporary).await;
        assert_eq!(change.status, 200, "{change:?}");
        assert!(change.body.contains("name=\"temporary_password\""));
        if branded {
            assert_branded(&change);
        } else {
            assert!(
                change
                    .body
                    .contains("<span class=\"brand\">gatehouse</span>")
            );
            assert!(
                !change
                    .header("content-security-policy")
                    .unwrap()
                    .contains("example.org")
            );
        }
        // A refused change keeps the look.
        let refused = post(
            &browser,
            &gw,
            "/password",
            &change.body,
            &[
                ("temporary_password", &temporary),
                ("new_password", "short"),
                ("confirm_password", "short"),
            ],
        )
        .await;
        assert_eq!(refused.status, 400);
        assert_eq!(refused.body.contains("Acme"), branded, "{}", refused.body);
    }

    let browser = signed_in_browser(&gw, "wiki.localhost", "alice", "alice-password").await;
    let login = browser
        .get(&gw.url("app.localhost", "/"))
        .await
        .location()
        .unwrap();
    let query = &login[login.find('?').unwrap()..];
    let change = browser
        .get(&gw.url("auth.localhost", &format!("/password{query}")))
        .await;
    assert_eq!(change.status, 200);
    assert!(change.body.contains("name=\"current_password\""));
    assert_branded(&change);
    let plain = browser.get(&gw.url("auth.localhost", "/password")).await;
    assert_default(&plain);
}

/// Branding that could run script, load over plain HTTP, carry credentials, break out of
/// an attribute or widen the CSP is refused at load, naming the key.
#[test]
fn unsafe_branding_is_refused() {
    let cases = [
        ("logo = \"javascript:alert(1)\"", "sites[0].branding.logo"),
        (
            "logo = \"data:image/svg+xml,<svg onload=alert(1)>\"",
            "sites[0].branding.logo",
        ),
        (
            "stylesheet = \"http://cdn.example.org/a.css\"",
            "sites[0].branding.stylesheet",
        ),
        (
            "stylesheet = \"//cdn.example.org/a.css\"",
            "sites[0].branding.stylesheet",
        ),
        (
            "stylesheet = \"https://cdn.example.org/a.css; script-src *\"",
            "sites[0].branding.stylesheet",
        ),
        (
            "logo = \"https://u:p@cdn.example.org/l.png\"",
            "sites[0].branding.logo",
        ),
        (
            "logo = \"https://cdn.example.org/l.png\\\" onerror=\\\"x\"",
            "sites[0].branding.logo",
        ),
        ("title = \"\"", "sites[0].branding.title"),
        ("title = \"a\\nb\"", "sites[0].branding.title"),
    ];
    for (entry, key) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(
            dir.path(),
            &format!(
                "[portal]\nhost = \"auth.localhost\"\nstore = \"g.db\"\n\n[[sites]]\nid = \"app\"\nhost = \"app.localhost\"\nbackend = \"builtin:echo\"\nbranding = {{ {entry} }}\n"
            ),
        );
        let err = gatehouse::config::Config::load(&path)
            .err()
            .unwrap_or_else(|| panic!("{entry} accepted"))
            .to_string();
        assert!(err.contains(key), "{entry}: {err}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "[portal]\nhost = \"auth.localhost\"\nstore = \"g.db\"\n\n[[sites]]\nid = \"app\"\nhost = \"app.localhost\"\nbackend = \"builtin:echo\"\nbranding = { title = \"Acme\", logo = \"/brand/logo.png\", stylesheet = \"https://cdn.example.org/a.css\" }\n",
    );
    assert!(gatehouse::config::Config::load(&path).is_ok());
}

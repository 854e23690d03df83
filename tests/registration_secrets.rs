//! SPEC §6: a temporary password lives only in its mail. After registering, signing in with
//! it and choosing an own password, neither password appears in the logs (captured at TRACE
//! level), the store (and its WAL), `/metrics`, or any response the browser received.
//!
//! Its own test binary: the log capture is a process-wide tracing subscriber.

mod common;

use common::*;

fn assert_absent(place: &str, haystack: &[u8], secrets: &[&str]) {
    for s in secrets {
        let found = haystack.windows(s.len()).any(|w| w == s.as_bytes());
        assert!(!found, "{place} contains a secret");
    }
}

/// The first link to `path?…` in a page, unescaped.
fn link(html: &str, path: &str) -> String {
    let start = html.find(&format!("href=\"{path}?")).unwrap() + "href=\"".len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].replace("&amp;", "&")
}

/// Register, sign in with the temporary password, choose an own one: no trace of either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_and_new_passwords_leave_no_trace() {
    let logs = capture_logs();

    let gw = Gateway::builder()
        .site_with("app", "builtin:echo", "registration = true")
        .start()
        .await;
    let browser = gw.client().recording();
    let first = browser.get(&gw.url("app.localhost", "/")).await;
    let login = browser.get(&first.location().unwrap()).await;
    let form = browser
        .get(&gw.url("auth.localhost", &link(&login.body, "/register")))
        .await;
    let mut fields = vec![("email", "secretive@example.org".to_string())];
    for name in ["csrf", "site", "h", "rd"] {
        fields.push((name, form_field(&form.body, name).unwrap()));
    }
    let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let done = browser
        .post_form(&gw.url("auth.localhost", "/register"), &pairs)
        .await;
    assert_eq!(done.status, 200);

    let outbox = gw.dir.path().join("data/outbox");
    let mail = std::fs::read_dir(&outbox)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .next()
        .unwrap();
    let temporary = mail
        .lines()
        .find_map(|l| l.strip_prefix("Temporary password:"))
        .unwrap()
        .trim()
        .to_string();

    let login = browser.get(&first.location().unwrap()).await;
    let change = submit_login(
        &browser,
        &gw,
        &login.body,
        "secretive@example.org",
        &temporary,
    )
    .await;
    assert_eq!(change.status, 200);
    const OWN: &str = "my very own secret password";
    let mut fields = vec![
        ("temporary_password", temporary.clone()),
        ("new_password", OWN.to_string()),
        ("confirm_password", OWN.to_string()),
    ];
    for name in ["csrf", "site", "h", "rd"] {
        fields.push((name, form_field(&change.body, name).unwrap()));
    }
    let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let changed = browser
        .post_form(&gw.url("auth.localhost", "/password"), &pairs)
        .await;
    assert_eq!(changed.status, 303, "{changed:?}");
    let landed = browser.follow(&changed.location().unwrap()).await;
    assert_eq!(landed.status, 200);

    let secrets = [temporary.as_str(), OWN];
    let (_, metrics) = gw.admin_get("/metrics").await;
    assert_absent("/metrics", metrics.as_bytes(), &secrets);
    assert_absent("a response", browser.transcript().as_bytes(), &secrets);
    let store = gw.store_path();
    let wal = store.with_extension("db-wal");
    let read = |p: &std::path::Path| std::fs::read(p).unwrap_or_default();
    gw.stop().await;
    assert_absent("the store", &read(&store), &secrets);
    assert_absent("the store's WAL", &read(&wal), &secrets);

    let captured = logs.0.lock().unwrap().clone();
    let text = String::from_utf8_lossy(&captured);
    assert!(
        text.contains("user registered"),
        "logs were captured:\n{text}"
    );
    assert!(text.contains("password changed"));
    assert_absent("the logs", &captured, &secrets);
}

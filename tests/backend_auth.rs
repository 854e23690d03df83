//! SPEC §5: logging in to legacy backends on the user's behalf. Derived sites get
//! `Basic base64(user ":" SP)` with `SP = hex(SHA-1(master || derive_id))`, one SP per site;
//! static sites get a service credential from the environment or a file; sessions without a
//! site's SP go back through sign-in. The backends here keep their own user tables and
//! answer 401 to anything else, so a wrong or missing credential fails the test.

mod common;

use common::*;
use http::Method;

const MASTER: &str = "correct horse battery staple";

fn derived(derive_id: &str) -> String {
    format!("[sites.backend_auth]\nmode = \"derived\"\nderive_id = {derive_id:?}\n")
}

/// Two legacy backends, each knowing alice only by her SP for that site.
async fn two_derived_sites(portal: &[&str], alice_extra: &str) -> (Backend, Backend, Gateway) {
    let a = Backend::with_logins(&[("alice", &expected_sp(MASTER, "legacy-a.example"))]).await;
    let b = Backend::with_logins(&[("alice", &expected_sp(MASTER, "legacy-b.example"))]).await;
    let mut builder = Gateway::builder()
        .user_with("alice", MASTER, 3, alice_extra)
        .site_with("app", &a.url(), &derived("legacy-a.example"))
        .site_with("wiki", &b.url(), &derived("legacy-b.example"));
    for line in portal {
        builder = builder.portal(line);
    }
    (a, b, builder.start().await)
}

/// One sign-in at the portal; two derived sites, each sent its own SP (neither the master
/// password), on every request, and the client's own Authorization is replaced.
#[tokio::test]
async fn each_derived_site_gets_its_own_site_password() {
    let (a, b, gw) = two_derived_sites(&[], "").await;
    let sp_a = expected_sp(MASTER, "legacy-a.example");
    let sp_b = expected_sp(MASTER, "legacy-b.example");
    assert_ne!(sp_a, sp_b);
    assert!(sp_a != MASTER && sp_b != MASTER);

    let browser = signed_in_browser(&gw, "app.localhost", "alice", MASTER).await;
    // Single sign-on: site b needs no second password, and gets its own SP.
    let on_b = browser.follow(&gw.url("wiki.localhost", "/report")).await;
    assert_eq!(on_b.status, 200, "{on_b:?}");
    assert!(
        on_b.body.starts_with("ok"),
        "the legacy app's own page: {on_b:?}"
    );

    // A client-sent Authorization (and a POST) on a derived site: replaced, not forwarded.
    let res = browser
        .request(
            Method::POST,
            &gw.url("app.localhost", "/save"),
            &[("authorization", &basic("mallory", "guess"))],
            "data".into(),
        )
        .await;
    assert_eq!(res.status, 200, "{res:?}");

    for r in a.requests() {
        assert_eq!(
            r.headers["authorization"],
            basic("alice", &sp_a),
            "{}",
            r.path
        );
        assert_eq!(r.headers.get_all("authorization").iter().count(), 1);
    }
    for r in b.requests() {
        assert_eq!(
            r.headers["authorization"],
            basic("alice", &sp_b),
            "{}",
            r.path
        );
    }
    assert_eq!(a.count(), 2);
    assert_eq!(b.count(), 1);
}

/// `allow_basic` on a derived site: the SP is derived from the password the API client
/// presents; its own header never reaches the backend; a wrong password reaches nothing.
#[tokio::test]
async fn api_clients_on_a_derived_site_send_their_site_password() {
    let sp = expected_sp(MASTER, "api.example");
    let backend = Backend::with_logins(&[("alice", &sp)]).await;
    let gw = Gateway::builder()
        .user("alice", MASTER, 3)
        .site_with(
            "api",
            &backend.url(),
            &format!("allow_basic = true\n{}", derived("api.example")),
        )
        .start()
        .await;
    let client = gw.client();
    let get = |auth: String| {
        let client = &client;
        let url = gw.url("api.localhost", "/v1/things");
        async move {
            client
                .request(Method::GET, &url, &[("authorization", &auth)], "".into())
                .await
        }
    };
    for _ in 0..2 {
        let res = get(basic("alice", MASTER)).await;
        assert_eq!(
            res.status, 200,
            "first from the portal, then from the table: {res:?}"
        );
    }
    for r in backend.requests() {
        assert_eq!(r.headers["authorization"], basic("alice", &sp));
    }
    let wrong = get(basic("alice", "not the password")).await;
    assert_eq!(wrong.status, 401);
    assert_eq!(backend.count(), 2, "a refused client reaches nothing");
}

/// `gatehouse derive` prints exactly the SP the gateway sends to that site's backend.
#[tokio::test]
async fn derive_prints_what_the_gateway_sends() {
    let (a, _b, gw) = two_derived_sites(&[], "").await;
    signed_in_browser(&gw, "app.localhost", "alice", MASTER).await;
    let sent = a.last().headers["authorization"]
        .to_str()
        .unwrap()
        .to_string();

    let cfg = gw.config_path.to_str().unwrap();
    let out = cli(
        &["-c", cfg, "derive", "--site", "app", "--user", "alice"],
        &format!("{MASTER}\n"),
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        printed,
        format!("{}\n", expected_sp(MASTER, "legacy-a.example"))
    );
    assert_eq!(basic("alice", printed.trim_end()), sent);

    let not_derived = cli(
        &["-c", cfg, "derive", "--site", "nope", "--user", "alice"],
        "x\n",
        &[],
    );
    assert!(!not_derived.status.success());
    assert!(String::from_utf8_lossy(&not_derived.stderr).contains("\"nope\" is not a site id"));
}

/// A session with no SP for a derived site the user may now use (their level there was 0
/// at sign-in, and was raised since): the portal asks for the password again, the backend
/// is never sent a request without its credential, and the other site stays signed in.
#[tokio::test]
async fn a_session_without_the_site_password_signs_in_again() {
    let (a, b, gw) =
        two_derived_sites(&["sync_interval = \"1s\""], "site_levels = { wiki = 0 }").await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", MASTER).await;
    let denied = browser.follow(&gw.url("wiki.localhost", "/")).await;
    assert_eq!(denied.status, 403, "level 0 on wiki: {denied:?}");

    let cfg = gw.config_path.to_str().unwrap();
    let out = cli(
        &["-c", cfg, "user", "level", "alice", "3", "--site", "wiki=3"],
        "",
        &[],
    );
    assert!(out.status.success(), "{out:?}");

    // Within a few seconds the portal learns of the change; b then hands the browser to
    // the portal, which must ask for the password rather than send it back without an SP.
    let mut handed = None;
    for _ in 0..50 {
        let res = browser.get(&gw.url("wiki.localhost", "/after")).await;
        if res.status == 302 {
            handed = Some(res);
            break;
        }
        assert_eq!(res.status, 403, "{res:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let login = handed.expect("b never sent the browser back to the portal");
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
    assert_eq!(form_field(&form.body, "username").as_deref(), Some("alice"));
    assert_eq!(b.count(), 0, "nothing reached b without its site password");

    let posted = submit_login(&browser, &gw, &form.body, "alice", MASTER).await;
    assert_eq!(posted.status, 303, "{posted:?}");
    let res = browser.follow(&posted.location().unwrap()).await;
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(
        b.last().headers["authorization"],
        basic("alice", &expected_sp(MASTER, "legacy-b.example"))
    );
    // Site a kept its hand-off through the second sign-in: served at once, no redirect.
    let again = browser.get(&gw.url("app.localhost", "/still")).await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(a.last().path, "/still");
}

/// `mode = "static"`: every user's requests carry the one service credential, read from a
/// file named in the config; API clients' own credentials are replaced by it.
#[tokio::test]
async fn static_mode_sends_the_service_credential() {
    let secrets = tempfile::tempdir().unwrap();
    let file = secrets.path().join("app.pw");
    std::fs::write(&file, "s3rvice pw\n").unwrap();
    let backend = Backend::with_logins(&[("svc", "s3rvice pw")]).await;
    let gw = Gateway::builder()
        .user("alice", "alice-pw", 3)
        .site_with(
            "app",
            &backend.url(),
            &format!(
                "allow_basic = true\n[sites.backend_auth]\nmode = \"static\"\nuser = \"svc\"\npassword_file = {:?}\n",
                file.display().to_string()
            ),
        )
        .start()
        .await;
    signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    let api = gw
        .client()
        .request(
            Method::GET,
            &gw.url("app.localhost", "/api"),
            &[("authorization", &basic("alice", "alice-pw"))],
            "".into(),
        )
        .await;
    assert_eq!(api.status, 200, "{api:?}");
    for r in backend.requests() {
        assert_eq!(r.headers["authorization"], basic("svc", "s3rvice pw"));
        assert_eq!(r.headers["x-auth-user"], "alice");
    }
    assert_eq!(backend.count(), 2);
}

/// A static credential missing, unreadable or empty stops `check` (and so start-up, which
/// loads the config the same way) with an error naming the key; both sources is an error.
#[test]
fn static_secret_problems_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let site = |auth: &str| {
        format!(
            "[portal]\nhost = \"auth.localhost\"\nstore = \"g.db\"\n\n[[sites]]\nid = \"app\"\nhost = \"app.localhost\"\nbackend = \"builtin:echo\"\n[sites.backend_auth]\nmode = \"static\"\nuser = \"svc\"\n{auth}\n"
        )
    };
    let check = |body: &str, env: &[(&str, &str)]| {
        let cfg = write_config(dir.path(), body);
        let out = cli(&["-c", cfg.to_str().unwrap(), "check"], "", env);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let env_cfg = site("password_env = \"GH_TEST_BACKEND_PW\"");
    let (ok, err) = check(&env_cfg, &[]);
    assert!(!ok);
    assert!(
        err.contains(
            "sites[0].backend_auth.password_env: environment variable GH_TEST_BACKEND_PW is not set"
        ),
        "{err}"
    );
    let (ok, err) = check(&env_cfg, &[("GH_TEST_BACKEND_PW", "")]);
    assert!(!ok && err.contains("GH_TEST_BACKEND_PW is empty"), "{err}");
    let (ok, err) = check(&env_cfg, &[("GH_TEST_BACKEND_PW", "pw")]);
    assert!(ok, "{err}");
    let err = run_refused(&write_config(dir.path(), &env_cfg));
    assert!(err.contains("GH_TEST_BACKEND_PW is not set"), "{err}");

    let (ok, err) = check(&site("password_file = \"missing.pw\""), &[]);
    assert!(
        !ok && err.contains("sites[0].backend_auth.password_file: cannot read"),
        "{err}"
    );
    std::fs::write(dir.path().join("empty.pw"), "\n").unwrap();
    let (ok, err) = check(&site("password_file = \"empty.pw\""), &[]);
    assert!(!ok && err.contains("empty.pw is empty"), "{err}");
    let (ok, err) = check(
        &site("password_env = \"X\"\npassword_file = \"empty.pw\""),
        &[("X", "pw")],
    );
    assert!(!ok && err.contains("not both"), "{err}");
    let (ok, err) = check(&site(""), &[]);
    assert!(!ok && err.contains("needs password_env"), "{err}");
    let (ok, err) = check(&site("password = \"in clear\""), &[]);
    assert!(
        !ok && err.contains("unknown field `password`"),
        "a password in clear is not a key: {err}"
    );
}

/// `gatehouse run` with this config must exit at once with an error; its stderr. (If it
/// started serving instead, it is killed and the test fails.)
fn run_refused(cfg: &std::path::Path) -> String {
    use std::io::Read;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["-c", cfg.to_str().unwrap(), "run"])
        .env_remove("GATEHOUSE_CONFIG")
        .env_remove("GH_TEST_BACKEND_PW")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("gatehouse run started without its backend password");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success(), "{err}");
    err
}

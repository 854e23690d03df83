//! Brute force and enumeration (issue 6, point 5): failed sign-ins make further attempts wait
//! (per user name and address, per address, per user name except from the owner's
//! addresses), refused cheaply with 429 and `Retry-After`; the form and Basic credentials
//! share the throttle; a failure looks and takes the same whether the user is unknown,
//! disabled or typed a wrong password.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::Method;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// A `[portal]` line configuring the throttle.
fn throttle(failures: u32, address: u32, user: u32, max_delay: &str) -> String {
    format!(
        "signin_throttle = {{ failures = {failures}, address_failures = {address}, user_failures = {user}, max_delay = \"{max_delay}\" }}"
    )
}

async fn gateway(throttle_line: &str) -> Gateway {
    Gateway::builder()
        .portal(throttle_line)
        .user("alice", "alice-pw", 3)
        .user("bob", "bob-pw", 3)
        .user_with("dora", "dora-pw", 3, "disabled = true")
        .site("app", "builtin:echo")
        .site_with("api", "builtin:echo", "allow_basic = true")
        .start()
        .await
}

/// The status of one sign-in attempt with the form in `html`.
async fn try_login(browser: &Client, gw: &Gateway, html: &str, user: &str, pw: &str) -> u16 {
    submit_login(browser, gw, html, user, pw).await.status
}

/// Password verifications run so far (argon2id or imported hashes).
async fn checks(gw: &Gateway) -> f64 {
    gw.metric("gatehouse_password_checks_total")
        .await
        .unwrap_or(0.0)
}

fn retry_after(res: &Resp) -> u64 {
    res.header("retry-after")
        .unwrap_or_else(|| panic!("429 without Retry-After: {res:?}"))
        .parse()
        .unwrap()
}

/// After `failures` failed sign-ins the next attempt gets 429 with `Retry-After` and no
/// password check; once the wait is over, attempts are checked again, and each further
/// failure doubles the wait.
#[tokio::test]
async fn throttle_starts_after_failures_and_ends() {
    let gw = gateway(&throttle(2, 100, 100, "1h")).await;
    let browser = gw.client();
    let form = login_form(&browser, &gw, "app.localhost").await;
    for _ in 0..2 {
        let res = submit_login(&browser, &gw, &form, "alice", "wrong").await;
        assert_eq!(res.status, 401);
    }
    assert_eq!(checks(&gw).await, 2.0);
    let held = submit_login(&browser, &gw, &form, "alice", "wrong").await;
    assert_eq!(held.status, 429, "{held:?}");
    assert_eq!(retry_after(&held), 1);
    assert!(held.body.contains("Too many failed sign-ins"));
    assert!(
        held.body.contains("name=\"password\""),
        "the form, to try again"
    );
    assert_eq!(held.header("cache-control"), Some("no-store"));
    assert_eq!(checks(&gw).await, 2.0, "refused without hashing");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let res = submit_login(&browser, &gw, &form, "alice", "wrong").await;
    assert_eq!(res.status, 401, "the wait is over: checked again");
    assert_eq!(checks(&gw).await, 3.0);
    let held = submit_login(&browser, &gw, &form, "alice", "wrong").await;
    assert_eq!(held.status, 429);
    assert_eq!(retry_after(&held), 2, "the wait doubles");
    assert_eq!(
        gw.metric("gatehouse_signins_total{result=\"throttled\"}")
            .await,
        Some(2.0)
    );
}

/// While throttled, even the right password is refused with the same 429 (no oracle), and
/// sets no session; once the wait is over it signs in.
#[tokio::test]
async fn right_password_refused_while_throttled_then_works() {
    let gw = gateway(&throttle(2, 100, 100, "1h")).await;
    let browser = gw.client();
    let form = login_form(&browser, &gw, "app.localhost").await;
    let cookie = browser.cookie("auth.localhost", "__Host-gatehouse-portal");
    for _ in 0..2 {
        let _ = submit_login(&browser, &gw, &form, "alice", "wrong").await;
    }
    let wrong = submit_login(&browser, &gw, &form, "alice", "wrong").await;
    let right = submit_login(&browser, &gw, &form, "alice", "alice-pw").await;
    assert_eq!(wrong.status, 429);
    assert_eq!(right.status, 429, "the right password tells nothing");
    assert_eq!(right.body, wrong.body);
    assert_eq!(
        browser.cookie("auth.localhost", "__Host-gatehouse-portal"),
        cookie,
        "no session started"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let ok = submit_login(&browser, &gw, &form, "alice", "alice-pw").await;
    assert_eq!(ok.status, 303, "afterwards the owner signs in: {ok:?}");
    let landed = browser.follow(&ok.location().unwrap()).await;
    assert_eq!(landed.status, 200);
}

/// A burst of attempts sent at once cannot outrun the back-off: only `failures` of them are
/// checked, the rest get 429 (attempts count from the moment they begin).
#[tokio::test]
async fn burst_of_attempts_held_like_a_sequence() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = gateway(&throttle(3, 100, 100, "1h")).await;
    let browser = gw.client();
    let form = login_form(&browser, &gw, "app.localhost").await;
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("username", "alice")
        .append_pair("password", "wrong")
        .append_pair("csrf", &form_field(&form, "csrf").unwrap())
        .finish();
    let request = format!(
        "POST /login HTTP/1.1\r\nHost: auth.localhost:{}\r\nCookie: __Host-gatehouse-portal={}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        gw.port,
        browser
            .cookie("auth.localhost", "__Host-gatehouse-portal")
            .unwrap(),
        body.len()
    );
    // Connect (TCP and TLS) first, so that the twelve requests leave together and reach the
    // gateway well within the first wait (1 s), even on a loaded machine.
    let mut streams = Vec::new();
    for _ in 0..12 {
        streams.push(browser.connect("auth.localhost").await);
    }
    let started = std::time::Instant::now();
    let mut burst = tokio::task::JoinSet::new();
    for mut tls in streams {
        let request = request.clone();
        burst.spawn(async move {
            tls.write_all(request.as_bytes()).await.unwrap();
            let mut answer = Vec::new();
            let _ = tls.read_to_end(&mut answer).await;
            let text = String::from_utf8_lossy(&answer).into_owned();
            text.split(' ').nth(1).and_then(|s| s.parse::<u16>().ok())
        });
    }
    let mut statuses = burst.join_all().await;
    let took = started.elapsed();
    statuses.sort();
    // Three checks; then the waits after each further failure (1 s, 2 s, 4 s…) let one more
    // through each time they pass, which a burst on a loaded machine can outlast: allow
    // exactly those the burst's own duration explains.
    let waited_out = [1u64, 3, 7, 15]
        .iter()
        .filter(|s| took >= std::time::Duration::from_secs(**s))
        .count();
    let checked = statuses.iter().filter(|s| **s == Some(401)).count();
    assert!(
        (3..=3 + waited_out).contains(&checked),
        "{checked} checked in a burst of {took:?}: {statuses:?}"
    );
    let expected: Vec<Option<u16>> =
        [vec![Some(401); checked], vec![Some(429); 12 - checked]].concat();
    assert_eq!(statuses, expected);
    assert_eq!(checks(&gw).await, checked as f64);
}

/// Unknown and known user names are throttled alike, with the same page and wait.
#[tokio::test]
async fn unknown_and_known_users_throttled_alike() {
    let gw = gateway(&throttle(1, 100, 100, "1h")).await;
    let browser = gw.client();
    let form = login_form(&browser, &gw, "app.localhost").await;
    let mut pages = Vec::new();
    for user in ["alice", "nobody"] {
        assert_eq!(try_login(&browser, &gw, &form, user, "wrong").await, 401);
        let held = submit_login(&browser, &gw, &form, user, "wrong").await;
        assert_eq!(held.status, 429);
        pages.push((retry_after(&held), held.body.replace(user, "NAME")));
    }
    assert_eq!(pages[0], pages[1]);
}

/// The per-user-and-address counter does not hold the same user at another address, and the
/// per-address counter holds every user name at that address but no other address.
#[tokio::test]
async fn other_address_not_throttled() {
    let gw = gateway(&throttle(2, 3, 100, "1h")).await;
    let here = gw.client();
    let form = login_form(&here, &gw, "app.localhost").await;
    for _ in 0..2 {
        assert_eq!(try_login(&here, &gw, &form, "alice", "wrong").await, 401);
    }
    assert_eq!(try_login(&here, &gw, &form, "alice", "alice-pw").await, 429);
    // The owner, at another address, signs in.
    let owner = gw.client().with_source_address("127.0.0.2");
    let owner_form = login_form(&owner, &gw, "app.localhost").await;
    let res = submit_login(&owner, &gw, &owner_form, "alice", "alice-pw").await;
    assert_eq!(res.status, 303, "{res:?}");

    // A third failure from 127.0.0.1, for another user, trips the per-address counter.
    assert_eq!(try_login(&here, &gw, &form, "bob", "wrong").await, 401);
    assert_eq!(
        try_login(&here, &gw, &form, "carol", "wrong").await,
        429,
        "every user name from this address waits"
    );
    let other = gw.client().with_source_address("127.0.0.2");
    let other_form = login_form(&other, &gw, "app.localhost").await;
    assert_eq!(
        try_login(&other, &gw, &other_form, "carol", "wrong").await,
        401,
        "another address is not held by this address's failures"
    );
    assert_eq!(
        try_login(&other, &gw, &other_form, "bob", "bob-pw").await,
        303
    );
}

/// Failures against one user from many addresses hold that user at new addresses, but not
/// at an address the owner signed in from: an attacker cannot lock the owner out.
#[tokio::test]
async fn per_user_limit_spares_the_owners_address() {
    let gw = gateway(&throttle(100, 100, 3, "1h")).await;
    let home = gw.client().with_source_address("127.0.0.2");
    let form = login_form(&home, &gw, "app.localhost").await;
    assert_eq!(try_login(&home, &gw, &form, "alice", "alice-pw").await, 303);
    // Ready before the failures: the first wait is only 1 s.
    let stranger = gw.client().with_source_address("127.0.0.6");
    let stranger_form = login_form(&stranger, &gw, "app.localhost").await;
    for i in 3..=5 {
        let attacker = gw.client().with_source_address(&format!("127.0.0.{i}"));
        let form = login_form(&attacker, &gw, "app.localhost").await;
        assert_eq!(
            try_login(&attacker, &gw, &form, "alice", "guess").await,
            401
        );
    }
    assert_eq!(
        try_login(&stranger, &gw, &stranger_form, "alice", "alice-pw").await,
        429,
        "a new address waits"
    );
    assert_eq!(
        try_login(&stranger, &gw, &stranger_form, "bob", "bob-pw").await,
        303,
        "other users are not held"
    );
    let again = gw.client().with_source_address("127.0.0.2");
    let form = login_form(&again, &gw, "app.localhost").await;
    assert_eq!(
        try_login(&again, &gw, &form, "alice", "alice-pw").await,
        303,
        "the owner's own address is spared"
    );
}

async fn basic_get(client: &Client, gw: &Gateway, user: &str, password: &str) -> Resp {
    client
        .request(
            Method::GET,
            &gw.url("api.localhost", "/v1"),
            &[("authorization", &basic(user, password))],
            Default::default(),
        )
        .await
}

/// Basic credentials on an `allow_basic` site share the throttle: 429 with `Retry-After`
/// and no password check while it holds (the right password included), 200 after.
#[tokio::test]
async fn basic_credentials_throttled() {
    let gw = gateway(&throttle(2, 100, 100, "1s")).await;
    let api = gw.client();
    // Ready before the failures: the first wait is only 1 s.
    let browser = gw.client();
    let form = login_form(&browser, &gw, "app.localhost").await;
    for _ in 0..2 {
        assert_eq!(basic_get(&api, &gw, "alice", "wrong").await.status, 401);
    }
    let held = basic_get(&api, &gw, "alice", "alice-pw").await;
    // The form is held too: it is the same user at the same address.
    let form_held = try_login(&browser, &gw, &form, "alice", "alice-pw").await;
    assert_eq!(held.status, 429, "{held:?}");
    assert_eq!(retry_after(&held), 1);
    assert_eq!(form_held, 429);
    assert_eq!(checks(&gw).await, 2.0, "refused without hashing");
    assert_eq!(
        gw.metric("gatehouse_signins_total{result=\"basic_throttled\"}")
            .await,
        Some(1.0)
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(basic_get(&api, &gw, "alice", "alice-pw").await.status, 200);
}

/// Unknown user, wrong password, disabled user, an imported (htpasswd) user's wrong password,
/// and names or passwords over the length caps: the same status and the same page.
#[tokio::test]
async fn every_failure_looks_the_same() {
    let gw = gateway(&throttle(1000, 1000, 1000, "1s")).await;
    let file = gw.dir.path().join("users.htpasswd");
    std::fs::write(&file, "ann:$apr1$hM1xLd85$AQBMXf1rlhss0MmkuVhqM.\n").unwrap();
    let cfg = gw.config_path.to_str().unwrap();
    let out = cli(
        &["-c", cfg, "user", "import-htpasswd", file.to_str().unwrap()],
        "",
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    let browser = gw.client();
    let form = login_form(&browser, &gw, "app.localhost").await;
    let mut seen = Vec::new();
    let (long_name, long_password) = ("n".repeat(300), "p".repeat(2000));
    for (user, password) in [
        ("alice", "wrong"),
        ("nobody", "wrong"),
        ("dora", "dora-pw"),
        ("ann", "wrong"),
        ("alice", long_password.as_str()),
        (long_name.as_str(), "wrong"),
    ] {
        let res = submit_login(&browser, &gw, &form, user, password).await;
        seen.push((res.status, res.body.replace(user, "NAME")));
    }
    assert_eq!(seen[0].0, 401);
    for other in &seen[1..] {
        assert_eq!(other, &seen[0]);
    }
    assert_eq!(checks(&gw).await, 6.0, "a password check for every one");
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A sign-in attempt with a wrong password, as raw parts to send over an open connection.
struct Attempt {
    host: String,
    cookie: String,
    csrf: String,
}

impl Attempt {
    /// Send it for `user`; the round trip in milliseconds (the answer must be 401).
    async fn timed(
        &self,
        sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
        user: &str,
    ) -> f64 {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("username", user)
            .append_pair("password", "wrong")
            .append_pair("csrf", &self.csrf)
            .finish();
        let req = http::Request::post("/login")
            .header("host", &self.host)
            .header("cookie", &self.cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        sender.ready().await.unwrap();
        let start = Instant::now();
        let res = sender.send_request(req).await.unwrap();
        let status = res.status();
        let _ = res.into_body().collect().await.unwrap();
        let elapsed = start.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(status, 401);
        elapsed
    }
}

/// An unknown user name and a wrong password take the same time (argon2 runs for unknown
/// users too): over 31 interleaved pairs of attempts the median difference is under 5 ms,
/// while one password check takes longer than that.
#[tokio::test]
async fn unknown_user_and_wrong_password_take_the_same_time() {
    let gw = gateway(&throttle(1_000_000, 1_000_000, 1_000_000, "1s")).await;
    let browser = gw.client();
    let form = login_form(&browser, &gw, "app.localhost").await;
    // One keep-alive connection for every attempt: no TLS handshake in the measurements,
    // which on a loaded machine would add more noise than the margin allows.
    let tls = browser.connect("auth.localhost").await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let attempt = Attempt {
        host: format!("auth.localhost:{}", gw.port),
        cookie: format!(
            "__Host-gatehouse-portal={}",
            browser
                .cookie("auth.localhost", "__Host-gatehouse-portal")
                .unwrap()
        ),
        csrf: form_field(&form, "csrf").unwrap(),
    };
    let mut timed = async |user: &str| attempt.timed(&mut sender, user).await;
    // Warm up caches and the blocking pool.
    for _ in 0..3 {
        timed("alice").await;
        timed("nobody").await;
    }
    // Pairs in alternating order, so that a change of load on the machine (other tests,
    // other builds) hits both sides alike; the median of the pairs' differences.
    let (mut known, mut unknown, mut diffs) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..31 {
        let (k, u) = if i % 2 == 0 {
            let k = timed("alice").await;
            (k, timed("nobody").await)
        } else {
            let u = timed("nobody").await;
            (timed("alice").await, u)
        };
        known.push(k);
        unknown.push(u);
        diffs.push(k - u);
    }
    // The cost of one password check alone, for scale.
    let one_check = {
        let start = Instant::now();
        gatehouse::crypto::password::verify_blocking(&hash_for("alice-pw"), "wrong");
        start.elapsed().as_secs_f64() * 1000.0
    };
    let (known, unknown, diff) = (median(&mut known), median(&mut unknown), median(&mut diffs));
    eprintln!(
        "median ms: wrong password {known:.2}, unknown user {unknown:.2}, paired difference {diff:.2}; one password check {one_check:.2}"
    );
    assert!(
        diff.abs() < 5.0,
        "wrong password {known:.2} ms, unknown user {unknown:.2} ms: median difference {diff:.2} ms"
    );
    assert!(
        one_check > 5.0,
        "a password check ({one_check:.2} ms) must cost more than the allowed difference, or this test shows nothing"
    );
}

/// The current-password check at `/password` shares the sign-in throttle: a stolen portal
/// session cannot be used to guess its owner's password at full speed. Once throttled, even
/// the right current password is refused (429) and nothing is hashed.
#[tokio::test]
async fn password_change_form_is_throttled() {
    let gw = gateway(&throttle(2, 100, 100, "1h")).await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    let form = browser.get(&gw.url("auth.localhost", "/password")).await;
    assert_eq!(form.status, 200);
    let change = |current: &'static str| {
        let mut fields = vec![
            ("current_password", current.to_string()),
            ("new_password", "a brand new password".to_string()),
            ("confirm_password", "a brand new password".to_string()),
        ];
        if let Some(csrf) = form_field(&form.body, "csrf") {
            fields.push(("csrf", csrf));
        }
        let browser = &browser;
        let url = gw.url("auth.localhost", "/password");
        async move {
            let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            browser.post_form(&url, &pairs).await
        }
    };
    for _ in 0..2 {
        assert_eq!(change("a guess").await.status, 401);
    }
    let hashed = checks(&gw).await;
    let res = change("alice-pw").await;
    assert_eq!(res.status, 429, "{res:?}");
    assert!(retry_after(&res) >= 1);
    assert_eq!(
        checks(&gw).await,
        hashed,
        "a throttled attempt is not hashed"
    );
    // Once the wait is over the right current password works again: the refusal was the
    // throttle's, and nothing had changed.
    tokio::time::sleep(Duration::from_secs(retry_after(&res))).await;
    let res = change("alice-pw").await;
    assert_eq!(res.status, 200, "{res:?}");
}

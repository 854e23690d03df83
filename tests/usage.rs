//! SPEC §6 usage: gates count requests and body bytes per session and report them at each
//! sync; the portal adds them to the account's usage per site and day; `gatehouse report`
//! and the admin listener's `/report` give one row per account across all sites.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Backend, Gateway, Resp, signed_in_browser};
use http::Method;

/// What the test sent and received on one site, as the report should count it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counted {
    requests: u64,
    bytes_in: u64,
    bytes_out: u64,
}

impl Counted {
    /// An admitted request that sent `sent` body bytes and got `res` back.
    fn add(&mut self, sent: usize, res: &Resp) {
        assert_eq!(res.status, 200, "{res:?}");
        self.requests += 1;
        self.bytes_in += sent as u64;
        self.bytes_out += res.body.len() as u64;
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({"requests": self.requests, "bytes_in": self.bytes_in, "bytes_out": self.bytes_out})
    }

    fn plus(&self, o: &Counted) -> Counted {
        Counted {
            requests: self.requests + o.requests,
            bytes_in: self.bytes_in + o.bytes_in,
            bytes_out: self.bytes_out + o.bytes_out,
        }
    }

    fn csv(&self) -> String {
        format!("{},{},{}", self.requests, self.bytes_in, self.bytes_out)
    }
}

async fn post(browser: &common::Client, gw: &Gateway, host: &str, n: usize) -> Resp {
    let body = Bytes::from(vec![b'x'; n]);
    browser
        .request(Method::POST, &gw.url(host, "/upload"), &[], body)
        .await
}

async fn gateway(sync_interval: &str) -> (Backend, Gateway) {
    let backend = Backend::start().await;
    let gw = Gateway::builder()
        .portal(&format!("sync_interval = \"{sync_interval}\""))
        .user("alice", "alice-pw", 3)
        .user("bob", "bob-pw", 3)
        .site_with(
            "app",
            &backend.url(),
            "[[sites.rules]]\npath = \"/admin\"\nmin_level = 5\n",
        )
        .site("wiki", &backend.url())
        .start()
        .await;
    (backend, gw)
}

/// The admin report as JSON, once `account`'s total requests reach `requests` (syncs run
/// in the background), or whatever it is after 10 s.
async fn report_when(gw: &Gateway, account: &str, requests: u64) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = gw.admin_get("/report?format=json").await;
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let row = v
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["account"] == account);
        let done = row.is_some_and(|r| r["total"]["requests"] == requests);
        if done || tokio::time::Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn cli_report(gw: &Gateway, extra: &[&str]) -> String {
    let config = gw.config_path.to_str().unwrap();
    let mut args = vec!["report", "-c", config];
    args.extend_from_slice(extra);
    let out = common::cli(&args, "", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Traffic on two sites adds up exactly, per site and in total, in the admin report and in
/// `gatehouse report` (CSV and JSON); refused requests do not count, and a later sync does
/// not count anything twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_on_two_sites_is_reported_exactly() {
    let (_backend, gw) = gateway("300ms").await;
    let (mut app, mut wiki, mut bob_app) =
        (Counted::default(), Counted::default(), Counted::default());

    let alice = gw.client();
    let res = common::sign_in(&alice, &gw, "app.localhost", "/", "alice", "alice-pw").await;
    app.add(0, &res);
    // Single sign-on to the second site: its first proxied request counts there.
    let res = alice.follow(&gw.url("wiki.localhost", "/")).await;
    wiki.add(0, &res);
    for _ in 0..5 {
        let res = post(&alice, &gw, "app.localhost", 1000).await;
        app.add(1000, &res);
    }
    for n in [4096, 300_000, 0] {
        let res = alice
            .get(&gw.url("app.localhost", &format!("/bytes?n={n}")))
            .await;
        assert_eq!(res.body.len(), n);
        app.add(0, &res);
    }
    for _ in 0..4 {
        let res = alice.get(&gw.url("wiki.localhost", "/bytes?n=100")).await;
        wiki.add(0, &res);
    }
    for _ in 0..2 {
        let res = post(&alice, &gw, "wiki.localhost", 300).await;
        wiki.add(300, &res);
    }
    // Refused by level: never proxied, not counted.
    let refused = alice.get(&gw.url("app.localhost", "/admin")).await;
    assert_eq!(refused.status, 403);

    let bob = signed_in_browser(&gw, "app.localhost", "bob", "bob-pw").await;
    bob_app.requests = 1;
    bob_app.bytes_out = "ok 0".len() as u64;
    let res = post(&bob, &gw, "app.localhost", 10).await;
    bob_app.add(10, &res);

    let alice_total = app.plus(&wiki);
    let report = report_when(&gw, "alice", alice_total.requests).await;
    // Give any stray double count a chance to show.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let again = report_when(&gw, "bob", bob_app.requests).await;
    assert_eq!(report[0], again[0], "a later sync adds nothing");
    let report = again;
    assert_eq!(
        report,
        serde_json::json!([
            {
                "account": "alice", "merged": [], "from": null, "to": null,
                "total": alice_total.json(),
                "sites": {"app": app.json(), "wiki": wiki.json()},
            },
            {
                "account": "bob", "merged": [], "from": null, "to": null,
                "total": bob_app.json(),
                "sites": {"app": bob_app.json()},
            },
        ])
    );
    assert_eq!(app.bytes_in, 5000);
    assert!(app.bytes_out > 304_096, "{app:?}");

    // The command line reads the same numbers from the store.
    let csv = cli_report(&gw, &[]);
    let zero = Counted::default();
    assert_eq!(
        csv,
        format!(
            "account,merged,requests,bytes_in,bytes_out,app.requests,app.bytes_in,app.bytes_out,wiki.requests,wiki.bytes_in,wiki.bytes_out\n\
             alice,,{},{},{}\nbob,,{},{},{}\n",
            alice_total.csv(),
            app.csv(),
            wiki.csv(),
            bob_app.csv(),
            bob_app.csv(),
            zero.csv()
        )
    );
    let today = gatehouse::portal::usage::Day::of_unix(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
    )
    .to_string();
    let json = cli_report(
        &gw,
        &[
            "--account",
            "alice",
            "--from",
            &today,
            "--to",
            &today,
            "--format",
            "json",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["total"], alice_total.json());
    assert_eq!(v[0]["sites"]["wiki"], wiki.json());
    // A range without today has no traffic.
    let (status, body) = gw
        .admin_get("/report?account=alice&to=2000-01-01&format=json")
        .await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v[0]["total"], zero.json());
    assert_eq!(v[0]["sites"], serde_json::json!({}));
}

/// Traffic since the last sync is not lost at shutdown: a last sync runs after the drain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_reports_the_last_traffic() {
    // No sync would come for an hour (the first runs at start, before any traffic).
    let (_backend, gw) = gateway("1h").await;
    let alice = gw.client();
    let mut app = Counted::default();
    let res = common::sign_in(&alice, &gw, "app.localhost", "/", "alice", "alice-pw").await;
    app.add(0, &res);
    for _ in 0..3 {
        let res = post(&alice, &gw, "app.localhost", 123).await;
        app.add(123, &res);
    }
    let (_, before) = gw.admin_get("/report?account=alice&format=json").await;
    let before: serde_json::Value = serde_json::from_str(&before).unwrap();
    assert_eq!(before[0]["total"]["requests"], 0, "not synced yet");
    // Stop, keeping the fixture (and so its folder, with the store) for the command line.
    let mut gw = gw;
    gw.begin_stop().await.unwrap();
    let out = cli_report(&gw, &["--account", "alice", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["sites"]["app"], app.json());
}

/// The admin endpoint checks its parameters (400), knows its accounts (404); the report
/// is not served on the public listener; the command line refuses bad options.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_parameters_are_checked() {
    let (_backend, gw) = gateway("1s").await;
    for bad in [
        "from=2026-02-30",
        "to=tomorrow",
        "from=2026-11-02&to=2026-11-01",
        "format=xml",
        "acount=alice",
        "account=alice&account=bob",
    ] {
        let (status, body) = gw.admin_get(&format!("/report?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (status, _) = gw.admin_get("/report?account=nobody").await;
    assert_eq!(status, 404);
    let (status, body) = gw.admin_get("/report").await;
    assert_eq!(status, 200);
    assert!(
        body.starts_with("account,merged,requests,bytes_in,bytes_out\n"),
        "{body}"
    );

    let browser = gw.client();
    let res = browser.get(&gw.url("auth.localhost", "/report")).await;
    assert_ne!(res.status, 200, "{res:?}");
    assert!(!res.body.contains("bytes_out"), "{res:?}");

    let config = gw.config_path.to_str().unwrap();
    for (args, wanted) in [
        (vec!["--from", "2026-13-01"], "from \"2026-13-01\""),
        (vec!["--format", "xml"], "format \"xml\""),
        (vec!["--account", "nobody"], "no account \"nobody\""),
    ] {
        let mut all = vec!["report", "-c", config];
        all.extend(args);
        let out = common::cli(&all, "", &[]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(wanted), "{err}");
    }
}

/// An API client that sends one request (admitted on a table miss, never seen again)
/// still has it counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_api_request_counts() {
    let backend = Backend::start().await;
    let gw = Gateway::builder()
        .portal("sync_interval = \"300ms\"")
        .user("alice", "alice-pw", 3)
        .site_with("api", &backend.url(), "allow_basic = true\n")
        .start()
        .await;
    let client = gw.client();
    let auth = common::basic("alice", "alice-pw");
    let res = client
        .request(
            Method::POST,
            &gw.url("api.localhost", "/upload"),
            &[("authorization", &auth)],
            Bytes::from_static(b"hello"),
        )
        .await;
    let mut api = Counted::default();
    api.add(5, &res);
    let report = report_when(&gw, "alice", 1).await;
    assert_eq!(report[0]["sites"]["api"], api.json(), "{report}");
}

//! Issue 8: one portal process and edge processes, each a full `gatehouse run` with its
//! own config, on loopback ports. Behaviour across processes equals single-process
//! behaviour: SSO between sites on different edges, sign-out reaching every edge within one
//! sync, idle expiry decided by the portal, one-time codes single-use across processes, and
//! offline grace while the portal is stopped. And two portal processes sharing one
//! PostgreSQL store behind one name, each serving one edge.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::process::{Process, free_port};
use common::*;

const SYNC: Duration = Duration::from_secs(1);

/// Ports of every process, chosen before any starts (each config names the others).
struct Ports {
    portal: u16,
    portal_admin: u16,
    edges: [(u16, u16); 2],
    /// `[portal]` lines with the timeouts every process shares.
    timeouts: String,
    /// `[portal] store`: an SQLite file, or a PostgreSQL database both portals share.
    store: String,
    /// A second portal's listener and admin ports (on the shared store); edge 1 asks it.
    portal2: Option<(u16, u16)>,
}

struct Cluster {
    dir: tempfile::TempDir,
    ports: Ports,
    backend: Backend,
    portal: Process,
    /// The second portal, with a PostgreSQL store.
    portal2: Option<Process>,
    edges: Vec<Process>,
}

/// Site `app` is served by edge 0, site `wiki` by edge 1 (both edges know both sites).
fn config(dir: &std::path::Path, ports: &Ports, backend: &Backend, role: &str) -> PathBuf {
    let certs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("certs");
    let (listen, admin, cluster, users) = match role {
        "portal" | "portal2" => (
            ports
                .portal2
                .filter(|_| role == "portal2")
                .map_or(ports.portal, |p| p.0),
            ports
                .portal2
                .filter(|_| role == "portal2")
                .map_or(ports.portal_admin, |p| p.1),
            "role = \"portal\"\nsecret_file = \"cluster.key\"\n".to_string(),
            format!(
                "[[users]]\nname = \"alice\"\npassword_hash = {:?}\nlevel = 3\n\n\
                 [[users]]\nname = \"bob\"\npassword_hash = {:?}\nlevel = 2\nidle_timeout = \"60s\"\n",
                hash_for("alice-pw"),
                hash_for("bob-pw")
            ),
        ),
        edge => {
            let i: usize = edge.strip_prefix("edge").unwrap().parse().unwrap();
            // With two portals, edge 1 asks the second (both answer for everyone).
            let api = match ports.portal2 {
                Some((second, _)) if i == 1 => second,
                _ => ports.portal,
            };
            (
                ports.edges[i].0,
                ports.edges[i].1,
                format!(
                    "role = \"edge\"\nportal_url = \"https://auth.localhost:{}\"\n\
                     secret_file = \"cluster.key\"\nca_file = {:?}\n",
                    api,
                    certs.join("dev-ca.crt").display().to_string()
                ),
                String::new(),
            )
        }
    };
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:{listen}\"\nadmin = \"127.0.0.1:{admin}\"\nshutdown_grace = \"1s\"\n\n\
         [tls]\ncert = {cert:?}\nkey = {key:?}\n\n\
         [portal]\nhost = \"auth.localhost\"\npublic_url = \"https://auth.localhost:{portal}\"\n\
         store = {store:?}\n{timeouts}\nsync_interval = \"1s\"\n\n\
         {users}\n\
         [[sites]]\nid = \"app\"\nhost = \"app.localhost\"\npublic_url = \"https://app.localhost:{e0}\"\nbackend = {backend:?}\n\n\
         [[sites]]\nid = \"wiki\"\nhost = \"wiki.localhost\"\npublic_url = \"https://wiki.localhost:{e1}\"\nbackend = {backend:?}\n\n\
         [cluster]\n{cluster}",
        cert = certs.join("localhost.crt").display().to_string(),
        key = certs.join("localhost.key").display().to_string(),
        portal = ports.portal,
        e0 = ports.edges[0].0,
        e1 = ports.edges[1].0,
        backend = backend.url(),
        timeouts = ports.timeouts,
        store = ports.store,
    );
    let file = dir.join(format!("{role}.toml"));
    std::fs::write(&file, text).unwrap();
    file
}

impl Cluster {
    async fn start() -> Cluster {
        Self::start_with("idle_timeout = \"6s\"\ncache_margin = \"3s\"").await
    }

    async fn start_with(timeouts: &str) -> Cluster {
        Self::start_on("gatehouse.db", timeouts, false).await
    }

    /// Two portals on one fresh PostgreSQL database: edge 0 asks the first, edge 1 the
    /// second; browsers reach either under the one portal name.
    async fn start_two_portals() -> Cluster {
        // The PostgreSQL client blocks: not on the test's event loop.
        let store =
            tokio::task::spawn_blocking(gatehouse::store::postgres::testing::fresh_database)
                .await
                .unwrap();
        Self::start_on(&store, "idle_timeout = \"6s\"\ncache_margin = \"3s\"", true).await
    }

    async fn start_on(store: &str, timeouts: &str, two_portals: bool) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("cluster.key"),
            "0123456789abcdef0123456789abcdef-test-secret\n",
        )
        .unwrap();
        let ports = Ports {
            portal: free_port(),
            portal_admin: free_port(),
            edges: [(free_port(), free_port()), (free_port(), free_port())],
            timeouts: timeouts.to_string(),
            store: store.to_string(),
            portal2: two_portals.then(|| (free_port(), free_port())),
        };
        let backend = Backend::start().await;
        let portal = Process::start(&config(dir.path(), &ports, &backend, "portal"));
        // It finds the schema the first one made (concurrent starts: see the store's tests).
        let portal2 =
            two_portals.then(|| Process::start(&config(dir.path(), &ports, &backend, "portal2")));
        let edges = (0..2)
            .map(|i| Process::start(&config(dir.path(), &ports, &backend, &format!("edge{i}"))))
            .collect();
        Cluster {
            dir,
            ports,
            backend,
            portal,
            portal2,
            edges,
        }
    }

    fn restart_portal(&mut self) {
        self.portal.kill();
        let file = self.dir.path().join("portal.toml");
        self.portal = Process::start(&file);
    }

    /// A browser that reaches each host at the process serving it.
    fn browser(&self) -> Client {
        Client::new(self.ports.portal)
            .with_host_port("app.localhost", self.ports.edges[0].0)
            .with_host_port("wiki.localhost", self.ports.edges[1].0)
    }

    fn url(&self, host: &str, path: &str) -> String {
        let port = match host {
            "app.localhost" => self.ports.edges[0].0,
            "wiki.localhost" => self.ports.edges[1].0,
            _ => self.ports.portal,
        };
        format!("https://{host}:{port}{path}")
    }

    async fn admin(&self, which: Option<usize>, path: &str) -> (u16, String) {
        let port = which.map_or(self.ports.portal_admin, |i| self.ports.edges[i].1);
        client::plain_get(([127, 0, 0, 1], port).into(), "127.0.0.1", path).await
    }

    async fn metric(&self, which: Option<usize>, name: &str) -> f64 {
        let (_, text) = self.admin(which, "/metrics").await;
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    }

    /// From an unknown browser's first request to the site's answer: the hand-off through
    /// the portal's sign-in form. Returns the site's final answer.
    async fn sign_in(&self, browser: &Client, host: &str, user: &str, password: &str) -> Resp {
        let first = browser.get(&self.url(host, "/")).await;
        assert_eq!(first.status, 302, "{first:?}");
        let login = first.location().unwrap();
        assert!(
            login.starts_with(&self.url("auth.localhost", "/login?")),
            "{login}"
        );
        let form = browser.get(&login).await;
        assert_eq!(form.status, 200, "{form:?}");
        let mut fields = vec![
            ("username", user.to_string()),
            ("password", password.to_string()),
        ];
        for name in ["csrf", "site", "h", "rd"] {
            if let Some(v) = form_field(&form.body, name) {
                fields.push((name, v));
            }
        }
        let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let posted = browser
            .post_form(&self.url("auth.localhost", "/login"), &pairs)
            .await;
        assert_eq!(posted.status, 303, "{posted:?}");
        browser.follow(&posted.location().unwrap()).await
    }

    /// The callback URL (with a fresh one-time code) the portal sends a browser already
    /// signed in there to, for `host`; the browser gets a new site cookie on the way.
    async fn fresh_callback(&self, browser: &Client, host: &str) -> String {
        browser.clear_cookies(host);
        let first = browser.get(&self.url(host, "/")).await;
        assert_eq!(first.status, 302, "{first:?}");
        let back = browser.get(&first.location().unwrap()).await;
        assert!(
            (300..400).contains(&back.status),
            "signed in at the portal: {back:?}"
        );
        let callback = back.location().unwrap();
        assert!(
            callback.starts_with(&self.url(host, "/.gatehouse/callback?")),
            "{callback}"
        );
        callback
    }

    /// Sign `browser` out at the portal it reaches, and see both edges refuse it within one
    /// sync interval (plus a request's time).
    async fn sign_out_everywhere(&self, browser: &Client) {
        let confirm = browser.get(&self.url("auth.localhost", "/logout")).await;
        let csrf = form_field(&confirm.body, "csrf").unwrap();
        let done = browser
            .post_form(&self.url("auth.localhost", "/logout"), &[("csrf", &csrf)])
            .await;
        assert_eq!(done.status, 200, "{done:?}");
        let signed_out = Instant::now();
        for host in ["app.localhost", "wiki.localhost"] {
            until_status(browser, &self.url(host, "/"), 302, SYNC * 5).await;
            let took = signed_out.elapsed();
            assert!(
                took <= SYNC + Duration::from_millis(800),
                "{host} refused only after {took:?}"
            );
        }
    }

    async fn wait_ready(&self, edge: usize, ready: bool, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let (status, body) = self.admin(Some(edge), "/readyz").await;
            if (status == 200) == ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "edge {edge} /readyz still {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `GET url` until it answers `status`; returns how long that took.
async fn until_status(browser: &Client, url: &str, status: u16, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let res = browser.get(url).await;
        if res.status == status {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{url} still answers {}",
            res.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sign in through edge 0, SSO to edge 1 without a password; sign-out on edge 1 refuses
/// the user on edge 0 within one sync interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sso_across_edges_and_sign_out_everywhere() {
    let c = Cluster::start().await;
    let browser = c.browser();
    let res = c
        .sign_in(&browser, "app.localhost", "alice", "alice-pw")
        .await;
    assert_eq!(res.status, 200, "{res:?}");
    let seen = c.backend.last();
    assert_eq!(seen.headers["x-auth-user"], "alice");
    assert_eq!(
        seen.headers["host"],
        format!("app.localhost:{}", c.ports.edges[0].0)
    );

    // Edge 1: no password asked, the portal session carries over.
    let res = browser.follow(&c.url("wiki.localhost", "/page")).await;
    assert_eq!(res.status, 200, "{res:?}");
    let seen = c.backend.last();
    assert_eq!(
        (seen.path.as_str(), &seen.headers["x-auth-user"]),
        ("/page", &"alice".parse().unwrap())
    );
    assert_eq!(browser.get(&c.url("app.localhost", "/")).await.status, 200);

    // Sign out from edge 1's site.
    let to_portal = browser
        .get(&c.url("wiki.localhost", "/.gatehouse/logout"))
        .await;
    assert_eq!(to_portal.status, 302);
    let confirm = browser.get(&to_portal.location().unwrap()).await;
    let csrf = form_field(&confirm.body, "csrf").unwrap();
    let rd = form_field(&confirm.body, "rd").unwrap();
    let done = browser
        .post_form(
            &c.url("auth.localhost", "/logout"),
            &[("csrf", &csrf), ("rd", &rd)],
        )
        .await;
    assert_eq!(done.status, 200, "{done:?}");
    let signed_out = Instant::now();
    // Back to the site the sign-out started from, at once: edge 1 forgets the browser
    // there and then, without waiting for its sync.
    let old = browser
        .cookie("wiki.localhost", "__Host-gatehouse")
        .unwrap();
    let back = browser.get(&rd).await;
    assert_eq!(
        (back.status, back.location()),
        (302, Some(c.url("wiki.localhost", "/")))
    );
    assert!(
        browser
            .cookie("wiki.localhost", "__Host-gatehouse")
            .is_none()
    );
    let replay = c.browser();
    replay.set_cookie("wiki.localhost", "__Host-gatehouse", &old);
    let res = replay.get(&c.url("wiki.localhost", "/")).await;
    assert_eq!(res.status, 302, "the old cookie admits nobody on edge 1");
    // Each edge learns it at its next sync, at most one interval later (plus a request's time).
    for host in ["app.localhost", "wiki.localhost"] {
        until_status(&browser, &c.url(host, "/"), 302, SYNC * 5).await;
        let took = signed_out.elapsed();
        assert!(
            took <= SYNC + Duration::from_millis(500),
            "{host} refused only after {took:?}"
        );
    }
    assert!(
        !c.portal.log_text().contains("alice-pw"),
        "no password in the portal's log"
    );
}

/// The edge's entry expires `cache_margin` before the idle timeout, and then the portal
/// decides: still alive (admitted again), and later idle for longer than the timeout (back
/// to sign-in).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_expiry_is_decided_by_the_portal() {
    let c = Cluster::start().await;
    let browser = c.browser();
    assert_eq!(
        c.sign_in(&browser, "app.localhost", "alice", "alice-pw")
            .await
            .status,
        200
    );
    assert_eq!(c.metric(Some(0), "gatehouse_table_entries").await, 1.0);

    // 6 s idle timeout, 3 s margin: after 4 s the edge has let the entry go, the portal not.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(c.metric(Some(0), "gatehouse_table_entries").await, 0.0);
    assert_eq!(c.metric(None, "gatehouse_portal_sessions").await, 1.0);
    assert_eq!(
        browser.get(&c.url("app.localhost", "/")).await.status,
        200,
        "the portal still admits"
    );
    assert_eq!(c.metric(Some(0), "gatehouse_table_entries").await, 1.0);

    // Then 7 s without a request anywhere: the portal ended the session.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(browser.get(&c.url("app.localhost", "/")).await.status, 302);
    assert_eq!(browser.get(&c.url("wiki.localhost", "/")).await.status, 302);
}

/// The one-time-code attacks of the core issue, across processes: a code that reached
/// another browser, a code taken to another site (on the other edge), and a replay on
/// either edge are all refused, and each attempt burns the code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_time_codes_hold_across_processes() {
    let c = Cluster::start().await;
    let alice = c.browser();
    assert_eq!(
        c.sign_in(&alice, "app.localhost", "alice", "alice-pw")
            .await
            .status,
        200
    );

    // Another browser (its own site cookie) with alice's code: refused, and the code is dead.
    let stolen = c.fresh_callback(&alice, "app.localhost").await;
    let mallory = c.browser();
    let first = mallory.get(&c.url("app.localhost", "/")).await; // a site cookie of its own
    assert_eq!(first.status, 302);
    assert_eq!(mallory.get(&stolen).await.status, 403);
    assert_eq!(
        alice.get(&stolen).await.status,
        403,
        "burnt by the failed attempt"
    );

    // A code for site app, taken to site wiki on the other edge.
    let for_app = c.fresh_callback(&alice, "app.localhost").await;
    let query = for_app.split_once('?').unwrap().1;
    let moved = c.url("wiki.localhost", &format!("/.gatehouse/callback?{query}"));
    // With the very site cookie the code is bound to, so only the site differs.
    let bound = alice.cookie("app.localhost", "__Host-gatehouse").unwrap();
    alice.set_cookie("wiki.localhost", "__Host-gatehouse", &bound);
    assert_eq!(alice.get(&moved).await.status, 403);
    alice.clear_cookies("wiki.localhost");
    assert_eq!(
        alice.get(&for_app).await.status,
        403,
        "burnt on the other edge"
    );

    // Used once on edge 0; replayed there and on edge 1 (which also serves site app).
    let good = c.fresh_callback(&alice, "app.localhost").await;
    let used = alice.get(&good).await;
    assert_eq!(used.status, 302, "{used:?}");
    assert_eq!(alice.get(&c.url("app.localhost", "/")).await.status, 200);
    assert_eq!(
        alice.get(&good).await.status,
        403,
        "replay on the same edge"
    );
    let other_edge = good.replace(
        &format!(":{}/", c.ports.edges[0].0),
        &format!(":{}/", c.ports.edges[1].0),
    );
    let replay = Client::new(c.ports.edges[1].0);
    replay.set_cookie(
        "app.localhost",
        "__Host-gatehouse",
        &alice.cookie("app.localhost", "__Host-gatehouse").unwrap(),
    );
    assert_eq!(
        replay.get(&other_edge).await.status,
        403,
        "replay on the other edge"
    );
}

/// The portal stopped (SIGSTOP): edges keep admitting the users in their tables, refuse new
/// sign-ins with a 503 page, say so on /readyz and in metrics and logs; when it continues,
/// they catch up: the traffic of the outage reaches the usage report, and a sign-out
/// reaches them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_grace_while_the_portal_is_stopped() {
    let c = Cluster::start().await;
    let bob = c.browser();
    assert_eq!(
        c.sign_in(&bob, "app.localhost", "bob", "bob-pw")
            .await
            .status,
        200
    );
    c.wait_ready(0, true, Duration::from_secs(5)).await;

    c.portal.signal("-STOP");
    // Until the edge notices (a sync times out), bob keeps using the site: his entry is
    // renewed by each request, so it outlives the outage.
    let deadline = Instant::now() + Duration::from_secs(15);
    while c.admin(Some(0), "/readyz").await.0 == 200 {
        assert!(Instant::now() < deadline, "the edge never noticed");
        let res = bob.get(&c.url("app.localhost", "/meanwhile")).await;
        assert_eq!(res.status, 200);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(c.metric(Some(0), "gatehouse_portal_reachable").await, 0.0);
    assert!(c.edges[0].logged("sync with the portal failed"));
    let before = c.backend.count();
    for _ in 0..5 {
        assert_eq!(
            bob.get(&c.url("app.localhost", "/during")).await.status,
            200
        );
    }
    assert_eq!(
        c.backend.count(),
        before + 5,
        "admitted from the edge's table"
    );
    let newcomer = c.browser();
    let refused = newcomer.get(&c.url("app.localhost", "/")).await;
    assert_eq!(refused.status, 503, "{refused:?}");
    assert!(
        refused.body.contains("Sign-in unavailable"),
        "{}",
        refused.body
    );

    c.portal.signal("-CONT");
    c.wait_ready(0, true, Duration::from_secs(10)).await;
    assert!(c.edges[0].logged("the portal is reachable again"));
    // Every request bob made (sign-in's included) reaches the portal's usage report.
    let total = c.backend.count() as u64;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = c.admin(None, "/report?account=bob&format=json").await;
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if v[0]["total"]["requests"] == total {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "report {v} does not count {total} requests"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Revocations flow again.
    let confirm = bob.get(&c.url("auth.localhost", "/logout")).await;
    let csrf = form_field(&confirm.body, "csrf").unwrap();
    bob.post_form(&c.url("auth.localhost", "/logout"), &[("csrf", &csrf)])
        .await;
    until_status(&bob, &c.url("app.localhost", "/"), 302, SYNC * 3).await;
}

/// Only a request signed with the cluster secret reaches the API: none, a wrong one, and
/// a replayed one are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_refuses_unsigned_forged_and_replayed_calls() {
    use gatehouse::central::auth::ClusterSecret;
    let c = Cluster::start().await;
    let api = Client::new(c.ports.portal);
    let url = c.url("auth.localhost", "/.gatehouse/api/v1/sync");
    let body = br#"{"cursor":0,"used":[],"usage":[]}"#;
    let post = |sig: Option<String>| {
        let api = &api;
        let url = url.clone();
        async move {
            let mut headers = vec![("content-type", "application/json".to_string())];
            if let Some(s) = sig {
                headers.push(("gatehouse-signature", s));
            }
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            api.request(
                http::Method::POST,
                &url,
                &h,
                bytes::Bytes::from_static(body),
            )
            .await
        }
    };
    assert_eq!(post(None).await.status, 401);
    let wrong = ClusterSecret::new(b"another secret, long enough to be accepted".to_vec());
    assert_eq!(
        post(Some(wrong.sign("POST", "/.gatehouse/api/v1/sync", body)))
            .await
            .status,
        401
    );
    let right = ClusterSecret::new(b"0123456789abcdef0123456789abcdef-test-secret".to_vec());
    let signed = right.sign("POST", "/.gatehouse/api/v1/sync", body);
    let ok = post(Some(signed.clone())).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert!(ok.json()["epoch"].is_u64());
    assert_eq!(post(Some(signed)).await.status, 401, "replay");
    // Signed for another path: refused.
    let other = right.sign("POST", "/.gatehouse/api/v1/check", body);
    assert_eq!(post(Some(other)).await.status, 401);
    assert!(c.portal.logged("portal API request refused"));
}
/// The portal killed and started again: the edge notices at once, and once the portal is
/// back it is ready again, and a signed-in user is still admitted (sessions are in the
/// store; the edge drops its table on the portal's new epoch and asks again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_restart() {
    let mut c = Cluster::start().await;
    let bob = c.browser();
    assert_eq!(
        c.sign_in(&bob, "app.localhost", "bob", "bob-pw")
            .await
            .status,
        200
    );
    // Past the store's write-behind.
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.portal.kill();
    c.wait_ready(0, false, Duration::from_secs(5)).await;
    assert_eq!(
        bob.get(&c.url("app.localhost", "/")).await.status,
        200,
        "offline grace"
    );
    c.restart_portal();
    c.wait_ready(0, true, Duration::from_secs(10)).await;
    // The new epoch emptied the edge's table: the next request is the portal's decision,
    // from the sessions it restored.
    assert_eq!(c.metric(Some(0), "gatehouse_table_entries").await, 0.0);
    assert_eq!(
        bob.get(&c.url("app.localhost", "/")).await.status,
        200,
        "still signed in"
    );
    // Edge 1 retries on its own schedule; until its first good sync it sends newcomers
    // the 503 page rather than to the portal.
    c.wait_ready(1, true, Duration::from_secs(10)).await;
    assert_eq!(
        bob.follow(&c.url("wiki.localhost", "/")).await.status,
        200,
        "SSO still works"
    );
}

/// Issue 7 point 8 across processes: an idle timeout lowered on the portal's account page
/// reaches the entry an edge holds at the next sync, which then expires on the new
/// schedule (recomputed, not revoked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_idle_timeout_reaches_the_edges() {
    let c = Cluster::start_with("idle_timeout = \"10m\"\ncache_margin = \"58s\"").await;
    let alice = c.browser();
    let res = c
        .sign_in(&alice, "app.localhost", "alice", "alice-pw")
        .await;
    assert_eq!(res.status, 200);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        c.metric(Some(0), "gatehouse_table_entries").await,
        1.0,
        "lives 9 min 2 s"
    );

    let page = alice.get(&c.url("auth.localhost", "/")).await;
    assert_eq!(page.status, 200, "{page:?}");
    let csrf = form_field(&page.body, "csrf").unwrap();
    let posted = alice
        .post_form(
            &c.url("auth.localhost", "/"),
            &[
                ("csrf", &csrf),
                ("action", "idle_timeout"),
                ("idle_timeout", "1"),
            ],
        )
        .await;
    assert_eq!(posted.status, 303, "{posted:?}");
    let at = Instant::now();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(
        c.metric(Some(0), "gatehouse_table_entries").await,
        1.0,
        "kept, not revoked"
    );
    loop {
        if c.metric(Some(0), "gatehouse_table_entries").await == 0.0 {
            break;
        }
        assert!(
            at.elapsed() < Duration::from_secs(10),
            "still there after {:?}",
            at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        at.elapsed() >= Duration::from_millis(1900),
        "not before its new 2 s"
    );
}

/// An edge checks the portal's certificate: with a `ca_file` that did not sign it, the
/// edge never syncs (not ready, a newcomer gets the 503 page) and says why in its log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_refuses_a_portal_certificate_it_cannot_verify() {
    let c = Cluster::start().await;
    let dir = c.dir.path();
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=another CA"])
        .arg("-keyout")
        .arg(dir.join("other-ca.key"))
        .arg("-out")
        .arg(dir.join("other-ca.pem"))
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let dev_ca = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("certs/dev-ca.crt");
    let (port, admin) = (free_port(), free_port());
    let text = std::fs::read_to_string(dir.join("edge0.toml"))
        .unwrap()
        .replace(
            &format!("127.0.0.1:{}\"", c.ports.edges[0].0),
            &format!("127.0.0.1:{port}\""),
        )
        .replace(
            &format!("127.0.0.1:{}\"", c.ports.edges[0].1),
            &format!("127.0.0.1:{admin}\""),
        )
        .replace(
            &format!("{:?}", dev_ca.display().to_string()),
            &format!("{:?}", dir.join("other-ca.pem").display().to_string()),
        );
    assert!(text.contains("other-ca.pem") && text.contains(&port.to_string()));
    std::fs::write(dir.join("edge-other-ca.toml"), text).unwrap();
    let edge = Process::start(&dir.join("edge-other-ca.toml"));

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) =
            client::plain_get(([127, 0, 0, 1], admin).into(), "127.0.0.1", "/readyz").await;
        if status == 503 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the edge trusted a certificate it cannot verify"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let newcomer = Client::new(port);
    let res = newcomer
        .get(&format!("https://app.localhost:{port}/"))
        .await;
    assert_eq!(res.status, 503, "{res:?}");
    assert!(edge.logged("certificate"), "{}", edge.log_text());
}

/// Issue 8 point 7: two portals on one PostgreSQL database, behind one name (the test's
/// browser is the load balancer, sending the portal's name to either). Sign in through one
/// portal and redeem the hand-off through the other; a code is single-use across portals;
/// sign out through either and every edge refuses; a portal killed with `kill -9` loses
/// nothing the other needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_portals_share_one_postgres_store() {
    let mut c = Cluster::start_two_portals().await;
    let (first, second) = (c.ports.portal, c.ports.portal2.unwrap().0);
    let mut browser = c.browser();

    // Site wiki is on edge 1, which asks the second portal; the browser signs in at the
    // first. The code the first minted is redeemed through the second.
    let res = c
        .sign_in(&browser, "wiki.localhost", "alice", "alice-pw")
        .await;
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(c.backend.last().headers["x-auth-user"], "alice");

    // Now the balancer sends the browser to the second portal: its session (started at the
    // first) is known there, and edge 0 redeems that portal's code through the first.
    browser.set_host_port("auth.localhost", second);
    let res = browser.follow(&c.url("app.localhost", "/")).await;
    assert_eq!(res.status, 200, "SSO without a password: {res:?}");
    assert_eq!(c.backend.last().headers["x-auth-user"], "alice");

    // A code minted by the second portal, used once on edge 1 (asking the second) and
    // replayed on edge 0 (asking the first): refused there.
    let code = c.fresh_callback(&browser, "app.localhost").await;
    let cookie = browser.cookie("app.localhost", "__Host-gatehouse").unwrap();
    let via_edge1 = Client::new(c.ports.edges[1].0);
    via_edge1.set_cookie("app.localhost", "__Host-gatehouse", &cookie);
    let on_edge1 = code.replace(
        &format!(":{}/", c.ports.edges[0].0),
        &format!(":{}/", c.ports.edges[1].0),
    );
    let used = via_edge1.get(&on_edge1).await;
    assert_eq!(
        used.status, 302,
        "redeemed through the second portal: {used:?}"
    );
    assert_eq!(
        browser.get(&code).await.status,
        403,
        "the same code through the first portal"
    );
    // The site cookie the code was bound to is admitted on edge 0 too: its binding is in
    // the shared table, whichever edge and portal made it.
    assert_eq!(browser.get(&c.url("app.localhost", "/")).await.status, 200);

    // Sign out through the first portal: both edges refuse within a sync interval.
    browser.set_host_port("auth.localhost", first);
    c.sign_out_everywhere(&browser).await;

    // Bob signs in through the first portal (on site app, edge 0), goes to wiki (edge 1)
    // through the second, and signs out through the second: both edges refuse him too.
    let mut bob = c.browser();
    let res = c.sign_in(&bob, "app.localhost", "bob", "bob-pw").await;
    assert_eq!(res.status, 200, "{res:?}");
    bob.set_host_port("auth.localhost", second);
    assert_eq!(bob.follow(&c.url("wiki.localhost", "/")).await.status, 200);
    c.sign_out_everywhere(&bob).await;

    // Alice signs in again through the first portal, which is then killed (kill -9,
    // whatever it was doing, edge 0's syncs included): the second portal knows her session
    // and hands her to wiki without a password, and signs her out on the edge it serves.
    let mut alice = c.browser();
    let res = c
        .sign_in(&alice, "app.localhost", "alice", "alice-pw")
        .await;
    assert_eq!(res.status, 200, "{res:?}");
    c.portal.kill();
    alice.set_host_port("auth.localhost", second);
    let res = alice.follow(&c.url("wiki.localhost", "/")).await;
    assert_eq!(res.status, 200, "the second portal carries on: {res:?}");
    assert_eq!(c.backend.last().headers["x-auth-user"], "alice");
    let confirm = alice.get(&c.url("auth.localhost", "/logout")).await;
    let csrf = form_field(&confirm.body, "csrf").unwrap();
    let done = alice
        .post_form(&c.url("auth.localhost", "/logout"), &[("csrf", &csrf)])
        .await;
    assert_eq!(done.status, 200, "{done:?}");
    until_status(&alice, &c.url("wiki.localhost", "/"), 302, SYNC * 5).await;
    let portal2 = c.portal2.as_mut().unwrap();
    let log = portal2.log_text();
    assert!(!log.contains("bob-pw") && !log.contains("alice-pw"));

    // SIGTERM: a clean exit, its database connections closed (not an abort at teardown).
    portal2.signal("-TERM");
    let status = portal2.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{status}:\n{}", portal2.log_text());
    assert!(
        !portal2.log_text().contains("panic"),
        "{}",
        portal2.log_text()
    );
}

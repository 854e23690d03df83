//! The real `gatehouse run` process (issue 6 point 8): SIGTERM drains in-flight requests and
//! exits 0; the SQLite store survives `kill -9` in the middle of writes; sessions survive a
//! restart (SIGTERM, or `kill -9` after they were written), sign-outs too.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;

/// Start `gatehouse run` on `config`; returns the child and the HTTPS port it serves on
/// (read from its "gatehouse serving" log line).
fn start(config: &Path) -> (Child, u16) {
    let (child, port, _) = start_logged(config);
    (child, port)
}

type Log = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// [`start`], also keeping every log line the process writes.
fn start_logged(config: &Path) -> (Child, u16, Log) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["-c", config.to_str().unwrap(), "run"])
        .env_remove("GATEHOUSE_CONFIG")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    for out in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        if line.contains("gatehouse serving")
            && let Some(at) = line.find("127.0.0.1:")
        {
            let digits: String = line[at + 10..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            // Keep draining its output so the process never blocks on a full pipe.
            let log = Log::default();
            let kept = log.clone();
            std::thread::spawn(move || {
                while let Ok(line) = rx.recv() {
                    kept.lock().unwrap().push(line);
                }
            });
            return (child, digits.parse().unwrap(), log);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("gatehouse did not start serving within 30 s");
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("gatehouse did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One site with `allow_basic` in front of `backend`; the default shutdown grace (10 s).
fn config_for(dir: &Path, backend: &Backend) -> std::path::PathBuf {
    write_config(
        dir,
        &format!(
            "[portal]\nhost = \"auth.localhost\"\nstore = {:?}\n\n\
             [[users]]\nname = \"alice\"\npassword_hash = {:?}\nlevel = 3\n\n\
             [[sites]]\nid = \"app\"\nhost = \"app.localhost\"\nbackend = {:?}\nallow_basic = true\n",
            dir.join("store.db").display().to_string(),
            hash_for("alice-pw"),
            backend.url(),
        ),
    )
}

/// SIGTERM: the request in flight is answered, then the process exits 0 and the port
/// is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_and_exits_0() {
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(dir.path(), &backend);
    let (mut child, port) = start(&config);
    let auth = basic("alice", "alice-pw");
    let url = format!("https://app.localhost:{port}/slow?ms=1500");

    let in_flight = {
        let client = Client::new(port);
        let (url, auth) = (url.clone(), auth.clone());
        tokio::spawn(async move {
            client
                .request(
                    http::Method::GET,
                    &url,
                    &[("authorization", &auth)],
                    Bytes::new(),
                )
                .await
        })
    };
    // Warm: the slow request is at the backend.
    let deadline = Instant::now() + Duration::from_secs(10);
    while backend.count() == 0 {
        assert!(Instant::now() < deadline, "the slow request never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(&child, "-TERM");
    let res = in_flight.await.unwrap();
    assert_eq!(
        res.status, 200,
        "the in-flight request was answered: {res:?}"
    );
    assert_eq!(res.body, "slow ok");
    let status = wait_exit(&mut child, Duration::from_secs(15));
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "nothing listens any more"
    );
}

/// `kill -9` during a burst of store writes (users added by the CLI while the gateway runs
/// and signs API clients in): after a restart the store passes SQLite's integrity check,
/// every user whose creation was reported done is there, and the gateway serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_survives_kill_9() {
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(dir.path(), &backend);
    let cfg = config.to_str().unwrap().to_string();
    let (mut child, port) = start(&config);

    // Writers: CLI processes adding users, some of them killed mid-write too.
    let started = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writers = std::thread::spawn({
        let cfg = cfg.clone();
        let started = started.clone();
        move || {
            let mut done = Vec::new();
            for i in 0..40 {
                let name = format!("user{i}");
                started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut add = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
                    .args(["-c", &cfg, "user", "add", &name, "--password-stdin"])
                    .env_remove("GATEHOUSE_CONFIG")
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                {
                    use std::io::Write;
                    let _ = add
                        .stdin
                        .take()
                        .unwrap()
                        .write_all(format!("pw-{i}\n").as_bytes());
                }
                if i % 7 == 3 {
                    std::thread::sleep(Duration::from_millis(5));
                    let _ = add.kill();
                    let _ = add.wait();
                } else if add.wait().unwrap().success() {
                    done.push(name);
                }
            }
            done
        }
    });
    // Meanwhile, API clients sign in (argon2, sessions) until the gateway is killed.
    let client = Client::new(port);
    let auth = basic("alice", "alice-pw");
    let url = format!("https://app.localhost:{port}/x");
    for _ in 0..3 {
        let res = client
            .request(
                http::Method::GET,
                &url,
                &[("authorization", &auth)],
                Bytes::new(),
            )
            .await;
        assert_eq!(res.status, 200);
    }
    // Killed while the writers are busy.
    while started.load(std::sync::atomic::Ordering::Relaxed) < 10 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    signal(&child, "-KILL");
    let _ = child.wait();
    let done = writers.join().unwrap();
    assert!(done.len() >= 20, "most writers finished: {done:?}");

    let db = rusqlite::Connection::open(dir.path().join("store.db")).unwrap();
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    drop(db);

    let (child, port) = start(&config);
    let listed = cli(&["-c", &cfg, "user", "list"], "", &[]);
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    for name in &done {
        assert!(
            listed
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name.as_str())),
            "{name} was reported added but is gone:\n{listed}"
        );
    }
    let res = Client::new(port)
        .request(
            http::Method::GET,
            &format!("https://app.localhost:{port}/again"),
            &[("authorization", &auth)],
            Bytes::new(),
        )
        .await;
    assert_eq!(res.status, 200, "serving again after the restart");
    stop(child);
}

/// A site for `config_text`: allow_basic in front of `backend`, with `extra` lines.
fn site_toml(id: &str, backend: &Backend, extra: &str) -> String {
    format!(
        "[[sites]]\nid = \"{id}\"\nhost = \"{id}.localhost\"\nbackend = {:?}\nallow_basic = true\n{extra}\n",
        backend.url()
    )
}

fn config_text(dir: &Path, users: &[(&str, u32)], sites: &str) -> String {
    let mut text = format!(
        "[portal]\nhost = \"auth.localhost\"\nstore = {:?}\n\n",
        dir.join("store.db").display().to_string()
    );
    for (name, level) in users {
        text += &format!(
            "[[users]]\nname = \"{name}\"\npassword_hash = {:?}\nlevel = {level}\n\n",
            hash_for(&format!("{name}-pw"))
        );
    }
    text + sites
}

/// GET on a kept-alive raw HTTP/1.1 connection; the status.
async fn keep_alive_get(
    tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    host: &str,
    path: &str,
    auth: &str,
) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\n\r\n");
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // Read the head and a Content-Length body (the gateway's and the backend's answers
    // here are small and carry one).
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf))
            .await
            .expect("no answer on the kept-alive connection")
            .unwrap();
        assert!(n > 0, "the kept-alive connection was closed");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                return text[9..12].parse().unwrap();
            }
        }
    }
}

/// SIGHUP applies a new config (tighter rules, a new site, a new user) to new and to
/// established connections alike, without closing them; an invalid config is refused
/// with a log line and the last good one keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_config_without_dropping_connections() {
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let first = config_text(dir.path(), &[("alice", 3)], &site_toml("app", &backend, ""));
    let config = write_config(dir.path(), &first);
    let (child, port, log) = start_logged(&config);
    let alice = basic("alice", "alice-pw");
    let bob = basic("bob", "bob-pw");
    let app = format!("app.localhost:{port}");
    let get = |host: &'static str, path: &'static str, auth: String| async move {
        Client::new(port)
            .request(
                http::Method::GET,
                &format!("https://{host}:{port}{path}"),
                &[("authorization", &auth)],
                Bytes::new(),
            )
            .await
            .status
    };

    let mut kept = Client::new(port).connect("app.localhost").await;
    assert_eq!(
        keep_alive_get(&mut kept, &app, "/reports/q1", &alice).await,
        200
    );
    assert_eq!(
        get("wiki.localhost", "/", alice.clone()).await,
        421,
        "no wiki yet"
    );

    // The new config: /reports needs level 9, a wiki site, and bob.
    let rule = "[[sites.rules]]\npath = \"/reports\"\nmin_level = 9\n";
    let second = config_text(
        dir.path(),
        &[("alice", 3), ("bob", 2)],
        &(site_toml("app", &backend, rule) + &site_toml("wiki", &backend, "")),
    );
    write_config(dir.path(), &second);
    signal(&child, "-HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while get("app.localhost", "/reports/q2", alice.clone()).await != 403 {
        assert!(Instant::now() < deadline, "the tighter rule never applied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        keep_alive_get(&mut kept, &app, "/reports/q3", &alice).await,
        403,
        "the established connection lives on, under the new rules"
    );
    assert_eq!(keep_alive_get(&mut kept, &app, "/other", &alice).await, 200);
    assert_eq!(
        get("wiki.localhost", "/w", alice.clone()).await,
        200,
        "new site"
    );
    assert_eq!(
        get("app.localhost", "/b", bob.clone()).await,
        200,
        "new user"
    );

    // A broken config is refused; the last good one keeps serving.
    write_config(dir.path(), "[portal\nthis is not toml");
    signal(&child, "-HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !log
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("reload refused"))
    {
        assert!(
            Instant::now() < deadline,
            "no log line for the refused reload"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get("wiki.localhost", "/w2", alice.clone()).await, 200);
    assert_eq!(
        keep_alive_get(&mut kept, &app, "/reports/q4", &alice).await,
        403
    );
    assert_eq!(
        keep_alive_get(&mut kept, &app, "/other2", &alice).await,
        200
    );

    stop(child);
}

/// A self-signed certificate for app.localhost whose subject is `CN=name`, written to
/// `dir/cert.pem` and `dir/key.pem` (replacing what was there).
fn make_cert(dir: &Path, name: &str) {
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", &format!("/CN={name}")])
        .args([
            "-addext",
            "subjectAltName=DNS:app.localhost,DNS:auth.localhost",
        ])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stderr(Stdio::null())
        .status()
        .expect("the openssl command (scripts/test installs it)");
    assert!(status.success());
}

/// The subject of the certificate the gateway presents for app.localhost.
fn presented_subject(port: u16) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", "app.localhost"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find(|l| l.starts_with("subject="))
        .unwrap_or_default()
        .to_string()
}

/// SIGHUP re-reads the certificates: new handshakes get the new one.
#[tokio::test]
async fn sighup_reloads_certificates() {
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    make_cert(dir.path(), "first");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n\n{}",
        config_text(dir.path(), &[("alice", 3)], &site_toml("app", &backend, ""))
    );
    let config = dir.path().join("config.toml");
    std::fs::write(&config, text).unwrap();
    let (child, port) = start(&config);
    assert!(
        presented_subject(port).ends_with("first"),
        "{}",
        presented_subject(port)
    );

    make_cert(dir.path(), "second");
    signal(&child, "-HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !presented_subject(port).ends_with("second") {
        assert!(
            Instant::now() < deadline,
            "the new certificate was never presented"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    stop(child);
}

/// Sites `app` (plain) and `wiki` (derived: its backend knows alice only by her site
/// password), user alice with password `alice-pw`.
fn restart_config(dir: &Path, app: &Backend, legacy: &Backend) -> std::path::PathBuf {
    let derived = "[sites.backend_auth]\nmode = \"derived\"\nderive_id = \"legacy.example\"\n";
    let sites = site_toml("app", app, "") + &site_toml("wiki", legacy, derived);
    write_config(dir, &config_text(dir, &[("alice", 3)], &sites))
}

/// Start again on `config` after a stop: the new child, its port, and `browser` coming
/// back (a client on the new port holding the same cookies: they are host-only, whatever
/// the port).
fn start_again(config: &Path, browser: &Client) -> (Child, u16, Client) {
    use gatehouse::http::cookies::{NODE, PORTAL, SITE};
    let (child, port) = start(config);
    let again = Client::new(port);
    for host in ["app.localhost", "wiki.localhost", "auth.localhost"] {
        for name in [SITE, PORTAL, NODE] {
            if let Some(value) = browser.cookie(host, name) {
                again.set_cookie(host, name, &value);
            }
        }
    }
    (child, port, again)
}

/// Stop with SIGTERM and wait for a clean exit.
fn stop(mut child: Child) {
    signal(&child, "-TERM");
    let status = wait_exit(&mut child, Duration::from_secs(15));
    assert!(status.success(), "exit status after SIGTERM: {status}");
}

/// Sessions in the store (read by the test while no gatehouse runs).
fn stored_sessions(dir: &Path) -> i64 {
    let db = rusqlite::Connection::open(dir.join("store.db")).unwrap();
    db.query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))
        .unwrap()
}

/// A restart signs nobody out: the same browser reaches the backend again without signing
/// in. A derived site, whose site password was never stored, sends the browser back
/// through sign-in, where the portal asks for the password again (SPEC §5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_restart() {
    let backend = Backend::start().await;
    let sp = expected_sp("alice-pw", "legacy.example");
    let legacy = Backend::with_logins(&[("alice", &sp)]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = restart_config(dir.path(), &backend, &legacy);
    let (child, port) = start(&config);
    let browser = signed_in_browser(&port, "app.localhost", "alice", "alice-pw").await;
    let res = browser.follow(&port.url("wiki.localhost", "/before")).await;
    assert_eq!(res.status, 200, "{res:?}");
    stop(child);
    assert_eq!(stored_sessions(dir.path()), 1);

    let (child, port, browser) = start_again(&config, &browser);
    let res = browser.get(&port.url("app.localhost", "/after")).await;
    assert_eq!(
        res.status, 200,
        "still signed in after the restart: {res:?}"
    );
    assert_eq!(backend.last().path, "/after");

    let handed = browser.get(&port.url("wiki.localhost", "/later")).await;
    assert_eq!(handed.status, 302, "no site password: back to the portal");
    let form = browser.get(&handed.location().unwrap()).await;
    assert_eq!(form.status, 200, "the portal asks, it does not hand over");
    assert!(
        form.body.contains("Enter your password again"),
        "{}",
        form.body
    );
    assert_eq!(
        legacy.count(),
        1,
        "nothing reached wiki without its password"
    );
    let posted = submit_login(&browser, &port, &form.body, "alice", "alice-pw").await;
    assert_eq!(posted.status, 303, "{posted:?}");
    let res = browser.follow(&posted.location().unwrap()).await;
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(legacy.last().path, "/later");
    assert_eq!(legacy.last().headers["authorization"], basic("alice", &sp));
    stop(child);
}

/// A sign-out just before SIGTERM (within the last second, so only the write at shutdown
/// carries it) stays a sign-out after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_out_stays_signed_out_after_a_restart() {
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = restart_config(dir.path(), &backend, &backend);
    let (child, port) = start(&config);
    let browser = signed_in_browser(&port, "app.localhost", "alice", "alice-pw").await;
    // Written once, so that the sign-out must delete it.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let to_portal = browser
        .get(&port.url("app.localhost", "/.gatehouse/logout"))
        .await;
    let confirm = browser.get(&to_portal.location().unwrap()).await;
    let csrf = form_field(&confirm.body, "csrf").unwrap();
    let done = browser
        .post_form(&port.url("auth.localhost", "/logout"), &[("csrf", &csrf)])
        .await;
    assert_eq!(done.status, 200, "{done:?}");
    stop(child);
    assert_eq!(stored_sessions(dir.path()), 0);

    let (child, port, browser) = start_again(&config, &browser);
    let res = browser.get(&port.url("app.localhost", "/after")).await;
    assert_eq!(res.status, 302, "signed out stays signed out: {res:?}");
    stop(child);
}

/// A sign-out is written through before its answer: a `kill -9` right after it does not
/// bring the session back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_out_survives_kill_9_right_after() {
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = restart_config(dir.path(), &backend, &backend);
    let (mut child, port) = start(&config);
    let browser = signed_in_browser(&port, "app.localhost", "alice", "alice-pw").await;
    // Written once, so that the sign-out must delete it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let confirm = browser.get(&port.url("auth.localhost", "/logout")).await;
    let csrf = form_field(&confirm.body, "csrf").unwrap();
    let done = browser
        .post_form(&port.url("auth.localhost", "/logout"), &[("csrf", &csrf)])
        .await;
    assert_eq!(done.status, 200, "{done:?}");
    signal(&child, "-KILL");
    let _ = child.wait();
    assert_eq!(stored_sessions(dir.path()), 0, "deleted before the answer");

    let (child, port, browser) = start_again(&config, &browser);
    let res = browser.get(&port.url("app.localhost", "/after")).await;
    assert_eq!(res.status, 302, "signed out stays signed out: {res:?}");
    stop(child);
}

/// `kill -9` more than a write interval after sign-in keeps the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_keeps_sessions_written_before() {
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = restart_config(dir.path(), &backend, &backend);
    let (mut child, port) = start(&config);
    let browser = signed_in_browser(&port, "app.localhost", "alice", "alice-pw").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    signal(&child, "-KILL");
    let _ = child.wait();

    let (child, port, browser) = start_again(&config, &browser);
    let res = browser.get(&port.url("app.localhost", "/after")).await;
    assert_eq!(res.status, 200, "still signed in after kill -9: {res:?}");
    assert_eq!(backend.last().path, "/after");
    stop(child);
}

/// An API client's Basic session is never written to the store (its id is a keyed hash of
/// the credential: a stolen store must not allow testing passwords at HMAC speed); after a
/// restart the client is verified again and served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_sessions_are_never_stored() {
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = restart_config(dir.path(), &backend, &backend);
    let auth = basic("alice", "alice-pw");
    for round in 0..2 {
        let (child, port) = start(&config);
        let res = Client::new(port)
            .request(
                http::Method::GET,
                &format!("https://app.localhost:{port}/api"),
                &[("authorization", &auth)],
                Bytes::new(),
            )
            .await;
        assert_eq!(res.status, 200, "round {round}: {res:?}");
        // Past a flush of the write-behind, then the final one at SIGTERM.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        stop(child);
        assert_eq!(stored_sessions(dir.path()), 0, "after round {round}");
    }
}

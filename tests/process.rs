//! The real `gatehouse run` process (issue 6 point 8): SIGTERM drains in-flight requests and
//! exits 0; the SQLite store survives `kill -9` in the middle of writes.

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
            std::thread::spawn(move || while rx.recv().is_ok() {});
            return (child, digits.parse().unwrap());
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

    let (mut child, port) = start(&config);
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
    signal(&child, "-TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(15)).success());
}

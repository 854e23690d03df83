//! Limits and slow clients (issue 6 point 6): oversized heads get 431, oversized bodies 413
//! before the backend sees them (or cut off when streamed), clients that trickle their
//! headers are cut off while others are served, and connections beyond
//! `server.max_connections` are closed at once.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::backend::Repeat;
use common::*;
use http::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn limited_gateway(backend: &Backend, server: &str) -> Gateway {
    Gateway::builder()
        .server(server)
        .user("alice", "alice-pw", 3)
        .site_with("app", &backend.url(), "max_body = \"1KiB\"")
        .start()
        .await
}

/// A head larger than the gateway reads, or with too many fields: 431, nothing forwarded.
#[tokio::test]
async fn oversized_heads_get_431() {
    let backend = Backend::start().await;
    let gw = limited_gateway(&backend, "").await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    let before = backend.count();
    let head = |extra: &str| {
        format!(
            "GET /big HTTP/1.1\r\nHost: app.localhost:{}\r\n{}{extra}\r\n",
            gw.port,
            browser.cookie_line("app.localhost")
        )
    };

    let huge = format!("X-Filler: {}\r\n", "a".repeat(80 * 1024));
    let reply = browser
        .raw_exchange("app.localhost", head(&huge).as_bytes())
        .await;
    assert_eq!(reply.status(), Some(431), "{}", reply.text);

    let many: String = (0..150).map(|i| format!("X-Field-{i}: {i}\r\n")).collect();
    let reply = browser
        .raw_exchange("app.localhost", head(&many).as_bytes())
        .await;
    assert_eq!(reply.status(), Some(431), "{}", reply.text);

    let fine = browser
        .raw_exchange("app.localhost", head("Connection: close\r\n").as_bytes())
        .await;
    assert_eq!(fine.status(), Some(200), "control: a normal head passes");
    assert_eq!(
        backend.count(),
        before + 1,
        "only the normal request arrived"
    );
}

/// A declared body over the site's `max_body` is refused before the backend hears of it;
/// a chunked one is cut off where it passes the limit; one within it goes through.
#[tokio::test]
async fn oversized_bodies_get_413() {
    let backend = Backend::start().await;
    let gw = limited_gateway(&backend, "").await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    let url = gw.url("app.localhost", "/upload");

    let before = backend.count();
    let res = browser
        .send(
            Method::POST,
            &url,
            &[],
            http_body_util::Full::new(Bytes::from(vec![b'x'; 2048])),
        )
        .await;
    assert_eq!(res.status(), 413);
    assert_eq!(
        backend.count(),
        before,
        "a declared 2 KiB body never reached the backend"
    );

    // Streamed without a length: the limit is found on the way.
    let res = browser
        .send(
            Method::POST,
            &url,
            &[],
            Repeat {
                left: 64 * 1024,
                chunk: Bytes::from(vec![b'y'; 512]),
            },
        )
        .await;
    assert_eq!(res.status(), 413);
    assert!(
        backend.requests().iter().all(|r| r.body_len <= 1024),
        "no more than the limit was passed on"
    );

    let res = browser
        .send(
            Method::POST,
            &url,
            &[],
            http_body_util::Full::new(Bytes::from(vec![b'z'; 1024])),
        )
        .await;
    assert_eq!(res.status(), 200, "exactly the limit is allowed");
    assert_eq!(backend.last().body_len, 1024);
}

/// Portal forms are small: a large sign-in post gets 413 without being read.
#[tokio::test]
async fn oversized_portal_form_gets_413() {
    let backend = Backend::start().await;
    let gw = limited_gateway(&backend, "").await;
    let client = gw.client();
    let big = "p".repeat(64 * 1024);
    let res = client
        .post_form(
            &gw.url("auth.localhost", "/login"),
            &[("username", "alice"), ("password", &big)],
        )
        .await;
    assert_eq!(res.status, 413);
}

/// Hundreds of clients that trickle their request heads neither starve normal clients
/// nor stay connected past `server.header_read_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_clients_cut_off_and_others_served() {
    const TRICKLERS: usize = 300;
    let backend = Backend::start().await;
    let gw = limited_gateway(&backend, "header_read_timeout = \"2s\"").await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;

    let mut tricklers = Vec::new();
    for i in 0..TRICKLERS {
        let client = gw.client();
        let port = gw.port;
        tricklers.push(tokio::spawn(async move {
            let mut tls = client.connect("app.localhost").await;
            let opened = Instant::now();
            let head = format!("GET /slow-{i} HTTP/1.1\r\nHost: app.localhost:{port}\r\nX-Slow: ");
            tls.write_all(head.as_bytes()).await.unwrap();
            // One byte every 200 ms, never finishing the head, until the gateway hangs up.
            let mut buf = [0u8; 512];
            loop {
                if tls.write_all(b"a").await.is_err() || tls.flush().await.is_err() {
                    break;
                }
                let waited = tokio::time::timeout(Duration::from_millis(200), tls.read(&mut buf));
                if waited.await.is_ok() {
                    break; // an answer or the end: the gateway cut it off
                }
                if opened.elapsed() > Duration::from_secs(20) {
                    panic!("a trickling client was kept for 20 s");
                }
            }
            opened.elapsed()
        }));
    }

    // Meanwhile a normal client is served, promptly.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..20 {
        let started = Instant::now();
        let res = browser.get(&gw.url("app.localhost", "/normal")).await;
        assert_eq!(res.status, 200);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a normal request took {:?} among trickling clients",
            started.elapsed()
        );
    }

    for t in tricklers {
        let held = t.await.unwrap();
        assert!(
            held < Duration::from_secs(10),
            "a trickling client was held {held:?} with a 2 s header timeout"
        );
    }
    assert!(
        backend
            .requests()
            .iter()
            .all(|r| !r.path.starts_with("/slow-")),
        "no partial head was forwarded"
    );
}

/// Beyond `server.max_connections`, a new connection is closed at once; once others end,
/// new ones are served again.
#[tokio::test]
async fn connections_beyond_the_cap_are_closed() {
    let backend = Backend::start().await;
    let gw = limited_gateway(&backend, "max_connections = 10").await;
    let client = gw.client();

    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(client.connect("app.localhost").await);
    }
    // The eleventh: TCP is accepted and closed before any TLS reply.
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", gw.port))
        .await
        .unwrap();
    let _ = tcp.write_all(b"\x16\x03\x01\x00\x05hello").await;
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("the gateway neither closed nor answered");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "connection over the cap was not closed: {read:?}"
    );
    let metrics = common::client::plain_get(gw.admin, "127.0.0.1", "/metrics")
        .await
        .1;
    assert!(
        metrics.contains("gatehouse_connections_refused_total 1"),
        "{metrics}"
    );

    held.truncate(5);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let res = client.get(&gw.url("app.localhost", "/")).await;
    assert_eq!(res.status, 302, "served again once connections ended");
}

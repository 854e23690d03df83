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

/// A TLS connection to the gateway for `app.localhost`, agreeing on HTTP/2 by ALPN.
async fn h2_tls(port: u16) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(common::ca_file()).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = ServerName::try_from("app.localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    tls
}

/// Read (GOAWAY and the like) until the gateway closes `tls`; false when it is still open
/// at `deadline`.
async fn closed_by(
    tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    deadline: Instant,
) -> bool {
    let mut buf = [0u8; 1024];
    let read_to_end = async {
        while let Ok(n) = tls.read(&mut buf).await
            && n > 0
        {}
    };
    tokio::time::timeout_at(deadline.into(), read_to_end)
        .await
        .is_ok()
}

/// HTTP/2 connections that send `hello` and then nothing, as many as
/// `server.max_connections`, are closed after `server.header_read_timeout`, and the gateway
/// serves others again.
async fn idle_h2_connections_are_closed(hello: &[u8]) {
    let backend = Backend::start().await;
    let gw = limited_gateway(
        &backend,
        "max_connections = 2\nheader_read_timeout = \"1s\"",
    )
    .await;
    let mut idle = Vec::new();
    for _ in 0..2 {
        let mut tls = h2_tls(gw.port).await;
        tls.write_all(hello).await.unwrap();
        tls.flush().await.unwrap();
        idle.push(tls);
    }
    let opened = Instant::now();
    // They hold every slot: a third connection is closed at once.
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", gw.port))
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "the cap was not full: {read:?}"
    );

    for tls in &mut idle {
        assert!(
            closed_by(tls, opened + Duration::from_secs(10)).await,
            "an idle HTTP/2 connection was kept for 10 s with a 1 s timeout"
        );
    }
    let closed = opened.elapsed();
    assert!(
        closed > Duration::from_millis(900) && closed < Duration::from_secs(5),
        "idle HTTP/2 connections closed after {closed:?}, with a 1 s timeout"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let res = gw.client().get(&gw.url("app.localhost", "/")).await;
    assert_eq!(
        res.status, 302,
        "served once the idle connections were closed"
    );
}

/// TLS with ALPN h2, then silence (not even the HTTP/2 preface): the connection is closed.
#[tokio::test]
async fn silent_h2_connections_are_closed() {
    idle_h2_connections_are_closed(b"").await;
}

/// The HTTP/2 preface and SETTINGS, then no stream ever: the connection is closed.
#[tokio::test]
async fn h2_connections_without_streams_are_closed() {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    const EMPTY_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];
    idle_h2_connections_are_closed(&[PREFACE, EMPTY_SETTINGS].concat()).await;
}

/// A response body of `chunks` pieces, one every `gap`.
struct Drip {
    chunks: u32,
    gap: Duration,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl hyper::body::Body for Drip {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        if self.chunks == 0 {
            return std::task::Poll::Ready(None);
        }
        std::task::ready!(self.sleep.as_mut().poll(cx));
        self.chunks -= 1;
        let next = tokio::time::Instant::now() + self.gap;
        self.sleep.as_mut().reset(next);
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from_static(
            b"drip\n",
        )))))
    }
}

/// A backend that answers every request at once with a [`Drip`] of `chunks` pieces.
async fn drip_backend(chunks: u32, gap: Duration) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let service = hyper::service::service_fn(move |_req| async move {
                let sleep = Box::pin(tokio::time::sleep(gap));
                Ok::<_, std::convert::Infallible>(hyper::Response::new(Drip { chunks, gap, sleep }))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service),
            );
        }
    });
    format!("http://{addr}")
}

/// An HTTP/2 stream whose response lasts several idle timeouts is not cut; once it is done
/// and the connection has no stream left, the connection is closed.
#[tokio::test]
async fn long_h2_stream_is_not_cut() {
    use http_body_util::BodyExt;
    let backend = drip_backend(8, Duration::from_millis(400)).await;
    let gw = Gateway::builder()
        .server("header_read_timeout = \"1s\"")
        .user("alice", "alice-pw", 3)
        .site("app", &backend)
        .start()
        .await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    let cookie = browser.cookie_line("app.localhost");
    let cookie = cookie.trim_start_matches("Cookie: ").trim_end().to_string();

    let io = hyper_util::rt::TokioIo::new(h2_tls(gw.port).await);
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let req = http::Request::get(format!("https://app.localhost:{}/drip", gw.port))
        .header(http::header::COOKIE, cookie)
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let started = Instant::now();
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let body = res.into_body().collect().await.expect("the stream was cut");
    let took = started.elapsed();
    assert_eq!(body.to_bytes(), "drip\n".repeat(8).as_bytes());
    assert!(took > Duration::from_secs(3), "the body came in {took:?}");

    // Nothing open any more: the gateway closes the connection.
    let ended = tokio::time::timeout(Duration::from_secs(10), conn).await;
    assert!(ended.is_ok(), "an idle HTTP/2 connection was kept for 10 s");
}

//! How the gateway reads its backend's responses (SPEC §4): every HTTP/1.1 framing a backend
//! may use reaches the browser whole, a malformed answer is a 502 (or a cut-off body) and
//! never a guess, and a backend connection is reused only when the response's framing and
//! the backend allow it. The backend here is a script of raw bytes per path, so each case is
//! exactly what is on the wire.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the scripted backend does for one request.
struct Script {
    /// Written in pieces, 20 ms apart (one piece: all at once).
    pieces: Vec<&'static [u8]>,
    /// Close the connection after the reply.
    close: bool,
    /// Written on the connection 50 ms after the reply, unasked.
    later: Option<&'static [u8]>,
}

fn reply(bytes: &'static [u8]) -> Script {
    Script {
        pieces: vec![bytes],
        close: false,
        later: None,
    }
}

/// The reply for each request path.
fn script(path: &str) -> Script {
    match path {
        // `/` too: signing in ends on it.
        "/" | "/plain" => reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        "/chunked" => reply(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
        ),
        "/pieces" => Script {
            pieces: vec![
                b"HTTP/1.1 200 OK\r\nContent-Le",
                b"ngth: 11\r\nX-App: yes\r\n",
                b"\r\nhello",
                b" world",
            ],
            close: false,
            later: None,
        },
        "/chunked-pieces" => Script {
            pieces: vec![
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r",
                b"\nhel",
                b"lo\r\n0\r\n",
                b"\r\n",
            ],
            close: false,
            later: None,
        },
        "/until-close" => Script {
            pieces: vec![b"HTTP/1.1 200 OK\r\n\r\nall of it until the close"],
            close: true,
            later: None,
        },
        "/no-content" => reply(b"HTTP/1.1 204 No Content\r\n\r\n"),
        "/not-modified" => reply(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"),
        "/interim" => reply(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n\
              HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal",
        ),
        "/connection-close" => {
            reply(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbye")
        }
        "/http10" => Script {
            pieces: vec![b"HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\nold!"],
            close: true,
            later: None,
        },
        "/both" => reply(
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n\
              4\r\nwins\r\n0\r\n\r\n",
        ),
        "/then-unasked" => Script {
            pieces: vec![b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"],
            close: false,
            later: Some(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 4\r\n\r\nlate"),
        },
        "/extra-bytes" => {
            reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n")
        }
        "/malformed" => reply(b"HTTP/1.1 two hundred\r\n\r\n"),
        "/lengths-differ" => {
            reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!")
        }
        "/length-not-a-number" => reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2x\r\n\r\nok"),
        "/short-body" => Script {
            pieces: vec![b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"],
            close: true,
            later: None,
        },
        "/bad-chunk" => {
            reply(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n")
        }
        "/closed-mid-head" => Script {
            pieces: vec![b"HTTP/1.1 200 OK\r\nContent-"],
            close: true,
            later: None,
        },
        _ => reply(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
    }
}

struct ScriptedBackend {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    /// Every request head received, as text, in order.
    heads: Arc<std::sync::Mutex<Vec<String>>>,
}

impl ScriptedBackend {
    async fn start() -> ScriptedBackend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (count, log) = (accepted.clone(), heads.clone());
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let log = log.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            match tcp.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        buf.drain(..end + 4);
                        let target = head.split(' ').nth(1).unwrap_or("");
                        let path = target.split('?').next().unwrap_or("").to_string();
                        let is_head = head.starts_with("HEAD ");
                        log.lock().unwrap().push(head);
                        let mut script = script(&path);
                        if is_head {
                            // The head of the answer only, as HTTP wants for HEAD.
                            let whole = script.pieces[0];
                            let end = whole.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
                            script.pieces = vec![&whole[..end + 4]];
                        }
                        for (i, piece) in script.pieces.iter().enumerate() {
                            if i > 0 {
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                            if tcp.write_all(piece).await.is_err() {
                                return;
                            }
                        }
                        if script.close {
                            return;
                        }
                        if let Some(later) = script.later {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            let _ = tcp.write_all(later).await;
                        }
                    }
                });
            }
        });
        ScriptedBackend {
            addr,
            accepted,
            heads,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

async fn gateway(backend: &ScriptedBackend) -> (Gateway, Client) {
    // One worker thread: idle backend connections are kept per worker thread, and the
    // reuse checks below count connections.
    let gw = Gateway::builder()
        .server("workers = 1")
        .user("alice", "alice-pw", 3)
        .site_with(
            "app",
            &format!("http://{}", backend.addr),
            "response_timeout = \"5s\"",
        )
        .start()
        .await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    (gw, browser)
}

/// Every framing a backend may use arrives whole, and the connection is reused after each
/// one that leaves it in a known state.
#[tokio::test]
async fn every_framing_arrives_whole_and_reusable_connections_are_reused() {
    let backend = ScriptedBackend::start().await;
    let (gw, browser) = gateway(&backend).await;
    let url = |path: &str| gw.url("app.localhost", path);

    let res = browser.get(&url("/plain")).await;
    assert_eq!((res.status, res.body.as_str()), (200, "ok"));
    let connections = backend.accepted();
    for (method, path, status, body) in [
        (Method::GET, "/chunked", 200, "hello world"),
        (Method::GET, "/pieces", 200, "hello world"),
        (Method::GET, "/chunked-pieces", 200, "hello"),
        (Method::GET, "/no-content", 204, ""),
        (Method::GET, "/not-modified", 304, ""),
        // Interim 1xx answers are skipped.
        (Method::GET, "/interim", 200, "final"),
        (Method::HEAD, "/plain", 200, ""),
        (Method::GET, "/plain", 200, "ok"),
    ] {
        let res = browser
            .request(method.clone(), &url(path), &[], Bytes::new())
            .await;
        assert_eq!(
            (res.status, res.body.as_str()),
            (status, body),
            "{method} {path}"
        );
        if path == "/pieces" {
            assert_eq!(res.header("x-app"), Some("yes"));
        }
        if method == Method::HEAD {
            assert_eq!(
                res.header("content-length"),
                Some("2"),
                "HEAD keeps its length"
            );
        }
        assert_eq!(
            backend.accepted(),
            connections,
            "{method} {path}: still the first backend connection"
        );
    }
    gw.stop().await;
}

/// Framings that end the connection: the body is whole, and the next request gets a new
/// backend connection rather than a dead or ambiguous one.
#[tokio::test]
async fn connections_ended_by_the_response_are_not_reused() {
    let backend = ScriptedBackend::start().await;
    let (gw, browser) = gateway(&backend).await;
    let url = |path: &str| gw.url("app.localhost", path);
    for (path, body) in [
        ("/until-close", "all of it until the close"),
        ("/connection-close", "bye"),
        ("/http10", "old!"),
        // Transfer-Encoding wins over Content-Length, and such a connection is not reused.
        ("/both", "wins"),
    ] {
        let before = backend.accepted();
        let res = browser.get(&url(path)).await;
        assert_eq!((res.status, res.body.as_str()), (200, body), "{path}");
        let res = browser.get(&url("/plain")).await;
        assert_eq!((res.status, res.body.as_str()), (200, "ok"), "after {path}");
        assert_eq!(
            backend.accepted(),
            before + 1,
            "{path}: the request after it went on a new connection"
        );
    }
    gw.stop().await;
}

/// Bytes a backend writes on an idle connection (here a `408` some servers send before
/// closing), or past the end of a response, are never read as the next request's answer.
#[tokio::test]
async fn unasked_bytes_are_never_taken_for_an_answer() {
    let backend = ScriptedBackend::start().await;
    let (gw, browser) = gateway(&backend).await;
    let url = |path: &str| gw.url("app.localhost", path);
    for path in ["/then-unasked", "/extra-bytes"] {
        let res = browser.get(&url(path)).await;
        assert_eq!((res.status, res.body.as_str()), (200, "ok"), "{path}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = backend.accepted();
        let res = browser.get(&url("/plain")).await;
        assert_eq!(
            (res.status, res.body.as_str()),
            (200, "ok"),
            "after {path}: the request's own answer"
        );
        assert_eq!(
            backend.accepted(),
            before + 1,
            "after {path}: a new connection"
        );
    }
    gw.stop().await;
}

/// A response head the gateway cannot read with certainty is a 502, and its connection is
/// dropped; the next request is served normally.
#[tokio::test]
async fn malformed_response_heads_are_502() {
    let backend = ScriptedBackend::start().await;
    let (gw, browser) = gateway(&backend).await;
    let url = |path: &str| gw.url("app.localhost", path);
    for path in [
        "/malformed",
        "/lengths-differ",
        "/length-not-a-number",
        "/closed-mid-head",
    ] {
        let res = browser.get(&url(path)).await;
        assert_eq!(res.status, 502, "{path}: {}", res.body);
        assert!(
            !res.body.contains("two hundred"),
            "{path}: nothing of it is passed on"
        );
        let res = browser.get(&url("/plain")).await;
        assert_eq!((res.status, res.body.as_str()), (200, "ok"), "after {path}");
    }
    gw.stop().await;
}

/// A body that breaks off after its head went out (too short, or bad chunk framing) is cut
/// off towards the browser too: the gateway closes the browser's connection without the
/// end of the message, so the browser can tell it is incomplete.
#[tokio::test]
async fn broken_bodies_are_cut_off() {
    let backend = ScriptedBackend::start().await;
    let (gw, browser) = gateway(&backend).await;
    for path in ["/short-body", "/bad-chunk"] {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: app.localhost:{}\r\n{}\r\n",
            gw.port,
            browser.cookie_line("app.localhost")
        );
        let reply = browser
            .raw_exchange("app.localhost", request.as_bytes())
            .await;
        assert!(
            reply.closed,
            "{path}: the connection is closed: {:?}",
            reply.text
        );
        assert!(
            !is_complete(&reply.text),
            "{path}: no complete message: {:?}",
            reply.text
        );
        let res = browser.get(&gw.url("app.localhost", "/plain")).await;
        assert_eq!((res.status, res.body.as_str()), (200, "ok"), "after {path}");
    }
    gw.stop().await;
}

/// Does `text` hold one whole HTTP/1.1 response, by its own framing?
fn is_complete(text: &str) -> bool {
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let head = head.to_ascii_lowercase();
    if head.contains("transfer-encoding: chunked") {
        return body.ends_with("0\r\n\r\n");
    }
    match head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        Some(length) => body.len() >= length,
        None => false,
    }
}

#[test]
fn is_complete_tells_whole_messages() {
    assert!(is_complete(
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
    ));
    assert!(!is_complete(
        "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort"
    ));
    assert!(is_complete(
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    ));
    assert!(!is_complete(
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n"
    ));
    assert!(!is_complete(""));
}

/// The request head the backend gets: origin-form target, HTTP/1.1, the identity headers,
/// and no `Connection` or other hop-by-hop header from the browser.
#[tokio::test]
async fn request_head_on_the_wire() {
    let backend = ScriptedBackend::start().await;
    let (gw, browser) = gateway(&backend).await;
    let res = browser
        .request(
            Method::GET,
            &gw.url("app.localhost", "/plain?q=1"),
            &[("connection", "keep-alive, x-drop"), ("x-drop", "1")],
            Bytes::new(),
        )
        .await;
    assert_eq!(res.status, 200);
    let head = backend.heads.lock().unwrap().last().cloned().unwrap();
    let mut lines = head.split("\r\n");
    assert_eq!(lines.next(), Some("GET /plain?q=1 HTTP/1.1"));
    let names: Vec<String> = lines
        .map(|l| l.split(':').next().unwrap().to_ascii_lowercase())
        .collect();
    assert!(names.contains(&"x-auth-user".to_string()), "{head}");
    assert!(names.contains(&"host".to_string()), "{head}");
    assert!(!names.contains(&"connection".to_string()), "{head}");
    assert!(!names.contains(&"x-drop".to_string()), "{head}");
    gw.stop().await;
}

/// A backend that answers `POST /early` with a `403` at once, before the body, then goes on
/// reading that body (as Node does), a little at a time; any other request it answers `ok`
/// once its body is in. It counts the connections it accepts.
async fn early_answer_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 64];
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match tcp.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    buf.drain(..end + 4);
                    let early = head.starts_with("post /early ");
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    if early {
                        let answer = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
                        if tcp.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                    while buf.len() < length {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        match tcp.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..length);
                    if !early {
                        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                        if tcp.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// A backend connection whose response ended before its request body did (a `403` to an
/// upload still coming in) is not lent to another request: another user's request does
/// not wait for that upload, however slowly it trickles. A connection whose upload did end
/// is reused.
#[tokio::test]
async fn a_connection_still_uploading_is_not_lent_to_another_request() {
    let (addr, accepted) = early_answer_backend().await;
    // One worker thread, so that both users' requests would share one stack of idle
    // connections; a response timeout far off, so that it is not what answers B.
    let gw = Gateway::builder()
        .server("workers = 1")
        .user("alice", "alice-pw", 3)
        .user("bob", "bob-pw", 3)
        .site_with(
            "app",
            &format!("http://{addr}"),
            "response_timeout = \"60s\"",
        )
        .start()
        .await;
    let alice = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    let bob = signed_in_browser(&gw, "app.localhost", "bob", "bob-pw").await;

    // Alice announces 1000 bytes, sends 10, then pauses; the backend has answered by then.
    let mut upload = alice.connect("app.localhost").await;
    let head = format!(
        "POST /early HTTP/1.1\r\nHost: app.localhost:{}\r\n{}Content-Length: 1000\r\n\r\n",
        gw.port,
        alice.cookie_line("app.localhost")
    );
    upload.write_all(head.as_bytes()).await.unwrap();
    upload.write_all(&[b'a'; 10]).await.unwrap();
    upload.flush().await.unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), upload.read(&mut chunk))
            .await
            .expect("alice's early answer")
            .unwrap();
        assert!(n > 0, "alice's connection stays open");
        answer.extend_from_slice(&chunk[..n]);
    }
    assert!(
        answer.starts_with(b"HTTP/1.1 403"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // Bob's small upload is answered promptly while Alice's upload is still open.
    let url = gw.url("app.localhost", "/other");
    let post = || bob.request(Method::POST, &url, &[], Bytes::from_static(b"hi"));
    let res = tokio::time::timeout(Duration::from_secs(5), post())
        .await
        .expect("bob is not held up by alice's upload");
    assert_eq!((res.status, res.body.as_str()), (200, "ok"));

    // Bob's connection, its upload done, is reused.
    let connections = accepted.load(Ordering::SeqCst);
    let res = tokio::time::timeout(Duration::from_secs(5), post())
        .await
        .expect("bob's second request");
    assert_eq!((res.status, res.body.as_str()), (200, "ok"));
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        connections,
        "a connection whose upload ended is reused"
    );
    drop(upload);
    gw.stop().await;
}

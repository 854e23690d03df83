//! SPEC §7, message framing, in raw bytes over TLS: conflicting or malformed
//! `Content-Length`/`Transfer-Encoding` get 400 and a closed connection, nothing smuggled in a
//! body reaches the backend as a request, and an `Upgrade` becomes a tunnel only for a
//! WebSocket that the backend itself accepted with `101` (never `h2c`, never unasked).

mod common;

use common::client::RawReply;
use common::*;

/// A request that a front end reading `Content-Length` and one reading the chunked body
/// would split differently; whatever the gateway reads, `/smuggled` must never be a request.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: app.localhost\r\n\r\n";

struct Fixture {
    backend: Backend,
    gw: Gateway,
    browser: Client,
}

async fn fixture() -> Fixture {
    let (backend, gw) = two_sites().await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    Fixture {
        backend,
        gw,
        browser,
    }
}

impl Fixture {
    /// `head` (request line and headers, without the blank line) as a signed-in request on
    /// app.localhost, then `rest` as is.
    async fn send(&self, head: &str, rest: &str) -> RawReply {
        let request = format!(
            "{head}\r\nHost: app.localhost:{}\r\n{}\r\n{rest}",
            self.gw.port,
            self.browser.cookie_line("app.localhost")
        );
        self.browser
            .raw_exchange("app.localhost", request.as_bytes())
            .await
    }

    fn backend_saw(&self, path: &str) -> bool {
        self.backend.requests().iter().any(|r| r.path == path)
    }
}

/// 400, the connection closed after it, and nothing else answered on it.
fn assert_refused_and_closed(what: &str, reply: &RawReply) {
    assert_eq!(reply.statuses(), [400], "{what}: {reply:?}");
    assert!(reply.closed, "{what}: connection left open: {reply:?}");
}

/// `Content-Length` together with `Transfer-Encoding`, in either order and any case: 400 and
/// the connection closed, nothing forwarded. (hyper settles the conflict itself and drops the
/// length before the gateway sees the request; the gateway's framing watch in front of hyper
/// refuses the head instead, `src/http/framing_watch.rs`.)
#[tokio::test]
async fn content_length_with_transfer_encoding_refused() {
    let f = fixture().await;
    let body = format!("0\r\n\r\n{SMUGGLED}");
    let before = f.backend.count();
    for head in [
        format!(
            "POST /cl-te HTTP/1.1\r\nContent-Length: {}\r\nTransfer-Encoding: chunked",
            body.len()
        ),
        "POST /te-cl HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4".to_string(),
        "POST /lower HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length:0".to_string(),
        "POST /gzip HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: gzip, chunked".to_string(),
        "GET /get HTTP/1.1\r\nContent-Length: 0\r\nTransfer-Encoding: chunked".to_string(),
        // Lengths hyper skips after Transfer-Encoding, or would refuse, or reads with zeros.
        "POST /te-bad HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: +5".to_string(),
        "POST /te-two HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\nContent-Length: 6"
            .to_string(),
        "POST /zeros HTTP/1.1\r\nContent-Length: 0000000000000000000000005\r\nTransfer-Encoding: chunked"
            .to_string(),
    ] {
        let reply = f.send(&head, &body).await;
        assert_refused_and_closed(&head, &reply);
    }
    assert_eq!(
        f.backend.count(),
        before,
        "a refused request reached the backend"
    );
    assert!(!f.backend_saw("/smuggled"));
}

/// The same when the head arrives in pieces, cut inside the header names and inside the
/// final blank line (its last byte alone in the last piece), and when it follows requests on the same connection whose bodies (by
/// length and chunked) hold look-alike header lines: those are answered, the conflicting
/// one gets 400, the connection closes.
#[tokio::test]
async fn conflict_found_across_reads_and_after_bodies() {
    let f = fixture().await;
    let host = format!("Host: app.localhost:{}", f.gw.port);
    let cookie = f.browser.cookie_line("app.localhost");
    let conflict = format!("POST /split HTTP/1.1\r\n{host}\r\n{cookie}Content-Len");
    let pieces = [
        conflict.as_bytes(),
        b"gth: 5\r\nTransfer-Enco",
        b"ding: chunked\r\n\r",
        // The head's last byte alone: nothing after it shows hyper an end of head.
        b"\n",
    ];
    let reply = f
        .browser
        .raw_exchange_in_pieces("app.localhost", &pieces)
        .await;
    assert_refused_and_closed("split head", &reply);
    assert!(!f.backend_saw("/split"));

    let fake = "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
    let sized = format!(
        "POST /sized HTTP/1.1\r\n{host}\r\n{cookie}Content-Length: {}\r\n\r\n{fake}",
        fake.len()
    );
    let chunked = format!(
        "POST /chunked HTTP/1.1\r\n{host}\r\n{cookie}Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{fake}\r\n0\r\n\r\n",
        fake.len()
    );
    let bad = format!(
        "POST /after HTTP/1.1\r\n{host}\r\n{cookie}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"
    );
    let reply = f
        .browser
        .raw_exchange_in_pieces(
            "app.localhost",
            &[sized.as_bytes(), chunked.as_bytes(), bad.as_bytes()],
        )
        .await;
    assert_eq!(reply.statuses(), [200, 200, 400], "{reply:?}");
    assert!(reply.closed, "connection left open: {reply:?}");
    assert!(f.backend_saw("/sized") && f.backend_saw("/chunked"));
    assert!(!f.backend_saw("/after"));
}

/// Two identical `Content-Length` lines are one length (RFC 9110 §8.6; hyper merges them):
/// the backend gets a single `Content-Length` and exactly that many bytes.
#[tokio::test]
async fn repeated_identical_length_is_one_length() {
    let f = fixture().await;
    let reply = f
        .send(
            "POST /cl-twice HTTP/1.1\r\nConnection: close\r\nContent-Length: 5\r\nContent-Length: 5",
            &format!("hello{SMUGGLED}"),
        )
        .await;
    assert_eq!(reply.statuses(), [200], "{reply:?}");
    let seen = f
        .backend
        .requests()
        .into_iter()
        .find(|r| r.path == "/cl-twice")
        .expect("proxied");
    assert_eq!(seen.headers.get_all("content-length").iter().count(), 1);
    assert_eq!(seen.body_len, 5);
    assert!(!f.backend_saw("/smuggled"));
}

/// Malformed or repeated `Content-Length` values are refused.
#[tokio::test]
async fn malformed_content_length_refused() {
    let f = fixture().await;
    let before = f.backend.count();
    for cl in [
        "Content-Length: 5, 6",
        "Content-Length: 5,5",
        "Content-Length: 5\r\nContent-Length: 6",
        "Content-Length: +5",
        "Content-Length: -1",
        "Content-Length: 0x5",
        "Content-Length: 5 5",
        "Content-Length: 5.0",
        "Content-Length: ",
        "Content-Length: 99999999999999999999999",
        "Content-Length : 5",
        "Content_Length: 5",
        "Content.Length: 5",
    ] {
        let reply = f.send(&format!("POST /cl HTTP/1.1\r\n{cl}"), "hello").await;
        assert_refused_and_closed(cl, &reply);
    }
    assert_eq!(
        f.backend.count(),
        before,
        "a refused request reached the backend"
    );
}

/// Any `Transfer-Encoding` other than exactly one `chunked` on HTTP/1.1, and look-alike
/// names a backend might read as one, are refused.
#[tokio::test]
async fn malformed_transfer_encoding_refused() {
    let f = fixture().await;
    let before = f.backend.count();
    let body = format!("0\r\n\r\n{SMUGGLED}");
    for (version, te) in [
        ("HTTP/1.1", "Transfer-Encoding: gzip, chunked"),
        ("HTTP/1.1", "Transfer-Encoding: chunked, gzip"),
        ("HTTP/1.1", "Transfer-Encoding: chunked, chunked"),
        (
            "HTTP/1.1",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
        ),
        (
            "HTTP/1.1",
            "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked",
        ),
        ("HTTP/1.1", "Transfer-Encoding: identity"),
        ("HTTP/1.1", "Transfer-Encoding: xchunked"),
        ("HTTP/1.1", "Transfer-Encoding: chunked-false"),
        ("HTTP/1.1", "Transfer-Encoding: \"chunked\""),
        ("HTTP/1.1", "Transfer-Encoding: chunked;q=1"),
        ("HTTP/1.1", "Transfer-Encoding: \x0bchunked"),
        ("HTTP/1.1", "Transfer-Encoding : chunked"),
        ("HTTP/1.1", "Transfer_Encoding: chunked"),
        ("HTTP/1.1", "Transfer.Encoding: chunked"),
        ("HTTP/1.0", "Transfer-Encoding: chunked"),
    ] {
        let head = format!("POST /te {version}\r\n{te}");
        let reply = f.send(&head, &body).await;
        assert_refused_and_closed(&head, &reply);
    }
    assert_eq!(
        f.backend.count(),
        before,
        "a refused request reached the backend"
    );
    assert!(!f.backend_saw("/smuggled"));
}

/// A chunked body whose framing breaks half-way ends the connection; what followed it is
/// never read as a request.
#[tokio::test]
async fn broken_chunked_body_closes_connection() {
    let f = fixture().await;
    for chunk in [
        "zz\r\nhello\r\n0\r\n\r\n",
        "5\r\nhello0\r\n\r\n",
        "-5\r\nhello\r\n0\r\n\r\n",
    ] {
        let reply = f
            .send(
                "POST /chunks HTTP/1.1\r\nTransfer-Encoding: chunked",
                &format!("{chunk}{SMUGGLED}"),
            )
            .await;
        assert!(reply.closed, "{chunk:?}: connection left open: {reply:?}");
        assert!(
            reply.statuses().len() <= 1 && reply.statuses().iter().all(|&s| s >= 400),
            "{chunk:?}: {reply:?}"
        );
    }
    assert!(!f.backend_saw("/smuggled"));
}

/// A body is a body: a request written inside a `Content-Length` body reaches the backend
/// as bytes of that body, never as a request of its own.
#[tokio::test]
async fn request_inside_body_stays_body() {
    let f = fixture().await;
    let reply = f
        .send(
            &format!(
                "POST /carrier HTTP/1.1\r\nConnection: close\r\nContent-Length: {}",
                SMUGGLED.len()
            ),
            SMUGGLED,
        )
        .await;
    assert_eq!(reply.statuses(), [200], "{reply:?}");
    let carrier = f
        .backend
        .requests()
        .into_iter()
        .find(|r| r.path == "/carrier")
        .expect("the backend saw the carrier");
    assert_eq!(carrier.body_len, SMUGGLED.len() as u64);
    assert!(!f.backend_saw("/smuggled"));
}

/// `Upgrade: h2c` and `HTTP2-Settings` are never forwarded: the request is proxied as plain
/// HTTP/1.1 and answered with the backend's 200, not a switch of protocols.
#[tokio::test]
async fn h2c_upgrade_never_forwarded() {
    let f = fixture().await;
    for (path, extra) in [
        ("/h2c-a", "Connection: Upgrade, HTTP2-Settings"),
        ("/h2c-b", "Connection: Upgrade"),
        ("/h2c-c", "Connection: keep-alive"),
    ] {
        let reply = f
            .send(
                &format!(
                    "GET {path} HTTP/1.1\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n{extra}"
                ),
                "",
            )
            .await;
        assert_eq!(reply.status(), Some(200), "{path}: {reply:?}");
        let seen = f
            .backend
            .requests()
            .into_iter()
            .find(|r| r.path == path)
            .expect("proxied");
        for gone in ["upgrade", "http2-settings"] {
            assert!(seen.headers.get(gone).is_none(), "{path}: {gone} forwarded");
        }
        if let Some(c) = seen.headers.get("connection") {
            assert!(!c.to_str().unwrap().to_ascii_lowercase().contains("upgrade"));
        }
    }
}

/// A WebSocket upgrade the backend declines (200) is an ordinary response: the connection
/// goes on as HTTP, and the next request on it is checked and gets identity headers (a blind
/// tunnel would carry it to the backend untouched).
#[tokio::test]
async fn declined_upgrade_is_no_tunnel() {
    let f = fixture().await;
    let cookie = f.browser.cookie_line("app.localhost");
    let host = format!("Host: app.localhost:{}\r\n", f.gw.port);
    let request = format!(
        "GET /plain HTTP/1.1\r\n{host}{cookie}Upgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\
         GET /after HTTP/1.1\r\n{host}X-Auth-User: forged\r\nConnection: close\r\n\r\n"
    );
    let reply = f
        .browser
        .raw_exchange("app.localhost", request.as_bytes())
        .await;
    let statuses = reply.statuses();
    assert_eq!(statuses.first(), Some(&200), "{reply:?}");
    assert!(!statuses.contains(&101), "{reply:?}");
    if let Some(after) = f.backend.requests().iter().find(|r| r.path == "/after") {
        // Without a cookie /after is a hand-off (302), so reaching the backend at all would
        // mean a tunnel; if it ever does, it must not carry the forged identity.
        panic!("/after reached the backend: {:?}", after.headers);
    }
    assert_eq!(statuses.get(1), Some(&302), "{reply:?}");
}

/// A `101` the client did not ask for, or to anything but WebSocket, is a backend failure
/// (502), never a tunnel.
#[tokio::test]
async fn unasked_or_non_websocket_101_is_502() {
    let f = fixture().await;
    let ws = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13";
    for head in [
        // No upgrade asked: the backend's /ws answers 101 anyway.
        "GET /ws HTTP/1.1\r\nConnection: close".to_string(),
        // A WebSocket asked, an h2c switch answered.
        format!("GET /h2c-101 HTTP/1.1\r\n{ws}"),
        // An upgrade on a method or with a body that WebSocket never uses.
        format!("POST /ws HTTP/1.1\r\n{ws}\r\nContent-Length: 0"),
        format!("GET /ws HTTP/1.1\r\n{ws}\r\nContent-Length: 5"),
    ] {
        let reply = f.send(&head, "hello").await;
        assert_eq!(reply.status(), Some(502), "{head}: {reply:?}");
        assert!(!reply.statuses().contains(&101), "{head}: {reply:?}");
    }
}

//! SPEC §4: a WebSocket tunnel lives only as long as the session that opened it. Sign-out
//! (like a disabled user or a changed level, which revoke the same way) and the session's
//! absolute end close it, both sides; a tunnel of a session still signed in stays open.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// How long a revoked tunnel may take to close: the gate checks every second; the rest is
/// slack for a loaded test machine.
const CLOSES_WITHIN: Duration = Duration::from_secs(5);

/// Open a WebSocket to the backend's echo at `/ws` with `auth` (a `Cookie:` or an
/// `Authorization:` line), and check that a message comes back.
type Tunnel = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn open_tunnel(gw: &Gateway, browser: &Client, host: &str, auth: &str) -> Tunnel {
    let mut tls = browser.connect(host).await;
    let port = gw.port;
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n{auth}\r\n\r\n"
    );
    tokio::time::timeout(Duration::from_secs(10), async {
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let n = tls.read(&mut byte).await.expect("read the answer's head");
            assert_eq!(
                n,
                1,
                "closed before the head: {:?}",
                String::from_utf8_lossy(&head)
            );
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    })
    .await
    .expect("upgrade timed out");
    assert_echoes(&mut tls, b"hello").await;
    tls
}

/// A message written through the tunnel comes back.
async fn assert_echoes<S: AsyncRead + AsyncWrite + Unpin>(tunnel: &mut S, message: &[u8]) {
    tokio::time::timeout(Duration::from_secs(5), async {
        tunnel.write_all(message).await.unwrap();
        let mut back = vec![0u8; message.len()];
        tunnel.read_exact(&mut back).await.expect("echo");
        assert_eq!(back, message);
    })
    .await
    .expect("no echo: the tunnel should be open");
}

/// The tunnel ends (end of stream or an error) within `within`; how long it took.
async fn assert_closes<S: AsyncRead + AsyncWrite + Unpin>(
    tunnel: &mut S,
    within: Duration,
) -> Duration {
    let started = std::time::Instant::now();
    let closed = tokio::time::timeout(within, async {
        // A write keeps going into buffers; a read sees the close.
        let _ = tunnel.write_all(b"still there?").await;
        let mut buf = [0u8; 64];
        loop {
            match tunnel.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                // The echo of what we just wrote, if it came back before the close.
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the tunnel is still open after {within:?}");
    started.elapsed()
}

/// Sign out everywhere through the portal.
async fn sign_out(browser: &Client, gw: &Gateway) {
    let confirm = browser.get(&gw.url("auth.localhost", "/logout")).await;
    assert_eq!(confirm.status, 200, "{confirm:?}");
    let csrf = form_field(&confirm.body, "csrf").expect("signed in");
    let done = browser
        .post_form(&gw.url("auth.localhost", "/logout"), &[("csrf", &csrf)])
        .await;
    assert_eq!(done.status, 200, "{done:?}");
}

fn cookie_line(browser: &Client, host: &str) -> String {
    let cookie = browser
        .cookie(host, "__Host-gatehouse")
        .expect("site cookie");
    format!("Cookie: __Host-gatehouse={cookie}")
}

/// A signed-in browser's tunnel on `app.localhost`, admitted by its site cookie.
async fn browser_tunnel(gw: &Gateway, browser: &Client) -> Tunnel {
    open_tunnel(
        gw,
        browser,
        "app.localhost",
        &cookie_line(browser, "app.localhost"),
    )
    .await
}

async fn two_users(backend: &Backend, portal: &str) -> Gateway {
    Gateway::builder()
        .portal(portal)
        .user("alice", "alice-pw", 3)
        .user("bob", "bob-pw", 3)
        .site("app", &backend.url())
        .site_with("api", &backend.url(), "allow_basic = true")
        .start()
        .await
}

/// Sign-out closes the user's open tunnel within seconds: the gate no longer admits its
/// cookie, so no more frames go either way.
#[tokio::test]
async fn sign_out_closes_the_users_tunnel() {
    let backend = Backend::start().await;
    let gw = two_users(&backend, "").await;
    let alice = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    let mut tunnel = browser_tunnel(&gw, &alice).await;

    sign_out(&alice, &gw).await;
    let took = assert_closes(&mut tunnel, CLOSES_WITHIN).await;
    eprintln!("tunnel closed {took:?} after sign-out");
    assert_eq!(
        alice.get(&gw.url("app.localhost", "/")).await.status,
        302,
        "and the cookie admits no request"
    );
}

/// Tunnels of sessions still signed in (a browser's, an API client's with Basic
/// credentials) stay open well past the time a revoked one takes to close, while another
/// user signs out.
#[tokio::test]
async fn tunnels_of_sessions_still_signed_in_stay_open() {
    let backend = Backend::start().await;
    let gw = two_users(&backend, "").await;
    let alice = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    let bob = signed_in_browser(&gw, "app.localhost", "bob", "bob-pw").await;
    let mut bobs = browser_tunnel(&gw, &bob).await;
    let api = gw.client();
    let credential = format!("Authorization: {}", basic("alice", "alice-pw"));
    let mut apis = open_tunnel(&gw, &api, "api.localhost", &credential).await;

    sign_out(&alice, &gw).await;
    tokio::time::sleep(CLOSES_WITHIN).await;
    assert_echoes(&mut bobs, b"bob is still signed in").await;
    assert_echoes(&mut apis, b"a Basic credential has no sign-out").await;
}

/// The session's absolute end closes its tunnel, busy or not (a user with no idle limit,
/// so that only the absolute end can end it).
#[tokio::test]
async fn absolute_end_closes_the_tunnel() {
    let backend = Backend::start().await;
    let gw = Gateway::builder()
        .portal("idle_timeout = \"5s\"\nabsolute_timeout = \"5s\"\ncache_margin = \"1s\"\nallow_no_idle_limit = true")
        .user_with("alice", "alice-pw", 3, "idle_timeout = \"0s\"")
        .site("app", &backend.url())
        .start()
        .await;
    let alice = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    let signed_in = std::time::Instant::now();
    let mut tunnel = browser_tunnel(&gw, &alice).await;
    // Busy until the end nears: traffic does not stretch the session.
    while signed_in.elapsed() < Duration::from_secs(3) {
        assert_echoes(&mut tunnel, b"busy").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_closes(&mut tunnel, CLOSES_WITHIN).await;
    eprintln!("tunnel closed {:?} after sign-in", signed_in.elapsed());
}

/// Traffic through a tunnel is not a use of the session (as a download is not): a session
/// with no request for its idle timeout ends, and its tunnel closes with it, however busy.
#[tokio::test]
async fn an_idle_session_closes_its_busy_tunnel() {
    let backend = Backend::start().await;
    let gw = Gateway::builder()
        .portal("idle_timeout = \"3s\"\ncache_margin = \"1s\"\nsync_interval = \"1s\"")
        .user("alice", "alice-pw", 3)
        .site("app", &backend.url())
        .start()
        .await;
    let alice = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    let mut tunnel = browser_tunnel(&gw, &alice).await;
    let opened = std::time::Instant::now();
    let mut echoed = 0;
    let closed = tokio::time::timeout(Duration::from_secs(8), async {
        loop {
            let _ = tunnel.write_all(b"busy").await;
            let mut back = [0u8; 4];
            if tunnel.read_exact(&mut back).await.is_err() {
                break;
            }
            echoed += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(closed.is_ok(), "the tunnel outlived its idle session");
    eprintln!(
        "closed {:?} after the upgrade, {echoed} echoes",
        opened.elapsed()
    );
    assert!(echoed > 3, "open while the session was: {echoed} echoes");
}

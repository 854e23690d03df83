//! SPEC §4 and §7, proxying: bodies stream both ways with flat memory, header hygiene
//! towards the backend, 502/504 for a dead or slow backend, WebSocket upgrades after the
//! same checks as any request, and HTTP/2 towards browsers.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::backend::Repeat;
use common::*;
use http::Method;
use http_body_util::{BodyExt, Empty, Full};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// The 1 GiB tests measure this process's memory: each runs alone (write), while the
/// other tests of this file, whose gateways take memory of their own, share (read).
static EXCLUSIVE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

async fn shared() -> tokio::sync::RwLockReadGuard<'static, ()> {
    EXCLUSIVE.read().await
}

/// A field of `/proc/self/status` (`VmHWM`, `VmRSS`), in bytes.
fn proc_status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("bad line {line:?}"));
    kib * 1024
}

/// Hand the memory earlier tests freed back to the system (glibc keeps it resident, where
/// it would hide growth), then reset the peak (VmHWM) to the current RSS where the kernel
/// allows it, so the figures taken afterwards are this test's own.
fn reset_peak() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: glibc's malloc_trim only releases free heap pages; no memory we hold.
        unsafe {
            malloc_trim(0);
        }
    }
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

struct Memory {
    hwm: u64,
    rss: u64,
}

fn memory() -> Memory {
    Memory {
        hwm: proc_status_bytes("VmHWM"),
        rss: proc_status_bytes("VmRSS"),
    }
}

/// How much the peak and the resident set grew since `before`, in MiB (for messages).
fn growth(before: &Memory, after: &Memory) -> (f64, f64) {
    let mib = |a: u64, b: u64| (a as f64 - b as f64) / MIB as f64;
    (mib(after.hwm, before.hwm), mib(after.rss, before.rss))
}

async fn app_gateway(backend: &Backend, site_extra: &str) -> Gateway {
    Gateway::builder()
        .user("alice", "alice-pw", 3)
        .site_with("app", &backend.url(), site_extra)
        .start()
        .await
}

/// A response read off a raw connection: status, header lines (lowercased names), body.
#[derive(Debug)]
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Read a response head; returns it and whatever bytes came after it.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> (Raw, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut chunk).await.expect("read response head");
        assert!(
            n > 0,
            "connection closed before a full response head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (
        Raw {
            status,
            headers,
            body: Vec::new(),
        },
        buf[end + 4..].to_vec(),
    )
}

/// Write a raw request, then read the response (body by Content-Length, else to EOF).
async fn raw_exchange<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, request: &str) -> Raw {
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.flush().await.unwrap();
    let (mut raw, mut body) = read_head(stream).await;
    match raw
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        Some(len) => {
            while body.len() < len {
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "connection closed inside the body");
                body.extend_from_slice(&chunk[..n]);
            }
        }
        None => {
            let _ = stream.read_to_end(&mut body).await;
        }
    }
    raw.body = body;
    raw
}

/// A 1 GiB upload streams through to the backend whole, with flat process memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_1gib_streams() {
    let _alone = EXCLUSIVE.write().await;
    let backend = Backend::start().await;
    let gw = app_gateway(&backend, "max_body = \"2GiB\"").await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    reset_peak();
    let before = memory();
    let started = Instant::now();
    let body = Repeat {
        left: GIB,
        chunk: Bytes::from(vec![b'u'; 256 * 1024]),
    };
    let answer = tokio::time::timeout(Duration::from_secs(60), async {
        let res = browser
            .send(Method::POST, &gw.url("app.localhost", "/upload"), &[], body)
            .await;
        let status = res.status().as_u16();
        let text = res.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&text).into_owned())
    })
    .await
    .expect("1 GiB upload did not finish within 60 s");
    let elapsed = started.elapsed();
    let after = memory();
    let (hwm, rss) = growth(&before, &after);
    eprintln!(
        "upload 1 GiB: {elapsed:.2?}, VmHWM +{hwm:.1} MiB (now {} MiB), VmRSS +{rss:.1} MiB",
        after.hwm / MIB
    );
    assert_eq!(
        answer,
        (200, format!("ok {GIB}")),
        "the backend answers with the size it read"
    );
    let seen = backend.last();
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str(), seen.body_len),
        ("POST", "/upload", GIB)
    );
    assert_eq!(seen.headers["x-auth-user"], "alice");
    assert!(
        hwm < 200.0,
        "peak memory grew by {hwm:.1} MiB for a 1 GiB upload: the body was buffered"
    );
    assert!(
        rss < 200.0,
        "resident memory grew by {rss:.1} MiB after a 1 GiB upload"
    );
}

/// A 1 GiB download arrives whole, frame by frame, with flat memory and backpressure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_1gib_streams() {
    let _alone = EXCLUSIVE.write().await;
    let backend = Backend::start().await;
    let gw = app_gateway(&backend, "").await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    reset_peak();
    let before = memory();
    let started = Instant::now();
    let (status, total, frames, biggest, wrong, stalled) =
        tokio::time::timeout(Duration::from_secs(60), async {
            let res = browser
                .send(
                    Method::GET,
                    &gw.url("app.localhost", "/bytes?n=1073741824"),
                    &[],
                    Empty::<Bytes>::new(),
                )
                .await;
            let status = res.status().as_u16();
            let mut body = res.into_body();
            let (mut total, mut frames, mut biggest, mut wrong) = (0u64, 0u64, 0usize, 0u64);
            let mut stalled = None;
            while let Some(frame) = body.frame().await {
                let frame = frame.expect("the download broke off");
                if let Some(data) = frame.data_ref() {
                    total += data.len() as u64;
                    frames += 1;
                    biggest = biggest.max(data.len());
                    if frames == 1 {
                        // A reader that stalls: the backend could push the whole GiB in
                        // this time if nothing held it back.
                        tokio::time::sleep(Duration::from_millis(1500)).await;
                        stalled = Some(memory());
                    }
                    // Spot-check the content: first and last byte of every frame.
                    if data.first().is_some_and(|b| *b != b'x')
                        || data.last().is_some_and(|b| *b != b'x')
                    {
                        wrong += 1;
                    }
                }
            }
            (
                status,
                total,
                frames,
                biggest,
                wrong,
                stalled.expect("a first frame"),
            )
        })
        .await
        .expect("1 GiB download did not finish within 60 s");
    let elapsed = started.elapsed();
    let after = memory();
    let (hwm, rss) = growth(&before, &after);
    let (_, stalled_rss) = growth(&before, &stalled);
    eprintln!("download 1 GiB: while the reader stalled 1.5 s, VmRSS +{stalled_rss:.1} MiB");
    eprintln!(
        "download 1 GiB: {elapsed:.2?} in {frames} frames (largest {biggest} B), VmHWM +{hwm:.1} MiB (now {} MiB), VmRSS +{rss:.1} MiB",
        after.hwm / MIB
    );
    assert_eq!(status, 200);
    assert!(
        stalled_rss < 100.0,
        "a stalled reader made the process grow by {stalled_rss:.1} MiB: no backpressure"
    );
    assert_eq!(total, GIB, "every byte arrives");
    assert_eq!(wrong, 0, "the content is the backend's");
    assert!(
        frames > 1000,
        "the body arrives in many frames, not one: {frames}"
    );
    assert!(
        (biggest as u64) < 16 * MIB,
        "no frame holds a large part of the body: {biggest} B"
    );
    assert_eq!(backend.last().path, "/bytes?n=1073741824");
    assert!(
        hwm < 200.0,
        "peak memory grew by {hwm:.1} MiB for a 1 GiB download: the body was buffered"
    );
    assert!(
        rss < 200.0,
        "resident memory grew by {rss:.1} MiB after a 1 GiB download"
    );
}

/// Hop-by-hop headers and those named in `Connection` never reach the backend.
#[tokio::test]
async fn hop_by_hop_headers_removed() {
    let _shared = shared().await;
    let backend = Backend::start().await;
    let gw = app_gateway(&backend, "").await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    let cookie = browser.cookie("app.localhost", "__Host-gatehouse").unwrap();
    let mut tls = browser.connect("app.localhost").await;
    let request = format!(
        "GET /hop HTTP/1.1\r\n\
         Host: app.localhost:{port}\r\n\
         Cookie: __Host-gatehouse={cookie}\r\n\
         Connection: close, X-Named-Hop, x-other-named , X-Auth-User, X-Forwarded-For\r\n\
         X-Named-Hop: must-go\r\n\
         X-Other-Named: must-go\r\n\
         Keep-Alive: timeout=5, max=100\r\n\
         Proxy-Connection: keep-alive\r\n\
         Proxy-Authorization: Basic c2VjcmV0OnNlY3JldA==\r\n\
         Proxy-Authenticate: Basic realm=x\r\n\
         TE: trailers, deflate\r\n\
         Trailer: X-Checksum\r\n\
         Upgrade: h2c\r\n\
         X-End-To-End: kept\r\n\
         \r\n",
        port = gw.port
    );
    let res = tokio::time::timeout(Duration::from_secs(10), raw_exchange(&mut tls, &request))
        .await
        .expect("raw request timed out");
    assert_eq!(res.status, 200, "{res:?}");
    let seen = backend.last();
    assert_eq!(seen.path, "/hop");
    for gone in [
        "x-named-hop",
        "x-other-named",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "proxy-authenticate",
        "te",
        "trailer",
        "upgrade",
    ] {
        assert!(
            seen.headers.get(gone).is_none(),
            "{gone} reached the backend: {:?}",
            seen.headers
        );
    }
    if let Some(c) = seen.headers.get("connection") {
        // The gateway's own connection to the backend may say keep-alive; nothing of the client's.
        let c = c.to_str().unwrap().to_ascii_lowercase();
        assert!(
            !c.contains("x-named-hop") && !c.contains("close") && !c.contains("x-auth-user"),
            "client's Connection forwarded: {c}"
        );
    }
    assert_eq!(
        seen.headers["x-end-to-end"], "kept",
        "end-to-end headers pass"
    );
    assert_eq!(
        seen.headers["x-auth-user"], "alice",
        "a Connection token cannot remove the injected identity"
    );
    assert_eq!(
        seen.headers["x-forwarded-for"], "127.0.0.1",
        "nor the forwarding headers"
    );
}

/// `X-Forwarded-For/Proto/Host` are set by the gateway; client-sent copies are replaced.
#[tokio::test]
async fn forwarding_headers_set_by_gateway() {
    let _shared = shared().await;
    let backend = Backend::start().await;
    let gw = app_gateway(&backend, "").await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    let res = browser
        .request(
            Method::GET,
            &gw.url("app.localhost", "/fwd"),
            &[
                ("X-Forwarded-For", "203.0.113.9"),
                ("x-forwarded-for", "198.51.100.1"),
                ("X-Forwarded-Proto", "http"),
                ("X-Forwarded-Host", "evil.example"),
                ("X_Forwarded_Host", "evil.example"),
                ("Forwarded", "for=203.0.113.9;proto=http;host=evil.example"),
                ("X-Real-IP", "203.0.113.9"),
            ],
            Bytes::new(),
        )
        .await;
    assert_eq!(res.status, 200);
    let seen = backend.last();
    let all = |name: &str| {
        seen.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        all("x-forwarded-for"),
        ["127.0.0.1"],
        "the peer address, nothing the client claimed"
    );
    assert_eq!(all("x-forwarded-proto"), ["https"]);
    assert_eq!(
        all("x-forwarded-host"),
        [format!("app.localhost:{}", gw.port)]
    );
    assert_eq!(all("host"), [format!("app.localhost:{}", gw.port)]);
    for gone in ["forwarded", "x-real-ip", "x_forwarded_host"] {
        assert!(
            seen.headers.get(gone).is_none(),
            "client's {gone} reached the backend"
        );
    }
}

/// Client identity headers (any case, `_` for `-`) never reach the backend.
#[tokio::test]
async fn client_identity_headers_never_reach_backend() {
    let _shared = shared().await;
    let backend = Backend::start().await;
    let gw = app_gateway(&backend, "").await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    let forged = [
        ("X-Auth-User", "mallory"),
        ("x-auth-user", "mallory"),
        ("X-AUTH-USER", "mallory"),
        ("X_Auth_User", "mallory"),
        ("x_auth-user", "mallory"),
        ("X-Auth-Level", "99"),
        ("X_AUTH_LEVEL", "99"),
        ("x-auth_account", "victim"),
        ("X-Auth-Account", "victim"),
    ];
    let res = browser
        .request(
            Method::GET,
            &gw.url("app.localhost", "/me"),
            &forged,
            Bytes::new(),
        )
        .await;
    assert_eq!(res.status, 200);
    // The same over raw bytes, where nothing normalises the names on the way.
    let cookie = browser.cookie("app.localhost", "__Host-gatehouse").unwrap();
    let mut tls = browser.connect("app.localhost").await;
    let request = format!(
        "GET /me-raw HTTP/1.1\r\nHost: app.localhost:{}\r\nCookie: __Host-gatehouse={cookie}\r\nX_AUTH_USER: mallory\r\nx-Auth_uSer: mallory\r\nX-AUTH-LEVEL: 99\r\nX_Auth_Account: victim\r\nConnection: close\r\n\r\n",
        gw.port
    );
    let raw = tokio::time::timeout(Duration::from_secs(10), raw_exchange(&mut tls, &request))
        .await
        .unwrap();
    assert_eq!(raw.status, 200);

    let requests = backend.requests();
    for path in ["/me", "/me-raw"] {
        let seen = requests
            .iter()
            .find(|r| r.path == path)
            .unwrap_or_else(|| panic!("backend never saw {path}"));
        let all = |name: &str| {
            seen.headers
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(all("x-auth-user"), ["alice"], "{path}");
        assert_eq!(all("x-auth-level"), ["3"], "{path}");
        assert_eq!(all("x-auth-account").len(), 1, "{path}");
        assert_ne!(all("x-auth-account")[0], "victim", "{path}");
        for name in seen.headers.keys() {
            let folded = name.as_str().replace('_', "-");
            if ["x-auth-user", "x-auth-level", "x-auth-account"].contains(&folded.as_str()) {
                assert!(
                    !name.as_str().contains('_'),
                    "{path}: alias {name} reached the backend"
                );
            }
        }
        assert!(
            seen.headers
                .values()
                .all(|v| v != "mallory" && v != "99" && v != "victim"),
            "{path}: a forged value reached the backend: {:?}",
            seen.headers
        );
    }
}

/// The gateway's cookies (`__Host-gatehouse*`) are not forwarded; the app's own are.
#[tokio::test]
async fn gateway_cookies_stripped_app_cookies_kept() {
    let _shared = shared().await;
    let backend = Backend::start().await;
    let gw = app_gateway(&backend, "").await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    browser.set_cookie("app.localhost", "app_session", "s3cr3t");
    browser.set_cookie("app.localhost", "theme", "dark");
    // A portal cookie sent to the site (a confused or hostile client) goes too.
    browser.set_cookie(
        "app.localhost",
        "__Host-gatehouse-portal",
        "x".repeat(43).as_str(),
    );
    let res = browser.get(&gw.url("app.localhost", "/cookies")).await;
    assert_eq!(res.status, 200, "still signed in with the extra cookies");
    let seen = backend.last();
    let cookies: Vec<String> = seen
        .headers
        .get_all("cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let joined = cookies.join("; ");
    assert!(
        !joined.contains("__Host-gatehouse"),
        "the gateway's cookies reached the backend: {joined}"
    );
    let mut pairs: Vec<&str> = joined
        .split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    pairs.sort();
    assert_eq!(pairs, ["app_session=s3cr3t", "theme=dark"]);

    // With only the gateway's cookie, no Cookie header at all.
    let only_ours = gw.client();
    only_ours.set_cookie(
        "app.localhost",
        "__Host-gatehouse",
        &browser.cookie("app.localhost", "__Host-gatehouse").unwrap(),
    );
    assert_eq!(
        only_ours
            .get(&gw.url("app.localhost", "/cookies2"))
            .await
            .status,
        200
    );
    assert!(
        backend.last().headers.get("cookie").is_none(),
        "{:?}",
        backend.last().headers
    );
}

/// A backend that is down gives 502 at once, and the gateway serves on.
#[tokio::test]
async fn backend_down_is_502_fast() {
    let _shared = shared().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let gw = Gateway::builder()
        .user("alice", "alice-pw", 3)
        .site("app", &dead)
        .start()
        .await;
    let browser = gw.client();
    let landed = sign_in(&browser, &gw, "app.localhost", "/", "alice", "alice-pw").await;
    assert_eq!(landed.status, 502, "{landed:?}");
    for path in ["/", "/some/page?x=1"] {
        let started = Instant::now();
        let res = browser.get(&gw.url("app.localhost", path)).await;
        let elapsed = started.elapsed();
        eprintln!("502 for {path}: {elapsed:?}");
        assert_eq!(res.status, 502, "{res:?}");
        assert!(elapsed < Duration::from_secs(2), "502 took {elapsed:?}");
        assert!(
            res.body.contains("cannot be reached"),
            "a short page says why: {}",
            res.body
        );
        assert!(
            !res.body.contains("127.0.0.1"),
            "the backend's address is not shown"
        );
    }
    let posted = browser
        .request(
            Method::POST,
            &gw.url("app.localhost", "/form"),
            &[],
            Bytes::from_static(b"a=1"),
        )
        .await;
    assert_eq!(posted.status, 502);
    assert_eq!(
        gw.metric("gatehouse_requests_total{site=\"app\",status=\"502\"}")
            .await,
        Some(4.0)
    );
}

/// A backend slower than `response_timeout` gives 504 when the timeout ends.
#[tokio::test]
async fn backend_slow_is_504() {
    let _shared = shared().await;
    let backend = Backend::start().await;
    let gw = app_gateway(&backend, "response_timeout = \"1s\"").await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    let started = Instant::now();
    let res = browser.get(&gw.url("app.localhost", "/slow?ms=3000")).await;
    let elapsed = started.elapsed();
    eprintln!("504 after {elapsed:?}");
    assert_eq!(res.status, 504, "{res:?}");
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_millis(2500),
        "504 after {elapsed:?}"
    );
    assert_eq!(
        backend.last().path,
        "/slow?ms=3000",
        "the request did reach the backend"
    );
    let fast = browser.get(&gw.url("app.localhost", "/slow?ms=100")).await;
    assert_eq!(
        (fast.status, fast.body.as_str()),
        (200, "slow ok"),
        "within the timeout is fine"
    );
}

const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn ws_request(port: u16, host: &str, cookie: Option<&str>) -> String {
    let cookie = cookie
        .map(|c| format!("Cookie: __Host-gatehouse={c}\r\n"))
        .unwrap_or_default();
    format!(
        "GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n{cookie}\r\n"
    )
}

/// A signed-in WebSocket upgrade gets 101 and bytes are echoed through the tunnel.
#[tokio::test]
async fn websocket_upgrade_tunnels_after_sign_in() {
    let _shared = shared().await;
    let backend = Backend::start().await;
    let gw = app_gateway(&backend, "").await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    let cookie = browser.cookie("app.localhost", "__Host-gatehouse").unwrap();
    let mut tls = browser.connect("app.localhost").await;
    tokio::time::timeout(Duration::from_secs(15), async {
        tls.write_all(ws_request(gw.port, "app.localhost", Some(&cookie)).as_bytes())
            .await
            .unwrap();
        let (head, early) = read_head(&mut tls).await;
        assert_eq!(head.status, 101, "{head:?}");
        assert!(
            head.header("upgrade")
                .is_some_and(|v| v.eq_ignore_ascii_case("websocket")),
            "{head:?}"
        );
        assert!(
            early.is_empty(),
            "nothing before the client speaks: {early:?}"
        );

        // A short message, then 1 MiB written and read concurrently.
        tls.write_all(b"hello through the tunnel").await.unwrap();
        let mut echo = vec![0u8; 24];
        tls.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"hello through the tunnel");
        let payload: Vec<u8> = (0..MIB as usize).map(|i| (i % 251) as u8).collect();
        let (mut rd, mut wr) = tokio::io::split(tls);
        let sent = payload.clone();
        let writer = tokio::spawn(async move {
            wr.write_all(&sent).await.unwrap();
            wr.flush().await.unwrap();
            wr
        });
        let mut back = vec![0u8; payload.len()];
        rd.read_exact(&mut back).await.unwrap();
        let _wr = writer.await.unwrap();
        assert!(back == payload, "the echo differs from what was sent");
    })
    .await
    .expect("websocket exchange timed out");
    let seen = backend
        .requests()
        .into_iter()
        .find(|r| r.path == "/ws")
        .expect("backend saw the upgrade");
    assert_eq!(seen.headers["x-auth-user"], "alice");
    assert!(
        seen.headers["upgrade"]
            .to_str()
            .unwrap()
            .eq_ignore_ascii_case("websocket")
    );
    assert_eq!(seen.headers["sec-websocket-key"], WS_KEY);
    assert!(
        seen.headers.get("cookie").is_none(),
        "the site cookie reached the backend"
    );
}

/// An upgrade without a session, or below the level, never reaches the backend.
#[tokio::test]
async fn websocket_upgrade_needs_session_and_level() {
    let _shared = shared().await;
    let backend = Backend::start().await;
    let gw = Gateway::builder()
        .user("alice", "alice-pw", 3)
        .site("app", &backend.url())
        .site_with(
            "wiki",
            &backend.url(),
            "[[sites.rules]]\npath = \"/ws\"\nmin_level = 9",
        )
        .start()
        .await;
    let stranger = gw.client();
    for cookie in [None, Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")] {
        let mut tls = stranger.connect("app.localhost").await;
        let res = tokio::time::timeout(Duration::from_secs(10), async {
            tls.write_all(ws_request(gw.port, "app.localhost", cookie).as_bytes())
                .await
                .unwrap();
            read_head(&mut tls).await.0
        })
        .await
        .unwrap();
        assert!(
            res.status == 302 || res.status == 401,
            "cookie {cookie:?}: {res:?}"
        );
        assert_ne!(res.status, 101);
    }
    // Signed in on the wiki, but below the level its /ws needs.
    let browser = signed_in_browser(&gw, "wiki.localhost", "alice", "alice-pw").await;
    let cookie = browser
        .cookie("wiki.localhost", "__Host-gatehouse")
        .unwrap();
    let mut tls = browser.connect("wiki.localhost").await;
    let res = tokio::time::timeout(Duration::from_secs(10), async {
        tls.write_all(ws_request(gw.port, "wiki.localhost", Some(&cookie)).as_bytes())
            .await
            .unwrap();
        read_head(&mut tls).await.0
    })
    .await
    .unwrap();
    assert_eq!(res.status, 403, "{res:?}");
    assert!(
        backend.requests().iter().all(|r| r.path != "/ws"),
        "the backend saw an upgrade it should not have"
    );
}

/// HTTP/2 from a signed-in browser is proxied with the user's identity, answered in HTTP/2.
#[tokio::test]
async fn http2_requests_proxied() {
    let _shared = shared().await;
    let backend = Backend::start().await;
    let gw = app_gateway(&backend, "").await;
    let mut browser = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    browser.http2 = true;
    let res = browser
        .send(
            Method::GET,
            &gw.url("app.localhost", "/h2?x=1"),
            &[("x-auth-user", "mallory")],
            Empty::<Bytes>::new(),
        )
        .await;
    assert_eq!(res.version(), http::Version::HTTP_2);
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers().get("x-backend").map(|v| v.to_str().unwrap()),
        Some("recording"),
        "the backend's answer"
    );
    let seen = backend.last();
    assert_eq!(seen.path, "/h2?x=1");
    assert_eq!(
        seen.headers
            .get_all("x-auth-user")
            .iter()
            .collect::<Vec<_>>(),
        ["alice"]
    );
    assert_eq!(
        seen.headers["x-forwarded-host"],
        format!("app.localhost:{}", gw.port)
    );
    assert!(seen.headers.get("cookie").is_none());

    let body = Full::new(Bytes::from(vec![b'b'; 3 * MIB as usize]));
    let res = browser
        .send(
            Method::PUT,
            &gw.url("app.localhost", "/h2-upload"),
            &[],
            body,
        )
        .await;
    assert_eq!(res.version(), http::Version::HTTP_2);
    assert_eq!(res.status(), 200);
    let text = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&text[..], format!("ok {}", 3 * MIB).as_bytes());
    assert_eq!(
        (backend.last().method.as_str(), backend.last().body_len),
        ("PUT", 3 * MIB)
    );

    // Without a session, HTTP/2 is sent to the portal like HTTP/1.1.
    let mut stranger = gw.client();
    stranger.http2 = true;
    let res = stranger
        .send(
            Method::GET,
            &gw.url("app.localhost", "/h2-anon"),
            &[],
            Empty::<Bytes>::new(),
        )
        .await;
    assert_eq!(
        (res.version(), res.status().as_u16()),
        (http::Version::HTTP_2, 302)
    );
    assert!(backend.requests().iter().all(|r| r.path != "/h2-anon"));
}

/// A request body that trickles in: `chunks` chunks of `size` bytes, one every `every`.
struct Trickle {
    chunks: u32,
    size: usize,
    every: Duration,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl Trickle {
    fn new(chunks: u32, size: usize, every: Duration) -> Self {
        Trickle {
            chunks,
            size,
            every,
            sleep: Box::pin(tokio::time::sleep(every)),
        }
    }
}

impl hyper::body::Body for Trickle {
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
        let next = tokio::time::Instant::now() + self.every;
        self.sleep.as_mut().reset(next);
        self.chunks -= 1;
        let size = self.size;
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from(vec![
            b't';
            size
        ])))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks == 0
    }
}

/// A slow upload to a backend that answers at once is not a 504 (timeout is the backend's).
#[tokio::test]
async fn slow_upload_is_not_a_backend_timeout() {
    let _shared = shared().await;
    let backend = Backend::start().await;
    let gw = app_gateway(&backend, "response_timeout = \"1s\"").await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    // 8 chunks of 64 KiB, one every 300 ms: about 2.4 s of upload.
    let body = Trickle::new(8, 64 * 1024, Duration::from_millis(300));
    let started = Instant::now();
    let res = tokio::time::timeout(
        Duration::from_secs(15),
        browser.send(
            Method::POST,
            &gw.url("app.localhost", "/trickle"),
            &[],
            body,
        ),
    )
    .await
    .expect("slow upload hung");
    let status = res.status().as_u16();
    let text = res
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    eprintln!("slow upload: {status} after {:?}", started.elapsed());
    assert_eq!(
        (status, String::from_utf8_lossy(&text).into_owned()),
        (200, format!("ok {}", 8 * 64 * 1024)),
        "the backend answered as soon as the body was in"
    );
}

/// HTTP/2 cookie crumbs reach the HTTP/1.1 backend joined in one `Cookie` header.
#[tokio::test]
async fn http2_split_cookies_joined_for_backend() {
    let _shared = shared().await;
    use base64::Engine;
    let backend = Backend::start().await;
    let gw = Gateway::builder()
        .user("alice", "alice-pw", 3)
        .site("app", &backend.url())
        .site_with("api", &backend.url(), "allow_basic = true")
        .start()
        .await;
    let split = [("cookie", "a=1"), ("cookie", "b=2")];

    let mut browser = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    browser.http2 = true;
    let res = browser
        .send(
            Method::GET,
            &gw.url("app.localhost", "/split"),
            &split,
            Empty::<Bytes>::new(),
        )
        .await;
    assert_eq!(
        (res.version(), res.status().as_u16()),
        (http::Version::HTTP_2, 200)
    );
    let cookies: Vec<_> = backend
        .last()
        .headers
        .get_all("cookie")
        .iter()
        .cloned()
        .collect();
    assert_eq!(cookies, ["a=1; b=2"], "browser over HTTP/2");

    let mut api = gw.client();
    api.http2 = true;
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:alice-pw")
    );
    let headers = [("authorization", auth.as_str()), split[0], split[1]];
    let res = api
        .send(
            Method::GET,
            &gw.url("api.localhost", "/split-api"),
            &headers,
            Empty::<Bytes>::new(),
        )
        .await;
    assert_eq!(
        (res.version(), res.status().as_u16()),
        (http::Version::HTTP_2, 200)
    );
    let seen = backend.last();
    assert_eq!(
        (
            seen.path.as_str(),
            seen.headers["x-auth-user"].to_str().unwrap()
        ),
        ("/split-api", "alice")
    );
    let cookies: Vec<_> = seen.headers.get_all("cookie").iter().cloned().collect();
    assert_eq!(
        cookies,
        ["a=1; b=2"],
        "API client over HTTP/2: one Cookie header for the HTTP/1.1 backend"
    );
}

/// An app cookie with a UTF-8 value neither hides the session nor drops the app's cookies.
#[tokio::test]
async fn utf8_app_cookie_keeps_session_and_app_cookies() {
    let _shared = shared().await;
    let backend = Backend::start().await;
    let gw = app_gateway(&backend, "").await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    let cookie = browser.cookie("app.localhost", "__Host-gatehouse").unwrap();
    let mut tls = browser.connect("app.localhost").await;
    let request = format!(
        "GET /utf8 HTTP/1.1\r\nHost: app.localhost:{}\r\n\
         Cookie: theme=dark; __Host-gatehouse={cookie}; name=Zoë\r\nConnection: close\r\n\r\n",
        gw.port
    );
    let res = tokio::time::timeout(Duration::from_secs(10), raw_exchange(&mut tls, &request))
        .await
        .expect("raw request timed out");
    assert_eq!(res.status, 200, "the session is still recognised: {res:?}");
    let seen = backend.last();
    assert_eq!(seen.path, "/utf8");
    let cookies: Vec<&[u8]> = seen
        .headers
        .get_all("cookie")
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    assert_eq!(
        cookies,
        [b"theme=dark; name=Zo\xc3\xab".as_slice()],
        "the app's cookies, and only those"
    );
}

/// A keep-alive HTTP/1.1 backend that counts the connections it accepts and can close all
/// of them at once, as a backend restarting or timing out idle connections does.
struct CountingBackend {
    addr: std::net::SocketAddr,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    close_all: tokio::sync::watch::Sender<u32>,
}

impl CountingBackend {
    async fn start() -> CountingBackend {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (close_all, closes) = tokio::sync::watch::channel(0u32);
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let mut closes = closes.clone();
                closes.mark_unchanged();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        let n = tokio::select! {
                            n = tcp.read(&mut buf) => n.unwrap_or(0),
                            _ = closes.changed() => 0,
                        };
                        if n == 0 {
                            return; // dropping the stream closes it
                        }
                        head.extend_from_slice(&buf[..n]);
                        while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                            head.drain(..end + 4);
                            let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                            if tcp.write_all(reply).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        CountingBackend {
            addr,
            accepted,
            close_all,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Backend connections are kept and reused between requests; when the backend closes them
/// while they sit idle, the next request is still answered (on a new connection), not
/// failed with a 502.
#[tokio::test]
async fn backend_connections_reused_and_closed_ones_replaced() {
    let _shared = shared().await;
    let backend = CountingBackend::start().await;
    // One worker thread: idle backend connections are kept per worker thread.
    let gw = Gateway::builder()
        .server("workers = 1")
        .user("alice", "alice-pw", 3)
        .site("app", &format!("http://{}", backend.addr))
        .start()
        .await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    let after_sign_in = backend.accepted();
    assert_eq!(after_sign_in, 1);
    for i in 0..50 {
        let res = browser
            .get(&gw.url("app.localhost", &format!("/r{i}")))
            .await;
        assert_eq!((res.status, res.body.as_str()), (200, "ok"), "request {i}");
    }
    assert_eq!(
        backend.accepted(),
        after_sign_in,
        "one request after another reuses the same backend connection"
    );

    for round in 1..=3 {
        backend.close_all.send_modify(|n| *n += 1);
        // Let the backend's FIN reach the gateway's idle connection.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let before = backend.accepted();
        let res = browser.get(&gw.url("app.localhost", "/after-close")).await;
        assert_eq!(
            (res.status, res.body.as_str()),
            (200, "ok"),
            "round {round}: a closed idle connection is replaced, not reported as a 502"
        );
        assert_eq!(
            backend.accepted(),
            before + 1,
            "round {round}: one new connection"
        );
    }
    assert_eq!(
        gw.metric("gatehouse_requests_total{site=\"app\",status=\"502\"}")
            .await,
        None,
        "no request failed"
    );
}

/// Each browser connection keeps its head-read and response deadlines' timers and reuses
/// them for every request (src/http/timer.rs); each deadline must still be set anew. On one
/// keep-alive connection: a backend slower than `header_read_timeout` does not get the next
/// head cut off; quick answers leave no early deadline behind; a backend slower than
/// `response_timeout` still gets its 504 on time (margins wide enough for a loaded CI
/// machine: 1.5 s answers against 3 s); and the idle connection is still closed
/// once `header_read_timeout` has passed.
#[tokio::test]
async fn one_connections_deadlines_are_set_anew_for_each_request() {
    let _shared = shared().await;
    let backend = Backend::start().await;
    let gw = Gateway::builder()
        .server("header_read_timeout = \"1s\"")
        .user("alice", "alice-pw", 3)
        .site_with("app", &backend.url(), "response_timeout = \"3s\"")
        .start()
        .await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    let site_cookie = browser
        .cookie("app.localhost", "__Host-gatehouse")
        .expect("signed in");
    let cookie = format!("__Host-gatehouse={site_cookie}");
    let io = hyper_util::rt::TokioIo::new(browser.connect("app.localhost").await);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    let conn = tokio::spawn(conn);
    let host = format!("app.localhost:{}", gw.port);
    let mut get = async |path: &str| {
        let req = http::Request::get(path)
            .header(http::header::HOST, &host)
            .header(http::header::COOKIE, &cookie)
            .body(Empty::<Bytes>::new())
            .unwrap();
        sender.ready().await.expect("the connection is still open");
        let started = Instant::now();
        let res = sender.send_request(req).await.expect("an answer");
        let status = res.status().as_u16();
        res.into_body().collect().await.unwrap();
        (status, started.elapsed())
    };

    // Longer than the head deadline: the head timer, kept meanwhile, must not fire later.
    assert_eq!(get("/slow?ms=1500").await.0, 200);
    for i in 0..5 {
        assert_eq!(get("/slow?ms=10").await.0, 200, "quick request {i}");
    }
    assert_eq!(
        get("/slow?ms=1500").await.0,
        200,
        "the response deadline moved on"
    );
    let (status, took) = get("/slow?ms=6000").await;
    assert_eq!(status, 504);
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_millis(4500),
        "504 after {took:?} with a 3 s response timeout"
    );
    assert_eq!(
        get("/slow?ms=10").await.0,
        200,
        "served again after the 504"
    );

    // Idle now: closed by the gateway after the 1 s head deadline, not before.
    let idle = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(5), conn).await;
    assert!(
        closed.is_ok(),
        "an idle connection was kept past its head deadline"
    );
    assert!(
        idle.elapsed() >= Duration::from_millis(900),
        "closed after {:?} with a 1 s head deadline",
        idle.elapsed()
    );
}

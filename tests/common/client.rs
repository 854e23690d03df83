//! A small HTTPS client for tests: one connection per request, SNI from the URL's host,
//! every host resolved to 127.0.0.1 (the gateway's port), the dev CA trusted, and a cookie
//! jar per host that checks every `__Host-` cookie carries the attributes SPEC §3 requires.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::header::{COOKIE, HOST, LOCATION, SET_COOKIE};
use http::{HeaderMap, Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
    pub url: String,
}

impl Resp {
    pub fn location(&self) -> Option<String> {
        let loc = self.headers.get(LOCATION)?.to_str().ok()?;
        if loc.starts_with('/') {
            // Resolve a local redirect against this response's origin.
            let origin_end = self
                .url
                .find("://")
                .map(|i| i + 3)
                .and_then(|i| self.url[i..].find('/').map(|j| i + j))?;
            Some(format!("{}{}", &self.url[..origin_end], loc))
        } else {
            Some(loc.to_string())
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub struct Client {
    port: u16,
    tls: TlsConnector,
    h2_tls: TlsConnector,
    /// Use HTTP/2 (ALPN h2) instead of HTTP/1.1.
    pub http2: bool,
    jar: Mutex<HashMap<String, BTreeMap<String, String>>>,
    /// Every response received (status, headers, body), when recording (see `recording`).
    transcript: Option<Mutex<String>>,
    /// Connect from this loopback address (e.g. 127.0.0.2), to look like another client.
    source: Option<std::net::IpAddr>,
    /// Hosts served on another port than `port` (several gatehouse processes).
    host_ports: HashMap<String, u16>,
}

fn connector(alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(super::ca_file()).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

/// Split `https://host:port/path?q` into (host, path-and-query).
pub fn split_url(url: &str) -> (String, String) {
    let rest = url
        .strip_prefix("https://")
        .unwrap_or_else(|| panic!("not an https URL: {url}"));
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    (host.to_string(), path.to_string())
}

impl Client {
    pub fn new(port: u16) -> Self {
        Client {
            port,
            tls: connector(&[b"http/1.1"]),
            h2_tls: connector(&[b"h2"]),
            http2: false,
            jar: Mutex::new(HashMap::new()),
            transcript: None,
            source: None,
            host_ports: HashMap::new(),
        }
    }

    /// Reach `host` at `port` (another process) instead of the client's default port.
    pub fn with_host_port(mut self, host: &str, port: u16) -> Self {
        self.host_ports.insert(host.to_string(), port);
        self
    }

    /// From now on reach `host` at `port` (a load balancer sending the next requests to
    /// another process).
    pub fn set_host_port(&mut self, host: &str, port: u16) {
        self.host_ports.insert(host.to_string(), port);
    }

    fn port_for(&self, host: &str) -> u16 {
        self.host_ports.get(host).copied().unwrap_or(self.port)
    }

    /// Connect from another loopback address (127.0.0.0/8 is all loopback on Linux), so the
    /// gateway sees another client address.
    pub fn with_source_address(mut self, ip: &str) -> Self {
        self.source = Some(ip.parse().unwrap());
        self
    }

    /// Keep a transcript of every response this client receives (for "nothing secret ever
    /// reaches the browser" checks).
    pub fn recording(mut self) -> Self {
        self.transcript = Some(Mutex::new(String::new()));
        self
    }

    /// Everything received so far, when recording.
    pub fn transcript(&self) -> String {
        self.transcript
            .as_ref()
            .map(|t| t.lock().unwrap().clone())
            .unwrap_or_default()
    }

    /// A TLS connection to the gateway for `host` (SNI), for raw-bytes tests.
    pub async fn connect(&self, host: &str) -> TlsStream<TcpStream> {
        self.connect_with(host, &self.tls).await
    }

    async fn connect_with(&self, host: &str, tls: &TlsConnector) -> TlsStream<TcpStream> {
        let port = self.port_for(host);
        let tcp = match self.source {
            None => TcpStream::connect(("127.0.0.1", port)).await.unwrap(),
            Some(ip) => {
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket.bind(SocketAddr::new(ip, 0)).unwrap();
                socket
                    .connect(SocketAddr::from(([127, 0, 0, 1], port)))
                    .await
                    .unwrap()
            }
        };
        let name = ServerName::try_from(host.to_string()).unwrap();
        tls.connect(name, tcp).await.unwrap()
    }

    pub fn cookie(&self, host: &str, name: &str) -> Option<String> {
        self.jar.lock().unwrap().get(host)?.get(name).cloned()
    }

    pub fn set_cookie(&self, host: &str, name: &str, value: &str) {
        self.jar
            .lock()
            .unwrap()
            .entry(host.to_string())
            .or_default()
            .insert(name.to_string(), value.to_string());
    }

    pub fn clear_cookies(&self, host: &str) {
        self.jar.lock().unwrap().remove(host);
    }

    fn cookie_header(&self, host: &str) -> Option<String> {
        let jar = self.jar.lock().unwrap();
        let cookies = jar.get(host)?;
        (!cookies.is_empty()).then(|| {
            cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    fn store_cookies(&self, host: &str, headers: &HeaderMap) {
        let mut jar = self.jar.lock().unwrap();
        let sets_ours = headers
            .get_all(SET_COOKIE)
            .iter()
            .any(|v| v.as_bytes().starts_with(b"__Host-gatehouse"));
        if sets_ours {
            // A response that sets or clears a session cookie must never be stored by a
            // cache, where another browser could get it.
            assert_eq!(
                headers.get("cache-control").and_then(|v| v.to_str().ok()),
                Some("no-store"),
                "Set-Cookie without Cache-Control: no-store: {headers:?}"
            );
        }
        for value in headers.get_all(SET_COOKIE) {
            let value = value.to_str().unwrap();
            let mut parts = value.split(';').map(str::trim);
            let (name, val) = parts.next().unwrap().split_once('=').unwrap();
            let attrs: Vec<String> = parts.map(|a| a.to_ascii_lowercase()).collect();
            if name.starts_with("__Host-") {
                for required in ["secure", "httponly", "samesite=lax", "path=/"] {
                    assert!(
                        attrs.iter().any(|a| a == required),
                        "cookie {name} lacks {required}: {value}"
                    );
                }
                assert!(
                    !attrs.iter().any(|a| a.starts_with("domain")),
                    "__Host- cookie with Domain: {value}"
                );
            }
            let cookies = jar.entry(host.to_string()).or_default();
            if attrs.iter().any(|a| a == "max-age=0") {
                cookies.remove(name);
            } else {
                cookies.insert(name.to_string(), val.to_string());
            }
        }
    }

    pub async fn get(&self, url: &str) -> Resp {
        self.request(Method::GET, url, &[], Bytes::new()).await
    }

    pub async fn post_form(&self, url: &str, fields: &[(&str, &str)]) -> Resp {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.request(
            Method::POST,
            url,
            &[("content-type", "application/x-www-form-urlencoded")],
            Bytes::from(body),
        )
        .await
    }

    /// GET and follow redirects (up to 10), like a browser.
    pub async fn follow(&self, url: &str) -> Resp {
        let mut url = url.to_string();
        for _ in 0..10 {
            let res = self.get(&url).await;
            if !(300..400).contains(&res.status) {
                return res;
            }
            url = res.location().expect("redirect without Location");
        }
        panic!("too many redirects, last {url}");
    }

    /// A request with extra headers (appended, so duplicates are possible) and a body.
    pub async fn request(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Resp {
        let res = self.send(method, url, headers, Full::new(body)).await;
        let (parts, body) = res.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let resp = Resp {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
            url: url.to_string(),
        };
        if let Some(t) = &self.transcript {
            let mut t = t.lock().unwrap();
            t.push_str(&format!("{} {}\n", resp.status, resp.url));
            for (name, value) in &resp.headers {
                t.push_str(&format!(
                    "{name}: {}\n",
                    String::from_utf8_lossy(value.as_bytes())
                ));
            }
            t.push_str(&resp.body);
            t.push('\n');
        }
        resp
    }

    /// Send any body; the response body is left streaming.
    pub async fn send<B>(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: B,
    ) -> Response<Incoming>
    where
        B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (host, path) = split_url(url);
        let mut builder = Request::builder().method(method);
        if self.http2 {
            builder = builder
                .uri(format!("https://{host}:{}{path}", self.port_for(&host)))
                .version(http::Version::HTTP_2);
        } else {
            builder = builder
                .uri(path.as_str())
                .header(HOST, format!("{host}:{}", self.port_for(&host)));
        }
        if let Some(c) = self.cookie_header(&host) {
            builder = builder.header(COOKIE, c);
        }
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let req = builder.body(body).unwrap();
        let res = if self.http2 {
            let io = TokioIo::new(self.connect_with(&host, &self.h2_tls).await);
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .unwrap();
            tokio::spawn(conn);
            sender.send_request(req).await.unwrap()
        } else {
            let io = TokioIo::new(self.connect(&host).await);
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn.with_upgrades());
            sender.send_request(req).await.unwrap()
        };
        self.store_cookies(&host, res.headers());
        res
    }
}

/// A plain-HTTP GET (admin and redirect listeners).
pub async fn plain_get(addr: SocketAddr, host: &str, path: &str) -> (u16, String) {
    let (status, _, body) = plain_request(addr, host, path).await;
    (status, body)
}

pub async fn plain_request(addr: SocketAddr, host: &str, path: &str) -> (u16, HeaderMap, String) {
    let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let req = Request::get(path)
        .header(HOST, host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

impl Client {
    /// Send `GET <target>` as raw bytes (for targets a URI type would refuse or rewrite),
    /// with this client's cookies for `host`; returns the status code.
    pub async fn raw_get(&self, host: &str, target: &str) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tls = self.connect(host).await;
        let cookie = self
            .cookie_header(host)
            .map(|c| format!("Cookie: {c}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "GET {target} HTTP/1.1\r\nHost: {host}:{}\r\n{cookie}Connection: close\r\n\r\n",
            self.port
        );
        tls.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let _ = tls.read_to_end(&mut buf).await;
        let text = String::from_utf8_lossy(&buf);
        text.split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {text:?}"))
    }
}

/// What came back on a raw connection: every byte until the gateway closed it (or went
/// quiet), and whether it closed it.
#[derive(Debug)]
pub struct RawReply {
    pub text: String,
    pub closed: bool,
}

impl RawReply {
    /// The status of the first response.
    pub fn status(&self) -> Option<u16> {
        self.statuses().first().copied()
    }

    /// The status of every response on the connection (more than one means the gateway
    /// answered more than one request).
    pub fn statuses(&self) -> Vec<u16> {
        self.text
            .match_indices("HTTP/1.1 ")
            .filter_map(|(i, m)| self.text.get(i + m.len()..i + m.len() + 3))
            .filter_map(|s| s.parse().ok())
            .collect()
    }
}

impl Client {
    /// `Cookie: …\r\n` with this client's cookies for `host`, or nothing.
    pub fn cookie_line(&self, host: &str) -> String {
        self.cookie_header(host)
            .map(|c| format!("Cookie: {c}\r\n"))
            .unwrap_or_default()
    }

    /// Write `request` as is over a TLS connection made for `sni`, then read until the
    /// gateway closes the connection or, once it has answered, sends nothing for two
    /// seconds (it gets ten for its first byte, so a loaded machine is not a failure).
    pub async fn raw_exchange(&self, sni: &str, request: &[u8]) -> RawReply {
        self.raw_exchange_in_pieces(sni, &[request]).await
    }

    /// [`Client::raw_exchange`], the request written in `pieces`, each flushed as a TLS
    /// record of its own 20 ms after the one before, so that the gateway reads them apart.
    pub async fn raw_exchange_in_pieces(&self, sni: &str, pieces: &[&[u8]]) -> RawReply {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tls = self.connect(sni).await;
        for (i, piece) in pieces.iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            tls.write_all(piece).await.unwrap();
            tls.flush().await.unwrap();
        }
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        let closed = loop {
            let wait = std::time::Duration::from_secs(if buf.is_empty() { 10 } else { 2 });
            match tokio::time::timeout(wait, tls.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break true,
                Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
                Err(_) => break false,
            }
        };
        RawReply {
            text: String::from_utf8_lossy(&buf).into_owned(),
            closed,
        }
    }
}

impl Client {
    /// One HTTP/2 connection made for `sni`, on which requests may name any authority (for
    /// connection-reuse checks), with this client's cookies for `sni`.
    pub async fn h2_connection(&self, sni: &str) -> H2Connection {
        let io = TokioIo::new(self.connect_with(sni, &self.h2_tls).await);
        let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(conn);
        H2Connection {
            sender,
            port: self.port,
            cookie: self.cookie_header(sni),
        }
    }
}

pub struct H2Connection {
    sender: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    port: u16,
    cookie: Option<String>,
}

impl H2Connection {
    /// `GET https://authority:port/path` on this connection; the status.
    pub async fn get(&mut self, authority: &str, path: &str) -> u16 {
        let mut req = Request::builder()
            .uri(format!("https://{authority}:{}{path}", self.port))
            .version(http::Version::HTTP_2);
        if let Some(c) = &self.cookie {
            req = req.header(COOKIE, c);
        }
        let res = self
            .sender
            .send_request(req.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        res.status().as_u16()
    }
}

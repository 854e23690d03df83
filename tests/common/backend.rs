//! A recording backend on `127.0.0.1:0`: remembers every request it received (method,
//! path, headers, body size) and answers by path:
//! - `/slow?ms=N` — waits N ms, then 200;
//! - `/bytes?n=N` — streams N bytes;
//! - `/ws` — accepts a WebSocket upgrade (101) and echoes raw bytes afterwards (it answers
//!   101 whatever was asked, as a misbehaving backend might);
//! - `/h2c-101` — answers 101 switching to `h2c`, a protocol the gateway must not tunnel;
//! - anything else — 200 `ok`, after reading the whole body (its size is recorded).
//!
//! [`Backend::with_logins`] makes a legacy app with its own Basic login: it keeps its own
//! table of user → password and answers 401 (recording the request) to anything else.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body_len: u64,
}

#[derive(Clone)]
pub struct Backend {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    /// The legacy app's own user table, when it has a Basic login.
    logins: Option<Arc<HashMap<String, String>>>,
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn full(s: &'static str) -> Body {
    http_body_util::Full::new(Bytes::from_static(s.as_bytes())).boxed()
}

fn query_num(req: &Request<Incoming>, key: &str) -> u64 {
    req.uri()
        .query()
        .and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl Backend {
    pub async fn start() -> Backend {
        Self::serve(None).await
    }

    /// A backend with its own Basic login: only these (user, password) pairs get past 401.
    pub async fn with_logins(logins: &[(&str, &str)]) -> Backend {
        let table = logins
            .iter()
            .map(|(u, p)| (u.to_string(), p.to_string()))
            .collect();
        Self::serve(Some(Arc::new(table))).await
    }

    async fn serve(logins: Option<Arc<HashMap<String, String>>>) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let backend = Backend {
            addr: listener.local_addr().unwrap(),
            requests: Arc::new(Mutex::new(Vec::new())),
            logins,
        };
        let b = backend.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let b = b.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let b = b.clone();
                        async move { Ok::<_, Infallible>(b.answer(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        backend
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    pub fn last(&self) -> Recorded {
        self.requests
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the backend received no request")
    }

    /// Does the request carry `Basic base64(user:password)` for a user of the table?
    fn logged_in(&self, headers: &HeaderMap) -> bool {
        use base64::Engine;
        let Some(table) = &self.logins else {
            return true;
        };
        let decoded = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
            .and_then(|bytes| String::from_utf8(bytes).ok());
        decoded
            .as_deref()
            .and_then(|text| text.split_once(':'))
            .is_some_and(|(user, password)| table.get(user).is_some_and(|p| p == password))
    }

    async fn answer(&self, mut req: Request<Incoming>) -> Response<Body> {
        let path = req
            .uri()
            .path_and_query()
            .map_or("/".into(), |p| p.as_str().to_string());
        let mut recorded = Recorded {
            method: req.method().to_string(),
            path: path.clone(),
            headers: req.headers().clone(),
            body_len: 0,
        };
        if !self.logged_in(req.headers()) {
            self.requests.lock().unwrap().push(recorded);
            return Response::builder()
                .status(StatusCode::UNAUTHORIZED)
                .header("www-authenticate", "Basic realm=\"legacy\"")
                .body(full("legacy login required"))
                .unwrap();
        }
        match req.uri().path() {
            "/slow" => {
                let ms = query_num(&req, "ms");
                self.requests.lock().unwrap().push(recorded);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Response::new(full("slow ok"))
            }
            "/bytes" => {
                let n = query_num(&req, "n");
                self.requests.lock().unwrap().push(recorded);
                Response::new(
                    Repeat {
                        left: n,
                        chunk: Bytes::from(vec![b'x'; 256 * 1024]),
                    }
                    .boxed(),
                )
            }
            "/ws" => {
                self.requests.lock().unwrap().push(recorded);
                let upgrade = hyper::upgrade::on(&mut req);
                tokio::spawn(async move {
                    if let Ok(up) = upgrade.await {
                        let mut io = TokioIo::new(up);
                        let mut buf = [0u8; 4096];
                        while let Ok(n) = io.read(&mut buf).await {
                            if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                });
                Response::builder()
                    .status(StatusCode::SWITCHING_PROTOCOLS)
                    .header("upgrade", "websocket")
                    .header("connection", "upgrade")
                    .body(full(""))
                    .unwrap()
            }
            "/h2c-101" => {
                self.requests.lock().unwrap().push(recorded);
                Response::builder()
                    .status(StatusCode::SWITCHING_PROTOCOLS)
                    .header("upgrade", "h2c")
                    .header("connection", "upgrade")
                    .body(full(""))
                    .unwrap()
            }
            _ => {
                let mut body = req.into_body();
                while let Some(frame) = body.frame().await {
                    match frame {
                        Ok(f) => recorded.body_len += f.data_ref().map_or(0, |d| d.len() as u64),
                        Err(_) => break,
                    }
                }
                let len = recorded.body_len;
                self.requests.lock().unwrap().push(recorded);
                let mut res = Response::new(
                    http_body_util::Full::new(Bytes::from(format!("ok {len}"))).boxed(),
                );
                res.headers_mut()
                    .insert("x-backend", "recording".parse().unwrap());
                res
            }
        }
    }
}

/// A body of `n` bytes sent in chunks, never holding more than one chunk.
pub struct Repeat {
    pub left: u64,
    pub chunk: Bytes,
}

impl hyper::body::Body for Repeat {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        let take = self.left.min(self.chunk.len() as u64) as usize;
        self.left -= take as u64;
        std::task::Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..take)))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }
}

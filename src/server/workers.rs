//! Serving accepted connections: on the accepting runtime, or spread over worker threads
//! that each run a single-threaded runtime (nginx's model: one event loop per core).
//!
//! Why: on tokio's work-stealing runtime a request wakes tasks across threads (the browser's
//! connection, the backend connection), which cost ~20 % more CPU per request than the same
//! work on one thread (bench/README.md). With one worker per core, a connection, its
//! backend connections and their timers stay on one thread; the table and the portal are
//! shared.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::HeaderValue;
use hyper::server::conn::{http1, http2};
use hyper::service::{Service, service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_rustls::TlsAcceptor;

use super::streams::{Counted, Streams};
use super::{App, HANDSHAKE_TIMEOUT};
use crate::http::framing_watch::FramingWatch;
use crate::http::timer::TimerSlot;

/// What every connection needs. Each worker thread has its own copy (see [`Workers::start`]).
#[derive(Clone)]
pub struct Shared {
    pub acceptor: TlsAcceptor,
    pub app: Arc<App>,
    pub http1: http1::Builder,
    pub http2: http2::Builder<TokioExecutor>,
    /// How long an HTTP/2 connection may go without an open stream (the first one counted
    /// from the TLS handshake) before it is closed: `server.header_read_timeout`, which on
    /// HTTP/1 bounds both the first request's head and an idle keep-alive connection's wait
    /// for the next (there is no separate keep-alive setting).
    pub h2_idle: Duration,
}

/// Graceful shutdown of the connections (hyper-util's `GracefulShutdown` cannot watch
/// hyper's HTTP/1 connection with upgrades): `shutdown` asks every watched connection to
/// finish its in-flight requests and close, then waits until all have.
pub struct Drain(tokio::sync::watch::Sender<()>);

/// One connection's side of [`Drain`]; held until the connection is done.
pub struct Watcher(tokio::sync::watch::Receiver<()>);

impl Drain {
    pub fn new() -> Drain {
        Drain(tokio::sync::watch::channel(()).0)
    }

    pub fn watcher(&self) -> Watcher {
        Watcher(self.0.subscribe())
    }

    pub async fn shutdown(self) {
        let _ = self.0.send(());
        self.0.closed().await;
    }
}

/// Run `conn` to its end; on shutdown, call `graceful` on it and let it finish.
async fn watched<C, E>(
    conn: C,
    mut watcher: Watcher,
    graceful: impl FnOnce(Pin<&mut C>),
) -> Result<(), E>
where
    C: std::future::Future<Output = Result<(), E>>,
{
    tokio::pin!(conn);
    tokio::select! {
        // The connection first, and no random choice of branch on every wake-up.
        biased;
        done = conn.as_mut() => return done,
        _ = watcher.0.changed() => {}
    }
    graceful(conn.as_mut());
    conn.await
}

/// [`watched`] for HTTP/2, which is also closed once it has had no open stream for `idle`
/// (hyper's HTTP/2 server has no such timer: see `streams.rs`).
async fn watched_h2<C, E>(
    conn: C,
    mut watcher: Watcher,
    streams: &Streams,
    idle: Duration,
    peer: SocketAddr,
    graceful: impl FnOnce(Pin<&mut C>),
) -> Result<(), E>
where
    C: std::future::Future<Output = Result<(), E>>,
{
    tokio::pin!(conn);
    tokio::select! {
        biased;
        done = conn.as_mut() => return done,
        _ = watcher.0.changed() => {}
        _ = streams.idle(idle) => tracing::debug!(peer = %peer, "closing an idle HTTP/2 connection"),
    }
    // GOAWAY: streams the client opened meanwhile are still served. But hyper ends the
    // connection only once the client answers the GOAWAY's ping, or, before the client's
    // preface, never; so one that has gone quiet is dropped after a further idle period.
    graceful(conn.as_mut());
    tokio::select! {
        biased;
        done = conn.as_mut() => done,
        _ = streams.idle(idle) => Ok(()),
    }
}

/// TLS handshake, then HTTP/1.1 or HTTP/2 until the connection ends or shutdown drains it.
/// `slot` is this connection's place under `server.max_connections`, given back at the end.
pub async fn serve_tls(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    watcher: Watcher,
    slot: OwnedSemaphorePermit,
) {
    let _slot = slot;
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, shared.acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(peer = %peer, "TLS handshake timed out");
            return;
        }
    };
    let sni: Option<Arc<str>> = tls
        .get_ref()
        .1
        .server_name()
        .map(|s| s.to_ascii_lowercase().into());
    // Once per connection, not per request.
    let peer_ip = HeaderValue::from_str(&peer.ip().to_string())
        .unwrap_or(HeaderValue::from_static("unknown"));
    // Each request's future holds a reference: to the worker's own `Shared`, not to the
    // `App` all workers share, so that this reference count stays in this core's cache.
    let local = shared.clone();
    // One timer per connection for its requests' backend deadlines, reused rather than
    // made anew per request (crate::http::timer).
    let response_timer = TimerSlot::new();
    let service = service_fn(move |req| {
        let (local, sni, peer_ip) = (local.clone(), sni.clone(), peer_ip.clone());
        let response_timer = response_timer.clone();
        async move {
            Ok::<_, std::convert::Infallible>(
                local
                    .app
                    .serve(req, peer, &peer_ip, sni.as_deref(), response_timer)
                    .await,
            )
        }
    });
    // The protocol is the one agreed by ALPN (RFC 9113 §3.3: over TLS, HTTP/2 only through
    // ALPN), so hyper-util's auto builder, which sniffs the first 24 bytes for the HTTP/2
    // preface, is not needed. It cost memory on every HTTP/1 connection: the sniffed bytes,
    // handed back first and alone, left hyper's read buffer 24 bytes short of the 8 KiB it
    // reserves per read, so it doubled to 16 KiB and kept that for the connection's life
    // (heaptrack; bench/README.md "Memory and idle connections").
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let result = if h2 {
        // Each stream counted as open until its response body is done (streams.rs).
        let streams = Streams::default();
        let counted = streams.clone();
        let service = service_fn(move |req| {
            let open = counted.open();
            let response = service.call(req);
            async move {
                response
                    .await
                    .map(|res| res.map(|body| Counted::new(body, open)))
            }
        });
        let conn = shared.http2.serve_connection(TokioIo::new(tls), service);
        let idle = shared.h2_idle;
        watched_h2(conn, watcher, &streams, idle, peer, |c| {
            c.graceful_shutdown()
        })
        .await
    } else {
        let io = TokioIo::new(Http1Reads::new(tls, peer));
        // hyper's head-read deadline, likewise one reused timer per connection.
        let mut http1 = shared.http1.clone();
        http1.timer(TimerSlot::new());
        let conn = http1.serve_connection(io, service).with_upgrades();
        watched(conn, watcher, |c| c.graceful_shutdown()).await
    };
    if let Err(e) = result {
        tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
    }
}

/// Most bytes handed to hyper's HTTP/1 reader per read, when it offers more.
const READ_CAP: usize = 8 * 1024;

/// The TLS stream for hyper's HTTP/1 side: every read passes the connection's
/// [`FramingWatch`] (a head with both `Content-Length` and `Transfer-Encoding` is spoiled so
/// that hyper answers 400), and at most [`READ_CAP`] bytes are handed over per read.
///
/// The cap: hyper checks `max_buf_size` (431 for a head over `MAX_HEAD_BYTES`) only between
/// reads, and reads into all the spare room of its buffer, which it grows by doubling: a
/// client sending a large head quickly could get up to twice the limit parsed in one read.
/// (Through hyper-util's auto builder the buffer's sizes happened to land on the limit.)
/// With reads capped, a head is refused once it passes the limit by at most `READ_CAP`.
/// Requests that fit in the buffer (all the usual ones) are read exactly as before.
struct Http1Reads<T> {
    io: T,
    watch: FramingWatch,
    peer: SocketAddr,
}

impl<T> Http1Reads<T> {
    fn new(io: T, peer: SocketAddr) -> Self {
        Http1Reads {
            io,
            watch: FramingWatch::new(),
            peer,
        }
    }

    /// Pass the bytes read into `buf` since `before` to the framing watch. A refused head
    /// gets a blank line after it: hyper, once it has seen part of a head, parses again
    /// only when a head's end (`\r\n\r\n`, `\n\n`) shows up, and the spoiled one no
    /// longer ends that way. Nothing after a refused head is read as a request.
    fn watch(&mut self, buf: &mut ReadBuf<'_>, before: usize) {
        if self.watch.watch(&mut buf.filled_mut()[before..]) {
            tracing::debug!(peer = %self.peer, "request refused: both Content-Length and Transfer-Encoding");
            if buf.remaining() >= 4 {
                buf.put_slice(b"\r\n\r\n");
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Http1Reads<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if buf.remaining() <= READ_CAP {
            let before = buf.filled().len();
            std::task::ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
            this.watch(buf, before);
            return Poll::Ready(Ok(()));
        }
        // Zeroes at most READ_CAP bytes (a safe `ReadBuf` over part of `buf`), only when
        // hyper's buffer has grown past its usual 8 KiB.
        let mut limited = ReadBuf::new(buf.initialize_unfilled_to(READ_CAP));
        std::task::ready!(Pin::new(&mut this.io).poll_read(cx, &mut limited))?;
        this.watch(&mut limited, 0);
        let n = limited.filled().len();
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Http1Reads<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

pub struct Job {
    tcp: std::net::TcpStream,
    peer: SocketAddr,
    watcher: Watcher,
    slot: OwnedSemaphorePermit,
}

/// Where the accept loop sends connections.
pub enum Workers {
    /// Serve on the accepting runtime (one CPU, or tests that ask for it).
    Here(Arc<Shared>),
    /// Round-robin over worker threads.
    Threads {
        senders: Vec<mpsc::UnboundedSender<Job>>,
        next: usize,
        threads: Vec<std::thread::JoinHandle<()>>,
    },
}

impl Workers {
    /// `count` ≤ 1 serves in place; more starts that many worker threads.
    pub fn start(count: usize, shared: Arc<Shared>, grace: Duration) -> std::io::Result<Workers> {
        if count <= 1 {
            return Ok(Workers::Here(shared));
        }
        let mut senders = Vec::new();
        let mut threads = Vec::new();
        for index in 0..count {
            let (tx, rx) = mpsc::unbounded_channel();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            // A copy per worker: every request clones its worker's `Arc<Shared>`, and one
            // reference count written by all cores would bounce between their caches.
            let shared = Arc::new(Shared::clone(&shared));
            let thread = std::thread::Builder::new()
                .name(format!("gatehouse-worker-{index}"))
                .spawn(move || {
                    crate::proxy::set_worker_index(index + 1);
                    runtime.block_on(worker(rx, shared, grace));
                })?;
            senders.push(tx);
            threads.push(thread);
        }
        Ok(Workers::Threads {
            senders,
            next: 0,
            threads,
        })
    }

    pub fn dispatch(
        &mut self,
        tcp: TcpStream,
        peer: SocketAddr,
        watcher: Watcher,
        slot: OwnedSemaphorePermit,
    ) {
        match self {
            Workers::Here(shared) => {
                tokio::spawn(serve_tls(tcp, peer, shared.clone(), watcher, slot));
            }
            Workers::Threads { senders, next, .. } => {
                // The worker registers the socket with its own runtime.
                let tcp = match tcp.into_std() {
                    Ok(tcp) => tcp,
                    Err(e) => {
                        tracing::warn!(peer = %peer, error = %e, "cannot hand a connection to a worker");
                        return;
                    }
                };
                *next = (*next + 1) % senders.len();
                let job = Job {
                    tcp,
                    peer,
                    watcher,
                    slot,
                };
                if senders[*next].send(job).is_err() {
                    tracing::error!("a worker thread has stopped; connection dropped");
                }
            }
        }
    }

    /// No more connections: workers finish what they serve (bounded by the grace period).
    pub async fn stop(self) {
        if let Workers::Threads {
            senders, threads, ..
        } = self
        {
            drop(senders);
            let _ = tokio::task::spawn_blocking(move || {
                threads.into_iter().for_each(|t| drop(t.join()))
            })
            .await;
        }
    }
}

async fn worker(mut rx: mpsc::UnboundedReceiver<Job>, shared: Arc<Shared>, grace: Duration) {
    let mut connections = tokio::task::JoinSet::new();
    while let Some(job) = rx.recv().await {
        match TcpStream::from_std(job.tcp) {
            Ok(tcp) => {
                connections.spawn(serve_tls(
                    tcp,
                    job.peer,
                    shared.clone(),
                    job.watcher,
                    job.slot,
                ));
            }
            Err(e) => {
                tracing::warn!(peer = %job.peer, error = %e, "worker cannot take a connection")
            }
        }
        // Reap finished connections so the set does not grow with every one ever served.
        while connections.try_join_next().is_some() {}
    }
    // The accept loop is gone: in-flight connections get the grace period to finish.
    let _ = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
}

//! Serving accepted connections: on the accepting runtime, or spread over worker threads
//! that each run a single-threaded runtime (nginx's model: one event loop per core).
//!
//! Why: on tokio's work-stealing runtime a request wakes tasks across threads (the browser's
//! connection, the backend connection), which cost ~20 % more CPU per request than the same
//! work on one thread (bench/README.md). With one worker per core, a connection, its
//! backend connections and their timers stay on one thread; the table and the portal are
//! shared.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_rustls::TlsAcceptor;

use super::{App, HANDSHAKE_TIMEOUT};

/// What every connection needs, shared by all workers.
pub struct Shared {
    pub acceptor: TlsAcceptor,
    pub app: Arc<App>,
    pub builder: auto::Builder<TokioExecutor>,
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
    let app = shared.app.clone();
    let service = service_fn(move |req| {
        let (app, sni, peer_ip) = (app.clone(), sni.clone(), peer_ip.clone());
        async move {
            Ok::<_, std::convert::Infallible>(app.serve(req, peer, &peer_ip, sni.as_deref()).await)
        }
    });
    let conn = shared
        .builder
        .serve_connection_with_upgrades(TokioIo::new(tls), service);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
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
            let shared = shared.clone();
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

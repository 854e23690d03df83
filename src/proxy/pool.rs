//! Keep-alive connections to one backend: requests without a body go over bare TCP
//! connections read by the request's own task (`bare.rs`); requests with a body and
//! WebSocket upgrades over hyper's HTTP/1.1 client connection, as below.
//!
//! Simpler than a general-purpose client pool, and cheaper per request (it showed in the
//! profile): one backend per pool, a stack of idle senders behind a mutex, a connection
//! handed back when its response body has been read to the end and its request body has
//! been sent in full. A request that a pooled connection could not take (the backend closed
//! it meanwhile, or it did not become ready in time) is retried once on a fresh connection —
//! hyper gives such a request back untouched.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::outgoing::{Outgoing, Uploaded};
use crate::gate::table::Entry;

/// Idle connections kept per backend; more are closed when their response ends.
const MAX_IDLE: usize = 256;

/// How long a pooled connection may take to accept a request. An idle one is ready at once
/// (or as soon as its task has run); one that is not is busy or stuck, and a fresh
/// connection is better than waiting on it with no bound (nothing else times this wait: the
/// response timeout starts only once the request body is sent).
const READY_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to {addr}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("connecting to {addr} took longer than {timeout:?}")]
    ConnectTimeout { addr: String, timeout: Duration },
    #[error("the backend connection failed")]
    Http(#[from] hyper::Error),
    #[error("the backend connection failed")]
    Io(#[from] std::io::Error),
    #[error("the backend's response is malformed: {0}")]
    BadResponse(&'static str),
    /// A `101` the gateway did not ask for, or to another protocol than WebSocket: it is
    /// never turned into a tunnel.
    #[error("the backend switched protocols without a WebSocket upgrade being asked for")]
    UnaskedUpgrade,
}

impl UpstreamError {
    /// Did the request fail because its body passed the site's limit?
    pub fn is_body_too_large(&self) -> bool {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(e) = cause {
            if e.is::<super::outgoing::BodyTooLarge>() {
                return true;
            }
            cause = e.source();
        }
        false
    }
}

pub struct Pool {
    /// `host:port` to connect to (`.localhost` names already mapped to 127.0.0.1).
    addr: String,
    connect_timeout: Duration,
    /// Idle connections, one stack per worker thread: a backend connection is driven by a
    /// task on the thread that opened it, so reusing it there avoids cross-thread wake-ups.
    idle: Box<[Mutex<Vec<SendRequest<Outgoing>>>]>,
    /// Idle connections for requests without a body (`bare.rs`), per worker thread too.
    bare: Box<[Mutex<Vec<super::bare::Conn>>]>,
}

/// Stacks per pool; worker indexes wrap around beyond it.
const STACKS: usize = 64;

thread_local! {
    static WORKER_INDEX: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Called once by each worker thread (0 is every other thread).
pub fn set_worker_index(index: usize) {
    WORKER_INDEX.with(|w| w.set(index));
}

/// This worker thread's stack of idle connections.
fn stack_of_this_worker<T>(stacks: &[Mutex<Vec<T>>]) -> std::sync::MutexGuard<'_, Vec<T>> {
    let index = WORKER_INDEX.with(|w| w.get()) % stacks.len();
    stacks[index].lock().unwrap_or_else(|p| p.into_inner())
}

fn idle_stack(pool: &Pool) -> std::sync::MutexGuard<'_, Vec<SendRequest<Outgoing>>> {
    stack_of_this_worker(&pool.idle)
}

/// A connection lent to one request; goes back to its pool with [`Lease::give_back`].
pub struct Lease {
    sender: SendRequest<Outgoing>,
    pool: Arc<Pool>,
    /// Whether the request body was sent in full. A backend may answer (say a `403` with
    /// no body) while the upload still streams; hyper then keeps writing that body and
    /// takes no other request until it ends, so a connection lent out again would stall
    /// the next request for as long as this client cares to trickle its upload.
    uploaded: Uploaded,
}

impl Lease {
    /// Return the connection for reuse (only called once its response was read in full);
    /// one whose request body is still being sent is dropped instead (hyper finishes that
    /// upload, then closes it).
    pub fn give_back(self) {
        if !self.uploaded.is_done() || self.sender.is_closed() {
            return;
        }
        let mut idle = idle_stack(&self.pool);
        if idle.len() < MAX_IDLE {
            idle.push(self.sender);
        }
    }
}

impl Pool {
    pub fn new(addr: String, connect_timeout: Duration) -> Arc<Pool> {
        let idle = (0..STACKS).map(|_| Mutex::new(Vec::new())).collect();
        let bare = (0..STACKS).map(|_| Mutex::new(Vec::new())).collect();
        Arc::new(Pool {
            addr,
            connect_timeout,
            idle,
            bare,
        })
    }

    /// An idle connection for a request without a body (`bare.rs`), if one is left that
    /// the backend has neither closed nor written to since.
    pub fn take_bare(&self) -> Option<super::bare::Conn> {
        let mut idle = stack_of_this_worker(&self.bare);
        while let Some(conn) = idle.pop() {
            if conn.still_idle() {
                return Some(conn);
            }
        }
        None
    }

    /// Keep a connection whose response was read to its end, for the next such request.
    pub fn give_back_bare(&self, conn: super::bare::Conn) {
        let mut idle = stack_of_this_worker(&self.bare);
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    fn take_idle(&self) -> Option<SendRequest<Outgoing>> {
        let mut idle = idle_stack(self);
        while let Some(sender) = idle.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    pub async fn connect_tcp(&self) -> Result<TcpStream, UpstreamError> {
        let tcp = match tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.addr))
            .await
        {
            Err(_) => {
                return Err(UpstreamError::ConnectTimeout {
                    addr: self.addr.clone(),
                    timeout: self.connect_timeout,
                });
            }
            Ok(Err(source)) => {
                return Err(UpstreamError::Connect {
                    addr: self.addr.clone(),
                    source,
                });
            }
            Ok(Ok(tcp)) => tcp,
        };
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }

    async fn connect(&self) -> Result<SendRequest<Outgoing>, UpstreamError> {
        let tcp = self.connect_tcp().await?;
        let (sender, conn) = http1::Builder::new().handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "backend connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// Send a request on an idle connection (or a new one); the lease goes with the response.
    pub async fn send(
        self: &Arc<Self>,
        req: Request<Outgoing>,
    ) -> Result<(Response<Incoming>, Lease), UpstreamError> {
        let mut req = req;
        let uploaded = req.body().uploaded();
        // Checked first so that the common case (ready at once) costs no timer.
        if let Some(mut sender) = self.take_idle()
            && (sender.is_ready()
                || matches!(
                    tokio::time::timeout(READY_WAIT, sender.ready()).await,
                    Ok(Ok(()))
                ))
        {
            match sender.try_send_request(req).await {
                Ok(res) => {
                    return Ok((
                        res,
                        Lease {
                            sender,
                            pool: self.clone(),
                            uploaded,
                        },
                    ));
                }
                Err(mut e) => match e.take_message() {
                    // Not sent: the backend had closed this connection. Retry once below.
                    Some(unsent) => req = unsent,
                    None => return Err(UpstreamError::Http(e.into_error())),
                },
            }
        }
        // Boxed: connecting is rare and its future large; the common path stays small.
        let mut sender = Box::pin(self.connect()).await?;
        let res = sender.send_request(req).await?;
        Ok((
            res,
            Lease {
                sender,
                pool: self.clone(),
                uploaded,
            },
        ))
    }
}

/// A backend's response body on its way to the browser; at its end the connection goes
/// back to the pool. Dropped early (the browser went away), the connection is not reused.
/// Its bytes count as the client's usage (`bytes_out`) as they pass.
pub struct UpstreamBody {
    inner: Incoming,
    lease: Option<Lease>,
    /// The client's table entry; `None` for an empty body (no reference count taken).
    meter: Option<Arc<Entry>>,
}

impl UpstreamBody {
    pub fn new(inner: Incoming, lease: Lease, meter: &Arc<Entry>) -> Self {
        use http_body::Body as _;
        let meter = (!inner.is_end_stream()).then(|| meter.clone());
        let mut body = UpstreamBody {
            inner,
            lease: Some(lease),
            meter,
        };
        if body.inner.is_end_stream() {
            body.finish();
        }
        body
    }

    fn finish(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.give_back();
        }
    }
}

impl http_body::Body for UpstreamBody {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, hyper::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &polled
            && let (Some(data), Some(m)) = (frame.data_ref(), &self.meter)
        {
            m.count_out(data.len());
        }
        match &polled {
            std::task::Poll::Ready(None) => self.finish(),
            std::task::Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.finish(),
            // A failed body leaves the connection in an unknown state: never reuse it.
            std::task::Poll::Ready(Some(Err(_))) => self.lease = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

//! The request body on its way to the backend. It streams the browser's body through
//! untouched and says when it has been sent in full, so that the response timeout counts
//! from there: a slow upload is the client's pace, not a slow backend. A body that grows
//! past the site's limit is cut off with [`BodyTooLarge`]. The bytes it passes on count as
//! the client's usage (`bytes_in`). It also says whether it was read to its end
//! ([`Outgoing::uploaded`]): only then may its backend connection carry another request.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::oneshot;

use crate::gate::table::Entry;

/// The request body passed the site's `max_body`.
#[derive(Debug, thiserror::Error)]
#[error("the request body is larger than the site allows")]
pub struct BodyTooLarge;

pub struct Outgoing {
    /// `None` once the limit was passed: the rest is being discarded elsewhere.
    inner: Option<Incoming>,
    /// Bytes the body may still carry.
    left: u64,
    /// Fired when the last frame has been read (or the body failed); `None` once fired, or
    /// from the start for an empty body.
    sent: Option<oneshot::Sender<()>>,
    /// The client's table entry, counting the bytes passed on; `None` for an empty body
    /// (most requests), which then costs no reference count.
    meter: Option<Arc<Entry>>,
    /// Set once the last frame has been read without error; `None` for an empty body
    /// (done from the start, and no allocation). A backend may answer before the upload
    /// ends (a `403` while the body still comes in): the connection is then still busy
    /// writing this body, and must not be lent to another request (see `pool::Lease`).
    uploaded: Option<Arc<AtomicBool>>,
}

impl Outgoing {
    /// Wrap a body of at most `limit` bytes; the future resolves when it has been sent in
    /// full (or failed).
    pub fn new(
        inner: Incoming,
        limit: u64,
        meter: &Arc<Entry>,
    ) -> (Outgoing, impl Future<Output = ()> + Send) {
        let (tx, rx, meter, uploaded) = if inner.is_end_stream() {
            (None, None, None, None)
        } else {
            let (tx, rx) = oneshot::channel();
            let uploaded = Arc::new(AtomicBool::new(false));
            (Some(tx), Some(rx), Some(meter.clone()), Some(uploaded))
        };
        let sent = async move {
            if let Some(rx) = rx {
                // A dropped sender (the request failed) counts as sent: the timer then runs.
                let _ = rx.await;
            }
        };
        (
            Outgoing {
                inner: Some(inner),
                left: limit,
                sent: tx,
                meter,
                uploaded,
            },
            sent,
        )
    }

    /// A handle that tells whether this body has been read to its end (see [`Uploaded`]).
    pub fn uploaded(&self) -> Uploaded {
        Uploaded(self.uploaded.clone())
    }
}

/// Whether a request body has been read to its end without error, shared between the body
/// (which sets it) and the lease of the backend connection carrying it (which reads it).
pub struct Uploaded(Option<Arc<AtomicBool>>);

impl Uploaded {
    pub fn is_done(&self) -> bool {
        self.0.as_ref().is_none_or(|u| u.load(Ordering::Acquire))
    }
}

impl http_body::Body for Outgoing {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
        };
        let mut polled = Pin::new(&mut *inner)
            .poll_frame(cx)
            .map_err(|e| -> Self::Error { Box::new(e) });
        let mut end_stream = inner.is_end_stream();
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            match self.left.checked_sub(data.len() as u64) {
                Some(left) => {
                    self.left = left;
                    if let Some(m) = &self.meter {
                        m.count_in(data.len());
                    }
                }
                None => {
                    // The client gets its 413 while the rest of its upload is read away.
                    if let Some(rest) = self.inner.take() {
                        crate::http::body::discard(rest);
                    }
                    end_stream = true;
                    polled = Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
                }
            }
        }
        let finished = match &polled {
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => true,
            Poll::Ready(Some(Ok(_))) => end_stream,
            Poll::Pending => false,
        };
        if finished && let Some(tx) = self.sent.take() {
            let _ = tx.send(());
        }
        // A failed body leaves the flag unset: that connection is never reused.
        if finished
            && !matches!(polled, Poll::Ready(Some(Err(_))))
            && let Some(u) = &self.uploaded
        {
            u.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

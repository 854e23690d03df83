//! The request body on its way to the backend. It streams the browser's body through
//! untouched and says when it has been sent in full, so that the response timeout counts
//! from there: a slow upload is the client's pace, not a slow backend.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::oneshot;

pub struct Outgoing {
    inner: Incoming,
    /// Fired when the last frame has been read (or the body failed); `None` once fired, or
    /// from the start for an empty body.
    sent: Option<oneshot::Sender<()>>,
}

impl Outgoing {
    /// Wrap a body; the future resolves when it has been sent in full.
    pub fn new(inner: Incoming) -> (Outgoing, impl Future<Output = ()> + Send) {
        let (tx, rx) = if inner.is_end_stream() {
            (None, None)
        } else {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        };
        let sent = async move {
            if let Some(rx) = rx {
                // A dropped sender (the request failed) counts as sent: the timer then runs.
                let _ = rx.await;
            }
        };
        (Outgoing { inner, sent: tx }, sent)
    }
}

impl http_body::Body for Outgoing {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let finished = match &polled {
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => true,
            Poll::Ready(Some(Ok(_))) => self.inner.is_end_stream(),
            Poll::Pending => false,
        };
        if finished && let Some(tx) = self.sent.take() {
            let _ = tx.send(());
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

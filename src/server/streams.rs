//! Idle HTTP/2 connections: counting a connection's open streams, and noticing when it has
//! had none for a while.
//!
//! Why: hyper's HTTP/2 server has no timer for a client that never sends a request (HTTP/1
//! has `header_read_timeout`, which also ends an idle keep-alive connection). Without one, a
//! few TLS connections that agree on h2 and then stay silent hold every slot under
//! `server.max_connections`, and the gateway refuses everyone else. `workers::watched_h2`
//! closes such a connection once [`Streams::idle`] says so.
//!
//! A stream counts as open from the moment hyper hands its request over until its response
//! body has been sent or dropped ([`Counted`]), so a long download is never idle.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

/// One connection's streams: how many were started and how many finished. Two counters that
/// only grow, rather than one count of open streams, so that a stream started and finished
/// between two looks still counts as activity.
#[derive(Clone, Default)]
pub struct Streams(Arc<Counts>);

#[derive(Default)]
struct Counts {
    started: AtomicUsize,
    finished: AtomicUsize,
}

impl Streams {
    /// A stream begins; it ends when the returned guard is dropped.
    pub fn open(&self) -> OpenStream {
        self.0.started.fetch_add(1, SeqCst);
        OpenStream(self.0.clone())
    }

    /// (started, finished). `finished` is read first: it never passes `started`, so equal
    /// values mean no stream was open when `started` was read.
    fn counts(&self) -> (usize, usize) {
        let finished = self.0.finished.load(SeqCst);
        (self.0.started.load(SeqCst), finished)
    }

    /// Ends once a whole `period` has passed with no stream open and none started or
    /// finished: `period` after this call at the earliest, within two periods of the last
    /// stream's end. One timer, looked at once per period.
    pub async fn idle(&self, period: Duration) {
        let mut before = self.counts();
        let sleep = tokio::time::sleep(period);
        tokio::pin!(sleep);
        loop {
            sleep.as_mut().await;
            let now = self.counts();
            if now == before && now.0 == now.1 {
                return;
            }
            before = now;
            sleep.as_mut().reset(Instant::now() + period);
        }
    }
}

/// An open stream; dropping it marks the stream finished.
pub struct OpenStream(Arc<Counts>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.finished.fetch_add(1, SeqCst);
    }
}

/// A response body that keeps its stream counted as open until hyper has sent it all (and
/// drops it) or drops it unsent (the client reset the stream).
pub struct Counted<B> {
    body: B,
    _open: OpenStream,
}

impl<B> Counted<B> {
    pub fn new(body: B, open: OpenStream) -> Self {
        Counted { body, _open: open }
    }
}

impl<B: Body + Unpin> Body for Counted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Idle only after a full period with nothing open and nothing happening.
    #[tokio::test(start_paused = true)]
    async fn idle_waits_for_a_quiet_period() {
        let period = Duration::from_secs(10);
        let streams = Streams::default();
        let start = Instant::now();
        streams.idle(period).await;
        assert_eq!(
            start.elapsed(),
            period,
            "no stream at all: idle after one period"
        );

        // A stream open across several periods keeps the connection busy.
        let open = streams.open();
        let watching = {
            let streams = streams.clone();
            tokio::spawn(async move { streams.idle(period).await })
        };
        tokio::time::sleep(period * 3 + Duration::from_secs(1)).await;
        assert!(!watching.is_finished(), "idle while a stream was open");
        drop(open);
        let closed_at = Instant::now();
        watching.await.unwrap();
        let waited = closed_at.elapsed();
        assert!(
            waited >= period && waited <= period * 2,
            "idle {waited:?} after the last stream ended"
        );
    }
}

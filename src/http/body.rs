//! The one body type every response uses: either bytes we made, or a backend's stream.
//!
//! An enum rather than a boxed trait object: no allocation per proxied response, and a
//! backend body streams through untouched.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

pub enum Body {
    Full(Option<Bytes>),
    /// A backend's body; its connection returns to the pool at the end.
    Upstream(crate::proxy::UpstreamBody),
    /// A backend's body read by the request's own task (`proxy/bare.rs`).
    Bare(crate::proxy::BareBody),
}

impl Body {
    pub fn empty() -> Self {
        Body::Full(None)
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Self {
        Body::Full(Some(b))
    }
}

impl From<String> for Body {
    fn from(s: String) -> Self {
        Body::Full(Some(Bytes::from(s)))
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Self {
        Body::Full(Some(Bytes::from_static(s.as_bytes())))
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Upstream(s) => Pin::new(s).poll_frame(cx).map_err(Into::into),
            Body::Bare(s) => Pin::new(s).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(b) => b.is_none(),
            Body::Upstream(s) => s.is_end_stream(),
            Body::Bare(s) => s.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Body::Full(None) => SizeHint::with_exact(0),
            Body::Upstream(s) => s.size_hint(),
            Body::Bare(s) => s.size_hint(),
        }
    }
}

/// How much more of a refused request body is read, and for how long. Closing a connection
/// with unread data in it resets it, and a client still sending its upload may then lose the
/// 413 it was sent; reading a bounded rest first lets it finish and read the answer (the
/// "lingering close" of nginx and Apache). Past either bound the connection is closed.
const LINGER_BYTES: u64 = 1 << 20;
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Read and drop what is left of a refused request body, within the bounds above, in the
/// background (the answer goes out meanwhile).
pub fn discard(mut body: hyper::body::Incoming) {
    use http_body::Body as _;
    use http_body_util::BodyExt as _;
    if body.is_end_stream() {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let mut left = LINGER_BYTES;
        let _ = tokio::time::timeout(LINGER_TIME, async {
            while let Some(Ok(frame)) = body.frame().await {
                let read = frame.data_ref().map_or(0, |d| d.len() as u64);
                match left.checked_sub(read) {
                    Some(rest) => left = rest,
                    None => break,
                }
            }
        })
        .await;
    });
}

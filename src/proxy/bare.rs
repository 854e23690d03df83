//! A backend HTTP/1.1 exchange for requests without a body (GET and HEAD), done by the
//! request's own task on a pooled TCP connection: one write of the head, the response head
//! parsed with `httparse` straight from the read buffer, the body handed on as it is read.
//! No task per backend connection and no channel between the request and such a task, which
//! is where hyper's client spends most of its instructions on this path. Requests with a
//! body and WebSocket upgrades stay on hyper's client (`pool.rs`).

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version, response};
use http_body::{Frame, SizeHint};
use socket2::SockRef;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::pool::{Pool, UpstreamError};
use crate::gate::table::Entry;

/// The largest response head accepted, and the most header lines in it (hyper's defaults).
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;
/// Read buffer space made available for a response head, and at most for a body's reads
/// (a large body then takes 64 KiB per system call, as it did through hyper's client).
const READ_SPACE: usize = 8 * 1024;
const MAX_READ: usize = 64 * 1024;

/// An idle keep-alive connection to the backend, with what was read past the last response.
pub struct Conn {
    tcp: TcpStream,
    buf: BytesMut,
    /// The buffer grew past [`READ_SPACE`] for a large body: not kept while idle.
    grown: bool,
    /// The last response's length came from the request or the status (a `HEAD`, a `204`
    /// or `304`: no body whatever its headers say), not from the response's own framing. A
    /// backend that sends a body anyway (a `HEAD` answered as a `GET`) may still be sending
    /// it when the connection is next wanted, so [`Conn::still_idle`] looks at the socket
    /// itself.
    ended_without_framing: bool,
}

impl Conn {
    pub fn new(tcp: TcpStream) -> Conn {
        Conn {
            tcp,
            buf: BytesMut::new(),
            grown: false,
            ended_without_framing: false,
        }
    }

    /// Has nothing arrived on this idle connection since its last response? A backend that
    /// closed it, or wrote to it unasked (a `408` before closing, say), must not have that
    /// read as the next request's answer: a body sent after a `HEAD`'s head would be read
    /// as the answer to someone else's request.
    ///
    /// Usually the socket's readiness says so without a system call; when it is set (a
    /// read that filled the buffer leaves it set) a one-byte read looks, and a `WouldBlock`
    /// clears it for the next request's read. Readiness is tokio's cached view, brought up
    /// to date only when the runtime next polls for I/O: bytes that come in between (a
    /// `HEAD`'s body written right after its head) are not in it yet. So after a response
    /// whose length the backend did not frame, a `recv` with `MSG_PEEK` looks past it.
    pub fn still_idle(&self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match self.tcp.poll_read_ready(&mut cx) {
            Poll::Pending if self.ended_without_framing => {
                let mut byte = [MaybeUninit::uninit(); 1];
                matches!(
                    SockRef::from(&self.tcp).peek(&mut byte),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock
                )
            }
            Poll::Pending => true,
            Poll::Ready(Ok(())) => matches!(
                self.tcp.try_read(&mut [0u8; 1]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock
            ),
            Poll::Ready(Err(_)) => false,
        }
    }
}

/// Can this request go the bare way? No body, no upgrade, and a method whose response
/// framing needs nothing from the request but whether it was a HEAD.
pub fn suits<B: http_body::Body>(req: &http::Request<B>, upgrade: bool) -> bool {
    req.body().is_end_stream()
        && !upgrade
        && (req.method() == Method::GET || req.method() == Method::HEAD)
        && !req.headers().contains_key(TRANSFER_ENCODING)
}

/// Send the request head on a pooled connection (or a new one) and read the response head.
/// A reused connection that the backend had closed meanwhile (nothing at all came back) is
/// replaced once by a fresh one: GET and HEAD are safe to send again.
pub async fn send(
    pool: &Arc<Pool>,
    parts: &Parts,
    target: &PathAndQuery,
    meter: &Arc<Entry>,
) -> Result<(response::Parts, BareBody), UpstreamError> {
    let head = encode_head(parts, target);
    let is_head = parts.method == Method::HEAD;
    if let Some(conn) = pool.take_bare() {
        match exchange(conn, &head, is_head).await {
            Ok(answer) => return Ok(finish(pool, answer, meter, is_head)),
            Err(Failed::Stale) => {}
            Err(Failed::Other(e)) => return Err(e),
        }
    }
    let conn = Conn::new(Box::pin(pool.connect_tcp()).await?);
    match exchange(conn, &head, is_head).await {
        Ok(answer) => Ok(finish(pool, answer, meter, is_head)),
        Err(Failed::Stale) => Err(UpstreamError::Io(io::ErrorKind::UnexpectedEof.into())),
        Err(Failed::Other(e)) => Err(e),
    }
}

fn finish(
    pool: &Arc<Pool>,
    (parts, mut conn, framing, reusable): (response::Parts, Conn, Framing, bool),
    meter: &Arc<Entry>,
    is_head: bool,
) -> (response::Parts, BareBody) {
    conn.ended_without_framing = length_not_framed(is_head, parts.status);
    let mut body = BareBody {
        conn: Some(conn),
        framing,
        reusable,
        pool: pool.clone(),
        meter: None,
    };
    if body.framing.is_done() {
        body.end();
    } else {
        body.meter = Some(meter.clone());
    }
    (parts, body)
}

enum Failed {
    /// The connection was closed before any byte of an answer: it can be retried.
    Stale,
    Other(UpstreamError),
}

impl From<io::Error> for Failed {
    fn from(e: io::Error) -> Self {
        Failed::Other(UpstreamError::Io(e))
    }
}

fn encode_head(parts: &Parts, target: &PathAndQuery) -> Vec<u8> {
    let mut size = parts.method.as_str().len() + target.as_str().len() + 14;
    for (name, value) in &parts.headers {
        size += name.as_str().len() + value.len() + 4;
    }
    let mut head = Vec::with_capacity(size);
    head.extend_from_slice(parts.method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(target.as_str().as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

async fn exchange(
    mut conn: Conn,
    head: &[u8],
    is_head: bool,
) -> Result<(response::Parts, Conn, Framing, bool), Failed> {
    if let Err(e) = conn.tcp.write_all(head).await {
        return Err(match e.kind() {
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => Failed::Stale,
            _ => Failed::Other(UpstreamError::Io(e)),
        });
    }
    let mut received = false;
    loop {
        if !conn.buf.is_empty() {
            received = true;
            if let Some((parts, framing, keep_alive)) = final_head(&mut conn.buf, is_head)? {
                return Ok((parts, conn, framing, keep_alive));
            }
        }
        conn.buf.reserve(READ_SPACE);
        match conn.tcp.read_buf(&mut conn.buf).await {
            Ok(0) if !received => return Err(Failed::Stale),
            Ok(0) => return Err(Failed::Other(UpstreamError::BadResponse("closed mid-head"))),
            Ok(_) => {}
            Err(e) if !received && e.kind() == io::ErrorKind::ConnectionReset => {
                return Err(Failed::Stale);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The final response head at the front of `buf`, interim `1xx` heads before it skipped;
/// `None` while it is not all there.
fn final_head(
    buf: &mut BytesMut,
    is_head: bool,
) -> Result<Option<(response::Parts, Framing, bool)>, Failed> {
    while let Some(head) = parse_head(buf, is_head)? {
        if head.0.status == StatusCode::SWITCHING_PROTOCOLS {
            // Nothing after it is HTTP, and no upgrade was asked for on this path.
            return Err(Failed::Other(UpstreamError::UnaskedUpgrade));
        }
        if !head.0.status.is_informational() {
            return Ok(Some(head));
        }
        // `100 Continue`, `103 Early Hints`: the real answer follows.
    }
    if buf.len() > MAX_HEAD {
        return Err(Failed::Other(UpstreamError::BadResponse("head too large")));
    }
    Ok(None)
}

/// Parse one response head from the front of `buf`; `None` if it is not all there yet.
fn parse_head(
    buf: &mut BytesMut,
    is_head: bool,
) -> Result<Option<(response::Parts, Framing, bool)>, Failed> {
    let bad = |what| Failed::Other(UpstreamError::BadResponse(what));
    let mut lines = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut lines);
    let len = match res.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(bad("malformed head")),
    };
    let status = StatusCode::from_u16(res.code.unwrap_or(0)).map_err(|_| bad("status"))?;
    let version = if res.version == Some(1) {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    // Header values are slices of the head's bytes: no copy per header.
    let start = buf.as_ptr() as usize;
    let mut headers = HeaderMap::with_capacity(res.headers.len());
    let ranges: Vec<(HeaderName, std::ops::Range<usize>)> = res
        .headers
        .iter()
        .map(|h| {
            let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| bad("header name"))?;
            // httparse's values are slices of `buf`; if one were not, refuse the head
            // rather than slice out of bounds.
            let from = (h.value.as_ptr() as usize)
                .checked_sub(start)
                .filter(|from| from + h.value.len() <= len)
                .ok_or_else(|| bad("header value"))?;
            Ok((name, from..from + h.value.len()))
        })
        .collect::<Result<_, Failed>>()?;
    let bytes = buf.split_to(len).freeze();
    for (name, range) in ranges {
        let value =
            HeaderValue::from_maybe_shared(bytes.slice(range)).map_err(|_| bad("header value"))?;
        headers.append(name, value);
    }
    let (framing, framing_keeps) = framing(&mut headers, status, is_head).map_err(bad)?;
    let keep_alive = version == Version::HTTP_11
        && framing_keeps
        && !headers
            .get_all(CONNECTION)
            .iter()
            .any(|v| has_token(v.as_bytes(), "close"));
    let mut parts = response::Response::new(()).into_parts().0;
    parts.status = status;
    parts.version = version;
    parts.headers = headers;
    Ok(Some((parts, framing, keep_alive)))
}

fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// How the response body is delimited (RFC 9112 §6.3), and whether the connection can be
/// reused after it.
fn framing(
    headers: &mut HeaderMap,
    status: StatusCode,
    is_head: bool,
) -> Result<(Framing, bool), &'static str> {
    if status.is_informational() || length_not_framed(is_head, status) {
        return Ok((Framing::Length(0), true));
    }
    if headers.contains_key(TRANSFER_ENCODING) {
        let chunked_last = headers
            .get_all(TRANSFER_ENCODING)
            .iter()
            .next_back()
            .and_then(|v| v.as_bytes().rsplit(|&b| b == b',').next())
            .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        // With both, Transfer-Encoding wins and the connection must not be reused.
        let both = headers.remove(CONTENT_LENGTH).is_some();
        return Ok(if chunked_last {
            (Framing::Chunked(Chunked::Size), !both)
        } else {
            (Framing::UntilClose, false)
        });
    }
    let mut length = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        for part in value.as_bytes().split(|&b| b == b',') {
            let n = parse_length(part.trim_ascii()).ok_or("content-length")?;
            if length.is_some_and(|l| l != n) {
                return Err("content-length");
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(n) => (Framing::Length(n), true),
        None => (Framing::UntilClose, false),
    })
}

/// A response to `HEAD`, and a `204` or `304`, has no body, whatever its headers announce
/// (RFC 9112 §6.3): its length comes from the request or the status.
fn length_not_framed(is_head: bool, status: StatusCode) -> bool {
    is_head || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED
}

fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

enum Framing {
    /// Bytes still to come.
    Length(u64),
    Chunked(Chunked),
    /// Until the backend closes the connection.
    UntilClose,
    Done,
}

impl Framing {
    fn is_done(&self) -> bool {
        matches!(self, Framing::Length(0) | Framing::Done)
    }
}

/// Where a chunked body's decoder stands.
enum Chunked {
    /// Reading a chunk-size line.
    Size,
    /// Inside a chunk, with this many data bytes left.
    Data(u64),
    /// After a chunk's data, expecting its CRLF.
    DataEnd,
    /// After the last chunk: trailer lines up to an empty one.
    Trailers,
}

/// A backend's response body read by the request's task; at its end the connection goes
/// back to the pool, unless the framing or the backend says otherwise.
pub struct BareBody {
    conn: Option<Conn>,
    framing: Framing,
    reusable: bool,
    pool: Arc<Pool>,
    /// The client's table entry; `None` for an empty body.
    meter: Option<Arc<Entry>>,
}

impl BareBody {
    fn end(&mut self) {
        self.framing = Framing::Done;
        if let Some(mut conn) = self.conn.take()
            && self.reusable
            && conn.buf.is_empty()
        {
            if conn.grown {
                // A large body's read space is not kept by an idle connection.
                conn.buf = BytesMut::new();
                conn.grown = false;
            }
            self.pool.give_back_bare(conn);
        }
    }

    /// Read more from the backend, up to `want` bytes; `Ok(0)` at its end of stream.
    /// Through `AsyncRead`, whose short reads clear the socket's readiness: an idle
    /// connection then shows new bytes or a close without a system call (see
    /// [`Conn::still_idle`]).
    fn poll_fill(conn: &mut Conn, cx: &mut Context<'_>, want: u64) -> Poll<io::Result<usize>> {
        let want = usize::try_from(want)
            .unwrap_or(MAX_READ)
            .clamp(READ_SPACE, MAX_READ);
        conn.grown |= want > READ_SPACE;
        conn.buf.reserve(want);
        tokio_util::io::poll_read_buf(Pin::new(&mut conn.tcp), cx, &mut conn.buf)
    }

    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match body_step(&mut self.framing, &mut conn.buf) {
                Err(what) => {
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        what,
                    ))));
                }
                Ok(Next::Data(data)) => {
                    if self.framing.is_done() {
                        // The last bytes of a length: the connection can go back now.
                        self.end();
                    }
                    return Poll::Ready(Some(Ok(data)));
                }
                Ok(Next::End) => {
                    self.end();
                    return Poll::Ready(None);
                }
                Ok(Next::NeedMore) => {
                    let want = match self.framing {
                        Framing::Length(left) => left,
                        _ => MAX_READ as u64,
                    };
                    if ready!(Self::poll_fill(conn, cx, want))? > 0 {
                        continue;
                    }
                    if matches!(self.framing, Framing::UntilClose) {
                        // The close is this body's end; the connection is not reused.
                        self.framing = Framing::Done;
                        self.conn = None;
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "backend closed mid-body",
                    ))));
                }
            }
        }
    }
}

/// What the buffered bytes give next, for a body being read.
enum Next {
    Data(Bytes),
    /// Nothing more until the backend sends more (or closes).
    NeedMore,
    End,
}

/// The socket-free part of reading a body: what `buf` yields next under `framing`. Shared
/// by [`BareBody`] and [`decode_in_reads`], so the fuzz target tests the code that runs.
fn body_step(framing: &mut Framing, buf: &mut BytesMut) -> Result<Next, &'static str> {
    match framing {
        Framing::Done | Framing::Length(0) => Ok(Next::End),
        Framing::Chunked(state) => loop {
            match chunked_step(state, buf)? {
                Step::Again => {}
                Step::Data(data) => return Ok(Next::Data(data)),
                Step::NeedMore => return Ok(Next::NeedMore),
                Step::End => return Ok(Next::End),
            }
        },
        _ if buf.is_empty() => Ok(Next::NeedMore),
        Framing::Length(left) => {
            let n = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
            *left -= n as u64;
            Ok(Next::Data(buf.split_to(n).freeze()))
        }
        Framing::UntilClose => Ok(Next::Data(buf.split().freeze())),
    }
}

enum Step {
    Data(Bytes),
    /// State moved on; step again.
    Again,
    NeedMore,
    End,
}

/// Longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 8 * 1024;

/// One step of the chunked decoder over what is buffered.
fn chunked_step(state: &mut Chunked, buf: &mut BytesMut) -> Result<Step, &'static str> {
    match state {
        Chunked::Size | Chunked::Trailers | Chunked::DataEnd => {
            let Some(end) = memchr::memchr(b'\n', buf) else {
                return if buf.len() > MAX_LINE {
                    Err("chunk line too long")
                } else {
                    Ok(Step::NeedMore)
                };
            };
            let line = buf.split_to(end + 1);
            let line = line
                .strip_suffix(b"\r\n")
                .ok_or("chunk line without CRLF")?;
            match state {
                Chunked::DataEnd if line.is_empty() => *state = Chunked::Size,
                Chunked::DataEnd => return Err("chunk data longer than its size"),
                Chunked::Trailers if line.is_empty() => return Ok(Step::End),
                // Trailer fields are read and dropped: the request carried no `TE: trailers`
                // (hop-by-hop, removed), and browsers do not read them.
                Chunked::Trailers => {}
                Chunked::Size => {
                    let digits = line.split(|&b| b == b';').next().unwrap_or(b"");
                    let digits = digits.trim_ascii_end();
                    if digits.is_empty() || digits.len() > 15 {
                        return Err("chunk size");
                    }
                    let size = digits.iter().try_fold(0u64, |n, &d| {
                        let v = (d as char).to_digit(16).ok_or("chunk size")?;
                        Ok::<u64, &str>(n << 4 | u64::from(v))
                    })?;
                    *state = if size == 0 {
                        Chunked::Trailers
                    } else {
                        Chunked::Data(size)
                    };
                }
                Chunked::Data(_) => unreachable!(),
            }
            Ok(Step::Again)
        }
        Chunked::Data(left) => {
            if buf.is_empty() {
                return Ok(Step::NeedMore);
            }
            let n = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
            *left -= n as u64;
            let data = buf.split_to(n).freeze();
            if *left == 0 {
                *state = Chunked::DataEnd;
            }
            Ok(Step::Data(data))
        }
    }
}

impl http_body::Body for BareBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let polled = self.poll_data(cx);
        match &polled {
            Poll::Ready(Some(Ok(data))) => {
                if let Some(m) = &self.meter {
                    m.count_out(data.len());
                }
            }
            // A failed body leaves the connection in an unknown state: never reuse it.
            Poll::Ready(Some(Err(_))) => {
                self.conn = None;
                self.framing = Framing::Done;
            }
            _ => {}
        }
        polled.map(|o| o.map(|r| r.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        self.framing.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(n) => SizeHint::with_exact(n),
            Framing::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

/// What [`decode_in_reads`] read: the final status, the body, and whether the connection
/// would have been reused.
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded {
    pub status: u16,
    pub body: Vec<u8>,
    pub reusable: bool,
}

/// The response decoder without sockets, for the fuzz target and tests: `stream` is what the
/// backend sent, arriving in reads cut at `cuts` (ascending offsets). `None` if the
/// response is not complete by the end of `stream`.
pub fn decode_in_reads(
    stream: &[u8],
    is_head: bool,
    cuts: &[usize],
) -> Result<Option<Decoded>, &'static str> {
    let mut reads = cuts
        .iter()
        .copied()
        .chain([stream.len()])
        .scan(0, |from, to| {
            let read = &stream[(*from).min(to)..to];
            *from = to.max(*from);
            Some(read)
        });
    let mut buf = BytesMut::new();
    let (parts, mut framing, reusable) = loop {
        match final_head(&mut buf, is_head) {
            Err(Failed::Other(UpstreamError::BadResponse(what))) => return Err(what),
            Err(Failed::Other(UpstreamError::UnaskedUpgrade)) => return Err("switching protocols"),
            Err(_) => return Err("other"),
            Ok(Some(head)) => break head,
            Ok(None) => match reads.next() {
                Some(read) => buf.extend_from_slice(read),
                None => return Ok(None),
            },
        }
    };
    let mut body = Vec::new();
    loop {
        match body_step(&mut framing, &mut buf)? {
            Next::Data(data) => body.extend_from_slice(&data),
            Next::End => break,
            Next::NeedMore => match reads.next() {
                Some(read) => buf.extend_from_slice(read),
                None if matches!(framing, Framing::UntilClose) => break,
                None => return Ok(None),
            },
        }
    }
    let left_over = !buf.is_empty() || reads.any(|r| !r.is_empty());
    Ok(Some(Decoded {
        status: parts.status.as_u16(),
        body,
        reusable: reusable && !left_over,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_is_plain_digits_only() {
        assert_eq!(parse_length(b"0"), Some(0));
        assert_eq!(parse_length(b"18446744073709551615"), None, "20 digits");
        assert_eq!(
            parse_length(b"9999999999999999999"),
            Some(9_999_999_999_999_999_999)
        );
        for bad in [&b""[..], b"+1", b"-1", b"1 2", b"0x10", b"1.0"] {
            assert_eq!(
                parse_length(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    fn framing_of(
        lines: &[(&str, &str)],
        status: u16,
        is_head: bool,
    ) -> Result<(String, bool), &'static str> {
        let mut headers = HeaderMap::new();
        for (name, value) in lines {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let (framing, reusable) =
            framing(&mut headers, StatusCode::from_u16(status).unwrap(), is_head)?;
        let name = match framing {
            Framing::Length(n) => format!("length {n}"),
            Framing::Chunked(_) => "chunked".into(),
            Framing::UntilClose => "until close".into(),
            Framing::Done => "done".into(),
        };
        Ok((name, reusable))
    }

    #[test]
    fn framing_follows_rfc_9112_section_6_3() {
        let f = framing_of;
        assert_eq!(
            f(&[("content-length", "5")], 200, false),
            Ok(("length 5".into(), true))
        );
        assert_eq!(
            f(&[("content-length", "5")], 200, true),
            Ok(("length 0".into(), true))
        );
        assert_eq!(
            f(&[("content-length", "5")], 204, false),
            Ok(("length 0".into(), true))
        );
        assert_eq!(
            f(&[("content-length", "5")], 304, false),
            Ok(("length 0".into(), true))
        );
        assert_eq!(
            f(&[("content-length", "5, 5")], 200, false),
            Ok(("length 5".into(), true))
        );
        assert_eq!(
            f(
                &[("content-length", "5"), ("content-length", "5")],
                200,
                false
            ),
            Ok(("length 5".into(), true))
        );
        assert_eq!(
            f(&[("content-length", "5, 6")], 200, false),
            Err("content-length")
        );
        assert_eq!(
            f(&[("content-length", "")], 200, false),
            Err("content-length")
        );
        assert_eq!(f(&[], 200, false), Ok(("until close".into(), false)));
        assert_eq!(
            f(&[("transfer-encoding", "chunked")], 200, false),
            Ok(("chunked".into(), true))
        );
        assert_eq!(
            f(&[("transfer-encoding", "gzip, Chunked")], 200, false),
            Ok(("chunked".into(), true))
        );
        assert_eq!(
            f(&[("transfer-encoding", "chunked, gzip")], 200, false),
            Ok(("until close".into(), false)),
            "chunked not last: the body runs to the close"
        );
        assert_eq!(
            f(
                &[("transfer-encoding", "chunked"), ("content-length", "3")],
                200,
                false
            ),
            Ok(("chunked".into(), false)),
            "both: chunked wins, the connection is not reused"
        );
    }

    /// Decode `wire` fed `step` bytes at a time; the data, or the decoder's error.
    fn dechunk(wire: &[u8], step: usize) -> Result<Vec<u8>, &'static str> {
        let mut state = Chunked::Size;
        let mut buf = BytesMut::new();
        let mut fed = 0;
        let mut data = Vec::new();
        loop {
            match chunked_step(&mut state, &mut buf)? {
                Step::Data(d) => data.extend_from_slice(&d),
                Step::Again => {}
                Step::End => {
                    assert!(buf.is_empty() && fed == wire.len(), "nothing left over");
                    return Ok(data);
                }
                Step::NeedMore => {
                    if fed == wire.len() {
                        return Err("ran out");
                    }
                    let next = (fed + step).min(wire.len());
                    buf.extend_from_slice(&wire[fed..next]);
                    fed = next;
                }
            }
        }
    }

    #[test]
    fn chunked_bodies_decode_however_they_are_split() {
        let wire =
            b"5;ext=\"a\"\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nTrailer: x\r\n\r\n";
        for step in [1, 2, 3, 7, wire.len()] {
            assert_eq!(
                dechunk(wire, step).as_deref(),
                Ok(&b"helloabcdefghijklmnopqrstuvwxyz"[..]),
                "fed {step} bytes at a time"
            );
        }
    }

    #[test]
    fn malformed_chunked_bodies_fail() {
        for wire in [
            &b"zz\r\nhello\r\n0\r\n\r\n"[..],
            b"\r\n",
            b"5\r\nhello!\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"1000000000000000\r\n",
            b"-1\r\n",
        ] {
            assert!(
                dechunk(wire, 1).is_err(),
                "{:?} must fail",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn header_values_are_kept_exactly_empty_ones_too() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 200 OK\r\nX-Empty:\r\nX-Blank:   \r\nContent-Length: 2\r\nX-Last: v w\r\n\r\nok"[..],
        );
        let Ok(Some((parts, _, keep_alive))) = parse_head(&mut buf, false) else {
            panic!("a good head");
        };
        assert!(keep_alive);
        assert_eq!(parts.headers["x-empty"], "");
        assert_eq!(parts.headers["x-blank"], "");
        assert_eq!(parts.headers["content-length"], "2");
        assert_eq!(parts.headers["x-last"], "v w");
        assert_eq!(&buf[..], b"ok", "the body is left in the buffer");
    }

    /// A backend that answers a `HEAD` with its head and then, in a later write, a body (a
    /// `HEAD` handled as a `GET`; the same for a `204` or `304` with a body): that body is
    /// not read as the next request's answer. Here it arrives after the head was read and
    /// before the runtime polls for I/O again, so tokio's readiness does not show it yet.
    #[tokio::test(flavor = "current_thread")]
    async fn a_body_sent_late_after_an_unframed_response_is_seen_before_reuse() {
        use http_body::Body as _;
        use std::io::{Read, Write};
        for (method, status) in [
            (Method::HEAD, "200 OK"),
            (Method::GET, "204 No Content"),
            (Method::GET, "304 Not Modified"),
        ] {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap().to_string();
            let pool = Pool::new(addr, std::time::Duration::from_secs(5));
            let (go, wait) = std::sync::mpsc::channel::<()>();
            let (written, has_written) = std::sync::mpsc::channel::<()>();
            let backend = std::thread::spawn(move || {
                let (mut tcp, _) = listener.accept().unwrap();
                let mut request = [0u8; 1024];
                assert!(tcp.read(&mut request).unwrap() > 0);
                let head = format!("HTTP/1.1 {status}\r\ncontent-length: 41\r\n\r\n");
                tcp.write_all(head.as_bytes()).unwrap();
                wait.recv().unwrap();
                tcp.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nevil")
                    .unwrap();
                written.send(()).unwrap();
                // Until the gateway side drops the connection.
                while tcp.read(&mut request).is_ok_and(|n| n > 0) {}
            });
            let parts = http::Request::builder()
                .method(method.clone())
                .uri("/")
                .body(())
                .unwrap()
                .into_parts()
                .0;
            let meter = Arc::new(Entry::new(0, &admission(), std::time::Duration::ZERO).unwrap());
            let target = PathAndQuery::from_static("/");
            let (_, body) = send(&pool, &parts, &target, &meter).await.unwrap();
            assert!(body.is_end_stream(), "{method} {status}: no body");
            // From here nothing awaits, so the runtime does not poll for I/O.
            go.send(()).unwrap();
            has_written.recv().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
            assert!(
                pool.take_bare().is_none(),
                "{method} {status}: the connection was reused with a body on its way"
            );
            backend.join().unwrap();
        }
    }

    fn admission() -> crate::central::Admission {
        crate::central::Admission {
            user: "alice".into(),
            account: "alice".into(),
            level: crate::config::Level(3),
            idle_timeout: std::time::Duration::from_secs(60),
            remaining: std::time::Duration::from_secs(60),
            site_password: None,
            seq: 0,
        }
    }

    #[test]
    fn connection_close_token_found_in_lists() {
        assert!(has_token(b"close", "close"));
        assert!(has_token(b"keep-alive, Close", "close"));
        assert!(!has_token(b"closed", "close"));
        assert!(!has_token(b"keep-alive", "close"));
    }
}

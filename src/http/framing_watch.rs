//! Request boundaries followed in the raw bytes of an HTTP/1.1 connection, so that a head
//! carrying both `Content-Length` and `Transfer-Encoding` is refused with 400.
//!
//! hyper settles that conflict itself while parsing (RFC 9112 §6.1 lets a server: the chunks
//! win, and the connection is closed after the response) and drops the `Content-Length`
//! before the gateway sees the request, so [`super::framing::check`] cannot tell. The
//! connection's reads therefore pass through a [`FramingWatch`], which follows each request's
//! head and body the way hyper's parser does, and notices a head that names both. It then
//! spoils that head's final line break before hyper has seen it (and the connection's reader
//! adds a blank line after it, so that hyper, which waits for a head's end before parsing
//! it again, sees one), and hyper refuses the head as malformed: 400 and the connection
//! closed, nothing forwarded.
//!
//! It is a watch, never a gate: where it loses the thread (a `Content-Length` value hyper
//! might read another way, a broken chunk line, an `Upgrade` that may turn the connection
//! into a tunnel) it stops looking for the rest of the connection, and everything is as
//! without it. hyper and the header check still refuse what they refuse, and a request with
//! both headers is read as chunked, its length never forwarded, and its connection closed
//! after the response.
//!
//! On the hot path: one `memchr` per line of each head and a look at the lines starting with
//! `c`, `t` or `u`; bodies are skipped by their length, chunks by their size lines.

/// Bytes of a line kept when it is split between reads: enough for the longest name looked
/// at (`transfer-encoding:`, 18) and a `Content-Length` value.
const LINE_KEEP: usize = 64;

/// Where one HTTP/1.1 connection's request stream stands.
#[derive(Debug)]
pub struct FramingWatch {
    state: State,
}

#[derive(Debug)]
enum State {
    /// In a request head, or between requests.
    Head(Head),
    /// In a body with this many bytes to go.
    Body(u64),
    /// In a chunked body.
    Chunked(Chunked),
    /// Not looking any more: lost the thread, refused a head, or a possible tunnel.
    Off,
}

/// What has been seen of the current head.
#[derive(Debug)]
struct Head {
    /// The start of a line that began in an earlier read (`line_len` bytes so far, the first
    /// [`LINE_KEEP`] of them kept).
    line: [u8; LINE_KEEP],
    line_len: usize,
    /// The request line has been seen (empty lines before it are skipped, as hyper does).
    started: bool,
    /// A `Content-Length` line was seen (whatever its value).
    length_named: bool,
    /// Its length, when every such line gave the same plain number (leading zeros allowed,
    /// as hyper allows them).
    length: Option<u64>,
    /// A `Content-Length` value hyper might read differently or refuse: the body's end is
    /// not ours to follow then.
    length_unclear: bool,
    chunked: bool,
    upgrade: bool,
}

impl Default for Head {
    fn default() -> Self {
        Head {
            line: [0; LINE_KEEP],
            line_len: 0,
            started: false,
            length_named: false,
            length: None,
            length_unclear: false,
            chunked: false,
            upgrade: false,
        }
    }
}

/// hyper's chunked decoder, state for state (`proto/h1/decode.rs`).
#[derive(Debug, Clone, Copy)]
enum Chunked {
    Start,
    Size(u64),
    SizeLws(u64),
    Extension(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    EndCr,
    EndLf,
    Trailer,
    TrailerLf,
}

/// What a finished line means for the head.
enum Line {
    More,
    End,
}

impl Default for FramingWatch {
    fn default() -> Self {
        FramingWatch {
            state: State::Head(Head::default()),
        }
    }
}

impl FramingWatch {
    pub fn new() -> FramingWatch {
        FramingWatch::default()
    }

    /// Follow the bytes just read from the client, in order. Returns true when a head
    /// carrying both framing headers ended in them: its last line break has been replaced,
    /// so hyper refuses it, and the caller should add a blank line after the bytes (see
    /// the module's notes). Nothing else is ever changed.
    pub fn watch(&mut self, bytes: &mut [u8]) -> bool {
        let mut at = 0;
        while at < bytes.len() {
            at = match &mut self.state {
                State::Off => return false,
                State::Head(head) => match head_step(head, bytes, at) {
                    HeadStep::NeedMore => return false,
                    HeadStep::Ended { next, refused } => {
                        if refused {
                            self.state = State::Off;
                            return true;
                        }
                        self.state = after_head(head);
                        next
                    }
                },
                State::Body(left) => {
                    let take = (bytes.len() - at).min(usize::try_from(*left).unwrap_or(usize::MAX));
                    *left -= take as u64;
                    if *left == 0 {
                        self.state = State::Head(Head::default());
                    }
                    at + take
                }
                State::Chunked(chunked) => match chunk_step(*chunked, &bytes[at..]) {
                    Some((next, used)) => {
                        self.state = match next {
                            None => State::Head(Head::default()),
                            Some(c) => State::Chunked(c),
                        };
                        at + used
                    }
                    None => {
                        self.state = State::Off;
                        return false;
                    }
                },
            };
        }
        false
    }

    /// A new watch over `stream` cut into reads at the offsets `cuts` (ascending): the
    /// bytes as hyper would get them, and how many heads were refused. For tests and fuzzing.
    pub fn follow_in_reads(stream: &[u8], cuts: &[usize]) -> (Vec<u8>, usize) {
        let mut watch = FramingWatch::new();
        let mut out = stream.to_vec();
        let mut refused = 0;
        let mut from = 0;
        for &to in cuts.iter().chain(std::iter::once(&stream.len())) {
            refused += usize::from(watch.watch(&mut out[from..to]));
            from = to;
        }
        (out, refused)
    }
}

enum HeadStep {
    /// The read ended inside the head.
    NeedMore,
    /// The head ended with the line break just before `next`.
    Ended { next: usize, refused: bool },
}

/// Read lines of the head from `bytes[at..]` until it ends or the bytes do.
fn head_step(head: &mut Head, bytes: &mut [u8], mut at: usize) -> HeadStep {
    loop {
        let Some(found) = memchr::memchr(b'\n', &bytes[at..]) else {
            keep(head, &bytes[at..]);
            return HeadStep::NeedMore;
        };
        let end = at + found;
        let outcome = if head.line_len == 0 {
            // The whole line is in this read; looked at as if kept, so that where reads fall
            // never changes the outcome.
            let whole = &bytes[at..end];
            line(
                head,
                &whole[..whole.len().min(LINE_KEEP)],
                whole.len() > LINE_KEEP,
            )
        } else {
            keep(head, &bytes[at..end]);
            let (kept, truncated) = (head.line, head.line_len > LINE_KEEP);
            let kept_len = head.line_len.min(LINE_KEEP);
            head.line_len = 0;
            line(head, &kept[..kept_len], truncated)
        };
        match outcome {
            Line::More => at = end + 1,
            Line::End => {
                let refused = head.length_named && head.chunked;
                if refused {
                    // hyper has not parsed this head yet (it was incomplete without this
                    // byte); a NUL where the blank line's LF was is malformed to it.
                    bytes[end] = 0;
                }
                return HeadStep::Ended {
                    next: end + 1,
                    refused,
                };
            }
        }
    }
}

/// Keep the start of a line that goes on in the next read.
fn keep(head: &mut Head, part: &[u8]) {
    let kept = head.line_len.min(LINE_KEEP);
    let n = (LINE_KEEP - kept).min(part.len());
    head.line[kept..kept + n].copy_from_slice(&part[..n]);
    head.line_len += part.len();
}

/// One line of a head, without its LF (and maybe only its start, when `truncated`).
fn line(head: &mut Head, line: &[u8], truncated: bool) -> Line {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() && !truncated {
        return if head.started { Line::End } else { Line::More };
    }
    if !head.started {
        head.started = true;
        // hyper treats CONNECT as an upgrade.
        if line.starts_with(b"CONNECT ") {
            head.upgrade = true;
        }
        return Line::More;
    }
    if !matches!(line[0] | 0x20, b'c' | b't' | b'u') {
        return Line::More;
    }
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return Line::More;
    };
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if name.eq_ignore_ascii_case(b"content-length") {
        // Named is enough for the conflict with Transfer-Encoding, whatever the value; the
        // value only matters for following the body when there is no Transfer-Encoding.
        head.length_named = true;
        let value = value.trim_ascii();
        let length = (!truncated && !value.is_empty())
            .then(|| {
                value.iter().try_fold(0u64, |n, &d| {
                    d.is_ascii_digit()
                        .then_some(())
                        .and_then(|()| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
                })
            })
            .flatten();
        match (length, head.length) {
            (Some(new), None) => head.length = Some(new),
            (Some(new), Some(old)) if new == old => {}
            _ => head.length_unclear = true,
        }
    } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
        head.chunked = true;
    } else if name.eq_ignore_ascii_case(b"upgrade") {
        head.upgrade = true;
    }
    Line::More
}

/// What comes after a head that ended without a conflict.
fn after_head(head: &Head) -> State {
    if head.length_unclear {
        // hyper or the header check refuses it, or reads a length we did not.
        State::Off
    } else if head.upgrade {
        // If the backend switches protocols, the rest is a tunnel, not requests.
        State::Off
    } else if head.chunked {
        // Chunked, or refused by hyper (a coding other than chunked) and closed.
        State::Chunked(Chunked::Start)
    } else {
        match head.length {
            Some(n) if n > 0 => State::Body(n),
            _ => State::Head(Head::default()),
        }
    }
}

/// Follow a chunked body through `bytes`: the state it is in after them (`None`: the body
/// ended) and the bytes used, or `None` where hyper would refuse the body.
fn chunk_step(mut state: Chunked, bytes: &[u8]) -> Option<(Option<Chunked>, usize)> {
    use Chunked::*;
    let mut at = 0;
    while at < bytes.len() {
        if let Data(left) = state {
            let take = (bytes.len() - at).min(usize::try_from(left).unwrap_or(usize::MAX));
            at += take;
            state = if left == take as u64 {
                DataCr
            } else {
                Data(left - take as u64)
            };
            continue;
        }
        let b = bytes[at];
        at += 1;
        state = match (state, b) {
            (Start, _) => Size(hex(b).map(u64::from)?),
            (Size(n), _) if hex(b).is_some() => {
                Size(n.checked_mul(16)?.checked_add(u64::from(hex(b)?))?)
            }
            (Size(n) | SizeLws(n), b'\t' | b' ') => SizeLws(n),
            (Size(n) | SizeLws(n) | Extension(n), b';') => Extension(n),
            (Size(n) | SizeLws(n) | Extension(n), b'\r') => SizeLf(n),
            (Extension(_), b'\n') => return None,
            (Extension(n), _) => Extension(n),
            (SizeLf(0), b'\n') => EndCr,
            (SizeLf(n), b'\n') => Data(n),
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => Start,
            (EndCr, b'\r') => EndLf,
            (Trailer, b'\r') => TrailerLf,
            (EndCr | Trailer, _) => Trailer,
            (TrailerLf, b'\n') => EndCr,
            (EndLf, b'\n') => return Some((None, at)),
            _ => return None,
        };
    }
    Some((Some(state), at))
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(stream: &[u8], cuts: &[usize]) -> (Vec<u8>, usize) {
        FramingWatch::follow_in_reads(stream, cuts)
    }

    /// The same outcome however the stream is cut into reads: in one piece, at every single
    /// position, and byte by byte.
    fn outcome(stream: &str) -> (Vec<u8>, usize) {
        let bytes = stream.as_bytes();
        let whole = feed(bytes, &[]);
        for cut in 1..bytes.len() {
            assert_eq!(feed(bytes, &[cut]), whole, "cut at {cut} of {stream:?}");
        }
        let every: Vec<usize> = (1..bytes.len()).collect();
        assert_eq!(feed(bytes, &every), whole, "byte by byte: {stream:?}");
        whole
    }

    fn refused(stream: &str) -> bool {
        let (out, n) = outcome(stream);
        assert!(n <= 1);
        assert_eq!(out.len(), stream.len());
        let changed = out.iter().zip(stream.as_bytes()).filter(|(a, b)| a != b);
        assert_eq!(changed.count(), n, "only one byte is ever changed");
        n == 1
    }

    const GET: &str = "GET / HTTP/1.1\r\nHost: a\r\nCookie: c=1\r\n\r\n";

    /// Both headers in either order, in any case, are refused; the spoiled byte is the
    /// head's last LF, so nothing after it is touched.
    #[test]
    fn both_framing_headers_refused() {
        for head in [
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\ncOnTeNt-LeNgTh:5\r\ntransfer-encoding:chunked\r\n\r\n",
            "POST / HTTP/1.1\nContent-Length: 0\nTransfer-Encoding: gzip\n\n",
            "\r\nPOST / HTTP/1.1\r\nTRANSFER-ENCODING: chunked\r\nCONTENT-LENGTH: 10\r\n\r\n",
        ] {
            let stream = format!("{head}0\r\n\r\n{GET}");
            assert!(refused(&stream), "{head:?}");
            let (out, _) = outcome(&stream);
            assert_eq!(out[head.len() - 1], 0, "{head:?}");
        }
    }

    /// With Transfer-Encoding, any Content-Length line is a conflict, whatever its value:
    /// one hyper would refuse, skip or read with leading zeros, one padded past what is
    /// kept, or two that differ.
    #[test]
    fn any_length_value_with_transfer_encoding_refused() {
        let padded = format!("Content-Length:{}5", " ".repeat(80));
        for length in [
            "Content-Length: 5, 5",
            "Content-Length: +5",
            "Content-Length: x",
            "Content-Length:",
            "Content-Length: 0000000000000000000000005",
            "Content-Length: 99999999999999999999",
            "Content-Length: 5\r\nContent-Length: 6",
            padded.as_str(),
        ] {
            for head in [
                format!("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n{length}\r\n\r\n"),
                format!("POST / HTTP/1.1\r\n{length}\r\nTransfer-Encoding: chunked\r\n\r\n"),
            ] {
                assert!(refused(&format!("{head}0\r\n\r\n")), "{head:?}");
            }
        }
    }

    /// A length with leading zeros is the length hyper reads: the body after it is skipped
    /// and the next head still watched.
    #[test]
    fn leading_zeros_are_followed() {
        let bad = "POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let first = "POST / HTTP/1.1\r\nContent-Length: 0000000000000000000005\r\n\r\nhello";
        assert!(!refused(first));
        assert!(refused(&format!("{first}{bad}")));
    }

    /// Plain requests, bodies by length and chunked bodies pass untouched, and the watch
    /// keeps its place across them: a conflict after them is still found.
    #[test]
    fn follows_bodies_to_the_next_head() {
        let fake_head = "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        let sized = format!(
            "POST /a HTTP/1.1\r\nContent-Length: {}\r\n\r\n{fake_head}",
            fake_head.len()
        );
        let chunked = format!(
            "POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{:x};ext=1\r\n{fake_head}\r\n3 \r\nabc\r\n0\r\nTrailer: x\r\n\r\n",
            fake_head.len()
        );
        let bad = "POST /c HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        for stream in [
            format!("{GET}{GET}{sized}{chunked}{GET}"),
            format!("{sized}{chunked}{GET}"),
        ] {
            assert!(!refused(&stream), "{stream:?}");
            assert!(refused(&format!("{stream}{bad}0\r\n\r\n")), "{stream:?}");
        }
        assert!(refused(&format!("{GET}{bad}")));
    }

    /// Where the stream is not what hyper accepts, or may become a tunnel, the watch stops:
    /// nothing after is touched (hyper refuses, or the connection is not HTTP any more).
    #[test]
    fn stops_where_it_loses_the_thread() {
        let bad = "POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        for first in [
            "POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\nhello",
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
            "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello",
            "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;a\nb\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\naXY",
            "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            assert!(!refused(&format!("{first}{bad}")), "{first:?}");
        }
    }

    /// A value padded past what is kept, and long lines of other headers, are handled.
    #[test]
    fn long_lines() {
        let long = "x".repeat(300);
        let padded = format!(
            "POST / HTTP/1.1\r\nContent-Length:{}5\r\n\r\nhello",
            " ".repeat(80)
        );
        assert!(!refused(&format!("{padded}{GET}")));
        let stream = format!(
            "GET /{long} HTTP/1.1\r\nCookie: {long}\r\nTransfer-Encoding: chunked\r\nX: {long}\r\nContent-Length: 3\r\n\r\n"
        );
        assert!(refused(&stream));
    }
}

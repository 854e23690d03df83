//! Message framing, checked on every request before it is routed: where a request's body
//! ends must be beyond doubt, or the request is refused (400) and its connection closed.
//!
//! hyper already refuses what it cannot parse, but it resolves some ambiguities itself that a
//! proxy must not: with both `Content-Length` and `Transfer-Encoding: chunked` it reads the
//! chunks (RFC 9112 §6.3 lets a server do so, and then requires it to close the connection)
//! and drops the length before this check runs, so that case is refused earlier, in the
//! bytes, by [`super::framing_watch`]; it accepts repeated identical lengths (`5, 5`), and a
//! `Transfer-Encoding` list ending in `chunked`. A backend or an intermediary that reads the same bytes another way sees a
//! different request boundary: request smuggling. So only one unambiguous shape passes: at
//! most one `Content-Length` of plain digits, or exactly `Transfer-Encoding: chunked` on
//! HTTP/1.1, never both. Names that a backend could fold onto these two (`Content_Length`,
//! `Transfer.Encoding`) are refused too.

use http::header::{CONTENT_LENGTH, HeaderMap, TRANSFER_ENCODING};
use http::{Request, Version};

use super::header_names::is_alias;

/// Why a request's framing was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("both Content-Length and Transfer-Encoding")]
    LengthAndChunked,
    #[error("Content-Length repeated or not a plain number")]
    BadLength,
    #[error("Transfer-Encoding other than one `chunked` on HTTP/1.1")]
    BadTransferEncoding,
    #[error("a header name that folds onto Content-Length or Transfer-Encoding")]
    LookAlikeName,
}

/// Check a request's framing headers.
pub fn check<B>(req: &Request<B>) -> Result<(), FramingError> {
    check_headers(req.version(), req.headers())
}

/// The check itself, on the parts it needs (for tests and fuzzing).
pub fn check_headers(version: Version, headers: &HeaderMap) -> Result<(), FramingError> {
    for name in headers.keys() {
        let n = name.as_str();
        let look_alike = (n != CONTENT_LENGTH.as_str() && is_alias(n, CONTENT_LENGTH.as_str()))
            || (n != TRANSFER_ENCODING.as_str() && is_alias(n, TRANSFER_ENCODING.as_str()));
        if look_alike {
            return Err(FramingError::LookAlikeName);
        }
    }
    let mut lengths = headers.get_all(CONTENT_LENGTH).iter();
    let length = lengths.next();
    if lengths.next().is_some() || length.is_some_and(|v| !is_plain_length(v.as_bytes())) {
        return Err(FramingError::BadLength);
    }
    let mut encodings = headers.get_all(TRANSFER_ENCODING).iter();
    let Some(encoding) = encodings.next() else {
        return Ok(());
    };
    if length.is_some() {
        return Err(FramingError::LengthAndChunked);
    }
    let chunked_only = encoding
        .as_bytes()
        .trim_ascii()
        .eq_ignore_ascii_case(b"chunked");
    if encodings.next().is_some() || !chunked_only || version != Version::HTTP_11 {
        return Err(FramingError::BadTransferEncoding);
    }
    Ok(())
}

/// 1 to 19 ASCII digits: a u64 that cannot overflow, without sign, spaces or lists.
fn is_plain_length(value: &[u8]) -> bool {
    (1..=19).contains(&value.len()) && value.iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn check11(pairs: &[(&str, &str)]) -> Result<(), FramingError> {
        check_headers(Version::HTTP_11, &headers(pairs))
    }

    /// No body headers, one plain length, or one chunked encoding pass.
    #[test]
    fn unambiguous_shapes_pass() {
        assert_eq!(check11(&[]), Ok(()));
        assert_eq!(check11(&[("content-length", "0")]), Ok(()));
        assert_eq!(check11(&[("content-length", "1234")]), Ok(()));
        assert_eq!(check11(&[("transfer-encoding", "chunked")]), Ok(()));
        assert_eq!(check11(&[("transfer-encoding", "Chunked ")]), Ok(()));
    }

    /// Both framings at once are refused.
    #[test]
    fn length_and_chunked() {
        assert_eq!(
            check11(&[("content-length", "5"), ("transfer-encoding", "chunked")]),
            Err(FramingError::LengthAndChunked)
        );
    }

    /// Repeated, listed, signed, spaced, hex or overlong lengths are refused.
    #[test]
    fn bad_lengths() {
        for v in [
            "5, 5",
            "5,6",
            "+5",
            "-1",
            "0x5",
            "5 5",
            " 5",
            "5.0",
            "",
            "12345678901234567890",
        ] {
            assert_eq!(
                check11(&[("content-length", v)]),
                Err(FramingError::BadLength),
                "{v:?}"
            );
        }
        assert_eq!(
            check11(&[("content-length", "5"), ("content-length", "5")]),
            Err(FramingError::BadLength)
        );
    }

    /// Any coding but a single "chunked", repeated encodings, and HTTP/1.0 are refused.
    #[test]
    fn bad_encodings() {
        for v in [
            "gzip, chunked",
            "chunked, chunked",
            "identity",
            "xchunked",
            "chunked;a=b",
        ] {
            assert_eq!(
                check11(&[("transfer-encoding", v)]),
                Err(FramingError::BadTransferEncoding),
                "{v:?}"
            );
        }
        assert_eq!(
            check11(&[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked")
            ]),
            Err(FramingError::BadTransferEncoding)
        );
        assert_eq!(
            check_headers(
                Version::HTTP_10,
                &headers(&[("transfer-encoding", "chunked")])
            ),
            Err(FramingError::BadTransferEncoding)
        );
    }

    /// Names a backend could read as a framing header are refused.
    #[test]
    fn look_alike_names() {
        for n in [
            "content_length",
            "content.length",
            "transfer_encoding",
            "transfer~encoding",
        ] {
            assert_eq!(
                check11(&[(n, "5")]),
                Err(FramingError::LookAlikeName),
                "{n}"
            );
        }
        assert_eq!(check11(&[("content-lengths", "5")]), Ok(()));
    }
}

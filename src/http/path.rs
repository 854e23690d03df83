//! Request path normalisation, run on every request before authorisation.
//!
//! The gateway decides access by matching the request path against rule
//! prefixes and then forwards that same path to the backend. If the gateway
//! and the backend could read one path two different ways (dot segments,
//! encoded slashes, matrix parameters, double encoding, ...), an attacker
//! could be authorised for one resource and served another. So `normalize`
//! produces a single canonical form, refuses anything it cannot make
//! unambiguous, and the caller forwards exactly the string it returns.
//! `prefix_matches` then compares that form against rule prefixes segment by
//! segment, the way backends route.

use std::borrow::Cow;
use std::fmt;

/// Why a request path was refused. Every variant is a client error (400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    /// The path is empty.
    Empty,
    /// The path does not start with '/' (absolute-form, authority-form, `*`).
    NotOriginForm,
    /// A character outside ASCII; request targets are ASCII on the wire.
    NonAscii,
    /// A control character, raw or percent-encoded.
    ControlChar,
    /// A raw character that has no business in a path (space, '?').
    InvalidChar,
    /// A raw '#': fragments are never sent to servers.
    Fragment,
    /// A '%' not followed by two hex digits.
    BadEscape,
    /// `%2F`: would be a separator to backends that decode before routing.
    EncodedSlash,
    /// A backslash, raw or `%5C`: a separator on some backends.
    EncodedBackslash,
    /// A NUL byte, raw or `%00`: truncates paths in C-based backends.
    Nul,
    /// `%25` forming an escape of '/', '\\', '.' or NUL once decoded again.
    DoubleEncoded,
    /// A segment that is a dot segment or empty once `;params` are removed.
    MatrixParams,
    /// A `..` segment that would climb above the root.
    EscapesRoot,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let msg = match self {
            Self::Empty => "empty path",
            Self::NotOriginForm => "path does not start with '/'",
            Self::NonAscii => "non-ASCII character in path",
            Self::ControlChar => "control character in path",
            Self::InvalidChar => "invalid character in path",
            Self::Fragment => "fragment in path",
            Self::BadEscape => "malformed percent-escape in path",
            Self::EncodedSlash => "encoded slash in path",
            Self::EncodedBackslash => "backslash in path",
            Self::Nul => "NUL in path",
            Self::DoubleEncoded => "double-encoded separator or dot in path",
            Self::MatrixParams => "matrix parameters hide a dot or empty segment",
            Self::EscapesRoot => "path escapes the root",
        };
        f.write_str(msg)
    }
}

impl std::error::Error for PathError {}

/// Normalise the path part of a request target (no query string: the caller
/// splits at the first '?').
///
/// Escapes of unreserved characters are decoded, other escapes are kept with
/// upper-case hex, repeated slashes collapse, dot segments are resolved and a
/// trailing slash is kept. The result is what rules are matched against and
/// exactly what is forwarded.
///
/// # Errors
///
/// Returns the reason when the path cannot be made unambiguous: see
/// [`PathError`].
pub fn normalize(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if is_already_normal(raw) {
        return Ok(Cow::Borrowed(raw));
    }
    normalize_slow(raw).map(Cow::Owned)
}

/// The common case, checked in one pass without allocating: a path made only of
/// characters that need no decoding or checking (no '%', ';' or '\\'), with no empty,
/// `.` or `..` segment. Such a path is its own normal form (the tests hold the slow path
/// to that).
fn is_already_normal(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return false;
    }
    let mut segment_start = 1;
    for (i, &b) in bytes.iter().enumerate().skip(1) {
        let plain = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b'='
                    | b':'
                    | b'@'
            );
        if b == b'/' {
            if !plain_segment(&bytes[segment_start..i]) {
                return false;
            }
            segment_start = i + 1;
        } else if !plain {
            return false;
        }
    }
    // The last segment may be empty (a trailing slash), but not `.` or `..`.
    let last = &bytes[segment_start..];
    last.is_empty() || plain_segment(last)
}

fn plain_segment(seg: &[u8]) -> bool {
    !matches!(seg, b"" | b"." | b"..")
}

fn normalize_slow(raw: &str) -> Result<String, PathError> {
    match raw.as_bytes().first() {
        None => return Err(PathError::Empty),
        Some(b'/') => {}
        Some(_) => return Err(PathError::NotOriginForm),
    }
    let decoded = decode_unreserved(raw.as_bytes())?;
    // Checked on the decoded text so that escapes assembled from decoded
    // digits (`%25%32%65` -> `%252e`) are caught as well.
    reject_double_encoding(decoded.as_bytes())?;
    resolve_segments(&decoded)
}

/// Does `path` (already normalised) fall under rule prefix `prefix`?
/// Segment-aware: prefix "/admin" matches "/admin", "/admin/", "/admin/x",
/// but NOT "/administrator". A prefix ending in '/' matches anything starting
/// with it. Prefix "/" matches everything. `case_sensitive == false` compares
/// ASCII case-insensitively.
///
/// Path segments are compared without their `;params` (and `%3Bparams`),
/// because servlet-style backends route `/admin;x/secret` as `/admin/secret`;
/// otherwise such a path would slip past an "/admin" rule. A prefix that does
/// not start with '/' (including the empty string) matches nothing: such a
/// rule is a configuration error and should be refused when loading config.
pub fn prefix_matches(path: &str, prefix: &str, case_sensitive: bool) -> bool {
    matches_prefix(path, prefix, case_sensitive, strip_params)
}

/// [`prefix_matches`] with `;params` kept as part of their segment, as a backend that does
/// not strip them routes the path: `/admin/help;x` is then under `/admin`, not
/// `/admin/help`. See [`has_params`].
pub fn prefix_matches_with_params(path: &str, prefix: &str, case_sensitive: bool) -> bool {
    matches_prefix(path, prefix, case_sensitive, |seg| seg)
}

/// Does `path` hold a `;` or `%3B`, so that backends may read its segments two ways?
pub fn has_params(path: &str) -> bool {
    path.contains(';') || (path.contains('%') && path.split('/').any(|s| param_start(s) < s.len()))
}

fn matches_prefix(
    path: &str,
    prefix: &str,
    case_sensitive: bool,
    segment: impl Fn(&str) -> &str,
) -> bool {
    if !prefix.starts_with('/') || !path.starts_with('/') {
        return false;
    }
    let (body, open_ended) = match prefix.strip_suffix('/') {
        Some(body) => (body, true),
        None => (prefix, false),
    };
    let mut have = path.split('/').map(segment);
    for want in body.split('/') {
        match have.next() {
            Some(seg) if segment_eq(seg, want, case_sensitive) => {}
            _ => return false,
        }
    }
    // An open-ended prefix needs the path to continue past it (even if only
    // with an empty segment, i.e. a trailing slash).
    !open_ended || have.next().is_some()
}

fn segment_eq(a: &str, b: &str, case_sensitive: bool) -> bool {
    if case_sensitive {
        a == b
    } else {
        a.eq_ignore_ascii_case(b)
    }
}

/// The part of a segment before its matrix parameters.
fn strip_params(seg: &str) -> &str {
    seg.get(..param_start(seg)).unwrap_or(seg)
}

/// Byte offset of the first ';' or `%3B` in `seg`, or its length. `%3B`
/// counts because some backends decode before stripping parameters.
fn param_start(seg: &str) -> usize {
    let bytes = seg.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b';' {
            return i;
        }
        if b == b'%'
            && bytes.get(i + 1) == Some(&b'3')
            && matches!(bytes.get(i + 2), Some(b'b' | b'B'))
        {
            return i;
        }
        i += 1;
    }
    bytes.len()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The byte encoded by the two hex digits at `bytes[i..i + 2]`, if any.
pub(super) fn hex_pair(bytes: &[u8], i: usize) -> Option<u8> {
    let hi = hex_value(*bytes.get(i)?)?;
    let lo = hex_value(*bytes.get(i + 1)?)?;
    Some(hi << 4 | lo)
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn check_raw(b: u8) -> Result<(), PathError> {
    match b {
        0 => Err(PathError::Nul),
        b'\\' => Err(PathError::EncodedBackslash),
        0x01..=0x1F | 0x7F => Err(PathError::ControlChar),
        0x80..=0xFF => Err(PathError::NonAscii),
        b' ' | b'?' => Err(PathError::InvalidChar),
        b'#' => Err(PathError::Fragment),
        _ => Ok(()),
    }
}

fn check_decoded(b: u8) -> Result<(), PathError> {
    match b {
        0 => Err(PathError::Nul),
        b'/' => Err(PathError::EncodedSlash),
        b'\\' => Err(PathError::EncodedBackslash),
        0x01..=0x1F | 0x7F => Err(PathError::ControlChar),
        _ => Ok(()),
    }
}

/// Decodes escapes of unreserved characters (which every backend treats as
/// equivalent to the literal) and canonicalises the rest to upper-case hex.
fn decode_unreserved(bytes: &[u8]) -> Result<String, PathError> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b != b'%' {
            check_raw(b)?;
            out.push(char::from(b));
            i += 1;
            continue;
        }
        let byte = hex_pair(bytes, i + 1).ok_or(PathError::BadEscape)?;
        check_decoded(byte)?;
        if is_unreserved(byte) {
            out.push(char::from(byte));
        } else {
            out.push('%');
            for nibble in [byte >> 4, byte & 0x0F] {
                if let Some(&h) = HEX.get(usize::from(nibble)) {
                    out.push(char::from(h));
                }
            }
        }
        i += 3;
    }
    Ok(out)
}

/// Refuses `%25` (any number of times, as in `%25252e`) followed by the hex
/// of '/', '\\', '.' or NUL, which a backend decoding repeatedly would turn
/// into the very characters `normalize` refuses or resolves.
fn reject_double_encoding(bytes: &[u8]) -> Result<(), PathError> {
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' && hex_pair(bytes, i + 1) == Some(0x25) {
            let mut j = i + 3;
            while hex_pair(bytes, j) == Some(0x25) {
                j += 2;
            }
            if matches!(hex_pair(bytes, j), Some(b'/' | b'\\' | b'.' | 0)) {
                return Err(PathError::DoubleEncoded);
            }
        }
        i += 1;
    }
    Ok(())
}

/// Collapses repeated slashes and resolves dot segments (RFC 3986 §5.2.4),
/// except that climbing above the root is an error rather than clamped: a
/// client that does it is probing, and clamping would hide that.
fn resolve_segments(path: &str) -> Result<String, PathError> {
    let mut kept: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for seg in path.split('/').skip(1) {
        // A path ending in an empty or dot segment names a directory.
        trailing_slash = true;
        match seg {
            "" | "." => {}
            ".." => {
                if kept.pop().is_none() {
                    return Err(PathError::EscapesRoot);
                }
            }
            _ => {
                // `/..;/admin` is `/admin` to servlet containers but an
                // ordinary segment to us; refusing keeps both views equal.
                let head = strip_params(seg);
                if head.len() < seg.len() && matches!(head, "" | "." | "..") {
                    return Err(PathError::MatrixParams);
                }
                kept.push(seg);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for seg in &kept {
        out.push('/');
        out.push_str(seg);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast path accepts only paths the full normalisation leaves unchanged.
    #[test]
    fn fast_path_agrees_with_full_normalisation() {
        let samples = [
            "/",
            "/a",
            "/a/",
            "/a/b.c",
            "/a-b_c~d/e",
            "/x:y@z/!$&'()*+,=",
            "/.well-known/x",
            "/a..b/c.",
            "/...",
            "//a",
            "/a//b",
            "/./a",
            "/a/.",
            "/a/..",
            "/../a",
            "/a;b",
            "/%61",
            "/a\\b",
            "/a b",
            "/a?b",
            "/a#b",
            "/é",
        ];
        for raw in samples {
            if is_already_normal(raw) {
                assert_eq!(normalize_slow(raw).as_deref(), Ok(raw), "{raw}");
            }
        }
        assert!(is_already_normal("/a/b/"));
        assert!(
            !is_already_normal("/a//b")
                && !is_already_normal("/a/./b")
                && !is_already_normal("/a/..")
        );
        // Exhaustively over short paths built from interesting bytes.
        let alphabet = [b'/', b'.', b'a', b'%', b';', b'2', b'f'];
        let mut buf = Vec::new();
        for len in 1..=6u32 {
            for n in 0..alphabet.len().pow(len) {
                buf.clear();
                buf.push(b'/');
                let mut k = n;
                for _ in 0..len {
                    buf.push(alphabet[k % alphabet.len()]);
                    k /= alphabet.len();
                }
                let raw = std::str::from_utf8(&buf).unwrap();
                if is_already_normal(raw) {
                    assert_eq!(normalize_slow(raw).as_deref(), Ok(raw), "{raw}");
                }
            }
        }
    }

    fn ok(raw: &str) -> String {
        match normalize(raw) {
            Ok(p) => p.into_owned(),
            Err(e) => panic!("{raw:?} refused: {e}"),
        }
    }

    fn err(raw: &str) -> PathError {
        match normalize(raw) {
            Ok(p) => panic!("{raw:?} accepted as {p:?}"),
            Err(e) => e,
        }
    }

    /// The root stays the root.
    #[test]
    fn root() {
        assert_eq!(ok("/"), "/");
    }

    /// A plain path is unchanged.
    #[test]
    fn plain_path() {
        assert_eq!(ok("/a/b/c"), "/a/b/c");
    }

    /// Repeated slashes collapse, including leading ones.
    #[test]
    fn repeated_slashes() {
        assert_eq!(ok("//a///b"), "/a/b");
    }

    /// Only slashes collapse to the root.
    #[test]
    fn only_slashes() {
        assert_eq!(ok("////"), "/");
    }

    /// A trailing slash is kept.
    #[test]
    fn trailing_slash_kept() {
        assert_eq!(ok("/a/"), "/a/");
    }

    /// Repeated trailing slashes collapse to one.
    #[test]
    fn repeated_trailing_slashes() {
        assert_eq!(ok("/a//"), "/a/");
    }

    /// A `.` segment is removed.
    #[test]
    fn single_dot_removed() {
        assert_eq!(ok("/a/./b"), "/a/b");
    }

    /// A `..` segment pops the previous segment.
    #[test]
    fn double_dot_pops() {
        assert_eq!(ok("/a/../b"), "/b");
    }

    /// A `..` at the root is refused rather than clamped.
    #[test]
    fn double_dot_above_root() {
        assert_eq!(err("/../a"), PathError::EscapesRoot);
    }

    /// Climbing above the root later in the path is refused too.
    #[test]
    fn double_dot_above_root_later() {
        assert_eq!(err("/a/../../b"), PathError::EscapesRoot);
    }

    /// Encoded dots are decoded and then resolved.
    #[test]
    fn encoded_double_dot_resolved() {
        assert_eq!(ok("/a/%2e%2e/b"), "/b");
    }

    /// Mixed-case and half-encoded dots are resolved the same way.
    #[test]
    fn mixed_encoded_double_dot() {
        assert_eq!(ok("/a/.%2E/b"), "/b");
    }

    /// Encoded dots climbing above the root are refused.
    #[test]
    fn encoded_double_dot_above_root() {
        assert_eq!(err("/%2e%2e/"), PathError::EscapesRoot);
    }

    /// A trailing `..` leaves the root when it pops the only segment.
    #[test]
    fn trailing_double_dot_to_root() {
        assert_eq!(ok("/a/.."), "/");
    }

    /// A trailing `..` leaves a trailing slash.
    #[test]
    fn trailing_double_dot_keeps_slash() {
        assert_eq!(ok("/a/b/.."), "/a/");
    }

    /// A trailing `.` leaves a trailing slash.
    #[test]
    fn trailing_single_dot_keeps_slash() {
        assert_eq!(ok("/a/b/."), "/a/b/");
    }

    /// Three dots are an ordinary segment name.
    #[test]
    fn triple_dot_is_a_name() {
        assert_eq!(ok("/a/.../b"), "/a/.../b");
    }

    /// Dots inside a segment name are left alone.
    #[test]
    fn dots_inside_name() {
        assert_eq!(ok("/a..b/c."), "/a..b/c.");
    }

    /// Encoded slash, lower case, is refused.
    #[test]
    fn encoded_slash_lower() {
        assert_eq!(err("/a%2fb"), PathError::EncodedSlash);
    }

    /// Encoded slash, upper case, is refused.
    #[test]
    fn encoded_slash_upper() {
        assert_eq!(err("/a%2Fb"), PathError::EncodedSlash);
    }

    /// Encoded backslash is refused.
    #[test]
    fn encoded_backslash() {
        assert_eq!(err("/a%5cb"), PathError::EncodedBackslash);
    }

    /// A literal backslash is refused.
    #[test]
    fn literal_backslash() {
        assert_eq!(err("/a\\b"), PathError::EncodedBackslash);
    }

    /// Encoded NUL is refused.
    #[test]
    fn encoded_nul() {
        assert_eq!(err("/a%00"), PathError::Nul);
    }

    /// Literal NUL is refused.
    #[test]
    fn literal_nul() {
        assert_eq!(err("/a\0b"), PathError::Nul);
    }

    /// Literal control characters are refused.
    #[test]
    fn literal_control() {
        assert_eq!(err("/a\tb"), PathError::ControlChar);
        assert_eq!(err("/a\r\nb"), PathError::ControlChar);
        assert_eq!(err("/a\x7fb"), PathError::ControlChar);
    }

    /// Encoded control characters are refused.
    #[test]
    fn encoded_control() {
        assert_eq!(err("/a%01"), PathError::ControlChar);
        assert_eq!(err("/a%0d%0a"), PathError::ControlChar);
        assert_eq!(err("/a%1F"), PathError::ControlChar);
        assert_eq!(err("/a%7f"), PathError::ControlChar);
    }

    /// `..;` hides a dot segment from the gateway and is refused.
    #[test]
    fn matrix_double_dot() {
        assert_eq!(err("/..;/admin"), PathError::MatrixParams);
    }

    /// `.;` hides a dot segment from the gateway and is refused.
    #[test]
    fn matrix_single_dot() {
        assert_eq!(err("/.;/admin"), PathError::MatrixParams);
    }

    /// An empty segment with parameters is refused.
    #[test]
    fn matrix_empty_segment() {
        assert_eq!(err("/;x/admin"), PathError::MatrixParams);
    }

    /// Encoded dots followed by parameters are refused.
    #[test]
    fn matrix_encoded_double_dot() {
        assert_eq!(err("/a/%2e%2e;x/admin"), PathError::MatrixParams);
    }

    /// An encoded ';' after a dot segment is refused as well.
    #[test]
    fn matrix_encoded_semicolon() {
        assert_eq!(err("/a/..%3b/admin"), PathError::MatrixParams);
    }

    /// Ordinary matrix parameters are kept.
    #[test]
    fn matrix_params_kept() {
        assert_eq!(ok("/admin;jsessionid=1"), "/admin;jsessionid=1");
    }

    /// An encoded unreserved letter is decoded.
    #[test]
    fn decode_unreserved_letter() {
        assert_eq!(ok("/%61dmin"), "/admin");
    }

    /// All unreserved punctuation is decoded.
    #[test]
    fn decode_unreserved_punctuation() {
        assert_eq!(ok("/%2D%2e%5F%7e%30"), "/-._~0");
    }

    /// Reserved escapes are kept with upper-case hex.
    #[test]
    fn reserved_escape_uppercased() {
        assert_eq!(ok("/a%3ab"), "/a%3Ab");
    }

    /// An encoded space stays encoded.
    #[test]
    fn encoded_space_kept() {
        assert_eq!(ok("/a%20b"), "/a%20b");
    }

    /// Encoded UTF-8 stays encoded, normalised to upper case.
    #[test]
    fn encoded_utf8_kept() {
        assert_eq!(ok("/caf%c3%a9"), "/caf%C3%A9");
    }

    /// `%25` alone stays as is.
    #[test]
    fn percent_escape_kept() {
        assert_eq!(ok("/100%25"), "/100%25");
    }

    /// `%25` before harmless hex stays as is.
    #[test]
    fn double_encoded_harmless() {
        assert_eq!(ok("/%2541"), "/%2541");
    }

    /// Double-encoded dots are refused.
    #[test]
    fn double_encoded_dots() {
        assert_eq!(err("/%252e%252e/x"), PathError::DoubleEncoded);
    }

    /// Double-encoded slash, backslash and NUL are refused.
    #[test]
    fn double_encoded_separators() {
        assert_eq!(err("/a%252fb"), PathError::DoubleEncoded);
        assert_eq!(err("/a%255Cb"), PathError::DoubleEncoded);
        assert_eq!(err("/a%2500"), PathError::DoubleEncoded);
    }

    /// Triple encoding is refused too.
    #[test]
    fn triple_encoded_dot() {
        assert_eq!(err("/%25252e"), PathError::DoubleEncoded);
    }

    /// Double encoding assembled from decoded digits is refused.
    #[test]
    fn double_encoded_assembled() {
        assert_eq!(err("/%25%32%65"), PathError::DoubleEncoded);
    }

    /// A lone '%' is malformed.
    #[test]
    fn bad_escape_lone() {
        assert_eq!(err("/a%"), PathError::BadEscape);
    }

    /// A single hex digit is malformed.
    #[test]
    fn bad_escape_short() {
        assert_eq!(err("/a%4"), PathError::BadEscape);
    }

    /// Non-hex digits are malformed.
    #[test]
    fn bad_escape_non_hex() {
        assert_eq!(err("/%zz"), PathError::BadEscape);
    }

    /// A '%' followed by another escape is malformed.
    #[test]
    fn bad_escape_nested() {
        assert_eq!(err("/%%32%65"), PathError::BadEscape);
    }

    /// Non-ASCII characters are refused.
    #[test]
    fn non_ascii() {
        assert_eq!(err("/caf\u{e9}"), PathError::NonAscii);
        assert_eq!(err("/\u{ff0f}admin"), PathError::NonAscii);
    }

    /// A fragment marker is refused.
    #[test]
    fn fragment() {
        assert_eq!(err("/a#b"), PathError::Fragment);
    }

    /// A raw space or '?' is refused.
    #[test]
    fn invalid_raw_chars() {
        assert_eq!(err("/a b"), PathError::InvalidChar);
        assert_eq!(err("/a?b"), PathError::InvalidChar);
    }

    /// The empty string is refused.
    #[test]
    fn empty() {
        assert_eq!(err(""), PathError::Empty);
    }

    /// Targets not in origin form are refused.
    #[test]
    fn not_origin_form() {
        assert_eq!(err("a/b"), PathError::NotOriginForm);
        assert_eq!(err("*"), PathError::NotOriginForm);
        assert_eq!(err("http://x/"), PathError::NotOriginForm);
    }

    /// Normalising twice changes nothing.
    #[test]
    fn idempotent() {
        for raw in ["//a/./b/../c/", "/%61%3a;x=1", "/a/b/..", "/100%25"] {
            let once = ok(raw);
            assert_eq!(ok(&once), once);
        }
    }

    /// Error messages are human readable.
    #[test]
    fn display() {
        assert_eq!(PathError::EscapesRoot.to_string(), "path escapes the root");
    }

    /// An exact prefix matches.
    #[test]
    fn prefix_exact() {
        assert!(prefix_matches("/admin", "/admin", true));
    }

    /// A prefix matches with a trailing slash and deeper paths.
    #[test]
    fn prefix_deeper() {
        assert!(prefix_matches("/admin/", "/admin", true));
        assert!(prefix_matches("/admin/x/y", "/admin", true));
    }

    /// With params kept in their segment, `help;x` is not `help`; `has_params` sees `;`
    /// and `%3B` in any case, and nothing else.
    #[test]
    fn params_kept_in_their_segment() {
        assert!(prefix_matches("/admin/help;x", "/admin/help", true));
        assert!(!prefix_matches_with_params(
            "/admin/help;x",
            "/admin/help",
            true
        ));
        assert!(prefix_matches_with_params("/admin/help;x", "/admin", true));
        assert!(prefix_matches_with_params(
            "/admin/help/x;y",
            "/admin/help",
            true
        ));
        for p in ["/a;b", "/a/b%3bc", "/a%3B"] {
            assert!(has_params(p), "{p}");
        }
        for p in ["/a/b", "/a%20b", "/a%3", "/a%33"] {
            assert!(!has_params(p), "{p}");
        }
    }

    /// A prefix does not match a longer segment.
    #[test]
    fn prefix_not_partial_segment() {
        assert!(!prefix_matches("/administrator", "/admin", true));
        assert!(!prefix_matches("/adm", "/admin", true));
    }

    /// Case-insensitive matching ignores ASCII case.
    #[test]
    fn prefix_case_insensitive() {
        assert!(prefix_matches("/ADMIN/x", "/admin", false));
    }

    /// Case-sensitive matching respects case.
    #[test]
    fn prefix_case_sensitive() {
        assert!(!prefix_matches("/ADMIN/x", "/admin", true));
    }

    /// The root prefix matches everything.
    #[test]
    fn prefix_root() {
        assert!(prefix_matches("/", "/", true));
        assert!(prefix_matches("/anything/at/all", "/", true));
    }

    /// A prefix ending in '/' needs the path to continue past it.
    #[test]
    fn prefix_trailing_slash() {
        assert!(prefix_matches("/admin/", "/admin/", true));
        assert!(prefix_matches("/admin/x", "/admin/", true));
        assert!(!prefix_matches("/admin", "/admin/", true));
        assert!(!prefix_matches("/administrator/", "/admin/", true));
    }

    /// Matrix parameters do not let a path slip past a prefix.
    #[test]
    fn prefix_matrix_params() {
        assert!(prefix_matches("/admin;x=1", "/admin", true));
        assert!(prefix_matches("/admin;x/secret", "/admin/", true));
        assert!(prefix_matches("/admin%3Bx/secret", "/admin", true));
    }

    /// Multi-segment prefixes compare every segment.
    #[test]
    fn prefix_multi_segment() {
        assert!(prefix_matches("/api/v1/users", "/api/v1", true));
        assert!(!prefix_matches("/api/v10/users", "/api/v1", true));
        assert!(!prefix_matches("/api", "/api/v1", true));
    }

    /// Malformed prefixes and paths match nothing.
    #[test]
    fn prefix_malformed() {
        assert!(!prefix_matches("/a", "", true));
        assert!(!prefix_matches("/a", "a", true));
        assert!(!prefix_matches("a", "/", true));
    }
}

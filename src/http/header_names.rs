//! Header names for identity-header scrubbing, used when the gateway builds
//! the request it forwards to a backend.
//!
//! The gateway tells backends who the user is through headers it sets itself
//! (`X-Auth-User` and the like), so any copy of those headers arriving from
//! the client must be removed first. Removing only exact case-insensitive
//! matches is not enough: CGI, PHP, WSGI and Rails expose headers as
//! `HTTP_X_AUTH_USER`, so a client-sent `X_Auth_User` reaches the application
//! as the same variable; lighttpd's CGI and FastCGI go further and turn every
//! character that is not a letter or digit into '_', so `X.Auth.User` and
//! `X~Auth~User` become `HTTP_X_AUTH_USER` there too. Names are therefore
//! compared in a folded form in which every non-alphanumeric byte is the same.
//! Hop-by-hop headers, and the names a `Connection` header lists, are also
//! dropped before forwarding.

/// The form under which backends (CGI, PHP, Rails, Django, WSGI, lighttpd,
/// Node frameworks) may see a header name: ASCII letters lowercased, digits
/// kept, and every other byte ('_', '.', '~', …) turned into '-'. Two header
/// names that fold to the same key are aliases.
#[must_use]
pub fn fold(name: &str) -> String {
    name.chars().map(fold_char).collect()
}

/// Allocation-free comparison: does `name` fold to the same key as `folded`
/// (already folded)?
///
/// `folded` is folded again on the fly, so a caller that passes
/// `"X_Auth-User"` by mistake still scrubs every alias instead of none.
#[must_use]
pub fn is_alias(name: &str, folded: &str) -> bool {
    name.len() == folded.len()
        && name
            .bytes()
            .zip(folded.bytes())
            .all(|(a, b)| fold_byte(a) == fold_byte(b))
}

/// Allocation-free: does `name`, folded, begin with `folded_prefix` (already folded)?
#[must_use]
pub fn starts_with_alias(name: &str, folded_prefix: &str) -> bool {
    name.len() >= folded_prefix.len()
        && name
            .bytes()
            .zip(folded_prefix.bytes())
            .all(|(a, b)| fold_byte(a) == fold_byte(b))
}

/// Hop-by-hop headers per RFC 9110 §7.6.1 (plus the legacy ones proxies also
/// drop: Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding,
/// Upgrade, Proxy-Authenticate, Proxy-Authorization). Lowercase, so they can
/// be compared with [`is_alias`] or used directly as `http` header names.
///
/// `upgrade` is listed because it is hop-by-hop; a WebSocket-proxying path
/// has to re-add it deliberately for the upstream leg.
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
    // The settings of an `Upgrade: h2c` (RFC 7540 §3.2.1): connection-specific,
    // and the gateway never forwards an h2c upgrade.
    "http2-settings",
];

/// Parse a `Connection` header value into the lowercase header names it lists
/// (comma separated, trimmed, empty items skipped, invalid tokens skipped).
///
/// A client can list any header here, including identity headers the
/// gateway itself sets, asking a naive proxy to strip them. Callers must
/// therefore drop the listed headers from the client's request *before*
/// adding the gateway's own headers, never after.
pub fn connection_tokens(value: &str) -> impl Iterator<Item = String> + '_ {
    value
        .split(',')
        // RFC 9110 OWS is only space and horizontal tab.
        .map(|item| item.trim_matches([' ', '\t']))
        .filter(|item| !item.is_empty() && item.bytes().all(is_tchar))
        .map(str::to_ascii_lowercase)
}

fn fold_char(c: char) -> char {
    if c.is_ascii_alphanumeric() {
        c.to_ascii_lowercase()
    } else {
        '-'
    }
}

fn fold_byte(b: u8) -> u8 {
    if b.is_ascii_alphanumeric() {
        b.to_ascii_lowercase()
    } else {
        b'-'
    }
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(value: &str) -> Vec<String> {
        connection_tokens(value).collect()
    }

    /// Folding lowercases and maps '_' to '-'.
    #[test]
    fn fold_basic() {
        assert_eq!(fold("X_Auth-User"), "x-auth-user");
    }

    /// Folding an already folded name changes nothing.
    #[test]
    fn fold_idempotent() {
        assert_eq!(fold(&fold("X_AUTH_USER")), "x-auth-user");
    }

    /// Non-ASCII characters fold like any other non-alphanumeric character.
    #[test]
    fn fold_non_ascii() {
        assert_eq!(fold("X-\u{c9}_A"), "x---a");
    }

    /// Every separator a CGI-style server turns into '_' folds to '-'.
    #[test]
    fn fold_other_separators() {
        assert_eq!(fold("X.Auth~User"), "x-auth-user");
        assert_eq!(fold("x!auth#user"), "x-auth-user");
    }

    /// A prefix matches under every alias of its names, and only as a prefix.
    #[test]
    fn prefix_aliases() {
        assert!(starts_with_alias("X_Forwarded_User", "x-forwarded-"));
        assert!(starts_with_alias("x.forwarded.", "x-forwarded-"));
        assert!(!starts_with_alias("x-forwarded", "x-forwarded-"));
        assert!(!starts_with_alias("y-x-forwarded-user", "x-forwarded-"));
    }

    /// The canonical spelling is an alias.
    #[test]
    fn alias_canonical() {
        assert!(is_alias("X-Auth-User", "x-auth-user"));
    }

    /// The lowercase spelling is an alias.
    #[test]
    fn alias_lowercase() {
        assert!(is_alias("x-auth-user", "x-auth-user"));
    }

    /// The CGI-style underscore spelling is an alias.
    #[test]
    fn alias_underscores() {
        assert!(is_alias("X_AUTH_USER", "x-auth-user"));
    }

    /// A mix of underscores, dashes and case is an alias.
    #[test]
    fn alias_mixed() {
        assert!(is_alias("x_Auth-user", "x-auth-user"));
    }

    /// A longer name is not an alias.
    #[test]
    fn not_alias_longer() {
        assert!(!is_alias("X-Auth-Users", "x-auth-user"));
    }

    /// A shorter name is not an alias.
    #[test]
    fn not_alias_shorter() {
        assert!(!is_alias("X-Auth-Use", "x-auth-user"));
    }

    /// A name differing in one letter is not an alias.
    #[test]
    fn not_alias_different() {
        assert!(!is_alias("X-Auth-Usex", "x-auth-user"));
    }

    /// Other separators are aliases too (lighttpd maps them all to '_').
    #[test]
    fn alias_other_separator() {
        assert!(is_alias("X.Auth.User", "x-auth-user"));
        assert!(is_alias("x~auth|user", "x-auth-user"));
    }

    /// Separators do not stand for letters or digits.
    #[test]
    fn not_alias_separator_for_letter() {
        assert!(!is_alias("X-Auth-Use-", "x-auth-user"));
        assert!(!is_alias("X-Auth-Level", "x-auth-leve1"));
    }

    /// An unfolded second argument still matches every alias.
    #[test]
    fn alias_unfolded_key() {
        assert!(is_alias("x-auth-user", "X_Auth-User"));
    }

    /// Non-ASCII input never panics and never matches an ASCII key.
    #[test]
    fn alias_non_ascii() {
        assert!(!is_alias("x-auth-us\u{e9}", "x-auth-user"));
    }

    /// Every hop-by-hop name is lowercase and already folded.
    #[test]
    fn hop_by_hop_folded() {
        for name in HOP_BY_HOP {
            assert_eq!(fold(name), *name);
        }
    }

    /// The list contains the headers RFC 9110 requires.
    #[test]
    fn hop_by_hop_contents() {
        for name in [
            "connection",
            "keep-alive",
            "te",
            "transfer-encoding",
            "upgrade",
        ] {
            assert!(HOP_BY_HOP.contains(&name), "{name}");
        }
    }

    /// A single token is returned lowercased.
    #[test]
    fn tokens_single() {
        assert_eq!(tokens("Keep-Alive"), ["keep-alive"]);
    }

    /// Spaces and tabs around tokens are trimmed.
    #[test]
    fn tokens_spaces() {
        assert_eq!(
            tokens("  close ,\tX-Auth-User\t,  upgrade"),
            ["close", "x-auth-user", "upgrade"]
        );
    }

    /// Empty items are skipped.
    #[test]
    fn tokens_empty_items() {
        assert_eq!(tokens(",, a,,b , ,"), ["a", "b"]);
    }

    /// Mixed case is lowercased.
    #[test]
    fn tokens_mixed_case() {
        assert_eq!(tokens("TE, X_Auth_USER"), ["te", "x_auth_user"]);
    }

    /// Items that are not tokens are skipped.
    #[test]
    fn tokens_invalid_skipped() {
        assert_eq!(tokens("a b, \"quoted\", c/d, ok, x\u{e9}"), ["ok"]);
    }

    /// An empty or blank value yields nothing.
    #[test]
    fn tokens_empty_value() {
        assert!(tokens("").is_empty());
        assert!(tokens(" \t ").is_empty());
    }
}

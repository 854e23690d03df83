//! Names under `.localhost` (and `localhost` itself) are loopback (RFC 6761 §6.3) whatever
//! the system resolver says, wherever gatehouse resolves a name.

/// Is `host` (no port) a loopback name by RFC 6761?
pub fn is_localhost_name(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    h == "localhost" || h.ends_with(".localhost")
}

/// `authority` with a `.localhost` host replaced by 127.0.0.1 (port kept).
pub fn loopback_authority(authority: &str) -> String {
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(']') || h.ends_with(']') => (h, Some(p)),
        _ => (authority, None),
    };
    if !is_localhost_name(host) {
        return authority.to_string();
    }
    match port {
        Some(p) => format!("127.0.0.1:{p}"),
        None => "127.0.0.1".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `.localhost` names map to 127.0.0.1; others are left alone.
    #[test]
    fn localhost_names() {
        assert_eq!(loopback_authority("app.localhost:3000"), "127.0.0.1:3000");
        assert_eq!(loopback_authority("LOCALHOST:1"), "127.0.0.1:1");
        assert_eq!(loopback_authority("127.0.0.1:3000"), "127.0.0.1:3000");
        assert_eq!(
            loopback_authority("backend.internal:80"),
            "backend.internal:80"
        );
        assert_eq!(loopback_authority("[::1]:80"), "[::1]:80");
        assert!(!is_localhost_name("localhost.evil.com"));
    }
}

//! `branding = { title, logo, stylesheet }` of a site checked: the sign-in pages reached
//! from the site show them (SPEC §6), so a title must be plain text of a sane length and
//! the two URLs must be `https://` URLs (no credentials, a plain host) or paths on the
//! portal — never `javascript:`, `data:`, plain `http:` or a scheme-relative `//host`.
//! The portal's CSP then allows exactly the origins named here, on those pages only.

use super::Branding;
use super::raw::{RawBranding, Str};
use super::validate::Checker;

/// Longest title, in characters.
const MAX_TITLE_CHARS: usize = 100;
/// Longest logo or stylesheet URL, in bytes.
const MAX_URL_BYTES: usize = 2048;

pub(super) fn check(c: &mut Checker, b: &RawBranding, key: &str) -> Branding {
    let k = |name: &str| format!("{key}.{name}");
    let title = b.title.as_ref().and_then(|t| {
        let text = t.get_ref();
        let fine = !text.trim().is_empty()
            && text.chars().count() <= MAX_TITLE_CHARS
            && !text.chars().any(char::is_control);
        if !fine {
            c.error(
                t,
                &k("title"),
                format!(
                    "must be 1-{MAX_TITLE_CHARS} characters of text, without control characters"
                ),
            );
        }
        fine.then(|| text.clone())
    });
    let mut url = |v: &Option<Str>, name: &str| {
        let v = v.as_ref()?;
        match asset_url(v.get_ref()) {
            Ok(()) => Some(v.get_ref().clone()),
            Err(why) => {
                c.error(v, &k(name), format!("{:?} {why}", v.get_ref()));
                None
            }
        }
    };
    let logo = url(&b.logo, "logo");
    let stylesheet = url(&b.stylesheet, "stylesheet");
    Branding {
        title,
        logo,
        stylesheet,
    }
}

/// Is `s` acceptable as a logo or stylesheet URL? The error completes "<url> …".
pub fn asset_url(s: &str) -> Result<(), &'static str> {
    if s.is_empty() || s.len() > MAX_URL_BYTES {
        return Err("must be 1-2048 characters");
    }
    // Nothing that could end an HTML attribute or a CSP source list, or hide in one.
    if s.bytes().any(|b| {
        b.is_ascii_control() || b.is_ascii_whitespace() || b"\"'<>\\`".contains(&b) || !b.is_ascii()
    }) {
        return Err(
            "must be a plain URL: no spaces, quotes, angle brackets, backslashes or non-ASCII characters",
        );
    }
    if let Some(rest) = s.strip_prefix("https://") {
        return https_origin(rest).map(|_| ());
    }
    if s.starts_with('/') && !s.starts_with("//") {
        return Ok(());
    }
    Err("must be an https:// URL or a path on the portal starting with '/'")
}

/// `https://host[:port]` of an https URL's remainder after the scheme, lowercased.
fn https_origin(rest: &str) -> Result<String, &'static str> {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    let port_ok = port.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u16>().is_ok_and(|n| n > 0)
    });
    if !host_ok || !port_ok {
        return Err(
            "must name a plain host (letters, digits, '.', '-') and optional port, without user or password",
        );
    }
    Ok(format!("https://{}", authority.to_ascii_lowercase()))
}

/// The origin a checked asset URL loads from, for the CSP: `None` for a path on the portal
/// (covered by `'self'`).
pub fn asset_origin(url: &str) -> Option<String> {
    https_origin(url.strip_prefix("https://")?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// https URLs and portal paths pass; every other scheme, credentials, odd hosts and
    /// characters that could break out of an attribute or a CSP are refused.
    #[test]
    fn asset_urls() {
        for good in [
            "https://cdn.example.org/brand.css",
            "https://cdn.example.org:8443/a/b.png?v=2",
            "https://example.org",
            "/brand/logo.svg",
        ] {
            assert_eq!(asset_url(good), Ok(()), "{good}");
        }
        for bad in [
            "javascript:alert(1)",
            "JAVASCRIPT:alert(1)",
            "data:image/svg+xml,<svg/>",
            "http://cdn.example.org/a.css",
            "//evil.example/a.css",
            "/\\evil.example/a.css",
            "https://user:pw@cdn.example.org/a.css",
            "https://cdn.example.org:99999/a.css",
            "https://cdn.example.org:/a.css",
            "https:///a.css",
            "https://cdn.example.org/a.css\" onload=\"x",
            "https://cdn.example.org/a.css; script-src *",
            "https://cdn.example.org/a b.css",
            "https://exämple.org/a.css",
            "relative/logo.png",
            "",
        ] {
            assert!(asset_url(bad).is_err(), "{bad} accepted");
        }
    }

    /// The CSP names the asset's origin, lowercased; portal paths need none.
    #[test]
    fn asset_origins() {
        assert_eq!(
            asset_origin("https://CDN.example.org:8443/x.css").as_deref(),
            Some("https://cdn.example.org:8443")
        );
        assert_eq!(
            asset_origin("https://cdn.example.org?x").as_deref(),
            Some("https://cdn.example.org")
        );
        assert_eq!(asset_origin("/logo.png"), None);
    }
}

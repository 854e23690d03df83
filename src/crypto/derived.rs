//! Derived site passwords (SPEC §5): `SP = lowercase hex(SHA-1(master_password || derive_id))`.
//!
//! The portal derives one SP per derived site at the moment the user types their password
//! (the only time the master password exists), keeps the SPs in memory with the session,
//! and the gate sends `Authorization: Basic base64(user ":" SP)` to the backend. An SP is a
//! secret like any password: it never reaches a log, the store or a browser.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::HeaderValue;
use sha1::{Digest, Sha1};
use zeroize::Zeroizing;

/// One site's derived password. Debug prints `[redacted]`; the text is wiped when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct SitePassword(Zeroizing<String>);

impl SitePassword {
    /// Derive the SP of the site whose `backend_auth.derive_id` is `derive_id`.
    pub fn derive(master_password: &str, derive_id: &str) -> SitePassword {
        let mut sha = Sha1::new();
        sha.update(master_password.as_bytes());
        sha.update(derive_id.as_bytes());
        let digest = sha.finalize();
        let mut hex = Zeroizing::new(String::with_capacity(40));
        for byte in digest.iter() {
            hex.push(char::from(HEX[usize::from(byte >> 4)]));
            hex.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        SitePassword(hex)
    }

    /// The SP itself, for `gatehouse derive` (which prints it) and for building the header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Sent to an edge inside an admission (`central::wire`), over TLS only.
impl serde::Serialize for SitePassword {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Only what [`SitePassword::derive`] makes: 40 lowercase hex digits.
impl<'de> serde::Deserialize<'de> for SitePassword {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Zeroizing::new(String::deserialize(d)?);
        if s.len() == 40 && s.bytes().all(|b| HEX.contains(&b)) {
            Ok(SitePassword(s))
        } else {
            Err(serde::de::Error::custom("not a site password"))
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl std::fmt::Debug for SitePassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SitePassword([redacted])")
    }
}

/// `Basic base64(user ":" password)`, marked sensitive (HTTP/2 HPACK never indexes it, and
/// its Debug prints `Sensitive`). `None` when the user cannot be put in a Basic credential.
pub fn basic_authorization(user: &str, password: &str) -> Option<HeaderValue> {
    if user.contains(':') || user.chars().any(char::is_control) {
        return None;
    }
    let plain = Zeroizing::new(format!("{user}:{password}"));
    let value = Zeroizing::new(format!("Basic {}", STANDARD.encode(plain.as_bytes())));
    let mut header = HeaderValue::from_str(&value).ok()?;
    header.set_sensitive(true);
    Some(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SP is the lowercase hex SHA-1 of the master password followed by the site data.
    #[test]
    fn derives_sha1_hex() {
        // printf '%s' 'passwordapp.localhost' | sha1sum
        let sp = SitePassword::derive("password", "app.localhost");
        assert_eq!(sp.expose().len(), 40);
        assert!(sp.expose().bytes().all(|b| HEX.contains(&b)));
        assert_eq!(sp, SitePassword::derive("passwordapp", ".localhost"));
        assert_ne!(sp, SitePassword::derive("password", "wiki.localhost"));
        // Known answer: SHA-1("abc") split as master "a" + derive_id "bc".
        assert_eq!(
            SitePassword::derive("a", "bc").expose(),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }

    /// Debug never shows the SP.
    #[test]
    fn debug_is_redacted() {
        let sp = SitePassword::derive("a", "bc");
        assert_eq!(format!("{sp:?}"), "SitePassword([redacted])");
    }

    /// The header is Basic base64(user:SP) and marked sensitive; bad user names are refused.
    #[test]
    fn basic_header() {
        let h = basic_authorization("alice", "s3cret").unwrap();
        assert!(h.is_sensitive());
        assert_eq!(h.to_str().unwrap(), "Basic YWxpY2U6czNjcmV0");
        assert!(basic_authorization("a:b", "x").is_none());
        assert!(basic_authorization("a\nb", "x").is_none());
    }
}

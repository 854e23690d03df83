//! Identifiers (cookie values, one-time codes) and their hashes.
//!
//! An identifier is 256 bits from the operating system's CSPRNG, written base64url. Servers
//! keep and exchange only its SHA-256 hash ([`IdHash`]), so a leaked table or log line never
//! holds a usable cookie.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// `N` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // Internal: without an OS random source nothing here can be safe; stopping is the only
    // correct answer, and getrandom fails only on broken platforms.
    getrandom::fill(&mut buf).expect("the operating system's random source failed");
    buf
}

/// A fresh secret identifier. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Identifier(String);

impl Identifier {
    pub fn new() -> Self {
        Identifier(URL_SAFE_NO_PAD.encode(random_bytes::<32>()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> IdHash {
        IdHash::of(self.0.as_bytes())
    }
}

impl Default for Identifier {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Identifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Identifier(<redacted>)")
    }
}

/// SHA-256 of an identifier: what servers store and send instead of the identifier.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdHash(pub [u8; 32]);

impl IdHash {
    pub fn of(value: &[u8]) -> Self {
        IdHash(Sha256::digest(value).into())
    }

    pub fn to_b64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    pub fn from_b64(s: &str) -> Option<Self> {
        if s.len() != 43 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(s).ok()?;
        Some(IdHash(bytes.try_into().ok()?))
    }
}

impl std::fmt::Debug for IdHash {
    /// A short prefix is enough to correlate log lines; the full hash is not needed there.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "IdHash({:02x}{:02x}{:02x}{:02x}…)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

/// Is `s` shaped like an identifier we issued (43 base64url characters)? Checked before
/// hashing so that junk cookies cost nothing.
pub fn looks_like_identifier(s: &str) -> bool {
    s.len() == 43
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fresh identifiers are 43 base64url chars and differ.
    #[test]
    fn identifiers_are_random_and_well_formed() {
        let a = Identifier::new();
        let b = Identifier::new();
        assert_ne!(a, b);
        assert!(looks_like_identifier(a.as_str()));
        assert_eq!(format!("{a:?}"), "Identifier(<redacted>)");
    }

    /// Hashes survive base64 round-trips; junk is refused.
    #[test]
    fn hash_round_trip() {
        let h = Identifier::new().hash();
        assert_eq!(IdHash::from_b64(&h.to_b64()), Some(h));
        assert_eq!(IdHash::from_b64("short"), None);
        assert_eq!(IdHash::from_b64(&"!".repeat(43)), None);
    }
}

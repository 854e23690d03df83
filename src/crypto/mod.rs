//! Cryptographic building blocks: random identifiers and their hashes, password hashing
//! (argon2id, and hashes imported from htpasswd), derived site passwords, keyed hashes
//! (CSRF tokens, Basic-credential keys) and constant-time comparison.

pub mod derived;
pub mod htpasswd;
pub mod ids;
pub mod password;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub use ids::{IdHash, Identifier, random_bytes};

/// A server-side secret key (CSRF tokens, table keys for Basic credentials).
#[derive(Clone)]
pub struct Key([u8; 32]);

impl Key {
    pub fn random() -> Self {
        Key(random_bytes())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Key(bytes)
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// HMAC-SHA-256 over the parts, each length-prefixed so that ("ab","c") ≠ ("a","bc").
    pub fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes any key length");
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

/// Constant-time equality for secrets (tokens, MACs).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Length prefixes keep differently split inputs apart.
    #[test]
    fn mac_parts_are_unambiguous() {
        let k = Key::from_bytes([7; 32]);
        assert_ne!(k.mac(&[b"ab", b"c"]), k.mac(&[b"a", b"bc"]));
        assert_eq!(k.mac(&[b"ab", b"c"]), k.mac(&[b"ab", b"c"]));
    }

    /// ct_eq compares contents and lengths.
    #[test]
    fn constant_time_eq() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}

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
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct IdHash(pub [u8; 32]);

impl std::hash::Hash for IdHash {
    /// The value is already a uniform hash: 8 of its bytes are enough to place it in a
    /// table (see [`KeyedIdHasher`] for why that stays safe against chosen inputs).
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(word));
    }
}

/// A cheap hasher for tables keyed by [`IdHash`] (the gate's table, on every request).
///
/// The bytes are already SHA-256 output, but a signed-in user chooses the cookie whose
/// hash becomes a key, and so could grind hashes that share table buckets. Mixing with a
/// per-process secret (one 128-bit multiply) makes bucket positions unpredictable, at a
/// fraction of SipHash's cost.
#[derive(Clone)]
pub struct KeyedIdHasher {
    keys: (u64, u64),
    state: u64,
}

impl std::hash::Hasher for KeyedIdHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Not used by IdHash; any other input is still mixed, word by word.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, x: u64) {
        let product = u128::from(x ^ self.state ^ self.keys.0) * u128::from(self.keys.1);
        self.state = (product as u64) ^ ((product >> 64) as u64);
    }

    fn finish(&self) -> u64 {
        self.state
    }
}

/// Builds [`KeyedIdHasher`]s with keys drawn once per table.
#[derive(Clone)]
pub struct KeyedIdHashBuilder {
    keys: (u64, u64),
}

impl Default for KeyedIdHashBuilder {
    fn default() -> Self {
        let k: [u8; 16] = random_bytes();
        let (a, b) = k.split_at(8);
        let word = |s: &[u8]| u64::from_le_bytes(s.try_into().unwrap_or([1; 8]));
        // An odd multiplier keeps the multiply a bijection on the low word.
        KeyedIdHashBuilder {
            keys: (word(a), word(b) | 1),
        }
    }
}

impl std::hash::BuildHasher for KeyedIdHashBuilder {
    type Hasher = KeyedIdHasher;

    fn build_hasher(&self) -> KeyedIdHasher {
        KeyedIdHasher {
            keys: self.keys,
            state: 0,
        }
    }
}

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

/// On the portal API (`central::wire`): base64url, as everywhere else.
impl serde::Serialize for IdHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_b64())
    }
}

impl<'de> serde::Deserialize<'de> for IdHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        IdHash::from_b64(&s).ok_or_else(|| serde::de::Error::custom("not an identifier hash"))
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

    /// The keyed hasher spreads keys and differs between builders (tables).
    #[test]
    fn keyed_hasher_spreads() {
        use std::hash::BuildHasher;
        let b1 = KeyedIdHashBuilder::default();
        let b2 = KeyedIdHashBuilder::default();
        let h = Identifier::new().hash();
        assert_ne!(b1.hash_one(h), b2.hash_one(h));
        let buckets: std::collections::HashSet<u64> = (0..1000)
            .map(|_| b1.hash_one(Identifier::new().hash()) % 64)
            .collect();
        assert_eq!(buckets.len(), 64);
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

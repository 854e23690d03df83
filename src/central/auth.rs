//! How an edge proves to the portal that a request comes from the cluster (SPEC `[cluster]`
//! `secret_file`): not a static bearer token, which anyone who sees one request could replay
//! for ever, but an HMAC-SHA256 over the request, fresh for each one.
//!
//! The `Gatehouse-Signature` header carries `t=<unix seconds>,n=<nonce>,b=<SHA-256 of the
//! body>,s=<MAC>`, the MAC covering method, path, t, n and b. The portal checks the MAC
//! before it reads the body (so nobody without the secret can make it buffer one), then the
//! body against `b`; it refuses a timestamp more than [`WINDOW`] away from its clock and a
//! nonce it has already seen within that window (a replay).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

pub const HEADER: &str = "gatehouse-signature";
/// How far a request's timestamp may be from the portal's clock, either way.
pub const WINDOW: Duration = Duration::from_secs(30);
/// A secret shorter than this is refused by the config check.
pub const MIN_SECRET_BYTES: usize = 32;

/// The cluster's shared secret. Debug prints `[redacted]`; wiped when dropped.
#[derive(Clone)]
pub struct ClusterSecret(Zeroizing<Vec<u8>>);

impl ClusterSecret {
    pub fn new(bytes: Vec<u8>) -> Self {
        ClusterSecret(Zeroizing::new(bytes))
    }

    fn mac(&self, method: &str, path: &str, t: u64, nonce: &str, body_hash: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC takes a key of any length");
        for part in [
            "gatehouse-cluster-v1",
            method,
            path,
            &t.to_string(),
            nonce,
            body_hash,
        ] {
            mac.update(part.as_bytes());
            mac.update(b"\n");
        }
        mac.finalize().into_bytes().into()
    }

    /// A key for another purpose, the same wherever this secret is (HMAC of a label).
    pub fn derive_key(&self, label: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC takes a key of any length");
        mac.update(b"gatehouse-cluster-key\n");
        mac.update(label.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The header value signing a request, made now.
    pub fn sign(&self, method: &str, path: &str, body: &[u8]) -> String {
        let nonce = URL_SAFE_NO_PAD.encode(crate::crypto::ids::random_bytes::<16>());
        self.sign_at(method, path, body, unix_now(), &nonce)
    }

    fn sign_at(&self, method: &str, path: &str, body: &[u8], t: u64, nonce: &str) -> String {
        let b = body_hash(body);
        let s = URL_SAFE_NO_PAD.encode(self.mac(method, path, t, nonce, &b));
        format!("t={t},n={nonce},b={b},s={s}")
    }

    /// Check a header's MAC and timestamp (not yet the body, nor replays: see
    /// [`Signed::body_matches`] and the portal's nonce cache).
    pub fn verify(&self, header: &str, method: &str, path: &str) -> Result<Signed, Refusal> {
        self.verify_at(header, method, path, unix_now())
    }

    fn verify_at(
        &self,
        header: &str,
        method: &str,
        path: &str,
        now: u64,
    ) -> Result<Signed, Refusal> {
        let mut t = None;
        let (mut n, mut b, mut s) = (None, None, None);
        for part in header.split(',') {
            let (k, v) = part.trim().split_once('=').ok_or(Refusal::Malformed)?;
            let slot = match k {
                "t" => {
                    let parsed = v.parse::<u64>().map_err(|_| Refusal::Malformed)?;
                    if t.replace(parsed).is_some() {
                        return Err(Refusal::Malformed);
                    }
                    continue;
                }
                "n" => &mut n,
                "b" => &mut b,
                "s" => &mut s,
                _ => return Err(Refusal::Malformed),
            };
            if slot.replace(v).is_some() {
                return Err(Refusal::Malformed);
            }
        }
        let (Some(t), Some(n), Some(b), Some(s)) = (t, n, b, s) else {
            return Err(Refusal::Malformed);
        };
        if n.is_empty() || n.len() > 64 || b.len() != 43 {
            return Err(Refusal::Malformed);
        }
        let given = URL_SAFE_NO_PAD.decode(s).map_err(|_| Refusal::Malformed)?;
        let expected = self.mac(method, path, t, n, b);
        if !crate::crypto::ct_eq(&given, &expected) {
            return Err(Refusal::BadSignature);
        }
        if now.abs_diff(t) > WINDOW.as_secs() {
            return Err(Refusal::Stale);
        }
        Ok(Signed {
            nonce: n.to_string(),
            body_hash: b.to_string(),
        })
    }
}

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret([redacted])")
    }
}

/// A request whose signature checked out.
#[derive(Debug)]
pub struct Signed {
    /// Seen once only within [`WINDOW`] (the caller keeps the set).
    pub nonce: String,
    body_hash: String,
}

impl Signed {
    pub fn body_matches(&self, body: &[u8]) -> bool {
        crate::crypto::ct_eq(self.body_hash.as_bytes(), body_hash(body).as_bytes())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no or malformed signature header")]
    Malformed,
    #[error("the signature does not match (wrong secret, or the request was altered)")]
    BadSignature,
    #[error("the signature's timestamp is outside the validity window (check the clocks)")]
    Stale,
    #[error("the body does not match the signed hash")]
    BodyMismatch,
    #[error("a replay of a request already served")]
    Replay,
}

fn body_hash(body: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(body))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(byte: u8) -> ClusterSecret {
        ClusterSecret::new(vec![byte; 32])
    }

    #[test]
    fn signed_request_verifies_and_binds_everything() {
        let k = secret(7);
        let h = k.sign_at("POST", "/.gatehouse/api/v1/sync", b"{}", 1000, "abc");
        let ok = k
            .verify_at(&h, "POST", "/.gatehouse/api/v1/sync", 1010)
            .unwrap();
        assert!(ok.body_matches(b"{}"));
        assert!(!ok.body_matches(b"{ }"));
        assert_eq!(ok.nonce, "abc");
        let bad = |r: Result<Signed, Refusal>| {
            assert_eq!(r.map(|_| ()).unwrap_err(), Refusal::BadSignature)
        };
        bad(k.verify_at(&h, "GET", "/.gatehouse/api/v1/sync", 1000));
        bad(k.verify_at(&h, "POST", "/.gatehouse/api/v1/check", 1000));
        bad(secret(8).verify_at(&h, "POST", "/.gatehouse/api/v1/sync", 1000));
        let other_nonce = h.replace("n=abc", "n=abd");
        bad(k.verify_at(&other_nonce, "POST", "/.gatehouse/api/v1/sync", 1000));
        let other_time = h.replace("t=1000", "t=1001");
        bad(k.verify_at(&other_time, "POST", "/.gatehouse/api/v1/sync", 1000));
    }

    #[test]
    fn stale_and_malformed_are_refused() {
        let k = secret(7);
        let h = k.sign_at("POST", "/p", b"", 1000, "n1");
        assert_eq!(
            k.verify_at(&h, "POST", "/p", 1031).unwrap_err(),
            Refusal::Stale
        );
        assert_eq!(
            k.verify_at(&h, "POST", "/p", 969).unwrap_err(),
            Refusal::Stale
        );
        assert!(k.verify_at(&h, "POST", "/p", 1030).is_ok());
        for bad in [
            "",
            "t=1000",
            "garbage",
            "t=x,n=a,b=b,s=c",
            &format!("{h},n=again"),
            &format!("{h},z=1"),
            &format!("{h},t=1000"),
        ] {
            assert_eq!(
                k.verify_at(bad, "POST", "/p", 1000).unwrap_err(),
                Refusal::Malformed,
                "{bad}"
            );
        }
        assert_eq!(format!("{k:?}"), "ClusterSecret([redacted])");
    }
}

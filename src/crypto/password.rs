//! Passwords: argon2id hashing, and verification off the async reactor with bounded
//! concurrency so that a flood of sign-ins cannot starve proxied traffic.

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

/// Longest password accepted; longer input is refused before any hashing (cheap DoS guard).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Longest user name looked up (form or Basic); longer input is refused before touching the
/// store, and its password is checked against nothing but the length cap.
pub const MAX_USERNAME_BYTES: usize = 256;

/// Hash a password to an argon2id PHC string with a random salt and the crate's defaults
/// (m=19456 KiB, t=2, p=1: OWASP's recommendation).
pub fn hash(password: &str) -> String {
    Argon2::default()
        .hash_password(password.as_bytes())
        .expect("argon2 with default parameters cannot fail on any password")
        .to_string()
}

/// Check `password` against a stored hash: an argon2id PHC string, or a hash imported from
/// htpasswd (see [`super::htpasswd`]). Any malformed or unknown hash verifies as false.
pub fn verify_blocking(stored: &str, password: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    if !stored.starts_with("$argon2") {
        return super::htpasswd::verify(stored, password);
    }
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

pub fn is_phc_argon2id(s: &str) -> bool {
    s.starts_with("$argon2id$") && PasswordHash::new(s).is_ok()
}

/// Should this stored hash be replaced by argon2id at the user's next successful sign-in?
/// True for the forms imported from htpasswd.
pub fn needs_rehash(stored: &str) -> bool {
    !stored.starts_with("$argon2id$")
}

/// Runs password verifications (argon2id, and imported htpasswd hashes alike) on tokio's
/// blocking pool, at most `limit` at a time. A slot is held until its hash has finished,
/// not until its caller stops waiting: a client that posts a password and hangs up does not
/// free a slot for another hash while its own still runs on the pool.
#[derive(Clone)]
pub struct Verifier {
    permits: Arc<Semaphore>,
    /// Hash checked when the user does not exist, so unknown users cost the same time.
    decoy: Arc<str>,
}

impl Verifier {
    pub fn new(limit: usize) -> Self {
        Verifier {
            permits: Arc::new(Semaphore::new(limit.max(1))),
            decoy: hash("decoy password").into(),
        }
    }

    /// Verify against `phc`, or against a decoy (always false) when the user is unknown.
    /// An imported htpasswd hash is also followed by the decoy: apr1 or a cheap bcrypt
    /// would otherwise answer faster than argon2id and tell which users were imported.
    pub async fn verify(&self, phc: Option<String>, password: Zeroizing<String>) -> bool {
        let known = phc.is_some();
        let legacy = phc.as_deref().is_some_and(needs_rehash);
        let phc = phc.unwrap_or_else(|| self.decoy.to_string());
        let decoy = self.decoy.clone();
        let ok = self
            .run(move || {
                let ok = verify_blocking(&phc, &password);
                if legacy {
                    let _ = verify_blocking(&decoy, &password);
                }
                ok
            })
            .await
            .unwrap_or(false);
        ok && known
    }

    /// Hash a new password on the blocking pool, under the same limit.
    pub async fn hash(&self, password: Zeroizing<String>) -> Option<String> {
        self.run(move || hash(&password)).await
    }

    /// Run `work` on the blocking pool once a slot is free, the slot going with it; `None`
    /// if it could not run to the end (it panicked).
    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let slot = self.permits.clone().acquire_owned().await.ok()?;
        tokio::task::spawn_blocking(move || {
            let answer = work();
            drop(slot);
            answer
        })
        .await
        .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hash verifies its own password and nothing else.
    #[test]
    fn hash_and_verify() {
        let h = hash("correct horse");
        assert!(is_phc_argon2id(&h));
        assert!(verify_blocking(&h, "correct horse"));
        assert!(!verify_blocking(&h, "wrong"));
        assert!(!verify_blocking("not a hash", "correct horse"));
    }

    /// Over-long passwords are refused before any hashing, even the right one; the longest
    /// allowed one still works.
    #[test]
    fn long_passwords_refused_unhashed() {
        let long = "x".repeat(MAX_PASSWORD_BYTES + 1);
        assert!(!verify_blocking(&hash(&long), &long));
        let longest = "y".repeat(MAX_PASSWORD_BYTES);
        assert!(verify_blocking(&hash(&longest), &longest));
    }

    /// A caller that stops waiting does not free its slot while its hash still runs: with
    /// one slot, the next check waits until the abandoned one has finished.
    #[tokio::test]
    async fn abandoned_check_keeps_its_slot() {
        let v = Verifier::new(1);
        let (release, released) = std::sync::mpsc::channel::<()>();
        let (started, has_started) = tokio::sync::oneshot::channel();
        let abandoned = tokio::spawn({
            let v = v.clone();
            async move {
                v.run(move || {
                    let _ = started.send(());
                    let _ = released.recv();
                })
                .await
            }
        });
        has_started.await.unwrap();
        abandoned.abort();
        assert!(abandoned.await.unwrap_err().is_cancelled());
        let free = v.permits.available_permits();
        assert_eq!(free, 0, "slot freed while its work still runs");
        let next = tokio::spawn({
            let v = v.clone();
            async move { v.run(|| 7).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let ran_beside = next.is_finished();
        assert!(!ran_beside, "two checks ran at once on one slot");
        release.send(()).unwrap();
        assert_eq!(next.await.unwrap(), Some(7));
        assert_eq!(v.permits.available_permits(), 1);
    }

    /// A panic in a check is a refusal, and frees its slot.
    #[tokio::test]
    async fn panicking_check_refuses() {
        let v = Verifier::new(1);
        assert_eq!(v.run(|| -> bool { panic!("test panic") }).await, None);
        assert_eq!(v.run(|| true).await, Some(true));
    }

    /// Unknown users never verify, even with the decoy's password.
    #[tokio::test]
    async fn unknown_user_never_verifies() {
        let v = Verifier::new(1);
        let pw = |s: &str| Zeroizing::new(s.to_string());
        assert!(!v.verify(None, pw("decoy password")).await);
        let h = hash("pw");
        assert!(v.verify(Some(h), pw("pw")).await);
        let imported = super::super::htpasswd::apr1("pw", "salt");
        assert!(v.verify(Some(imported.clone()), pw("pw")).await);
        assert!(!v.verify(Some(imported), pw("other")).await);
        assert!(needs_rehash("{SHA}x") && !needs_rehash(&hash("pw")));
    }
}

//! API clients on `allow_basic` sites: `Authorization: Basic`. The first request of a
//! credential is verified by the portal (argon2id); later ones hit the table under a keyed
//! hash of the credential — the table never holds the password. Failures are never cached.

use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use http::header::AUTHORIZATION;
use zeroize::Zeroizing;

use super::table::Entry;
use super::{Gate, SiteRuntime};
use crate::central::BasicVerdict;
use crate::config::SiteId;
use crate::crypto::password::{MAX_PASSWORD_BYTES, MAX_USERNAME_BYTES};
use crate::crypto::{IdHash, Key};
use crate::http::error::HttpError;

/// A Basic credential, decoded.
pub struct Credential {
    user: String,
    /// Wiped when the request is done with it (on a derived site it is a master password).
    password: Zeroizing<String>,
}

impl Credential {
    /// The table key of this credential on `site`: a keyed hash of what it decodes to, not
    /// of the header as sent. The header's spellings of one credential (`Basic`, `basic`,
    /// extra spaces) are then one key: keyed by the raw bytes, a client could make every
    /// request miss the table, each costing the portal an argon2id verification and a
    /// session of its own.
    pub(super) fn key(&self, basic_key: &Key, site: &SiteId) -> IdHash {
        IdHash(basic_key.mac(&[
            b"basic",
            site.0.as_bytes(),
            self.user.as_bytes(),
            self.password.as_bytes(),
        ]))
    }
}

/// `None`: no Basic header; `Some(Err)`: a malformed one (401, never forwarded).
pub fn credential(headers: &HeaderMap) -> Option<Result<Credential, HttpError>> {
    let value = headers.get(AUTHORIZATION)?;
    let Ok(text) = value.to_str() else {
        return Some(Err(HttpError::Unauthorized { basic: true }));
    };
    let (scheme, rest) = text.trim().split_once(' ').unwrap_or((text.trim(), ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    Some(parse(rest.trim()))
}

fn parse(b64: &str) -> Result<Credential, HttpError> {
    let refused = HttpError::Unauthorized { basic: true };
    if b64.len() > 4 * (MAX_USERNAME_BYTES + MAX_PASSWORD_BYTES) / 3 + 8 {
        return Err(refused);
    }
    let decoded = Zeroizing::new(
        STANDARD
            .decode(b64)
            .map_err(|_| HttpError::Unauthorized { basic: true })?,
    );
    let text = Zeroizing::new(
        String::from_utf8(decoded.to_vec()).map_err(|_| HttpError::Unauthorized { basic: true })?,
    );
    let Some((user, password)) = text.split_once(':') else {
        return Err(refused);
    };
    if user.is_empty() || user.len() > MAX_USERNAME_BYTES || password.len() > MAX_PASSWORD_BYTES {
        return Err(refused);
    }
    Ok(Credential {
        user: user.to_string(),
        password: Zeroizing::new(password.to_string()),
    })
}

impl Gate {
    pub(super) async fn identify_basic(
        &self,
        site: &SiteRuntime,
        c: Credential,
        peer: IpAddr,
    ) -> Result<Arc<Entry>, HttpError> {
        let key = c.key(&self.basic_key, &site.config.id);
        if let Some(entry) = self.table.get(&key)
            && entry.site() == site.index
        {
            return Ok(entry);
        }
        match self
            .central
            .verify_basic(&site.config.id, &c.user, &c.password, key, peer)
            .await
        {
            Ok(BasicVerdict::Admitted(admission)) => {
                let entry = self
                    .admit(site, key, &admission)
                    .ok_or(HttpError::Forbidden)?;
                // This request's traffic counts on the new entry: report it at the next sync.
                self.table.mark_used(&key, &entry);
                Ok(entry)
            }
            Ok(BasicVerdict::Refused) => {
                let user: String = c.user.chars().take(64).collect();
                tracing::info!(site = %site.config.id, peer = %peer, user = %user, "basic credentials refused");
                Err(HttpError::Unauthorized { basic: true })
            }
            Ok(BasicVerdict::Throttled(retry_after)) => {
                Err(HttpError::TooManyAttempts { retry_after })
            }
            Err(e) => Err(HttpError::PortalDown(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    /// Well-formed Basic credentials split at the first colon.
    #[test]
    fn parses_basic() {
        let h = with(&format!("Basic {}", STANDARD.encode("alice:pa:ss")));
        let c = credential(&h).unwrap().ok().unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("alice", "pa:ss"));
    }

    /// One credential is one key, however the header spells it; another password, user
    /// or site is another key.
    #[test]
    fn key_depends_on_the_credential_not_its_spelling() {
        let k = Key::random();
        let site = SiteId("app".into());
        let key = |value: &str, site: &SiteId| {
            credential(&with(value))
                .unwrap()
                .ok()
                .unwrap()
                .key(&k, site)
        };
        let b64 = STANDARD.encode("alice:secret");
        let one = key(&format!("Basic {b64}"), &site);
        assert_eq!(one, key(&format!("basic   {b64}"), &site));
        assert_eq!(one, key(&format!("  BASIC {b64} "), &site));
        assert_ne!(
            one,
            key(&format!("Basic {}", STANDARD.encode("alice:secreT")), &site)
        );
        assert_ne!(
            one,
            key(&format!("Basic {}", STANDARD.encode("Alice:secret")), &site)
        );
        assert_ne!(one, key(&format!("Basic {b64}"), &SiteId("wiki".into())));
    }

    /// Other schemes are not ours; malformed Basic is refused.
    #[test]
    fn refuses_malformed() {
        assert!(credential(&with("Bearer abc")).is_none());
        assert!(credential(&HeaderMap::new()).is_none());
        assert!(credential(&with("Basic !!!")).unwrap().is_err());
        assert!(credential(&with("Basic")).unwrap().is_err());
        assert!(
            credential(&with(&format!("Basic {}", STANDARD.encode("nocolon"))))
                .unwrap()
                .is_err()
        );
        assert!(
            credential(&with(&format!("Basic {}", STANDARD.encode(":pw"))))
                .unwrap()
                .is_err()
        );
        let long = format!("u:{}", "x".repeat(2000));
        assert!(
            credential(&with(&format!("Basic {}", STANDARD.encode(long))))
                .unwrap()
                .is_err()
        );
    }
}

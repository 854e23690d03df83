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
use crate::crypto::IdHash;
use crate::crypto::password::{MAX_PASSWORD_BYTES, MAX_USERNAME_BYTES};
use crate::http::error::HttpError;

/// A Basic credential as sent: the raw header value (for the key) and its parts.
pub struct Credential<'a> {
    raw: &'a [u8],
    user: String,
    /// Wiped when the request is done with it (on a derived site it is a master password).
    password: Zeroizing<String>,
}

/// `None`: no Basic header; `Some(Err)`: a malformed one (401, never forwarded).
pub fn credential(headers: &HeaderMap) -> Option<Result<Credential<'_>, HttpError>> {
    let value = headers.get(AUTHORIZATION)?;
    let raw = value.as_bytes();
    let Ok(text) = value.to_str() else {
        return Some(Err(HttpError::Unauthorized { basic: true }));
    };
    let (scheme, rest) = text.trim().split_once(' ').unwrap_or((text.trim(), ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    Some(parse(raw, rest.trim()))
}

fn parse<'a>(raw: &'a [u8], b64: &str) -> Result<Credential<'a>, HttpError> {
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
        raw,
        user: user.to_string(),
        password: Zeroizing::new(password.to_string()),
    })
}

impl Gate {
    pub(super) async fn identify_basic(
        &self,
        site: &SiteRuntime,
        c: Credential<'_>,
        peer: IpAddr,
    ) -> Result<Arc<Entry>, HttpError> {
        let key = IdHash(
            self.basic_key
                .mac(&[b"basic", site.config.id.0.as_bytes(), c.raw]),
        );
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

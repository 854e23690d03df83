//! The portal API's messages (JSON), one request and one answer per [`Central`] call, and
//! their conversions to the in-process types. Paths are under [`PREFIX`] on the portal's
//! host; every request is signed ([`super::auth`]).
//!
//! Identifier hashes travel as base64url (43 characters). Durations travel in milliseconds.
//! A site password (SPEC §5) travels only inside an admission, over TLS, to an edge that
//! proved it holds the cluster secret; none of these types prints it (see `SitePassword`).
//!
//! [`Central`]: super::Central

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Admission, BasicVerdict, SyncReply, SyncReport, Usage};
use crate::config::{Level, SiteId};
use crate::crypto::IdHash;
use crate::crypto::derived::SitePassword;

pub const PREFIX: &str = "/.gatehouse/api/v1/";
pub const REDEEM: &str = "/.gatehouse/api/v1/redeem";
pub const CHECK: &str = "/.gatehouse/api/v1/check";
pub const BASIC: &str = "/.gatehouse/api/v1/basic";
pub const SYNC: &str = "/.gatehouse/api/v1/sync";

/// Largest request body the portal reads: a sync of a very busy edge (about 120 bytes per
/// active entry with its traffic; 1 000 000 entries fit).
pub const MAX_BODY: usize = 160 << 20;

#[derive(Serialize, Deserialize)]
pub struct RedeemRequest {
    pub code: String,
    pub cookie: IdHash,
    pub site: String,
}

#[derive(Serialize, Deserialize)]
pub struct CheckRequest {
    pub cookie: IdHash,
    pub site: String,
}

/// Answer to redeem and check: `null` when nobody is admitted.
pub type AdmissionAnswer = Option<WireAdmission>;

#[derive(Serialize, Deserialize)]
pub struct BasicRequest {
    pub site: String,
    pub user: String,
    pub password: String,
    pub key: IdHash,
    pub peer: IpAddr,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum BasicAnswer {
    Admitted { admission: WireAdmission },
    Refused,
    Throttled { retry_after_ms: u64 },
}

#[derive(Serialize, Deserialize)]
pub struct WireAdmission {
    pub user: String,
    pub account: String,
    pub level: u32,
    pub idle_timeout_ms: u64,
    pub remaining_ms: u64,
    pub site_password: Option<SitePassword>,
    pub seq: u64,
}

#[derive(Serialize, Deserialize)]
pub struct SyncRequest {
    pub cursor: u64,
    /// Entries used without traffic to report; an entry in `usage` was used too and is not
    /// repeated here (it halves a busy edge's sync).
    pub used: Vec<IdHash>,
    /// `[key, requests, bytes in, bytes out]`
    pub usage: Vec<(IdHash, u64, u64, u64)>,
    /// [`SyncReport::usage_batch`]; absent (from an older edge): 0.
    #[serde(default)]
    pub usage_batch: u64,
}

#[derive(Serialize, Deserialize)]
pub struct SyncAnswer {
    pub epoch: u64,
    pub cursor: u64,
    /// `[key, log position of its revocation]`
    pub revoked: Vec<(IdHash, u64)>,
    pub idle_timeouts: Vec<(IdHash, u64)>,
    pub reset: bool,
    pub usage_refused: bool,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl From<&Admission> for WireAdmission {
    fn from(a: &Admission) -> Self {
        WireAdmission {
            user: a.user.to_string(),
            account: a.account.to_string(),
            level: a.level.0,
            idle_timeout_ms: ms(a.idle_timeout),
            remaining_ms: ms(a.remaining),
            site_password: a.site_password.clone(),
            seq: a.seq,
        }
    }
}

impl From<WireAdmission> for Admission {
    fn from(w: WireAdmission) -> Self {
        Admission {
            user: Arc::from(w.user),
            account: Arc::from(w.account),
            level: Level(w.level),
            idle_timeout: Duration::from_millis(w.idle_timeout_ms),
            remaining: Duration::from_millis(w.remaining_ms),
            site_password: w.site_password,
            seq: w.seq,
        }
    }
}

impl From<&BasicVerdict> for BasicAnswer {
    fn from(v: &BasicVerdict) -> Self {
        match v {
            BasicVerdict::Admitted(a) => BasicAnswer::Admitted {
                admission: a.into(),
            },
            BasicVerdict::Refused => BasicAnswer::Refused,
            BasicVerdict::Throttled(d) => BasicAnswer::Throttled {
                retry_after_ms: ms(*d),
            },
        }
    }
}

impl From<BasicAnswer> for BasicVerdict {
    fn from(a: BasicAnswer) -> Self {
        match a {
            BasicAnswer::Admitted { admission } => BasicVerdict::Admitted(admission.into()),
            BasicAnswer::Refused => BasicVerdict::Refused,
            BasicAnswer::Throttled { retry_after_ms } => {
                BasicVerdict::Throttled(Duration::from_millis(retry_after_ms))
            }
        }
    }
}

impl From<&SyncReport> for SyncRequest {
    fn from(r: &SyncReport) -> Self {
        let with_traffic: std::collections::HashSet<&IdHash> =
            r.usage.iter().map(|(k, _)| k).collect();
        SyncRequest {
            cursor: r.cursor,
            used: r
                .used
                .iter()
                .filter(|k| !with_traffic.contains(k))
                .copied()
                .collect(),
            usage: r
                .usage
                .iter()
                .map(|(k, u)| (*k, u.requests, u.bytes_in, u.bytes_out))
                .collect(),
            usage_batch: r.usage_batch,
        }
    }
}

impl From<SyncRequest> for SyncReport {
    fn from(r: SyncRequest) -> Self {
        let mut used = r.used;
        used.extend(r.usage.iter().map(|(k, ..)| *k));
        SyncReport {
            cursor: r.cursor,
            usage_batch: r.usage_batch,
            used,
            usage: r
                .usage
                .into_iter()
                .map(|(k, requests, bytes_in, bytes_out)| {
                    (
                        k,
                        Usage {
                            requests,
                            bytes_in,
                            bytes_out,
                        },
                    )
                })
                .collect(),
        }
    }
}

impl From<&SyncReply> for SyncAnswer {
    fn from(r: &SyncReply) -> Self {
        SyncAnswer {
            epoch: r.epoch,
            cursor: r.cursor,
            revoked: r.revoked.clone(),
            idle_timeouts: r.idle_timeouts.iter().map(|(k, d)| (*k, ms(*d))).collect(),
            reset: r.reset,
            usage_refused: r.usage_refused,
        }
    }
}

impl From<SyncAnswer> for SyncReply {
    fn from(a: SyncAnswer) -> Self {
        SyncReply {
            epoch: a.epoch,
            cursor: a.cursor,
            revoked: a.revoked,
            idle_timeouts: a
                .idle_timeouts
                .into_iter()
                .map(|(k, d)| (k, Duration::from_millis(d)))
                .collect(),
            reset: a.reset,
            usage_refused: a.usage_refused,
        }
    }
}

/// A site id from the wire, as the config spells them (`[a-z0-9-]+`).
pub fn site_id(s: String) -> Option<SiteId> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    ok.then_some(SiteId(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An admission survives the trip, site password included, and nothing prints it.
    #[test]
    fn admission_round_trip() {
        let a = Admission {
            user: Arc::from("alice"),
            account: Arc::from("alice"),
            level: Level(3),
            idle_timeout: Duration::from_secs(900),
            remaining: Duration::from_millis(1234),
            site_password: Some(SitePassword::derive("master", "wiki")),
            seq: 42,
        };
        let json = serde_json::to_string(&WireAdmission::from(&a)).unwrap();
        let back: Admission = serde_json::from_str::<WireAdmission>(&json).unwrap().into();
        assert_eq!(back, a);
        assert!(!format!("{back:?}").contains(a.site_password.as_ref().unwrap().expose()));
    }

    #[test]
    fn sync_round_trip_and_bad_hashes() {
        let (k, idle) = (IdHash([9; 32]), IdHash([8; 32]));
        let report = SyncReport {
            cursor: 7,
            used: vec![idle, k],
            usage: vec![(
                k,
                Usage {
                    requests: 1,
                    bytes_in: 2,
                    bytes_out: 3,
                },
            )],
            usage_batch: 42,
        };
        let json = serde_json::to_string(&SyncRequest::from(&report)).unwrap();
        assert_eq!(json.matches(&k.to_b64()).count(), 1, "sent once: {json}");
        let back: SyncReport = serde_json::from_str::<SyncRequest>(&json).unwrap().into();
        assert_eq!(
            (back.cursor, back.used, back.usage, back.usage_batch),
            (7, report.used, report.usage, 42)
        );
        let older: SyncRequest =
            serde_json::from_str(r#"{"cursor":1,"used":[],"usage":[]}"#).unwrap();
        assert_eq!(older.usage_batch, 0, "an older edge's request");
        for bad in [
            r#"{"cursor":1,"used":["short"],"usage":[]}"#,
            r#"{"cursor":1,"used":[1],"usage":[]}"#,
        ] {
            assert!(serde_json::from_str::<SyncRequest>(bad).is_err(), "{bad}");
        }
        assert!(site_id("wiki-2".into()).is_some());
        assert!(site_id("Wiki".into()).is_none());
        assert!(site_id(String::new()).is_none());
    }
}

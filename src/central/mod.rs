//! The seam between a gate and the portal: everything a gate asks of the central
//! authentication server goes through [`Central`].
//!
//! Single-node mode uses [`local::LocalCentral`], a direct call into the in-process portal.
//! A networked implementation (edges talking HTTPS to a remote portal) plugs in here too.

pub mod auth;
pub mod local;
pub mod remote;
pub mod wire;

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Level, SiteId};
use crate::crypto::IdHash;
use crate::crypto::derived::SitePassword;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Who a browser (or API client) is, as the portal tells a gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    pub user: Arc<str>,
    pub account: Arc<str>,
    /// The user's level on the asking site.
    pub level: Level,
    /// The user's LOGIN TIMEOUT; zero means no idle limit.
    pub idle_timeout: Duration,
    /// Time left before the session's absolute expiry, as of the answer.
    pub remaining: Duration,
    /// On a derived site (SPEC §5): the site password derived at sign-in, which the gate
    /// sends to the backend. `None` on other sites, and when the session has none for this
    /// site (then a derived site must send the user back through sign-in). Its Debug is
    /// redacted.
    pub site_password: Option<SitePassword>,
    /// The portal's revocation-log position when it gave this answer: a revocation of the
    /// same key with a higher number is newer, and this answer must not be used (it
    /// crossed the revocation on its way; see `Gate::admit`).
    pub seq: u64,
}

/// The portal's answer to an API client's Basic credentials.
#[derive(Debug)]
pub enum BasicVerdict {
    Admitted(Admission),
    /// Unknown user, wrong password or disabled user.
    Refused,
    /// Too many failed sign-ins lately: refused without checking, retry after this long.
    Throttled(Duration),
}

/// Traffic through one table entry (SPEC §6 usage): admitted requests passed on to the
/// backend, and body bytes in each direction (request bodies the backend read, response
/// bodies sent to the client; headers and TLS are not counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub requests: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl Usage {
    pub fn is_zero(&self) -> bool {
        *self == Usage::default()
    }

    /// Add `other` (saturating: a counter never wraps round to a small number).
    pub fn add(&mut self, other: &Usage) {
        self.requests = self.requests.saturating_add(other.requests);
        self.bytes_in = self.bytes_in.saturating_add(other.bytes_in);
        self.bytes_out = self.bytes_out.saturating_add(other.bytes_out);
    }
}

/// What a gate reports at each sync.
#[derive(Debug, Clone, Default)]
pub struct SyncReport {
    /// Revocations up to this cursor were already received.
    pub cursor: u64,
    /// Entries used since the last report (hashes of site cookies / Basic keys).
    pub used: Vec<IdHash>,
    /// Traffic since the last report, per entry (each key at most once, never zero). Plain
    /// data, so a networked [`Central`] can carry it as it is.
    pub usage: Vec<(IdHash, Usage)>,
    /// Names `usage` (random, never 0 when there is traffic): a gate that got no answer sends
    /// the same traffic under the same name again, and the portal counts one name once, so
    /// traffic whose answer was lost is not counted twice. 0: no name (counted as sent).
    pub usage_batch: u64,
}

#[derive(Debug, Clone, Default)]
pub struct SyncReply {
    /// Chosen at random when the portal started: a different one means the portal has
    /// restarted, forgetting the sessions the gate's entries came from (and its cursor).
    pub epoch: u64,
    pub cursor: u64,
    /// Entries the gate must drop, each with the log position of its revocation (an entry
    /// admitted by a newer answer stays).
    pub revoked: Vec<(IdHash, u64)>,
    /// Entries whose user chose a new idle timeout (SPEC §6 "Own idle timeout"): the gate
    /// recomputes their expiry from it (zero: no idle limit). Applied before `revoked`.
    pub idle_timeouts: Vec<(IdHash, Duration)>,
    /// The gate's cursor fell off the portal's revocation log: it must drop its whole table.
    pub reset: bool,
    /// The portal could not record the reported usage: the gate sends it again with the
    /// next sync (revocations are applied all the same).
    pub usage_refused: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CentralError {
    #[error("the portal cannot be reached")]
    Unreachable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the portal failed")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub trait Central: Send + Sync + 'static {
    /// Redeem a one-time code (single use) for the browser whose site cookie hashes to
    /// `cookie`, on `site`. `None`: the code admits nobody.
    fn redeem<'a>(
        &'a self,
        code: &'a str,
        cookie: IdHash,
        site: &'a SiteId,
    ) -> BoxFuture<'a, Result<Option<Admission>, CentralError>>;

    /// Is the browser whose site cookie hashes to `cookie` still admitted on `site`?
    fn check<'a>(
        &'a self,
        cookie: IdHash,
        site: &'a SiteId,
    ) -> BoxFuture<'a, Result<Option<Admission>, CentralError>>;

    /// Verify an API client's Basic credentials, sent from `peer` (counted by the sign-in
    /// throttle); on success the session is known by `key`.
    fn verify_basic<'a>(
        &'a self,
        site: &'a SiteId,
        user: &'a str,
        password: &'a str,
        key: IdHash,
        peer: IpAddr,
    ) -> BoxFuture<'a, Result<BasicVerdict, CentralError>>;

    /// Report activity and learn revocations.
    fn sync(&self, report: SyncReport) -> BoxFuture<'_, Result<SyncReply, CentralError>>;
}

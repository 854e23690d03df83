//! The gate: one site's authentication client.
//!
//! `Gate::handle` follows SPEC §3–§4 step by step: normalise the path → reserved paths →
//! identify the browser (site cookie or Basic credential) through the local table, asking
//! the portal on a miss → decide ([`Outcome`]) → inject identity and proxy.

mod basic;
mod reserved;
pub mod sync;
pub mod table;

pub use reserved::stylesheet;

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::header::{HeaderValue, SET_COOKIE};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::central::{Admission, Central, CentralError};
use crate::config::{BackendAuth, Level, Site};
use crate::crypto::{IdHash, Identifier, Key};
use crate::http::body::Body;
use crate::http::cookies;
use crate::http::error::HttpError;
use crate::http::headers::{self, Identity, Scrubber};
use crate::http::page;
use crate::http::timer::TimerSlot;
use crate::proxy::Upstream;
use crate::server::urls::Urls;
use table::{Entry, Table};

/// One configured site, ready to serve.
pub struct SiteRuntime {
    pub index: usize,
    pub config: Site,
    pub scrubber: Scrubber,
    pub upstream: Upstream,
    pub requests: crate::metrics::SiteRequests,
}

/// What the gate decided about a request.
pub enum Outcome {
    /// Known and allowed: proxy with this identity.
    Admit(Arc<Entry>),
    /// Not known: send the browser to the portal (or 401 for non-GET/HEAD).
    Handoff,
    /// Refused, with the reason.
    Deny(HttpError),
}

/// What a WebSocket tunnel holds to learn when the session that opened it ends: the table,
/// the key its upgrade was admitted under and the entry that admitted it. Sign-out, a
/// disabled user, a changed level or password each revoke the key, which drops the entry;
/// the tunnel then closes (SPEC §4: sign-out reaches every site).
pub struct Admitted {
    table: Table,
    key: IdHash,
    entry: Arc<Entry>,
}

impl Admitted {
    /// Does the session still admit the tunnel? See [`Table::still_admits`].
    pub fn holds(&self) -> bool {
        self.table.still_admits(&self.key, &self.entry)
    }

    pub fn user(&self) -> &str {
        self.entry.user()
    }
}

/// The gates of every site in this process, sharing one table and one portal connection.
pub struct Gate {
    pub sites: Vec<Arc<SiteRuntime>>,
    pub table: Table,
    pub central: Arc<dyn Central>,
    /// Keys Basic credentials in the table, so the table never holds a password.
    basic_key: Key,
    pub urls: Urls,
    pub(crate) cache_margin: std::time::Duration,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Keys revoked lately, with the log position of the revocation: an answer from the
    /// portal older than that (a check that crossed the revocation on the way) is not put
    /// in the table, where use would renew it for the rest of the session.
    pub(crate) recent_revocations: moka::sync::Cache<IdHash, u64>,
}

/// How long a revocation is remembered against answers still on their way: far longer
/// than any answer can take (calls time out after seconds).
const REVOCATION_MEMORY: std::time::Duration = std::time::Duration::from_secs(600);

/// A request as the gate sees it after routing.
pub struct Routed {
    pub req: Request<Incoming>,
    pub peer: SocketAddr,
    /// The peer's address as a header value, made once per connection.
    pub peer_ip: HeaderValue,
    /// The Host the browser used (with port), already checked against the site.
    pub host: HeaderValue,
    /// The connection's timer for the backend's answer, lent to one request at a time.
    pub response_timer: TimerSlot,
}

impl Gate {
    pub fn new(
        sites: Vec<Arc<SiteRuntime>>,
        central: Arc<dyn Central>,
        urls: Urls,
        cache_margin: std::time::Duration,
        capacity: u64,
        metrics: Arc<crate::metrics::Metrics>,
        basic_key: Key,
    ) -> Self {
        Gate {
            sites,
            table: Table::new(capacity),
            central,
            basic_key,
            urls,
            cache_margin,
            metrics,
            recent_revocations: moka::sync::Cache::builder()
                .time_to_live(REVOCATION_MEMORY)
                .max_capacity(1_000_000)
                .build(),
        }
    }

    pub async fn handle(&self, site: &SiteRuntime, incoming: Box<Routed>) -> Response<Body> {
        let res = match self.serve(site, incoming).await {
            Ok(res) => res,
            Err(e) => e.into_response(),
        };
        site.requests.inc(res.status().as_u16());
        res
    }

    async fn serve(
        &self,
        site: &SiteRuntime,
        incoming: Box<Routed>,
    ) -> Result<Response<Body>, HttpError> {
        let (target, outcome) = {
            let uri = incoming.req.uri();
            let path = crate::http::path::normalize(uri.path())?;
            if let Some(rest) = path.strip_prefix("/.gatehouse/") {
                // Boxed, like every rare path here: it keeps the common path's future small.
                return Box::pin(reserved::handle(self, site, rest, &incoming)).await;
            }
            let target = backend_target(uri, &path, matches!(path, Cow::Borrowed(_)))?;
            (target, self.decide(site, &incoming, &path).await)
        };
        match outcome {
            Outcome::Admit(entry) => self.forward(site, incoming, &entry, target).await,
            Outcome::Handoff => self.handoff(site, incoming.req.method(), target.as_str()),
            Outcome::Deny(e) => Err(e),
        }
    }

    /// Identify the client and check its level against the path.
    async fn decide(&self, site: &SiteRuntime, incoming: &Routed, path: &str) -> Outcome {
        let entry = match self.identify(site, &incoming.req, incoming.peer.ip()).await {
            Ok(Some(entry)) => entry,
            Ok(None) => return Outcome::Handoff,
            Err(e) => return Outcome::Deny(e),
        };
        decide_level(entry, site.config.required_level(path))
    }

    /// The table entry of this client, asking the portal on a miss. `Ok(None)`: unknown.
    /// `peer` counts towards the sign-in throttle when Basic credentials are checked.
    pub(crate) async fn identify(
        &self,
        site: &SiteRuntime,
        req: &Request<Incoming>,
        peer: IpAddr,
    ) -> Result<Option<Arc<Entry>>, HttpError> {
        if site.config.allow_basic
            && let Some(credential) = basic::credential(req.headers())
        {
            return self.identify_basic(site, credential?, peer).await.map(Some);
        }
        let Some(key) = site_cookie(req)? else {
            return Ok(None);
        };
        if let Some(entry) = self.table.get(&key) {
            // A cookie admits to the site it was handed to, nowhere else.
            return Ok((entry.site() == site.index).then_some(entry));
        }
        match self.central.check(key, &site.config.id).await {
            Ok(Some(admission)) => {
                let entry = self.admit(site, key, &admission);
                // This request's traffic counts on the new entry: report it at the next sync.
                if let Some(e) = &entry {
                    self.table.mark_used(&key, e);
                }
                Ok(entry)
            }
            Ok(None) => Ok(None),
            Err(e) => Err(HttpError::PortalDown(e)),
        }
    }

    /// Put an admission into the table. A derived site admits only with its site password
    /// (or at level 0, which is refused anyway): without one the client is unknown here and
    /// goes back through sign-in, where the portal asks for the password (SPEC §5).
    pub(crate) fn admit(
        &self,
        site: &SiteRuntime,
        key: IdHash,
        admission: &Admission,
    ) -> Option<Arc<Entry>> {
        if lacks_site_password(&site.config, admission) {
            tracing::debug!(site = %site.config.id, user = %admission.user, "no site password for this derived site; back through sign-in");
            return None;
        }
        let Some(entry) = Entry::new(site.index, admission, self.cache_margin) else {
            tracing::warn!(site = %site.config.id, "user or account name cannot be sent as a header; refusing");
            return None;
        };
        let admitted = self
            .table
            .insert_unless_revoked(key, entry, |k| self.recent_revocations.get(k));
        if admitted.is_none() {
            tracing::debug!(site = %site.config.id, "an answer older than the key's revocation; not admitted");
        }
        admitted
    }

    /// Single node: be told of every revocation of this process's portal as it happens,
    /// not at the next sync.
    pub fn follow_revocations(self: &Arc<Self>, sessions: &crate::portal::sessions::SessionTable) {
        // Weak: the gate reaches the portal (its central), which holds this listener.
        let gate = Arc::downgrade(self);
        sessions.subscribe(move |revoked| {
            if let Some(gate) = gate.upgrade() {
                revoked.iter().for_each(|(k, seq)| gate.revoke(k, *seq));
            }
        });
    }

    /// The portal revoked `key` at log position `seq` (a sign-out, an expiry): drop its
    /// entry, and remember the revocation against answers still on their way.
    ///
    /// The remembered position only ever moves forward: the same key's revocations may
    /// arrive out of order (one at once from this node's portal, an older one with a sync),
    /// and going back would let an answer made between the two in again. Every revocation
    /// of a key is remembered under its shard's lock, so this read and write are not split.
    pub(crate) fn revoke(&self, key: &IdHash, seq: u64) {
        self.table.revoke(key, seq, || {
            if self
                .recent_revocations
                .get(key)
                .is_none_or(|known| known < seq)
            {
                self.recent_revocations.insert(*key, seq);
            }
        });
    }

    /// The tunnel's hold on the entry that admitted this upgrade, under the key
    /// [`Gate::identify`] found it by (the same choice: a Basic credential on a site that
    /// allows them, else the site cookie). Were the key ever another, the tunnel would
    /// find no entry of its own and close at its first check: it fails shut.
    fn admitted(
        &self,
        site: &SiteRuntime,
        req: &Request<Incoming>,
        entry: &Arc<Entry>,
    ) -> Result<Admitted, HttpError> {
        let key = if site.config.allow_basic
            && let Some(credential) = basic::credential(req.headers())
        {
            credential?.key(&self.basic_key, &site.config.id)
        } else {
            site_cookie(req)?.ok_or(HttpError::Forbidden)?
        };
        Ok(Admitted {
            table: self.table.clone(),
            key,
            entry: entry.clone(),
        })
    }

    /// Send an unknown browser to the portal with a fresh site cookie (SPEC §3 step 1).
    fn handoff(
        &self,
        site: &SiteRuntime,
        method: &Method,
        path_and_query: &str,
    ) -> Result<Response<Body>, HttpError> {
        if method != Method::GET && method != Method::HEAD {
            return Err(HttpError::Unauthorized {
                basic: site.config.allow_basic,
            });
        }
        // An edge whose portal is down: a clear page now, rather than a redirect to a portal
        // that will not answer.
        if !self.metrics.is_ready() {
            return Err(HttpError::PortalDown(CentralError::Unreachable(
                "the last sync with the portal failed".into(),
            )));
        }
        let cookie = Identifier::new();
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("site", &site.config.id.0)
            .append_pair("h", &cookie.hash().to_b64())
            .append_pair("rd", path_and_query)
            .finish();
        let location = format!("{}/login?{query}", self.urls.portal_origin());
        let mut res = page::redirect(StatusCode::FOUND, &location);
        res.headers_mut()
            .append(SET_COOKIE, cookies::set(cookies::SITE, cookie.as_str()));
        Ok(res)
    }

    async fn forward(
        &self,
        site: &SiteRuntime,
        incoming: Box<Routed>,
        entry: &Arc<Entry>,
        target: PathAndQuery,
    ) -> Result<Response<Body>, HttpError> {
        let Routed {
            mut req,
            peer_ip,
            host,
            response_timer,
            ..
        } = *incoming;
        // A declared length over the limit is refused before anything reaches the backend;
        // a streamed body is cut off when it passes it (proxy::Outgoing).
        if http_body::Body::size_hint(req.body()).lower() > site.config.max_body {
            crate::http::body::discard(req.into_body());
            return Err(HttpError::PayloadTooLarge);
        }
        // Only an upgrade pays for this: the key is found again rather than carried from
        // `identify` by every request. Before the scrub, which removes the credential.
        let upgrade = match crate::proxy::is_websocket_upgrade(&req) {
            false => None,
            true => Some(Box::new(self.admitted(site, &req, entry)?)),
        };
        let authorization = backend_authorization(&site.config, entry)?;
        let h = req.headers_mut();
        headers::scrub_request(h, &site.scrubber);
        if site.config.allow_basic || site.config.backend_auth.is_some() {
            // The client's own credential is for the gateway (or would shadow the one the
            // gateway logs in with), never for the backend.
            h.remove(http::header::AUTHORIZATION);
        }
        if upgrade.is_some() {
            h.insert(
                http::header::CONNECTION,
                HeaderValue::from_static("upgrade"),
            );
            h.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
        }
        let level = entry.level_header();
        // Checked when the entry was made, so these cannot fail; if they did, no request
        // goes on without its identity.
        let (Some(user), Some(account)) = (entry.user_header(), entry.account_header()) else {
            return Err(HttpError::Internal(
                "a name that cannot be a header value".into(),
            ));
        };
        let identity = Identity {
            user,
            level: &level,
            account,
            authorization,
        };
        headers::inject(h, &site.config.headers, identity, &peer_ip, &host);
        // Usage (SPEC §6): every admitted request passed on counts, whatever the backend
        // answers; the bodies count their bytes as they stream.
        entry.count_request();
        site.upstream
            .forward(req, target, upgrade, entry, &response_timer)
            .await
    }
}

/// What the backend is asked for: exactly the path that was authorised, and the query as
/// sent. A path already in normal form is reused as it arrived, without copying; but not
/// a target with no path at all (`https://host?x` in absolute form, or an HTTP/2 `:path`
/// of `?x`): its path reads as `/`, which is what was authorised, while the target as
/// sent would reach the backend as `GET ?x`.
fn backend_target(uri: &http::Uri, path: &str, unchanged: bool) -> Result<PathAndQuery, HttpError> {
    let refused = || HttpError::BadRequest("request target");
    match (unchanged, uri.path_and_query()) {
        (true, Some(original)) if original.as_str().starts_with('/') => Ok(original.clone()),
        _ => {
            let target = match uri.query() {
                Some(q) => format!("{path}?{q}"),
                None => path.to_string(),
            };
            PathAndQuery::try_from(target).map_err(|_| refused())
        }
    }
}

/// Does a derived site lack the site password it needs to admit this user?
pub fn lacks_site_password(site: &Site, admission: &Admission) -> bool {
    site.derive_id().is_some()
        && admission.site_password.is_none()
        && admission.level != Level::DENIED
}

/// The credential the gateway logs in to the backend with, if the site has one. A derived
/// site's entry always holds its own (see [`Gate::admit`]); if not, nothing is forwarded.
fn backend_authorization<'a>(
    site: &'a Site,
    entry: &'a Entry,
) -> Result<Option<&'a HeaderValue>, HttpError> {
    match &site.backend_auth {
        None => Ok(None),
        Some(BackendAuth::Static { authorization, .. }) => Ok(Some(authorization)),
        Some(BackendAuth::Derived { .. }) => entry
            .backend_authorization
            .as_deref()
            .map(Some)
            .ok_or(HttpError::Forbidden),
    }
}

/// The pure decision: level 0 or below the path's minimum is refused.
pub fn decide_level(entry: Arc<Entry>, required: Level) -> Outcome {
    if entry.level == Level::DENIED || entry.level < required {
        Outcome::Deny(HttpError::Forbidden)
    } else {
        Outcome::Admit(entry)
    }
}

/// The hash of the request's site cookie: `None` when absent or not one we could have
/// issued, an error when sent twice.
fn site_cookie<B>(req: &Request<B>) -> Result<Option<IdHash>, HttpError> {
    match cookies::find(req.headers(), cookies::SITE) {
        cookies::Found::None => Ok(None),
        cookies::Found::Duplicate => {
            Err(HttpError::BadRequest("the gateway's cookie was sent twice"))
        }
        cookies::Found::One(v) if crate::crypto::ids::looks_like_identifier(v) => {
            Ok(Some(IdHash::of(v.as_bytes())))
        }
        cookies::Found::One(_) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The backend gets the path that was authorised: a target without a path (absolute
    /// form with only a query) is sent as `/?…`, not as `?…`; a normal one as it came.
    #[test]
    fn backend_target_always_starts_with_the_path() {
        let target = |uri: &str| {
            let uri: http::Uri = uri.parse().unwrap();
            backend_target(&uri, uri.path(), true).unwrap().to_string()
        };
        assert_eq!(target("https://app.localhost:8443?x=1"), "/?x=1");
        assert_eq!(target("https://app.localhost:8443/a?x=1"), "/a?x=1");
        assert_eq!(target("/a/b?x=1"), "/a/b?x=1");
        let uri: http::Uri = "https://app.localhost?x=1".parse().unwrap();
        assert_eq!(uri.path_and_query().unwrap().as_str(), "?x=1", "as parsed");
    }
}

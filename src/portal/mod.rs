//! The portal: the central authentication server, on its own host.
//!
//! It holds the users (through [`Store`]), the session table ([`sessions::SessionTable`],
//! written behind to the store so a restart signs nobody out), and serves the sign-in form,
//! the hand-off to sites, sign-out everywhere and the account page. Gates reach it only
//! through `central::Central`.

mod account;
pub mod api;
mod handlers;
mod link;
pub mod mail;
mod pages;
mod password;
mod register;
mod register_limit;
mod saving;
pub mod sessions;
pub mod throttle;
pub mod usage;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;

use zeroize::Zeroizing;

use crate::central::BasicVerdict;
use crate::config::{Config, Level, SiteId};
use crate::crypto::derived::SitePassword;
use crate::crypto::password::{MAX_PASSWORD_BYTES, MAX_USERNAME_BYTES, Verifier, needs_rehash};
use crate::crypto::{IdHash, Key};
use crate::http::body::Body;
use crate::http::page::Look;
use crate::metrics::Metrics;
use crate::server::urls::Urls;
use crate::store::postgres::PgStore;
use crate::store::{NewUser, Store, StoreError, UserRecord};
use sessions::{SessionTable, Sessions, SitePasswords, Timeouts, UserRevision};
use throttle::Throttle;

/// The outcome of a sign-in attempt (form or Basic).
pub enum Attempt {
    /// The user's record, and where the session table was in its users' changes before it
    /// was read: a session may start from it only if the user has not changed since.
    Accepted(UserRecord, UserRevision),
    /// Unknown user, wrong password or disabled user: one answer for all three.
    Refused,
    /// Too many failures lately: refused without looking at the password; try again after.
    Throttled(Duration),
}

/// Seconds since the Unix epoch (the store's clock for expiries).
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// What the portal knows of each site: its id, where it is, how its pages look.
pub struct PortalSite {
    pub id: SiteId,
    pub origin: String,
    pub look: Look,
    /// On a derived site (SPEC §5): the site data hashed with the master password.
    pub derive_id: Option<String>,
    /// New users may register themselves from this site's sign-in page (SPEC §6).
    pub registration: bool,
    /// CSP of the portal pages reached from this site: the portal's, plus the origins of
    /// its branding's logo and stylesheet, and nothing more.
    pub csp: HeaderValue,
}

/// The portal's view of the configured sites.
struct View {
    sites: Vec<Arc<PortalSite>>,
    /// CSP of portal pages: forms post to the portal, which then redirects to a site.
    csp: HeaderValue,
}

impl View {
    fn new(config: &Config, urls: &Urls) -> Self {
        let base = HeaderValue::from_str(&portal_csp(urls, None))
            .unwrap_or_else(|_| crate::http::page::default_csp());
        let sites = config
            .sites
            .iter()
            .map(|s| {
                let csp = s
                    .branding
                    .as_ref()
                    .and_then(|b| HeaderValue::from_str(&portal_csp(urls, Some(b))).ok())
                    .unwrap_or_else(|| base.clone());
                Arc::new(PortalSite {
                    id: s.id.clone(),
                    origin: urls.origin(&s.host),
                    look: s.branding.as_ref().map_or_else(Look::default, |b| Look {
                        title: b.title.clone(),
                        logo: b.logo.clone(),
                        stylesheet: b.stylesheet.clone(),
                    }),
                    derive_id: s.derive_id().map(str::to_string),
                    registration: s.registration,
                    csp,
                })
            })
            .collect();
        View { sites, csp: base }
    }
}

/// The CSP of portal pages: our own styles and images only, forms that post to the portal
/// (which then redirects to a site); with a site's branding, also its logo's origin for
/// images and its stylesheet's origin for styles, the images and fonts that stylesheet
/// loads. Branding URLs were checked at load (`config::branding`): https origins of plain
/// hosts, or paths on the portal, which `'self'` covers.
fn portal_csp(urls: &Urls, branding: Option<&crate::config::Branding>) -> String {
    use crate::config::branding::asset_origin;
    let origin = |u: &Option<String>| u.as_deref().and_then(asset_origin);
    let (logo, sheet) = branding.map_or((None, None), |b| (origin(&b.logo), origin(&b.stylesheet)));
    let join = |list: &[&Option<String>]| {
        list.iter()
            .filter_map(|o| o.as_deref())
            .fold(String::new(), |acc, o| acc + " " + o)
    };
    format!(
        "default-src 'none'; style-src 'self'{styles}; img-src 'self' data:{images}; font-src 'self'{fonts}; form-action 'self' {sites}; frame-ancestors 'none'; base-uri 'none'",
        styles = join(&[&sheet]),
        images = join(&[&logo, &sheet]),
        fonts = join(&[&sheet]),
        sites = urls.all_origins().join(" "),
    )
}

pub struct Portal {
    pub store: Arc<dyn Store>,
    pub sessions: Sessions,
    pub(crate) verifier: Verifier,
    /// Back-off after failed sign-ins, checked before any hashing.
    throttle: Throttle,
    registration_limit: register_limit::RegistrationLimit,
    /// Binds CSRF tokens to the portal cookie; kept in the store so restarts keep forms valid.
    csrf_key: Key,
    /// What the config says of the sites; replaced whole on reload.
    view: ArcSwap<View>,
    urls: Urls,
    metrics: Arc<Metrics>,
    /// How often the store is polled for users changed by other processes (CLI).
    watch_interval: Duration,
    sync_interval: Duration,
    /// Where temporary passwords and notices go.
    mailer: Arc<mail::Mailer>,
    temporary_password_ttl: Duration,
    /// Browsers that signed in with a temporary password and must now choose their own.
    pending: password::PendingChanges,
    /// The range of idle timeouts users may choose on the account page.
    own_idle: account::OwnIdle,
    /// One write of the session table at a time, so an older picture of a session never
    /// lands in the store after a newer one.
    save_lock: tokio::sync::Mutex<()>,
    /// The store's revision read just before the sessions were restored: user changes made
    /// after it reach the restored sessions at the first poll.
    restored_at: OnceLock<i64>,
}

impl Portal {
    pub fn new(
        config: &Config,
        store: Arc<dyn Store>,
        shared: Option<Arc<PgStore>>,
        urls: Urls,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StoreError> {
        let p = &config.portal;
        let csrf_key = Key::from_bytes(store.secret("csrf")?);
        let timeouts = Timeouts {
            default_idle: p.idle_timeout,
            absolute: p.absolute_timeout,
            code_ttl: p.code_ttl,
        };
        Ok(Portal {
            store,
            sessions: match shared {
                Some(pg) => Sessions::Shared(sessions::shared::SharedSessions::new(pg, timeouts)),
                None => Sessions::Local(SessionTable::new(timeouts)),
            },
            verifier: Verifier::new(p.max_concurrent_hashes),
            throttle: Throttle::new(&p.signin_throttle),
            registration_limit: register_limit::RegistrationLimit::new(p.registration_limit),
            csrf_key,
            view: ArcSwap::from_pointee(View::new(config, &urls)),
            urls,
            metrics,
            watch_interval: Duration::from_secs(2).min(p.sync_interval),
            sync_interval: p.sync_interval,
            mailer: Arc::new(mail::Mailer::new(&p.mail, &p.host)),
            temporary_password_ttl: p.temporary_password_ttl,
            pending: password::PendingChanges::default(),
            own_idle: account::OwnIdle {
                default: p.idle_timeout,
                max: p.max_idle_timeout,
                allow_none: p.allow_no_idle_limit,
            },
            save_lock: tokio::sync::Mutex::new(()),
            restored_at: OnceLock::new(),
        })
    }

    /// A reloaded config's sites (after `urls` learnt their hosts). Sessions, codes and the
    /// store stay; users of `[[users]]` are provisioned by [`Portal::provision`].
    pub fn set_sites(&self, config: &Config) {
        self.view.store(Arc::new(View::new(config, &self.urls)));
    }

    pub(crate) fn csp(&self) -> HeaderValue {
        self.view.load().csp.clone()
    }

    /// A page reached from `site` (the hand-off's), in its look: with its CSP, which allows
    /// its branding's origins. Unknown or no site: the portal's own.
    pub(super) fn branded_page(
        &self,
        site: Option<&str>,
        status: http::StatusCode,
        html: String,
    ) -> Response<Body> {
        let csp = site
            .and_then(|id| self.site(id))
            .map_or_else(|| self.csp(), |s| s.csp.clone());
        crate::http::page::html(status, html, &csp)
    }

    /// Create or update the users of `[[users]]` in the store.
    pub fn provision(&self, config: &Config) -> Result<(), StoreError> {
        for u in &config.users {
            let changed = self.store.upsert_user(&NewUser {
                name: u.name.clone(),
                password_hash: u.password_hash.clone(),
                level: u.level,
                site_levels: u.site_levels.clone(),
                idle_timeout: u.idle_timeout,
                disabled: u.disabled,
            })?;
            if changed {
                tracing::info!(user = %u.name, "user provisioned from the config");
            }
        }
        Ok(())
    }

    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        handlers::route(self, req, peer).await
    }

    /// Run a blocking store call off the reactor.
    pub async fn store_call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || f(&*store)).await {
            Ok(r) => r,
            Err(e) => Err(StoreError::Open {
                path: "store task".into(),
                source: std::io::Error::other(e),
            }),
        }
    }

    /// Verify an API client's Basic credentials and start its session under `key`.
    pub async fn verify_basic(
        &self,
        site: &SiteId,
        user: &str,
        password: &str,
        key: IdHash,
        peer: IpAddr,
    ) -> Result<BasicVerdict, StoreError> {
        Ok(match self.attempt(user, password, peer).await? {
            // A temporary password only opens the change form, never a site (SPEC §6).
            Attempt::Accepted(record, read) if record.temporary_until.is_none() => {
                let sp = self
                    .site(&site.0)
                    .and_then(|s| self.site_password(&s, &record, password));
                let name = record.name.clone();
                match self
                    .sessions
                    .start_basic(key, record, read, site, sp)
                    .await?
                {
                    Some(admission) => {
                        self.metrics.signin("basic_success");
                        BasicVerdict::Admitted(admission)
                    }
                    None => {
                        tracing::info!(user = %name, "basic credentials refused: the user changed while they were checked");
                        self.metrics.signin("basic_failure");
                        BasicVerdict::Refused
                    }
                }
            }
            Attempt::Accepted(..) | Attempt::Refused => {
                self.metrics.signin("basic_failure");
                BasicVerdict::Refused
            }
            Attempt::Throttled(wait) => {
                self.metrics.signin("basic_throttled");
                BasicVerdict::Throttled(wait)
            }
        })
    }

    /// One sign-in attempt from `peer`: refused at once while the throttle holds this user
    /// name or address (no store lookup, no hashing: the same cheap answer whether or not
    /// the user exists), else checked, and its result counted.
    pub async fn attempt(
        &self,
        name: &str,
        password: &str,
        peer: IpAddr,
    ) -> Result<Attempt, StoreError> {
        let shown: String = name.chars().take(64).collect();
        if let Err((wait, limit)) = self.throttle.begin(name, peer) {
            tracing::debug!(peer = %peer, user = %shown, limit = limit.as_str(), "sign-in attempt refused: throttled");
            return Ok(Attempt::Throttled(wait));
        }
        // From here the attempt counts as a failure unless it succeeds.
        let read = self.sessions.user_revision();
        match self.authenticate(name, password).await? {
            Some(record) => {
                self.throttle.succeeded(name, peer);
                Ok(Attempt::Accepted(record, read))
            }
            None => {
                if let Some((wait, limit)) = self.throttle.check(name, peer) {
                    tracing::info!(peer = %peer, user = %shown, limit = limit.as_str(), wait_ms = wait.as_millis() as u64, "failed sign-ins: further attempts must wait");
                }
                Ok(Attempt::Refused)
            }
        }
    }

    /// Check a user name and password: argon2id, or a hash imported from htpasswd, which is
    /// then replaced by argon2id. `None`: unknown user, wrong password, disabled user, or a
    /// temporary password past its expiry; the hashing work is the same whether or not the
    /// user exists. A record with `temporary_until` set may only choose a password. Not
    /// throttled: every password check goes through [`Portal::attempt`].
    async fn authenticate(
        &self,
        name: &str,
        password: &str,
    ) -> Result<Option<UserRecord>, StoreError> {
        let acceptable = !name.is_empty()
            && name.len() <= MAX_USERNAME_BYTES
            && password.len() <= MAX_PASSWORD_BYTES;
        let record = if acceptable {
            let name = name.to_string();
            self.store_call(move |s| match s.user(&name)? {
                // Self-registered names are lowercased addresses (SPEC §6): let
                // "Ann@Example.org" find "ann@example.org" when no user has the exact name.
                None if name.contains('@') && name.bytes().any(|b| b.is_ascii_uppercase()) => {
                    s.user(&name.to_ascii_lowercase())
                }
                found => Ok(found),
            })
            .await?
        } else {
            None
        };
        self.metrics.password_check();
        let verified = self
            .verifier
            .verify(
                record.as_ref().map(|r| r.password_hash.clone()),
                Zeroizing::new(password.to_string()),
            )
            .await;
        match record {
            Some(r) if r.temporary_until.is_some_and(|t| t <= unix_now()) => Ok(None),
            Some(r) if verified && acceptable && !r.disabled => {
                Ok(Some(self.upgrade_legacy_hash(r, password).await))
            }
            _ => Ok(None),
        }
    }

    /// At the first successful sign-in of a user imported from htpasswd, replace the old
    /// hash by argon2id. A failure here is logged and the sign-in goes on (the old hash
    /// still works and is upgraded next time).
    async fn upgrade_legacy_hash(&self, mut record: UserRecord, password: &str) -> UserRecord {
        if !needs_rehash(&record.password_hash) {
            return record;
        }
        let Some(new) = self
            .verifier
            .hash(Zeroizing::new(password.to_string()))
            .await
        else {
            return record;
        };
        let (name, old) = (record.name.clone(), record.password_hash.clone());
        let swapped = self
            .store_call(move |s| {
                if s.upgrade_password_hash(&name, &old, &new)? {
                    return Ok(Some(new));
                }
                // Changed meanwhile (another sign-in upgraded it first): keep what is stored,
                // so the session matches the store and is not ended as "re-passworded".
                Ok(s.user(&name)?.map(|u| u.password_hash))
            })
            .await;
        match swapped {
            Ok(Some(hash)) => {
                if !needs_rehash(&hash) {
                    tracing::info!(user = %record.name, "imported password hash replaced by argon2id");
                }
                record.password_hash = hash;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(user = %record.name, error = %crate::http::error::error_chain(&e), "cannot replace an imported password hash")
            }
        }
        record
    }

    /// Note in the store that the account of a hand-off reached `site` (first access, SPEC
    /// §6). Runs in the background, off the reactor; a failure is logged, the hand-off is
    /// not held up by it.
    pub fn note_site_access(self: &Arc<Self>, account: &str, site: &SiteId) {
        let portal = self.clone();
        let (account, site) = (account.to_string(), site.0.clone());
        tokio::spawn(async move {
            let (a, s) = (account.clone(), site.clone());
            match portal
                .store_call(move |st| st.record_site_access(&a, &s, unix_now()))
                .await
            {
                Ok(true) => {
                    tracing::info!(account = %account, site = %site, "first access to a site")
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(account = %account, site = %site, error = %crate::http::error::error_chain(&e), "cannot record a site access")
                }
            }
        });
    }

    /// The site password of one derived site, for a user who may use it (level above 0).
    fn site_password(
        &self,
        site: &PortalSite,
        user: &UserRecord,
        master_password: &str,
    ) -> Option<SitePassword> {
        let derive_id = site.derive_id.as_deref()?;
        (user.level_on(&site.id.0) != Level::DENIED)
            .then(|| SitePassword::derive(master_password, derive_id))
    }

    /// Every derived site's password, made while the master password is at hand (sign-in).
    pub fn site_passwords(&self, user: &UserRecord, master_password: &str) -> SitePasswords {
        self.view
            .load()
            .sites
            .iter()
            .filter_map(|s| {
                let sp = self.site_password(s, user, master_password)?;
                Some((s.id.clone(), sp))
            })
            .collect()
    }

    /// Must the user type their password again before being handed to `site`? Yes on a
    /// derived site they may use when their session holds no site password for it (it
    /// could only be derived while they typed their password: SPEC §5).
    pub fn needs_master_password(&self, session: &IdHash, user: &UserRecord, site: &str) -> bool {
        self.site(site).is_some_and(|s| {
            s.derive_id.is_some()
                && user.level_on(site) != Level::DENIED
                && !self.sessions.has_site_password(session, &s.id)
        })
    }

    fn look_for(&self, site: Option<&str>) -> Look {
        site.and_then(|id| self.site(id))
            .map(|s| s.look.clone())
            .unwrap_or_default()
    }

    /// A self-registered user's levels by site: `level` on every site open to registration
    /// now, none elsewhere. Registering through one site must not open the sites that
    /// left registration off: their default `min_level` is 1, so a global level 1 would let
    /// anyone with a mailbox in.
    fn registration_levels(&self, level: Level) -> std::collections::BTreeMap<String, Level> {
        self.view
            .load()
            .sites
            .iter()
            .filter(|s| s.registration)
            .map(|s| (s.id.0.clone(), level))
            .collect()
    }

    fn site(&self, id: &str) -> Option<Arc<PortalSite>> {
        self.view
            .load()
            .sites
            .iter()
            .find(|s| s.id.0 == id)
            .cloned()
    }

    /// Background duties until shutdown: learn of users changed by other processes, end
    /// sessions past their idle or absolute limit, and write the session table's changes
    /// to the store. The last changes are written by [`Portal::save_all_sessions`], after
    /// the last request.
    pub async fn maintain(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut revision = match self.restored_at.get() {
            Some(&rev) => rev,
            None => match self.store_call(|s| s.users_changed_since(i64::MAX)).await {
                Ok((_, rev)) => rev,
                Err(e) => {
                    tracing::error!(error = %crate::http::error::error_chain(&e), "cannot read the store's revision");
                    0
                }
            },
        };
        let mut watch = tokio::time::interval(self.watch_interval);
        let mut reap = tokio::time::interval(self.sync_interval.min(Duration::from_secs(5)));
        let mut save = tokio::time::interval(saving::SAVE_INTERVAL);
        save.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = watch.tick() => revision = self.apply_user_changes(revision).await,
                _ = reap.tick() => self.sessions.reap().await,
                _ = save.tick() => {
                    self.save_sessions().await;
                }
            }
        }
    }

    async fn apply_user_changes(&self, revision: i64) -> i64 {
        let changed = self.store_call(move |s| {
            let (names, newest) = s.users_changed_since(revision)?;
            let users = names
                .into_iter()
                .map(|n| s.user(&n).map(|u| (n, u)))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((users, newest))
        });
        match changed.await {
            Ok((users, newest)) => {
                let mut applied = true;
                for (name, record) in users {
                    tracing::info!(user = %name, "user changed in the store; updating their sessions");
                    applied &= self.sessions.user_changed(&name, record).await;
                }
                if applied {
                    newest
                } else {
                    // Read again from the same revision at the next poll: applying a change
                    // twice does no harm, missing one would keep a demoted user's entries.
                    tracing::warn!(
                        "user changes not all applied to the sessions; trying again at the next poll"
                    );
                    revision
                }
            }
            Err(e) => {
                tracing::error!(error = %crate::http::error::error_chain(&e), "cannot poll the store for user changes");
                revision
            }
        }
    }
}

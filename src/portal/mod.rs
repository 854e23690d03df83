//! The portal: the central authentication server, on its own host.
//!
//! It holds the users (through [`Store`]), the session table ([`sessions::SessionTable`]),
//! and serves the sign-in form, the hand-off to sites, sign-out everywhere and the account
//! page. Gates reach it only through `central::Central`.

mod handlers;
mod pages;
pub mod sessions;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;

use crate::central::Admission;
use crate::config::{Config, SiteId};
use crate::crypto::password::Verifier;
use crate::crypto::{IdHash, Key};
use crate::http::body::Body;
use crate::http::page::Look;
use crate::metrics::Metrics;
use crate::server::urls::Urls;
use crate::store::{NewUser, Store, StoreError};
use sessions::{SessionTable, Timeouts};

/// What the portal knows of each site: its id, where it is, how its pages look.
pub struct PortalSite {
    pub id: SiteId,
    pub origin: String,
    pub look: Look,
}

pub struct Portal {
    pub store: Arc<dyn Store>,
    pub sessions: SessionTable,
    pub(crate) verifier: Verifier,
    /// Binds CSRF tokens to the portal cookie; kept in the store so restarts keep forms valid.
    csrf_key: Key,
    sites: Vec<PortalSite>,
    urls: Urls,
    /// CSP of portal pages: forms post to the portal, which then redirects to a site.
    csp: HeaderValue,
    metrics: Arc<Metrics>,
    /// How often the store is polled for users changed by other processes (CLI).
    watch_interval: Duration,
    sync_interval: Duration,
}

impl Portal {
    pub fn new(
        config: &Config,
        store: Arc<dyn Store>,
        urls: Urls,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StoreError> {
        let p = &config.portal;
        let csrf_key = Key::from_bytes(store.secret("csrf")?);
        let sites = config
            .sites
            .iter()
            .map(|s| PortalSite {
                id: s.id.clone(),
                origin: urls.origin(&s.host),
                look: s.branding.as_ref().map_or_else(Look::default, |b| Look {
                    title: b.title.clone(),
                    logo: b.logo.clone(),
                    stylesheet: b.stylesheet.clone(),
                }),
            })
            .collect();
        let csp = format!(
            "default-src 'none'; style-src 'self' https:; img-src 'self' https: data:; form-action 'self' {}; frame-ancestors 'none'; base-uri 'none'",
            urls.all_origins().join(" ")
        );
        Ok(Portal {
            store,
            sessions: SessionTable::new(Timeouts {
                default_idle: p.idle_timeout,
                absolute: p.absolute_timeout,
                code_ttl: p.code_ttl,
            }),
            verifier: Verifier::new(p.max_concurrent_hashes),
            csrf_key,
            sites,
            urls,
            csp: HeaderValue::from_str(&csp).unwrap_or_else(|_| crate::http::page::default_csp()),
            metrics,
            watch_interval: Duration::from_secs(2).min(p.sync_interval),
            sync_interval: p.sync_interval,
        })
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
    ) -> Result<Option<Admission>, StoreError> {
        let name = user.to_string();
        let record = self.store_call(move |s| s.user(&name)).await?;
        let ok = self
            .verifier
            .verify(
                record.as_ref().map(|r| r.password_hash.clone()),
                password.to_string(),
            )
            .await;
        match record {
            Some(record) if ok && !record.disabled => {
                self.metrics.signin("basic_success");
                Ok(Some(self.sessions.start_basic(key, record, site)))
            }
            _ => {
                self.metrics.signin("basic_failure");
                Ok(None)
            }
        }
    }

    fn look_for(&self, site: Option<&str>) -> Look {
        site.and_then(|id| self.sites.iter().find(|s| s.id.0 == id))
            .map(|s| s.look.clone())
            .unwrap_or_default()
    }

    fn site(&self, id: &str) -> Option<&PortalSite> {
        self.sites.iter().find(|s| s.id.0 == id)
    }

    /// Background duties until shutdown: learn of users changed by other processes, and
    /// end sessions past their idle or absolute limit.
    pub async fn maintain(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut revision = match self.store_call(|s| s.users_changed_since(i64::MAX)).await {
            Ok((_, rev)) => rev,
            Err(e) => {
                tracing::error!(error = %crate::http::error::error_chain(&e), "cannot read the store's revision");
                0
            }
        };
        let mut watch = tokio::time::interval(self.watch_interval);
        let mut reap = tokio::time::interval(self.sync_interval.min(Duration::from_secs(5)));
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = watch.tick() => revision = self.apply_user_changes(revision).await,
                _ = reap.tick() => self.sessions.reap(),
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
                for (name, record) in users {
                    tracing::info!(user = %name, "user changed in the store; updating their sessions");
                    self.sessions.user_changed(&name, record);
                }
                newest
            }
            Err(e) => {
                tracing::error!(error = %crate::http::error::error_chain(&e), "cannot poll the store for user changes");
                revision
            }
        }
    }
}

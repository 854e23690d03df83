//! Listeners and the accept loops: HTTPS for every site and the portal (routed by SNI and
//! Host), the plain-HTTP redirect listener, and the admin listener.
//!
//! `run` takes already-bound listeners, so the binary binds the configured addresses and
//! tests bind `127.0.0.1:0`. Shutdown: stop accepting, let in-flight requests finish for
//! up to `server.shutdown_grace`, then return.

pub mod admin;
pub mod resolve;
mod streams;
pub mod tls;
pub mod urls;
mod workers;

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HOST, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::central::Central;
use crate::central::local::LocalCentral;
use crate::central::remote::RemoteCentral;
use crate::config::StoreLocation;
use crate::config::{Config, Role};
use crate::crypto::Key;
use crate::gate::{Gate, Routed, SiteRuntime};
use crate::http::body::Body;
use crate::http::error::HttpError;
use crate::http::headers::Scrubber;
use crate::http::timer::TimerSlot;
use crate::metrics::Metrics;
use crate::portal::Portal;
use crate::proxy::Upstream;
use crate::store::SqliteStore;
use crate::store::postgres::PgStore;
use arc_swap::ArcSwap;
use urls::Urls;

/// A TLS handshake must finish within this, so half-open clients cannot pile up.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The plain listeners (admin, redirect to HTTPS): headers within this, and at most this
/// many connections at once each; they serve tiny answers.
const PLAIN_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const PLAIN_MAX_CONNECTIONS: usize = 1024;
/// Most request header fields (more: 431).
const MAX_HEADERS: usize = 100;
/// Most bytes of request head, and of buffered reads (more: 431).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// HTTP/2: a PING after this long without a frame from the client, and the connection
/// closed if the answer takes longer than `H2_PING_TIMEOUT`. A peer that vanished (no FIN,
/// no RST) in the middle of a download that has filled its flow-control window is written
/// nothing more, so TCP never notices; its stream would stay open, and its slot taken.
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// Upper bound on the gate's table (entries); least recently used go first beyond it.
const TABLE_CAPACITY: u64 = 4_000_000;

/// The sockets `run` serves, bound by the caller.
pub struct Listeners {
    pub https: TcpListener,
    pub http_redirect: Option<TcpListener>,
    pub admin: Option<TcpListener>,
}

impl Listeners {
    /// Bind the addresses of `[server]`.
    pub async fn bind(config: &Config) -> Result<Self, RunError> {
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| RunError::Bind { addr, source })
        };
        Ok(Listeners {
            https: bind(config.server.listen).await?,
            http_redirect: match config.server.http_redirect {
                Some(a) => Some(bind(a).await?),
                None => None,
            },
            admin: match config.server.admin {
                Some(a) => Some(bind(a).await?),
                None => None,
            },
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the store")]
    Store(#[from] crate::store::StoreError),
    #[error("cannot set up TLS")]
    Tls(#[from] tls::TlsError),
    #[error("listener failed")]
    Io(#[from] std::io::Error),
    #[error("cannot set up the connection to the portal: {0}")]
    Cluster(String),
    #[cfg(feature = "bench-seed")]
    #[error(transparent)]
    BenchSeed(#[from] crate::bench_seed::SeedError),
}

/// Everything a request needs, shared by all connections.
pub struct App {
    pub gate: Arc<Gate>,
    /// `None` on an edge (`[cluster] role = "edge"`): its portal is another process.
    pub portal: Option<Arc<Portal>>,
    /// The API edges call (`role = "portal"` only).
    api: Option<crate::portal::api::Api>,
    /// The sites by host; replaced whole when the config is reloaded (SIGHUP), read once
    /// per request without a lock.
    sites_by_host: ArcSwap<HashMap<String, Arc<SiteRuntime>>>,
    portal_host: String,
    urls: Urls,
    certs: tls::CertResolver,
    metrics: Arc<Metrics>,
    /// The config now in use, to tell a reload what it may not change.
    config: std::sync::Mutex<Config>,
}

/// A number for each site runtime ever built, never reused: a table entry admits to the
/// runtime it was made for only, even across a reload that reorders the sites.
static NEXT_SITE_INDEX: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

pub(crate) fn site_runtimes(config: &Config, metrics: &Metrics) -> Vec<Arc<SiteRuntime>> {
    config
        .sites
        .iter()
        .map(|site| {
            Arc::new(SiteRuntime {
                index: NEXT_SITE_INDEX.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                scrubber: Scrubber::new(&site.headers),
                config: site.clone(),
                upstream: Upstream::new(site),
                requests: metrics.site_requests(&site.id.0),
            })
        })
        .collect()
}

/// The sites this process serves, by host: all of them, except on a portal-only process
/// (which knows them for sign-in and levels, and leaves serving them to its edges).
fn served(config: &Config, sites: &[Arc<SiteRuntime>]) -> HashMap<String, Arc<SiteRuntime>> {
    if matches!(config.cluster.role, Role::Portal { .. }) {
        return HashMap::new();
    }
    sites
        .iter()
        .map(|s| (s.config.host.clone(), s.clone()))
        .collect()
}

/// Why a reload was refused; the old config keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the new config is not valid:\n{0}")]
    Invalid(crate::config::ConfigErrors),
    #[error("the new certificates cannot be used")]
    Tls(#[from] tls::TlsError),
}

impl App {
    /// Apply a new config without dropping connections: certificates, sites (backends,
    /// rules, headers, levels, limits, public URLs) and `[[users]]`. Settings only a restart
    /// can change (listeners, workers, the portal's host, public URL, store and timeouts)
    /// keep their old values, with a warning. Nothing changes unless the whole new config
    /// can be used.
    pub fn reload(&self, new: Config) -> Result<(), ReloadError> {
        self.certs.reload(&new)?;
        let mut current = self.config.lock().unwrap_or_else(|p| p.into_inner());
        for key in restart_only_changes(&current, &new) {
            tracing::warn!(
                key,
                "changed in the config, but takes effect only after a restart"
            );
        }
        let sites = site_runtimes(&new, &self.metrics);
        self.urls.set_sites(&new);
        if let Some(portal) = &self.portal {
            portal.set_sites(&new);
        }
        self.sites_by_host.store(Arc::new(served(&new, &sites)));
        // Entries were made for the old runtimes; the portal re-admits on the next request.
        self.gate.table.clear();
        if let Some(portal) = &self.portal
            && let Err(e) = portal.provision(&new)
        {
            tracing::error!(error = %crate::http::error::error_chain(&e), "reload: cannot update [[users]] in the store");
        }
        tracing::info!(sites = sites.len(), "config reloaded");
        *current = new;
        Ok(())
    }

    /// Read the config file again and apply it ([`App::reload`]); refusals are logged.
    pub fn reload_from_file(&self) {
        let file = self
            .config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .file
            .clone();
        let result = Config::load(&file)
            .map_err(ReloadError::Invalid)
            .and_then(|c| self.reload(c));
        if let Err(e) = result {
            tracing::error!(file = %file.display(), error = %crate::http::error::error_chain(&e), "reload refused; the old config keeps serving");
        }
    }
}

/// Keys whose change needs a restart, named as in `config.toml`.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let (o, n) = (&old.server, &new.server);
    let (po, pn) = (&old.portal, &new.portal);
    [
        ("server.listen", o.listen != n.listen),
        ("server.http_redirect", o.http_redirect != n.http_redirect),
        ("server.admin", o.admin != n.admin),
        ("server.workers", o.workers != n.workers),
        (
            "server.max_connections",
            o.max_connections != n.max_connections,
        ),
        (
            "server.header_read_timeout",
            o.header_read_timeout != n.header_read_timeout,
        ),
        (
            "server.shutdown_grace",
            o.shutdown_grace != n.shutdown_grace,
        ),
        ("portal.host", po.host != pn.host),
        ("portal.public_port", po.public_port != pn.public_port),
        ("portal.public_url", po.public_url != pn.public_url),
        ("portal.store", po.store != pn.store),
        ("portal.idle_timeout", po.idle_timeout != pn.idle_timeout),
        (
            "portal.absolute_timeout",
            po.absolute_timeout != pn.absolute_timeout,
        ),
        ("portal.cache_margin", po.cache_margin != pn.cache_margin),
        ("portal.sync_interval", po.sync_interval != pn.sync_interval),
        (
            "portal.signin_throttle",
            po.signin_throttle != pn.signin_throttle,
        ),
        (
            "portal.registration_limit",
            po.registration_limit != pn.registration_limit,
        ),
    ]
    .into_iter()
    .filter_map(|(key, changed)| changed.then_some(key))
    .collect()
}

/// The portal of a standalone or portal process, on its store, with `[[users]]` provisioned
/// and the sessions of the last run restored. Blocking.
fn open_portal(
    config: &Config,
    urls: Urls,
    metrics: Arc<Metrics>,
) -> Result<Arc<Portal>, RunError> {
    let (store, shared): (Arc<dyn crate::store::Store>, _) = match &config.portal.store {
        StoreLocation::Sqlite(path) => (Arc::new(SqliteStore::open(path)?), None),
        StoreLocation::Postgres(url) => {
            let pg = Arc::new(PgStore::open(url)?);
            tracing::info!(store = %pg.shown(), "sessions, codes and the revocation log are shared with the other portals of this database");
            (pg.clone(), Some(pg))
        }
    };
    let portal = Arc::new(Portal::new(config, store, shared, urls, metrics)?);
    portal.provision(config)?;
    portal.restore_sessions();
    Ok(portal)
}

pub async fn run(
    listeners: Listeners,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let https_addr = listeners.https.local_addr()?;
    let urls = Urls::for_config(&config, https_addr.port());
    let metrics = Arc::new(Metrics::new());

    // An edge runs no portal (and opens no store): its gates ask the portal's API.
    // The key naming Basic credentials in the table and at the portal: random per process
    // (API sessions are never stored: see `SessionTable::take_writes`), but on edges derived
    // from the cluster secret, so that one credential is one session whichever edge it
    // reaches, and across an edge's restart.
    let (portal, central, basic_key): (Option<Arc<Portal>>, Arc<dyn Central>, Key) = match &config
        .cluster
        .role
    {
        Role::Edge(link) => {
            let remote = RemoteCentral::new(link).map_err(RunError::Cluster)?;
            tracing::info!(portal = %format!("https://{}:{}", link.host, link.port), "edge: gates only, asking the portal's API");
            let key = Key::from_bytes(link.secret.derive_key("gate basic key"));
            (None, Arc::new(remote), key)
        }
        Role::Standalone | Role::Portal { .. } => {
            // Opening the store, provisioning users and restoring sessions block (and the
            // PostgreSQL client must not run on the event loop): done on the blocking pool.
            let (cfg, site_urls, m) = (config.clone(), urls.clone(), metrics.clone());
            let portal = tokio::task::spawn_blocking(move || open_portal(&cfg, site_urls, m))
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
            let key = Key::random();
            (
                Some(portal.clone()),
                Arc::new(LocalCentral::new(portal)),
                key,
            )
        }
    };
    let api = match (&config.cluster.role, &portal) {
        (Role::Portal { secret }, Some(portal)) => {
            tracing::info!(
                prefix = crate::central::wire::PREFIX,
                "portal: serving the API for edges; no sites served here"
            );
            Some(crate::portal::api::Api::new(portal.clone(), secret.clone()))
        }
        _ => None,
    };

    let sites = site_runtimes(&config, &metrics);
    let gate = Arc::new(Gate::new(
        sites.clone(),
        central,
        urls.clone(),
        config.portal.cache_margin,
        TABLE_CAPACITY,
        metrics.clone(),
        basic_key,
    ));
    // Single node: a sign-out reaches this process's gate at once, not at the next sync.
    // (A portal sharing its sessions with others serves no gate of its own.)
    if let Some(table) = portal.as_ref().and_then(|p| p.sessions.local()) {
        gate.follow_revocations(table);
    }

    let (tls_config, certs) = tls::server_config(&config)?;
    let app = Arc::new(App {
        gate: gate.clone(),
        portal: portal.clone(),
        api,
        sites_by_host: ArcSwap::from_pointee(served(&config, &sites)),
        portal_host: config.portal.host.clone(),
        urls,
        certs,
        metrics,
        config: std::sync::Mutex::new(config.clone()),
    });
    #[cfg(feature = "bench-seed")]
    crate::bench_seed::from_env(&app).await?;
    let acceptor = TlsAcceptor::from(tls_config);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sync_task = tokio::spawn(crate::gate::sync::run(
        gate.clone(),
        config.portal.sync_interval,
        stop_rx.clone(),
    ));
    if let Some(portal) = &portal {
        tokio::spawn(portal.clone().maintain(stop_rx.clone()));
    }
    tokio::spawn(reload_on_sighup(app.clone(), stop_rx.clone()));
    let graceful = workers::Drain::new();
    if let Some(l) = listeners.admin {
        tracing::info!(addr = %l.local_addr()?, "admin listener (healthz, readyz, metrics, report)");
        tokio::spawn(serve_plain(l, app.clone(), Plain::Admin, stop_rx.clone()));
    }
    if let Some(l) = listeners.http_redirect {
        tracing::info!(addr = %l.local_addr()?, "plain HTTP listener redirecting to HTTPS");
        tokio::spawn(serve_plain(
            l,
            app.clone(),
            Plain::Redirect,
            stop_rx.clone(),
        ));
    }
    tracing::info!(addr = %https_addr, role = config.cluster.role.name(), portal = %app.urls.portal_origin(), sites = app.sites_by_host.load().len(), "gatehouse serving");

    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        // Also bounds a keep-alive connection's wait for its next request.
        .header_read_timeout(config.server.header_read_timeout)
        .max_headers(MAX_HEADERS)
        .max_buf_size(MAX_HEAD_BYTES)
        // Flatten head and body into one buffer: over TLS, every separate write becomes a
        // TLS record of its own (more sealing, more bytes); one buffer is one record.
        .writev(false);
    let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .max_header_list_size(MAX_HEAD_BYTES as u32)
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_TIMEOUT);
    let shared = Arc::new(workers::Shared {
        acceptor,
        app: app.clone(),
        http1,
        http2,
        h2_idle: config.server.header_read_timeout,
    });
    let mut workers =
        workers::Workers::start(config.server.workers, shared, config.server.shutdown_grace)?;

    let slots = Arc::new(tokio::sync::Semaphore::new(config.server.max_connections));
    let mut last_full_warning: Option<std::time::Instant> = None;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listeners.https.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: log, breathe, go on.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // At the cap, close at once: a clear refusal, and the backlog keeps moving.
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    app.gate.metrics.connection_refused();
                    if last_full_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                        last_full_warning = Some(std::time::Instant::now());
                        tracing::warn!(max = config.server.max_connections, peer = %peer, "connection limit reached; refusing new connections (server.max_connections)");
                    }
                    drop(tcp);
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                workers.dispatch(tcp, peer, graceful.watcher(), slot);
            }
            _ = &mut shutdown => break,
        }
    }
    tracing::info!("shutting down: no new connections; letting in-flight requests finish");
    let _ = stop_tx.send(true);
    drop(listeners.https);
    let drained = tokio::time::timeout(config.server.shutdown_grace, graceful.shutdown()).await;
    workers.stop().await;
    match drained {
        Ok(()) => tracing::info!("all connections closed"),
        Err(_) => {
            tracing::warn!(grace = ?config.server.shutdown_grace, "grace period over; cutting remaining connections")
        }
    }
    // A last sync: the traffic counted since the previous one reaches the accounts' usage
    // (a second one when the first was still carrying a batch sent before).
    if let Ok(mut state) = sync_task.await {
        crate::gate::sync::once(&gate, &mut state).await;
        if state.usage_waits() {
            crate::gate::sync::once(&gate, &mut state).await;
        }
    }
    if let Some(portal) = &portal {
        portal.save_all_sessions().await;
    }
    Ok(())
}

/// SIGHUP: reload the config file ([`App::reload_from_file`]) until shutdown.
async fn reload_on_sighup(app: Arc<App>, mut stop: tokio::sync::watch::Receiver<bool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; reloading is off");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = hangups.recv() => {
                tracing::info!("SIGHUP: reloading the config");
                // Reading certificates and the store blocks; keep it off the event loop.
                let app = app.clone();
                let _ = tokio::task::spawn_blocking(move || app.reload_from_file()).await;
            }
            _ = stop.changed() => return,
        }
    }
}

/// The host a request is for: `:authority` (HTTP/2, absolute-form) or `Host`, lowercase
/// and without port, plus the value to send on. Both present and different → refused.
fn request_host<B>(req: &Request<B>) -> Result<(Cow<'_, str>, HeaderValue), HttpError> {
    let bad = || HttpError::BadRequest("Host header");
    let (raw, value) = match (req.uri().authority(), req.headers().get(HOST)) {
        (Some(a), Some(h)) => {
            if !a.as_str().as_bytes().eq_ignore_ascii_case(h.as_bytes()) {
                return Err(HttpError::BadRequest(
                    "the request target and Host disagree",
                ));
            }
            (a.as_str(), h.clone())
        }
        (Some(a), None) => (
            a.as_str(),
            HeaderValue::from_str(a.as_str()).map_err(|_| bad())?,
        ),
        (None, Some(h)) => (h.to_str().map_err(|_| bad())?, h.clone()),
        (None, None) => return Err(HttpError::BadRequest("no Host header")),
    };
    let host = host_part(raw).ok_or_else(bad)?;
    let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    };
    Ok((host, value))
}

/// The host of a `host[:port]` authority (brackets kept for IPv6), checked for
/// characters a host name or address may hold; a trailing dot is dropped.
fn host_part(raw: &str) -> Option<&str> {
    let (host, port) = if raw.starts_with('[') {
        let end = raw.find(']')?;
        (&raw[..=end], raw[end + 1..].strip_prefix(':'))
    } else {
        match raw.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (raw, None),
        }
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    let host = host.strip_suffix('.').unwrap_or(host);
    let chars_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'));
    (port_ok && chars_ok).then_some(host)
}

impl App {
    async fn serve(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        peer_ip: &HeaderValue,
        sni: Option<&str>,
        response_timer: TimerSlot,
    ) -> Response<Body> {
        if let Err(e) = crate::http::framing::check(&req) {
            return HttpError::from(e).into_response();
        }
        // A portal-only process: its edges' calls, whatever name they reached it by (the
        // certificate they checked is theirs to choose); signed, so routing by path is safe.
        if let Some(api) = &self.api
            && crate::portal::api::Api::is_api_path(req.uri().path())
        {
            return Box::pin(api.handle(req, peer)).await;
        }
        // Route while the request is only borrowed; the host is not copied.
        let site = {
            let (host, host_value) = match request_host(&req) {
                Ok(h) => h,
                Err(e) => return e.into_response(),
            };
            // A connection opened for one name must not be reused for another (also on HTTP/2).
            if sni.is_some_and(|sni| sni != host) {
                return HttpError::Misdirected.into_response();
            }
            if host == self.portal_host {
                None
            } else {
                // Cloned out, so a reload during the request cannot pull it away.
                match self.sites_by_host.load().get(host.as_ref()).cloned() {
                    Some(site) => Some((site, host_value)),
                    None => return HttpError::UnknownHost.into_response(),
                }
            }
        };
        match site {
            // Boxed: the portal's future is large (sign-in, store calls) and rare; inline, it
            // would make every proxied request's future, which hyper moves around, kilobytes larger.
            None => match &self.portal {
                Some(portal) => Box::pin(portal.handle(req, peer)).await,
                // An edge: the portal is elsewhere.
                None => HttpError::UnknownHost.into_response(),
            },
            Some((site, host)) => {
                // Boxed: every async level it passes through would otherwise keep its own
                // copy in the request's future, whose size hyper keeps per connection.
                let routed = Box::new(Routed {
                    req,
                    peer,
                    peer_ip: peer_ip.clone(),
                    host,
                    response_timer,
                });
                self.gate.handle(&site, routed).await
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Plain {
    Admin,
    Redirect,
}

/// The plain-HTTP listeners: admin endpoints, or a redirect of everything to HTTPS.
async fn serve_plain(
    listener: TcpListener,
    app: Arc<App>,
    kind: Plain,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(PLAIN_MAX_CONNECTIONS));
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => { tracing::warn!(error = %e, "accept failed"); tokio::time::sleep(Duration::from_millis(50)).await; continue; }
            },
            _ = stop.changed() => return,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            app.gate.metrics.connection_refused();
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = service_fn(move |req: Request<Incoming>| {
                let app = app.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(match kind {
                        Plain::Admin => admin::handle(&app, &req).await,
                        Plain::Redirect => redirect_to_https(&app, &req),
                    })
                }
            });
            let mut http1 = hyper::server::conn::http1::Builder::new();
            http1
                .timer(TokioTimer::new())
                .header_read_timeout(PLAIN_HEADER_READ_TIMEOUT);
            let _ = http1.serve_connection(TokioIo::new(tcp), service).await;
        });
    }
}

/// Plain HTTP → the same host and path over HTTPS, for configured hosts only.
fn redirect_to_https<B>(app: &App, req: &Request<B>) -> Response<Body> {
    let Ok((host, _)) = request_host(req) else {
        return HttpError::BadRequest("Host header").into_response();
    };
    if host != app.portal_host && !app.urls.is_site_host(&host) {
        return HttpError::UnknownHost.into_response();
    }
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let location = format!("{}{}", app.urls.origin(&host), path);
    let mut res = Response::new(Body::empty());
    *res.status_mut() = StatusCode::PERMANENT_REDIRECT;
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(http::header::LOCATION, v);
    }
    res
}

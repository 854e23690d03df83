//! Counters for the admin listener's `/metrics`, in Prometheus text format
//! (prometheus-client): requests by site and status, sign-ins by result, table size.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    site: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SigninLabels {
    result: &'static str,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    signins: Family<SigninLabels, Counter>,
    password_checks: Counter,
    table_entries: Gauge,
    portal_sessions: Gauge,
    portal_reachable: Gauge,
    connections_refused: Counter,
    sync_failures: Counter,
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("gatehouse");
        let requests = Family::<RequestLabels, Counter>::default();
        let signins = Family::<SigninLabels, Counter>::default();
        let password_checks = Counter::default();
        let table_entries = Gauge::default();
        let portal_sessions = Gauge::default();
        let portal_reachable = Gauge::default();
        registry.register(
            "requests",
            "Requests answered, by site and status",
            requests.clone(),
        );
        registry.register(
            "signins",
            "Sign-in attempts and hand-offs, by result",
            signins.clone(),
        );
        registry.register(
            "password_checks",
            "Passwords checked (argon2id or an imported hash); throttled attempts are not",
            password_checks.clone(),
        );
        registry.register(
            "table_entries",
            "Entries in the gate's local table of active users",
            table_entries.clone(),
        );
        registry.register(
            "portal_sessions",
            "Sessions in the portal's session table",
            portal_sessions.clone(),
        );
        registry.register(
            "portal_reachable",
            "1 when the last sync with the portal succeeded",
            portal_reachable.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "connections_refused",
            "Connections closed on arrival because a listener was at its connection limit",
            connections_refused.clone(),
        );
        let sync_failures = Counter::default();
        registry.register(
            "sync_failures",
            "Syncs with the portal that failed (portal unreachable or refusing)",
            sync_failures.clone(),
        );
        portal_reachable.set(1);
        Metrics {
            registry,
            requests,
            signins,
            password_checks,
            table_entries,
            portal_sessions,
            portal_reachable,
            connections_refused,
            sync_failures,
            ready: AtomicBool::new(true),
        }
    }

    /// The request counters of one site, for its gate to keep.
    pub fn site_requests(&self, site: &str) -> SiteRequests {
        SiteRequests {
            site: site.to_string(),
            family: self.requests.clone(),
            by_status: (100..600).map(|_| OnceLock::new()).collect(),
        }
    }

    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// `result`: "success", "failure", "throttled", "handoff", "callback_refused",
    /// "basic_success", "basic_failure", "basic_throttled"
    pub fn signin(&self, result: &'static str) {
        self.signins.get_or_create(&SigninLabels { result }).inc();
    }

    /// One password verification is about to run.
    pub fn password_check(&self) {
        self.password_checks.inc();
    }

    pub fn sync_failed(&self) {
        self.sync_failures.inc();
    }

    pub fn set_ready(&self, reachable: bool) {
        self.ready.store(reachable, Ordering::Relaxed);
        self.portal_reachable.set(i64::from(reachable));
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The text exposition, with gauges refreshed from their sources.
    /// `portal_sessions`: `None` on an edge (no portal in this process; the gauge stays 0).
    pub fn render(&self, table_entries: u64, portal_sessions: Option<usize>) -> String {
        self.table_entries.set(table_entries as i64);
        self.portal_sessions
            .set(portal_sessions.unwrap_or(0) as i64);
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// One site's request counters by status. Each is looked up in the family once, on first
/// use; after that a request only bumps an atomic (no label hashing, no lock, no allocation).
pub struct SiteRequests {
    site: String,
    family: Family<RequestLabels, Counter>,
    /// Index `status - 100`, for statuses 100–599.
    by_status: Box<[OnceLock<Counter>]>,
}

impl SiteRequests {
    pub fn inc(&self, status: u16) {
        let Some(slot) = usize::from(status)
            .checked_sub(100)
            .and_then(|i| self.by_status.get(i))
        else {
            return;
        };
        slot.get_or_init(|| {
            let labels = RequestLabels {
                site: self.site.clone(),
                status,
            };
            self.family.get_or_create(&labels).clone()
        })
        .inc();
    }
}

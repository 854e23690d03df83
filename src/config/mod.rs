//! Configuration: `config.toml` read (`raw`), checked (`validate`) and typed (this module).
//!
//! Everything after start-up works on [`Config`], whose values are already known to be good:
//! no `expect` is needed downstream. A bad file never starts half-way: every problem found is
//! reported as a [`ConfigError`] naming file, line, column and key.

mod backend_auth;
pub mod branding;
mod error;
mod public_url;
mod raw;
mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderName;

pub use error::{ConfigError, ConfigErrors};

/// A site's id: `[a-z0-9-]+`, unique. It names the site in URLs, levels and reports.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SiteId(pub String);

impl std::fmt::Display for SiteId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An access level. 0 means ACCESS DENIED; higher numbers may reach more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Level(pub u32);

impl Level {
    pub const DENIED: Level = Level(0);
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from; relative paths inside it are resolved against its folder.
    pub file: PathBuf,
    pub server: Server,
    pub tls: TlsFiles,
    pub portal: Portal,
    pub users: Vec<UserSpec>,
    pub sites: Vec<Site>,
    pub cluster: Cluster,
}

#[derive(Debug, Clone)]
pub struct Server {
    pub listen: SocketAddr,
    pub http_redirect: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub shutdown_grace: Duration,
    /// Worker threads serving connections; 1 serves on the accepting runtime.
    pub workers: usize,
    pub log: Option<String>,
    pub max_connections: usize,
    pub header_read_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Where the portal keeps its durable state (`[portal] store`).
#[derive(Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// An SQLite file (one portal process).
    Sqlite(PathBuf),
    /// A PostgreSQL database, shared by every portal process of a deployment: the
    /// connection URL as given (it may hold a password, so it is never shown whole).
    Postgres(String),
}

impl std::fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreLocation::Sqlite(path) => write!(f, "{}", path.display()),
            StoreLocation::Postgres(url) => f.write_str(&crate::store::postgres::redacted(url)),
        }
    }
}

impl std::fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

#[derive(Debug, Clone)]
pub struct Portal {
    pub host: String,
    /// The port browsers use to reach the portal and every site without a `public_url`;
    /// `None` means "the port we listen on".
    pub public_port: Option<u16>,
    /// Where browsers reach the portal itself, when set (agrees with `public_port` if both are).
    pub public_url: Option<PublicUrl>,
    pub store: StoreLocation,
    pub idle_timeout: Duration,
    pub max_idle_timeout: Duration,
    pub allow_no_idle_limit: bool,
    pub absolute_timeout: Duration,
    pub cache_margin: Duration,
    pub sync_interval: Duration,
    pub code_ttl: Duration,
    pub max_concurrent_hashes: usize,
    /// How long a temporary password (self-registration) works.
    pub temporary_password_ttl: Duration,
    pub mail: Mail,
    pub signin_throttle: SigninThrottle,
    pub registration_limit: RegistrationLimit,
}

/// `[portal.registration_limit]`: registration requests allowed per e-mail address and
/// per client address in an hour (see `portal::register_limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrationLimit {
    pub per_address: u32,
    pub per_client: u32,
}

impl Default for RegistrationLimit {
    fn default() -> Self {
        RegistrationLimit {
            per_address: 3,
            per_client: 20,
        }
    }
}

/// `[portal.signin_throttle]`: after this many failed sign-ins, each further attempt waits
/// (1 s, doubling with every failure, at most `max_delay`). Counted per user name and client
/// address, per client address, and per user name from addresses where that user has not
/// signed in lately (see `portal::throttle` for why not per user name alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigninThrottle {
    pub failures: u32,
    pub address_failures: u32,
    pub user_failures: u32,
    pub max_delay: Duration,
}

impl Default for SigninThrottle {
    fn default() -> Self {
        SigninThrottle {
            failures: 5,
            address_failures: 100,
            user_failures: 50,
            max_delay: Duration::from_secs(15 * 60),
        }
    }
}

/// User name and password for the mail relay (from the environment or a file).
#[derive(Clone)]
pub struct SmtpLogin {
    pub user: String,
    pub password: zeroize::Zeroizing<String>,
}

impl std::fmt::Debug for SmtpLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpLogin")
            .field("user", &self.user)
            .field("password", &"[redacted]")
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct Mail {
    /// Where messages go as `.eml` files when there is no SMTP server.
    pub outbox: PathBuf,
    /// Set: messages go to this relay instead of the outbox.
    pub smtp: Option<crate::portal::mail::SmtpRelay>,
    /// Extra roots (PEM) trusted for the relay's TLS certificate, from `ca_file`.
    pub ca_pem: Option<Vec<u8>>,
    /// The login at the relay, if it wants one.
    pub login: Option<SmtpLogin>,
    /// The sender address; checked to be one address without CR/LF.
    pub from: String,
}

#[derive(Debug, Clone)]
pub struct UserSpec {
    pub name: String,
    pub password_hash: String,
    pub level: Level,
    /// `Some(ZERO)` means "no idle limit" (only where `allow_no_idle_limit`).
    pub idle_timeout: Option<Duration>,
    pub site_levels: BTreeMap<String, Level>,
    pub disabled: bool,
}

#[derive(Debug, Clone)]
pub struct Site {
    pub id: SiteId,
    /// Lowercase host name, without port.
    pub host: String,
    /// Where browsers reach this site, when not at `portal.public_port` or the listen port.
    pub public_url: Option<PublicUrl>,
    pub backend: Backend,
    pub min_level: Level,
    pub headers: IdentityHeaders,
    pub allow_basic: bool,
    pub case_sensitive_paths: bool,
    /// Sorted longest prefix first, so the first match is the longest.
    pub rules: Vec<Rule>,
    /// Log in to the backend on the user's behalf (SPEC §5).
    pub backend_auth: Option<BackendAuth>,
    pub registration: bool,
    pub branding: Option<Branding>,
    pub tls: Option<TlsFiles>,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    /// Largest request body, in bytes: larger ones get 413 before the backend sees them
    /// (declared lengths) or are cut off when they pass it (streamed ones).
    pub max_body: u64,
}

/// A checked `public_url` (of the portal or a site): `https://` + the host configured beside
/// it + this port. The host can only be that one (requests are routed by Host), so the port
/// is all it adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicUrl {
    /// 443 when the URL names none.
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// `http://host:port` (an optional path prefix is not supported: backends see the
    /// browser's own path).
    Http { authority: String },
    /// Answers with the request it received, as JSON (demo and tests).
    Echo,
}

/// How the gate logs in to a backend that has its own Basic login (SPEC §5).
#[derive(Debug, Clone)]
pub enum BackendAuth {
    /// `Basic base64(user ":" SP)` with `SP = hex(SHA-1(master_password || derive_id))`,
    /// derived by the portal while the user types their password.
    Derived { derive_id: String },
    /// One fixed service credential for every user, read from the environment or a file at
    /// start-up. The header is built once and marked sensitive (its Debug prints
    /// `Sensitive`), so the password itself is kept nowhere else.
    Static {
        user: String,
        authorization: http::HeaderValue,
    },
}

#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    pub user: HeaderName,
    pub level: HeaderName,
    pub account: HeaderName,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub path: String,
    pub min_level: Level,
}

#[derive(Debug, Clone, Default)]
pub struct Branding {
    pub title: Option<String>,
    pub logo: Option<String>,
    pub stylesheet: Option<String>,
}

/// What this process runs (SPEC `[cluster]`).
#[derive(Debug, Clone)]
pub enum Role {
    /// Gates and portal in one process.
    Standalone,
    /// Gates only; the portal is reached over HTTPS.
    Edge(EdgeLink),
    /// The portal only, serving edges at its API (`/.gatehouse/api/`).
    Portal {
        secret: crate::central::auth::ClusterSecret,
    },
}

impl Role {
    pub fn name(&self) -> &'static str {
        match self {
            Role::Standalone => "standalone",
            Role::Edge(_) => "edge",
            Role::Portal { .. } => "portal",
        }
    }
}

/// How an edge reaches the portal's API.
#[derive(Debug, Clone)]
pub struct EdgeLink {
    /// `portal_url`'s host (the TLS name checked on the portal's certificate, and the Host
    /// sent) and port.
    pub host: String,
    pub port: u16,
    pub secret: crate::central::auth::ClusterSecret,
    /// PEM roots from `ca_file`; `None`: the system's roots.
    pub ca_pem: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
pub struct Cluster {
    pub role: Role,
}

impl Config {
    /// Read and validate a config file. Every problem found is returned, not just the first.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|err| {
            ConfigErrors(vec![ConfigError::whole_file(
                path,
                format!("cannot read the config file: {err}"),
            )])
        })?;
        Config::parse(path, &text)
    }

    /// Validate config text as if it were read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
        validate::validate(path, text)
    }

    pub fn site(&self, id: &str) -> Option<&Site> {
        self.sites.iter().find(|s| s.id.0 == id)
    }
}

impl Site {
    /// The site data hashed with the master password, on a derived site.
    pub fn derive_id(&self) -> Option<&str> {
        match &self.backend_auth {
            Some(BackendAuth::Derived { derive_id }) => Some(derive_id),
            _ => None,
        }
    }

    /// The minimum level for a normalised path: the longest matching rule, else the site's own.
    ///
    /// A path with `;params` is read both ways a backend may route it (params stripped, as
    /// servlet containers do, or kept in their segment), and the stricter level wins: with
    /// `/admin` at 5 and `/admin/help` at 1, `/admin/help;x` needs 5, since a backend that
    /// keeps params routes it under `/admin`, not to `/admin/help`.
    pub fn required_level(&self, path: &str) -> Level {
        use crate::http::path;
        let level = |matches: fn(&str, &str, bool) -> bool| {
            self.rules
                .iter()
                .find(|r| matches(path, &r.path, self.case_sensitive_paths))
                .map_or(self.min_level, |r| r.min_level)
        };
        let stripped = level(path::prefix_matches);
        if !path::has_params(path) {
            return stripped;
        }
        stripped.max(level(path::prefix_matches_with_params))
    }
}

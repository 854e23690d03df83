//! The configuration file exactly as written: serde structs that mirror `config.toml`.
//!
//! Nothing here is trusted yet. `deny_unknown_fields` turns a typo into an error, and the
//! values that need checking carry their position (`Spanned`) so that `validate` can name
//! file, line and column. `super::validate` turns this into the typed [`super::Config`].

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// A string value together with where it stands in the file.
pub type Str = Spanned<String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub server: RawServer,
    pub tls: RawTls,
    pub portal: RawPortal,
    #[serde(default)]
    pub users: Vec<RawUser>,
    #[serde(default)]
    pub sites: Vec<RawSite>,
    pub cluster: Option<RawCluster>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Str,
    pub http_redirect: Option<Str>,
    pub admin: Option<Str>,
    /// How long in-flight requests may run on after SIGTERM before connections are cut.
    pub shutdown_grace: Option<Str>,
    /// Threads serving connections, each with its own event loop (default: one per CPU).
    pub workers: Option<Spanned<usize>>,
    /// Log level filter when `RUST_LOG` is not set (e.g. "info", "gatehouse=debug").
    pub log: Option<Str>,
    /// Connections served at once; beyond it new ones are closed at once.
    pub max_connections: Option<Spanned<usize>>,
    /// Request headers (and, between requests, the next request's) must arrive within this.
    pub header_read_timeout: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: Str,
    pub key: Str,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPortal {
    pub host: Str,
    pub public_port: Option<Spanned<u16>>,
    /// Where browsers reach the portal, e.g. `"https://auth.example.org:8443"`.
    pub public_url: Option<Str>,
    pub store: Str,
    pub idle_timeout: Option<Str>,
    pub max_idle_timeout: Option<Str>,
    #[serde(default)]
    pub allow_no_idle_limit: bool,
    pub absolute_timeout: Option<Str>,
    pub cache_margin: Option<Str>,
    pub sync_interval: Option<Str>,
    /// How long a hand-off code may wait for its redemption (default 60s).
    pub code_ttl: Option<Str>,
    /// How many argon2id verifications may run at once (default: number of CPUs).
    pub max_concurrent_hashes: Option<Spanned<usize>>,
    /// How long a self-registered user's temporary password works (default 24h).
    pub temporary_password_ttl: Option<Str>,
    pub mail: Option<RawMail>,
    /// Back-off after failed sign-ins (see `portal::throttle`).
    pub signin_throttle: Option<RawSigninThrottle>,
    /// Registration requests allowed per hour (see `portal::register_limit`).
    pub registration_limit: Option<RawRegistrationLimit>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegistrationLimit {
    pub per_address: Option<Spanned<u32>>,
    pub per_client: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSigninThrottle {
    pub failures: Option<Spanned<u32>>,
    pub address_failures: Option<Spanned<u32>>,
    pub user_failures: Option<Spanned<u32>>,
    pub max_delay: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMail {
    pub outbox: Option<Str>,
    pub smtp: Option<Str>,
    /// Extra roots (PEM) trusted for the relay's certificate.
    pub ca_file: Option<Str>,
    /// SMTP login at the relay (TLS only): `user` and one of `password_env` /
    /// `password_file`, never the password itself.
    pub user: Option<Str>,
    pub password_env: Option<Str>,
    pub password_file: Option<Str>,
    pub from: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub name: Str,
    pub password_hash: Str,
    pub level: Spanned<u32>,
    pub idle_timeout: Option<Str>,
    #[serde(default)]
    pub site_levels: BTreeMap<String, u32>,
    #[serde(default)]
    pub disabled: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSite {
    pub id: Str,
    pub host: Str,
    /// Where browsers reach this site, e.g. `"https://app.example.org:9443"`.
    pub public_url: Option<Str>,
    pub backend: Str,
    pub min_level: Option<Spanned<u32>>,
    pub headers: Option<RawHeaders>,
    #[serde(default)]
    pub allow_basic: bool,
    #[serde(default)]
    pub case_sensitive_paths: bool,
    #[serde(default)]
    pub rules: Vec<RawRule>,
    pub backend_auth: Option<RawBackendAuth>,
    #[serde(default)]
    pub registration: bool,
    pub branding: Option<RawBranding>,
    /// Per-site certificate, when the default `[tls]` one does not cover this host.
    pub cert: Option<Str>,
    pub key: Option<Str>,
    pub connect_timeout: Option<Str>,
    pub response_timeout: Option<Str>,
    /// Largest request body sent on to the backend, e.g. "100MiB".
    pub max_body: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeaders {
    pub user: Option<Str>,
    pub level: Option<Str>,
    pub account: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub path: Str,
    pub min_level: u32,
}

/// `[sites.backend_auth]`: `mode = "derived"` with `derive_id`, or `mode = "static"` with
/// `user` and exactly one of `password_env` / `password_file` (never the password itself:
/// it must not have to sit in the config in clear).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackendAuth {
    pub mode: Str,
    pub derive_id: Option<Str>,
    pub user: Option<Str>,
    pub password_env: Option<Str>,
    pub password_file: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBranding {
    pub title: Option<Str>,
    pub logo: Option<Str>,
    pub stylesheet: Option<Str>,
}

// Internal: edge/portal roles are not built yet; validation accepts only "standalone".
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub role: Option<Str>,
    pub portal_url: Option<Str>,
    pub secret_file: Option<Str>,
    pub ca_file: Option<Str>,
}

//! gatehouse: a TLS-terminating reverse proxy that puts sign-in, single sign-on and access
//! levels in front of unmodified web applications.
//!
//! # Layout
//!
//! The folders follow a request (see `docs/request-flow.md`):
//!
//! - [`server`]: listeners, TLS by SNI, the admin listener, graceful shutdown; routes each
//!   request by host to a site's gate or to the portal.
//! - [`http`]: what every request needs: path normalisation, header hygiene, cookies,
//!   redirect-target checks, pages, and the one error → response mapping.
//! - [`gate`]: a site's authentication client: site cookie → local table → ask the portal →
//!   decide → inject identity (and, on `backend_auth` sites, the backend credential).
//! - [`proxy`]: the pooled backend client, streaming bodies, WebSocket upgrades.
//! - [`portal`]: the central authentication server: sign-in, hand-off codes, the session
//!   table, sign-out everywhere, the account page, usage reports.
//! - [`central`]: the seam between gate and portal (in-process today; a network one later).
//! - [`store`]: users, accounts, usage and the portal's sessions on SQLite, behind one
//!   interface.
//! - [`crypto`]: identifiers, hashes, argon2id passwords, derived site passwords (SPEC §5),
//!   hashes imported from htpasswd, keyed MACs.
//! - [`config`]: `config.toml`, raw → validated, with errors naming file:line:column.
//! - [`cli`]: the `gatehouse` command line.

#![forbid(unsafe_code)]

#[cfg(feature = "bench-seed")]
pub mod bench_seed;
pub mod central;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod gate;
pub mod http;
pub mod metrics;
pub mod portal;
pub mod proxy;
pub mod server;
pub mod store;

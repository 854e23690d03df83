//! Raw → typed configuration. Collects every problem instead of stopping at the first.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderName;
use toml::Spanned;

use super::raw::*;
use super::*;
use crate::http::header_names::{HOP_BY_HOP, is_alias};

/// Collects problems while walking the raw config.
pub(super) struct Checker<'a> {
    file: &'a Path,
    text: &'a str,
    /// The config file's folder: relative paths in the file resolve against it.
    pub(super) base: PathBuf,
    errors: Vec<ConfigError>,
}

impl<'a> Checker<'a> {
    pub(super) fn error<T>(&mut self, spanned: &Spanned<T>, key: &str, message: impl Into<String>) {
        let e = ConfigError::at(
            self.file,
            self.text,
            spanned.span().start,
            key,
            message.into(),
        );
        self.errors.push(e);
    }

    fn duration(&mut self, v: &Option<Str>, key: &str, default: Duration) -> Duration {
        let Some(s) = v else { return default };
        match humantime::parse_duration(s.get_ref().trim()) {
            Ok(d) => d,
            Err(err) => {
                self.error(
                    s,
                    key,
                    format!(
                        "{:?} is not a duration ({err}); write e.g. \"15m\" or \"90s\"",
                        s.get_ref()
                    ),
                );
                default
            }
        }
    }

    /// A size in bytes: a number with an optional unit (B, KB, KiB, MB, MiB, GB, GiB).
    fn size(&mut self, v: &Option<Str>, key: &str, default: u64) -> u64 {
        let Some(s) = v else { return default };
        match parse_size(s.get_ref()) {
            Some(n) => n,
            None => {
                self.error(
                    s,
                    key,
                    format!(
                        "{:?} is not a size; write e.g. \"100MiB\", \"512KiB\" or \"1GB\"",
                        s.get_ref()
                    ),
                );
                default
            }
        }
    }

    fn addr(&mut self, v: &Str, key: &str) -> Option<SocketAddr> {
        match v.get_ref().parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.error(
                    v,
                    key,
                    format!(
                        "{:?} is not an address:port (e.g. \"127.0.0.1:8443\")",
                        v.get_ref()
                    ),
                );
                None
            }
        }
    }

    /// A path relative to the config file's folder; the file must be readable.
    fn readable_file(&mut self, v: &Str, key: &str) -> PathBuf {
        let path = self.base.join(v.get_ref());
        if let Err(err) = std::fs::metadata(&path).and_then(|_| std::fs::File::open(&path)) {
            self.error(v, key, format!("cannot read {}: {err}", path.display()));
        }
        path
    }

    fn header(&mut self, v: &Option<Str>, key: &str, default: &'static str) -> HeaderName {
        let Some(s) = v else {
            return HeaderName::from_static(default);
        };
        match HeaderName::from_bytes(s.get_ref().as_bytes()) {
            // The gateway sets or removes these itself: an identity header under one of
            // their names (or an alias a backend reads as one) would be overwritten by the
            // host or the peer address, or dropped, or would break the message's framing.
            Ok(h)
                if GATEWAY_HEADERS
                    .iter()
                    .chain(HOP_BY_HOP)
                    .any(|g| is_alias(h.as_str(), g)) =>
            {
                self.error(
                    s,
                    key,
                    format!(
                        "{:?} is a header the gateway sets or removes itself; name the identity header otherwise",
                        s.get_ref()
                    ),
                );
                HeaderName::from_static(default)
            }
            Ok(h) => h,
            Err(_) => {
                self.error(
                    s,
                    key,
                    format!("{:?} is not a valid header name", s.get_ref()),
                );
                HeaderName::from_static(default)
            }
        }
    }
}

/// Headers of the forwarded request that the gateway writes itself, besides the
/// hop-by-hop ones it removes.
const GATEWAY_HEADERS: &[&str] = &[
    "host",
    "cookie",
    "authorization",
    "content-length",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
];

fn is_host_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

fn is_site_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

pub(super) fn validate(file: &Path, text: &str) -> Result<Config, ConfigErrors> {
    let raw: RawConfig = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(err) => {
            let at = err.span().map_or(0, |s| s.start);
            let message = err.message().trim().to_string();
            return Err(ConfigErrors(vec![ConfigError::at(
                file, text, at, "", message,
            )]));
        }
    };
    let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut c = Checker {
        file,
        text,
        base,
        errors: Vec::new(),
    };

    let server = check_server(&mut c, &raw.server);
    let tls = TlsFiles {
        cert: c.readable_file(&raw.tls.cert, "tls.cert"),
        key: c.readable_file(&raw.tls.key, "tls.key"),
    };
    let portal = check_portal(&mut c, &raw.portal);
    let sites = check_sites(&mut c, &raw.sites, &portal);
    let users = check_users(&mut c, &raw.users, &portal, &sites);
    let cluster = check_cluster(&mut c, raw.cluster.as_ref(), &raw.users, &raw.portal);

    if c.errors.is_empty() {
        Ok(Config {
            file: file.to_path_buf(),
            server,
            tls,
            portal,
            users,
            sites,
            cluster,
        })
    } else {
        Err(ConfigErrors(c.errors))
    }
}

/// Enough for ordinary traffic on a small box; each idle TLS connection costs ~40 KB.
const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Uploads larger than this need the site to say so (`max_body`).
const DEFAULT_MAX_BODY: u64 = 100 << 20;

/// `"100MiB"`, `"512 KiB"`, `"1GB"`, `"4096"`: bytes, or `None` when not a size.
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "kib" => 1 << 10,
        "mb" => 1_000_000,
        "mib" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(factor)
}

fn check_server(c: &mut Checker, s: &RawServer) -> Server {
    let fallback: SocketAddr = ([127, 0, 0, 1], 0).into();
    let listen = c.addr(&s.listen, "server.listen").unwrap_or(fallback);
    let http_redirect = s
        .http_redirect
        .as_ref()
        .and_then(|v| c.addr(v, "server.http_redirect"));
    let admin = s.admin.as_ref().and_then(|v| c.addr(v, "server.admin"));
    let shutdown_grace = c.duration(
        &s.shutdown_grace,
        "server.shutdown_grace",
        Duration::from_secs(10),
    );
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = match &s.workers {
        Some(n) if !(1..=256).contains(n.get_ref()) => {
            c.error(n, "server.workers", "must be between 1 and 256");
            1
        }
        Some(n) => *n.get_ref(),
        None => cpus,
    };
    let max_connections = match &s.max_connections {
        Some(n) if !(1..=1_000_000).contains(n.get_ref()) => {
            c.error(n, "server.max_connections", "must be between 1 and 1000000");
            DEFAULT_MAX_CONNECTIONS
        }
        Some(n) => *n.get_ref(),
        None => DEFAULT_MAX_CONNECTIONS,
    };
    let header_read_timeout = c.duration(
        &s.header_read_timeout,
        "server.header_read_timeout",
        Duration::from_secs(15),
    );
    if let Some(v) = &s.header_read_timeout
        && (header_read_timeout.is_zero() || header_read_timeout > Duration::from_secs(600))
    {
        c.error(
            v,
            "server.header_read_timeout",
            "must be more than 0 and at most 10m",
        );
    }
    Server {
        listen,
        http_redirect,
        admin,
        shutdown_grace,
        workers,
        log: s.log.as_ref().map(|l| l.get_ref().clone()),
        max_connections,
        header_read_timeout,
    }
}

fn check_portal(c: &mut Checker, p: &RawPortal) -> Portal {
    let host = p.host.get_ref().to_ascii_lowercase();
    if !is_host_name(&host) {
        c.error(
            &p.host,
            "portal.host",
            format!("{:?} is not a host name", p.host.get_ref()),
        );
    }
    let idle_timeout = c.duration(
        &p.idle_timeout,
        "portal.idle_timeout",
        Duration::from_secs(15 * 60),
    );
    let max_idle_timeout = c.duration(
        &p.max_idle_timeout,
        "portal.max_idle_timeout",
        Duration::from_secs(30 * 60),
    );
    let absolute_timeout = c.duration(
        &p.absolute_timeout,
        "portal.absolute_timeout",
        Duration::from_secs(12 * 3600),
    );
    let cache_margin = c.duration(
        &p.cache_margin,
        "portal.cache_margin",
        Duration::from_secs(60),
    );
    let sync_interval = c.duration(
        &p.sync_interval,
        "portal.sync_interval",
        Duration::from_secs(15),
    );
    let code_ttl = c.duration(&p.code_ttl, "portal.code_ttl", Duration::from_secs(60));
    if (code_ttl.is_zero() || code_ttl > Duration::from_secs(600))
        && let Some(v) = &p.code_ttl
    {
        c.error(v, "portal.code_ttl", "must be between 1s and 10m");
    }

    if idle_timeout.is_zero()
        && let Some(v) = &p.idle_timeout
    {
        c.error(v, "portal.idle_timeout", "must be more than zero");
    }
    if cache_margin >= idle_timeout {
        match &p.cache_margin {
            Some(v) => c.error(
                v,
                "portal.cache_margin",
                format!(
                    "must be shorter than portal.idle_timeout ({})",
                    humantime::format_duration(idle_timeout)
                ),
            ),
            None => c.error(
                &p.host,
                "portal.idle_timeout",
                "must be longer than portal.cache_margin (default 60s)",
            ),
        }
    }
    if max_idle_timeout < idle_timeout {
        let at = p.max_idle_timeout.as_ref().unwrap_or(&p.host);
        c.error(
            at,
            "portal.max_idle_timeout",
            "must not be shorter than portal.idle_timeout",
        );
    }
    if sync_interval.is_zero()
        && let Some(v) = &p.sync_interval
    {
        c.error(v, "portal.sync_interval", "must be more than zero");
    }
    if absolute_timeout < idle_timeout {
        let at = p.absolute_timeout.as_ref().unwrap_or(&p.host);
        c.error(
            at,
            "portal.absolute_timeout",
            "must not be shorter than portal.idle_timeout",
        );
    }
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let max_concurrent_hashes = match &p.max_concurrent_hashes {
        Some(n) if *n.get_ref() == 0 => {
            c.error(n, "portal.max_concurrent_hashes", "must be at least 1");
            1
        }
        Some(n) => *n.get_ref(),
        None => cpus,
    };
    let store = check_store(c, &p.store);
    let temporary_password_ttl = c.duration(
        &p.temporary_password_ttl,
        "portal.temporary_password_ttl",
        Duration::from_secs(24 * 3600),
    );
    if (temporary_password_ttl < Duration::from_secs(60)
        || temporary_password_ttl > Duration::from_secs(30 * 24 * 3600))
        && let Some(v) = &p.temporary_password_ttl
    {
        c.error(
            v,
            "portal.temporary_password_ttl",
            "must be between 1m and 30days",
        );
    }
    if let Some(m) = &p.mail
        && let Some(from) = &m.from
        && !crate::portal::mail::is_address(from.get_ref())
    {
        c.error(
            from,
            "portal.mail.from",
            "must be one e-mail address (local@domain, no spaces or line breaks)",
        );
    }
    let mut mail = match &p.mail {
        Some(m) => Mail {
            outbox: c.base.join(
                m.outbox
                    .as_ref()
                    .map_or("data/outbox", |o| o.get_ref().as_str()),
            ),
            smtp: m.smtp.as_ref().and_then(|s| {
                match crate::portal::mail::parse_smtp_url(s.get_ref()) {
                    Ok(relay) => Some(relay),
                    Err(why) => {
                        c.error(s, "portal.mail.smtp", why);
                        None
                    }
                }
            }),
            ca_pem: None,
            login: None,
            from: m
                .from
                .as_ref()
                .map_or_else(|| format!("gatehouse@{host}"), |f| f.get_ref().clone()),
        },
        None => Mail {
            outbox: c.base.join("data/outbox"),
            smtp: None,
            ca_pem: None,
            login: None,
            from: format!("gatehouse@{host}"),
        },
    };
    check_smtp_tls(c, p.mail.as_ref(), &mut mail, &host);
    let signin_throttle = check_signin_throttle(c, p.signin_throttle.as_ref());
    let registration_limit = check_registration_limit(c, p.registration_limit.as_ref());
    let public_port = p.public_port.as_ref().map(|p| *p.get_ref());
    let public_url = p.public_url.as_ref().and_then(|v| {
        let url = super::public_url::check(c, v, "portal.public_url", &host, "portal.host")?;
        match public_port {
            Some(port) if port != url.port => {
                c.error(
                    v,
                    "portal.public_url",
                    format!(
                        "names port {}, but portal.public_port is {port}; give the same port in both, or only one of them",
                        url.port
                    ),
                );
                None
            }
            _ => Some(url),
        }
    });
    Portal {
        host,
        public_port,
        public_url,
        store,
        idle_timeout,
        max_idle_timeout,
        allow_no_idle_limit: p.allow_no_idle_limit,
        absolute_timeout,
        cache_margin,
        sync_interval,
        code_ttl,
        max_concurrent_hashes,
        temporary_password_ttl,
        mail,
        signin_throttle,
        registration_limit,
    }
}

/// `[portal] store`: a `postgres://` (or `postgresql://`) URL, else an SQLite file path
/// (relative to the config's folder).
fn check_store(c: &mut Checker, store: &Spanned<String>) -> StoreLocation {
    let given = store.get_ref();
    if !(given.starts_with("postgres://") || given.starts_with("postgresql://")) {
        return StoreLocation::Sqlite(c.base.join(given));
    }
    if let Err(why) = crate::store::postgres::check_url(given) {
        c.error(store, "portal.store", why);
    }
    StoreLocation::Postgres(given.clone())
}

fn check_registration_limit(
    c: &mut Checker,
    t: Option<&RawRegistrationLimit>,
) -> RegistrationLimit {
    let defaults = RegistrationLimit::default();
    let Some(t) = t else { return defaults };
    let mut count = |v: &Option<Spanned<u32>>, key: &str, default: u32| count(c, v, key, default);
    RegistrationLimit {
        per_address: count(
            &t.per_address,
            "portal.registration_limit.per_address",
            defaults.per_address,
        ),
        per_client: count(
            &t.per_client,
            "portal.registration_limit.per_client",
            defaults.per_client,
        ),
    }
}

/// `[portal.mail] ca_file`: read its roots, and make the relay's client once, so that a
/// bad file or TLS setting is refused now rather than at the first registration.
fn check_smtp_tls(c: &mut Checker, raw: Option<&RawMail>, mail: &mut Mail, host: &str) {
    use crate::portal::mail::{SmtpSecurity, smtp_transport};
    let Some(raw) = raw else { return };
    if let Some(file) = &raw.ca_file {
        let key = "portal.mail.ca_file";
        match &mail.smtp {
            Some(relay) if relay.security != SmtpSecurity::Plain => {
                match std::fs::read(c.base.join(file.get_ref())) {
                    Ok(pem) => mail.ca_pem = Some(pem),
                    Err(e) => c.error(file, key, format!("cannot be read: {e}")),
                }
            }
            _ => c.error(
                file,
                key,
                "needs smtp = \"smtps://…\" or \"smtp+starttls://…\"",
            ),
        }
    }
    mail.login = check_smtp_login(c, raw, mail);
    if let (Some(relay), Some(url)) = (&mail.smtp, &raw.smtp)
        && let Err(why) = smtp_transport(relay, mail.ca_pem.as_deref(), mail.login.as_ref(), host)
    {
        let (span, key) = match &raw.ca_file {
            Some(f) => (f, "portal.mail.ca_file"),
            None => (url, "portal.mail.smtp"),
        };
        c.error(span, key, why);
    }
}

/// `[portal.mail] user` with `password_env` or `password_file`: a login at the relay, only
/// over TLS (a password must not cross the network in clear, loopback included: a local
/// relay has no need of one).
fn check_smtp_login(c: &mut Checker, raw: &RawMail, mail: &Mail) -> Option<SmtpLogin> {
    use crate::portal::mail::SmtpSecurity;
    let secret = raw.password_env.as_ref().or(raw.password_file.as_ref());
    let Some(user) = &raw.user else {
        if let Some(s) = secret {
            c.error(s, "portal.mail.user", "a relay password needs its user");
        }
        return None;
    };
    let key = "portal.mail.user";
    if !mail
        .smtp
        .as_ref()
        .is_some_and(|r| r.security != SmtpSecurity::Plain)
    {
        c.error(
            user,
            key,
            "needs smtp = \"smtps://…\" or \"smtp+starttls://…\": a password is only sent over TLS",
        );
        return None;
    }
    if user.get_ref().is_empty() || user.get_ref().chars().any(char::is_control) {
        c.error(
            user,
            key,
            "must be a non-empty name without control characters",
        );
        return None;
    }
    let password = match (&raw.password_env, &raw.password_file) {
        (Some(env), None) => super::backend_auth::from_env(c, env, "portal.mail.password_env")?,
        (None, Some(file)) => super::backend_auth::from_file(c, file, "portal.mail.password_file")?,
        (Some(_), Some(file)) => {
            c.error(
                file,
                "portal.mail.password_file",
                "give password_env or password_file, not both",
            );
            return None;
        }
        (None, None) => {
            c.error(user, key, "needs password_env (an environment variable) or password_file (a file) holding the relay password");
            return None;
        }
    };
    Some(SmtpLogin {
        user: user.get_ref().clone(),
        password,
    })
}

/// Most failures a throttle counter may allow; more would mean no throttle at all.
const MAX_FREE_FAILURES: u32 = 1_000_000;

/// A counter's setting (throttle, registration limit): 1 to [`MAX_FREE_FAILURES`], or
/// `default` when unset (or refused).
fn count(c: &mut Checker, v: &Option<Spanned<u32>>, key: &str, default: u32) -> u32 {
    match v {
        Some(n) if !(1..=MAX_FREE_FAILURES).contains(n.get_ref()) => {
            c.error(n, key, format!("must be between 1 and {MAX_FREE_FAILURES}"));
            default
        }
        Some(n) => *n.get_ref(),
        None => default,
    }
}

fn check_signin_throttle(c: &mut Checker, t: Option<&RawSigninThrottle>) -> SigninThrottle {
    let defaults = SigninThrottle::default();
    let Some(t) = t else { return defaults };
    let mut count = |v: &Option<Spanned<u32>>, key: &str, default: u32| count(c, v, key, default);
    let failures = count(
        &t.failures,
        "portal.signin_throttle.failures",
        defaults.failures,
    );
    let address_failures = count(
        &t.address_failures,
        "portal.signin_throttle.address_failures",
        defaults.address_failures,
    );
    let user_failures = count(
        &t.user_failures,
        "portal.signin_throttle.user_failures",
        defaults.user_failures,
    );
    let key = "portal.signin_throttle.max_delay";
    let max_delay = c.duration(&t.max_delay, key, defaults.max_delay);
    if let Some(v) = &t.max_delay
        && !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&max_delay)
    {
        // A longer cap would let anyone who knows a user name keep its owner out for long.
        c.error(v, key, "must be between 1s and 1h");
    }
    SigninThrottle {
        failures,
        address_failures,
        user_failures,
        max_delay,
    }
}

fn check_sites(c: &mut Checker, raw: &[RawSite], portal: &Portal) -> Vec<Site> {
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut hosts: HashMap<String, usize> = HashMap::new();
    let mut sites = Vec::new();
    for (i, s) in raw.iter().enumerate() {
        let key = |k: &str| format!("sites[{i}].{k}");
        let id = s.id.get_ref().clone();
        if !is_site_id(&id) {
            c.error(
                &s.id,
                &key("id"),
                format!("{id:?} must be made of a-z, 0-9 and '-'"),
            );
        } else if let Some(first) = ids.insert(id.clone(), i) {
            c.error(
                &s.id,
                &key("id"),
                format!("{id:?} is already the id of sites[{first}]"),
            );
        }
        let host = s.host.get_ref().to_ascii_lowercase();
        if !is_host_name(&host) {
            c.error(
                &s.host,
                &key("host"),
                format!(
                    "{:?} is not a host name (no scheme, port or path)",
                    s.host.get_ref()
                ),
            );
        } else if host == portal.host {
            c.error(
                &s.host,
                &key("host"),
                format!("{host:?} is the portal's host; a site needs its own"),
            );
        } else if let Some(first) = hosts.insert(host.clone(), i) {
            c.error(
                &s.host,
                &key("host"),
                format!("{host:?} is already the host of sites[{first}]"),
            );
        }
        let public_url = s
            .public_url
            .as_ref()
            .and_then(|v| super::public_url::check(c, v, &key("public_url"), &host, &key("host")));
        let backend = check_backend(c, &s.backend, &key("backend"));
        let min_level = Level(s.min_level.as_ref().map_or(1, |l| *l.get_ref()));
        let headers = match &s.headers {
            Some(h) => {
                let names = IdentityHeaders {
                    user: c.header(&h.user, &key("headers.user"), "x-auth-user"),
                    level: c.header(&h.level, &key("headers.level"), "x-auth-level"),
                    account: c.header(&h.account, &key("headers.account"), "x-auth-account"),
                };
                // Two under one name (or aliases of one) would leave the backend one value
                // for both: the level read as the user, say. The defaults differ, so one of
                // a colliding pair was written in the file; the error points at it.
                let fields = [
                    (&names.user, &h.user, "headers.user"),
                    (&names.level, &h.level, "headers.level"),
                    (&names.account, &h.account, "headers.account"),
                ];
                for (a, b) in [(0, 1), (0, 2), (1, 2)] {
                    let ((first, first_raw, first_field), (second, second_raw, second_field)) =
                        (fields[a], fields[b]);
                    let written = match (second_raw, first_raw) {
                        (Some(raw), _) => Some((raw, second_field)),
                        (None, Some(raw)) => Some((raw, first_field)),
                        (None, None) => None,
                    };
                    if is_alias(second.as_str(), first.as_str())
                        && let Some((raw, field)) = written
                    {
                        c.error(
                            raw,
                            &key(field),
                            format!(
                                "{:?} names the same header as another identity header",
                                raw.get_ref()
                            ),
                        );
                    }
                }
                names
            }
            None => IdentityHeaders {
                user: HeaderName::from_static("x-auth-user"),
                level: HeaderName::from_static("x-auth-level"),
                account: HeaderName::from_static("x-auth-account"),
            },
        };
        let mut rules = Vec::new();
        for (j, r) in s.rules.iter().enumerate() {
            let path = r.path.get_ref();
            match crate::http::path::normalize(path) {
                // Requests are matched with their `;params` removed, so such a rule would
                // silently never apply (found by the path fuzz target).
                Ok(p) if p.contains(';') || p.to_ascii_lowercase().contains("%3b") => c.error(
                    &r.path,
                    &key(&format!("rules[{j}].path")),
                    format!(
                        "{path:?} holds a ';' or %3B, which request paths are matched without, so this rule would never apply"
                    ),
                ),
                Ok(p) if p == *path => rules.push(Rule {
                    path: p.into_owned(),
                    min_level: Level(r.min_level),
                }),
                Ok(p) => c.error(
                    &r.path,
                    &key(&format!("rules[{j}].path")),
                    format!("{path:?} is not in normal form; write {p:?}"),
                ),
                Err(err) => c.error(
                    &r.path,
                    &key(&format!("rules[{j}].path")),
                    format!("{path:?} is not a valid path prefix ({err})"),
                ),
            }
        }
        rules.sort_by_key(|r| std::cmp::Reverse(r.path.len()));
        let backend_auth = s
            .backend_auth
            .as_ref()
            .and_then(|a| super::backend_auth::check(c, a, &key("backend_auth")));
        let tls = match (&s.cert, &s.key) {
            (Some(cert), Some(k)) => Some(TlsFiles {
                cert: c.readable_file(cert, &key("cert")),
                key: c.readable_file(k, &key("key")),
            }),
            (None, None) => None,
            (Some(v), None) | (None, Some(v)) => {
                c.error(v, &key("cert"), "cert and key must be given together");
                None
            }
        };
        sites.push(Site {
            id: SiteId(id),
            host,
            public_url,
            backend,
            min_level,
            headers,
            allow_basic: s.allow_basic,
            case_sensitive_paths: s.case_sensitive_paths,
            rules,
            backend_auth,
            registration: s.registration,
            branding: s
                .branding
                .as_ref()
                .map(|b| super::branding::check(c, b, &key("branding"))),
            tls,
            connect_timeout: c.duration(
                &s.connect_timeout,
                &key("connect_timeout"),
                Duration::from_secs(5),
            ),
            response_timeout: c.duration(
                &s.response_timeout,
                &key("response_timeout"),
                Duration::from_secs(60),
            ),
            max_body: c.size(&s.max_body, &key("max_body"), DEFAULT_MAX_BODY),
        });
    }
    sites
}

fn check_backend(c: &mut Checker, v: &Str, key: &str) -> Backend {
    let s = v.get_ref();
    if s == "builtin:echo" {
        return Backend::Echo;
    }
    let Some(rest) = s.strip_prefix("http://") else {
        c.error(
            v,
            key,
            format!("{s:?} must be \"http://host:port\" or \"builtin:echo\""),
        );
        return Backend::Echo;
    };
    let authority = rest.trim_end_matches('/');
    let valid = !authority.is_empty()
        && !authority.contains(['/', '@', '?', '#', ' '])
        && authority.parse::<http::uri::Authority>().is_ok();
    if !valid {
        c.error(
            v,
            key,
            format!("{s:?} must be \"http://host:port\" with no path, user or query"),
        );
        return Backend::Echo;
    }
    Backend::Http {
        authority: authority.to_string(),
    }
}

fn check_users(c: &mut Checker, raw: &[RawUser], portal: &Portal, sites: &[Site]) -> Vec<UserSpec> {
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut users = Vec::new();
    for (i, u) in raw.iter().enumerate() {
        let key = |k: &str| format!("users[{i}].{k}");
        let name = u.name.get_ref().clone();
        if name.is_empty()
            || name.len() > crate::crypto::password::MAX_USERNAME_BYTES
            || name.chars().any(|ch| ch.is_control() || ch == ':')
        {
            c.error(
                &u.name,
                &key("name"),
                "must be 1-256 characters, without ':' or control characters",
            );
        } else if let Some(first) = names.insert(name.clone(), i) {
            c.error(
                &u.name,
                &key("name"),
                format!("{name:?} is already defined by users[{first}]"),
            );
        }
        if !crate::crypto::password::is_phc_argon2id(u.password_hash.get_ref()) {
            c.error(
                &u.password_hash,
                &key("password_hash"),
                "must be an argon2id PHC string (make one with `gatehouse hash-password`)",
            );
        }
        let idle_timeout = u.idle_timeout.as_ref().map(|v| {
            let d = c.duration(&Some(v.clone()), &key("idle_timeout"), portal.idle_timeout);
            if d.is_zero() && !portal.allow_no_idle_limit {
                c.error(
                    v,
                    &key("idle_timeout"),
                    "0 (no idle limit) needs portal.allow_no_idle_limit = true",
                );
            } else if d > portal.max_idle_timeout {
                c.error(
                    v,
                    &key("idle_timeout"),
                    "is longer than portal.max_idle_timeout",
                );
            } else if !d.is_zero() && d <= portal.cache_margin {
                c.error(
                    v,
                    &key("idle_timeout"),
                    "must be longer than portal.cache_margin",
                );
            }
            d
        });
        let mut site_levels = BTreeMap::new();
        for (site, level) in &u.site_levels {
            if !sites.iter().any(|s| s.id.0 == *site) {
                c.error(
                    &u.name,
                    &key("site_levels"),
                    format!("names site {site:?}, which is not configured"),
                );
            }
            site_levels.insert(site.clone(), Level(*level));
        }
        users.push(UserSpec {
            name,
            password_hash: u.password_hash.get_ref().clone(),
            level: Level(*u.level.get_ref()),
            idle_timeout,
            site_levels,
            disabled: u.disabled,
        });
    }
    users
}

/// `[cluster]`: the role, and what that role needs (and only that: a key another role
/// would use is an error, so a config cannot look like it does something it does not).
/// A PostgreSQL store is shared by several portal processes, each serving edges: only the
/// portal role uses it that way (a standalone process's in-process gate would not learn of
/// sign-outs made through another portal).
fn refuse_shared_store(c: &mut Checker, portal: &RawPortal, role: &str) {
    let store = &portal.store;
    if store.get_ref().starts_with("postgres://") || store.get_ref().starts_with("postgresql://") {
        c.error(
            store,
            "portal.store",
            format!("a PostgreSQL store is for several portal processes: set [cluster] role = \"portal\" (this is {role:?}), or give an SQLite file path"),
        );
    }
}

fn check_cluster(
    c: &mut Checker,
    raw: Option<&RawCluster>,
    users: &[RawUser],
    portal: &RawPortal,
) -> Cluster {
    let standalone = Cluster {
        role: Role::Standalone,
    };
    let Some(raw) = raw else {
        refuse_shared_store(c, portal, "standalone");
        return standalone;
    };
    let role = raw
        .role
        .as_ref()
        .map_or("standalone", |r| r.get_ref().as_str());
    let only_edge = |c: &mut Checker, v: &Option<Str>, key: &str| {
        if let Some(v) = v {
            c.error(
                v,
                key,
                format!("is only for role = \"edge\" (this is {role:?})"),
            );
        }
    };
    match role {
        "standalone" => {
            only_edge(c, &raw.portal_url, "cluster.portal_url");
            only_edge(c, &raw.ca_file, "cluster.ca_file");
            if let Some(v) = &raw.secret_file {
                c.error(v, "cluster.secret_file", "a standalone process talks to no other; set role = \"edge\" or \"portal\", or remove it");
            }
            refuse_shared_store(c, portal, role);
            standalone
        }
        "portal" => {
            only_edge(c, &raw.portal_url, "cluster.portal_url");
            only_edge(c, &raw.ca_file, "cluster.ca_file");
            match cluster_secret(c, raw) {
                Some(secret) => Cluster {
                    role: Role::Portal { secret },
                },
                None => standalone,
            }
        }
        "edge" => {
            // An edge keeps no users: they live at the portal, and would be silently ignored.
            if let Some(u) = users.first() {
                c.error(&u.name, "users", "an edge keeps no users (they live at the portal); move [[users]] to the portal's config");
            }
            if let Some(smtp) = portal.mail.as_ref().and_then(|m| m.smtp.as_ref()) {
                c.error(
                    smtp,
                    "portal.mail",
                    "an edge sends no mail (the portal does); remove [portal.mail] here",
                );
            }
            let secret = cluster_secret(c, raw);
            let url = match &raw.portal_url {
                Some(u) => edge_portal_url(c, u),
                None => {
                    c.error(raw.role.as_ref().expect("role is set"), "cluster.portal_url", "an edge needs portal_url = \"https://portal-host[:port]\", where the portal's API is");
                    None
                }
            };
            let ca_pem =
                raw.ca_file
                    .as_ref()
                    .and_then(|f| match std::fs::read(c.base.join(f.get_ref())) {
                        Ok(pem) if crate::central::remote::roots(Some(&pem)).is_ok() => Some(pem),
                        Ok(_) => {
                            c.error(f, "cluster.ca_file", "holds no usable PEM certificate");
                            None
                        }
                        Err(e) => {
                            c.error(f, "cluster.ca_file", format!("cannot be read: {e}"));
                            None
                        }
                    });
            match (secret, url) {
                (Some(secret), Some((host, port))) => Cluster {
                    role: Role::Edge(EdgeLink {
                        host,
                        port,
                        secret,
                        ca_pem,
                    }),
                },
                _ => standalone,
            }
        }
        other => {
            let role = raw.role.as_ref().expect("role is set");
            c.error(
                role,
                "cluster.role",
                format!("{other:?} must be \"standalone\", \"edge\" or \"portal\""),
            );
            standalone
        }
    }
}

/// `secret_file`: at least [`MIN_SECRET_BYTES`](crate::central::auth::MIN_SECRET_BYTES)
/// bytes once trailing white space is dropped.
fn cluster_secret(
    c: &mut Checker,
    raw: &RawCluster,
) -> Option<crate::central::auth::ClusterSecret> {
    use crate::central::auth::{ClusterSecret, MIN_SECRET_BYTES};
    let key = "cluster.secret_file";
    let Some(file) = &raw.secret_file else {
        let role = raw
            .role
            .as_ref()
            .expect("only asked for edge and portal roles");
        c.error(role, key, format!("role {:?} needs secret_file, the secret shared by the portal and its edges (e.g. `head -c 48 /dev/urandom | base64 > cluster.key`)", role.get_ref()));
        return None;
    };
    let path = c.base.join(file.get_ref());
    let bytes = match std::fs::read(&path) {
        Ok(b) => zeroize::Zeroizing::new(b),
        Err(e) => {
            c.error(file, key, format!("cannot read {}: {e}", path.display()));
            return None;
        }
    };
    let trimmed = bytes.trim_ascii_end();
    if trimmed.len() < MIN_SECRET_BYTES {
        c.error(file, key, format!("{} holds {} bytes; the secret must have at least {MIN_SECRET_BYTES} (e.g. `head -c 48 /dev/urandom | base64`)", path.display(), trimmed.len()));
        return None;
    }
    Some(ClusterSecret::new(trimmed.to_vec()))
}

/// `portal_url = "https://host[:port]"`: no path, query or credentials (the API's paths are
/// fixed), and https only: the edge checks the portal's certificate.
fn edge_portal_url(c: &mut Checker, url: &Str) -> Option<(String, u16)> {
    let key = "cluster.portal_url";
    let parsed = url.get_ref().parse::<http::Uri>().ok();
    let origin = parsed.as_ref().filter(|u| {
        u.scheme_str() == Some("https")
            && u.path_and_query().is_none_or(|p| p.as_str() == "/")
            && u.authority().is_some_and(|a| !a.as_str().contains('@'))
    });
    let Some(u) = origin else {
        c.error(
            url,
            key,
            format!(
                "{:?} must be https://host[:port], without a path",
                url.get_ref()
            ),
        );
        return None;
    };
    let host = u.host().unwrap_or_default().to_ascii_lowercase();
    if !is_host_name(&host) {
        c.error(url, key, format!("{host:?} is not a host name"));
        return None;
    }
    Some((host, u.port_u16().unwrap_or(443)))
}

#[cfg(test)]
mod tests {
    use super::parse_size;
    use std::path::Path;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("100MiB"), Some(100 << 20));
        assert_eq!(parse_size(" 512 KiB "), Some(512 << 10));
        assert_eq!(parse_size("1GB"), Some(1_000_000_000));
        assert_eq!(parse_size("2gib"), Some(2 << 30));
        for bad in [
            "",
            "MiB",
            "-1",
            "1.5MiB",
            "10 parsecs",
            "99999999999999999999GiB",
        ] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
    }

    /// Identity headers may not take a name the gateway writes or removes itself, nor two
    /// of them one name (under any alias); other names are fine.
    #[test]
    fn identity_header_names_checked() {
        let file = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml"));
        let text = std::fs::read_to_string(file).unwrap();
        let with = |headers: &str| {
            let changed = text.replace(
                "registration = true ",
                &format!("headers = {{ {headers} }}\nregistration = true "),
            );
            assert_ne!(changed, text);
            super::validate(file, &changed).map_err(|e| e.to_string())
        };
        assert!(with(r#"user = "Remote-User", level = "X-Level""#).is_ok());
        for (headers, says) in [
            (r#"user = "Host""#, "sets or removes itself"),
            (r#"user = "X_Forwarded_For""#, "sets or removes itself"),
            (r#"level = "Connection""#, "sets or removes itself"),
            (r#"account = "Cookie""#, "sets or removes itself"),
            (r#"level = "X-Auth-User""#, "same header as another"),
            (
                r#"user = "X-Who", account = "x_who""#,
                "same header as another",
            ),
            (r#"user = "X-Auth-Level""#, "same header as another"),
        ] {
            let err = with(headers).unwrap_err();
            assert!(
                err.contains(says) && err.contains("headers."),
                "{headers}: {err}"
            );
        }
    }

    /// A rule prefix holding matrix parameters is refused: it could never match a request.
    #[test]
    fn rule_with_matrix_params_refused() {
        let file = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml"));
        let text = std::fs::read_to_string(file).unwrap();
        assert!(super::validate(file, &text).is_ok());
        for bad in ["/admin;x", "/admin%3Bx", "/a/b%3bc"] {
            let changed = text.replace("path = \"/admin\"", &format!("path = {bad:?}"));
            assert_ne!(changed, text);
            let errors = super::validate(file, &changed).unwrap_err();
            assert!(
                errors.to_string().contains("would never apply"),
                "{bad}: {errors}"
            );
        }
    }
}

/// `[cluster]`: each role takes what it needs and refuses what it would ignore.
#[cfg(test)]
mod cluster_tests {
    use std::path::Path;

    use crate::config::{Role, StoreLocation};

    /// The shipped config, in a folder holding a cluster secret and the dev CA, with
    /// `[cluster]` set to `cluster` (and `[[users]]` dropped when `users` is false).
    fn check(cluster: &str, users: bool) -> Result<Role, String> {
        check_with(cluster, users, None).map(|c| c.cluster.role)
    }

    /// As `check`, with `[portal] store` set to `store` when given.
    fn check_with(
        cluster: &str,
        users: bool,
        store: Option<&str>,
    ) -> Result<crate::config::Config, String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("cluster.key"),
            format!("{}\n", "k".repeat(40)),
        )
        .unwrap();
        std::fs::write(dir.path().join("short.key"), "tooshort").unwrap();
        let mut text = std::fs::read_to_string(root.join("config.toml")).unwrap();
        let abs = |p: &str| root.join(p).display().to_string();
        text = text
            .replace("\"certs/", &format!("\"{}/", abs("certs")))
            .replace("store = \"", "store = \"/nonexistent-never-opened/");
        if let Some(store) = store {
            let start = text.find("store = \"").unwrap();
            let end = start + text[start..].find('\n').unwrap();
            text.replace_range(start..end, &format!("store = {store:?}"));
        }
        if !users {
            let start = text.find("[[users]]").unwrap();
            let end = text.find("[[sites]]").unwrap();
            text.replace_range(start..end, "");
        }
        text.push_str(&format!("\n[cluster]\n{cluster}\n"));
        let ca = abs("certs/dev-ca.crt");
        let text = text.replace("CA_FILE", &ca);
        let file = dir.path().join("config.toml");
        super::validate(&file, &text).map_err(|e| e.to_string())
    }

    /// A PostgreSQL store: on a portal only, on loopback or a Unix socket only.
    #[test]
    fn postgres_store_only_for_portals_on_loopback() {
        let portal = "role = \"portal\"\nsecret_file = \"cluster.key\"";
        let url = "postgres://gh:s3cret@127.0.0.1:5432/gh";
        let c = check_with(portal, true, Some(url)).unwrap();
        assert_eq!(c.portal.store, StoreLocation::Postgres(url.into()));
        assert_eq!(
            c.portal.store.to_string(),
            "postgres://gh:***@127.0.0.1:5432/gh"
        );
        let socket = "postgresql://gh@%2Frun%2Fpostgresql/gh";
        assert!(check_with(portal, true, Some(socket)).is_ok());
        for (cluster, store, says) in [
            (
                "role = \"standalone\"",
                url,
                "set [cluster] role = \"portal\"",
            ),
            (portal, "postgres://gh@db.example.org/gh", "no TLS"),
            (portal, "postgres://gh@127.0.0.1:5432", "names no database"),
        ] {
            let err = check_with(cluster, true, Some(store)).unwrap_err();
            assert!(
                err.contains("portal.store") && err.contains(says),
                "{store}: {err}"
            );
            assert!(!err.contains("s3cret"), "{err}");
        }
        let file = check_with(portal, true, Some("data/g.db")).unwrap();
        assert!(matches!(file.portal.store, StoreLocation::Sqlite(p) if p.ends_with("data/g.db")));
    }

    #[test]
    fn coherent_roles_pass() {
        assert!(matches!(
            check("role = \"standalone\"", true),
            Ok(Role::Standalone)
        ));
        assert!(matches!(
            check("role = \"portal\"\nsecret_file = \"cluster.key\"", true),
            Ok(Role::Portal { .. })
        ));
        let edge = check(
            "role = \"edge\"\nportal_url = \"https://Auth.localhost:9443\"\nsecret_file = \"cluster.key\"\nca_file = \"CA_FILE\"",
            false,
        );
        match edge {
            Ok(Role::Edge(link)) => {
                assert_eq!((link.host.as_str(), link.port), ("auth.localhost", 9443));
                assert!(link.ca_pem.is_some());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn incoherent_roles_are_refused_with_the_key_named() {
        let cases = [
            (
                "role = \"edge\"\nsecret_file = \"cluster.key\"",
                false,
                "cluster.portal_url",
            ),
            (
                "role = \"edge\"\nportal_url = \"https://auth.localhost\"",
                false,
                "cluster.secret_file",
            ),
            (
                "role = \"edge\"\nportal_url = \"https://auth.localhost\"\nsecret_file = \"cluster.key\"",
                true,
                "an edge keeps no users",
            ),
            (
                "role = \"edge\"\nportal_url = \"http://auth.localhost\"\nsecret_file = \"cluster.key\"",
                false,
                "must be https://",
            ),
            (
                "role = \"edge\"\nportal_url = \"https://auth.localhost/api\"\nsecret_file = \"cluster.key\"",
                false,
                "without a path",
            ),
            (
                "role = \"edge\"\nportal_url = \"https://auth.localhost\"\nsecret_file = \"short.key\"",
                false,
                "at least 32",
            ),
            (
                "role = \"edge\"\nportal_url = \"https://auth.localhost\"\nsecret_file = \"missing.key\"",
                false,
                "cannot read",
            ),
            (
                "role = \"edge\"\nportal_url = \"https://auth.localhost\"\nsecret_file = \"cluster.key\"\nca_file = \"cluster.key\"",
                false,
                "no usable PEM",
            ),
            ("role = \"portal\"", true, "needs secret_file"),
            (
                "role = \"portal\"\nsecret_file = \"cluster.key\"\nportal_url = \"https://auth.localhost\"",
                true,
                "only for role = \"edge\"",
            ),
            (
                "role = \"standalone\"\nsecret_file = \"cluster.key\"",
                true,
                "cluster.secret_file",
            ),
            (
                "role = \"standalone\"\nca_file = \"CA_FILE\"",
                true,
                "cluster.ca_file",
            ),
            (
                "role = \"primary\"",
                true,
                "must be \"standalone\", \"edge\" or \"portal\"",
            ),
        ];
        for (cluster, users, expected) in cases {
            match check(cluster, users) {
                Ok(role) => panic!("accepted {cluster:?}: {role:?}"),
                Err(e) => assert!(
                    e.contains(expected),
                    "{cluster:?}: expected {expected:?} in:\n{e}"
                ),
            }
        }
    }
}

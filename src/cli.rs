//! The `gatehouse` command line (SPEC §1). Errors go to stderr as one plain sentence naming
//! the file, field or value at fault; the exit status is then non-zero.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::StoreLocation;
use crate::config::{Config, Level};
use crate::store::postgres::PgStore;
use crate::store::{NewUser, SqliteStore, Store};

#[derive(Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "Sign-in, single sign-on and access levels in front of unmodified web applications"
)]
struct Cli {
    /// Config file [default: $GATEHOUSE_CONFIG, else ./config.toml]
    #[arg(short = 'c', long = "config", global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default)
    Run,
    /// Validate the config; print every problem with file:line:column
    Check,
    /// Read a password from stdin and print its argon2id PHC string
    HashPassword,
    /// Manage users in the store
    #[command(subcommand)]
    User(UserCommand),
    /// Read a master password from stdin and print a derived site's password for it (to
    /// provision the backend's own user table)
    Derive {
        /// The site's id; its [sites.backend_auth] must have mode = "derived"
        #[arg(long)]
        site: String,
        /// The user the password is for (the name the backend receives with it)
        #[arg(long)]
        user: String,
    },
    /// Exit 0 when the running gateway's admin listener answers /healthz (for containers)
    Healthcheck,
    /// Usage per account across all sites (requests, request and response body bytes),
    /// read from the store: one line (CSV) or object (JSON) per account
    Report {
        /// Only this account
        #[arg(long)]
        account: Option<String>,
        /// First day included, YYYY-MM-DD (UTC)
        #[arg(long, value_name = "DATE")]
        from: Option<String>,
        /// Last day included, YYYY-MM-DD (UTC)
        #[arg(long, value_name = "DATE")]
        to: Option<String>,
        /// csv (a header line, then one line per account) or json (an array)
        #[arg(long, default_value = "csv")]
        format: String,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user (password prompted, or read from stdin with --password-stdin)
    Add {
        name: String,
        #[arg(long, default_value_t = 1)]
        level: u32,
        /// Per-site level, SITE=N (repeatable)
        #[arg(long = "site", value_name = "SITE=N")]
        sites: Vec<String>,
        /// The user's own idle timeout, e.g. 30m
        #[arg(long)]
        idle_timeout: Option<String>,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a user's password (ends their sessions)
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a user's level (and per-site levels, replacing the old ones when given)
    Level {
        name: String,
        level: u32,
        #[arg(long = "site", value_name = "SITE=N")]
        sites: Vec<String>,
    },
    /// Disable a user (ends their sessions)
    Disable { name: String },
    /// Enable a disabled user
    Enable { name: String },
    /// List users
    List,
    /// Remove a user (ends their sessions)
    Remove { name: String },
    /// Import the users of an Apache htpasswd file ({SHA}, $apr1$ or bcrypt hashes); each
    /// keeps their password, rehashed to argon2id at their first sign-in
    ImportHtpasswd {
        file: PathBuf,
        /// Level of the imported users
        #[arg(long, default_value_t = 1)]
        level: u32,
        /// Per-site level, SITE=N (repeatable)
        #[arg(long = "site", value_name = "SITE=N")]
        sites: Vec<String>,
    },
}

/// A one-sentence failure for stderr.
struct Failure(String);

impl<E: std::error::Error> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(crate::http::error::error_chain(&e))
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let path = cli
        .config
        .or_else(|| std::env::var_os("GATEHOUSE_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("config.toml"));
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(&path),
        Command::Check => return check(&path),
        Command::HashPassword => hash_password(),
        Command::User(cmd) => user(&path, cmd),
        Command::Derive { site, user } => derive(&path, &site, &user),
        Command::Healthcheck => healthcheck(&path),
        Command::Report {
            account,
            from,
            to,
            format,
        } => report(&path, account, from, to, &format),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message)) => {
            eprintln!("gatehouse: {message}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: &std::path::Path) -> Result<Config, Failure> {
    Config::load(path).map_err(|errors| Failure(format!("the config is not valid:\n{errors}")))
}

fn check(path: &std::path::Path) -> ExitCode {
    match Config::load(path) {
        Ok(c) => {
            println!(
                "{}: ok ({} sites, {} users)",
                path.display(),
                c.sites.len(),
                c.users.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(path: &std::path::Path) -> Result<(), Failure> {
    let config = load(path)?;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .or_else(|| config.server.log.clone())
        .unwrap_or_else(|| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter)
                .map_err(|e| Failure(format!("log filter {filter:?} is not valid: {e}")))?,
        )
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: log files and `docker logs` get plain lines.
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .init();
    // One CPU (e.g. pinned with taskset, or a one-CPU container): a single-threaded
    // scheduler does the same work without cross-thread wake-ups and work stealing.
    // argon2id still runs on the blocking pool either way.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut builder = if cpus == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = builder.enable_all().build()?;
    runtime.block_on(async {
        let listeners = crate::server::Listeners::bind(&config).await?;
        crate::server::run(listeners, config, shutdown_signal()).await?;
        Ok::<(), Failure>(())
    })
}

/// Resolves on SIGTERM or ctrl-c.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// A password from the terminal (no echo) or, when stdin is not a terminal, its first line.
fn read_password(prompt: &str, from_stdin: bool) -> Result<String, Failure> {
    let password = if !from_stdin && std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(prompt)?;
        let again = rpassword::prompt_password("Again: ")?;
        if first != again {
            return Err(Failure("the two passwords differ".into()));
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if password.is_empty() {
        return Err(Failure("the password is empty".into()));
    }
    if password.len() > crate::crypto::password::MAX_PASSWORD_BYTES {
        return Err(Failure(format!(
            "the password is longer than {} bytes",
            crate::crypto::password::MAX_PASSWORD_BYTES
        )));
    }
    Ok(password)
}

fn hash_password() -> Result<(), Failure> {
    let password = read_password("Password: ", false)?;
    println!("{}", crate::crypto::password::hash(&password));
    std::io::stdout().flush()?;
    Ok(())
}

fn site_levels(config: &Config, specs: &[String]) -> Result<BTreeMap<String, Level>, Failure> {
    let mut levels = BTreeMap::new();
    for spec in specs {
        let Some((site, n)) = spec.split_once('=') else {
            return Err(Failure(format!("--site {spec:?} must be SITE=N")));
        };
        if config.site(site).is_none() {
            return Err(Failure(format!(
                "--site {spec:?} names site {site:?}, which is not in {}",
                config.file.display()
            )));
        }
        let n: u32 = n
            .parse()
            .map_err(|_| Failure(format!("--site {spec:?}: {n:?} is not a level")))?;
        levels.insert(site.to_string(), Level(n));
    }
    Ok(levels)
}

/// The portal's store. An edge has none: its users and usage live at the portal, and a
/// store opened here would be a new, empty one that nothing reads.
fn portal_store(config: &Config) -> Result<Box<dyn Store>, Failure> {
    if let crate::config::Role::Edge(_) = config.cluster.role {
        return Err(Failure(format!(
            "{} is an edge's config ([cluster] role = \"edge\"): users and usage live at the portal; run this with the portal's config",
            config.file.display()
        )));
    }
    Ok(match &config.portal.store {
        StoreLocation::Sqlite(path) => Box::new(SqliteStore::open(path)?),
        StoreLocation::Postgres(url) => Box::new(PgStore::open(url)?),
    })
}

fn user(path: &std::path::Path, cmd: UserCommand) -> Result<(), Failure> {
    let config = load(path)?;
    let store = portal_store(&config)?;
    let missing = |name: &str| {
        Failure(format!(
            "there is no user {name:?} in {}",
            config.portal.store
        ))
    };
    match cmd {
        UserCommand::Add {
            name,
            level,
            sites,
            idle_timeout,
            password_stdin,
        } => {
            check_user_name(&name)?;
            let site_levels = site_levels(&config, &sites)?;
            let idle_timeout = idle_timeout
                .map(|d| {
                    humantime::parse_duration(&d).map_err(|e| {
                        Failure(format!("--idle-timeout {d:?} is not a duration: {e}"))
                    })
                })
                .transpose()?;
            if let Some(d) = idle_timeout {
                check_idle_timeout(&config, d)?;
            }
            if store.user(&name)?.is_some() {
                return Err(Failure(format!("user {name:?} already exists")));
            }
            let password = read_password("Password: ", password_stdin)?;
            let user = NewUser {
                name: name.clone(),
                password_hash: crate::crypto::password::hash(&password),
                level: Level(level),
                site_levels,
                idle_timeout,
                disabled: false,
            };
            if !store.add_user(&user)? {
                return Err(Failure(format!("user {name:?} already exists")));
            }
            println!("added user {name}");
        }
        UserCommand::Passwd {
            name,
            password_stdin,
        } => {
            if store.user(&name)?.is_none() {
                return Err(missing(&name));
            }
            let password = read_password("New password: ", password_stdin)?;
            store.set_password(&name, &crate::crypto::password::hash(&password))?;
            println!("password of {name} changed");
        }
        UserCommand::Level { name, level, sites } => {
            let levels = site_levels(&config, &sites)?;
            let given = (!sites.is_empty()).then_some(&levels);
            if !store.set_level(&name, Level(level), given)? {
                return Err(missing(&name));
            }
            println!("level of {name} set to {level}");
        }
        UserCommand::Disable { name } => {
            if !store.set_disabled(&name, true)? {
                return Err(missing(&name));
            }
            println!("user {name} disabled");
        }
        UserCommand::Enable { name } => {
            if !store.set_disabled(&name, false)? {
                return Err(missing(&name));
            }
            println!("user {name} enabled");
        }
        UserCommand::List => {
            println!(
                "{:<24} {:<24} {:>5}  {:<10} site levels",
                "name", "account", "level", "state"
            );
            for u in store.list_users()? {
                let levels: Vec<String> = u
                    .site_levels
                    .iter()
                    .map(|(s, l)| format!("{s}={l}"))
                    .collect();
                let state = match (u.disabled, u.temporary_until) {
                    (true, _) => "disabled",
                    // Self-registered, their temporary password not yet replaced.
                    (false, Some(_)) => "temporary",
                    (false, None) => "active",
                };
                println!(
                    "{:<24} {:<24} {:>5}  {:<10} {}",
                    u.name,
                    u.account,
                    u.level.0,
                    state,
                    levels.join(",")
                );
            }
        }
        UserCommand::Remove { name } => {
            if !store.remove_user(&name)? {
                return Err(missing(&name));
            }
            println!("user {name} removed");
        }
        UserCommand::ImportHtpasswd { file, level, sites } => {
            let site_levels = site_levels(&config, &sites)?;
            import_htpasswd(store.as_ref(), &file, Level(level), &site_levels)?;
        }
    }
    Ok(())
}

fn check_user_name(name: &str) -> Result<(), Failure> {
    if name.is_empty()
        || name.len() > crate::crypto::password::MAX_USERNAME_BYTES
        || name.chars().any(|c| c.is_control() || c == ':')
    {
        return Err(Failure(format!(
            "user name {name:?} must be 1-256 characters, without ':' or control characters"
        )));
    }
    Ok(())
}

/// All or nothing: every bad line (and every user already in the store) is reported, and
/// then nothing is imported, so a second run after fixing the file does not trip on half.
fn import_htpasswd(
    store: &dyn Store,
    file: &std::path::Path,
    level: Level,
    site_levels: &BTreeMap<String, Level>,
) -> Result<(), Failure> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Failure(format!("cannot read {}: {e}", file.display())))?;
    let text = zeroize::Zeroizing::new(text);
    let entries = crate::crypto::htpasswd::parse(&text).map_err(|problems| {
        Failure(format!(
            "nothing imported from {}:\n{}",
            file.display(),
            problems.join("\n")
        ))
    })?;
    let mut taken = Vec::new();
    for e in &entries {
        if store.user(&e.name)?.is_some() {
            taken.push(format!(
                "line {}: user {:?} already exists in the store",
                e.line, e.name
            ));
        }
    }
    if !taken.is_empty() {
        return Err(Failure(format!(
            "nothing imported from {}:\n{}",
            file.display(),
            taken.join("\n")
        )));
    }
    for e in &entries {
        store.add_user(&NewUser {
            name: e.name.clone(),
            password_hash: e.hash.clone(),
            level,
            site_levels: site_levels.clone(),
            idle_timeout: None,
            disabled: false,
        })?;
    }
    println!(
        "imported {} users from {}; each keeps their password, rehashed to argon2id at their first sign-in",
        entries.len(),
        file.display()
    );
    Ok(())
}

/// `gatehouse derive`: the SP the gateway sends to `site`'s backend for this user.
fn derive(path: &std::path::Path, site: &str, user: &str) -> Result<(), Failure> {
    let config = load(path)?;
    let Some(s) = config.site(site) else {
        return Err(Failure(format!(
            "--site {site:?} is not a site id in {}",
            path.display()
        )));
    };
    let Some(derive_id) = s.derive_id() else {
        return Err(Failure(format!(
            "site {site:?} in {} has no [sites.backend_auth] with mode = \"derived\"",
            path.display()
        )));
    };
    check_user_name(user)?;
    let master = zeroize::Zeroizing::new(read_password("Master password: ", false)?);
    let sp = crate::crypto::derived::SitePassword::derive(&master, derive_id);
    println!("{}", sp.expose());
    std::io::stdout().flush()?;
    Ok(())
}

fn check_idle_timeout(config: &Config, d: Duration) -> Result<(), Failure> {
    let p = &config.portal;
    if d.is_zero() && !p.allow_no_idle_limit {
        return Err(Failure(
            "--idle-timeout 0 (no idle limit) needs portal.allow_no_idle_limit = true".into(),
        ));
    }
    if d > p.max_idle_timeout {
        return Err(Failure(format!(
            "--idle-timeout is longer than portal.max_idle_timeout ({})",
            humantime::format_duration(p.max_idle_timeout)
        )));
    }
    if !d.is_zero() && d <= p.cache_margin {
        return Err(Failure(
            "--idle-timeout must be longer than portal.cache_margin".into(),
        ));
    }
    Ok(())
}

/// GET http://<server.admin>/healthz, so container health checks need no curl in the image.
fn report(
    path: &std::path::Path,
    account: Option<String>,
    from: Option<String>,
    to: Option<String>,
    format: &str,
) -> Result<(), Failure> {
    let query = crate::portal::usage::Query::new(
        account.as_deref(),
        from.as_deref(),
        to.as_deref(),
        Some(format),
    )
    .map_err(|e| Failure(format!("bad report option: {e}")))?;
    let config = load(path)?;
    let store = portal_store(&config)?;
    let accounts = query.run(store.as_ref())?;
    if let (true, Some(name)) = (accounts.is_empty(), &query.account) {
        return Err(Failure(format!(
            "there is no account {name:?} in {}",
            config.portal.store
        )));
    }
    let (text, _) = query.render(&accounts);
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(())
}

fn healthcheck(path: &std::path::Path) -> Result<(), Failure> {
    let config = load(path)?;
    let Some(mut addr) = config.server.admin else {
        return Err(Failure(format!(
            "server.admin is not set in {}, so there is no /healthz to ask",
            path.display()
        )));
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let ask = async {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await?;
            tokio::spawn(conn);
            let req = http::Request::get("/healthz")
                .header(http::header::HOST, addr.to_string())
                .body(http_body_util::Empty::<bytes::Bytes>::new())?;
            let res = sender.send_request(req).await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(res.status())
        };
        match tokio::time::timeout(Duration::from_secs(5), ask).await {
            Ok(Ok(status)) if status.is_success() => Ok(()),
            Ok(Ok(status)) => Err(Failure(format!("http://{addr}/healthz answered {status}"))),
            Ok(Err(e)) => Err(Failure(format!(
                "http://{addr}/healthz could not be reached: {e}"
            ))),
            Err(_) => Err(Failure(format!(
                "http://{addr}/healthz did not answer within 5s"
            ))),
        }
    })
}

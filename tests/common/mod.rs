//! Test fixtures: the real gateway on `127.0.0.1:0`, a recording backend, and a
//! cookie-keeping HTTPS client that resolves every `*.localhost` name to 127.0.0.1 itself.
//!
//! ```ignore
//! let backend = Backend::start().await;
//! let gw = Gateway::builder().site("app", &backend.url()).user("alice", "pw", 3).start().await;
//! let browser = gw.client();
//! let res = sign_in(&browser, &gw, "app.localhost", "/", "alice", "pw").await;
//! ```

#![allow(dead_code)]

pub mod backend;
pub mod client;
pub mod process;
pub mod webdriver;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::TcpListener;

#[allow(unused_imports)]
pub use backend::{Backend, Recorded};
pub use client::{Client, Resp};

/// The dev CA that signed `certs/localhost.crt`.
pub fn ca_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("certs/dev-ca.crt")
}

fn certs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("certs")
}

/// Hashing is slow in debug builds; users share a few precomputed hashes.
pub fn hash_for(password: &str) -> String {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static CACHE: Mutex<Option<HashMap<String, String>>> = Mutex::new(None);
    let mut cache = CACHE.lock().unwrap();
    cache
        .get_or_insert_with(HashMap::new)
        .entry(password.to_string())
        .or_insert_with(|| gatehouse::crypto::password::hash(password))
        .clone()
}

pub struct GatewayBuilder {
    portal: Vec<String>,
    users: Vec<String>,
    sites: Vec<String>,
    server: Vec<String>,
}

impl GatewayBuilder {
    /// A line under `[portal]`, e.g. `idle_timeout = "3s"`.
    pub fn portal(mut self, line: &str) -> Self {
        self.portal.push(line.to_string());
        self
    }

    /// A line under `[server]`.
    pub fn server(mut self, line: &str) -> Self {
        self.server.push(line.to_string());
        self
    }

    /// A user with a password and level.
    pub fn user(self, name: &str, password: &str, level: u32) -> Self {
        self.user_with(name, password, level, "")
    }

    /// A user with extra TOML lines (e.g. `site_levels = { wiki = 5 }`).
    pub fn user_with(mut self, name: &str, password: &str, level: u32, extra: &str) -> Self {
        self.users.push(format!(
            "[[users]]\nname = {name:?}\npassword_hash = {hash:?}\nlevel = {level}\n{extra}\n",
            hash = hash_for(password)
        ));
        self
    }

    /// A site `<id>.localhost` in front of `backend` (`http://…` or `builtin:echo`).
    pub fn site(self, id: &str, backend: &str) -> Self {
        self.site_with(id, backend, "")
    }

    /// A site with extra TOML (lines under `[[sites]]`, then any `[[sites.rules]]`).
    pub fn site_with(mut self, id: &str, backend: &str, extra: &str) -> Self {
        self.sites.push(format!(
            "[[sites]]\nid = {id:?}\nhost = \"{id}.localhost\"\nbackend = {backend:?}\n{extra}\n"
        ));
        self
    }

    pub async fn start(self) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let certs = certs_dir();
        let config_text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n{server}\n\
             [tls]\ncert = {cert:?}\nkey = {key:?}\n\n\
             [portal]\nhost = \"auth.localhost\"\nstore = \"gatehouse.db\"\n{portal}\n\n{users}\n{sites}",
            server = self.server.join("\n"),
            cert = certs.join("localhost.crt").display().to_string(),
            key = certs.join("localhost.key").display().to_string(),
            portal = self.portal.join("\n"),
            users = self.users.join("\n"),
            sites = self.sites.join("\n"),
        );
        let config_path = dir.path().join("config.toml");
        std::fs::write(&config_path, &config_text).unwrap();
        Gateway::start_file(dir, config_path).await
    }
}

/// A running gateway; stopped when dropped (or with [`Gateway::stop`]).
pub struct Gateway {
    pub port: u16,
    pub admin: SocketAddr,
    pub redirect: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    stopped: Arc<AtomicBool>,
}

impl Gateway {
    pub fn builder() -> GatewayBuilder {
        GatewayBuilder {
            portal: vec![],
            users: vec![],
            sites: vec![],
            server: vec![],
        }
    }

    async fn start_file(dir: tempfile::TempDir, config_path: PathBuf) -> Gateway {
        let config = gatehouse::config::Config::load(&config_path)
            .unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
        let https = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let redirect = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = https.local_addr().unwrap().port();
        let (admin_addr, redirect_addr) =
            (admin.local_addr().unwrap(), redirect.local_addr().unwrap());
        let listeners = gatehouse::server::Listeners {
            https,
            http_redirect: Some(redirect),
            admin: Some(admin),
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let stopped = Arc::new(AtomicBool::new(false));
        let flag = stopped.clone();
        let task = tokio::spawn(async move {
            gatehouse::server::run(listeners, config, async {
                let _ = rx.await;
            })
            .await
            .expect("gateway failed");
            flag.store(true, Ordering::SeqCst);
        });
        Gateway {
            port,
            admin: admin_addr,
            redirect: redirect_addr,
            dir,
            config_path,
            stop: Some(tx),
            task: Some(task),
            stopped,
        }
    }

    /// A fresh browser (cookie jar) for this gateway.
    pub fn client(&self) -> Client {
        Client::new(self.port)
    }

    /// `https://<host>:<port><path>`
    pub fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.port)
    }

    pub fn store_path(&self) -> PathBuf {
        self.dir.path().join("gatehouse.db")
    }

    /// The admin listener's answer to `path`.
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        client::plain_get(self.admin, "127.0.0.1", path).await
    }

    /// The value of a metric line starting with `prefix` (e.g. `gatehouse_table_entries`).
    pub async fn metric(&self, prefix: &str) -> Option<f64> {
        let (_, text) = self.admin_get("/metrics").await;
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    /// Ask the gateway to shut down and wait until `run` returned.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }

    /// Begin shutdown without waiting.
    pub fn begin_stop(&mut self) -> tokio::task::JoinHandle<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.take().unwrap()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Where a gateway answers: a [`Gateway`] in this test process, or the HTTPS port of a
/// `gatehouse run` child process (tests/process.rs).
pub trait Origin {
    /// `https://<host>:<port><path>`
    fn url(&self, host: &str, path: &str) -> String;
    /// A fresh browser (cookie jar) for this gateway.
    fn client(&self) -> Client;
}

impl Origin for Gateway {
    fn url(&self, host: &str, path: &str) -> String {
        Gateway::url(self, host, path)
    }

    fn client(&self) -> Client {
        Gateway::client(self)
    }
}

impl Origin for u16 {
    fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{self}{path}")
    }

    fn client(&self) -> Client {
        Client::new(*self)
    }
}

/// The usual fixture: a recording backend behind sites `app` and `wiki`, and user `alice`
/// (password `alice-pw`, level 3).
pub async fn two_sites() -> (Backend, Gateway) {
    let backend = Backend::start().await;
    let gw = Gateway::builder()
        .user("alice", "alice-pw", 3)
        .site("app", &backend.url())
        .site("wiki", &backend.url())
        .start()
        .await;
    (backend, gw)
}

/// Field `name`'s value in the first `<input … name="name" value="…">` of an HTML page.
pub fn form_field(html: &str, name: &str) -> Option<String> {
    let needle = format!("name=\"{name}\" value=\"");
    let start = html.find(&needle)? + needle.len();
    let end = html[start..].find('"')? + start;
    Some(
        html[start..end]
            .replace("&amp;", "&")
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&#39;", "'"),
    )
}

/// The full SSO flow for a browser that is not signed in at the portal: site → portal →
/// form → callback → original URL. Returns the final response (the backend's answer).
pub async fn sign_in(
    browser: &Client,
    gw: &impl Origin,
    host: &str,
    path: &str,
    user: &str,
    password: &str,
) -> Resp {
    let first = browser.get(&gw.url(host, path)).await;
    assert_eq!(
        first.status, 302,
        "an unknown browser is sent to the portal: {first:?}"
    );
    let login_url = first.location().unwrap();
    assert!(
        login_url.starts_with(&gw.url("auth.localhost", "/login?")),
        "{login_url}"
    );
    let form = browser.get(&login_url).await;
    assert_eq!(form.status, 200, "{form:?}");
    let posted = submit_login(browser, gw, &form.body, user, password).await;
    assert_eq!(
        posted.status, 303,
        "a good password continues the hand-off: {posted:?}"
    );
    browser.follow(&posted.location().unwrap()).await
}

/// The portal's sign-in form (its HTML), reached from `host` as a browser would.
pub async fn login_form(browser: &Client, gw: &impl Origin, host: &str) -> String {
    let first = browser.get(&gw.url(host, "/")).await;
    let form = browser.get(&first.location().unwrap()).await;
    assert_eq!(form.status, 200, "{form:?}");
    form.body
}

/// Post the sign-in form found in `html`.
pub async fn submit_login(
    browser: &Client,
    gw: &impl Origin,
    html: &str,
    user: &str,
    password: &str,
) -> Resp {
    let mut fields = vec![
        ("username".to_string(), user.to_string()),
        ("password".to_string(), password.to_string()),
    ];
    for name in ["csrf", "site", "h", "rd"] {
        if let Some(v) = form_field(html, name) {
            fields.push((name.to_string(), v));
        }
    }
    let pairs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    browser
        .post_form(&gw.url("auth.localhost", "/login"), &pairs)
        .await
}

/// A browser already signed in, with `host` admitted; returns the backend's answer.
pub async fn signed_in_browser(gw: &impl Origin, host: &str, user: &str, password: &str) -> Client {
    let browser = gw.client();
    let res = sign_in(&browser, gw, host, "/", user, password).await;
    assert_eq!(res.status, 200, "signed in and proxied: {res:?}");
    browser
}

/// Run the `gatehouse` binary with `stdin` as its input and extra environment variables.
pub fn cli(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(args)
        .env_remove("GATEHOUSE_CONFIG")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that fails before reading its input closes the pipe; that is not an error here.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

/// SPEC §5, computed here independently of the gateway: lowercase hex(SHA-1(master || id)).
pub fn expected_sp(master: &str, derive_id: &str) -> String {
    use sha1::Digest;
    let digest = sha1::Sha1::digest(format!("{master}{derive_id}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// `Basic base64(user ":" password)`.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {b64}")
}

/// Write `dir/config.toml`: a `[server]` on 127.0.0.1:0 and the dev `[tls]`, then `body`.
pub fn write_config(dir: &std::path::Path, body: &str) -> PathBuf {
    let path = dir.join("config.toml");
    let certs = certs_dir();
    let head = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[tls]\ncert = {:?}\nkey = {:?}\n\n",
        certs.join("localhost.crt").display().to_string(),
        certs.join("localhost.key").display().to_string()
    );
    std::fs::write(&path, head + body).unwrap();
    path
}

/// Log lines captured by a process-wide tracing subscriber (one per test binary): install
/// with [`capture_logs`].
#[derive(Clone, Default)]
pub struct Captured(pub Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Capture every log line of this process, at TRACE level.
pub fn capture_logs() -> Captured {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    logs
}

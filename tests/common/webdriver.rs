//! A small W3C WebDriver client for browser tests: starts `chromedriver` on a free loopback
//! port, opens one headless Chromium session and speaks the JSON protocol over plain
//! hyper, so the tests need no browser-automation crate.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long any wait (driver start, element, URL) may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// The key under which WebDriver returns an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A running chromedriver. Dropping it kills its whole process group, so Chromium does not
/// outlive a failed test either.
pub struct Driver {
    port: u16,
    child: Child,
    profile: tempfile::TempDir,
}

impl Driver {
    /// Start chromedriver and wait until `/status` says it is ready. Fails with install
    /// instructions when the browser or driver is missing: a browser test must never pass by
    /// not running.
    pub async fn start() -> Driver {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(bin).exists(),
                "{bin} is missing: this test drives a real headless Chromium. Install it with \
                 `apt-get install -y --no-install-recommends chromium chromium-driver`"
            );
        }
        let port = super::process::free_port();
        let child = {
            use std::os::unix::process::CommandExt;
            Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0) // its own group, so Drop can end Chromium with it
                .spawn()
                .expect("chromedriver did not start")
        };
        let mut driver = Driver {
            port,
            child,
            profile: tempfile::tempdir().unwrap(),
        };
        let deadline = Instant::now() + WAIT;
        loop {
            // A driver that died at once (port taken, broken install) fails fast and says so.
            if let Ok(Some(exit)) = driver.child.try_wait() {
                panic!(
                    "chromedriver exited at start ({exit}); try `{CHROMEDRIVER} --port={port}` by hand"
                );
            }
            if let Ok(status) = driver.call(Method::GET, "/status", None).await
                && status["ready"] == true
            {
                return driver;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not answer /status within {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One request to chromedriver; a WebDriver error (`value.error`) becomes `Err`.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let exchange = async {
            let tcp = TcpStream::connect(("127.0.0.1", self.port))
                .await
                .map_err(|e| e.to_string())?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
            let req = Request::builder()
                .method(method.clone())
                .uri(path)
                .header(HOST, format!("127.0.0.1:{}", self.port)) // chromedriver refuses other Host names
                .header(CONTENT_TYPE, "application/json; charset=utf-8")
                .body(Full::new(body))
                .unwrap();
            let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
            let body = res.into_body().collect().await.map_err(|e| e.to_string())?;
            let bytes = body.to_bytes();
            let mut answer: Value =
                serde_json::from_slice(&bytes).map_err(|e| format!("not JSON ({e})"))?;
            match answer["value"].get("error") {
                Some(error) => Err(format!("{error}: {}", answer["value"]["message"])),
                None => Ok(answer["value"].take()),
            }
        };
        // Longer than WAIT: a navigation may legitimately use the whole page-load timeout.
        tokio::time::timeout(WAIT * 2, exchange)
            .await
            .unwrap_or_else(|_| Err(format!("{method} {path}: no answer")))
    }

    /// A new headless Chromium session with a fresh profile.
    pub async fn session(&self) -> Session<'_> {
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--ignore-certificate-errors",
            "--window-size=900,700",
            &format!("--user-data-dir={}", self.profile.path().display()),
            "--host-resolver-rules=MAP *.localhost 127.0.0.1",
        ];
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:loggingPrefs": { "browser": "ALL" }, // for Session::console
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        }}});
        let value = self
            .call(Method::POST, "/session", Some(caps))
            .await
            .expect("new WebDriver session");
        let session = Session {
            driver: self,
            id: value["sessionId"].as_str().unwrap().to_string(),
        };
        session
            .post(
                "/timeouts",
                json!({ "pageLoad": WAIT.as_millis() as u64, "script": WAIT.as_millis() as u64 }),
            )
            .await;
        session
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // SIGKILL to the group: chromedriver and every Chromium process it started.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser session; [`Session::quit`] closes it (the driver's Drop covers a panic).
pub struct Session<'d> {
    driver: &'d Driver,
    id: String,
}

impl Session<'_> {
    /// A command on this session; any WebDriver error fails the test.
    async fn cmd(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.id);
        let answer = self.driver.call(method.clone(), &path, body).await;
        answer.unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.cmd(Method::POST, path, Some(body)).await
    }

    async fn string(&self, path: &str) -> String {
        let value = self.cmd(Method::GET, path, None).await;
        value
            .as_str()
            .unwrap_or_else(|| panic!("GET {path}: {value}"))
            .to_string()
    }

    /// Open `url` (returns once the page has loaded, redirects followed).
    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    pub async fn url(&self) -> String {
        self.string("/url").await
    }

    pub async fn source(&self) -> String {
        self.string("/source").await
    }

    /// The first element matching `css`, waiting up to [`WAIT`] for it to appear.
    pub async fn find(&self, css: &str) -> Element<'_> {
        let path = format!("/session/{}/element", self.id);
        let query = json!({ "using": "css selector", "value": css });
        let deadline = Instant::now() + WAIT;
        loop {
            match self
                .driver
                .call(Method::POST, &path, Some(query.clone()))
                .await
            {
                Ok(v) => {
                    let id = v[ELEMENT]
                        .as_str()
                        .unwrap_or_else(|| panic!("element answer {v}"));
                    return Element {
                        session: self,
                        id: id.to_string(),
                    };
                }
                Err(e) if Instant::now() >= deadline => {
                    panic!(
                        "no {css:?} within {WAIT:?} ({e}) at {}:\n{}",
                        self.url().await,
                        self.source().await
                    )
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Wait up to [`WAIT`] until the current URL starts with `prefix`; returns it.
    pub async fn wait_url(&self, prefix: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let url = self.url().await;
            if url.starts_with(prefix) {
                return url;
            }
            assert!(
                Instant::now() < deadline,
                "expected {prefix}…, still at {url}:\n{}",
                self.source().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(self.string("/screenshot").await)
            .unwrap()
    }

    /// The browser console's messages since the last call (chromedriver's own endpoint; W3C
    /// has none), e.g. Content-Security-Policy violations.
    pub async fn console(&self) -> Vec<String> {
        let entries = self.post("/se/log", json!({ "type": "browser" })).await;
        let messages = entries
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["message"].as_str());
        messages.map(str::to_string).collect()
    }

    /// End the session (Chromium exits).
    pub async fn quit(self) {
        self.cmd(Method::DELETE, "", None).await;
    }
}

pub struct Element<'s> {
    session: &'s Session<'s>,
    id: String,
}

impl Element<'_> {
    async fn post(&self, action: &str, body: Value) {
        self.session
            .post(&format!("/element/{}/{action}", self.id), body)
            .await;
    }

    pub async fn send_keys(&self, text: &str) {
        self.post("value", json!({ "text": text })).await;
    }

    pub async fn click(&self) {
        self.post("click", json!({})).await;
    }

    /// Empty a text input.
    pub async fn clear(&self) {
        self.post("clear", json!({})).await;
    }

    pub async fn text(&self) -> String {
        self.session
            .string(&format!("/element/{}/text", self.id))
            .await
    }
}

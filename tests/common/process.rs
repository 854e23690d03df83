//! The real `gatehouse run` binary as a child process, for tests that need several
//! processes (cluster roles) or signals. Killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Process {
    pub child: Child,
    /// Every line the process wrote (stdout and stderr), as it arrives.
    log: Arc<Mutex<Vec<String>>>,
}

impl Process {
    /// Start `gatehouse -c CONFIG run` and wait (up to 30 s) for its "gatehouse serving" line.
    pub fn start(config: &Path) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(["-c", config.to_str().unwrap(), "run"])
            .env_remove("GATEHOUSE_CONFIG")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let log = log.clone();
            // Drained for the process's whole life, so it never blocks on a full pipe.
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    log.lock().unwrap().push(line);
                }
            });
        }
        let mut p = Process { child, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !p.logged("gatehouse serving") {
            if let Some(status) = p.child.try_wait().unwrap() {
                panic!(
                    "gatehouse exited ({status}) before serving:\n{}",
                    p.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "gatehouse did not start serving within 30 s:\n{}",
                p.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        p
    }

    pub fn logged(&self, needle: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(needle))
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Send a signal (`"-STOP"`, `"-CONT"`, `"-TERM"`, `"-KILL"`).
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Wait for the process to exit by itself, at most `within`.
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running after {within:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kill (SIGKILL) and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // A stopped process must be continued to die promptly.
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        self.kill();
    }
}

/// A port free on 127.0.0.1 right now, for a child process's config (which must name its
/// own port and its peers' before any of them runs).
///
/// Not the kernel's `bind(0)`: a port it hands out comes from the ephemeral range, where any
/// other test's `bind(0)` or outgoing connection may be given the same port between this
/// check and the child's own bind ("Address already in use"). Ports below the ephemeral range
/// (32768 up by default) are only ever taken by name, so each test process walks its own
/// stretch of them (placed by its pid) and skips any that is taken.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    // Up to 30000, and below the ephemeral range wherever this machine puts it.
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let span = 30_000.min(ephemeral_low).saturating_sub(LOW);
    assert!(
        span >= 1_000,
        "the ephemeral port range starts at {ephemeral_low}: no room below it for test ports"
    );
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id() % (span / 500) * 500;
    for _ in 0..span {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = u16::try_from(LOW + offset).unwrap();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 127.0.0.1:{LOW}..{}", LOW + span);
}

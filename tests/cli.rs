//! SPEC §1: the command line. `check` reports every problem with file:line:column and
//! exits 1; `hash-password` prints an argon2id PHC string; `user …` manages the store.

mod common;

use common::write_config;
use std::process::Output;

fn gatehouse(args: &[&str], stdin: &str) -> Output {
    common::cli(args, stdin, &[])
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const GOOD: &str = "[portal]\nhost = \"auth.localhost\"\nstore = \"g.db\"\n\n[[sites]]\nid = \"app\"\nhost = \"app.localhost\"\nbackend = \"builtin:echo\"\n";

/// The shipped demo config is valid.
#[test]
fn shipped_config_checks() {
    let out = gatehouse(
        &[
            "check",
            "-c",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml"),
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ok (2 sites, 2 users)"));
}

/// Every validation problem is reported, each with file:line:column and key, exit 1.
#[test]
fn check_reports_every_problem_with_position() {
    let dir = tempfile::tempdir().unwrap();
    let body = "[portal]\nhost = \"auth.localhost\"\nstore = \"g.db\"\nidle_timeout = \"soon\"\ncache_margin = \"20m\"\n\n\
                [[sites]]\nid = \"app\"\nhost = \"app.localhost\"\nbackend = \"builtin:echo\"\n\n\
                [[sites]]\nid = \"app\"\nhost = \"auth.localhost\"\nbackend = \"ftp://x\"\n";
    let path = write_config(dir.path(), body);
    let out = gatehouse(&["check", "-c", path.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let file = path.display().to_string();
    for (line_col, key) in [
        ("11:16:", "portal.idle_timeout"),
        ("12:16:", "portal.cache_margin"),
        ("20:6:", "sites[1].id"),
        ("21:8:", "sites[1].host"),
        ("22:11:", "sites[1].backend"),
    ] {
        let wanted = format!("{file}:{line_col}");
        assert!(
            err.lines()
                .any(|l| l.starts_with(&wanted) && l.contains(key)),
            "missing {wanted} {key} in:\n{err}"
        );
    }
    assert!(err.contains("\"soon\" is not a duration"));
    assert!(err.contains("is the portal's host"));
}

/// Unknown keys are errors, with their position.
#[test]
fn unknown_key_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &GOOD.replace("backend =", "backnd = \"x\"\nbackend ="),
    );
    let out = gatehouse(&["check", "-c", path.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("backnd") && err.contains(&format!("{}:15:", path.display())),
        "{err}"
    );
}

/// `[portal.signin_throttle]`: good values pass; out-of-range ones and unknown keys are each
/// named by key and position.
#[test]
fn signin_throttle_keys_checked() {
    let dir = tempfile::tempdir().unwrap();
    let with = |table: &str| {
        let body = GOOD.replace("\n\n[[sites]]", &format!("\n\n{table}\n\n[[sites]]"));
        let path = write_config(dir.path(), &body);
        let out = gatehouse(&["check", "-c", path.to_str().unwrap()], "");
        (out.status.code(), text(&out.stderr), path)
    };
    let (code, err, _) = with(
        "[portal.signin_throttle]\nfailures = 3\naddress_failures = 30\nuser_failures = 20\nmax_delay = \"5m\"",
    );
    assert_eq!(code, Some(0), "{err}");
    let (code, err, path) = with(
        "[portal.signin_throttle]\nfailures = 0\naddress_failures = 2000000\nmax_delay = \"2h\"",
    );
    assert_eq!(code, Some(1));
    let file = path.display().to_string();
    for (line_col, key, says) in [
        ("13:12:", "portal.signin_throttle.failures", "between 1 and"),
        (
            "14:20:",
            "portal.signin_throttle.address_failures",
            "between 1 and",
        ),
        (
            "15:13:",
            "portal.signin_throttle.max_delay",
            "between 1s and 1h",
        ),
    ] {
        let wanted = format!("{file}:{line_col}");
        assert!(
            err.lines()
                .any(|l| l.starts_with(&wanted) && l.contains(key) && l.contains(says)),
            "missing {wanted} {key} in:\n{err}"
        );
    }
    let (_, _, path) = with("");
    let config = gatehouse::config::Config::load(&path).unwrap();
    let t = config.portal.signin_throttle;
    assert_eq!(
        (t.failures, t.address_failures, t.user_failures, t.max_delay),
        (5, 100, 50, std::time::Duration::from_secs(900)),
        "the defaults the README documents"
    );
    let (code, err, _) = with("[portal.signin_throttle]\nmax_delay = \"soon\"\ndelay = 1");
    assert_eq!(code, Some(1));
    assert!(err.contains("delay"), "{err}");
}

/// An unreadable certificate and a missing config file are named.
#[test]
fn missing_files_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), GOOD);
    let text_cfg = std::fs::read_to_string(&path)
        .unwrap()
        .replace("localhost.key", "nope.key");
    std::fs::write(&path, text_cfg).unwrap();
    let out = gatehouse(&["check", "-c", path.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("tls.key: cannot read")
            && text(&out.stderr).contains("nope.key")
    );
    let out = gatehouse(&["check", "-c", "/nonexistent/gatehouse.toml"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("/nonexistent/gatehouse.toml"));
}

/// hash-password reads stdin and prints a verifying argon2id PHC string.
#[test]
fn hash_password() {
    let out = gatehouse(&["hash-password"], "s3cret\n");
    assert!(out.status.success());
    let phc = text(&out.stdout).trim().to_string();
    assert!(phc.starts_with("$argon2id$"));
    assert!(gatehouse::crypto::password::verify_blocking(&phc, "s3cret"));
    assert!(!gatehouse::crypto::password::verify_blocking(
        &phc, "s3cret\n"
    ));
    let out = gatehouse(&["hash-password"], "");
    assert!(!out.status.success(), "an empty password is refused");
}

/// user add / list / level / disable / enable / passwd / remove work on the store.
#[test]
fn user_commands() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), GOOD);
    let c = path.to_str().unwrap();
    let add = gatehouse(
        &[
            "user",
            "add",
            "carol",
            "--level",
            "2",
            "--site",
            "app=4",
            "--password-stdin",
            "-c",
            c,
        ],
        "pw1\n",
    );
    assert!(add.status.success(), "{}", text(&add.stderr));
    let again = gatehouse(
        &["user", "add", "carol", "--password-stdin", "-c", c],
        "pw1\n",
    );
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("already exists"));
    let bad_site = gatehouse(
        &[
            "user",
            "add",
            "dave",
            "--site",
            "nosuch=1",
            "--password-stdin",
            "-c",
            c,
        ],
        "pw\n",
    );
    assert!(!bad_site.status.success());
    assert!(text(&bad_site.stderr).contains("nosuch"));

    let list = text(&gatehouse(&["user", "list", "-c", c], "").stdout);
    assert!(
        list.lines()
            .any(|l| l.starts_with("carol") && l.contains("app=4") && l.contains("active")),
        "{list}"
    );
    assert!(
        gatehouse(&["user", "level", "carol", "5", "-c", c], "")
            .status
            .success()
    );
    assert!(
        gatehouse(&["user", "disable", "carol", "-c", c], "")
            .status
            .success()
    );
    let list = text(&gatehouse(&["user", "list", "-c", c], "").stdout);
    assert!(
        list.lines()
            .any(|l| l.starts_with("carol") && l.contains(" 5 ") && l.contains("disabled")),
        "{list}"
    );
    assert!(
        gatehouse(&["user", "enable", "carol", "-c", c], "")
            .status
            .success()
    );
    assert!(
        gatehouse(
            &["user", "passwd", "carol", "--password-stdin", "-c", c],
            "pw2\n"
        )
        .status
        .success()
    );

    use gatehouse::store::Store;
    let store = gatehouse::store::SqliteStore::open(&dir.path().join("g.db")).unwrap();
    let carol = store.user("carol").unwrap().unwrap();
    assert!(gatehouse::crypto::password::verify_blocking(
        &carol.password_hash,
        "pw2"
    ));
    assert!(!carol.disabled);
    drop(store);

    assert!(
        gatehouse(&["user", "remove", "carol", "-c", c], "")
            .status
            .success()
    );
    let gone = gatehouse(&["user", "remove", "carol", "-c", c], "");
    assert!(!gone.status.success());
    assert!(text(&gone.stderr).contains("no user \"carol\""));
}

/// An edge's config names no store of its own: commands that manage users or read usage
/// refuse it, saying where to run them, and create no file.
#[test]
fn store_commands_refuse_an_edge_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cluster.key"), "k".repeat(40)).unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "{GOOD}\n[cluster]\nrole = \"edge\"\nportal_url = \"https://auth.localhost:9443\"\nsecret_file = \"cluster.key\"\n"
        ),
    );
    let c = config.to_str().unwrap();
    let checked = gatehouse(&["check", "-c", c], "");
    assert!(checked.status.success(), "{}", text(&checked.stderr));
    for args in [
        vec!["user", "list", "-c", c],
        vec!["user", "disable", "alice", "-c", c],
        vec!["report", "-c", c],
    ] {
        let out = gatehouse(&args, "");
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            text(&out.stdout)
        );
        assert!(
            text(&out.stderr).contains("an edge's config"),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    assert!(!dir.path().join("g.db").exists(), "no store created");
}

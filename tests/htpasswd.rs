//! `gatehouse user import-htpasswd`: users of an Apache htpasswd file (`{SHA}`, `$apr1$`,
//! bcrypt) sign in with their old passwords, and their first successful sign-in replaces
//! the imported hash by argon2id in the store. Weak forms are refused by line number.

mod common;

use common::*;
use gatehouse::store::{SqliteStore, Store};

// Made with Apache's htpasswd: -nbm (apr1), -nbs ({SHA}), -nbB -C 4 (bcrypt).
const USERS: &[(&str, &str, &str)] = &[
    ("ann", "old apr pw", "$apr1$hM1xLd85$AQBMXf1rlhss0MmkuVhqM."),
    ("sam", "old sha pw", "{SHA}ho6gRrnwcRCV0vFHiD4sJJlnWw0="),
    (
        "bea",
        "old bcrypt pw",
        "$2y$04$bvwCFYEt4MUAJVY0pLOkKesubik0n6UzM.gXDLgNc3Tlo7RSZG6mC",
    ),
    (
        "bob",
        "old bcrypt pw",
        "$2b$04$bvwCFYEt4MUAJVY0pLOkKesubik0n6UzM.gXDLgNc3Tlo7RSZG6mC",
    ),
];

fn stored_hash(gw: &Gateway, name: &str) -> String {
    let store = SqliteStore::open(&gw.store_path()).unwrap();
    store.user(name).unwrap().unwrap().password_hash
}

/// Imported users sign in with their old password; the first success replaces the hash by
/// argon2id (read from the store before and after); a wrong password changes nothing.
#[tokio::test]
async fn imported_users_sign_in_and_are_rehashed() {
    let gw = Gateway::builder()
        .portal("sync_interval = \"1s\"")
        .site("app", "builtin:echo")
        .start()
        .await;
    let file = gw.dir.path().join("users.htpasswd");
    let text: String = USERS
        .iter()
        .map(|(name, _, hash)| format!("{name}:{hash}\n"))
        .collect();
    std::fs::write(&file, format!("# from the old server\n{text}")).unwrap();
    let cfg = gw.config_path.to_str().unwrap();
    let out = cli(
        &[
            "-c",
            cfg,
            "user",
            "import-htpasswd",
            file.to_str().unwrap(),
            "--level",
            "2",
        ],
        "",
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported 4 users"));

    for (name, password, hash) in USERS {
        assert_eq!(stored_hash(&gw, name), *hash, "imported as it was");

        let browser = gw.client();
        let first = browser.get(&gw.url("app.localhost", "/")).await;
        let form = browser.get(&first.location().unwrap()).await;
        let refused = submit_login(&browser, &gw, &form.body, name, "wrong").await;
        assert_eq!(refused.status, 401, "{name}");
        assert_eq!(stored_hash(&gw, name), *hash, "a failure changes nothing");

        let signed_in = gw.client();
        let res = sign_in(&signed_in, &gw, "app.localhost", "/", name, password).await;
        assert_eq!(res.status, 200, "{name}: {res:?}");
        assert_eq!(res.json()["headers"]["x-auth-level"], "2");
        let upgraded = stored_hash(&gw, name);
        assert!(upgraded.starts_with("$argon2id$"), "{name}: {upgraded}");
        assert!(gatehouse::crypto::password::verify_blocking(
            &upgraded, password
        ));

        // And the new hash works for the next sign-in.
        let again = sign_in(&gw.client(), &gw, "app.localhost", "/", name, password).await;
        assert_eq!(again.status, 200, "{name}: {again:?}");
        assert_eq!(stored_hash(&gw, name), upgraded, "rehashed once");

        if *name == "ann" {
            // The portal learns of the changed hash within a second or two; the session
            // that upgraded it must not be taken for one whose password was changed.
            tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
            let still = signed_in.get(&gw.url("app.localhost", "/x")).await;
            assert_eq!(still.status, 200, "still signed in: {still:?}");
        }
    }
}

/// Plain-text and crypt(3) DES lines are refused, each named by its line; nothing is
/// imported, and the refused values are not echoed.
#[test]
fn weak_lines_are_refused_by_line_number() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "[portal]\nhost = \"auth.localhost\"\nstore = \"g.db\"\n",
    );
    let file = dir.path().join("users.htpasswd");
    std::fs::write(
        &file,
        "sam:{SHA}ho6gRrnwcRCV0vFHiD4sJJlnWw0=\nplain:hunter2\ndes:btrTkziSn2Nac\n",
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let out = cli(
        &["-c", cfg, "user", "import-htpasswd", file.to_str().unwrap()],
        "",
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("nothing imported"), "{err}");
    assert!(
        err.contains("line 2: user \"plain\"") && err.contains("plain-text"),
        "{err}"
    );
    assert!(
        err.contains("line 3: user \"des\"") && err.contains("DES"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
    let store = SqliteStore::open(&dir.path().join("g.db")).unwrap();
    assert!(store.user("sam").unwrap().is_none(), "all or nothing");

    // A user already in the store is refused by line too.
    std::fs::write(&file, "sam:{SHA}ho6gRrnwcRCV0vFHiD4sJJlnWw0=\n").unwrap();
    let args = ["-c", cfg, "user", "import-htpasswd", file.to_str().unwrap()];
    assert!(cli(&args, "", &[]).status.success());
    let again = cli(&args, "", &[]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("line 1: user \"sam\" already exists"));
}

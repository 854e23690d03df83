//! The PostgreSQL store against a real server (`./scripts/test` starts one): the shared
//! engine tests (the same bodies SQLite runs), then what only several processes sharing a
//! database bring: races between callers, and stores opened side by side.

use std::sync::{Arc, Barrier};

use super::*;
use crate::store::engine_tests::{TestStore, engine_tests};
use crate::store::postgres::testing::fresh_database;

impl TestStore for PgStore {
    fn count(&self, sql: &str) -> i64 {
        self.with(|c| Ok(c.query_one(sql, &[])?.try_get(0)?))
            .unwrap()
    }
}

fn open() -> PgStore {
    PgStore::open(&fresh_database()).unwrap()
}

engine_tests!(open);

fn user(name: &str) -> NewUser {
    NewUser {
        name: name.into(),
        password_hash: "$argon2id$x".into(),
        level: Level(3),
        site_levels: BTreeMap::new(),
        idle_timeout: None,
        disabled: false,
    }
}

/// Run `f(i)` on `n` threads released together; their results in thread order.
fn at_once<T: Send + 'static>(n: usize, f: impl Fn(usize) -> T + Send + Sync + 'static) -> Vec<T> {
    let f = Arc::new(f);
    let start = Arc::new(Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let (f, start) = (f.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                f(i)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

/// Of concurrent registrations of one name exactly one succeeds, and the losers leave
/// nothing behind (no account, no revision).
#[test]
fn concurrent_registrations_of_a_name_one_wins() {
    let s = Arc::new(open());
    let store = s.clone();
    let won = at_once(8, move |i| {
        let mut u = user("new@example.org");
        u.password_hash = format!("$argon2id${i}");
        store.register_user(&u, 1000).unwrap()
    });
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
    let winner = won.iter().position(|w| *w).unwrap();
    let u = s.user("new@example.org").unwrap().unwrap();
    assert_eq!(u.password_hash, format!("$argon2id${winner}"));
    assert_eq!(
        (u.account.as_str(), u.temporary_until),
        ("new@example.org", Some(1000))
    );
    assert_eq!(s.count("SELECT count(*) FROM accounts"), 1);
    assert_eq!(s.users_changed_since(0).unwrap().1, 1);
}

/// Concurrent password changes from one temporary password: exactly one completes.
#[test]
fn concurrent_password_changes_one_wins() {
    let s = Arc::new(open());
    assert!(s.register_user(&user("alice"), 1000).unwrap());
    let store = s.clone();
    let won = at_once(8, move |i| {
        store
            .replace_password("alice", "$argon2id$x", &format!("$argon2id${i}"))
            .unwrap()
    });
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
    let winner = won.iter().position(|w| *w).unwrap();
    let u = s.user("alice").unwrap().unwrap();
    assert_eq!(u.password_hash, format!("$argon2id${winner}"));
    assert_eq!(u.temporary_until, None);
    assert_eq!(
        s.users_changed_since(0).unwrap().1,
        2,
        "one revision a change"
    );
}

/// Stores opened side by side on one database (as portal processes are) see each other's
/// users and share the secrets; opening again applies no migration twice.
#[test]
fn stores_on_one_database_share_everything() {
    let url = fresh_database();
    let a = PgStore::open(&url).unwrap();
    let key = a.secret("csrf").unwrap();
    a.add_user(&user("alice")).unwrap();
    let b = PgStore::open(&url).unwrap();
    assert_eq!(b.secret("csrf").unwrap(), key);
    assert_eq!(b.user("alice").unwrap().unwrap().account, "alice");
    let (_, rev) = b.users_changed_since(0).unwrap();
    assert!(a.set_level("alice", Level(1), None).unwrap());
    assert_eq!(b.users_changed_since(rev).unwrap().0, ["alice"]);
    assert_eq!(
        b.count("SELECT version FROM gatehouse_schema"),
        super::super::MIGRATIONS.len() as i64
    );
    assert_eq!(
        b.count("SELECT count(*) FROM meta WHERE key = 'revision'"),
        1
    );
}

/// Portals starting together on a new database migrate it once, and all start.
#[test]
fn concurrent_opens_of_a_new_database_all_succeed() {
    let url = Arc::new(fresh_database());
    let u = url.clone();
    let opened = at_once(4, move |_| PgStore::open(&u).map(|_| ()));
    for result in opened {
        result.unwrap();
    }
    let s = PgStore::open(&url).unwrap();
    assert_eq!(s.count("SELECT count(*) FROM gatehouse_schema"), 1);
}

/// Creating one secret at once from several stores gives them all the same value.
#[test]
fn concurrent_first_use_of_a_secret_agrees() {
    let url = Arc::new(fresh_database());
    let stores: Arc<Vec<PgStore>> =
        Arc::new((0..4).map(|_| PgStore::open(&url).unwrap()).collect());
    let s = stores.clone();
    let keys = at_once(4, move |i| s[i].secret("signing").unwrap());
    assert!(keys.iter().all(|k| *k == keys[0]));
}

/// Usage flushed at once by several portals, for the same rows in different orders, adds
/// up (no lost update, no deadlock), and a merge running meanwhile makes no flush fail: a
/// flush before it is moved with the account, one after it skips the gone account.
#[test]
fn concurrent_usage_and_merges_add_up() {
    use crate::central::Usage;
    let s = Arc::new(open());
    for u in ["alice", "bob", "carol"] {
        s.add_user(&user(u)).unwrap();
    }
    let one = Usage {
        requests: 1,
        bytes_in: 10,
        bytes_out: 100,
    };
    let store = s.clone();
    at_once(6, move |i| {
        let mut rows: Vec<UsageRow> = ["alice", "bob", "carol"]
            .iter()
            .flat_map(|a| {
                ["app", "wiki"].map(|site| UsageRow {
                    account: a.to_string(),
                    site: site.into(),
                    usage: one,
                })
            })
            .collect();
        if i % 2 == 1 {
            rows.reverse();
        }
        for _ in 0..5 {
            store.add_usage("2026-11-26", &rows).unwrap();
        }
        if i == 3 {
            store.merge_accounts("alice", "bob", 1).unwrap();
        }
    });
    let report = s.usage_report(None, None, None).unwrap();
    let requests: Vec<(&str, u64)> = report
        .iter()
        .map(|a| (a.account.as_str(), a.total().requests))
        .collect();
    // Each of alice and carol: 6 flushers × 5 flushes × 2 sites; bob's, up to as much again.
    let [("alice", alice), ("carol", 60)] = requests[..] else {
        panic!("{report:?}")
    };
    assert!((60..=120).contains(&alice), "{report:?}");
    assert_eq!(report[0].merged, ["bob"]);
}

/// The session write-behind of SQLite is refused loudly: PostgreSQL keeps sessions in the
/// shared session table.
#[test]
fn session_write_behind_is_refused() {
    let s = open();
    let err = s.load_sessions().unwrap_err().to_string();
    assert!(err.contains("shared session table"), "{err}");
    let err = s
        .save_sessions(&SessionWrites::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("shared session table"), "{err}");
}

/// Portals calling everything at once on the same accounts, while accounts are merged and
/// users removed, never get an error (no deadlock, no foreign-key failure): each call comes
/// wholly before or after a merge or removal.
#[test]
fn mixed_concurrent_calls_never_fail() {
    use crate::central::Usage;
    let s = Arc::new(open());
    let names = ["a", "b", "c", "d", "e", "f"];
    for u in names {
        s.add_user(&user(u)).unwrap();
    }
    let store = s.clone();
    at_once(6, move |i| {
        let s = &store;
        for round in 0..20 {
            let me = names[(i + round) % names.len()];
            let other = names[(i + round + 1) % names.len()];
            let node = IdHash([(round % 3) as u8; 32]);
            s.note_node_account(&node, me, round as i64).unwrap();
            s.keep_apart(&node, other, &[me.to_string()], round as i64)
                .unwrap();
            s.record_site_access(me, "app", round as i64).unwrap();
            let rows: Vec<UsageRow> = [other, me]
                .iter()
                .map(|a| UsageRow {
                    account: a.to_string(),
                    site: "app".into(),
                    usage: Usage {
                        requests: 1,
                        bytes_in: 1,
                        bytes_out: 1,
                    },
                })
                .collect();
            s.add_usage("2026-11-26", &rows).unwrap();
            s.set_level(me, Level(round as u32), None).unwrap();
            if i == 0 && round % 5 == 4 {
                s.merge_accounts(names[round / 5 + 1], names[round / 5], 1)
                    .unwrap();
            }
            if i == 1 && round == 10 {
                s.remove_user("f").unwrap();
            }
        }
    });
    assert!(s.user("f").unwrap().is_none());
    let merged = s.merged_into("e").unwrap();
    assert_eq!(merged.len(), 4, "a into b, b into c, c into d, d into e");
    let accounts: Vec<String> = s
        .list_users()
        .unwrap()
        .into_iter()
        .map(|u| u.account)
        .collect();
    assert_eq!(accounts, ["e"; 5]);
}

/// A caller that panics while holding a connection does not leak its place in the pool:
/// after more panics than the pool has connections, calls still get one at once.
#[test]
fn a_panic_never_leaks_a_connection() {
    let store = open();
    for _ in 0..super::super::MAX_CONNECTIONS + 4 {
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _: Result<(), StoreError> = store.with(|c| {
                c.batch_execute("SELECT 1")?;
                panic!("a bug while holding a connection")
            });
        }));
        assert!(panicked.is_err());
    }
    let started = std::time::Instant::now();
    assert!(store.user("nobody").unwrap().is_none());
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

//! The behaviour every [`Store`] engine must show, as test bodies run on each engine:
//! `engine_tests!(open)` in an engine's tests makes one `#[test]` per body below, on a
//! fresh store from `open()`, so SQLite and PostgreSQL are checked against the same
//! expectations.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{NewUser, Store, UsageRow};
use crate::central::Usage;
use crate::config::Level;
use crate::crypto::IdHash;

/// A store under test, with a way to look at its tables directly.
pub(crate) trait TestStore: Store {
    /// The one integer that `sql` (plain SQL both engines read alike) selects.
    fn count(&self, sql: &str) -> i64;
}

/// The id of the first node a fresh store registers (both engines count from 1).
const FIRST_NODE: &str = "(SELECT min(id) FROM nodes)";

/// One `#[test]` per behaviour below, each on a fresh store from `$open()`.
macro_rules! engine_tests {
    ($open:path) => {
        $crate::store::engine_tests::engine_tests!(@each $open;
            add_and_read_user,
            users_are_listed_in_byte_order,
            upsert_creates_then_updates,
            a_new_user_never_joins_a_left_account,
            changes_are_visible_by_revision,
            upgrade_is_compare_and_swap,
            temporary_password_is_replaced_once,
            first_site_access_is_recorded_once,
            nodes_note_accounts_and_offer_the_others,
            merge_moves_everything_in_one_go,
            merge_refuses_unknown_or_same,
            account_login_falls_back_to_oldest_user,
            usage_adds_up_over_a_range,
            a_usage_batch_counts_once,
            own_idle_timeout,
            account_nodes_and_forgetting,
            secrets_are_stable
        );
    };
    (@each $open:path; $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                $crate::store::engine_tests::$name(&$open());
            }
        )*
    };
}
pub(crate) use engine_tests;

fn user(name: &str) -> NewUser {
    NewUser {
        name: name.into(),
        password_hash: "$argon2id$x".into(),
        level: Level(3),
        site_levels: BTreeMap::from([("wiki".to_string(), Level(5))]),
        idle_timeout: Some(Duration::from_secs(600)),
        disabled: false,
    }
}

/// Users round-trip with their account, levels and timeout.
pub(crate) fn add_and_read_user(s: &dyn TestStore) {
    assert!(s.add_user(&user("alice")).unwrap());
    assert!(!s.add_user(&user("alice")).unwrap());
    let u = s.user("alice").unwrap().unwrap();
    assert_eq!(u.account, "alice");
    assert_eq!(u.level_on("wiki"), Level(5));
    assert_eq!(u.level_on("app"), Level(3));
    assert_eq!(u.idle_timeout, Some(Duration::from_secs(600)));
    assert!(s.user("bob").unwrap().is_none());
}

/// The names of the users as listed.
fn names(s: &dyn TestStore) -> Vec<String> {
    s.list_users()
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect()
}

/// Users are listed by name, byte by byte (upper case before lower case), whatever the
/// database's collation.
pub(crate) fn users_are_listed_in_byte_order(s: &dyn TestStore) {
    for u in ["bob", "Zed", "alice", "émile"] {
        assert!(s.add_user(&user(u)).unwrap());
    }
    assert_eq!(names(s), ["Zed", "alice", "bob", "émile"]);
    assert!(s.user("ALICE").unwrap().is_none(), "names are exact");
}

/// An upsert creates a user, then updates every field (a temporary password becomes the
/// user's own), and reports whether anything changed.
pub(crate) fn upsert_creates_then_updates(s: &dyn TestStore) {
    assert!(s.upsert_user(&user("alice")).unwrap());
    let mut changed = user("alice");
    changed.password_hash = "$argon2id$y".into();
    changed.level = Level(7);
    changed.site_levels = BTreeMap::new();
    changed.idle_timeout = None;
    changed.disabled = true;
    assert!(s.upsert_user(&changed).unwrap());
    assert!(!s.upsert_user(&changed).unwrap());
    let u = s.user("alice").unwrap().unwrap();
    assert_eq!(
        (
            u.password_hash.as_str(),
            u.level,
            u.idle_timeout,
            u.disabled
        ),
        ("$argon2id$y", Level(7), None, true)
    );
    assert!(u.site_levels.is_empty());

    assert!(s.register_user(&user("bob"), 99).unwrap());
    assert!(
        s.upsert_user(&user("bob")).unwrap(),
        "the password becomes bob's own"
    );
    assert_eq!(s.user("bob").unwrap().unwrap().temporary_until, None);
    assert!(s.set_password("bob", "$argon2id$z").unwrap());
    assert_eq!(s.user("bob").unwrap().unwrap().password_hash, "$argon2id$z");
    assert!(!s.set_password("nobody", "$argon2id$z").unwrap());
    assert!(
        s.set_level("bob", Level(1), Some(&BTreeMap::new()))
            .unwrap()
    );
    assert_eq!(s.user("bob").unwrap().unwrap().level_on("wiki"), Level(1));
    assert!(s.set_disabled("bob", true).unwrap());
    assert!(s.user("bob").unwrap().unwrap().disabled);
    assert_eq!(names(s), ["alice", "bob"]);
}

/// A new user whose name is that of an account left by a removed user gets an account of
/// their own, with a numbered suffix.
pub(crate) fn a_new_user_never_joins_a_left_account(s: &dyn TestStore) {
    s.add_user(&user("alice")).unwrap();
    s.add_user(&user("bob")).unwrap();
    s.merge_accounts("alice", "bob", 1).unwrap();
    s.remove_user("alice").unwrap();
    assert!(s.add_user(&user("alice")).unwrap());
    assert_eq!(s.user("alice").unwrap().unwrap().account, "alice#2");
    assert_eq!(s.user("bob").unwrap().unwrap().account, "alice");
    assert_eq!(s.count("SELECT count(*) FROM accounts"), 2);
}

/// Every change bumps the revision so running portals can notice it.
pub(crate) fn changes_are_visible_by_revision(s: &dyn TestStore) {
    s.add_user(&user("alice")).unwrap();
    s.add_user(&user("bob")).unwrap();
    let (_, rev) = s.users_changed_since(0).unwrap();
    assert!(
        !s.upsert_user(&user("alice")).unwrap(),
        "same values change nothing"
    );
    assert!(s.set_level("bob", Level(1), None).unwrap());
    assert_eq!(
        s.users_changed_since(rev).unwrap().0,
        vec!["bob".to_string()]
    );
    let (_, rev) = s.users_changed_since(0).unwrap();
    assert!(s.remove_user("alice").unwrap());
    assert_eq!(
        s.users_changed_since(rev).unwrap().0,
        vec!["alice".to_string()]
    );
    assert!(!s.set_disabled("nobody", true).unwrap());
}

/// An upgraded hash replaces only the hash it was verified against.
pub(crate) fn upgrade_is_compare_and_swap(s: &dyn TestStore) {
    s.add_user(&user("alice")).unwrap();
    assert!(
        !s.upgrade_password_hash("alice", "{SHA}other", "$argon2id$new")
            .unwrap()
    );
    assert!(
        s.upgrade_password_hash("alice", "$argon2id$x", "$argon2id$new")
            .unwrap()
    );
    assert_eq!(
        s.user("alice").unwrap().unwrap().password_hash,
        "$argon2id$new"
    );
    assert!(
        !s.upgrade_password_hash("bob", "$argon2id$x", "$argon2id$new")
            .unwrap()
    );
}

/// A registered user's password is temporary until replaced; a replacement is a
/// compare-and-swap, so one temporary password completes one change only.
pub(crate) fn temporary_password_is_replaced_once(s: &dyn TestStore) {
    assert!(s.register_user(&user("new@example.org"), 1234).unwrap());
    assert!(!s.register_user(&user("new@example.org"), 99).unwrap());
    let u = s.user("new@example.org").unwrap().unwrap();
    assert_eq!(u.temporary_until, Some(1234));
    assert_eq!(u.account, "new@example.org");
    assert!(
        s.replace_password("new@example.org", "$argon2id$x", "$argon2id$own")
            .unwrap()
    );
    assert!(
        !s.replace_password("new@example.org", "$argon2id$x", "$argon2id$again")
            .unwrap()
    );
    let u = s.user("new@example.org").unwrap().unwrap();
    assert_eq!(u.temporary_until, None);
    assert_eq!(u.password_hash, "$argon2id$own");
}

/// The first access of an account to a site is kept; later ones do not move it.
pub(crate) fn first_site_access_is_recorded_once(s: &dyn TestStore) {
    s.upsert_user(&user("alice")).unwrap();
    assert!(s.record_site_access("alice", "app", 100).unwrap());
    assert!(!s.record_site_access("alice", "app", 200).unwrap());
    assert!(s.record_site_access("alice", "wiki", 150).unwrap());
    assert!(!s.record_site_access("nobody", "app", 100).unwrap());
    assert_eq!(
        s.account_sites("alice").unwrap(),
        vec![("app".to_string(), 100), ("wiki".to_string(), 150)]
    );
    // Removing the last user of an account removes what was recorded of it.
    assert!(s.remove_user("alice").unwrap());
    assert!(s.account_sites("alice").unwrap().is_empty());
}

fn node(n: u8) -> IdHash {
    IdHash([n; 32])
}

/// Add `n` requests, `n * 10` bytes in and `n * 100` out.
fn usage_row(s: &dyn TestStore, account: &str, site: &str, day: &str, n: u64) {
    let usage = Usage {
        requests: n,
        bytes_in: n * 10,
        bytes_out: n * 100,
    };
    let row = UsageRow {
        account: account.into(),
        site: site.into(),
        usage,
    };
    s.add_usage(day, &[row]).unwrap();
}

/// The account's usage per site and day (of the days these tests use), by site and day.
fn usage_of(s: &dyn TestStore, account: &str) -> Vec<(String, String, u64, u64, u64)> {
    let mut out = Vec::new();
    for day in ["2026-11-24", "2026-11-25", "2026-11-26"] {
        for a in s.usage_report(Some(account), Some(day), Some(day)).unwrap() {
            for (site, u) in a.sites {
                out.push((site, day.into(), u.requests, u.bytes_in, u.bytes_out));
            }
        }
    }
    out.sort();
    out
}

/// A node is registered once; each account signed in on it is noted, and the others
/// seen there are the candidates for linking, until kept apart (either way round).
pub(crate) fn nodes_note_accounts_and_offer_the_others(s: &dyn TestStore) {
    for u in ["alice", "bob", "carol"] {
        s.add_user(&user(u)).unwrap();
    }
    assert!(
        s.note_node_account(&node(1), "alice", 10)
            .unwrap()
            .is_empty()
    );
    assert!(
        s.note_node_account(&node(1), "alice", 11)
            .unwrap()
            .is_empty()
    );
    assert!(s.note_node_account(&node(2), "bob", 12).unwrap().is_empty());
    assert_eq!(s.note_node_account(&node(1), "bob", 13).unwrap(), ["alice"]);
    assert_eq!(s.count("SELECT count(*) FROM nodes"), 2);
    assert_eq!(s.count("SELECT count(*) FROM node_accounts"), 3);
    assert_eq!(
        s.count(&format!(
            "SELECT last_seen FROM nodes WHERE id = {FIRST_NODE}"
        )),
        13,
        "seen again"
    );
    assert!(
        s.note_node_account(&node(3), "nobody", 14)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.count("SELECT count(*) FROM nodes"),
        2,
        "no account, no node"
    );

    s.note_node_account(&node(1), "carol", 15).unwrap();
    assert_eq!(
        s.link_candidates(&node(1), "alice").unwrap(),
        ["carol", "bob"]
    );
    s.keep_apart(&node(1), "bob", &["alice".into(), "bob".into()], 16)
        .unwrap();
    assert_eq!(s.link_candidates(&node(1), "alice").unwrap(), ["carol"]);
    assert_eq!(s.link_candidates(&node(1), "bob").unwrap(), ["carol"]);
    assert_eq!(s.link_candidates(&node(2), "carol").unwrap(), ["bob"]);
    assert!(s.link_candidates(&node(9), "alice").unwrap().is_empty());
}

/// A merge moves users, sites, usage (summed per site and day) and nodes into the kept
/// account, records itself, and deletes the other account; a second merge carries the
/// record along.
pub(crate) fn merge_moves_everything_in_one_go(s: &dyn TestStore) {
    for u in ["alice", "bob", "carol"] {
        s.add_user(&user(u)).unwrap();
    }
    s.record_site_access("alice", "app", 200).unwrap();
    s.record_site_access("bob", "app", 100).unwrap();
    s.record_site_access("bob", "wiki", 300).unwrap();
    usage_row(s, "alice", "app", "2026-11-25", 1);
    usage_row(s, "bob", "app", "2026-11-25", 2);
    usage_row(s, "bob", "app", "2026-11-26", 4);
    s.note_node_account(&node(1), "alice", 10).unwrap();
    s.note_node_account(&node(1), "bob", 20).unwrap();
    s.note_node_account(&node(2), "bob", 30).unwrap();
    s.note_node_account(&node(1), "carol", 40).unwrap();
    s.keep_apart(&node(1), "bob", &["carol".into()], 41)
        .unwrap();
    let (_, rev) = s.users_changed_since(0).unwrap();

    assert_eq!(
        s.merge_accounts("alice", "bob", 50).unwrap(),
        Some(vec!["bob".to_string()])
    );
    assert_eq!(s.user("bob").unwrap().unwrap().account, "alice");
    assert_eq!(s.users_changed_since(rev).unwrap().0, ["bob"]);
    assert_eq!(s.count("SELECT count(*) FROM accounts"), 2);
    assert_eq!(
        s.account_sites("alice").unwrap(),
        [("app".to_string(), 100), ("wiki".to_string(), 300)]
    );
    assert_eq!(
        usage_of(s, "alice"),
        [
            ("app".into(), "2026-11-25".into(), 3, 30, 300),
            ("app".into(), "2026-11-26".into(), 4, 40, 400)
        ]
    );
    assert_eq!(s.count("SELECT count(*) FROM usage"), 2);
    let alice = "(SELECT id FROM accounts WHERE name = 'alice')";
    assert_eq!(
        s.count(&format!(
            "SELECT count(*) FROM node_accounts WHERE account_id = {alice}"
        )),
        2
    );
    assert_eq!(
        s.count(&format!(
            "SELECT first_seen FROM node_accounts WHERE account_id = {alice} AND node_id = {FIRST_NODE}"
        )),
        10
    );
    assert!(
        s.link_candidates(&node(1), "alice").unwrap().is_empty(),
        "bob's choice to keep carol apart carries over"
    );
    assert_eq!(s.merged_into("alice").unwrap(), [("bob".to_string(), 50)]);
    assert_eq!(s.account_login("alice").unwrap().as_deref(), Some("alice"));

    // Merging alice (with bob) into carol moves both users and the merge history.
    assert_eq!(
        s.merge_accounts("carol", "alice", 60).unwrap(),
        Some(vec!["alice".to_string(), "bob".to_string()])
    );
    assert_eq!(
        s.merged_into("carol").unwrap(),
        [("bob".to_string(), 50), ("alice".to_string(), 60)]
    );
    assert_eq!(usage_of(s, "carol").len(), 2);
    assert_eq!(s.count("SELECT count(*) FROM accounts"), 1);
}

/// Nothing happens for unknown accounts or an account merged with itself.
pub(crate) fn merge_refuses_unknown_or_same(s: &dyn TestStore) {
    s.add_user(&user("alice")).unwrap();
    let (_, rev) = s.users_changed_since(0).unwrap();
    assert_eq!(s.merge_accounts("alice", "alice", 1).unwrap(), None);
    assert_eq!(s.merge_accounts("alice", "nobody", 1).unwrap(), None);
    assert_eq!(s.merge_accounts("nobody", "alice", 1).unwrap(), None);
    assert_eq!(s.users_changed_since(rev).unwrap().1, rev);
    assert_eq!(s.count("SELECT count(*) FROM account_merges"), 0);
    assert_eq!(s.account_login("nobody").unwrap(), None);
}

/// An account whose namesake user was removed is proven by its oldest user.
pub(crate) fn account_login_falls_back_to_oldest_user(s: &dyn TestStore) {
    for u in ["alice", "bob", "zed"] {
        s.add_user(&user(u)).unwrap();
    }
    s.merge_accounts("alice", "zed", 1).unwrap();
    s.merge_accounts("alice", "bob", 2).unwrap();
    s.remove_user("alice").unwrap();
    assert_eq!(s.account_login("alice").unwrap().as_deref(), Some("bob"));
}

/// Usage adds up per account, site and day; a report sums the days of its range, per
/// site, for every account (one without traffic too), or for the one asked for.
pub(crate) fn usage_adds_up_over_a_range(s: &dyn TestStore) {
    s.upsert_user(&user("alice")).unwrap();
    s.upsert_user(&user("bob")).unwrap();
    s.upsert_user(&user("carol")).unwrap();
    let u = |requests, bytes_in, bytes_out| Usage {
        requests,
        bytes_in,
        bytes_out,
    };
    let row = |account: &str, site: &str, usage| UsageRow {
        account: account.into(),
        site: site.into(),
        usage,
    };
    s.add_usage("2026-11-24", &[row("alice", "app", u(1, 10, 100))])
        .unwrap();
    s.add_usage(
        "2026-11-25",
        &[
            row("alice", "app", u(2, 20, 200)),
            row("alice", "wiki", u(3, 0, 300)),
            row("bob", "app", u(4, 40, 400)),
            // Removed meanwhile: skipped, the rest still recorded.
            row("nobody", "app", u(9, 9, 9)),
        ],
    )
    .unwrap();
    s.add_usage("2026-11-25", &[row("alice", "app", u(5, 50, 500))])
        .unwrap();
    s.add_usage("2026-11-26", &[row("bob", "wiki", u(6, 60, 600))])
        .unwrap();

    let all = s.usage_report(None, None, None).unwrap();
    let names: Vec<&str> = all.iter().map(|a| a.account.as_str()).collect();
    assert_eq!(names, ["alice", "bob", "carol"]);
    assert_eq!(all[0].sites["app"], u(8, 80, 800));
    assert_eq!(all[0].sites["wiki"], u(3, 0, 300));
    assert_eq!(all[0].total(), u(11, 80, 1100));
    assert_eq!(all[1].total(), u(10, 100, 1000));
    assert!(all[2].sites.is_empty(), "no traffic, still one row");

    // Both ends of the range are included.
    let day = s
        .usage_report(Some("alice"), Some("2026-11-25"), Some("2026-11-25"))
        .unwrap();
    assert_eq!(day.len(), 1);
    assert_eq!(day[0].sites["app"], u(7, 70, 700));
    assert_eq!(day[0].total(), u(10, 70, 1000));
    let from = s
        .usage_report(Some("bob"), Some("2026-11-26"), None)
        .unwrap();
    assert_eq!(from[0].sites.keys().collect::<Vec<_>>(), ["wiki"]);
    let to = s
        .usage_report(Some("bob"), None, Some("2026-11-25"))
        .unwrap();
    assert_eq!(to[0].sites.keys().collect::<Vec<_>>(), ["app"]);
    let none = s
        .usage_report(Some("alice"), Some("2026-12-01"), None)
        .unwrap();
    assert!(none[0].sites.is_empty());
    assert!(
        s.usage_report(Some("nobody"), None, None)
            .unwrap()
            .is_empty()
    );
}

/// An own idle timeout is stored, read back and reset to the default; it bumps the
/// revision, so running portals learn of it.
pub(crate) fn own_idle_timeout(s: &dyn TestStore) {
    s.add_user(&user("alice")).unwrap();
    let (_, rev) = s.users_changed_since(0).unwrap();
    assert!(
        s.set_idle_timeout("alice", Some(Duration::from_secs(60)))
            .unwrap()
    );
    assert_eq!(
        s.user("alice").unwrap().unwrap().idle_timeout,
        Some(Duration::from_secs(60))
    );
    assert_eq!(
        s.users_changed_since(rev).unwrap().0,
        vec!["alice".to_string()]
    );
    assert!(s.set_idle_timeout("alice", Some(Duration::ZERO)).unwrap());
    assert_eq!(
        s.user("alice").unwrap().unwrap().idle_timeout,
        Some(Duration::ZERO)
    );
    assert!(s.set_idle_timeout("alice", None).unwrap());
    assert_eq!(s.user("alice").unwrap().unwrap().idle_timeout, None);
    assert!(!s.set_idle_timeout("nobody", None).unwrap());
}

/// Nodes are listed per account, and forgetting one touches only that account's row.
pub(crate) fn account_nodes_and_forgetting(s: &dyn TestStore) {
    s.add_user(&user("alice")).unwrap();
    s.add_user(&user("bob")).unwrap();
    s.note_node_account(&node(7), "alice", 100).unwrap();
    s.note_node_account(&node(7), "bob", 110).unwrap();
    s.note_node_account(&node(8), "alice", 150).unwrap();
    s.note_node_account(&node(8), "alice", 200).unwrap();
    s.note_node_account(&node(7), "bob", 250).unwrap();
    s.note_node_account(&node(7), "alice", 300).unwrap();
    s.note_node_account(&node(9), "bob", 310).unwrap();
    let ids: Vec<i64> = s
        .account_nodes("bob")
        .unwrap()
        .iter()
        .map(|n| n.node)
        .collect();
    let [bobs_only, seven] = ids[..] else {
        panic!("bob has nodes 9 and 7: {ids:?}")
    };
    let nodes = s.account_nodes("alice").unwrap();
    let eight = nodes[1].node;
    assert_eq!(
        nodes
            .iter()
            .map(|n| (n.node, n.first_seen, n.last_seen))
            .collect::<Vec<_>>(),
        vec![(seven, 100, 300), (eight, 150, 200)],
        "most recent first"
    );
    assert!(!s.forget_node("alice", bobs_only).unwrap(), "not alice's");
    assert!(!s.forget_node("alice", 999).unwrap(), "no such node");
    assert!(s.forget_node("alice", seven).unwrap());
    assert!(!s.forget_node("alice", seven).unwrap(), "already forgotten");
    assert_eq!(s.account_nodes("alice").unwrap().len(), 1);
    assert_eq!(s.account_nodes("bob").unwrap().len(), 2, "bob keeps node 7");
}

/// Secrets are created once and then stable.
pub(crate) fn secrets_are_stable(s: &dyn TestStore) {
    assert_eq!(s.secret("csrf").unwrap(), s.secret("csrf").unwrap());
    assert_ne!(s.secret("csrf").unwrap(), s.secret("other").unwrap());
}

/// Traffic a gate sends again under the same batch name (its answer was lost) is added once;
/// unnamed traffic (batch 0) and other names always add.
pub(crate) fn a_usage_batch_counts_once(s: &dyn TestStore) {
    s.upsert_user(&user("alice")).unwrap();
    let rows = [UsageRow {
        account: "alice".into(),
        site: "app".into(),
        usage: Usage {
            requests: 2,
            bytes_in: 10,
            bytes_out: 100,
        },
    }];
    assert!(s.add_usage_once("2026-11-26", &rows, 77).unwrap());
    assert!(
        !s.add_usage_once("2026-11-26", &rows, 77).unwrap(),
        "the same batch again"
    );
    assert!(
        s.add_usage_once("2026-11-26", &rows, u64::MAX).unwrap(),
        "another name"
    );
    assert!(!s.add_usage_once("2026-11-26", &rows, u64::MAX).unwrap());
    assert!(s.add_usage_once("2026-11-26", &rows, 0).unwrap());
    assert!(
        s.add_usage_once("2026-11-26", &rows, 0).unwrap(),
        "unnamed: always added"
    );
    let report = s.usage_report(Some("alice"), None, None).unwrap();
    assert_eq!(
        report[0].sites["app"].requests, 8,
        "77, MAX and two unnamed"
    );
}

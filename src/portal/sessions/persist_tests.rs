use std::collections::BTreeMap;

use super::super::Timeouts;
use super::*;
use crate::config::Level;
use crate::crypto::Identifier;
use crate::crypto::derived::SitePassword;
use crate::store::{NewUser, SqliteStore, Store};

fn user(name: &str) -> UserRecord {
    UserRecord {
        name: name.into(),
        password_hash: format!("hash-of-{name}"),
        level: Level(3),
        site_levels: BTreeMap::from([("wiki".into(), Level(5))]),
        idle_timeout: None,
        disabled: false,
        account: name.into(),
        temporary_until: None,
    }
}

const IDLE: Duration = Duration::from_secs(900);
const ABSOLUTE: Duration = Duration::from_secs(3600);

fn table_with_idle(idle: Duration) -> SessionTable {
    SessionTable::new(Timeouts {
        default_idle: idle,
        absolute: ABSOLUTE,
        code_ttl: Duration::from_secs(60),
    })
}

fn table() -> SessionTable {
    table_with_idle(IDLE)
}

fn site(s: &str) -> SiteId {
    SiteId(s.into())
}

fn signed_in(t: &SessionTable, name: &str) -> IdHash {
    let id = Identifier::new().hash();
    t.start(None, id, user(name), t.user_revision(), Default::default());
    id
}

/// Hand session `id` to `site`; the site cookie's hash.
fn bind(t: &SessionTable, id: &IdHash, s: &str) -> IdHash {
    let cookie = Identifier::new().hash();
    let code = t.mint_code(id, &site(s), cookie).unwrap();
    t.redeem(code.as_str(), cookie, &site(s)).unwrap();
    cookie
}

fn now_ms() -> i64 {
    Clock::now().wall_ms
}

fn users(list: &[UserRecord]) -> HashMap<String, Arc<UserRecord>> {
    list.iter()
        .map(|u| (u.name.clone(), Arc::new(u.clone())))
        .collect()
}

/// A stored session of `name`, created and last used this long ago.
fn stored(name: &str, created_ago: Duration, idle_for: Duration) -> StoredSession {
    StoredSession {
        id: Identifier::new().hash(),
        user: name.into(),
        password_tag: IdHash::of(user(name).password_hash.as_bytes()),
        created_ms: now_ms() - millis(created_ago),
        last_active_ms: now_ms() - millis(idle_for),
        roaming: false,
        bindings: vec![(Identifier::new().hash(), "app".into())],
    }
}

/// Each change becomes one write: a new session, its binding, uses (coalesced into one
/// touch), and its end; nothing changed, nothing written.
#[test]
fn changes_become_writes() {
    // An idle limit of 1.6 s: a use is written once the stored one lags by 100 ms.
    let t = table_with_idle(Duration::from_millis(1600));
    assert!(t.take_writes(100).is_empty());
    let s = signed_in(&t, "alice");
    let w = t.take_writes(100);
    assert_eq!((w.saved.len(), w.ended.len(), w.touched.len()), (1, 0, 0));
    assert_eq!(w.saved[0].user, "alice");
    assert!(w.saved[0].bindings.is_empty());
    assert!((w.saved[0].created_ms - now_ms()).abs() < 1_000);

    let cookie = bind(&t, &s, "wiki");
    let w = t.take_writes(100);
    assert_eq!(w.saved[0].bindings, vec![(cookie, "wiki".to_string())]);
    assert_eq!(
        w.saved[0].password_tag,
        IdHash::of(b"hash-of-alice"),
        "a hash of the password hash, to notice a change"
    );

    t.check(cookie, &site("wiki")).unwrap();
    t.user(&s).unwrap();
    assert!(
        t.take_writes(100).is_empty(),
        "uses right after a write are not written"
    );
    std::thread::sleep(Duration::from_millis(150));
    t.check(cookie, &site("wiki")).unwrap();
    t.check(cookie, &site("wiki")).unwrap();
    t.user(&s).unwrap();
    let w = t.take_writes(100);
    assert_eq!(w.touched.len(), 1, "uses coalesce: {w:?}");
    assert!((w.touched[0].1 - now_ms()).abs() < 1_000);
    assert!(w.saved.is_empty() && w.ended.is_empty());
    assert!(t.take_writes(100).is_empty());

    t.mark_roaming(&s);
    let w = t.take_writes(100);
    assert!(w.saved[0].roaming);

    std::thread::sleep(Duration::from_millis(150));
    t.check(cookie, &site("wiki")).unwrap();
    t.end(&s);
    let w = t.take_writes(100);
    assert_eq!(w.ended, vec![s], "an end outranks a touch");
    assert!(w.saved.is_empty() && w.touched.is_empty());
}

/// Signing in again as the same user moves the bindings: the old session is deleted and
/// the new one written with them, in one flush.
#[test]
fn replacing_session_takes_the_bindings() {
    let t = table();
    let old = signed_in(&t, "alice");
    let cookie = bind(&t, &old, "app");
    t.take_writes(100);
    let new = Identifier::new().hash();
    t.start(
        Some(&old),
        new,
        user("alice"),
        t.user_revision(),
        Default::default(),
    );
    let w = t.take_writes(100);
    assert_eq!(w.ended, vec![old]);
    assert_eq!(w.saved.len(), 1);
    assert_eq!(w.saved[0].id, new);
    assert_eq!(w.saved[0].bindings, vec![(cookie, "app".to_string())]);
}

/// A flush takes at most `max` sessions; the rest wait for the next one. A refused flush
/// is marked again and written as the sessions are then.
#[test]
fn batches_and_requeue() {
    let t = table();
    let ids: Vec<IdHash> = (0..3).map(|_| signed_in(&t, "alice")).collect();
    assert_eq!(t.take_writes(2).len(), 2);
    assert_eq!(t.take_writes(2).len(), 1);

    t.check(bind(&t, &ids[0], "app"), &site("app")).unwrap();
    let refused = t.take_writes(100);
    t.end(&ids[1]);
    t.requeue(&refused);
    let w = t.take_writes(100);
    assert_eq!(w.saved.len(), 1, "still written whole: {w:?}");
    assert_eq!(w.ended, vec![ids[1]]);
}

/// Through a real store: what one table wrote, another rebuilds. Bindings admit again with
/// the user's level, roaming and Basic sessions stay what they were, site passwords do not
/// come back (SPEC §5), and ended sessions stay ended.
#[test]
fn round_trip_through_the_store() {
    let store = SqliteStore::in_memory().unwrap();
    for name in ["alice", "bob"] {
        let u = user(name);
        store
            .add_user(&NewUser {
                name: u.name,
                password_hash: u.password_hash,
                level: u.level,
                site_levels: u.site_levels,
                idle_timeout: None,
                disabled: false,
            })
            .unwrap();
    }
    let before = table();
    let sp = SitePasswords::from([(site("legacy"), SitePassword::derive("pw", "legacy"))]);
    let s = Identifier::new().hash();
    before.start(None, s, user("alice"), before.user_revision(), sp);
    let wiki = bind(&before, &s, "wiki");
    let legacy = bind(&before, &s, "legacy");
    before.mark_roaming(&s);
    assert!(before.has_site_password(&s, &site("legacy")));
    let key = Identifier::new().hash();
    before.start_basic(key, user("bob"), before.user_revision(), &site("app"), None);
    let gone = signed_in(&before, "bob");
    let gone_cookie = bind(&before, &gone, "app");
    store.save_sessions(&before.take_writes(100)).unwrap();
    before.end(&gone);
    store.save_sessions(&before.take_writes(100)).unwrap();

    let after = table();
    let loaded = store.load_sessions().unwrap();
    let now_users = store
        .list_users()
        .unwrap()
        .into_iter()
        .map(|u| (u.name.clone(), Arc::new(u)))
        .collect();
    let done = after.restore(loaded, &now_users);
    // Alice's browser session only: an API client's (bob's Basic) is never stored.
    assert_eq!(
        done,
        Restored {
            sessions: 1,
            dropped: 0
        }
    );
    assert_eq!(after.check(wiki, &site("wiki")).unwrap().level, Level(5));
    let a = after.check(legacy, &site("legacy")).unwrap();
    assert!(a.site_password.is_none(), "site passwords are never stored");
    assert!(!after.has_site_password(&s, &site("legacy")));
    assert!(after.is_roaming(&s));
    assert!(after.check(gone_cookie, &site("app")).is_none());
    assert!(
        after.sessions_of("bob").is_empty(),
        "Basic sessions are not stored"
    );
    assert_eq!(
        after.sessions_of("alice")[0].sites,
        [site("wiki"), site("legacy")]
    );
    let w = after.take_writes(100);
    assert_eq!(
        (w.saved.len(), w.ended.len()),
        (0, 0),
        "restored sessions are not written again, only their uses: {w:?}"
    );
}

/// A restored session keeps its age: times come back from the wall clock, so idle and
/// absolute limits run on from where they were.
#[test]
fn restored_times_follow_the_wall_clock() {
    let t = table();
    let s = stored("alice", Duration::from_secs(600), Duration::from_secs(120));
    let (id, cookie) = (s.id, s.bindings[0].0);
    t.restore(vec![s], &users(&[user("alice")]));
    let view = &t.sessions_of("alice")[0];
    assert_eq!(view.id, id);
    let age = view.started.elapsed().as_secs_f64();
    let idle = view.last_active.elapsed().as_secs_f64();
    assert!((599.0..602.0).contains(&age), "{age}");
    assert!((119.0..122.0).contains(&idle), "{idle}");
    let remaining = t.check(cookie, &site("app")).unwrap().remaining.as_secs();
    assert!((2997..=3000).contains(&remaining), "{remaining}");
}

/// Not restored, and deleted at the next flush: past the idle limit (the user's own, or
/// the default), past the absolute limit, user removed, disabled, or with another
/// password. A user with no idle limit, or a longer one of their own, keeps theirs.
#[test]
fn restore_drops_what_is_over() {
    let t = table();
    let mut patient = user("carol");
    patient.idle_timeout = Some(Duration::from_secs(1800));
    let mut unlimited = user("dave");
    unlimited.idle_timeout = Some(Duration::ZERO);
    let mut strict = user("erin");
    strict.idle_timeout = Some(Duration::from_secs(60));
    let mut disabled = user("frank");
    disabled.disabled = true;
    let mut repassworded = user("gina");
    repassworded.password_hash = "another".into();
    let min = |m: u64| Duration::from_secs(60 * m);
    let over = vec![
        stored("alice", min(20), min(16)),
        stored("alice", min(61), min(1)),
        stored("erin", min(5), min(2)),
        stored("nobody", min(1), min(1)),
        stored("frank", min(1), min(1)),
        stored("gina", min(1), min(1)),
    ];
    let kept = vec![
        stored("alice", min(50), min(14)),
        stored("carol", min(50), min(25)),
        stored("dave", min(59), min(59)),
    ];
    let all_users = users(&[
        user("alice"),
        patient,
        unlimited,
        strict,
        disabled,
        repassworded,
    ]);
    let mut all = over.clone();
    all.extend(kept.clone());
    let done = t.restore(all, &all_users);
    assert_eq!(
        done,
        Restored {
            sessions: 3,
            dropped: 6
        }
    );
    for s in &kept {
        assert!(t.check(s.bindings[0].0, &site("app")).is_some(), "{s:?}");
    }
    for s in &over {
        assert!(t.check(s.bindings[0].0, &site("app")).is_none(), "{s:?}");
    }
    let mut ended = t.take_writes(100).ended;
    let mut expected: Vec<IdHash> = over.iter().map(|s| s.id).collect();
    ended.sort_by_key(|h| h.0);
    expected.sort_by_key(|h| h.0);
    assert_eq!(ended, expected);
}

/// The reaper knows restored sessions: one that reaches its idle limit after the restart
/// ends and its bindings are revoked.
#[test]
fn restored_sessions_are_reaped() {
    let t = table_with_idle(Duration::from_secs(1));
    let s = stored(
        "alice",
        Duration::from_millis(900),
        Duration::from_millis(900),
    );
    let cookie = s.bindings[0].0;
    t.restore(vec![s], &users(&[user("alice")]));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let told = seen.clone();
    t.subscribe(move |r| told.lock().unwrap().extend(r.iter().map(|(k, _)| *k)));
    std::thread::sleep(Duration::from_millis(300));
    t.reap();
    assert_eq!(*seen.lock().unwrap(), vec![cookie]);
    assert!(t.is_empty());
}

/// Wall and monotonic times convert both ways; a time ahead of the wall clock counts as now.
#[test]
fn clock_converts_both_ways() {
    let c = Clock::now();
    let earlier = c.mono - Duration::from_millis(1500);
    assert_eq!(c.wall(earlier), c.wall_ms - 1500);
    assert_eq!(c.instant(c.wall_ms - 1500), Some(earlier));
    assert_eq!(c.wall(c.mono + Duration::from_millis(5)), c.wall_ms + 5);
    assert_eq!(c.instant(c.wall_ms + 60_000), Some(c.mono));
}

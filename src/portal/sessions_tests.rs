use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::config::Level;

fn alice() -> UserRecord {
    UserRecord {
        name: "alice".into(),
        password_hash: "h1".into(),
        level: Level(3),
        site_levels: BTreeMap::from([("wiki".into(), Level(5))]),
        idle_timeout: None,
        disabled: false,
        account: "alice".into(),
        temporary_until: None,
    }
}

fn table() -> SessionTable {
    SessionTable::new(Timeouts {
        default_idle: Duration::from_secs(900),
        absolute: Duration::from_secs(3600),
        code_ttl: Duration::from_secs(60),
    })
}

fn site(s: &str) -> SiteId {
    SiteId(s.into())
}

fn signed_in(t: &SessionTable) -> IdHash {
    let id = Identifier::new().hash();
    t.start(None, id, alice(), t.user_revision(), Default::default());
    id
}

/// A code admits the browser it was minted for, once, with the site's level.
#[test]
fn code_admits_once() {
    let t = table();
    let s = signed_in(&t);
    let cookie = Identifier::new().hash();
    let code = t.mint_code(&s, &site("wiki"), cookie).unwrap();
    let a = t.redeem(code.as_str(), cookie, &site("wiki")).unwrap();
    assert_eq!((&*a.user, a.level), ("alice", Level(5)));
    assert!(
        t.redeem(code.as_str(), cookie, &site("wiki")).is_none(),
        "replay"
    );
    assert_eq!(t.check(cookie, &site("wiki")).unwrap().level, Level(5));
    assert!(
        t.check(cookie, &site("app")).is_none(),
        "a binding holds for its own site only"
    );
}

/// A code presented with another cookie or for another site admits nobody, and is burnt.
#[test]
fn code_bound_to_cookie_and_site() {
    let t = table();
    let s = signed_in(&t);
    let cookie = Identifier::new().hash();
    let other = Identifier::new().hash();
    let code = t.mint_code(&s, &site("app"), cookie).unwrap();
    assert!(t.redeem(code.as_str(), other, &site("app")).is_none());
    assert!(
        t.redeem(code.as_str(), cookie, &site("app")).is_none(),
        "burnt by the failed try"
    );
    let code = t.mint_code(&s, &site("app"), cookie).unwrap();
    assert!(t.redeem(code.as_str(), cookie, &site("wiki")).is_none());
    assert!(t.check(other, &site("app")).is_none());
}

/// Ending a session revokes every binding, tells subscribers and the log.
#[test]
fn sign_out_revokes_everywhere() {
    let t = table();
    let told = Arc::new(AtomicUsize::new(0));
    let seen = told.clone();
    t.subscribe(move |r| {
        seen.fetch_add(r.len(), Ordering::SeqCst);
    });
    let s = signed_in(&t);
    let (a, w) = (Identifier::new().hash(), Identifier::new().hash());
    let code = t.mint_code(&s, &site("app"), a).unwrap();
    t.redeem(code.as_str(), a, &site("app")).unwrap();
    let code = t.mint_code(&s, &site("wiki"), w).unwrap();
    t.redeem(code.as_str(), w, &site("wiki")).unwrap();
    let before = t.sync(&SyncReport::default()).cursor;
    t.end(&s);
    assert_eq!(told.load(Ordering::SeqCst), 2);
    assert!(t.check(a, &site("app")).is_none() && t.check(w, &site("wiki")).is_none());
    let reply = t.sync(&SyncReport {
        cursor: before,
        used: vec![],
        ..SyncReport::default()
    });
    assert_eq!(reply.revoked.len(), 2);
    assert!(!reply.reset);
    assert!(
        t.sync(&SyncReport {
            cursor: reply.cursor,
            used: vec![],
            ..SyncReport::default()
        })
        .revoked
        .is_empty()
    );
}

/// Disabling a user ends their sessions; a level change keeps them with the new level.
#[test]
fn user_changes() {
    let t = table();
    let s = signed_in(&t);
    let c = Identifier::new().hash();
    let code = t.mint_code(&s, &site("app"), c).unwrap();
    t.redeem(code.as_str(), c, &site("app")).unwrap();
    let mut changed = alice();
    changed.level = Level(1);
    t.user_changed("alice", Some(changed.clone()));
    assert_eq!(t.check(c, &site("app")).unwrap().level, Level(1));
    changed.disabled = true;
    t.user_changed("alice", Some(changed));
    assert!(t.check(c, &site("app")).is_none());
    assert!(t.is_empty());
}

/// A gate whose cursor is ahead of the log (portal restarted) is told to reset.
#[test]
fn cursor_ahead_resets() {
    let t = table();
    assert!(
        t.sync(&SyncReport {
            cursor: 99,
            used: vec![],
            ..SyncReport::default()
        })
        .reset
    );
    assert!(
        !t.sync(&SyncReport {
            cursor: 0,
            used: vec![],
            ..SyncReport::default()
        })
        .reset
    );
}

/// A gate that fell further behind than the log keeps (more changes since its cursor
/// than [`REVOCATION_LOG_CAP`]) is told to drop its whole table rather than miss one; one
/// just within the log gets every change it missed.
#[test]
fn cursor_fallen_off_the_log_resets() {
    let t = table();
    let at = |cursor| SyncReport {
        cursor,
        ..SyncReport::default()
    };
    assert_eq!(t.sync(&at(0)).cursor, 0);
    {
        let mut inner = t.lock();
        for i in 0..=REVOCATION_LOG_CAP as u64 {
            let mut h = [0u8; 32];
            h[..8].copy_from_slice(&i.to_le_bytes());
            inner.log_change(Change::Revoked(IdHash(h)));
        }
    }
    let behind = t.sync(&at(0));
    assert!(behind.reset, "the first change it missed is gone");
    assert!(behind.revoked.is_empty());
    let within = t.sync(&at(1));
    assert!(!within.reset);
    assert_eq!(within.revoked.len(), REVOCATION_LOG_CAP);
    assert_eq!(within.cursor, REVOCATION_LOG_CAP as u64 + 1);
}

/// Level 0 travels to the gate as is (the gate answers 403); a disabled user admits nobody.
#[test]
fn level_zero_and_disabled() {
    let t = table();
    let id = Identifier::new().hash();
    let mut u = alice();
    u.level = Level(0);
    u.site_levels.clear();
    t.start(None, id, u.clone(), t.user_revision(), Default::default());
    let c = Identifier::new().hash();
    let code = t.mint_code(&id, &site("app"), c).unwrap();
    assert_eq!(
        t.redeem(code.as_str(), c, &site("app")).unwrap().level,
        Level(0)
    );
    u.disabled = true;
    t.start(None, id, u, t.user_revision(), Default::default());
    assert!(t.user(&id).is_none());
    assert!(
        t.mint_code(&id, &site("app"), Identifier::new().hash())
            .is_none()
    );
}

fn with_sp(site_id: &str) -> SitePasswords {
    SitePasswords::from([(site(site_id), SitePassword::derive("pw", site_id))])
}

/// Admissions carry the session's SP for the asking site only.
#[test]
fn admissions_carry_their_sites_password() {
    let t = table();
    let id = Identifier::new().hash();
    t.start(None, id, alice(), t.user_revision(), with_sp("app"));
    assert!(t.has_site_password(&id, &site("app")));
    assert!(!t.has_site_password(&id, &site("wiki")));
    let cookie = IdHash([9; 32]);
    let code = t.mint_code(&id, &site("app"), cookie).unwrap();
    let a = t.redeem(code.as_str(), cookie, &site("app")).unwrap();
    assert_eq!(a.site_password, Some(SitePassword::derive("pw", "app")));
    let other = IdHash([8; 32]);
    let code = t.mint_code(&id, &site("wiki"), other).unwrap();
    let a = t.redeem(code.as_str(), other, &site("wiki")).unwrap();
    assert_eq!(a.site_password, None);
}

/// The same user signing in again keeps the sites already handed to, under the new id,
/// with the new SPs; another user's sign-in ends the old session everywhere.
#[test]
fn signing_in_again_keeps_the_same_users_sites() {
    let t = table();
    let revoked = Arc::new(Mutex::new(Vec::new()));
    let seen = revoked.clone();
    t.subscribe(move |r| seen.lock().unwrap().extend(r.iter().map(|(k, _)| *k)));
    let old = signed_in(&t);
    let cookie = IdHash([7; 32]);
    let code = t.mint_code(&old, &site("app"), cookie).unwrap();
    t.redeem(code.as_str(), cookie, &site("app")).unwrap();

    let new = Identifier::new().hash();
    t.start(Some(&old), new, alice(), t.user_revision(), with_sp("wiki"));
    assert!(revoked.lock().unwrap().is_empty(), "nothing revoked");
    assert!(t.user(&old).is_none(), "the old id is gone");
    assert!(
        t.check(cookie, &site("app")).is_some(),
        "app still admitted"
    );
    assert!(t.has_site_password(&new, &site("wiki")));
    t.end(&new);
    assert!(
        t.check(cookie, &site("app")).is_none(),
        "bound to the new session"
    );

    let old = signed_in(&t);
    let code = t.mint_code(&old, &site("app"), cookie).unwrap();
    t.redeem(code.as_str(), cookie, &site("app")).unwrap();
    let mut bob = alice();
    bob.name = "bob".into();
    t.start(
        Some(&old),
        Identifier::new().hash(),
        bob,
        t.user_revision(),
        SitePasswords::new(),
    );
    assert!(
        t.check(cookie, &site("app")).is_none(),
        "another user: ended"
    );
    assert!(revoked.lock().unwrap().contains(&cookie));
}

/// The reaper ends idle sessions (revoking their bindings) and spares sessions used since
/// they were scheduled, ending them once they do go idle.
#[test]
fn reaper_ends_idle_sessions_and_spares_used_ones() {
    let t = SessionTable::new(Timeouts {
        default_idle: Duration::from_millis(600),
        absolute: Duration::from_secs(3600),
        code_ttl: Duration::from_secs(60),
    });
    let revoked = Arc::new(Mutex::new(Vec::new()));
    let seen = revoked.clone();
    t.subscribe(move |r| seen.lock().unwrap().extend(r.iter().map(|(k, _)| *k)));
    let idle = signed_in(&t);
    let busy = signed_in(&t);
    let cookie = Identifier::new().hash();
    let code = t.mint_code(&idle, &site("app"), cookie).unwrap();
    t.redeem(code.as_str(), cookie, &site("app")).unwrap();

    std::thread::sleep(Duration::from_millis(300));
    assert!(
        t.user(&busy).is_some(),
        "used halfway through its idle time"
    );
    std::thread::sleep(Duration::from_millis(400));
    t.reap();
    assert_eq!(t.len(), 1, "the idle session is gone, the busy one stays");
    assert_eq!(
        *revoked.lock().unwrap(),
        vec![cookie],
        "its binding was revoked"
    );
    assert!(t.check(cookie, &site("app")).is_none());

    std::thread::sleep(Duration::from_millis(700));
    t.reap();
    assert!(t.is_empty(), "rescheduled, then reaped once idle");
}

/// A roaming session stays roaming when its user signs in again (or changes their
/// password), so sign-out still clears the browser; another user's session starts plain.
#[test]
fn roaming_carries_over_to_the_same_user_only() {
    let t = table();
    let old = signed_in(&t);
    assert!(!t.is_roaming(&old));
    t.mark_roaming(&old);
    assert!(t.is_roaming(&old));
    let new = Identifier::new().hash();
    t.start(
        Some(&old),
        new,
        alice(),
        t.user_revision(),
        SitePasswords::new(),
    );
    assert!(t.is_roaming(&new), "same user: still roaming");

    let mut bob = alice();
    bob.name = "bob".into();
    let other = Identifier::new().hash();
    t.start(
        Some(&new),
        other,
        bob,
        t.user_revision(),
        SitePasswords::new(),
    );
    assert!(!t.is_roaming(&other), "another user: a fresh start");
    assert!(!t.is_roaming(&new), "ended");
}

/// A change of the idle timeout alone keeps the gates' entries: the next sync tells them
/// the new value for each binding, revokes nothing, and the portal's own limit follows at
/// once. The same record again changes nothing.
#[test]
fn idle_timeout_change_reaches_gates_without_revoking() {
    let t = table();
    let s = signed_in(&t);
    let (a, w) = (Identifier::new().hash(), Identifier::new().hash());
    let code = t.mint_code(&s, &site("app"), a).unwrap();
    t.redeem(code.as_str(), a, &site("app")).unwrap();
    let code = t.mint_code(&s, &site("wiki"), w).unwrap();
    t.redeem(code.as_str(), w, &site("wiki")).unwrap();
    let cursor = t.sync(&SyncReport::default()).cursor;

    let mut changed = alice();
    changed.idle_timeout = Some(Duration::from_secs(60));
    t.user_changed("alice", Some(changed.clone()));
    let reply = t.sync(&SyncReport {
        cursor,
        used: vec![],
        ..SyncReport::default()
    });
    assert!(reply.revoked.is_empty(), "{reply:?}");
    let mut updates = reply.idle_timeouts.clone();
    updates.sort();
    let mut expected = vec![(a, Duration::from_secs(60)), (w, Duration::from_secs(60))];
    expected.sort();
    assert_eq!(updates, expected);
    assert_eq!(
        t.check(a, &site("app")).unwrap().idle_timeout,
        Duration::from_secs(60)
    );

    t.user_changed("alice", Some(changed.clone()));
    let again = t.sync(&SyncReport {
        cursor: reply.cursor,
        used: vec![],
        ..SyncReport::default()
    });
    assert!(again.revoked.is_empty() && again.idle_timeouts.is_empty());

    // Back to the default: the default's value is sent.
    changed.idle_timeout = None;
    t.user_changed("alice", Some(changed));
    let back = t.sync(&SyncReport {
        cursor: again.cursor,
        used: vec![],
        ..SyncReport::default()
    });
    assert!(back.idle_timeouts.contains(&(a, Duration::from_secs(900))));
}

/// The account page's view of a user's sessions, and ending one of them only.
#[test]
fn sessions_of_a_user() {
    let t = table();
    let s1 = signed_in(&t);
    std::thread::sleep(Duration::from_millis(2)); // listed oldest first
    let s2 = signed_in(&t);
    let c = Identifier::new().hash();
    let code = t.mint_code(&s2, &site("wiki"), c).unwrap();
    t.redeem(code.as_str(), c, &site("wiki")).unwrap();
    let list = t.sessions_of("alice");
    assert_eq!(list.iter().map(|v| v.id).collect::<Vec<_>>(), vec![s1, s2]);
    assert_eq!(list[1].sites, vec![site("wiki")]);
    assert!(!list[0].basic && list[0].sites.is_empty());
    assert!(t.sessions_of("bob").is_empty());
    assert!(!t.end_session_of("bob", &s2), "not bob's");
    assert!(t.end_session_of("alice", &s2));
    assert!(t.check(c, &site("wiki")).is_none());
    assert_eq!(t.sessions_of("alice").len(), 1);
}

/// Reported traffic goes to the entry's account and site, summed per pair; an entry of a
/// session ended meanwhile (sign-out before the gate's sync) still counts; an entry nobody
/// knows is left out and counted as such.
#[test]
fn usage_is_attributed() {
    use crate::central::Usage;
    let t = table();
    let s = signed_in(&t);
    let (a, w) = (Identifier::new().hash(), Identifier::new().hash());
    let code = t.mint_code(&s, &site("app"), a).unwrap();
    t.redeem(code.as_str(), a, &site("app")).unwrap();
    let code = t.mint_code(&s, &site("wiki"), w).unwrap();
    t.redeem(code.as_str(), w, &site("wiki")).unwrap();
    let u = |n| Usage {
        requests: n,
        bytes_in: n * 10,
        bytes_out: n * 100,
    };
    let unknown = Identifier::new().hash();
    let (rows, missing) = t.attribute(&[(a, u(1)), (w, u(2)), (unknown, u(4))]);
    let pairs: Vec<(&str, &str, Usage)> = rows
        .iter()
        .map(|r| (r.account.as_str(), r.site.as_str(), r.usage))
        .collect();
    assert_eq!(pairs, [("alice", "app", u(1)), ("alice", "wiki", u(2))]);
    assert_eq!(missing, 1);
    t.end(&s);
    let (rows, missing) = t.attribute(&[(a, u(3))]);
    assert_eq!(
        (rows.len(), missing),
        (1, 0),
        "signed out since: still alice's"
    );
    assert_eq!((rows[0].site.as_str(), rows[0].usage), ("app", u(3)));
}

/// An API client's traffic (its session known by its Basic key) goes to its account and
/// the one site it was verified for.
#[test]
fn basic_usage_is_attributed() {
    use crate::central::Usage;
    let t = table();
    let key = Identifier::new().hash();
    t.start_basic(key, alice(), t.user_revision(), &site("wiki"), None);
    let u = Usage {
        requests: 2,
        bytes_in: 0,
        bytes_out: 7,
    };
    let (rows, missing) = t.attribute(&[(key, u)]);
    assert_eq!(missing, 0);
    let got: Vec<(&str, &str, Usage)> = rows
        .iter()
        .map(|r| (r.account.as_str(), r.site.as_str(), r.usage))
        .collect();
    assert_eq!(got, [("alice", "wiki", u)]);
}

/// A sign-in whose user record was read before a change of that user (a new password,
/// disabled, demoted) starts no session, browser or API client: the change ended only the
/// sessions that existed when it landed. Another user's change does not get in the way.
#[test]
fn a_record_read_before_its_user_changed_starts_nothing() {
    let t = table();
    let read = t.user_revision();
    let mut changed = alice();
    changed.password_hash = "h2".into();
    t.user_changed("alice", Some(changed.clone()));
    let id = Identifier::new().hash();
    assert!(!t.start(None, id, alice(), read, Default::default()));
    assert!(t.user(&id).is_none(), "no session");
    let key = Identifier::new().hash();
    assert!(
        t.start_basic(key, alice(), read, &site("wiki"), None)
            .is_none()
    );
    assert!(t.check(key, &site("wiki")).is_none(), "no API session");

    // Read after the change: starts.
    let read = t.user_revision();
    assert!(t.start(None, id, changed.clone(), read, Default::default()));
    assert!(
        t.start_basic(key, changed, read, &site("wiki"), None)
            .is_some()
    );

    // Bob's change does not refuse Alice.
    let read = t.user_revision();
    let mut bob = alice();
    bob.name = "bob".into();
    t.user_changed("bob", Some(bob));
    let other = Identifier::new().hash();
    assert!(t.start(None, other, alice(), read, Default::default()));
}

/// When the table has forgotten changes (too many users changed), a record read before
/// then is refused: it cannot tell whether its user was among them.
#[test]
fn forgotten_changes_refuse_older_records() {
    let t = table();
    let read = t.user_revision();
    for i in 0..=USER_CHANGES_KEPT {
        t.lock().note_user_change(&format!("user{i}"));
    }
    let id = Identifier::new().hash();
    assert!(!t.start(None, id, alice(), read, Default::default()));
    let read = t.user_revision();
    assert!(t.start(None, id, alice(), read, Default::default()));
}

/// A site cookie already bound to a session cannot be bound again by a code minted for
/// its hash in another session (login CSRF: the victim's browser moved into the minter's
/// session); the victim stays who they were.
#[test]
fn a_bound_cookie_is_not_bound_again() {
    let t = table();
    let victim = signed_in(&t);
    let cookie = Identifier::new().hash();
    let code = t.mint_code(&victim, &site("app"), cookie).unwrap();
    t.redeem(code.as_str(), cookie, &site("app")).unwrap();

    let mallory = Identifier::new().hash();
    let mut m = alice();
    m.name = "mallory".into();
    assert!(t.start(None, mallory, m, t.user_revision(), Default::default()));
    let code = t.mint_code(&mallory, &site("app"), cookie).unwrap();
    assert!(t.redeem(code.as_str(), cookie, &site("app")).is_none());
    assert_eq!(&*t.check(cookie, &site("app")).unwrap().user, "alice");
}

/// A session holds at most CODES_PER_SESSION unredeemed codes: minting more drops the
/// oldest, which then admits nobody; the newest still work.
#[test]
fn codes_per_session_are_capped() {
    let t = table();
    let s = signed_in(&t);
    let minted: Vec<_> = (0..1000)
        .map(|_| {
            let cookie = Identifier::new().hash();
            (t.mint_code(&s, &site("app"), cookie).unwrap(), cookie)
        })
        .collect();
    assert_eq!(t.lock().codes.len(), CODES_PER_SESSION);
    let (oldest, cookie) = &minted[0];
    assert!(t.redeem(oldest.as_str(), *cookie, &site("app")).is_none());
    let (newest, cookie) = &minted[999];
    assert!(t.redeem(newest.as_str(), *cookie, &site("app")).is_some());
}

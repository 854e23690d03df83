//! The shared table against a real PostgreSQL server (see `store::postgres::testing`): two
//! `SharedSessions` on one database, each with its own connection pool, stand for two
//! portal processes.

use std::collections::BTreeMap;

use super::*;
use crate::config::Level;
use crate::store::postgres::testing::fresh_database;
use crate::store::{NewUser, Store};

const IDLE: Duration = Duration::from_millis(1500);

fn timeouts() -> Timeouts {
    Timeouts {
        default_idle: IDLE,
        absolute: Duration::from_secs(3600),
        code_ttl: Duration::from_secs(60),
    }
}

/// Two portals on one new database, with user alice in it.
fn two_portals() -> (Arc<SharedSessions>, Arc<SharedSessions>, Arc<PgStore>) {
    let url = fresh_database();
    let a = Arc::new(PgStore::open(&url).unwrap());
    let b = Arc::new(PgStore::open(&url).unwrap());
    a.add_user(&NewUser {
        name: "alice".into(),
        password_hash: "h1".into(),
        level: Level(3),
        site_levels: BTreeMap::from([("wiki".into(), Level(5))]),
        idle_timeout: None,
        disabled: false,
    })
    .unwrap();
    (
        SharedSessions::new(a.clone(), timeouts()),
        SharedSessions::new(b, timeouts()),
        a,
    )
}

fn alice(store: &PgStore) -> UserRecord {
    store.user("alice").unwrap().unwrap()
}

fn site(s: &str) -> SiteId {
    SiteId(s.into())
}

/// A session started on `on`, handed to `site` with a fresh cookie; returns (session, cookie).
fn handed(on: &SharedSessions, store: &PgStore, site_id: &str) -> (IdHash, IdHash) {
    let id = Identifier::new().hash();
    on.start(None, id, alice(store), SitePasswords::new())
        .unwrap();
    let cookie = Identifier::new().hash();
    let code = on.mint_code(&id, &site(site_id), cookie).unwrap().unwrap();
    on.redeem(code.as_str(), cookie, &site(site_id))
        .unwrap()
        .unwrap();
    (id, cookie)
}

/// A code minted by one portal is redeemed by the other, once: of two redemptions racing
/// through both, exactly one admits.
#[test]
fn a_code_is_single_use_across_portals() {
    let (a, b, store) = two_portals();
    let id = Identifier::new().hash();
    a.start(None, id, alice(&store), SitePasswords::new())
        .unwrap();
    for round in 0..20 {
        let cookie = Identifier::new().hash();
        let code = a.mint_code(&id, &site("wiki"), cookie).unwrap().unwrap();
        let admitted: Vec<bool> = std::thread::scope(|s| {
            let racers: Vec<_> = [&a, &b, &a, &b]
                .into_iter()
                .map(|p| {
                    let code = code.as_str().to_string();
                    s.spawn(move || p.redeem(&code, cookie, &site("wiki")).unwrap().is_some())
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        assert_eq!(
            admitted.iter().filter(|ok| **ok).count(),
            1,
            "round {round}: {admitted:?}"
        );
    }
    // And the binding made by whichever won answers on both.
    let cookie = Identifier::new().hash();
    let code = a.mint_code(&id, &site("wiki"), cookie).unwrap().unwrap();
    let admitted = b
        .redeem(code.as_str(), cookie, &site("wiki"))
        .unwrap()
        .unwrap();
    assert_eq!((&*admitted.user, admitted.level), ("alice", Level(5)));
    assert_eq!(
        a.check(cookie, &site("wiki")).unwrap().unwrap().level,
        Level(5)
    );
    assert!(
        a.check(cookie, &site("app")).unwrap().is_none(),
        "its own site only"
    );
}

/// A session keeps at most CODES_PER_SESSION unredeemed codes in the database: the oldest
/// go, the newest still admit.
#[test]
fn codes_per_session_are_capped_in_the_database() {
    let (a, b, store) = two_portals();
    let id = Identifier::new().hash();
    a.start(None, id, alice(&store), SitePasswords::new())
        .unwrap();
    let minted: Vec<_> = (0..3 * super::super::CODES_PER_SESSION)
        .map(|_| {
            let cookie = Identifier::new().hash();
            // Apart in time: the cap keeps the codes that expire last.
            std::thread::sleep(std::time::Duration::from_millis(2));
            (
                a.mint_code(&id, &site("wiki"), cookie).unwrap().unwrap(),
                cookie,
            )
        })
        .collect();
    let kept: i64 = store
        .with(|c| {
            Ok(c.query_one("SELECT count(*) FROM one_time_codes", &[])?
                .try_get(0)?)
        })
        .unwrap();
    assert_eq!(kept, super::super::CODES_PER_SESSION as i64);
    let (oldest, cookie) = &minted[0];
    assert!(
        b.redeem(oldest.as_str(), *cookie, &site("wiki"))
            .unwrap()
            .is_none()
    );
    let (newest, cookie) = minted.last().unwrap();
    assert!(
        b.redeem(newest.as_str(), *cookie, &site("wiki"))
            .unwrap()
            .is_some()
    );
}

/// A sign-out through the other portal: the session is gone for both, and an edge syncing
/// with either learns the revocation, numbered after the answers given before it.
#[test]
fn sign_out_through_either_portal_reaches_every_edge() {
    let (a, b, store) = two_portals();
    let (id, cookie) = handed(&a, &store, "app");
    let before = b.check(cookie, &site("app")).unwrap().unwrap();
    let cursor = a.sync(&SyncReport::default()).unwrap().cursor;

    b.end(&id).unwrap();
    assert!(a.user(&id).unwrap().is_none());
    assert!(a.check(cookie, &site("app")).unwrap().is_none());
    for portal in [&a, &b] {
        let reply = portal
            .sync(&SyncReport {
                cursor,
                ..SyncReport::default()
            })
            .unwrap();
        assert!(!reply.reset);
        let (key, seq) = reply.revoked[0];
        assert_eq!(key, cookie);
        assert!(seq > before.seq, "the revocation is newer than the answer");
    }
    assert_eq!(
        a.sync(&SyncReport::default()).unwrap().epoch,
        b.sync(&SyncReport::default()).unwrap().epoch,
        "one deployment, one epoch"
    );
}

/// Idle expiry is the database's: activity reported to one portal keeps the session alive
/// for the other's reaper; without it, either reaper ends it and logs the revocation.
#[test]
fn idle_expiry_shared_by_both_reapers() {
    let (a, b, store) = two_portals();
    let (_, kept) = handed(&a, &store, "app");
    let (_, idle) = handed(&a, &store, "app");
    let cursor = a.sync(&SyncReport::default()).unwrap().cursor;
    for _ in 0..3 {
        std::thread::sleep(IDLE / 2);
        b.sync(&SyncReport {
            cursor,
            used: vec![kept],
            ..SyncReport::default()
        })
        .unwrap();
    }
    a.reap().unwrap();
    b.reap().unwrap();
    assert!(
        b.check(kept, &site("app")).unwrap().is_some(),
        "kept alive by use"
    );
    assert!(
        b.check(idle, &site("app")).unwrap().is_none(),
        "idle past its limit"
    );
    let reply = a
        .sync(&SyncReport {
            cursor,
            ..SyncReport::default()
        })
        .unwrap();
    let revoked: Vec<IdHash> = reply.revoked.iter().map(|(k, _)| *k).collect();
    assert_eq!(revoked, vec![idle], "revoked once, though both reaped");
}

/// A changed password (through either portal or the CLI) ends the user's sessions at
/// once for every portal, before any poll notices.
#[test]
fn a_new_password_ends_sessions_everywhere() {
    let (a, b, store) = two_portals();
    let (id, cookie) = handed(&a, &store, "app");
    store.set_password("alice", "h2").unwrap();
    assert!(b.user(&id).unwrap().is_none());
    assert!(b.check(cookie, &site("app")).unwrap().is_none());
    b.user_changed("alice", store.user("alice").unwrap())
        .unwrap();
    let reply = a.sync(&SyncReport::default()).unwrap();
    assert!(
        reply.cursor > 0,
        "the ended session's binding is in the log"
    );
}

/// Usage reported to either portal finds its account, also just after the session ended.
#[test]
fn usage_finds_its_account_through_either_portal() {
    let (a, b, store) = two_portals();
    let (id, cookie) = handed(&a, &store, "app");
    let used = Usage {
        requests: 3,
        bytes_in: 10,
        bytes_out: 20,
    };
    let (rows, unknown) = b.attribute(&[(cookie, used)]).unwrap();
    assert_eq!((rows.len(), unknown), (1, 0));
    assert_eq!(
        (rows[0].account.as_str(), rows[0].site.as_str()),
        ("alice", "app")
    );
    a.end(&id).unwrap();
    let (rows, unknown) = b
        .attribute(&[(cookie, used), (Identifier::new().hash(), used)])
        .unwrap();
    assert_eq!((rows.len(), unknown), (1, 1), "retired binding still known");
    assert_eq!(rows[0].usage, used);
}

/// A signed API call's nonce is good once across the deployment: replayed to the other
/// portal, it is refused.
#[test]
fn an_api_nonce_is_claimed_once_across_portals() {
    let (a, b, _) = two_portals();
    assert!(a.claim_nonce("n-1").unwrap());
    assert!(
        !b.claim_nonce("n-1").unwrap(),
        "replayed to the other portal"
    );
    assert!(!a.claim_nonce("n-1").unwrap());
    assert!(b.claim_nonce("n-2").unwrap());
}

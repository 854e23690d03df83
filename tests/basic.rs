//! SPEC §4 `allow_basic`: API clients with `Authorization: Basic`. The first request is
//! verified by the portal (argon2id), later ones against the gate's table; a wrong password
//! is 401 and never cached as good; the credential never reaches the backend.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::*;
use http::Method;

async fn setup() -> (Backend, Gateway) {
    let backend = Backend::start().await;
    let gw = Gateway::builder()
        .user("alice", "alice-pw", 3)
        .site_with("api", &backend.url(), "allow_basic = true")
        .site("app", &backend.url())
        .start()
        .await;
    (backend, gw)
}

async fn get_with(client: &Client, gw: &Gateway, host: &str, auth: &str) -> Resp {
    client
        .request(
            Method::GET,
            &gw.url(host, "/v1/things"),
            &[("authorization", auth)],
            Default::default(),
        )
        .await
}

/// The first request costs one verification; later ones are served from the table.
#[tokio::test]
async fn verified_once_then_from_table() {
    let (backend, gw) = setup().await;
    let client = gw.client();
    for _ in 0..5 {
        let res = get_with(&client, &gw, "api.localhost", &basic("alice", "alice-pw")).await;
        assert_eq!(res.status, 200);
    }
    assert_eq!(
        gw.metric("gatehouse_signins_total{result=\"basic_success\"}")
            .await,
        Some(1.0)
    );
    let seen = backend.last();
    assert_eq!(seen.headers["x-auth-user"], "alice");
    assert!(
        seen.headers.get("authorization").is_none(),
        "the client's credential is not forwarded"
    );
    assert_eq!(backend.count(), 5);
}

/// A wrong password is 401 every time, also right after the right one was cached.
#[tokio::test]
async fn wrong_password_never_cached() {
    let (backend, gw) = setup().await;
    let client = gw.client();
    let res = get_with(&client, &gw, "api.localhost", &basic("alice", "nope")).await;
    assert_eq!(res.status, 401);
    assert!(res.header("www-authenticate").unwrap().starts_with("Basic"));
    assert_eq!(
        get_with(&client, &gw, "api.localhost", &basic("alice", "alice-pw"))
            .await
            .status,
        200
    );
    for _ in 0..2 {
        assert_eq!(
            get_with(&client, &gw, "api.localhost", &basic("alice", "nope"))
                .await
                .status,
            401
        );
    }
    assert_eq!(
        get_with(&client, &gw, "api.localhost", &basic("mallory", "alice-pw"))
            .await
            .status,
        401
    );
    assert_eq!(
        gw.metric("gatehouse_signins_total{result=\"basic_failure\"}")
            .await,
        Some(4.0),
        "each failure verified anew"
    );
    assert_eq!(backend.count(), 1);
}

/// Malformed Basic headers are refused, not forwarded.
#[tokio::test]
async fn malformed_refused() {
    let (backend, gw) = setup().await;
    let client = gw.client();
    for bad in [
        "Basic !!!",
        "Basic",
        &format!("Basic {}", STANDARD.encode("nocolon")),
        &format!(
            "Basic {}",
            STANDARD.encode(format!("u:{}", "x".repeat(5000)))
        ),
    ] {
        assert_eq!(
            get_with(&client, &gw, "api.localhost", bad).await.status,
            401,
            "{bad:.40}"
        );
    }
    assert_eq!(backend.count(), 0);
}

/// A site without allow_basic ignores Basic credentials: the browser flow applies.
#[tokio::test]
async fn basic_needs_allow_basic() {
    let (backend, gw) = setup().await;
    let client = gw.client();
    assert_eq!(
        get_with(&client, &gw, "app.localhost", &basic("alice", "alice-pw"))
            .await
            .status,
        302
    );
    assert_eq!(backend.count(), 0);
}

/// Disabling the user (from another process, through the store) ends API access too.
#[tokio::test]
async fn disabled_user_loses_access() {
    let (_backend, gw) = setup().await;
    let client = gw.client();
    assert_eq!(
        get_with(&client, &gw, "api.localhost", &basic("alice", "alice-pw"))
            .await
            .status,
        200
    );
    use gatehouse::store::Store;
    let store = gatehouse::store::SqliteStore::open(&gw.store_path()).unwrap();
    assert!(store.set_disabled("alice", true).unwrap());
    let mut status = 200;
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        status = get_with(&client, &gw, "api.localhost", &basic("alice", "alice-pw"))
            .await
            .status;
        if status == 401 {
            break;
        }
    }
    assert_eq!(status, 401, "refused within a few seconds of the change");
}

/// Parallel first calls of one API client (the same credential, nothing in the table yet)
/// all succeed: the portal goes on with the session the first verification started instead
/// of each verification ending the one before, whose key the gate would then refuse the
/// earlier answers for. Four at once (more would meet the sign-in throttle, which counts an
/// attempt as failed until it succeeds); repeated over fresh gateways, as calls race
/// differently each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_first_calls_all_succeed() {
    for _ in 0..5 {
        let (backend, gw) = setup().await;
        let gw = std::sync::Arc::new(gw);
        let calls: Vec<_> = (0..4)
            .map(|_| {
                let gw = gw.clone();
                tokio::spawn(async move {
                    let client = gw.client();
                    get_with(&client, &gw, "api.localhost", &basic("alice", "alice-pw"))
                        .await
                        .status
                })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap(), 200);
        }
        assert_eq!(backend.count(), 4);
    }
}

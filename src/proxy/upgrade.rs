//! WebSocket upgrades: honoured only for a bodiless `GET` with `Upgrade: websocket` on
//! HTTP/1.1, after every check a plain request passes, and only once the backend itself
//! answered `101` switching to WebSocket. Any other `Upgrade` (`h2c`, say) is dropped as the
//! hop-by-hop header it is, and the request goes on as plain HTTP.

use std::time::Duration;

use http::header::{CONNECTION, CONTENT_LENGTH, HeaderMap, TRANSFER_ENCODING, UPGRADE};
use http::{Method, Request, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;

use crate::gate::Admitted;

/// Is this an HTTP/1.1 WebSocket upgrade request (RFC 6455 §4.1: a GET, so no body)?
pub fn is_websocket_upgrade<B>(req: &Request<B>) -> bool {
    // Cheapest tests first: almost no request asks for an upgrade.
    if req.version() != http::Version::HTTP_11 || req.method() != Method::GET {
        return false;
    }
    let h = req.headers();
    let bodiless = !h.contains_key(TRANSFER_ENCODING)
        && h.get(CONTENT_LENGTH).is_none_or(|v| v.as_bytes() == b"0");
    bodiless
        && upgrades_to_websocket(h)
        && req
            .headers()
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

/// Does the backend's `101` switch to WebSocket (and nothing else)?
pub fn is_websocket<B>(res: &Response<B>) -> bool {
    upgrades_to_websocket(res.headers())
}

fn upgrades_to_websocket(headers: &HeaderMap) -> bool {
    let mut upgrades = headers.get_all(UPGRADE).iter();
    let first = upgrades.next();
    upgrades.next().is_none()
        && first
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
}

/// How often an open tunnel asks whether its session still admits it: a sign-out (or
/// a revocation learnt at a sync) reaches a tunnel at most this much later than a request.
/// Each check is one lookup under a shard's shared lock, nothing written.
const ADMISSION_CHECK: Duration = Duration::from_secs(1);

/// How long closing a revoked tunnel may wait for the two sides to take their close.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Copy bytes both ways until either side closes, or the session that opened the tunnel
/// ends (sign-out, revocation, idle or absolute end): then close both sides.
pub async fn tunnel(client: OnUpgrade, backend: OnUpgrade, admitted: Box<Admitted>) {
    let (client, backend) = match tokio::try_join!(client, backend) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "websocket upgrade did not complete");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut backend = TokioIo::new(backend);
    tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut client, &mut backend) => {
            if let Err(e) = copied {
                tracing::debug!(error = %e, "websocket tunnel closed with an error");
            }
            return;
        }
        () = session_ends(&admitted) => {}
    }
    tracing::debug!(user = %admitted.user(), "websocket tunnel closed: its session ended");
    // A clean close where the peers take it (TLS close_notify, then FIN); dropping them
    // closes the connections anyway.
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        let _ = tokio::join!(client.shutdown(), backend.shutdown());
    })
    .await;
}

/// Returns once the session no longer admits the tunnel.
async fn session_ends(admitted: &Admitted) {
    let mut every = tokio::time::interval(ADMISSION_CHECK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while admitted.holds() {
        every.tick().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method(method).uri("/ws");
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap()
    }

    const WS: [(&str, &str); 2] = [
        ("upgrade", "websocket"),
        ("connection", "keep-alive, Upgrade"),
    ];

    /// A bodiless GET asking for websocket is an upgrade.
    #[test]
    fn websocket_get_is_upgrade() {
        assert!(is_websocket_upgrade(&request("GET", &WS)));
        let mut with_zero = WS.to_vec();
        with_zero.push(("content-length", "0"));
        assert!(is_websocket_upgrade(&request("GET", &with_zero)));
    }

    /// Other methods, bodies, protocols or a missing Connection token are not.
    #[test]
    fn other_shapes_are_not_upgrades() {
        assert!(!is_websocket_upgrade(&request("POST", &WS)));
        for extra in [("content-length", "5"), ("transfer-encoding", "chunked")] {
            let mut h = WS.to_vec();
            h.push(extra);
            assert!(!is_websocket_upgrade(&request("GET", &h)), "{extra:?}");
        }
        assert!(!is_websocket_upgrade(&request(
            "GET",
            &[("upgrade", "h2c"), ("connection", "upgrade")]
        )));
        assert!(!is_websocket_upgrade(&request(
            "GET",
            &[("upgrade", "websocket, h2c"), ("connection", "upgrade")]
        )));
        assert!(!is_websocket_upgrade(&request(
            "GET",
            &[("upgrade", "websocket")]
        )));
    }

    /// Only a 101 switching to websocket alone is a WebSocket answer.
    #[test]
    fn backend_answer_must_be_websocket() {
        let answer = |upgrades: &[&str]| {
            let mut b = Response::builder().status(101);
            for u in upgrades {
                b = b.header(UPGRADE, *u);
            }
            is_websocket(&b.body(()).unwrap())
        };
        assert!(answer(&["websocket"]));
        assert!(answer(&["WebSocket"]));
        assert!(!answer(&[]));
        assert!(!answer(&["h2c"]));
        assert!(!answer(&["websocket", "h2c"]));
    }
}

//! WebSocket upgrades: honoured only for a bodiless `GET` with `Upgrade: websocket` on
//! HTTP/1.1, after every check a plain request passes, and only once the backend itself
//! answered `101` switching to WebSocket. Any other `Upgrade` (`h2c`, say) is dropped as the
//! hop-by-hop header it is, and the request goes on as plain HTTP.

use http::header::{CONNECTION, CONTENT_LENGTH, HeaderMap, TRANSFER_ENCODING, UPGRADE};
use http::{Method, Request, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

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

/// Copy bytes both ways until either side closes.
pub async fn tunnel(client: OnUpgrade, backend: OnUpgrade) {
    let (client, backend) = match tokio::try_join!(client, backend) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "websocket upgrade did not complete");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut backend = TokioIo::new(backend);
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut backend).await {
        tracing::debug!(error = %e, "websocket tunnel closed with an error");
    }
}

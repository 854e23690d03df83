//! WebSocket upgrades: honoured only for `Upgrade: websocket` on HTTP/1.1, after every
//! check a plain request passes, and only once the backend itself answered `101`.

use http::Request;
use http::header::{CONNECTION, UPGRADE};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// Is this an HTTP/1.1 WebSocket upgrade request?
pub fn is_websocket_upgrade<B>(req: &Request<B>) -> bool {
    // Cheapest tests first: almost no request asks for an upgrade.
    if req.version() != http::Version::HTTP_11 {
        return false;
    }
    let websocket = req
        .headers()
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"));
    websocket
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

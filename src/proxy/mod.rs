//! Forwarding an admitted request to its backend: a pooled HTTP/1.1 client, connect and
//! response timeouts mapped to 502/504, streaming bodies both ways, and WebSocket upgrades
//! that become a tunnel only after the backend's own `101`.

mod bare;
mod echo;
mod outgoing;
mod pool;
mod upgrade;

use std::sync::Arc;
use std::time::Duration;

use http::uri::PathAndQuery;
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;

use crate::config::{Backend, Site};
use crate::gate::Admitted;
use crate::gate::table::Entry;
use crate::http::body::Body;
use crate::http::error::HttpError;
use crate::http::headers;
use crate::http::timer::TimerSlot;

pub use bare::{BareBody, Decoded, decode_in_reads};
pub use outgoing::Outgoing;
pub use pool::{UpstreamBody, UpstreamError, set_worker_index};
pub use upgrade::is_websocket_upgrade;

/// Where one site's admitted requests go.
pub enum Upstream {
    Http {
        pool: Arc<pool::Pool>,
        response_timeout: Duration,
        max_body: u64,
    },
    Echo,
}

impl Upstream {
    pub fn new(site: &Site) -> Self {
        match &site.backend {
            Backend::Echo => Upstream::Echo,
            Backend::Http { authority } => {
                // `.localhost` names are loopback (RFC 6761) whatever the resolver says.
                let addr = crate::server::resolve::loopback_authority(authority.as_str());
                Upstream::Http {
                    pool: pool::Pool::new(addr, site.connect_timeout),
                    response_timeout: site.response_timeout,
                    max_body: site.max_body,
                }
            }
        }
    }

    /// Send a request whose headers are already scrubbed and injected. `target` is the
    /// exact normalised path that was authorised; `upgrade`, for a WebSocket upgrade, is
    /// the session's hold on it, which closes the tunnel when the session ends.
    /// Body bytes in both directions are counted on `meter` (the client's table entry) as
    /// they stream; a WebSocket tunnel's traffic is not.
    pub async fn forward(
        &self,
        mut req: Request<Incoming>,
        target: PathAndQuery,
        upgrade: Option<Box<Admitted>>,
        meter: &Arc<Entry>,
        response_timer: &TimerSlot,
    ) -> Result<Response<Body>, HttpError> {
        let (pool, timeout, max_body) = match self {
            Upstream::Echo => {
                // The echo answer is made whole here; it reads no request body.
                let res = echo::answer(&req, target.as_str());
                if let Body::Full(Some(b)) = res.body() {
                    meter.count_out(b.len());
                }
                return Ok(res);
            }
            Upstream::Http {
                pool,
                response_timeout,
                max_body,
            } => (pool, *response_timeout, *max_body),
        };
        if bare::suits(&req, upgrade.is_some()) {
            let (parts, _) = req.into_parts();
            let (mut parts, body) = tokio::select! {
                answer = bare::send(pool, &parts, &target, meter) => {
                    answer.map_err(HttpError::BackendDown)?
                }
                () = response_timer.lend_for(timeout) => return Err(HttpError::BackendTimeout),
            };
            headers::scrub_response(&mut parts.headers);
            return Ok(Response::from_parts(parts, Body::Bare(body)));
        }
        let client_upgrade = upgrade.map(|admitted| (hyper::upgrade::on(&mut req), admitted));
        // Origin-form on the backend connection: exactly the authorised path and the query.
        *req.uri_mut() = Uri::from(target);
        *req.version_mut() = Version::HTTP_11;
        // The response timeout counts from the end of the upload: a slow upload is the
        // client's pace, not a slow backend.
        let (parts, body) = req.into_parts();
        let (body, sent) = Outgoing::new(body, max_body, meter);
        let req = Request::from_parts(parts, body);
        let backend_late = async move {
            sent.await;
            response_timer.lend_for(timeout).await;
        };
        let (mut res, lease) = tokio::select! {
            res = pool.send(req) => res.map_err(|e| {
                if e.is_body_too_large() {
                    HttpError::PayloadTooLarge
                } else {
                    HttpError::BackendDown(e)
                }
            })?,
            () = backend_late => return Err(HttpError::BackendTimeout),
        };
        if res.status() == http::StatusCode::SWITCHING_PROTOCOLS {
            // Only the WebSocket upgrade that was asked for becomes a tunnel.
            let (Some((client_upgrade, admitted)), true) =
                (client_upgrade, upgrade::is_websocket(&res))
            else {
                return Err(HttpError::BackendDown(UpstreamError::UnaskedUpgrade));
            };
            let backend_upgrade = hyper::upgrade::on(&mut res);
            tokio::spawn(upgrade::tunnel(client_upgrade, backend_upgrade, admitted));
            // The connection is now the tunnel: it never goes back to the pool.
            drop(lease);
            let (mut parts, _) = res.into_parts();
            headers::remove_our_set_cookies(&mut parts.headers);
            return Ok(Response::from_parts(parts, Body::empty()));
        }
        let (mut parts, body) = res.into_parts();
        headers::scrub_response(&mut parts.headers);
        Ok(Response::from_parts(
            parts,
            Body::Upstream(UpstreamBody::new(body, lease, meter)),
        ))
    }
}

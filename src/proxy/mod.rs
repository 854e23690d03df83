//! Forwarding an admitted request to its backend: a pooled HTTP/1.1 client, connect and
//! response timeouts mapped to 502/504, streaming bodies both ways, and WebSocket upgrades
//! that become a tunnel only after the backend's own `101`.

mod echo;
mod outgoing;
mod upgrade;

use std::time::Duration;

use http::uri::{PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::Backend;
use crate::http::body::Body;
use crate::http::error::HttpError;
use crate::http::headers;

pub use outgoing::Outgoing;
pub use upgrade::is_websocket_upgrade;

/// Where one site's admitted requests go.
// Internal: one value per site, built once; the size difference between variants is irrelevant.
#[allow(clippy::large_enum_variant)]
pub enum Upstream {
    Http {
        client: Client<HttpConnector, Outgoing>,
        authority: http::uri::Authority,
        response_timeout: Duration,
    },
    Echo,
}

impl Upstream {
    pub fn new(
        backend: &Backend,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<Self, http::uri::InvalidUri> {
        match backend {
            Backend::Echo => Ok(Upstream::Echo),
            Backend::Http { authority } => {
                let mut connector = HttpConnector::new();
                connector.set_connect_timeout(Some(connect_timeout));
                connector.set_nodelay(true);
                connector.set_keepalive(Some(Duration::from_secs(60)));
                // `.localhost` names are loopback (RFC 6761) whatever the resolver says.
                let authority = crate::server::resolve::loopback_authority(authority).parse()?;
                let client = Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(90))
                    .pool_max_idle_per_host(256)
                    .build(connector);
                Ok(Upstream::Http {
                    client,
                    authority,
                    response_timeout,
                })
            }
        }
    }

    /// Send a request whose headers are already scrubbed and injected. `path_and_query`
    /// is the exact normalised path that was authorised.
    pub async fn forward(
        &self,
        mut req: Request<Incoming>,
        target: PathAndQuery,
    ) -> Result<Response<Body>, HttpError> {
        let (client, authority, timeout) = match self {
            Upstream::Echo => return Ok(echo::answer(&req, target.as_str())),
            Upstream::Http {
                client,
                authority,
                response_timeout,
            } => (client, authority, *response_timeout),
        };
        let client_upgrade = is_websocket_upgrade(&req).then(|| hyper::upgrade::on(&mut req));
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(Scheme::HTTP);
        uri.authority = Some(authority.clone());
        uri.path_and_query = Some(target);
        *req.uri_mut() =
            Uri::from_parts(uri).map_err(|_| HttpError::BadRequest("request target"))?;
        *req.version_mut() = Version::HTTP_11;
        // The response timeout counts from the end of the upload: a slow upload is the
        // client's pace, not a slow backend.
        let (parts, body) = req.into_parts();
        let (body, sent) = Outgoing::new(body);
        let req = Request::from_parts(parts, body);
        let backend_late = async move {
            sent.await;
            tokio::time::sleep(timeout).await;
        };
        let mut res = tokio::select! {
            res = client.request(req) => res.map_err(HttpError::BackendDown)?,
            () = backend_late => return Err(HttpError::BackendTimeout),
        };
        if let (Some(client_upgrade), http::StatusCode::SWITCHING_PROTOCOLS) =
            (client_upgrade, res.status())
        {
            let backend_upgrade = hyper::upgrade::on(&mut res);
            tokio::spawn(upgrade::tunnel(client_upgrade, backend_upgrade));
            let (parts, _) = res.into_parts();
            return Ok(Response::from_parts(parts, Body::empty()));
        }
        let (mut parts, body) = res.into_parts();
        headers::scrub_response(&mut parts.headers);
        Ok(Response::from_parts(parts, Body::Stream(body)))
    }
}

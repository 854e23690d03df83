//! The portal's API for edges (`[cluster] role = "portal"`): the [`Central`] calls over
//! HTTPS, under `/.gatehouse/api/v1/` ([`wire`]). Each answer is what the in-process
//! [`LocalCentral`] would give, so behaviour across processes equals single-process
//! behaviour.
//!
//! Every request must be signed with the cluster secret ([`auth`]): the signature is checked
//! before the body is read, the body against the signed hash after, and a nonce is accepted
//! once within the validity window (a replay is refused). Refusals are 401 with no detail
//! to the caller; the reason goes to the log.
//!
//! [`Central`]: crate::central::Central

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Portal;
use crate::central::auth::{self, ClusterSecret, Refusal};
use crate::central::local::LocalCentral;
use crate::central::wire::{self, BasicAnswer, WireAdmission};
use crate::central::{Central, CentralError};
use crate::http::body::Body;

pub struct Api {
    portal: Arc<Portal>,
    central: LocalCentral,
    secret: ClusterSecret,
    /// Nonces accepted within the validity window, so each request is served once.
    seen: moka::sync::Cache<String, ()>,
    /// Refusals are logged at most once per [`REFUSAL_LOG_EVERY`], so a flood of forged
    /// calls cannot flood the log; the others are counted in the next line.
    refusals: std::sync::Mutex<RefusalLog>,
}

const REFUSAL_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Default)]
struct RefusalLog {
    last: Option<std::time::Instant>,
    unlogged: u64,
}

impl Api {
    pub fn new(portal: Arc<Portal>, secret: ClusterSecret) -> Self {
        Api {
            central: LocalCentral::new(portal.clone()),
            portal,
            secret,
            seen: moka::sync::Cache::builder()
                // Kept longer than a timestamp passes the check (the window each way, plus
                // the second the whole-second timestamps round away).
                .time_to_live(auth::WINDOW * 2 + std::time::Duration::from_secs(5))
                .max_capacity(4_000_000)
                .build(),
            refusals: std::sync::Mutex::default(),
        }
    }

    pub fn is_api_path(path: &str) -> bool {
        path.starts_with(wire::PREFIX)
    }

    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let path = req.uri().path().to_string();
        match self.serve(req, &path).await {
            Ok(res) => res,
            Err(Failure::Refused(why)) => {
                self.log_refusal(peer, &path, why);
                status(StatusCode::UNAUTHORIZED)
            }
            Err(Failure::Status(code)) => status(code),
            Err(Failure::Central(e)) => {
                tracing::error!(%peer, path, error = %crate::http::error::error_chain(&e), "portal API call failed");
                status(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }

    fn log_refusal(&self, peer: SocketAddr, path: &str, why: Refusal) {
        let mut log = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        if log
            .last
            .is_some_and(|t| now.duration_since(t) < REFUSAL_LOG_EVERY)
        {
            log.unlogged += 1;
            return;
        }
        let also = std::mem::take(&mut log.unlogged);
        log.last = Some(now);
        tracing::warn!(%peer, path, reason = %why, refused_since_last_line = also, "portal API request refused");
    }

    async fn serve(&self, req: Request<Incoming>, path: &str) -> Result<Response<Body>, Failure> {
        if req.method() != Method::POST {
            crate::http::body::discard(req.into_body());
            return Err(Failure::Status(StatusCode::METHOD_NOT_ALLOWED));
        }
        let header = req
            .headers()
            .get(auth::HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let signed = match self.secret.verify(header, "POST", path) {
            Ok(s) => s,
            Err(why) => {
                crate::http::body::discard(req.into_body());
                return Err(Failure::Refused(why));
            }
        };
        let body = Limited::new(req.into_body(), wire::MAX_BODY)
            .collect()
            .await
            .map_err(|_| Failure::Status(StatusCode::PAYLOAD_TOO_LARGE))?
            .to_bytes();
        if !signed.body_matches(&body) {
            return Err(Failure::Refused(Refusal::BodyMismatch));
        }
        if !self
            .seen
            .entry(signed.nonce.clone())
            .or_insert(())
            .is_fresh()
        {
            return Err(Failure::Refused(Refusal::Replay));
        }
        // Several portals: a call replayed to another one is refused there too.
        match self.portal.sessions.claim_nonce(&signed.nonce).await {
            Ok(true) => {}
            Ok(false) => return Err(Failure::Refused(Refusal::Replay)),
            Err(e) => return Err(Failure::Central(CentralError::Internal(Box::new(e)))),
        }
        match path {
            wire::REDEEM => {
                let q: wire::RedeemRequest = parse(&body)?;
                let site = wire::site_id(q.site).ok_or(Failure::Status(StatusCode::BAD_REQUEST))?;
                let a = self.central.redeem(&q.code, q.cookie, &site).await?;
                json(&a.as_ref().map(WireAdmission::from))
            }
            wire::CHECK => {
                let q: wire::CheckRequest = parse(&body)?;
                let site = wire::site_id(q.site).ok_or(Failure::Status(StatusCode::BAD_REQUEST))?;
                let a = self.central.check(q.cookie, &site).await?;
                json(&a.as_ref().map(WireAdmission::from))
            }
            wire::BASIC => {
                let q: wire::BasicRequest = parse(&body)?;
                let password = zeroize::Zeroizing::new(q.password);
                let site = wire::site_id(q.site).ok_or(Failure::Status(StatusCode::BAD_REQUEST))?;
                let v = self
                    .central
                    .verify_basic(&site, &q.user, &password, q.key, q.peer)
                    .await?;
                json(&BasicAnswer::from(&v))
            }
            wire::SYNC => {
                let q: wire::SyncRequest = parse(&body)?;
                let reply = self.central.sync(q.into()).await?;
                json(&wire::SyncAnswer::from(&reply))
            }
            _ => Err(Failure::Status(StatusCode::NOT_FOUND)),
        }
    }
}

enum Failure {
    Refused(Refusal),
    Status(StatusCode),
    Central(CentralError),
}

impl From<CentralError> for Failure {
    fn from(e: CentralError) -> Self {
        Failure::Central(e)
    }
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Failure> {
    serde_json::from_slice(body).map_err(|_| Failure::Status(StatusCode::BAD_REQUEST))
}

fn json<T: Serialize>(answer: &T) -> Result<Response<Body>, Failure> {
    let bytes = serde_json::to_vec(answer)
        .map_err(|e| Failure::Central(CentralError::Internal(Box::new(e))))?;
    let mut res = Response::new(Body::from(bytes::Bytes::from(bytes)));
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(res)
}

fn status(code: StatusCode) -> Response<Body> {
    let mut res = Response::new(Body::empty());
    *res.status_mut() = code;
    res
}

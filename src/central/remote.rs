//! [`Central`] for an edge: every call is a signed HTTPS request to the portal's API
//! ([`super::wire`]), on one HTTP/2 connection that all of them share (multiplexed, so a
//! slow password check never holds up a cookie check), verified against `ca_file` or the
//! system's roots. There is no switch to skip that check.
//!
//! A portal that cannot be reached is reported as [`CentralError::Unreachable`] quickly: a
//! failed connection attempt is not retried for [`RECONNECT_PAUSE`], so a burst of requests
//! during an outage does not queue behind connection timeouts. The gate then admits only
//! what its table holds (offline grace; see `gate::sync`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::wire::{self, BasicAnswer, WireAdmission};
use super::{Admission, BasicVerdict, BoxFuture, Central, CentralError, SyncReply, SyncReport};
use crate::config::{EdgeLink, SiteId};
use crate::crypto::IdHash;

/// Connecting (TCP and TLS) must finish within this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A call's answer must come within this.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// A password check's answer: it may wait for a hashing slot at the portal.
const BASIC_TIMEOUT: Duration = Duration::from_secs(15);
/// After a failed connection, calls fail at once for this long instead of trying again.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);
/// Largest answer read (a sync answer after a long outage may list many revocations).
const MAX_ANSWER: usize = 64 << 20;

/// The roots an edge trusts for the portal's certificate: the PEM file's, or the system's.
pub fn roots(pem: Option<&[u8]>) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    match pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| format!("bad PEM: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("bad certificate: {e}"))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
        }
    }
    if roots.is_empty() {
        return Err("no certificate found".into());
    }
    Ok(roots)
}

pub struct RemoteCentral {
    secret: crate::central::auth::ClusterSecret,
    tls: TlsConnector,
    server_name: ServerName<'static>,
    /// Where to connect (`.localhost` names mapped to loopback).
    addr: String,
    /// `https://host:port`, the origin of every request.
    origin: String,
    conn: tokio::sync::Mutex<Connection>,
}

#[derive(Default)]
struct Connection {
    sender: Option<SendRequest<Full<Bytes>>>,
    /// Set after a failed connection attempt: calls fail at once until then.
    paused_until: Option<Instant>,
}

#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("connecting to the portal at {0} took longer than {CONNECT_TIMEOUT:?}")]
    ConnectTimeout(String),
    #[error("cannot connect to the portal at {addr}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the last connection attempt failed; next one in under {RECONNECT_PAUSE:?}")]
    Paused,
    #[error("the portal did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the connection to the portal failed")]
    Http(#[from] hyper::Error),
    #[error("the portal answered {0}")]
    Status(StatusCode),
    #[error("the portal's answer could not be read")]
    Answer(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl RemoteCentral {
    pub fn new(link: &EdgeLink) -> Result<Self, String> {
        let roots = roots(link.ca_pem.as_deref())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let server_name = ServerName::try_from(link.host.clone()).map_err(|e| e.to_string())?;
        let authority = format!("{}:{}", link.host, link.port);
        Ok(RemoteCentral {
            secret: link.secret.clone(),
            tls: TlsConnector::from(Arc::new(config)),
            server_name,
            addr: crate::server::resolve::loopback_authority(&authority),
            origin: format!("https://{authority}"),
            conn: tokio::sync::Mutex::new(Connection::default()),
        })
    }

    /// The shared connection, made if there is none (one caller connects; the others wait
    /// for it rather than opening their own).
    async fn sender(&self) -> Result<SendRequest<Full<Bytes>>, CallError> {
        let mut conn = self.conn.lock().await;
        if let Some(s) = &conn.sender
            && !s.is_closed()
        {
            return Ok(s.clone());
        }
        conn.sender = None;
        if conn.paused_until.is_some_and(|t| Instant::now() < t) {
            return Err(CallError::Paused);
        }
        match tokio::time::timeout(CONNECT_TIMEOUT, self.connect()).await {
            Ok(Ok(s)) => {
                conn.paused_until = None;
                conn.sender = Some(s.clone());
                Ok(s)
            }
            Ok(Err(e)) => {
                conn.paused_until = Some(Instant::now() + RECONNECT_PAUSE);
                Err(e)
            }
            Err(_) => {
                conn.paused_until = Some(Instant::now() + RECONNECT_PAUSE);
                Err(CallError::ConnectTimeout(self.addr.clone()))
            }
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, CallError> {
        let io_err = |source| CallError::Connect {
            addr: self.addr.clone(),
            source,
        };
        let tcp = TcpStream::connect(&self.addr).await.map_err(io_err)?;
        let _ = tcp.set_nodelay(true);
        let tls = self
            .tls
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(io_err)?;
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            // Notice a portal that stopped answering even while no call is waiting.
            .keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true);
        let (sender, connection) = builder.handshake(TokioIo::new(tls)).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "portal API connection ended");
            }
        });
        Ok(sender)
    }

    /// Forget the shared connection (after a timeout: it may be stuck).
    async fn drop_connection(&self) {
        self.conn.lock().await.sender = None;
    }

    async fn call<Q: Serialize, A: DeserializeOwned>(
        &self,
        path: &'static str,
        question: &Q,
    ) -> Result<A, CentralError> {
        let body = serde_json::to_vec(question).map_err(|e| CentralError::Internal(Box::new(e)))?;
        let limit = if path == wire::BASIC {
            BASIC_TIMEOUT
        } else {
            CALL_TIMEOUT
        };
        match tokio::time::timeout(limit, self.send(path, body)).await {
            Ok(Ok(bytes)) => serde_json::from_slice(&bytes)
                .map_err(|e| CentralError::Internal(Box::new(CallError::Answer(Box::new(e))))),
            Ok(Err(e @ CallError::Status(_))) => Err(CentralError::Internal(Box::new(e))),
            Ok(Err(e)) => Err(CentralError::Unreachable(Box::new(e))),
            Err(_) => {
                self.drop_connection().await;
                Err(CentralError::Unreachable(Box::new(CallError::Timeout(
                    limit,
                ))))
            }
        }
    }

    async fn send(&self, path: &'static str, body: Vec<u8>) -> Result<Bytes, CallError> {
        let signature = self.secret.sign("POST", path, &body);
        let mut req = Request::post(format!("{}{path}", self.origin))
            .body(Full::new(Bytes::from(body)))
            .expect("a fixed path and origin make a valid request");
        let h = req.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(
            crate::central::auth::HEADER,
            HeaderValue::from_str(&signature).expect("the signature is ASCII"),
        );
        let mut sender = self.sender().await?;
        let res = sender.send_request(req).await?;
        let status = res.status();
        let bytes = Limited::new(res.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(CallError::Answer)?
            .to_bytes();
        if status != StatusCode::OK {
            return Err(CallError::Status(status));
        }
        Ok(bytes)
    }
}

impl Central for RemoteCentral {
    fn redeem<'a>(
        &'a self,
        code: &'a str,
        cookie: IdHash,
        site: &'a SiteId,
    ) -> BoxFuture<'a, Result<Option<Admission>, CentralError>> {
        Box::pin(async move {
            let q = wire::RedeemRequest {
                code: code.to_string(),
                cookie,
                site: site.0.clone(),
            };
            let a: Option<WireAdmission> = self.call(wire::REDEEM, &q).await?;
            Ok(a.map(Admission::from))
        })
    }

    fn check<'a>(
        &'a self,
        cookie: IdHash,
        site: &'a SiteId,
    ) -> BoxFuture<'a, Result<Option<Admission>, CentralError>> {
        Box::pin(async move {
            let q = wire::CheckRequest {
                cookie,
                site: site.0.clone(),
            };
            let a: Option<WireAdmission> = self.call(wire::CHECK, &q).await?;
            Ok(a.map(Admission::from))
        })
    }

    fn verify_basic<'a>(
        &'a self,
        site: &'a SiteId,
        user: &'a str,
        password: &'a str,
        key: IdHash,
        peer: std::net::IpAddr,
    ) -> BoxFuture<'a, Result<BasicVerdict, CentralError>> {
        Box::pin(async move {
            let q = wire::BasicRequest {
                site: site.0.clone(),
                user: user.to_string(),
                password: password.to_string(),
                key,
                peer,
            };
            let a: BasicAnswer = self.call(wire::BASIC, &q).await?;
            Ok(a.into())
        })
    }

    fn sync(&self, report: SyncReport) -> BoxFuture<'_, Result<SyncReply, CentralError>> {
        Box::pin(async move {
            let a: wire::SyncAnswer = self
                .call(wire::SYNC, &wire::SyncRequest::from(&report))
                .await?;
            Ok(a.into())
        })
    }
}

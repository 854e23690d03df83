//! TLS: certificates by SNI (per-site certificates, else the default one), ALPN h2 and
//! http/1.1, session tickets for cheap resumption.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::{Config, TlsFiles};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificate chain {path}")]
    Cert {
        path: String,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("cannot read the private key {path}")]
    Key {
        path: String,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("the private key {path} is not usable")]
    KeyType {
        path: String,
        #[source]
        source: rustls::Error,
    },
    #[error("the private key {key} does not belong to the certificate {cert}")]
    Mismatch {
        cert: String,
        key: String,
        #[source]
        source: rustls::Error,
    },
    #[error("TLS set-up failed")]
    Setup(#[from] rustls::Error),
}

fn load(files: &TlsFiles) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Cert {
            path: display(&files.cert),
            source,
        })?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|source| TlsError::Key {
        path: display(&files.key),
        source,
    })?;
    let signing = any_supported_type(&key).map_err(|source| TlsError::KeyType {
        path: display(&files.key),
        source,
    })?;
    let certified = CertifiedKey::new(chain, signing);
    // A key that does not belong to the certificate would fail every handshake; say so now.
    certified
        .keys_match()
        .map_err(|source| TlsError::Mismatch {
            cert: display(&files.cert),
            key: display(&files.key),
            source,
        })?;
    Ok(Arc::new(certified))
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

/// Picks the certificate by SNI: a site's own, else the default.
#[derive(Debug)]
struct BySni {
    by_host: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let cert = hello
            .server_name()
            .and_then(|n| self.by_host.get(&n.to_ascii_lowercase()));
        Some(cert.unwrap_or(&self.default).clone())
    }
}

pub fn server_config(config: &Config) -> Result<Arc<ServerConfig>, TlsError> {
    let default = load(&config.tls)?;
    let mut by_host = HashMap::new();
    for site in &config.sites {
        if let Some(files) = &site.tls {
            by_host.insert(site.host.clone(), load(files)?);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(BySni { by_host, default }));
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    tls.ticketer = rustls::crypto::ring::Ticketer::new()?;
    tls.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
    Ok(Arc::new(tls))
}

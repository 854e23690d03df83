//! TLS: certificates by SNI (per-site certificates, else the default one), ALPN h2 and
//! http/1.1, session tickets for cheap resumption.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
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

/// The certificates of one config: a site's own, else the default.
#[derive(Debug)]
struct Certificates {
    by_host: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl Certificates {
    fn load(config: &Config) -> Result<Self, TlsError> {
        let default = load(&config.tls)?;
        let mut by_host = HashMap::new();
        for site in &config.sites {
            if let Some(files) = &site.tls {
                by_host.insert(site.host.clone(), load(files)?);
            }
        }
        Ok(Certificates { by_host, default })
    }
}

/// Picks the certificate by SNI. Reloading swaps the whole set at once; handshakes in
/// progress finish with the set they started with.
#[derive(Debug, Clone)]
pub struct CertResolver(Arc<ArcSwap<Certificates>>);

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let certs = self.0.load();
        let cert = hello
            .server_name()
            .and_then(|n| certs.by_host.get(&n.to_ascii_lowercase()));
        Some(cert.unwrap_or(&certs.default).clone())
    }
}

impl CertResolver {
    /// Read the certificates of `config` and use them from the next handshake on; on any
    /// error the current ones stay.
    pub fn reload(&self, config: &Config) -> Result<(), TlsError> {
        let certs = Certificates::load(config)?;
        self.0.store(Arc::new(certs));
        Ok(())
    }
}

/// The TLS set-up, and the handle that reloads its certificates.
pub fn server_config(config: &Config) -> Result<(Arc<ServerConfig>, CertResolver), TlsError> {
    let resolver = CertResolver(Arc::new(ArcSwap::from_pointee(Certificates::load(config)?)));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver.clone()));
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    tls.ticketer = rustls::crypto::ring::Ticketer::new()?;
    tls.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
    Ok((Arc::new(tls), resolver))
}

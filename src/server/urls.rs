//! Public URLs as browsers see them, and the redirect allow-list built from them.

use std::collections::HashSet;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::http::redirect;

#[derive(Clone)]
pub struct Urls {
    inner: Arc<Inner>,
}

struct Inner {
    portal_host: String,
    /// The port browsers use (443 is left out of URLs).
    port: u16,
    /// The portal and every site: the only hosts a redirect may name. Replaced whole when
    /// the config is reloaded (every holder of this `Urls` sees the new set).
    hosts: ArcSwap<HashSet<String>>,
}

fn host_set(portal_host: &str, site_hosts: impl IntoIterator<Item = String>) -> HashSet<String> {
    let mut hosts: HashSet<String> = site_hosts.into_iter().collect();
    hosts.insert(portal_host.to_string());
    hosts
}

impl Urls {
    pub fn new(portal_host: &str, site_hosts: impl IntoIterator<Item = String>, port: u16) -> Self {
        Urls {
            inner: Arc::new(Inner {
                portal_host: portal_host.to_string(),
                port,
                hosts: ArcSwap::from_pointee(host_set(portal_host, site_hosts)),
            }),
        }
    }

    /// The sites after a reload (the portal's host and the port stay).
    pub fn set_site_hosts(&self, site_hosts: impl IntoIterator<Item = String>) {
        let hosts = host_set(&self.inner.portal_host, site_hosts);
        self.inner.hosts.store(Arc::new(hosts));
    }

    pub fn origin(&self, host: &str) -> String {
        match self.inner.port {
            443 => format!("https://{host}"),
            port => format!("https://{host}:{port}"),
        }
    }

    pub fn portal_origin(&self) -> String {
        self.origin(&self.inner.portal_host)
    }

    pub fn port(&self) -> u16 {
        self.inner.port
    }

    /// Every origin (portal and sites), for the portal's CSP `form-action`.
    pub fn all_origins(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .inner
            .hosts
            .load()
            .iter()
            .map(|h| self.origin(h))
            .collect();
        v.sort();
        v
    }

    /// A redirect target that may be followed, or `None` (the caller then uses "/").
    /// Only a path on the same host, or an https URL on a configured host and the public
    /// port, passes.
    pub fn check_redirect(&self, raw: &str) -> Option<String> {
        let hosts = self.inner.hosts.load();
        let allowed = |host: &str, port: Option<u16>| {
            hosts.contains(host) && port.unwrap_or(443) == self.inner.port
        };
        redirect::check(raw, &allowed).map(|t| t.as_str().to_string())
    }

    pub fn is_site_host(&self, host: &str) -> bool {
        host != self.inner.portal_host && self.inner.hosts.load().contains(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Redirects go only to configured hosts on the public port, or local paths.
    #[test]
    fn redirect_allow_list() {
        let u = Urls::new("auth.localhost", ["app.localhost".to_string()], 8443);
        assert_eq!(u.check_redirect("/x?y=1").as_deref(), Some("/x?y=1"));
        assert_eq!(
            u.check_redirect("https://app.localhost:8443/a").as_deref(),
            Some("https://app.localhost:8443/a")
        );
        assert_eq!(u.check_redirect("https://app.localhost/a"), None);
        assert_eq!(u.check_redirect("https://evil.localhost:8443/a"), None);
        assert_eq!(u.check_redirect("//evil"), None);
        assert_eq!(u.portal_origin(), "https://auth.localhost:8443");
        u.set_site_hosts(["wiki.localhost".to_string()]);
        assert_eq!(
            u.check_redirect("https://app.localhost:8443/a"),
            None,
            "reloaded"
        );
        assert!(u.check_redirect("https://wiki.localhost:8443/a").is_some());
        assert!(u.check_redirect("https://auth.localhost:8443/a").is_some());
        let u = Urls::new("auth.example", ["app.example".to_string()], 443);
        assert_eq!(u.origin("app.example"), "https://app.example");
        assert_eq!(
            u.check_redirect("https://app.example/a").as_deref(),
            Some("https://app.example/a")
        );
    }
}

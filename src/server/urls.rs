//! Public URLs as browsers see them, and the redirect allow-list built from them.

use std::collections::HashSet;
use std::sync::Arc;

use crate::http::redirect;

#[derive(Clone)]
pub struct Urls {
    inner: Arc<Inner>,
}

struct Inner {
    portal_host: String,
    /// The port browsers use (443 is left out of URLs).
    port: u16,
    /// The portal and every site: the only hosts a redirect may name.
    hosts: HashSet<String>,
}

impl Urls {
    pub fn new(portal_host: &str, site_hosts: impl IntoIterator<Item = String>, port: u16) -> Self {
        let mut hosts: HashSet<String> = site_hosts.into_iter().collect();
        hosts.insert(portal_host.to_string());
        Urls {
            inner: Arc::new(Inner {
                portal_host: portal_host.to_string(),
                port,
                hosts,
            }),
        }
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
        let mut v: Vec<String> = self.inner.hosts.iter().map(|h| self.origin(h)).collect();
        v.sort();
        v
    }

    /// A redirect target that may be followed, or `None` (the caller then uses "/").
    /// Only a path on the same host, or an https URL on a configured host and the public
    /// port, passes.
    pub fn check_redirect(&self, raw: &str) -> Option<String> {
        let allowed = |host: &str, port: Option<u16>| {
            self.inner.hosts.contains(host) && port.unwrap_or(443) == self.inner.port
        };
        redirect::check(raw, &allowed).map(|t| t.as_str().to_string())
    }

    pub fn is_site_host(&self, host: &str) -> bool {
        host != self.inner.portal_host && self.inner.hosts.contains(host)
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
        let u = Urls::new("auth.example", ["app.example".to_string()], 443);
        assert_eq!(u.origin("app.example"), "https://app.example");
        assert_eq!(
            u.check_redirect("https://app.example/a").as_deref(),
            Some("https://app.example/a")
        );
    }
}

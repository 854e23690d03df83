//! Public URLs as browsers see them, and the redirect allow-list built from them.
//!
//! Every host (the portal and each site) has one origin, `https://host[:port]`: the port of
//! its `public_url` when the config gives one (a site served by an edge on another port, the
//! portal by another process), else `portal.public_port`, else the port we listen on.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::http::redirect;

#[derive(Clone)]
pub struct Urls {
    inner: Arc<Inner>,
}

struct Inner {
    portal_host: String,
    /// The portal's port (restart only, like its host).
    portal_port: u16,
    /// The port of every host whose config names none: `portal.public_port` or the listen
    /// port (restart only).
    default_port: u16,
    /// The portal and every site, each with the port browsers reach it on (443 is left out
    /// of URLs): the only (host, port) pairs an absolute redirect may name. Replaced whole
    /// when the config is reloaded (every holder of this `Urls` sees the new set).
    ports: ArcSwap<HashMap<String, u16>>,
}

/// Each site's host and the port of its `public_url`, if it has one.
fn site_ports(config: &Config) -> impl Iterator<Item = (String, Option<u16>)> + '_ {
    config
        .sites
        .iter()
        .map(|s| (s.host.clone(), s.public_url.map(|u| u.port)))
}

fn format_origin(host: &str, port: u16) -> String {
    match port {
        443 => format!("https://{host}"),
        port => format!("https://{host}:{port}"),
    }
}

impl Urls {
    /// The origins `config` describes, for a gateway listening on `listen_port`.
    pub fn for_config(config: &Config, listen_port: u16) -> Self {
        let default_port = config.portal.public_port.unwrap_or(listen_port);
        let portal_port = config.portal.public_url.map(|u| u.port);
        Urls::new(
            &config.portal.host,
            portal_port,
            site_ports(config),
            default_port,
        )
    }

    /// The portal's host and port, and each site's host and port (`None`: `default_port`).
    fn new(
        portal_host: &str,
        portal_port: Option<u16>,
        sites: impl IntoIterator<Item = (String, Option<u16>)>,
        default_port: u16,
    ) -> Self {
        let inner = Inner {
            portal_host: portal_host.to_string(),
            portal_port: portal_port.unwrap_or(default_port),
            default_port,
            ports: ArcSwap::default(),
        };
        inner.ports.store(Arc::new(inner.port_map(sites)));
        Urls {
            inner: Arc::new(inner),
        }
    }

    /// The sites after a reload, with their `public_url`s (the portal's origin and the
    /// default port stay).
    pub fn set_sites(&self, config: &Config) {
        self.replace_sites(site_ports(config));
    }

    fn replace_sites(&self, sites: impl IntoIterator<Item = (String, Option<u16>)>) {
        let ports = self.inner.port_map(sites);
        self.inner.ports.store(Arc::new(ports));
    }

    /// `https://host[:port]` of a configured host; any other host gets the default port.
    pub fn origin(&self, host: &str) -> String {
        let port = self.inner.ports.load().get(host).copied();
        format_origin(host, port.unwrap_or(self.inner.default_port))
    }

    pub fn portal_origin(&self) -> String {
        format_origin(&self.inner.portal_host, self.inner.portal_port)
    }

    /// Every origin (portal and sites), for the portal's CSP `form-action`.
    pub fn all_origins(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .inner
            .ports
            .load()
            .iter()
            .map(|(host, &port)| format_origin(host, port))
            .collect();
        v.sort();
        v
    }

    /// A redirect target that may be followed, or `None` (the caller then uses "/").
    /// Only a path on the same host, or an https URL naming a configured host on the port
    /// of that host's origin, passes.
    pub fn check_redirect(&self, raw: &str) -> Option<String> {
        let ports = self.inner.ports.load();
        let allowed = |host: &str, port: Option<u16>| ports.get(host) == Some(&port.unwrap_or(443));
        redirect::check(raw, &allowed).map(|t| t.as_str().to_string())
    }

    pub fn is_site_host(&self, host: &str) -> bool {
        host != self.inner.portal_host && self.inner.ports.load().contains_key(host)
    }
}

impl Inner {
    /// Host → port for the portal and `sites`.
    fn port_map(
        &self,
        sites: impl IntoIterator<Item = (String, Option<u16>)>,
    ) -> HashMap<String, u16> {
        let mut ports: HashMap<String, u16> = sites
            .into_iter()
            .map(|(host, port)| (host, port.unwrap_or(self.default_port)))
            .collect();
        ports.insert(self.portal_host.clone(), self.portal_port);
        ports
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sites(list: &[(&str, Option<u16>)]) -> Vec<(String, Option<u16>)> {
        list.iter().map(|&(h, p)| (h.to_string(), p)).collect()
    }

    /// Redirects go only to configured hosts on the public port, or local paths.
    #[test]
    fn redirect_allow_list() {
        let u = Urls::new(
            "auth.localhost",
            None,
            sites(&[("app.localhost", None)]),
            8443,
        );
        assert_eq!(u.check_redirect("/x?y=1").as_deref(), Some("/x?y=1"));
        assert_eq!(
            u.check_redirect("https://app.localhost:8443/a").as_deref(),
            Some("https://app.localhost:8443/a")
        );
        assert_eq!(u.check_redirect("https://app.localhost/a"), None);
        assert_eq!(u.check_redirect("https://evil.localhost:8443/a"), None);
        assert_eq!(u.check_redirect("//evil"), None);
        assert_eq!(u.portal_origin(), "https://auth.localhost:8443");
        u.replace_sites(sites(&[("wiki.localhost", None)]));
        assert_eq!(
            u.check_redirect("https://app.localhost:8443/a"),
            None,
            "reloaded"
        );
        assert!(u.check_redirect("https://wiki.localhost:8443/a").is_some());
        assert!(u.check_redirect("https://auth.localhost:8443/a").is_some());
        let u = Urls::new("auth.example", None, sites(&[("app.example", None)]), 443);
        assert_eq!(u.origin("app.example"), "https://app.example");
        assert_eq!(
            u.check_redirect("https://app.example/a").as_deref(),
            Some("https://app.example/a")
        );
    }

    /// A site on one port and the portal on another (each from its `public_url`): each
    /// origin carries its own port, and a redirect passes only on the port of its host.
    #[test]
    fn mixed_ports() {
        let u = Urls::new(
            "auth.localhost",
            Some(8443),
            sites(&[("app.localhost", Some(9443)), ("wiki.localhost", None)]),
            7443,
        );
        assert_eq!(u.portal_origin(), "https://auth.localhost:8443");
        assert_eq!(u.origin("app.localhost"), "https://app.localhost:9443");
        assert_eq!(u.origin("wiki.localhost"), "https://wiki.localhost:7443");
        assert_eq!(
            u.all_origins(),
            [
                "https://app.localhost:9443",
                "https://auth.localhost:8443",
                "https://wiki.localhost:7443"
            ]
        );
        for good in [
            "https://app.localhost:9443/x",
            "https://auth.localhost:8443/",
            "https://wiki.localhost:7443/w?a=b",
        ] {
            assert_eq!(u.check_redirect(good).as_deref(), Some(good));
        }
        for wrong_port in [
            "https://app.localhost:8443/x",
            "https://app.localhost:7443/x",
            "https://app.localhost/x",
            "https://auth.localhost:9443/",
            "https://auth.localhost:7443/",
            "https://wiki.localhost:9443/",
        ] {
            assert_eq!(u.check_redirect(wrong_port), None, "{wrong_port}");
        }
        // A reload moves the site; the portal stays where it was.
        u.replace_sites(sites(&[("app.localhost", Some(443))]));
        assert_eq!(u.origin("app.localhost"), "https://app.localhost");
        assert!(u.check_redirect("https://app.localhost/x").is_some());
        assert_eq!(u.check_redirect("https://app.localhost:9443/x"), None);
        assert_eq!(u.check_redirect("https://wiki.localhost:7443/x"), None);
        assert_eq!(u.portal_origin(), "https://auth.localhost:8443");
        assert!(u.is_site_host("app.localhost"));
        assert!(!u.is_site_host("auth.localhost"));
    }

    /// The portal at 443 by its `public_url` while the sites keep the default port.
    #[test]
    fn portal_on_default_https_port() {
        let u = Urls::new(
            "auth.example",
            Some(443),
            sites(&[("app.example", None)]),
            8443,
        );
        assert_eq!(u.portal_origin(), "https://auth.example");
        assert_eq!(u.origin("app.example"), "https://app.example:8443");
        assert!(u.check_redirect("https://auth.example/").is_some());
        assert_eq!(u.check_redirect("https://auth.example:8443/"), None);
    }
}

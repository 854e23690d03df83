//! `public_url` of the portal and of each site checked: where browsers reach that host when
//! it is not on the port the gateway listens on (or `portal.public_port`), e.g. a site
//! served by an edge on one port and the portal by another process on another. Requests are
//! routed by their Host, so the URL must name the host configured beside it; what it adds
//! is the port, and only that is kept ([`super::PublicUrl`]).

use super::PublicUrl;
use super::raw::Str;
use super::validate::Checker;

/// `v` checked against `host` (lowercase), configured at `host_key`; errors name `key`.
pub(super) fn check(
    c: &mut Checker,
    v: &Str,
    key: &str,
    host: &str,
    host_key: &str,
) -> Option<PublicUrl> {
    match parse(v.get_ref()) {
        Ok((named, _)) if named != host => {
            c.error(
                v,
                key,
                format!(
                    "{:?} names the host {named:?}, but {host_key} is {host:?}; requests are routed by host name, so they must be the same",
                    v.get_ref()
                ),
            );
            None
        }
        Ok((_, port)) => Some(PublicUrl { port }),
        Err(why) => {
            c.error(v, key, format!("{:?} {why}", v.get_ref()));
            None
        }
    }
}

/// `https://host[:port][/]` → (host lowercased, port: 443 when none is written). The error
/// completes "<url> …".
fn parse(s: &str) -> Result<(String, u16), &'static str> {
    const SCHEME: &str = "https://";
    let rest = s
        .get(..SCHEME.len())
        .filter(|scheme| scheme.eq_ignore_ascii_case(SCHEME))
        .and_then(|_| s.get(SCHEME.len()..))
        .ok_or("must be an https:// URL, e.g. \"https://app.example.org:8443\"")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if tail.contains(['?', '#']) {
        return Err("must not have a query or fragment");
    }
    if !(tail.is_empty() || tail == "/") {
        return Err("must not have a path: the gateway serves each host from its root");
    }
    if authority.contains('@') {
        return Err("must not hold a user name or password");
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    if host.is_empty() {
        return Err("must name a host");
    }
    let port = match port {
        None => 443,
        Some(p) => p
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| p.parse::<u16>().ok())
            .flatten()
            .filter(|&n| n > 0)
            .ok_or("must have a port from 1 to 65535, or none (443)")?,
    };
    Ok((host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use super::parse;
    use crate::config::{Config, PublicUrl};

    /// Origins with or without a port or a final '/' pass; the host comes back lowercased.
    #[test]
    fn good_urls() {
        let ok = |s: &str| parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(
            ok("https://app.example.org"),
            ("app.example.org".into(), 443)
        );
        assert_eq!(
            ok("https://app.example.org/"),
            ("app.example.org".into(), 443)
        );
        assert_eq!(
            ok("https://App.Example.org:9443"),
            ("app.example.org".into(), 9443)
        );
        assert_eq!(
            ok("HTTPS://app.example.org:443/"),
            ("app.example.org".into(), 443)
        );
    }

    /// Other schemes, paths, queries, fragments, credentials and odd ports are refused.
    #[test]
    fn bad_urls() {
        for (bad, why) in [
            ("http://app.example.org", "https://"),
            ("app.example.org:8443", "https://"),
            ("//app.example.org", "https://"),
            ("https:app.example.org", "https://"),
            ("", "https://"),
            ("https://app.example.org/app", "path"),
            ("https://app.example.org//", "path"),
            ("https://app.example.org?x=1", "query"),
            ("https://app.example.org/#top", "query or fragment"),
            ("https://user:pw@app.example.org", "user name or password"),
            ("https://evil@app.example.org", "user name or password"),
            ("https://", "host"),
            ("https://:8443", "host"),
            ("https://app.example.org:", "port"),
            ("https://app.example.org:0", "port"),
            ("https://app.example.org:65536", "port"),
            ("https://app.example.org:+443", "port"),
            ("https://app.example.org:84a3", "port"),
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    fn config(portal: &str, site: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let certs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("certs");
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[tls]\ncert = {:?}\nkey = {:?}\n\
             [portal]\nhost = \"auth.localhost\"\nstore = \"g.db\"\n{portal}\n\
             [[sites]]\nid = \"app\"\nhost = \"App.localhost\"\nbackend = \"builtin:echo\"\n{site}\n",
            certs.join("localhost.crt").display().to_string(),
            certs.join("localhost.key").display().to_string(),
        );
        Config::parse(&dir.path().join("config.toml"), &text).map_err(|e| e.to_string())
    }

    /// Both keys are optional; given, they keep the port they name (443 when none).
    #[test]
    fn keys_in_config() {
        let c = config("", "").unwrap();
        assert_eq!(c.portal.public_url, None);
        assert_eq!(c.sites[0].public_url, None);
        let c = config(
            "public_url = \"https://auth.localhost:8443\"",
            "public_url = \"https://APP.localhost\"",
        )
        .unwrap();
        assert_eq!(c.portal.public_url, Some(PublicUrl { port: 8443 }));
        assert_eq!(c.sites[0].public_url, Some(PublicUrl { port: 443 }));
        let c = config(
            "public_port = 8443\npublic_url = \"https://auth.localhost:8443/\"",
            "",
        )
        .unwrap();
        assert_eq!(c.portal.public_url, Some(PublicUrl { port: 8443 }));
    }

    /// Errors name the key, and say what is wrong.
    #[test]
    fn errors_name_the_key() {
        let err = |portal: &str, site: &str| config(portal, site).unwrap_err();
        let e = err("public_url = \"http://auth.localhost\"", "");
        assert!(
            e.contains("portal.public_url: \"http://auth.localhost\" must be an https:// URL"),
            "{e}"
        );
        let e = err("", "public_url = \"https://app.localhost/app\"");
        assert!(
            e.contains("sites[0].public_url: \"https://app.localhost/app\" must not have a path"),
            "{e}"
        );
        let e = err("", "public_url = \"https://wiki.localhost:9443\"");
        assert!(
            e.contains("sites[0].public_url: \"https://wiki.localhost:9443\" names the host \"wiki.localhost\", but sites[0].host is \"app.localhost\""),
            "{e}"
        );
        let e = err("public_url = \"https://portal.localhost\"", "");
        assert!(e.contains("portal.public_url: \"https://portal.localhost\" names the host \"portal.localhost\", but portal.host is \"auth.localhost\""), "{e}");
        let e = err(
            "public_port = 443\npublic_url = \"https://auth.localhost:8443\"",
            "",
        );
        assert!(
            e.contains("portal.public_url: names port 8443, but portal.public_port is 443"),
            "{e}"
        );
    }
}

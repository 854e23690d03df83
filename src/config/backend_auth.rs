//! `[sites.backend_auth]` checked: which mode, its keys, and for `static` the service
//! password itself, read here (from the environment or a file) so that a missing one stops
//! start-up and `gatehouse check` with an error naming the key, not a 401 at the first user.

use toml::Spanned;
use zeroize::Zeroizing;

use super::BackendAuth;
use super::raw::{RawBackendAuth, Str};
use super::validate::Checker;

pub(super) fn check(c: &mut Checker, a: &RawBackendAuth, key: &str) -> Option<BackendAuth> {
    let k = |name: &str| format!("{key}.{name}");
    match a.mode.get_ref().as_str() {
        "derived" => {
            for (v, name) in [
                (&a.user, "user"),
                (&a.password_env, "password_env"),
                (&a.password_file, "password_file"),
            ] {
                if let Some(v) = v {
                    c.error(v, &k(name), "is only for mode = \"static\" (a derived site sends the signed-in user's own name)");
                }
            }
            let Some(id) = &a.derive_id else {
                c.error(
                    &a.mode,
                    &k("derive_id"),
                    "is required with mode = \"derived\" (the site data hashed with the master password, e.g. the site's host)",
                );
                return None;
            };
            let text = id.get_ref();
            if text.is_empty() || text.len() > 256 {
                c.error(id, &k("derive_id"), "must be 1-256 characters");
                return None;
            }
            Some(BackendAuth::Derived {
                derive_id: text.clone(),
            })
        }
        "static" => {
            if let Some(v) = &a.derive_id {
                c.error(v, &k("derive_id"), "is only for mode = \"derived\"");
            }
            let Some(user) = &a.user else {
                c.error(
                    &a.mode,
                    &k("user"),
                    "is required with mode = \"static\" (the service account's user name)",
                );
                return None;
            };
            let name = user.get_ref();
            if name.is_empty() || name.contains(':') || name.chars().any(char::is_control) {
                c.error(
                    user,
                    &k("user"),
                    "must be non-empty, without ':' or control characters",
                );
                return None;
            }
            let password = match (&a.password_env, &a.password_file) {
                (Some(env), None) => from_env(c, env, &k("password_env"))?,
                (None, Some(file)) => from_file(c, file, &k("password_file"))?,
                (Some(_), Some(v)) => {
                    c.error(
                        v,
                        &k("password_file"),
                        "give password_env or password_file, not both",
                    );
                    return None;
                }
                (None, None) => {
                    c.error(
                        &a.mode,
                        &k("password_env"),
                        "mode = \"static\" needs password_env (an environment variable) or password_file (a file) holding the service password",
                    );
                    return None;
                }
            };
            let authorization = crate::crypto::derived::basic_authorization(name, &password)?;
            Some(BackendAuth::Static {
                user: name.clone(),
                authorization,
            })
        }
        other => {
            c.error(
                &a.mode,
                &k("mode"),
                format!("{other:?} must be \"derived\" or \"static\""),
            );
            None
        }
    }
}

/// The service password from an environment variable; the error names the variable.
pub(super) fn from_env(c: &mut Checker, var: &Str, key: &str) -> Option<Zeroizing<String>> {
    let name = var.get_ref();
    let value = match std::env::var(name) {
        Ok(v) => Zeroizing::new(v),
        Err(std::env::VarError::NotPresent) => {
            c.error(var, key, format!("environment variable {name} is not set"));
            return None;
        }
        Err(std::env::VarError::NotUnicode(_)) => {
            c.error(
                var,
                key,
                format!("environment variable {name} is not UTF-8"),
            );
            return None;
        }
    };
    usable(c, var, key, value, &format!("environment variable {name}"))
}

/// The service password from a file (relative to the config's folder): its first line.
pub(super) fn from_file(c: &mut Checker, file: &Str, key: &str) -> Option<Zeroizing<String>> {
    let path = c.base.join(file.get_ref());
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => Zeroizing::new(t),
        Err(err) => {
            c.error(file, key, format!("cannot read {}: {err}", path.display()));
            return None;
        }
    };
    let line = text.strip_suffix('\n').unwrap_or(&text);
    let line = Zeroizing::new(line.strip_suffix('\r').unwrap_or(line).to_string());
    usable(c, file, key, line, &path.display().to_string())
}

fn usable<T>(
    c: &mut Checker,
    at: &Spanned<T>,
    key: &str,
    password: Zeroizing<String>,
    source: &str,
) -> Option<Zeroizing<String>> {
    if password.is_empty() {
        c.error(at, key, format!("{source} is empty"));
        return None;
    }
    if password.chars().any(char::is_control) {
        c.error(
            at,
            key,
            format!("{source} must hold one line without control characters"),
        );
        return None;
    }
    if password.len() > crate::crypto::password::MAX_PASSWORD_BYTES {
        c.error(at, key, format!("{source} holds more than 1024 bytes"));
        return None;
    }
    Some(password)
}

#[cfg(test)]
mod tests {
    use crate::config::{BackendAuth, Config};

    fn parse(dir: &std::path::Path, auth: &str) -> Result<Config, String> {
        let certs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("certs");
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[tls]\ncert = {:?}\nkey = {:?}\n\
             [portal]\nhost = \"auth.localhost\"\nstore = \"g.db\"\n\
             [[sites]]\nid = \"app\"\nhost = \"app.localhost\"\nbackend = \"builtin:echo\"\n\
             [sites.backend_auth]\n{auth}\n",
            certs.join("localhost.crt").display().to_string(),
            certs.join("localhost.key").display().to_string(),
        );
        Config::parse(&dir.join("config.toml"), &text).map_err(|e| e.to_string())
    }

    /// A derived site needs derive_id and takes none of the static keys.
    #[test]
    fn derived_keys() {
        let dir = tempfile::tempdir().unwrap();
        let c = parse(
            dir.path(),
            "mode = \"derived\"\nderive_id = \"app.example\"",
        )
        .unwrap();
        assert_eq!(c.sites[0].derive_id(), Some("app.example"));
        let e = parse(dir.path(), "mode = \"derived\"").unwrap_err();
        assert!(
            e.contains("sites[0].backend_auth.derive_id: is required"),
            "{e}"
        );
        let e = parse(dir.path(), "mode = \"derived\"\nderive_id = \"\"").unwrap_err();
        assert!(e.contains("must be 1-256 characters"), "{e}");
        let e = parse(
            dir.path(),
            "mode = \"derived\"\nderive_id = \"x\"\npassword_env = \"PW\"",
        )
        .unwrap_err();
        assert!(
            e.contains("backend_auth.password_env: is only for mode = \"static\""),
            "{e}"
        );
        let e = parse(dir.path(), "mode = \"magic\"").unwrap_err();
        assert!(e.contains("backend_auth.mode: \"magic\" must be"), "{e}");
    }

    /// A static password file gives its first line; the header is prebuilt and sensitive,
    /// and the config's Debug does not show it.
    #[test]
    fn static_from_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("svc.pw"), "pw\r\n").unwrap();
        let c = parse(
            dir.path(),
            "mode = \"static\"\nuser = \"svc\"\npassword_file = \"svc.pw\"",
        )
        .unwrap();
        let Some(BackendAuth::Static {
            user,
            authorization,
        }) = &c.sites[0].backend_auth
        else {
            panic!("static expected");
        };
        assert_eq!(user, "svc");
        assert_eq!(authorization.to_str().unwrap(), "Basic c3ZjOnB3"); // svc:pw
        assert!(authorization.is_sensitive());
        assert!(!format!("{c:?}").contains("c3ZjOnB3"));
        let e = parse(
            dir.path(),
            "mode = \"static\"\nuser = \"a:b\"\npassword_file = \"svc.pw\"",
        )
        .unwrap_err();
        assert!(
            e.contains("backend_auth.user: must be non-empty, without ':'"),
            "{e}"
        );
        let e = parse(
            dir.path(),
            "mode = \"static\"\nuser = \"svc\"\npassword_file = \"svc.pw\"\nderive_id = \"x\"",
        )
        .unwrap_err();
        assert!(
            e.contains("derive_id: is only for mode = \"derived\""),
            "{e}"
        );
    }
}

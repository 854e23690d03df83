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
fn from_env(c: &mut Checker, var: &Str, key: &str) -> Option<Zeroizing<String>> {
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
fn from_file(c: &mut Checker, file: &Str, key: &str) -> Option<Zeroizing<String>> {
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

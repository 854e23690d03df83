//! Password hashes brought over from Apache htpasswd files: `{SHA}` (base64 SHA-1),
//! `$apr1$` (Apache MD5-crypt) and bcrypt (`$2y$`, `$2b$`, `$2a$`).
//!
//! Such a hash is verified (off the reactor, like argon2id: see `password::Verifier`) only
//! until its user's first successful sign-in, when the portal replaces it by argon2id.
//! Plain-text and crypt(3) DES lines are refused at import: the first is no hash at all, the
//! second reads only 8 characters of a password and falls to a brute force in hours.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use md5::Md5;
use sha1::{Digest, Sha1};
use zeroize::Zeroizing;

use super::ct_eq;

/// The highest bcrypt cost accepted: each step doubles the work of one sign-in, so an
/// imported `$2y$31$…` would hold a hashing slot for days (Apache's own maximum is 17).
pub const MAX_BCRYPT_COST: u32 = 17;

/// One user of an htpasswd file.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    /// 1-based line of the file, for messages.
    pub line: usize,
    pub name: String,
    pub hash: String,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("line", &self.line)
            .field("name", &self.name)
            .field("hash", &"[redacted]")
            .finish()
    }
}

/// Parse an htpasswd file. Blank lines and `#` comments are skipped. Every bad line is
/// reported (1-based line numbers), so one run shows everything to fix.
pub fn parse(text: &str) -> Result<Vec<Entry>, Vec<String>> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut first_line: std::collections::HashMap<&str, usize> = Default::default();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let Some((name, hash)) = line.split_once(':') else {
            problems.push(format!("line {n}: not of the form name:hash"));
            continue;
        };
        if name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
            problems.push(format!(
                "line {n}: the user name must be 1-256 characters without control characters"
            ));
            continue;
        }
        if let Err(why) = check_hash(hash) {
            problems.push(format!("line {n}: user {name:?}: {why}"));
            continue;
        }
        if let Some(first) = first_line.get(name) {
            problems.push(format!(
                "line {n}: user {name:?} appears again (first on line {first})"
            ));
            continue;
        }
        first_line.insert(name, n);
        entries.push(Entry {
            line: n,
            name: name.to_string(),
            hash: hash.to_string(),
        });
    }
    if problems.is_empty() {
        Ok(entries)
    } else {
        Err(problems)
    }
}

/// Is this a hash form we import? The error says why not, without repeating the value
/// (a refused "hash" may be a password in clear).
pub fn check_hash(hash: &str) -> Result<(), String> {
    if let Some(b64) = hash.strip_prefix("{SHA}") {
        return match STANDARD.decode(b64) {
            Ok(d) if d.len() == 20 => Ok(()),
            _ => Err("the {SHA} hash is not base64 of 20 bytes".into()),
        };
    }
    if hash.starts_with("$apr1$") {
        return match apr1_parts(hash) {
            Some(_) => Ok(()),
            None => Err("the $apr1$ hash is malformed".into()),
        };
    }
    if is_bcrypt_prefix(hash) {
        return match bcrypt_cost(hash) {
            Some(cost) if (4..=MAX_BCRYPT_COST).contains(&cost) && hash.len() == 60 => Ok(()),
            Some(cost) if cost > MAX_BCRYPT_COST => Err(format!(
                "bcrypt cost {cost} is above the {MAX_BCRYPT_COST} this gateway accepts"
            )),
            _ => Err("the bcrypt hash is malformed".into()),
        };
    }
    if is_des_crypt(hash) {
        return Err(
            "crypt(3) DES hashes are refused: they use only 8 characters of a password and are quickly brute-forced; have the user set a new password"
                .into(),
        );
    }
    if hash.starts_with('$') {
        return Err("this hash form is not supported (use {SHA}, $apr1$ or bcrypt)".into());
    }
    Err(
        "this looks like a plain-text password, which is refused; hash it first (htpasswd -B)"
            .into(),
    )
}

/// Verify `password` against an imported hash; unknown or malformed forms never verify.
pub fn verify(hash: &str, password: &str) -> bool {
    if let Some(b64) = hash.strip_prefix("{SHA}") {
        let Ok(expected) = STANDARD.decode(b64) else {
            return false;
        };
        let actual = Sha1::digest(password.as_bytes());
        return ct_eq(&expected, &actual);
    }
    if let Some((salt, _)) = apr1_parts(hash) {
        let computed = Zeroizing::new(apr1(password, salt));
        return ct_eq(computed.as_bytes(), hash.as_bytes());
    }
    if is_bcrypt_prefix(hash) {
        return check_hash(hash).is_ok() && bcrypt::verify(password, hash).unwrap_or(false);
    }
    false
}

fn is_bcrypt_prefix(hash: &str) -> bool {
    ["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p))
}

fn bcrypt_cost(hash: &str) -> Option<u32> {
    let cost = hash.get(4..6)?;
    if hash.get(6..7)? != "$" || !cost.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    cost.parse().ok()
}

/// crypt(3) DES: 13 characters of the crypt alphabet (2 of salt, 11 of hash).
fn is_des_crypt(hash: &str) -> bool {
    hash.len() == 13 && hash.bytes().all(is_crypt64)
}

const CRYPT64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn is_crypt64(b: u8) -> bool {
    CRYPT64.contains(&b)
}

/// `$apr1$SALT$HASH`: the salt (1-8 characters) and the 22-character hash.
fn apr1_parts(hash: &str) -> Option<(&str, &str)> {
    let (salt, digest) = hash.strip_prefix("$apr1$")?.split_once('$')?;
    let ok = (1..=8).contains(&salt.len())
        && salt.bytes().all(is_crypt64)
        && digest.len() == 22
        && digest.bytes().all(is_crypt64);
    ok.then_some((salt, digest))
}

/// Apache's MD5-crypt (Poul-Henning Kamp's md5crypt with the magic `$apr1$`): the whole
/// `$apr1$salt$hash` string for `password` and `salt`.
pub fn apr1(password: &str, salt: &str) -> String {
    const MAGIC: &[u8] = b"$apr1$";
    let pw = password.as_bytes();
    let salt = salt.as_bytes();

    let mut alt = Md5::new();
    alt.update(pw);
    alt.update(salt);
    alt.update(pw);
    let alt = alt.finalize();

    let mut ctx = Md5::new();
    ctx.update(pw);
    ctx.update(MAGIC);
    ctx.update(salt);
    for chunk in pw.chunks(16) {
        ctx.update(&alt[..chunk.len()]);
    }
    // "Then something really weird": one byte per bit of the length, 0 for a set bit, the
    // password's first byte for a clear one.
    let mut len = pw.len();
    while len > 0 {
        if len & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&pw[..1]);
        }
        len >>= 1;
    }
    let mut fin = ctx.finalize();

    // 1000 rounds, to slow a brute force down (by 1990s standards).
    for i in 0..1000 {
        let mut round = Md5::new();
        if i % 2 == 1 {
            round.update(pw);
        } else {
            round.update(fin);
        }
        if i % 3 != 0 {
            round.update(salt);
        }
        if i % 7 != 0 {
            round.update(pw);
        }
        if i % 2 == 1 {
            round.update(fin);
        } else {
            round.update(pw);
        }
        fin = round.finalize();
    }

    let f = |i: usize| u32::from(fin[i]);
    let mut out = String::with_capacity(37);
    out.push_str("$apr1$");
    out.push_str(std::str::from_utf8(salt).unwrap_or(""));
    out.push('$');
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        push_crypt64(&mut out, (f(a) << 16) | (f(b) << 8) | f(c), 4);
    }
    push_crypt64(&mut out, f(11), 2);
    out
}

fn push_crypt64(out: &mut String, mut v: u32, n: usize) {
    for _ in 0..n {
        out.push(char::from(CRYPT64[(v & 0x3f) as usize]));
        v >>= 6;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors made with Apache's own tools: `htpasswd -nbm`, `-nbs`, `-nbB -C 4`, and
    // `openssl passwd -apr1 -salt abcdefgh 'p@ss w0rd'`.
    const APR1: &str = "$apr1$hM1xLd85$AQBMXf1rlhss0MmkuVhqM.";
    const APR1_SALTED: &str = "$apr1$abcdefgh$UkZoB0qp2g9KE9.krwnMP0";
    const APR1_EMPTY: &str = "$apr1$9AEFqMel$.j5Dk1cNLk5Ai7NRC/vuD0";
    const SHA: &str = "{SHA}ho6gRrnwcRCV0vFHiD4sJJlnWw0=";
    const BCRYPT: &str = "$2y$04$bvwCFYEt4MUAJVY0pLOkKesubik0n6UzM.gXDLgNc3Tlo7RSZG6mC";

    /// apr1 reproduces Apache's hashes exactly, including the empty password.
    #[test]
    fn apr1_matches_apache() {
        assert_eq!(apr1("old apr pw", "hM1xLd85"), APR1);
        assert_eq!(apr1("p@ss w0rd", "abcdefgh"), APR1_SALTED);
        assert_eq!(apr1("", "9AEFqMel"), APR1_EMPTY);
    }

    /// Each imported form verifies its own password and nothing else.
    #[test]
    fn verifies_each_form() {
        for (hash, pw) in [
            (APR1, "old apr pw"),
            (SHA, "old sha pw"),
            (BCRYPT, "old bcrypt pw"),
            (&BCRYPT.replacen("$2y$", "$2b$", 1), "old bcrypt pw"),
            (&BCRYPT.replacen("$2y$", "$2a$", 1), "old bcrypt pw"),
        ] {
            assert!(check_hash(hash).is_ok(), "{hash}");
            assert!(verify(hash, pw), "{hash}");
            assert!(!verify(hash, "wrong"), "{hash}");
            assert!(!verify(hash, ""), "{hash}");
        }
        assert!(!verify("pw", "pw"), "plain text never verifies");
        assert!(!verify("btrTkziSn2Nac", "pw"), "DES never verifies");
        assert!(!verify("{SHA}!!", "pw"));
        assert!(!verify("$apr1$x", "pw"));
    }

    /// Plain text, DES, other `$` forms and absurd bcrypt costs are refused.
    #[test]
    fn refuses_weak_or_unknown_forms() {
        assert!(check_hash("pw").unwrap_err().contains("plain-text"));
        assert!(check_hash("btrTkziSn2Nac").unwrap_err().contains("DES"));
        assert!(
            check_hash("$1$abc$def")
                .unwrap_err()
                .contains("not supported")
        );
        let expensive = BCRYPT.replacen("$04$", "$31$", 1);
        assert!(check_hash(&expensive).unwrap_err().contains("cost 31"));
        assert!(
            !verify(&expensive, "old bcrypt pw"),
            "refused cost never runs"
        );
        assert!(check_hash("{SHA}YWJj").is_err(), "not 20 bytes");
    }

    /// Parsing reports every bad line by number and never echoes a refused value.
    #[test]
    fn parse_names_lines() {
        let text = format!(
            "# users\n\napr:{APR1}\r\nplain:hunter2\ndes:btrTkziSn2Nac\nnocolon\nsha:{SHA}\napr:{SHA}\n"
        );
        let problems = parse(&text).unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].starts_with("line 4: user \"plain\""));
        assert!(problems[1].starts_with("line 5: user \"des\""));
        assert!(problems[2].starts_with("line 6:"));
        assert!(problems[3].starts_with("line 8: user \"apr\" appears again"));
        assert!(problems.iter().all(|p| !p.contains("hunter2")));
        let ok = parse(&format!("a:{APR1}\nb:{SHA}\nc:{BCRYPT}\n")).unwrap();
        assert_eq!(ok.len(), 3);
        assert_eq!(ok[2].hash, BCRYPT);
    }
}

//! The portal's mail transport: where temporary passwords and notices go (SPEC §6).
//!
//! Without an SMTP server configured every message is one `.eml` file (RFC 5322, UTF-8
//! text) in the outbox directory, written to a temporary name and renamed, so a reader of
//! the directory never sees half a message. Files are readable by the owner only: they hold
//! temporary passwords. Message bodies are never logged.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Longest address accepted (RFC 5321 §4.5.3.1.3: a path holds at most 256 octets,
/// including the angle brackets).
pub const MAX_ADDRESS_BYTES: usize = 254;

/// One message to one recipient. Its Debug leaves out the body.
pub struct Message {
    pub to: String,
    pub subject: String,
    pub body: String,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("to", &self.to)
            .field("subject", &self.subject)
            .field("body", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("cannot write to the outbox {path}")]
    Outbox {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the SMTP relay refused or failed")]
    Smtp(#[source] lettre::transport::smtp::Error),
    #[error("refusing a header value holding a line break or a bad address")]
    BadHeader,
    #[error("the SMTP relay's settings are unusable: {0}")]
    Setup(String),
}

/// Longest wait for the SMTP relay, per connection step.
const SMTP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Is `s` one plain e-mail address, `local@domain`? Deliberately narrower than RFC 5322
/// (no quoted local parts, comments or display names): it becomes a user name and a mail
/// header, so anything that could break a header (CR, LF, other controls) or hide a second
/// address (`,`, `;`, `<`, `>`, spaces) is refused.
pub fn is_address(s: &str) -> bool {
    if s.is_empty() || s.len() > MAX_ADDRESS_BYTES {
        return false;
    }
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&b));
    let domain_ok = domain.contains('.') || domain == "localhost";
    let labels_ok = domain.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    local_ok && domain_ok && labels_ok
}

/// How the portal talks to its relay (`[portal.mail] smtp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// `smtp://`: plain SMTP, to a relay on this machine only.
    Plain,
    /// `smtps://`: TLS from the first byte (port 465 by default).
    Tls,
    /// `smtp+starttls://`: STARTTLS, required (port 587 by default).
    StartTls,
}

/// The relay from `[portal.mail] smtp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpRelay {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
}

const SMTP_URL_FORMS: &str = "must be smtps://host[:port], smtp+starttls://host[:port], or smtp://host[:port] for a relay on this machine";

/// Parse `smtps://host[:port]` (TLS, port 465 by default), `smtp+starttls://host[:port]`
/// (STARTTLS required, port 587) or `smtp://host[:port]` (port 25). Plain SMTP would carry
/// temporary passwords in clear text, so it is accepted only for a relay on loopback (a
/// local MTA, which may then use TLS onwards). With TLS the relay's certificate is checked
/// against the system's roots (and `ca_file`), for the host name given here.
pub fn parse_smtp_url(url: &str) -> Result<SmtpRelay, &'static str> {
    let (security, rest, default_port) = if let Some(rest) = url.strip_prefix("smtps://") {
        (SmtpSecurity::Tls, rest, 465)
    } else if let Some(rest) = url.strip_prefix("smtp+starttls://") {
        (SmtpSecurity::StartTls, rest, 587)
    } else if let Some(rest) = url.strip_prefix("smtp://") {
        (SmtpSecurity::Plain, rest, 25)
    } else {
        return Err(SMTP_URL_FORMS);
    };
    if rest.is_empty() || rest.contains(['/', '@', '?', '#']) {
        return Err("must be a host and an optional port, without user, path or query");
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && !p.contains(']') => {
            let port = p.parse::<u16>().ok().filter(|p| *p != 0);
            (h, port.ok_or("has a bad port")?)
        }
        _ => (rest, default_port),
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:".contains(&b))
    {
        return Err("has a bad host name");
    }
    if security != SmtpSecurity::Plain {
        // The name the certificate must carry: kept as written.
        return Ok(SmtpRelay {
            host,
            port,
            security,
        });
    }
    let loopback = host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return Err(
            "plain smtp:// is only for a relay on this machine (loopback), since it would carry temporary passwords in clear text: use smtps:// or smtp+starttls://",
        );
    }
    // Names under .localhost are loopback whatever the resolver says (RFC 6761).
    let host = if host.parse::<std::net::IpAddr>().is_ok() {
        host
    } else {
        "127.0.0.1".to_string()
    };
    Ok(SmtpRelay {
        host,
        port,
        security,
    })
}

/// The SMTP client for `relay`, trusting the system's roots and the certificates in
/// `ca_pem` (from `[portal.mail] ca_file`) for TLS. Also run by the config check, so a bad
/// `ca_file` is refused at start, not at the first registration.
pub fn smtp_transport(
    relay: &SmtpRelay,
    ca_pem: Option<&[u8]>,
    login: Option<&crate::config::SmtpLogin>,
    hello: &str,
) -> Result<lettre::SmtpTransport, String> {
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    let tls = match relay.security {
        SmtpSecurity::Plain => Tls::None,
        SmtpSecurity::Tls | SmtpSecurity::StartTls => {
            let mut params = TlsParameters::builder(relay.host.clone());
            if let Some(pem) = ca_pem {
                let certs = Certificate::from_pem(pem)
                    .map_err(|e| format!("cannot read its certificates: {e}"))?;
                params = params.add_root_certificate(certs);
            }
            let params = params
                .build_rustls()
                .map_err(|e| format!("cannot set up TLS: {e}"))?;
            if relay.security == SmtpSecurity::Tls {
                Tls::Wrapper(params)
            } else {
                Tls::Required(params)
            }
        }
    };
    let mut builder = lettre::SmtpTransport::builder_dangerous(relay.host.as_str());
    if let Some(login) = login {
        builder = builder.credentials(lettre::transport::smtp::authentication::Credentials::new(
            login.user.clone(),
            login.password.to_string(),
        ));
    }
    Ok(builder
        .port(relay.port)
        .tls(tls)
        .hello_name(lettre::transport::smtp::extension::ClientId::Domain(
            hello.to_string(),
        ))
        .timeout(Some(SMTP_TIMEOUT))
        .build())
}

/// How messages leave the portal: SMTP to a relay when configured, else the outbox.
pub struct Mailer {
    outbox: PathBuf,
    from: String,
    /// `Err`: the relay's TLS settings could not be made (the config check makes the same
    /// transport, so this is not expected); every message then fails, nothing goes out in
    /// clear.
    smtp: Option<Result<lettre::SmtpTransport, String>>,
}

impl Mailer {
    pub fn new(config: &crate::config::Mail, portal_host: &str) -> Self {
        let smtp = config.smtp.as_ref().map(|relay| {
            smtp_transport(
                relay,
                config.ca_pem.as_deref(),
                config.login.as_ref(),
                portal_host,
            )
        });
        Mailer {
            outbox: config.outbox.clone(),
            from: config.from.clone(),
            smtp,
        }
    }

    /// Deliver one message. Blocking (file or network I/O): call it off the reactor.
    pub fn send(&self, message: &Message) -> Result<(), MailError> {
        let text = self.render(message, now_secs())?;
        match &self.smtp {
            Some(Err(why)) => Err(MailError::Setup(why.clone())),
            Some(Ok(transport)) => {
                use lettre::Transport;
                let parse = |a: &str| {
                    a.parse::<lettre::Address>()
                        .map_err(|_| MailError::BadHeader)
                };
                let envelope = lettre::address::Envelope::new(
                    Some(parse(&self.from)?),
                    vec![parse(&message.to)?],
                )
                .map_err(|_| MailError::BadHeader)?;
                transport
                    .send_raw(&envelope, text.as_bytes())
                    .map(|_| ())
                    .map_err(MailError::Smtp)
            }
            None => write_outbox(&self.outbox, text.as_bytes()),
        }
    }

    fn render(&self, m: &Message, now: i64) -> Result<String, MailError> {
        if !is_address(&m.to) || !is_address(&self.from) || has_line_break(&m.subject) {
            return Err(MailError::BadHeader);
        }
        let id = hex(&crate::crypto::random_bytes::<12>());
        let domain = self.from.rsplit('@').next().unwrap_or("localhost");
        // Bodies are ours (fixed text plus an address and a password of safe characters):
        // line ends become CRLF. (Dot-stuffing is the SMTP client's job, not the file's.)
        let body: String = m.body.lines().map(|l| format!("{l}\r\n")).collect();
        Ok(format!(
            "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {date}\r\nMessage-ID: <{id}@{domain}>\r\n\
MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body}",
            from = self.from,
            to = m.to,
            subject = encode_subject(&m.subject),
            date = rfc5322_date(now),
        ))
    }
}

fn has_line_break(s: &str) -> bool {
    s.chars().any(|c| c.is_control())
}

/// ASCII subjects go as they are; others as one RFC 2047 base64 encoded-word.
fn encode_subject(s: &str) -> String {
    if s.is_ascii() {
        return s.to_string();
    }
    use base64::Engine;
    format!(
        "=?utf-8?b?{}?=",
        base64::engine::general_purpose::STANDARD.encode(s)
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `Date:` value (RFC 5322 §3.3) for a Unix time, in UTC.
fn rfc5322_date(unix: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let date = super::usage::Day::of_unix(unix);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[days.rem_euclid(7) as usize],
        date.day(),
        MONTHS[(date.month() - 1) as usize],
        date.year(),
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Write one message into `dir` atomically: a hidden temporary file, synced, then renamed
/// to `<unix time in ns>-<random>.eml`.
fn write_outbox(dir: &Path, text: &[u8]) -> Result<(), MailError> {
    let fail = |source| MailError::Outbox {
        path: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    // Names sort by time of writing (nanoseconds), then a random part against clashes.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let stem = format!("{nanos:020}-{}", hex(&crate::crypto::random_bytes::<8>()));
    let tmp = dir.join(format!(".{stem}.tmp"));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(format!("{stem}.eml")))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Addresses that could inject a header or a second recipient are refused.
    #[test]
    fn addresses() {
        for good in [
            "a@example.org",
            "first.last+tag@sub.example.co",
            "x@localhost",
        ] {
            assert!(is_address(good), "{good}");
        }
        for bad in [
            "",
            "plain",
            "a@b@example.org",
            "a@example.org\r\nBcc: x@y.org",
            "a@example.org\n",
            "a b@example.org",
            "<a@example.org>",
            "a@example.org,b@example.org",
            "a@",
            "@example.org",
            "a@-x.org",
            "a..b@example.org",
            "a@example..org",
            "ä@example.org",
        ] {
            assert!(!is_address(bad), "{bad:?}");
        }
        assert!(!is_address(&format!("{}@example.org", "a".repeat(250))));
    }

    /// Only plain SMTP to a loopback relay is accepted.
    #[test]
    fn smtp_urls() {
        let plain = |host: &str, port| {
            Ok(SmtpRelay {
                host: host.into(),
                port,
                security: SmtpSecurity::Plain,
            })
        };
        assert_eq!(
            parse_smtp_url("smtp://127.0.0.1:2525"),
            plain("127.0.0.1", 2525)
        );
        assert_eq!(parse_smtp_url("smtp://localhost"), plain("127.0.0.1", 25));
        assert_eq!(
            parse_smtp_url("smtp://mail.localhost:26"),
            plain("127.0.0.1", 26)
        );
        assert_eq!(parse_smtp_url("smtp://[::1]:25"), plain("::1", 25));
        // With TLS any relay will do; the name is kept for the certificate check.
        assert_eq!(
            parse_smtp_url("smtps://Mail.Example.org"),
            Ok(SmtpRelay {
                host: "mail.example.org".into(),
                port: 465,
                security: SmtpSecurity::Tls,
            })
        );
        assert_eq!(
            parse_smtp_url("smtp+starttls://mail.example.org:2587"),
            Ok(SmtpRelay {
                host: "mail.example.org".into(),
                port: 2587,
                security: SmtpSecurity::StartTls,
            })
        );
        assert_eq!(
            parse_smtp_url("smtp+starttls://mail.example.org").map(|r| r.port),
            Ok(587)
        );
        for bad in [
            "smtp://mail.example.org",
            "smtp://10.0.0.1:25",
            "smtp://user@127.0.0.1",
            "smtp://127.0.0.1:0",
            "smtp://127.0.0.1:99999",
            "smtp://127.0.0.1/x",
            "smtp://",
            "smtps://",
            "smtps://user:pw@mail.example.org",
            "smtps://mail example.org",
            "smtp+starttls://mail.example.org/x",
            "smtp+tls://mail.example.org",
            "127.0.0.1:25",
        ] {
            assert!(parse_smtp_url(bad).is_err(), "{bad}");
        }
    }

    /// Dates are RFC 5322 and right across leap years.
    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_764_098_595),
            "Tue, 25 Nov 2025 19:23:15 +0000"
        );
    }

    /// A message lands whole in the outbox, with only the owner able to read it.
    #[test]
    fn outbox_file() {
        let dir = tempfile::tempdir().unwrap();
        let mailer = Mailer {
            outbox: dir.path().join("out"),
            from: "gatehouse@auth.localhost".into(),
            smtp: None,
        };
        let m = Message {
            to: "new@example.org".into(),
            subject: "Your password".into(),
            body: "line\n.dot\n".into(),
        };
        mailer.send(&m).unwrap();
        let files: Vec<_> = std::fs::read_dir(dir.path().join("out"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1);
        assert!(files[0].extension().is_some_and(|e| e == "eml"));
        let text = std::fs::read_to_string(&files[0]).unwrap();
        assert!(text.starts_with("From: gatehouse@auth.localhost\r\nTo: new@example.org\r\n"));
        assert!(text.ends_with("\r\n\r\nline\r\n.dot\r\n"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&files[0]).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0);
        let bad = Message {
            to: "a@example.org\r\nBcc: x@y.org".into(),
            ..m
        };
        assert!(matches!(mailer.send(&bad), Err(MailError::BadHeader)));
    }
}

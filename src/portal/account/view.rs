//! The account page's HTML. Every value from the store, the config or the user is escaped.

use std::time::Duration;

use super::OwnIdle;
use crate::http::page::{Look, STYLESHEET_PATH, document, escape};
use crate::store::UserRecord;

/// One configured site (or one the account reached that is no longer configured).
pub struct SiteRow {
    pub id: String,
    /// Where the site is; `None` when it is no longer configured.
    pub origin: Option<String>,
    pub level: Option<u32>,
    /// Unix time of the account's first access, if any.
    pub first_access: Option<i64>,
}

/// One live session of the user.
pub struct SessionRow {
    /// The opaque reference its "sign out" form posts.
    pub reference: String,
    pub started: i64,
    pub last_active: i64,
    pub sites: Vec<String>,
    /// The session of the browser looking at the page.
    pub current: bool,
    pub basic: bool,
}

pub struct IdleView {
    /// The idle timeout in force (the user's own, or the default).
    pub current: Duration,
    /// Did the user (or an administrator) choose it, rather than the default?
    pub chosen: bool,
    pub own: OwnIdle,
}

pub struct AccountView<'a> {
    pub user: &'a UserRecord,
    pub csrf: &'a str,
    pub sites: Vec<SiteRow>,
    pub sessions: Vec<SessionRow>,
    /// The "Your devices" section, already HTML (see `super::devices`).
    pub devices: String,
    pub idle: IdleView,
    pub notice: Option<&'static str>,
    pub error: Option<&'a str>,
}

pub fn render(v: &AccountView) -> String {
    let notice = v
        .notice
        .map(|n| format!("<p role=\"status\">{}</p>", escape(n)))
        .unwrap_or_default();
    let main = format!(
        "{notice}<dl><dt>User</dt><dd>{name}</dd><dt>Account</dt><dd>{account}</dd><dt>Level</dt><dd>{level}</dd></dl>\
<h2>Your sites</h2>{sites}\
<h2>Active sessions</h2>{sessions}\
{devices}\
<h2>Idle timeout</h2>{idle}\
<h2>Password</h2><p><a href=\"/password\">Change your password</a></p>\
<form method=\"post\" action=\"/logout\">{csrf}<button type=\"submit\">Sign out of every site</button></form>",
        name = escape(&v.user.name),
        account = escape(&v.user.account),
        level = v.user.level.0,
        sites = sites(&v.sites),
        sessions = sessions(&v.sessions, v.csrf),
        devices = v.devices,
        idle = idle(&v.idle, v.csrf, v.error),
        csrf = hidden("csrf", v.csrf),
    );
    document("Your account", &main, &Look::default(), STYLESHEET_PATH)
}

pub(super) fn hidden(name: &str, value: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
        escape(name),
        escape(value)
    )
}

fn sites(rows: &[SiteRow]) -> String {
    if rows.is_empty() {
        return "<p class=\"muted\">No sites are configured.</p>".into();
    }
    let items: String = rows
        .iter()
        .map(|r| {
            let name = match &r.origin {
                Some(origin) => format!("<a href=\"{}/\">{}</a>", escape(origin), escape(&r.id)),
                None => format!(
                    "{} <span class=\"muted\">(no longer offered)</span>",
                    escape(&r.id)
                ),
            };
            let level = r.level.map(|l| format!("level {l}; ")).unwrap_or_default();
            let first = match r.first_access {
                Some(t) => format!("first used {}", utc(t)),
                None => "not used yet".into(),
            };
            format!("<li>{name}: <span class=\"muted\">{level}{first}</span></li>")
        })
        .collect();
    format!("<ul class=\"items\">{items}</ul>")
}

fn sessions(rows: &[SessionRow], csrf: &str) -> String {
    if rows.is_empty() {
        return "<p class=\"muted\">None.</p>".into();
    }
    let items: String = rows
        .iter()
        .map(|s| {
            let what = if s.basic { "API client (Basic)" } else { "Browser" };
            let this = if s.current { " <strong>(this session)</strong>" } else { "" };
            let sites = if s.sites.is_empty() {
                "no site yet".to_string()
            } else {
                s.sites.iter().map(|id| escape(id)).collect::<Vec<_>>().join(", ")
            };
            format!(
                "<li>{what}{this}<br><span class=\"muted\">signed in {started}, last active {last}; sites: {sites}</span>\
<form method=\"post\" action=\"/\">{csrf}{action}{reference}<button type=\"submit\">Sign out this session</button></form></li>",
                started = utc(s.started),
                last = utc(s.last_active),
                csrf = hidden("csrf", csrf),
                action = hidden("action", "end_session"),
                reference = hidden("session", &s.reference),
            )
        })
        .collect();
    format!("<ul class=\"items\">{items}</ul>")
}

fn idle(v: &IdleView, csrf: &str, error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    let now = if v.current.is_zero() {
        "no idle limit".to_string()
    } else {
        minutes(v.current)
    };
    let source = if v.chosen { "" } else { " (the default)" };
    let max_minutes = v.own.max.as_secs() / 60;
    let (min, zero_note) = if v.own.allow_none {
        (
            "0",
            " 0 means no idle limit (a sign-in still ends after its absolute limit).",
        )
    } else {
        ("1", "")
    };
    format!(
        "{error}<p>You are signed out after <strong>{now}</strong> without activity{source}.</p>\
<form method=\"post\" action=\"/\">{csrf}{action}\
<label for=\"idle_timeout\">Minutes without activity before you are signed out</label>\
<input type=\"number\" id=\"idle_timeout\" name=\"idle_timeout\" min=\"{min}\" max=\"{max_minutes}\" step=\"1\" value=\"{value}\" inputmode=\"numeric\" required>\
<p class=\"muted\">From 1 to {max_minutes} minutes.{zero_note} Every site applies it within one sync.</p>\
<button type=\"submit\">Save idle timeout</button></form>",
        csrf = hidden("csrf", csrf),
        action = hidden("action", "idle_timeout"),
        value = v.current.as_secs() / 60,
    )
}

/// "15 minutes", "1 minute", "90 seconds".
fn minutes(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 60, s % 60) {
        (1, 0) => "1 minute".into(),
        (m, 0) => format!("{m} minutes"),
        _ => format!("{s} seconds"),
    }
}

/// A Unix time as `YYYY-MM-DD HH:MM UTC` (proleptic Gregorian calendar).
pub(super) fn utc(secs: i64) -> String {
    let rem = secs.rem_euclid(86_400);
    format!(
        "{} {:02}:{:02} UTC",
        crate::portal::usage::Day::of_unix(secs),
        rem / 3600,
        rem % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix times print as UTC calendar dates, across leap years and the epoch.
    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13 UTC");
        assert_eq!(utc(4_107_542_399), "2100-02-28 23:59 UTC");
        assert_eq!(utc(-1), "1969-12-31 23:59 UTC");
    }

    /// Durations read as minutes where they are whole minutes.
    #[test]
    fn minute_texts() {
        assert_eq!(minutes(Duration::from_secs(60)), "1 minute");
        assert_eq!(minutes(Duration::from_secs(900)), "15 minutes");
        assert_eq!(minutes(Duration::from_secs(90)), "90 seconds");
    }
}

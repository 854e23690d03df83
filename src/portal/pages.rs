//! The portal's HTML: sign-in, sign-out and account pages. Plain, accessible forms (labels
//! tied to inputs, autocomplete hints, one heading each), styled by the shared stylesheet,
//! with the site's branding where the visit came from a branded site.

use crate::http::page::{Look, STYLESHEET_PATH, document, escape};
use crate::store::UserRecord;

/// Hidden fields that carry the hand-off through a form post.
#[derive(Debug, Clone, Default)]
pub struct Handoff {
    pub site: String,
    pub h: String,
    pub rd: String,
}

fn hidden(name: &str, value: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
        escape(name),
        escape(value)
    )
}

fn handoff_fields(h: Option<&Handoff>) -> String {
    match h {
        Some(h) => format!(
            "{}{}{}",
            hidden("site", &h.site),
            hidden("h", &h.h),
            hidden("rd", &h.rd)
        ),
        None => String::new(),
    }
}

/// A line above the sign-in form.
pub enum Notice<'a> {
    /// The last attempt failed.
    Error(&'a str),
    /// A signed-in user going to a derived site their session has no site password for:
    /// only the password they type can make one (SPEC §5).
    PasswordAgain,
}

pub fn login(
    look: &Look,
    csrf: &str,
    handoff: Option<&Handoff>,
    notice: Option<Notice>,
    username: &str,
) -> String {
    let error = match notice {
        Some(Notice::Error(e)) => format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)),
        Some(Notice::PasswordAgain) => "<p role=\"status\">This site logs you in with a password of its own, made from yours while you type it. Enter your password again to continue.</p>".to_string(),
        None => String::new(),
    };
    let site_note = handoff
        .map(|h| {
            format!(
                "<p class=\"muted\">to continue to <strong>{}</strong></p>",
                escape(&h.site)
            )
        })
        .unwrap_or_default();
    let main = format!(
        "{site_note}{error}<form method=\"post\" action=\"/login\">{csrf}{fields}\
<label for=\"username\">User name</label>\
<input type=\"text\" id=\"username\" name=\"username\" value=\"{username}\" autocomplete=\"username\" autocapitalize=\"none\" spellcheck=\"false\" required autofocus>\
<label for=\"password\">Password</label>\
<input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
<label class=\"check\"><input type=\"checkbox\" name=\"shared_computer\" value=\"1\"> This is a shared computer</label>\
<button type=\"submit\">Sign in</button></form>",
        csrf = hidden("csrf", csrf),
        fields = handoff_fields(handoff),
        username = escape(username),
    );
    document("Sign in", &main, look, STYLESHEET_PATH)
}

pub fn logout_confirm(csrf: &str, rd: &str, user: &str) -> String {
    let main = format!(
        "<p>Signed in as <strong>{user}</strong>.</p><form method=\"post\" action=\"/logout\">{csrf}{rd}\
<button type=\"submit\">Sign out of every site</button></form>",
        user = escape(user),
        csrf = hidden("csrf", csrf),
        rd = hidden("rd", rd),
    );
    document("Sign out", &main, &Look::default(), STYLESHEET_PATH)
}

pub fn signed_out(back: Option<&str>) -> String {
    let link = back
        .map(|b| format!("<p><a href=\"{}\">Back to the site</a></p>", escape(b)))
        .unwrap_or_default();
    let main = format!("<p>You are signed out of every site.</p>{link}");
    document("Signed out", &main, &Look::default(), STYLESHEET_PATH)
}

pub fn account(user: &UserRecord, csrf: &str, sites: &[(String, String)]) -> String {
    let levels: String = sites
        .iter()
        .map(|(id, origin)| {
            format!(
                "<dt><a href=\"{}/\">{}</a></dt><dd>level {}</dd>",
                escape(origin),
                escape(id),
                user.level_on(id)
            )
        })
        .collect();
    let main = format!(
        "<dl><dt>User</dt><dd>{name}</dd><dt>Account</dt><dd>{account}</dd><dt>Level</dt><dd>{level}</dd></dl>\
<h2>Sites</h2><dl>{levels}</dl>\
<form method=\"post\" action=\"/logout\">{csrf}<button type=\"submit\">Sign out of every site</button></form>",
        name = escape(&user.name),
        account = escape(&user.account),
        level = user.level,
        csrf = hidden("csrf", csrf),
    );
    document("Your account", &main, &Look::default(), STYLESHEET_PATH)
}

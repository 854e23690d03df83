//! The portal's HTML: sign-in, registration, password and sign-out pages (the account
//! page's is in `account/view.rs`). Plain, accessible forms (labels tied to inputs,
//! autocomplete hints, one heading each), styled by the shared stylesheet, with the site's
//! branding where the visit came from a branded site.

use crate::http::page::{Look, STYLESHEET_PATH, document, escape};

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
    registration: bool,
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
<button type=\"submit\">Sign in</button></form>{register}",
        csrf = hidden("csrf", csrf),
        fields = handoff_fields(handoff),
        username = escape(username),
        register = if registration {
            register_link(handoff)
        } else {
            String::new()
        },
    );
    document("Sign in", &main, look, STYLESHEET_PATH)
}

/// "New user?" below the sign-in form of a site open to self-registration; the link keeps
/// the hand-off so the new user lands where they were going.
fn register_link(handoff: Option<&Handoff>) -> String {
    let query = handoff.map_or_else(String::new, |h| {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("site", &h.site)
            .append_pair("h", &h.h)
            .append_pair("rd", &h.rd)
            .finish()
    });
    format!(
        "<p class=\"muted\">New user? <a href=\"/register?{}\">Register with your e-mail address</a></p>",
        escape(&query)
    )
}

/// The self-registration form (field `email`).
pub fn register(
    look: &Look,
    csrf: &str,
    handoff: Option<&Handoff>,
    error: Option<&str>,
    email: &str,
) -> String {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    let main = format!(
        "{error}<p>Give your e-mail address. We send you a temporary password there; with it you sign in once and choose your own.</p>\
<form method=\"post\" action=\"/register\">{csrf}{fields}\
<label for=\"email\">E-mail address</label>\
<input type=\"email\" id=\"email\" name=\"email\" value=\"{email}\" autocomplete=\"email\" autocapitalize=\"none\" spellcheck=\"false\" maxlength=\"254\" required autofocus>\
<button type=\"submit\">Register</button></form>",
        csrf = hidden("csrf", csrf),
        fields = handoff_fields(handoff),
        email = escape(email),
    );
    document("New user", &main, look, STYLESHEET_PATH)
}

/// The answer to a registration: the same whether or not the address was known.
pub fn registered(look: &Look, email: &str, login: &str) -> String {
    let main = format!(
        "<p role=\"status\">If <strong>{email}</strong> can receive mail, a message is on its way there. \
It holds a temporary password, or a note if the address is already registered.</p>\
<p><a href=\"{login}\">Sign in</a></p>",
        email = escape(email),
        login = escape(login),
    );
    document("Check your mail", &main, look, STYLESHEET_PATH)
}

/// Which password the change form asks for first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// After signing in with a temporary password.
    Temporary,
    /// A signed-in user changing their own password.
    Current,
}

/// The password change form (fields `temporary_password` or `current_password`,
/// `new_password`, `confirm_password`).
pub fn change_password(
    look: &Look,
    csrf: &str,
    handoff: Option<&Handoff>,
    proof: Proof,
    error: Option<&str>,
    min_len: usize,
) -> String {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    let (intro, field, label) = match proof {
        Proof::Temporary => (
            "<p>You signed in with a temporary password. Choose your own to continue.</p>",
            "temporary_password",
            "Temporary password",
        ),
        Proof::Current => ("", "current_password", "Current password"),
    };
    let main = format!(
        "{intro}{error}<form method=\"post\" action=\"/password\">{csrf}{fields}\
<label for=\"{field}\">{label}</label>\
<input type=\"password\" id=\"{field}\" name=\"{field}\" autocomplete=\"current-password\" required autofocus>\
<label for=\"new_password\">New password</label>\
<input type=\"password\" id=\"new_password\" name=\"new_password\" autocomplete=\"new-password\" minlength=\"{min_len}\" required>\
<p class=\"muted\">At least {min_len} characters.</p>\
<label for=\"confirm_password\">New password again</label>\
<input type=\"password\" id=\"confirm_password\" name=\"confirm_password\" autocomplete=\"new-password\" minlength=\"{min_len}\" required>\
<button type=\"submit\">Change password</button></form>",
        csrf = hidden("csrf", csrf),
        fields = handoff_fields(handoff),
    );
    document("Choose a password", &main, look, STYLESHEET_PATH)
}

/// After a change on the portal: the other sessions are gone.
pub fn password_changed() -> String {
    let main = "<p role=\"status\">Your password is changed. Every other place you were signed in has been signed out.</p>\
<p><a href=\"/\">Your account</a></p>";
    document("Password changed", main, &Look::default(), STYLESHEET_PATH)
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

/// The offer to link accounts (`/link`): the accounts seen on this browser, one to choose,
/// its password (field `password`), and "keep apart". Only account names are shown.
pub fn link(
    look: &Look,
    csrf: &str,
    handoff: Option<&Handoff>,
    account: &str,
    candidates: &[String],
    error: Option<&str>,
) -> String {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    let only = candidates.len() == 1;
    let choices: String = candidates
        .iter()
        .enumerate()
        .map(|(i, name)| {
            format!(
                "<label class=\"check\" for=\"account-{i}\"><input type=\"radio\" name=\"account\" value=\"{name}\" id=\"account-{i}\" required{checked}> {name}</label>",
                name = escape(name),
                checked = if only { " checked" } else { "" },
            )
        })
        .collect();
    let main = format!(
        "<p>Signed in as account <strong>{account}</strong>. This browser was also used to sign in to the account{s} below.</p>\
<p>If {they} yours too, you can link them: your account <strong>{account}</strong> becomes part of the one you choose, with its users, sites and usage, and you sign in as before. You need the password of the account you choose.</p>\
{error}<form method=\"post\" action=\"/link\">{csrf}{fields}\
<fieldset><legend>Link with</legend>{choices}</fieldset>\
<label for=\"password\">Password of the account you chose</label>\
<input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"off\">\
<button type=\"submit\" name=\"choice\" value=\"link\">Link the accounts</button>\
<button type=\"submit\" name=\"choice\" value=\"apart\" formnovalidate>Keep them apart</button></form>\
<p class=\"muted\">Keeping them apart is remembered on this browser: you will not be asked again here.</p>",
        account = escape(account),
        s = if only { "" } else { "s" },
        they = if only { "it is" } else { "one of them is" },
        csrf = hidden("csrf", csrf),
        fields = handoff_fields(handoff),
    );
    document("Link your accounts?", &main, look, STYLESHEET_PATH)
}

//! SPEC §3 step 4 end to end: redirect targets handed to the portal's `/login?rd=…` travel to
//! the site's `/.gatehouse/callback?rd=…`, which follows only an allowed one. Every known
//! bypass string in `tests/data/open-redirects.txt` lands on "/", and no CR/LF ever reaches a
//! `Location` header.

mod common;

use common::*;
use gatehouse::crypto::Identifier;

const LIST: &str = include_str!("data/open-redirects.txt");

/// The list's targets, with the placeholder for a trusted host and the port 8443 the list is
/// written for replaced by this gateway's (so `trusted@evil` shapes aim at the real allow-list).
fn bypass_targets(port: u16) -> Vec<String> {
    LIST.lines()
        .filter(|l| !(l.is_empty() || *l == "#" || l.starts_with("# ")))
        .map(|l| {
            l.replace("www.whitelisteddomain.tld", "app.localhost:8443")
                .replace(":8443", &format!(":{port}"))
        })
        .collect()
}

/// One percent-decoding round, as a careless layer in front of the checker might do.
fn decoded(target: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let bytes = target.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// Hand `rd` (any bytes) to the portal for a browser signed in there, follow the code to the
/// app's callback, and return where the callback sends the browser.
async fn landing(browser: &Client, gw: &Gateway, rd: &[u8]) -> String {
    let site_cookie = Identifier::new();
    browser.set_cookie("app.localhost", "__Host-gatehouse", site_cookie.as_str());
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("site", "app")
        .append_pair("h", &site_cookie.hash().to_b64())
        .finish();
    let rd: String = form_urlencoded::byte_serialize(rd).collect();
    let minted = browser
        .get(&gw.url("auth.localhost", &format!("/login?{query}&rd={rd}")))
        .await;
    assert_eq!(minted.status, 303, "{minted:?}");
    let callback = minted.location().unwrap();
    assert!(
        callback.starts_with(&gw.url("app.localhost", "/.gatehouse/callback?code=")),
        "{callback}"
    );
    let landed = browser.get(&callback).await;
    assert_eq!(landed.status, 302, "{landed:?}");
    for res in [&minted, &landed] {
        assert!(
            res.headers
                .get("set-cookie")
                .is_none_or(|c| { !c.as_bytes().windows(3).any(|w| w == b"gh=") })
        );
        for value in res.headers.get_all("location") {
            assert!(
                !value.as_bytes().iter().any(|b| matches!(b, b'\r' | b'\n')),
                "CR/LF in Location: {value:?}"
            );
        }
    }
    landed.header("location").unwrap().to_string()
}

/// Allowed targets are followed: a same-site path, and an https URL on another configured site
/// at the public port. (So the refusals below are the checker's, not a callback that always
/// says "/".)
#[tokio::test]
async fn allowed_targets_followed() {
    let (_backend, gw) = two_sites().await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    assert_eq!(
        landing(&browser, &gw, b"/docs/a?b=1#c").await,
        "/docs/a?b=1#c"
    );
    let wiki = gw.url("wiki.localhost", "/w");
    assert_eq!(landing(&browser, &gw, wiki.as_bytes()).await, wiki);
}

/// Every known bypass string, as given and once percent-decoded, lands on "/".
#[tokio::test]
async fn known_bypass_strings_land_on_default_page() {
    let (backend, gw) = two_sites().await;
    let browser = signed_in_browser(&gw, "app.localhost", "alice", "alice-pw").await;
    let targets = bypass_targets(gw.port);
    assert!(targets.len() >= 300, "{} targets", targets.len());
    let mut followed = Vec::new();
    let mut tried = 0;
    for target in &targets {
        let once = decoded(target);
        let forms: &[&[u8]] = if once == target.as_bytes() {
            &[target.as_bytes()]
        } else {
            &[target.as_bytes(), &once]
        };
        for form in forms {
            tried += 1;
            let location = landing(&browser, &gw, form).await;
            if location != "/" {
                followed.push(format!("{:?} -> {location}", String::from_utf8_lossy(form)));
            }
        }
    }
    assert!(followed.is_empty(), "followed:\n{}", followed.join("\n"));
    assert!(tried > targets.len());
    // Only the sign-in itself reached the backend; no target was ever proxied.
    assert_eq!(backend.count(), 1);
}

/// The portal's own sign-out page offers "Back to the site" only to an allowed target: for
/// every bypass string the link is "/".
#[tokio::test]
async fn sign_out_page_links_only_allowed_targets() {
    let (_backend, gw) = two_sites().await;
    let browser = gw.client();
    let back = |res: &Resp| {
        let start = res.body.find("<p><a href=\"").map(|i| i + 12)?;
        let end = res.body[start..].find('"')? + start;
        Some(res.body[start..end].to_string())
    };
    let allowed = gw.url("wiki.localhost", "/w");
    let rd: String = form_urlencoded::byte_serialize(allowed.as_bytes()).collect();
    let res = browser
        .get(&gw.url("auth.localhost", &format!("/logout?rd={rd}")))
        .await;
    assert_eq!(back(&res).as_deref(), Some(allowed.as_str()), "{res:?}");
    let mut followed = Vec::new();
    for target in bypass_targets(gw.port) {
        let rd: String = form_urlencoded::byte_serialize(target.as_bytes()).collect();
        let res = browser
            .get(&gw.url("auth.localhost", &format!("/logout?rd={rd}")))
            .await;
        assert_eq!(res.status, 200, "{target:?}: {res:?}");
        if back(&res).as_deref() != Some("/") {
            followed.push(format!("{target:?} -> {:?}", back(&res)));
        }
    }
    assert!(followed.is_empty(), "linked:\n{}", followed.join("\n"));
}

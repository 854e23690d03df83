//! Cookie parsing: one fast path and one general path must agree on which session cookie a
//! request carries, and stripping our cookies leaves none of them and every other crumb.
#![no_main]

use gatehouse::http::cookies::{Found, PORTAL, SITE, find, strip_ours};
use http::header::{COOKIE, HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

/// Application crumbs (not ours) in order, as the backend should receive them.
fn app_crumbs(headers: &HeaderMap) -> Vec<Vec<u8>> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .map(<[u8]>::trim_ascii)
        .filter(|c| !c.is_empty())
        .filter(|c| {
            let name = c.split(|b| *b == b'=').next().unwrap_or(&[]);
            !name.trim_ascii().starts_with(SITE.as_bytes())
        })
        .map(<[u8]>::to_vec)
        .collect()
}

fuzz_target!(|data: &[u8]| {
    // Fields separated by '\n', each a Cookie header value.
    let mut headers = HeaderMap::new();
    for field in data.split(|b| *b == b'\n') {
        if let Ok(v) = HeaderValue::from_bytes(field) {
            headers.append(COOKIE, v);
        }
    }
    // An extra empty field forces the general path; the answer must not change.
    let mut general = headers.clone();
    general.append(COOKIE, HeaderValue::from_static(""));
    for name in [SITE, PORTAL] {
        assert_eq!(
            find(&headers, name),
            find(&general, name),
            "{name} in {headers:?}"
        );
    }

    let kept = app_crumbs(&headers);
    let mut stripped = headers.clone();
    strip_ours(&mut stripped);
    assert!(stripped.get_all(COOKIE).iter().count() <= 1, "{stripped:?}");
    for name in [SITE, PORTAL] {
        assert_eq!(
            find(&stripped, name),
            Found::None,
            "{headers:?} -> {stripped:?}"
        );
    }
    assert_eq!(app_crumbs(&stripped), kept, "{headers:?} -> {stripped:?}");
    let mut again = stripped.clone();
    strip_ours(&mut again);
    assert_eq!(again, stripped, "strip_ours is idempotent");
});

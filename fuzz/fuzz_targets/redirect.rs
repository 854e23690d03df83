//! Redirect-target checking: whatever is accepted is on an allowed host over https, or a
//! same-site path; it holds no CR/LF or other byte unfit for a `Location` header; and it
//! survives being checked again unchanged.
#![no_main]

use gatehouse::http::redirect::{Target, check};
use libfuzzer_sys::fuzz_target;

const HOSTS: [&str; 3] = ["app.localhost", "wiki.localhost", "auth.localhost"];

fn allowed(host: &str, port: Option<u16>) -> bool {
    HOSTS.contains(&host) && port.unwrap_or(443) == 8443
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Some(target) = check(raw, &allowed) else {
        return;
    };
    let out = target.as_str();
    assert!(
        out.bytes().all(|b| b.is_ascii_graphic()),
        "{raw:?} -> {out:?}: a byte unfit for a header"
    );
    assert!(!out.contains('\\'), "{raw:?} -> {out:?}");
    match &target {
        Target::Local(path) => {
            assert_eq!(path, raw, "a local target is passed on verbatim");
            assert!(path.starts_with('/') && !path.starts_with("//"), "{raw:?}");
        }
        Target::Absolute(url) => {
            let rest = url.strip_prefix("https://").expect("https only");
            let authority = rest.split('/').next().unwrap_or("");
            assert!(
                HOSTS.iter().any(|h| authority == format!("{h}:8443")),
                "{raw:?} -> {url:?}: host or port not allowed"
            );
            assert!(!authority.contains('@'), "{raw:?}: user-info");
            assert_eq!(url, raw, "an absolute target must round-trip unchanged");
        }
    }
    assert_eq!(check(out, &allowed), Some(target.clone()), "{raw:?}");
});

//! Header scrubbing and injection: after the gateway is done, the backend sees exactly one
//! value under every name any backend could read as an identity header (the gateway's),
//! no hop-by-hop header, no other sign-in gateway's identity header, and Host and
//! X-Forwarded-* as the gateway set them. The framing
//! check never panics on the same headers.
#![no_main]

use gatehouse::config::IdentityHeaders;
use gatehouse::http::framing;
use gatehouse::http::header_names::{HOP_BY_HOP, fold};
use gatehouse::http::headers::{Identity, Scrubber, inject, scrub_request};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Lines of `name: value`; lines the http types refuse are skipped, as hyper would refuse
    // them before the gateway sees them.
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            headers.append(n, v);
        }
    }
    let _ = framing::check_headers(http::Version::HTTP_11, &headers);

    let names = IdentityHeaders {
        user: HeaderName::from_static("x-auth-user"),
        level: HeaderName::from_static("x-auth-level"),
        account: HeaderName::from_static("x-auth-account"),
    };
    let (user, level, account) = (
        HeaderValue::from_static("alice"),
        HeaderValue::from_static("3"),
        HeaderValue::from_static("acct-1"),
    );
    // The gateway's own backend credential (SPEC §5): whatever the client sent under any
    // alias, exactly this one must reach the backend.
    let authorization = HeaderValue::from_static("Basic Z2F0ZWhvdXNlOnNw");
    let peer = HeaderValue::from_static("192.0.2.1");
    let host = HeaderValue::from_static("app.localhost:8443");
    scrub_request(&mut headers, &Scrubber::new(&names));
    inject(
        &mut headers,
        &names,
        Identity {
            user: user.clone(),
            level: &level,
            account: account.clone(),
            authorization: Some(&authorization),
        },
        &peer,
        &host,
    );

    let expect = [
        ("x-auth-user", &user),
        ("x-auth-level", &level),
        ("x-auth-account", &account),
        ("x-forwarded-for", &peer),
        ("x-forwarded-host", &host),
        ("host", &host),
        ("authorization", &authorization),
    ];
    for (name, value) in &expect {
        let all: Vec<&HeaderValue> = headers.get_all(*name).iter().collect();
        assert_eq!(all, [*value], "{name}: {headers:?}");
    }
    assert_eq!(
        headers
            .get_all("x-forwarded-proto")
            .iter()
            .collect::<Vec<_>>(),
        [&HeaderValue::from_static("https")]
    );
    for name in headers.keys() {
        let folded = fold(name.as_str());
        // Any other name that folds onto one we set is an alias a backend could read.
        for (ours, _) in &expect {
            assert!(
                folded != fold(ours) || name.as_str() == *ours,
                "alias {name} survived: {headers:?}"
            );
        }
        assert!(!HOP_BY_HOP.contains(&folded.as_str()), "{name} survived");
        for gone in [
            "forwarded",
            "x-original-url",
            "x-rewrite-url",
            "x-real-ip",
            "proxy",
            "remote-user",
        ] {
            assert_ne!(folded, gone, "{name} survived");
        }
        // Of the forwarding and other gateways' identity prefixes, only what the gateway set.
        for prefix in ["x-forwarded-", "x-auth-request-", "x-remote-"] {
            assert!(
                !folded.starts_with(prefix)
                    || ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"]
                        .contains(&name.as_str()),
                "{name} survived"
            );
        }
    }
});

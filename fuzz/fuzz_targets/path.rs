//! Path normalisation: whatever it accepts is in normal form (idempotent, no dot or empty
//! segment, no escape it should have refused), and rule matching agrees with it.
#![no_main]

use std::borrow::Cow;

use gatehouse::http::path::{normalize, prefix_matches};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(path) = normalize(raw) else {
        return;
    };
    assert!(path.starts_with('/'), "{raw:?} -> {path:?}");
    assert!(path.is_ascii(), "{raw:?} -> {path:?}");
    // Normal form: normalising again changes nothing.
    match normalize(&path) {
        Ok(again) => assert_eq!(again, path, "{raw:?}"),
        Err(e) => panic!("{raw:?} -> {path:?} -> {e:?}"),
    }
    // What the fast path passes through untouched is its own normal form.
    if let Cow::Borrowed(same) = &path {
        assert_eq!(*same, raw);
    }
    // No dot or empty segment survives (the last may be empty: a trailing slash).
    let segments: Vec<&str> = path[1..].split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        assert!(*seg != "." && *seg != "..", "{raw:?} -> {path:?}");
        assert!(
            !seg.is_empty() || i + 1 == segments.len(),
            "{raw:?} -> {path:?}"
        );
    }
    for bad in [
        "/../", "/./", "//", "\\", "%2F", "%2f", "%5C", "%5c", "%00", "#", "?",
    ] {
        assert!(!path.contains(bad), "{raw:?} -> {path:?} holds {bad:?}");
    }
    // A path always falls under "/" and under its own first segment, whatever the case
    // (rules holding ';' or %3B are refused by the config, so none is tried here).
    assert!(prefix_matches(&path, "/", true));
    let no_params = |s: &&&str| !s.contains(';') && !s.to_ascii_lowercase().contains("%3b");
    if let Some(first) = segments.first().filter(|s| !s.is_empty()).filter(no_params) {
        let prefix = format!("/{first}");
        assert!(prefix_matches(&path, &prefix, true), "{path:?} {prefix:?}");
        assert!(prefix_matches(&path, &prefix.to_ascii_uppercase(), false));
    }
});

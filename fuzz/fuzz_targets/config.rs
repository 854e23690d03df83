//! Config parsing: any text gives a config or a list of errors, never a panic; every error
//! points inside the text; and an accepted config keeps the promises SPEC §2 makes (unique
//! site ids and hosts, none equal to the portal's).
#![no_main]

use std::collections::HashSet;
use std::path::Path;

use gatehouse::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // As if it were the repository's config.toml, so that `certs/localhost.crt` and the
    // like resolve to real files and a good config can pass.
    let file = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../config.toml"));
    match Config::parse(file, text) {
        Err(errors) => {
            assert!(!errors.0.is_empty());
            let lines = text.split('\n').count();
            for e in &errors.0 {
                if let Some((line, col)) = e.position {
                    assert!(line >= 1 && line <= lines && col >= 1, "{e}");
                }
            }
            let _ = errors.to_string();
        }
        Ok(config) => {
            let mut ids = HashSet::new();
            let mut hosts = HashSet::new();
            for site in &config.sites {
                assert!(ids.insert(site.id.0.clone()), "duplicate id {}", site.id.0);
                assert!(
                    hosts.insert(site.host.clone()),
                    "duplicate host {}",
                    site.host
                );
                assert_ne!(site.host, config.portal.host);
            }
        }
    }
});

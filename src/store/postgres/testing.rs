//! Databases for tests: each test gets a fresh, empty database on the test server that
//! `./scripts/test` starts (`scripts/postgres-for-tests`), named in
//! `GATEHOUSE_TEST_POSTGRES` (a URL to its `postgres` database, with rights to create
//! others). Not used by the product.

use std::fmt::Write;

use postgres::NoTls;

/// The variable `./scripts/test` sets.
pub const SERVER_VARIABLE: &str = "GATEHOUSE_TEST_POSTGRES";

/// A URL to a new, empty database of its own. Panics (failing the test, never skipping
/// it) when there is no test server.
pub fn fresh_database() -> String {
    let server = std::env::var(SERVER_VARIABLE).unwrap_or_else(|_| {
        panic!(
            "{SERVER_VARIABLE} is not set: run the tests with ./scripts/test, which starts a PostgreSQL server for them"
        )
    });
    let mut client = postgres::Client::connect(&server, NoTls)
        .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL server at {server}: {e}"));
    let mut name = String::from("gatehouse_test_");
    for b in crate::crypto::ids::random_bytes::<8>() {
        let _ = write!(name, "{b:02x}");
    }
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
    let (base, _) = server
        .rsplit_once('/')
        .expect("the test server URL ends in /DATABASE");
    format!("{base}/{name}")
}

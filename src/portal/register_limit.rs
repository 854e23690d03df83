//! How many registration mails may go out: per e-mail address and per client address, in
//! fixed windows of an hour. Without it, anyone could have the portal mail one address
//! again and again (every request for a known address sends a notice), or flood the store
//! with accounts from one machine.
//!
//! The limit counts requests, not outcomes: a known and an unknown address are held alike,
//! so a refusal tells nothing about who is registered.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use moka::sync::Cache;

/// The window, counted from the first request.
pub const WINDOW: Duration = Duration::from_secs(3600);
/// Counters kept at most per kind; past this the oldest are forgotten.
const CAPACITY: u64 = 65_536;

pub struct RegistrationLimit {
    /// Registration mails to one address per window (`per_address`, default 3: a user
    /// whose mail got lost can ask again a couple of times), and registrations from one
    /// client address, IPv6 by its /64 (`per_client`, default 20).
    limits: crate::config::RegistrationLimit,
    emails: Cache<String, Arc<AtomicU32>>,
    clients: Cache<Vec<u8>, Arc<AtomicU32>>,
}

impl RegistrationLimit {
    pub fn new(limits: crate::config::RegistrationLimit) -> Self {
        RegistrationLimit {
            limits,
            emails: window(),
            clients: window(),
        }
    }
}

fn window<K>() -> Cache<K, Arc<AtomicU32>>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
{
    Cache::builder()
        .max_capacity(CAPACITY)
        .time_to_live(WINDOW)
        .build()
}

impl RegistrationLimit {
    /// Count one registration request for `email` from `client`; `false` when either is
    /// over its budget for this window (then nothing may be sent).
    pub fn allow(&self, email: &str, client: IpAddr) -> bool {
        let client = super::throttle::address_bytes(client);
        let by_client = self
            .clients
            .get_with(client, || Arc::new(AtomicU32::new(0)))
            .fetch_add(1, Ordering::Relaxed);
        let by_email = self
            .emails
            .get_with(email.to_string(), || Arc::new(AtomicU32::new(0)))
            .fetch_add(1, Ordering::Relaxed);
        by_client < self.limits.per_client && by_email < self.limits.per_address
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each address and each client gets its budget; another address or client is apart.
    #[test]
    fn budgets_per_address_and_client() {
        let limit = RegistrationLimit::new(crate::config::RegistrationLimit::default());
        const PER_EMAIL: u32 = 3;
        const PER_CLIENT: u32 = 20;
        let me: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..PER_EMAIL {
            assert!(limit.allow("ann@example.org", me));
        }
        assert!(!limit.allow("ann@example.org", me));
        assert!(!limit.allow("ann@example.org", "192.0.2.2".parse().unwrap()));
        assert!(limit.allow("bob@example.org", me));

        let far: IpAddr = "2001:db8::1".parse().unwrap();
        for i in 0..PER_CLIENT {
            assert!(limit.allow(&format!("u{i}@example.org"), far));
        }
        // The same /64 is the same client.
        assert!(!limit.allow("new@example.org", "2001:db8::2".parse().unwrap()));
        assert!(limit.allow("new@example.org", "2001:db8:1::2".parse().unwrap()));
    }
}

//! [`Store`] on PostgreSQL: the same contract as `sqlite.rs`, method for method.
#![allow(unused_variables)] // skeleton

use std::collections::BTreeMap;
use std::time::Duration;

use super::PgStore;
use crate::config::Level;
use crate::crypto::IdHash;
use crate::store::{
    AccountNode, AccountUsage, NewUser, SessionWrites, Store, StoreError, StoredSession, UsageRow,
    UserRecord,
};

impl Store for PgStore {
    fn user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        unimplemented!("skeleton: the PostgreSQL port comes next")
    }
    fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        unimplemented!("skeleton: the PostgreSQL port comes next")
    }
    fn upsert_user(&self, user: &NewUser) -> Result<bool, StoreError> {
        unimplemented!("skeleton: the PostgreSQL port comes next")
    }
    fn add_user(&self, user: &NewUser) -> Result<bool, StoreError> {
        unimplemented!("skeleton: the PostgreSQL port comes next")
    }
    fn register_user(&self, user: &NewUser, temporary_until: i64) -> Result<bool, StoreError> {
        unimplemented!("skeleton: the PostgreSQL port comes next")
    }
    fn set_password(&self, name: &str, password_hash: &str) -> Result<bool, StoreError> {
        unimplemented!("skeleton: the PostgreSQL port comes next")
    }
    fn replace_password(&self, name: &str, old: &str, new: &str) -> Result<bool, StoreError> {
        unimplemented!("skeleton: the PostgreSQL port comes next")
    }
    fn record_site_access(&self, account: &str, site: &str, at: i64) -> Result<bool, StoreError> {
        unimplemented!("skeleton: the PostgreSQL port comes next")
    }
    fn account_sites(&self, account: &str) -> Result<Vec<(String, i64)>, StoreError> {
        unimplemented!("skeleton: the PostgreSQL port comes next")
    }
    fn upgrade_password_hash(&self, name: &str, old: &str, new: &str) -> Result<bool, StoreError> {
        unimplemented!("skeleton: the PostgreSQL port comes next")
    }
    fn set_level(
        &self,
        name: &str,
        level: Level,
        site_levels: Option<&BTreeMap<String, Level>>,
    ) -> Result<bool, StoreError> {
        unimplemented!("skeleton: the PostgreSQL port comes next")
    }
    fn set_disabled(&self, name: &str, disabled: bool) -> Result<bool, StoreError> {
        unimplemented!("skeleton: the PostgreSQL port comes next")
    }
    fn set_idle_timeout(&self, name: &str, idle: Option<Duration>) -> Result<bool, StoreError> {
        unimplemented!("skeleton: the PostgreSQL port comes next")
    }
    fn account_nodes(&self, account: &str) -> Result<Vec<AccountNode>, StoreError> {
        unimplemented!("skeleton: the PostgreSQL port comes next")
    }
    fn forget_node(&self, account: &str, node: i64) -> Result<bool, StoreError> {
        unimplemented!("skeleton: the PostgreSQL port comes next")
    }
    fn remove_user(&self, name: &str) -> Result<bool, StoreError> {
        unimplemented!("skeleton: the PostgreSQL port comes next")
    }
    fn users_changed_since(&self, revision: i64) -> Result<(Vec<String>, i64), StoreError> {
        unimplemented!("skeleton: the PostgreSQL port comes next")
    }
    fn note_node_account(
        &self,
        node: &IdHash,
        account: &str,
        at: i64,
    ) -> Result<Vec<String>, StoreError> {
        unimplemented!("skeleton: the PostgreSQL port comes next")
    }
    fn link_candidates(&self, node: &IdHash, account: &str) -> Result<Vec<String>, StoreError> {
        unimplemented!("skeleton: the PostgreSQL port comes next")
    }
    fn keep_apart(
        &self,
        node: &IdHash,
        account: &str,
        others: &[String],
        at: i64,
    ) -> Result<(), StoreError> {
        unimplemented!("skeleton: the PostgreSQL port comes next")
    }
    fn account_login(&self, account: &str) -> Result<Option<String>, StoreError> {
        unimplemented!("skeleton: the PostgreSQL port comes next")
    }
    fn merge_accounts(
        &self,
        keep: &str,
        gone: &str,
        at: i64,
    ) -> Result<Option<Vec<String>>, StoreError> {
        unimplemented!("skeleton: the PostgreSQL port comes next")
    }
    fn merged_into(&self, account: &str) -> Result<Vec<(String, i64)>, StoreError> {
        unimplemented!("skeleton: the PostgreSQL port comes next")
    }
    fn secret(&self, name: &str) -> Result<[u8; 32], StoreError> {
        unimplemented!("skeleton: the PostgreSQL port comes next")
    }
    fn add_usage(&self, day: &str, rows: &[UsageRow]) -> Result<(), StoreError> {
        unimplemented!("skeleton: the PostgreSQL port comes next")
    }
    fn usage_report(
        &self,
        account: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Vec<AccountUsage>, StoreError> {
        unimplemented!("skeleton: the PostgreSQL port comes next")
    }
    fn load_sessions(&self) -> Result<Vec<StoredSession>, StoreError> {
        unimplemented!("skeleton: the PostgreSQL port comes next")
    }
    fn save_sessions(&self, writes: &SessionWrites) -> Result<(), StoreError> {
        unimplemented!("skeleton: the PostgreSQL port comes next")
    }
}

//! [`Central`] for single-node mode: the gate calls the portal in the same process.

use std::net::IpAddr;
use std::sync::Arc;

use super::{Admission, BasicVerdict, BoxFuture, Central, CentralError, SyncReply, SyncReport};
use crate::config::SiteId;
use crate::crypto::IdHash;
use crate::portal::Portal;

pub struct LocalCentral {
    portal: Arc<Portal>,
}

impl LocalCentral {
    pub fn new(portal: Arc<Portal>) -> Self {
        LocalCentral { portal }
    }
}

impl Central for LocalCentral {
    fn redeem<'a>(
        &'a self,
        code: &'a str,
        cookie: IdHash,
        site: &'a SiteId,
    ) -> BoxFuture<'a, Result<Option<Admission>, CentralError>> {
        Box::pin(async move {
            let admission = self
                .portal
                .sessions
                .redeem(code, cookie, site)
                .await
                .map_err(|e| CentralError::Internal(Box::new(e)))?;
            if let Some(a) = &admission {
                self.portal.note_site_access(&a.account, site);
            }
            Ok(admission)
        })
    }

    fn check<'a>(
        &'a self,
        cookie: IdHash,
        site: &'a SiteId,
    ) -> BoxFuture<'a, Result<Option<Admission>, CentralError>> {
        Box::pin(async move {
            self.portal
                .sessions
                .check(cookie, site)
                .await
                .map_err(|e| CentralError::Internal(Box::new(e)))
        })
    }

    fn verify_basic<'a>(
        &'a self,
        site: &'a SiteId,
        user: &'a str,
        password: &'a str,
        key: IdHash,
        peer: IpAddr,
    ) -> BoxFuture<'a, Result<BasicVerdict, CentralError>> {
        Box::pin(async move {
            self.portal
                .verify_basic(site, user, password, key, peer)
                .await
                .map_err(|e| CentralError::Internal(Box::new(e)))
        })
    }

    fn sync(&self, report: SyncReport) -> BoxFuture<'_, Result<SyncReply, CentralError>> {
        Box::pin(async move {
            self.portal
                .sync(report)
                .await
                .map_err(|e| CentralError::Internal(Box::new(e)))
        })
    }
}

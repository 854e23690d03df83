//! "Your devices" on the account page: the nodes (browsers, SPEC §6) this account was used
//! on, from the store's `node_accounts`, each with "forget this device".
//!
//! Kept apart from the rest of the page: nodes themselves (the node cookie, registering a
//! node at sign-in) are built elsewhere; this file only reads and deletes the account's
//! rows. Forgetting a device removes its association with this account only; the node and
//! its other accounts stay.

use std::collections::HashMap;

use http::{Response, StatusCode};

use super::view::{hidden, utc};
use crate::http::body::Body;
use crate::http::error::HttpError;
use crate::http::page::{self, escape};
use crate::portal::Portal;
use crate::store::{AccountNode, UserRecord};

/// The account's devices, most recently seen first.
pub(super) async fn load(portal: &Portal, account: &str) -> Result<Vec<AccountNode>, HttpError> {
    let account = account.to_string();
    portal
        .store_call(move |s| s.account_nodes(&account))
        .await
        .map_err(|e| HttpError::Internal(Box::new(e)))
}

/// The section's HTML.
pub(super) fn section(nodes: &[AccountNode], csrf: &str) -> String {
    let body = if nodes.is_empty() {
        "<p class=\"muted\">No devices are remembered for your account.</p>".to_string()
    } else {
        let items: String = nodes
            .iter()
            .map(|n| {
                format!(
                    "<li>Device {id}<br><span class=\"muted\">first used {first}, last used {last}</span>\
<form method=\"post\" action=\"/\">{csrf}{action}{device}<button type=\"submit\">Forget this device</button></form></li>",
                    id = n.node,
                    first = escape(&utc(n.first_seen)),
                    last = escape(&utc(n.last_seen)),
                    csrf = hidden("csrf", csrf),
                    action = hidden("action", "forget_device"),
                    device = hidden("device", &n.node.to_string()),
                )
            })
            .collect();
        format!("<ul class=\"items\">{items}</ul>")
    };
    format!("<h2>Your devices</h2>{body}")
}

/// POST / with `action=forget_device`: delete this account's row for the device. A device
/// that is not the account's (or already forgotten) changes nothing.
pub(super) async fn forget(
    portal: &Portal,
    user: &UserRecord,
    form: &HashMap<String, String>,
) -> Result<Response<Body>, HttpError> {
    let Some(node) = form
        .get("device")
        .and_then(|d| d.parse::<i64>().ok())
        .filter(|n| *n > 0)
    else {
        return Err(HttpError::BadRequest("which device"));
    };
    let account = user.account.clone();
    let forgotten = portal
        .store_call(move |s| s.forget_node(&account, node))
        .await
        .map_err(|e| HttpError::Internal(Box::new(e)))?;
    if forgotten {
        tracing::info!(user = %user.name, account = %user.account, node, "device forgotten");
    }
    Ok(page::redirect(StatusCode::SEE_OTHER, "/?saved=device"))
}

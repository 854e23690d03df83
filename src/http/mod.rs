//! What every request needs before a gate or the portal sees it, and the pieces they share:
//! path normalisation, header hygiene, cookies, redirect-target checks, pages, and the one
//! place that turns an error into a response.

pub mod body;
pub mod cookies;
pub mod error;
pub mod framing;
pub mod framing_watch;
pub mod header_names;
pub mod headers;
pub mod page;
pub mod path;
pub mod redirect;
pub mod timer;

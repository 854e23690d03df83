//! Request errors: each knows its status, whose fault it is (and so its log level), and
//! this module is the one place that turns an error into a response.

use http::{Response, StatusCode};

use super::body::Body;
use super::framing::FramingError;
use super::page;
use super::path::PathError;
use crate::central::CentralError;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("ambiguous request path")]
    BadPath(#[source] PathError),
    /// Where the body ends is in doubt: refused, and the connection closed after the answer.
    #[error("ambiguous message framing")]
    BadFraming(#[source] FramingError),
    #[error("no site is served at this host")]
    UnknownHost,
    #[error("the Host header does not match the TLS server name")]
    Misdirected,
    #[error("the user's level is below the path's minimum")]
    Forbidden,
    #[error("not signed in")]
    Unauthorized { basic: bool },
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("too many failed sign-ins; retry after {retry_after:?}")]
    TooManyAttempts { retry_after: std::time::Duration },
    #[error("the backend cannot be reached")]
    BackendDown(#[source] crate::proxy::UpstreamError),
    #[error("the backend did not answer in time")]
    BackendTimeout,
    #[error("the portal cannot be reached")]
    PortalDown(#[source] CentralError),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl HttpError {
    pub fn status(&self) -> StatusCode {
        match self {
            HttpError::BadRequest(_) | HttpError::BadPath(_) | HttpError::BadFraming(_) => {
                StatusCode::BAD_REQUEST
            }
            HttpError::UnknownHost | HttpError::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            HttpError::Forbidden => StatusCode::FORBIDDEN,
            HttpError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            HttpError::NotFound => StatusCode::NOT_FOUND,
            HttpError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            HttpError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            HttpError::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            HttpError::BackendDown(_) => StatusCode::BAD_GATEWAY,
            HttpError::BackendTimeout => StatusCode::GATEWAY_TIMEOUT,
            HttpError::PortalDown(_) => StatusCode::SERVICE_UNAVAILABLE,
            HttpError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn heading_and_text(&self) -> (&'static str, &'static str) {
        match self {
            HttpError::BadRequest(_) => ("Bad request", "The request could not be understood."),
            HttpError::BadPath(_) => (
                "Bad request",
                "The address of this request is ambiguous and was refused.",
            ),
            HttpError::BadFraming(_) => (
                "Bad request",
                "Where this request's body ends is ambiguous, so it was refused.",
            ),
            HttpError::UnknownHost => ("Unknown site", "No site is served at this address."),
            HttpError::Misdirected => (
                "Wrong connection",
                "This connection was opened for another site. Open the address again in a new tab.",
            ),
            HttpError::Forbidden => (
                "Access denied",
                "Your access level does not allow this page. Ask the site's administrator if you need it.",
            ),
            HttpError::Unauthorized { .. } => ("Sign-in needed", "This site needs you to sign in."),
            HttpError::NotFound => ("Not found", "There is nothing at this address."),
            HttpError::MethodNotAllowed => (
                "Method not allowed",
                "This address does not take that kind of request.",
            ),
            HttpError::PayloadTooLarge => (
                "Too large",
                "The request body is larger than this site accepts.",
            ),
            HttpError::TooManyAttempts { .. } => (
                "Too many attempts",
                "Too many failed sign-ins. Wait a moment, then try again.",
            ),
            HttpError::BackendDown(_) => (
                "Site unavailable",
                "The application behind this site cannot be reached. Try again shortly.",
            ),
            HttpError::BackendTimeout => (
                "Site too slow",
                "The application behind this site did not answer in time.",
            ),
            HttpError::PortalDown(_) => (
                "Sign-in unavailable",
                "The sign-in service cannot be reached. Try again shortly.",
            ),
            HttpError::Internal(_) => (
                "Something went wrong",
                "The gateway failed to handle this request.",
            ),
        }
    }

    /// Log at the level matching whose fault it is: the client's → debug, an upstream's →
    /// warn, ours → error with a reference shown to the user (details stay in the log).
    fn log(&self) -> Option<String> {
        let chain = error_chain(self);
        match self {
            HttpError::BackendDown(_) | HttpError::BackendTimeout | HttpError::PortalDown(_) => {
                tracing::warn!(error = %chain, "upstream failure");
                None
            }
            HttpError::Internal(_) => {
                let reference = crate::crypto::IdHash::of(&crate::crypto::random_bytes::<16>())
                    .to_b64()[..10]
                    .to_string();
                tracing::error!(error = %chain, reference = %reference, "internal error");
                Some(reference)
            }
            _ => {
                tracing::debug!(error = %chain, "request refused");
                None
            }
        }
    }

    pub fn into_response(self) -> Response<Body> {
        let reference = self.log();
        let (heading, text) = self.heading_and_text();
        let text = match reference {
            Some(r) => format!("{text} Reference: {r}."),
            None => text.to_string(),
        };
        let mut res = page::message(self.status(), heading, &text);
        if let HttpError::BadFraming(_) = self {
            // Unread bytes of an ambiguous body must never be taken for the next request
            // (hyper closes the connection after a response saying so; HTTP/2 drops the header).
            res.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
        match self {
            HttpError::Unauthorized { basic: true } => {
                res.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static("Basic realm=\"gatehouse\", charset=\"UTF-8\""),
                );
            }
            HttpError::TooManyAttempts { retry_after } => {
                res.headers_mut()
                    .insert(http::header::RETRY_AFTER, retry_after_value(retry_after));
            }
            _ => {}
        }
        res
    }
}

/// `Retry-After` in whole seconds (RFC 9110 §10.2.3), rounded up so that a client that
/// waits exactly this long is not refused again.
pub fn retry_after_value(wait: std::time::Duration) -> http::HeaderValue {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    http::HeaderValue::from(secs.max(1))
}

/// "outer: inner: innermost", for one log field.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

impl From<FramingError> for HttpError {
    fn from(e: FramingError) -> Self {
        HttpError::BadFraming(e)
    }
}

impl From<PathError> for HttpError {
    fn from(e: PathError) -> Self {
        HttpError::BadPath(e)
    }
}

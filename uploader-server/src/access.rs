//! Request ids and the access log: one line per request, written by tower-http's `TraceLayer`
//! with the callbacks of this module.
//!
//! The line is an event of target [`TARGET`] (`uploader_server::access`) inside a span of the
//! same target that carries `request_id`, `method`, `path`, `client` and, once the request is
//! authenticated, `token_id` (the id of its token, never the token); the event carries
//! `status`, `files`, `bytes` and `duration_ms`. Every other log line of the request is inside
//! the same span, so it carries the request id too. Never logged: headers (the
//! `Authorization` header and its token among them), the query string (client-chosen text
//! that could carry anything; the prefix shows in the keys of the results), bodies.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderName, HeaderValue, Request, Response};
use tracing::Span;

/// The target of the access-log span and line (a log filter can pick them:
/// `UPLOADER_LOG=uploader_server::access=info`).
pub const TARGET: &str = "uploader_server::access";

/// The request-id header, read from the client when well-formed and always answered.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest request id taken from a client.
const MAX_CLIENT_ID: usize = 64;

/// Longest path written to the log (a path is client-chosen; a longer one is cut).
const MAX_LOGGED_PATH: usize = 256;

/// What an upload request handled, for its access-log line: the handler puts it in the
/// response's extensions.
#[derive(Debug, Clone, Copy, Default)]
pub struct AccessStats {
    /// File parts in the request.
    pub files: usize,
    /// Bytes of the files stored.
    pub bytes: u64,
}

/// The id of a request: the client's `x-request-id` when it is 1 to 64 characters of
/// letters, digits, `-`, `_`, `.` and `:` (a load balancer's id, so both logs agree), else a
/// new random one. Anything else a client sends there is replaced, so what reaches the logs
/// and the response body is always that plain.
pub fn request_id(req: &Request<Body>) -> Option<HeaderValue> {
    let given = req.headers().get(&REQUEST_ID).filter(|v| {
        let b = v.as_bytes();
        !b.is_empty()
            && b.len() <= MAX_CLIENT_ID
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'))
    });
    Some(given.cloned().unwrap_or_else(new_id))
}

/// A new random request id: 16 hex digits.
fn new_id() -> HeaderValue {
    use rand::Rng as _;
    let id = format!("{:016x}", rand::rng().random::<u64>());
    HeaderValue::from_str(&id).expect("hex is a valid header value")
}

/// New ids for `SetRequestIdLayer`, for a request that reaches it without one (the app's
/// outer layer gives every request an id through [`request_id`], so only an embedder's
/// different stack needs this).
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomId;

impl tower_http::request_id::MakeRequestId for RandomId {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<tower_http::request_id::RequestId> {
        Some(tower_http::request_id::RequestId::new(new_id()))
    }
}

/// The span of a request (TraceLayer's `make_span_with`).
pub fn make_span(req: &Request<Body>) -> Span {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "-".to_owned(), |c| c.0.to_string());
    let path = req.uri().path();
    let path = match path.char_indices().nth(MAX_LOGGED_PATH) {
        Some((cut, _)) => &path[..cut],
        None => path,
    };
    tracing::info_span!(
        target: TARGET,
        "request",
        request_id = %id,
        method = %req.method(),
        path = %path,
        client = %client,
        token_id = tracing::field::Empty,
    )
}

/// The access-log line (TraceLayer's `on_response`): when the response head is ready.
pub fn on_response(resp: &Response<Body>, latency: Duration, span: &Span) {
    let stats = resp
        .extensions()
        .get::<AccessStats>()
        .copied()
        .unwrap_or_default();
    tracing::info!(
        target: TARGET,
        parent: span,
        status = resp.status().as_u16(),
        files = stats.files,
        bytes = stats.bytes,
        duration_ms = latency.as_micros() as f64 / 1000.0,
        "request"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_client_id_is_kept_and_anything_else_replaced() {
        let with = |v: &[u8]| {
            let req = Request::get("/")
                .header(REQUEST_ID, HeaderValue::from_bytes(v).unwrap())
                .body(Body::empty())
                .unwrap();
            request_id(&req).unwrap()
        };
        assert_eq!(with(b"lb-1234.abc:9"), "lb-1234.abc:9");
        for bad in [&b"has space"[..], b"a\"b", b"{json}", &[b'a'; 65], b""] {
            let id = with(bad);
            assert_ne!(id.as_bytes(), bad);
            assert_eq!(id.len(), 16, "{id:?}");
        }
        let none = request_id(&Request::get("/").body(Body::empty()).unwrap()).unwrap();
        assert_eq!(none.len(), 16);
    }
}

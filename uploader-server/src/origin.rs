//! Cross-site request refusal: a request that changes something (any method but `GET`,
//! `HEAD`, `OPTIONS`) and carries an `Origin` is served only when that origin is the daemon's
//! own or one of `--cors-origin`; others get 403 `forbidden_origin`.
//!
//! A page of any site can make a browser post a form to the daemon without a preflight (a
//! "simple" request), and a loopback daemon without tokens would store what it sends. Browsers
//! send `Origin` with every such post; clients outside a browser (curl, SDKs) send none and are
//! not affected. Without authentication, the daemon's own origin counts only when the `Host`
//! is a loopback name or address, so a page of another site whose name was made to resolve
//! to 127.0.0.1 (DNS rebinding) is refused too.

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::cors::CorsOrigin;
use crate::problem::{ApiError, ProblemKind};
use crate::state::AppState;

/// The middleware.
pub(crate) async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return next.run(req).await;
    };
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    let origin = origin.to_str().ok().and_then(|o| CorsOrigin::parse(o).ok());
    if origin.is_some_and(|o| allowed(&o, host, &state)) {
        return next.run(req).await;
    }
    ApiError::new(
        ProblemKind::ForbiddenOrigin,
        "this origin may not post to the daemon (only the daemon's own pages and the \
         --cors-origin ones may)",
    )
    .into_response()
}

fn allowed(origin: &CorsOrigin, host: Option<&str>, state: &AppState) -> bool {
    if state.cors_origins.contains(origin) {
        return true;
    }
    let Some(host) = host else {
        return false;
    };
    let own = ["http", "https"]
        .iter()
        .filter_map(|scheme| CorsOrigin::parse(&format!("{scheme}://{host}")).ok())
        .any(|o| &o == origin);
    own && (state.auth.enabled() || is_loopback(host))
}

/// Whether the host of a `Host` header is `localhost` or a loopback address.
fn is_loopback(host: &str) -> bool {
    let Ok(authority) = host.parse::<axum::http::uri::Authority>() else {
        return false;
    };
    let name = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognised() {
        for h in [
            "localhost:8080",
            "LOCALHOST",
            "127.0.0.1:1",
            "127.9.9.9",
            "[::1]:80",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "evil.example:8080",
            "10.0.0.1",
            "localhost.evil.example",
            "[::2]",
            "",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
    }
}

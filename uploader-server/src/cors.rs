//! Cross-origin requests: the origins allowed by `--cors-origin`, checked once at start-up,
//! and the `CorsLayer` (tower-http) that answers preflights and labels responses for them.
//!
//! Only listed origins get CORS headers; with none listed the layer is not installed at all,
//! so responses carry no `Access-Control-*` header. `*` is refused: the API takes bearer
//! tokens, and which pages may use them is a list the operator writes. The origin `null`
//! (sandboxed frames, `file:` pages) is refused as well: any page can claim it.

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method, Uri, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// How long a browser may cache a preflight answer.
pub const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// Request headers a cross-origin client may send (besides the CORS-safelisted ones).
pub const ALLOWED_HEADERS: [HeaderName; 3] = [
    header::AUTHORIZATION,
    header::CONTENT_TYPE,
    HeaderName::from_static("idempotency-key"),
];

/// Response headers a cross-origin script may read (besides the CORS-safelisted ones).
pub const EXPOSED_HEADERS: [HeaderName; 4] = [
    HeaderName::from_static("x-request-id"),
    header::RETRY_AFTER,
    header::WWW_AUTHENTICATE,
    HeaderName::from_static("idempotent-replayed"),
];

/// An origin allowed to call the API from a browser: `scheme://host[:port]`, in the form
/// browsers send in `Origin` (scheme and host lower-case, no default port, no path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsOrigin(String);

/// An origin that cannot be allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin:?} is not an allowed origin: {reason}")]
pub struct CorsOriginError {
    origin: String,
    reason: &'static str,
}

impl CorsOrigin {
    /// Parses and normalises an origin (`https://App.Example.com:443/` → `https://app.example.com`).
    pub fn parse(s: &str) -> Result<CorsOrigin, CorsOriginError> {
        let fail = |reason| CorsOriginError {
            origin: s.to_owned(),
            reason,
        };
        match s.trim() {
            "*" => {
                return Err(fail(
                    "`*` is not accepted: the API takes bearer tokens, list each origin that \
                     may use them",
                ));
            }
            "null" => {
                return Err(fail(
                    "`null` is the origin of sandboxed and file: pages, which any page can claim",
                ));
            }
            _ => {}
        }
        let uri: Uri = s
            .trim()
            .parse()
            .map_err(|_| fail("expected scheme://host[:port], e.g. https://app.example.com"))?;
        let scheme = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
            Some("http") => "http",
            Some("https") => "https",
            Some(_) => return Err(fail("the scheme must be http or https")),
            None => {
                return Err(fail(
                    "no scheme: write it as scheme://host[:port], e.g. https://app.example.com",
                ));
            }
        };
        let authority = uri.authority().ok_or_else(|| fail("no host"))?;
        if authority.as_str().contains('@') {
            return Err(fail("an origin has no user name or password"));
        }
        let host = authority.host().to_ascii_lowercase();
        if host.is_empty() || host.contains('*') {
            return Err(fail(
                "the host must be a name or an address, without wildcards",
            ));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(fail("an origin has no path or query"));
        }
        let default_port = if scheme == "https" { 443 } else { 80 };
        let port = match authority.port_u16() {
            Some(p) if p != default_port => format!(":{p}"),
            _ => String::new(),
        };
        Ok(CorsOrigin(format!("{scheme}://{host}{port}")))
    }

    /// The origin, as browsers send it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The CORS layer for `origins`; `None` when there are none (no CORS headers at all).
pub fn layer(origins: &[CorsOrigin]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let list = origins.iter().map(|o| {
        HeaderValue::from_str(o.as_str()).expect("a parsed origin is a valid header value")
    });
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(list))
            .allow_methods([Method::GET, Method::POST])
            .allow_headers(ALLOWED_HEADERS)
            .expose_headers(EXPOSED_HEADERS)
            .max_age(PREFLIGHT_MAX_AGE),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalised_or_refused_with_the_reason() {
        for (given, normal) in [
            ("https://app.example.com", "https://app.example.com"),
            ("HTTPS://App.Example.COM:443/", "https://app.example.com"),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("http://localhost:80", "http://localhost"),
            ("http://[::1]:3000", "http://[::1]:3000"),
        ] {
            assert_eq!(
                CorsOrigin::parse(given).unwrap().as_str(),
                normal,
                "{given}"
            );
        }
        for (bad, why) in [
            ("example.com", "scheme"),
            ("*", "`*`"),
            ("null", "`null`"),
            ("ftp://example.com", "http or https"),
            ("https://example.com/app", "path"),
            ("https://example.com?x=1", "path or query"),
            ("https://user:pw@example.com", "user name"),
            ("https://*.example.com", "wildcards"),
            ("https://exa mple.com", "scheme://host"),
            ("", "scheme"),
        ] {
            let e = CorsOrigin::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}

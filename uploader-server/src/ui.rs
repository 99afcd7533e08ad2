//! The upload page (`--ui`): one self-contained HTML page, embedded in the binary, served at
//! `GET /`. Its one inline script and one inline style are allowed by their SHA-256 hashes in a
//! strict Content-Security-Policy (nothing else loads; requests go to this origin only), so
//! the page works with no build step and no external asset. It posts the chosen files to
//! `POST /v1/uploads` and renders the per-file results with `textContent` only.

use std::sync::LazyLock;

use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

/// The page.
pub const PAGE: &str = include_str!("ui/index.html");

/// The text between the first `open` and the following `close` of the page.
fn inline(open: &str, close: &str) -> &'static str {
    let start = PAGE.find(open).expect("the page has the element") + open.len();
    let len = PAGE[start..].find(close).expect("the element is closed");
    &PAGE[start..start + len]
}

fn hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The page's Content-Security-Policy: its own script and style (by hash), requests to this
/// origin, nothing else (no frames, no form submission, no base URL).
pub static CSP: LazyLock<String> = LazyLock::new(|| {
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src data:; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        hash(inline("<script>", "</script>")),
        hash(inline("<style>", "</style>")),
    )
});

/// `GET /` with `--ui`.
#[utoipa::path(get, path = "/", summary = "the upload page (with --ui; 404 without)",
    responses(
        (status = 200, description = "a self-contained HTML page", content_type = "text/html", body = String),
        (status = 404, description = "the daemon runs without --ui", body = crate::problem::Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn page() -> Response {
    let mut resp = Html(PAGE).into_response();
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_str(&CSP).expect("the policy is a valid header value"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_self_contained_and_renders_with_text_content_only() {
        assert_eq!(PAGE.matches("<script").count(), 1, "one inline script");
        assert_eq!(PAGE.matches("<style").count(), 1, "one inline style");
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
        ] {
            assert!(!PAGE.contains(banned), "{banned}");
        }
        for external in ["src=", "href=\"http", "@import", "url("] {
            assert!(!PAGE.contains(external), "{external}");
        }
        assert!(CSP.starts_with("default-src 'none'; script-src 'sha256-"));
        assert!(CSP.contains("connect-src 'self'"));
    }
}

//! Request-level errors as RFC 9457 `application/problem+json`: a closed set of kinds, each
//! with its status code, rendered without leaking internals.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// What went wrong with a request as a whole; the last segment of the problem `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// The query string does not parse.
    InvalidQuery,
    /// The body is not multipart/form-data.
    UnsupportedMediaType,
    /// The multipart body is invalid.
    MalformedMultipart,
    /// A form field other than files and `prefix`.
    UnknownField,
    /// `prefix` given twice, or after a file.
    MisplacedPrefix,
    /// The prefix cannot be made a safe key prefix.
    InvalidPrefix,
    /// The `prefix` field is too long.
    FieldTooLarge,
    /// More files than a request may carry.
    TooManyFiles,
    /// The request is over its size limit.
    RequestTooLarge,
    /// The request carries no file.
    NoFiles,
    /// The client sent nothing for too long.
    BodyIdleTimeout,
    /// No valid bearer token.
    Unauthorized,
    /// At the limit of concurrent uploads.
    Overloaded,
    /// The server is shutting down.
    ShuttingDown,
    /// No such route.
    NotFound,
    /// A limit given to the admin API that does not parse.
    InvalidLimits,
}

impl ProblemKind {
    /// The kind's name, as in the problem `type`.
    pub fn as_str(self) -> &'static str {
        use ProblemKind as K;
        match self {
            K::InvalidQuery => "invalid_query",
            K::UnsupportedMediaType => "unsupported_media_type",
            K::MalformedMultipart => "malformed_multipart",
            K::UnknownField => "unknown_field",
            K::MisplacedPrefix => "misplaced_prefix",
            K::InvalidPrefix => "invalid_prefix",
            K::FieldTooLarge => "field_too_large",
            K::TooManyFiles => "too_many_files",
            K::RequestTooLarge => "request_too_large",
            K::NoFiles => "no_files",
            K::BodyIdleTimeout => "body_idle_timeout",
            K::Unauthorized => "unauthorized",
            K::Overloaded => "overloaded",
            K::ShuttingDown => "shutting_down",
            K::NotFound => "not_found",
            K::InvalidLimits => "invalid_limits",
        }
    }

    /// The HTTP status of the kind.
    pub fn status(self) -> StatusCode {
        use ProblemKind as K;
        match self {
            K::InvalidQuery
            | K::MalformedMultipart
            | K::UnknownField
            | K::MisplacedPrefix
            | K::InvalidPrefix
            | K::NoFiles
            | K::InvalidLimits => StatusCode::BAD_REQUEST,
            K::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            K::FieldTooLarge | K::TooManyFiles | K::RequestTooLarge => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            K::BodyIdleTimeout => StatusCode::REQUEST_TIMEOUT,
            K::Unauthorized => StatusCode::UNAUTHORIZED,
            K::Overloaded | K::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            K::NotFound => StatusCode::NOT_FOUND,
        }
    }

    /// Seconds a client should wait before retrying, for the kinds that are worth a retry.
    fn retry_after(self) -> Option<u64> {
        match self {
            ProblemKind::Overloaded => Some(1),
            ProblemKind::ShuttingDown => Some(5),
            _ => None,
        }
    }
}

/// A request-level failure.
#[derive(Debug)]
pub struct ApiError {
    /// What went wrong.
    pub kind: ProblemKind,
    /// What to tell the client.
    pub detail: String,
    /// Extension members (e.g. the results of files stored before the failure).
    pub extra: Option<(&'static str, Value)>,
}

impl ApiError {
    /// A problem of `kind`.
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            detail: detail.into(),
            extra: None,
        }
    }

    /// No valid bearer token.
    pub fn unauthorized() -> ApiError {
        ApiError::new(
            ProblemKind::Unauthorized,
            "a valid `Authorization: Bearer <token>` header is required",
        )
    }

    /// At the limit of concurrent uploads.
    pub fn overloaded() -> ApiError {
        ApiError::new(
            ProblemKind::Overloaded,
            "the server is at its limit of concurrent uploads; retry shortly",
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// Adds an extension member.
    pub fn with(mut self, key: &'static str, value: Value) -> ApiError {
        self.extra = Some((key, value));
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut body = json!({
            "type": format!("https://uploader.dev/problems/{}", self.kind.as_str()),
            "title": status.canonical_reason().unwrap_or("error"),
            "status": status.as_u16(),
            "detail": self.detail,
        });
        if let Some((k, v)) = self.extra {
            body[k] = v;
        }
        let mut resp = (status, body.to_string()).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.kind == ProblemKind::Unauthorized {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(s) = self.kind.retry_after() {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

//! Request-level errors as RFC 9457 `application/problem+json`: a closed set of kinds, each
//! with its status code, rendered without leaking internals.
//!
//! The problem `type` is the relative URI `/problems/<code>`, which the daemon itself serves
//! (`GET /problems/<code>`: [`explain`]), so it resolves against the URL of the request on any
//! deployment; the `code` member carries the same name for clients that match on it.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{RefOr, SchemaFormat};

use crate::model::{FileResult, string_enum};

/// What went wrong with a request as a whole; the `code` and the last segment of the problem
/// `type`.
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
    /// Over the token's requests or bytes per minute.
    QuotaExceeded,
    /// A browser request from an origin that may not call the API (cross-site form posts).
    ForbiddenOrigin,
    /// The `Idempotency-Key` header is malformed.
    InvalidIdempotencyKey,
    /// A request with the same `Idempotency-Key` is still running.
    IdempotencyKeyInUse,
    /// The `Idempotency-Key` was used for a different request.
    IdempotencyKeyReused,
    /// The idempotency record could not be read or written.
    IdempotencyUnavailable,
}

impl serde::Serialize for ProblemKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl ProblemKind {
    /// Every kind (the `code`s of the OpenAPI document and of `GET /problems/<code>`).
    pub const ALL: &[ProblemKind] = &[
        ProblemKind::InvalidQuery,
        ProblemKind::UnsupportedMediaType,
        ProblemKind::MalformedMultipart,
        ProblemKind::UnknownField,
        ProblemKind::MisplacedPrefix,
        ProblemKind::InvalidPrefix,
        ProblemKind::FieldTooLarge,
        ProblemKind::TooManyFiles,
        ProblemKind::RequestTooLarge,
        ProblemKind::NoFiles,
        ProblemKind::BodyIdleTimeout,
        ProblemKind::Unauthorized,
        ProblemKind::Overloaded,
        ProblemKind::ShuttingDown,
        ProblemKind::NotFound,
        ProblemKind::InvalidLimits,
        ProblemKind::QuotaExceeded,
        ProblemKind::ForbiddenOrigin,
        ProblemKind::InvalidIdempotencyKey,
        ProblemKind::IdempotencyKeyInUse,
        ProblemKind::IdempotencyKeyReused,
        ProblemKind::IdempotencyUnavailable,
    ];

    /// The kind named `code`.
    pub fn from_code(code: &str) -> Option<ProblemKind> {
        ProblemKind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == code)
    }

    /// The problem `type`: a URI relative to the daemon, served by `GET /problems/<code>`.
    pub fn type_uri(self) -> String {
        format!("/problems/{}", self.as_str())
    }

    /// What the kind means and what a client can do about it (the page of its `type`).
    pub fn explanation(self) -> &'static str {
        use ProblemKind as K;
        match self {
            K::InvalidQuery => "The query string does not parse. The only parameter is `prefix`.",
            K::UnsupportedMediaType => {
                "The body is not multipart/form-data. Send the files as form parts \
                 (curl -F file=@path)."
            }
            K::MalformedMultipart => {
                "The multipart body is invalid: a missing or wrong boundary, no closing \
                 boundary, or a broken part header. Files listed in `results` were handled \
                 before the error."
            }
            K::UnknownField => {
                "A form field that is neither a file part nor `prefix`. Rename or remove it."
            }
            K::MisplacedPrefix => {
                "The `prefix` field was given twice, after a file part, or together with \
                 `?prefix=`. Send it once, before the files."
            }
            K::InvalidPrefix => {
                "The prefix cannot be made a safe key prefix (a `..` or `.` segment, a \
                 control character, too long). Keys follow the rules of docs/SEMANTICS.md."
            }
            K::FieldTooLarge => "The `prefix` field is too long.",
            K::TooManyFiles => {
                "The request carries more file parts than the daemon's --max-files. Split it."
            }
            K::RequestTooLarge => {
                "The body (declared or streamed) is over the daemon's --max-request-size. \
                 Split the batch; files listed in `results` were handled before the limit."
            }
            K::NoFiles => "The request carries no file part.",
            K::BodyIdleTimeout => {
                "The client sent nothing for the daemon's --body-idle-timeout; the request \
                 was cut off and its unfinished uploads aborted."
            }
            other => other.service_explanation(),
        }
    }

    /// [`ProblemKind::explanation`] of the kinds about the daemon's policies and state (the
    /// others are about the request itself); every kind has its own (a unit test checks).
    fn service_explanation(self) -> &'static str {
        use ProblemKind as K;
        match self {
            K::Unauthorized => {
                "A valid `Authorization: Bearer <token>` header is required. The token is \
                 never logged."
            }
            K::Overloaded => {
                "The daemon is at its limit of concurrent uploads (--max-concurrent-uploads). \
                 Retry after the `Retry-After` seconds."
            }
            K::ShuttingDown => {
                "The daemon is shutting down. Retry on another instance after `Retry-After`; \
                 files not listed as uploaded were not stored."
            }
            K::NotFound => "No such route (or the route is switched off on this daemon).",
            K::InvalidLimits => {
                "A value given to PUT /v1/limits does not parse, or an unknown field: nothing \
                 was changed."
            }
            K::QuotaExceeded => {
                "The token is over its requests or bytes per minute (the scoped tokens file). \
                 Retry after the `Retry-After` seconds; files listed in `results` were handled \
                 before the quota was reached, the others were not stored."
            }
            K::ForbiddenOrigin => {
                "The request carries an `Origin` that is neither the daemon's own nor one of \
                 its --cors-origin: a page of another site may not post to the daemon."
            }
            K::InvalidIdempotencyKey => {
                "The Idempotency-Key header must be sent once, with 1 to 255 printable ASCII \
                 characters (bare or as a quoted string)."
            }
            K::IdempotencyKeyInUse => {
                "A request with this Idempotency-Key is still being processed. Retry after \
                 `Retry-After`: then the stored response is replayed."
            }
            K::IdempotencyKeyReused => {
                "This Idempotency-Key was used (by the same token) for a request with other \
                 files, names, prefix or options. Nothing was uploaded; use a new key for a new \
                 request."
            }
            K::IdempotencyUnavailable => {
                "The daemon could not read or write the idempotency record in the bucket. \
                 Nothing was uploaded; retry with the same key."
            }
            _ => "",
        }
    }

    /// The kind's name: the `code` member and the last segment of the problem `type`.
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
            K::QuotaExceeded => "quota_exceeded",
            K::ForbiddenOrigin => "forbidden_origin",
            K::InvalidIdempotencyKey => "invalid_idempotency_key",
            K::IdempotencyKeyInUse => "idempotency_key_in_use",
            K::IdempotencyKeyReused => "idempotency_key_reused",
            K::IdempotencyUnavailable => "idempotency_unavailable",
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
            | K::InvalidLimits
            | K::InvalidIdempotencyKey => StatusCode::BAD_REQUEST,
            K::IdempotencyKeyInUse => StatusCode::CONFLICT,
            K::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            K::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            K::FieldTooLarge | K::TooManyFiles | K::RequestTooLarge => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            K::BodyIdleTimeout => StatusCode::REQUEST_TIMEOUT,
            K::Unauthorized => StatusCode::UNAUTHORIZED,
            K::Overloaded | K::ShuttingDown | K::IdempotencyUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            K::NotFound => StatusCode::NOT_FOUND,
            K::QuotaExceeded => StatusCode::TOO_MANY_REQUESTS,
            K::ForbiddenOrigin => StatusCode::FORBIDDEN,
        }
    }

    /// Seconds a client should wait before retrying, for the kinds that are worth a retry.
    fn retry_after(self) -> Option<u64> {
        match self {
            ProblemKind::Overloaded
            | ProblemKind::IdempotencyKeyInUse
            | ProblemKind::IdempotencyUnavailable => Some(1),
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
    /// The results of the files handled before the failure.
    pub results: Option<Vec<FileResult>>,
    /// `Retry-After` seconds, instead of the kind's own.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// A problem of `kind`.
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            detail: detail.into(),
            results: None,
            retry_after: None,
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

    /// Sets `Retry-After` (seconds).
    pub fn retry_after(mut self, seconds: u64) -> ApiError {
        self.retry_after = Some(seconds);
        self
    }

    /// Lists the files handled before the failure (the `results` member).
    pub fn with_results(mut self, results: Vec<FileResult>) -> ApiError {
        self.results = Some(results);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = Problem {
            type_uri: self.kind.type_uri(),
            code: self.kind,
            title: status.canonical_reason().unwrap_or("error").to_owned(),
            status: status.as_u16(),
            detail: self.detail,
            results: self.results,
        };
        let json = serde_json::to_string(&body).expect("a problem serializes");
        let mut resp = (status, json).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.kind == ProblemKind::Unauthorized {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(s) = self.retry_after.or(self.kind.retry_after()) {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

/// `GET /problems/<code>`: the explanation of a problem kind, as plain text; 404 (a
/// `not_found` problem) for a code that is not one.
#[utoipa::path(get, path = "/problems/{code}",
    summary = "what a problem `type` means (the type of every problem document is /problems/{code})",
    params(("code" = String, Path, description = "a problem code (Problem.code)")),
    responses(
        (status = 200, description = "the explanation", content_type = "text/plain", body = String),
        (status = 404, description = "not a problem code", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn explain(axum::extract::Path(code): axum::extract::Path<String>) -> Response {
    let Some(kind) = ProblemKind::from_code(&code) else {
        return ApiError::new(ProblemKind::NotFound, "no such problem type").into_response();
    };
    let status = kind.status();
    let text = format!(
        "{code}: HTTP {} {}\n\n{}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        kind.explanation()
    );
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

/// An RFC 9457 problem document (`application/problem+json`): a request-level error.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Problem {
    /// `/problems/{code}`, relative to the daemon, which serves it.
    #[serde(rename = "type")]
    #[schema(schema_with = problem_type)]
    pub type_uri: String,
    /// The stable name of the problem.
    #[schema(schema_with = problem_codes)]
    pub code: ProblemKind,
    /// The status's reason phrase.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// For a person.
    pub detail: String,
    /// The files handled before the request failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub results: Option<Vec<FileResult>>,
}

/// Every problem code.
fn problem_codes() -> impl Into<RefOr<Schema>> {
    string_enum(ProblemKind::ALL.iter().map(|k| k.as_str()))
        .description(Some("stable name of the problem"))
}

/// `/problems/{code}`.
fn problem_type() -> impl Into<RefOr<Schema>> {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .format(Some(SchemaFormat::Custom("uri-reference".into())))
        .pattern(Some("^/problems/[a-z_]+$"))
        .description(Some(
            "/problems/{code}, relative to the daemon, which serves it",
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_listed_once_and_found_by_its_code() {
        let mut codes: Vec<_> = ProblemKind::ALL.iter().map(|k| k.as_str()).collect();
        for k in ProblemKind::ALL {
            assert_eq!(ProblemKind::from_code(k.as_str()), Some(*k));
            assert!(!k.explanation().is_empty());
        }
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), ProblemKind::ALL.len());
        let mut texts: Vec<_> = ProblemKind::ALL.iter().map(|k| k.explanation()).collect();
        texts.sort_unstable();
        texts.dedup();
        assert_eq!(
            texts.len(),
            ProblemKind::ALL.len(),
            "every kind has its own"
        );
        assert_eq!(ProblemKind::from_code("nope"), None);
    }
}

//! The JSON bodies the daemon sends, as types: the handlers serialize these and the OpenAPI
//! document (`/openapi.json`, openapi.rs) derives its schemas from them (utoipa), so
//! the document cannot describe a body the handlers do not send.

use serde::Serialize;
use uploader_core::ErrorCode;
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};

/// The answer to a batch (201, 207, and 422 or 502 when every file failed).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Batch)]
pub struct BatchBody {
    /// The request's id (also its `x-request-id`).
    pub request_id: String,
    /// Counts over the files.
    pub summary: Summary,
    /// One result per file part, in request order.
    pub results: Vec<FileResult>,
}

/// Counts over the files of a batch.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    /// File parts in the request.
    pub total: usize,
    /// Stored, or left unchanged on request (`skip_existing`).
    pub succeeded: usize,
    /// Left unchanged on request.
    pub skipped: usize,
    /// Not stored.
    pub failed: usize,
    /// Bytes stored.
    pub bytes: u64,
}

/// What became of one file part.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum FileResult {
    /// Stored.
    Uploaded {
        /// Position in the request.
        index: usize,
        /// The part's filename, as sent.
        filename: String,
        /// The object key.
        key: String,
        /// Bytes stored.
        size: u64,
        /// The detected (stored) type.
        content_type: Option<String>,
        /// The object's ETag, as the server sent it.
        etag: Option<String>,
        /// The checksum the server verified (`crc32c:<base64>[-<parts>]`, `md5:<base64>`).
        checksum: Option<String>,
    },
    /// Left as it was, on request (`skip_existing`): the object is what was sent.
    Skipped {
        /// Position in the request.
        index: usize,
        /// The part's filename, as sent.
        filename: String,
        /// The object key.
        key: String,
        /// Bytes of the part.
        size: u64,
        /// `unchanged (size)`, `unchanged (checksum)`.
        reason: String,
    },
    /// Not stored.
    Failed {
        /// Position in the request.
        index: usize,
        /// The part's filename, as sent.
        filename: String,
        /// The object key, `null` when none could be derived.
        key: Option<String>,
        /// Why.
        error: FileErrorBody,
    },
}

/// Why a file was not stored.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FileErrorBody {
    /// A stable name from a closed set.
    #[schema(schema_with = error_codes)]
    pub code: ErrorCode,
    /// For a person.
    pub message: String,
    /// Whether sending the file again may succeed.
    pub retryable: bool,
}

/// The rate limits in force (`GET`/`PUT /v1/limits`); `null`: none.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Limits)]
pub struct LimitsBody {
    /// Bytes per second, shared by every request.
    pub bwlimit: Option<u64>,
    /// Bytes per second of each file.
    pub bwlimit_file: Option<u64>,
    /// S3 requests per second.
    pub tps_limit: Option<f64>,
}

/// `GET /healthz`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// `ok`.
    pub status: String,
}

/// `GET /readyz`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Readiness {
    /// Whether the bucket is reachable with valid credentials.
    pub ready: bool,
    /// Why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A string schema of `values` (also for the problem codes, in problem.rs).
pub(crate) fn string_enum<'a>(values: impl IntoIterator<Item = &'a str>) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .enum_values(Some(values))
}

/// Every per-file error code.
fn error_codes() -> impl Into<RefOr<Schema>> {
    string_enum(ErrorCode::ALL.iter().map(|c| c.as_str()))
}

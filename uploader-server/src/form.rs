//! The multipart form of `POST /v1/uploads`, read with `multer` (axum's extractor applies no
//! per-part limits): a part with a filename is a file; the only text field is `prefix`, which
//! must come before the files (the query parameter `prefix` is the alternative). Each file
//! part comes out with its key already derived under the prefix.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::header;
use bytes::Bytes;
use futures::StreamExt as _;
use futures::stream::BoxStream;
use uploader_core::{ErrorCode, FileError, KeyPrefix, ObjectKey, SkipMode};

use crate::body::{BodyFailure, idle_guarded};
use crate::config::Limits;
use crate::idempotency::fingerprint::Fingerprint;
use crate::problem::{ApiError, ProblemKind};
use crate::reserved::{is_reserved, reserved_message};

/// Field names that carry files (any part with a filename is a file, whatever its name).
const FILE_FIELDS: &[&str] = &["file", "files", "files[]"];
/// Longest accepted `prefix` field.
const MAX_PREFIX_FIELD: usize = 1024;

/// The form being read.
pub(crate) struct Form {
    multipart: multer::Multipart<'static>,
    /// How reading the body failed, if it did.
    pub failure: Arc<BodyFailure>,
    /// The token's root: the daemon's root prefix and the token's prefix.
    root: KeyPrefix,
    /// The daemon's root prefix, under which the reserved directory is.
    daemon_root: KeyPrefix,
    prefix: Option<KeyPrefix>,
    /// `skip_existing` (query or field): leave unchanged objects as they are.
    pub skip: Option<SkipMode>,
    files: usize,
    max_files: usize,
    /// The body's declared length (`Content-Length`), if any.
    pub declared: Option<u64>,
    /// The request's fingerprint, computed as the form is read (requests with an
    /// `Idempotency-Key`).
    fingerprint: Option<Fingerprint>,
}

/// One file part: its name as sent, its key (or why it has none), and its data.
pub(crate) struct FilePart {
    pub filename: String,
    pub key: Result<ObjectKey, FileError>,
    pub data: BoxStream<'static, Result<Bytes, multer::Error>>,
}

impl Form {
    /// Checks the headers (type, boundary, declared length) and starts reading the body; keys
    /// go under `root` (the daemon's root prefix `daemon_root` and the token's); none may
    /// lie in the reserved directory under `daemon_root`.
    pub(crate) fn open(
        daemon_root: &KeyPrefix,
        root: &KeyPrefix,
        limits: &Limits,
        req: Request,
        query_prefix: Option<&str>,
        query_skip: Option<&str>,
    ) -> Result<Form, ApiError> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !content_type
            .to_ascii_lowercase()
            .starts_with("multipart/form-data")
        {
            return Err(ApiError::new(
                ProblemKind::UnsupportedMediaType,
                "send the files as multipart/form-data",
            ));
        }
        let boundary = multer::parse_boundary(content_type).map_err(|_| {
            ApiError::new(
                ProblemKind::MalformedMultipart,
                "the multipart boundary is missing or invalid",
            )
        })?;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limits.max_request_size) {
            return Err(too_large(limits.max_request_size));
        }
        let prefix = query_prefix
            .map(|p| join_prefix(daemon_root, root, p))
            .transpose()?;
        let skip = query_skip.map(parse_skip).transpose()?;
        let failure = Arc::new(BodyFailure::default());
        let body = idle_guarded(
            req.into_body(),
            limits.body_idle_timeout,
            Arc::clone(&failure),
        );
        let constraints = multer::Constraints::new()
            .size_limit(multer::SizeLimit::new().whole_stream(limits.max_request_size));
        Ok(Form {
            multipart: multer::Multipart::with_constraints(body, boundary, constraints),
            failure,
            root: root.clone(),
            daemon_root: daemon_root.clone(),
            prefix,
            skip,
            files: 0,
            max_files: limits.max_files,
            declared,
            fingerprint: None,
        })
    }

    /// Computes `fingerprint` from the form as it is read (before anything is read).
    pub(crate) fn fingerprint_with(&mut self, fingerprint: Fingerprint) {
        self.fingerprint = Some(fingerprint);
    }

    /// The fingerprint (hex) once the whole form was read; `None` before, after a break, or
    /// without one.
    pub(crate) fn fingerprint(&self) -> Option<String> {
        self.fingerprint.as_ref().and_then(Fingerprint::finish)
    }

    /// Reads and drops the data of a file part that is not uploaded (multer reads it anyway to
    /// find the next part; read here, it feeds the fingerprint and whatever meters `data`). It
    /// stops at the first error (a break in the body shows at the next part).
    pub(crate) async fn discard<E>(&self, mut data: BoxStream<'static, Result<Bytes, E>>) {
        while let Some(Ok(_)) = data.next().await {}
    }

    /// Reads the whole form without uploading anything (to compare its fingerprint).
    pub(crate) async fn drain(&mut self) -> Result<(), ApiError> {
        while let Some(part) = self.next_file().await? {
            self.discard(part.data).await;
        }
        Ok(())
    }

    /// The next file part (a `prefix` field before it is taken in), or `None` at the end.
    pub(crate) async fn next_file(&mut self) -> Result<Option<FilePart>, ApiError> {
        loop {
            let field = match self.multipart.next_field().await {
                Ok(Some(f)) => f,
                Ok(None) => {
                    if let Some(f) = &self.fingerprint {
                        f.end();
                    }
                    return Ok(None);
                }
                Err(e) => {
                    self.failure.record(&e);
                    return Err(self.failure.problem(&e.to_string()));
                }
            };
            let name = field.name().unwrap_or("").to_owned();
            let filename = field.file_name().map(str::to_owned);
            if filename.is_none() && !FILE_FIELDS.contains(&name.as_str()) {
                self.take_prefix(&name, field).await?;
                continue;
            }
            if self.files == self.max_files {
                return Err(ApiError::new(
                    ProblemKind::TooManyFiles,
                    format!("a request may carry at most {} files", self.max_files),
                ));
            }
            self.files += 1;
            let prefix = self.prefix.as_ref().unwrap_or(&self.root);
            let key = derive_key(&self.daemon_root, prefix, filename.as_deref());
            let failure = Arc::clone(&self.failure);
            let data = field.map(move |r| r.inspect_err(|e| failure.record(e)));
            let data = match &self.fingerprint {
                Some(f) => f.file(&name, filename.as_deref(), data).boxed(),
                None => data.boxed(),
            };
            return Ok(Some(FilePart {
                filename: filename.unwrap_or_default(),
                key,
                data,
            }));
        }
    }

    /// A text field: only `prefix` and `skip_existing`, once each, before any file.
    async fn take_prefix(
        &mut self,
        name: &str,
        field: multer::Field<'static>,
    ) -> Result<(), ApiError> {
        if name == SKIP_FIELD {
            if self.skip.is_some() || self.files > 0 {
                return Err(ApiError::new(
                    ProblemKind::MisplacedPrefix,
                    "`skip_existing` may be given once, before any file (or as a query parameter)",
                ));
            }
            let text = read_text(field, MAX_PREFIX_FIELD).await?;
            self.note_text(name, &text);
            self.skip = Some(parse_skip(&text)?);
            return Ok(());
        }
        if name != "prefix" {
            return Err(ApiError::new(
                ProblemKind::UnknownField,
                format!(
                    "unknown form field {name:?}: send files (parts with a filename) and optionally `prefix` and `skip_existing`"
                ),
            ));
        }
        if self.prefix.is_some() || self.files > 0 {
            return Err(ApiError::new(
                ProblemKind::MisplacedPrefix,
                "`prefix` may be given once, before any file (or as a query parameter)",
            ));
        }
        let text = read_text(field, MAX_PREFIX_FIELD).await?;
        self.note_text(name, &text);
        self.prefix = Some(join_prefix(&self.daemon_root, &self.root, &text)?);
        Ok(())
    }

    fn note_text(&self, name: &str, text: &str) {
        if let Some(f) = &self.fingerprint {
            f.text(name, text);
        }
    }
}

/// The field (and query parameter) that asks to leave unchanged objects as they are.
const SKIP_FIELD: &str = "skip_existing";

/// A `skip_existing` value: `size` or `checksum` (a body has no mtime to compare).
fn parse_skip(text: &str) -> Result<SkipMode, ApiError> {
    match text.parse::<SkipMode>() {
        Ok(SkipMode::Mtime) => Err(ApiError::new(
            ProblemKind::InvalidQuery,
            "skip_existing=mtime needs the source's mtime, which an uploaded body does not have: \
             use size or checksum",
        )),
        Ok(mode) => Ok(mode),
        Err(e) => Err(ApiError::new(ProblemKind::InvalidQuery, e.to_string())),
    }
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        ProblemKind::RequestTooLarge,
        format!("the request body is over the limit of {limit} bytes"),
    )
}

/// The key of a file part, or the per-file error that says why it has none. Keys in the
/// daemon's reserved directory under `daemon_root` are refused.
fn derive_key(
    daemon_root: &KeyPrefix,
    prefix: &KeyPrefix,
    filename: Option<&str>,
) -> Result<ObjectKey, FileError> {
    let invalid = |msg: String| FileError::new(ErrorCode::InvalidKey, msg, false);
    match filename {
        None | Some("") => Err(invalid("the file part has no filename".into())),
        Some(f) => match ObjectKey::derive(prefix, f) {
            Ok(k) if is_reserved(daemon_root, k.as_str()) => {
                Err(invalid(reserved_message(daemon_root)))
            }
            Ok(k) => Ok(k),
            Err(e) => Err(invalid(format!("{e} [{}]", e.rule()))),
        },
    }
}

/// The client's prefix `p` under the token's `root`, refused in the reserved directory under
/// `daemon_root`.
fn join_prefix(daemon_root: &KeyPrefix, root: &KeyPrefix, p: &str) -> Result<KeyPrefix, ApiError> {
    let invalid = |why: String| {
        ApiError::new(
            ProblemKind::InvalidPrefix,
            format!("invalid prefix {p:?}: {why}"),
        )
    };
    match root.join(p) {
        Ok(joined) if is_reserved(daemon_root, joined.as_str()) => {
            Err(invalid(reserved_message(daemon_root)))
        }
        Ok(joined) => Ok(joined),
        Err(e) => Err(invalid(format!("{e} [{}]", e.rule()))),
    }
}

async fn read_text(mut field: multer::Field<'_>, max: usize) -> Result<String, ApiError> {
    let mut buf = Vec::new();
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| ApiError::new(ProblemKind::MalformedMultipart, e.to_string()))?
    {
        buf.extend_from_slice(&chunk);
        if buf.len() > max {
            return Err(ApiError::new(
                ProblemKind::FieldTooLarge,
                format!("the `prefix` field is over {max} bytes"),
            ));
        }
    }
    String::from_utf8(buf).map_err(|_| {
        ApiError::new(
            ProblemKind::InvalidPrefix,
            "the `prefix` field is not UTF-8",
        )
    })
}

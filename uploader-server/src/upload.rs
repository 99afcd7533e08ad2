//! `POST /v1/uploads`: a multipart/form-data batch, streamed part by part into S3.
//!
//! `multer` is driven directly (axum's extractor applies no per-part limits). A part with a
//! filename is a file; the only text field is `prefix`, which must come before the files (the
//! query parameter `prefix` is the alternative). Each file is streamed through
//! `Uploader::upload_stream` as it arrives: its type is sniffed from its first bytes, small
//! files are sent while the next part is read, large ones go multipart part by part.
//!
//! A request-level failure that happens after some files were stored (body over the limit,
//! malformed multipart, client gone) is answered with a problem document that also lists the
//! `results` so far: no stored file goes unreported.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Extension;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use serde_json::{Value, json};
use uploader_core::{ErrorCode, FileError, FileOutcome, KeyPrefix, ObjectKey};
use uploader_core::{StreamEnd, StreamResult, StreamUpload};

use crate::app::{AppState, RequestId, Slot};
use crate::problem::ApiError;

/// Field names that carry files (any part with a filename is a file, whatever its name).
const FILE_FIELDS: &[&str] = &["file", "files", "files[]"];
/// Longest accepted `prefix` field.
const MAX_PREFIX_FIELD: usize = 1024;

/// One file part and what became of it.
struct Entry {
    filename: String,
    key: Option<String>,
    state: EntryState,
}

enum EntryState {
    Done(FileError),
    Running(StreamUpload, Instant),
    Finished(StreamResult),
    /// Only while a running upload is being awaited.
    Waiting,
}

/// Why reading the request stopped early.
#[derive(Default)]
struct BodyFailure {
    idle: AtomicBool,
    kind: Mutex<Option<FailureKind>>,
}

#[derive(Clone, Copy)]
enum FailureKind {
    TooLarge,
    Malformed,
}

fn classify(e: &multer::Error) -> FailureKind {
    match e {
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => {
            FailureKind::TooLarge
        }
        _ => FailureKind::Malformed,
    }
}

/// The request body, failing when the client sends nothing for `idle`, and handing out one
/// chunk per poll: `multer` reads its input until it is pending, so an always-ready body (a
/// fast client on a fast network) would otherwise pile up in its buffer without bound.
fn idle_guarded(
    body: axum::body::Body,
    idle: Duration,
    failure: Arc<BodyFailure>,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let stream = body.into_data_stream();
    let chunks = futures::stream::unfold((stream, failure), move |(mut s, failure)| async move {
        match tokio::time::timeout(idle, s.next()).await {
            Ok(Some(Ok(b))) => Some((Ok(b), (s, failure))),
            Ok(Some(Err(e))) => Some((Err(std::io::Error::other(e)), (s, failure))),
            Ok(None) => None,
            Err(_) => {
                failure.idle.store(true, Ordering::SeqCst);
                Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client sent nothing for too long",
                    )),
                    (s, failure),
                ))
            }
        }
    });
    OneChunkPerPoll {
        inner: Box::pin(chunks),
        yielded: false,
    }
}

/// Returns `Pending` (after waking itself) between chunks.
struct OneChunkPerPoll<S> {
    inner: std::pin::Pin<Box<S>>,
    yielded: bool,
}

impl<S: Stream> Stream for OneChunkPerPoll<S> {
    type Item = S::Item;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<S::Item>> {
        if self.yielded {
            self.yielded = false;
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
        let polled = self.inner.as_mut().poll_next(cx);
        if matches!(polled, std::task::Poll::Ready(Some(_))) {
            self.yielded = true;
        }
        polled
    }
}

#[derive(serde::Deserialize)]
pub struct UploadQuery {
    prefix: Option<String>,
}

pub async fn handler(
    State(state): State<AppState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    // Held until the response is built: the request keeps its upload slot while it is served.
    Extension(_slot): Extension<Slot>,
    query: Result<axum::extract::Query<UploadQuery>, axum::extract::rejection::QueryRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let inner = &state.0;
    let limits = &inner.limits;
    let query = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;

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
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the files as multipart/form-data",
        ));
    }
    let boundary = multer::parse_boundary(content_type).map_err(|_| {
        ApiError::bad_request(
            "malformed_multipart",
            "the multipart boundary is missing or invalid",
        )
    })?;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_request_size) {
        return Err(ApiError::too_large(
            "request_too_large",
            format!(
                "the request body is over the limit of {} bytes",
                limits.max_request_size
            ),
        ));
    }
    let mut prefix = match &query.prefix {
        Some(p) => Some(join_prefix(&inner.root_prefix, p)?),
        None => None,
    };

    let failure = Arc::new(BodyFailure::default());
    let body = idle_guarded(
        req.into_body(),
        limits.body_idle_timeout,
        Arc::clone(&failure),
    );
    let constraints = multer::Constraints::new()
        .size_limit(multer::SizeLimit::new().whole_stream(limits.max_request_size));
    let mut multipart = multer::Multipart::with_constraints(body, boundary, constraints);

    let mut entries: Vec<Entry> = Vec::new();
    let mut keys: HashSet<String> = HashSet::new();
    let mut request_error: Option<ApiError> = None;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                request_error = Some(body_error(&failure, Some(classify(&e)), &e.to_string()));
                break;
            }
        };
        let name = field.name().unwrap_or("").to_owned();
        let filename = field.file_name().map(str::to_owned);
        let is_file = filename.is_some() || FILE_FIELDS.contains(&name.as_str());
        if !is_file {
            if name != "prefix" {
                request_error = Some(ApiError::bad_request(
                    "unknown_field",
                    format!(
                        "unknown form field {name:?}: send files (parts with a filename) and optionally `prefix`"
                    ),
                ));
                break;
            }
            if prefix.is_some() || !entries.is_empty() {
                request_error = Some(ApiError::bad_request(
                    "misplaced_prefix",
                    "`prefix` may be given once, before any file (or as a query parameter)",
                ));
                break;
            }
            match read_text(field, MAX_PREFIX_FIELD).await {
                Ok(text) => match join_prefix(&inner.root_prefix, &text) {
                    Ok(p) => prefix = Some(p),
                    Err(e) => {
                        request_error = Some(e);
                        break;
                    }
                },
                Err(e) => {
                    request_error = Some(e);
                    break;
                }
            }
            continue;
        }
        if entries.len() == limits.max_files {
            request_error = Some(ApiError::too_large(
                "too_many_files",
                format!("a request may carry at most {} files", limits.max_files),
            ));
            break;
        }
        let prefix_now = prefix.clone().unwrap_or_else(|| inner.root_prefix.clone());
        let filename_shown = filename.clone().unwrap_or_default();
        let key = match filename.as_deref() {
            None | Some("") => Err(FileError::new(
                ErrorCode::InvalidKey,
                "the file part has no filename",
                false,
            )),
            Some(f) => ObjectKey::derive(&prefix_now, f).map_err(|e| {
                FileError::new(ErrorCode::InvalidKey, format!("{e} [{}]", e.rule()), false)
            }),
        };
        let key = match key {
            Ok(k) if !keys.insert(k.as_str().to_owned()) => {
                entries.push(Entry {
                    filename: filename_shown,
                    key: Some(k.as_str().to_owned()),
                    state: EntryState::Done(FileError::new(
                        ErrorCode::DuplicateKey,
                        "an earlier file of this request has the same key",
                        false,
                    )),
                });
                continue;
            }
            Ok(k) => k,
            Err(e) => {
                entries.push(Entry {
                    filename: filename_shown,
                    key: None,
                    state: EntryState::Done(e),
                });
                continue;
            }
        };
        let kind_slot = Arc::clone(&failure);
        let data = field.map(move |r| {
            r.inspect_err(|e| {
                *kind_slot.kind.lock().unwrap() = Some(classify(e));
            })
        });
        let upload = inner
            .uploader
            .upload_stream(
                entries.len(),
                key.clone(),
                Box::pin(data),
                Some(limits.max_file_size),
                &inner.shutdown,
            )
            .await;
        let end = upload.end().clone();
        entries.push(Entry {
            filename: filename_shown,
            key: Some(key.into_string()),
            state: EntryState::Running(upload, Instant::now()),
        });
        if let StreamEnd::Broken(msg) = end {
            request_error = Some(if inner.shutdown.is_cancelled() {
                ApiError {
                    retry_after: Some(5),
                    ..ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "shutting_down",
                        "the server shut down before the request was complete; files not \
                         listed as uploaded were not stored",
                    )
                }
            } else {
                let kind = *failure.kind.lock().unwrap();
                body_error(&failure, kind, &msg)
            });
            break;
        }
    }

    // Every started upload finishes (or aborts) before we answer.
    for e in &mut entries {
        let state = std::mem::replace(&mut e.state, EntryState::Waiting);
        e.state = match state {
            EntryState::Running(upload, t0) => {
                let result = upload.wait().await;
                metrics::histogram!("uploader_upload_duration_seconds")
                    .record(t0.elapsed().as_secs_f64());
                EntryState::Finished(result)
            }
            other => other,
        };
    }
    record_file_metrics(&entries);
    let results: Vec<Value> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| result_json(i, e))
        .collect();

    let response = if let Some(err) = request_error {
        Err(err.with("results", Value::Array(results)))
    } else if entries.is_empty() {
        Err(ApiError::bad_request(
            "no_files",
            "the request carries no file parts",
        ))
    } else {
        let (ok, bytes) = entries
            .iter()
            .fold((0usize, 0u64), |(n, b), e| match &e.state {
                EntryState::Finished(StreamResult {
                    outcome: FileOutcome::Uploaded { .. },
                    size,
                    ..
                }) => (n + 1, b + size),
                _ => (n, b),
            });
        let total = entries.len();
        let all_validation = entries.iter().all(|e| match &e.state {
            EntryState::Done(err) => err.code.is_validation(),
            EntryState::Finished(StreamResult {
                outcome: FileOutcome::Failed { error },
                ..
            }) => error.code.is_validation(),
            _ => false,
        });
        let status = if ok == total {
            StatusCode::CREATED
        } else if ok > 0 {
            StatusCode::MULTI_STATUS
        } else if all_validation {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::BAD_GATEWAY
        };
        let body = json!({
            "request_id": request_id,
            "summary": {"total": total, "succeeded": ok, "failed": total - ok, "bytes": bytes},
            "results": results,
        });
        Ok((status, axum::Json(body)).into_response())
    };
    let status = match &response {
        Ok(r) => r.status().as_u16(),
        Err(e) => e.status.as_u16(),
    };
    metrics::counter!("uploader_batches_total", "status" => status.to_string()).increment(1);
    metrics::histogram!("uploader_batch_duration_seconds").record(started.elapsed().as_secs_f64());
    tracing::info!(status, files = entries.len(), "batch done");
    response
}

fn join_prefix(root: &KeyPrefix, p: &str) -> Result<KeyPrefix, ApiError> {
    root.join(p).map_err(|e| {
        ApiError::bad_request(
            "invalid_prefix",
            format!("invalid prefix {p:?}: {e} [{}]", e.rule()),
        )
    })
}

async fn read_text(mut field: multer::Field<'_>, max: usize) -> Result<String, ApiError> {
    let mut buf = Vec::new();
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| ApiError::bad_request("malformed_multipart", e.to_string()))?
    {
        buf.extend_from_slice(&chunk);
        if buf.len() > max {
            return Err(ApiError::too_large(
                "field_too_large",
                format!("the `prefix` field is over {max} bytes"),
            ));
        }
    }
    String::from_utf8(buf)
        .map_err(|_| ApiError::bad_request("invalid_prefix", "the `prefix` field is not UTF-8"))
}

fn body_error(failure: &BodyFailure, kind: Option<FailureKind>, msg: &str) -> ApiError {
    if failure.idle.load(Ordering::SeqCst) {
        return ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_idle_timeout",
            "the client sent nothing for too long",
        );
    }
    match kind {
        Some(FailureKind::TooLarge) => ApiError::too_large(
            "request_too_large",
            "the request body is over the size limit",
        ),
        _ => ApiError::bad_request(
            "malformed_multipart",
            format!("the multipart body is invalid: {msg}"),
        ),
    }
}

fn record_file_metrics(entries: &[Entry]) {
    for e in entries {
        let outcome = match &e.state {
            EntryState::Done(_) => "failed",
            EntryState::Finished(r) => {
                metrics::counter!("uploader_retries_total").increment(r.retries);
                if r.aborted {
                    metrics::counter!("uploader_multipart_aborts_total").increment(1);
                }
                match &r.outcome {
                    FileOutcome::Uploaded { .. } => {
                        metrics::counter!("uploader_bytes_total").increment(r.size);
                        "uploaded"
                    }
                    FileOutcome::Skipped { .. } => "skipped",
                    FileOutcome::Failed { .. } => "failed",
                }
            }
            EntryState::Running(..) | EntryState::Waiting => "failed",
        };
        metrics::counter!("uploader_files_total", "outcome" => outcome).increment(1);
    }
}

fn result_json(index: usize, e: &Entry) -> Value {
    let failed = |error: &FileError| {
        json!({
            "index": index,
            "filename": e.filename,
            "key": e.key,
            "status": "failed",
            "error": {"code": error.code, "message": error.message, "retryable": error.retryable},
        })
    };
    match &e.state {
        EntryState::Done(error) => failed(error),
        EntryState::Finished(r) => match &r.outcome {
            FileOutcome::Uploaded {
                etag,
                checksum,
                content_type,
                ..
            } => json!({
                "index": index,
                "filename": e.filename,
                "key": e.key,
                "status": "uploaded",
                "size": r.size,
                "content_type": content_type,
                "etag": etag,
                "checksum": checksum,
            }),
            FileOutcome::Failed { error } => failed(error),
            FileOutcome::Skipped { reason } => failed(&FileError {
                code: ErrorCode::AlreadyExists,
                message: reason.clone(),
                retryable: false,
            }),
        },
        EntryState::Running(..) | EntryState::Waiting => {
            unreachable!("every upload is awaited before answering")
        }
    }
}

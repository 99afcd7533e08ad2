//! `POST /v1/uploads`: parse the form, hand each file part to core as it arrives, answer with
//! one result per file. Each file is streamed through `Uploader::upload_stream`: its type is
//! sniffed from its first bytes, small files are sent while the next part is read, large ones go
//! multipart part by part. The form is [`crate::form`], the bookkeeping [`crate::batch`].
//!
//! A request-level failure that happens after some files were stored (body over the limit,
//! malformed multipart, client gone) is answered with a problem document that also lists the
//! `results` so far: no stored file goes unreported.

use std::time::Instant;

use axum::Extension;
use axum::extract::{Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tower_http::request_id::RequestId;
use uploader_core::{ErrorCode, FileError, StreamEnd};

use crate::access::AccessStats;

use crate::batch::Batch;
use crate::form::{FilePart, Form};
use crate::idempotency::fingerprint::Fingerprint;
use crate::idempotency::{Begin, IdempotencyKey, idempotency_scope};
use crate::problem::{ApiError, ProblemKind};
use crate::state::{AppState, Slot};

/// The query of `POST /v1/uploads`.
#[derive(serde::Deserialize)]
pub struct UploadQuery {
    prefix: Option<String>,
    /// `size` or `checksum`: leave objects that are unchanged by this measure as they are.
    skip_existing: Option<String>,
}

/// The handler.
pub async fn handler(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    // Held until the response is built: the request keeps its upload slot while it is served.
    Extension(_slot): Extension<Slot>,
    query: Result<axum::extract::Query<UploadQuery>, axum::extract::rejection::QueryRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let query = query.map_err(|e| ApiError::new(ProblemKind::InvalidQuery, e.body_text()))?;
    let key = IdempotencyKey::from_headers(req.headers())?;
    let auth = req.headers().get(header::AUTHORIZATION).cloned();
    let (prefix, skip) = (query.prefix.as_deref(), query.skip_existing.as_deref());
    let mut form = Form::open(&state, req, prefix, skip)?;
    let claim = match key {
        None => None,
        Some(key) => {
            let scope = idempotency_scope(&state.tokens, auth.as_ref().map(|v| v.as_bytes()));
            form.fingerprint_with(Fingerprint::new(prefix, skip));
            match state.records.begin(&scope, &key).await? {
                Begin::Claimed(claim) => Some(claim),
                Begin::Running => {
                    return Err(ApiError::new(
                        ProblemKind::IdempotencyKeyInUse,
                        "a request with this Idempotency-Key is still being processed",
                    ));
                }
                Begin::Completed(done) => {
                    form.drain().await?;
                    return done.replay(form.fingerprint().as_deref());
                }
            }
        }
    };
    let (response, stats) = run_batch(&state, &request_id, &mut form).await;
    let mut response = match claim {
        Some(claim) => claim.finish(response, form.fingerprint()).await,
        None => response,
    };
    let status = response.status().as_u16();
    crate::metrics::batch_done(status, started.elapsed());
    tracing::info!(status, files = stats.files, "batch done");
    response.extensions_mut().insert(stats);
    Ok(response)
}

/// Reads and uploads the files of `form`; the response and what it stored.
async fn run_batch(
    state: &AppState,
    request_id: &RequestId,
    form: &mut Form,
) -> (Response, AccessStats) {
    let mut batch = Batch::default();
    let request_error = read_files(state, form, &mut batch).await.err();
    // Every started upload finishes (or aborts) before we answer.
    let finished = batch.finish().await;
    let response = match request_error {
        Some(err) => Err(err.with("results", finished.results())),
        None if finished.is_empty() => Err(ApiError::new(
            ProblemKind::NoFiles,
            "the request carries no file parts",
        )),
        None => {
            let id = request_id.header_value().to_str().unwrap_or_default();
            let (status, body) = finished.response(id);
            Ok((status, axum::Json(body)).into_response())
        }
    };
    let (_, bytes) = finished.stored();
    let stats = AccessStats {
        files: finished.len(),
        bytes,
    };
    (response.unwrap_or_else(IntoResponse::into_response), stats)
}

/// Hands every file part to core, in order; stops at the first request-level failure.
async fn read_files(state: &AppState, form: &mut Form, batch: &mut Batch) -> Result<(), ApiError> {
    while let Some(FilePart {
        filename,
        key,
        data,
    }) = form.next_file().await?
    {
        let key = match key {
            Ok(k) if !batch.claim(&k) => {
                let error = FileError::new(
                    ErrorCode::DuplicateKey,
                    "an earlier file of this request has the same key",
                    false,
                );
                batch.refuse(filename, Some(k.into_string()), error);
                form.discard(data).await;
                continue;
            }
            Ok(k) => k,
            Err(error) => {
                batch.refuse(filename, None, error);
                form.discard(data).await;
                continue;
            }
        };
        let max = Some(state.limits.max_file_size);
        let skip = form.skip.or(state.uploader.config().skip_existing);
        let upload = state
            .uploader
            .upload_stream_skipping(batch.len(), key.clone(), data, max, &state.shutdown, skip)
            .await;
        let end = upload.end().clone();
        batch.push(filename, &key, upload);
        if let StreamEnd::Broken(msg) = end {
            return Err(if state.shutdown.is_cancelled() {
                ApiError::new(
                    ProblemKind::ShuttingDown,
                    "the server shut down before the request was complete; files not \
                     listed as uploaded were not stored",
                )
            } else {
                form.failure.problem(&msg)
            });
        }
    }
    Ok(())
}

//! `POST /v1/uploads`: parse the form, hand each file part to core as it arrives, answer with
//! one result per file. Each file is streamed through `Uploader::upload_stream`: its type is
//! sniffed from its first bytes, small files are sent while the next part is read, large ones go
//! multipart part by part. The form is [`crate::form`], the bookkeeping [`crate::batch`].
//!
//! A request-level failure that happens after some files were stored (body over the limit,
//! malformed multipart, client gone) is answered with a problem document that also lists the
//! `results` so far: no stored file goes unreported.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Extension;
use axum::extract::{Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tower_http::request_id::RequestId;
use uploader_core::{ErrorCode, FileError, StreamEnd};

use crate::access::AccessStats;
use crate::model::BatchBody;
use crate::problem::Problem;

use crate::batch::Batch;
use crate::config::Limits;
use crate::form::{FilePart, Form};
use crate::idempotency::fingerprint::Fingerprint;
use crate::idempotency::{Begin, IdempotencyKey, idempotency_scope};
use crate::problem::{ApiError, ProblemKind};
use crate::state::{AppState, Slot};
use crate::tenants::Identity;

/// The query of `POST /v1/uploads`.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// Key prefix under the server's root prefix and the token's (or the `prefix` form field).
    prefix: Option<String>,
    /// `size` or `checksum`: leave an object that has the file's size (size) or full-object
    /// checksum (checksum) as it is; reported as skipped.
    skip_existing: Option<String>,
}

/// The form of `POST /v1/uploads` (for the OpenAPI document: the handler reads it as a stream).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct UploadForm {
    /// Key prefix under the server's root prefix and the token's; before the files.
    prefix: Option<String>,
    /// As the query parameter; before the files.
    skip_existing: Option<String>,
    /// The files (any part with a filename is a file).
    #[schema(value_type = Vec<String>, format = Binary)]
    file: Vec<Vec<u8>>,
}

/// The handler.
#[utoipa::path(
    post,
    path = "/v1/uploads",
    summary = "Upload a batch of files (multipart/form-data), streamed to S3",
    security(("bearer" = [])),
    params(
        UploadQuery,
        ("Idempotency-Key" = Option<String>, Header,
         description = "1 to 255 printable ASCII characters: a repeat of the same request with \
                        the same key (and token) gets the stored response, marked \
                        Idempotent-Replayed, without uploading again"),
    ),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "every file stored (or left unchanged with skip_existing); \
            also a replayed response (`Idempotent-Replayed: true`)", body = BatchBody,
            headers(("Idempotent-Replayed" = String, description = "`true` on a replayed response"))),
        (status = 207, description = "some files stored, some failed", body = BatchBody,
            headers(("Idempotent-Replayed" = String, description = "`true` on a replayed response"))),
        (status = 422, description = "every file refused by validation (a batch), or the \
            Idempotency-Key was used for a different request (a problem)",
            content((BatchBody = "application/json"), (Problem = "application/problem+json"))),
        (status = 502, description = "every file failed upstream", body = BatchBody),
        (status = 400, description = "malformed multipart, unknown field, bad prefix, no files, \
            malformed Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "missing or invalid bearer token", body = Problem,
            content_type = "application/problem+json"),
        (status = 403, description = "a browser's Origin that is neither the daemon's own nor a \
            --cors-origin", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "the body stalled past the idle timeout", body = Problem,
            content_type = "application/problem+json"),
        (status = 409, description = "a request with the same Idempotency-Key is still running; \
            see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "request or file count over the limit", body = Problem,
            content_type = "application/problem+json"),
        (status = 415, description = "not multipart/form-data", body = Problem,
            content_type = "application/problem+json"),
        (status = 429, description = "over the token's requests or bytes per minute (a replay \
            and a 409 are not charged; a 429 is never stored for an Idempotency-Key); see \
            Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "overloaded, shutting down, or the idempotency record \
            unreachable; see Retry-After", body = Problem,
            content_type = "application/problem+json"),
    )
)]
pub async fn handler(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    // Held until the response is built: the request keeps its upload slot while it is served.
    Extension(_slot): Extension<Slot>,
    Extension(who): Extension<Identity>,
    query: Result<axum::extract::Query<UploadQuery>, axum::extract::rejection::QueryRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let query = query.map_err(|e| ApiError::new(ProblemKind::InvalidQuery, e.body_text()))?;
    // The token's prefix below the root: the client's prefix and the keys go under it.
    let root = who.root(&state.root_prefix).ok_or_else(|| {
        ApiError::new(
            ProblemKind::InvalidPrefix,
            "the token's prefix under the root prefix is too long for a key",
        )
    })?;
    let limits = who.limits_within(&state.limits);
    let key = IdempotencyKey::from_headers(req.headers())?;
    let auth = req.headers().get(header::AUTHORIZATION).cloned();
    let (prefix, skip) = (query.prefix.as_deref(), query.skip_existing.as_deref());
    let mut form = Form::open(&state.root_prefix, &root, &limits, req, prefix, skip)?;
    // The quotas count requests that are processed: without a key, or once the key is
    // claimed. A 409 and a replay upload nothing and are not charged; a 429 releases the claim
    // (it is never stored as the key's response), so a retry after Retry-After runs.
    let claim = match key {
        None => {
            who.admit(form.declared)?;
            None
        }
        Some(key) => {
            let scope = idempotency_scope(&state.auth, auth.as_ref().map(|v| v.as_bytes()));
            form.fingerprint_with(Fingerprint::new(prefix, skip));
            match state.records.begin(&scope, &key).await? {
                Begin::Claimed(claim) => {
                    if let Err(e) = who.admit(form.declared) {
                        claim.release().await;
                        return Err(e);
                    }
                    Some(claim)
                }
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
    let (response, stats) = run_batch(&state, &who, &limits, &request_id, &mut form).await;
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

/// Reads and uploads the files of `form` for `who`; the response and what it stored.
async fn run_batch(
    state: &AppState,
    who: &Identity,
    limits: &Limits,
    request_id: &RequestId,
    form: &mut Form,
) -> (Response, AccessStats) {
    let mut batch = Batch::default();
    let request_error = read_files(state, who, limits, form, &mut batch).await.err();
    // Every started upload finishes (or aborts) before we answer.
    let finished = batch.finish().await;
    let response = match request_error {
        Some(err) => Err(err.with_results(finished.results())),
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
    crate::metrics::token_batch(who.id(), finished.len(), bytes);
    let stats = AccessStats {
        files: finished.len(),
        bytes,
    };
    (response.unwrap_or_else(IntoResponse::into_response), stats)
}

/// Hands every file part to core, in order, each charged to the token's byte quota as it
/// streams (a refused part's bytes too: they were received); stops at the first request-level
/// failure.
async fn read_files(
    state: &AppState,
    who: &Identity,
    limits: &Limits,
    form: &mut Form,
    batch: &mut Batch,
) -> Result<(), ApiError> {
    let over = Arc::new(Mutex::new(None));
    let meter = |data| {
        crate::quota::metered(
            data,
            Arc::clone(who.quota()),
            who.limits().rates,
            Arc::clone(&over),
        )
    };
    while let Some(FilePart {
        filename,
        key,
        data,
    }) = form.next_file().await?
    {
        let refused = match key {
            Ok(k) if !batch.claim(&k) => {
                let error = FileError::new(
                    ErrorCode::DuplicateKey,
                    "an earlier file of this request has the same key",
                    false,
                );
                Err((Some(k.into_string()), error))
            }
            Ok(k) => Ok(k),
            Err(error) => Err((None, error)),
        };
        let key = match refused {
            Ok(k) => k,
            Err((key, error)) => {
                batch.refuse(filename, key, error);
                form.discard(meter(data)).await;
                if let Some(o) = over.lock().expect("never poisoned").take() {
                    return Err(who.refused(o));
                }
                continue;
            }
        };
        let max = Some(limits.max_file_size);
        let skip = form.skip.or(state.uploader.config().skip_existing);
        let data = meter(data);
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
            } else if let Some(o) = over.lock().expect("never poisoned").take() {
                who.refused(o)
            } else {
                form.failure.problem(&msg)
            });
        }
    }
    Ok(())
}

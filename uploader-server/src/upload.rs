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
use axum::response::{IntoResponse, Response};
use tower_http::request_id::RequestId;
use uploader_core::{ErrorCode, FileError, StreamEnd};

use crate::access::AccessStats;

use crate::batch::Batch;
use crate::config::Limits;
use crate::form::Form;
use crate::problem::{ApiError, ProblemKind};
use crate::state::{AppState, Slot};
use crate::tenants::Identity;

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
    let mut form = Form::open(
        &root,
        &limits,
        req,
        query.prefix.as_deref(),
        query.skip_existing.as_deref(),
    )?;
    who.admit(form.declared)?;
    let mut batch = Batch::default();
    let request_error = read_files(&state, &who, &limits, &mut form, &mut batch)
        .await
        .err();
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
    let mut response = response.unwrap_or_else(IntoResponse::into_response);
    let status = response.status().as_u16();
    crate::metrics::batch_done(status, started.elapsed());
    tracing::info!(status, files = finished.len(), "batch done");
    let (_, bytes) = finished.stored();
    crate::metrics::token_batch(who.id(), finished.len(), bytes);
    response.extensions_mut().insert(AccessStats {
        files: finished.len(),
        bytes,
    });
    Ok(response)
}

/// Hands every file part to core, in order, each charged to the token's byte quota as it
/// streams; stops at the first request-level failure.
async fn read_files(
    state: &AppState,
    who: &Identity,
    limits: &Limits,
    form: &mut Form,
    batch: &mut Batch,
) -> Result<(), ApiError> {
    let over = Arc::new(Mutex::new(None));
    while let Some(part) = form.next_file().await? {
        let key = match part.key {
            Ok(k) if !batch.claim(&k) => {
                let error = FileError::new(
                    ErrorCode::DuplicateKey,
                    "an earlier file of this request has the same key",
                    false,
                );
                batch.refuse(part.filename, Some(k.into_string()), error);
                continue;
            }
            Ok(k) => k,
            Err(error) => {
                batch.refuse(part.filename, None, error);
                continue;
            }
        };
        let max = Some(limits.max_file_size);
        let skip = form.skip.or(state.uploader.config().skip_existing);
        let data = crate::quota::metered(
            part.data,
            Arc::clone(who.quota()),
            who.limits().rates,
            Arc::clone(&over),
        );
        let upload = state
            .uploader
            .upload_stream_skipping(batch.len(), key.clone(), data, max, &state.shutdown, skip)
            .await;
        let end = upload.end().clone();
        batch.push(part.filename, &key, upload);
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

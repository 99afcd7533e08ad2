//! Transfer: sends one planned file — a single PUT, or a multipart upload whose parts go in
//! parallel — with retries, checksums and a guaranteed end to every multipart upload.
//!
//! Every data request takes a permit from the shared [`Budget`] before its data is read. A
//! multipart upload that fails, or whose job is cancelled, is aborted before the file is
//! reported, so no orphaned parts are left behind. The checksum of each body is computed once,
//! in a blocking thread, by reading the range the request will send; the HTTP client re-reads the
//! range from the path (offset + length) on every attempt, so retries never hold data in memory.
//! If the file changes between those reads the server refuses the checksum, and a file whose
//! size or mtime changed during the upload is reported as `source_changed`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use futures::future::BoxFuture;
use futures::{StreamExt as _, TryStreamExt as _};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, debug, info_span, warn};

use crate::checksum::{Checksum, ChecksumAlgorithm};
use crate::config::UploadConfig;
use crate::key::ObjectKey;
use crate::plan::Plan;
use crate::report::{ErrorCode, Event, FileError, FileOutcome};
use crate::schedule::Budget;
use crate::store::{Body, ObjectStore, PartReceipt, PutOptions, PutResult, StoreError};

/// State shared by every file of one job.
pub(crate) struct Job {
    pub store: Arc<dyn ObjectStore>,
    pub budget: Budget,
    pub config: Arc<UploadConfig>,
    pub cancel: CancellationToken,
    pub events: Option<UnboundedSender<Event>>,
    pub retries: AtomicU64,
    pub aborted: AtomicU64,
}

impl Job {
    pub fn emit(&self, event: Event) {
        if let Some(tx) = &self.events {
            let _ = tx.send(event);
        }
    }
}

/// A file ready to send.
#[derive(Debug, Clone)]
pub(crate) struct FileTask {
    pub index: usize,
    pub path: PathBuf,
    pub key: ObjectKey,
    pub size: u64,
    pub modified: Option<SystemTime>,
    pub content_type: Option<String>,
}

/// Why a transfer stopped.
pub(crate) enum Stop {
    Store(StoreError),
    Local(FileError),
    Cancelled,
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Stop::Store(e)
    }
}

/// Maps a store error to the file-level error reported to users.
pub(crate) fn file_error(e: &StoreError) -> FileError {
    let code = if e.is_bad_digest() {
        ErrorCode::ChecksumMismatch
    } else if e.is_throttle() {
        ErrorCode::UpstreamThrottled
    } else if matches!(e, StoreError::Timeout { .. }) {
        ErrorCode::UpstreamTimeout
    } else if matches!(e, StoreError::Body { .. }) {
        ErrorCode::SourceUnreadable
    } else if e.status().is_some_and(|s| (400..500).contains(&s)) {
        ErrorCode::UpstreamRejected
    } else {
        ErrorCode::UpstreamError
    };
    FileError::new(code, error_chain(e), e.is_retryable())
}

/// An error and its sources, joined with ": ".
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let msg = inner.to_string();
        if !s.contains(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        src = inner.source();
    }
    s
}

impl Stop {
    pub(crate) fn into_file_error(self) -> FileError {
        match self {
            Stop::Store(e) => file_error(&e),
            Stop::Local(e) => e,
            Stop::Cancelled => FileError::new(
                ErrorCode::Cancelled,
                "the upload was cancelled before this file was stored",
                true,
            ),
        }
    }
}

/// Whether cancellation may interrupt a request in flight.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interrupt {
    /// Drop the request (an upload part: the whole multipart upload is aborted anyway).
    Yes,
    /// Let the request finish: its effect must be known (a created multipart upload must be
    /// aborted, a completed one reported as uploaded; a PUT either landed or not).
    No,
}

/// Runs `op` under a budget permit, retrying retryable failures with backoff. Cancellation
/// interrupts the waits, and the request itself when `interrupt` allows.
pub(crate) async fn with_retries<'a, T>(
    job: &'a Job,
    index: usize,
    interrupt: Interrupt,
    mut op: impl FnMut() -> BoxFuture<'a, Result<T, Stop>>,
) -> Result<T, Stop> {
    let policy = job.config.retry;
    let mut attempt = 1;
    loop {
        let permit = tokio::select! {
            biased;
            () = job.cancel.cancelled() => return Err(Stop::Cancelled),
            p = job.budget.acquire() => p,
        };
        let result = if interrupt == Interrupt::Yes {
            tokio::select! {
                biased;
                () = job.cancel.cancelled() => return Err(Stop::Cancelled),
                r = op() => r,
            }
        } else {
            op().await
        };
        drop(permit);
        match result {
            Err(Stop::Store(e)) if policy.should_retry(attempt, &e) => {
                let wait = policy.backoff(attempt, &e);
                debug!(attempt, ?wait, error = %e, "retrying");
                job.retries.fetch_add(1, Ordering::Relaxed);
                job.emit(Event::Retry { index, attempt });
                tokio::select! {
                    () = job.cancel.cancelled() => return Err(Stop::Cancelled),
                    () = tokio::time::sleep(wait) => {}
                }
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Checksums a file range in a blocking thread.
async fn checksum_range(
    alg: ChecksumAlgorithm,
    path: &std::path::Path,
    offset: u64,
    len: u64,
) -> Result<Checksum, Stop> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || Checksum::of_file_range(alg, &path, offset, len))
        .await
        .map_err(|e| {
            Stop::Local(FileError::new(
                ErrorCode::SourceUnreadable,
                e.to_string(),
                false,
            ))
        })?
        .map_err(|e| {
            let code = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                ErrorCode::SourceChanged
            } else {
                ErrorCode::SourceUnreadable
            };
            Stop::Local(FileError::new(
                code,
                format!("reading the source: {e}"),
                false,
            ))
        })
}

/// Fails when the source's size or mtime differ from what was planned.
async fn ensure_unchanged(task: &FileTask) -> Result<(), Stop> {
    let meta = tokio::fs::metadata(&task.path).await.map_err(|e| {
        Stop::Local(FileError::new(
            ErrorCode::SourceChanged,
            format!("the source vanished during the upload: {e}"),
            true,
        ))
    })?;
    if meta.len() != task.size || meta.modified().ok() != task.modified {
        return Err(Stop::Local(FileError::new(
            ErrorCode::SourceChanged,
            format!(
                "the source changed during the upload (size {} → {})",
                task.size,
                meta.len()
            ),
            true,
        )));
    }
    Ok(())
}

pub(crate) fn put_options(config: &UploadConfig, content_type: Option<String>) -> PutOptions {
    PutOptions {
        content_type,
        checksum: None,
        checksum_algorithm: None,
        if_none_match: config.no_clobber,
        metadata: config.metadata.clone(),
        storage_class: config.storage_class.clone(),
        sse: config.sse.clone(),
    }
}

/// Uploads one file; never returns early without an outcome.
pub(crate) async fn upload_file(job: &Job, task: FileTask, plan: Plan) -> FileOutcome {
    let span = info_span!("file", index = task.index, key = %task.key, size = task.size);
    async {
        let started = Instant::now();
        // Some servers ignore `If-None-Match` (rclone serve s3): look first, so no-clobber
        // holds there too; the conditional header still closes the race where it is honoured.
        if job.config.no_clobber {
            match job.store.head(task.key.as_str()).await {
                Ok(Some(_)) => {
                    return FileOutcome::Skipped {
                        reason: "the key already exists (no-clobber)".into(),
                    };
                }
                Ok(None) => {}
                Err(e) => {
                    return FileOutcome::Failed {
                        error: file_error(&e),
                    };
                }
            }
        }
        let result = match plan {
            Plan::Single { .. } => single(job, &task).await,
            Plan::Multipart { .. } => multipart(job, &task, plan).await,
        };
        debug!(elapsed = ?started.elapsed(), ok = result.is_ok(), "file done");
        match result {
            Ok(put) => FileOutcome::Uploaded {
                etag: put.0.etag,
                checksum: put.1,
                content_type: task.content_type.clone(),
                parts: plan.parts(),
            },
            Err(Stop::Store(e)) if job.config.no_clobber && e.is_precondition_failed() => {
                FileOutcome::Skipped {
                    reason: "the key already exists (no-clobber)".into(),
                }
            }
            Err(stop) => FileOutcome::Failed {
                error: stop.into_file_error(),
            },
        }
    }
    .instrument(span)
    .await
}

async fn single(job: &Job, task: &FileTask) -> Result<(PutResult, Option<String>), Stop> {
    let alg = job.config.checksum;
    let checksum = tokio::sync::OnceCell::new();
    let opts = put_options(&job.config, task.content_type.clone());
    let opts = &opts;
    let body = Body::File {
        path: task.path.clone(),
        offset: 0,
        len: task.size,
    };
    let result = with_retries(job, task.index, Interrupt::No, || {
        let (checksum, body) = (&checksum, body.clone());
        Box::pin(async move {
            let c = checksum
                .get_or_try_init(|| checksum_range(alg, &task.path, 0, task.size))
                .await?;
            let opts = PutOptions {
                checksum: Some(c.clone()),
                ..opts.clone()
            };
            Ok(job.store.put(&task.key, body, &opts).await?)
        })
    })
    .await?;
    ensure_unchanged(task).await?;
    job.emit(Event::Progress {
        index: task.index,
        bytes: task.size,
    });
    let reported = checksum.get().map(ToString::to_string);
    Ok((result, reported))
}

async fn multipart(
    job: &Job,
    task: &FileTask,
    plan: Plan,
) -> Result<(PutResult, Option<String>), Stop> {
    let alg = job.config.checksum;
    let mut opts = put_options(&job.config, task.content_type.clone());
    opts.checksum_algorithm = Some(alg);
    let opts = &opts;
    let mut create_attempts = 0u32;
    let attempts = &mut create_attempts;
    let upload_id = with_retries(job, task.index, Interrupt::No, || {
        *attempts += 1;
        Box::pin(async move { Ok(job.store.create_multipart(&task.key, opts).await?) })
    })
    .await?;
    debug!(%upload_id, parts = plan.parts(), "multipart upload created");

    let outcome = if job.cancel.is_cancelled() {
        Err(Stop::Cancelled)
    } else {
        send_parts_and_complete(job, task, plan, &upload_id).await
    };
    if let Err(stop) = &outcome {
        if !matches!(stop, Stop::Cancelled) {
            warn!(%upload_id, "multipart upload failed; aborting it");
        }
        abort_upload(job, task.index, &task.key, &upload_id).await;
    }
    if create_attempts > 1 {
        reap_lost_creates(job, task.index, &task.key, &upload_id).await;
    }
    outcome
}

/// A retried `CreateMultipartUpload` may have created an upload whose answer was lost: the
/// server has it, we never learnt its id. After the file is done, abort the uploads of this
/// exact key other than ours, so none is left behind. (Another client uploading the very same
/// key at the very same moment would lose its upload; that is the price of never leaving
/// orphans, and only paid after a lost response.)
pub(crate) async fn reap_lost_creates(job: &Job, index: usize, key: &ObjectKey, ours: &str) {
    let Ok(pending) = job.store.list_multipart_uploads(key.as_str()).await else {
        return;
    };
    for p in pending {
        if p.key == key.as_str() && p.upload_id != ours {
            warn!(upload_id = %p.upload_id, "aborting a multipart upload whose creation answer was lost");
            abort_upload(job, index, key, &p.upload_id).await;
        }
    }
}

async fn send_parts_and_complete(
    job: &Job,
    task: &FileTask,
    plan: Plan,
    upload_id: &str,
) -> Result<(PutResult, Option<String>), Stop> {
    let alg = job.config.checksum;
    let parallel = job.budget.max_requests().max(1);
    let mut parts: Vec<PartReceipt> = futures::stream::iter(1..=plan.parts())
        .map(|n| async move {
            let (offset, len) = plan.part_range(n);
            let span = info_span!("part", n, offset, len);
            let checksum = tokio::sync::OnceCell::new();
            let receipt = with_retries(job, task.index, Interrupt::Yes, || {
                let checksum = &checksum;
                Box::pin(async move {
                    let c = checksum
                        .get_or_try_init(|| checksum_range(alg, &task.path, offset, len))
                        .await?;
                    let body = Body::File {
                        path: task.path.clone(),
                        offset,
                        len,
                    };
                    Ok(job
                        .store
                        .upload_part(&task.key, upload_id, n, body, Some(c))
                        .await?)
                })
            })
            .instrument(span)
            .await?;
            job.emit(Event::Progress {
                index: task.index,
                bytes: len,
            });
            Ok::<_, Stop>(receipt)
        })
        .buffer_unordered(parallel)
        .try_collect()
        .await?;
    parts.sort_by_key(|p| p.part_number);
    ensure_unchanged(task).await?;

    let parts = &parts;
    let mut attempts = 0u32;
    let attempts = &mut attempts;
    let completed = with_retries(job, task.index, Interrupt::No, || {
        *attempts += 1;
        let retried = *attempts > 1;
        Box::pin(async move {
            match job
                .store
                .complete_multipart(&task.key, upload_id, parts)
                .await
            {
                // A retried Complete whose first answer was lost finds the upload gone. The
                // object is then stored if it has the planned size.
                Err(e) if retried && e.code() == Some("NoSuchUpload") => {
                    match job.store.head(task.key.as_str()).await? {
                        Some(meta) if meta.size == task.size => Ok(PutResult {
                            etag: meta.etag,
                            checksum: None,
                        }),
                        _ => Err(Stop::Store(e)),
                    }
                }
                other => Ok(other?),
            }
        })
    })
    .await?;
    let checksums: Option<Vec<Checksum>> = parts.iter().map(|p| p.checksum.clone()).collect();
    let reported = checksums
        .and_then(|c| Checksum::composite(&c))
        .map(|c| format!("{alg}:{c}"));
    Ok((completed, reported))
}

/// Aborts a multipart upload, retrying; never interrupted by cancellation (that is when it is
/// needed most).
pub(crate) async fn abort_upload(job: &Job, index: usize, key: &ObjectKey, upload_id: &str) {
    let policy = job.config.retry;
    let mut attempt = 1;
    loop {
        let result = {
            let _permit = job.budget.acquire().await;
            job.store.abort_multipart(key.as_str(), upload_id).await
        };
        match result {
            Ok(()) => {
                job.aborted.fetch_add(1, Ordering::Relaxed);
                job.emit(Event::MultipartAborted { index });
                return;
            }
            Err(e) if e.code() == Some("NoSuchUpload") => return,
            Err(e) if policy.should_retry(attempt, &e) => {
                tokio::time::sleep(policy.backoff(attempt, &e)).await;
                attempt += 1;
            }
            Err(e) => {
                warn!(%upload_id, error = %e, "could not abort the multipart upload; `uploader cleanup` removes it");
                return;
            }
        }
    }
}

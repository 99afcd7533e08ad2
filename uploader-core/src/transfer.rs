//! Transfer: sends one planned file — a single PUT, or a multipart upload whose parts go in
//! parallel — with retries, checksums and a guaranteed end to every multipart upload.
//!
//! Every data request takes a permit from the shared [`Budget`] before its data is read. A
//! multipart upload that fails, or whose job is cancelled, is aborted before the file is
//! reported, so no orphaned parts are left behind. Each body (a whole small file, or one part)
//! is read from disk once, in a blocking thread, into memory reserved from the byte budget, and
//! its checksum is computed during that read; every attempt sends those bytes. Only a range too
//! large to buffer (a quarter of the byte budget) is checksummed by a first read and streamed
//! from the path (offset + length) on each attempt. A file whose size or mtime changed during
//! the upload is reported as `source_changed`.

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
#[derive(Debug)]
pub(crate) struct FileTask {
    pub index: usize,
    pub path: PathBuf,
    pub key: ObjectKey,
    pub size: u64,
    pub modified: Option<SystemTime>,
    pub content_type: Option<String>,
    /// The whole file, read once with its checksum, for small files (see
    /// [`crate::uploader::INLINE_MAX`]): sent and retried from memory, no second read.
    pub inline: Option<Inline>,
}

/// A small file's bytes and their checksum, read in one go.
#[derive(Debug)]
pub(crate) struct Inline {
    pub data: bytes::Bytes,
    pub checksum: Checksum,
    /// The byte-budget reservation that covers `data` while it is held.
    pub _reserved: tokio::sync::OwnedSemaphorePermit,
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

/// What every attempt of one request sends, prepared on its first attempt: either the range
/// read into memory once with its checksum computed while reading (each chunk hashed while it
/// is still in cache; retries resend the same bytes), or, for ranges too large to buffer, the
/// checksum of a first read and the path, which the HTTP client reads again per attempt.
#[derive(Clone)]
struct Prepared {
    body: Body,
    checksum: Checksum,
}

/// Whether a range of `len` bytes is read into memory (see [`Prepared`]): when a quarter of the
/// byte budget holds it, so several always fit. With the defaults (96 MiB budget, 8 MiB parts,
/// 16 MiB multipart threshold) every body is; parts raised past 24 MiB (huge files, or a large
/// `--part-size`) stream from disk instead.
fn buffers(job: &Job, len: u64) -> bool {
    len <= job.config.max_buffer_bytes / 4
}

/// The byte-budget reservation for a body of `len` bytes, taken before the request permit
/// (never the other way round, so the two budgets cannot deadlock).
async fn reserve(job: &Job, len: u64) -> Option<tokio::sync::OwnedSemaphorePermit> {
    if buffers(job, len) {
        Some(job.budget.acquire_bytes(len).await)
    } else {
        None
    }
}

/// Prepares the body of `len` bytes of `path` from `offset` (see [`Prepared`]).
async fn prepare(
    job: &Job,
    path: &std::path::Path,
    offset: u64,
    len: u64,
) -> Result<Prepared, Stop> {
    let alg = job.config.checksum;
    let buffer = buffers(job, len).then(|| {
        job.budget
            .take_buffer(usize::try_from(len).expect("buffered ranges are small"))
    });
    let owned = path.to_owned();
    let read = tokio::task::spawn_blocking(move || {
        if let Some(buffer) = buffer {
            read_range_blocking(alg, &owned, offset, buffer)
        } else {
            let checksum = Checksum::of_file_range(alg, &owned, offset, len)?;
            Ok(Prepared {
                body: Body::File {
                    path: owned,
                    offset,
                    len,
                },
                checksum,
            })
        }
    });
    read.await
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

fn read_range_blocking(
    alg: ChecksumAlgorithm,
    path: &std::path::Path,
    offset: u64,
    mut data: Vec<u8>,
) -> std::io::Result<Prepared> {
    use std::io::{Read as _, Seek as _};
    /// Hashing each chunk right after reading it finds it in the CPU cache.
    const CHUNK: usize = 256 * 1024;
    let size = data.len();
    let mut f = std::fs::File::open(path)?;
    f.seek(std::io::SeekFrom::Start(offset))?;
    let mut hasher = crate::checksum::Hasher::new(alg);
    let mut filled = 0;
    while filled < size {
        let end = (filled + CHUNK).min(size);
        let n = f.read(&mut data[filled..end])?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "file ended {} bytes early (it changed since it was listed)",
                    size - filled
                ),
            ));
        }
        hasher.update(&data[filled..filled + n]);
        filled += n;
    }
    Ok(Prepared {
        body: Body::Bytes(data.into()),
        checksum: hasher.finish(),
    })
}

/// Gives a buffered body's memory back to the budget's pool once no request holds it.
fn recycle(job: &Job, prepared: Option<Prepared>) {
    if let Some(Prepared {
        body: Body::Bytes(b),
        ..
    }) = prepared
        && let Ok(b) = b.try_into_mut()
    {
        job.budget.give_buffer(b.into());
    }
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
    // Small files were read whole, with their checksum, when they were sniffed.
    let (prepared, _reserved) = match &task.inline {
        Some(inline) => (
            tokio::sync::OnceCell::new_with(Some(Prepared {
                body: Body::Bytes(inline.data.clone()),
                checksum: inline.checksum.clone(),
            })),
            None,
        ),
        None => (tokio::sync::OnceCell::new(), reserve(job, task.size).await),
    };
    let opts = put_options(&job.config, task.content_type.clone());
    let opts = &opts;
    let result = with_retries(job, task.index, Interrupt::No, || {
        let prepared = &prepared;
        Box::pin(async move {
            let p = prepared
                .get_or_try_init(|| prepare(job, &task.path, 0, task.size))
                .await?;
            let opts = PutOptions {
                checksum: Some(p.checksum.clone()),
                ..opts.clone()
            };
            Ok(job.store.put(&task.key, p.body.clone(), &opts).await?)
        })
    })
    .await?;
    // An inline body is the snapshot that was read (and checked unchanged while reading); a
    // larger one was read after the sniff, so check the file did not change in between.
    if task.inline.is_none() {
        ensure_unchanged(task).await?;
    }
    job.emit(Event::Progress {
        index: task.index,
        bytes: task.size,
    });
    let reported = prepared.get().map(|p| p.checksum.to_string());
    if task.inline.is_none() {
        recycle(job, prepared.into_inner());
    }
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
            let _reserved = reserve(job, len).await;
            let prepared = tokio::sync::OnceCell::new();
            let receipt = with_retries(job, task.index, Interrupt::Yes, || {
                let prepared = &prepared;
                Box::pin(async move {
                    let p = prepared
                        .get_or_try_init(|| prepare(job, &task.path, offset, len))
                        .await?;
                    Ok(job
                        .store
                        .upload_part(&task.key, upload_id, n, p.body.clone(), Some(&p.checksum))
                        .await?)
                })
            })
            .instrument(span)
            .await?;
            recycle(job, prepared.into_inner());
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

//! The file source: one file on disk becomes one PUT or the parts of one multipart upload.
//!
//! One blocking call per file stats it, refuses anything but a regular file (a FIFO is never
//! opened), and reads either the whole file (at most [`INLINE_MAX`], with its checksum: sent and
//! retried from memory) or its sniff sample. Every other body — a PUT below the multipart
//! threshold, or a part — reserves its size from the byte budget before its request permit, and
//! is read on its first attempt into a pooled buffer with its checksum computed chunk by chunk
//! while the data is in cache; every attempt sends that buffer. Only a range over a quarter of
//! the byte budget (parts of huge files, or a large `--part-size`) is checksummed by a first
//! read and streamed from (path, offset, length) on each attempt. A file whose size or mtime
//! changed during the upload is reported as `source_changed`. This is the only code that reads
//! a file range.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use tokio::sync::OwnedSemaphorePermit;
use tracing::{Instrument as _, debug, info_span};

use crate::checksum::cache::FileIdentity;
use crate::checksum::{Checksum, ChecksumAlgorithm};
use crate::error::TransferError;
use crate::job::Job;
use crate::key::ObjectKey;
use crate::plan::Plan;
use crate::report::{ErrorCode, FileError, FileOutcome};
use crate::sniff::{self, SNIFF_WINDOW, TAIL_WINDOW};
use crate::store::{Body, PartNumber};
use crate::sync;
use crate::transfer::{self, MultipartSession, Prepared, Stored};

/// Files up to this size are read whole, once, in the blocking call that stats them; their
/// checksum is computed from that read and they are sent (and retried) from memory. Larger
/// files are only sampled for sniffing there, and their bodies are read range by range by the
/// transfer (see the module docs). Bounded memory: each such read holds `INLINE_MAX` of the byte
/// budget until the file is done.
pub const INLINE_MAX: u64 = 256 * 1024;

/// A file ready to send.
struct FileTask {
    index: usize,
    path: PathBuf,
    key: ObjectKey,
    size: u64,
    modified: Option<SystemTime>,
    /// The version of the file that was read (for the checksum cache).
    identity: Option<FileIdentity>,
    /// Its full checksum in the job's algorithm, if the sync decision computed it.
    known: Option<Checksum>,
    content_type: Option<String>,
}

impl FileTask {
    /// The metadata every object of a file carries besides the write's token: the source's
    /// mtime (for `sync`'s mtime mode).
    fn extra_metadata(&self) -> Vec<(String, String)> {
        self.modified
            .and_then(sync::ns_since_epoch)
            .map(|ns| (sync::MTIME_METADATA.to_owned(), ns.to_string()))
            .into_iter()
            .collect()
    }
}

/// Sync decision → stat → sniff → plan → transfer for one file; never returns without an
/// outcome. A file whose object is unchanged is skipped before any of its bytes are read (and
/// so before it is sniffed: what is stored stays as it is).
pub(crate) async fn upload(
    job: &Arc<Job>,
    index: usize,
    path: PathBuf,
    key: ObjectKey,
) -> (u64, FileOutcome) {
    if let Some(size) = crate::resume::already_done(job, &path, &key).await {
        let reason = crate::resume::ALREADY_DONE.to_owned();
        return (size, FileOutcome::Skipped { reason });
    }
    let known = match sync::decide(job, index, &path, &key).await {
        Ok(sync::Decision::Skip { size, reason }) => {
            return (size, FileOutcome::Skipped { reason });
        }
        Ok(sync::Decision::Upload { known }) => known,
        Err(e) => return (0, transfer::outcome(job, Err(e), None)),
    };
    let reserved = job.budget.acquire_bytes(INLINE_MAX).await;
    let checksum = (!job.config.dry_run).then_some(job.config.checksum);
    let loaded = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || load(&path, checksum)).await
    };
    let loaded = match loaded {
        Ok(Ok(l)) => l,
        Ok(Err(error)) => return (0, FileOutcome::Failed { error }),
        Err(e) => return (0, failed(ErrorCode::SourceUnreadable, e.to_string())),
    };
    let size = loaded.size;
    job.emit(crate::report::Event::Queued { index, size });
    let (head, tail) = loaded.sample();
    let content_type = match sniff::check(&job.config.mime, head, tail, key.as_str()) {
        Ok(mime) => job
            .config
            .content_type
            .clone()
            .unwrap_or_else(|| mime.to_owned()),
        Err(error) => return (size, FileOutcome::Failed { error }),
    };
    let plan = match Plan::new(size, job.config.multipart_threshold, job.config.part_size) {
        Ok(p) => p,
        Err(e) => return (size, failed(ErrorCode::FileTooLarge, e.to_string())),
    };
    if job.config.dry_run {
        return (size, dry_run(plan));
    }
    let task = FileTask {
        index,
        path,
        key,
        size,
        modified: loaded.modified,
        identity: loaded.identity,
        known,
        content_type: Some(content_type),
    };
    // The sample's reservation covers a small file's bytes while they are held; any other
    // file lets it go before its bodies reserve theirs (holding both could exhaust a small
    // byte budget with every file slot waiting for more).
    let inline = match (plan, loaded.content) {
        (
            Plan::Single { .. },
            Content::Whole {
                data,
                checksum: Some(checksum),
                verified,
            },
        ) => Some((data, checksum, verified, reserved)),
        _ => {
            drop(reserved);
            None
        }
    };
    (size, send(job, &task, plan, inline).await)
}

fn failed(code: ErrorCode, message: String) -> FileOutcome {
    FileOutcome::Failed {
        error: FileError::new(code, message, false),
    }
}

fn dry_run(plan: Plan) -> FileOutcome {
    let how = match plan {
        Plan::Single { .. } => "a single PUT".to_owned(),
        Plan::Multipart {
            part_count,
            part_size,
            ..
        } => format!("{part_count} parts of {part_size} bytes"),
    };
    FileOutcome::Skipped {
        reason: format!("dry run: would upload as {how}"),
    }
}

/// A small file's bytes, their checksum, whether they are known to be the version
/// `FileTask::identity` of the file, and the budget that covers them.
type Inline = (Bytes, Checksum, bool, OwnedSemaphorePermit);

/// Sends one planned file through the life cycle and maps its result.
async fn send(job: &Arc<Job>, task: &FileTask, plan: Plan, inline: Option<Inline>) -> FileOutcome {
    let span = info_span!("file", index = task.index, key = %task.key, size = task.size);
    async {
        let started = Instant::now();
        let result = match transfer::exists_already(job, task.index, &task.key).await {
            Ok(true) => {
                return FileOutcome::Skipped {
                    reason: transfer::ALREADY_EXISTS.into(),
                };
            }
            Ok(false) => match plan {
                Plan::Single { .. } => single(job, task, inline).await,
                Plan::Multipart { .. } => multipart(job, task, plan).await,
            },
            Err(e) => Err(e),
        };
        debug!(elapsed = ?started.elapsed(), ok = result.is_ok(), "file done");
        if let (Ok(stored), Some(j), Some(id)) = (&result, &job.journal, &task.identity) {
            j.done(
                task.key.as_str(),
                id,
                stored.etag.as_deref(),
                stored.checksum.as_deref(),
            );
        }
        transfer::outcome(job, result, task.content_type.clone())
    }
    .instrument(span)
    .await
}

async fn single(
    job: &Arc<Job>,
    task: &FileTask,
    inline: Option<Inline>,
) -> Result<Stored, TransferError> {
    // Bytes read whole and checked to be version `task.identity` of the file (its identity
    // before the open equals the open file's after the read) have that version's checksum:
    // cached without a stat. Anything else is stat'ed again after the PUT.
    let read_whole = inline.as_ref().is_some_and(|(_, _, verified, _)| *verified);
    let stored = single_put(job, task, inline).await?;
    if let Some(full) = stored.full.as_ref().filter(|_| job.checksums.is_some()) {
        // Sent and checked unchanged: the next sync need not read it, nor HEAD the object.
        if read_whole {
            sync::remember_read(job, task.identity, full);
        } else {
            sync::remember(job, &task.path, task.identity, full).await;
        }
        sync::remember_object(job, &task.key, stored.etag.as_deref(), full);
    }
    Ok(stored)
}

async fn single_put(
    job: &Arc<Job>,
    task: &FileTask,
    inline: Option<Inline>,
) -> Result<Stored, TransferError> {
    let (key, ct) = (&task.key, task.content_type.clone());
    let extra = &task.extra_metadata();
    match inline {
        // Read whole (and checked unchanged while reading) when it was sniffed.
        Some((data, checksum, _, _reserved)) => {
            let prepared = Prepared {
                body: Body::Bytes(data),
                checksum,
                pooled: false,
            };
            let ready = || std::future::ready(Ok(prepared.clone()));
            transfer::put_single(job, task.index, key, ct, extra, ready).await
        }
        None => {
            let _reserved = reserve(job, task.size).await;
            let (path, size) = (&task.path, task.size);
            let read = || read_range(job, path.clone(), 0, size);
            let stored = transfer::put_single(job, task.index, key, ct, extra, read).await?;
            // Read after the sniff: check the file did not change in between.
            ensure_unchanged(task).await?;
            Ok(stored)
        }
    }
}

/// A multipart upload. Its metadata is set when it is created, before the parts are read, so
/// the file's full checksum is computed first (from the cache when it knows this version of
/// the file: free on re-runs) and, with CRC32C, checked against the parts' at the end.
async fn multipart(job: &Arc<Job>, task: &FileTask, plan: Plan) -> Result<Stored, TransferError> {
    let ct = task.content_type.clone();
    let alg = job.config.checksum;
    let full = match &task.known {
        Some(c) => c.clone(),
        None => sync::full_checksum(job, &task.path, task.identity, task.size, alg).await?,
    };
    let mut extra = task.extra_metadata();
    extra.push((
        sync::checksum_metadata(full.algorithm()).to_owned(),
        full.base64(),
    ));
    let (path, id) = (&task.path, task.identity);
    let (mut session, plan) =
        match crate::resume::reopen(job, task.index, &task.key, path, id, plan).await {
            Some(reopened) => reopened,
            None => {
                let session =
                    MultipartSession::create(job, task.index, &task.key, ct, &extra).await?;
                if let (Some(j), Some(id)) = (&job.journal, &task.identity) {
                    let (key, upload) = (task.key.as_str(), session.upload_id());
                    j.upload(key, upload, plan.part_size(), alg, id, session.token());
                }
                (session, plan)
            }
        };
    let sent = match send_parts(job, &mut session, task, plan).await {
        Ok(()) => parts_match(&session, &full),
        Err(e) => Err(e),
    };
    match sent {
        Ok(()) => {
            let stored = session.complete().await?;
            sync::remember_object(job, &task.key, stored.etag.as_deref(), &full);
            Ok(stored)
        }
        Err(e) => {
            session.stop(&e).await;
            Err(e)
        }
    }
}

/// With CRC32C, whether the parts sent make up the file that was hashed for the metadata (a
/// file rewritten in place between the two reads is `source_changed`).
fn parts_match(session: &MultipartSession, full: &Checksum) -> Result<(), TransferError> {
    match session.full_crc32c() {
        Some(c) if full.algorithm() == ChecksumAlgorithm::Crc32c && c != *full => {
            Err(FileError::new(
                ErrorCode::SourceChanged,
                "the source changed between hashing it and sending its parts",
                true,
            )
            .into())
        }
        _ => Ok(()),
    }
}

/// Feeds every part of the file to the session, then checks the file did not change.
async fn send_parts(
    job: &Arc<Job>,
    session: &mut MultipartSession,
    task: &FileTask,
    plan: Plan,
) -> Result<(), TransferError> {
    for n in 1..=plan.parts() {
        if job.cancel.is_cancelled() {
            return Err(TransferError::Cancelled);
        }
        let (offset, len) = plan.part_range(n);
        let number = PartNumber::new(u64::from(n)).expect("plans stay within 10 000 parts");
        if session.has_part(number) {
            continue;
        }
        let hold = reserve(job, len).await;
        let (job2, path) = (Arc::clone(job), task.path.clone());
        let read = move || read_range(&job2, path.clone(), offset, len);
        session.send_part(number, len, hold, read).await?;
    }
    session.finish_parts().await?;
    ensure_unchanged(task).await
}

/// Whether a range of `len` bytes is read into memory: when a quarter of the byte budget holds
/// it, so several always fit. With the defaults ([`DEFAULT_MAX_BUFFER_BYTES`], 8 MiB parts,
/// 16 MiB multipart threshold) every body is; ranges past a quarter of the budget stream from
/// disk.
///
/// [`DEFAULT_MAX_BUFFER_BYTES`]: crate::config::DEFAULT_MAX_BUFFER_BYTES
fn buffers(job: &Job, len: u64) -> bool {
    len <= job.config.max_buffer_bytes / 4
}

/// The byte-budget reservation for a body of `len` bytes, taken before the request permit
/// (never the other way round, so the two budgets cannot deadlock).
async fn reserve(job: &Job, len: u64) -> Option<OwnedSemaphorePermit> {
    if buffers(job, len) {
        Some(job.budget.acquire_bytes(len).await)
    } else {
        None
    }
}

/// Reads `len` bytes of `path` from `offset` (see the module docs).
fn read_range(
    job: &Job,
    path: PathBuf,
    offset: u64,
    len: u64,
) -> impl std::future::Future<Output = Result<Prepared, TransferError>> + Send + use<> {
    let alg = job.config.checksum;
    let buffer = buffers(job, len).then(|| {
        job.budget
            .take_buffer(usize::try_from(len).expect("buffered ranges are small"))
    });
    async move {
        let read = tokio::task::spawn_blocking(move || match buffer {
            Some(buffer) => read_into(alg, &path, offset, buffer),
            None => Checksum::of_file_range(alg, &path, offset, len).map(|checksum| Prepared {
                body: Body::File { path, offset, len },
                checksum,
                pooled: false,
            }),
        });
        let read = read.await.map_err(|e| {
            TransferError::Local(FileError::new(
                ErrorCode::SourceUnreadable,
                e.to_string(),
                false,
            ))
        })?;
        read.map_err(|e| {
            let code = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                ErrorCode::SourceChanged
            } else {
                ErrorCode::SourceUnreadable
            };
            TransferError::Local(FileError::new(
                code,
                format!("reading the source: {e}"),
                false,
            ))
        })
    }
}

/// Fills `data` from `path` at `offset`, hashing each chunk right after reading it (it is
/// still in the CPU cache).
fn read_into(
    alg: ChecksumAlgorithm,
    path: &Path,
    offset: u64,
    mut data: Vec<u8>,
) -> std::io::Result<Prepared> {
    use std::io::{Read as _, Seek as _};
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
        pooled: true,
    })
}

/// Fails when the source's size or mtime differ from what was planned.
async fn ensure_unchanged(task: &FileTask) -> Result<(), TransferError> {
    let meta = tokio::fs::metadata(&task.path).await.map_err(|e| {
        FileError::new(
            ErrorCode::SourceChanged,
            format!("the source vanished during the upload: {e}"),
            true,
        )
    })?;
    if meta.len() != task.size || meta.modified().ok() != task.modified {
        return Err(FileError::new(
            ErrorCode::SourceChanged,
            format!(
                "the source changed during the upload (size {} → {})",
                task.size,
                meta.len()
            ),
            true,
        )
        .into());
    }
    Ok(())
}

/// What one blocking read of a source found.
struct Loaded {
    size: u64,
    modified: Option<SystemTime>,
    identity: Option<FileIdentity>,
    content: Content,
}

enum Content {
    /// The whole file (at most [`INLINE_MAX`] bytes) and its checksum when one was asked for.
    Whole {
        data: Bytes,
        checksum: Option<Checksum>,
        /// The open file was, after the read, the version stat'ed before the open.
        verified: bool,
    },
    /// The first [`SNIFF_WINDOW`] bytes and the last [`TAIL_WINDOW`] (the file is longer than
    /// [`INLINE_MAX`], so both exist).
    Sample { head: Vec<u8>, tail: Vec<u8> },
}

impl Loaded {
    /// The sniffing sample: the same windows whichever way the file was read.
    fn sample(&self) -> (&[u8], Option<&[u8]>) {
        match &self.content {
            Content::Whole { data, .. } => {
                let head = &data[..data.len().min(SNIFF_WINDOW)];
                let tail = (data.len() > SNIFF_WINDOW)
                    .then(|| &data[data.len().saturating_sub(TAIL_WINDOW).max(SNIFF_WINDOW)..]);
                (head, tail)
            }
            Content::Sample { head, tail } => (head, Some(tail)),
        }
    }
}

/// Stats `path` (following a symlink, as the walk decided) and reads it: whole when it is at
/// most [`INLINE_MAX`] bytes (checksummed with `checksum`), else the sniff sample. Not a regular
/// file (a FIFO, a device, a socket) is refused before it is opened, so nothing blocks on it.
fn load(path: &Path, checksum: Option<ChecksumAlgorithm>) -> Result<Loaded, FileError> {
    let unreadable =
        |e: std::io::Error| FileError::new(ErrorCode::SourceUnreadable, e.to_string(), false);
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if !meta.is_file() {
        return Err(FileError::new(
            ErrorCode::SourceUnreadable,
            "not a regular file",
            false,
        ));
    }
    let size = meta.len();
    let modified = meta.modified().ok();
    let identity = FileIdentity::of(&meta);
    let mut f = std::fs::File::open(path).map_err(unreadable)?;
    let content = if size <= INLINE_MAX {
        read_whole(&mut f, size, modified, identity, checksum)?
    } else {
        read_sample(&mut f, size).map_err(unreadable)?
    };
    Ok(Loaded {
        size,
        modified,
        identity,
        content,
    })
}

/// The whole of a small file, checked unchanged while it was read (size and mtime), and whether
/// the open file is, after the read, the version `identity` that was stat'ed before the open
/// (same device, inode, size, mtime and ctime): then the bytes are that version's.
fn read_whole(
    f: &mut std::fs::File,
    size: u64,
    modified: Option<SystemTime>,
    identity: Option<FileIdentity>,
    checksum: Option<ChecksumAlgorithm>,
) -> Result<Content, FileError> {
    use std::io::Read as _;
    let unreadable =
        |e: std::io::Error| FileError::new(ErrorCode::SourceUnreadable, e.to_string(), false);
    // One byte more than the size, so a file that grew is noticed.
    let mut data = Vec::with_capacity(size as usize + 1);
    (&mut *f)
        .take(size + 1)
        .read_to_end(&mut data)
        .map_err(unreadable)?;
    let after = f.metadata().map_err(unreadable)?;
    if data.len() as u64 != size || after.len() != size || after.modified().ok() != modified {
        return Err(FileError::new(
            ErrorCode::SourceChanged,
            format!(
                "the source changed while it was read (size {size} → {})",
                after.len()
            ),
            true,
        ));
    }
    let checksum = checksum.map(|alg| Checksum::of_bytes(alg, &data));
    Ok(Content::Whole {
        data: data.into(),
        checksum,
        // Not a reason to fail (a filesystem may number a path's stat and an open file's
        // differently): only to stat again before caching the checksum.
        verified: identity.is_some() && FileIdentity::of(&after) == identity,
    })
}

/// The sniff sample of a file longer than [`INLINE_MAX`]: its head and its tail.
fn read_sample(f: &mut std::fs::File, size: u64) -> std::io::Result<Content> {
    use std::io::{Read as _, Seek as _};
    let mut head = Vec::with_capacity(SNIFF_WINDOW);
    (&mut *f).take(SNIFF_WINDOW as u64).read_to_end(&mut head)?;
    let start = size
        .saturating_sub(TAIL_WINDOW as u64)
        .max(SNIFF_WINDOW as u64);
    f.seek(std::io::SeekFrom::Start(start))?;
    let mut tail = Vec::with_capacity(TAIL_WINDOW);
    (&mut *f).take(TAIL_WINDOW as u64).read_to_end(&mut tail)?;
    Ok(Content::Sample { head, tail })
}

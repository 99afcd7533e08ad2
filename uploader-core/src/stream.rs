//! Transfer from a byte stream (the daemon's request bodies): the same policies and the same
//! budget as files, for data that arrives over the network and cannot be re-read.
//!
//! The stream is read part by part. Before each part is buffered its bytes are taken from the
//! shared byte budget (1 MiB first, the rest of the part only when the data keeps coming), so
//! memory stays bounded by configuration however large the file or the batch. The first bytes
//! decide the content type before anything is sent. Data up to the multipart threshold is kept
//! and sent as one PUT; beyond it a multipart upload is created and every full part is uploaded
//! while the next one is read. A stream that fails, overruns its size limit, or is cancelled
//! ends with the multipart upload aborted.
//!
//! The function returns as soon as the stream has been consumed: the remaining requests run
//! in a task, so the caller can read the next file of a batch meanwhile.

use std::fmt::Display;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt as _};
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::checksum::{Checksum, Hasher};
use crate::key::ObjectKey;
use crate::plan::MAX_PARTS;
use crate::report::{ErrorCode, FileError, FileOutcome};
use crate::sniff::{self, SNIFF_WINDOW, TAIL_WINDOW};
use crate::store::{Body, PartReceipt, PutResult};
use crate::transfer::{Interrupt, Job, Stop, abort_upload, put_options, with_retries};

/// Bytes reserved before a stream's first read; most files of a batch are smaller.
const FIRST_RESERVATION: u64 = 1024 * 1024;

/// How reading the stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEnd {
    /// The stream was read to its end.
    Complete,
    /// The stream failed (client disconnect, idle timeout, malformed body): the caller should
    /// stop reading the request.
    Broken(String),
}

/// The outcome of one streamed file, once all its requests are done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamResult {
    /// Bytes read from the stream (up to where reading stopped).
    pub size: u64,
    pub outcome: FileOutcome,
    /// Requests that were retried.
    pub retries: u64,
    /// Whether a multipart upload was aborted.
    pub aborted: bool,
}

/// A part's data and the budget it holds. The first [`FIRST_RESERVATION`] bytes are copied
/// into one buffer: a small file must not pin the much larger receive buffers its pieces were
/// cut from (500 small files waiting for a request slot would hold hundreds of MiB). Beyond
/// that, pieces are kept as they arrived, without copying; a part's many pieces cover the
/// buffers they come from. The checksum is computed piece by piece, while each is in cache.
struct Chunk {
    head: BytesMut,
    pieces: Vec<Bytes>,
    len: u64,
    hasher: Hasher,
    permit: OwnedSemaphorePermit,
}

impl Chunk {
    fn new(alg: crate::checksum::ChecksumAlgorithm, permit: OwnedSemaphorePermit) -> Chunk {
        Chunk {
            head: BytesMut::new(),
            pieces: Vec::new(),
            len: 0,
            hasher: Hasher::new(alg),
            permit,
        }
    }

    fn push(&mut self, piece: Bytes) {
        self.hasher.update(&piece);
        self.len += piece.len() as u64;
        if self.pieces.is_empty() && (self.head.len() + piece.len()) as u64 <= FIRST_RESERVATION {
            self.head.extend_from_slice(&piece);
        } else {
            self.pieces.push(piece);
        }
    }

    /// The data in order (the copied head, then the pieces), its checksum and its budget.
    fn into_parts(self) -> (Vec<Bytes>, Checksum, OwnedSemaphorePermit) {
        let mut all = Vec::with_capacity(1 + self.pieces.len());
        all.push(self.head.freeze());
        all.extend(self.pieces);
        (all, self.hasher.finish(), self.permit)
    }

    fn into_body(self) -> (Body, Checksum, OwnedSemaphorePermit) {
        let (mut all, checksum, permit) = self.into_parts();
        let body = if all.len() == 1 {
            Body::Bytes(all.pop().expect("the head"))
        } else {
            Body::Chunks(all.into())
        };
        (body, checksum, permit)
    }
}

/// Reads `stream` and uploads it to `key`. `max_size` refuses larger files (`file_too_large`);
/// the rest of an oversized or refused stream is read and discarded so the caller can go on.
pub(crate) async fn upload_stream<S, E>(
    job: Arc<Job>,
    key: ObjectKey,
    mut stream: S,
    max_size: Option<u64>,
    cancel: CancellationToken,
) -> (StreamEnd, JoinHandle<StreamResult>)
where
    S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
    E: Display,
{
    let cfg = Arc::clone(&job.config);
    let threshold = cfg.multipart_threshold;
    let part_size = match max_size {
        Some(m) => cfg.part_size.max(m.div_ceil(MAX_PARTS)),
        None => cfg.part_size,
    };
    let mut held: Vec<Chunk> = Vec::new(); // parts read but not yet sent (until the threshold)
    let mut current: Option<Chunk> = None;
    let mut total: u64 = 0;
    let mut head = Vec::<u8>::new();
    let mut tail = TailBuffer::default();
    let mut content_type: Option<String> = None;
    let mut multipart: Option<Multipart> = None;
    let mut failure: Option<FileError> = None;
    let mut end = StreamEnd::Complete;

    loop {
        let next = tokio::select! {
            biased;
            () = cancel.cancelled() => {
                failure.get_or_insert(Stop::Cancelled.into_file_error());
                end = StreamEnd::Broken("the upload was cancelled".into());
                break;
            }
            n = stream.next() => n,
        };
        let mut bytes = match next {
            None => break,
            Some(Err(e)) => {
                end = StreamEnd::Broken(e.to_string());
                failure.get_or_insert(FileError::new(
                    ErrorCode::SourceUnreadable,
                    format!("the request body ended early: {e}"),
                    true,
                ));
                break;
            }
            Some(Ok(b)) => b,
        };
        if failure.is_some() {
            continue; // discard the rest of a refused file
        }
        total += bytes.len() as u64;
        if max_size.is_some_and(|m| total > m) {
            failure = Some(FileError::new(
                ErrorCode::FileTooLarge,
                format!(
                    "the file is larger than the limit of {} bytes",
                    max_size.unwrap_or(0)
                ),
                false,
            ));
            continue;
        }
        tail.push(&bytes);
        if content_type.is_none() && head.len() < SNIFF_WINDOW {
            let take = (SNIFF_WINDOW - head.len()).min(bytes.len());
            head.extend_from_slice(&bytes[..take]);
            if head.len() == SNIFF_WINDOW {
                match sniff::check(&cfg.mime, &head, None, key.as_str()) {
                    Ok(m) => content_type = Some(cfg.content_type.clone().unwrap_or(m.into())),
                    Err(e) => {
                        failure = Some(e);
                        continue;
                    }
                }
            }
        }
        while !bytes.is_empty() {
            let chunk = match current.as_mut() {
                Some(c) => c,
                None => {
                    let permit = job
                        .budget
                        .acquire_bytes(FIRST_RESERVATION.min(part_size))
                        .await;
                    current.insert(Chunk::new(cfg.checksum, permit))
                }
            };
            let room = usize::try_from(part_size - chunk.len).unwrap_or(usize::MAX);
            let piece = bytes.split_to(room.min(bytes.len()));
            // Grow the reservation to the whole part before holding more than the first MiB.
            let reserved = chunk.permit.num_permits() as u64 * 1024;
            if chunk.len + piece.len() as u64 > reserved {
                let more = job
                    .budget
                    .acquire_bytes(part_size.saturating_sub(reserved))
                    .await;
                chunk.permit.merge(more);
            }
            chunk.push(piece);
            if chunk.len == part_size {
                let full = current.take().expect("the current chunk");
                if let Some(mp) = multipart.as_mut() {
                    mp.send(&job, &key, full);
                } else {
                    held.push(full);
                    let held_bytes: u64 = held.iter().map(|c| c.len).sum();
                    if held_bytes >= threshold {
                        match Multipart::create(&job, &key, content_type.clone()).await {
                            Ok(mut mp) => {
                                for c in held.drain(..) {
                                    mp.send(&job, &key, c);
                                }
                                multipart = Some(mp);
                            }
                            Err(stop) => {
                                failure = Some(stop.into_file_error());
                                held.clear();
                                break;
                            }
                        }
                    }
                }
            }
        }
    }

    // Files shorter than the sniff window are judged on what there is.
    if failure.is_none() && content_type.is_none() {
        match sniff::check(&cfg.mime, &head, None, key.as_str()) {
            Ok(m) => content_type = Some(cfg.content_type.clone().unwrap_or(m.into())),
            Err(e) => failure = Some(e),
        }
    }
    if failure.is_none() && head.len() == SNIFF_WINDOW {
        // A polyglot (an image or PDF with a ZIP appended) shows at the end.
        if let Err(e) = sniff::check(&cfg.mime, &head, Some(tail.bytes()), key.as_str()) {
            failure = Some(e);
        }
    }

    let size = total;
    let job2 = Arc::clone(&job);
    let task = tokio::spawn(async move {
        let job = job2;
        let outcome = match (failure, multipart) {
            (Some(error), Some(mp)) => {
                mp.abort(&job, &key).await;
                FileOutcome::Failed { error }
            }
            (Some(error), None) => FileOutcome::Failed { error },
            (None, Some(mut mp)) => {
                if let Some(last) = current.take() {
                    mp.send(&job, &key, last);
                }
                mp.finish(&job, &key, content_type).await
            }
            (None, None) => {
                let mut all: Vec<Chunk> = held;
                all.extend(current.take());
                single_put(&job, &key, all, content_type).await
            }
        };
        StreamResult {
            size,
            outcome,
            retries: job.retries.load(std::sync::atomic::Ordering::Relaxed),
            aborted: job.aborted.load(std::sync::atomic::Ordering::Relaxed) > 0,
        }
    });
    (end, task)
}

/// The last [`TAIL_WINDOW`] bytes seen.
#[derive(Default)]
struct TailBuffer(std::collections::VecDeque<u8>);

impl TailBuffer {
    fn push(&mut self, b: &[u8]) {
        let b = &b[b.len().saturating_sub(TAIL_WINDOW)..];
        self.0.extend(b);
        let over = self.0.len().saturating_sub(TAIL_WINDOW);
        self.0.drain(..over);
    }
    fn bytes(&mut self) -> &[u8] {
        self.0.make_contiguous()
    }
}

async fn single_put(
    job: &Job,
    key: &ObjectKey,
    chunks: Vec<Chunk>,
    content_type: Option<String>,
) -> FileOutcome {
    let alg = job.config.checksum;
    let (body, checksum, _permits) = match chunks.len() {
        0 => (
            Body::Bytes(Bytes::new()),
            Checksum::of_bytes(alg, &[]),
            Vec::new(),
        ),
        1 => {
            let (body, checksum, permit) =
                chunks.into_iter().next().expect("one chunk").into_body();
            (body, checksum, vec![permit])
        }
        // Between one part and the threshold: one body of every piece; the per-part checksums
        // do not combine, so hash the pieces again (in a blocking thread: up to the threshold).
        _ => {
            let mut pieces = Vec::new();
            let mut permits = Vec::new();
            for c in chunks {
                let (data, _, permit) = c.into_parts();
                pieces.extend(data);
                permits.push(permit);
            }
            let pieces: Arc<[Bytes]> = pieces.into();
            let hashed = Arc::clone(&pieces);
            let checksum = tokio::task::spawn_blocking(move || {
                let mut h = Hasher::new(alg);
                for p in hashed.iter() {
                    h.update(p);
                }
                h.finish()
            })
            .await
            .expect("checksum task");
            (Body::Chunks(pieces), checksum, permits)
        }
    };
    let mut opts = put_options(&job.config, content_type.clone());
    opts.checksum = Some(checksum.clone());
    let opts = &opts;
    let result = with_retries(job, 0, Interrupt::No, || {
        let body = body.clone();
        Box::pin(async move { Ok(job.store.put(key, body, opts).await?) })
    })
    .await;
    match result {
        Ok(PutResult { etag, .. }) => FileOutcome::Uploaded {
            etag,
            checksum: Some(checksum.to_string()),
            content_type,
            parts: 1,
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

/// A multipart upload fed part by part.
struct Multipart {
    upload_id: String,
    parts: Vec<JoinHandle<Result<PartReceipt, Stop>>>,
}

impl Multipart {
    async fn create(
        job: &Job,
        key: &ObjectKey,
        content_type: Option<String>,
    ) -> Result<Multipart, Stop> {
        let mut opts = put_options(&job.config, content_type);
        opts.checksum_algorithm = Some(job.config.checksum);
        let opts = &opts;
        let mut attempts = 0u32;
        let counter = &mut attempts;
        let upload_id = with_retries(job, 0, Interrupt::No, || {
            *counter += 1;
            Box::pin(async move { Ok(job.store.create_multipart(key, opts).await?) })
        })
        .await?;
        if attempts > 1 {
            crate::transfer::reap_lost_creates(job, 0, key, &upload_id).await;
        }
        Ok(Multipart {
            upload_id,
            parts: Vec::new(),
        })
    }

    /// Starts uploading the next part; it holds its budget until sent.
    fn send(&mut self, job: &Arc<Job>, key: &ObjectKey, chunk: Chunk) {
        let n = u32::try_from(self.parts.len() + 1).unwrap_or(u32::MAX);
        let (job, key, id) = (Arc::clone(job), key.clone(), self.upload_id.clone());
        self.parts.push(tokio::spawn(async move {
            let (body, checksum, _permit) = chunk.into_body();
            let (job, key, id, checksum) = (&*job, &key, &id, &checksum);
            with_retries(job, 0, Interrupt::Yes, || {
                let body = body.clone();
                Box::pin(async move {
                    Ok(job
                        .store
                        .upload_part(key, id, n, body, Some(checksum))
                        .await?)
                })
            })
            .await
        }));
    }

    async fn abort(self, job: &Job, key: &ObjectKey) {
        for p in &self.parts {
            p.abort();
        }
        abort_upload(job, 0, key, &self.upload_id).await;
    }

    async fn finish(
        mut self,
        job: &Job,
        key: &ObjectKey,
        content_type: Option<String>,
    ) -> FileOutcome {
        let mut receipts = Vec::with_capacity(self.parts.len());
        let mut failure = None;
        for p in self.parts.iter_mut() {
            match p.await {
                Ok(Ok(r)) => receipts.push(r),
                Ok(Err(stop)) => {
                    failure = Some(stop.into_file_error());
                    break;
                }
                Err(e) => {
                    failure = Some(FileError::new(
                        ErrorCode::UpstreamError,
                        e.to_string(),
                        true,
                    ));
                    break;
                }
            }
        }
        if let Some(error) = failure {
            self.abort(job, key).await;
            return FileOutcome::Failed { error };
        }
        let receipts_ref = &receipts;
        let id = &self.upload_id;
        let done = with_retries(job, 0, Interrupt::No, || {
            Box::pin(async move { Ok(job.store.complete_multipart(key, id, receipts_ref).await?) })
        })
        .await;
        match done {
            Ok(put) => {
                let checksums: Option<Vec<Checksum>> =
                    receipts.iter().map(|p| p.checksum.clone()).collect();
                let alg = job.config.checksum;
                FileOutcome::Uploaded {
                    etag: put.etag,
                    checksum: checksums
                        .and_then(|c| Checksum::composite(&c))
                        .map(|c| format!("{alg}:{c}")),
                    content_type,
                    parts: u32::try_from(receipts.len()).unwrap_or(u32::MAX),
                }
            }
            Err(stop) => {
                let error = stop.into_file_error();
                self.abort(job, key).await;
                FileOutcome::Failed { error }
            }
        }
    }
}

//! The stream source: a body that arrives over the network (a daemon's request part) and
//! cannot be re-read, cut into the same life cycle as files.
//!
//! Before each part is buffered its bytes are taken from the shared byte budget (1 MiB first,
//! traded for more only when the data keeps coming — never one held while waiting for the
//! other), so memory stays bounded by configuration however large the body or the batch. The first bytes decide the content type
//! before anything is sent. Data up to the multipart threshold is kept and sent as one PUT;
//! beyond it a multipart session is created and every full part is sent while the next one is
//! read. A body that fails, overruns its size limit, or is cancelled ends with the multipart
//! upload aborted.
//!
//! [`crate::Uploader::upload_stream`] returns a [`StreamUpload`] as soon as the stream has been
//! consumed (the caller can read the next part of its request meanwhile); the remaining requests
//! run in a task that the handle owns: dropping the handle cancels them and aborts the upload.

use std::fmt::Display;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt as _};
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinHandle;
use tokio_util::sync::DropGuard;

use crate::checksum::{Checksum, ChecksumAlgorithm, Hasher};
use crate::error::TransferError;
use crate::job::Job;
use crate::key::ObjectKey;
use crate::plan::{Plan, StreamPlan};
use crate::report::{ErrorCode, FileError, FileOutcome};
use crate::sniff::{self, SNIFF_WINDOW, TAIL_WINDOW};
use crate::store::{Body, PartNumber};
use crate::sync;
use crate::transfer::{self, MultipartSession, Prepared};

/// Bytes reserved before a stream's first read; most files of a batch are smaller.
const FIRST_RESERVATION: u64 = 1024 * 1024;

/// How reading the stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEnd {
    /// The stream was read to its end.
    Complete,
    /// The stream failed (client disconnect, idle timeout, malformed body) or the upload was
    /// cancelled: the caller should stop reading the request.
    Broken(String),
}

/// The outcome of one streamed body, once all its requests are done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamResult {
    /// The body's position in its batch, as the caller gave it.
    pub index: usize,
    /// Bytes read from the stream (up to where reading stopped).
    pub size: u64,
    /// What became of it.
    pub outcome: FileOutcome,
    /// Requests that were retried.
    pub retries: u64,
    /// Whether a multipart upload was aborted.
    pub aborted: bool,
}

/// A streamed body whose stream has been consumed and whose upload may still be finishing.
/// Dropping it cancels the upload (its multipart upload is aborted).
#[derive(Debug)]
pub struct StreamUpload {
    index: usize,
    end: StreamEnd,
    task: JoinHandle<StreamResult>,
    _cancel_on_drop: DropGuard,
}

impl StreamUpload {
    /// The body's position in its batch.
    pub fn index(&self) -> usize {
        self.index
    }

    /// How reading the stream ended.
    pub fn end(&self) -> &StreamEnd {
        &self.end
    }

    /// Waits until every request of the upload is done.
    pub async fn wait(self) -> StreamResult {
        let StreamUpload { task, .. } = self;
        match task.await {
            Ok(r) => r,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

/// Reads `stream` and uploads it to `key` under `job`, whose cancellation token belongs to this
/// body alone. `max_size` refuses larger bodies (`file_too_large`); the rest of an oversized or
/// refused stream is read and discarded so the caller can go on.
pub(crate) async fn start<S, E>(
    job: Arc<Job>,
    index: usize,
    key: ObjectKey,
    stream: S,
    max_size: Option<u64>,
) -> StreamUpload
where
    S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
    E: Display,
{
    // The body is read in the caller's task (a hand-off per body to another task cost the
    // daemon a fifth of its small-file batches under load); if the caller's future is dropped
    // meanwhile, the open multipart session aborts itself. Once the body is read, the rest
    // runs in a task that the handle cancels when dropped.
    let cfg = &job.config;
    let plan = Plan::for_stream(max_size, cfg.multipart_threshold, cfg.part_size);
    let mut cutter = Cutter::new(Arc::clone(&job), index, key, plan, max_size);
    match transfer::exists_already(&job, index, &cutter.key).await {
        Ok(true) => cutter.refused = Some(Refusal::Skip(transfer::ALREADY_EXISTS.into())),
        Ok(false) => {}
        Err(e) => cutter.refused = Some(Refusal::Fail(e)),
    }
    let end = cutter.read(stream).await;
    let guard = job.cancel.clone().drop_guard();
    let task = tokio::spawn(async move {
        let size = cutter.total;
        let outcome = cutter.finish().await;
        StreamResult {
            index,
            size,
            outcome,
            retries: job.retries.load(std::sync::atomic::Ordering::Relaxed),
            aborted: job.aborted.load(std::sync::atomic::Ordering::Relaxed) > 0,
        }
    });
    StreamUpload {
        index,
        end,
        task,
        _cancel_on_drop: guard,
    }
}

/// Why a body is not stored; the rest of its stream is discarded.
enum Refusal {
    Skip(String),
    Fail(TransferError),
}

/// Cuts a stream into a PUT or the parts of a multipart session.
struct Cutter {
    job: Arc<Job>,
    index: usize,
    key: ObjectKey,
    plan: StreamPlan,
    max_size: Option<u64>,
    /// Parts read but not yet sent (until the threshold is reached).
    held: Vec<Chunk>,
    current: Option<Chunk>,
    total: u64,
    sniff: Sniffer,
    session: Option<MultipartSession>,
    /// The next part's number; `None` past S3's 10 000 parts.
    next_part: Option<PartNumber>,
    /// The reservation that covers the body, past its first MiB, until it is known whether it
    /// goes in one PUT or multipart (see [`Cutter::grow`]).
    undecided: Option<OwnedSemaphorePermit>,
    refused: Option<Refusal>,
}

impl Cutter {
    fn new(
        job: Arc<Job>,
        index: usize,
        key: ObjectKey,
        plan: StreamPlan,
        max_size: Option<u64>,
    ) -> Cutter {
        Cutter {
            job,
            index,
            key,
            plan,
            max_size,
            held: Vec::new(),
            current: None,
            total: 0,
            sniff: Sniffer::default(),
            session: None,
            next_part: Some(PartNumber::FIRST),
            undecided: None,
            refused: None,
        }
    }

    fn refuse(&mut self, e: impl Into<TransferError>) {
        self.refused.get_or_insert(Refusal::Fail(e.into()));
    }

    /// Reads the stream to its end (or until it breaks or the upload is cancelled).
    async fn read<S, E>(&mut self, mut stream: S) -> StreamEnd
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: Display,
    {
        loop {
            let next = tokio::select! {
                biased;
                () = self.job.cancel.cancelled() => {
                    self.refuse(TransferError::Cancelled);
                    return StreamEnd::Broken("the upload was cancelled".into());
                }
                n = stream.next() => n,
            };
            match next {
                None => return StreamEnd::Complete,
                Some(Err(e)) => {
                    self.refuse(FileError::new(
                        ErrorCode::SourceUnreadable,
                        format!("the request body ended early: {e}"),
                        true,
                    ));
                    return StreamEnd::Broken(e.to_string());
                }
                Some(Ok(bytes)) if self.refused.is_none() => {
                    if let Err(e) = self.push(bytes).await {
                        self.refuse(e);
                    }
                }
                Some(Ok(_)) => {} // the rest of a refused body is discarded
            }
        }
    }

    /// Takes in the next bytes: size limit, sniffing, then into parts.
    async fn push(&mut self, mut bytes: Bytes) -> Result<(), TransferError> {
        self.total += bytes.len() as u64;
        if let Some(max) = self.max_size.filter(|m| self.total > *m) {
            return Err(FileError::new(
                ErrorCode::FileTooLarge,
                format!("the file is larger than the limit of {max} bytes"),
                false,
            )
            .into());
        }
        self.sniff.feed(&bytes, &self.job, &self.key)?;
        let part_size = self.plan.part_size;
        while !bytes.is_empty() {
            if self.current.is_none() {
                let permit = self.first_reservation().await;
                self.current = Some(Chunk::new(self.job.config.checksum, permit));
            }
            let chunk = self.current.as_ref().expect("the current chunk");
            let room = usize::try_from(part_size - chunk.len).unwrap_or(usize::MAX);
            let piece = bytes.split_to(room.min(bytes.len()));
            let first = FIRST_RESERVATION.min(part_size);
            if chunk.permit.is_some() && !chunk.whole && chunk.len + piece.len() as u64 > first {
                self.grow().await;
            }
            let chunk = self.current.as_mut().expect("the current chunk");
            chunk.push(piece);
            if chunk.len == part_size {
                let full = self.current.take().expect("the current chunk");
                self.part_full(full).await?;
            }
        }
        Ok(())
    }

    /// The reservation of a new chunk's first bytes; none while the reservation made for the
    /// undecided body covers them.
    async fn first_reservation(&self) -> Option<OwnedSemaphorePermit> {
        if self.session.is_none() && self.undecided.is_some() {
            return None;
        }
        let first = FIRST_RESERVATION.min(self.plan.part_size);
        Some(self.job.budget.acquire_bytes(first).await)
    }

    /// Before the current chunk holds more than its first MiB, trades that reservation for a
    /// larger one: until the PUT-or-multipart decision, one for everything up to the threshold
    /// (in whole parts); after it, the whole part's. Never one held while waiting for the other:
    /// a body holding some of a small budget and waiting for the rest could wait for ever. The
    /// bytes read so far are uncovered meanwhile (at most 1 MiB per body being read).
    async fn grow(&mut self) {
        let (threshold, part_size) = (self.plan.threshold, self.plan.part_size);
        let chunk = self.current.as_mut().expect("the current chunk");
        chunk.whole = true;
        drop(chunk.permit.take());
        if self.session.is_none() {
            let until = threshold.div_ceil(part_size).max(1) * part_size;
            self.undecided = Some(self.job.budget.acquire_bytes(until).await);
        } else {
            chunk.permit = Some(self.job.budget.acquire_bytes(part_size).await);
        }
    }

    /// A share of the undecided body's reservation for a held chunk of `len` bytes.
    fn share_of_undecided(&mut self, len: u64) -> Option<OwnedSemaphorePermit> {
        let undecided = self.undecided.as_mut()?;
        let units = usize::try_from(len.div_ceil(1024)).unwrap_or(usize::MAX);
        let n = units.min(undecided.num_permits());
        if n == 0 { None } else { undecided.split(n) }
    }

    /// A full part: sent if the session is open; else held, and the session opened once the
    /// held bytes reach the threshold.
    async fn part_full(&mut self, full: Chunk) -> Result<(), TransferError> {
        if self.session.is_some() {
            return self.send(full).await;
        }
        self.held.push(full);
        let held_bytes: u64 = self.held.iter().map(|c| c.len).sum();
        if held_bytes >= self.plan.threshold {
            let ct = self.sniff.content_type.clone();
            let session =
                MultipartSession::create(&self.job, self.index, &self.key, ct, &[]).await?;
            self.session = Some(session);
            for mut chunk in std::mem::take(&mut self.held) {
                if chunk.permit.is_none() {
                    chunk.permit = self.share_of_undecided(chunk.len);
                }
                self.send(chunk).await?;
            }
            self.undecided = None;
        }
        Ok(())
    }

    /// Sends one part into the open session.
    async fn send(&mut self, chunk: Chunk) -> Result<(), TransferError> {
        let part_size = self.plan.part_size;
        let n = self
            .next_part
            .ok_or_else(|| transfer::too_many_parts(part_size))?;
        self.next_part = n.next().ok();
        let len = chunk.len;
        let (body, checksum, hold) = chunk.into_body();
        let prepared = Prepared {
            body,
            checksum,
            pooled: false,
        };
        let session = self.session.as_mut().expect("the session is open");
        let ready = move || std::future::ready(Ok(prepared.clone()));
        session.send_part(n, len, hold, ready).await
    }

    /// After the stream: the last checks, then the PUT, the session's end, or its abort.
    async fn finish(mut self) -> FileOutcome {
        if self.refused.is_none()
            && let Err(e) = self.sniff.last_checks(&self.job, &self.key)
        {
            self.refuse(e);
        }
        // The sniff windows (up to 72 KiB) are not held while the body waits for its requests.
        self.sniff.release();
        if self.refused.is_none()
            && self.session.is_some()
            && let Some(last) = self.current.take()
            && let Err(e) = self.send(last).await
        {
            self.refuse(e);
        }
        let ct = self.sniff.content_type.clone();
        match (self.refused.take(), self.session.take()) {
            (Some(refusal), session) => {
                if let Some(s) = session {
                    s.abort().await;
                }
                match refusal {
                    Refusal::Skip(reason) => FileOutcome::Skipped { reason },
                    Refusal::Fail(e) => transfer::outcome(&self.job, Err(e), ct),
                }
            }
            (None, Some(mut session)) => {
                // With a skip mode the parts are sent before the body's checksum is known: an
                // unchanged body's upload is aborted, leaving the object as it was.
                let sums = match session.finish_parts().await {
                    Ok(()) => session.full_crc32c().into_iter().collect(),
                    Err(e) => {
                        session.abort().await;
                        return transfer::outcome(&self.job, Err(e), ct);
                    }
                };
                match self.unchanged(sums).await {
                    Ok(None) => transfer::outcome(&self.job, session.complete().await, ct),
                    Ok(Some(reason)) => {
                        session.abort().await;
                        FileOutcome::Skipped { reason }
                    }
                    Err(e) => {
                        session.abort().await;
                        transfer::outcome(&self.job, Err(e), ct)
                    }
                }
            }
            (None, None) => self.put_held(ct).await,
        }
    }

    /// With a skip mode, why the object at the key is left as it is (`None`: upload).
    async fn unchanged(&self, sums: Vec<Checksum>) -> Result<Option<String>, TransferError> {
        let Some(mode) = self.job.sync.as_ref().and_then(|s| s.mode()) else {
            return Ok(None);
        };
        let d = sync::decide_body(&self.job, self.index, &self.key, mode, self.total, sums);
        Ok(match d.await? {
            sync::Decision::Skip { reason, .. } => Some(reason),
            sync::Decision::Upload { .. } => None,
        })
    }

    /// A body shorter than the threshold: one PUT of everything held (unless it is unchanged).
    async fn put_held(&mut self, ct: Option<String>) -> FileOutcome {
        let mut chunks = std::mem::take(&mut self.held);
        chunks.extend(self.current.take());
        let (body, checksum, _permits) = join_chunks(self.job.config.checksum, chunks).await;
        match self.unchanged(vec![checksum.clone()]).await {
            Ok(None) => {}
            Ok(Some(reason)) => return FileOutcome::Skipped { reason },
            Err(e) => return transfer::outcome(&self.job, Err(e), ct),
        }
        let prepared = Prepared {
            body,
            checksum,
            pooled: false,
        };
        let ready = || std::future::ready(Ok(prepared.clone()));
        let result = transfer::put_single(&self.job, self.index, &self.key, ct.clone(), &[], ready);
        transfer::outcome(&self.job, result.await, ct)
    }
}

/// The held parts as one body, its checksum, and the budget they hold.
async fn join_chunks(
    alg: ChecksumAlgorithm,
    chunks: Vec<Chunk>,
) -> (Body, Checksum, Vec<Option<OwnedSemaphorePermit>>) {
    match chunks.len() {
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
    }
}

/// The content type of a stream, from its first [`SNIFF_WINDOW`] bytes, and its last
/// [`TAIL_WINDOW`] bytes for the polyglot check.
#[derive(Default)]
struct Sniffer {
    head: Vec<u8>,
    tail: TailBuffer,
    content_type: Option<String>,
}

impl Sniffer {
    /// Takes in the next bytes; decides the type once the window is full.
    fn feed(&mut self, bytes: &[u8], job: &Job, key: &ObjectKey) -> Result<(), FileError> {
        self.tail.push(bytes);
        if self.content_type.is_some() || self.head.len() >= SNIFF_WINDOW {
            return Ok(());
        }
        let take = (SNIFF_WINDOW - self.head.len()).min(bytes.len());
        self.head.extend_from_slice(&bytes[..take]);
        if self.head.len() == SNIFF_WINDOW {
            self.decide(job, key, false)?;
        }
        Ok(())
    }

    /// Sniffs the head (and the tail, `with_tail`) and records the content type.
    fn decide(&mut self, job: &Job, key: &ObjectKey, with_tail: bool) -> Result<(), FileError> {
        let cfg = &job.config;
        let tail = with_tail.then(|| self.tail.bytes());
        let mime = sniff::check(&cfg.mime, &self.head, tail, key.as_str())?;
        self.content_type = Some(cfg.content_type.clone().unwrap_or_else(|| mime.into()));
        Ok(())
    }

    /// Frees the windows once the content is judged.
    fn release(&mut self) {
        self.head = Vec::new();
        self.tail = TailBuffer::default();
    }

    /// At the end: a body shorter than the window is judged on what there is; a longer one
    /// is checked for an appended archive (a polyglot shows at the end).
    fn last_checks(&mut self, job: &Job, key: &ObjectKey) -> Result<(), FileError> {
        let with_tail = self.head.len() == SNIFF_WINDOW;
        self.decide(job, key, with_tail)
    }
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
    /// The budget that covers the data: the first reservation, then the whole part's (none
    /// while the body's undecided reservation covers it).
    permit: Option<OwnedSemaphorePermit>,
    /// Whether the first reservation was traded (see [`Cutter::grow`]).
    whole: bool,
}

impl Chunk {
    fn new(alg: ChecksumAlgorithm, permit: Option<OwnedSemaphorePermit>) -> Chunk {
        Chunk {
            head: BytesMut::new(),
            pieces: Vec::new(),
            len: 0,
            hasher: Hasher::new(alg),
            permit,
            whole: false,
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
    fn into_parts(self) -> (Vec<Bytes>, Checksum, Option<OwnedSemaphorePermit>) {
        let mut all = Vec::with_capacity(1 + self.pieces.len());
        all.push(self.head.freeze());
        all.extend(self.pieces);
        (all, self.hasher.finish(), self.permit)
    }

    fn into_body(self) -> (Body, Checksum, Option<OwnedSemaphorePermit>) {
        let (mut all, checksum, permit) = self.into_parts();
        let body = if all.len() == 1 {
            Body::Bytes(all.pop().expect("the head"))
        } else {
            Body::Chunks(all.into())
        };
        (body, checksum, permit)
    }
}

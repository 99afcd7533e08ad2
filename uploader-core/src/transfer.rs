//! Transfer: the one upload life cycle, shared by every body source (files and network
//! streams). A body goes either in one PUT ([`put_single`]) or through a [`MultipartSession`]:
//! create → parts in parallel → complete (with lost-answer recovery), or abort. Each is written
//! once here; the sources (`source::file`, `source::stream`) only produce bodies.
//!
//! Every request goes through [`with_retries`], which takes a permit of the shared budget
//! before the body is prepared. A multipart upload that fails, or whose job is cancelled, is
//! aborted before its file is reported; a session dropped without an end (its caller's future
//! was dropped) aborts in the background. A request whose answer may have been lost is decided
//! by evidence that identifies *this* write — the random token every write carries in its
//! metadata, or for a multipart upload the S3 multipart ETag computed from the part ETags or the
//! composite checksum read back — never by the error code or the size alone; a lost
//! `CreateMultipartUpload` answer has the uploads it left behind aborted. [`outcome`] is the one
//! mapping from a transfer's result to a [`FileOutcome`] (no-clobber, errors, checksum, ETag).
//!
//! Deliberately left out: reading files and cutting streams (the sources), choosing PUT or
//! multipart (the plan), and the order of files (the scheduler).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use md5::Digest as _;
use tokio::sync::{OnceCell, OwnedSemaphorePermit};
use tokio::task::{JoinError, JoinSet};
use tracing::{Instrument as _, debug, info_span, warn};

use crate::checksum::Checksum;
use crate::config::UploadConfig;
use crate::error::TransferError;
use crate::job::Job;
use crate::key::ObjectKey;
use crate::limit::Pace;
use crate::report::{ErrorCode, Event, FileError, FileOutcome};
use crate::retry::{Attempts, Interrupt, with_retries, with_retries_noting};
use crate::store::{
    Body, ObjectMeta, PartNumber, PartReceipt, PutOptions, PutResult, ServiceErrorKind, UploadId,
};

/// User metadata (`x-amz-meta-uploader-upload`) that marks every object we write (PUT or
/// multipart upload) with a random token of the write that made it: the evidence, after a lost
/// answer, that the object at the key is this write's — on every server (rclone's multipart
/// ETag is the MD5 of the whole object, and not every server keeps checksums).
pub(crate) const UPLOAD_TOKEN_METADATA: &str = "uploader-upload";

/// A fresh token for one write.
fn new_token() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Whether `meta` carries `token`.
fn carries_token(meta: &ObjectMeta, token: &str) -> bool {
    meta.metadata
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case(UPLOAD_TOKEN_METADATA) && v == token)
}

/// Whether a request that ended with `result` must be checked against the store before it is
/// reported: it failed after an answer may have been lost, or on a retry (moto completes again,
/// rclone says NoSuchUpload, s3s-fs AccessDenied; a no-clobber PUT's retry gets 412), or it was
/// cancelled after a lost answer.
fn must_check<T>(attempts: Attempts, result: &Result<T, TransferError>) -> bool {
    match result {
        Err(TransferError::Store(_)) => attempts.retried || attempts.lost,
        Err(TransferError::Cancelled) => attempts.lost,
        _ => false,
    }
}

/// The reason reported when no-clobber finds the key.
pub(crate) const ALREADY_EXISTS: &str = "the key already exists (no-clobber)";

/// What every attempt of one request sends: the body and its checksum, computed once by the
/// source. `pooled` bodies are buffers of the budget's pool, given back once sent.
#[derive(Clone)]
pub(crate) struct Prepared {
    pub body: Body,
    pub checksum: Checksum,
    pub pooled: bool,
}

impl Prepared {
    /// Gives a pooled body's memory back to the budget once no request holds it.
    fn recycle(self, job: &Job) {
        if self.pooled
            && let Body::Bytes(b) = self.body
            && let Ok(b) = b.try_into_mut()
        {
            job.budget.give_buffer(b.into());
        }
    }
}

/// A stored object, as the transfer reports it.
#[derive(Debug)]
pub(crate) struct Stored {
    pub etag: Option<String>,
    /// `<algorithm>:<base64>`; the composite `...-<parts>` for multipart uploads.
    pub checksum: Option<String>,
    pub parts: u32,
    /// The full-object checksum of a single PUT's body (what its metadata carries).
    pub full: Option<Checksum>,
}

/// The one mapping from a transfer's result to the file's outcome.
pub(crate) fn outcome(
    job: &Job,
    result: Result<Stored, TransferError>,
    content_type: Option<String>,
) -> FileOutcome {
    match result {
        Ok(s) => FileOutcome::Uploaded {
            etag: s.etag,
            checksum: s.checksum,
            content_type,
            parts: s.parts,
        },
        Err(TransferError::Store(e))
            if job.config.no_clobber && e.kind() == Some(ServiceErrorKind::PreconditionFailed) =>
        {
            FileOutcome::Skipped {
                reason: ALREADY_EXISTS.into(),
            }
        }
        Err(e) => FileOutcome::Failed {
            error: e.into_file_error(),
        },
    }
}

/// With no-clobber, whether the key already exists (then nothing is sent). Some servers ignore
/// `If-None-Match` (rclone serve s3): looking first makes no-clobber hold there too; the
/// conditional header still closes the race where it is honoured.
pub(crate) async fn exists_already(
    job: &Job,
    index: usize,
    key: &ObjectKey,
) -> Result<bool, TransferError> {
    if !job.config.no_clobber {
        return Ok(false);
    }
    let found = with_retries(job, index, Interrupt::Yes, || {
        Box::pin(async move { Ok(job.store.head(key.as_str()).await?) })
    })
    .await?;
    Ok(found.is_some())
}

/// The options of a PUT or of a multipart upload's creation, marked with the write's `token`,
/// with the source's own metadata (`extra`: its mtime, its full-object checksum when known).
fn put_options(
    config: &UploadConfig,
    content_type: Option<String>,
    token: &str,
    extra: &[(String, String)],
) -> PutOptions {
    let mut metadata = config.metadata.clone();
    metadata.push((UPLOAD_TOKEN_METADATA.to_owned(), token.to_owned()));
    metadata.extend_from_slice(extra);
    PutOptions {
        content_type,
        checksum: None,
        checksum_algorithm: None,
        if_none_match: config.no_clobber,
        metadata,
        storage_class: config.storage_class.clone(),
        sse: config.sse.clone(),
    }
}

/// One PUT of a whole body. `prepare` runs on the first attempt, after its request permit is
/// taken; every attempt sends what it prepared, with its checksum as the object's full-object
/// checksum metadata (`sync::checksum_metadata`) besides `extra`. A PUT that failed after an
/// answer may have been lost (a retry, or a transport failure) is looked at: when the object
/// carries this write's token and size, it is stored (a no-clobber retry's 412 included).
pub(crate) async fn put_single<F, Fut>(
    job: &Job,
    index: usize,
    key: &ObjectKey,
    content_type: Option<String>,
    extra: &[(String, String)],
    prepare: F,
) -> Result<Stored, TransferError>
where
    F: Fn() -> Fut + Sync,
    Fut: Future<Output = Result<Prepared, TransferError>> + Send,
{
    let prepared = OnceCell::new();
    let token = new_token();
    let opts = put_options(&job.config, content_type, &token, extra);
    let pace = job.limits.pace_for_file();
    let (opts, pace, prepared_ref, prepare) = (&opts, &pace, &prepared, &prepare);
    let (put, attempts) = with_retries_noting(job, index, Interrupt::No, || {
        Box::pin(async move {
            let p = prepared_ref.get_or_try_init(prepare).await?;
            let mut opts = PutOptions {
                checksum: Some(p.checksum.clone()),
                ..opts.clone()
            };
            let name = crate::sync::checksum_metadata(p.checksum.algorithm());
            opts.metadata.push((name.to_owned(), p.checksum.base64()));
            let body = p.body.clone().paced(pace);
            Ok(job.store.put(key, body, &opts).await?)
        })
    })
    .await;
    let put = if must_check(attempts, &put) {
        let size = prepared.get().map(|p| p.body.len());
        match written_by(job, key, size, &token).await {
            Some(meta) => {
                warn!(%key, "the PUT did not answer, but the object is this write's: an answer was lost");
                PutResult { etag: meta.etag }
            }
            None => put?,
        }
    } else {
        put?
    };
    let p = prepared
        .into_inner()
        .expect("prepared by the successful attempt");
    job.emit(Event::Progress {
        index,
        bytes: p.body.len(),
    });
    let checksum = p.checksum.to_string();
    let full = p.checksum.clone();
    p.recycle(job);
    Ok(Stored {
        etag: put.etag,
        checksum: Some(checksum),
        parts: 1,
        full: Some(full),
    })
}

/// The object at `key`, if it is the one the write marked with `token` made (and has `size`).
async fn written_by(
    job: &Job,
    key: &ObjectKey,
    size: Option<u64>,
    token: &str,
) -> Option<ObjectMeta> {
    let meta = job.store.head(key.as_str()).await.ok()??;
    (size == Some(meta.size) && carries_token(&meta, token)).then_some(meta)
}

/// A part being sent, and what it sends.
type PartTask = Result<PartReceipt, TransferError>;

/// One multipart upload, fed part by part by a source. End it with [`MultipartSession::complete`]
/// or [`MultipartSession::abort`]; dropped without either, it aborts in the background.
pub(crate) struct MultipartSession {
    job: Arc<Job>,
    index: usize,
    key: ObjectKey,
    upload_id: UploadId,
    /// The random token written as [`UPLOAD_TOKEN_METADATA`].
    token: String,
    running: JoinSet<PartTask>,
    receipts: Vec<PartReceipt>,
    /// Bytes handed to [`MultipartSession::send_part`].
    bytes: u64,
    /// The size of each part handed to it.
    sizes: std::collections::BTreeMap<PartNumber, u64>,
    /// The bandwidth budgets of this file's parts.
    pace: Pace,
    open: bool,
}

impl MultipartSession {
    /// Creates the multipart upload, with the source's `extra` metadata (its mtime and
    /// full-object checksum, when known before the parts are read). A retried creation whose
    /// first answer was lost may have left an upload we never learnt the id of: those of this
    /// exact key are aborted at once.
    pub(crate) async fn create(
        job: &Arc<Job>,
        index: usize,
        key: &ObjectKey,
        content_type: Option<String>,
        extra: &[(String, String)],
    ) -> Result<MultipartSession, TransferError> {
        let token = new_token();
        let mut opts = put_options(&job.config, content_type, &token, extra);
        opts.checksum_algorithm = Some(job.config.checksum);
        let opts = &opts;
        let (created, attempts) = with_retries_noting(job, index, Interrupt::No, || {
            Box::pin(async move { Ok(job.store.create_multipart(key, opts).await?) })
        })
        .await;
        let lost = attempts.lost;
        let upload_id = match created {
            Ok(id) => id,
            Err(e) => {
                if lost {
                    reap_lost_creates(job, index, key, None).await;
                }
                return Err(e);
            }
        };
        debug!(%upload_id, %key, "multipart upload created");
        let session = MultipartSession {
            job: Arc::clone(job),
            index,
            key: key.clone(),
            upload_id,
            token,
            running: JoinSet::new(),
            receipts: Vec::new(),
            bytes: 0,
            sizes: std::collections::BTreeMap::new(),
            pace: job.limits.pace_for_file(),
            open: true,
        };
        if lost {
            reap_lost_creates(job, index, key, Some(&session.upload_id)).await;
        }
        Ok(session)
    }

    /// Re-opens a multipart upload an earlier run of the job left open (a resume): `parts` are
    /// the parts verified to hold the local bytes, with their sizes; `token` the one written at
    /// its creation, if known (else the session's evidence after a lost Complete answer is the
    /// multipart ETag or the composite checksum).
    pub(crate) fn reopen(
        job: &Arc<Job>,
        index: usize,
        key: &ObjectKey,
        upload_id: UploadId,
        token: Option<String>,
        parts: Vec<(PartReceipt, u64)>,
    ) -> MultipartSession {
        let mut sizes = std::collections::BTreeMap::new();
        let mut receipts = Vec::with_capacity(parts.len());
        for (r, len) in parts {
            sizes.insert(r.part_number, len);
            receipts.push(r);
        }
        debug!(%upload_id, %key, parts = receipts.len(), "multipart upload re-opened");
        MultipartSession {
            job: Arc::clone(job),
            index,
            key: key.clone(),
            upload_id,
            token: token.unwrap_or_else(new_token),
            running: JoinSet::new(),
            receipts,
            bytes: sizes.values().sum(),
            sizes,
            pace: job.limits.pace_for_file(),
            open: true,
        }
    }

    /// The upload's id.
    pub(crate) fn upload_id(&self) -> &UploadId {
        &self.upload_id
    }

    /// The token written in the upload's metadata.
    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    /// Whether part `n` was sent (or reused) already.
    pub(crate) fn has_part(&self, n: PartNumber) -> bool {
        self.sizes.contains_key(&n)
    }

    /// Starts sending part `n` of `len` bytes in the background; `hold` (its byte reservation)
    /// is kept until the part is sent. `prepare` runs on the first attempt, after the request
    /// permit. Waits while as many parts as there are request slots are in flight, and fails
    /// with the first failure of an earlier part.
    pub(crate) async fn send_part<F, Fut>(
        &mut self,
        n: PartNumber,
        len: u64,
        hold: Option<OwnedSemaphorePermit>,
        prepare: F,
    ) -> Result<(), TransferError>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Prepared, TransferError>> + Send,
    {
        while let Some(done) = self.running.try_join_next() {
            self.record(done)?;
        }
        while self.running.len() >= self.job.budget.limit().max(1) {
            let done = self.running.join_next().await.expect("parts are running");
            self.record(done)?;
        }
        self.bytes += len;
        self.sizes.insert(n, len);
        let (job, key, id, index, pace) = (
            Arc::clone(&self.job),
            self.key.clone(),
            self.upload_id.clone(),
            self.index,
            self.pace.clone(),
        );
        let span = info_span!("part", n = n.get(), len);
        // A job kept for a resume lets its parts in flight finish (and be journaled).
        let interrupt = if self.job.config.keep_uploads_on_cancel {
            Interrupt::No
        } else {
            Interrupt::Yes
        };
        self.running.spawn(
            async move {
                let _hold = hold;
                let prepared = OnceCell::new();
                let (job, key, id, pace, prepared_ref, prepare) =
                    (&*job, &key, &id, &pace, &prepared, &prepare);
                let receipt = with_retries(job, index, interrupt, || {
                    Box::pin(async move {
                        let p = prepared_ref.get_or_try_init(prepare).await?;
                        let body = p.body.clone().paced(pace);
                        let sent = job.store.upload_part(key, id, n, body, Some(&p.checksum));
                        Ok(sent.await?)
                    })
                })
                .await?;
                if let Some(j) = &job.journal {
                    let sum = prepared.get().map(|p| &p.checksum);
                    j.part(key.as_str(), id, n, len, sum, &receipt.etag);
                }
                job.emit(Event::Progress { index, bytes: len });
                if let Some(p) = prepared.into_inner() {
                    p.recycle(job);
                }
                Ok(receipt)
            }
            .instrument(span),
        );
        Ok(())
    }

    fn record(&mut self, done: Result<PartTask, JoinError>) -> Result<(), TransferError> {
        match done {
            Ok(Ok(receipt)) => {
                self.receipts.push(receipt);
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(TransferError::Cancelled),
        }
    }

    /// The CRC32C of the whole body from the parts acknowledged so far (`None` when they were
    /// not sent with CRC32C).
    pub(crate) fn full_crc32c(&self) -> Option<Checksum> {
        let mut r: Vec<&PartReceipt> = self.receipts.iter().collect();
        r.sort_by_key(|p| p.part_number);
        let sized: Option<Vec<(Checksum, u64)>> = r
            .into_iter()
            .map(|p| Some((p.checksum.clone()?, *self.sizes.get(&p.part_number)?)))
            .collect();
        Checksum::combine_crc32c(&sized?)
    }

    /// Waits until every part sent so far is acknowledged (or one failed).
    pub(crate) async fn finish_parts(&mut self) -> Result<(), TransferError> {
        while let Some(done) = self.running.join_next().await {
            self.record(done)?;
        }
        Ok(())
    }

    /// Completes the upload from its parts; any failure aborts it first.
    pub(crate) async fn complete(mut self) -> Result<Stored, TransferError> {
        if let Err(e) = self.finish_parts().await {
            self.stop(&e).await;
            return Err(e);
        }
        self.receipts.sort_by_key(|p| p.part_number);
        match self.send_complete().await {
            Ok(put) => {
                self.open = false;
                let checksums: Option<Vec<Checksum>> =
                    self.receipts.iter().map(|p| p.checksum.clone()).collect();
                let alg = self.job.config.checksum;
                Ok(Stored {
                    etag: put.etag,
                    checksum: checksums
                        .and_then(|c| Checksum::composite(&c))
                        .map(|c| format!("{alg}:{c}")),
                    parts: u32::try_from(self.receipts.len()).expect("at most 10 000 parts"),
                    full: None,
                })
            }
            Err(e) => {
                warn!(upload_id = %self.upload_id, "multipart upload failed; aborting it");
                self.abort().await;
                Err(e)
            }
        }
    }

    /// `CompleteMultipartUpload`, retried. When a retry fails (the first answer may have been
    /// lost after the server completed: moto completes again, rclone says NoSuchUpload, s3s-fs
    /// AccessDenied), the object is looked at: it is ours only if it has our size and carries
    /// this session's token, this upload's multipart ETag, or its composite checksum — never
    /// the size alone (an older object of the same size would pass).
    async fn send_complete(&self) -> Result<PutResult, TransferError> {
        let (job, key, id, parts) = (&*self.job, &self.key, &self.upload_id, &self.receipts);
        let (result, attempts) = with_retries_noting(job, self.index, Interrupt::No, || {
            Box::pin(async move { Ok(job.store.complete_multipart(key, id, parts).await?) })
        })
        .await;
        if !must_check(attempts, &result) {
            return result;
        }
        match self.stored_evidence().await {
            Some(etag) => {
                warn!(upload_id = %id, "CompleteMultipartUpload did not answer, but the object is this upload's: an answer was lost");
                Ok(PutResult { etag })
            }
            None => result,
        }
    }

    /// The stored object's ETag if the object at the key is the one these parts make: it has
    /// their size and carries this session's token, their S3 multipart ETag, or their composite
    /// checksum.
    async fn stored_evidence(&self) -> Option<Option<String>> {
        let meta = self.job.store.head(self.key.as_str()).await.ok()??;
        if meta.size != self.bytes {
            return None;
        }
        let by_token = carries_token(&meta, &self.token);
        let by_etag = multipart_etag(&self.receipts).is_some_and(|expected| {
            meta.etag
                .as_deref()
                .is_some_and(|got| got.trim_matches('"').eq_ignore_ascii_case(&expected))
        });
        let checksums: Option<Vec<Checksum>> =
            self.receipts.iter().map(|p| p.checksum.clone()).collect();
        let by_checksum = match (
            checksums.and_then(|c| Checksum::composite(&c)),
            &meta.checksum,
        ) {
            (Some(expected), Some(got)) => expected == *got,
            _ => false,
        };
        (by_token || by_etag || by_checksum).then_some(meta.etag)
    }

    /// Ends the session after `error`: a job cancelled with
    /// `UploadConfig::keep_uploads_on_cancel` keeps the upload open for a resume (its parts in
    /// flight finish and are journaled first); anything else aborts it.
    pub(crate) async fn stop(mut self, error: &TransferError) {
        if matches!(error, TransferError::Cancelled) && self.job.config.keep_uploads_on_cancel {
            while self.running.join_next().await.is_some() {}
            self.open = false;
            debug!(upload_id = %self.upload_id, "multipart upload kept open for a resume");
            return;
        }
        self.abort().await;
    }

    /// Aborts the upload, after stopping its parts (so none lands after the abort).
    pub(crate) async fn abort(mut self) {
        self.running.abort_all();
        while self.running.join_next().await.is_some() {}
        self.open = false;
        abort_upload(&self.job, self.index, self.key.as_str(), &self.upload_id).await;
    }
}

impl Drop for MultipartSession {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        self.running.abort_all();
        let (job, index, key, id) = (
            Arc::clone(&self.job),
            self.index,
            self.key.as_str().to_owned(),
            self.upload_id.clone(),
        );
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { abort_upload(&job, index, &key, &id).await });
        }
    }
}

/// After a `CreateMultipartUpload` answer was lost, aborts the uploads of this exact key other
/// than `ours` (all of them when no attempt succeeded): the lost attempt created one whose id we
/// never learnt. Another client uploading the very same key at the very same moment would lose
/// its upload: the price of never leaving orphans, paid only after a lost answer.
async fn reap_lost_creates(job: &Job, index: usize, key: &ObjectKey, ours: Option<&UploadId>) {
    let Ok(pending) = job.store.list_multipart_uploads(key.as_str()).await else {
        return;
    };
    for p in pending {
        if p.key == key.as_str() && Some(&p.upload_id) != ours {
            warn!(upload_id = %p.upload_id, "aborting a multipart upload whose creation answer was lost");
            abort_upload(job, index, &p.key, &p.upload_id).await;
        }
    }
}

/// The multipart ETag S3 gives an object made of these parts (the hex MD5 of the parts' binary
/// MD5s, `-<count>`), when every part's ETag is an MD5.
pub(crate) fn multipart_etag(parts: &[PartReceipt]) -> Option<String> {
    let mut h = md5::Md5::new();
    for p in parts {
        let hex_md5 = p.etag.trim_matches('"');
        if hex_md5.len() != 32 {
            return None;
        }
        h.update(hex::decode(hex_md5).ok()?);
    }
    Some(format!("{}-{}", hex::encode(h.finalize()), parts.len()))
}

/// Aborts a multipart upload, retrying; never interrupted by cancellation (that is when it is
/// needed most). An upload already gone counts as aborted by someone else.
pub(crate) async fn abort_upload(job: &Job, index: usize, key: &str, upload_id: &UploadId) {
    let policy = job.config.retry;
    let mut attempt = 1;
    loop {
        let result = {
            let _permit = job.budget.acquire().await;
            job.store.abort_multipart(key, upload_id).await
        };
        match result {
            Ok(()) => {
                job.aborted.fetch_add(1, Ordering::Relaxed);
                job.emit(Event::MultipartAborted { index });
                if let Some(j) = &job.journal {
                    j.aborted(key, upload_id);
                }
                return;
            }
            Err(e) if e.kind() == Some(ServiceErrorKind::NoSuchUpload) => {
                if let Some(j) = &job.journal {
                    j.aborted(key, upload_id);
                }
                return;
            }
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

/// The error of a body that would need more than S3's 10 000 parts.
pub(crate) fn too_many_parts(part_size: u64) -> FileError {
    FileError::new(
        ErrorCode::FileTooLarge,
        format!(
            "the body needs more than 10 000 parts of {part_size} bytes (S3's limit); raise the part size"
        ),
        false,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_etag_is_the_md5_of_the_part_md5s() {
        let a = format!("\"{}\"", hex::encode(md5::Md5::digest(b"a")));
        let b = format!("\"{}\"", hex::encode(md5::Md5::digest(b"b")));
        let receipt = |n: u64, etag: &str| PartReceipt {
            part_number: PartNumber::new(n).unwrap(),
            etag: etag.to_owned(),
            checksum: None,
        };
        let parts = [receipt(1, &a), receipt(2, &b)];
        let mut cat = md5::Md5::digest(b"a").to_vec();
        cat.extend(md5::Md5::digest(b"b"));
        assert_eq!(
            multipart_etag(&parts).unwrap(),
            format!("{}-2", hex::encode(md5::Md5::digest(&cat)))
        );
        // Not MD5 ETags: no evidence from the ETag.
        assert_eq!(multipart_etag(&[receipt(1, "\"opaque\"")]), None);
    }
}

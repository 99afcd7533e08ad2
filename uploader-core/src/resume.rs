//! Resume: what an interrupted job takes from its earlier runs, and how each piece is checked
//! before it is trusted. The journal itself (what is recorded, how it is read) is
//! [`crate::journal`]; this is where its records meet the files and the store.
//!
//! * A file the journal says is stored is skipped, without being read, only while its size,
//!   mtime (ns) and inode are those recorded ([`already_done`]).
//! * An open multipart upload is re-opened ([`reopen`]) only while the source is the version it
//!   was made of (size, mtime, inode) and with the job's checksum algorithm; otherwise it is
//!   aborted and the file uploaded whole. Its parts are listed (ListParts) and each listed part
//!   is reused only when its size is the planned one and what the server lists for it — its
//!   CRC32C, its ETag — equals the journal's record (the checksum we computed from the local
//!   bytes when we sent it, the ETag the server answered then); a part the journal lacks is
//!   hashed from the local range and compared with the listed CRC32C (or the listed ETag, when
//!   that is a plain MD5). Anything else is sent again. The part size is the journal's.
//! * Without a journal, ListMultipartUploads for the key is the fallback: a single pending
//!   upload of that very key, initiated after the source's mtime and after the object's last
//!   modification, is re-opened; its part size is inferred from its parts, and every part is
//!   verified by hashing the local range.
//!
//! With CRC32C, the file's full checksum (computed or cached before the upload is created or
//! re-opened) must still equal the one combined from every part, reused or sent, before the
//! upload is completed (`source::file`): a reused part that is not the file's bytes fails the
//! file instead of being stored.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use tracing::{info, warn};

use crate::checksum::cache::FileIdentity;
use crate::checksum::{Checksum, ChecksumAlgorithm};
use crate::job::Job;
use crate::journal::{JournalConfig, JournalPart, JournalWriter, OpenUpload, Resume};
use crate::key::ObjectKey;
use crate::plan::Plan;
use crate::report::Report;
use crate::retry::{Interrupt, with_retries};
use crate::store::{ListedPart, PartNumber, PartReceipt, ServiceErrorKind, UploadId};
use crate::transfer::{MultipartSession, abort_upload};

/// The reason of a file skipped because an earlier run of the job stored it.
pub(crate) const ALREADY_DONE: &str = "already uploaded by an earlier run of this job (resumed)";

/// Opens the journal of a job (blocking): with `config.resume`, what it says (or the fallback
/// when there is none); without, the multipart uploads an earlier run of the same job left open
/// (to abort before the journal is started anew). A journal that is not this job's is neither
/// used nor overwritten (a warning; the job runs without one).
pub(crate) fn open(
    config: &JournalConfig,
) -> (
    Option<JournalWriter>,
    Option<Resume>,
    Vec<(String, UploadId)>,
) {
    let found = crate::journal::read(&config.path, Some(&config.id), Some(&config.prefix));
    let found = match found {
        Ok(f) => f,
        Err(e) => {
            warn!("{e}: it is left as it is, and this job keeps no journal");
            return (None, None, Vec::new());
        }
    };
    let (resume, stale) = match (config.resume, found) {
        (true, Some(state)) => {
            info!(path = %config.path.display(), done = state.done.len(), open = state.uploads.len(), ignored = state.ignored, "resuming the job of the journal");
            (Some(Resume::Journal(Box::new(state))), Vec::new())
        }
        (true, None) => {
            info!(path = %config.path.display(), "no journal of this job: pending multipart uploads are looked for instead");
            (Some(Resume::Fallback), Vec::new())
        }
        (false, Some(state)) => {
            let stale = state
                .uploads
                .into_iter()
                .map(|(k, u)| (k, u.upload_id))
                .collect();
            (None, stale)
        }
        (false, None) => (None, Vec::new()),
    };
    let keep = matches!(resume, Some(Resume::Journal(_)));
    match JournalWriter::open(config, keep) {
        Ok(w) => (Some(w), resume, stale),
        Err(e) => {
            warn!(path = %config.path.display(), error = %e, "cannot write the journal: this job cannot be resumed");
            (None, resume, stale)
        }
    }
}

/// Aborts the uploads an earlier run of the job left open, before it starts anew.
pub(crate) async fn abort_stale(job: &Job, stale: Vec<(String, UploadId)>) {
    for (key, id) in stale {
        info!(%key, upload_id = %id, "aborting the multipart upload of an earlier run of this job (not resumed)");
        abort_upload(job, usize::MAX, &key, &id).await;
    }
}

/// The end of a journaled job: what resuming spared into the report, the `end` record when
/// every file was stored or skipped, and the last flush.
pub(crate) fn finish(job: &Job, report: &mut Report) {
    report.resumed = job.resumed.report();
    if let Some(j) = &job.journal
        && !report.cancelled
        && report.is_success()
    {
        j.end();
    }
}

/// The journal's open upload for `key`, in a resumed job.
fn journaled<'j>(job: &'j Job, key: &ObjectKey) -> Option<&'j OpenUpload> {
    match &job.resume {
        Some(Resume::Journal(state)) => state.uploads.get(key.as_str()),
        _ => None,
    }
}

/// With a resumed job, the size of the file at `path` when the journal says an earlier run
/// stored it at `key` and the file is still that version (size, mtime, inode); it is then not
/// read at all.
pub(crate) async fn already_done(job: &Job, path: &Path, key: &ObjectKey) -> Option<u64> {
    let Some(Resume::Journal(state)) = &job.resume else {
        return None;
    };
    let done = state.done.get(key.as_str())?;
    let meta = tokio::fs::metadata(path).await.ok()?;
    let id = FileIdentity::of(&meta)?;
    if !meta.is_file() || !done.matches(&id) {
        return None;
    }
    job.resumed.file_skipped(id.size);
    Some(id.size)
}

/// With a resumed job, the open multipart upload of an earlier run for `key` — re-opened with
/// its verified parts, and the plan of its part size — if there is one that may continue; an
/// upload of another version of the source is aborted (see the module docs).
pub(crate) async fn reopen(
    job: &Arc<Job>,
    index: usize,
    key: &ObjectKey,
    path: &Path,
    identity: Option<FileIdentity>,
    planned: Plan,
) -> Option<(MultipartSession, Plan)> {
    let Plan::Multipart { size, .. } = planned else {
        return None;
    };
    let earlier = earlier_upload(job, index, key, path, identity.as_ref()).await?;
    let listed = listed_parts(job, index, key, &earlier).await?;
    let part_size = earlier.part_size.or_else(|| inferred_part_size(&listed))?;
    let Some(plan) = Plan::with_part_size(size, part_size) else {
        if earlier.recorded.is_some() {
            abort_upload(job, index, key.as_str(), &earlier.upload_id).await;
        }
        return None;
    };
    // An upload found without the journal goes into the new one, so that a second interruption
    // resumes it from the journal.
    let token = earlier
        .token
        .clone()
        .unwrap_or_else(|| hex::encode(rand::random::<[u8; 16]>()));
    if let (Some(j), Some(id), None) = (&job.journal, &identity, earlier.recorded) {
        j.upload(
            key.as_str(),
            &earlier.upload_id,
            part_size,
            job.config.checksum,
            id,
            &token,
        );
    }
    let reused = reused_parts(job, key, path, &earlier, &plan, &listed).await;
    let bytes: u64 = reused.iter().map(|(_, len)| len).sum();
    job.resumed.parts_reused(reused.len() as u64, bytes);
    info!(%key, reused = reused.len(), of = plan.parts(), "multipart upload resumed");
    let upload_id = earlier.upload_id;
    let session = MultipartSession::reopen(job, index, key, upload_id, Some(token), reused);
    Some((session, plan))
}

/// The multipart upload of an earlier run that a file may continue, as found.
struct Earlier<'j> {
    upload_id: UploadId,
    /// The part size, when the journal records it (otherwise it is inferred from the parts).
    part_size: Option<u64>,
    /// The journal's token of the upload.
    token: Option<String>,
    /// The journal's records of its parts (`None`: found without the journal).
    recorded: Option<&'j BTreeMap<PartNumber, JournalPart>>,
}

/// Which earlier upload of `key` the file at `path` may continue: the journal's, while the
/// source is the version it was made of and the checksum algorithm is the job's (otherwise it
/// is aborted and `None`), or without a journal the one pending upload ListMultipartUploads
/// finds for the key.
async fn earlier_upload<'j>(
    job: &'j Job,
    index: usize,
    key: &ObjectKey,
    path: &Path,
    identity: Option<&FileIdentity>,
) -> Option<Earlier<'j>> {
    match job.resume.as_ref()? {
        Resume::Journal(_) => {
            let open = journaled(job, key)?;
            let unchanged = identity.is_some_and(|id| open.matches(id));
            if !unchanged || open.algorithm != job.config.checksum {
                info!(%key, "the source (or the checksum algorithm) changed since its upload began: it is uploaded whole");
                abort_upload(job, index, key.as_str(), &open.upload_id).await;
                return None;
            }
            Some(Earlier {
                upload_id: open.upload_id.clone(),
                part_size: Some(open.part_size),
                token: Some(open.token.clone()),
                recorded: Some(&open.parts),
            })
        }
        Resume::Fallback => {
            let modified = tokio::fs::metadata(path).await.ok()?.modified().ok()?;
            let upload_id = pending_upload(job, index, key, modified).await?;
            Some(Earlier {
                upload_id,
                part_size: None,
                token: None,
                recorded: None,
            })
        }
    }
}

/// The parts the server lists for the earlier upload, or `None` when the file is uploaded
/// whole: the upload is gone, or its parts cannot be listed (then a journaled upload is
/// aborted).
async fn listed_parts(
    job: &Job,
    index: usize,
    key: &ObjectKey,
    earlier: &Earlier<'_>,
) -> Option<Vec<ListedPart>> {
    let (k, id) = (key.as_str(), &earlier.upload_id);
    let listed = with_retries(job, index, Interrupt::Yes, || {
        Box::pin(async move { Ok(job.store.list_parts(k, id).await?) })
    })
    .await;
    match listed {
        Ok(l) => Some(l),
        Err(crate::error::TransferError::Store(e))
            if e.kind() == Some(ServiceErrorKind::NoSuchUpload) =>
        {
            info!(%key, "the upload of an earlier run is gone: the file is uploaded whole");
            None
        }
        Err(e) => {
            let e = e.into_file_error();
            warn!(%key, error = %e.message, "the parts of an earlier run cannot be listed: the file is uploaded whole");
            if earlier.recorded.is_some() {
                abort_upload(job, index, key.as_str(), id).await;
            }
            None
        }
    }
}

/// The listed parts of `plan` that hold the local bytes (see [`verified`]), with their sizes;
/// the others are sent again. A part verified by hashing the local range is journaled, as if
/// just sent.
async fn reused_parts(
    job: &Job,
    key: &ObjectKey,
    path: &Path,
    earlier: &Earlier<'_>,
    plan: &Plan,
    listed: &[ListedPart],
) -> Vec<(PartReceipt, u64)> {
    let mut reused = Vec::new();
    for p in listed {
        if p.part_number.get() > plan.parts() {
            continue;
        }
        let (offset, len) = plan.part_range(p.part_number.get());
        let ours = earlier.recorded.and_then(|r| r.get(&p.part_number));
        let Some(receipt) = verified(job, path, offset, len, p, ours).await else {
            info!(%key, part = p.part_number.get(), "a listed part does not match the local bytes: it is sent again");
            continue;
        };
        if let (Some(j), None) = (&job.journal, ours) {
            let sum = receipt.checksum.as_ref();
            j.part(
                key.as_str(),
                &earlier.upload_id,
                p.part_number,
                len,
                sum,
                &receipt.etag,
            );
        }
        reused.push((receipt, len));
    }
    reused
}

/// The one pending upload of exactly `key` that may be an earlier run's: initiated after the
/// source was last modified and after the object at the key (if any) was written.
async fn pending_upload(
    job: &Job,
    index: usize,
    key: &ObjectKey,
    source_modified: SystemTime,
) -> Option<UploadId> {
    let k = key.as_str();
    let pending = with_retries(job, index, Interrupt::Yes, || {
        Box::pin(async move { Ok(job.store.list_multipart_uploads(k).await?) })
    })
    .await
    .ok()?;
    let mut of_key = pending.into_iter().filter(|p| p.key == k);
    let (Some(one), None) = (of_key.next(), of_key.next()) else {
        info!(%key, "not exactly one pending upload of the key: nothing to resume from");
        return None;
    };
    let initiated = one.initiated?;
    if initiated < source_modified {
        info!(%key, "the pending upload is older than the source: not resumed");
        return None;
    }
    let object = with_retries(job, index, Interrupt::Yes, || {
        Box::pin(async move { Ok(job.store.head(k).await?) })
    })
    .await
    .ok()?;
    if let Some(lm) = object.and_then(|o| o.last_modified)
        && initiated <= lm
    {
        info!(%key, "the pending upload is older than the object: not resumed");
        return None;
    }
    Some(one.upload_id)
}

/// The part size of an upload known only from its listing: the size of its lowest-numbered
/// part if that is part 1 (every part but the last has it).
fn inferred_part_size(listed: &[ListedPart]) -> Option<u64> {
    listed
        .iter()
        .find(|p| p.part_number.get() == 1)
        .map(|p| p.size)
}

fn same_etag(a: &str, b: &str) -> bool {
    a.trim_matches('"')
        .eq_ignore_ascii_case(b.trim_matches('"'))
}

/// A plain MD5 ETag's digest bytes (not a multipart `-<n>` one, not an opaque one).
fn md5_etag(etag: &str) -> Option<Vec<u8>> {
    let e = etag.trim_matches('"');
    (e.len() == 32).then(|| hex::decode(e).ok()).flatten()
}

/// What the checks of one listed part conclude, from what is known without reading the file.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// It matches the journal's record: reuse it.
    Reuse,
    /// It does not match (or cannot be compared): send it again.
    Resend,
    /// The journal has no record of it: compare it with the local range.
    HashLocal,
}

/// The checks that need no local read: the size, and the listed CRC32C and ETag against the
/// journal's record of the part. Every comparison that can be made must hold, and at least one
/// must be made.
fn check_listed(listed: &ListedPart, len: u64, ours: Option<&JournalPart>) -> Verdict {
    if listed.size != len {
        return Verdict::Resend;
    }
    let Some(ours) = ours else {
        return Verdict::HashLocal;
    };
    if ours.size != len {
        return Verdict::Resend;
    }
    let mut compared = false;
    let our_crc = ours
        .checksum
        .as_ref()
        .filter(|c| c.algorithm() == ChecksumAlgorithm::Crc32c);
    if let (Some(theirs), Some(ours)) = (&listed.crc32c, our_crc) {
        if theirs != ours {
            return Verdict::Resend;
        }
        compared = true;
    }
    if let Some(theirs) = &listed.etag {
        if !same_etag(theirs, &ours.etag) {
            return Verdict::Resend;
        }
        compared = true;
    }
    if compared {
        Verdict::Reuse
    } else {
        Verdict::Resend
    }
}

/// The receipt of a listed part that holds the local bytes of `offset..offset + len`, or `None`
/// when it must be sent again.
async fn verified(
    job: &Job,
    path: &Path,
    offset: u64,
    len: u64,
    listed: &ListedPart,
    ours: Option<&JournalPart>,
) -> Option<PartReceipt> {
    let alg = job.config.checksum;
    let receipt = |etag: Option<&str>, checksum: Option<Checksum>| {
        Some(PartReceipt {
            part_number: listed.part_number,
            etag: etag?.to_owned(),
            checksum,
        })
    };
    match check_listed(listed, len, ours) {
        Verdict::Resend => None,
        Verdict::Reuse => {
            let ours = ours.expect("a reused part has a record");
            let etag = listed.etag.as_deref().unwrap_or(&ours.etag);
            let sum = ours.checksum.clone().filter(|c| c.algorithm() == alg);
            receipt(Some(etag), sum)
        }
        Verdict::HashLocal => {
            let by = if listed.crc32c.is_some() {
                ChecksumAlgorithm::Crc32c
            } else if listed.etag.as_deref().and_then(md5_etag).is_some() {
                ChecksumAlgorithm::Md5
            } else {
                return None;
            };
            let local = hash_range(path, offset, len, by).await?;
            let matches = match by {
                ChecksumAlgorithm::Crc32c => listed.crc32c.as_ref() == Some(&local),
                ChecksumAlgorithm::Md5 => {
                    listed.etag.as_deref().and_then(md5_etag).as_deref() == Some(local.raw())
                }
            };
            if !matches {
                return None;
            }
            let sum = if by == alg {
                local
            } else {
                hash_range(path, offset, len, alg).await?
            };
            receipt(listed.etag.as_deref(), Some(sum))
        }
    }
}

async fn hash_range(
    path: &Path,
    offset: u64,
    len: u64,
    alg: ChecksumAlgorithm,
) -> Option<Checksum> {
    let p = path.to_owned();
    tokio::task::spawn_blocking(move || Checksum::of_file_range(alg, &p, offset, len))
        .await
        .ok()?
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crc(b: &[u8]) -> Checksum {
        Checksum::of_bytes(ChecksumAlgorithm::Crc32c, b)
    }

    fn listed(size: u64, crc32c: Option<Checksum>, etag: Option<&str>) -> ListedPart {
        ListedPart {
            part_number: PartNumber::FIRST,
            size,
            etag: etag.map(str::to_owned),
            crc32c,
        }
    }

    fn ours(size: u64, checksum: Option<Checksum>, etag: &str) -> JournalPart {
        JournalPart {
            size,
            checksum,
            etag: etag.to_owned(),
        }
    }

    #[test]
    fn a_listed_part_is_reused_only_when_everything_listed_matches_the_record() {
        let rec = ours(4, Some(crc(b"abcd")), "\"e1\"");
        let same = listed(4, Some(crc(b"abcd")), Some("\"E1\""));
        assert_eq!(check_listed(&same, 4, Some(&rec)), Verdict::Reuse);
        // The server holds other bytes (another CRC32C), or another ETag, or another size.
        let other_bytes = listed(4, Some(crc(b"abce")), Some("\"e1\""));
        assert_eq!(check_listed(&other_bytes, 4, Some(&rec)), Verdict::Resend);
        let other_etag = listed(4, Some(crc(b"abcd")), Some("\"e2\""));
        assert_eq!(check_listed(&other_etag, 4, Some(&rec)), Verdict::Resend);
        assert_eq!(check_listed(&same, 5, Some(&rec)), Verdict::Resend);
        // A journal record that was tampered with (another checksum) is not trusted either.
        let tampered = ours(4, Some(crc(b"zzzz")), "\"e1\"");
        assert_eq!(check_listed(&same, 4, Some(&tampered)), Verdict::Resend);
        // Nothing to compare: sent again, never trusted on the size alone.
        let bare = listed(4, None, None);
        assert_eq!(check_listed(&bare, 4, Some(&rec)), Verdict::Resend);
        // No record: the local bytes decide.
        assert_eq!(check_listed(&same, 4, None), Verdict::HashLocal);
        assert_eq!(check_listed(&bare, 3, None), Verdict::Resend);
    }

    #[test]
    fn only_plain_md5_etags_can_be_compared_with_local_bytes() {
        assert!(md5_etag("\"d41d8cd98f00b204e9800998ecf8427e\"").is_some());
        assert!(md5_etag("\"d41d8cd98f00b204e9800998ecf8427e-2\"").is_none());
        assert!(md5_etag("opaque").is_none());
    }
}

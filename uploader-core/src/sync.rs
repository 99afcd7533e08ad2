//! Sync: upload only what is new or changed (`uploader sync`, `upload --skip-existing MODE`, the
//! daemon's `skip_existing`), and with `--delete` remove the objects under the prefix that no
//! source maps to.
//!
//! A job with a [`Destination`] lists its prefix once (ListObjectsV2, 1 000 objects a page),
//! starting while the walk runs. Each file is then decided before any of its bytes are read:
//! no object with its key, or one of another size, is uploaded; an object of the same size is
//! skipped by [`SkipMode::Size`] at once, and by the other modes after one HEAD (a listing
//! carries no user metadata, and no checksum values) — unless, for [`SkipMode::Checksum`], the
//! checksum cache recorded the checksum of the very version the listing shows (its ETag):
//!
//! * [`SkipMode::Mtime`]: skipped when the source is not newer than the mtime recorded at upload
//!   ([`MTIME_METADATA`]), or for an object without it, than the object's Last-Modified;
//! * [`SkipMode::Checksum`]: skipped when the object's full-object checksum equals the file's:
//!   ours ([`checksum_metadata`]), else the server's full-object CRC32C, else — for an object of
//!   another tool — its ETag when that is a single-part MD5. Anything else is uploaded, never
//!   skipped on a guess.
//!
//! The file's checksum comes from the [`ChecksumCache`] when this version of the file (device,
//! inode, size, mtime, ctime) was hashed before, so a re-run over an unchanged tree reads no
//! file contents. Every object the uploader writes carries its full-object checksum and the
//! source's mtime in its metadata (`transfer` writes them; multipart files are hashed before
//! the upload is created, see `source::file`).
//!
//! Deliberately left out: deciding from the listing alone an object this program never wrote
//! nor verified (it would need checksum values that ListObjectsV2 does not return), and
//! `mtime` without a HEAD.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use futures::StreamExt as _;
use tokio::sync::OnceCell;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::checksum::cache::FileIdentity;
use crate::checksum::{Checksum, ChecksumAlgorithm};
use crate::error::TransferError;
use crate::job::Job;
use crate::key::{KeyPrefix, ObjectKey};
use crate::report::{DeleteOutcome, Deletion, ErrorCode, FileError, Report};
use crate::retry::{Interrupt, with_retries};
use crate::store::{ListedObject, ObjectMeta};
use crate::walk::{Input, PathFilter, Shard};

/// User metadata with the source's mtime at upload, in ns since the epoch.
pub const MTIME_METADATA: &str = "uploader-mtime";

/// The user metadata that carries an object's full-object checksum in `alg` (base64):
/// `uploader-crc32c` or `uploader-md5`.
pub fn checksum_metadata(alg: ChecksumAlgorithm) -> &'static str {
    match alg {
        ChecksumAlgorithm::Crc32c => "uploader-crc32c",
        ChecksumAlgorithm::Md5 => "uploader-md5",
    }
}

/// When an existing object counts as unchanged (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipMode {
    /// The object has the file's size.
    Size,
    /// Same size, and the file is not newer than the mtime recorded at upload.
    Mtime,
    /// The object's full-object checksum equals the file's (the default of `sync`).
    Checksum,
}

impl SkipMode {
    /// The name used in flags and requests.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipMode::Size => "size",
            SkipMode::Mtime => "mtime",
            SkipMode::Checksum => "checksum",
        }
    }

    /// The reason a file skipped by this mode is reported with: `unchanged (size)`, ...
    pub fn reason(self) -> String {
        format!("unchanged ({})", self.as_str())
    }
}

impl std::fmt::Display for SkipMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown skip mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown skip mode {0:?} (expected size, mtime or checksum)")]
pub struct UnknownSkipMode(String);

impl std::str::FromStr for SkipMode {
    type Err = UnknownSkipMode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "size" => Ok(SkipMode::Size),
            "mtime" => Ok(SkipMode::Mtime),
            "checksum" => Ok(SkipMode::Checksum),
            _ => Err(UnknownSkipMode(s.to_owned())),
        }
    }
}

/// The reason of a file skipped because another tool's object has the file's MD5 as its ETag.
pub const UNCHANGED_MD5_ETAG: &str = "unchanged (md5 etag)";

/// What a sync job's listing covers and what `delete` may remove: the objects under `prefix`
/// whose key relative to it passes `filter` and `shard` (the walk's own selection, so objects
/// the walk would never have looked at are never orphans).
#[derive(Clone)]
pub struct Destination {
    /// The prefix listed (and, with `delete`, cleaned).
    pub prefix: KeyPrefix,
    /// Delete the objects under the prefix that no source maps to.
    pub delete: bool,
    /// The walk's filter (`--include`/`--exclude`), applied to relative keys.
    pub filter: Option<PathFilter>,
    /// The walk's shard, applied to relative keys.
    pub shard: Option<Shard>,
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Destination")
            .field("prefix", &self.prefix)
            .field("delete", &self.delete)
            .field("filter", &self.filter.is_some())
            .field("shard", &self.shard)
            .finish()
    }
}

impl Destination {
    /// The destination `prefix`, without deletes or filters.
    pub fn new(prefix: KeyPrefix) -> Destination {
        Destination {
            prefix,
            delete: false,
            filter: None,
            shard: None,
        }
    }

    /// Whether `delete` may remove the object at `key`: it lies under the prefix and its
    /// relative key is one the walk would have selected.
    fn may_delete(&self, key: &str) -> bool {
        let Some(rel) = key.strip_prefix(self.prefix.as_str()) else {
            return false;
        };
        !rel.is_empty()
            && self.filter.as_ref().is_none_or(|f| f(rel))
            && self.shard.is_none_or(|s| s.contains(rel))
    }
}

/// The listing of a destination, by key (`None`: the listing failed).
type Listing = Option<Arc<HashMap<String, ListedObject>>>;

/// The sync state of one job.
#[derive(Debug)]
pub(crate) struct SyncState {
    mode: Option<SkipMode>,
    dest: Option<Destination>,
    listing: OnceCell<Listing>,
    /// Every key an input of the job maps to (kept with `delete` only).
    mapped: Mutex<HashSet<String>>,
    /// Some input failed without a key (an unreadable directory, a bad name): deleting could
    /// remove what it would have mapped to.
    walk_failed: AtomicBool,
}

impl SyncState {
    /// The state of a job with `mode` and `dest`, if it syncs at all.
    pub(crate) fn new(mode: Option<SkipMode>, dest: Option<Destination>) -> Option<Arc<SyncState>> {
        let deletes = dest.as_ref().is_some_and(|d| d.delete);
        (mode.is_some() || deletes).then(|| {
            Arc::new(SyncState {
                mode,
                dest,
                listing: OnceCell::new(),
                mapped: Mutex::new(HashSet::new()),
                walk_failed: AtomicBool::new(false),
            })
        })
    }

    /// The job's skip mode.
    pub(crate) fn mode(&self) -> Option<SkipMode> {
        self.mode
    }

    fn deletes(&self) -> bool {
        self.dest.as_ref().is_some_and(|d| d.delete)
    }

    /// Starts listing the destination in the background (the walk runs meanwhile).
    pub(crate) fn prefetch(self: &Arc<Self>, job: &Arc<Job>) {
        if self.dest.is_some() {
            let (this, job) = (Arc::clone(self), Arc::clone(job));
            tokio::spawn(async move { this.listed(&job).await });
        }
    }

    /// The destination's objects by key, listed once per job; `None` without a destination or
    /// when the listing failed (then each file is looked up with a HEAD).
    async fn listed(&self, job: &Job) -> Listing {
        let dest = self.dest.as_ref()?;
        self.listing
            .get_or_init(|| async {
                match list(job, dest.prefix.as_str()).await {
                    Ok(objects) => {
                        debug!(objects = objects.len(), prefix = %dest.prefix, "destination listed");
                        Some(Arc::new(
                            objects.into_iter().map(|o| (o.key.clone(), o)).collect(),
                        ))
                    }
                    Err(e) => {
                        warn!(error = %e.into_file_error().message, "listing the destination failed; every file is looked up with a HEAD, and nothing is deleted");
                        None
                    }
                }
            })
            .await
            .clone()
    }

    /// Passes the job's inputs on, noting the keys they map to (for `delete`).
    pub(crate) fn relay(self: &Arc<Self>, mut rx: mpsc::Receiver<Input>) -> mpsc::Receiver<Input> {
        if !self.deletes() {
            return rx;
        }
        let (tx, out) = mpsc::channel(rx.max_capacity());
        let this = Arc::clone(self);
        tokio::spawn(async move {
            while let Some(input) = rx.recv().await {
                this.note(&input);
                if tx.send(input).await.is_err() {
                    break;
                }
            }
        });
        out
    }

    fn note(&self, input: &Input) {
        let key = match input {
            Input::File { key, .. } => Some(key.as_str()),
            Input::Skip { key, .. } => key.as_deref(),
            Input::Fail { key: None, .. } => {
                self.walk_failed.store(true, Ordering::Relaxed);
                None
            }
            Input::Fail { key, .. } => key.as_deref(),
        };
        if let Some(k) = key {
            self.mapped.lock().unwrap().insert(k.to_owned());
        }
    }
}

/// Every object under `prefix`, one page per request, each page retried.
async fn list(job: &Job, prefix: &str) -> Result<Vec<ListedObject>, TransferError> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let from = after.take();
        let page = with_retries(job, usize::MAX, Interrupt::Yes, || {
            let from = from.clone();
            Box::pin(async move { Ok(job.store.list_objects_page(prefix, from).await?) })
        })
        .await?;
        out.extend(page.objects);
        match page.next {
            Some(n) => after = Some(n),
            None => return Ok(out),
        }
    }
}

/// What to do with one file.
#[derive(Debug)]
pub(crate) enum Decision {
    /// Leave the object as it is.
    Skip { size: u64, reason: String },
    /// Upload the file; `known` is its full checksum in the job's algorithm if the decision
    /// computed it.
    Upload { known: Option<Checksum> },
}

/// The object at a key, as far as it is known.
struct Remote {
    size: u64,
    etag: Option<String>,
    last_modified: Option<SystemTime>,
    /// Its HEAD, once made.
    meta: Option<ObjectMeta>,
}

const UPLOAD: Decision = Decision::Upload { known: None };

/// Whether file `index` at `path` needs uploading to `key` (see the module docs). Reads no byte
/// of the file unless its checksum is needed and not cached.
pub(crate) async fn decide(
    job: &Job,
    index: usize,
    path: &Path,
    key: &ObjectKey,
) -> Result<Decision, TransferError> {
    let Some(mode) = job.sync.as_ref().and_then(|s| s.mode) else {
        return Ok(UPLOAD);
    };
    // Anything but a regular file is the upload's to report.
    let stat = match tokio::fs::metadata(path).await {
        Ok(m) if m.is_file() => m,
        _ => return Ok(UPLOAD),
    };
    let local = Local::File {
        path,
        id: FileIdentity::of(&stat),
        modified: stat.modified().ok(),
    };
    match remote(job, index, key).await? {
        Some(r) => verdict(job, index, key, mode, stat.len(), r, &local).await,
        None => Ok(UPLOAD),
    }
}

/// Whether a body already read (a daemon's file part: `size` bytes whose full checksums are
/// `sums`) needs uploading to `key` under `mode`. A body has no mtime, so `mtime` never skips.
pub(crate) async fn decide_body(
    job: &Job,
    index: usize,
    key: &ObjectKey,
    mode: SkipMode,
    size: u64,
    sums: Vec<Checksum>,
) -> Result<Decision, TransferError> {
    match remote(job, index, key).await? {
        Some(r) => verdict(job, index, key, mode, size, r, &Local::Body { sums }).await,
        None => Ok(UPLOAD),
    }
}

/// What is compared with the object: a file (hashed on demand, through the cache) or a body
/// whose checksums are known.
enum Local<'a> {
    File {
        path: &'a Path,
        id: Option<FileIdentity>,
        modified: Option<SystemTime>,
    },
    Body {
        sums: Vec<Checksum>,
    },
}

impl Local<'_> {
    /// The full checksum in `alg`, if it can be had.
    async fn checksum(
        &self,
        job: &Job,
        size: u64,
        alg: ChecksumAlgorithm,
    ) -> Result<Option<Checksum>, TransferError> {
        match self {
            Local::File { path, id, .. } => {
                full_checksum(job, path, *id, size, alg).await.map(Some)
            }
            Local::Body { sums } => Ok(sums.iter().find(|c| c.algorithm() == alg).cloned()),
        }
    }

    fn modified(&self) -> Option<SystemTime> {
        match self {
            Local::File { modified, .. } => *modified,
            Local::Body { .. } => None,
        }
    }
}

/// The object at `key`: from the listing when there is one, else from a HEAD.
async fn remote(job: &Job, index: usize, key: &ObjectKey) -> Result<Option<Remote>, TransferError> {
    let listing = match &job.sync {
        Some(sync) => sync.listed(job).await,
        None => None,
    };
    Ok(match listing {
        Some(listing) => listing.get(key.as_str()).map(|o| Remote {
            size: o.size,
            etag: o.etag.clone(),
            last_modified: o.last_modified,
            meta: None,
        }),
        None => head(job, index, key).await?.map(|m| Remote {
            size: m.size,
            etag: m.etag.clone(),
            last_modified: m.last_modified,
            meta: Some(m),
        }),
    })
}

/// `mtime` mode: the source is not newer than the mtime recorded at upload (our metadata), or
/// than the object's Last-Modified when it has none.
fn mtime_unchanged(
    local: &Local<'_>,
    meta: &ObjectMeta,
    last_modified: Option<SystemTime>,
) -> bool {
    let source = local.modified();
    match metadata(meta, MTIME_METADATA).and_then(|v| v.parse().ok()) {
        Some(recorded) => source
            .and_then(ns_since_epoch)
            .is_some_and(|s| s <= recorded),
        None => source.zip(last_modified).is_some_and(|(s, lm)| s <= lm),
    }
}

/// The decision for a local file or body of `size` bytes and the object `remote` at `key`.
async fn verdict(
    job: &Job,
    index: usize,
    key: &ObjectKey,
    mode: SkipMode,
    size: u64,
    remote: Remote,
    local: &Local<'_>,
) -> Result<Decision, TransferError> {
    if remote.size != size {
        return Ok(UPLOAD);
    }
    let skip = |reason: String| Ok(Decision::Skip { size, reason });
    if mode == SkipMode::Size {
        return skip(mode.reason());
    }
    // A version this program wrote or verified, still the one listed: no HEAD needed.
    if mode == SkipMode::Checksum
        && let Some(recorded) = remote.etag.as_deref().and_then(|e| recorded(job, key, e))
        && let Some(local_sum) = local.checksum(job, size, recorded.algorithm()).await?
    {
        if local_sum == recorded {
            return skip(mode.reason());
        }
        let known = (local_sum.algorithm() == job.config.checksum).then_some(local_sum);
        return Ok(Decision::Upload { known });
    }
    // The ETag a later listing will show (some servers, s3s-fs, list none: then the HEAD's).
    let listed_etag = remote.etag.clone();
    let meta = match remote.meta {
        Some(m) => m,
        None => match head(job, index, key).await? {
            Some(m) if m.size == size => m,
            _ => return Ok(UPLOAD),
        },
    };
    match mode {
        SkipMode::Size => unreachable!("decided above"),
        SkipMode::Mtime if mtime_unchanged(local, &meta, remote.last_modified) => {
            skip(mode.reason())
        }
        SkipMode::Mtime => Ok(UPLOAD),
        SkipMode::Checksum => {
            let ours = [ChecksumAlgorithm::Crc32c, ChecksumAlgorithm::Md5]
                .into_iter()
                .find_map(|alg| metadata(&meta, checksum_metadata(alg)).map(|v| (alg, v)));
            // Ours, else the server's full-object CRC32C (a composite one ends in `-<parts>`
            // and never equals a full-object value).
            let stored = ours.or_else(|| {
                meta.checksum
                    .as_deref()
                    .map(|v| (ChecksumAlgorithm::Crc32c, v))
            });
            if let Some((alg, value)) = stored {
                let Some(local_sum) = local.checksum(job, size, alg).await? else {
                    return Ok(UPLOAD);
                };
                if local_sum.base64() == value {
                    let etag = listed_etag.as_deref().or(meta.etag.as_deref());
                    remember_object(job, key, etag, &local_sum);
                    return skip(mode.reason());
                }
                let known = (alg == job.config.checksum).then_some(local_sum);
                return Ok(Decision::Upload { known });
            }
            // The HEAD's ETag: some servers (s3s-fs) list none.
            let etag = meta.etag.as_deref().or(remote.etag.as_deref());
            let Some(md5) = etag.and_then(single_part_md5) else {
                return Ok(UPLOAD);
            };
            match local.checksum(job, size, ChecksumAlgorithm::Md5).await? {
                Some(local_md5) if hex::encode(local_md5.raw()) == md5 => {
                    remember_object(job, key, listed_etag.as_deref().or(etag), &local_md5);
                    skip(UNCHANGED_MD5_ETAG.to_owned())
                }
                _ => Ok(UPLOAD),
            }
        }
    }
}

/// The full checksum the checksum cache records for the version `etag` of the object at `key`.
fn recorded(job: &Job, key: &ObjectKey, etag: &str) -> Option<Checksum> {
    let location = job.store.location()?;
    job.checksums
        .as_ref()?
        .object(&location, key.as_str(), etag)
}

/// Records in the checksum cache that the version `etag` of the object at `key` (written or
/// verified by this job) has the full checksum `sum`.
pub(crate) fn remember_object(job: &Job, key: &ObjectKey, etag: Option<&str>, sum: &Checksum) {
    if let (Some(cache), Some(location), Some(etag)) = (&job.checksums, job.store.location(), etag)
    {
        cache.insert_object(&location, key.as_str(), etag, sum.clone());
    }
}

/// Whether a skip `reason` says the object was left as it was because it is unchanged (a sync
/// skip, as opposed to no-clobber's or a dry run's).
pub fn is_unchanged(reason: &str) -> bool {
    reason.starts_with("unchanged (")
}

/// The value of user-metadata entry `name` (servers return names lower-cased).
fn metadata<'m>(meta: &'m ObjectMeta, name: &str) -> Option<&'m str> {
    meta.metadata
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The hex MD5 an ETag is, when it is a single-part one (32 hex digits, no `-<parts>`).
fn single_part_md5(etag: &str) -> Option<String> {
    let e = etag.trim_matches('"');
    (e.len() == 32 && e.bytes().all(|b| b.is_ascii_hexdigit())).then(|| e.to_ascii_lowercase())
}

/// Nanoseconds since the epoch.
pub(crate) fn ns_since_epoch(t: SystemTime) -> Option<i128> {
    t.duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX))
}

async fn head(
    job: &Job,
    index: usize,
    key: &ObjectKey,
) -> Result<Option<ObjectMeta>, TransferError> {
    with_retries(job, index, Interrupt::Yes, || {
        Box::pin(async move { Ok(job.store.head(key.as_str()).await?) })
    })
    .await
}

/// The full-file checksum of `path` (`size` bytes, identity `id` when it was stat'ed) in `alg`:
/// from the cache, or read from the file (counted in the report's `hashed`) and cached if the
/// file was not changed while it was read.
pub(crate) async fn full_checksum(
    job: &Job,
    path: &Path,
    id: Option<FileIdentity>,
    size: u64,
    alg: ChecksumAlgorithm,
) -> Result<Checksum, TransferError> {
    if let (Some(cache), Some(id)) = (&job.checksums, &id)
        && let Some(c) = cache.get(id, alg)
    {
        return Ok(c);
    }
    job.hashed.fetch_add(1, Ordering::Relaxed);
    let p = path.to_owned();
    let read = tokio::task::spawn_blocking(move || Checksum::of_file_range(alg, &p, 0, size))
        .await
        .map_err(|e| local_error(ErrorCode::SourceUnreadable, e.to_string()))?;
    let sum = read.map_err(|e| {
        let code = if e.kind() == std::io::ErrorKind::UnexpectedEof {
            ErrorCode::SourceChanged
        } else {
            ErrorCode::SourceUnreadable
        };
        local_error(code, format!("hashing the source: {e}"))
    })?;
    if !remember(job, path, id, &sum).await {
        return Err(local_error(
            ErrorCode::SourceChanged,
            "the source changed while it was hashed".into(),
        ));
    }
    Ok(sum)
}

/// Caches `sum` as the checksum of the file version `id` if `path` still is that version;
/// `false` when it changed meanwhile.
pub(crate) async fn remember(
    job: &Job,
    path: &Path,
    id: Option<FileIdentity>,
    sum: &Checksum,
) -> bool {
    let Some(id) = id else { return true };
    let now = tokio::fs::metadata(path)
        .await
        .ok()
        .and_then(|m| FileIdentity::of(&m));
    if now != Some(id) {
        return false;
    }
    if let Some(cache) = &job.checksums {
        cache.insert(id, sum.clone());
    }
    true
}

/// Caches `sum` as the checksum of the file version `id`, for bytes known to be that version's
/// (read whole and checked against `id` after the read): no stat needed.
pub(crate) fn remember_read(job: &Job, id: Option<FileIdentity>, sum: &Checksum) {
    if let (Some(id), Some(cache)) = (id, &job.checksums) {
        cache.insert(id, sum.clone());
    }
}

fn local_error(code: ErrorCode, message: String) -> TransferError {
    TransferError::Local(FileError::new(code, message, true))
}

/// The end of a sync job: the `hashed` count into the report, the checksum cache saved, and
/// with `delete` the orphans removed (or listed, in a dry run).
pub(crate) async fn finish(job: &Arc<Job>, report: &mut Report) {
    report.hashed = job.hashed.load(Ordering::Relaxed);
    if let Some(cache) = &job.checksums {
        let cache = Arc::clone(cache);
        let _ = tokio::task::spawn_blocking(move || cache.save()).await;
    }
    let Some(sync) = &job.sync else { return };
    let Some(dest) = sync.dest.as_ref().filter(|d| d.delete) else {
        return;
    };
    report.delete_requested = true;
    if let Err(why) = delete_orphans(job, sync, dest, report).await {
        warn!("{why}");
        report.delete_refused = Some(why);
    }
}

/// Deletes (or in a dry run, lists) the objects under the destination that no input mapped
/// to; refuses, deleting nothing, when the job was interrupted, some source failed without a
/// key, or the listing failed.
async fn delete_orphans(
    job: &Job,
    sync: &SyncState,
    dest: &Destination,
    report: &mut Report,
) -> Result<(), String> {
    if dest.prefix.as_str().is_empty() {
        return Err(
            "--delete needs a key prefix: nothing deleted (it never cleans a whole bucket)".into(),
        );
    }
    if report.cancelled {
        return Err("the job was interrupted: nothing deleted".into());
    }
    if sync.walk_failed.load(Ordering::Relaxed) {
        return Err("some sources could not be read or named: nothing deleted (an orphan could be a file that was not seen)".into());
    }
    let Some(listing) = sync.listed(job).await else {
        return Err("the destination could not be listed: nothing deleted".into());
    };
    let mapped = std::mem::take(&mut *sync.mapped.lock().unwrap());
    let mut orphans: Vec<String> = listing
        .keys()
        .filter(|k| !mapped.contains(*k) && dest.may_delete(k))
        .cloned()
        .collect();
    orphans.sort();
    if job.config.dry_run {
        report.deletions = orphans
            .into_iter()
            .map(|key| Deletion {
                key,
                outcome: DeleteOutcome::WouldDelete,
            })
            .collect();
        return Ok(());
    }
    let deleting = orphans.into_iter().map(|key| async move {
        let k = key.as_str();
        let done = with_retries(job, usize::MAX, Interrupt::No, || {
            Box::pin(async move { Ok(job.store.delete_object(k).await?) })
        })
        .await;
        let outcome = match done {
            Ok(()) => DeleteOutcome::Deleted,
            Err(e) => DeleteOutcome::Failed {
                error: e.into_file_error(),
            },
        };
        Deletion { key, outcome }
    });
    let mut deletions: Vec<Deletion> = futures::stream::iter(deleting)
        .buffer_unordered(job.budget.max_requests().max(1))
        .collect()
        .await;
    deletions.sort_by(|a, b| a.key.cmp(&b.key));
    report.deletions = deletions;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_name_their_reasons() {
        for m in [SkipMode::Size, SkipMode::Mtime, SkipMode::Checksum] {
            assert_eq!(m.as_str().parse::<SkipMode>(), Ok(m));
        }
        assert_eq!(SkipMode::Checksum.reason(), "unchanged (checksum)");
        assert!("sha256".parse::<SkipMode>().is_err());
    }

    #[test]
    fn only_single_part_md5_etags_count() {
        let md5 = "\"D41D8CD98F00B204E9800998ECF8427E\"";
        assert_eq!(
            single_part_md5(md5).as_deref(),
            Some("d41d8cd98f00b204e9800998ecf8427e")
        );
        assert_eq!(
            single_part_md5("\"d41d8cd98f00b204e9800998ecf8427e-2\""),
            None
        );
        assert_eq!(single_part_md5("\"opaque\""), None);
    }

    #[test]
    fn deletes_stay_under_the_prefix_and_inside_the_selection() {
        let filter = crate::walk::glob_filter(&[], &["*.keep".into()]).unwrap();
        let d = Destination {
            prefix: KeyPrefix::new("p/q").unwrap(),
            delete: true,
            filter,
            shard: None,
        };
        assert!(d.may_delete("p/q/a.txt"));
        assert!(d.may_delete("p/q/deep/b"));
        assert!(
            !d.may_delete("p/q/x.keep"),
            "excluded: not the sync's business"
        );
        assert!(!d.may_delete("p/qq/a.txt"));
        assert!(!d.may_delete("p/a.txt"));
        assert!(!d.may_delete("p/q/"));
    }
}

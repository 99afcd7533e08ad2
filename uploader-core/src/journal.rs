//! The job journal: what an upload job has stored, so that an interrupted job can be resumed
//! (`uploader upload … --resume`) without starting again from zero.
//!
//! A journal is an append-only NDJSON file, one record a line, bound to one job by its id
//! ([`JobIdentity::id`]: a hash of the canonical sources, the destination and the settings that
//! change keys or bytes). Its first line names the job; then, keyed by destination key:
//!
//! * `done`: a file stored (size, mtime in ns, inode, ETag, checksum);
//! * `upload`: a multipart upload created (upload id, part size, checksum algorithm, the
//!   source's size, mtime in ns and inode, the upload's token);
//! * `part`: one part acknowledged (number, size, the checksum *we computed from the local
//!   bytes* when we sent it, the server's ETag);
//! * `aborted`: a multipart upload aborted;
//! * `end`: the job ended with every file stored or skipped.
//!
//! Records are buffered and written in batches: a flusher writes and fsyncs them every
//! [`FLUSH_INTERVAL`], and once more at the end of the job. A crash loses at most the records
//! of the last interval: what was acknowledged after it is found again by ListParts (parts) or
//! uploaded again (files). Reading stops trusting nothing in part: a line cut short by a crash
//! (no newline) is ignored, and so are, with a warning, garbage lines, lines over [`MAX_LINE`],
//! records of a key outside the job's destination and records that contradict the journal's
//! order (a part of an upload it never created). A journal is attacker-reachable input: what it
//! says only ever *selects* work to skip, and every skip is checked against the local file (its
//! size, mtime and inode) and, for parts, against the server's listing and the local bytes
//! (`resume`); a key is never taken from a journal to write to.
//!
//! Deliberately left out: compaction (a resumed journal grows by the records of each run) and
//! sharing one journal between concurrent runs of the same job (the last writer's records win).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use tracing::{debug, warn};

use crate::checksum::cache::FileIdentity;
use crate::checksum::{Checksum, ChecksumAlgorithm};
use crate::key::{KeyPrefix, ObjectKey};
use crate::store::{PartNumber, UploadId};

/// The `format` of a journal's first record.
pub const FORMAT: &str = "uploader-journal";
/// The version of the record format.
pub const VERSION: u32 = 1;
/// Longest record read; a longer line is ignored with a warning (and never held in memory).
pub const MAX_LINE: usize = 64 * 1024;
/// How often buffered records are written and fsynced.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(250);

/// What makes two runs the same job: the canonical sources, the destination (the store's
/// location, its bucket and the key prefix) and the settings that change which keys are
/// written or which bytes they hold. Settings that only change how the bytes are sent (part
/// size, concurrency, limits, the checksum algorithm) are not part of it: the part size of an
/// upload in progress is kept from the journal, and an upload made with another checksum
/// algorithm is started again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JobIdentity {
    /// The sources, canonicalized (absolute, symbolic links resolved).
    pub sources: Vec<String>,
    /// The store's location (endpoint and bucket, see `ObjectStore::location`).
    pub location: String,
    /// The bucket.
    pub bucket: String,
    /// The key prefix.
    pub prefix: String,
    /// Every other setting that changes keys or bytes, as `name=value` (the selection: include,
    /// exclude, shard, follow-symlinks, files-from; the stored object: content type, metadata,
    /// storage class, encryption, the MIME policy).
    pub settings: Vec<String>,
}

impl JobIdentity {
    /// The job id: the first 16 bytes of the SHA-256 of the identity, in hex.
    pub fn id(&self) -> String {
        let json = serde_json::to_vec(self).expect("an identity serializes");
        hex::encode(&sha2::Sha256::digest(&json)[..16])
    }
}

/// Where journals live by default: `jobs/` in [`crate::env::state_dir`].
pub fn default_dir() -> Option<PathBuf> {
    Some(crate::env::state_dir()?.join("jobs"))
}

/// The default journal of job `id`: `<id>.ndjson` in [`default_dir`].
pub fn default_path(id: &str) -> Option<PathBuf> {
    Some(default_dir()?.join(format!("{id}.ndjson")))
}

/// How a job keeps its journal (`UploadConfig::journal`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalConfig {
    /// The journal file.
    pub path: PathBuf,
    /// The job's id ([`JobIdentity::id`]); a journal of another id is never used.
    pub id: String,
    /// The job's destination prefix: records of keys outside it are ignored.
    pub prefix: KeyPrefix,
    /// Where the store is ([`JobIdentity::location`]) and its bucket, for `uploader jobs clean`.
    pub location: String,
    /// See `location`.
    pub bucket: String,
    /// Continue the job the journal describes (without it, the journal is started anew, and the
    /// multipart uploads an earlier run of the same job left open are aborted first).
    pub resume: bool,
    /// The command line that runs the job (shown by `uploader jobs`).
    pub command: Vec<String>,
}

/// The first record of a journal: which job it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobHeader {
    /// [`FORMAT`].
    pub format: String,
    /// [`VERSION`].
    pub v: u32,
    /// The job id ([`JobIdentity::id`]).
    pub id: String,
    /// The destination prefix.
    pub prefix: String,
    /// The store's location ([`JobIdentity::location`]).
    #[serde(default)]
    pub location: String,
    /// The bucket.
    #[serde(default)]
    pub bucket: String,
    /// When the job started, in seconds since the epoch.
    pub started: u64,
    /// Its command line.
    #[serde(default)]
    pub command: Vec<String>,
}

/// One line of a journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Record {
    /// The first line.
    Job(JobHeader),
    /// A file stored.
    Done {
        key: String,
        size: u64,
        /// i64 (not i128: serde's internally tagged enums cannot buffer i128), until 2262.
        mtime_ns: i64,
        ino: u64,
        etag: Option<String>,
        checksum: Option<String>,
    },
    /// A multipart upload created.
    Upload {
        key: String,
        upload_id: String,
        part_size: u64,
        alg: String,
        size: u64,
        mtime_ns: i64,
        ino: u64,
        token: String,
    },
    /// A part acknowledged.
    Part {
        key: String,
        upload_id: String,
        n: u32,
        size: u64,
        /// `<alg>:<base64>`, computed from the local bytes sent.
        checksum: Option<String>,
        etag: String,
    },
    /// A multipart upload aborted.
    Aborted { key: String, upload_id: String },
    /// The job ended with every file stored or skipped.
    End { ok: bool },
}

impl Record {
    /// The key a record is about (`None` for the header and the end).
    fn key(&self) -> Option<&str> {
        match self {
            Record::Done { key, .. }
            | Record::Upload { key, .. }
            | Record::Part { key, .. }
            | Record::Aborted { key, .. } => Some(key.as_str()),
            Record::Job { .. } | Record::End { .. } => None,
        }
    }
}

/// An mtime in ns as recorded (one out of i64's range never matches a file again).
fn ns64(ns: i128) -> i64 {
    i64::try_from(ns).unwrap_or(i64::MIN)
}

/// `<alg>:<base64>`.
fn checksum_text(c: &Checksum) -> String {
    format!("{}:{}", c.algorithm(), c.base64())
}

fn parse_checksum(s: &str) -> Option<Checksum> {
    let (alg, value) = s.split_once(':')?;
    Checksum::from_base64(alg.parse().ok()?, value)
}

/// What a resumed job may take from its earlier runs (how each piece is verified before it is
/// trusted is `resume`'s).
#[derive(Debug)]
pub(crate) enum Resume {
    /// The journal's records.
    Journal(Box<JobState>),
    /// No journal: pending uploads are looked for with ListMultipartUploads.
    Fallback,
}

/// A file the journal says is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoneFile {
    /// Its size.
    pub size: u64,
    /// Its mtime, ns since the epoch.
    pub mtime_ns: i128,
    /// Its inode.
    pub ino: u64,
    /// The object's ETag.
    pub etag: Option<String>,
}

impl DoneFile {
    /// Whether `id` is still the version of the file that was stored.
    pub fn matches(&self, id: &FileIdentity) -> bool {
        self.size == id.size && self.mtime_ns == id.mtime_ns && self.ino == id.ino
    }
}

/// A part the journal says was acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalPart {
    /// Its size.
    pub size: u64,
    /// The checksum computed from the local bytes when the part was sent.
    pub checksum: Option<Checksum>,
    /// The ETag the server answered.
    pub etag: String,
}

/// A multipart upload the journal says is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenUpload {
    /// Its id.
    pub upload_id: UploadId,
    /// The size of its parts (but the last).
    pub part_size: u64,
    /// The checksum algorithm of its parts.
    pub algorithm: ChecksumAlgorithm,
    /// The source's size, mtime (ns) and inode when it was created.
    pub size: u64,
    /// See `size`.
    pub mtime_ns: i128,
    /// See `size`.
    pub ino: u64,
    /// The token written in its metadata (evidence after a lost Complete answer).
    pub token: String,
    /// Parts acknowledged, by number.
    pub parts: BTreeMap<PartNumber, JournalPart>,
}

impl OpenUpload {
    /// Whether `id` is still the version of the source the upload was made of.
    pub fn matches(&self, id: &FileIdentity) -> bool {
        self.size == id.size && self.mtime_ns == id.mtime_ns && self.ino == id.ino
    }
}

/// What a journal says about its job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobState {
    /// Which job it is.
    pub job: JobHeader,
    /// Files stored, by key.
    pub done: HashMap<String, DoneFile>,
    /// Multipart uploads open, by key.
    pub uploads: HashMap<String, OpenUpload>,
    /// The last run ended with every file stored or skipped (and nothing ran after it).
    pub finished: bool,
    /// Lines ignored (garbage, too long, outside the destination, out of order).
    pub ignored: usize,
}

/// A journal that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// It could not be read.
    #[error("cannot read the journal {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Its first line is not a journal header of this format.
    #[error("{path} is not an uploader journal (or one of another version)")]
    NotAJournal {
        /// The file.
        path: PathBuf,
    },
    /// It belongs to another job.
    #[error(
        "{path} is the journal of another job (id {found}, this job is {expected}): other sources, destination or settings"
    )]
    OtherJob {
        /// The file.
        path: PathBuf,
        /// Its job id.
        found: String,
        /// This job's id.
        expected: String,
    },
}

/// Reads the journal at `path` (blocking). `Ok(None)`: there is none (or it is empty, or its
/// header was cut short by a crash). With `expected`, a
/// journal of another job id is refused; with `prefix`, records of keys outside it are ignored
/// (with a warning, as are malformed lines; see the module docs).
pub fn read(
    path: &Path,
    expected: Option<&str>,
    prefix: Option<&KeyPrefix>,
) -> Result<Option<JobState>, JournalError> {
    let io = |source| JournalError::Io {
        path: path.to_owned(),
        source,
    };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let mut lines = Lines::new(std::io::BufReader::new(file));
    let Some(job) = read_header(&mut lines, path, expected)? else {
        return Ok(None);
    };
    let mut state = JobState {
        job,
        ..JobState::default()
    };
    let own_prefix = KeyPrefix::new(&state.job.prefix).ok();
    let Some(dest) = prefix.or(own_prefix.as_ref()).cloned() else {
        return Err(JournalError::NotAJournal {
            path: path.to_owned(),
        });
    };
    let mut n = 1usize;
    while let Some(line) = lines.next_line().map_err(io)? {
        n += 1;
        let record = match line {
            Line::Whole(l) => match serde_json::from_slice::<Record>(&l) {
                Ok(r) => r,
                Err(e) => {
                    warn!(path = %path.display(), line = n, error = %e, "ignoring a malformed journal line");
                    state.ignored += 1;
                    continue;
                }
            },
            Line::TooLong => {
                warn!(path = %path.display(), line = n, "ignoring a journal line over {MAX_LINE} bytes");
                state.ignored += 1;
                continue;
            }
            Line::Cut => {
                debug!(path = %path.display(), line = n, "the journal's last line was cut short (a crash): ignored");
                break;
            }
        };
        if let Some(k) = record.key()
            && !within(&dest, k)
        {
            warn!(path = %path.display(), line = n, "ignoring a journal record for a key outside the job's destination");
            state.ignored += 1;
            continue;
        }
        if !apply(&mut state, record) {
            warn!(path = %path.display(), line = n, "ignoring a journal record that does not fit the journal");
            state.ignored += 1;
        }
    }
    Ok(Some(state))
}

/// The header of the journal `lines` begin with, when the file is this job's journal: `None`
/// when the file is empty or its header was cut short (a crash right after it was created, so
/// no journal); an error when the first line is not a journal header of this format and version,
/// or (with `expected`) is another job's.
fn read_header(
    lines: &mut Lines<impl std::io::BufRead>,
    path: &Path,
    expected: Option<&str>,
) -> Result<Option<JobHeader>, JournalError> {
    let not_a_journal = || JournalError::NotAJournal {
        path: path.to_owned(),
    };
    let first = lines.next_line().map_err(|source| JournalError::Io {
        path: path.to_owned(),
        source,
    })?;
    let header = match first {
        Some(Line::Whole(l)) => serde_json::from_slice::<Record>(&l).ok(),
        None | Some(Line::Cut) => return Ok(None),
        Some(Line::TooLong) => None,
    };
    let Some(Record::Job(job)) = header else {
        return Err(not_a_journal());
    };
    if job.format != FORMAT || job.v != VERSION {
        return Err(not_a_journal());
    }
    if let Some(expected) = expected
        && expected != job.id
    {
        return Err(JournalError::OtherJob {
            path: path.to_owned(),
            found: job.id,
            expected: expected.to_owned(),
        });
    }
    Ok(Some(job))
}

/// Whether a record's `key` counts: only a key the key rules could have made under the
/// destination prefix `dest` does.
fn within(dest: &KeyPrefix, key: &str) -> bool {
    key.strip_prefix(dest.as_str())
        .and_then(|rel| ObjectKey::derive(dest, rel).ok())
        .is_some_and(|k| k.as_str() == key)
}

/// Applies one record; `false` when it does not fit (a part of an unknown upload, a bad value).
fn apply(state: &mut JobState, record: Record) -> bool {
    state.finished = matches!(record, Record::End { ok: true });
    match record {
        Record::Job { .. } => return false,
        Record::End { .. } => {}
        Record::Done {
            key,
            size,
            mtime_ns,
            ino,
            etag,
            checksum: _,
        } => {
            state.uploads.remove(&key);
            state.done.insert(
                key,
                DoneFile {
                    size,
                    mtime_ns: mtime_ns.into(),
                    ino,
                    etag,
                },
            );
        }
        Record::Upload {
            key,
            upload_id,
            part_size,
            alg,
            size,
            mtime_ns,
            ino,
            token,
        } => {
            let Some(algorithm) = upload_algorithm(&upload_id, part_size, &alg) else {
                return false;
            };
            state.done.remove(&key);
            state.uploads.insert(
                key,
                OpenUpload {
                    upload_id: UploadId::new(upload_id),
                    part_size,
                    algorithm,
                    size,
                    mtime_ns: mtime_ns.into(),
                    ino,
                    token,
                    parts: BTreeMap::new(),
                },
            );
        }
        Record::Part {
            key,
            upload_id,
            n,
            size,
            checksum,
            etag,
        } => {
            let Some(u) = upload_of(state, &key, &upload_id) else {
                return false;
            };
            let Some((number, part)) = journal_part(n, size, checksum, etag) else {
                return false;
            };
            u.parts.insert(number, part);
        }
        Record::Aborted { key, upload_id } => {
            if upload_of(state, &key, &upload_id).is_some() {
                state.uploads.remove(&key);
            }
        }
    }
    true
}

/// The open upload of `key` when it is the upload `upload_id`: a record about another upload of
/// the key (an older one) is not about the open one.
fn upload_of<'s>(
    state: &'s mut JobState,
    key: &str,
    upload_id: &str,
) -> Option<&'s mut OpenUpload> {
    state
        .uploads
        .get_mut(key)
        .filter(|u| u.upload_id.as_str() == upload_id)
}

/// The checksum algorithm of an `upload` record, when its values can be an upload's: a known
/// algorithm, an upload id, a part size above zero (`None`: the record does not fit).
fn upload_algorithm(upload_id: &str, part_size: u64, alg: &str) -> Option<ChecksumAlgorithm> {
    let algorithm = alg.parse().ok()?;
    (!upload_id.is_empty() && part_size != 0).then_some(algorithm)
}

/// The part a `part` record describes, when its number is a part number and its checksum (if
/// any) is one (`None`: the record does not fit).
fn journal_part(
    n: u32,
    size: u64,
    checksum: Option<String>,
    etag: String,
) -> Option<(PartNumber, JournalPart)> {
    let number = PartNumber::new(u64::from(n)).ok()?;
    let checksum = match checksum {
        Some(c) => Some(parse_checksum(&c)?),
        None => None,
    };
    let part = JournalPart {
        size,
        checksum,
        etag,
    };
    Some((number, part))
}

/// One line of a journal as read.
enum Line {
    /// A whole line (without its newline).
    Whole(Vec<u8>),
    /// A line over [`MAX_LINE`], skipped.
    TooLong,
    /// The file ended without a newline: a record cut short.
    Cut,
}

/// Reads lines of at most [`MAX_LINE`] bytes, never holding a longer one.
struct Lines<R> {
    inner: R,
}

impl<R: std::io::BufRead> Lines<R> {
    fn new(inner: R) -> Self {
        Lines { inner }
    }

    fn next_line(&mut self) -> std::io::Result<Option<Line>> {
        let mut buf = Vec::new();
        let limit = MAX_LINE as u64 + 1;
        let n = std::io::Read::take(&mut self.inner, limit).read_until(b'\n', &mut buf)?;
        if n == 0 {
            return Ok(None);
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
            return Ok(Some(Line::Whole(buf)));
        }
        if buf.len() as u64 >= limit {
            // Skip the rest of the line in bounded reads.
            loop {
                buf.clear();
                let n = std::io::Read::take(&mut self.inner, limit).read_until(b'\n', &mut buf)?;
                if n == 0 || buf.last() == Some(&b'\n') {
                    return Ok(Some(Line::TooLong));
                }
            }
        }
        Ok(Some(Line::Cut))
    }
}

/// The journal of a running job: records are appended to a buffer and written by
/// [`JournalWriter::flush`] (every [`FLUSH_INTERVAL`] by the job's flusher, and at its end).
#[derive(Debug)]
pub(crate) struct JournalWriter {
    path: PathBuf,
    state: Mutex<WriterState>,
    /// The file, for fsync outside the lock.
    file: std::fs::File,
}

#[derive(Debug)]
struct WriterState {
    out: std::io::BufWriter<std::fs::File>,
    dirty: bool,
    failed: bool,
}

impl JournalWriter {
    /// Opens `config.path` for appending (blocking): kept as it is when `keep` (a resumed
    /// job), else started anew with a header.
    pub(crate) fn open(config: &JournalConfig, keep: bool) -> std::io::Result<JournalWriter> {
        if let Some(dir) = config.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true).truncate(false);
        // Like the checksum cache: the journal names the user's files and keys; only its owner
        // reads it.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&config.path)?;
        if !keep {
            file.set_len(0)?;
        }
        let writer = JournalWriter {
            path: config.path.clone(),
            file: file.try_clone()?,
            state: Mutex::new(WriterState {
                out: std::io::BufWriter::with_capacity(64 * 1024, file),
                dirty: false,
                failed: false,
            }),
        };
        if !keep || writer.file.metadata()?.len() == 0 {
            let started = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            writer.append(&Record::Job(JobHeader {
                format: FORMAT.into(),
                v: VERSION,
                id: config.id.clone(),
                prefix: config.prefix.as_str().to_owned(),
                location: config.location.clone(),
                bucket: config.bucket.clone(),
                started,
                command: config.command.clone(),
            }));
            writer.flush();
        }
        Ok(writer)
    }

    /// Buffers one record.
    pub(crate) fn append(&self, record: &Record) {
        let mut line = serde_json::to_vec(record).expect("records serialize");
        line.push(b'\n');
        let mut s = self.state.lock().unwrap();
        if s.failed {
            return;
        }
        if let Err(e) = s.out.write_all(&line) {
            s.failed = true;
            warn!(path = %self.path.display(), error = %e, "the journal cannot be written: this job cannot be resumed from it");
        }
        s.dirty = true;
    }

    /// Writes the buffered records and fsyncs them (blocking).
    pub(crate) fn flush(&self) {
        {
            let mut s = self.state.lock().unwrap();
            if !s.dirty || s.failed {
                return;
            }
            s.dirty = false;
            if let Err(e) = s.out.flush() {
                s.failed = true;
                warn!(path = %self.path.display(), error = %e, "the journal cannot be written: this job cannot be resumed from it");
                return;
            }
        }
        if let Err(e) = self.file.sync_data() {
            warn!(path = %self.path.display(), error = %e, "the journal could not be synced to disk");
        }
    }

    /// A file stored.
    pub(crate) fn done(
        &self,
        key: &str,
        id: &FileIdentity,
        etag: Option<&str>,
        checksum: Option<&str>,
    ) {
        self.append(&Record::Done {
            key: key.to_owned(),
            size: id.size,
            mtime_ns: ns64(id.mtime_ns),
            ino: id.ino,
            etag: etag.map(str::to_owned),
            checksum: checksum.map(str::to_owned),
        });
    }

    /// A multipart upload created for the source version `id`.
    pub(crate) fn upload(
        &self,
        key: &str,
        upload_id: &UploadId,
        part_size: u64,
        alg: ChecksumAlgorithm,
        id: &FileIdentity,
        token: &str,
    ) {
        self.append(&Record::Upload {
            key: key.to_owned(),
            upload_id: upload_id.as_str().to_owned(),
            part_size,
            alg: alg.to_string(),
            size: id.size,
            mtime_ns: ns64(id.mtime_ns),
            ino: id.ino,
            token: token.to_owned(),
        });
    }

    /// A part acknowledged.
    pub(crate) fn part(
        &self,
        key: &str,
        upload_id: &UploadId,
        n: PartNumber,
        size: u64,
        checksum: Option<&Checksum>,
        etag: &str,
    ) {
        self.append(&Record::Part {
            key: key.to_owned(),
            upload_id: upload_id.as_str().to_owned(),
            n: n.get(),
            size,
            checksum: checksum.map(checksum_text),
            etag: etag.to_owned(),
        });
    }

    /// A multipart upload aborted.
    pub(crate) fn aborted(&self, key: &str, upload_id: &UploadId) {
        self.append(&Record::Aborted {
            key: key.to_owned(),
            upload_id: upload_id.as_str().to_owned(),
        });
    }

    /// The job ended with every file stored or skipped.
    pub(crate) fn end(&self) {
        self.append(&Record::End { ok: true });
    }

    /// Writes and fsyncs every [`FLUSH_INTERVAL`] until `stop`, then a last time.
    pub(crate) fn spawn_flusher(
        self: &Arc<Self>,
        stop: tokio_util::sync::CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FLUSH_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let last = tokio::select! {
                    () = stop.cancelled() => true,
                    _ = tick.tick() => false,
                };
                let w = Arc::clone(&this);
                let _ = tokio::task::spawn_blocking(move || w.flush()).await;
                if last {
                    return;
                }
            }
        })
    }
}

/// A journal found in a directory, as `uploader jobs` lists it.
#[derive(Debug, Clone)]
pub struct JobEntry {
    /// The journal file.
    pub path: PathBuf,
    /// When it was last written.
    pub modified: Option<SystemTime>,
    /// What it says (`Err`: why it cannot be read).
    pub state: Result<JobState, String>,
}

/// Every journal (`*.ndjson`) in `dir` (blocking), in name order; none when `dir` is missing.
pub fn list(dir: &Path) -> std::io::Result<Vec<JobEntry>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in rd.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("ndjson") {
            continue;
        }
        let modified = entry.metadata().ok().and_then(|m| m.modified().ok());
        let state = match read(&path, None, None) {
            Ok(Some(s)) => Ok(s),
            Ok(None) => continue,
            Err(e) => Err(e.to_string()),
        };
        out.push(JobEntry {
            path,
            modified,
            state,
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> JournalConfig {
        JournalConfig {
            path: dir.join("jobs/j.ndjson"),
            id: "abc".into(),
            prefix: KeyPrefix::new("dest").unwrap(),
            location: "http://127.0.0.1:1/b".into(),
            bucket: "b".into(),
            resume: false,
            command: vec!["uploader".into()],
        }
    }

    fn id(ino: u64) -> FileIdentity {
        FileIdentity {
            dev: 1,
            ino,
            size: 100,
            mtime_ns: 1_700_000_000_123_456_789,
            ctime_ns: 0,
        }
    }

    fn written(dir: &Path) -> (JournalConfig, String) {
        let c = config(dir);
        let w = JournalWriter::open(&c, false).unwrap();
        let crc = Checksum::of_bytes(ChecksumAlgorithm::Crc32c, b"part one");
        w.done("dest/a", &id(1), Some("\"e1\""), Some("crc32c:AAAAAA=="));
        w.upload(
            "dest/big",
            &UploadId::new("u1"),
            5 << 20,
            ChecksumAlgorithm::Crc32c,
            &id(2),
            "tok",
        );
        w.part(
            "dest/big",
            &UploadId::new("u1"),
            PartNumber::FIRST,
            5 << 20,
            Some(&crc),
            "\"p1\"",
        );
        w.flush();
        let text = std::fs::read_to_string(&c.path).unwrap();
        (c, text)
    }

    #[test]
    fn round_trips_and_binds_to_its_job() {
        let dir = tempfile::tempdir().unwrap();
        let (c, _) = written(dir.path());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&c.path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "only its owner reads a journal");
        }
        let s = read(&c.path, Some("abc"), Some(&c.prefix))
            .unwrap()
            .unwrap();
        assert!(s.done["dest/a"].matches(&id(1)));
        assert!(!s.done["dest/a"].matches(&id(9)), "another inode");
        let u = &s.uploads["dest/big"];
        assert_eq!(u.upload_id.as_str(), "u1");
        assert_eq!(u.part_size, 5 << 20);
        assert_eq!(u.token, "tok");
        let p = &u.parts[&PartNumber::FIRST];
        assert_eq!(
            p.checksum,
            Some(Checksum::of_bytes(ChecksumAlgorithm::Crc32c, b"part one"))
        );
        assert_eq!(s.job.command, vec!["uploader".to_owned()]);
        assert!(!s.finished);
        assert_eq!(s.ignored, 0);
        // Another job's id is refused, not used.
        assert!(matches!(
            read(&c.path, Some("other"), None),
            Err(JournalError::OtherJob { .. })
        ));
        // A later `done` closes the upload; `end` marks the job finished.
        let w = JournalWriter::open(&c, true).unwrap();
        w.done("dest/big", &id(2), None, None);
        w.end();
        w.flush();
        let s = read(&c.path, Some("abc"), None).unwrap().unwrap();
        assert!(s.uploads.is_empty());
        assert!(s.finished);
        assert_eq!(s.done.len(), 2);
    }

    #[test]
    fn a_line_cut_by_a_crash_is_read_up_to_the_last_whole_record() {
        let dir = tempfile::tempdir().unwrap();
        let (c, text) = written(dir.path());
        // A crash before the header was whole: no journal.
        std::fs::write(&c.path, &text[..10]).unwrap();
        assert_eq!(read(&c.path, Some("abc"), None).unwrap(), None);
        std::fs::write(&c.path, "").unwrap();
        assert_eq!(read(&c.path, Some("abc"), None).unwrap(), None);
        // Cut in the middle of the last record (the part).
        let cut = text.trim_end().len() - 10;
        std::fs::write(&c.path, &text[..cut]).unwrap();
        let s = read(&c.path, Some("abc"), None).unwrap().unwrap();
        assert!(s.done.contains_key("dest/a"));
        assert!(
            s.uploads["dest/big"].parts.is_empty(),
            "the cut part is not trusted"
        );
        assert_eq!(s.ignored, 0, "a cut last line is a crash, not an attack");
    }

    #[test]
    fn bad_journals_are_refused_or_their_bad_lines_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let (c, text) = written(dir.path());
        // Garbage where the header should be: refused whole.
        std::fs::write(&c.path, "\u{0}garbage\n").unwrap();
        assert!(matches!(
            read(&c.path, Some("abc"), None),
            Err(JournalError::NotAJournal { .. })
        ));
        std::fs::write(&c.path, text.replace("\"v\":1", "\"v\":2")).unwrap();
        assert!(matches!(
            read(&c.path, None, None),
            Err(JournalError::NotAJournal { .. })
        ));
        // Garbage lines, a key outside the destination, a huge line, a part of an upload the
        // journal never created, an unknown field, a bad checksum: each ignored.
        let huge = format!(
            "{{\"t\":\"done\",\"key\":\"dest/{}\",\"size\":1,\"mtime_ns\":1,\"ino\":1,\"etag\":null,\"checksum\":null}}\n",
            "x".repeat(MAX_LINE * 3)
        );
        let bad = [
            "not json at all\n".to_owned(),
            "{\"t\":\"done\",\"key\":\"elsewhere/x\",\"size\":1,\"mtime_ns\":1,\"ino\":1,\"etag\":null,\"checksum\":null}\n".to_owned(),
            "{\"t\":\"done\",\"key\":\"destination-sibling\",\"size\":1,\"mtime_ns\":1,\"ino\":1,\"etag\":null,\"checksum\":null}\n".to_owned(),
            huge,
            "{\"t\":\"part\",\"key\":\"dest/big\",\"upload_id\":\"other\",\"n\":2,\"size\":1,\"checksum\":null,\"etag\":\"x\"}\n".to_owned(),
            "{\"t\":\"part\",\"key\":\"dest/big\",\"upload_id\":\"u1\",\"n\":10001,\"size\":1,\"checksum\":null,\"etag\":\"x\"}\n".to_owned(),
            "{\"t\":\"part\",\"key\":\"dest/big\",\"upload_id\":\"u1\",\"n\":3,\"size\":1,\"checksum\":\"crc32c:!!\",\"etag\":\"x\"}\n".to_owned(),
            "{\"t\":\"done\",\"key\":\"dest/z\",\"size\":1,\"mtime_ns\":1,\"ino\":1,\"etag\":null,\"checksum\":null,\"extra\":1}\n".to_owned(),
        ];
        let mut tampered = text.clone();
        for b in &bad {
            tampered.push_str(b);
        }
        // A good record after the bad ones still counts.
        tampered.push_str("{\"t\":\"done\",\"key\":\"dest/ok\",\"size\":1,\"mtime_ns\":1,\"ino\":1,\"etag\":null,\"checksum\":null}\n");
        std::fs::write(&c.path, &tampered).unwrap();
        let prefix = KeyPrefix::new("dest").unwrap();
        let s = read(&c.path, Some("abc"), Some(&prefix)).unwrap().unwrap();
        assert_eq!(s.ignored, bad.len(), "{s:?}");
        let mut keys: Vec<&String> = s.done.keys().collect();
        keys.sort();
        assert_eq!(keys, ["dest/a", "dest/ok"]);
        assert_eq!(s.uploads["dest/big"].parts.len(), 1);
    }

    #[test]
    fn job_ids_change_with_what_changes_keys_or_bytes() {
        let a = JobIdentity {
            sources: vec!["/data".into()],
            location: "http://127.0.0.1:9000/b".into(),
            bucket: "b".into(),
            prefix: "p/".into(),
            settings: vec!["exclude=*.tmp".into()],
        };
        assert_eq!(a.id(), a.clone().id());
        assert_eq!(a.id().len(), 32);
        for changed in [
            JobIdentity {
                sources: vec!["/data2".into()],
                ..a.clone()
            },
            JobIdentity {
                prefix: "q/".into(),
                ..a.clone()
            },
            JobIdentity {
                location: "http://127.0.0.1:9001/b".into(),
                ..a.clone()
            },
            JobIdentity {
                settings: vec![],
                ..a.clone()
            },
        ] {
            assert_ne!(a.id(), changed.id());
        }
    }
}

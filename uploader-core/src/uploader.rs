//! The embedder's entry point: [`Uploader`] runs jobs through the pipeline
//! (walk → key → plan → schedule → transfer → report) and hands back an [`UploadHandle`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::checksum::{Checksum, ChecksumAlgorithm};
use crate::config::{ConfigError, UploadConfig};
use crate::key::{KeyPrefix, ObjectKey};
use crate::plan::Plan;
use crate::report::{ErrorCode, Event, FileError, FileOutcome, FileReport, Report};
use crate::retry::RetryPolicy;
use crate::schedule::Budget;
use crate::sniff::{self, SNIFF_WINDOW, TAIL_WINDOW};
use crate::store::ObjectStore;
use crate::transfer::{FileTask, Inline, Job, upload_file};
use crate::walk::{Input, Source, WalkOptions, spawn_walk};

/// Inputs buffered between the walker and the scheduler.
const WALK_QUEUE: usize = 1024;

/// One file to upload to one key.
#[derive(Debug, Clone)]
pub struct UploadItem {
    pub path: PathBuf,
    pub key: ObjectKey,
}

/// Uploads files to one store with one shared budget of requests in flight. Cheap to clone;
/// clones share the budget.
#[derive(Debug, Clone)]
pub struct Uploader {
    store: Arc<dyn ObjectStore>,
    config: Arc<UploadConfig>,
    budget: Budget,
}

/// Builds an [`Uploader`].
#[derive(Debug, Default)]
pub struct UploaderBuilder {
    store: Option<Arc<dyn ObjectStore>>,
    config: UploadConfig,
}

impl UploaderBuilder {
    /// The store to upload to (required).
    pub fn with_store(mut self, store: Arc<dyn ObjectStore>) -> Self {
        self.store = Some(store);
        self
    }
    /// Replaces the whole configuration.
    pub fn with_config(mut self, config: UploadConfig) -> Self {
        self.config = config;
        self
    }
    /// Requests in flight.
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.config.concurrency = n;
        self
    }
    /// Part size of multipart uploads.
    pub fn with_part_size(mut self, bytes: u64) -> Self {
        self.config.part_size = bytes;
        self
    }
    /// Files of this size or more go multipart.
    pub fn with_multipart_threshold(mut self, bytes: u64) -> Self {
        self.config.multipart_threshold = bytes;
        self
    }
    /// Memory for request bodies in flight (see [`UploadConfig::max_buffer_bytes`]).
    pub fn with_max_buffer(mut self, bytes: u64) -> Self {
        self.config.max_buffer_bytes = bytes;
        self
    }
    /// Retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.config.retry = retry;
        self
    }
    /// Checksum algorithm.
    pub fn with_checksum(mut self, alg: ChecksumAlgorithm) -> Self {
        self.config.checksum = alg;
        self
    }
    /// Stop after the first failed file.
    pub fn with_fail_fast(mut self, yes: bool) -> Self {
        self.config.fail_fast = yes;
        self
    }
    /// Never overwrite existing keys.
    pub fn with_no_clobber(mut self, yes: bool) -> Self {
        self.config.no_clobber = yes;
        self
    }
    /// Which content types are uploaded.
    pub fn with_mime_policy(mut self, policy: crate::sniff::MimePolicy) -> Self {
        self.config.mime = policy;
        self
    }
    /// Validates the configuration and builds the uploader.
    pub fn build(self) -> Result<Uploader, ConfigError> {
        self.config.validate()?;
        let store = self.store.ok_or(ConfigError::MissingStore)?;
        Ok(Uploader {
            budget: Budget::new(self.config.concurrency, self.config.max_buffer_bytes),
            config: Arc::new(self.config),
            store,
        })
    }
}

impl Uploader {
    /// A builder with the default configuration.
    pub fn builder() -> UploaderBuilder {
        UploaderBuilder::default()
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The configuration.
    pub fn config(&self) -> &UploadConfig {
        &self.config
    }

    /// The shared budget (to observe requests in flight).
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// Uploads the given files. Must be called within a Tokio runtime.
    pub fn upload_files(&self, items: Vec<UploadItem>) -> UploadHandle {
        let (tx, rx) = mpsc::channel(WALK_QUEUE);
        let feeder = async move {
            for item in items {
                if tx
                    .send(Input::File {
                        path: item.path,
                        key: item.key,
                    })
                    .await
                    .is_err()
                {
                    break;
                }
            }
        };
        self.start(rx, Some(Box::pin(feeder)), |_| {})
    }

    /// Uploads every file under `dir`, keyed by its relative path under `prefix`.
    pub fn upload_dir(
        &self,
        dir: impl Into<PathBuf>,
        prefix: &KeyPrefix,
        opts: WalkOptions,
    ) -> UploadHandle {
        self.upload_sources(vec![Source::Path(dir.into())], prefix, opts)
    }

    /// Uploads files and trees (see [`Source`]) under `prefix`, walking while uploading.
    pub fn upload_sources(
        &self,
        sources: Vec<Source>,
        prefix: &KeyPrefix,
        opts: WalkOptions,
    ) -> UploadHandle {
        let (tx, rx) = mpsc::channel(WALK_QUEUE);
        let prefix = prefix.clone();
        self.start(rx, None, move |cancel| {
            spawn_walk(sources, prefix, opts, tx, cancel)
        })
    }

    /// Uploads a stream of inputs produced by the caller (e.g. a CLI mixing files and trees).
    pub fn upload_inputs(&self, rx: mpsc::Receiver<Input>) -> UploadHandle {
        self.start(rx, None, |_| {})
    }

    fn start(
        &self,
        rx: mpsc::Receiver<Input>,
        feeder: Option<futures::future::BoxFuture<'static, ()>>,
        spawn_source: impl FnOnce(CancellationToken),
    ) -> UploadHandle {
        let cancel = CancellationToken::new();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let job = Arc::new(Job {
            store: Arc::clone(&self.store),
            budget: self.budget.clone(),
            config: Arc::clone(&self.config),
            cancel: cancel.clone(),
            events: Some(ev_tx),
            retries: AtomicU64::new(0),
            aborted: AtomicU64::new(0),
        });
        spawn_source(cancel.clone());
        if let Some(f) = feeder {
            tokio::spawn(f);
        }
        let join = tokio::spawn(drive(job, rx));
        UploadHandle {
            cancel,
            join: Some(join),
            events: Some(ev_rx),
        }
    }
}

impl Uploader {
    /// Uploads one byte stream (e.g. a file part of an HTTP request) to `key`, with the same
    /// policies and the same shared budget as file uploads. Returns once the stream is consumed;
    /// the returned task finishes the remaining requests. See [`crate::stream`].
    pub async fn upload_stream<S, E>(
        &self,
        key: ObjectKey,
        stream: S,
        max_size: Option<u64>,
        cancel: CancellationToken,
    ) -> (
        crate::stream::StreamEnd,
        tokio::task::JoinHandle<crate::stream::StreamResult>,
    )
    where
        S: futures::Stream<Item = Result<bytes::Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        let job = Arc::new(Job {
            store: Arc::clone(&self.store),
            budget: self.budget.clone(),
            config: Arc::clone(&self.config),
            cancel: cancel.clone(),
            events: None,
            retries: AtomicU64::new(0),
            aborted: AtomicU64::new(0),
        });
        crate::stream::upload_stream(job, key, stream, max_size, cancel).await
    }
}

/// A running job. Dropping it cancels the job: open multipart uploads are aborted in the
/// background. [`UploadHandle::abort`] cancels and waits for the aborts to finish.
#[derive(Debug)]
pub struct UploadHandle {
    cancel: CancellationToken,
    join: Option<tokio::task::JoinHandle<Report>>,
    events: Option<mpsc::UnboundedReceiver<Event>>,
}

impl UploadHandle {
    /// Takes the event stream (once). Events not taken are discarded when the job ends.
    pub fn events(&mut self) -> Option<mpsc::UnboundedReceiver<Event>> {
        self.events.take()
    }

    /// A token that cancels the job when cancelled (e.g. from a Ctrl-C handler).
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Cancels the job: no new request starts, open multipart uploads are aborted, files not
    /// yet stored are reported as `cancelled`.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Waits for the job to end and returns its report.
    pub async fn wait(mut self) -> Report {
        self.events = None;
        let join = self.join.take().expect("wait is called once");
        match join.await {
            Ok(report) => report,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// Cancels the job and waits until every open multipart upload is aborted.
    pub async fn abort(self) -> Report {
        self.cancel();
        self.wait().await
    }
}

impl Drop for UploadHandle {
    fn drop(&mut self) {
        if self.join.is_some() {
            self.cancel.cancel();
        }
    }
}

/// The scheduler loop: takes inputs in order, refuses duplicates, spawns a bounded number of
/// file tasks, and gathers one report per input.
async fn drive(job: Arc<Job>, mut rx: mpsc::Receiver<Input>) -> Report {
    let started = Instant::now();
    // Files being worked on at once: enough to keep every request slot busy with small files
    // while others are being opened and checksummed.
    let slots = Arc::new(Semaphore::new(job.budget.max_requests() * 2));
    let mut tasks: JoinSet<FileReport> = JoinSet::new();
    let mut done: Vec<FileReport> = Vec::new();
    let mut keys: HashMap<ObjectKey, usize> = HashMap::new();
    let mut index = 0usize;

    while let Some(input) = rx.recv().await {
        let i = index;
        index += 1;
        let (path, key) = match input {
            Input::File { path, key } => (path, key),
            Input::Skip {
                source,
                key,
                reason,
            } => {
                done.push(finish(
                    &job,
                    i,
                    source,
                    key,
                    0,
                    FileOutcome::Skipped { reason },
                ));
                continue;
            }
            Input::Fail { source, key, error } => {
                fail_fast(&job);
                done.push(finish(
                    &job,
                    i,
                    source,
                    key,
                    0,
                    FileOutcome::Failed { error },
                ));
                continue;
            }
        };
        let source = path.display().to_string();
        if let Some(first) = keys.get(&key) {
            let error = FileError::new(
                ErrorCode::DuplicateKey,
                format!("input #{first} already maps to key {key:?}"),
                false,
            );
            fail_fast(&job);
            let key = Some(key.into_string());
            done.push(finish(
                &job,
                i,
                source,
                key,
                0,
                FileOutcome::Failed { error },
            ));
            continue;
        }
        keys.insert(key.clone(), i);
        if job.cancel.is_cancelled() {
            let error = FileError::new(ErrorCode::Cancelled, "the upload was cancelled", true);
            let key = Some(key.into_string());
            done.push(finish(
                &job,
                i,
                source,
                key,
                0,
                FileOutcome::Failed { error },
            ));
            continue;
        }
        let permit = Arc::clone(&slots)
            .acquire_owned()
            .await
            .expect("never closed");
        let job = Arc::clone(&job);
        tasks.spawn(async move {
            let _permit = permit;
            let t0 = Instant::now();
            let (size, outcome) = prepare_and_upload(&job, i, path, key.clone()).await;
            if matches!(outcome, FileOutcome::Failed { .. }) {
                fail_fast(&job);
            }
            let mut r = finish(&job, i, source, Some(key.into_string()), size, outcome);
            r.elapsed = t0.elapsed();
            r
        });
        // Collect finished tasks as we go so their memory is not held until the end.
        while let Some(r) = tasks.try_join_next() {
            done.push(r.expect("file tasks do not panic"));
        }
    }
    while let Some(r) = tasks.join_next().await {
        done.push(r.expect("file tasks do not panic"));
    }
    done.sort_by_key(|r| r.index);
    Report {
        files: done,
        elapsed: started.elapsed(),
        retries: job.retries.load(Ordering::Relaxed),
        aborted_multipart: job.aborted.load(Ordering::Relaxed),
        cancelled: job.cancel.is_cancelled(),
    }
}

fn fail_fast(job: &Job) {
    if job.config.fail_fast {
        job.cancel.cancel();
    }
}

fn finish(
    job: &Job,
    index: usize,
    source: String,
    key: Option<String>,
    size: u64,
    outcome: FileOutcome,
) -> FileReport {
    let r = FileReport {
        index,
        source,
        key,
        size,
        outcome,
        elapsed: std::time::Duration::ZERO,
    };
    job.emit(Event::Finished(Box::new(r.clone())));
    r
}

/// Stat → plan → transfer for one file.
async fn prepare_and_upload(
    job: &Job,
    index: usize,
    path: PathBuf,
    key: ObjectKey,
) -> (u64, FileOutcome) {
    let failed = |code, message: String| FileOutcome::Failed {
        error: FileError::new(code, message, false),
    };
    // One blocking call per file: stat, then either the whole file (small files, with its
    // checksum) or the sniff sample. Reading turns a permission problem into a clear per-file
    // error before any request is made, and decides the content type.
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
    job.emit(Event::Queued { index, size });
    let (head, tail) = loaded.sample();
    let detected = match sniff::check(&job.config.mime, head, tail, key.as_str()) {
        Ok(mime) => mime,
        Err(error) => return (size, FileOutcome::Failed { error }),
    };
    let content_type = job
        .config
        .content_type
        .clone()
        .unwrap_or_else(|| detected.to_owned());
    let plan = match Plan::new(size, job.config.multipart_threshold, job.config.part_size) {
        Ok(p) => p,
        Err(e) => return (size, failed(ErrorCode::FileTooLarge, e.to_string())),
    };
    if job.config.dry_run {
        let how = match plan {
            Plan::Single { .. } => "a single PUT".to_owned(),
            Plan::Multipart {
                part_count,
                part_size,
                ..
            } => {
                format!("{part_count} parts of {part_size} bytes")
            }
        };
        return (
            size,
            FileOutcome::Skipped {
                reason: format!("dry run: would upload as {how}"),
            },
        );
    }
    let task = FileTask {
        index,
        path,
        key,
        size,
        modified: loaded.modified,
        content_type: Some(content_type),
        inline: match (plan, loaded.content) {
            (
                Plan::Single { .. },
                Content::Whole {
                    data,
                    checksum: Some(checksum),
                },
            ) => Some(Inline {
                data,
                checksum,
                _reserved: reserved,
            }),
            _ => {
                drop(reserved);
                None
            }
        },
    };
    (size, upload_file(job, task, plan).await)
}

/// Files up to this size are read whole, once, in the blocking call that stats them; their
/// checksum is computed from that read and they are sent (and retried) from memory. Larger files
/// are only sampled for sniffing here; the transfer reads their bodies. Bounded memory: each
/// such read holds `INLINE_MAX` of the byte budget until the file is done.
pub const INLINE_MAX: u64 = 256 * 1024;

/// What one blocking read of a source found.
struct Loaded {
    size: u64,
    modified: Option<std::time::SystemTime>,
    content: Content,
}

enum Content {
    /// The whole file (at most [`INLINE_MAX`] bytes) and its checksum when one was asked for.
    Whole {
        data: bytes::Bytes,
        checksum: Option<Checksum>,
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
fn load(path: &std::path::Path, checksum: Option<ChecksumAlgorithm>) -> Result<Loaded, FileError> {
    use std::io::{Read as _, Seek as _};
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
    let mut f = std::fs::File::open(path).map_err(unreadable)?;
    if size <= INLINE_MAX {
        // One byte more than the size, so a file that grew is noticed.
        let mut data = Vec::with_capacity(size as usize + 1);
        (&mut f)
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
        let content = Content::Whole {
            data: data.into(),
            checksum,
        };
        return Ok(Loaded {
            size,
            modified,
            content,
        });
    }
    let mut head = Vec::with_capacity(SNIFF_WINDOW);
    (&mut f)
        .take(SNIFF_WINDOW as u64)
        .read_to_end(&mut head)
        .map_err(unreadable)?;
    let start = size
        .saturating_sub(TAIL_WINDOW as u64)
        .max(SNIFF_WINDOW as u64);
    f.seek(std::io::SeekFrom::Start(start))
        .map_err(unreadable)?;
    let mut tail = Vec::with_capacity(TAIL_WINDOW);
    f.take(TAIL_WINDOW as u64)
        .read_to_end(&mut tail)
        .map_err(unreadable)?;
    Ok(Loaded {
        size,
        modified,
        content: Content::Sample { head, tail },
    })
}

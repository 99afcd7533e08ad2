//! The embedder's entry point: [`Uploader`] runs jobs through the pipeline
//! (walk → key → sniff → plan → schedule → transfer → report) and hands back an
//! [`UploadHandle`]; [`Uploader::upload_stream`] sends one network body through the same life
//! cycle and hands back a [`StreamUpload`]. The scheduler loop is `job`; what happens
//! to one file is [`crate::source::file`].

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::checksum::ChecksumAlgorithm;
use crate::checksum::cache::ChecksumCache;
use crate::config::ConcurrencyMode;
use crate::config::{ConfigError, UploadConfig};
use crate::job::Job;
use crate::key::{KeyPrefix, ObjectKey};
use crate::limit::RateLimits;
use crate::report::{Event, Report};
use crate::retry::RetryPolicy;
use crate::schedule::Budget;
use crate::source::stream::StreamUpload;
use crate::store::{Metered, ObjectStore};
use crate::sync::{Destination, SyncState};
use crate::walk::{Input, Source, WalkOptions, spawn_walk};

/// Inputs buffered between the walker and the scheduler.
const WALK_QUEUE: usize = 1024;

/// One file to upload to one key.
#[derive(Debug, Clone)]
pub struct UploadItem {
    /// The file.
    pub path: PathBuf,
    /// The key it is stored at.
    pub key: ObjectKey,
}

/// Uploads files to one store with one shared budget of requests in flight. Cheap to clone;
/// clones share the budget.
#[derive(Debug, Clone)]
pub struct Uploader {
    store: Arc<dyn ObjectStore>,
    config: Arc<UploadConfig>,
    limits: RateLimits,
    budget: Budget,
}

/// Builds an [`Uploader`].
#[derive(Debug, Default)]
pub struct UploaderBuilder {
    store: Option<Arc<dyn ObjectStore>>,
    config: UploadConfig,
    limits: RateLimits,
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
    /// Exactly `n` requests in flight ([`ConcurrencyMode::Fixed`]).
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.config.concurrency = n;
        self.config.concurrency_mode = ConcurrencyMode::Fixed;
        self
    }
    /// Requests in flight that follow the endpoint, up to `ceiling`
    /// ([`ConcurrencyMode::Adaptive`], the default with a ceiling of
    /// [`crate::config::DEFAULT_CONCURRENCY`]).
    pub fn with_adaptive_concurrency(mut self, ceiling: usize) -> Self {
        self.config.concurrency = ceiling;
        self.config.concurrency_mode = ConcurrencyMode::Adaptive;
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
    /// Bandwidth and request-rate limits (default: none). Keep a clone to change them while
    /// uploads run ([`Uploader::limits`] gives one too).
    pub fn with_limits(mut self, limits: RateLimits) -> Self {
        self.limits = limits;
        self
    }
    /// Validates the configuration and builds the uploader. Every request to the store is
    /// charged to the request rate of the limits and timed for the adaptive limit of requests
    /// in flight (the store is wrapped in [`Metered`]).
    pub fn build(self) -> Result<Uploader, ConfigError> {
        self.config.validate()?;
        let store = self.store.ok_or(ConfigError::MissingStore)?;
        let c = &self.config;
        let budget = Budget::with_mode(c.concurrency, c.max_buffer_bytes, c.concurrency_mode);
        Ok(Uploader {
            store: Arc::new(Metered::new(store, self.limits.clone(), budget.clone())),
            budget,
            config: Arc::new(self.config),
            limits: self.limits,
        })
    }
}

impl Uploader {
    /// A builder with the default configuration.
    pub fn builder() -> UploaderBuilder {
        UploaderBuilder::default()
    }

    /// The store (every request to it charged to the request rate of [`Uploader::limits`]).
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The limits every transfer of this uploader (and of its clones) follows; changes made
    /// through them apply at once to the requests that start after.
    pub fn limits(&self) -> &RateLimits {
        &self.limits
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
        self.start(rx, Some(Box::pin(feeder)), |_| {}, None)
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

    /// Uploads files and trees (see [`Source`]) under `prefix`, walking while uploading. With
    /// [`UploadConfig::skip_existing`], the prefix is listed once and unchanged files are
    /// skipped.
    pub fn upload_sources(
        &self,
        sources: Vec<Source>,
        prefix: &KeyPrefix,
        opts: WalkOptions,
    ) -> UploadHandle {
        self.sync_sources(sources, prefix, opts, false)
    }

    /// [`Uploader::upload_sources`], and with `delete` the objects under `prefix` that no
    /// source maps to (and that the walk's filters and shard select) are deleted once every
    /// file is done — or only listed in the report, with [`UploadConfig::dry_run`]. See
    /// [`crate::sync`].
    pub fn sync_sources(
        &self,
        sources: Vec<Source>,
        prefix: &KeyPrefix,
        opts: WalkOptions,
        delete: bool,
    ) -> UploadHandle {
        let (tx, rx) = mpsc::channel(WALK_QUEUE);
        let dest = Destination {
            prefix: prefix.clone(),
            delete,
            filter: opts.filter.clone(),
            shard: opts.shard,
        };
        let prefix = prefix.clone();
        let walk = move |cancel| drop(spawn_walk(sources, prefix, opts, tx, cancel));
        self.start(rx, None, walk, Some(dest))
    }

    /// Uploads inputs produced by the caller (e.g. the CLI's own walk, counted for its
    /// progress bar), in the order they arrive. With [`UploadConfig::skip_existing`], each
    /// file's key is looked up with a HEAD ([`Uploader::upload_inputs_to`] lists once instead).
    pub fn upload_inputs(&self, rx: mpsc::Receiver<Input>) -> UploadHandle {
        self.start(rx, None, |_| {}, None)
    }

    /// [`Uploader::upload_inputs`] for inputs whose keys lie under `dest`: with
    /// [`UploadConfig::skip_existing`] the destination is listed once, and with
    /// `dest.delete` its orphans are deleted at the end (see [`Uploader::sync_sources`]).
    pub fn upload_inputs_to(&self, rx: mpsc::Receiver<Input>, dest: Destination) -> UploadHandle {
        self.start(rx, None, |_| {}, Some(dest))
    }

    fn start(
        &self,
        rx: mpsc::Receiver<Input>,
        feeder: Option<futures::future::BoxFuture<'static, ()>>,
        spawn_source: impl FnOnce(CancellationToken),
        dest: Option<Destination>,
    ) -> UploadHandle {
        let cancel = CancellationToken::new();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let mut job = Job::new(
            Arc::clone(&self.store),
            self.budget.clone(),
            Arc::clone(&self.config),
            self.limits.clone(),
            cancel.clone(),
            Some(ev_tx),
        );
        // The files' checksums from the base file, the objects' of this destination only
        // (see `checksum::cache`).
        let cache = self.config.checksum_cache.clone().map(|base| {
            let prefix = dest.as_ref().map_or("", |d| d.prefix.as_str());
            let objects = crate::checksum::cache::destination_path(
                &base,
                self.store.location().as_deref(),
                prefix,
            );
            (base, objects)
        });
        job.sync = SyncState::new(self.config.skip_existing, dest);
        let rx = match &job.sync {
            Some(sync) => sync.relay(rx),
            None => rx,
        };
        spawn_source(cancel.clone());
        if let Some(f) = feeder {
            tokio::spawn(f);
        }
        let journal = self.config.journal.clone();
        let join = tokio::spawn(async move {
            if let Some((files, objects)) = cache {
                let loaded =
                    tokio::task::spawn_blocking(move || ChecksumCache::load_split(files, objects))
                        .await;
                job.checksums = loaded.ok().map(Arc::new);
            }
            let mut stale = Vec::new();
            if let Some(config) = journal {
                let opened = tokio::task::spawn_blocking(move || crate::resume::open(&config));
                if let Ok((writer, resume, old)) = opened.await {
                    job.journal = writer.map(Arc::new);
                    job.resume = resume;
                    stale = old;
                }
            }
            let job = Arc::new(job);
            let flushing = CancellationToken::new();
            let flusher = job
                .journal
                .as_ref()
                .map(|j| j.spawn_flusher(flushing.clone()));
            crate::resume::abort_stale(&job, stale).await;
            if let Some(sync) = &job.sync {
                sync.prefetch(&job);
            }
            let mut report = crate::driver::run(Arc::clone(&job), rx).await;
            crate::sync::finish(&job, &mut report).await;
            crate::resume::finish(&job, &mut report);
            flushing.cancel();
            if let Some(f) = flusher {
                let _ = f.await;
            }
            report
        });
        UploadHandle {
            cancel,
            join: Some(join),
            events: Some(ev_rx),
        }
    }
}

impl Uploader {
    /// Uploads one byte stream (e.g. a file part of an HTTP request) to `key`, with the same
    /// life cycle, policies and shared budget as file uploads. `index` is the body's position in
    /// the caller's batch (carried into its result). Returns once the stream is consumed; the
    /// returned handle finishes the remaining requests, and dropping it (or cancelling `cancel`)
    /// cancels them and aborts the multipart upload. See [`crate::source::stream`].
    pub async fn upload_stream<S, E>(
        &self,
        index: usize,
        key: ObjectKey,
        stream: S,
        max_size: Option<u64>,
        cancel: &CancellationToken,
    ) -> StreamUpload
    where
        S: futures::Stream<Item = Result<bytes::Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        let skip = self.config.skip_existing;
        self.upload_stream_skipping(index, key, stream, max_size, cancel, skip)
            .await
    }

    /// [`Uploader::upload_stream`], leaving the object at `key` as it is when it is unchanged
    /// by `skip` (the daemon's per-request `skip_existing`; `None`: always upload). The body is
    /// compared once it is read: by its size, or by its checksum (CRC32C combined from its
    /// parts when it went multipart, whose upload is then aborted). A body has no mtime:
    /// [`SkipMode::Mtime`] never skips. See [`crate::sync`].
    ///
    /// [`SkipMode::Mtime`]: crate::sync::SkipMode::Mtime
    pub async fn upload_stream_skipping<S, E>(
        &self,
        index: usize,
        key: ObjectKey,
        stream: S,
        max_size: Option<u64>,
        cancel: &CancellationToken,
        skip: Option<crate::sync::SkipMode>,
    ) -> StreamUpload
    where
        S: futures::Stream<Item = Result<bytes::Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        let mut job = Job::new(
            Arc::clone(&self.store),
            self.budget.clone(),
            Arc::clone(&self.config),
            self.limits.clone(),
            cancel.child_token(),
            None,
        );
        job.sync = SyncState::new(skip, None);
        crate::source::stream::start(Arc::new(job), index, key, stream, max_size).await
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

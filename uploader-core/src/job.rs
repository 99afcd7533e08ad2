//! Job: the state shared by the files of one job (or by one streamed body): the store, the
//! budget, the configuration, cancellation, events and counters. The loop that runs a job's
//! files is `driver`; what one file or body goes through is the sources' and the transfer's.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::checksum::cache::ChecksumCache;
use crate::config::UploadConfig;
use crate::journal::{JournalWriter, Resume};
use crate::limit::RateLimits;
use crate::report::{Event, FileOutcome, FileReport, ResumeCounters};
use crate::schedule::Budget;
use crate::store::ObjectStore;
use crate::sync::SyncState;

/// State shared by every file of one job (or by one streamed body).
pub(crate) struct Job {
    pub store: Arc<dyn ObjectStore>,
    pub budget: Budget,
    pub config: Arc<UploadConfig>,
    /// The bandwidth budgets (requests are charged by the store itself, see `Metered`).
    pub limits: RateLimits,
    pub cancel: CancellationToken,
    pub events: Option<UnboundedSender<Event>>,
    pub retries: AtomicU64,
    pub aborted: AtomicU64,
    /// Sync: the skip mode, the destination's listing, the keys for `delete`.
    pub sync: Option<Arc<SyncState>>,
    /// The checksum cache, when one is configured.
    pub checksums: Option<Arc<ChecksumCache>>,
    /// Files read to compute a full-file checksum (see `Report::hashed`).
    pub hashed: AtomicU64,
    /// The job's journal, when it keeps one.
    pub journal: Option<Arc<JournalWriter>>,
    /// What a resumed job may take from its earlier runs (after verification).
    pub resume: Option<Resume>,
    /// What resuming spared (see `Report::resumed`).
    pub resumed: ResumeCounters,
}

impl Job {
    /// A job over `store` with `budget`, cancelled by `cancel`, reporting to `events`.
    pub(crate) fn new(
        store: Arc<dyn ObjectStore>,
        budget: Budget,
        config: Arc<UploadConfig>,
        limits: RateLimits,
        cancel: CancellationToken,
        events: Option<UnboundedSender<Event>>,
    ) -> Job {
        Job {
            store,
            budget,
            config,
            limits,
            cancel,
            events,
            retries: AtomicU64::new(0),
            aborted: AtomicU64::new(0),
            sync: None,
            checksums: None,
            hashed: AtomicU64::new(0),
            journal: None,
            resume: None,
            resumed: ResumeCounters::default(),
        }
    }

    /// Sends an event, if anyone listens.
    pub(crate) fn emit(&self, event: Event) {
        if let Some(tx) = &self.events {
            let _ = tx.send(event);
        }
    }

    /// With fail-fast, the first failure cancels the job.
    pub(crate) fn fail_fast(&self) {
        if self.config.fail_fast {
            self.cancel.cancel();
        }
    }

    /// The report of input `index`, announced as finished.
    pub(crate) fn finish(
        &self,
        index: usize,
        source: String,
        key: Option<String>,
        size: u64,
        outcome: FileOutcome,
    ) -> FileReport {
        if matches!(outcome, FileOutcome::Failed { .. }) {
            self.fail_fast();
        }
        let r = FileReport {
            index,
            source,
            key,
            size,
            outcome,
            elapsed: Duration::ZERO,
        };
        self.emit(Event::Finished(Box::new(r.clone())));
        r
    }
}

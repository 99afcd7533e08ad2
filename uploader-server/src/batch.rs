//! The bookkeeping of one batch: one entry per file part, in request order, from refused at
//! once to running to finished; then the batch's HTTP status and its JSON body (one result per
//! file, `summary`), and the per-file metrics.

use std::collections::HashSet;
use std::time::Instant;

use axum::http::StatusCode;
use uploader_core::sync::is_unchanged;
use uploader_core::{ErrorCode, FileError, FileOutcome, ObjectKey, StreamResult, StreamUpload};

use crate::model::{BatchBody, FileErrorBody, FileResult, Summary};

/// One file part and what became of it.
struct Entry {
    filename: String,
    key: Option<String>,
    state: EntryState,
}

enum EntryState {
    /// Refused before any byte was sent (no key, a duplicate key).
    Refused(FileError),
    Running(StreamUpload, Instant),
    Finished(StreamResult),
}

/// The files of one request.
#[derive(Default)]
pub(crate) struct Batch {
    entries: Vec<Entry>,
    keys: HashSet<String>,
}

/// A batch whose every upload has ended.
pub(crate) struct Finished {
    entries: Vec<Entry>,
}

impl Batch {
    /// Files so far (the index of the next one).
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Refuses a file part; its result says why.
    pub(crate) fn refuse(&mut self, filename: String, key: Option<String>, error: FileError) {
        self.entries.push(Entry {
            filename,
            key,
            state: EntryState::Refused(error),
        });
    }

    /// Claims `key` for this request; `false` when an earlier file already has it.
    pub(crate) fn claim(&mut self, key: &ObjectKey) -> bool {
        self.keys.insert(key.as_str().to_owned())
    }

    /// Adds a file whose stream has been read and whose upload may still be running.
    pub(crate) fn push(&mut self, filename: String, key: &ObjectKey, upload: StreamUpload) {
        self.entries.push(Entry {
            filename,
            key: Some(key.as_str().to_owned()),
            state: EntryState::Running(upload, Instant::now()),
        });
    }

    /// Waits until every started upload has ended (stored or aborted).
    pub(crate) async fn finish(self) -> Finished {
        let mut entries = Vec::with_capacity(self.entries.len());
        for mut e in self.entries {
            if let EntryState::Running(upload, t0) = e.state {
                let result = upload.wait().await;
                metrics::histogram!("uploader_upload_duration_seconds")
                    .record(t0.elapsed().as_secs_f64());
                e.state = EntryState::Finished(result);
            }
            entries.push(e);
        }
        let finished = Finished { entries };
        finished.record_metrics();
        finished
    }
}

impl Finished {
    /// Whether the request carried no file.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Files in the request.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The per-file results, in request order.
    pub(crate) fn results(&self) -> Vec<FileResult> {
        self.entries
            .iter()
            .enumerate()
            .map(|(i, e)| result(i, e))
            .collect()
    }

    /// Files stored and their bytes.
    pub(crate) fn stored(&self) -> (usize, u64) {
        self.entries
            .iter()
            .fold((0usize, 0u64), |(n, b), e| match &e.state {
                EntryState::Finished(StreamResult {
                    outcome: FileOutcome::Uploaded { .. },
                    size,
                    ..
                }) => (n + 1, b + size),
                EntryState::Finished(StreamResult {
                    outcome: FileOutcome::Skipped { reason },
                    ..
                }) if is_unchanged(reason) => (n + 1, b),
                _ => (n, b),
            })
    }

    /// 201 all stored (unchanged files skipped on request count as stored), 207 some, 422 none
    /// and all refused by validation, else 502; and the response body.
    pub(crate) fn response(&self, request_id: &str) -> (StatusCode, BatchBody) {
        let (ok, bytes) = self.stored();
        let skipped = self
            .entries
            .iter()
            .filter(|e| {
                matches!(&e.state, EntryState::Finished(StreamResult {
                    outcome: FileOutcome::Skipped { reason }, ..
                }) if is_unchanged(reason))
            })
            .count();
        let total = self.entries.len();
        let all_validation = self.entries.iter().all(|e| match &e.state {
            EntryState::Refused(err) => err.code.is_validation(),
            EntryState::Finished(StreamResult {
                outcome: FileOutcome::Failed { error },
                ..
            }) => error.code.is_validation(),
            _ => false,
        });
        let status = if ok == total {
            StatusCode::CREATED
        } else if ok > 0 {
            StatusCode::MULTI_STATUS
        } else if all_validation {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::BAD_GATEWAY
        };
        let body = BatchBody {
            request_id: request_id.to_owned(),
            summary: Summary {
                total,
                succeeded: ok,
                skipped,
                failed: total - ok,
                bytes,
            },
            results: self.results(),
        };
        (status, body)
    }

    fn record_metrics(&self) {
        for e in &self.entries {
            let outcome = match &e.state {
                EntryState::Refused(_) | EntryState::Running(..) => "failed",
                EntryState::Finished(r) => {
                    metrics::counter!("uploader_retries_total").increment(r.retries);
                    if r.aborted {
                        metrics::counter!("uploader_multipart_aborts_total").increment(1);
                    }
                    match &r.outcome {
                        FileOutcome::Uploaded { .. } => {
                            metrics::counter!("uploader_bytes_total").increment(r.size);
                            "uploaded"
                        }
                        FileOutcome::Skipped { .. } => "skipped",
                        FileOutcome::Failed { .. } => "failed",
                    }
                }
            };
            metrics::counter!("uploader_files_total", "outcome" => outcome).increment(1);
        }
    }
}

fn result(index: usize, e: &Entry) -> FileResult {
    let failed = |error: &FileError| FileResult::Failed {
        index,
        filename: e.filename.clone(),
        key: e.key.clone(),
        error: FileErrorBody {
            code: error.code,
            message: error.message.clone(),
            retryable: error.retryable,
        },
    };
    // A file that ran has its key.
    let key = || e.key.clone().unwrap_or_default();
    match &e.state {
        EntryState::Refused(error) => failed(error),
        EntryState::Finished(r) => match &r.outcome {
            FileOutcome::Uploaded {
                etag,
                checksum,
                content_type,
                ..
            } => FileResult::Uploaded {
                index,
                filename: e.filename.clone(),
                key: key(),
                size: r.size,
                content_type: content_type.clone(),
                etag: etag.clone(),
                checksum: checksum.clone(),
            },
            FileOutcome::Failed { error } => failed(error),
            // Left as it was, on request (`skip_existing`): the object is what was sent.
            FileOutcome::Skipped { reason } if is_unchanged(reason) => FileResult::Skipped {
                index,
                filename: e.filename.clone(),
                key: key(),
                size: r.size,
                reason: reason.clone(),
            },
            FileOutcome::Skipped { reason } => failed(&FileError {
                code: ErrorCode::AlreadyExists,
                message: reason.clone(),
                retryable: false,
            }),
        },
        EntryState::Running(..) => unreachable!("every upload has ended in a finished batch"),
    }
}

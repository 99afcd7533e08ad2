//! Report: one outcome per file, and the events that announce them.
//!
//! A failing file is data, not an early return: every input of a job appears exactly once in
//! the [`Report`], in input order, as uploaded, skipped or failed with a stable error code.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// Stable, machine-readable reasons for a failed (or skipped) file. The set is closed: front-ends
/// document it and clients may match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The name could not be turned into a safe key.
    InvalidKey,
    /// Two inputs of one job map to the same key.
    DuplicateKey,
    /// The detected content type is not in the allowlist.
    MimeNotAllowed,
    /// The content disagrees with the file's extension or declared type.
    MimeMismatch,
    /// The file is larger than allowed.
    FileTooLarge,
    /// The source could not be read (permissions, vanished, special file).
    SourceUnreadable,
    /// The source changed size or content while it was being uploaded.
    SourceChanged,
    /// The server rejected the checksum of what we sent.
    ChecksumMismatch,
    /// The object exists and the job asked not to overwrite.
    AlreadyExists,
    /// The server kept throttling us past the retry budget.
    UpstreamThrottled,
    /// The server did not answer in time, past the retry budget.
    UpstreamTimeout,
    /// Any other failure of the server or the network.
    UpstreamError,
    /// The server refused the request (access denied, bucket missing...).
    UpstreamRejected,
    /// The job was cancelled before this file was stored.
    Cancelled,
}

impl ErrorCode {
    /// Every code (the closed set of the daemon's OpenAPI document).
    pub const ALL: &[ErrorCode] = &[
        ErrorCode::InvalidKey,
        ErrorCode::DuplicateKey,
        ErrorCode::MimeNotAllowed,
        ErrorCode::MimeMismatch,
        ErrorCode::FileTooLarge,
        ErrorCode::SourceUnreadable,
        ErrorCode::SourceChanged,
        ErrorCode::ChecksumMismatch,
        ErrorCode::AlreadyExists,
        ErrorCode::UpstreamThrottled,
        ErrorCode::UpstreamTimeout,
        ErrorCode::UpstreamError,
        ErrorCode::UpstreamRejected,
        ErrorCode::Cancelled,
    ];

    /// The snake_case name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidKey => "invalid_key",
            ErrorCode::DuplicateKey => "duplicate_key",
            ErrorCode::MimeNotAllowed => "mime_not_allowed",
            ErrorCode::MimeMismatch => "mime_mismatch",
            ErrorCode::FileTooLarge => "file_too_large",
            ErrorCode::SourceUnreadable => "source_unreadable",
            ErrorCode::SourceChanged => "source_changed",
            ErrorCode::ChecksumMismatch => "checksum_mismatch",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::UpstreamThrottled => "upstream_throttled",
            ErrorCode::UpstreamTimeout => "upstream_timeout",
            ErrorCode::UpstreamError => "upstream_error",
            ErrorCode::UpstreamRejected => "upstream_rejected",
            ErrorCode::Cancelled => "cancelled",
        }
    }

    /// Whether the failure happened before anything was sent (validation), as opposed to
    /// upstream or local I/O failures.
    pub fn is_validation(self) -> bool {
        matches!(
            self,
            ErrorCode::InvalidKey
                | ErrorCode::DuplicateKey
                | ErrorCode::MimeNotAllowed
                | ErrorCode::MimeMismatch
                | ErrorCode::FileTooLarge
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why one file was not uploaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileError {
    /// The stable, machine-readable kind.
    pub code: ErrorCode,
    /// What happened, for people (the whole error chain).
    pub message: String,
    /// Whether trying the same file again later may succeed.
    pub retryable: bool,
}

impl FileError {
    /// An error of kind `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>, retryable: bool) -> Self {
        FileError {
            code,
            message: message.into(),
            retryable,
        }
    }
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum FileOutcome {
    /// Stored and acknowledged by the server.
    Uploaded {
        /// The ETag the server gave the object.
        etag: Option<String>,
        /// `<algorithm>:<base64>`; for multipart uploads the composite checksum `...-<parts>`.
        checksum: Option<String>,
        /// The Content-Type stored with the object.
        content_type: Option<String>,
        /// Parts sent (1 for a single PUT).
        parts: u32,
    },
    /// Deliberately not uploaded (e.g. `--no-clobber` found the key, a symlink not followed).
    Skipped {
        /// Why.
        reason: String,
    },
    /// Not uploaded because of an error.
    Failed {
        /// The error.
        error: FileError,
    },
}

/// The result for one input file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileReport {
    /// Position of the file in the job's input order.
    pub index: usize,
    /// The source, as given (a path, or a client's file name).
    pub source: String,
    /// The object key, when one could be derived.
    pub key: Option<String>,
    /// Size in bytes (of the source at planning time).
    pub size: u64,
    /// What happened to it.
    #[serde(flatten)]
    pub outcome: FileOutcome,
    /// Wall time spent on this file.
    #[serde(skip)]
    pub elapsed: Duration,
}

impl FileReport {
    /// Whether the file was stored.
    pub fn is_uploaded(&self) -> bool {
        matches!(self.outcome, FileOutcome::Uploaded { .. })
    }
    /// The error of a failed file.
    pub fn error(&self) -> Option<&FileError> {
        match &self.outcome {
            FileOutcome::Failed { error } => Some(error),
            _ => None,
        }
    }
}

/// Progress of a job. Events are for progress display; the [`Report`] is authoritative.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A file was found and planned (directory walks announce files as they go).
    Queued {
        /// The file's position in the job.
        index: usize,
        /// Its size.
        size: u64,
    },
    /// `bytes` more bytes of file `index` were acknowledged by the server.
    Progress {
        /// The file's position in the job.
        index: usize,
        /// Bytes acknowledged by this request.
        bytes: u64,
    },
    /// A request is being retried after a retryable failure.
    Retry {
        /// The file's position in the job.
        index: usize,
        /// The attempt that failed (1-based).
        attempt: u32,
    },
    /// A multipart upload was aborted.
    MultipartAborted {
        /// The file's position in the job.
        index: usize,
    },
    /// A file is done.
    Finished(Box<FileReport>),
}

/// Summary counts of a report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Inputs in all.
    pub total: usize,
    /// Files stored.
    pub uploaded: usize,
    /// Files deliberately not uploaded.
    pub skipped: usize,
    /// Files that failed.
    pub failed: usize,
    /// Bytes of the uploaded files.
    pub bytes: u64,
}

/// What `sync --delete` did with one object that no source maps to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum DeleteOutcome {
    /// Deleted.
    Deleted,
    /// Would be deleted (dry run).
    WouldDelete,
    /// The delete failed.
    Failed {
        /// The error.
        error: FileError,
    },
}

/// One object `sync --delete` removed (or would remove, or failed to).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deletion {
    /// The object's key.
    pub key: String,
    /// What happened to it.
    #[serde(flatten)]
    pub outcome: DeleteOutcome,
}

/// The final result of a job: one entry per input, in input order.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// One report per input, in input order.
    pub files: Vec<FileReport>,
    /// Wall time of the job.
    pub elapsed: Duration,
    /// Requests that were retried.
    pub retries: u64,
    /// Multipart uploads aborted (after failures or cancellation).
    pub aborted_multipart: u64,
    /// Whether the job was cancelled.
    pub cancelled: bool,
    /// Files whose contents were read to compute a full-file checksum for sync (the checksum
    /// cache did not know them); 0 on a re-run over an unchanged tree.
    pub hashed: u64,
    /// Whether the job was asked to delete orphans (`sync --delete`).
    pub delete_requested: bool,
    /// With `delete`: the objects under the prefix that no source maps to, in key order.
    pub deletions: Vec<Deletion>,
    /// With `delete`: why nothing was deleted, when it was refused (then the job failed).
    pub delete_refused: Option<String>,
    /// Requests in flight: how the limit was set and where it went.
    pub concurrency: ConcurrencyReport,
    /// What a resumed job did not send again.
    pub resumed: ResumeReport,
}

/// What a resumed job took from its earlier runs instead of sending it again (all 0 for a job
/// that was not resumed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ResumeReport {
    /// Files skipped as already stored (the journal says so and the file is unchanged).
    pub files_skipped: u64,
    /// Parts of open multipart uploads reused after verification.
    pub parts_reused: u64,
    /// Bytes not sent again: those of the skipped files and of the reused parts.
    pub bytes_not_resent: u64,
}

/// What resuming spared, counted as the job goes (into [`ResumeReport`] at its end).
#[derive(Debug, Default)]
pub(crate) struct ResumeCounters {
    files: AtomicU64,
    parts: AtomicU64,
    bytes: AtomicU64,
}

impl ResumeCounters {
    /// A file of `size` bytes skipped as already stored.
    pub(crate) fn file_skipped(&self, size: u64) {
        self.files.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(size, Ordering::Relaxed);
    }

    /// `parts` parts of an open upload, `bytes` in all, reused.
    pub(crate) fn parts_reused(&self, parts: u64, bytes: u64) {
        self.parts.fetch_add(parts, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// What was counted so far.
    pub(crate) fn report(&self) -> ResumeReport {
        ResumeReport {
            files_skipped: self.files.load(Ordering::Relaxed),
            parts_reused: self.parts.load(Ordering::Relaxed),
            bytes_not_resent: self.bytes.load(Ordering::Relaxed),
        }
    }
}

/// How many requests a job had in flight (the limit is shared by the uploader's jobs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ConcurrencyReport {
    /// `adaptive` or `fixed`.
    #[serde(serialize_with = "display")]
    pub mode: crate::config::ConcurrencyMode,
    /// The limit when the job ended.
    pub limit: usize,
    /// The highest limit reached.
    pub peak: usize,
    /// The ceiling (the configured concurrency).
    pub ceiling: usize,
}

fn display<S: serde::Serializer>(v: &impl std::fmt::Display, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

impl Report {
    /// Counts by outcome.
    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            total: self.files.len(),
            ..Summary::default()
        };
        for f in &self.files {
            match f.outcome {
                FileOutcome::Uploaded { .. } => {
                    s.uploaded += 1;
                    s.bytes += f.size;
                }
                FileOutcome::Skipped { .. } => s.skipped += 1,
                FileOutcome::Failed { .. } => s.failed += 1,
            }
        }
        s
    }

    /// Whether no file failed (and, with `delete`, every orphan was deleted).
    pub fn is_success(&self) -> bool {
        self.files.iter().all(|f| f.error().is_none())
            && self.delete_refused.is_none()
            && !self
                .deletions
                .iter()
                .any(|d| matches!(d.outcome, DeleteOutcome::Failed { .. }))
    }

    /// The failed files.
    pub fn failures(&self) -> impl Iterator<Item = &FileReport> {
        self.files.iter().filter(|f| f.error().is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn every_error_code_is_listed_once() {
        // Exhaustive: a new code does not compile here until it is in `ALL`.
        let position = |c: ErrorCode| match c {
            ErrorCode::InvalidKey
            | ErrorCode::DuplicateKey
            | ErrorCode::MimeNotAllowed
            | ErrorCode::MimeMismatch
            | ErrorCode::FileTooLarge
            | ErrorCode::SourceUnreadable
            | ErrorCode::SourceChanged
            | ErrorCode::ChecksumMismatch
            | ErrorCode::AlreadyExists
            | ErrorCode::UpstreamThrottled
            | ErrorCode::UpstreamTimeout
            | ErrorCode::UpstreamError
            | ErrorCode::UpstreamRejected
            | ErrorCode::Cancelled => ErrorCode::ALL.iter().position(|a| *a == c),
        };
        for (i, c) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(position(*c), Some(i), "{c:?} listed twice");
        }
        assert_eq!(ErrorCode::ALL.len(), 14);
    }
}

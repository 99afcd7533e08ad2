//! Errors of one transfer and how they are reported: `TransferError` says why a file's
//! upload stopped, `file_error` maps a store failure to the stable per-file [`FileError`], and
//! [`error_chain`] renders an error with its sources. Shared by the pipeline, the store and the
//! checks, so none of them imports a pipeline stage for it.

use crate::report::{ErrorCode, FileError};
use crate::store::{ServiceErrorKind, StoreError};

/// Why the upload of one file stopped before it was stored.
#[derive(Debug)]
pub(crate) enum TransferError {
    /// A store request failed (after its retries).
    Store(StoreError),
    /// Something local went wrong (the source, the content, a limit), already a per-file error.
    Local(FileError),
    /// The job (or the stream's caller) cancelled the upload.
    Cancelled,
}

impl From<StoreError> for TransferError {
    fn from(e: StoreError) -> Self {
        TransferError::Store(e)
    }
}

impl From<FileError> for TransferError {
    fn from(e: FileError) -> Self {
        TransferError::Local(e)
    }
}

impl TransferError {
    /// The per-file error reported to users.
    pub(crate) fn into_file_error(self) -> FileError {
        match self {
            TransferError::Store(e) => file_error(&e),
            TransferError::Local(e) => e,
            TransferError::Cancelled => FileError::new(
                ErrorCode::Cancelled,
                "the upload was cancelled before this file was stored",
                true,
            ),
        }
    }
}

/// Maps a store error to the file-level error reported to users.
pub(crate) fn file_error(e: &StoreError) -> FileError {
    let code = match e {
        StoreError::Service { kind, status, .. } => match kind {
            ServiceErrorKind::BadDigest => ErrorCode::ChecksumMismatch,
            ServiceErrorKind::Throttled => ErrorCode::UpstreamThrottled,
            _ if (400..500).contains(status) => ErrorCode::UpstreamRejected,
            _ => ErrorCode::UpstreamError,
        },
        StoreError::Timeout { .. } => ErrorCode::UpstreamTimeout,
        StoreError::Body { .. } => ErrorCode::SourceUnreadable,
        _ => ErrorCode::UpstreamError,
    };
    FileError::new(code, error_chain(e), e.is_retryable())
}

pub use crate::store::error_chain;

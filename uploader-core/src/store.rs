//! Store: the S3-shaped edge of the pipeline.
//!
//! [`ObjectStore`] mirrors the S3 operations the uploader needs (single PUT, the multipart
//! life cycle, HEAD, GET for verification, and listing pending multipart uploads). It is
//! object-safe and used as `Arc<dyn ObjectStore>`. Cross-cutting behaviour such as fault
//! injection is a wrapper implementing the same trait ([`FaultyStore`]), never a flag inside
//! [`S3Store`].
//!
//! Deliberately left out: listing objects, deleting, copying. The uploader never needs them.

use std::fmt;
use std::path::PathBuf;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

use crate::checksum::{Checksum, ChecksumAlgorithm};
use crate::key::ObjectKey;

mod fault;
mod memory;
pub mod s3;

pub use fault::{Fault, FaultRule, FaultyStore, Operation};
pub use memory::MemoryStore;
pub use s3::{S3Config, S3Store, StaticCredentials};

/// The data of one request: a byte range of a file (re-read on every attempt, so retries never
/// hold the data in memory) or bytes already in memory, contiguous or as the pieces they
/// arrived in (a daemon body: sent without being copied together).
#[derive(Clone)]
pub enum Body {
    /// `len` bytes of the file at `path`, starting at `offset`.
    File {
        path: PathBuf,
        offset: u64,
        len: u64,
    },
    /// In-memory bytes (cheap to clone, so retryable).
    Bytes(Bytes),
    /// In-memory bytes in pieces, sent in order (cheap to clone, so retryable).
    Chunks(std::sync::Arc<[Bytes]>),
}

impl Body {
    /// Number of bytes this body sends.
    pub fn len(&self) -> u64 {
        match self {
            Body::File { len, .. } => *len,
            Body::Bytes(b) => b.len() as u64,
            Body::Chunks(c) => c.iter().map(|b| b.len() as u64).sum(),
        }
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads the whole body into memory. Stores that need the bytes (the in-memory store)
    /// use this; [`S3Store`] streams instead.
    pub async fn read_all(&self) -> std::io::Result<Bytes> {
        match self {
            Body::Bytes(b) => Ok(b.clone()),
            Body::Chunks(c) => Ok(c.concat().into()),
            Body::File { path, offset, len } => {
                use tokio::io::{AsyncReadExt, AsyncSeekExt};
                let mut f = tokio::fs::File::open(path).await?;
                f.seek(std::io::SeekFrom::Start(*offset)).await?;
                let mut buf = vec![0u8; usize::try_from(*len).map_err(std::io::Error::other)?];
                f.read_exact(&mut buf).await?;
                Ok(Bytes::from(buf))
            }
        }
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Body::File { path, offset, len } => f
                .debug_struct("File")
                .field("path", path)
                .field("offset", offset)
                .field("len", len)
                .finish(),
            Body::Bytes(b) => f.debug_tuple("Bytes").field(&b.len()).finish(),
            Body::Chunks(c) => f
                .debug_tuple("Chunks")
                .field(&self.len())
                .field(&c.len())
                .finish(),
        }
    }
}

/// Options of a single PUT or of a multipart upload's creation.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    /// Content-Type stored with the object.
    pub content_type: Option<String>,
    /// Checksum of the whole body (single PUT) that the server verifies.
    pub checksum: Option<Checksum>,
    /// Checksum algorithm announced when a multipart upload is created.
    pub checksum_algorithm: Option<ChecksumAlgorithm>,
    /// Conditional write: fail with 412 when the key already exists.
    pub if_none_match: bool,
    /// User metadata (`x-amz-meta-*`).
    pub metadata: Vec<(String, String)>,
    /// Storage class, e.g. `STANDARD_IA`.
    pub storage_class: Option<String>,
    /// Server-side encryption, e.g. `AES256` or `aws:kms`.
    pub sse: Option<String>,
}

/// What the server answered to a successful write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutResult {
    /// The ETag, as sent by the server (quotes included).
    pub etag: Option<String>,
    /// The checksum the server echoed, if any (base64).
    pub checksum: Option<String>,
}

/// One uploaded part, as needed to complete the multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartReceipt {
    /// 1-based part number.
    pub part_number: u32,
    /// ETag the server gave the part.
    pub etag: String,
    /// Checksum sent with the part.
    pub checksum: Option<Checksum>,
}

/// Metadata of a stored object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
    pub etag: Option<String>,
    pub content_type: Option<String>,
    pub metadata: Vec<(String, String)>,
}

/// A multipart upload that was created and neither completed nor aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    pub key: String,
    pub upload_id: String,
    pub initiated: Option<SystemTime>,
}

/// Boxed error source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A store operation, for error messages and fault rules.
pub type OperationName = &'static str;

/// Why a store request failed. "The service said no" ([`StoreError::Service`]) is kept apart
/// from "we could not get an answer" ([`StoreError::Timeout`], [`StoreError::Network`]) and from
/// "we failed locally" ([`StoreError::Body`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The service answered with an error.
    #[error("{operation} was refused by the service: {code} (HTTP {status}){}", message_suffix(.message))]
    Service {
        operation: OperationName,
        status: u16,
        code: String,
        message: String,
    },
    /// No answer within the timeout.
    #[error("{operation} timed out")]
    Timeout { operation: OperationName },
    /// Connection refused, reset, or broken mid-request.
    #[error("{operation} could not reach the service")]
    Network {
        operation: OperationName,
        #[source]
        source: BoxError,
    },
    /// The request body could not be read from the local source.
    #[error("{operation} could not read the local data")]
    Body {
        operation: OperationName,
        #[source]
        source: std::io::Error,
    },
    /// Anything else (a malformed response, a missing field).
    #[error("{operation} failed: {message}")]
    Other {
        operation: OperationName,
        message: String,
    },
}

fn message_suffix(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

impl StoreError {
    /// Whether trying the same request again may succeed: 5xx, throttling, timeouts and broken
    /// connections are; everything the service refused for a reason (4xx) is not.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Service { status, code, .. } => {
                *status >= 500
                    || *status == 429
                    || matches!(
                        code.as_str(),
                        "SlowDown"
                            | "Throttling"
                            | "ThrottlingException"
                            | "RequestTimeout"
                            | "RequestTimeTooSkewed"
                            | "InternalError"
                            | "ServiceUnavailable"
                    )
            }
            StoreError::Timeout { .. } | StoreError::Network { .. } => true,
            StoreError::Body { .. } | StoreError::Other { .. } => false,
        }
    }

    /// Whether the service throttled us (503 SlowDown, 429).
    pub fn is_throttle(&self) -> bool {
        matches!(self, StoreError::Service { status, code, .. }
            if *status == 429 || code == "SlowDown" || code.starts_with("Throttl"))
    }

    /// HTTP status of a service error.
    pub fn status(&self) -> Option<u16> {
        match self {
            StoreError::Service { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// S3 error code of a service error.
    pub fn code(&self) -> Option<&str> {
        match self {
            StoreError::Service { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The conditional write found an existing object (412 PreconditionFailed).
    pub fn is_precondition_failed(&self) -> bool {
        self.status() == Some(412) || self.code() == Some("PreconditionFailed")
    }

    /// The service rejected the body's checksum.
    pub fn is_bad_digest(&self) -> bool {
        matches!(
            self.code(),
            Some("BadDigest" | "InvalidDigest" | "XAmzContentChecksumMismatch")
        )
    }
}

/// An S3-shaped object store. Object-safe: use it as `Arc<dyn ObjectStore>`.
///
/// Writes take an [`ObjectKey`], so nothing but a sanitized key is ever written; the operations
/// on existing uploads and objects (abort, head, get) take the raw key the service reported.
#[async_trait]
pub trait ObjectStore: Send + Sync + fmt::Debug + 'static {
    /// A single PUT of the whole object.
    async fn put(
        &self,
        key: &ObjectKey,
        body: Body,
        opts: &PutOptions,
    ) -> Result<PutResult, StoreError>;

    /// Starts a multipart upload; returns its upload id.
    async fn create_multipart(
        &self,
        key: &ObjectKey,
        opts: &PutOptions,
    ) -> Result<String, StoreError>;

    /// Uploads one part (1-based `part_number`) with its checksum.
    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        part_number: u32,
        body: Body,
        checksum: Option<&Checksum>,
    ) -> Result<PartReceipt, StoreError>;

    /// Completes a multipart upload from its parts, in part-number order.
    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        parts: &[PartReceipt],
    ) -> Result<PutResult, StoreError>;

    /// Aborts a multipart upload, discarding its parts.
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError>;

    /// Metadata of an object, or `None` when it does not exist.
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError>;

    /// The whole object, or `None` when it does not exist (used to verify uploads).
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError>;

    /// Multipart uploads under `prefix` that are neither completed nor aborted.
    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>, StoreError>;
}

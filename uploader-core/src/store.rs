//! Store: the S3-shaped edge of the pipeline.
//!
//! [`ObjectStore`] mirrors the S3 operations the uploader needs (single PUT, the multipart
//! life cycle, HEAD, GET for verification, listing pending multipart uploads, and for sync
//! listing objects page by page and deleting one object). It is object-safe and used as
//! `Arc<dyn ObjectStore>`. Cross-cutting behaviour such as fault injection is a wrapper
//! implementing the same trait (`FaultyStore`, behind the `testing` feature), never a flag
//! inside [`S3Store`].
//!
//! Deliberately left out: copying, and batch deletes (`DeleteObjects`: servers differ in the
//! body checksum they demand; `--delete` removes few objects, one request each).

use std::fmt;
use std::path::PathBuf;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

use crate::checksum::{Checksum, ChecksumAlgorithm};
use crate::key::ObjectKey;
use crate::limit::Pace;

#[cfg(feature = "testing")]
mod fault;
mod memory;
mod metered;
pub mod s3;

#[cfg(feature = "testing")]
pub use fault::{Fault, FaultRule, FaultyStore, Operation};
pub use memory::MemoryStore;
pub use metered::Metered;
pub use s3::{S3Config, S3Store, StaticCredentials};

/// Lists every object under `prefix`, page by page (one request per 1 000 objects).
pub async fn list_all(
    store: &dyn ObjectStore,
    prefix: &str,
) -> Result<Vec<ListedObject>, StoreError> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_objects_page(prefix, after).await?;
        out.extend(page.objects);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(out),
        }
    }
}

/// The data of one request: a byte range of a file, re-read from disk on every attempt (the file
/// source uses it only for ranges over a quarter of the byte budget; smaller ones are read once
/// into memory), or bytes already in memory, contiguous or as the pieces they arrived in (a
/// daemon body: sent without being copied together).
#[derive(Clone)]
pub enum Body {
    /// `len` bytes of the file at `path`, starting at `offset`.
    File {
        /// The file.
        path: PathBuf,
        /// Where the range starts.
        offset: u64,
        /// How many bytes.
        len: u64,
    },
    /// In-memory bytes (cheap to clone, so retryable).
    Bytes(Bytes),
    /// In-memory bytes in pieces, sent in order (cheap to clone, so retryable).
    Chunks(std::sync::Arc<[Bytes]>),
    /// Another body, sent no faster than its [`Pace`] allows: every frame waits for its share
    /// of the bandwidth budgets before it goes out (see [`crate::limit`]). Stores that stream
    /// honour it frame by frame; stores that read the whole body charge it once.
    Paced(Box<Body>, Pace),
}

impl Body {
    /// Number of bytes this body sends.
    pub fn len(&self) -> u64 {
        match self {
            Body::File { len, .. } => *len,
            Body::Bytes(b) => b.len() as u64,
            Body::Chunks(c) => c.iter().map(|b| b.len() as u64).sum(),
            Body::Paced(b, _) => b.len(),
        }
    }

    /// This body paced by `pace` (unchanged when the pace does not apply to it: a small body
    /// while no limit is set).
    pub(crate) fn paced(self, pace: &Pace) -> Body {
        if pace.applies_to(self.len()) {
            Body::Paced(Box::new(self), pace.clone())
        } else {
            self
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
            Body::Paced(b, pace) => {
                let wait = pace.charge(usize::try_from(b.len()).unwrap_or(usize::MAX));
                tokio::time::sleep(wait).await;
                Box::pin(b.read_all()).await
            }
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
            Body::Paced(b, pace) => f.debug_tuple("Paced").field(b).field(pace).finish(),
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
}

/// The id S3 gives a multipart upload. Opaque; only the service makes one (or a test store).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UploadId(String);

impl UploadId {
    /// Wraps an id the service returned.
    pub fn new(id: impl Into<String>) -> UploadId {
        UploadId(id.into())
    }

    /// The id as sent on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A part number: 1 to [`MAX_PARTS`](crate::plan::MAX_PARTS) (S3's limit). A part past the
/// limit is an error, never a saturated number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartNumber(u16);

/// A part number outside 1..=10 000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("part number {0} is outside S3's range 1..=10000")]
pub struct PartNumberError(pub u64);

impl PartNumber {
    /// The first part.
    pub const FIRST: PartNumber = PartNumber(1);

    /// Part `n` (1-based), if S3 allows it.
    pub fn new(n: u64) -> Result<PartNumber, PartNumberError> {
        if (1..=crate::plan::MAX_PARTS).contains(&n) {
            Ok(PartNumber(u16::try_from(n).expect("at most 10 000")))
        } else {
            Err(PartNumberError(n))
        }
    }

    /// The number, 1-based.
    pub fn get(self) -> u32 {
        u32::from(self.0)
    }

    /// The part after this one, if S3 allows it.
    pub fn next(self) -> Result<PartNumber, PartNumberError> {
        PartNumber::new(u64::from(self.0) + 1)
    }
}

impl fmt::Display for PartNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One uploaded part, as needed to complete the multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartReceipt {
    /// The part's number.
    pub part_number: PartNumber,
    /// ETag the server gave the part.
    pub etag: String,
    /// Checksum sent with the part.
    pub checksum: Option<Checksum>,
}

/// Metadata of a stored object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Size in bytes.
    pub size: u64,
    /// The ETag, quotes included.
    pub etag: Option<String>,
    /// The stored Content-Type.
    pub content_type: Option<String>,
    /// User metadata (`x-amz-meta-*`).
    pub metadata: Vec<(String, String)>,
    /// The object's checksum as the server reports it (base64, `-<parts>` for a composite
    /// multipart checksum), when it keeps one in our algorithm.
    pub checksum: Option<String>,
    /// When the object was last written, if the server says.
    pub last_modified: Option<SystemTime>,
}

/// One object of a listing (ListObjectsV2): what S3 returns without a HEAD. User metadata is
/// not part of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListedObject {
    /// The key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// The ETag, quotes included.
    pub etag: Option<String>,
    /// When the object was last written, if the server says.
    pub last_modified: Option<SystemTime>,
    /// The checksum algorithms the server keeps for the object (`CRC32C`, `CRC64NVME`, ...), if
    /// it says; the values themselves are only returned by HEAD.
    pub checksum_algorithms: Vec<String>,
    /// `FULL_OBJECT` or `COMPOSITE`, if the server says.
    pub checksum_type: Option<String>,
}

/// One page of a listing and where the next one starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    /// The objects of this page, in key order.
    pub objects: Vec<ListedObject>,
    /// The continuation token of the next page; `None` on the last page.
    pub next: Option<String>,
}

/// One part of a pending multipart upload, as ListParts reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedPart {
    /// The part's number.
    pub part_number: PartNumber,
    /// Its size in bytes.
    pub size: u64,
    /// The ETag the server gave it (quotes included), if it says.
    pub etag: Option<String>,
    /// Its CRC32C as the server keeps it, if it says (only for uploads created with CRC32C).
    pub crc32c: Option<Checksum>,
}

/// A multipart upload that was created and neither completed nor aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    /// The key the upload writes.
    pub key: String,
    /// Its id.
    pub upload_id: UploadId,
    /// When it was created, if the server says.
    pub initiated: Option<SystemTime>,
}

/// Boxed error source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A store operation, for error messages and fault rules.
pub type OperationName = &'static str;

/// What kind of refusal a service error is, decided once where the wire format is known
/// ([`S3Store`]); nothing else compares S3 error-code strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServiceErrorKind {
    /// The multipart upload does not exist (completed, aborted or never created).
    NoSuchUpload,
    /// The object does not exist.
    NoSuchKey,
    /// The bucket does not exist.
    NoSuchBucket,
    /// A conditional write found an existing object (412).
    PreconditionFailed,
    /// The body does not match the checksum sent with it.
    BadDigest,
    /// The service asks us to slow down (503 SlowDown, 429).
    Throttled,
    /// The service may succeed if asked again (5xx, RequestTimeout, a skewed clock).
    Transient,
    /// The credentials were not accepted (unknown key, bad signature, expired token).
    CredentialsRejected,
    /// The credentials are valid but not allowed to do this.
    AccessDenied,
    /// A part listed in CompleteMultipartUpload is missing or has another ETag.
    InvalidPart,
    /// Any other refusal.
    Other,
}

/// Why a store request failed. "The service said no" ([`StoreError::Service`]) is kept apart
/// from "we could not get an answer" ([`StoreError::Timeout`], [`StoreError::Network`]) and from
/// "we failed locally" ([`StoreError::Body`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The service answered with an error.
    #[error("{operation} was refused by the service: {code} (HTTP {status}){}", message_suffix(.message))]
    Service {
        /// The S3 operation.
        operation: OperationName,
        /// The HTTP status.
        status: u16,
        /// What kind of refusal it is.
        kind: ServiceErrorKind,
        /// The service's error code, for messages only (decisions use `kind`).
        code: String,
        /// The service's message.
        message: String,
    },
    /// No answer within the timeout.
    #[error("{operation} timed out")]
    Timeout {
        /// The S3 operation.
        operation: OperationName,
    },
    /// Connection refused, reset, or broken mid-request.
    #[error("{operation} could not reach the service")]
    Network {
        /// The S3 operation.
        operation: OperationName,
        /// What the transport said.
        #[source]
        source: BoxError,
    },
    /// The request body could not be read from the local source.
    #[error("{operation} could not read the local data")]
    Body {
        /// The S3 operation.
        operation: OperationName,
        /// The read error.
        #[source]
        source: std::io::Error,
    },
    /// Anything else (a malformed response, a missing field).
    #[error("{operation} failed: {message}")]
    Other {
        /// The S3 operation.
        operation: OperationName,
        /// What was wrong.
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
    /// A service error of a known kind (for stores and wrappers other than [`S3Store`]).
    pub fn service(
        operation: OperationName,
        status: u16,
        kind: ServiceErrorKind,
        code: impl Into<String>,
    ) -> StoreError {
        StoreError::Service {
            operation,
            status,
            kind,
            code: code.into(),
            message: String::new(),
        }
    }

    /// Whether trying the same request again may succeed: 5xx, throttling, timeouts and broken
    /// connections are; everything the service refused for a reason (4xx) is not.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Service { status, kind, .. } => {
                *status >= 500
                    || matches!(
                        kind,
                        ServiceErrorKind::Throttled | ServiceErrorKind::Transient
                    )
            }
            StoreError::Timeout { .. } | StoreError::Network { .. } => true,
            StoreError::Body { .. } | StoreError::Other { .. } => false,
        }
    }

    /// Whether the request may still have been executed although it failed: no answer came
    /// (a timeout, a broken connection), so it may have been lost after the service acted.
    pub fn may_have_landed(&self) -> bool {
        matches!(
            self,
            StoreError::Timeout { .. } | StoreError::Network { .. }
        )
    }

    /// The kind of a service error (`None` for failures to get an answer, and local ones).
    pub fn kind(&self) -> Option<ServiceErrorKind> {
        match self {
            StoreError::Service { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// Whether the service throttled us (503 SlowDown, 429).
    pub fn is_throttle(&self) -> bool {
        self.kind() == Some(ServiceErrorKind::Throttled)
    }

    /// HTTP status of a service error.
    pub fn status(&self) -> Option<u16> {
        match self {
            StoreError::Service { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The S3 operation that failed.
    pub fn operation(&self) -> OperationName {
        match self {
            StoreError::Service { operation, .. }
            | StoreError::Timeout { operation }
            | StoreError::Network { operation, .. }
            | StoreError::Other { operation, .. }
            | StoreError::Body { operation, .. } => operation,
        }
    }
}

/// An error and its sources, joined with ": " (a source already quoted by its parent is not
/// repeated).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let msg = inner.to_string();
        if !s.contains(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        src = inner.source();
    }
    s
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
    ) -> Result<UploadId, StoreError>;

    /// Uploads one part with its checksum.
    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload_id: &UploadId,
        part_number: PartNumber,
        body: Body,
        checksum: Option<&Checksum>,
    ) -> Result<PartReceipt, StoreError>;

    /// Completes a multipart upload from its parts, in part-number order.
    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload_id: &UploadId,
        parts: &[PartReceipt],
    ) -> Result<PutResult, StoreError>;

    /// Aborts a multipart upload, discarding its parts.
    async fn abort_multipart(&self, key: &str, upload_id: &UploadId) -> Result<(), StoreError>;

    /// Metadata of an object (with its checksum where the server keeps one), or `None` when it
    /// does not exist.
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError>;

    /// The whole object, or `None` when it does not exist (used to verify uploads).
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError>;

    /// Multipart uploads under `prefix` that are neither completed nor aborted.
    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>, StoreError>;

    /// The parts uploaded so far to a pending multipart upload, in part-number order (resume).
    /// The default refuses: a store that cannot list parts cannot resume.
    async fn list_parts(
        &self,
        key: &str,
        upload_id: &UploadId,
    ) -> Result<Vec<ListedPart>, StoreError> {
        let _ = (key, upload_id);
        Err(StoreError::Other {
            operation: "ListParts",
            message: "this store cannot list parts".into(),
        })
    }

    /// One page (at most 1 000 objects) of the objects whose key starts with `prefix`, from the
    /// continuation token `after` (`None`: the first page). The default refuses: a store that
    /// cannot list cannot sync.
    async fn list_objects_page(
        &self,
        prefix: &str,
        after: Option<String>,
    ) -> Result<ListPage, StoreError> {
        let _ = (prefix, after);
        Err(StoreError::Other {
            operation: "ListObjectsV2",
            message: "this store cannot list objects".into(),
        })
    }

    /// Where the store is — its endpoint and bucket — for caches that outlive the process (the
    /// checksum cache's object versions); `None` (the default) when it has no stable identity.
    fn location(&self) -> Option<String> {
        None
    }

    /// Deletes one object (`sync --delete`). Deleting a missing key succeeds, as in S3. The
    /// default refuses.
    async fn delete_object(&self, key: &str) -> Result<(), StoreError> {
        let _ = key;
        Err(StoreError::Other {
            operation: "DeleteObject",
            message: "this store cannot delete objects".into(),
        })
    }
}

//! [`S3Store`]: the product's store, on aws-sdk-s3.
//!
//! Tuned for S3-compatible servers as much as for AWS:
//! * the SDK's default request checksums (CRC32 in aws-chunked trailers) are off
//!   (`WhenRequired`): the pipeline sends its own checksum as a plain header, which servers that
//!   reject trailers accept;
//! * payload signing is skipped (`UNSIGNED-PAYLOAD`): the checksum header — itself signed —
//!   already protects the body, and SHA-256 of every byte costs several CPU-seconds per GiB;
//! * bodies are `ByteStream`s built from the path with offset and length, so a retry re-reads
//!   the file instead of holding it in memory;
//! * the SDK's own retries are off: the pipeline retries with its own classification;
//! * custom endpoints use path-style addressing unless told otherwise.

use std::pin::Pin;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Credentials, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::Length;
use bytes::Bytes;

use super::{
    Body, ListPage, ListedObject, ListedPart, ObjectMeta, ObjectStore, PartNumber, PartReceipt,
    PendingUpload, PutOptions, PutResult, ServiceErrorKind, StoreError, UploadId,
};
use crate::checksum::{Checksum, ChecksumAlgorithm};
use crate::env;
use crate::key::ObjectKey;
use crate::limit::{PACE_SLICE, Pace};

/// Region used when none is configured and a custom endpoint is set.
const FALLBACK_REGION: &str = "us-east-1";
/// Default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default read timeout: no byte from the server for this long fails the attempt.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Timeout of each instance-metadata request while looking for credentials.
const IMDS_TIMEOUT: Duration = Duration::from_millis(500);
/// Read size of file bodies.
const FILE_READ_BUFFER: usize = 256 * 1024;

/// Credentials given explicitly (the embedded endpoint's, or a test's). Never logged.
#[derive(Clone)]
pub struct StaticCredentials {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
}

impl std::fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StaticCredentials(<redacted>)")
    }
}

/// Where and how to reach S3. Unset fields follow the AWS conventions (environment variables,
/// shared config files, the default credential chain).
#[derive(Debug, Clone, Default)]
pub struct S3Config {
    /// Bucket name.
    pub bucket: String,
    /// Region (default: the AWS chain, then `us-east-1`).
    pub region: Option<String>,
    /// Endpoint URL (default: `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, then AWS).
    pub endpoint_url: Option<String>,
    /// Path-style addressing (default: on for custom endpoints).
    pub force_path_style: Option<bool>,
    /// Shared-config profile.
    pub profile: Option<String>,
    /// Explicit credentials (default: the AWS credential chain).
    pub credentials: Option<StaticCredentials>,
    /// Allow plain HTTP to a non-loopback host.
    pub allow_http: bool,
    /// Connect timeout (default [`DEFAULT_CONNECT_TIMEOUT`]).
    pub connect_timeout: Option<Duration>,
    /// Read timeout (default [`DEFAULT_READ_TIMEOUT`]).
    pub read_timeout: Option<Duration>,
}

/// A configuration that cannot work; nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// Not an `http(s)://host[:port]` URL.
    #[error("invalid endpoint URL {0:?}: expected http(s)://host[:port]")]
    InvalidUrl(String),
    /// Plain HTTP to a host other than loopback, without the opt-in.
    #[error(
        "refusing plain-HTTP endpoint {0:?}: credentials and data would cross the network \
         unencrypted; use https, or opt in with --allow-http (UPLOADER_ALLOW_HTTP=1)"
    )]
    InsecureHttp(String),
    /// Not a valid S3 bucket name.
    #[error("invalid bucket name {0:?}")]
    InvalidBucket(String),
}

impl S3Config {
    /// The endpoint in effect: the explicit one, else the standard environment variables.
    pub fn effective_endpoint(&self) -> Option<String> {
        self.endpoint_url
            .clone()
            .or_else(|| std::env::var(env::AWS_ENDPOINT_URL_S3).ok())
            .or_else(|| std::env::var(env::AWS_ENDPOINT_URL).ok())
            .filter(|s| !s.is_empty())
    }

    /// Checks the transport policy: plain HTTP only to loopback unless allowed.
    pub fn check_endpoint(&self) -> Result<(), EndpointError> {
        if self.bucket.is_empty()
            || self.bucket.len() > 63
            || !self
                .bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        {
            return Err(EndpointError::InvalidBucket(self.bucket.clone()));
        }
        let Some(url) = self.effective_endpoint() else {
            return Ok(());
        };
        let uri: http::Uri = url
            .parse()
            .map_err(|_| EndpointError::InvalidUrl(url.clone()))?;
        let host = uri
            .host()
            .ok_or_else(|| EndpointError::InvalidUrl(url.clone()))?;
        match uri.scheme_str() {
            Some("https") => Ok(()),
            Some("http") if self.allow_http || is_loopback(host) => Ok(()),
            Some("http") => Err(EndpointError::InsecureHttp(url)),
            _ => Err(EndpointError::InvalidUrl(url)),
        }
    }
}

/// Whether `host` names this machine.
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// An S3 bucket through aws-sdk-s3.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    credentials: Option<SharedCredentialsProvider>,
    explicit_credentials: bool,
    /// The read timeout, also applied by hand to paced bodies (see [`Activity`]).
    read_timeout: Duration,
    /// The endpoint (or AWS and the region) and the bucket.
    location: String,
}

impl S3Store {
    /// Builds the client. Resolves region and profile but sends nothing; credential problems
    /// surface on the first request (`validate::check` checks up front).
    pub async fn connect(cfg: &S3Config) -> Result<S3Store, EndpointError> {
        cfg.check_endpoint()?;
        let endpoint = cfg.effective_endpoint();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(cfg.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT))
                    .read_timeout(cfg.read_timeout.unwrap_or(DEFAULT_READ_TIMEOUT))
                    .build(),
            )
            .region(
                RegionProviderChain::first_try(cfg.region.clone().map(aws_config::Region::new))
                    .or_default_provider()
                    .or_else(FALLBACK_REGION),
            );
        if let Some(p) = &cfg.profile {
            loader = loader.profile_name(p);
        }
        if let Some(e) = &endpoint {
            loader = loader.endpoint_url(e);
        }
        if let Some(c) = &cfg.credentials {
            loader = loader.credentials_provider(Credentials::new(
                &c.access_key_id,
                &c.secret_access_key,
                None,
                None,
                "uploader-static",
            ));
        } else {
            // The default chain, with an instance-metadata client that gives up quickly: off
            // EC2 the stock one stalls for seconds before "no credentials" can be reported.
            let imds = aws_config::imds::Client::builder()
                .connect_timeout(IMDS_TIMEOUT)
                .read_timeout(IMDS_TIMEOUT)
                .max_attempts(1)
                .build();
            let mut chain = DefaultCredentialsChain::builder().imds_client(imds);
            if let Some(p) = &cfg.profile {
                chain = chain.profile_name(p);
            }
            if let Some(r) = &cfg.region {
                chain = chain.region(aws_config::Region::new(r.clone()));
            }
            loader = loader.credentials_provider(chain.build().await);
        }
        let shared = loader.load().await;
        let s3 = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(cfg.force_path_style.unwrap_or(endpoint.is_some()))
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        let place = match &endpoint {
            Some(e) => e.trim_end_matches('/').to_owned(),
            None => format!("aws:{}", shared.region().map_or("", |r| r.as_ref())),
        };
        Ok(S3Store {
            location: format!("{place}/{}", cfg.bucket),
            client: Client::from_conf(s3),
            bucket: cfg.bucket.clone(),
            credentials: shared.credentials_provider(),
            explicit_credentials: cfg.credentials.is_some(),
            read_timeout: cfg.read_timeout.unwrap_or(DEFAULT_READ_TIMEOUT),
        })
    }

    /// The SDK client (for checks outside the store trait).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The credential provider in use, for validation.
    pub fn credentials_provider(&self) -> Option<&SharedCredentialsProvider> {
        self.credentials.as_ref()
    }

    /// Where credentials come from: explicit configuration or the AWS default chain.
    pub fn credentials_source(&self) -> &'static str {
        if self.explicit_credentials {
            "explicit (embedded endpoint or configuration)"
        } else {
            "AWS default chain (environment, profile, container, instance metadata)"
        }
    }
}

/// Turns an SDK error into a [`StoreError`], keeping the service's verdict apart from
/// transport failures.
pub(crate) fn convert<E>(
    operation: &'static str,
    err: SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match err {
        SdkError::TimeoutError(_) => StoreError::Timeout { operation },
        SdkError::DispatchFailure(d) if d.is_timeout() => StoreError::Timeout { operation },
        SdkError::DispatchFailure(d) => {
            let source: super::BoxError = match d.as_connector_error() {
                Some(c) => super::error_chain(c).into(),
                None => format!("{d:?}").into(),
            };
            StoreError::Network { operation, source }
        }
        SdkError::ResponseError(r) => StoreError::Network {
            operation,
            source: format!("malformed or interrupted response: {r:?}").into(),
        },
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            let e = s.err();
            let code = e
                .code()
                .map(str::to_owned)
                .unwrap_or_else(|| status_code_name(status).to_owned());
            StoreError::Service {
                operation,
                status,
                kind: service_kind(status, &code),
                code,
                message: e.message().unwrap_or_default().to_owned(),
            }
        }
        other => StoreError::Other {
            operation,
            message: super::error_chain(&other),
        },
    }
}

/// The kind of an S3 error, from its code (and its status when the code says nothing): the one
/// place that knows S3's error-code strings.
pub(crate) fn service_kind(status: u16, code: &str) -> ServiceErrorKind {
    use ServiceErrorKind as K;
    match code {
        "NoSuchUpload" => K::NoSuchUpload,
        "NoSuchKey" => K::NoSuchKey,
        "NoSuchBucket" => K::NoSuchBucket,
        "PreconditionFailed" => K::PreconditionFailed,
        "BadDigest" | "InvalidDigest" | "XAmzContentChecksumMismatch" => K::BadDigest,
        "SlowDown" | "TooManyRequests" => K::Throttled,
        c if c.starts_with("Throttl") => K::Throttled,
        "RequestTimeout" | "RequestTimeTooSkewed" | "InternalError" | "ServiceUnavailable" => {
            K::Transient
        }
        "InvalidAccessKeyId"
        | "SignatureDoesNotMatch"
        | "InvalidToken"
        | "ExpiredToken"
        | "AuthorizationHeaderMalformed" => K::CredentialsRejected,
        "AccessDenied" | "AllAccessDisabled" | "Forbidden" => K::AccessDenied,
        "InvalidPart" | "InvalidPartOrder" => K::InvalidPart,
        _ => match status {
            412 => K::PreconditionFailed,
            429 => K::Throttled,
            403 => K::AccessDenied,
            s if s >= 500 => K::Transient,
            _ => K::Other,
        },
    }
}

fn status_code_name(status: u16) -> &'static str {
    match status {
        400 => "BadRequest",
        403 => "Forbidden",
        404 => "NotFound",
        412 => "PreconditionFailed",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        _ => "Unknown",
    }
}

/// An HTTP body over in-memory pieces: each piece is one data frame, nothing is copied.
struct ChunksBody {
    pieces: std::sync::Arc<[bytes::Bytes]>,
    next: usize,
}

impl http_body::Body for ChunksBody {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        let i = self.next;
        self.next += 1;
        std::task::Poll::Ready(
            self.pieces
                .get(i)
                .map(|b| Ok(http_body::Frame::data(b.clone()))),
        )
    }

    fn is_end_stream(&self) -> bool {
        self.next >= self.pieces.len()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let left: u64 = self.pieces[self.next.min(self.pieces.len())..]
            .iter()
            .map(|b| b.len() as u64)
            .sum();
        http_body::SizeHint::with_exact(left)
    }
}

/// When a paced request last moved. The SDK's read timeout runs from the start of a request
/// until its answer, so a body that waits for its bandwidth (a 1 GiB file under `--bwlimit 1M`
/// takes minutes a part) would be timed out while nothing is wrong. A paced request therefore
/// runs without it and is timed out by hand instead ([`watched`]): when neither its body nor
/// the server has moved for the read timeout. A wait for the budget counts as movement until it
/// ends.
#[derive(Clone)]
struct Activity {
    base: std::time::Instant,
    /// Nanoseconds after `base` of the latest movement (or end of a budget wait).
    at: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            base: std::time::Instant::now(),
            at: std::sync::Arc::default(),
        }
    }

    fn touch(&self, until: std::time::Instant) {
        let nanos = u64::try_from(until.saturating_duration_since(self.base).as_nanos())
            .unwrap_or(u64::MAX);
        self.at
            .fetch_max(nanos, std::sync::atomic::Ordering::Relaxed);
    }

    fn deadline(&self, timeout: Duration) -> std::time::Instant {
        let at = self.at.load(std::sync::atomic::Ordering::Relaxed);
        self.base + Duration::from_nanos(at) + timeout
    }
}

/// Runs a request: as is when it has no paced body; else until done, or until nothing has moved
/// for `timeout` (`None`: timed out).
async fn watched<F: std::future::Future>(
    activity: Option<&Activity>,
    timeout: Duration,
    request: F,
) -> Option<F::Output> {
    let Some(activity) = activity else {
        return Some(request.await);
    };
    tokio::pin!(request);
    loop {
        let deadline = activity.deadline(timeout);
        tokio::select! {
            out = &mut request => return Some(out),
            () = tokio::time::sleep_until(deadline.into()) => {
                if std::time::Instant::now() >= activity.deadline(timeout) {
                    return None;
                }
            }
        }
    }
}

/// The per-request configuration of a paced request: no SDK read timeout ([`Activity`] times it).
fn unpaced_timeouts() -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Builder::default()
        .timeout_config(TimeoutConfig::builder().disable_read_timeout().build())
}

/// A body sent at the pace of its budgets: each slice of at most [`PACE_SLICE`] bytes is charged
/// before it is handed to the connection, and waits its turn.
struct PacedBody {
    inner: SdkBody,
    pace: Pace,
    activity: Activity,
    /// Bytes of the inner body's current frame not yet charged.
    rest: Bytes,
    /// A charged slice and the wait it owes before it goes out.
    due: Option<(Bytes, Pin<Box<tokio::time::Sleep>>)>,
}

impl http_body::Body for PacedBody {
    type Data = Bytes;
    type Error = aws_smithy_types::body::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        use std::task::{Poll, ready};
        let this = &mut *self;
        loop {
            if let Some((_, sleep)) = &mut this.due {
                ready!(sleep.as_mut().poll(cx));
                let (slice, _) = this.due.take().expect("a due slice");
                this.activity.touch(std::time::Instant::now());
                return Poll::Ready(Some(Ok(http_body::Frame::data(slice))));
            }
            if !this.rest.is_empty() {
                let slice = this.rest.split_to(this.rest.len().min(PACE_SLICE));
                let wait = this.pace.charge(slice.len());
                let now = std::time::Instant::now();
                this.activity.touch(now + wait);
                if wait.is_zero() {
                    return Poll::Ready(Some(Ok(http_body::Frame::data(slice))));
                }
                this.due = Some((slice, Box::pin(tokio::time::sleep(wait))));
                continue;
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => this.rest = data,
                    Err(other) => return Poll::Ready(Some(Ok(other))),
                },
                end => return Poll::Ready(end),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.due.is_none() && self.rest.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let held = (self.rest.len() + self.due.as_ref().map_or(0, |(b, _)| b.len())) as u64;
        let inner = http_body::Body::size_hint(&self.inner);
        let mut hint = http_body::SizeHint::new();
        hint.set_lower(inner.lower() + held);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + held);
        }
        hint
    }
}

/// The request body; a paced one reports its movements to `activity` (given for paced bodies).
async fn byte_stream(
    operation: &'static str,
    body: Body,
    activity: Option<&Activity>,
) -> Result<ByteStream, StoreError> {
    match body {
        Body::Paced(inner, pace) => {
            let inner = Box::pin(byte_stream(operation, *inner, None))
                .await?
                .into_inner();
            Ok(ByteStream::new(SdkBody::from_body_1_x(PacedBody {
                inner,
                pace,
                activity: activity.cloned().unwrap_or_else(Activity::new),
                rest: Bytes::new(),
                due: None,
            })))
        }
        Body::Bytes(b) => Ok(ByteStream::from(b)),
        Body::Chunks(c) => Ok(ByteStream::new(SdkBody::from_body_1_x(ChunksBody {
            pieces: c,
            next: 0,
        }))),
        Body::File { len: 0, .. } => Ok(ByteStream::from_static(b"")),
        Body::File { path, offset, len } => ByteStream::read_from()
            .path(&path)
            .offset(offset)
            .length(Length::Exact(len))
            .buffer_size(FILE_READ_BUFFER)
            .build()
            .await
            .map_err(|e| StoreError::Body {
                operation,
                source: std::io::Error::other(e),
            }),
    }
}

fn crc32c(c: Option<&Checksum>) -> Option<String> {
    c.filter(|c| c.algorithm() == ChecksumAlgorithm::Crc32c)
        .map(Checksum::base64)
}

fn md5(c: Option<&Checksum>) -> Option<String> {
    c.filter(|c| c.algorithm() == ChecksumAlgorithm::Md5)
        .map(Checksum::base64)
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put(
        &self,
        key: &ObjectKey,
        body: Body,
        opts: &PutOptions,
    ) -> Result<PutResult, StoreError> {
        const OP: &str = "PutObject";
        let len = body.len();
        let activity = matches!(body, Body::Paced(..)).then(Activity::new);
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .body(byte_stream(OP, body, activity.as_ref()).await?)
            .content_length(i64::try_from(len).unwrap_or(i64::MAX))
            .set_content_type(opts.content_type.clone())
            .set_checksum_crc32_c(crc32c(opts.checksum.as_ref()))
            .set_content_md5(md5(opts.checksum.as_ref()))
            .set_storage_class(opts.storage_class.as_deref().map(Into::into))
            .set_server_side_encryption(opts.sse.as_deref().map(Into::into));
        if opts.if_none_match {
            req = req.if_none_match("*");
        }
        for (k, v) in &opts.metadata {
            req = req.metadata(k, v);
        }
        let mut req = req.customize().disable_payload_signing();
        if activity.is_some() {
            req = req.config_override(unpaced_timeouts());
        }
        let out = watched(activity.as_ref(), self.read_timeout, req.send())
            .await
            .ok_or(StoreError::Timeout { operation: OP })?
            .map_err(|e| convert(OP, e))?;
        Ok(PutResult { etag: out.e_tag })
    }

    async fn create_multipart(
        &self,
        key: &ObjectKey,
        opts: &PutOptions,
    ) -> Result<UploadId, StoreError> {
        const OP: &str = "CreateMultipartUpload";
        let mut req = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key.as_str())
            .set_content_type(opts.content_type.clone())
            .set_storage_class(opts.storage_class.as_deref().map(Into::into))
            .set_server_side_encryption(opts.sse.as_deref().map(Into::into));
        if opts.checksum_algorithm == Some(ChecksumAlgorithm::Crc32c) {
            req = req.checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Crc32C);
        }
        for (k, v) in &opts.metadata {
            req = req.metadata(k, v);
        }
        let out = match req.send().await {
            Ok(out) => out,
            // rclone serve s3 answers 200 with an `<InitiateMultipartUpload>` root element (not
            // `...Result`), which the SDK refuses; the UploadId inside is all we need.
            Err(SdkError::ServiceError(e)) if e.raw().status().as_u16() == 200 => {
                return e
                    .raw()
                    .body()
                    .bytes()
                    .and_then(|b| xml_text(b, "UploadId"))
                    .map(UploadId::new)
                    .ok_or(StoreError::Other {
                        operation: OP,
                        message: "unreadable CreateMultipartUpload response".into(),
                    });
            }
            Err(e) => return Err(convert(OP, e)),
        };
        out.upload_id.map(UploadId::new).ok_or(StoreError::Other {
            operation: OP,
            message: "the response has no UploadId".into(),
        })
    }

    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload_id: &UploadId,
        part_number: PartNumber,
        body: Body,
        checksum: Option<&Checksum>,
    ) -> Result<PartReceipt, StoreError> {
        const OP: &str = "UploadPart";
        let len = body.len();
        let activity = matches!(body, Body::Paced(..)).then(Activity::new);
        let mut req = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key.as_str())
            .upload_id(upload_id.as_str())
            .part_number(i32::from(part_number.0))
            .body(byte_stream(OP, body, activity.as_ref()).await?)
            .content_length(i64::try_from(len).unwrap_or(i64::MAX))
            .set_checksum_crc32_c(crc32c(checksum))
            .set_content_md5(md5(checksum))
            .customize()
            .disable_payload_signing();
        if activity.is_some() {
            req = req.config_override(unpaced_timeouts());
        }
        let out = watched(activity.as_ref(), self.read_timeout, req.send())
            .await
            .ok_or(StoreError::Timeout { operation: OP })?
            .map_err(|e| convert(OP, e))?;
        Ok(PartReceipt {
            part_number,
            etag: out.e_tag.ok_or(StoreError::Other {
                operation: OP,
                message: "the response has no ETag".into(),
            })?,
            checksum: checksum.cloned(),
        })
    }

    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload_id: &UploadId,
        parts: &[PartReceipt],
    ) -> Result<PutResult, StoreError> {
        const OP: &str = "CompleteMultipartUpload";
        let parts = parts
            .iter()
            .map(|p| {
                CompletedPart::builder()
                    .part_number(i32::from(p.part_number.0))
                    .e_tag(&p.etag)
                    .set_checksum_crc32_c(crc32c(p.checksum.as_ref()))
                    .build()
            })
            .collect();
        let out = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key.as_str())
            .upload_id(upload_id.as_str())
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| convert(OP, e))?;
        Ok(PutResult { etag: out.e_tag })
    }

    async fn abort_multipart(&self, key: &str, upload_id: &UploadId) -> Result<(), StoreError> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id.as_str())
            .send()
            .await
            .map_err(|e| convert("AbortMultipartUpload", e))?;
        Ok(())
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .send()
            .await
        {
            Ok(out) => Ok(Some(ObjectMeta {
                size: out.content_length.unwrap_or(0).max(0) as u64,
                etag: out.e_tag,
                content_type: out.content_type,
                metadata: out.metadata.unwrap_or_default().into_iter().collect(),
                checksum: out.checksum_crc32_c,
                last_modified: out.last_modified.and_then(|t| SystemTime::try_from(t).ok()),
            })),
            Err(e) => match convert("HeadObject", e) {
                e if e.status() == Some(404) => Ok(None),
                e => Err(e),
            },
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        const OP: &str = "GetObject";
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => {
                let data = out.body.collect().await.map_err(|e| StoreError::Network {
                    operation: OP,
                    source: Box::new(e),
                })?;
                Ok(Some(data.into_bytes()))
            }
            Err(e) => match convert(OP, e) {
                e if e.status() == Some(404) => Ok(None),
                e => Err(e),
            },
        }
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>, StoreError> {
        const OP: &str = "ListMultipartUploads";
        let mut out = Vec::new();
        let (mut key_marker, mut id_marker) = (None, None);
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(|e| convert(OP, e));
            let page = match page {
                Ok(p) => p,
                // rclone serve s3 answers NoSuchUpload for a bucket that never had an upload.
                Err(e) if e.kind() == Some(ServiceErrorKind::NoSuchUpload) => break,
                Err(e) => return Err(e),
            };
            for u in page.uploads.unwrap_or_default() {
                out.push(PendingUpload {
                    key: u.key.unwrap_or_default(),
                    upload_id: UploadId::new(u.upload_id.unwrap_or_default()),
                    initiated: u.initiated.and_then(|t| SystemTime::try_from(t).ok()),
                });
            }
            if page.is_truncated != Some(true) {
                break;
            }
            key_marker = page.next_key_marker;
            id_marker = page.next_upload_id_marker;
            if key_marker.is_none() && id_marker.is_none() {
                break;
            }
        }
        Ok(out)
    }

    async fn list_parts(
        &self,
        key: &str,
        upload_id: &UploadId,
    ) -> Result<Vec<ListedPart>, StoreError> {
        const OP: &str = "ListParts";
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id.as_str())
                .set_part_number_marker(marker.take())
                .send()
                .await
                .map_err(|e| convert(OP, e))?;
            for p in page.parts.unwrap_or_default() {
                // A part number outside S3's range is the server's error: not a part of ours.
                let Some(n) = p
                    .part_number
                    .and_then(|n| u64::try_from(n).ok())
                    .and_then(|n| PartNumber::new(n).ok())
                else {
                    continue;
                };
                out.push(ListedPart {
                    part_number: n,
                    size: p.size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                    etag: p.e_tag,
                    crc32c: p
                        .checksum_crc32_c
                        .and_then(|v| Checksum::from_base64(ChecksumAlgorithm::Crc32c, &v)),
                });
            }
            if page.is_truncated != Some(true) {
                break;
            }
            match page.next_part_number_marker {
                Some(m) if !m.is_empty() => marker = Some(m),
                _ => break,
            }
        }
        out.sort_by_key(|p| p.part_number);
        Ok(out)
    }

    async fn list_objects_page(
        &self,
        prefix: &str,
        after: Option<String>,
    ) -> Result<ListPage, StoreError> {
        const OP: &str = "ListObjectsV2";
        let page = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_continuation_token(after)
            .send()
            .await
            .map_err(|e| convert(OP, e))?;
        let objects = page
            .contents
            .unwrap_or_default()
            .into_iter()
            .filter_map(|o| {
                Some(ListedObject {
                    key: o.key?,
                    size: o.size.unwrap_or(0).max(0) as u64,
                    etag: o.e_tag,
                    last_modified: o.last_modified.and_then(|t| SystemTime::try_from(t).ok()),
                    checksum_algorithms: o
                        .checksum_algorithm
                        .unwrap_or_default()
                        .iter()
                        .map(|a| a.as_str().to_owned())
                        .collect(),
                    checksum_type: o.checksum_type.map(|t| t.as_str().to_owned()),
                })
            })
            .collect();
        let next = match page.is_truncated {
            Some(true) => page.next_continuation_token,
            _ => None,
        };
        Ok(ListPage { objects, next })
    }

    fn location(&self) -> Option<String> {
        Some(self.location.clone())
    }

    async fn delete_object(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| convert("DeleteObject", e))?;
        Ok(())
    }
}

/// The text of the first `<tag>...</tag>` in an XML document (no entities expected: upload ids
/// are URL-safe).
fn xml_text(doc: &[u8], tag: &str) -> Option<String> {
    let doc = std::str::from_utf8(doc).ok()?;
    let open = format!("<{tag}>");
    let start = doc.find(&open)? + open.len();
    let end = start + doc[start..].find(&format!("</{tag}>"))?;
    let text = doc[start..end].trim();
    (!text.is_empty()).then(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_upload_id_parsing() {
        let rclone = b"<?xml version=\"1.0\"?><InitiateMultipartUpload><Bucket>b</Bucket><Key>k</Key><UploadId>abc-123</UploadId></InitiateMultipartUpload>";
        assert_eq!(xml_text(rclone, "UploadId").as_deref(), Some("abc-123"));
        assert_eq!(xml_text(b"<UploadId></UploadId>", "UploadId"), None);
        assert_eq!(xml_text(b"<Error/>", "UploadId"), None);
    }

    fn cfg(endpoint: &str, allow_http: bool) -> S3Config {
        S3Config {
            bucket: "b".into(),
            endpoint_url: Some(endpoint.into()),
            allow_http,
            ..S3Config::default()
        }
    }

    #[test]
    fn plain_http_only_to_loopback_unless_allowed() {
        assert_eq!(cfg("http://127.0.0.1:9000", false).check_endpoint(), Ok(()));
        assert_eq!(cfg("http://localhost:9000", false).check_endpoint(), Ok(()));
        assert_eq!(cfg("http://[::1]:9000", false).check_endpoint(), Ok(()));
        assert_eq!(
            cfg("https://s3.example.com", false).check_endpoint(),
            Ok(())
        );
        let e = cfg("http://10.0.0.5:9000", false)
            .check_endpoint()
            .unwrap_err();
        assert!(matches!(e, EndpointError::InsecureHttp(_)));
        assert!(e.to_string().contains("--allow-http"), "{e}");
        assert_eq!(cfg("http://10.0.0.5:9000", true).check_endpoint(), Ok(()));
        assert!(matches!(
            cfg("ftp://x", false).check_endpoint(),
            Err(EndpointError::InvalidUrl(_))
        ));
        let mut c = cfg("https://x", false);
        c.bucket = "Bad_Bucket".into();
        assert!(matches!(
            c.check_endpoint(),
            Err(EndpointError::InvalidBucket(_))
        ));
    }
}

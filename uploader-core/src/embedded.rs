//! An embedded S3-compatible endpoint: `s3s` + `s3s-fs` over a local directory, served in-process
//! on 127.0.0.1. It powers the zero-setup quickstart (`--embedded-s3 DIR`) and hermetic
//! integration tests that go through the real aws-sdk-s3 + HTTP path.
//!
//! Kept behind this module so the server can be swapped. On top of `s3s-fs` 0.14.1 it adds
//! what the uploader relies on and that version lacks:
//! * `UploadPart` verifies the part's `x-amz-checksum-crc32c` / `Content-MD5` (s3s-fs does not),
//!   and `PutObject` verifies them *before* the object is written: s3s-fs checks only after the
//!   new file has replaced the old one, so a corrupt body would destroy a good object;
//! * `ListMultipartUploads` (not implemented by s3s-fs), read from s3s-fs's own upload files so
//!   it survives restarts;
//! * `NoSuchUpload` for unknown upload ids (s3s-fs answers `AccessDenied`);
//! * `ListParts` with each part's ETag and CRC32C (s3s-fs lists sizes only), for resume.
//!
//! Credentials are random per start: nothing is hard-coded.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use base64::Engine as _;
use futures::StreamExt as _;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use rand::Rng as _;
use s3s::auth::SimpleAuth;
use s3s::dto::*;
use s3s::service::S3ServiceBuilder;
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};
use s3s_fs::FileSystem;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::checksum::{Checksum, ChecksumAlgorithm, Hasher};
use crate::store::{S3Config, StaticCredentials};

/// The endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmbeddedError {
    /// The data directory could not be created.
    #[error("cannot prepare the data directory {path}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// s3s-fs refused the data directory.
    #[error("cannot open the data directory {path}: {message}")]
    Open {
        /// The directory.
        path: PathBuf,
        /// What s3s-fs said.
        message: String,
    },
    /// No port on 127.0.0.1.
    #[error("cannot listen on 127.0.0.1")]
    Listen(#[source] std::io::Error),
    /// Not a valid S3 bucket name.
    #[error("invalid bucket name {0:?}: use 3-63 lowercase letters, digits, '-' or '.'")]
    Bucket(String),
}

/// A running embedded endpoint. Dropping it stops the server.
#[derive(Debug)]
pub struct EmbeddedS3 {
    addr: SocketAddr,
    bucket: String,
    credentials: StaticCredentials,
    root: PathBuf,
    stop: CancellationToken,
}

impl EmbeddedS3 {
    /// Serves `root` on 127.0.0.1 (a free port), creating `root` and the bucket `bucket` (a
    /// directory under `root`) when missing. Must be called within a Tokio runtime.
    pub async fn start(root: impl AsRef<Path>, bucket: &str) -> Result<EmbeddedS3, EmbeddedError> {
        EmbeddedS3::start_on(root, bucket, "127.0.0.1:0".parse().expect("valid")).await
    }

    /// Like [`EmbeddedS3::start`], on a given loopback address.
    pub async fn start_on(
        root: impl AsRef<Path>,
        bucket: &str,
        addr: SocketAddr,
    ) -> Result<EmbeddedS3, EmbeddedError> {
        if bucket.len() < 3
            || bucket.len() > 63
            || bucket.starts_with(['.', '-'])
            || !bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            || bucket.contains("..")
        {
            return Err(EmbeddedError::Bucket(bucket.to_owned()));
        }
        let root = root.as_ref().to_owned();
        let dir_err = |source| EmbeddedError::Dir {
            path: root.clone(),
            source,
        };
        std::fs::create_dir_all(root.join(bucket)).map_err(dir_err)?;
        let root = std::fs::canonicalize(&root).map_err(dir_err)?;
        let fs = FileSystem::new(&root).map_err(|e| EmbeddedError::Open {
            path: root.clone(),
            message: format!("{e:?}"),
        })?;

        let credentials = StaticCredentials {
            access_key_id: random_token(20),
            secret_access_key: random_token(40),
        };
        let mut builder = S3ServiceBuilder::new(Verifying {
            fs: Arc::new(fs),
            root: root.clone(),
        });
        builder.set_auth(SimpleAuth::from_single(
            credentials.access_key_id.clone(),
            credentials.secret_access_key.clone(),
        ));
        let service = builder.build();

        let listener = TcpListener::bind(addr)
            .await
            .map_err(EmbeddedError::Listen)?;
        let addr = listener.local_addr().map_err(EmbeddedError::Listen)?;
        let stop = CancellationToken::new();
        tokio::spawn(serve(listener, service, stop.clone()));
        tracing::info!(%addr, root = %root.display(), bucket, "embedded S3 endpoint running");
        Ok(EmbeddedS3 {
            addr,
            bucket: bucket.to_owned(),
            credentials,
            root,
            stop,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bucket created at start.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The data directory (objects live at `<root>/<bucket>/<key>`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The credentials this endpoint accepts.
    pub fn credentials(&self) -> &StaticCredentials {
        &self.credentials
    }

    /// A store configuration that targets this endpoint.
    pub fn s3_config(&self) -> S3Config {
        S3Config {
            bucket: self.bucket.clone(),
            region: Some("us-east-1".into()),
            endpoint_url: Some(self.endpoint_url()),
            force_path_style: Some(true),
            credentials: Some(self.credentials.clone()),
            ..S3Config::default()
        }
    }

    /// Stops accepting connections and closes the open ones.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for EmbeddedS3 {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Accepts connections on `listener` and serves `service` on each until `stop`.
async fn serve(listener: TcpListener, service: s3s::service::S3Service, stop: CancellationToken) {
    let http = Arc::new(ConnBuilder::new(TokioExecutor::new()));
    loop {
        let socket = tokio::select! {
            () = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "embedded S3: accept failed");
                    continue;
                }
            },
        };
        let _ = socket.set_nodelay(true);
        let (http, service, stop) = (Arc::clone(&http), service.clone(), stop.clone());
        tokio::spawn(async move {
            let conn = http.serve_connection(TokioIo::new(socket), service);
            tokio::select! {
                _ = conn => {}
                () = stop.cancelled() => {}
            }
        });
    }
}

/// s3s-fs plus the additions listed in the module docs.
struct Verifying {
    /// Shared so that a CompleteMultipartUpload can run in a task of its own.
    fs: Arc<FileSystem>,
    root: PathBuf,
}

impl std::fmt::Debug for Verifying {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifying")
            .field("root", &self.root)
            .finish()
    }
}

impl Verifying {
    /// Whether s3s-fs knows `upload_id` (its `.upload-<id>.json` file exists).
    fn upload_exists(&self, upload_id: &str) -> bool {
        upload_id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b'-')
            && self.root.join(format!(".upload-{upload_id}.json")).exists()
    }

    fn require_upload(&self, upload_id: &str) -> S3Result<()> {
        if self.upload_exists(upload_id) {
            Ok(())
        } else {
            Err(s3_error!(NoSuchUpload))
        }
    }

    /// Pending uploads: s3s-fs keeps `.bucket-<b64>.object-<b64>.upload-<id>.metadata.json` for
    /// every upload until it is completed or aborted.
    fn pending_uploads(&self, bucket: &str, prefix: &str) -> Vec<(String, String, SystemTime)> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir(&self.root) else {
            return out;
        };
        for entry in rd.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(rest) = name
                .strip_prefix(".bucket-")
                .and_then(|r| r.strip_suffix(".metadata.json"))
            else {
                continue;
            };
            let Some((b, rest)) = rest.split_once(".object-") else {
                continue;
            };
            let Some((k, id)) = rest.split_once(".upload-") else {
                continue;
            };
            let decode = |s: &str| b64.decode(s).ok().and_then(|v| String::from_utf8(v).ok());
            let (Some(b), Some(k)) = (decode(b), decode(k)) else {
                continue;
            };
            if b == bucket && k.starts_with(prefix) && self.upload_exists(id) {
                let t = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                out.push((k, id.to_owned(), t));
            }
        }
        out.sort();
        out
    }
}

/// Whether a verified body matched its checksum: `None` until the body has ended.
type Verdict = Arc<Mutex<Option<bool>>>;

/// When a request declares a checksum (`x-amz-checksum-crc32c`, else `Content-MD5`), wraps its
/// body so that it is verified while it streams (see [`verified_body`]); `None` when it declares
/// none.
fn verify_body(
    body: &mut Option<StreamingBlob>,
    crc32c: Option<&String>,
    md5: Option<&String>,
) -> S3Result<Option<Verdict>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let (alg, value) = match (crc32c, md5) {
        (Some(c), _) => (ChecksumAlgorithm::Crc32c, c),
        (None, Some(m)) => (ChecksumAlgorithm::Md5, m),
        (None, None) => return Ok(None),
    };
    let expected = b64
        .decode(value.as_bytes())
        .map_err(|_| s3_error!(InvalidDigest, "the checksum is not valid base64"))?;
    let blob = body.take().ok_or_else(|| s3_error!(IncompleteBody))?;
    let (blob, verdict) = verified_body(blob, alg, expected);
    *body = Some(blob);
    Ok(Some(verdict))
}

/// Wraps a body so that it fails at its end unless it matches `expected`: the server then
/// never renames the temporary file into place, so a corrupt body cannot replace a good object
/// (s3s-fs 0.14.1 checks checksums only after the rename).
fn verified_body(
    body: StreamingBlob,
    alg: ChecksumAlgorithm,
    expected: Vec<u8>,
) -> (StreamingBlob, Verdict) {
    let verdict: Verdict = Arc::new(Mutex::new(None));
    let stream = VerifyingStream {
        inner: body,
        hasher: Some(Hasher::new(alg)),
        expected,
        verdict: Arc::clone(&verdict),
    };
    (StreamingBlob::new(stream), verdict)
}

struct VerifyingStream {
    inner: StreamingBlob,
    hasher: Option<Hasher>,
    expected: Vec<u8>,
    verdict: Verdict,
}

impl futures::Stream for VerifyingStream {
    type Item = Result<bytes::Bytes, s3s::StdError>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let polled = self.inner.poll_next_unpin(cx);
        match polled {
            Poll::Ready(Some(Ok(ref b))) => {
                if let Some(h) = self.hasher.as_mut() {
                    h.update(b);
                }
                polled
            }
            Poll::Ready(None) => {
                let Some(h) = self.hasher.take() else {
                    return Poll::Ready(None);
                };
                let ok = h.finish().raw() == self.expected.as_slice();
                *self.verdict.lock().unwrap() = Some(ok);
                if ok {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Err("the body does not match its checksum".into())))
                }
            }
            other => other,
        }
    }
}

impl s3s::stream::ByteStream for VerifyingStream {
    fn remaining_length(&self) -> s3s::stream::RemainingLength {
        s3s::stream::ByteStream::remaining_length(&self.inner)
    }
}

/// Maps a failed write whose body did not match its checksum to `BadDigest`.
fn bad_digest_if_mismatch<T>(result: S3Result<T>, verdict: Option<&Verdict>) -> S3Result<T> {
    match (result, verdict.and_then(|v| *v.lock().unwrap())) {
        (_, Some(false)) => Err(s3_error!(BadDigest, "the body does not match its checksum")),
        (r, _) => r,
    }
}

#[async_trait]
impl S3 for Verifying {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        self.fs.create_bucket(req).await
    }
    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.fs.head_bucket(req).await
    }
    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        self.fs.list_buckets(req).await
    }
    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.fs.get_bucket_location(req).await
    }
    async fn put_object(
        &self,
        mut req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let i = &mut req.input;
        let verdict = verify_body(
            &mut i.body,
            i.checksum_crc32c.as_ref(),
            i.content_md5.as_ref(),
        )?;
        bad_digest_if_mismatch(self.fs.put_object(req).await, verdict.as_ref())
    }
    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        self.fs.get_object(req).await
    }
    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        self.fs.head_object(req).await
    }
    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.fs.delete_object(req).await
    }
    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        self.fs.delete_objects(req).await
    }
    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        self.fs.list_objects(req).await
    }
    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.fs.list_objects_v2(req).await
    }
    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        self.fs.create_multipart_upload(req).await
    }
    async fn upload_part(
        &self,
        mut req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        self.require_upload(&req.input.upload_id)?;
        let i = &mut req.input;
        let verdict = verify_body(
            &mut i.body,
            i.checksum_crc32c.as_ref(),
            i.content_md5.as_ref(),
        )?;
        bad_digest_if_mismatch(self.fs.upload_part(req).await, verdict.as_ref())
    }
    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        self.require_upload(&req.input.upload_id)?;
        let id = req.input.upload_id.clone();
        let mut resp = self.fs.list_parts(req).await?;
        // s3s-fs lists sizes only: the ETag (MD5) and CRC32C of each part are computed from
        // the part file the endpoint holds, as S3 reports what it stores.
        let root = self.root.clone();
        let mut parts = resp.output.parts.take().unwrap_or_default();
        let parts = tokio::task::spawn_blocking(move || {
            for p in &mut parts {
                let Some(n) = p.part_number else { continue };
                let Ok(data) = std::fs::read(root.join(format!(".upload_id-{id}.part-{n}"))) else {
                    continue;
                };
                let md5 = Checksum::of_bytes(ChecksumAlgorithm::Md5, &data);
                p.e_tag = Some(ETag::Strong(hex::encode(md5.raw())));
                let crc = Checksum::of_bytes(ChecksumAlgorithm::Crc32c, &data);
                p.checksum_crc32c = Some(crc.base64());
            }
            parts.sort_by_key(|p| p.part_number);
            parts
        })
        .await
        .map_err(|e| s3_error!(InternalError, "listing the parts failed: {e}"))?;
        resp.output.parts = Some(parts);
        Ok(resp)
    }
    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        self.require_upload(&req.input.upload_id)?;
        // s3s-fs deletes the upload before it assembles the object: a handler dropped in
        // between (its client went away, e.g. after a read timeout) would lose both. Run it in
        // a task of its own so that it always finishes; the retried request then finds the
        // object (see the lost-Complete evidence in uploader-core's transfer).
        let fs = Arc::clone(&self.fs);
        match tokio::spawn(async move { fs.complete_multipart_upload(req).await }).await {
            Ok(result) => result,
            Err(e) => Err(s3_error!(
                InternalError,
                "completing the upload failed: {e}"
            )),
        }
    }
    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.require_upload(&req.input.upload_id)?;
        self.fs.abort_multipart_upload(req).await
    }
    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        let uploads = self
            .pending_uploads(&input.bucket, &prefix)
            .into_iter()
            .map(|(key, id, t)| MultipartUpload {
                key: Some(key),
                upload_id: Some(id),
                initiated: Some(Timestamp::from(t)),
                ..MultipartUpload::default()
            })
            .collect();
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: input.prefix,
            is_truncated: Some(false),
            uploads: Some(uploads),
            ..ListMultipartUploadsOutput::default()
        }))
    }
}

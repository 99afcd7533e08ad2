//! Fail-fast validation of the S3 set-up, run by the CLI before the first byte and by the
//! daemon at start-up: resolve credentials (with a timeout), check the bucket, and optionally
//! prove that writes are allowed. Every failure is a distinct, actionable [`CheckError`];
//! credentials are never printed or logged.

use std::time::{Duration, Instant};

use aws_credential_types::provider::ProvideCredentials as _;
use aws_credential_types::provider::error::CredentialsError;

use crate::checksum::{Checksum, ChecksumAlgorithm};
use crate::key::{KeyPrefix, ObjectKey};
use crate::store::{
    Body, ObjectStore, PartNumber, PutOptions, S3Store, ServiceErrorKind, StoreError,
};

/// How long credential resolution may take.
pub const CREDENTIALS_TIMEOUT: Duration = Duration::from_secs(5);

/// What was checked, for display.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CheckReport {
    /// Where the credentials came from (provider name, never the values).
    pub credentials_source: String,
    /// The bucket checked.
    pub bucket: String,
    /// Whether a write was probed (multipart create + abort under the prefix).
    pub write_probe: bool,
    /// Time the checks took.
    #[serde(skip)]
    pub elapsed: Duration,
}

/// Why the set-up cannot work. Each variant says what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// No credential provider found credentials.
    #[error(
        "no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or \
         configure ~/.aws/credentials ({detail})"
    )]
    NoCredentials {
        /// What the provider chain said.
        detail: String,
    },
    /// The provider chain did not answer in time.
    #[error("resolving credentials took longer than {0:?}; check the profile and network")]
    CredentialsTimeout(Duration),
    /// The endpoint refused the credentials.
    #[error(
        "the credentials were rejected by the endpoint ({code}): check the access key and secret"
    )]
    CredentialsRejected {
        /// The service's error code.
        code: String,
    },
    /// The bucket does not exist.
    #[error("bucket {bucket:?} does not exist at this endpoint; create it or fix the name")]
    BucketMissing {
        /// The bucket.
        bucket: String,
    },
    /// The credentials are valid but not allowed to list or write.
    #[error(
        "access denied to bucket {bucket:?} ({operation}): the credentials lack permission \
         (s3:ListBucket for the check, s3:PutObject for uploads)"
    )]
    AccessDenied {
        /// The bucket.
        bucket: String,
        /// The S3 operation refused.
        operation: &'static str,
    },
    /// No answer from the endpoint.
    #[error("the endpoint cannot be reached: {detail}; check --endpoint-url and the network")]
    EndpointUnreachable {
        /// What the transport said.
        detail: String,
    },
    /// Any other failure.
    #[error("the check failed: {0}")]
    Other(String),
}

fn classify(bucket: &str, e: StoreError) -> CheckError {
    let operation = e.operation();
    match &e {
        StoreError::Timeout { .. } | StoreError::Network { .. } => {
            CheckError::EndpointUnreachable {
                detail: crate::error::error_chain(&e),
            }
        }
        StoreError::Service {
            kind, code, status, ..
        } => match kind {
            ServiceErrorKind::CredentialsRejected => {
                CheckError::CredentialsRejected { code: code.clone() }
            }
            ServiceErrorKind::NoSuchBucket => CheckError::BucketMissing {
                bucket: bucket.to_owned(),
            },
            ServiceErrorKind::AccessDenied => CheckError::AccessDenied {
                bucket: bucket.to_owned(),
                operation,
            },
            _ if *status == 404 => CheckError::BucketMissing {
                bucket: bucket.to_owned(),
            },
            _ => CheckError::Other(crate::error::error_chain(&e)),
        },
        _ => CheckError::Other(crate::error::error_chain(&e)),
    }
}

/// Runs the checks against `store`. With `probe`, also creates and aborts a multipart upload
/// under `prefix`, which needs write permission and leaves nothing behind.
pub async fn check(
    store: &S3Store,
    prefix: &KeyPrefix,
    probe: bool,
) -> Result<CheckReport, CheckError> {
    let started = Instant::now();
    let bucket = store.bucket().to_owned();
    let provider = store
        .credentials_provider()
        .ok_or_else(|| CheckError::NoCredentials {
            detail: "no credential provider is configured".into(),
        })?;
    let _creds = tokio::time::timeout(CREDENTIALS_TIMEOUT, provider.provide_credentials())
        .await
        .map_err(|_| CheckError::CredentialsTimeout(CREDENTIALS_TIMEOUT))?
        .map_err(|e| match e {
            CredentialsError::ProviderTimedOut(_) => {
                CheckError::CredentialsTimeout(CREDENTIALS_TIMEOUT)
            }
            other => CheckError::NoCredentials {
                detail: crate::error::error_chain(&other),
            },
        })?;

    // HeadBucket answers without a body, so a 403 cannot tell bad credentials from missing
    // permissions; a one-key listing can, from its error code.
    let head = store.client().head_bucket().bucket(&bucket).send().await;
    if let Err(e) = head {
        let e = crate::store::s3::convert("HeadBucket", e);
        if e.status() != Some(403) {
            return Err(classify(&bucket, e));
        }
        let list = store
            .client()
            .list_objects_v2()
            .bucket(&bucket)
            .max_keys(1)
            .send()
            .await;
        return Err(match list {
            Err(e) => classify(&bucket, crate::store::s3::convert("ListObjectsV2", e)),
            Ok(_) => CheckError::AccessDenied {
                bucket,
                operation: "HeadBucket",
            },
        });
    }
    if probe {
        let key = ObjectKey::derive(prefix, ".uploader-write-probe")
            .map_err(|e| CheckError::Other(e.to_string()))?;
        let id = store
            .create_multipart(&key, &PutOptions::default())
            .await
            .map_err(|e| classify(&bucket, e))?;
        store
            .abort_multipart(key.as_str(), &id)
            .await
            .map_err(|e| classify(&bucket, e))?;
    }
    Ok(CheckReport {
        credentials_source: store.credentials_source().to_owned(),
        bucket,
        write_probe: probe,
        elapsed: started.elapsed(),
    })
}

/// Which checksum the endpoint verifies, found by experiment: a multipart upload is created
/// under `prefix`, a part is sent with a deliberately wrong CRC32C and, if that is accepted, one
/// with a wrong `Content-MD5`; then the upload is aborted. The first algorithm the server refuses
/// is the one it verifies. A server that verifies neither on parts gets CRC32C, the cheapest
/// (some, like s3s-fs, still verify it on single PUTs). Nothing is left behind; costs at most four
/// small requests.
pub async fn detect_checksum(
    store: &dyn ObjectStore,
    prefix: &KeyPrefix,
) -> Result<ChecksumAlgorithm, StoreError> {
    let key =
        ObjectKey::derive(prefix, ".uploader-checksum-probe").map_err(|e| StoreError::Other {
            operation: "CreateMultipartUpload",
            message: e.to_string(),
        })?;
    let opts = PutOptions {
        checksum_algorithm: Some(ChecksumAlgorithm::Crc32c),
        ..PutOptions::default()
    };
    let id = store.create_multipart(&key, &opts).await?;
    let mut chosen = ChecksumAlgorithm::Crc32c;
    let second = PartNumber::FIRST.next().expect("part 2 exists");
    for (n, alg) in [
        (PartNumber::FIRST, ChecksumAlgorithm::Crc32c),
        (second, ChecksumAlgorithm::Md5),
    ] {
        let wrong = Checksum::of_bytes(alg, b"not the body");
        let body = Body::Bytes(bytes::Bytes::from_static(b"probe"));
        match store.upload_part(&key, &id, n, body, Some(&wrong)).await {
            Err(e) if e.kind() == Some(ServiceErrorKind::BadDigest) => {
                chosen = alg;
                break;
            }
            _ => {}
        }
    }
    match store.abort_multipart(key.as_str(), &id).await {
        Ok(()) => {}
        Err(e) if e.kind() == Some(ServiceErrorKind::NoSuchUpload) => {}
        Err(e) => return Err(e),
    }
    Ok(chosen)
}

//! A custom [`ObjectStore`]: a wrapper that logs every request of the uploader and how long it
//! took, delegating to an inner store. Throttling, metrics or fault injection are written the
//! same way; the uploader only ever sees an `Arc<dyn ObjectStore>`.
//!
//! Runs against the embedded S3 endpoint in a temporary directory, so no AWS account is needed:
//!
//! ```sh
//! cargo run -p uploader-core --example logging_store --features embedded
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use uploader_core::store::{ObjectMeta, PartReceipt, PutOptions, PutResult};
use uploader_core::{
    Body, Checksum, EmbeddedS3, KeyPrefix, ObjectKey, ObjectStore, PartNumber, PendingUpload,
    S3Store, StoreError, UploadId, UploadItem, Uploader,
};

/// Logs each request, its outcome and its duration to stderr.
#[derive(Debug)]
struct LoggingStore {
    inner: Arc<dyn ObjectStore>,
}

impl LoggingStore {
    async fn logged<T>(
        &self,
        what: String,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = call.await;
        let status = match &result {
            Ok(_) => "ok".to_owned(),
            Err(e) => format!("error: {e}"),
        };
        eprintln!("  {what}: {status} in {:?}", started.elapsed());
        result
    }
}

#[async_trait]
impl ObjectStore for LoggingStore {
    async fn put(
        &self,
        key: &ObjectKey,
        body: Body,
        opts: &PutOptions,
    ) -> Result<PutResult, StoreError> {
        let what = format!("PUT {key} ({} bytes)", body.len());
        self.logged(what, self.inner.put(key, body, opts)).await
    }

    async fn create_multipart(
        &self,
        key: &ObjectKey,
        opts: &PutOptions,
    ) -> Result<UploadId, StoreError> {
        let what = format!("CreateMultipartUpload {key}");
        self.logged(what, self.inner.create_multipart(key, opts))
            .await
    }

    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload_id: &UploadId,
        part_number: PartNumber,
        body: Body,
        checksum: Option<&Checksum>,
    ) -> Result<PartReceipt, StoreError> {
        let what = format!("UploadPart {key} #{part_number} ({} bytes)", body.len());
        let call = self
            .inner
            .upload_part(key, upload_id, part_number, body, checksum);
        self.logged(what, call).await
    }

    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload_id: &UploadId,
        parts: &[PartReceipt],
    ) -> Result<PutResult, StoreError> {
        let what = format!("CompleteMultipartUpload {key} ({} parts)", parts.len());
        let call = self.inner.complete_multipart(key, upload_id, parts);
        self.logged(what, call).await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &UploadId) -> Result<(), StoreError> {
        let what = format!("AbortMultipartUpload {key}");
        self.logged(what, self.inner.abort_multipart(key, upload_id))
            .await
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        self.logged(format!("HEAD {key}"), self.inner.head(key))
            .await
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        self.logged(format!("GET {key}"), self.inner.get(key)).await
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>, StoreError> {
        let what = format!("ListMultipartUploads {prefix:?}");
        self.logged(what, self.inner.list_multipart_uploads(prefix))
            .await
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let data = tempfile::tempdir()?;
    let s3 = EmbeddedS3::start(data.path(), "demo").await?;
    let inner = Arc::new(S3Store::connect(&s3.s3_config()).await?);
    let store = Arc::new(LoggingStore { inner });

    // With no-clobber, each file is looked at (HEAD) before it is sent.
    let uploader = Uploader::builder()
        .with_store(store.clone())
        .with_no_clobber(true)
        .build()?;

    let src = tempfile::tempdir()?;
    let small = src.path().join("hello.txt");
    std::fs::write(&small, "hello, world\n")?;
    let large = src.path().join("large.txt");
    std::fs::write(&large, "0123456789abcdef\n".repeat(1_200_000))?; // 20 MiB: multipart
    let prefix = KeyPrefix::new("logged/")?;
    let items = vec![
        UploadItem {
            path: small,
            key: ObjectKey::derive(&prefix, "hello.txt")?,
        },
        UploadItem {
            path: large,
            key: ObjectKey::derive(&prefix, "large.txt")?,
        },
    ];

    println!("first upload:");
    let report = uploader.upload_files(items.clone()).wait().await;
    println!("  → {:?}", report.summary());
    // The keys exist now: no-clobber skips both, after one HEAD each.
    println!("second upload (no-clobber):");
    let report = uploader.upload_files(items).wait().await;
    println!("  → {:?}", report.summary());

    // The wrapper is an ordinary store: read an object back through it.
    let hello = store.get("logged/hello.txt").await?.unwrap_or_default();
    println!(
        "logged/hello.txt holds {:?}",
        String::from_utf8_lossy(&hello)
    );
    Ok(())
}

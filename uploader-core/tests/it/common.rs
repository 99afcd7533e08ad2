use std::path::{Path, PathBuf};
use std::sync::Arc;

use uploader_core::{EmbeddedS3, ObjectStore, S3Store};

pub use uploader_core::testing::pseudo_random as data;

/// Writes `len` pseudo-random bytes to `dir/name` and returns the path.
pub fn file(dir: &Path, name: &str, len: usize, seed: u64) -> PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&p, data(len, seed)).unwrap();
    p
}

/// An embedded S3 endpoint over a temporary directory, and a store connected to it.
pub struct Embedded {
    pub _server: EmbeddedS3,
    pub store: Arc<S3Store>,
    _dir: tempfile::TempDir,
}

impl Embedded {
    pub async fn start() -> Embedded {
        let dir = tempfile::tempdir().unwrap();
        let server = EmbeddedS3::start(dir.path(), "test-bucket").await.unwrap();
        let store = Arc::new(S3Store::connect(&server.s3_config()).await.unwrap());
        Embedded {
            _server: server,
            store,
            _dir: dir,
        }
    }

    pub fn dyn_store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }
}

pub const MIB: usize = 1024 * 1024;

impl Embedded {
    /// Reads an object back (panics when missing).
    pub async fn store_get(&self, key: &str) -> Vec<u8> {
        self.store
            .get(key)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("object {key} is missing"))
            .to_vec()
    }
}

/// Convenience on stores in tests.
#[allow(async_fn_in_trait)]
pub trait ListAll {
    async fn list_multipart_uploads_all(&self) -> Vec<uploader_core::PendingUpload>;
}

impl<T: ObjectStore + ?Sized> ListAll for T {
    async fn list_multipart_uploads_all(&self) -> Vec<uploader_core::PendingUpload> {
        self.list_multipart_uploads("").await.unwrap()
    }
}

/// The default allowlist plus `application/octet-stream` (what random test data sniffs as).
pub fn binary_ok() -> uploader_core::MimePolicy {
    uploader_core::MimePolicy::new(&["application/octet-stream".into()], &[]).unwrap()
}

/// Writes bytes to `dir/name`, creating parent directories.
pub fn write_bytes(dir: &Path, name: &str, bytes: &[u8]) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

/// Waits (up to 10 s) until the endpoint has no pending multipart upload.
pub async fn until_no_pending(e: &Embedded) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !e.store.list_multipart_uploads_all().await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the upload was never aborted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The endpoint with parts that take 300 ms, so an upload is surely open when a test acts.
pub fn slow_parts(e: &Embedded) -> Arc<uploader_core::store::FaultyStore> {
    use uploader_core::store::{Fault, FaultRule, FaultyStore, Operation};
    Arc::new(FaultyStore::new(
        e.dyn_store(),
        vec![FaultRule::always(
            Operation::UploadPart,
            Fault::Delay(std::time::Duration::from_millis(300)),
        )],
    ))
}

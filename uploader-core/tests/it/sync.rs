//! The library's sync (`UploadConfig::skip_existing`, `Uploader::sync_sources`) on the
//! in-memory store: fast checks of the decisions the e2e tests make against real servers, and
//! of what happens when the destination cannot be listed.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use uploader_core::store::{Body, ObjectMeta, PartReceipt, PutOptions, PutResult};
use uploader_core::{
    Checksum, DeleteOutcome, FileOutcome, KeyPrefix, MemoryStore, ObjectKey, ObjectStore,
    PartNumber, PendingUpload, Report, SkipMode, Source, StoreError, UploadConfig, UploadId,
    Uploader, WalkOptions,
};

use crate::common::{binary_ok, write_bytes};

/// A store that forwards everything but listing (which it refuses, as a store that cannot list).
#[derive(Debug)]
struct NoListing(Arc<MemoryStore>);

#[async_trait]
impl ObjectStore for NoListing {
    async fn put(&self, k: &ObjectKey, b: Body, o: &PutOptions) -> Result<PutResult, StoreError> {
        self.0.put(k, b, o).await
    }
    async fn create_multipart(
        &self,
        k: &ObjectKey,
        o: &PutOptions,
    ) -> Result<UploadId, StoreError> {
        self.0.create_multipart(k, o).await
    }
    async fn upload_part(
        &self,
        k: &ObjectKey,
        id: &UploadId,
        n: PartNumber,
        b: Body,
        c: Option<&Checksum>,
    ) -> Result<PartReceipt, StoreError> {
        self.0.upload_part(k, id, n, b, c).await
    }
    async fn complete_multipart(
        &self,
        k: &ObjectKey,
        id: &UploadId,
        p: &[PartReceipt],
    ) -> Result<PutResult, StoreError> {
        self.0.complete_multipart(k, id, p).await
    }
    async fn abort_multipart(&self, k: &str, id: &UploadId) -> Result<(), StoreError> {
        self.0.abort_multipart(k, id).await
    }
    async fn head(&self, k: &str) -> Result<Option<ObjectMeta>, StoreError> {
        self.0.head(k).await
    }
    async fn get(&self, k: &str) -> Result<Option<Bytes>, StoreError> {
        self.0.get(k).await
    }
    async fn list_multipart_uploads(&self, p: &str) -> Result<Vec<PendingUpload>, StoreError> {
        self.0.list_multipart_uploads(p).await
    }
    async fn delete_object(&self, k: &str) -> Result<(), StoreError> {
        self.0.delete_object(k).await
    }
}

async fn sync(
    store: Arc<dyn ObjectStore>,
    cache: &std::path::Path,
    src: &std::path::Path,
    delete: bool,
) -> Report {
    let uploader = Uploader::builder()
        .with_store(store)
        .with_config(UploadConfig {
            skip_existing: Some(SkipMode::Checksum),
            checksum_cache: Some(cache.to_owned()),
            mime: binary_ok(),
            ..UploadConfig::default()
        })
        .build()
        .unwrap();
    let prefix = KeyPrefix::new("s").unwrap();
    let sources = vec![Source::Path(src.to_owned())];
    uploader
        .sync_sources(sources, &prefix, WalkOptions::default(), delete)
        .wait()
        .await
}

fn reasons(r: &Report) -> Vec<String> {
    r.files
        .iter()
        .map(|f| match &f.outcome {
            FileOutcome::Skipped { reason } => reason.clone(),
            other => format!("{other:?}")
                .split_whitespace()
                .next()
                .unwrap()
                .to_owned(),
        })
        .collect()
}

#[tokio::test]
async fn a_rerun_skips_by_checksum_reads_nothing_and_deletes_orphans() {
    let store = Arc::new(MemoryStore::new());
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let cache = dir.path().join("state/checksums");
    write_bytes(&src, "a.txt", b"alpha");
    write_bytes(&src, "b.txt", b"bravo");
    let first = sync(store.clone(), &cache, &src, false).await;
    assert_eq!(first.summary().uploaded, 2);
    let again = sync(store.clone(), &cache, &src, false).await;
    assert_eq!(
        reasons(&again),
        ["unchanged (checksum)", "unchanged (checksum)"]
    );
    assert_eq!(again.hashed, 0);
    // Same size, other bytes: uploaded; and a deleted file's object goes with --delete.
    std::fs::write(src.join("a.txt"), b"ALPHA").unwrap();
    std::fs::remove_file(src.join("b.txt")).unwrap();
    let third = sync(store.clone(), &cache, &src, true).await;
    assert!(third.is_success());
    assert!(third.files[0].is_uploaded(), "{third:?}");
    assert_eq!(third.deletions.len(), 1);
    assert_eq!(third.deletions[0].key, "s/b.txt");
    assert_eq!(third.deletions[0].outcome, DeleteOutcome::Deleted);
    assert_eq!(store.keys(), ["s/a.txt"]);
}

#[tokio::test]
async fn without_a_listing_files_are_decided_by_head_and_nothing_is_deleted() {
    let memory = Arc::new(MemoryStore::new());
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let cache = dir.path().join("checksums");
    write_bytes(&src, "a.txt", b"alpha");
    write_bytes(&src, "b.txt", b"bravo");
    let first = sync(memory.clone(), &cache, &src, false).await;
    assert_eq!(first.summary().uploaded, 2);
    std::fs::remove_file(src.join("b.txt")).unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(NoListing(memory.clone()));
    let r = sync(store, &cache, &src, true).await;
    assert_eq!(reasons(&r), ["unchanged (checksum)"]);
    assert!(!r.is_success(), "a refused delete fails the job");
    assert!(
        r.delete_refused.as_deref().unwrap().contains("listed"),
        "{r:?}"
    );
    assert!(r.deletions.is_empty());
    assert_eq!(memory.keys(), ["s/a.txt", "s/b.txt"], "nothing was deleted");
}

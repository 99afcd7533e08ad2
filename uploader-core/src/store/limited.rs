//! [`RequestLimited`]: a store wrapper that charges every request to the request-rate budget of
//! [`RateLimits`] (`--tps-limit`) before passing it on. Every request counts once, whatever it is
//! (writes, HEADs, listings, aborts), and a retry is a request of its own.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    Body, ListPage, ObjectMeta, ObjectStore, PartNumber, PartReceipt, PendingUpload, PutOptions,
    PutResult, StoreError, UploadId,
};
use crate::checksum::Checksum;
use crate::key::ObjectKey;
use crate::limit::RateLimits;

/// Wraps a store so that its requests follow the request rate of `limits`.
#[derive(Debug)]
pub struct RequestLimited {
    inner: Arc<dyn ObjectStore>,
    limits: RateLimits,
}

impl RequestLimited {
    /// `inner`, with every request charged to `limits` (a clone shares the budget).
    pub fn new(inner: Arc<dyn ObjectStore>, limits: RateLimits) -> Self {
        RequestLimited { inner, limits }
    }
}

#[async_trait]
impl ObjectStore for RequestLimited {
    async fn put(
        &self,
        key: &ObjectKey,
        body: Body,
        opts: &PutOptions,
    ) -> Result<PutResult, StoreError> {
        self.limits.request().await;
        self.inner.put(key, body, opts).await
    }

    async fn create_multipart(
        &self,
        key: &ObjectKey,
        opts: &PutOptions,
    ) -> Result<UploadId, StoreError> {
        self.limits.request().await;
        self.inner.create_multipart(key, opts).await
    }

    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload_id: &UploadId,
        part_number: PartNumber,
        body: Body,
        checksum: Option<&Checksum>,
    ) -> Result<PartReceipt, StoreError> {
        self.limits.request().await;
        self.inner
            .upload_part(key, upload_id, part_number, body, checksum)
            .await
    }

    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload_id: &UploadId,
        parts: &[PartReceipt],
    ) -> Result<PutResult, StoreError> {
        self.limits.request().await;
        self.inner.complete_multipart(key, upload_id, parts).await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &UploadId) -> Result<(), StoreError> {
        self.limits.request().await;
        self.inner.abort_multipart(key, upload_id).await
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        self.limits.request().await;
        self.inner.head(key).await
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        self.limits.request().await;
        self.inner.get(key).await
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>, StoreError> {
        self.limits.request().await;
        self.inner.list_multipart_uploads(prefix).await
    }

    async fn list_objects_page(
        &self,
        prefix: &str,
        after: Option<String>,
    ) -> Result<ListPage, StoreError> {
        self.limits.request().await;
        self.inner.list_objects_page(prefix, after).await
    }

    fn location(&self) -> Option<String> {
        self.inner.location()
    }

    async fn delete_object(&self, key: &str) -> Result<(), StoreError> {
        self.limits.request().await;
        self.inner.delete_object(key).await
    }
}

//! [`Observed`]: a store wrapper that tells the request budget how long each request took and
//! whether the server throttled it, so that the adaptive limit of requests in flight follows
//! the endpoint (see [`crate::schedule`]). Every request of an [`crate::Uploader`] passes here
//! once; GETs (reading objects back to verify them) are not samples.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    Body, ObjectMeta, ObjectStore, PartNumber, PartReceipt, PendingUpload, PutOptions, PutResult,
    StoreError, UploadId,
};
use crate::checksum::Checksum;
use crate::key::ObjectKey;
use crate::schedule::{Budget, RequestSample, SMALL_REQUEST};

/// Wraps a store so that its requests are samples of `budget`'s adaptive limit.
#[derive(Debug)]
pub struct Observed {
    inner: Arc<dyn ObjectStore>,
    budget: Budget,
}

impl Observed {
    /// `inner`, reporting each request to `budget` (a clone shares it).
    pub fn new(inner: Arc<dyn ObjectStore>, budget: Budget) -> Self {
        Observed { inner, budget }
    }

    /// Runs one request with a body of `body` bytes and reports it.
    async fn timed<T>(
        &self,
        body: u64,
        request: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = request.await;
        self.budget.observe(RequestSample {
            elapsed: started.elapsed(),
            small: body <= SMALL_REQUEST,
            throttled: result.as_ref().is_err_and(StoreError::is_throttle),
        });
        result
    }
}

#[async_trait]
impl ObjectStore for Observed {
    async fn put(
        &self,
        key: &ObjectKey,
        body: Body,
        opts: &PutOptions,
    ) -> Result<PutResult, StoreError> {
        self.timed(body.len(), self.inner.put(key, body, opts))
            .await
    }

    async fn create_multipart(
        &self,
        key: &ObjectKey,
        opts: &PutOptions,
    ) -> Result<UploadId, StoreError> {
        self.timed(0, self.inner.create_multipart(key, opts)).await
    }

    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload_id: &UploadId,
        part_number: PartNumber,
        body: Body,
        checksum: Option<&Checksum>,
    ) -> Result<PartReceipt, StoreError> {
        let len = body.len();
        let sent = self
            .inner
            .upload_part(key, upload_id, part_number, body, checksum);
        self.timed(len, sent).await
    }

    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload_id: &UploadId,
        parts: &[PartReceipt],
    ) -> Result<PutResult, StoreError> {
        let sent = self.inner.complete_multipart(key, upload_id, parts);
        self.timed(0, sent).await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &UploadId) -> Result<(), StoreError> {
        self.timed(0, self.inner.abort_multipart(key, upload_id))
            .await
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        self.timed(0, self.inner.head(key)).await
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        self.inner.get(key).await
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>, StoreError> {
        self.timed(0, self.inner.list_multipart_uploads(prefix))
            .await
    }
}

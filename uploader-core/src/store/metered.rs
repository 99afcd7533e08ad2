//! [`Metered`]: the store wrapper every request of an [`crate::Uploader`] passes through once.
//! It does the two things each request needs, whatever it is (writes, HEADs, listings,
//! aborts; a retry is a request of its own):
//!
//! * it charges the request to the request-rate budget of [`RateLimits`] (`--tps-limit`)
//!   before passing it on;
//! * it tells the request budget how long the request took and whether the server throttled
//!   it, so that the adaptive limit of requests in flight follows the endpoint
//!   ([`crate::schedule`]). The wait for the request rate is not part of that time. GETs
//!   (reading objects back to verify them), Completes (as long as their part count needs),
//!   aborts and listings are charged but are not samples.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    Body, ListPage, ListedPart, ObjectMeta, ObjectStore, PartNumber, PartReceipt, PendingUpload,
    PutOptions, PutResult, StoreError, UploadId,
};
use crate::checksum::Checksum;
use crate::key::ObjectKey;
use crate::limit::RateLimits;
use crate::schedule::{Budget, RequestSample, SMALL_REQUEST};

/// Wraps a store so that its requests follow the request rate of `limits` and are samples of
/// `budget`'s adaptive limit.
#[derive(Debug)]
pub struct Metered {
    inner: Arc<dyn ObjectStore>,
    limits: RateLimits,
    budget: Budget,
}

impl Metered {
    /// `inner`, with every request charged to `limits` and reported to `budget` (clones share
    /// them).
    pub fn new(inner: Arc<dyn ObjectStore>, limits: RateLimits, budget: Budget) -> Self {
        Metered {
            inner,
            limits,
            budget,
        }
    }

    /// Runs one request with a body of `body` bytes (`None`: not a latency sample).
    async fn run<T>(
        &self,
        body: Option<u64>,
        request: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let waited = self.limits.request().await;
        let started = Instant::now();
        let result = request.await;
        if let Some(len) = body {
            self.budget.observe(RequestSample {
                elapsed: started.elapsed(),
                small: len <= SMALL_REQUEST,
                throttled: result.as_ref().is_err_and(StoreError::is_throttle),
                // Held back by --tps-limit while holding its permit: the permits look all in
                // use, but more of them would not help.
                rate_limited: !waited.is_zero(),
            });
        }
        result
    }
}

#[async_trait]
impl ObjectStore for Metered {
    async fn put(
        &self,
        key: &ObjectKey,
        body: Body,
        opts: &PutOptions,
    ) -> Result<PutResult, StoreError> {
        self.run(Some(body.len()), self.inner.put(key, body, opts))
            .await
    }

    async fn create_multipart(
        &self,
        key: &ObjectKey,
        opts: &PutOptions,
    ) -> Result<UploadId, StoreError> {
        self.run(Some(0), self.inner.create_multipart(key, opts))
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
        let len = body.len();
        let sent = self
            .inner
            .upload_part(key, upload_id, part_number, body, checksum);
        self.run(Some(len), sent).await
    }

    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload_id: &UploadId,
        parts: &[PartReceipt],
    ) -> Result<PutResult, StoreError> {
        // Not a latency sample: a Complete takes as long as its part count needs, whatever
        // the load.
        let sent = self.inner.complete_multipart(key, upload_id, parts);
        self.run(None, sent).await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &UploadId) -> Result<(), StoreError> {
        self.run(None, self.inner.abort_multipart(key, upload_id))
            .await
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        self.run(Some(0), self.inner.head(key)).await
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        self.run(None, self.inner.get(key)).await
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>, StoreError> {
        self.run(None, self.inner.list_multipart_uploads(prefix))
            .await
    }

    async fn list_parts(
        &self,
        key: &str,
        upload_id: &UploadId,
    ) -> Result<Vec<ListedPart>, StoreError> {
        self.run(None, self.inner.list_parts(key, upload_id)).await
    }

    async fn list_objects_page(
        &self,
        prefix: &str,
        after: Option<String>,
    ) -> Result<ListPage, StoreError> {
        self.run(None, self.inner.list_objects_page(prefix, after))
            .await
    }

    fn location(&self) -> Option<String> {
        self.inner.location()
    }

    async fn delete_object(&self, key: &str) -> Result<(), StoreError> {
        self.run(Some(0), self.inner.delete_object(key)).await
    }
}

//! A store wrapper that injects failures, for tests of retries, aborts and reporting
//! (the idea of object_store's `ThrottledStore` and mountpoint's `FailureClient`).

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    Body, ListPage, ListedPart, ObjectMeta, ObjectStore, PartNumber, PartReceipt, PendingUpload,
    PutOptions, PutResult, StoreError, UploadId,
};
use crate::checksum::Checksum;
use crate::key::ObjectKey;

/// The operations a rule can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `PutObject`.
    Put,
    /// `CreateMultipartUpload`.
    CreateMultipart,
    /// `UploadPart`.
    UploadPart,
    /// `CompleteMultipartUpload`.
    CompleteMultipart,
    /// `AbortMultipartUpload`.
    AbortMultipart,
}

/// What a matching request does.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Fail with a service error (e.g. 500 InternalError, 503 SlowDown, 403 AccessDenied)
    /// without calling the inner store.
    Error {
        /// The HTTP status.
        status: u16,
        /// The S3 error code.
        code: &'static str,
    },
    /// Call the inner store, then report a lost response (a timeout) although the request
    /// succeeded.
    DropResponse,
    /// Wait before calling the inner store.
    Delay(Duration),
}

/// When a fault fires.
#[derive(Debug, Clone)]
pub struct FaultRule {
    /// The operation it targets.
    pub operation: Operation,
    /// Only for this part number (`UploadPart`), if set.
    pub part_number: Option<u32>,
    /// Only for keys containing this, if set.
    pub key_contains: Option<String>,
    /// Fire this many times (`None`: always).
    pub times: Option<u32>,
    /// What it does.
    pub fault: Fault,
}

impl FaultRule {
    /// A rule that always fires on `operation`.
    pub fn always(operation: Operation, fault: Fault) -> FaultRule {
        FaultRule {
            operation,
            part_number: None,
            key_contains: None,
            times: None,
            fault,
        }
    }

    /// A rule that fires on the first `n` matching requests.
    pub fn times(operation: Operation, n: u32, fault: Fault) -> FaultRule {
        FaultRule {
            times: Some(n),
            ..FaultRule::always(operation, fault)
        }
    }

    /// Restricts the rule to one part number.
    pub fn on_part(mut self, n: u32) -> FaultRule {
        self.part_number = Some(n);
        self
    }

    /// Restricts the rule to keys containing `s`.
    pub fn on_key(mut self, s: &str) -> FaultRule {
        self.key_contains = Some(s.to_owned());
        self
    }
}

/// Wraps a store and applies [`FaultRule`]s in order; the first matching rule fires.
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    rules: Mutex<Vec<(FaultRule, u32)>>,
}

impl FaultyStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ObjectStore>, rules: Vec<FaultRule>) -> FaultyStore {
        FaultyStore {
            inner,
            rules: Mutex::new(rules.into_iter().map(|r| (r, 0)).collect()),
        }
    }

    /// How many times rule `i` fired.
    pub fn fired(&self, i: usize) -> u32 {
        self.rules.lock().unwrap()[i].1
    }

    fn pick(&self, op: Operation, key: &str, part: Option<u32>) -> Option<Fault> {
        let mut rules = self.rules.lock().unwrap();
        for (rule, fired) in rules.iter_mut() {
            let matches = rule.operation == op
                && (rule.part_number.is_none() || rule.part_number == part)
                && rule.key_contains.as_deref().is_none_or(|s| key.contains(s))
                && rule.times.is_none_or(|n| *fired < n);
            if matches {
                *fired += 1;
                return Some(rule.fault.clone());
            }
        }
        None
    }

    async fn apply<T>(
        &self,
        op: Operation,
        name: &'static str,
        key: &str,
        part: Option<u32>,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match self.pick(op, key, part) {
            None => call.await,
            Some(Fault::Error { status, code }) => Err(StoreError::Service {
                operation: name,
                status,
                kind: super::s3::service_kind(status, code),
                code: code.into(),
                message: "injected fault".into(),
            }),
            Some(Fault::DropResponse) => {
                call.await?;
                Err(StoreError::Timeout { operation: name })
            }
            Some(Fault::Delay(d)) => {
                tokio::time::sleep(d).await;
                call.await
            }
        }
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put(
        &self,
        key: &ObjectKey,
        body: Body,
        opts: &PutOptions,
    ) -> Result<PutResult, StoreError> {
        let call = self.inner.put(key, body, opts);
        self.apply(Operation::Put, "PutObject", key.as_str(), None, call)
            .await
    }

    async fn create_multipart(
        &self,
        key: &ObjectKey,
        opts: &PutOptions,
    ) -> Result<UploadId, StoreError> {
        let call = self.inner.create_multipart(key, opts);
        let name = "CreateMultipartUpload";
        self.apply(Operation::CreateMultipart, name, key.as_str(), None, call)
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
        let call = self
            .inner
            .upload_part(key, upload_id, part_number, body, checksum);
        let part = Some(part_number.get());
        self.apply(
            Operation::UploadPart,
            "UploadPart",
            key.as_str(),
            part,
            call,
        )
        .await
    }

    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload_id: &UploadId,
        parts: &[PartReceipt],
    ) -> Result<PutResult, StoreError> {
        let call = self.inner.complete_multipart(key, upload_id, parts);
        let name = "CompleteMultipartUpload";
        self.apply(Operation::CompleteMultipart, name, key.as_str(), None, call)
            .await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &UploadId) -> Result<(), StoreError> {
        let call = self.inner.abort_multipart(key, upload_id);
        let name = "AbortMultipartUpload";
        self.apply(Operation::AbortMultipart, name, key, None, call)
            .await
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        self.inner.head(key).await
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        self.inner.get(key).await
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>, StoreError> {
        self.inner.list_multipart_uploads(prefix).await
    }

    async fn list_parts(
        &self,
        key: &str,
        upload_id: &UploadId,
    ) -> Result<Vec<ListedPart>, StoreError> {
        self.inner.list_parts(key, upload_id).await
    }

    async fn list_objects_page(
        &self,
        prefix: &str,
        after: Option<String>,
    ) -> Result<ListPage, StoreError> {
        self.inner.list_objects_page(prefix, after).await
    }

    fn location(&self) -> Option<String> {
        self.inner.location()
    }

    async fn delete_object(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete_object(key).await
    }
}

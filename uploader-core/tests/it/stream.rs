//! The stream source through `Uploader::upload_stream`: the handle carries the caller's index,
//! dropping it mid-upload aborts the multipart upload, a caller's cancellation does too, and
//! a body too large for 10 000 parts of the planned size is refused (never saturated).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use uploader_core::store::{ObjectMeta, PartReceipt, PutOptions, PutResult};
use uploader_core::{
    Body, Checksum, ErrorCode, FileOutcome, KeyPrefix, ObjectKey, ObjectStore, PartNumber,
    PendingUpload, StoreError, UploadId, Uploader,
};

use crate::common::{Embedded, ListAll as _, MIB, data, slow_parts, until_no_pending};

fn uploader(store: Arc<dyn ObjectStore>) -> Uploader {
    Uploader::builder()
        .with_mime_policy(crate::common::binary_ok())
        .with_store(store)
        .with_multipart_threshold(5 * MIB as u64)
        .with_part_size(5 * MIB as u64)
        .with_concurrency(4)
        .build()
        .unwrap()
}

fn body(len: usize, seed: u64) -> impl futures::Stream<Item = Result<Bytes, Infallible>> + Unpin {
    let pieces: Vec<Result<Bytes, Infallible>> = data(len, seed)
        .chunks(256 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures::stream::iter(pieces)
}

fn key(name: &str) -> ObjectKey {
    ObjectKey::derive(&KeyPrefix::new("stream").unwrap(), name).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_body_keeps_its_index_and_round_trips() {
    let e = Embedded::start().await;
    let up = uploader(e.dyn_store());
    let cancel = CancellationToken::new();
    let small = up
        .upload_stream(7, key("small.bin"), body(1000, 1), None, &cancel)
        .await;
    let big = up
        .upload_stream(8, key("big.bin"), body(12 * MIB, 2), None, &cancel)
        .await;
    assert_eq!((small.index(), big.index()), (7, 8));
    let (small, big) = (small.wait().await, big.wait().await);
    assert_eq!((small.index, big.index), (7, 8));
    assert!(
        matches!(small.outcome, FileOutcome::Uploaded { parts: 1, .. }),
        "{small:?}"
    );
    assert!(
        matches!(big.outcome, FileOutcome::Uploaded { parts: 3, .. }),
        "{big:?}"
    );
    assert_eq!(e.store_get("stream/big.bin").await, data(12 * MIB, 2));
    assert_eq!(e.store_get("stream/small.bin").await, data(1000, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_stream_handle_mid_upload_aborts_its_multipart_upload() {
    let e = Embedded::start().await;
    let up = uploader(slow_parts(&e));
    let handle = up
        .upload_stream(
            0,
            key("dropped.bin"),
            body(12 * MIB, 3),
            None,
            &CancellationToken::new(),
        )
        .await;
    assert!(
        !e.store.list_multipart_uploads_all().await.is_empty(),
        "the upload is open"
    );
    drop(handle);
    until_no_pending(&e).await;
    assert!(e.store.head("stream/dropped.bin").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_stream_mid_upload_aborts_and_reports_cancelled() {
    let e = Embedded::start().await;
    let up = uploader(slow_parts(&e));
    let cancel = CancellationToken::new();
    let handle = up
        .upload_stream(0, key("cancelled.bin"), body(12 * MIB, 4), None, &cancel)
        .await;
    cancel.cancel();
    let result = handle.wait().await;
    match &result.outcome {
        FileOutcome::Failed { error } => assert_eq!(error.code, ErrorCode::Cancelled),
        other => panic!("{other:?}"),
    }
    assert!(result.aborted, "{result:?}");
    assert!(e.store.list_multipart_uploads_all().await.is_empty());
    assert!(
        e.store
            .head("stream/cancelled.bin")
            .await
            .unwrap()
            .is_none()
    );
}

/// A store that acknowledges parts without keeping them (and records what it was asked).
#[derive(Debug, Default)]
struct DiscardParts {
    parts: std::sync::atomic::AtomicU64,
    max_part: std::sync::atomic::AtomicU32,
    aborted: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl ObjectStore for DiscardParts {
    async fn put(&self, _: &ObjectKey, _: Body, _: &PutOptions) -> Result<PutResult, StoreError> {
        unreachable!("the body is large")
    }
    async fn create_multipart(
        &self,
        _: &ObjectKey,
        _: &PutOptions,
    ) -> Result<UploadId, StoreError> {
        Ok(UploadId::new("discard"))
    }
    async fn upload_part(
        &self,
        _: &ObjectKey,
        _: &UploadId,
        n: PartNumber,
        _: Body,
        checksum: Option<&Checksum>,
    ) -> Result<PartReceipt, StoreError> {
        use std::sync::atomic::Ordering::Relaxed;
        self.parts.fetch_add(1, Relaxed);
        self.max_part.fetch_max(n.get(), Relaxed);
        Ok(PartReceipt {
            part_number: n,
            etag: "\"e\"".into(),
            checksum: checksum.cloned(),
        })
    }
    async fn complete_multipart(
        &self,
        _: &ObjectKey,
        _: &UploadId,
        _: &[PartReceipt],
    ) -> Result<PutResult, StoreError> {
        panic!("a body past 10 000 parts must not be completed")
    }
    async fn abort_multipart(&self, _: &str, _: &UploadId) -> Result<(), StoreError> {
        self.aborted
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
    async fn head(&self, _: &str) -> Result<Option<ObjectMeta>, StoreError> {
        Ok(None)
    }
    async fn get(&self, _: &str) -> Result<Option<Bytes>, StoreError> {
        Ok(None)
    }
    async fn list_multipart_uploads(&self, _: &str) -> Result<Vec<PendingUpload>, StoreError> {
        Ok(Vec::new())
    }
}

/// With no size limit a stream is cut in parts of the configured size, so a body past
/// 10 000 × 5 MiB would need part 10 001: it is refused as too large (never sent as a
/// saturated part number) and its upload aborted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_past_10_000_parts_is_refused_not_saturated() {
    let store = Arc::new(DiscardParts::default());
    let up = Uploader::builder()
        .with_mime_policy(crate::common::binary_ok())
        .with_store(store.clone())
        .with_multipart_threshold(5 * MIB as u64)
        .with_part_size(5 * MIB as u64)
        .with_max_buffer(64 * MIB as u64)
        .build()
        .unwrap();
    let piece = Bytes::from(data(MIB, 5));
    let pieces = futures::stream::iter(
        std::iter::repeat_n(piece, 5 * 10_000 + 1).map(Ok::<Bytes, Infallible>),
    );
    let result = up
        .upload_stream(0, key("huge.bin"), pieces, None, &CancellationToken::new())
        .await
        .wait()
        .await;
    match &result.outcome {
        FileOutcome::Failed { error } => {
            assert_eq!(error.code, ErrorCode::FileTooLarge, "{error:?}")
        }
        other => panic!("{other:?}"),
    }
    use std::sync::atomic::Ordering::Relaxed;
    // Parts still in flight when the body is refused are stopped, so the count is close to,
    // never over, S3's limit.
    let (parts, max_part) = (store.parts.load(Relaxed), store.max_part.load(Relaxed));
    assert!((9_990..=10_000).contains(&parts), "{parts} parts sent");
    assert!((9_990..=10_000).contains(&max_part), "part {max_part} sent");
    assert!(store.aborted.load(Relaxed), "the upload was aborted");
}

/// A byte budget smaller than one part (4 MiB against 8 MiB parts), several bodies at once:
/// each body trades its first reservation for its part's instead of holding one while waiting
/// for the other, so none waits for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_larger_than_a_small_byte_budget_still_finish() {
    let e = Embedded::start().await;
    let up = Uploader::builder()
        .with_mime_policy(crate::common::binary_ok())
        .with_store(e.dyn_store())
        .with_max_buffer(4 * MIB as u64)
        .build()
        .unwrap();
    let cancel = CancellationToken::new();
    let run = async {
        let a = up.upload_stream(0, key("a.bin"), body(20 * MIB, 6), None, &cancel);
        let b = up.upload_stream(1, key("b.bin"), body(9 * MIB, 7), None, &cancel);
        let (a, b) = futures::join!(a, b);
        futures::join!(a.wait(), b.wait())
    };
    let (a, b) = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the uploads finish within the byte budget");
    assert!(
        matches!(a.outcome, FileOutcome::Uploaded { parts: 3, .. }),
        "{a:?}"
    );
    assert!(
        matches!(b.outcome, FileOutcome::Uploaded { parts: 1, .. }),
        "{b:?}"
    );
    assert_eq!(e.store_get("stream/a.bin").await, data(20 * MIB, 6));
    assert_eq!(e.store_get("stream/b.bin").await, data(9 * MIB, 7));
}

//! Fault injection: a `FaultyStore` wrapped around the embedded endpoint's `S3Store` (and the
//! memory store). After every run: files reported uploaded are present with the right bytes,
//! failures carry a reason, and no multipart upload is left pending.

use std::sync::Arc;
use std::time::Duration;

use uploader_core::store::{Fault, FaultRule, FaultyStore, Operation};
use uploader_core::{
    ErrorCode, Event, KeyPrefix, ObjectKey, ObjectStore, RetryPolicy, UploadItem, Uploader,
};

use crate::common::{Embedded, ListAll as _, MIB, data, file};

fn fast_retries(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts: attempts,
        base: Duration::from_millis(5),
        max_backoff: Duration::from_millis(50),
    }
}

fn uploader(store: Arc<dyn ObjectStore>, attempts: u32) -> Uploader {
    Uploader::builder()
        .with_mime_policy(crate::common::binary_ok())
        .with_store(store)
        .with_multipart_threshold(5 * MIB as u64)
        .with_part_size(5 * MIB as u64)
        .with_retry(fast_retries(attempts))
        .with_concurrency(4)
        .build()
        .unwrap()
}

/// A 12 MiB file (3 parts: 5, 5, 2 MiB) and a small one.
fn inputs(dir: &std::path::Path, prefix: &str) -> Vec<UploadItem> {
    let p = KeyPrefix::new(prefix).unwrap();
    vec![
        UploadItem {
            path: file(dir, "big.bin", 12 * MIB, 1),
            key: ObjectKey::derive(&p, "big.bin").unwrap(),
        },
        UploadItem {
            path: file(dir, "small.bin", 1000, 2),
            key: ObjectKey::derive(&p, "small.bin").unwrap(),
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_that_fails_once_is_retried_and_the_file_succeeds() {
    let e = Embedded::start().await;
    let faulty = Arc::new(FaultyStore::new(
        e.dyn_store(),
        vec![
            FaultRule::times(
                Operation::UploadPart,
                1,
                Fault::Error {
                    status: 500,
                    code: "InternalError",
                },
            )
            .on_part(2),
        ],
    ));
    let src = tempfile::tempdir().unwrap();
    let report = uploader(faulty.clone(), 3)
        .upload_files(inputs(src.path(), "once"))
        .wait()
        .await;
    assert!(
        report.is_success(),
        "{:#?}",
        report.failures().collect::<Vec<_>>()
    );
    assert_eq!(faulty.fired(0), 1);
    assert_eq!(report.retries, 1);
    assert_eq!(e.store_get("once/big.bin").await, data(12 * MIB, 1));
    assert!(e.store.list_multipart_uploads_all().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_that_always_fails_fails_the_file_and_aborts_the_upload() {
    let e = Embedded::start().await;
    let faulty = Arc::new(FaultyStore::new(
        e.dyn_store(),
        vec![
            FaultRule::always(
                Operation::UploadPart,
                Fault::Error {
                    status: 503,
                    code: "SlowDown",
                },
            )
            .on_part(3),
        ],
    ));
    let src = tempfile::tempdir().unwrap();
    let report = uploader(faulty.clone(), 3)
        .upload_files(inputs(src.path(), "always"))
        .wait()
        .await;
    let big = &report.files[0];
    let err = big.error().expect("the big file fails");
    assert_eq!(err.code, ErrorCode::UpstreamThrottled);
    assert!(err.retryable);
    assert_eq!(faulty.fired(0), 3, "bounded attempts");
    assert_eq!(report.aborted_multipart, 1);
    // The other file is unaffected.
    assert!(report.files[1].is_uploaded());
    assert_eq!(e.store_get("always/small.bin").await, data(1000, 2));
    // Nothing half-done remains.
    assert!(e.store.list_multipart_uploads_all().await.is_empty());
    assert!(e.store.head("always/big.bin").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_retryable_errors_fail_at_once() {
    let e = Embedded::start().await;
    let faulty = Arc::new(FaultyStore::new(
        e.dyn_store(),
        vec![FaultRule::always(
            Operation::Put,
            Fault::Error {
                status: 403,
                code: "AccessDenied",
            },
        )],
    ));
    let src = tempfile::tempdir().unwrap();
    let report = uploader(faulty.clone(), 5)
        .upload_files(inputs(src.path(), "denied"))
        .wait()
        .await;
    assert!(report.files[0].is_uploaded(), "multipart is not a PUT");
    let err = report.files[1].error().unwrap();
    assert_eq!(err.code, ErrorCode::UpstreamRejected);
    assert!(!err.retryable);
    assert_eq!(faulty.fired(0), 1, "no retry of a 403");
    assert_eq!(report.retries, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_complete_response_is_recognised_as_success() {
    let e = Embedded::start().await;
    let faulty = Arc::new(FaultyStore::new(
        e.dyn_store(),
        vec![FaultRule::times(
            Operation::CompleteMultipart,
            1,
            Fault::DropResponse,
        )],
    ));
    let src = tempfile::tempdir().unwrap();
    let report = uploader(faulty, 3)
        .upload_files(inputs(src.path(), "lost"))
        .wait()
        .await;
    assert!(
        report.is_success(),
        "{:#?}",
        report.failures().collect::<Vec<_>>()
    );
    assert_eq!(e.store_get("lost/big.bin").await, data(12 * MIB, 1));
    assert!(e.store.list_multipart_uploads_all().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_mid_upload_aborts_open_multipart_uploads() {
    let e = Embedded::start().await;
    let src = tempfile::tempdir().unwrap();
    let mut job =
        uploader(crate::common::slow_parts(&e), 3).upload_files(inputs(src.path(), "cancel"));
    let mut events = job.events().unwrap();
    // Wait until the multipart upload exists, then cancel.
    loop {
        if !e.store.list_multipart_uploads_all().await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let report = job.abort().await;
    assert!(report.cancelled);
    let err = report.files[0]
        .error()
        .expect("the big file did not finish");
    assert_eq!(err.code, ErrorCode::Cancelled);
    assert_eq!(report.aborted_multipart, 1);
    assert!(e.store.list_multipart_uploads_all().await.is_empty());
    assert!(e.store.head("cancel/big.bin").await.unwrap().is_none());
    let mut saw_abort = false;
    while let Ok(ev) = events.try_recv() {
        saw_abort |= matches!(ev, Event::MultipartAborted { index: 0 });
    }
    assert!(saw_abort);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_handle_aborts_open_multipart_uploads() {
    let e = Embedded::start().await;
    let src = tempfile::tempdir().unwrap();
    let job = uploader(crate::common::slow_parts(&e), 3).upload_files(inputs(src.path(), "drop"));
    loop {
        if !e.store.list_multipart_uploads_all().await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(job);
    crate::common::until_no_pending(&e).await;
    assert!(e.store.head("drop/big.bin").await.unwrap().is_none());
}

#[tokio::test]
async fn fail_fast_stops_scheduling_after_the_first_failure() {
    let mem: Arc<dyn ObjectStore> = Arc::new(uploader_core::MemoryStore::new());
    let faulty = Arc::new(FaultyStore::new(
        mem.clone(),
        vec![
            FaultRule::always(
                Operation::Put,
                Fault::Error {
                    status: 403,
                    code: "AccessDenied",
                },
            )
            .on_key("f000"),
        ],
    ));
    let src = tempfile::tempdir().unwrap();
    let p = KeyPrefix::new("ff").unwrap();
    let items: Vec<_> = (0..200)
        .map(|i| UploadItem {
            path: file(src.path(), &format!("f{i:03}"), 10, i),
            key: ObjectKey::derive(&p, &format!("f{i:03}")).unwrap(),
        })
        .collect();
    let up = Uploader::builder()
        .with_mime_policy(crate::common::binary_ok())
        .with_store(faulty)
        .with_concurrency(1)
        .with_fail_fast(true)
        .build()
        .unwrap();
    let report = up.upload_files(items).wait().await;
    assert_eq!(report.files.len(), 200, "every input is reported");
    assert_eq!(
        report.files[0].error().unwrap().code,
        ErrorCode::UpstreamRejected
    );
    let cancelled = report
        .files
        .iter()
        .filter(|f| f.error().is_some_and(|e| e.code == ErrorCode::Cancelled))
        .count();
    assert!(cancelled > 150, "only {cancelled} files were cancelled");
}

/// Bodies too large for a quarter of the byte budget are not buffered: they are checksummed by
/// a first read and streamed from the path on every attempt. With an 8 MiB budget the 5 MiB
/// parts and a 3 MiB single PUT take that path; a 1 MiB file (buffered) and a 1000-byte file
/// (read whole when sniffed) take the in-memory ones. Each kind fails once and is retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_and_buffered_bodies_both_survive_retries() {
    let e = Embedded::start().await;
    let fail_once = |op, key: &str| {
        FaultRule::times(
            op,
            1,
            Fault::Error {
                status: 500,
                code: "InternalError",
            },
        )
        .on_key(key)
    };
    let faulty = Arc::new(FaultyStore::new(
        e.dyn_store(),
        vec![
            fail_once(Operation::UploadPart, "big.bin").on_part(2),
            fail_once(Operation::Put, "mid.bin"),
            fail_once(Operation::Put, "one-mib.bin"),
            fail_once(Operation::Put, "small.bin"),
        ],
    ));
    let src = tempfile::tempdir().unwrap();
    let p = KeyPrefix::new("budget").unwrap();
    let mut items = inputs(src.path(), "budget");
    for (name, len, seed) in [("mid.bin", 3 * MIB, 3), ("one-mib.bin", MIB, 4)] {
        items.push(UploadItem {
            path: file(src.path(), name, len, seed),
            key: ObjectKey::derive(&p, name).unwrap(),
        });
    }
    let up = Uploader::builder()
        .with_mime_policy(crate::common::binary_ok())
        .with_store(faulty.clone())
        .with_multipart_threshold(5 * MIB as u64)
        .with_part_size(5 * MIB as u64)
        .with_max_buffer(8 * MIB as u64)
        .with_retry(fast_retries(3))
        .with_concurrency(4)
        .build()
        .unwrap();
    let report = up.upload_files(items).wait().await;
    assert!(
        report.is_success(),
        "{:#?}",
        report.failures().collect::<Vec<_>>()
    );
    for i in 0..4 {
        assert_eq!(faulty.fired(i), 1, "rule {i} fired once");
    }
    assert_eq!(report.retries, 4);
    assert_eq!(e.store_get("budget/big.bin").await, data(12 * MIB, 1));
    assert_eq!(e.store_get("budget/small.bin").await, data(1000, 2));
    assert_eq!(e.store_get("budget/mid.bin").await, data(3 * MIB, 3));
    assert_eq!(e.store_get("budget/one-mib.bin").await, data(MIB, 4));
    assert!(e.store.list_multipart_uploads_all().await.is_empty());
}

/// A PUT whose answer was lost, then the job cancelled while it waits to retry: the object
/// landed, so the file is reported uploaded (the write's token identifies it), not cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_cancelled_after_a_lost_answer_is_reported_as_stored() {
    let mem: Arc<dyn ObjectStore> = Arc::new(uploader_core::MemoryStore::new());
    let faulty = Arc::new(FaultyStore::new(
        Arc::clone(&mem),
        vec![FaultRule::always(Operation::Put, Fault::DropResponse)],
    ));
    let up = Uploader::builder()
        .with_mime_policy(crate::common::binary_ok())
        .with_store(faulty.clone())
        .with_retry(RetryPolicy {
            max_attempts: 5,
            base: Duration::from_secs(30),
            max_backoff: Duration::from_secs(30),
        })
        .build()
        .unwrap();
    let src = tempfile::tempdir().unwrap();
    let key = ObjectKey::derive(&KeyPrefix::new("lost").unwrap(), "small.bin").unwrap();
    let path = file(src.path(), "small.bin", 1000, 9);
    let job = up.upload_files(vec![UploadItem { path, key }]);
    // The first attempt lands and its answer is lost; the retry then waits up to 30 s.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while faulty.fired(0) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the PUT was never sent"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let report = tokio::time::timeout(Duration::from_secs(10), job.abort())
        .await
        .expect("cancelling interrupts the wait");
    assert!(
        matches!(
            report.files[0].outcome,
            uploader_core::FileOutcome::Uploaded { .. }
        ),
        "{:?}",
        report.files[0].outcome
    );
    assert_eq!(
        mem.get("lost/small.bin").await.unwrap().unwrap(),
        data(1000, 9)
    );
}

//! The library's resume (`UploadConfig::journal`, `UploadConfig::keep_uploads_on_cancel`) on the
//! in-memory store: a job cancelled with its large file half sent keeps its upload open, and the
//! resumed job sends only the missing parts and stores the file whole.

use std::sync::Arc;
use std::time::Duration;

use uploader_core::journal::{JobIdentity, JournalConfig};
use uploader_core::store::{Fault, FaultRule, FaultyStore, Operation};
use uploader_core::{
    ConcurrencyMode, KeyPrefix, MemoryStore, ObjectStore, UploadConfig, Uploader, WalkOptions,
};

use crate::common::{binary_ok, data, write_bytes};

const MIB: usize = 1024 * 1024;
const PARTS: usize = 8;

fn uploader(store: Arc<dyn ObjectStore>, journal: JournalConfig) -> Uploader {
    Uploader::builder()
        .with_store(store)
        .with_config(UploadConfig {
            concurrency: 2,
            concurrency_mode: ConcurrencyMode::Fixed,
            part_size: 5 << 20,
            multipart_threshold: 5 << 20,
            mime: binary_ok(),
            journal: Some(journal),
            keep_uploads_on_cancel: true,
            ..UploadConfig::default()
        })
        .build()
        .unwrap()
}

async fn parts(store: &MemoryStore) -> usize {
    let pending = store.list_multipart_uploads("").await.unwrap();
    match pending.first() {
        Some(u) => store.list_parts(&u.key, &u.upload_id).await.unwrap().len(),
        None => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_job_resumes_from_its_verified_parts() {
    let src = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let bytes = data(PARTS * 5 * MIB, 3);
    write_bytes(src.path(), "big.bin", &bytes);
    let prefix = KeyPrefix::new("lib").unwrap();
    let identity = JobIdentity {
        sources: vec![src.path().display().to_string()],
        location: "memory".into(),
        bucket: "b".into(),
        prefix: prefix.as_str().into(),
        settings: Vec::new(),
    };
    let config = |resume| JournalConfig {
        path: state.path().join("job.ndjson"),
        id: identity.id(),
        prefix: prefix.clone(),
        location: "memory".into(),
        bucket: "b".into(),
        resume,
        command: Vec::new(),
    };
    let memory = Arc::new(MemoryStore::new());
    let slow = |ms| {
        Arc::new(FaultyStore::new(
            memory.clone(),
            vec![FaultRule::always(
                Operation::UploadPart,
                Fault::Delay(Duration::from_millis(ms)),
            )],
        ))
    };

    let first = slow(150);
    let job = uploader(first.clone(), config(false)).upload_dir(
        src.path(),
        &prefix,
        WalkOptions::default(),
    );
    while parts(&memory).await < 3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    job.cancel();
    let report = job.wait().await;
    assert!(report.cancelled);
    assert_eq!(
        report.aborted_multipart, 0,
        "the upload is kept for a resume"
    );
    let kept = parts(&memory).await;
    assert!((3..PARTS).contains(&kept), "{kept} parts kept");

    let second = slow(1);
    let report = uploader(second.clone(), config(true))
        .upload_dir(src.path(), &prefix, WalkOptions::default())
        .wait()
        .await;
    assert!(report.is_success(), "{:?}", report.files);
    assert_eq!(report.resumed.parts_reused as usize, kept);
    assert_eq!(report.resumed.bytes_not_resent as usize, kept * 5 * MIB);
    assert_eq!(
        second.fired(0) as usize,
        PARTS - kept,
        "only the missing parts are sent"
    );
    assert_eq!(memory.get("lib/big.bin").await.unwrap().unwrap(), bytes);
    assert!(memory.list_multipart_uploads("").await.unwrap().is_empty());
}

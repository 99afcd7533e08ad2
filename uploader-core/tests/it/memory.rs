//! Memory stays bounded by configuration, not by file size: a 2 GiB file goes through the
//! pipeline, `S3Store` and real HTTP to the embedded endpoint while the process's peak RSS grows
//! by less than (requests in flight × part size) plus a small constant.
//!
//! nextest runs each test in its own process, so the peak (VmHWM) is this test's own.

use uploader_core::{KeyPrefix, ObjectKey, ObjectStore as _, UploadItem, Uploader};

use crate::common::{Embedded, ListAll as _, MIB};

fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gib_upload_stays_within_the_configured_memory_bound() {
    const SIZE: u64 = 2 * 1024 * MIB as u64;
    let concurrency = 4usize;
    let part_size = 16 * MIB as u64;
    let e = Embedded::start().await;
    let src = tempfile::tempdir().unwrap();
    let path = src.path().join("big.bin");
    // A sparse file: reads return zeros without touching the disk.
    std::fs::File::create(&path).unwrap().set_len(SIZE).unwrap();
    let up = Uploader::builder()
        .with_mime_policy(crate::common::binary_ok())
        .with_store(e.dyn_store())
        .with_concurrency(concurrency)
        .with_part_size(part_size)
        .build()
        .unwrap();
    let key = ObjectKey::derive(&KeyPrefix::root(), "big.bin").unwrap();
    let before = status_kib("VmHWM:");
    let report = up.upload_files(vec![UploadItem { path, key }]).wait().await;
    let peak = status_kib("VmHWM:");
    assert!(
        report.is_success(),
        "{:#?}",
        report.failures().collect::<Vec<_>>()
    );
    let meta = e.store.head("big.bin").await.unwrap().unwrap();
    assert_eq!(meta.size, SIZE);
    assert!(e.store.list_multipart_uploads_all().await.is_empty());

    let grown_mib = (peak.saturating_sub(before)) / 1024;
    let bound_mib = (concurrency as u64 * part_size) / MIB as u64 + 32;
    eprintln!(
        "2 GiB upload: peak RSS {} MiB (grew {grown_mib} MiB; bound {bound_mib} MiB)",
        peak / 1024
    );
    assert!(
        grown_mib <= bound_mib,
        "peak RSS grew by {grown_mib} MiB, over the bound of {bound_mib} MiB"
    );
}

//! The whole pipeline through `S3Store` against the embedded endpoint: every object is read
//! back and compared byte for byte.

use uploader_core::{
    Event, FileOutcome, KeyPrefix, ObjectKey, ObjectStore as _, UploadItem, Uploader, WalkOptions,
};

use crate::common::{Embedded, ListAll as _, MIB, data, file};

const THRESHOLD: usize = 16 * MIB;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_sizes_round_trip_through_s3() {
    let e = Embedded::start().await;
    let src = tempfile::tempdir().unwrap();
    let sizes = [
        0,
        1,
        64 * 1024 - 1,
        64 * 1024,
        64 * 1024 + 1,
        THRESHOLD,     // exactly the threshold: multipart, 2 × 8 MiB
        THRESHOLD + 1, // 3 parts, the last one byte long
        20 * MIB + 12_345,
    ];
    let prefix = KeyPrefix::new("sizes").unwrap();
    let items: Vec<UploadItem> = sizes
        .iter()
        .enumerate()
        .map(|(i, &len)| UploadItem {
            path: file(src.path(), &format!("f{i}.bin"), len, i as u64),
            key: ObjectKey::derive(&prefix, &format!("f{i}.bin")).unwrap(),
        })
        .collect();
    let uploader = Uploader::builder()
        .with_mime_policy(crate::common::binary_ok())
        .with_store(e.dyn_store())
        .build()
        .unwrap();
    let mut job = uploader.upload_files(items);
    let mut events = job.events().unwrap();
    let report = job.wait().await;

    assert!(
        report.is_success(),
        "{:#?}",
        report.failures().collect::<Vec<_>>()
    );
    assert_eq!(report.files.len(), sizes.len());
    for (i, (f, &len)) in report.files.iter().zip(&sizes).enumerate() {
        assert_eq!(f.index, i);
        assert_eq!(f.size, len as u64);
        let FileOutcome::Uploaded {
            etag,
            checksum,
            parts,
            ..
        } = &f.outcome
        else {
            panic!("{f:?}")
        };
        assert!(etag.is_some());
        let checksum = checksum.as_deref().unwrap();
        assert!(checksum.starts_with("crc32c:"), "{checksum}");
        let want_parts = match len {
            l if l < THRESHOLD => 1,
            l => l.div_ceil(8 * MIB) as u32,
        };
        assert_eq!(*parts, want_parts, "file {i} of {len} bytes");
        if *parts > 1 {
            assert!(checksum.ends_with(&format!("-{parts}")), "{checksum}");
        }
        let got = e.store_get(&format!("sizes/f{i}.bin")).await;
        assert_eq!(got.len(), len, "file {i}");
        assert!(got == data(len, i as u64), "file {i}: bytes differ");
    }
    // Progress events add up to every byte, and every file finished once.
    let (mut bytes, mut finished) = (0u64, 0);
    while let Ok(ev) = events.try_recv() {
        match ev {
            Event::Progress { bytes: b, .. } => bytes += b,
            Event::Finished(_) => finished += 1,
            _ => {}
        }
    }
    assert_eq!(bytes, sizes.iter().map(|&s| s as u64).sum::<u64>());
    assert_eq!(finished, sizes.len());
    assert!(e.store.list_multipart_uploads_all().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_of_small_files_round_trips() {
    let e = Embedded::start().await;
    let src = tempfile::tempdir().unwrap();
    let n = 300;
    for i in 0..n {
        file(
            src.path(),
            &format!("d{}/sub{}/file {i}.bin", i % 7, i % 3),
            1000 + i,
            i as u64,
        );
    }
    file(src.path(), ".hidden/.dotfile", 10, 999);
    let uploader = Uploader::builder()
        .with_mime_policy(crate::common::binary_ok())
        .with_store(e.dyn_store())
        .with_concurrency(8)
        .build()
        .unwrap();
    let prefix = KeyPrefix::new("tree/2024").unwrap();
    let report = uploader
        .upload_dir(src.path(), &prefix, WalkOptions::default())
        .wait()
        .await;
    assert!(
        report.is_success(),
        "{:#?}",
        report.failures().collect::<Vec<_>>()
    );
    assert_eq!(report.summary().uploaded, n + 1);
    for i in 0..n {
        let key = format!("tree/2024/d{}/sub{}/file {i}.bin", i % 7, i % 3);
        assert!(e.store_get(&key).await == data(1000 + i, i as u64), "{key}");
    }
    assert_eq!(
        e.store_get("tree/2024/.hidden/.dotfile").await,
        data(10, 999)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_keys_and_unreadable_sources_are_reported_not_fatal() {
    let e = Embedded::start().await;
    let src = tempfile::tempdir().unwrap();
    let a = file(src.path(), "a.bin", 10, 1);
    let b = file(src.path(), "b.bin", 20, 2);
    let prefix = KeyPrefix::new("dup").unwrap();
    let same = ObjectKey::derive(&prefix, "same.bin").unwrap();
    // NFC and NFD spellings of one name normalise to one key.
    let nfc = ObjectKey::derive(&prefix, "caf\u{e9}").unwrap();
    let nfd = ObjectKey::derive(&prefix, "cafe\u{301}").unwrap();
    let items = vec![
        UploadItem {
            path: a.clone(),
            key: same.clone(),
        },
        UploadItem {
            path: b.clone(),
            key: same.clone(),
        },
        UploadItem {
            path: src.path().join("missing"),
            key: ObjectKey::derive(&prefix, "m").unwrap(),
        },
        UploadItem { path: a, key: nfc },
        UploadItem { path: b, key: nfd },
    ];
    let uploader = Uploader::builder()
        .with_mime_policy(crate::common::binary_ok())
        .with_store(e.dyn_store())
        .build()
        .unwrap();
    let report = uploader.upload_files(items).wait().await;
    let codes: Vec<_> = report
        .files
        .iter()
        .map(|f| f.error().map(|e| e.code.as_str()))
        .collect();
    assert_eq!(
        codes,
        [
            None,
            Some("duplicate_key"),
            Some("source_unreadable"),
            None,
            Some("duplicate_key")
        ]
    );
    // The first writer of the key won; the duplicate did not overwrite it.
    assert_eq!(e.store_get("dup/same.bin").await, data(10, 1));
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinks_are_not_followed_unless_asked_and_never_outside_the_root() {
    let e = Embedded::start().await;
    let outside = tempfile::tempdir().unwrap();
    let secret = file(outside.path(), "secret.txt", 5, 7);
    let src = tempfile::tempdir().unwrap();
    let inside = file(src.path(), "real.txt", 5, 8);
    std::os::unix::fs::symlink(&secret, src.path().join("escape.txt")).unwrap();
    std::os::unix::fs::symlink(&inside, src.path().join("alias.txt")).unwrap();
    std::os::unix::fs::symlink(src.path(), src.path().join("loop")).unwrap();
    let uploader = Uploader::builder()
        .with_mime_policy(crate::common::binary_ok())
        .with_store(e.dyn_store())
        .build()
        .unwrap();
    let prefix = KeyPrefix::new("links").unwrap();

    let report = uploader
        .upload_dir(src.path(), &prefix, WalkOptions::default())
        .wait()
        .await;
    assert!(report.is_success());
    assert_eq!(report.summary().uploaded, 1);
    assert_eq!(report.summary().skipped, 3);
    assert!(e.store.head("links/escape.txt").await.unwrap().is_none());

    let follow = WalkOptions {
        follow_symlinks: true,
        ..WalkOptions::default()
    };
    let prefix = KeyPrefix::new("follow").unwrap();
    let report = uploader
        .upload_dir(src.path(), &prefix, follow)
        .wait()
        .await;
    assert!(report.is_success());
    assert_eq!(e.store_get("follow/alias.txt").await, data(5, 8));
    assert!(
        e.store.head("follow/escape.txt").await.unwrap().is_none(),
        "escaped the root"
    );
    let skipped: Vec<_> = report
        .files
        .iter()
        .filter_map(|f| match &f.outcome {
            FileOutcome::Skipped { reason } => Some(reason.as_str()),
            _ => None,
        })
        .collect();
    assert!(
        skipped
            .iter()
            .any(|r| r.contains("outside the source root")),
        "{skipped:?}"
    );
    assert!(skipped.iter().any(|r| r.contains("loop")), "{skipped:?}");
}

/// A FIFO given as a file is refused as "not a regular file" before it is opened: opening it
/// would block until a writer appears. The regular file beside it is uploaded.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_is_refused_without_blocking_and_the_others_upload() {
    let e = Embedded::start().await;
    let src = tempfile::tempdir().unwrap();
    let fifo = src.path().join("pipe.bin");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(status.success());
    let p = KeyPrefix::new("fifo").unwrap();
    let items = vec![
        UploadItem {
            path: fifo,
            key: ObjectKey::derive(&p, "pipe.bin").unwrap(),
        },
        UploadItem {
            path: file(src.path(), "ok.bin", 5000, 9),
            key: ObjectKey::derive(&p, "ok.bin").unwrap(),
        },
    ];
    let up = Uploader::builder()
        .with_mime_policy(crate::common::binary_ok())
        .with_store(e.dyn_store())
        .build()
        .unwrap();
    let report = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        up.upload_files(items).wait(),
    )
    .await
    .expect("a FIFO must not block the upload");
    let err = report.files[0].error().expect("the FIFO is refused");
    assert_eq!(err.code, uploader_core::ErrorCode::SourceUnreadable);
    assert!(
        err.message.contains("not a regular file"),
        "{}",
        err.message
    );
    assert!(report.files[1].is_uploaded());
    assert_eq!(e.store_get("fifo/ok.bin").await, data(5000, 9));
    assert!(e.store.head("fifo/pipe.bin").await.unwrap().is_none());
}

/// A small byte budget (4 MiB) and many files just past `INLINE_MAX` (512 KiB each, 32 file
/// slots): a file lets go of its sample's reservation before its body reserves its own, so the
/// slots cannot use the whole budget up while each waits for more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_mid_size_files_finish_within_a_small_byte_budget() {
    let store = std::sync::Arc::new(uploader_core::MemoryStore::new());
    let up = Uploader::builder()
        .with_mime_policy(crate::common::binary_ok())
        .with_store(store.clone())
        .with_concurrency(16)
        .with_max_buffer(4 * MIB as u64)
        .build()
        .unwrap();
    let src = tempfile::tempdir().unwrap();
    for i in 0..64u64 {
        file(src.path(), &format!("f{i:02}.bin"), 512 * 1024, i);
    }
    let job = up.upload_dir(
        src.path(),
        &KeyPrefix::new("mid").unwrap(),
        WalkOptions::default(),
    );
    let report = tokio::time::timeout(std::time::Duration::from_secs(60), job.wait())
        .await
        .expect("the job finishes within the byte budget");
    assert_eq!(
        report.summary().uploaded,
        64,
        "{:?}",
        report.failures().collect::<Vec<_>>()
    );
    assert_eq!(store.len(), 64);
}

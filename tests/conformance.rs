//! The store conformance suite, written once and run against every store: the in-memory one,
//! the embedded endpoint, and the third-party servers (what each lacks is in [`Quirks`]).

use std::sync::Arc;

use bytes::Bytes;
use uploader_core::store::{Body, PutOptions};
use uploader_core::{
    Checksum, ChecksumAlgorithm, KeyPrefix, ObjectKey, ObjectStore, PartNumber, ServiceErrorKind,
};

use crate::data;
use crate::servers::Quirks;

const MIB: usize = 1024 * 1024;

/// Runs every check under the prefix `conf-<alg>/`.
pub async fn suite(store: Arc<dyn ObjectStore>, alg: ChecksumAlgorithm, quirks: Quirks) {
    let prefix = KeyPrefix::new(&format!("conf-{alg}")).unwrap();
    let key = |name: &str| ObjectKey::derive(&prefix, name).unwrap();
    let p = prefix.as_str();
    let verifies = match alg {
        ChecksumAlgorithm::Crc32c => quirks.verifies_crc32c,
        ChecksumAlgorithm::Md5 => quirks.verifies_md5,
    };
    let ctx = format!("{} / {alg}", quirks.name);

    // Single PUT with checksum, content type and metadata; read back.
    let body = Bytes::from(data(100_000, 1));
    let opts = PutOptions {
        content_type: Some("application/octet-stream".into()),
        checksum: Some(Checksum::of_bytes(alg, &body)),
        metadata: vec![("origin".into(), "suite".into())],
        ..PutOptions::default()
    };
    let k = key("single.bin");
    let put = store
        .put(&k, Body::Bytes(body.clone()), &opts)
        .await
        .unwrap();
    assert!(put.etag.is_some(), "{ctx}");
    assert_eq!(store.get(k.as_str()).await.unwrap().unwrap(), body, "{ctx}");
    let meta = store.head(k.as_str()).await.unwrap().unwrap();
    assert_eq!(meta.size, 100_000, "{ctx}");
    assert_eq!(
        meta.content_type.as_deref(),
        Some("application/octet-stream"),
        "{ctx}"
    );
    assert!(
        meta.metadata.contains(&("origin".into(), "suite".into())),
        "{ctx}: {meta:?}"
    );

    // The same bytes in pieces (a daemon body: sent as they arrived, without copying).
    let k_pieces = key("pieces.bin");
    let pieces: Vec<Bytes> = [0, 1, 40_000, 40_001, 99_999, 100_000]
        .windows(2)
        .map(|w| body.slice(w[0]..w[1]))
        .collect();
    store
        .put(&k_pieces, Body::Chunks(pieces.into()), &opts)
        .await
        .unwrap();
    assert_eq!(
        store.get(k_pieces.as_str()).await.unwrap().unwrap(),
        body,
        "{ctx}: a body in pieces"
    );

    // A wrong checksum is refused and stores nothing (where the server verifies it).
    let bad = PutOptions {
        checksum: Some(Checksum::of_bytes(alg, b"something else")),
        ..PutOptions::default()
    };
    let k_bad = key("bad.bin");
    let bad_put = store.put(&k_bad, Body::Bytes(body.clone()), &bad).await;
    if verifies {
        let err = bad_put.expect_err(&ctx);
        assert_eq!(
            err.kind(),
            Some(ServiceErrorKind::BadDigest),
            "{ctx}: {err}"
        );
        assert!(!err.is_retryable(), "{ctx}");
        assert_eq!(store.head(k_bad.as_str()).await.unwrap(), None, "{ctx}");
    }

    // Conditional write: the second put with If-None-Match fails with 412.
    let k_nc = key("noclobber.bin");
    let nc = PutOptions {
        if_none_match: true,
        ..PutOptions::default()
    };
    store
        .put(&k_nc, Body::Bytes(Bytes::from_static(b"first")), &nc)
        .await
        .unwrap();
    let second = store
        .put(&k_nc, Body::Bytes(Bytes::from_static(b"second")), &nc)
        .await;
    if quirks.conditional_put {
        let err = second.expect_err(&ctx);
        assert_eq!(
            err.kind(),
            Some(ServiceErrorKind::PreconditionFailed),
            "{ctx}: {err}"
        );
        let kept = store.get(k_nc.as_str()).await.unwrap().unwrap();
        assert_eq!(&kept[..], b"first", "{ctx}");
    }

    // Multipart: two parts (the last short), listed while pending, complete, read back.
    let whole = Bytes::from(data(5 * MIB + 123, 2));
    let k_mp = key("multi.bin");
    let opts = PutOptions {
        checksum_algorithm: Some(alg),
        content_type: Some("application/x-test".into()),
        ..PutOptions::default()
    };
    let id = store.create_multipart(&k_mp, &opts).await.unwrap();
    let pending = store.list_multipart_uploads(p).await.unwrap();
    assert!(
        pending
            .iter()
            .any(|u| u.upload_id == id && u.key == k_mp.as_str()),
        "{ctx}: {pending:?}"
    );
    let mut parts = Vec::new();
    for (n, range) in [(1u64, 0..5 * MIB), (2, 5 * MIB..whole.len())] {
        let chunk = whole.slice(range);
        let c = Checksum::of_bytes(alg, &chunk);
        let n = PartNumber::new(n).unwrap();
        let receipt = store
            .upload_part(&k_mp, &id, n, Body::Bytes(chunk), Some(&c))
            .await
            .unwrap();
        parts.push(receipt);
    }
    store.complete_multipart(&k_mp, &id, &parts).await.unwrap();
    assert_eq!(
        store.get(k_mp.as_str()).await.unwrap().unwrap(),
        whole,
        "{ctx}"
    );
    let meta = store.head(k_mp.as_str()).await.unwrap().unwrap();
    assert_eq!(
        meta.content_type.as_deref(),
        Some("application/x-test"),
        "{ctx}"
    );
    assert!(
        store.list_multipart_uploads(p).await.unwrap().is_empty(),
        "{ctx}"
    );

    // Abort: the upload disappears and no object appears.
    let k_ab = key("aborted.bin");
    let id = store.create_multipart(&k_ab, &opts).await.unwrap();
    let chunk = Bytes::from(data(1000, 3));
    let c = Checksum::of_bytes(alg, &chunk);
    store
        .upload_part(&k_ab, &id, PartNumber::FIRST, Body::Bytes(chunk), Some(&c))
        .await
        .unwrap();
    // A part with a wrong checksum is refused (where the server verifies it). rclone then
    // drops the whole upload, so this runs on the upload that is aborted next.
    let mut dropped = false;
    if verifies {
        let wrong = Checksum::of_bytes(alg, b"nope");
        let tail = Body::Bytes(Bytes::from_static(b"tail"));
        let second = PartNumber::new(2).unwrap();
        let bad_part = store
            .upload_part(&k_ab, &id, second, tail, Some(&wrong))
            .await;
        let kind = bad_part.expect_err(&ctx).kind();
        assert_eq!(kind, Some(ServiceErrorKind::BadDigest), "{ctx}");
        dropped = store.list_multipart_uploads(p).await.unwrap().is_empty();
    }
    match store.abort_multipart(k_ab.as_str(), &id).await {
        Ok(()) => {}
        Err(e) if dropped && e.kind() == Some(ServiceErrorKind::NoSuchUpload) => {}
        Err(e) => panic!("{ctx}: abort failed: {e}"),
    }
    assert!(
        store.list_multipart_uploads(p).await.unwrap().is_empty(),
        "{ctx}"
    );
    assert_eq!(store.head(k_ab.as_str()).await.unwrap(), None, "{ctx}");
    // Aborting again finds nothing (NoSuchUpload), which the pipeline treats as done.
    let again = store.abort_multipart(k_ab.as_str(), &id).await;
    if let Err(e) = again {
        assert_eq!(e.kind(), Some(ServiceErrorKind::NoSuchUpload), "{ctx}: {e}");
    }

    // Missing objects.
    let missing = format!("{p}missing");
    assert_eq!(store.head(&missing).await.unwrap(), None, "{ctx}");
    assert_eq!(store.get(&missing).await.unwrap(), None, "{ctx}");
}

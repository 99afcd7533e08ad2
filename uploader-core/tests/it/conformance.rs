//! One conformance suite, run against every store.

use std::sync::Arc;

use bytes::Bytes;
use uploader_core::store::{Body, PutOptions};
use uploader_core::{Checksum, ChecksumAlgorithm, KeyPrefix, MemoryStore, ObjectKey, ObjectStore};

use crate::common::{Embedded, MIB, data};

fn key(name: &str) -> ObjectKey {
    ObjectKey::derive(&KeyPrefix::new("conf").unwrap(), name).unwrap()
}

pub async fn suite(store: Arc<dyn ObjectStore>, alg: ChecksumAlgorithm) {
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
    assert!(put.etag.is_some());
    assert_eq!(store.get(k.as_str()).await.unwrap().unwrap(), body);
    let meta = store.head(k.as_str()).await.unwrap().unwrap();
    assert_eq!(meta.size, 100_000);
    assert_eq!(
        meta.content_type.as_deref(),
        Some("application/octet-stream")
    );
    assert!(meta.metadata.contains(&("origin".into(), "suite".into())));

    // A wrong checksum is refused and stores nothing.
    let bad = PutOptions {
        checksum: Some(Checksum::of_bytes(alg, b"something else")),
        ..PutOptions::default()
    };
    let k_bad = key("bad.bin");
    let err = store
        .put(&k_bad, Body::Bytes(body.clone()), &bad)
        .await
        .unwrap_err();
    assert!(err.is_bad_digest(), "{err}");
    assert!(!err.is_retryable());
    assert_eq!(store.head(k_bad.as_str()).await.unwrap(), None);

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
    let err = store
        .put(&k_nc, Body::Bytes(Bytes::from_static(b"second")), &nc)
        .await
        .unwrap_err();
    assert!(err.is_precondition_failed(), "{err}");
    assert_eq!(
        &store.get(k_nc.as_str()).await.unwrap().unwrap()[..],
        b"first"
    );

    // Multipart: two parts (the last short), listed while pending, complete, read back.
    let whole = Bytes::from(data(5 * MIB + 123, 2));
    let k_mp = key("multi.bin");
    let opts = PutOptions {
        checksum_algorithm: Some(alg),
        ..PutOptions::default()
    };
    let id = store.create_multipart(&k_mp, &opts).await.unwrap();
    let pending = store.list_multipart_uploads("conf/").await.unwrap();
    assert!(
        pending
            .iter()
            .any(|u| u.upload_id == id && u.key == k_mp.as_str())
    );
    let mut parts = Vec::new();
    for (n, range) in [(1u32, 0..5 * MIB), (2, 5 * MIB..whole.len())] {
        let chunk = whole.slice(range);
        let c = Checksum::of_bytes(alg, &chunk);
        parts.push(
            store
                .upload_part(&k_mp, &id, n, Body::Bytes(chunk), Some(&c))
                .await
                .unwrap(),
        );
    }
    // A part with a wrong checksum is refused.
    let wrong = Checksum::of_bytes(alg, b"nope");
    let err = store
        .upload_part(
            &k_mp,
            &id,
            3,
            Body::Bytes(Bytes::from_static(b"tail")),
            Some(&wrong),
        )
        .await
        .unwrap_err();
    assert!(err.is_bad_digest(), "{err}");
    store.complete_multipart(&k_mp, &id, &parts).await.unwrap();
    assert_eq!(store.get(k_mp.as_str()).await.unwrap().unwrap(), whole);
    assert!(
        store
            .list_multipart_uploads("conf/")
            .await
            .unwrap()
            .is_empty()
    );

    // Abort: the upload disappears and no object appears.
    let k_ab = key("aborted.bin");
    let id = store.create_multipart(&k_ab, &opts).await.unwrap();
    let chunk = Bytes::from(data(1000, 3));
    let c = Checksum::of_bytes(alg, &chunk);
    store
        .upload_part(&k_ab, &id, 1, Body::Bytes(chunk), Some(&c))
        .await
        .unwrap();
    store.abort_multipart(k_ab.as_str(), &id).await.unwrap();
    assert!(
        store
            .list_multipart_uploads("conf/")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.head(k_ab.as_str()).await.unwrap(), None);
    // Unknown uploads are NoSuchUpload.
    let err = store.abort_multipart(k_ab.as_str(), &id).await.unwrap_err();
    assert_eq!(err.code(), Some("NoSuchUpload"), "{err}");

    // Missing objects.
    assert_eq!(store.head("conf/missing").await.unwrap(), None);
    assert_eq!(store.get("conf/missing").await.unwrap(), None);
}

#[tokio::test]
async fn memory_store_conforms() {
    suite(Arc::new(MemoryStore::new()), ChecksumAlgorithm::Crc32c).await;
    suite(Arc::new(MemoryStore::new()), ChecksumAlgorithm::Md5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_s3_store_conforms_with_crc32c() {
    let e = Embedded::start().await;
    suite(e.dyn_store(), ChecksumAlgorithm::Crc32c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_s3_store_conforms_with_content_md5() {
    let e = Embedded::start().await;
    suite(e.dyn_store(), ChecksumAlgorithm::Md5).await;
}

//! The store conformance suite, written once and run against every store: the in-memory one,
//! the embedded endpoint, and the third-party servers (what each lacks is in [`Quirks`]).
//!
//! One function per behaviour, each run once per checksum algorithm under its own prefix
//! (`conf-<behaviour>-<alg>/`); tests/e2e/stores.rs makes a test of each per store.

use std::sync::Arc;

use bytes::Bytes;
use uploader_core::store::{Body, PutOptions};
use uploader_core::{
    Checksum, ChecksumAlgorithm, KeyPrefix, ObjectKey, ObjectStore, PartNumber, ServiceErrorKind,
    UploadId,
};

use crate::data;
use crate::servers::Quirks;

const MIB: usize = 1024 * 1024;

/// Where one behaviour runs against one store with one algorithm.
pub struct Case {
    pub store: Arc<dyn ObjectStore>,
    pub alg: ChecksumAlgorithm,
    pub quirks: Quirks,
    prefix: KeyPrefix,
    /// For assertion messages: `<store> / <behaviour> / <alg>`.
    ctx: String,
}

impl Case {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        alg: ChecksumAlgorithm,
        quirks: Quirks,
        behaviour: &str,
    ) -> Case {
        Case {
            prefix: KeyPrefix::new(&format!("conf-{behaviour}-{alg}")).unwrap(),
            ctx: format!("{} / {behaviour} / {alg}", quirks.name),
            store,
            alg,
            quirks,
        }
    }

    fn key(&self, name: &str) -> ObjectKey {
        ObjectKey::derive(&self.prefix, name).unwrap()
    }

    fn p(&self) -> &str {
        self.prefix.as_str()
    }

    /// Whether the server rejects a wrong checksum of this algorithm.
    fn verifies(&self) -> bool {
        match self.alg {
            ChecksumAlgorithm::Crc32c => self.quirks.verifies_crc32c,
            ChecksumAlgorithm::Md5 => self.quirks.verifies_md5,
        }
    }

    async fn pending_is_empty(&self) -> bool {
        self.store
            .list_multipart_uploads(self.p())
            .await
            .unwrap()
            .is_empty()
    }

    /// A multipart upload with one uploaded part of 1000 bytes.
    async fn upload_with_one_part(&self, name: &str) -> (ObjectKey, UploadId) {
        let k = self.key(name);
        let opts = PutOptions {
            checksum_algorithm: Some(self.alg),
            ..PutOptions::default()
        };
        let id = self.store.create_multipart(&k, &opts).await.unwrap();
        let chunk = Bytes::from(data(1000, 3));
        let c = Checksum::of_bytes(self.alg, &chunk);
        self.store
            .upload_part(&k, &id, PartNumber::FIRST, Body::Bytes(chunk), Some(&c))
            .await
            .unwrap();
        (k, id)
    }
}

/// The 100 000-byte body of the single-PUT behaviours.
fn single_body() -> Bytes {
    Bytes::from(data(100_000, 1))
}

fn single_opts(alg: ChecksumAlgorithm, body: &Bytes) -> PutOptions {
    PutOptions {
        content_type: Some("application/octet-stream".into()),
        checksum: Some(Checksum::of_bytes(alg, body)),
        metadata: vec![("origin".into(), "suite".into())],
        ..PutOptions::default()
    }
}

/// Single PUT with checksum, content type and metadata; read back.
pub async fn put_round_trips_bytes_and_content_type(c: Case) {
    let ctx = &c.ctx;
    let body = single_body();
    let k = c.key("single.bin");
    let put = c
        .store
        .put(&k, Body::Bytes(body.clone()), &single_opts(c.alg, &body))
        .await
        .unwrap();
    assert!(put.etag.is_some(), "{ctx}");
    assert_eq!(
        c.store.get(k.as_str()).await.unwrap().unwrap(),
        body,
        "{ctx}"
    );
    let meta = c.store.head(k.as_str()).await.unwrap().unwrap();
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
}

/// The same bytes in pieces (a daemon body: sent as they arrived, without copying).
pub async fn put_from_pieces(c: Case) {
    let ctx = &c.ctx;
    let body = single_body();
    let k_pieces = c.key("pieces.bin");
    let pieces: Vec<Bytes> = [0, 1, 40_000, 40_001, 99_999, 100_000]
        .windows(2)
        .map(|w| body.slice(w[0]..w[1]))
        .collect();
    c.store
        .put(
            &k_pieces,
            Body::Chunks(pieces.into()),
            &single_opts(c.alg, &body),
        )
        .await
        .unwrap();
    assert_eq!(
        c.store.get(k_pieces.as_str()).await.unwrap().unwrap(),
        body,
        "{ctx}: a body in pieces"
    );
}

/// A wrong checksum is refused and stores nothing (where the server verifies it; where it does
/// not, the PUT is accepted — [`Quirks`] says so).
pub async fn bad_checksum_is_refused(c: Case) {
    let ctx = &c.ctx;
    let bad = PutOptions {
        checksum: Some(Checksum::of_bytes(c.alg, b"something else")),
        ..PutOptions::default()
    };
    let k_bad = c.key("bad.bin");
    let bad_put = c.store.put(&k_bad, Body::Bytes(single_body()), &bad).await;
    if c.verifies() {
        let err = bad_put.expect_err(ctx);
        assert_eq!(
            err.kind(),
            Some(ServiceErrorKind::BadDigest),
            "{ctx}: {err}"
        );
        assert!(!err.is_retryable(), "{ctx}");
        assert_eq!(c.store.head(k_bad.as_str()).await.unwrap(), None, "{ctx}");
    } else {
        bad_put.unwrap_or_else(|e| panic!("{ctx}: Quirks say this server does not verify: {e}"));
    }
}

/// Conditional write: the second put with If-None-Match fails with 412 and the first object is
/// kept (where the server supports it; where it does not, the second put is accepted).
pub async fn conditional_put_refuses_existing_key(c: Case) {
    let ctx = &c.ctx;
    let k_nc = c.key("noclobber.bin");
    let nc = PutOptions {
        if_none_match: true,
        ..PutOptions::default()
    };
    c.store
        .put(&k_nc, Body::Bytes(Bytes::from_static(b"first")), &nc)
        .await
        .unwrap();
    let second = c
        .store
        .put(&k_nc, Body::Bytes(Bytes::from_static(b"second")), &nc)
        .await;
    if c.quirks.conditional_put {
        let err = second.expect_err(ctx);
        assert_eq!(
            err.kind(),
            Some(ServiceErrorKind::PreconditionFailed),
            "{ctx}: {err}"
        );
        let kept = c.store.get(k_nc.as_str()).await.unwrap().unwrap();
        assert_eq!(&kept[..], b"first", "{ctx}");
    } else {
        second.unwrap_or_else(|e| panic!("{ctx}: Quirks say If-None-Match is ignored: {e}"));
    }
}

/// Multipart: two parts (the last short), listed while pending, complete, read back; nothing
/// pending afterwards.
pub async fn multipart_round_trip_and_listing(c: Case) {
    let ctx = &c.ctx;
    let (store, alg) = (&c.store, c.alg);
    let whole = Bytes::from(data(5 * MIB + 123, 2));
    let k_mp = c.key("multi.bin");
    let opts = PutOptions {
        checksum_algorithm: Some(alg),
        content_type: Some("application/x-test".into()),
        ..PutOptions::default()
    };
    let id = store.create_multipart(&k_mp, &opts).await.unwrap();
    let pending = store.list_multipart_uploads(c.p()).await.unwrap();
    assert!(
        pending
            .iter()
            .any(|u| u.upload_id == id && u.key == k_mp.as_str()),
        "{ctx}: {pending:?}"
    );
    let mut parts = Vec::new();
    for (n, range) in [(1u64, 0..5 * MIB), (2, 5 * MIB..whole.len())] {
        let chunk = whole.slice(range);
        let sum = Checksum::of_bytes(alg, &chunk);
        let n = PartNumber::new(n).unwrap();
        let receipt = store
            .upload_part(&k_mp, &id, n, Body::Bytes(chunk), Some(&sum))
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
    assert!(c.pending_is_empty().await, "{ctx}");
}

/// Abort: the upload disappears and no object appears.
pub async fn abort_removes_upload_and_object_never_appears(c: Case) {
    let ctx = &c.ctx;
    let (k_ab, id) = c.upload_with_one_part("aborted.bin").await;
    assert!(!c.pending_is_empty().await, "{ctx}: the upload is listed");
    c.store
        .abort_multipart(k_ab.as_str(), &id)
        .await
        .unwrap_or_else(|e| panic!("{ctx}: abort failed: {e}"));
    assert!(c.pending_is_empty().await, "{ctx}");
    assert_eq!(c.store.head(k_ab.as_str()).await.unwrap(), None, "{ctx}");
}

/// A part with a wrong checksum is refused (where the server verifies it). rclone then drops
/// the whole upload, so the abort that follows may find NoSuchUpload; either way nothing is
/// pending and no object appears.
pub async fn bad_part_checksum_is_refused(c: Case) {
    let ctx = &c.ctx;
    let (k_ab, id) = c.upload_with_one_part("badpart.bin").await;
    let mut dropped = false;
    if c.verifies() {
        let wrong = Checksum::of_bytes(c.alg, b"nope");
        let tail = Body::Bytes(Bytes::from_static(b"tail"));
        let second = PartNumber::new(2).unwrap();
        let bad_part = c
            .store
            .upload_part(&k_ab, &id, second, tail, Some(&wrong))
            .await;
        let kind = bad_part.expect_err(ctx).kind();
        assert_eq!(kind, Some(ServiceErrorKind::BadDigest), "{ctx}");
        dropped = c.pending_is_empty().await;
    }
    match c.store.abort_multipart(k_ab.as_str(), &id).await {
        Ok(()) => {}
        Err(e) if dropped && e.kind() == Some(ServiceErrorKind::NoSuchUpload) => {}
        Err(e) => panic!("{ctx}: abort failed: {e}"),
    }
    assert!(c.pending_is_empty().await, "{ctx}");
    assert_eq!(c.store.head(k_ab.as_str()).await.unwrap(), None, "{ctx}");
}

/// Aborting again finds nothing (NoSuchUpload, or success on a server that forgets), which the
/// pipeline treats as done; it creates nothing.
pub async fn abort_twice_is_no_such_upload(c: Case) {
    let ctx = &c.ctx;
    let (k_ab, id) = c.upload_with_one_part("twice.bin").await;
    c.store
        .abort_multipart(k_ab.as_str(), &id)
        .await
        .unwrap_or_else(|e| panic!("{ctx}: abort failed: {e}"));
    let again = c.store.abort_multipart(k_ab.as_str(), &id).await;
    if let Err(e) = again {
        assert_eq!(e.kind(), Some(ServiceErrorKind::NoSuchUpload), "{ctx}: {e}");
    }
    assert!(c.pending_is_empty().await, "{ctx}");
    assert_eq!(c.store.head(k_ab.as_str()).await.unwrap(), None, "{ctx}");
}

/// Missing objects are `None`, not errors.
pub async fn missing_objects_are_none(c: Case) {
    let ctx = &c.ctx;
    let missing = format!("{}missing", c.p());
    assert_eq!(c.store.head(&missing).await.unwrap(), None, "{ctx}");
    assert_eq!(c.store.get(&missing).await.unwrap(), None, "{ctx}");
}

/// Listing returns exactly the objects under the prefix (key order, sizes), not those of a
/// prefix that merely starts the same; deleting removes one object, and a missing key is no
/// error.
pub async fn list_and_delete_objects(c: Case) {
    let ctx = &c.ctx;
    let sibling = KeyPrefix::new(&format!("{}x", c.p().trim_end_matches('/'))).unwrap();
    let names = ["a.bin", "d/b.bin", "d/e/c.bin"];
    for (i, name) in names.iter().enumerate() {
        let body = Bytes::from(data(1000 + i, 9));
        let opts = single_opts(c.alg, &body);
        c.store
            .put(&c.key(name), Body::Bytes(body), &opts)
            .await
            .unwrap();
    }
    let outside = ObjectKey::derive(&sibling, "a.bin").unwrap();
    let body = Bytes::from(data(10, 9));
    let opts = single_opts(c.alg, &body);
    c.store
        .put(&outside, Body::Bytes(body), &opts)
        .await
        .unwrap();
    let listed = uploader_core::store::list_all(&*c.store, c.p())
        .await
        .unwrap();
    let got: Vec<(String, u64)> = listed.iter().map(|o| (o.key.clone(), o.size)).collect();
    let want: Vec<(String, u64)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (c.key(n).into_string(), 1000 + i as u64))
        .collect();
    assert_eq!(got, want, "{ctx}");
    c.store
        .delete_object(c.key("d/b.bin").as_str())
        .await
        .unwrap();
    c.store
        .delete_object(c.key("never-there").as_str())
        .await
        .unwrap();
    let left: Vec<String> = uploader_core::store::list_all(&*c.store, c.p())
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(
        left,
        vec![
            c.key("a.bin").into_string(),
            c.key("d/e/c.bin").into_string()
        ],
        "{ctx}"
    );
    assert!(
        c.store.head(outside.as_str()).await.unwrap().is_some(),
        "{ctx}"
    );
}

//! The key rules, the scope, the reserved directory, and the record life cycle on the
//! in-memory store (the HTTP behaviour is tested end to end in tests/e2e/idempotency.rs).

use super::*;
use uploader_core::MemoryStore;

fn records(store: &Arc<MemoryStore>, config: IdempotencyConfig) -> Records {
    Records::new(
        Arc::clone(store) as _,
        KeyPrefix::new("root").unwrap(),
        config,
        RetryPolicy::default(),
    )
}

fn key(k: &str) -> IdempotencyKey {
    IdempotencyKey::parse(k.as_bytes()).unwrap()
}

#[test]
fn keys_are_printable_ascii_up_to_255_characters_bare_or_quoted() {
    assert_eq!(key("abc-123").as_str(), "abc-123");
    assert_eq!(key("\"8e03978e\"").as_str(), "8e03978e");
    assert_eq!(key(r#""a\"b\\c""#).as_str(), r#"a"b\c"#);
    assert_eq!(key(&"k".repeat(255)).as_str().len(), 255);
    for (bad, why) in [
        ("".to_owned(), "empty"),
        ("\"\"".to_owned(), "empty"),
        ("k".repeat(256), "longer than 255"),
        ("tab\there".to_owned(), "printable ASCII"),
        ("caf\u{e9}".to_owned(), "printable ASCII"),
        ("\"open".to_owned(), "no closing quote"),
        ("\"a\"b".to_owned(), "after its end"),
        (r#""a\x""#.to_owned(), "invalid escape"),
    ] {
        let e = IdempotencyKey::parse(bad.as_bytes()).unwrap_err();
        assert_eq!(e.kind, ProblemKind::InvalidIdempotencyKey, "{bad:?}");
        assert!(e.detail.contains(why), "{bad:?}: {}", e.detail);
    }
    let mut twice = HeaderMap::new();
    twice.append(&HEADER, HeaderValue::from_static("a"));
    twice.append(&HEADER, HeaderValue::from_static("b"));
    assert!(IdempotencyKey::from_headers(&twice).is_err());
    assert_eq!(
        IdempotencyKey::from_headers(&HeaderMap::new()).unwrap(),
        None
    );
}

#[test]
fn the_scope_is_the_token_digest_or_anonymous() {
    let tokens = Auth::new(&["token-one-0123456789".into(), "token-two-0123456789".into()]);
    let one = idempotency_scope(&tokens, Some(b"Bearer token-one-0123456789"));
    let two = idempotency_scope(&tokens, Some(b"Bearer token-two-0123456789"));
    assert_ne!(one, two);
    assert!(
        !one.0.contains("token-one"),
        "the token itself is not in the scope"
    );
    assert_eq!(
        idempotency_scope(&Auth::new(&[]), Some(b"Bearer x")).0,
        "anonymous"
    );
    assert_eq!(idempotency_scope(&Auth::new(&[]), None).0, "anonymous");
}

#[test]
fn only_the_reserved_directory_under_the_root_is_reserved() {
    let root = KeyPrefix::new("tenant").unwrap();
    for k in [
        "tenant/.uploader",
        "tenant/.uploader/",
        "tenant/.uploader/idempotency/x.json",
        "tenant/.UPLOADER/idempotency/x.json",
        "tenant/.Uploader",
    ] {
        assert!(is_reserved(&root, k), "{k}");
    }
    for k in [
        "tenant/.uploaderx/a",
        "tenant/a/.uploader/b",
        ".uploader/x",
        "tenant/uploader/x",
        "tenant/.uploadé/x",
    ] {
        assert!(!is_reserved(&root, k), "{k}");
    }
    assert!(is_reserved(&KeyPrefix::root(), ".uploader/idempotency/a"));
}

fn stored(status: u16) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        format!("{{\"status\":{status}}}"),
    )
        .into_response()
}

#[tokio::test]
async fn a_claim_blocks_then_replays_and_a_different_request_is_refused() {
    let store = Arc::new(MemoryStore::new());
    let r = records(&store, IdempotencyConfig::default());
    let (scope, k) = (Scope("anonymous".into()), key("k1"));
    let Begin::Claimed(claim) = r.begin(&scope, &k).await.unwrap() else {
        panic!("the first request claims the key")
    };
    assert!(matches!(r.begin(&scope, &k).await.unwrap(), Begin::Running));
    let other_scope = Scope("token:other".into());
    assert!(
        matches!(r.begin(&other_scope, &k).await.unwrap(), Begin::Claimed(_)),
        "another scope has its own keys"
    );
    let sent = claim.finish(stored(207), Some("fp".into())).await;
    assert_eq!(sent.status(), 207);
    let Begin::Completed(done) = r.begin(&scope, &k).await.unwrap() else {
        panic!("a finished key replays")
    };
    let replayed = done.replay(Some("fp")).unwrap();
    assert_eq!(replayed.status(), 207);
    assert_eq!(replayed.headers()[&REPLAYED], "true");
    let body = axum::body::to_bytes(replayed.into_body(), 1024)
        .await
        .unwrap();
    assert_eq!(&body[..], b"{\"status\":207}");
    let Begin::Completed(done) = r.begin(&scope, &k).await.unwrap() else {
        panic!()
    };
    assert_eq!(
        done.replay(Some("other")).unwrap_err().kind,
        ProblemKind::IdempotencyKeyReused
    );
}

#[tokio::test]
async fn a_5xx_or_an_incomplete_request_releases_the_key() {
    let store = Arc::new(MemoryStore::new());
    let r = records(&store, IdempotencyConfig::default());
    let (scope, k) = (Scope("anonymous".into()), key("k2"));
    for (status, fingerprint) in [(502, Some("fp".to_owned())), (201, None)] {
        let Begin::Claimed(claim) = r.begin(&scope, &k).await.unwrap() else {
            panic!("{status}: the key is free")
        };
        claim.finish(stored(status), fingerprint).await;
    }
    let Begin::Claimed(claim) = r.begin(&scope, &k).await.unwrap() else {
        panic!("the key is free")
    };
    drop(claim);
    // The release of an abandoned claim runs in the background.
    for _ in 0..100 {
        if matches!(r.begin(&scope, &k).await.unwrap(), Begin::Claimed(_)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("a dropped claim was not released");
}

#[tokio::test]
async fn expired_records_and_stale_claims_are_taken_over() {
    let store = Arc::new(MemoryStore::new());
    let short = IdempotencyConfig {
        ttl: Duration::from_millis(50),
        lease: Duration::from_millis(60),
    };
    let r = records(&store, short);
    let (scope, k) = (Scope("anonymous".into()), key("k3"));
    let Begin::Claimed(claim) = r.begin(&scope, &k).await.unwrap() else {
        panic!()
    };
    claim.finish(stored(201), Some("fp".into())).await;
    assert!(matches!(
        r.begin(&scope, &k).await.unwrap(),
        Begin::Completed(_)
    ));
    tokio::time::sleep(Duration::from_millis(80)).await;
    let Begin::Claimed(mut claim) = r.begin(&scope, &k).await.unwrap() else {
        panic!("an expired record counts as absent")
    };
    // A claim whose holder stops renewing it and never finishes (a crashed replica: its
    // record stays) ...
    claim.renewal.take().unwrap().stop().await;
    claim.finished = true;
    drop(claim);
    assert!(matches!(r.begin(&scope, &k).await.unwrap(), Begin::Running));
    tokio::time::sleep(Duration::from_millis(100)).await;
    // ... is free once its lease ran out.
    assert!(matches!(
        r.begin(&scope, &k).await.unwrap(),
        Begin::Claimed(_)
    ));
}

#[tokio::test]
async fn a_running_claim_is_renewed_past_its_lease() {
    let store = Arc::new(MemoryStore::new());
    let r = records(
        &store,
        IdempotencyConfig {
            ttl: DEFAULT_TTL,
            lease: Duration::from_millis(150),
        },
    );
    let (scope, k) = (Scope("anonymous".into()), key("k4"));
    let Begin::Claimed(claim) = r.begin(&scope, &k).await.unwrap() else {
        panic!()
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        matches!(r.begin(&scope, &k).await.unwrap(), Begin::Running),
        "the holder renewed its lease"
    );
    drop(claim);
}

/// A memory store whose reads fail while `failing` is above zero (one per read); the
/// FaultyStore of core injects faults into writes only.
#[derive(Debug)]
struct FlakyReads {
    inner: MemoryStore,
    failing: std::sync::atomic::AtomicU32,
    failed: std::sync::atomic::AtomicU32,
}

impl FlakyReads {
    fn new() -> FlakyReads {
        FlakyReads {
            inner: MemoryStore::new(),
            failing: 0.into(),
            failed: 0.into(),
        }
    }

    fn fail_next(&self, n: u32) {
        self.failing.store(n, std::sync::atomic::Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl ObjectStore for FlakyReads {
    async fn put(
        &self,
        key: &ObjectKey,
        body: Body,
        opts: &PutOptions,
    ) -> Result<uploader_core::store::PutResult, StoreError> {
        self.inner.put(key, body, opts).await
    }
    async fn create_multipart(
        &self,
        key: &ObjectKey,
        opts: &PutOptions,
    ) -> Result<uploader_core::store::UploadId, StoreError> {
        self.inner.create_multipart(key, opts).await
    }
    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload_id: &uploader_core::store::UploadId,
        part_number: uploader_core::store::PartNumber,
        body: Body,
        checksum: Option<&uploader_core::Checksum>,
    ) -> Result<uploader_core::store::PartReceipt, StoreError> {
        self.inner
            .upload_part(key, upload_id, part_number, body, checksum)
            .await
    }
    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload_id: &uploader_core::store::UploadId,
        parts: &[uploader_core::store::PartReceipt],
    ) -> Result<uploader_core::store::PutResult, StoreError> {
        self.inner.complete_multipart(key, upload_id, parts).await
    }
    async fn abort_multipart(
        &self,
        key: &str,
        upload_id: &uploader_core::store::UploadId,
    ) -> Result<(), StoreError> {
        self.inner.abort_multipart(key, upload_id).await
    }
    async fn head(
        &self,
        key: &str,
    ) -> Result<Option<uploader_core::store::ObjectMeta>, StoreError> {
        self.inner.head(key).await
    }
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        use std::sync::atomic::Ordering::SeqCst;
        let left = self.failing.load(SeqCst);
        if left > 0 {
            self.failing.store(left - 1, SeqCst);
            self.failed.fetch_add(1, SeqCst);
            return Err(StoreError::Other {
                operation: "GetObject",
                message: "injected read failure".into(),
            });
        }
        self.inner.get(key).await
    }
    async fn list_multipart_uploads(
        &self,
        prefix: &str,
    ) -> Result<Vec<uploader_core::store::PendingUpload>, StoreError> {
        self.inner.list_multipart_uploads(prefix).await
    }
    async fn list_objects_page(
        &self,
        prefix: &str,
        after: Option<String>,
    ) -> Result<uploader_core::store::ListPage, StoreError> {
        self.inner.list_objects_page(prefix, after).await
    }
    async fn delete_object(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete_object(key).await
    }
}

/// A renewal whose read of the record fails keeps renewing at the next tick: the lease does
/// not run out under a running request (else a retry would take over and the request run
/// twice).
#[tokio::test]
async fn a_failed_read_does_not_stop_the_renewals() {
    let store = Arc::new(FlakyReads::new());
    let r = Records::new(
        Arc::clone(&store) as _,
        KeyPrefix::new("root").unwrap(),
        IdempotencyConfig {
            ttl: DEFAULT_TTL,
            lease: Duration::from_millis(150),
        },
        RetryPolicy::default(),
    );
    let (scope, k) = (Scope("anonymous".into()), key("k5"));
    let Begin::Claimed(claim) = r.begin(&scope, &k).await.unwrap() else {
        panic!()
    };
    // The first renewal (at 50 ms) fails to read the record.
    store.fail_next(1);
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(
        store.failed.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the fault fired"
    );
    assert!(
        matches!(r.begin(&scope, &k).await.unwrap(), Begin::Running),
        "the holder went on renewing after the failed read"
    );
    claim.finish(stored(201), Some("fp".into())).await;
}

/// A claim taken over (its lease ran out, another request claimed the key) neither
/// overwrites nor deletes the newer claim when it finishes or is released.
#[tokio::test]
async fn a_claim_taken_over_leaves_the_newer_claim_alone() {
    let store = Arc::new(MemoryStore::new());
    let r = records(&store, IdempotencyConfig::default());
    let (scope, k) = (Scope("anonymous".into()), key("k6"));
    for finish in [true, false] {
        let Begin::Claimed(old) = r.begin(&scope, &k).await.unwrap() else {
            panic!()
        };
        // Another replica takes the key over (as after a stall past the lease).
        let object = r.object_key(&scope, &k);
        let newer = r.running("newer-claim", now_ms());
        r.write(&object, &newer, false).await.unwrap();
        if finish {
            let sent = old.finish(stored(201), Some("fp".into())).await;
            assert_eq!(sent.status(), 201, "the client still gets its answer");
        } else {
            old.release().await;
        }
        let now = r
            .read(&object)
            .await
            .unwrap()
            .expect("the newer record stays");
        assert_eq!(now.claim, "newer-claim", "finish={finish}");
        assert_eq!(now.state, RecordState::Running, "finish={finish}");
        store.delete_object(object.as_str()).await.unwrap();
    }
}

/// A response larger than what is stored for replays reaches the client whole; the key is
/// released (not stored), and a 429 is never stored either.
#[tokio::test]
async fn a_large_response_is_sent_whole_and_a_429_is_not_stored() {
    let store = Arc::new(MemoryStore::new());
    let r = records(&store, IdempotencyConfig::default());
    let (scope, k) = (Scope("anonymous".into()), key("k7"));
    let big = "x".repeat(MAX_STORED_BODY + 1);
    let Begin::Claimed(claim) = r.begin(&scope, &k).await.unwrap() else {
        panic!()
    };
    let sent = claim
        .finish(
            (StatusCode::CREATED, big.clone()).into_response(),
            Some("fp".into()),
        )
        .await;
    assert_eq!(sent.status(), 201);
    let body = axum::body::to_bytes(sent.into_body(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(body.len(), big.len(), "the whole body reaches the client");
    let Begin::Claimed(claim) = r.begin(&scope, &k).await.unwrap() else {
        panic!("a response too large to store releases the key")
    };
    let sent = claim.finish(stored(429), Some("fp".into())).await;
    assert_eq!(sent.status(), 429);
    assert!(
        matches!(r.begin(&scope, &k).await.unwrap(), Begin::Claimed(_)),
        "a 429 releases the key"
    );
}

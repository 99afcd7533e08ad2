//! The store conformance suite against every store: one test per behaviour per store
//! (`stores::<store>::<behaviour>`), each with both checksum algorithms.

use std::sync::Arc;

use uploader_core::{ChecksumAlgorithm, EmbeddedS3, MemoryStore, ObjectStore, S3Store};
use uploader_e2e::servers::{EMBEDDED, MOTO, Quirks, RCLONE, ThirdParty};

const MEMORY: Quirks = Quirks {
    name: "memory",
    ..EMBEDDED
};
const ALGORITHMS: [ChecksumAlgorithm; 2] = [ChecksumAlgorithm::Crc32c, ChecksumAlgorithm::Md5];

/// A store under test and whatever keeps its server running.
struct Fixture {
    store: Arc<dyn ObjectStore>,
    quirks: Quirks,
    _server: Box<dyn std::any::Any + Send>,
}

async fn memory() -> Fixture {
    Fixture {
        store: Arc::new(MemoryStore::new()),
        quirks: MEMORY,
        _server: Box::new(()),
    }
}

async fn embedded() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let server = EmbeddedS3::start(dir.path(), "conf-bucket").await.unwrap();
    Fixture {
        store: Arc::new(S3Store::connect(&server.s3_config()).await.unwrap()),
        quirks: EMBEDDED,
        _server: Box::new((server, dir)),
    }
}

async fn rclone() -> Fixture {
    let server = ThirdParty::rclone();
    assert_eq!(server.quirks.name, RCLONE.name);
    Fixture {
        store: Arc::new(server.store().await),
        quirks: server.quirks,
        _server: Box::new(server),
    }
}

async fn moto() -> Fixture {
    let server = ThirdParty::moto().await;
    assert_eq!(server.quirks.name, MOTO.name);
    Fixture {
        store: Arc::new(server.store().await),
        quirks: server.quirks,
        _server: Box::new(server),
    }
}

/// `mod <store> { #[tokio::test] async fn <behaviour>() ... }` for every store and behaviour
/// of tests/conformance.rs.
macro_rules! conformance_tests {
    ($($store:ident),* $(,)?) => {$(
        mod $store {
            conformance_tests!(@behaviours $store:
                put_round_trips_bytes_and_content_type,
                put_from_pieces,
                bad_checksum_is_refused,
                conditional_put_refuses_existing_key,
                multipart_round_trip_and_listing,
                abort_removes_upload_and_object_never_appears,
                bad_part_checksum_is_refused,
                abort_twice_is_no_such_upload,
                missing_objects_are_none,
                list_and_delete_objects,
            );
        }
    )*};
    (@behaviours $store:ident: $($behaviour:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $behaviour() {
            let f = super::$store().await;
            for alg in super::ALGORITHMS {
                let case = uploader_e2e::conformance::Case::new(
                    std::sync::Arc::clone(&f.store),
                    alg,
                    f.quirks,
                    stringify!($behaviour),
                );
                uploader_e2e::conformance::$behaviour(case).await;
            }
        }
    )*};
}

conformance_tests!(memory, embedded, rclone, moto);

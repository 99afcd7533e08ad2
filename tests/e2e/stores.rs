//! The store conformance suite against every store, and the pipeline against third-party
//! servers with an independent read-back (boto3).

use std::sync::Arc;

use uploader_core::{ChecksumAlgorithm, EmbeddedS3, MemoryStore, ObjectStore, S3Store};
use uploader_e2e::conformance::suite;
use uploader_e2e::servers::{EMBEDDED, MOTO, Quirks, ThirdParty};

const MEMORY: Quirks = EMBEDDED;

#[tokio::test]
async fn memory_store_conforms() {
    for alg in [ChecksumAlgorithm::Crc32c, ChecksumAlgorithm::Md5] {
        suite(Arc::new(MemoryStore::new()), alg, MEMORY).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_endpoint_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let server = EmbeddedS3::start(dir.path(), "conf-bucket").await.unwrap();
    for alg in [ChecksumAlgorithm::Crc32c, ChecksumAlgorithm::Md5] {
        let store: Arc<dyn ObjectStore> =
            Arc::new(S3Store::connect(&server.s3_config()).await.unwrap());
        suite(store, alg, EMBEDDED).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rclone_serve_s3_conforms() {
    let server = ThirdParty::rclone();
    for alg in [ChecksumAlgorithm::Crc32c, ChecksumAlgorithm::Md5] {
        suite(Arc::new(server.store().await), alg, server.quirks).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_server_conforms() {
    let server = ThirdParty::moto().await;
    assert_eq!(server.quirks.name, MOTO.name);
    for alg in [ChecksumAlgorithm::Crc32c, ChecksumAlgorithm::Md5] {
        suite(Arc::new(server.store().await), alg, server.quirks).await;
    }
}

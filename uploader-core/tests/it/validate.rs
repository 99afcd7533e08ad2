//! The fail-fast check gives a distinct, actionable error for each way a set-up can be wrong.

use std::time::{Duration, Instant};

use uploader_core::store::s3::EndpointError;
use uploader_core::validate::{CheckError, check};
use uploader_core::{EmbeddedS3, KeyPrefix, S3Config, S3Store, StaticCredentials};

async fn run_check(cfg: &S3Config) -> Result<(), CheckError> {
    let store = S3Store::connect(cfg).await.unwrap();
    check(&store, &KeyPrefix::new("p").unwrap(), true)
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_misconfiguration_has_its_own_error() {
    let dir = tempfile::tempdir().unwrap();
    let server = EmbeddedS3::start(dir.path(), "good-bucket").await.unwrap();

    // Everything right, including the write probe.
    run_check(&server.s3_config()).await.unwrap();

    // Wrong secret key.
    let mut cfg = server.s3_config();
    cfg.credentials = Some(StaticCredentials {
        access_key_id: server.credentials().access_key_id.clone(),
        secret_access_key: "not-the-secret-not-the-secret-not-the-se".into(),
    });
    let err = run_check(&cfg).await.unwrap_err();
    assert!(
        matches!(err, CheckError::CredentialsRejected { .. }),
        "{err}"
    );
    assert!(
        !err.to_string().contains("not-the-secret"),
        "the secret leaked: {err}"
    );

    // Unknown bucket.
    let mut cfg = server.s3_config();
    cfg.bucket = "missing-bucket".into();
    let err = run_check(&cfg).await.unwrap_err();
    assert!(matches!(err, CheckError::BucketMissing { .. }), "{err}");
    assert!(err.to_string().contains("missing-bucket"));

    // Nothing listening: connection refused, reported quickly.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cfg = server.s3_config();
    cfg.endpoint_url = Some(format!("http://127.0.0.1:{port}"));
    let t0 = Instant::now();
    let err = run_check(&cfg).await.unwrap_err();
    assert!(
        matches!(err, CheckError::EndpointUnreachable { .. }),
        "{err}"
    );
    assert!(t0.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn plain_http_to_a_non_loopback_host_is_refused_before_any_request() {
    let cfg = S3Config {
        bucket: "b".into(),
        endpoint_url: Some("http://192.0.2.10:9000".into()),
        ..S3Config::default()
    };
    let err = S3Store::connect(&cfg).await.unwrap_err();
    assert!(matches!(err, EndpointError::InsecureHttp(_)));
    assert!(
        err.to_string().contains("--allow-http"),
        "says how to opt in: {err}"
    );
    let allowed = S3Config {
        allow_http: true,
        ..cfg
    };
    assert!(S3Store::connect(&allowed).await.is_ok());
}

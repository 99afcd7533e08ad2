//! The `uploader` binary and the daemon against every server — the embedded endpoint,
//! `rclone serve s3` and `moto_server` — with every object read back by boto3 (an independent
//! client) and compared: bytes, Content-Type, metadata.

use std::path::Path;
use std::process::Command;

use uploader_core::EmbeddedS3;
use uploader_e2e::servers::{ThirdParty, boto3_get};
use uploader_e2e::{data, describe, json_lines, run, uploader, write};

use crate::harness::Target;

const MIB: usize = 1024 * 1024;

fn tree(root: &Path) -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let files = vec![
        ("notes.txt", b"plain text\n".to_vec(), "text/plain"),
        ("data/table.csv", b"a,b\n1,2\n".to_vec(), "text/csv"),
        (
            "data/doc.json",
            b"{\"k\": [1, 2]}".to_vec(),
            "application/json",
        ),
        (
            "deep/er/blob.bin",
            data(12 * MIB + 3, 11),
            "application/octet-stream",
        ),
        (
            "space name/ünï.txt",
            "ünïcödé\n".as_bytes().to_vec(),
            "text/plain",
        ),
    ];
    for (rel, bytes, _) in &files {
        write(root, rel, bytes);
    }
    files
}

async fn check_cli_upload(t: &Target) {
    let home = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let files = tree(src.path());
    let mut c = uploader(home.path());
    c.env("AWS_ACCESS_KEY_ID", &t.creds.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", &t.creds.secret_access_key)
        .env("AWS_REGION", "us-east-1")
        .args(["upload", "--json", "--endpoint-url", &t.endpoint])
        .args(["--multipart-threshold", "5MiB", "--part-size", "5MiB"])
        .args([
            "--allow-mime",
            "application/octet-stream",
            "--metadata",
            "origin=e2e",
        ])
        .arg(src.path())
        .arg(format!("s3://{}/cli/", t.bucket));
    let out = tokio::task::spawn_blocking(move || run(&mut c))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}: {}", t.name, describe(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.last().unwrap()["uploaded"], files.len(), "{}", t.name);
    for (rel, bytes, mime) in &files {
        let key = format!("cli/{rel}");
        let (got, ct, meta) = boto3_get(&t.endpoint, &t.creds, &t.bucket, &key);
        assert!(got == *bytes, "{}: {key}: bytes differ", t.name);
        assert_eq!(ct.as_deref(), Some(*mime), "{}: {key}", t.name);
        // rclone returns metadata keys capitalised ("Origin"); HTTP header names are
        // case-insensitive, so compare them that way.
        let origin = meta
            .as_object()
            .and_then(|m| m.iter().find(|(k, _)| k.eq_ignore_ascii_case("origin")))
            .map(|(_, v)| v.clone());
        assert_eq!(origin, Some("e2e".into()), "{}: {key}: {meta}", t.name);
    }

    // --no-clobber holds even where the server ignores If-None-Match.
    write(src.path(), "notes.txt", b"changed\n");
    let mut c = uploader(home.path());
    c.env("AWS_ACCESS_KEY_ID", &t.creds.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", &t.creds.secret_access_key)
        .env("AWS_REGION", "us-east-1")
        .args([
            "upload",
            "--json",
            "--no-clobber",
            "--endpoint-url",
            &t.endpoint,
        ])
        .arg(src.path().join("notes.txt"))
        .arg(format!("s3://{}/cli/", t.bucket));
    let out = tokio::task::spawn_blocking(move || run(&mut c))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}: {}", t.name, describe(&out));
    assert_eq!(json_lines(&out)[0]["status"], "skipped", "{}", t.name);
    let (got, _, _) = boto3_get(&t.endpoint, &t.creds, &t.bucket, "cli/notes.txt");
    assert_eq!(got, b"plain text\n", "{}: no-clobber overwrote", t.name);
}

async fn check_daemon(t: &Target) {
    use std::sync::Arc;
    let store = Arc::new(uploader_core::S3Store::connect(&t.s3).await.unwrap());
    let alg =
        uploader_core::validate::detect_checksum(store.as_ref(), &uploader_core::KeyPrefix::root())
            .await
            .unwrap();
    let uploader = uploader_core::Uploader::builder()
        .with_store(store.clone())
        .with_checksum(alg)
        .build()
        .unwrap();
    let state = uploader_server::AppState::new(
        uploader,
        uploader_core::KeyPrefix::new("daemon").unwrap(),
        uploader_server::Limits::default(),
        &[],
        Some(store),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, uploader_server::app(state)).await });
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.txt", b"from the daemon\n");
    let b = write(dir.path(), "b.json", b"[1,2,3]");
    let url = format!("http://{addr}/v1/uploads?prefix=batch");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}"])
            .arg("-F")
            .arg(format!("file=@{}", a.display()))
            .arg("-F")
            .arg(format!("file=@{}", b.display()))
            .arg(url)
            .output()
            .expect("curl runs")
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.trim_end().ends_with("201"), "{}: {text}", t.name);
    for (key, want, mime) in [
        (
            "daemon/batch/a.txt",
            &b"from the daemon\n"[..],
            "text/plain",
        ),
        ("daemon/batch/b.json", &b"[1,2,3]"[..], "application/json"),
    ] {
        let (got, ct, _) = boto3_get(&t.endpoint, &t.creds, &t.bucket, key);
        assert_eq!(got, want, "{}: {key}", t.name);
        assert_eq!(ct.as_deref(), Some(mime), "{}: {key}", t.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let server = EmbeddedS3::start(dir.path(), "interop-bucket")
        .await
        .unwrap();
    let t = Target::embedded(&server);
    check_cli_upload(&t).await;
    check_daemon(&t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rclone_serve_s3() {
    let server = ThirdParty::rclone();
    let t = Target::third_party(&server, "rclone");
    check_cli_upload(&t).await;
    check_daemon(&t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_server() {
    let server = ThirdParty::moto().await;
    let t = Target::third_party(&server, "moto");
    check_cli_upload(&t).await;
    check_daemon(&t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checksum_detection_per_server() {
    use uploader_core::ChecksumAlgorithm::{Crc32c, Md5};
    use uploader_core::validate::detect_checksum;
    let root = uploader_core::KeyPrefix::root();
    let dir = tempfile::tempdir().unwrap();
    let embedded = EmbeddedS3::start(dir.path(), "probe-bucket").await.unwrap();
    let store = uploader_core::S3Store::connect(&embedded.s3_config())
        .await
        .unwrap();
    assert_eq!(detect_checksum(&store, &root).await.unwrap(), Crc32c);
    let rclone = ThirdParty::rclone();
    assert_eq!(
        detect_checksum(&rclone.store().await, &root).await.unwrap(),
        Md5
    );
    // moto verifies nothing: the cheapest checksum is sent.
    let moto = ThirdParty::moto().await;
    assert_eq!(
        detect_checksum(&moto.store().await, &root).await.unwrap(),
        Crc32c
    );
    // The probe leaves nothing behind.
    use uploader_core::ObjectStore as _;
    assert!(store.list_multipart_uploads("").await.unwrap().is_empty());
    assert!(
        rclone
            .store()
            .await
            .list_multipart_uploads("")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        moto.store()
            .await
            .list_multipart_uploads("")
            .await
            .unwrap()
            .is_empty()
    );
}

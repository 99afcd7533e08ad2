//! The `uploader serve` binary: SIGTERM mid-batch.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use uploader_core::{EmbeddedS3, ObjectStore as _, S3Store};
use uploader_e2e::servers::free_port;
use uploader_e2e::{data, uploader};

/// SIGTERM while a large file is streaming in: the daemon stops accepting, gives the request
/// its grace period, then aborts the upload, answers with a well-formed problem listing the
/// file, and exits 0; no multipart upload is left open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_upload_aborts_answers_and_exits() {
    let home = tempfile::tempdir().unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut daemon = uploader(home.path())
        .args(["serve", "--bucket", "sig-bucket", "--shutdown-grace", "1s"])
        .args(["--allow-mime", "application/octet-stream", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--embedded-s3")
        .arg(store_dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sock = loop {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
            break s;
        }
        assert!(Instant::now() < deadline, "the daemon did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    let boundary = "sigterm-boundary";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n\r\n"
    );
    let total = head.len() + (64 << 20) + 2 + boundary.len() + 6;
    write!(
        sock,
        "POST /v1/uploads HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n{head}"
    )
    .unwrap();
    // 24 MiB in (a multipart upload is open), then SIGTERM, then the client stalls.
    for i in 0..24 {
        sock.write_all(&data(1 << 20, i)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    let term = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let mut resp = String::new();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let _ = sock.read_to_string(&mut resp);
    assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
    let body = resp.split("\r\n\r\n").nth(1).unwrap();
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["type"], "/problems/shutting_down");
    assert_eq!(json["results"][0]["status"], "failed");
    assert_eq!(json["results"][0]["error"]["code"], "cancelled");

    let started = Instant::now();
    let status = loop {
        if let Some(s) = daemon.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the daemon did not exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");

    // Nothing left open (the embedded endpoint keeps pending uploads on disk).
    let server = EmbeddedS3::start(store_dir.path(), "sig-bucket")
        .await
        .unwrap();
    let store = S3Store::connect(&server.s3_config()).await.unwrap();
    assert!(store.list_multipart_uploads("").await.unwrap().is_empty());
    assert!(store.head("big.bin").await.unwrap().is_none());
}

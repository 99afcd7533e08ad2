//! The `uploader serve` binary: SIGTERM mid-batch, the access log, start-up refusals.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use uploader_core::{EmbeddedS3, ObjectStore as _, S3Store};
use uploader_e2e::servers::free_port;
use uploader_e2e::{data, uploader, write};

use crate::harness::{Daemon, Target};

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

const TOKEN: &str = "access-log-token-0123456789";

/// `--log-format json`: one JSON access line per request with its id, method, path (no
/// query), status, files, bytes, duration and client; the token appears nowhere in the log,
/// neither the right one nor a wrong one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_has_one_json_line_per_request_and_no_secret() {
    let (home, src, store_dir) = (tempdir(), tempdir(), tempdir());
    let server = EmbeddedS3::start(store_dir.path(), "access").await.unwrap();
    let t = Target::embedded(&server);
    let flags = [
        "--log-format",
        "json",
        "--tokens",
        TOKEN,
        "--checksum",
        "crc32c",
    ];
    let d =
        tokio::task::block_in_place(|| Daemon::start_with(&t, home.path(), &t.endpoint, &flags));
    let a = write(src.path(), "a.txt", b"first file\n");
    let b = write(src.path(), "b.csv", b"x,y\n1,2\n");
    let auth = format!("Authorization: Bearer {TOKEN}");
    let (status, json) = d
        .post_with(&[&a, &b], "logs", &[&auth, "x-request-id: e2e-access-1"])
        .await;
    assert_eq!(status, 201, "{json}");
    let wrong = "Authorization: Bearer wrong-token-9876543210zz";
    let (status, json) = d
        .post_with(&[&a], "logs", &[wrong, "x-request-id: e2e-access-2"])
        .await;
    assert_eq!(status, 401, "{json}");

    let log = d.log();
    let mut access = Vec::new();
    for line in log.lines().filter(|l| !l.is_empty()) {
        if line.starts_with("uploader serve:") {
            continue; // the start-up lines, for a person
        }
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v["target"] == "uploader_server::access" {
            access.push(v);
        }
    }
    assert_eq!(access.len(), 2, "{log}");
    let (ok, refused) = (&access[0], &access[1]);
    assert_eq!(ok["span"]["request_id"], "e2e-access-1", "{ok}");
    assert_eq!(ok["span"]["method"], "POST");
    assert_eq!(ok["span"]["path"], "/v1/uploads", "the query is not logged");
    assert!(
        ok["span"]["client"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{ok}"
    );
    assert_eq!(ok["status"], 201);
    assert_eq!(ok["files"], 2);
    assert_eq!(ok["bytes"], 11 + 8);
    assert!(ok["duration_ms"].as_f64().unwrap() > 0.0, "{ok}");
    assert_eq!(ok["level"], "INFO");
    assert_eq!(refused["span"]["request_id"], "e2e-access-2");
    assert_eq!(refused["status"], 401);
    assert_eq!(refused["files"], 0);

    for secret in [TOKEN, "wrong-token-9876543210zz", "Bearer", "first file"] {
        assert!(!log.contains(secret), "{secret:?} is in the log:\n{log}");
    }
}

/// A `--cors-origin` that is not an origin stops the daemon before it starts: exit 2 and the
/// reason.
#[test]
fn a_malformed_cors_origin_is_a_usage_error() {
    let (home, store_dir) = (tempdir(), tempdir());
    for (origin, reason) in [
        ("example.com", "no scheme"),
        ("https://a.example.com,*", "`*` is not accepted"),
        ("https://example.com/app", "no path"),
    ] {
        let out = uploader_e2e::run(
            uploader(home.path())
                .args(["serve", "--bucket", "b", "--cors-origin", origin])
                .arg("--embedded-s3")
                .arg(store_dir.path()),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{origin}: {err}");
        assert!(
            err.contains("--cors-origin") && err.contains(reason),
            "{origin}: {err}"
        );
    }
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

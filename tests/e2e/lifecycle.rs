//! The one upload life cycle, through every path that uses it — the library's file source and
//! stream source, the CLI binary, and the daemon binary over a real socket — against every
//! server (the embedded endpoint, `rclone serve s3`, `moto_server`), through a proxy that loses
//! the first CompleteMultipartUpload answer after the server has completed the upload.
//!
//! Servers answer the retried Complete differently (moto completes again, rclone says
//! NoSuchUpload, s3s-fs AccessDenied). On every path the file must be reported uploaded, be
//! stored byte for byte, and no Abort may be sent for the completed upload. And the evidence
//! must identify *this* upload: an older object of the same size under the key is not taken for
//! it.

use std::convert::Infallible;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use uploader_core::store::PutOptions;
use uploader_core::{Body, EmbeddedS3, FileOutcome, KeyPrefix, ObjectKey, ObjectStore, UploadItem};
use uploader_e2e::proxy::{Fault, FaultPlan, Op, Proxy};
use uploader_e2e::servers::ThirdParty;
use uploader_e2e::{data, describe, json_lines, run, write};

use crate::harness::{Daemon, Target};

const MIB: usize = 1024 * 1024;
/// Two parts of 5 MiB and 1 MiB.
const SIZE: usize = 6 * MIB;

/// A proxy that loses the first CompleteMultipartUpload answer.
async fn losing_first_complete(t: &Target) -> Proxy {
    let plan = FaultPlan::first(Op::CompleteMultipart, Fault::DropResponse, 1);
    Proxy::start(&t.endpoint, plan).await
}

/// After one path ran through `proxy`: the lost answer was really lost, the Complete was
/// retried, no Abort was sent, the object holds `want`, and nothing is pending.
async fn assert_recovered(t: &Target, path: &str, proxy: &Proxy, key: &str, want: &[u8]) {
    let ctx = format!("{} / {path}", t.name);
    let stats = &proxy.stats;
    assert_eq!(
        stats.faults.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "{ctx}: the fault fired"
    );
    assert!(
        stats.seen(Op::CompleteMultipart) >= 2,
        "{ctx}: Complete was retried"
    );
    assert_eq!(
        stats.seen(Op::AbortMultipart),
        0,
        "{ctx}: an Abort was sent for a completed upload"
    );
    let direct = t.direct().await;
    let got = direct
        .get(key)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{ctx}: {key} missing"));
    assert!(got == want, "{ctx}: {key}: wrong bytes");
    let prefix = key.rsplit_once('/').map_or("", |(p, _)| p);
    let pending = direct.list_multipart_uploads(prefix).await.unwrap();
    assert!(pending.is_empty(), "{ctx}: pending {pending:?}");
}

async fn library_file_path(t: &Target) {
    let proxy = losing_first_complete(t).await;
    let up = t.uploader_via(&proxy).await;
    let dir = tempfile::tempdir().unwrap();
    let body = data(SIZE, 71);
    let path = write(dir.path(), "f.bin", &body);
    let key = ObjectKey::derive(&KeyPrefix::new("lost/lib-file").unwrap(), "f.bin").unwrap();
    let report = up
        .upload_files(vec![UploadItem {
            path,
            key: key.clone(),
        }])
        .wait()
        .await;
    let outcome = &report.files[0].outcome;
    assert!(
        matches!(outcome, FileOutcome::Uploaded { parts: 2, .. }),
        "{}: {outcome:?}",
        t.name
    );
    assert_recovered(t, "library file", &proxy, key.as_str(), &body).await;
}

async fn library_stream_path(t: &Target) {
    let proxy = losing_first_complete(t).await;
    let up = t.uploader_via(&proxy).await;
    let body = data(SIZE, 72);
    let key = ObjectKey::derive(&KeyPrefix::new("lost/lib-stream").unwrap(), "s.bin").unwrap();
    let pieces: Vec<Result<Bytes, Infallible>> = body
        .chunks(64 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let stream = futures::stream::iter(pieces);
    let upload = up
        .upload_stream(3, key.clone(), stream, None, &CancellationToken::new())
        .await;
    let result = upload.wait().await;
    assert_eq!(result.index, 3, "{}: the stream keeps its index", t.name);
    assert!(
        matches!(result.outcome, FileOutcome::Uploaded { parts: 2, .. }),
        "{}: {:?}",
        t.name,
        result.outcome
    );
    assert_recovered(t, "library stream", &proxy, key.as_str(), &body).await;
}

async fn cli_path(t: &Target) {
    let proxy = losing_first_complete(t).await;
    let home = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let body = data(SIZE, 73);
    write(src.path(), "c.bin", &body);
    let mut c = t.command(home.path());
    // A fixed checksum: `auto` would probe the endpoint with a multipart upload that it
    // aborts, through the proxy that counts Aborts.
    c.args(["upload", "--json", "--retries", "3", "--checksum", "crc32c"])
        .args(["--endpoint-url", &proxy.endpoint()])
        .args(["--multipart-threshold", "5MiB", "--part-size", "5MiB"])
        .args(["--allow-mime", "application/octet-stream"])
        .arg(src.path().join("c.bin"))
        .arg(format!("s3://{}/lost/cli/", t.bucket));
    let out = tokio::task::spawn_blocking(move || run(&mut c))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}: {}", t.name, describe(&out));
    assert_eq!(
        json_lines(&out)[0]["status"],
        "uploaded",
        "{}: {}",
        t.name,
        describe(&out)
    );
    assert_recovered(t, "cli", &proxy, "lost/cli/c.bin", &body).await;
}

async fn daemon_path(t: &Target) {
    let proxy = losing_first_complete(t).await;
    let home = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(t, home.path(), &proxy.endpoint());
    let src = tempfile::tempdir().unwrap();
    let body = data(SIZE, 74);
    let small = data(1000, 75);
    let f = write(src.path(), "d.bin", &body);
    let g = write(src.path(), "e.bin", &small);
    let (status, json) = daemon.post(&[&g, &f], "lost/daemon").await;
    assert_eq!(status, 201, "{}: {json}", t.name);
    assert_eq!(json["results"][1]["index"], 1, "{}: {json}", t.name);
    assert_eq!(
        json["results"][1]["status"], "uploaded",
        "{}: {json}",
        t.name
    );
    assert_recovered(t, "daemon", &proxy, "lost/daemon/d.bin", &body).await;
}

async fn every_path(t: &Target) {
    library_file_path(t).await;
    library_stream_path(t).await;
    cli_path(t).await;
    daemon_path(t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_complete_answer_is_recognised_on_every_path_on_the_embedded_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let server = EmbeddedS3::start(dir.path(), "lost-bucket").await.unwrap();
    every_path(&Target::embedded(&server)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_complete_answer_is_recognised_on_every_path_on_rclone() {
    let server = ThirdParty::rclone();
    every_path(&Target::third_party(&server, "rclone")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_complete_answer_is_recognised_on_every_path_on_moto() {
    let server = ThirdParty::moto().await;
    every_path(&Target::third_party(&server, "moto")).await;
}

/// A Complete that really failed (every attempt answered 500) while an older object of the same
/// size sits under the key: the size matches, the ETag does not, so the file is reported failed,
/// the upload is aborted, and the older object is untouched — on both body sources.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_object_of_the_same_size_is_not_taken_for_a_failed_complete() {
    let dir = tempfile::tempdir().unwrap();
    let server = EmbeddedS3::start(dir.path(), "older-bucket").await.unwrap();
    let t = Target::embedded(&server);
    let direct = t.direct().await;
    let older = data(SIZE, 80);
    let plan = FaultPlan {
        seed: 1,
        rate: 1.0,
        faults: vec![Fault::InternalError],
        ops: vec![Op::CompleteMultipart],
        limit: None,
    };
    let proxy = Proxy::start(&t.endpoint, plan).await;
    let up = t.uploader_via(&proxy).await;
    let src = tempfile::tempdir().unwrap();
    for (name, seed) in [("file.bin", 81u64), ("stream.bin", 82)] {
        let key = ObjectKey::derive(&KeyPrefix::new("older").unwrap(), name).unwrap();
        direct
            .put(
                &key,
                Body::Bytes(older.clone().into()),
                &PutOptions::default(),
            )
            .await
            .unwrap();
        let body = data(SIZE, seed);
        let outcome = if name == "file.bin" {
            let path = write(src.path(), name, &body);
            let report = up
                .upload_files(vec![UploadItem {
                    path,
                    key: key.clone(),
                }])
                .wait()
                .await;
            report.files[0].outcome.clone()
        } else {
            let pieces: Vec<Result<Bytes, Infallible>> = vec![Ok(body.clone().into())];
            let stream = futures::stream::iter(pieces);
            up.upload_stream(0, key.clone(), stream, None, &CancellationToken::new())
                .await
                .wait()
                .await
                .outcome
        };
        assert!(
            matches!(outcome, FileOutcome::Failed { .. }),
            "{name}: {outcome:?}"
        );
        assert!(
            direct.get(key.as_str()).await.unwrap().unwrap() == older,
            "{name}: the older object changed"
        );
    }
    assert!(
        proxy.stats.seen(Op::AbortMultipart) >= 2,
        "the failed uploads were aborted"
    );
    assert!(
        direct
            .list_multipart_uploads("older")
            .await
            .unwrap()
            .is_empty()
    );
}

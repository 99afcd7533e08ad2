//! Fault tolerance through a fault-injecting proxy in front of a real server (the embedded
//! endpoint), with seeded, reproducible faults. After every faulty run: each file is either
//! reported uploaded AND present with the right bytes, or reported failed with a reason; no
//! multipart upload is left pending; the CLI exits with the code its summary implies.

use std::sync::Arc;
use std::time::Duration;

use uploader_core::{
    EmbeddedS3, FileOutcome, KeyPrefix, MimePolicy, ObjectKey, ObjectStore as _, RetryPolicy,
    S3Store, UploadConfig, UploadItem, Uploader,
};
use uploader_e2e::proxy::{Fault, FaultPlan, Op, Proxy};
use uploader_e2e::{data, describe, json_lines, run, uploader, write};

use crate::harness::{Daemon, Target};

const MIB: usize = 1024 * 1024;
const ALL_OPS: [Op; 5] = [
    Op::PutObject,
    Op::UploadPart,
    Op::CreateMultipart,
    Op::CompleteMultipart,
    Op::AbortMultipart,
];

/// (relative name, size, seed): small files and a few multipart ones.
fn workload() -> Vec<(String, usize, u64)> {
    let mut v: Vec<_> = (0..40)
        .map(|i| (format!("small/f{i:02}.bin"), 1000 + i * 977, i as u64))
        .collect();
    for i in 0..3 {
        v.push((format!("big/b{i}.bin"), 11 * MIB + i, 100 + i as u64));
    }
    v
}

/// Every fault kind, with stalls of `stall`.
fn every_fault(stall: Duration) -> Vec<Fault> {
    vec![
        Fault::InternalError,
        Fault::SlowDown,
        Fault::ResetMidBody,
        Fault::Stall(stall),
        Fault::DropResponse,
    ]
}

/// An uploader whose requests go through `proxy` to `server` (1 s read timeout, so stalls
/// become timeouts), with fast retries and 5 MiB parts.
async fn uploader_via(
    server: &EmbeddedS3,
    proxy: &Proxy,
    concurrency: usize,
    attempts: u32,
    max_backoff: Duration,
) -> Uploader {
    let mut cfg = server.s3_config();
    cfg.endpoint_url = Some(proxy.endpoint());
    cfg.read_timeout = Some(Duration::from_secs(1));
    let via_proxy = Arc::new(S3Store::connect(&cfg).await.unwrap());
    Uploader::builder()
        .with_store(via_proxy)
        .with_config(UploadConfig {
            concurrency,
            part_size: 5 << 20,
            multipart_threshold: 5 << 20,
            retry: RetryPolicy {
                max_attempts: attempts,
                base: Duration::from_millis(10),
                max_backoff,
            },
            // Transport faults are under test, not content: random data sometimes sniffs as
            // a type outside the default allowlist (AAC, JPEG XL, cpio...), so allow all.
            mime: MimePolicy::new(&["*/*".into()], &[]).unwrap(),
            ..UploadConfig::default()
        })
        .build()
        .unwrap()
}

async fn faulty_run(seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let server = EmbeddedS3::start(dir.path(), "fault-bucket").await.unwrap();
    let direct = S3Store::connect(&server.s3_config()).await.unwrap();
    let proxy = Proxy::start(
        &server.endpoint_url(),
        FaultPlan {
            seed,
            rate: 0.15,
            faults: every_fault(Duration::from_millis(2500)),
            ops: ALL_OPS.to_vec(),
            limit: None,
        },
    )
    .await;

    let src = tempfile::tempdir().unwrap();
    let prefix = KeyPrefix::new(&format!("seed{seed}")).unwrap();
    let files = workload();
    let items: Vec<UploadItem> = files
        .iter()
        .map(|(rel, len, s)| UploadItem {
            path: write(src.path(), rel, &data(*len, *s)),
            key: ObjectKey::derive(&prefix, rel).unwrap(),
        })
        .collect();
    let up = uploader_via(&server, &proxy, 8, 6, Duration::from_millis(200)).await;
    let report = up.upload_files(items).wait().await;

    assert_eq!(report.files.len(), files.len());
    let mut uploaded = 0;
    for (f, (rel, len, s)) in report.files.iter().zip(&files) {
        let key = format!("{prefix}{rel}");
        match &f.outcome {
            FileOutcome::Uploaded { .. } => {
                uploaded += 1;
                let got = direct.get(&key).await.unwrap();
                let got = got
                    .unwrap_or_else(|| panic!("seed {seed}: {key} reported uploaded but missing"));
                assert!(
                    got == data(*len, *s),
                    "seed {seed}: {key} reported uploaded but wrong"
                );
            }
            FileOutcome::Failed { error } => {
                assert!(!error.message.is_empty(), "seed {seed}: {key}: no reason");
            }
            FileOutcome::Skipped { reason } => panic!("seed {seed}: {key} skipped: {reason}"),
        }
    }
    let pending = direct
        .list_multipart_uploads(prefix.as_str())
        .await
        .unwrap();
    assert!(
        pending.is_empty(),
        "seed {seed}: pending uploads left: {pending:?}"
    );
    let faults = proxy
        .stats
        .faults
        .load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "seed {seed}: {uploaded}/{} uploaded, {} retries, {faults} faults injected over {} requests",
        files.len(),
        report.retries,
        proxy
            .stats
            .requests
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    assert!(faults > 0, "seed {seed}: no fault fired");
    // With six attempts per request, a 15 % fault rate loses no file.
    assert_eq!(
        uploaded,
        files.len(),
        "seed {seed}: {:#?}",
        report.failures().collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_faults_lose_nothing_seed_1() {
    faulty_run(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_faults_lose_nothing_seed_2() {
    faulty_run(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_faults_lose_nothing_seed_3() {
    faulty_run(3).await;
}

/// The binary through the proxy: whatever fails, the exit code matches the summary, every file
/// reported uploaded is present, and nothing is left pending. With one attempt per request some
/// files fail, so the failure path is exercised too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_through_faults_reports_honestly() {
    let dir = tempfile::tempdir().unwrap();
    let server = EmbeddedS3::start(dir.path(), "fault-bucket").await.unwrap();
    let direct = S3Store::connect(&server.s3_config()).await.unwrap();
    let proxy = Proxy::start(
        &server.endpoint_url(),
        FaultPlan {
            seed: 42,
            rate: 0.2,
            faults: vec![
                Fault::InternalError,
                Fault::SlowDown,
                Fault::ResetMidBody,
                Fault::DropResponse,
            ],
            ops: vec![Op::PutObject, Op::UploadPart, Op::CompleteMultipart],
            limit: None,
        },
    )
    .await;
    let src = tempfile::tempdir().unwrap();
    let files = workload();
    for (rel, len, s) in &files {
        write(src.path(), rel, &data(*len, *s));
    }
    let home = tempfile::tempdir().unwrap();
    let creds = server.credentials().clone();
    let mut c = uploader(home.path());
    c.env("AWS_ACCESS_KEY_ID", &creds.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", &creds.secret_access_key)
        .env("AWS_REGION", "us-east-1")
        .args(["upload", "--json", "--retries", "0", "--checksum", "crc32c"])
        .args(["--multipart-threshold", "5MiB", "--part-size", "5MiB"])
        .args(["--allow-mime", "application/octet-stream", "--endpoint-url"])
        .arg(proxy.endpoint())
        .arg(src.path())
        .arg("s3://fault-bucket/cli/");
    let out = tokio::task::spawn_blocking(move || run(&mut c))
        .await
        .unwrap();
    let lines = json_lines(&out);
    let summary = lines.last().unwrap();
    let failed = summary["failed"].as_u64().unwrap();
    assert!(
        failed > 0,
        "the fault rate should fail some files: {}",
        describe(&out)
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    for l in &lines[..lines.len() - 1] {
        let key = l["key"].as_str().unwrap();
        let rel = key.strip_prefix("cli/").unwrap();
        let (_, len, s) = files.iter().find(|(r, _, _)| r == rel).unwrap();
        match l["status"].as_str().unwrap() {
            "uploaded" => {
                let got = direct
                    .get(key)
                    .await
                    .unwrap()
                    .expect("uploaded file present");
                assert!(got == data(*len, *s), "{key} wrong");
            }
            "failed" => {
                assert!(l["error"]["code"].is_string() && l["error"]["retryable"].is_boolean());
            }
            other => panic!("{key}: {other}"),
        }
    }
    assert!(
        direct
            .list_multipart_uploads("cli/")
            .await
            .unwrap()
            .is_empty()
    );
}

/// The soak run of docs/RELIABILITY.md (not in CI: `cargo nextest run -p uploader-e2e
/// --run-ignored only soak --no-capture`): 10 000 files through the proxy with 5 % faults of
/// every kind on every operation; reports files lost (must be 0), retries and time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak run, minutes long; see docs/RELIABILITY.md"]
async fn soak_10k_files_with_5_percent_faults() {
    let n: usize = std::env::var("SOAK_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().unwrap();
    let server = EmbeddedS3::start(dir.path(), "soak-bucket").await.unwrap();
    let direct = S3Store::connect(&server.s3_config()).await.unwrap();
    let proxy = Proxy::start(
        &server.endpoint_url(),
        FaultPlan {
            seed: 2026,
            rate: 0.05,
            faults: every_fault(Duration::from_millis(1500)),
            ops: ALL_OPS.to_vec(),
            limit: None,
        },
    )
    .await;
    let src = tempfile::tempdir().unwrap();
    let prefix = KeyPrefix::new("soak").unwrap();
    let sizes: Vec<usize> = (0..n)
        .map(|i| {
            if i % 1000 == 999 {
                11 * MIB
            } else {
                512 + (i * 7919) % 65_536
            }
        })
        .collect();
    let items: Vec<UploadItem> = sizes
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            let rel = format!("d{:02}/f{i:05}.bin", i % 50);
            UploadItem {
                path: write(src.path(), &rel, &data(len, i as u64)),
                key: ObjectKey::derive(&prefix, &rel).unwrap(),
            }
        })
        .collect();
    let up = uploader_via(&server, &proxy, 16, 8, Duration::from_millis(500)).await;
    let t0 = std::time::Instant::now();
    let report = up.upload_files(items).wait().await;
    let elapsed = t0.elapsed();
    let mut lost = 0;
    let mut failed = 0;
    for (i, f) in report.files.iter().enumerate() {
        let key = f.key.clone().unwrap();
        match &f.outcome {
            FileOutcome::Uploaded { .. } => {
                let ok = direct
                    .get(&key)
                    .await
                    .unwrap()
                    .is_some_and(|b| b == data(sizes[i], i as u64));
                if !ok {
                    lost += 1;
                }
            }
            FileOutcome::Failed { error } => {
                failed += 1;
                eprintln!("soak: {key} failed: {} ({})", error.message, error.code);
            }
            FileOutcome::Skipped { .. } => failed += 1,
        }
    }
    let pending = direct.list_multipart_uploads("soak/").await.unwrap().len();
    eprintln!(
        "soak: {n} files in {:.1} s; {} uploaded, {failed} failed (reported), {lost} lost; {} retries; {} faults over {} requests; {pending} pending uploads",
        elapsed.as_secs_f64(),
        report.summary().uploaded,
        report.retries,
        proxy
            .stats
            .faults
            .load(std::sync::atomic::Ordering::Relaxed),
        proxy
            .stats
            .requests
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    assert_eq!(lost, 0);
    assert_eq!(pending, 0);
    assert_eq!(
        failed, 0,
        "with 8 attempts per request, 5 % faults fail no file"
    );
}

/// The soak run through the daemon (not in CI: `cargo nextest run -p uploader-e2e
/// --run-ignored only soak_10k_files_through_the_daemon --no-capture`): the same 10 000 files
/// and 5 % faults of every kind on every operation as the library soak, POSTed to `uploader
/// serve` (its default retry policy: 5 attempts) in batches of 100, four batches at a time.
/// Stalls last 1.5 s (the daemon has no read-timeout flag; they are slow answers here, not
/// timeouts). Reports files lost (must be 0), failed, retries (the daemon's
/// `uploader_retries_total`) and time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak run, minutes long; see docs/RELIABILITY.md"]
async fn soak_10k_files_through_the_daemon_with_5_percent_faults() {
    use futures::StreamExt as _;
    let n: usize = std::env::var("SOAK_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    const BATCH: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let server = EmbeddedS3::start(dir.path(), "soak-bucket").await.unwrap();
    let t = Target::embedded(&server);
    let direct = t.direct().await;
    let proxy = Proxy::start(
        &server.endpoint_url(),
        FaultPlan {
            seed: 2027,
            rate: 0.05,
            faults: every_fault(Duration::from_millis(1500)),
            ops: ALL_OPS.to_vec(),
            limit: None,
        },
    )
    .await;
    let home = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with(
        &t,
        home.path(),
        &proxy.endpoint(),
        &["--allow-mime", "*/*", "--checksum", "crc32c"],
    );
    let src = tempfile::tempdir().unwrap();
    // (path, size, seed); batch b goes under soakd/b<b>/ (names are unique within a batch).
    let files: Vec<(std::path::PathBuf, usize)> = (0..n)
        .map(|i| {
            let len = if i % 1000 == 999 {
                11 * MIB
            } else {
                512 + (i * 7919) % 65_536
            };
            let rel = format!("b{:03}/f{i:05}.bin", i / BATCH);
            (write(src.path(), &rel, &data(len, i as u64)), len)
        })
        .collect();
    let t0 = std::time::Instant::now();
    let batches: Vec<(usize, serde_json::Value, u16)> =
        futures::stream::iter(files.chunks(BATCH).enumerate())
            .map(|(b, chunk)| {
                let daemon = &daemon;
                async move {
                    let paths: Vec<&std::path::Path> =
                        chunk.iter().map(|(p, _)| p.as_path()).collect();
                    let (status, json) = daemon.post(&paths, &format!("soakd/b{b:03}")).await;
                    (b, json, status)
                }
            })
            .buffer_unordered(4)
            .collect()
            .await;
    let elapsed = t0.elapsed();
    let (mut uploaded, mut failed, mut lost, mut unreported) = (0, 0, 0, 0);
    for (b, json, status) in &batches {
        let results = json["results"].as_array().cloned().unwrap_or_default();
        if results.len() != BATCH.min(n - b * BATCH) {
            eprintln!(
                "soak: batch {b}: status {status}, {} results",
                results.len()
            );
        }
        for (i, (_, len)) in files.iter().enumerate().skip(b * BATCH).take(BATCH) {
            let key = format!("soakd/b{b:03}/f{i:05}.bin");
            let Some(r) = results.iter().find(|r| r["key"] == key.as_str()) else {
                unreported += 1;
                continue;
            };
            let stored = direct.get(&key).await.unwrap();
            if r["status"] == "uploaded" {
                uploaded += 1;
                if stored.is_none_or(|got| got != data(*len, i as u64)) {
                    lost += 1;
                }
            } else {
                failed += 1;
                eprintln!("soak: {key} failed: {}", r["error"]);
            }
        }
    }
    let retries = daemon.counter("uploader_retries_total").await;
    let pending = direct.list_multipart_uploads("soakd/").await.unwrap().len();
    let stats = &proxy.stats;
    eprintln!(
        "soak (daemon): {n} files in {:.1} s; {uploaded} uploaded, {failed} failed (reported), {lost} lost, {unreported} unreported; {retries} retries; {} faults over {} requests; {pending} pending uploads",
        elapsed.as_secs_f64(),
        stats.faults.load(std::sync::atomic::Ordering::Relaxed),
        stats.requests.load(std::sync::atomic::Ordering::Relaxed),
    );
    assert!(stats.faults.load(std::sync::atomic::Ordering::Relaxed) > 0);
    assert_eq!(lost, 0);
    assert_eq!(unreported, 0);
    assert_eq!(pending, 0);
    assert_eq!(
        failed, 0,
        "with 5 attempts per request, 5 % faults fail no file"
    );
}

//! Bandwidth and request-rate limits (`--bwlimit`, `--bwlimit-file`, `--tps-limit`), in the
//! CLI and in the daemon (whose limits change at run time through `PUT /v1/limits`). Timing is
//! only ever asserted as a lower bound: a limit that works can't be beaten, however fast or
//! slow the machine is; the rate achieved is a benchmark figure (`benches/`).

use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use uploader_core::{
    EmbeddedS3, KeyPrefix, ObjectStore as _, RateLimits, S3Store, Uploader, WalkOptions,
};
use uploader_e2e::proxy::{Fault, FaultPlan, Op, Proxy};
use uploader_e2e::{data, describe, json_lines, run, uploader, write};

use crate::harness::{Daemon, Target, uploader_on};

const MIB: usize = 1 << 20;

/// Runs `upload SRC s3://lim/PREFIX/ --embedded-s3 DIR ARGS...`; returns the output and the
/// wall time.
fn upload(
    home: &Path,
    src: &Path,
    store: &Path,
    prefix: &str,
    args: &[&str],
) -> (std::process::Output, Duration) {
    let started = Instant::now();
    let out = run(uploader(home)
        .arg("upload")
        .arg(src)
        .arg(format!("s3://lim/{prefix}/"))
        .arg("--embedded-s3")
        .arg(store)
        .args(["--allow-mime", "application/octet-stream", "--json"])
        .args(args));
    (out, started.elapsed())
}

async fn stored(store_dir: &Path, key: &str) -> Option<bytes::Bytes> {
    let server = EmbeddedS3::start(store_dir, "lim").await.unwrap();
    let store = S3Store::connect(&server.s3_config()).await.unwrap();
    store.get(key).await.unwrap()
}

/// Uploads one file of `mib` MiB with `args`; checks that it took at least `at_least` and that
/// the object is stored byte for byte.
async fn one_file_held_to(mib: usize, seed: u64, args: &[&str], at_least: Duration) {
    let (home, src, store) = (tempdir(), tempdir(), tempdir());
    let body = data(mib * MIB, seed);
    let file = write(src.path(), "one.bin", &body);
    let (out, took) = upload(home.path(), &file, store.path(), "held", args);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(took >= at_least, "{mib} MiB in {took:?} under {args:?}");
    assert_eq!(
        stored(store.path(), "held/one.bin").await.as_deref(),
        Some(&body[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bwlimit_20m_holds_60_mib_to_at_least_2_7_seconds() {
    // 60 MiB at 20 MiB/s is 3 s; the bucket may let its first tenth of a second go at once.
    one_file_held_to(60, 1, &["--bwlimit", "20M"], Duration::from_millis(2700)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bwlimit_file_holds_each_file_to_its_rate() {
    // 12 MiB at 8 MiB/s: 1.5 s.
    one_file_held_to(
        12,
        2,
        &["--bwlimit-file", "8M"],
        Duration::from_millis(1300),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tps_limit_50_holds_200_small_files_to_at_least_3_5_seconds() {
    let (home, src, store) = (tempdir(), tempdir(), tempdir());
    for i in 0..200 {
        write(src.path(), &format!("f{i:03}.bin"), &data(1000, i));
    }
    let (out, took) = upload(
        home.path(),
        src.path(),
        store.path(),
        "tps",
        &["--tps-limit", "50"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let summary = json_lines(&out).pop().unwrap();
    assert_eq!(summary["uploaded"], 200, "{summary}");
    // 200 PUTs at 50/s: 4 s, less the bucket's first tenth of a second.
    assert!(
        took >= Duration::from_millis(3500),
        "200 files in {took:?} under --tps-limit 50"
    );
    assert_eq!(
        stored(store.path(), "tps/f199.bin").await.as_deref(),
        Some(&data(1000, 199)[..])
    );
}

/// A timetable whose slot of the moment is 16 MiB/s (the clock is UTC for the child, so the
/// test knows what "now" is): the rate of the slot holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bwlimit_timetable_applies_the_rate_of_the_current_slot() {
    let (home, src, store) = (tempdir(), tempdir(), tempdir());
    let body = data(32 * MIB, 3);
    let file = write(src.path(), "tt.bin", &body);
    let hour = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 3600
        % 24;
    // In force from an hour ago until in six hours; off before and after.
    let timetable = format!(
        "{:02}:00,16M {:02}:00,off",
        (hour + 23) % 24,
        (hour + 6) % 24
    );
    let started = Instant::now();
    let out = run(uploader(home.path())
        .env("TZ", "UTC")
        .arg("upload")
        .arg(&file)
        .arg("s3://lim/tt/")
        .arg("--embedded-s3")
        .arg(store.path())
        .args([
            "--allow-mime",
            "application/octet-stream",
            "--bwlimit",
            &timetable,
        ]));
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        took >= Duration::from_millis(1800),
        "32 MiB in {took:?} under {timetable:?}"
    );
    assert_eq!(
        stored(store.path(), "tt/tt.bin").await.as_deref(),
        Some(&body[..])
    );
}

/// A retry sends its body again, and the bandwidth budget is charged again: a PUT whose answer
/// the proxy drops (after the server has read and stored the body) costs twice its bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_body_is_charged_again() {
    let data_dir = tempdir();
    let server = EmbeddedS3::start(data_dir.path(), "lim-retry")
        .await
        .unwrap();
    let t = Target::embedded(&server);
    let plan = FaultPlan::first(Op::PutObject, Fault::DropResponse, 1);
    let proxy = Proxy::start(&t.endpoint, plan).await;
    let limits = RateLimits::new(Some(4 << 20), None, None);
    let uploader = uploader_on(t.store_via(&proxy, None).await, limits);
    let src = tempdir();
    let body = data(4 * MIB, 5);
    write(src.path(), "once.bin", &body);
    let (_, took) = upload_timed(&uploader, src.path(), "retry").await;
    assert_eq!(
        proxy.stats.faults.load(Ordering::Relaxed),
        1,
        "the fault fired"
    );
    assert_eq!(
        proxy.stats.seen(Op::PutObject),
        2,
        "the body was sent twice"
    );
    // 8 MiB charged at 4 MiB/s: about 2 s (once only would be about 1 s).
    assert!(
        took >= Duration::from_millis(1700),
        "{took:?}: the retry was not charged"
    );
    let direct = t.direct().await;
    assert_eq!(
        direct.get("retry/once.bin").await.unwrap().as_deref(),
        Some(&body[..])
    );
}

/// Uploads the directory `src` under `prefix`; checks that every file was stored, and returns
/// the report and the wall time.
async fn upload_timed(
    uploader: &Uploader,
    src: &Path,
    prefix: &str,
) -> (uploader_core::Report, Duration) {
    let started = Instant::now();
    let report = uploader
        .upload_dir(
            src,
            &KeyPrefix::new(prefix).unwrap(),
            WalkOptions::default(),
        )
        .wait()
        .await;
    let took = started.elapsed();
    assert!(
        report.is_success(),
        "{:?}",
        report.failures().collect::<Vec<_>>()
    );
    (report, took)
}

/// An uploader on the embedded endpoint (through `proxy` when given) with a 1 s read timeout
/// and `limits` ([`uploader_on`]'s settings).
async fn short_timeout_uploader(t: &Target, proxy: Option<&Proxy>, limits: RateLimits) -> Uploader {
    let mut cfg = t.s3.clone();
    cfg.read_timeout = Some(Duration::from_secs(1));
    if let Some(p) = proxy {
        cfg.endpoint_url = Some(p.endpoint());
    }
    uploader_on(S3Store::connect(&cfg).await.unwrap(), limits)
}

/// A paced body that takes longer than the read timeout is not timed out while it moves: the
/// SDK's read timeout runs from the start of a request, so paced requests are timed by hand,
/// from their last movement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_body_longer_than_the_read_timeout_is_not_timed_out() {
    let data_dir = tempdir();
    let server = EmbeddedS3::start(data_dir.path(), "lim-slow")
        .await
        .unwrap();
    let t = Target::embedded(&server);
    let uploader =
        short_timeout_uploader(&t, None, RateLimits::new(Some(4 << 20), None, None)).await;
    let src = tempdir();
    let (big, small) = (data(11 * MIB, 6), data(4 * MIB, 7));
    write(src.path(), "big.bin", &big);
    write(src.path(), "small.bin", &small);
    let (report, took) = upload_timed(&uploader, src.path(), "slow").await;
    assert_eq!(report.retries, 0, "no request was timed out");
    // 15 MiB at 4 MiB/s: every request took well over the 1 s read timeout.
    assert!(took >= Duration::from_millis(3300), "{took:?}");
    let direct = t.direct().await;
    assert_eq!(
        direct.get("slow/big.bin").await.unwrap().as_deref(),
        Some(&big[..])
    );
    assert_eq!(
        direct.get("slow/small.bin").await.unwrap().as_deref(),
        Some(&small[..])
    );
}

/// A paced request whose server stops answering is still timed out (and retried).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_request_to_a_stalled_server_is_timed_out() {
    let data_dir = tempdir();
    let server = EmbeddedS3::start(data_dir.path(), "lim-stall")
        .await
        .unwrap();
    let t = Target::embedded(&server);
    let plan = FaultPlan::first(Op::PutObject, Fault::Stall(Duration::from_secs(5)), 1);
    let proxy = Proxy::start(&t.endpoint, plan).await;
    let limits = RateLimits::new(Some(1 << 20), None, None);
    let uploader = short_timeout_uploader(&t, Some(&proxy), limits).await;
    let src = tempdir();
    let body = data(100 << 10, 8);
    write(src.path(), "stalled.bin", &body);
    let (report, _) = upload_timed(&uploader, src.path(), "stall").await;
    assert_eq!(
        proxy.stats.faults.load(Ordering::Relaxed),
        1,
        "the stall fired"
    );
    assert!(
        report.retries >= 1,
        "the stalled attempt was timed out and retried"
    );
    let direct = t.direct().await;
    assert_eq!(
        direct.get("stall/stalled.bin").await.unwrap().as_deref(),
        Some(&body[..])
    );
}

#[test]
fn invalid_limits_are_refused_before_anything_is_uploaded() {
    let (home, src, store) = (tempdir(), tempdir(), tempdir());
    write(src.path(), "a.bin", b"x");
    for (args, says) in [
        (&["--bwlimit", "5X"][..], "invalid rate \"5X\""),
        (&["--bwlimit", "25:00,1M"][..], "invalid timetable entry"),
        (&["--bwlimit-file=-1M"][..], "--bwlimit-file"),
        (&["--tps-limit", "fast"][..], "invalid request rate"),
        (&["--bwlimit", "0.4"][..], "invalid rate \"0.4\""),
    ] {
        let (out, _) = upload(home.path(), src.path(), store.path(), "bad", args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", describe(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?} must say {says:?}: {err}");
    }
    assert!(
        !store.path().join("lim").join("bad").exists(),
        "nothing is stored by a refused command"
    );
    let out = run(uploader(home.path())
        .args([
            "serve",
            "--bucket",
            "lim",
            "--bwlimit",
            "08:00,1M 19:00,off",
        ])
        .arg("--embedded-s3")
        .arg(store.path()));
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PUT /v1/limits"));
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

const ADMIN: &str = "admin-token-for-the-limits-test-0123";

/// curl against the daemon: `(status, JSON body)`.
async fn curl(port: u16, args: Vec<String>) -> (u16, serde_json::Value) {
    let out = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}"])
            .args(&args)
            .arg(format!("http://127.0.0.1:{port}/v1/limits"))
            .output()
            .expect("curl runs")
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text
        .trim_end()
        .rsplit_once('\n')
        .unwrap_or(("", text.trim()));
    (
        status.parse().unwrap_or_else(|_| panic!("{text}")),
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

fn admin(method: &str, token: &str, body: Option<&str>) -> Vec<String> {
    let mut a = vec![
        "-X".into(),
        method.into(),
        "-H".into(),
        format!("Authorization: Bearer {token}"),
    ];
    if let Some(b) = body {
        a.extend([
            "-H".into(),
            "Content-Type: application/json".into(),
            "-d".into(),
            b.into(),
        ]);
    }
    a
}

/// The daemon's limit is shared by its requests and changes at run time through the admin API,
/// which answers admin tokens only and changes nothing on a bad value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_limits_its_requests_and_changes_them_at_run_time() {
    let data_dir = tempdir();
    let server = EmbeddedS3::start(data_dir.path(), "lim-daemon")
        .await
        .unwrap();
    let t = Target::embedded(&server);
    let home = tempdir();
    let daemon = Daemon::start_with(
        &t,
        home.path(),
        &t.endpoint,
        &[
            "--allow-mime",
            "application/octet-stream",
            "--checksum",
            "crc32c",
            "--bwlimit",
            "8M",
            "--admin-tokens",
            ADMIN,
        ],
    );
    let src = tempdir();
    let body = data(16 * MIB, 4);
    let file = write(src.path(), "d.bin", &body);
    let started = Instant::now();
    let (status, resp) = daemon.post(&[&file], "slow").await;
    let took = started.elapsed();
    assert_eq!(status, 201, "{resp}");
    assert!(
        took >= Duration::from_millis(1800),
        "16 MiB in {took:?} under --bwlimit 8M"
    );
    let direct = t.direct().await;
    assert_eq!(
        direct.get("slow/d.bin").await.unwrap().as_deref(),
        Some(&body[..])
    );

    let (status, now) = curl(daemon.port, admin("GET", ADMIN, None)).await;
    assert_eq!(status, 200);
    assert_eq!(now["bwlimit"], 8 * MIB as u64, "{now}");
    assert_eq!(now["tps_limit"], serde_json::Value::Null, "{now}");

    // Not an admin token: refused, nothing changes.
    let (status, _) = curl(
        daemon.port,
        admin(
            "PUT",
            "not-the-admin-token-0123456789",
            Some(r#"{"bwlimit":"off"}"#),
        ),
    )
    .await;
    assert_eq!(status, 401);
    // One bad field: refused whole, nothing changes.
    let (status, problem) = curl(
        daemon.port,
        admin("PUT", ADMIN, Some(r#"{"bwlimit":"off","tps_limit":"-3"}"#)),
    )
    .await;
    assert_eq!(status, 400, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("tps_limit"),
        "{problem}"
    );
    let (status, unknown) = curl(
        daemon.port,
        admin("PUT", ADMIN, Some(r#"{"bwlimt":"off"}"#)),
    )
    .await;
    assert_eq!(status, 400, "{unknown}");
    assert!(
        unknown["detail"].as_str().unwrap_or("").contains("bwlimt"),
        "{unknown}"
    );
    let (_, still) = curl(daemon.port, admin("GET", ADMIN, None)).await;
    assert_eq!(still["bwlimit"], 8 * MIB as u64, "{still}");

    let (status, changed) = curl(
        daemon.port,
        admin(
            "PUT",
            ADMIN,
            Some(r#"{"bwlimit":"off","tps_limit":"100","bwlimit_file":"1GiB"}"#),
        ),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["bwlimit"], serde_json::Value::Null, "{changed}");
    assert_eq!(changed["tps_limit"], 100.0, "{changed}");
    assert_eq!(changed["bwlimit_file"], 1u64 << 30, "{changed}");
    let (status, resp) = daemon.post(&[&file], "fast").await;
    assert_eq!(status, 201, "{resp}");
    assert_eq!(
        direct.get("fast/d.bin").await.unwrap().as_deref(),
        Some(&body[..])
    );
    // A limit set at run time holds the next upload: freed above, limited again through the
    // API only.
    let (status, _) = curl(
        daemon.port,
        admin("PUT", ADMIN, Some(r#"{"bwlimit":"8M","tps_limit":"off"}"#)),
    )
    .await;
    assert_eq!(status, 200);
    let started = Instant::now();
    let (status, resp) = daemon.post(&[&file], "again").await;
    let took = started.elapsed();
    assert_eq!(status, 201, "{resp}");
    assert!(
        took >= Duration::from_millis(1800),
        "16 MiB in {took:?} after PUT bwlimit 8M"
    );

    let log = std::fs::read_to_string(home.path().join("daemon.log")).unwrap();
    assert!(!log.contains(ADMIN), "the admin token is never logged");
}

/// Without admin tokens the admin API does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_admin_tokens_there_is_no_admin_api() {
    let data_dir = tempdir();
    let server = EmbeddedS3::start(data_dir.path(), "lim-noadmin")
        .await
        .unwrap();
    let t = Target::embedded(&server);
    let home = tempdir();
    let daemon = Daemon::start(&t, home.path(), &t.endpoint);
    let (status, _) = curl(
        daemon.port,
        admin("PUT", ADMIN, Some(r#"{"bwlimit":"1M"}"#)),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = curl(daemon.port, admin("GET", ADMIN, None)).await;
    assert_eq!(status, 404);
}
